/** Each tower in its own worker thread: same results, queries beside image batches, clean close. */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { AppError } from "../src/core/errors.ts";
import { DEFAULT_SETTINGS } from "../src/core/settings.ts";
import { Encoder, type EncoderOptions } from "../src/encode/encoder.ts";
import { tinyClipModelDir, tinyClipPixels } from "./helpers/tiny-clip.ts";

const quiet = { info() {}, warn() {} };
const settings = { ...DEFAULT_SETTINGS, threads: 1, imageBatchSize: 2, textBatchSize: 2 };

/** Worker threads alive in this process (process.report lists each one). */
function workerCount(): number {
  return (process.report.getReport() as unknown as { workers: unknown[] }).workers.length;
}

/** The tiny CLIP the tests make (helpers/tiny-clip.ts): 224-pixel images, so batches take a while. */
let modelDir = "";

function load(options: EncoderOptions = {}, overrides = {}): Promise<Encoder> {
  return Encoder.load(modelDir, { ...settings, ...overrides }, { logger: quiet, ...options });
}

/** A copy of the tiny model directory (by symlinks) whose config.json has `edit` applied. */
function editedModel(edit: (config: Record<string, { input: string }>) => void): string {
  const source = modelDir;
  const dir = mkdtempSync(path.join(tmpdir(), "encode-workers-"));
  const config = JSON.parse(readFileSync(path.join(source, "config.json"), "utf8"));
  for (const file of [config.tokenizer.file, config.vision.file, config.text.file]) {
    symlinkSync(path.join(source, file), path.join(dir, file));
  }
  edit(config);
  writeFileSync(path.join(dir, "config.json"), JSON.stringify(config));
  return dir;
}

describe("Encoder with a worker per tower", () => {
  let split: Encoder;
  let pixels: Float32Array[];

  before(async () => {
    modelDir = await tinyClipModelDir();
    split = await load();
    pixels = [0, 1, 2, 3].map(tinyClipPixels);
  });
  after(async () => {
    await split?.close();
  });

  test("both towers give exactly the calling thread's results", async () => {
    const local = await load({ inWorker: false });
    try {
      const texts = ["a cat", "", "a long caption about a harbour at dawn ".repeat(6), "a dog"];
      const images = [...pixels, ...pixels];
      assert.deepEqual(await split.embedTexts(texts), await local.embedTexts(texts));
      assert.deepEqual(await split.embedPixels(images), await local.embedPixels(images));
      const [text, image] = await Promise.all([split.embedTexts(texts), split.embedPixels(images)]);
      assert.deepEqual(text, await local.embedTexts(texts));
      assert.deepEqual(image, await local.embedPixels(images));
    } finally {
      await local.close();
    }
  });

  // One call of 48 images is one long session.run in the vision worker; the query is sent after
  // it and, with its own worker, must not wait for it. The shared-worker layout shows the test
  // can fail: there the query is queued behind the batch.
  for (const [layout, options, queryFirst] of [
    ["its own worker", {}, true],
    ["a shared worker", { sharedWorker: true }, false],
  ] as const) {
    test(`a query sent during a long image batch, text tower in ${layout}`, async () => {
      const encoder = await load(options, { imageBatchSize: 48 });
      try {
        const batch = Array.from(
          { length: 48 },
          (_, i) => pixels[i % pixels.length] as Float32Array,
        );
        const finished: string[] = [];
        const ingest = encoder.embedPixels(batch).then(() => finished.push("batch"));
        const query = encoder.embedTexts(["a red car"]).then(() => finished.push("query"));
        await Promise.all([ingest, query]);
        assert.deepEqual(finished, queryFirst ? ["query", "batch"] : ["batch", "query"]);
      } finally {
        await encoder.close();
      }
    });
  }

  test("load starts one worker per tower and close ends both", async () => {
    const before = workerCount();
    const encoder = await load();
    assert.equal(workerCount(), before + 2);
    await encoder.embedTexts(["warm"]);
    await encoder.close();
    assert.equal(workerCount(), before);
    await assert.rejects(encoder.embedTexts(["x"]), { code: "encoder_closed" });
    await assert.rejects(encoder.embedPixels(pixels), { code: "encoder_closed" });
    await encoder.close();
  });

  test("close waits for work in flight on both towers", async () => {
    const before = workerCount();
    const encoder = await load();
    // One batch each (a later batch of a call still queued at close fails with encoder_closed).
    const text = encoder.embedTexts(["a harbour at dawn"]);
    const images = encoder.embedPixels(pixels.slice(0, settings.imageBatchSize));
    await encoder.close();
    assert.equal(workerCount(), before);
    assert.equal((await text).length, 1);
    assert.equal((await images).length, Math.min(pixels.length, settings.imageBatchSize));
  });

  for (const tower of ["vision", "text"] as const) {
    test(`a ${tower} tower that cannot start fails the load and leaves no worker`, async () => {
      const dir = editedModel((config) => {
        (config[tower] as { input: string }).input = "wrong_name";
      });
      const before = workerCount();
      try {
        await assert.rejects(Encoder.load(dir, settings, { logger: quiet }), (error: unknown) => {
          assert.ok(error instanceof AppError);
          assert.equal(error.code, "model_invalid");
          assert.match(error.message, new RegExp(`^${tower} tower .*"wrong_name"`));
          return true;
        });
        assert.equal(workerCount(), before);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});
