/**
 * The TypeScript converter against the official Long-CLIP outputs (../shared/reference), run
 * with no Python reachable: `longclip export` of longclip-tiny.pt, of its Hugging Face
 * rewrite longclip-tiny-hf/ and of openai-tiny.pt, each loaded by the Encoder like any model.
 *
 * longclip-tiny.pt and longclip-tiny-hf hold the weights reference.json was computed with:
 * text embeddings must match to 1e-5 relative, images from the official pixels to 1e-4.
 * openai-tiny.pt holds the fp32 weights that longclip-tiny.pt is the fp16 cast of (and 77
 * positions): its towers match the reference within that cast, and exactly once the weights
 * are rounded the same way (checked through the converter's own modules).
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import * as ort from "onnxruntime-node";
import type { ClipWeights } from "../src/convert/clip-spec.ts";
import { openOfficialCheckpoint } from "../src/convert/official.ts";
import { textGraph, visionGraph } from "../src/convert/onnx-towers.ts";
import { writeOnnxModel } from "../src/convert/onnx-writer.ts";
import { DEFAULT_SETTINGS } from "../src/core/settings.ts";
import { Encoder } from "../src/encode/encoder.ts";
import { relativeDifference, roundToHalf, runWithoutPython } from "./convert-helpers.ts";
import {
  CLIP_VOCAB,
  loadReference,
  loadReferencePixels,
  REFERENCE_DIR,
  type Reference,
  SKIP_WITHOUT_SHARED,
  TINY_DIR,
} from "./helpers/reference.ts";

const TEXT_TOLERANCE = 1e-5;
const PIXELS_TOLERANCE = 1e-4;
/** What the official fp16 cast of the OpenAI weights moves the tiny model's outputs by (measured 3.5e-3). */
const FP16_CAST_TOLERANCE = 1e-2;
const settings = { ...DEFAULT_SETTINGS, device: "cpu" as const, threads: 2 };

const INPUTS = {
  "longclip-tiny.pt": [
    "--checkpoint",
    path.join(TINY_DIR, "longclip-tiny.pt"),
    "--vocab",
    CLIP_VOCAB,
  ],
  "longclip-tiny-hf/": ["--checkpoint", path.join(REFERENCE_DIR, "longclip-tiny-hf")],
  "openai-tiny.pt": ["--checkpoint", path.join(TINY_DIR, "openai-tiny.pt"), "--vocab", CLIP_VOCAB],
} as const;

let reference: Reference;
let workDir: string;

async function exportModel(input: keyof typeof INPUTS): Promise<string> {
  const out = path.join(workDir, input.replace(/[/.]/g, "-"));
  const run = await runWithoutPython(["export", ...INPUTS[input], "--out", out]);
  assert.equal(run.code, 0, `export ${input} failed: ${run.stderr}`);
  assert.match(run.stdout, /checked against the TypeScript forward/);
  return out;
}

function pixelBatch(): { data: Float32Array; count: number } {
  const pixels = reference.images.map(loadReferencePixels);
  const size = pixels[0]?.length ?? 0;
  const data = new Float32Array(pixels.length * size);
  for (const [i, p] of pixels.entries()) data.set(p, i * size);
  return { data, count: pixels.length };
}

async function worstText(encoder: Encoder, texts: Reference["texts"]): Promise<number> {
  const raw = await encoder.rawText(texts.map((t) => Int32Array.from(t.ids_248)));
  return Math.max(...texts.map((t, i) => relativeDifference(raw[i] as Float32Array, t.embedding)));
}

async function worstImage(encoder: Encoder): Promise<number> {
  const { data, count } = pixelBatch();
  const raw = await encoder.rawVision(data, count);
  return Math.max(
    ...reference.images.map((image, i) =>
      relativeDifference(raw[i] as Float32Array, image.embedding),
    ),
  );
}

describe("longclip export (TypeScript, no Python) reproduces the official outputs", {
  skip: SKIP_WITHOUT_SHARED,
}, () => {
  before(() => {
    reference = loadReference();
    workDir = mkdtempSync(path.join(os.tmpdir(), "convert-conformance-"));
  });
  after(() => rmSync(workDir, { recursive: true, force: true }));

  for (const input of ["longclip-tiny.pt", "longclip-tiny-hf/"] as const) {
    test(`${input}: text within ${TEXT_TOLERANCE}, images from the official pixels within ${PIXELS_TOLERANCE}`, async () => {
      const encoder = await Encoder.load(await exportModel(input), settings);
      try {
        assert.equal(encoder.config.context_length, 248);
        assert.equal(encoder.config.model_type, "longclip");
        const text = await worstText(encoder, reference.texts);
        const image = await worstImage(encoder);
        console.log(
          `${input}: max relative difference text ${text.toExponential(2)}, image ${image.toExponential(2)}`,
        );
        assert.ok(text <= TEXT_TOLERANCE, `text ${text}`);
        assert.ok(image <= PIXELS_TOLERANCE, `image ${image}`);
        // token ids through the copied tokenizer equal the official ones
        for (const ref of reference.texts)
          assert.deepEqual(Array.from(encoder.tokenize(ref.text).ids), ref.ids_248);
      } finally {
        await encoder.close();
      }
    });
  }

  test("openai-tiny.pt: a 77-position clip model within the official fp16 cast of the reference", async () => {
    const encoder = await Encoder.load(await exportModel("openai-tiny.pt"), settings);
    try {
      assert.equal(encoder.config.context_length, 77);
      assert.equal(encoder.config.model_type, "clip");
      // positions below 20 are the same rows in both models (KPS keeps them)
      const short = reference.texts.filter((t) => t.ids_248.length <= 20);
      assert.ok(short.length >= 1, "the reference has short texts");
      const text = await worstText(encoder, short);
      const image = await worstImage(encoder);
      console.log(
        `openai-tiny.pt: max relative difference short texts ${text.toExponential(2)}, image ${image.toExponential(2)} (fp16 cast)`,
      );
      assert.ok(
        text <= FP16_CAST_TOLERANCE && image <= FP16_CAST_TOLERANCE,
        `text ${text}, image ${image}`,
      );
    } finally {
      await encoder.close();
    }
  });
});

/**
 * What the official code stores in fp16 (convert_weights: conv and linear weights and biases,
 * the two projections); the text positions pass through fp16 in its KPS stretch.
 */
const HALF_PRECISION =
  /(attn\.in_proj_|attn\.out_proj\.|mlp\.c_fc\.|mlp\.c_proj\.|^visual\.conv1\.weight$|^visual\.proj$|^text_projection$|^text_positions$)/;

/** `weights` with the parameters the official load_from_clip casts rounded to fp16. */
function castLikeOfficial(weights: ClipWeights): ClipWeights {
  return {
    spec: weights.spec,
    close: () => weights.close(),
    read: async (name) => {
      const values = await weights.read(name);
      return HALF_PRECISION.test(name) ? values.map(roundToHalf) : values;
    },
  };
}

describe("openai-tiny.pt read by the converter, cast like the official code", {
  skip: SKIP_WITHOUT_SHARED,
}, () => {
  test("its 77-row position table equals reference.json's kps.source_positional_embedding", async () => {
    const weights = await openOfficialCheckpoint(path.join(TINY_DIR, "openai-tiny.pt"));
    try {
      const kps = JSON.parse(readFileSync(path.join(TINY_DIR, "reference.json"), "utf8")).kps as {
        source_positional_embedding: number[][];
      };
      const positions = await weights.read("text_positions");
      assert.deepEqual(
        Array.from(positions),
        kps.source_positional_embedding.flat().map(Math.fround),
      );
    } finally {
      weights.close();
    }
  });

  test(`towers of the fp16-rounded weights: images within ${PIXELS_TOLERANCE}, short texts within ${TEXT_TOLERANCE}`, async () => {
    const reference = loadReference();
    const dir = mkdtempSync(path.join(os.tmpdir(), "openai-half-"));
    const weights = castLikeOfficial(
      await openOfficialCheckpoint(path.join(TINY_DIR, "openai-tiny.pt")),
    );
    try {
      await writeOnnxModel(path.join(dir, "vision.onnx"), visionGraph(weights, "test"));
      await writeOnnxModel(path.join(dir, "text.onnx"), textGraph(weights, "test"));
      const vision = await ort.InferenceSession.create(path.join(dir, "vision.onnx"));
      const textSession = await ort.InferenceSession.create(path.join(dir, "text.onnx"));
      let image = 0;
      for (const ref of reference.images) {
        const out = await vision.run({
          pixel_values: new ort.Tensor("float32", loadReferencePixels(ref), [1, ...ref.shape]),
        });
        image = Math.max(
          image,
          relativeDifference(out.image_embeds?.data as Float32Array, ref.embedding),
        );
      }
      let text = 0;
      for (const ref of reference.texts.filter((t) => t.ids_248.length <= 20)) {
        const ids = new ort.Tensor("int64", BigInt64Array.from(ref.ids_248, BigInt), [
          1,
          ref.ids_248.length,
        ]);
        const out = await textSession.run({ input_ids: ids });
        text = Math.max(
          text,
          relativeDifference(out.text_embeds?.data as Float32Array, ref.embedding),
        );
      }
      console.log(
        `openai-tiny.pt cast to fp16: max relative difference image ${image.toExponential(2)}, short texts ${text.toExponential(2)}`,
      );
      await vision.release();
      await textSession.release();
      assert.ok(image <= PIXELS_TOLERANCE, `image ${image}`);
      assert.ok(text <= TEXT_TOLERANCE, `text ${text}`);
    } finally {
      weights.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
