/**
 * bench:perf "ingest": the whole ingest pipeline (Library.index) against the bare encoder on
 * the same photo-sized JPEGs, with where the difference goes.
 */
import { rmSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { loadSettings } from "../../src/core/settings.ts";
import { Encoder } from "../../src/encode/encoder.ts";
import type { Embedder } from "../../src/encode/types.ts";
import { createLibrary } from "../../src/library/index.ts";
import {
  decodeForModel,
  type PreprocessMode,
  preprocessImage,
  toModelInput,
} from "../../src/preprocess/index.ts";
import { type BenchContext, processCpuMs, quietLogger } from "./context.ts";
import type { BenchModel } from "./models.ts";
import { median } from "./stats.ts";

export interface IngestResult {
  size: string;
  mode: PreprocessMode;
  images: number;
  batch: number;
  /** Alternating rounds of bare encoder then Library.index; the rates below are medians. */
  rounds: number;
  /** Read + decode + preprocess only, one image after another. */
  preprocessImagesPerS: number;
  /**
   * Process CPU milliseconds per image of each preprocessing stage, run one after another with
   * nothing else running: what the pipeline takes away from the encoder's cores.
   */
  stageCpuMs: { read: number; decode: number; resample: number };
  bareEncoderImagesPerS: number;
  ingestImagesPerS: number;
  /** Median over the rounds of each round's ingest rate / bare encoder rate. */
  fractionOfEncoder: number;
  /** Process CPU milliseconds per image (all threads, the encoder's included). */
  bareEncoderCpuMsPerImage: number;
  ingestCpuMsPerImage: number;
  /**
   * Median over the rounds of the share of Library.index's wall time in which the encoder was
   * running a batch: 1 minus this is time the encoder waited (pipeline fill, gaps between
   * batches, the last commit); the rest of any loss is batches running slower beside the
   * preprocessing threads.
   */
  encoderBusyFraction: number;
  /** Median over the rounds of (encoder ms per batch in Library.index) / (in the bare run). */
  batchSlowdown: number;
  /** Each round's images/s, in order, to show the spread behind the medians. */
  perRound: { bareImagesPerS: number; ingestImagesPerS: number }[];
}

/**
 * The whole ingest (read → decode → preprocess → encode → SQLite + HNSW) on photo-sized JPEGs
 * through Library.index, against the bare encoder on the same images at the same batch size.
 * The two alternate for `rounds` rounds, each ingest into a new library (the same images would
 * otherwise be found as duplicates and skip the encoder), so a change in machine load between
 * rounds touches both sides.
 */
export async function measureIngest(
  ctx: BenchContext,
  model: BenchModel,
  files: readonly string[],
  warmupFiles: readonly string[],
  batch: number,
  rounds = 3,
  mode: PreprocessMode = "exact",
): Promise<IngestResult> {
  const settingsFor = (dataDir: string) =>
    loadSettings({
      preprocess: mode,
      dataDir,
      threads: ctx.threads,
      imageBatchSize: batch,
      maxBatchItems: Math.max(files.length, warmupFiles.length),
      indexSaveIntervalMs: 0,
    });
  const encoder = await Encoder.load(model.dir, settingsFor(ctx.workDir), {
    logger: quietLogger,
  });
  // Time spent in the encoder, to tell waiting for batches from slower batches.
  const busy = { ms: 0, batches: 0 };
  const timedEmbed = async (pixels: readonly Float32Array[]) => {
    const begun = performance.now();
    try {
      return await encoder.embedPixels(pixels);
    } finally {
      busy.ms += performance.now() - begun;
      busy.batches += Math.ceil(pixels.length / batch);
    }
  };
  // Each round's library closes its embedder on close; the encoder must outlive them all.
  const shared: Embedder = {
    config: encoder.config,
    modelId: encoder.modelId,
    dims: encoder.dims,
    tokenize: (text) => encoder.tokenize(text),
    embedTexts: (texts) => encoder.embedTexts(texts),
    embedTokenized: (tokenized) => encoder.embedTokenized(tokenized),
    embedPixels: timedEmbed,
    stats: () => encoder.stats(),
    close: async () => {},
  };
  const settings = settingsFor(ctx.workDir);
  const options = {
    mode,
    resolution: encoder.config.image_resolution,
    mean: encoder.config.image_mean,
    std: encoder.config.image_std,
    maxImageBytes: settings.maxImageBytes,
    maxImagePixels: settings.maxImagePixels,
    nativeJpeg: settings.nativeJpeg,
  };
  try {
    ctx.log(`ingest: preprocessing ${files.length} JPEGs alone, stage by stage`);
    // The resampler is JIT-compiled on its first images; those are not part of the stages.
    for (const file of warmupFiles) await preprocessImage(await readFile(file), options);
    const cpu = { read: 0, decode: 0, resample: 0 };
    const pixels: Float32Array[] = [];
    const started = performance.now();
    for (const file of files) {
      let mark = processCpuMs();
      const bytes = await readFile(file);
      cpu.read += processCpuMs() - mark;
      mark = processCpuMs();
      const decoded = await decodeForModel(bytes, options);
      cpu.decode += processCpuMs() - mark;
      mark = processCpuMs();
      pixels.push(toModelInput(decoded, options));
      cpu.resample += processCpuMs() - mark;
    }
    const preprocessRate = files.length / ((performance.now() - started) / 1000);

    const bare: number[] = [];
    const ingest: number[] = [];
    const ratios: number[] = [];
    const bareCpu: number[] = [];
    const ingestCpu: number[] = [];
    const busyFractions: number[] = [];
    const slowdowns: number[] = [];
    for (let round = 0; round < rounds; round++) {
      const dataDir = path.join(ctx.workDir, `ingest-data-${round}`);
      rmSync(dataDir, { recursive: true, force: true });
      const library = await createLibrary(settingsFor(dataDir), shared, { allowAnyPath: true });
      try {
        ctx.log(
          `ingest round ${round + 1}/${rounds}: warm-up with ${warmupFiles.length} other JPEGs`,
        );
        await library.index(warmupFiles.map((file) => ({ path: file })));
        ctx.log(`ingest round ${round + 1}/${rounds}: bare encoder, then Library.index`);
        let mark = processCpuMs();
        let begun = performance.now();
        Object.assign(busy, { ms: 0, batches: 0 });
        await timedEmbed(pixels);
        const bareRate = files.length / ((performance.now() - begun) / 1000);
        const bareMsPerBatch = busy.ms / busy.batches;
        bareCpu.push((processCpuMs() - mark) / files.length);
        mark = processCpuMs();
        begun = performance.now();
        Object.assign(busy, { ms: 0, batches: 0 });
        const results = await library.index(files.map((file) => ({ path: file })));
        const ingestMs = performance.now() - begun;
        const ingestRate = files.length / (ingestMs / 1000);
        ingestCpu.push((processCpuMs() - mark) / files.length);
        busyFractions.push(busy.ms / ingestMs);
        slowdowns.push(busy.ms / busy.batches / bareMsPerBatch);
        const indexed = results.filter((r) => r.status === "indexed").length;
        if (indexed !== files.length) {
          throw new Error(
            `ingest indexed ${indexed} of ${files.length} images: ${JSON.stringify(results.find((r) => r.status !== "indexed"))}`,
          );
        }
        bare.push(bareRate);
        ingest.push(ingestRate);
        ratios.push(ingestRate / bareRate);
      } finally {
        await library.close();
        rmSync(dataDir, { recursive: true, force: true });
      }
    }
    const perImage = (ms: number) => ms / files.length;
    return {
      size: model.size,
      mode,
      images: files.length,
      batch,
      rounds,
      preprocessImagesPerS: preprocessRate,
      stageCpuMs: {
        read: perImage(cpu.read),
        decode: perImage(cpu.decode),
        resample: perImage(cpu.resample),
      },
      bareEncoderImagesPerS: median(bare),
      ingestImagesPerS: median(ingest),
      fractionOfEncoder: median(ratios),
      bareEncoderCpuMsPerImage: median(bareCpu),
      ingestCpuMsPerImage: median(ingestCpu),
      encoderBusyFraction: median(busyFractions),
      batchSlowdown: median(slowdowns),
      perRound: bare.map((rate, i) => ({
        bareImagesPerS: rate,
        ingestImagesPerS: ingest[i] as number,
      })),
    };
  } finally {
    await encoder.close();
  }
}

/** One ingest run of a corpus (noisy synthetic or photo-like JPEGs) in one preprocessing mode. */
export type CorpusIngestResult = IngestResult & { corpus: string };

/**
 * measureIngest of each corpus in each preprocessing mode (exact, then fast): its first 64
 * files in batches of 8, the next 8 as warm-up. `onResult` gets the results so far after each
 * run, so an interrupted benchmark keeps what it measured.
 */
export async function measureIngestCorpora(
  ctx: BenchContext,
  model: BenchModel,
  corpora: readonly { corpus: string; files: readonly string[] }[],
  rounds: number,
  onResult: (results: CorpusIngestResult[]) => void,
): Promise<CorpusIngestResult[]> {
  const results: CorpusIngestResult[] = [];
  for (const { corpus, files } of corpora) {
    for (const mode of ["exact", "fast"] as const) {
      const result = await measureIngest(
        ctx,
        model,
        files.slice(0, 64),
        files.slice(64, 72),
        8,
        rounds,
        mode,
      );
      results.push({ corpus, ...result });
      onResult(results);
    }
  }
  return results;
}
