/**
 * bench:urban end to end on a tiny synthetic Urban1k-layout set and the random-weight reference
 * model: recall is near chance, so only the shape of the output and the exclusions are checked.
 */
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { loadSettings, PROJECT_ROOT } from "../src/core/settings.ts";
import { Encoder } from "../src/encode/encoder.ts";
import { runUrbanBench } from "../tools/eval/bench.ts";
import { retrievalRecall } from "../tools/eval/recall.ts";
import { loadUrbanDataset } from "../tools/eval/urban1k.ts";
import { demoModelWithoutGallery } from "./helpers/demo-model.ts";

const COUNT = 10;
let root: string;
let data: string;
let model: string;

function bench(args: string[]) {
  return spawnSync(
    process.execPath,
    ["--import", "tsx", path.join(PROJECT_ROOT, "tools", "eval", "bench-urban.ts"), ...args],
    { cwd: PROJECT_ROOT, encoding: "utf8", env: { ...process.env, LONGCLIP_THREADS: "1" } },
  );
}

function assertRecall(value: unknown, n: number): void {
  assert.deepEqual(Object.keys(value as object).sort(), ["r1", "r10", "r5"]);
  for (const x of Object.values(value as Record<string, number>)) {
    assert.ok(x >= 0 && x <= 1, `${x} is a fraction`);
    assert.ok(Number.isInteger(Math.round(x * n * 1e6) / 1e6), `${x} is a multiple of 1/${n}`);
  }
}

describe("bench:urban", () => {
  before(async () => {
    model = demoModelWithoutGallery();
    root = await mkdtemp(path.join(tmpdir(), "bench-urban-"));
    data = path.join(root, "urban");
    execFileSync(
      path.join(PROJECT_ROOT, "scripts", "python"),
      ["-m", "training", "synth", "--out", data, "--count", String(COUNT), "--seed", "3"].concat([
        "--layout",
        "urban1k",
        "--size",
        "64",
      ]),
      { cwd: PROJECT_ROOT, stdio: ["ignore", "ignore", "inherit"] },
    );
    // One image that does not decode, one caption without an image.
    await writeFile(path.join(data, "image", "zz-broken.jpg"), "not a jpeg at all");
    await writeFile(path.join(data, "caption", "zz-broken.txt"), "A broken image.\n");
    await writeFile(path.join(data, "caption", "zz-orphan.txt"), "No image for this one.\n");
  });

  after(async () => {
    if (root) await rm(root, { recursive: true, force: true });
  });

  it("prints the table and writes JSON, the sweep and its chart", async () => {
    const json = path.join(root, "result.json");
    const chart = path.join(root, "sweep.png");
    const run = bench(
      [
        "--data",
        data,
        "--model",
        model,
        "--json",
        json,
        "--sweep",
        "--budgets",
        "5,20,77,248",
      ].concat(["--chart", chart, "--batch-size", "4"]),
    );
    assert.equal(run.status, 0, run.stderr);
    assert.match(run.stdout, /image→text\s+\d+\.\d%\s+\d+\.\d%\s+\d+\.\d%/);
    assert.match(run.stdout, /text→image\s+\d+\.\d%/);
    assert.match(
      run.stdout,
      /2 pairs left out: zz-orphan \(image_missing\), zz-broken \(image_unreadable\)/,
    );
    const result = JSON.parse(await readFile(json, "utf8"));
    assert.equal(result.n, COUNT);
    assertRecall(result.i2t, COUNT);
    assertRecall(result.t2i, COUNT);
    assert.equal(result.max_tokens, 248);
    assert.deepEqual(
      result.excluded.map((e: { name: string; reason: string }) => [e.name, e.reason]),
      [
        ["zz-orphan", "image_missing"],
        ["zz-broken", "image_unreadable"],
      ],
    );
    assert.deepEqual(
      result.sweep.map((p: { max_tokens: number }) => p.max_tokens),
      [5, 20, 77, 248],
    );
    for (const p of result.sweep) {
      assert.ok(p.i2t_r1 >= 0 && p.i2t_r1 <= 1 && p.t2i_r1 >= 0 && p.t2i_r1 <= 1);
    }
    // Every synthetic caption is longer than 20 tokens and none is longer than 248.
    assert.equal(result.sweep[0].cut, 1);
    assert.equal(result.sweep[3].cut, 0);
    assert.equal(result.sweep[3].i2t_r1, result.i2t.r1);
    const png = await readFile(chart);
    assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  });

  it("gives the recall of the encoder's own embedTexts/embedImageBytes path", async () => {
    const settings = loadSettings({ device: "cpu", threads: 1, modelDir: model });
    const encoder = await Encoder.load(model, settings);
    try {
      const dataset = await loadUrbanDataset(data);
      const result = await runUrbanBench(encoder, dataset, { batchSize: 3 });
      const images = await encoder.embedImageBytes(
        await Promise.all(dataset.pairs.map((p) => readFile(p.imagePath))),
      );
      const texts = await encoder.embedTexts(dataset.pairs.map((p) => p.caption));
      const expected = retrievalRecall(
        images.map((r) => (r.ok ? r.embedding : undefined)),
        texts.map((t) => t.embedding),
      );
      assert.equal(result.n, expected.n);
      assert.deepEqual(result.i2t, expected.i2t);
      assert.deepEqual(result.t2i, expected.t2i);
      // A budget at the context length cuts nothing.
      const same = await runUrbanBench(encoder, dataset, { batchSize: 5, maxTokens: 248 });
      assert.deepEqual([same.i2t, same.t2i], [result.i2t, result.t2i]);
    } finally {
      await encoder.close();
    }
  });

  it("exits with a coded error on a directory without the layout", () => {
    const run = bench(["--data", path.join(root, "missing"), "--model", model]);
    assert.equal(run.status, 1);
    assert.match(run.stderr, /error dataset_invalid: Cannot read the image directory/);
  });

  it("rejects a token budget below 2", () => {
    const run = bench(["--data", data, "--model", model, "--max-tokens", "1"]);
    assert.notEqual(run.status, 0);
    assert.match(run.stderr, /--max-tokens must be an integer of at least 2/);
  });
});
