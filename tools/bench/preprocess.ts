/**
 * bench:perf "preprocess": exact against fast preprocessing on photo-sized images. CPU ms per
 * image of each stage (read, decode, resample + normalise), how far the fast model input is
 * from the exact one (PSNR), and how far apart their embeddings are (cosine) with the models
 * given.
 */
import { existsSync, readdirSync, rmSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { loadSettings } from "../../src/core/settings.ts";
import { Encoder } from "../../src/encode/encoder.ts";
import type { ModelConfig } from "../../src/model/format.ts";
import {
  decodeForModel,
  type PreprocessMode,
  type PreprocessOptions,
  toModelInput,
} from "../../src/preprocess/index.ts";
import { jpegDecoderDescription, nativeJpegCounts } from "../../src/preprocess/jpeg-native.ts";
import { setResampleEngine } from "../../src/preprocess/resample.ts";
import { type BenchContext, processCpuMs } from "./context.ts";
import { type PhotoSpec, writePhotoLikeImages } from "./photos.ts";
import { cosine, median } from "./stats.ts";

/** The photo-like set: the sizes and formats people upload, one EXIF-rotated. */
export const PHOTO_LIKE_SPECS: readonly PhotoSpec[] = [
  { width: 1600, height: 1200, format: "jpeg" },
  { width: 1600, height: 1200, format: "jpeg" },
  { width: 1600, height: 1200, format: "jpeg" },
  { width: 1600, height: 1200, format: "jpeg" },
  { width: 4032, height: 3024, format: "jpeg" },
  { width: 1200, height: 1600, format: "jpeg", orientation: 6 },
  { width: 1024, height: 768, format: "jpeg" },
  { width: 1600, height: 1200, format: "webp" },
  { width: 1600, height: 1200, format: "png" },
];

/**
 * `count` photo-like 1600×1200 JPEGs (created once under ctx.workDir), for the ingest section:
 * about 1.2 bits per pixel, where the noisy synthetic JPEGs take 3.3 and cost twice the
 * entropy decoding.
 */
export async function preparePhotoLikeJpegs(ctx: BenchContext, count: number): Promise<string[]> {
  const dir = path.join(ctx.workDir, "photo-like-1600x1200");
  const existing = existsSync(dir) ? readdirSync(dir).sort() : [];
  if (existing.length === count) return existing.map((f) => path.join(dir, f));
  ctx.log(`writing ${count} photo-like 1600×1200 JPEGs to ${dir} (a few minutes, once)`);
  rmSync(dir, { recursive: true, force: true });
  const spec: PhotoSpec = { width: 1600, height: 1200, format: "jpeg" };
  return writePhotoLikeImages(dir, new Array<PhotoSpec>(count).fill(spec), 100);
}

/** The photo-like images (created once under ctx.workDir). */
export async function preparePhotoLike(ctx: BenchContext): Promise<string[]> {
  const dir = path.join(ctx.workDir, "photo-like");
  const existing = existsSync(dir) ? readdirSync(dir).sort() : [];
  if (existing.length === PHOTO_LIKE_SPECS.length) return existing.map((f) => path.join(dir, f));
  ctx.log(`writing ${PHOTO_LIKE_SPECS.length} photo-like images to ${dir} (about a minute)`);
  return writePhotoLikeImages(dir, PHOTO_LIKE_SPECS, 7);
}

/**
 * PSNR in dB between two normalised model inputs, on the pixel scale: each channel's
 * difference is multiplied back by its std, so this is the PSNR of the resized crops as
 * 0..1 images (the same as on 0..255 with peak 255).
 */
export function inputPsnr(
  a: Float32Array,
  b: Float32Array,
  std: readonly [number, number, number],
): number {
  if (a.length !== b.length || a.length % 3 !== 0) throw new Error("inputs of different sizes");
  const plane = a.length / 3;
  let squared = 0;
  for (let i = 0; i < a.length; i++) {
    const d = ((a[i] as number) - (b[i] as number)) * (std[Math.floor(i / plane)] as number);
    squared += d * d;
  }
  const mse = squared / a.length;
  return mse === 0 ? Number.POSITIVE_INFINITY : 10 * Math.log10(1 / mse);
}

export interface StageCpu {
  read: number;
  decode: number;
  resample: number;
  total: number;
}

/** Reads, decodes and resamples `file` `runs` times; median CPU ms of each stage. */
async function stageCpu(
  file: string,
  options: PreprocessOptions,
  runs: number,
): Promise<{ cpu: StageCpu; pixels: Float32Array }> {
  const read: number[] = [];
  const decode: number[] = [];
  const resample: number[] = [];
  let pixels: Float32Array = new Float32Array(0);
  for (let run = 0; run < runs; run++) {
    let mark = processCpuMs();
    const bytes = await readFile(file);
    read.push(processCpuMs() - mark);
    mark = processCpuMs();
    const decoded = await decodeForModel(bytes, options);
    decode.push(processCpuMs() - mark);
    mark = processCpuMs();
    pixels = toModelInput(decoded, options);
    resample.push(processCpuMs() - mark);
  }
  const cpu = { read: median(read), decode: median(decode), resample: median(resample) };
  return { cpu: { ...cpu, total: cpu.read + cpu.decode + cpu.resample }, pixels };
}

export interface PreprocessGroupRow {
  group: string;
  images: number;
  /** Exact mode with the JavaScript resampler passes (before the SIMD ones). */
  exactJs: StageCpu;
  exact: StageCpu;
  fast: StageCpu;
  /** exact.total / fast.total: the CPU the fast mode saves. */
  speedup: number;
  /** exactJs.total / fast.total. */
  speedupOverJs: number;
  /** exactJs.resample / exact.resample: what the SIMD passes save. */
  simdResampleGain: number;
  minPsnr: number;
  meanPsnr: number;
}

export interface PreprocessCosine {
  model: string;
  images: number;
  minCosine: number;
  meanCosine: number;
}

export interface PreprocessResult {
  resolution: number;
  runsPerImage: number;
  /** Which JPEG decoder ran (the nativeJpeg setting, LONGCLIP_NATIVE_JPEG) and how often natively. */
  jpegDecoder: string;
  nativeJpegDecodes: number;
  /** Of those, fast-mode images the addon resized too. */
  nativeJpegResizes: number;
  groups: PreprocessGroupRow[];
  cosines: PreprocessCosine[];
}

/** What an image file is, for grouping: "JPEG 1600×1200", "WebP 1600×1200", ... */
async function groupOf(file: string, label: string): Promise<string> {
  const { default: sharp } = await import("sharp");
  const meta = await sharp(file).metadata();
  const w = meta.autoOrient?.width ?? meta.width;
  const h = meta.autoOrient?.height ?? meta.height;
  const names: Record<string, string> = { jpeg: "JPEG", webp: "WebP", png: "PNG" };
  const format = names[meta.format] ?? meta.format;
  const rotated = (meta.orientation ?? 1) > 1 ? `, EXIF orientation ${meta.orientation}` : "";
  return `${label} ${format} ${w}×${h}${rotated}`;
}

/**
 * Exact (JavaScript resampler passes, then SIMD) against fast preprocessing: the files are
 * grouped by kind; each file runs `runs` times per variant, the variants alternating file by
 * file so a change in machine load touches all three. Then, for each model directory, the cosine between the embeddings of the two inputs.
 */
export async function measurePreprocess(
  ctx: BenchContext,
  sets: { label: string; files: readonly string[] }[],
  modelDirs: { name: string; dir: string }[],
  runs: number,
): Promise<PreprocessResult> {
  const first = modelDirs[0];
  if (first === undefined) throw new Error("measurePreprocess needs a model");
  const config = JSON.parse(
    await readFile(path.join(first.dir, "config.json"), "utf8"),
  ) as ModelConfig;
  const settings = loadSettings();
  const optionsFor = (mode: PreprocessMode, model: ModelConfig): PreprocessOptions => ({
    mode,
    resolution: model.image_resolution,
    mean: model.image_mean,
    std: model.image_std,
    maxImageBytes: settings.maxImageBytes,
    maxImagePixels: settings.maxImagePixels,
    nativeJpeg: settings.nativeJpeg,
  });
  const nativeBefore = nativeJpegCounts();
  const exactOptions = optionsFor("exact", config);
  const fastOptions = optionsFor("fast", config);
  // The resampler and libvips warm up on a first image; that is not part of any stage.
  const warm = sets[0]?.files[0];
  const exactJs = async (file: string, count: number) => {
    setResampleEngine("js");
    try {
      return await stageCpu(file, exactOptions, count);
    } finally {
      setResampleEngine("simd");
    }
  };
  if (warm !== undefined) {
    await exactJs(warm, 2);
    await stageCpu(warm, exactOptions, 2);
    await stageCpu(warm, fastOptions, 2);
  }
  const byGroup = new Map<
    string,
    { exactJs: StageCpu[]; exact: StageCpu[]; fast: StageCpu[]; psnr: number[] }
  >();
  for (const set of sets) {
    for (const file of set.files) {
      const group = await groupOf(file, set.label);
      ctx.log(`preprocess: ${path.basename(file)} (${group}), exact (JS, SIMD), fast × ${runs}`);
      const before = await exactJs(file, runs);
      const exact = await stageCpu(file, exactOptions, runs);
      const fast = await stageCpu(file, fastOptions, runs);
      const entry = byGroup.get(group) ?? { exactJs: [], exact: [], fast: [], psnr: [] };
      entry.exactJs.push(before.cpu);
      entry.exact.push(exact.cpu);
      entry.fast.push(fast.cpu);
      entry.psnr.push(inputPsnr(exact.pixels, fast.pixels, config.image_std));
      byGroup.set(group, entry);
    }
  }
  const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;
  const average = (rows: StageCpu[]): StageCpu => ({
    read: mean(rows.map((r) => r.read)),
    decode: mean(rows.map((r) => r.decode)),
    resample: mean(rows.map((r) => r.resample)),
    total: mean(rows.map((r) => r.total)),
  });
  const groups = [...byGroup].map(([group, entry]) => {
    const before = average(entry.exactJs);
    const exact = average(entry.exact);
    const fast = average(entry.fast);
    return {
      group,
      images: entry.psnr.length,
      exactJs: before,
      exact,
      fast,
      speedup: exact.total / fast.total,
      speedupOverJs: before.total / fast.total,
      simdResampleGain: before.resample / exact.resample,
      minPsnr: Math.min(...entry.psnr),
      meanPsnr: mean(entry.psnr),
    };
  });

  const files = sets.flatMap((s) => s.files);
  const cosines: PreprocessCosine[] = [];
  for (const model of modelDirs) {
    ctx.log(`preprocess: embeddings of exact and fast inputs with ${model.name}`);
    const encoder = await Encoder.load(model.dir, loadSettings({ threads: ctx.threads }), {
      logger: { info: () => {}, warn: (m: string) => process.stderr.write(`${m}\n`) },
    });
    try {
      const exactPixels: Float32Array[] = [];
      const fastPixels: Float32Array[] = [];
      const exactModel = optionsFor("exact", encoder.config);
      const fastModel = optionsFor("fast", encoder.config);
      for (const file of files) {
        const bytes = await readFile(file);
        exactPixels.push(toModelInput(await decodeForModel(bytes, exactModel), exactModel));
        fastPixels.push(toModelInput(await decodeForModel(bytes, fastModel), fastModel));
      }
      const a = await encoder.embedPixels(exactPixels);
      const b = await encoder.embedPixels(fastPixels);
      const values = a.map((row, i) => cosine(row, b[i] as Float32Array));
      cosines.push({
        model: model.name,
        images: values.length,
        minCosine: Math.min(...values),
        meanCosine: mean(values),
      });
    } finally {
      await encoder.close();
    }
  }
  return {
    resolution: config.image_resolution,
    runsPerImage: runs,
    jpegDecoder: await jpegDecoderDescription(settings.nativeJpeg),
    nativeJpegDecodes: nativeJpegCounts().native - nativeBefore.native,
    nativeJpegResizes: nativeJpegCounts().resized - nativeBefore.resized,
    groups,
    cosines,
  };
}
