/** The Encoder's behaviour around the model: batching, normalisation, per-image errors, stats. */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import sharp from "sharp";
import { AppError } from "../src/core/errors.ts";
import { DEFAULT_SETTINGS } from "../src/core/settings.ts";
import { Encoder, l2NormalizedRow, padTokenBatch } from "../src/encode/encoder.ts";
import { cudaUnavailableReason } from "../src/encode/session.ts";
import { sampleImage } from "./helpers/demo-model.ts";
import { tinyClipModelDir, tinyClipPixels } from "./helpers/tiny-clip.ts";

function norm(v: Float32Array): number {
  return Math.sqrt(v.reduce((s, x) => s + x * x, 0));
}

describe("helpers", () => {
  test("l2NormalizedRow normalises one row of a matrix and leaves zero rows at zero", () => {
    const data = new Float32Array([9, 9, 3, 4, 0, 0]);
    assert.deepEqual(
      Array.from(l2NormalizedRow(data, 2, 2)),
      [0.6000000238418579, 0.800000011920929],
    );
    assert.deepEqual(Array.from(l2NormalizedRow(data, 4, 2)), [0, 0]);
  });

  test("padTokenBatch pads with zeros to the longest row, not to the context length", () => {
    const { data, width } = padTokenBatch([
      Int32Array.from([49406, 320, 49407]),
      Int32Array.from([49406, 49407]),
    ]);
    assert.equal(width, 3);
    assert.deepEqual(Array.from(data, Number), [49406, 320, 49407, 49406, 49407, 0]);
  });
});

describe("Encoder on a tiny CLIP made by the tests", () => {
  let encoder: Encoder;
  const settings = { ...DEFAULT_SETTINGS, threads: 2, imageBatchSize: 3, textBatchSize: 2 };

  let modelDir = "";

  before(async () => {
    modelDir = await tinyClipModelDir();
    encoder = await Encoder.load(modelDir, settings, { logger: { info() {}, warn() {} } });
  });
  after(async () => {
    await encoder?.close();
  });

  test("text embeddings are unit vectors in input order across several batches", async () => {
    const texts = ["a cat", "", "a very long description ".repeat(5), "a dog", "a cat"];
    const out = await encoder.embedTexts(texts);
    assert.equal(out.length, texts.length);
    for (const e of out) {
      assert.equal(e.embedding.length, encoder.dims);
      assert.ok(Math.abs(norm(e.embedding) - 1) < 1e-5);
    }
    assert.deepEqual(out[0]?.embedding, out[4]?.embedding);
    assert.notDeepEqual(out[0]?.embedding, out[3]?.embedding);
    assert.equal(out[1]?.tokens, 2);
    assert.deepEqual(await encoder.embedTexts([]), []);
  });

  test("a text over the context length reports its full token count and truncation", async () => {
    // "circle" is one token of the demo vocabulary (the tiny model's): 400 of them, with start
    // and end, are 402.
    const [e] = await encoder.embedTexts(["circle ".repeat(400)]);
    assert.equal(e?.tokens, 402);
    assert.equal(e?.truncated, true);
  });

  test("pixels of the wrong size are rejected with invalid_pixels", async () => {
    await assert.rejects(encoder.embedPixels([new Float32Array(10)]), { code: "invalid_pixels" });
  });

  test("one bad image does not fail the others", async () => {
    const good = sampleImage("hopper.jpg");
    const png = await sharp({
      create: { width: 40, height: 30, channels: 3, background: { r: 200, g: 10, b: 10 } },
    })
      .png()
      .toBuffer();
    const results = await encoder.embedImageBytes([
      good,
      Buffer.from("definitely not an image"),
      Buffer.alloc(0),
      png,
      good.subarray(0, 200),
    ]);
    assert.equal(results.length, 5);
    const [a, b, c, d, e] = results;
    assert.ok(a?.ok && d?.ok);
    assert.equal(d.width, 40);
    assert.equal(d.height, 30);
    assert.ok(Math.abs(norm(a.embedding) - 1) < 1e-5);
    assert.ok(b && !b.ok && c && !c.ok && e && !e.ok);
    assert.equal(c.error.code, "image_empty");
    for (const bad of [b, e]) assert.match(bad.error.code, /^(unsupported_image|image_corrupt)$/);
    const [again] = await encoder.embedImageBytes([good]);
    assert.ok(again?.ok);
    assert.deepEqual(again.embedding, a.embedding);
  });

  test("stats count the work and name the device that runs", async () => {
    const before = encoder.stats();
    await encoder.embedTexts(["one", "two"]);
    const stats = encoder.stats();
    assert.equal(stats.textsEncoded, before.textsEncoded + 2);
    assert.equal(stats.device, "cpu");
    assert.equal(stats.requestedDevice, "cpu");
    assert.equal(stats.imageBatchSize, 3);
    assert.equal(stats.dims, 64);
    assert.equal(stats.modelId, encoder.config.model_id);
  });

  const cudaHere = cudaUnavailableReason() === undefined;
  test("device auto runs on the CPU here and says so", {
    skip: cudaHere ? "this host has the CUDA build of onnxruntime-node" : false,
  }, async () => {
    const lines: string[] = [];
    const auto = await Encoder.load(
      modelDir,
      { ...settings, device: "auto" },
      { logger: { info: (m) => lines.push(m), warn: (m) => lines.push(m) } },
    );
    try {
      assert.equal(auto.stats().device, "cpu");
      assert.equal(auto.stats().requestedDevice, "auto");
      // Each tower resolves `auto` in its own worker and says so.
      for (const file of ["vision.onnx", "text.onnx"]) {
        assert.ok(
          lines.some((l) => l.startsWith(`device auto: ${file} runs on the CPU`)),
          file,
        );
      }
    } finally {
      await auto.close();
    }
  });

  test("the worker threads and the calling thread give identical embeddings", async () => {
    const local = await Encoder.load(modelDir, settings, { inWorker: false });
    try {
      const texts = ["a cat", "a long caption about a harbour at dawn ".repeat(4)];
      const pixels = [tinyClipPixels()];
      assert.deepEqual(await local.embedTexts(texts), await encoder.embedTexts(texts));
      assert.deepEqual(await local.embedPixels(pixels), await encoder.embedPixels(pixels));
    } finally {
      await local.close();
    }
  });

  test("the event loop keeps turning while the worker encodes a batch", async () => {
    const pixels = tinyClipPixels();
    let turns = 0;
    let done = false;
    const spin = (): void => {
      turns++;
      if (!done) setImmediate(spin);
    };
    setImmediate(spin);
    // One batch is one synchronous session.run: on the calling thread (inWorker: false) the
    // loop turned once during it when measured, in the worker about a thousand times.
    await encoder.embedPixels([pixels, pixels, pixels]);
    done = true;
    assert.ok(turns > 10, `event loop turns during the batch: ${turns}`);
  });

  test("a model whose ONNX names disagree with config.json fails to load with model_invalid", async () => {
    const source = modelDir;
    const dir = mkdtempSync(path.join(tmpdir(), "encode-bad-model-"));
    try {
      const config = JSON.parse(readFileSync(path.join(source, "config.json"), "utf8"));
      for (const file of [config.tokenizer.file, config.vision.file, config.text.file]) {
        symlinkSync(path.join(source, file), path.join(dir, file));
      }
      config.vision.input = "pixels";
      writeFileSync(path.join(dir, "config.json"), JSON.stringify(config));
      for (const inWorker of [true, false]) {
        await assert.rejects(Encoder.load(dir, settings, { inWorker }), (error: unknown) => {
          assert.ok(error instanceof AppError);
          assert.equal(error.code, "model_invalid");
          assert.match(error.message, /"pixels".*pixel_values/);
          return true;
        });
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("after close, calls fail with encoder_closed", async () => {
    const other = await Encoder.load(modelDir, settings);
    await other.close();
    await assert.rejects(other.embedTexts(["x"]), { code: "encoder_closed" });
  });
});
