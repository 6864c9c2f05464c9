/**
 * Conformance of the TypeScript engine with the official Long-CLIP code, on the reference
 * checkpoint exported through the training package (tinyModelDir) and the official outputs
 * in ../shared/reference/longclip-tiny/reference.json.
 *
 * Relative difference of a vector a against the reference b: max_i |a_i - b_i| / max_i |b_i|.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { DEFAULT_SETTINGS } from "../src/core/settings.ts";
import { Encoder } from "../src/encode/encoder.ts";
import { preprocessImage } from "../src/preprocess/index.ts";
import { relativeDifference } from "./convert-helpers.ts";
import {
  loadReference,
  loadReferencePixels,
  type Reference,
  SKIP_WITHOUT_SHARED,
  TINY_DIR,
  tinyModelDir,
} from "./helpers/reference.ts";

const TEXT_TOLERANCE = 1e-5;
const PIXELS_TOLERANCE = 1e-4;
/** Pixel target of the issue: mean |ours - official| per value after normalisation. */
const PIXEL_TARGET = 0.01;

function normalised(v: ArrayLike<number>): Float64Array {
  let sum = 0;
  for (let i = 0; i < v.length; i++) sum += (v[i] as number) ** 2;
  const norm = Math.sqrt(sum);
  return Float64Array.from(v, (x) => x / norm);
}

function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const na = normalised(a);
  const nb = normalised(b);
  let dot = 0;
  for (let i = 0; i < na.length; i++) dot += (na[i] as number) * (nb[i] as number);
  return dot;
}

const settings = { ...DEFAULT_SETTINGS, device: "cpu" as const, threads: 2 };
let reference: Reference;
let encoder: Encoder;
let modelDir: string;

describe("conformance with the official Long-CLIP outputs", { skip: SKIP_WITHOUT_SHARED }, () => {
  before(async () => {
    reference = loadReference();
    modelDir = tinyModelDir();
    encoder = await Encoder.load(modelDir, settings);
  });
  after(async () => {
    await encoder?.close();
  });

  test("model config matches the reference dimensions", () => {
    assert.equal(encoder.dims, reference.config.embed_dim);
    assert.equal(encoder.config.image_resolution, reference.config.image_resolution);
    assert.equal(encoder.config.context_length, reference.config.context_length);
    assert.equal(encoder.stats().device, "cpu");
  });

  test("token ids equal the official ones on every reference text", () => {
    let truncatedSeen = 0;
    for (const ref of reference.texts) {
      const tok = encoder.tokenize(ref.text);
      assert.deepEqual(
        Array.from(tok.ids),
        ref.ids_248,
        `ids of ${JSON.stringify(ref.text.slice(0, 60))}`,
      );
      assert.equal(tok.tokens, ref.ids.length);
      assert.equal(tok.truncated, ref.ids.length > reference.config.context_length);
      if (tok.truncated) truncatedSeen++;
    }
    assert.ok(truncatedSeen >= 1, "the reference includes a text longer than the context");
    console.log(`token ids: ${reference.texts.length}/${reference.texts.length} texts exact`);
  });

  test(`raw text.onnx output within ${TEXT_TOLERANCE} relative of encode_text`, async () => {
    const rows = reference.texts.map((r) => encoder.tokenize(r.text).ids);
    // One zero-padded batch, so this also checks that padding leaves each row unchanged.
    const raw = await encoder.rawText(rows);
    let worst = 0;
    reference.texts.forEach((ref, i) => {
      worst = Math.max(worst, relativeDifference(raw[i] as Float32Array, ref.embedding));
    });
    console.log(`text raw: max relative difference ${worst.toExponential(3)}`);
    assert.ok(worst <= TEXT_TOLERANCE, `max relative difference ${worst}`);
  });

  test(`normalised text embeddings within ${TEXT_TOLERANCE} relative of the normalised reference`, async () => {
    const embedded = await encoder.embedTexts(reference.texts.map((r) => r.text));
    let worst = 0;
    reference.texts.forEach((ref, i) => {
      const e = embedded[i];
      assert.ok(e);
      assert.equal(e.tokens, ref.ids.length);
      worst = Math.max(worst, relativeDifference(e.embedding, normalised(ref.embedding)));
    });
    console.log(`text normalised: max relative difference ${worst.toExponential(3)}`);
    assert.ok(worst <= TEXT_TOLERANCE, `max relative difference ${worst}`);
  });

  test(`image embeddings from the official pixels within ${PIXELS_TOLERANCE} relative`, async () => {
    const pixels = reference.images.map(loadReferencePixels);
    const size = pixels[0]?.length ?? 0;
    const batch = new Float32Array(pixels.length * size);
    pixels.forEach((p, i) => {
      batch.set(p, i * size);
    });
    const raw = await encoder.rawVision(batch, pixels.length);
    const embedded = await encoder.embedPixels(pixels);
    let worstRaw = 0;
    let worstNorm = 0;
    reference.images.forEach((ref, i) => {
      worstRaw = Math.max(worstRaw, relativeDifference(raw[i] as Float32Array, ref.embedding));
      worstNorm = Math.max(
        worstNorm,
        relativeDifference(embedded[i] as Float32Array, normalised(ref.embedding)),
      );
    });
    console.log(
      `image from pixels: max relative difference raw ${worstRaw.toExponential(3)}, normalised ${worstNorm.toExponential(3)}`,
    );
    assert.ok(worstRaw <= PIXELS_TOLERANCE, `raw ${worstRaw}`);
    assert.ok(worstNorm <= PIXELS_TOLERANCE, `normalised ${worstNorm}`);
  });

  test("image embeddings from the image files (our decoding and resizing)", async () => {
    const files = reference.images.map((ref) =>
      readFileSync(path.join(TINY_DIR, "images", ref.file)),
    );
    const results = await encoder.embedImageBytes(files);
    const rows: { file: string; meanAbsPixelDiff: number; cosine: number }[] = [];
    for (const [i, ref] of reference.images.entries()) {
      const result = results[i];
      assert.ok(result?.ok, `${ref.file}: ${result && !result.ok ? result.error.message : ""}`);
      const ours = await preprocessImage(files[i] as Buffer, {
        resolution: encoder.config.image_resolution,
        mean: encoder.config.image_mean,
        std: encoder.config.image_std,
        maxImageBytes: settings.maxImageBytes,
        maxImagePixels: settings.maxImagePixels,
      });
      const official = loadReferencePixels(ref);
      let sum = 0;
      for (let k = 0; k < official.length; k++) {
        sum += Math.abs((ours.pixels[k] as number) - (official[k] as number));
      }
      rows.push({
        file: ref.file,
        meanAbsPixelDiff: sum / official.length,
        cosine: cosine(result.embedding, ref.embedding),
      });
    }
    console.table(rows);
    for (const row of rows) {
      if (row.meanAbsPixelDiff <= PIXEL_TARGET) {
        assert.ok(row.cosine >= 0.999, `${row.file}: cosine ${row.cosine}`);
      } else {
        // Preprocessing that misses the pixel target is reported by the preprocess tests; here
        // only gross errors fail. Measured on these images with the official pixels altered:
        // swapped channels give cosines 0.24-0.87, skipping mean/std 0.50-0.76, a crop off
        // by 4 pixels 0.29-0.9999.
        assert.ok(row.cosine >= 0.99, `${row.file}: cosine ${row.cosine}`);
      }
    }
  });

  test("a batch of texts of very different lengths embeds each text as it would alone", async () => {
    const long = reference.texts.reduce((a, b) => (b.ids.length > a.ids.length ? b : a)).text;
    const texts = [
      "",
      "a dog",
      long,
      "a red car parked next to a tall building at night",
      long.slice(0, 300),
    ];
    const together = await encoder.embedTexts(texts);
    for (const [i, text] of texts.entries()) {
      const [alone] = await encoder.embedTexts([text]);
      assert.ok(alone && together[i]);
      const diff = relativeDifference(together[i].embedding, alone.embedding);
      assert.ok(diff <= 1e-6, `text ${i}: relative difference ${diff}`);
    }
  });

  test("image batch sizes 1 and 8 give the same embeddings", async () => {
    const pixels = reference.images.map(loadReferencePixels);
    const single = await Encoder.load(modelDir, { ...settings, imageBatchSize: 1 });
    try {
      const one = await single.embedPixels(pixels);
      const eight = await encoder.embedPixels(pixels);
      assert.equal(encoder.stats().imageBatchSize, 8);
      for (let i = 0; i < pixels.length; i++) {
        const diff = relativeDifference(one[i] as Float32Array, eight[i] as Float32Array);
        assert.ok(diff <= 1e-6, `image ${i}: relative difference ${diff}`);
      }
    } finally {
      await single.close();
    }
  });

  test("throughput on this machine (reported, not asserted)", async () => {
    const pixels = reference.images.map(loadReferencePixels);
    const images = Array.from({ length: 64 }, (_, i) => pixels[i % pixels.length] as Float32Array);
    await encoder.embedPixels(images.slice(0, 8));
    let start = performance.now();
    await encoder.embedPixels(images);
    const imageRate = images.length / ((performance.now() - start) / 1000);
    const texts = Array.from(
      { length: 256 },
      (_, i) => reference.texts[i % reference.texts.length]?.text ?? "",
    );
    start = performance.now();
    await encoder.embedTexts(texts);
    const textRate = texts.length / ((performance.now() - start) / 1000);
    console.log(
      `throughput (cpu, threads ${settings.threads}): ${imageRate.toFixed(1)} images/s at batch ${settings.imageBatchSize}, ` +
        `${textRate.toFixed(1)} texts/s at batch ${settings.textBatchSize} (reference texts)`,
    );
    assert.ok(imageRate > 0 && textRate > 0);
  });
});
