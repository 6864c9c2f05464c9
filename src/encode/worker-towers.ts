/**
 * Towers in a worker thread. onnxruntime-node's `session.run` computes synchronously on the
 * calling thread, so in-process inference stalls the event loop for the whole batch (seconds for
 * a ViT-L on a CPU); in a worker, the server keeps answering while images are encoded. A worker
 * runs one call at a time, so the Encoder gives each tower its own worker: a query does not
 * wait behind an image batch.
 */
import type { Worker } from "node:worker_threads";
import {
  AppError,
  deserializeError,
  isAppError,
  type SerializedError,
  serializeError,
} from "../core/errors.ts";
import { startModuleWorker } from "../util/module-worker.ts";
import { type EngineLogger, encoderClosed } from "./session.ts";
import {
  notOpened,
  type TensorData,
  type TowerDevices,
  type TowerName,
  type Towers,
  type TowersSpec,
  towerNames,
} from "./towers.ts";

/** Messages from the worker (worker.ts) to this side. */
export type WorkerReply =
  | { kind: "ready"; devices: TowerDevices }
  | { kind: "failed"; error: SerializedError }
  | { kind: "result"; id: number; output: TensorData }
  | { kind: "error"; id: number; error: SerializedError }
  | { kind: "log"; level: "info" | "warn"; message: string };

/** Messages from this side to the worker. */
export type WorkerRequest =
  | { kind: "run"; id: number; tower: TowerName; input: TensorData; output?: string }
  | { kind: "close" };

/** What the worker sends back for an error: an AppError as it is, anything else as encoder_failed. */
export function replyError(error: unknown): SerializedError {
  return serializeError(
    isAppError(error)
      ? error
      : new AppError(
          "encoder_failed",
          `The encoder failed: ${(error as Error)?.message ?? String(error)}`,
        ),
  );
}

/** Starts worker.ts (from the sources under tsx, or from dist/). */
function startWorker(spec: TowersSpec): Worker {
  return startModuleWorker(import.meta.url, "worker", { workerData: spec });
}

interface Pending {
  resolve: (output: TensorData) => void;
  reject: (error: unknown) => void;
}

export class WorkerTowers implements Towers {
  readonly #worker: Worker;
  readonly #exited: Promise<void>;
  readonly #logger: EngineLogger | undefined;
  readonly #pending = new Map<number, Pending>();
  #nextId = 0;
  #closed = false;
  #broken: AppError | undefined;

  private constructor(
    worker: Worker,
    readonly devices: TowerDevices,
    exited: Promise<void>,
    logger: EngineLogger | undefined,
  ) {
    this.#worker = worker;
    this.#exited = exited;
    this.#logger = logger;
    worker.on("message", (reply: WorkerReply) => this.#onReply(reply));
    worker.unref();
  }

  /** Starts a worker and opens the towers of `spec` in it; rejects with the worker's AppError. */
  static async open(spec: TowersSpec, logger?: EngineLogger): Promise<WorkerTowers> {
    const worker = startWorker(spec);
    const names = towerNames(spec);
    const name = `The encoder worker of the ${names.join(" and ")} tower${names.length > 1 ? "s" : ""}`;
    let fail: (error: AppError) => void = () => {};
    const exited = new Promise<void>((resolve) => {
      worker.once("exit", (code) => {
        fail(
          new AppError(
            "encoder_failed",
            `${name} stopped (exit code ${code}); restart the process and check its log.`,
          ),
        );
        resolve();
      });
    });
    worker.on("error", (error) =>
      fail(
        new AppError(
          "encoder_failed",
          `${name} crashed: ${error.message}; restart the process and check its log.`,
        ),
      ),
    );
    const devices = await new Promise<TowerDevices>((resolve, reject) => {
      fail = reject;
      const onReady = (reply: WorkerReply) => {
        if (reply.kind === "log") {
          logger?.[reply.level](reply.message);
          return;
        }
        worker.off("message", onReady);
        if (reply.kind === "ready") resolve(reply.devices);
        else if (reply.kind === "failed") reject(deserializeError(reply.error));
      };
      worker.on("message", onReady);
    }).catch(async (error: unknown) => {
      await worker.terminate();
      throw error;
    });
    const towers = new WorkerTowers(worker, devices, exited, logger);
    fail = (error) => towers.#fail(error);
    return towers;
  }

  run(tower: TowerName, input: TensorData, output?: string): Promise<TensorData> {
    if (this.#closed) {
      return Promise.reject(encoderClosed());
    }
    if (this.#broken) return Promise.reject(this.#broken);
    if (this.devices[tower] === undefined) return Promise.reject(notOpened(tower));
    const id = this.#nextId++;
    return new Promise<TensorData>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      // Keep the process alive only while work is in flight.
      if (this.#pending.size === 1) this.#worker.ref();
      this.#worker.postMessage({
        kind: "run",
        id,
        tower,
        input,
        ...(output !== undefined ? { output } : {}),
      } satisfies WorkerRequest);
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (!this.#broken) {
      this.#worker.ref();
      this.#worker.postMessage({ kind: "close" } satisfies WorkerRequest);
    }
    await this.#exited;
  }

  #settled(id: number): Pending | undefined {
    const entry = this.#pending.get(id);
    this.#pending.delete(id);
    if (this.#pending.size === 0 && !this.#closed) this.#worker.unref();
    return entry;
  }

  #onReply(reply: WorkerReply): void {
    if (reply.kind === "result") this.#settled(reply.id)?.resolve(reply.output);
    else if (reply.kind === "error") this.#settled(reply.id)?.reject(deserializeError(reply.error));
    else if (reply.kind === "log") this.#logger?.[reply.level](reply.message);
  }

  #fail(error: AppError): void {
    this.#broken ??= error;
    for (const entry of this.#pending.values()) entry.reject(error);
    this.#pending.clear();
  }
}
