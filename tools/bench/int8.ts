/**
 * int8 sections of bench:perf: PyTorch's own dynamic int8 of the vision tower, and the int8 ONNX
 * towers `python3 -m training quantize` writes, timed against fp32 through our Encoder.
 */
import { statSync } from "node:fs";
import path from "node:path";
import { loadSettings } from "../../src/core/settings.ts";
import { Encoder } from "../../src/encode/encoder.ts";
import { type BenchContext, quietLogger } from "./context.ts";
import type { PixelSet } from "./image.ts";
import { type BenchModel, convertedCopy } from "./models.ts";
import { runPython } from "./python.ts";
import { alternateRuns, cosine } from "./stats.ts";
import { tokenRow } from "./text.ts";
import { seededRandom } from "./vectors.ts";

export interface QuantResult {
  size: string;
  batch: number;
  fp32ImagesPerS: number;
  int8ImagesPerS: number;
  speedup: number;
  cosineMin: number;
  cosineMean: number;
}

/** PyTorch dynamic int8 of the vision tower's Linear layers, against fp32 (what int8 could give). */
export async function measureTorchInt8(
  ctx: BenchContext,
  model: BenchModel,
  set: PixelSet,
  batch: number,
): Promise<QuantResult> {
  ctx.log(`int8: PyTorch dynamic quantisation of the ${model.size} image tower, batch ${batch}`);
  const result = (await runPython([
    "-m",
    "training.bench_torch",
    "--threads",
    String(ctx.threads),
    "quant",
    "--checkpoint",
    model.checkpoint,
    "--pixels",
    set.file,
    "--batch",
    String(batch),
    "--warmup",
    String(ctx.warmup),
    "--runs",
    String(ctx.runs),
  ])) as {
    fp32_images_per_s: number;
    int8_images_per_s: number;
    cosine_min: number;
    cosine_mean: number;
  };
  return {
    size: model.size,
    batch,
    fp32ImagesPerS: result.fp32_images_per_s,
    int8ImagesPerS: result.int8_images_per_s,
    speedup: result.int8_images_per_s / result.fp32_images_per_s,
    cosineMin: result.cosine_min,
    cosineMean: result.cosine_mean,
  };
}

export interface OnnxInt8Result {
  size: string;
  batch: number;
  matmulsQuantized: number;
  fp32Bytes: number;
  int8Bytes: number;
  fp32ImagesPerS: number;
  int8ImagesPerS: number;
  speedup: number;
  cosineMin: number;
  cosineMean: number;
  /** The text tower made int8 too: one query of `tokens` tokens, fp32 against int8. */
  text: {
    tokens: number;
    fp32Ms: number;
    int8Ms: number;
    speedup: number;
    cosineMin: number;
  };
}

/**
 * Both towers of the bench model made int8 by `python3 -m training quantize` (MatMulInteger with
 * run-time activation quantisation, per-column int8 weights), loaded in our Encoder and run
 * alternately with the fp32 model on the same images and token rows.
 */
export async function measureOnnxInt8(
  ctx: BenchContext,
  model: BenchModel,
  set: PixelSet,
  batch: number,
  textTokens = 77,
): Promise<OnnxInt8Result> {
  const { dir, result: quant } = await convertedCopy(ctx, model, "int8");
  const settings = loadSettings({ threads: ctx.threads, imageBatchSize: batch });
  const fp32 = await Encoder.load(model.dir, settings, { logger: quietLogger });
  const int8 = await Encoder.load(dir, settings, { logger: quietLogger });
  try {
    const images = set.pixels.slice(0, batch);
    ctx.log(`int8: ${model.size} fp32 and int8 vision towers alternately, batch ${batch}`);
    const [fp32ImageTiming, int8ImageTiming] = await alternateRuns(
      () => fp32.embedPixels(images),
      () => int8.embedPixels(images),
      ctx.warmup,
      ctx.runs,
    );
    const fp32Image = fp32ImageTiming.medianSeconds;
    const int8Image = int8ImageTiming.medianSeconds;
    const reference = await fp32.embedPixels(images);
    const quantised = await int8.embedPixels(images);
    const cosines = reference.map((row, i) => cosine(row, quantised[i] as Float32Array));

    const random = seededRandom(11);
    const rows = [0, 1, 2].map(() => tokenRow(textTokens, fp32.config.vocab_size, random));
    const [first] = rows as [Int32Array];
    ctx.log(`int8: ${model.size} fp32 and int8 text towers alternately, ${textTokens} tokens`);
    const [fp32TextTiming, int8TextTiming] = await alternateRuns(
      () => fp32.rawText([first]),
      () => int8.rawText([first]),
      ctx.warmup,
      ctx.runs,
    );
    const fp32Text = fp32TextTiming.medianSeconds;
    const int8Text = int8TextTiming.medianSeconds;
    const textA = await fp32.rawText(rows);
    const textB = await int8.rawText(rows);
    const textCosines = textA.map((row, i) => cosine(row, textB[i] as Float32Array));
    return {
      size: model.size,
      batch,
      matmulsQuantized: quant.converted.vision,
      fp32Bytes: statSync(path.join(model.dir, fp32.config.vision.file)).size,
      int8Bytes: quant.bytes.vision,
      fp32ImagesPerS: batch / fp32Image,
      int8ImagesPerS: batch / int8Image,
      speedup: fp32Image / int8Image,
      cosineMin: Math.min(...cosines),
      cosineMean: cosines.reduce((x, y) => x + y, 0) / cosines.length,
      text: {
        tokens: textTokens,
        fp32Ms: fp32Text * 1000,
        int8Ms: int8Text * 1000,
        speedup: fp32Text / int8Text,
        cosineMin: Math.min(...textCosines),
      },
    };
  } finally {
    await Promise.all([fp32.close(), int8.close()]);
  }
}
