/**
 * The TypeScript converter's dense output (`longclip export --dense value|final`), without
 * Python: the pooled embedding of a tower with `patch_embeds` is the one without it, the patch
 * output has the grid config.json names, and the model opens as usual. That its values are the
 * Python exporter's is test/convert-python.test.ts's part.
 */
import assert from "node:assert/strict";
import path from "node:path";
import { describe, test } from "node:test";
import * as ort from "onnxruntime-node";
import type { DenseKind } from "../src/model/format.ts";
import { readModelConfig } from "../src/model/read.ts";
import { relativeDifference, runWithoutPython } from "./convert-helpers.ts";
import { TINY_CLIP, tinyClipModelDir, tinyClipPixels } from "./helpers/tiny-clip.ts";

async function runVision(modelDir: string, seed: number): Promise<Record<string, ort.Tensor>> {
  const session = await ort.InferenceSession.create(path.join(modelDir, "vision.onnx"));
  try {
    const side = TINY_CLIP.imageSize;
    const pixels = new ort.Tensor("float32", tinyClipPixels(seed), [1, 3, side, side]);
    return (await session.run({ pixel_values: pixels })) as Record<string, ort.Tensor>;
  } finally {
    await session.release();
  }
}

describe("longclip export --dense (TypeScript converter)", () => {
  for (const kind of ["value", "final"] as DenseKind[]) {
    test(`--dense ${kind}: image_embeds unchanged, patch_embeds [1, 196, 64], vision.dense in config.json`, async () => {
      const plain = await tinyClipModelDir();
      const dense = await tinyClipModelDir(kind);
      const side = TINY_CLIP.imageSize / TINY_CLIP.patchSize;
      assert.deepEqual(readModelConfig(dense).vision.dense, {
        output: "patch_embeds",
        kind,
        grid: [side, side],
      });
      assert.equal(readModelConfig(plain).vision.dense, undefined);
      for (const seed of [0, 1]) {
        const withDense = await runVision(dense, seed);
        const without = await runVision(plain, seed);
        assert.deepEqual(Object.keys(without), ["image_embeds"]);
        const pooled = withDense.image_embeds?.data as Float32Array;
        const reference = without.image_embeds?.data as Float32Array;
        assert.ok(relativeDifference(pooled, reference) <= 1e-6, `seed ${seed}`);
        const patches = withDense.patch_embeds as ort.Tensor;
        assert.deepEqual(patches.dims, [1, side * side, TINY_CLIP.embedDim]);
        const values = patches.data as Float32Array;
        assert.ok(values.every(Number.isFinite));
        // patches differ from one another (not one vector broadcast over the grid)
        const first = values.subarray(0, TINY_CLIP.embedDim);
        const last = values.subarray(values.length - TINY_CLIP.embedDim);
        assert.ok(relativeDifference(last, first) > 1e-3);
      }
    });
  }

  test("--dense with another kind is a usage error naming the kinds", async () => {
    const run = await runWithoutPython([
      "export",
      "--checkpoint",
      "model.pt",
      "--out",
      "out",
      "--dense",
      "mean",
    ]);
    assert.equal(run.code, 2);
    assert.match(run.stderr, /error \[usage\]: --dense must be value, final or none, not "mean"/);
  });
});
