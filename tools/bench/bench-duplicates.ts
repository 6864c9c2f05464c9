/**
 * Near-duplicate groups on a set with known duplicates: rendered synthetic scenes (a seed the
 * demo model never saw; groups of 4 share their first sentence and look alike, so false
 * groups have a chance), plus copies made with sharp: a re-encoded JPEG (quality 40-80) of
 * some scenes, a resized copy (50-80 %, PNG) of others, both of some. The true groups are each
 * original with its copies. GET /duplicates' grouping (ANN neighbours, src/library/search/duplicates.ts)
 * runs at several thresholds; printed per threshold: true groups found exactly, found groups
 * that join different scenes (false), true groups missed or split, and the pair precision and
 * recall; and how the ANN grouping compares with an all-pairs exact scan.
 *
 *   npm run bench:duplicates -- [--count 400] [--postgres] [--json]
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import sharp from "sharp";
import type { IndexInput } from "../../src/core/types.ts";
import { cosine } from "../../src/vector-index/exact.ts";
import {
  indexAll,
  openBenchLibrary,
  SCENE_FLAGS,
  scenesOf,
  seededRandom,
} from "./search-extras.ts";

const { values } = parseArgs({
  options: {
    ...SCENE_FLAGS,
    thresholds: { type: "string", default: "0.9,0.95,0.97,0.98,0.99" },
  },
});
const count = Number(values.count);
const seed = Number(values.seed);
const thresholds = (values.thresholds as string).split(",").map(Number);

const scenes = await scenesOf(values);
const random = seededRandom(seed + 1);
/** Scene id of every stored item (an original is its own scene). */
const sceneOf = new Map<string, string>();
const inputs: IndexInput[] = [];
for (const [i, scene] of scenes.entries()) {
  const bytes = readFileSync(scene.image);
  inputs.push({ id: scene.name, bytes });
  sceneOf.set(scene.name, scene.name);
  // A quarter re-encoded, a quarter resized, an eighth both (overlapping), the rest alone.
  const reencode = i % 4 === 0 || i % 8 === 1;
  const resize = i % 4 === 1 || i % 8 === 0;
  if (reencode) {
    const quality = 40 + Math.floor(random() * 41);
    const id = `${scene.name}-q${quality}`;
    inputs.push({ id, bytes: await sharp(bytes).jpeg({ quality }).toBuffer() });
    sceneOf.set(id, scene.name);
  }
  if (resize) {
    const scale = 0.5 + random() * 0.3;
    const { width = 128 } = await sharp(bytes).metadata();
    const id = `${scene.name}-s${Math.round(scale * 100)}`;
    inputs.push({
      id,
      bytes: await sharp(bytes)
        .resize({ width: Math.round(width * scale) })
        .png()
        .toBuffer(),
    });
    sceneOf.set(id, scene.name);
  }
}
const trueGroups = new Map<string, string[]>();
for (const [id, scene] of sceneOf) trueGroups.set(scene, [...(trueGroups.get(scene) ?? []), id]);
const expected = [...trueGroups.values()].filter((ids) => ids.length > 1);

/** Connected components of the pairs at or above the threshold, as sorted id lists. */
function components(ids: string[], pairs: [string, string][]): string[][] {
  const parent = new Map(ids.map((id) => [id, id]));
  const find = (id: string): string => {
    const p = parent.get(id) as string;
    return p === id ? id : find(p);
  };
  for (const [a, b] of pairs) parent.set(find(a), find(b));
  const out = new Map<string, string[]>();
  for (const id of ids) out.set(find(id), [...(out.get(find(id)) ?? []), id]);
  return [...out.values()].filter((g) => g.length > 1).map((g) => g.sort());
}

const key = (group: string[]) => [...group].sort().join(" ");

const bench = await openBenchLibrary(values.postgres === true);
try {
  // PGlite serves every connection from one backend; many concurrent look-ups can break its
  // unnamed prepared statements, so Postgres gets smaller batches.
  await indexAll(bench.library, inputs, values.postgres ? 4 : 32);
  const store = bench.library.store;
  const modelId = (await bench.library.stats()).modelId;
  const stored = await store.itemsAfter(0, inputs.length + 1);
  const vectors = new Map(
    (
      await store.embeddingsOf(
        modelId,
        stored.map((item) => item.label),
      )
    ).map((row) => [row.label, row.vector]),
  );
  const ids = stored.map((item) => item.id);
  const allPairs: { a: string; b: string; score: number }[] = [];
  for (let i = 0; i < stored.length; i++) {
    for (let j = i + 1; j < stored.length; j++) {
      const a = stored[i] as (typeof stored)[number];
      const b = stored[j] as (typeof stored)[number];
      const score = cosine(
        vectors.get(a.label) as Float32Array,
        vectors.get(b.label) as Float32Array,
      );
      if (score >= Math.min(...thresholds)) allPairs.push({ a: a.id, b: b.id, score });
    }
  }
  const truePairs = expected.reduce((n, g) => n + (g.length * (g.length - 1)) / 2, 0);
  const rows = [];
  for (const threshold of thresholds) {
    const started = performance.now();
    const groups: string[][] = [];
    let cursor: string | null = null;
    do {
      const page = await bench.library.duplicates({ threshold, cursor, limit: 1000 });
      groups.push(...page.groups.map((g) => g.ids));
      cursor = page.nextCursor;
    } while (cursor !== null);
    const seconds = (performance.now() - started) / 1000;
    const expectedKeys = new Set(expected.map(key));
    const exact = groups.filter((g) => expectedKeys.has(key(g))).length;
    const falseGroups = groups.filter(
      (g) => new Set(g.map((id) => sceneOf.get(id))).size > 1,
    ).length;
    const foundKeys = new Set(groups.map(key));
    const missed = expected.filter((g) => !foundKeys.has(key(g))).length;
    let linked = 0;
    let correct = 0;
    for (const g of groups) {
      for (let i = 0; i < g.length; i++) {
        for (let j = i + 1; j < g.length; j++) {
          linked++;
          if (sceneOf.get(g[i] as string) === sceneOf.get(g[j] as string)) correct++;
        }
      }
    }
    const reference = components(
      ids,
      allPairs.filter((p) => p.score >= threshold).map((p) => [p.a, p.b] as [string, string]),
    );
    const referenceKeys = new Set(reference.map(key));
    const sameAsExact =
      groups.length === reference.length && groups.every((g) => referenceKeys.has(key(g)));
    rows.push({
      threshold,
      found: groups.length,
      exact,
      false: falseGroups,
      missed,
      pairPrecision: linked === 0 ? 1 : correct / linked,
      pairRecall: correct / truePairs,
      sameAsAllPairs: sameAsExact,
      seconds: Number(seconds.toFixed(2)),
    });
  }
  if (values.json) {
    process.stdout.write(
      `${JSON.stringify({ backend: bench.backend, items: ids.length, scenes: count, trueGroups: expected.length, rows })}\n`,
    );
  } else {
    process.stdout.write(
      `${ids.length} items: ${count} unseen synthetic scenes (seed ${seed}) + copies; ${expected.length} true groups (${expected.filter((g) => g.length === 3).length} of 3); ${bench.backend}; demo model; ${bench.settings.duplicateNeighbours} ANN neighbours per item\n`,
    );
    process.stdout.write(
      "threshold  found  exact  false  missed  pair-P  pair-R  =all-pairs  seconds\n",
    );
    for (const r of rows) {
      process.stdout.write(
        `${r.threshold.toFixed(2).padStart(9)}${String(r.found).padStart(7)}${String(r.exact).padStart(7)}${String(r.false).padStart(7)}${String(r.missed).padStart(8)}${r.pairPrecision.toFixed(3).padStart(8)}${r.pairRecall.toFixed(3).padStart(8)}${String(r.sameAsAllPairs).padStart(12)}${r.seconds.toFixed(2).padStart(9)}\n`,
      );
    }
  }
} finally {
  await bench.close();
}
