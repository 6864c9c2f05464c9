/**
 * ONNX Runtime sessions on the requested device. `cuda` never falls back silently: the CUDA
 * execution provider ships only in onnxruntime-node's CUDA build, so its provider library is
 * checked before asking ONNX Runtime, and any failure to create the CUDA session is an error.
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import * as ort from "onnxruntime-node";
import { AppError } from "../core/errors.ts";
import type { Device } from "../core/settings.ts";

export type ResolvedDevice = "cpu" | "cuda";

/** The subset of a pino logger the engine uses; pino loggers fit as they are. */
export interface EngineLogger {
  info(message: string): void;
  warn(message: string): void;
}

export const stderrLogger: EngineLogger = {
  info: (message) => process.stderr.write(`${message}\n`),
  warn: (message) => process.stderr.write(`warning: ${message}\n`),
};

export interface SessionOptions {
  device: Device;
  /** Intra-op threads for the CPU provider; 0 lets ONNX Runtime choose. */
  threads: number;
  logger?: EngineLogger;
}

export interface OpenedSession {
  session: ort.InferenceSession;
  device: ResolvedDevice;
}

const CUDA_HOWTO =
  "On a host with an NVIDIA GPU, CUDA 12 and cuDNN 9, fetch onnxruntime-node's CUDA provider with " +
  "`ONNXRUNTIME_NODE_INSTALL=cuda12 node node_modules/onnxruntime-node/script/install.js`; " +
  "otherwise run on the CPU with --device cpu (LONGCLIP_DEVICE=cpu) or let --device auto pick";

/** Directory holding onnxruntime-node's native libraries for this platform. */
export function ortBinaryDir(): string {
  const require = createRequire(import.meta.url);
  const entry = require.resolve("onnxruntime-node");
  return path.join(path.dirname(entry), "..", "bin", "napi-v6", process.platform, process.arch);
}

/** Path of the CUDA provider library ONNX Runtime would load, or undefined on platforms without one. */
export function cudaProviderLibrary(binDir = ortBinaryDir()): string | undefined {
  if (process.platform === "linux") return path.join(binDir, "libonnxruntime_providers_cuda.so");
  if (process.platform === "win32") return path.join(binDir, "onnxruntime_providers_cuda.dll");
  return undefined;
}

/**
 * Why CUDA cannot run here, or undefined if the CUDA build is installed (a GPU may still be
 * missing; session creation reports that).
 */
export function cudaUnavailableReason(binDir = ortBinaryDir()): string | undefined {
  const library = cudaProviderLibrary(binDir);
  if (library === undefined) return `onnxruntime-node has no CUDA build for ${process.platform}`;
  if (!existsSync(library)) {
    return `the CUDA execution provider is not installed (${library} is missing: onnxruntime-node's install script, which downloads it, was skipped or blocked)`;
  }
  return undefined;
}

/**
 * The engine's CPU session options. Intra-op threads do not spin while they wait for work: on a
 * machine whose cores the image preprocessing (or anything else) also uses, a spinning thread
 * burns the core a preempted sibling needs to finish its share of the operator. Measured on
 * 2 cores, ViT-B/16, batch 8, in paired rounds: the whole ingest ran at 6.15-6.36 images/s
 * and 293-302 CPU ms per image with spinning off, 5.56-6.10 and 317-348 with it on; the bare
 * encoder alone differs by about 5% either way between runs (bench:perf, section "options").
 */
export function cpuOptions(threads: number): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: ["cpu"],
    graphOptimizationLevel: "all",
    executionMode: "sequential",
    ...(threads > 0 ? { intraOpNumThreads: threads } : {}),
    extra: { session: { intra_op: { allow_spinning: "0" } } },
  };
}

async function openCuda(modelPath: string, threads: number): Promise<ort.InferenceSession> {
  const reason = cudaUnavailableReason();
  if (reason !== undefined) {
    throw new AppError("cuda_unavailable", `Cannot use --device cuda: ${reason}. ${CUDA_HOWTO}.`);
  }
  try {
    // Only the CUDA provider is listed: ONNX Runtime still places the few operators CUDA lacks
    // on the CPU, but it cannot swap the whole model to the CPU without an error.
    return await ort.InferenceSession.create(modelPath, {
      ...cpuOptions(threads),
      executionProviders: ["cuda"],
    });
  } catch (error) {
    throw new AppError(
      "cuda_unavailable",
      `Cannot use --device cuda: ONNX Runtime failed to start the CUDA provider (${(error as Error).message.trim()}). ` +
        `Check that a GPU is visible (nvidia-smi) and CUDA 12 / cuDNN 9 libraries are on the library path. ${CUDA_HOWTO}.`,
    );
  }
}

async function openCpu(modelPath: string, threads: number): Promise<ort.InferenceSession> {
  try {
    return await ort.InferenceSession.create(modelPath, cpuOptions(threads));
  } catch (error) {
    throw new AppError(
      "model_invalid",
      `ONNX Runtime cannot load ${modelPath}: ${(error as Error).message.trim()}. Re-export the model with \`python3 -m training export\` (see README).`,
    );
  }
}

/** Opens one model file on `device`; `auto` tries CUDA, falls back to the CPU, and logs the choice. */
export async function openSession(
  modelPath: string,
  options: SessionOptions,
): Promise<OpenedSession> {
  const { device, threads } = options;
  const logger = options.logger ?? stderrLogger;
  if (device === "cpu") return { session: await openCpu(modelPath, threads), device: "cpu" };
  if (device === "cuda") return { session: await openCuda(modelPath, threads), device: "cuda" };
  try {
    const session = await openCuda(modelPath, threads);
    logger.info(`device auto: ${path.basename(modelPath)} runs on CUDA`);
    return { session, device: "cuda" };
  } catch (error) {
    if (!(error instanceof AppError) || error.code !== "cuda_unavailable") throw error;
    const reason = error.message.replace(/^Cannot use --device cuda: /, "").split(". ")[0];
    logger.info(
      `device auto: ${path.basename(modelPath)} runs on the CPU, CUDA is unavailable: ${reason}`,
    );
    return { session: await openCpu(modelPath, threads), device: "cpu" };
  }
}

/**
 * Runs one session's calls one after another. onnxruntime-node's `run` executes synchronously
 * inside a setImmediate callback, so calls cannot overlap today; the queue keeps FIFO order and
 * stays correct if a future binding runs asynchronously, and lets `close` wait for work in flight.
 */
export class SerialSession {
  #tail: Promise<unknown> = Promise.resolve();
  #closed = false;

  constructor(
    readonly session: ort.InferenceSession,
    readonly device: ResolvedDevice,
  ) {}

  get inputNames(): readonly string[] {
    return this.session.inputNames;
  }

  get outputNames(): readonly string[] {
    return this.session.outputNames;
  }

  /**
   * Runs the model; `fetches` names the outputs returned (default: every output), so a tower
   * with a second output (vision.dense) hands back only what the caller reads.
   */
  run(
    feeds: ort.InferenceSession.FeedsType,
    fetches?: readonly string[],
  ): Promise<ort.InferenceSession.ReturnType> {
    if (this.#closed) {
      return Promise.reject(encoderClosed());
    }
    const result = this.#tail.then(() =>
      fetches === undefined ? this.session.run(feeds) : this.session.run(feeds, fetches),
    );
    this.#tail = result.catch(() => undefined);
    return result;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#tail;
    await this.session.release();
  }
}

/** What a closed encoder answers every call with. */
export function encoderClosed(): AppError {
  return new AppError("encoder_closed", "The encoder has been closed.");
}
