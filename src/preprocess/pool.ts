/**
 * Image preprocessing on worker threads. Decoding runs in sharp's own threads already, but the
 * Pillow-exact resampling and normalisation are JavaScript: on the main thread a chunk of large
 * photos blocked the event loop for over half a second, so searches and HTTP requests stalled
 * during a bulk ingest. Here each worker takes any number of concurrent requests; a request
 * goes to the worker with the fewest in flight.
 */
import { availableParallelism } from "node:os";
import type { Worker } from "node:worker_threads";
import { AppError, deserializeError, type SerializedError } from "../core/errors.ts";
import { startModuleWorker } from "../util/module-worker.ts";
import type { DecodeGate, PixelLimit } from "./decode-gate.ts";
import type { CropRequest } from "./regions.ts";
import type { PreprocessedImage, PreprocessOptions } from "./types.ts";

export interface PoolRequest {
  id: number;
  bytes: Uint8Array;
  options: PreprocessOptions;
  crops?: CropRequest;
}

export type PoolReply =
  | { id: number; ok: true; image: PreprocessedImage }
  | {
      id: number;
      ok: false;
      error: SerializedError;
    };

interface Pending {
  resolve(image: PreprocessedImage): void;
  reject(error: unknown): void;
}

interface Slot {
  worker: Worker;
  pending: Map<number, Pending>;
}

/** Starts the worker (from the sources under tsx, or from dist/). */
function startWorker(): Worker {
  return startModuleWorker(import.meta.url, "pool-worker");
}

export class PreprocessPool {
  readonly size: number;
  private readonly slots: (Slot | undefined)[];
  private nextId = 1;
  private closed = false;

  /** `size` 0 means one worker per core but one, leaving a core to the main thread. */
  constructor(
    size = 0,
    /** Decoding memory bound: each image waits here, by its pixel count, before a worker sees it. */
    private readonly gate?: DecodeGate,
  ) {
    this.size = size > 0 ? size : Math.max(1, availableParallelism() - 1);
    this.slots = new Array<Slot | undefined>(this.size).fill(undefined);
  }

  /**
   * Decodes and preprocesses `bytes` once the gate admits it (refused when over `limit`), with
   * the crops `crops` asks for (./regions.ts).
   */
  async run(
    bytes: Buffer,
    options: PreprocessOptions,
    limit?: PixelLimit,
    crops?: CropRequest,
  ): Promise<PreprocessedImage> {
    if (this.gate === undefined) return this.dispatch(bytes, options, crops);
    const release = await this.gate.admit(bytes, limit);
    try {
      return await this.dispatch(bytes, options, crops);
    } finally {
      release();
    }
  }

  private dispatch(
    bytes: Buffer,
    options: PreprocessOptions,
    crops: CropRequest | undefined,
  ): Promise<PreprocessedImage> {
    if (this.closed) {
      return Promise.reject(new AppError("library_closed", "The library is shutting down."));
    }
    const slot = this.pick();
    const id = this.nextId++;
    // A private copy can be transferred, whatever buffer pool `bytes` lives in.
    const copy = new Uint8Array(bytes);
    return new Promise<PreprocessedImage>((resolve, reject) => {
      if (slot.pending.size === 0) slot.worker.ref();
      slot.pending.set(id, { resolve, reject });
      const request: PoolRequest = { id, bytes: copy, options };
      if (crops !== undefined) request.crops = crops;
      slot.worker.postMessage(request, [copy.buffer as ArrayBuffer]);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(
      this.slots.map(async (slot, i) => {
        this.slots[i] = undefined;
        if (slot !== undefined) await slot.worker.terminate();
      }),
    );
  }

  private pick(): Slot {
    let best: Slot | undefined;
    for (let i = 0; i < this.slots.length; i++) {
      const slot = this.slots[i] ?? this.spawn(i);
      if (best === undefined || slot.pending.size < best.pending.size) best = slot;
    }
    return best as Slot;
  }

  private spawn(index: number): Slot {
    const worker = startWorker();
    const slot: Slot = { worker, pending: new Map() };
    // An idle worker must not keep the process alive.
    worker.unref();
    worker.on("message", (reply: PoolReply) => {
      const pending = slot.pending.get(reply.id);
      if (pending === undefined) return;
      slot.pending.delete(reply.id);
      if (slot.pending.size === 0) worker.unref();
      if (reply.ok) pending.resolve(reply.image);
      else {
        pending.reject(deserializeError(reply.error));
      }
    });
    const fail = (reason: string) => {
      if (this.slots[index] === slot) this.slots[index] = undefined;
      for (const pending of slot.pending.values()) {
        pending.reject(
          new AppError("preprocess_failed", `The image preprocessing worker ${reason}; retry.`),
        );
      }
      slot.pending.clear();
    };
    worker.on("error", (error) => fail(`crashed: ${error.message}`));
    worker.on("exit", (code) => fail(`exited with code ${code}`));
    this.slots[index] = slot;
    return slot;
  }
}
