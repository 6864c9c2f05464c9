/**
 * The converter's check of the towers it wrote: ONNX Runtime runs them on one seeded image and
 * one seeded text row (zero-padded after its end token, longer than the 20 kept positions),
 * and the TypeScript forward of the same weights computes the same embeddings without ONNX.
 */
import path from "node:path";
import * as ort from "onnxruntime-node";
import type { ClipWeights } from "./clip-spec.ts";
import { convertError } from "./errors.ts";
import { forwardImage, forwardText } from "./forward.ts";
import { TEXT_INPUT, TEXT_OUTPUT, VISION_INPUT, VISION_OUTPUT } from "./onnx-towers.ts";

export const CHECK_TOLERANCE = 1e-4;
const CHECK_TEXT_TOKENS = 30;
const CHECK_PADDING = 4;

export interface CheckResult {
  /** max |onnx - forward| / max |forward| */
  readonly vision: number;
  readonly text: number;
}

/** mulberry32: a small seeded generator, so a check is repeatable. */
function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function checkInputs(
  weights: ClipWeights,
  seed = 1,
): { pixels: Float32Array; ids: number[] } {
  const { imageResolution: res, vocabSize, contextLength } = weights.spec;
  const random = seeded(seed);
  const pixels = Float32Array.from({ length: 3 * res * res }, () => 4 * random() - 2);
  const tokens = Math.min(contextLength, CHECK_TEXT_TOKENS);
  const ids = [vocabSize - 2];
  while (ids.length < tokens - 1) ids.push(1 + Math.floor(random() * (vocabSize - 3)));
  ids.push(vocabSize - 1);
  const padded = Math.min(contextLength, tokens + CHECK_PADDING);
  while (ids.length < padded) ids.push(0);
  return { pixels, ids };
}

export function relativeDifference(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < expected.length; i++) {
    diff = Math.max(diff, Math.abs((actual[i] as number) - (expected[i] as number)));
    scale = Math.max(scale, Math.abs(expected[i] as number));
  }
  return actual.length === expected.length ? diff / (scale || 1) : Number.POSITIVE_INFINITY;
}

async function runTower(
  file: string,
  input: string,
  tensor: ort.Tensor,
  output: string,
  threads: number,
): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(file, {
    intraOpNumThreads: threads,
    executionProviders: ["cpu"],
  });
  try {
    const result = await session.run({ [input]: tensor });
    return (result[output] as ort.Tensor).data as Float32Array;
  } finally {
    await session.release();
  }
}

/** Compares the written towers in `dir` with the TypeScript forward; throws past the tolerance. */
export async function checkTowers(
  weights: ClipWeights,
  dir: string,
  threads = 2,
): Promise<CheckResult> {
  const { pixels, ids } = checkInputs(weights);
  const res = weights.spec.imageResolution;
  const image = await runTower(
    path.join(dir, "vision.onnx"),
    VISION_INPUT,
    new ort.Tensor("float32", pixels, [1, 3, res, res]),
    VISION_OUTPUT,
    threads,
  );
  const text = await runTower(
    path.join(dir, "text.onnx"),
    TEXT_INPUT,
    new ort.Tensor("int64", BigInt64Array.from(ids, BigInt), [1, ids.length]),
    TEXT_OUTPUT,
    threads,
  );
  const result: CheckResult = {
    vision: relativeDifference(image, await forwardImage(weights, pixels)),
    text: relativeDifference(text, await forwardText(weights, ids)),
  };
  const worst = Math.max(result.vision, result.text);
  if (!(worst <= CHECK_TOLERANCE)) {
    throw convertError(
      "export_check_failed",
      `the written towers differ from the TypeScript forward of the same weights (max relative difference: vision ${result.vision.toExponential(2)}, text ${result.text.toExponential(2)}, tolerance ${CHECK_TOLERANCE}); the conversion is not faithful, no config.json was written. Report this with the checkpoint's source, or try the Python exporter (longclip export --python ...)`,
      { ...result },
    );
  }
  return result;
}
