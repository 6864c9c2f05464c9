/**
 * bench:perf "pipeline": the CPU side of ingest alone. Library.index (read → hash → decode →
 * resize → embed → SQLite + HNSW) runs with a stand-in encoder that takes a fixed time per
 * batch and uses no CPU, as a GPU would; so the rate and the process CPU per photo are the
 * pipeline's own, and they say how many cores would keep a real GPU busy.
 */
import { rmSync } from "node:fs";
import { availableParallelism } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { loadSettings } from "../../src/core/settings.ts";
import type { Embedder } from "../../src/encode/types.ts";
import { createLibrary } from "../../src/library/index.ts";
import type { ModelConfig } from "../../src/model/format.ts";
import type { PreprocessMode } from "../../src/preprocess/index.ts";
import { type BenchContext, processCpuMs } from "./context.ts";
import { median } from "./stats.ts";
import { seededGaussian } from "./vectors.ts";

/** An encoder that sleeps `msPerBatch` per call of up to `batch` images: a GPU's cost model. */
export function simulatedEncoder(
  config: ModelConfig,
  batch: number,
  msPerBatch: number,
): Embedder & { busyMs: () => number } {
  const gaussian = seededGaussian(5);
  let busy = 0;
  const unit = () => {
    const v = new Float32Array(config.embed_dim);
    let norm = 0;
    for (let i = 0; i < v.length; i++) {
      v[i] = gaussian();
      norm += (v[i] as number) ** 2;
    }
    const scale = 1 / Math.sqrt(norm);
    for (let i = 0; i < v.length; i++) v[i] = (v[i] as number) * scale;
    return v;
  };
  let images = 0;
  return {
    config,
    modelId: `simulated-${config.model_id}`,
    dims: config.embed_dim,
    tokenize: () => {
      throw new Error("the simulated encoder embeds images only");
    },
    embedTexts: async () => {
      throw new Error("the simulated encoder embeds images only");
    },
    embedTokenized: async () => {
      throw new Error("the simulated encoder embeds images only");
    },
    embedPixels: async (pixels) => {
      const out: Float32Array[] = [];
      for (let start = 0; start < pixels.length; start += batch) {
        const started = performance.now();
        await sleep(msPerBatch);
        busy += performance.now() - started;
        for (let i = start; i < Math.min(pixels.length, start + batch); i++) out.push(unit());
      }
      images += pixels.length;
      return out;
    },
    stats: () => ({
      modelId: `simulated-${config.model_id}`,
      dims: config.embed_dim,
      device: "cpu",
      requestedDevice: "cpu",
      threads: 0,
      imageBatchSize: batch,
      imagesEncoded: images,
      textsEncoded: 0,
    }),
    close: async () => {},
    busyMs: () => busy,
  };
}

export interface PipelineRow {
  mode: PreprocessMode;
  photos: number;
  photosPerS: number;
  /** Process CPU ms per photo (all threads): the pipeline's cost, the encoder uses none. */
  cpuMsPerPhoto: number;
  /** 1000 / cpuMsPerPhoto: what one fully used core sustains. */
  photosPerSPerCore: number;
  /** Share of the wall time the stand-in encoder was busy. */
  encoderBusy: number;
  coresFor1000: number;
  coresFor3000: number;
  /** Rates of every round. */
  rounds: number[];
}

export interface PipelineResult {
  cores: number;
  workers: number;
  batch: number;
  msPerBatch: number;
  /** The stand-in encoder's own rate: batch / msPerBatch. */
  encoderImagesPerS: number;
  rows: PipelineRow[];
}

/**
 * `rounds` ingests of `files` per mode into new libraries, the modes alternating round by
 * round. The photos are read from disk each time (the page cache keeps them after the first).
 */
export async function measurePipeline(
  ctx: BenchContext,
  config: ModelConfig,
  files: readonly string[],
  warmupFiles: readonly string[],
  options: { batch: number; msPerBatch: number; rounds: number; modes: PreprocessMode[] },
): Promise<PipelineResult> {
  const { batch, msPerBatch, rounds, modes } = options;
  const samples = new Map<PreprocessMode, { rate: number; cpu: number; busy: number }[]>();
  let workers = 0;
  for (let round = 0; round < rounds; round++) {
    for (const mode of modes) {
      const dataDir = path.join(ctx.workDir, `pipeline-${mode}-${round}`);
      rmSync(dataDir, { recursive: true, force: true });
      const settings = loadSettings({
        dataDir,
        imageBatchSize: batch,
        maxBatchItems: Math.max(files.length, warmupFiles.length),
        indexSaveIntervalMs: 0,
        preprocess: mode,
      });
      const encoder = simulatedEncoder(config, batch, msPerBatch);
      const library = await createLibrary(settings, encoder, { allowAnyPath: true });
      try {
        ctx.log(`pipeline round ${round + 1}/${rounds}, ${mode}: ${files.length} photos`);
        await library.index(warmupFiles.map((file) => ({ path: file })));
        const busyBefore = encoder.busyMs();
        const cpuBefore = processCpuMs();
        const started = performance.now();
        const results = await library.index(files.map((file) => ({ path: file })));
        const wall = performance.now() - started;
        const cpu = processCpuMs() - cpuBefore;
        const failed = results.find((r) => r.status !== "indexed");
        if (failed) throw new Error(`pipeline: ${JSON.stringify(failed)}`);
        const list = samples.get(mode) ?? [];
        list.push({
          rate: files.length / (wall / 1000),
          cpu: cpu / files.length,
          busy: (encoder.busyMs() - busyBefore) / wall,
        });
        samples.set(mode, list);
        workers = settings.preprocessWorkers || Math.max(1, availableParallelism() - 1);
      } finally {
        await library.close();
        rmSync(dataDir, { recursive: true, force: true });
      }
    }
  }
  const rows = modes.map((mode) => {
    const list = samples.get(mode) ?? [];
    const cpuMsPerPhoto = median(list.map((s) => s.cpu));
    return {
      mode,
      photos: files.length,
      photosPerS: median(list.map((s) => s.rate)),
      cpuMsPerPhoto,
      photosPerSPerCore: 1000 / cpuMsPerPhoto,
      encoderBusy: median(list.map((s) => s.busy)),
      coresFor1000: (1000 * cpuMsPerPhoto) / 1000,
      coresFor3000: (3000 * cpuMsPerPhoto) / 1000,
      rounds: list.map((s) => s.rate),
    };
  });
  return {
    cores: availableParallelism(),
    workers,
    batch,
    msPerBatch,
    encoderImagesPerS: (1000 * batch) / msPerBatch,
    rows,
  };
}
