/**
 * Pointing, in TypeScript through POST /explain's code path: does a heat map's hottest patch
 * fall inside the object a caption names? Scenes come from the training package's generator
 * (training/recipe/pointing.py `cases`: each object of a scene named alone, "A small red star
 * with thin diagonal white stripes.", with its box), rendered at the model's resolution, at a
 * seed no training or tuning used. Each model directory (exported with --dense value or
 * final) gets a real library (SQLite + HNSW) that indexes the scenes; `library.explain` gives
 * each caption's heat map (the method POST /explain uses, DEFAULT_HEAT_MAP), at each zoom of
 * `--zoom` (default 3, explainZoom's default, and 1, the whole image only). The other methods
 * of src/library/explain/heat-map.ts are scored on the whole image's patch embeddings
 * (Encoder.embedPatches) for comparison. The baseline is the box-area share: the chance that
 * a cell drawn at random from the grid (model's patch grid times the zoom) has its centre in
 * the box. `--render` draws the scenes larger than the model's input (a photo is larger than
 * the model's input; zoomed windows then read pixels the whole image's shrink lost).
 *
 *   npm run bench:pointing -- --model DIR [--model DIR ...] [--seed 104] [--count 300]
 *       [--zoom 3 --zoom 1] [--render PIXELS]
 *
 * Seeds: 0 training, 1 held-out, 2 gallery, 3 unseen, 101 descriptions, 102 Python's pointing
 * default; the method was chosen on 103 (docs/search.md), report on 104.
 */
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { loadSettings } from "../../src/core/settings.ts";
import { Encoder } from "../../src/encode/encoder.ts";
import type { PatchEmbeddings } from "../../src/encode/types.ts";
import {
  contrasted,
  DEFAULT_HEAT_MAP,
  type HeatMapMethod,
  heatMap,
  NEUTRAL_CAPTION,
} from "../../src/library/explain/heat-map.ts";
import { createLibrary } from "../../src/library/index.ts";
import { readModelConfig } from "../../src/model/read.ts";
import { preprocessImage } from "../../src/preprocess/index.ts";
import { preprocessOptions } from "../../src/preprocess/options.ts";
import { runPython } from "../bench/python.ts";

interface NamedObject {
  caption: string;
  /** [left, top, right, bottom] in pixels of the rendered scene. */
  box: [number, number, number, number];
  salient: boolean;
}

interface Scene {
  jpeg: Buffer;
  objects: NamedObject[];
}

const METHODS: Record<string, HeatMapMethod> = {
  cosine: { removeImage: false, smoothing: 0 },
  "cosine, smoothed": { removeImage: false, smoothing: 1 },
  "image direction removed": { removeImage: true, smoothing: 0 },
  "image direction removed, smoothed": { removeImage: true, smoothing: 1 },
  "image direction removed, smoothed twice": { removeImage: true, smoothing: 2 },
  "patch mean removed": { removeImage: false, smoothing: 0, centre: true },
  "patch mean removed, smoothed": { removeImage: false, smoothing: 1, centre: true },
  "contrast with a neutral caption": { removeImage: false, smoothing: 0, contrast: true },
  "contrast, patch mean removed": {
    removeImage: false,
    smoothing: 0,
    centre: true,
    contrast: true,
  },
  "contrast, smoothed": { removeImage: false, smoothing: 1, contrast: true },
};

/** The generator's scenes of `seed` at `side` pixels, from Python (scripts/python). */
async function scenes(count: number, seed: number, side: number): Promise<Scene[]> {
  const code = [
    "import base64, json, sys",
    "from training.recipe.pointing import cases",
    "out = []",
    "for jpeg, named in cases(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])):",
    "    out.append({'jpeg': base64.b64encode(jpeg).decode(), 'objects': [",
    "        {'caption': c, 'box': [float(v) for v in box], 'salient': bool(s)}",
    "        for c, box, s in named]})",
    "print(json.dumps({'scenes': out}))",
  ].join("\n");
  const answer = (await runPython(["-c", code, String(count), String(seed), String(side)])) as {
    scenes: { jpeg: string; objects: NamedObject[] }[];
  };
  return answer.scenes.map((s) => ({ jpeg: Buffer.from(s.jpeg, "base64"), objects: s.objects }));
}

/** Whether cell (row, column)'s centre lies in the box, and the share of centres that do. */
function pointsInto(
  peak: { row: number; column: number },
  rows: number,
  columns: number,
  side: number,
  [left, top, right, bottom]: NamedObject["box"],
): { hit: boolean; baseline: number } {
  const inside = (r: number, c: number) => {
    const x = ((c + 0.5) * side) / columns;
    const y = ((r + 0.5) * side) / rows;
    return x >= left && x < right && y >= top && y < bottom;
  };
  let within = 0;
  for (let r = 0; r < rows; r++) for (let c = 0; c < columns; c++) if (inside(r, c)) within++;
  return { hit: inside(peak.row, peak.column), baseline: within / (rows * columns) };
}

interface Tally {
  n: number;
  hits: number;
  baseline: number;
}

const empty = (): Tally => ({ n: 0, hits: 0, baseline: 0 });

function add(tally: Tally, outcome: { hit: boolean; baseline: number }): void {
  tally.n++;
  tally.hits += outcome.hit ? 1 : 0;
  tally.baseline += outcome.baseline;
}

const percent = (t: Tally, key: "hits" | "baseline") =>
  `${((100 * t[key]) / Math.max(1, t.n)).toFixed(1)}%`;

type Groups = { all: Tally; salient: Tally; small: Tally };
const groups = (): Groups => ({ all: empty(), salient: empty(), small: empty() });

function record(into: Groups, salient: boolean, outcome: { hit: boolean; baseline: number }) {
  add(into.all, outcome);
  add(salient ? into.salient : into.small, outcome);
}

function row(label: string, g: Groups): string {
  const shares = [g.all, g.salient, g.small].map((t) => percent(t, "hits")).join(" | ");
  const base = [g.all, g.salient, g.small].map((t) => percent(t, "baseline")).join(" / ");
  return `| ${label} | ${shares} | ${base} |`;
}

async function measure(
  modelDir: string,
  data: Scene[],
  side: number,
  zooms: readonly number[],
): Promise<string[]> {
  const config = readModelConfig(modelDir);
  const dense = config.vision.dense;
  if (dense === undefined) {
    throw new Error(`${modelDir} has no dense output: export it with --dense value or final`);
  }
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "bench-pointing-"));
  const settings = loadSettings(
    {
      modelDir,
      dataDir,
      threads: 2,
      imageBatchSize: 16,
      indexSaveIntervalMs: 0,
      explainZoom: Math.max(...zooms),
    },
    {},
  );
  const encoder = await Encoder.load(modelDir, settings);
  const library = await createLibrary(settings, encoder);
  const lines: string[] = [];
  try {
    const ids = data.map((_, i) => `scene-${i}`);
    for (let start = 0; start < data.length; start += settings.maxBatchItems) {
      const results = await library.index(
        data.slice(start, start + settings.maxBatchItems).map((s, i) => ({
          id: ids[start + i],
          bytes: s.jpeg,
          filename: `${ids[start + i]}.jpg`,
        })),
      );
      const failed = results.find((r) => r.status !== "indexed");
      if (failed) throw new Error(`indexing failed: ${JSON.stringify(failed)}`);
    }
    const viaExplain = new Map(zooms.map((zoom) => [zoom, groups()]));
    const byMethod = Object.fromEntries(Object.keys(METHODS).map((m) => [m, groups()]));
    const [neutral] = await encoder.embedTexts([NEUTRAL_CAPTION]);
    const options = preprocessOptions(config, settings);
    for (const [i, scene] of data.entries()) {
      const { pixels } = await preprocessImage(scene.jpeg, options);
      const patches: PatchEmbeddings = await encoder.embedPatches(pixels);
      const [image] = await encoder.embedPixels([pixels]);
      const texts = await encoder.embedTexts(scene.objects.map((o) => o.caption));
      for (const [j, object] of scene.objects.entries()) {
        for (const [zoom, tally] of viaExplain) {
          const explained = await library.explain(ids[i] as string, {
            text: object.caption,
            options: {},
            zoom,
          });
          record(
            tally,
            object.salient,
            pointsInto(explained.peak, explained.rows, explained.columns, side, object.box),
          );
        }
        const query = texts[j]?.embedding as Float32Array;
        const against = contrasted(query, neutral?.embedding as Float32Array);
        for (const [name, method] of Object.entries(METHODS)) {
          const map = heatMap(patches, method.contrast ? against : query, image, method);
          record(
            byMethod[name] as Groups,
            object.salient,
            pointsInto(map.peak, map.rows, map.columns, side, object.box),
          );
        }
      }
      if ((i + 1) % 50 === 0)
        process.stderr.write(`${config.name}: ${i + 1}/${data.length} scenes\n`);
    }
    const defaultName = Object.entries(METHODS).find(
      ([, m]) => JSON.stringify(m) === JSON.stringify(DEFAULT_HEAT_MAP),
    )?.[0];
    for (const [zoom, tally] of viaExplain) {
      const label = `**${dense.kind}**: POST /explain zoom ${zoom} (${defaultName ?? "default"})`;
      lines.push(row(label, tally));
    }
    for (const [name, g] of Object.entries(byMethod)) lines.push(row(`${dense.kind}: ${name}`, g));
  } finally {
    await library.close();
    await encoder.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
  return lines;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      model: { type: "string", multiple: true },
      seed: { type: "string", default: "104" },
      count: { type: "string", default: "300" },
      zoom: { type: "string", multiple: true },
      render: { type: "string" },
    },
  });
  const zooms = (values.zoom ?? ["3", "1"]).map(Number);
  const models = (values.model ?? []).map((dir) => path.resolve(dir));
  const seed = Number(values.seed);
  const count = Number(values.count);
  const resolution = readModelConfig(models[0] as string).image_resolution;
  const side = values.render === undefined ? resolution : Number(values.render);
  const whole = (n: number) => Number.isInteger(n) && n >= 1;
  if (models.length === 0 || !Number.isInteger(seed) || ![count, side, ...zooms].every(whole)) {
    process.stderr.write(
      "usage: npm run bench:pointing -- --model DIR [--model DIR ...] [--seed 104] [--count 300] [--zoom 3 --zoom 1] [--render PIXELS]\n",
    );
    return 2;
  }
  for (const dir of models) {
    if (readModelConfig(dir).image_resolution !== resolution) {
      throw new Error(`the models read different image sizes (${dir}); compare models of one size`);
    }
  }
  const data = await scenes(count, seed, side);
  const objects = data.reduce((n, s) => n + s.objects.length, 0);
  const lines = [
    `pointing: ${count} scenes of seed ${seed} (${side} px), ${objects} objects named alone`,
    "| heat map | all objects | large (salient) | small | box-area baseline (all / large / small) |",
    "| --- | ---: | ---: | ---: | ---: |",
  ];
  for (const dir of models) lines.push(...(await measure(dir, data, side, zooms)));
  process.stdout.write(`${lines.join("\n")}\n`);
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`bench:pointing: ${(error as Error).stack ?? String(error)}\n`);
    process.exitCode = 1;
  },
);
