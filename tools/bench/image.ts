/**
 * Image-side sections of bench:perf: the machine's matmul peak, the vision tower through our
 * Encoder and through PyTorch on the same pixels and weights, the tower on CUDA, and ONNX
 * Runtime session options (the ingest pipeline is in ./ingest.ts).
 */
import { existsSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import * as ort from "onnxruntime-node";
import { loadSettings } from "../../src/core/settings.ts";
import { Encoder } from "../../src/encode/encoder.ts";
import { cpuOptions } from "../../src/encode/session.ts";
import { preprocessImage } from "../../src/preprocess/index.ts";
import type { BenchContext } from "./context.ts";
import { quietLogger, sizeTag } from "./context.ts";
import { VISION_SHAPES, visionFlops } from "./flops.ts";
import { writeSyntheticJpegs } from "./images.ts";
import { type BenchModel, convertedCopy } from "./models.ts";
import { runPython } from "./python.ts";
import { alternateRuns, cosine, timeRuns } from "./stats.ts";

export interface PeakResult {
  n: number;
  /** Best run: the rate the hardware allows when nothing else gets in the way. */
  ortGflops: number;
  ortMedianGflops: number;
  torchGflops: number;
  torchMedianGflops: number;
  torchThreads: number;
  /**
   * The peak every "% of peak" divides by: the best rate any engine reached, so no engine
   * can show more than 100%.
   */
  bestGflops: number;
  bestEngine: string;
}

/** fp32 matmul rate of an n×n product through ONNX Runtime (the engine) and PyTorch. */
export async function measurePeak(ctx: BenchContext, n: number): Promise<PeakResult> {
  const onnxFile = path.join(ctx.workDir, `matmul-${n}.onnx`);
  ctx.log(`peak: ${n}×${n} fp32 matmul through PyTorch, then ONNX Runtime`);
  const torch = (await runPython([
    "-m",
    "training.bench_torch",
    "--threads",
    String(ctx.threads),
    "matmul",
    "--n",
    String(n),
    "--runs",
    "9",
    "--onnx-out",
    onnxFile,
  ])) as { gflops: number; median_gflops: number; threads: number };
  const session = await ort.InferenceSession.create(onnxFile, {
    executionProviders: ["cpu"],
    intraOpNumThreads: ctx.threads,
  });
  const a = new Float32Array(n * n).map((_, i) => ((i * 7919) % 1000) / 1000 - 0.5);
  const feeds = {
    a: new ort.Tensor("float32", a, [n, n]),
    b: new ort.Tensor("float32", a.slice().reverse(), [n, n]),
  };
  const timing = await timeRuns(() => session.run(feeds), 2, 9);
  await session.release();
  const ortGflops = (2 * n ** 3) / Math.min(...timing.seconds) / 1e9;
  const ortBest = ortGflops >= torch.gflops;
  return {
    n,
    ortGflops,
    ortMedianGflops: (2 * n ** 3) / timing.medianSeconds / 1e9,
    torchGflops: torch.gflops,
    torchMedianGflops: torch.median_gflops,
    torchThreads: torch.threads,
    bestGflops: ortBest ? ortGflops : torch.gflops,
    bestEngine: ortBest
      ? `ONNX Runtime MatMul (${ctx.threads} threads)`
      : `PyTorch torch.mm (${torch.threads} threads)`,
  };
}

export interface PixelSet {
  /** Preprocessed CHW images at 224². */
  pixels: Float32Array[];
  /** The same, concatenated, as written for PyTorch. */
  file: string;
}

/** Synthetic photo-sized JPEGs (created once) and their preprocessed pixels. */
export async function preparePhotos(
  ctx: BenchContext,
  count: number,
): Promise<{ dir: string; files: string[] }> {
  const dir = path.join(ctx.workDir, "photos-1600x1200");
  const existing = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith(".jpg")) : [];
  if (existing.length >= count) {
    return {
      dir,
      files: existing
        .sort()
        .slice(0, count)
        .map((f) => path.join(dir, f)),
    };
  }
  ctx.log(`writing ${count} synthetic 1600×1200 JPEGs to ${dir}`);
  rmSync(dir, { recursive: true, force: true });
  return { dir, files: await writeSyntheticJpegs(dir, count, 1600, 1200, 42) };
}

export async function preparePixels(
  ctx: BenchContext,
  files: readonly string[],
  model: BenchModel,
): Promise<PixelSet> {
  const settings = loadSettings();
  const encoderConfig = JSON.parse(await readFile(path.join(model.dir, "config.json"), "utf8")) as {
    image_resolution: number;
    image_mean: number[];
    image_std: number[];
  };
  const pixels: Float32Array[] = [];
  for (const file of files) {
    const image = await preprocessImage(await readFile(file), {
      resolution: encoderConfig.image_resolution,
      mean: encoderConfig.image_mean as [number, number, number],
      std: encoderConfig.image_std as [number, number, number],
      maxImageBytes: settings.maxImageBytes,
      maxImagePixels: settings.maxImagePixels,
      nativeJpeg: settings.nativeJpeg,
    });
    pixels.push(image.pixels);
  }
  const size = pixels[0]?.length ?? 0;
  const all = new Float32Array(pixels.length * size);
  pixels.forEach((p, i) => {
    all.set(p, i * size);
  });
  const file = path.join(ctx.workDir, `pixels-${pixels.length}.f32`);
  writeFileSync(file, Buffer.from(all.buffer));
  return { pixels, file };
}

export interface TowerRow {
  batch: number;
  onnxImagesPerS: number;
  torchImagesPerS: number;
  ratio: number;
  onnxFractionOfPeak: number;
  torchFractionOfPeak: number;
}

export interface TowerResult {
  size: string;
  gflopsPerImage: number;
  torchThreads: number;
  torchVersion: string;
  /** Agreement of the two engines on the same images (same weights). */
  agreement: { minCosine: number; maxRelativeDifference: number };
  rows: TowerRow[];
}

/** Vision tower images/s through Encoder.embedPixels and through PyTorch, per batch size. */
export async function measureTower(
  ctx: BenchContext,
  model: BenchModel,
  set: PixelSet,
  batches: readonly number[],
  peakGflops: number,
): Promise<TowerResult> {
  const shape = VISION_SHAPES[model.size];
  if (shape === undefined) throw new Error(`no FLOP shape for ${model.size}`);
  const flops = visionFlops(shape);
  const maxBatch = Math.max(...batches);
  const settings = loadSettings({ threads: ctx.threads, imageBatchSize: maxBatch });
  const encoder = await Encoder.load(model.dir, settings, { logger: quietLogger });
  const onnx = new Map<number, number>();
  const checkCount = Math.min(4, set.pixels.length);
  let ours: Float32Array[];
  try {
    ours = await encoder.embedPixels(set.pixels.slice(0, checkCount));
    for (const batch of batches) {
      ctx.log(
        `${sizeTag(model.size)} ONNX image tower: batch ${batch}, ${ctx.warmup} warm-up + ${ctx.runs} runs`,
      );
      const inputs = set.pixels.slice(0, batch);
      const timing = await timeRuns(() => encoder.embedPixels(inputs), ctx.warmup, ctx.runs);
      onnx.set(batch, batch / timing.medianSeconds);
    }
  } finally {
    await encoder.close();
  }
  const embeddingsFile = path.join(ctx.workDir, `torch-embeddings-${sizeTag(model.size)}.f32`);
  const torch = (await runPython([
    "-m",
    "training.bench_torch",
    "--threads",
    String(ctx.threads),
    "image",
    "--checkpoint",
    model.checkpoint,
    "--pixels",
    set.file,
    "--batches",
    batches.join(","),
    "--warmup",
    String(ctx.warmup),
    "--runs",
    String(ctx.runs),
    "--check-images",
    String(checkCount),
    "--embeddings",
    embeddingsFile,
  ])) as {
    threads: number;
    torch: string;
    batches: { batch: number; images_per_s: number }[];
  };
  const raw = await readFile(embeddingsFile);
  const theirs = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
  const dims = ours[0]?.length ?? 0;
  let minCosine = 1;
  let maxDiff = 0;
  let maxAbs = 0;
  ours.forEach((row, i) => {
    const ref = theirs.subarray(i * dims, (i + 1) * dims);
    minCosine = Math.min(minCosine, cosine(row, ref));
    // Our rows are L2-normalised; compare against the normalised reference.
    let norm = 0;
    for (const v of ref) norm += v * v;
    const scale = 1 / Math.sqrt(norm);
    ref.forEach((v, j) => {
      maxDiff = Math.max(maxDiff, Math.abs((row[j] as number) - v * scale));
      maxAbs = Math.max(maxAbs, Math.abs(v * scale));
    });
  });
  const rows = batches.map((batch) => {
    const ours = onnx.get(batch) ?? Number.NaN;
    const ref = torch.batches.find((b) => b.batch === batch)?.images_per_s ?? Number.NaN;
    return {
      batch,
      onnxImagesPerS: ours,
      torchImagesPerS: ref,
      ratio: ours / ref,
      onnxFractionOfPeak: (ours * flops) / 1e9 / peakGflops,
      torchFractionOfPeak: (ref * flops) / 1e9 / peakGflops,
    };
  });
  return {
    size: model.size,
    gflopsPerImage: flops / 1e9,
    torchThreads: torch.threads,
    torchVersion: torch.torch,
    agreement: { minCosine, maxRelativeDifference: maxDiff / maxAbs },
    rows,
  };
}

export interface SessionOptionRow {
  name: string;
  options: Record<string, unknown>;
  imagesPerS: number;
  /** The engine's own options, measured alternately with this variant. */
  engineImagesPerS: number;
  /** imagesPerS / engineImagesPerS. */
  gain: number;
}

/**
 * The vision tower at one batch size under several ONNX Runtime session options. Each variant
 * runs alternately with a session holding the engine's options (src/encode/session.ts), so a
 * change in machine load between variants does not show up as a gain or a loss.
 */
export async function measureSessionOptions(
  ctx: BenchContext,
  model: BenchModel,
  set: PixelSet,
  batch: number,
): Promise<SessionOptionRow[]> {
  const engine = cpuOptions(ctx.threads);
  const variants: [string, ort.InferenceSession.SessionOptions][] = [
    ["graphOptimizationLevel disabled", { ...engine, graphOptimizationLevel: "disabled" }],
    ["graphOptimizationLevel basic", { ...engine, graphOptimizationLevel: "basic" }],
    ["graphOptimizationLevel extended", { ...engine, graphOptimizationLevel: "extended" }],
    ["intraOpNumThreads 1", { ...engine, intraOpNumThreads: 1 }],
    ["executionMode parallel", { ...engine, executionMode: "parallel" }],
    ["enableCpuMemArena false", { ...engine, enableCpuMemArena: false }],
    [
      "intra-op spinning on",
      { ...engine, extra: { session: { intra_op: { allow_spinning: "1" } } } },
    ],
  ];
  const config = JSON.parse(await readFile(path.join(model.dir, "config.json"), "utf8")) as {
    image_resolution: number;
    vision: { file: string; input: string };
  };
  const file = path.join(model.dir, config.vision.file);
  const r = config.image_resolution;
  const data = new Float32Array(batch * 3 * r * r);
  set.pixels.slice(0, batch).forEach((p, i) => {
    data.set(p, i * p.length);
  });
  const feeds = { [config.vision.input]: new ort.Tensor("float32", data, [batch, 3, r, r]) };
  const baseline = await ort.InferenceSession.create(file, engine);
  const rows: SessionOptionRow[] = [];
  try {
    for (const [name, options] of variants) {
      ctx.log(`session options (${sizeTag(model.size)}, batch ${batch}): ${name} vs engine`);
      const session = await ort.InferenceSession.create(file, options);
      try {
        const [theirs, ours] = await alternateRuns(
          () => baseline.run(feeds),
          () => session.run(feeds),
          ctx.warmup,
          ctx.runs,
        );
        const rate = batch / ours.medianSeconds;
        const engineRate = batch / theirs.medianSeconds;
        const { executionProviders: _providers, ...shown } = options;
        rows.push({
          name,
          options: shown,
          imagesPerS: rate,
          engineImagesPerS: engineRate,
          gain: rate / engineRate,
        });
      } finally {
        await session.release();
      }
    }
  } finally {
    await baseline.release();
  }
  return rows;
}

export type CudaTowerResult =
  | { skipped: string }
  | {
      size: string;
      rows: { precision: "fp32" | "fp16"; batch: number; imagesPerS: number }[];
      /** By precision: the lowest cosine of a CUDA embedding to the fp32 CPU one. */
      minCosineToCpu: Record<string, number>;
    };

/**
 * The vision tower through our Encoder with `--device cuda`, fp32 and the fp16 copy
 * `python3 -m training quantize --precision fp16` makes, and the cosine of their embeddings to
 * the fp32 CPU ones of the same pixels. Without a usable CUDA provider and device it says why
 * it skipped (before making the fp16 copy).
 */
export async function measureCudaTower(
  ctx: BenchContext,
  model: BenchModel,
  set: PixelSet,
  batches: readonly number[],
): Promise<CudaTowerResult> {
  const maxBatch = Math.max(...batches);
  const cudaSettings = loadSettings({
    device: "cuda",
    threads: ctx.threads,
    imageBatchSize: maxBatch,
  });
  const opened: Partial<Record<"fp32" | "fp16", Encoder>> = {};
  try {
    opened.fp32 = await Encoder.load(model.dir, cudaSettings, { logger: quietLogger });
  } catch (error) {
    const reason = (error as Error).message.replace(/^Cannot use --device cuda: /, "");
    return { skipped: `no CUDA device: ${reason.split(". ")[0]}` };
  }
  const rows: { precision: "fp32" | "fp16"; batch: number; imagesPerS: number }[] = [];
  const embeddings: Record<string, Float32Array[]> = {};
  try {
    // Opening the fp16 copy on CUDA runs its check against the fp32 reference (tower-check.ts).
    const { dir } = await convertedCopy(ctx, model, "fp16");
    opened.fp16 = await Encoder.load(dir, cudaSettings, { logger: quietLogger });
    for (const precision of ["fp32", "fp16"] as const) {
      const encoder = opened[precision] as Encoder;
      embeddings[precision] = await encoder.embedPixels(set.pixels.slice(0, 4));
      for (const batch of batches) {
        ctx.log(`${sizeTag(model.size)} CUDA image tower, ${precision}: batch ${batch}`);
        const inputs = set.pixels.slice(0, batch);
        const timing = await timeRuns(() => encoder.embedPixels(inputs), ctx.warmup, ctx.runs);
        rows.push({ precision, batch, imagesPerS: batch / timing.medianSeconds });
      }
    }
  } finally {
    await Promise.all(Object.values(opened).map((encoder) => encoder.close()));
  }
  const cpuEncoder = await Encoder.load(
    model.dir,
    loadSettings({ threads: ctx.threads, imageBatchSize: maxBatch }),
    { logger: quietLogger },
  );
  try {
    const cpu = await cpuEncoder.embedPixels(set.pixels.slice(0, 4));
    const minCosineToCpu: Record<string, number> = {};
    for (const [precision, rowsOnGpu] of Object.entries(embeddings)) {
      minCosineToCpu[precision] = Math.min(
        ...cpu.map((row, i) => cosine(row, rowsOnGpu[i] as Float32Array)),
      );
    }
    return { size: model.size, rows, minCosineToCpu };
  } finally {
    await cpuEncoder.close();
  }
}
