/**
 * The HNSW index off the event loop: N shards, each an hnswlib index owned by its own worker
 * thread (./hnsw-shard-worker.ts; hnswlib-node objects cannot be shared between threads).
 * Label `l` lives in shard `l % N`. Inserts go to the shards in batches, their vectors copied
 * into one buffer per shard and transferred; a search asks every shard for k and merges by
 * score. A filter travels as a bitmap over labels in a SharedArrayBuffer that all shards read.
 *
 * More shards insert faster when there are cores for them (each shard is one thread), at the
 * cost of a search visiting N smaller graphs instead of one.
 */
import type { Worker } from "node:worker_threads";
import { startModuleWorker } from "../util/module-worker.ts";
import type { HnswOptions, Neighbour } from "./hnsw.ts";
import type { ShardReply, ShardRequest, ShardState } from "./shard-messages.ts";

type Ok = Extract<ShardReply, { ok: true }>;
/** A request without its id (the shard assigns it), distributed over the union. */
type Request = ShardRequest extends infer R
  ? R extends ShardRequest
    ? Omit<R, "id">
    : never
  : never;

interface Pending {
  resolve(reply: Ok): void;
  reject(error: unknown): void;
}

class Shard {
  private readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private failure: Error | undefined;
  private waiting: (() => void)[] = [];
  state: ShardState = { size: 0, capacity: 0 };

  constructor() {
    this.worker = startModuleWorker(import.meta.url, "hnsw-shard-worker");
    // Idle shards do not keep the process alive; a shard with work in flight does.
    this.worker.unref();
    this.worker.on("message", (reply: ShardReply) => this.settle(reply));
    this.worker.on("error", (error) => this.fail(error));
    this.worker.on("exit", (code) => this.fail(new Error(`an HNSW shard worker exited (${code})`)));
  }

  get failed(): Error | undefined {
    return this.failure;
  }

  send(request: Request, transfer: ArrayBuffer[] = []): Promise<Ok> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise<Ok>((resolve, reject) => {
      if (this.pending.size === 0) this.worker.ref();
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ ...request, id }, transfer);
    });
  }

  /** Resolves when no request is in flight. */
  drained(): Promise<void> {
    if (this.pending.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  async terminate(): Promise<void> {
    this.fail(new Error("the HNSW index is closed"));
    await this.worker.terminate();
  }

  private settle(reply: ShardReply): void {
    const pending = this.pending.get(reply.id);
    if (pending === undefined) return;
    this.pending.delete(reply.id);
    if (this.pending.size === 0) this.idle();
    if (reply.ok) {
      this.state = { size: reply.size, capacity: reply.capacity };
      pending.resolve(reply);
    } else {
      pending.reject(Object.assign(new Error(reply.error.message), { code: reply.error.code }));
    }
  }

  private fail(error: Error): void {
    this.failure ??= error;
    for (const pending of this.pending.values()) pending.reject(this.failure);
    this.pending.clear();
    this.idle();
  }

  private idle(): void {
    this.worker.unref();
    for (const resolve of this.waiting.splice(0)) resolve();
  }
}

export class ShardedHnsw {
  private readonly shards: Shard[];
  /** Resolves when every shard has read its file or started empty; true per shard read. */
  readonly opened: Promise<boolean[]>;

  /**
   * Starts `count` shards; each reads `files[i]` if given and readable, else starts empty with
   * room for `capacity / count` vectors (it grows by doubling). `onSaveFailures` hears how many
   * shards failed each save (for the owner's health).
   */
  constructor(
    readonly options: HnswOptions,
    count: number,
    files?: readonly string[],
    private readonly onSaveFailures: (shards: number) => void = () => {},
  ) {
    if (!Number.isInteger(count) || count < 1)
      throw new Error(`HNSW shards must be ≥ 1, not ${count}`);
    this.shards = Array.from({ length: count }, () => new Shard());
    const capacity = Math.ceil((options.capacity ?? 1024) / count);
    this.opened = Promise.all(
      this.shards.map(async (shard, i) => {
        const file = files?.[i];
        const reply = await shard.send({
          op: "init",
          options: { ...options, capacity },
          ...(file !== undefined ? { file } : {}),
        });
        return reply.loaded === true;
      }),
    );
    // A failed start is reported to whoever awaits `opened` or sends a request.
    this.opened.catch(() => undefined);
  }

  get shardCount(): number {
    return this.shards.length;
  }

  /** A worker died (or the index was closed): this index cannot be used any more. */
  get failed(): Error | undefined {
    return this.shards.find((shard) => shard.failed !== undefined)?.failed;
  }

  /** Live vectors, as of the last reply of each shard. */
  get size(): number {
    return this.shards.reduce((sum, shard) => sum + shard.state.size, 0);
  }

  get capacity(): number {
    return this.shards.reduce((sum, shard) => sum + shard.state.capacity, 0);
  }

  /**
   * Adds `labels[i]` with the vector at rows i of `vectors` (row-major, `dims` per row); a
   * label already present is left as it is. Resolves when every shard has inserted its part.
   */
  async add(
    labels: ArrayLike<number>,
    vectors: Float32Array | readonly Float32Array[],
  ): Promise<void> {
    const dims = this.options.dims;
    const rows = labels.length;
    const row = (i: number): Float32Array =>
      vectors instanceof Float32Array
        ? vectors.subarray(i * dims, (i + 1) * dims)
        : (vectors[i] as Float32Array);
    const counts = this.counts(Array.from(labels));
    for (let i = 0; i < rows; i++) {
      if (row(i).length !== dims)
        throw new Error(`vector has ${row(i).length} dims, the index ${dims}`);
    }
    const parts = counts.map((n) => ({
      labels: new Float64Array(n),
      vectors: new Float32Array(n * dims),
      filled: 0,
    }));
    for (let i = 0; i < rows; i++) {
      const label = labels[i] as number;
      const part = parts[this.shardOf(label)] as (typeof parts)[number];
      part.labels[part.filled] = label;
      part.vectors.set(row(i), part.filled * dims);
      part.filled++;
    }
    await Promise.all(
      parts.map((part, s) =>
        part.filled === 0
          ? undefined
          : this.shard(s).send({ op: "add", labels: part.labels, vectors: part.vectors }, [
              part.labels.buffer,
              part.vectors.buffer,
            ]),
      ),
    );
  }

  /** Marks labels deleted; labels the index does not hold are ignored. */
  async remove(labels: readonly number[]): Promise<void> {
    const parts = this.split(labels);
    await Promise.all(
      parts.map((part, s) =>
        part.length === 0
          ? undefined
          : this.shard(s).send({ op: "remove", labels: part }, [part.buffer as ArrayBuffer]),
      ),
    );
  }

  /** Every live label, each shard's in one array. */
  async labels(): Promise<Float64Array[]> {
    const replies = await Promise.all(this.shards.map((shard) => shard.send({ op: "labels" })));
    return replies.map((reply) => reply.labels ?? new Float64Array(0));
  }

  /**
   * The k nearest live labels by cosine similarity, best first. `allowed` (the accepted labels)
   * filters the graph walk in every shard, as hnswlib's filter does in one.
   */
  async search(query: Float32Array, k: number, allowed?: readonly number[]): Promise<Neighbour[]> {
    if (k <= 0) return [];
    const bitmap = allowed === undefined ? undefined : labelBitmap(allowed);
    // A shard holding none of the allowed labels is not asked: hnswlib would walk its whole
    // graph looking for one.
    const holds = allowed === undefined ? undefined : this.counts(allowed);
    const asked = this.shards.filter((_, s) => holds === undefined || (holds[s] as number) > 0);
    const replies = await Promise.all(
      asked.map((shard) =>
        shard.send({
          op: "search",
          query: Float32Array.from(query),
          k,
          ...(bitmap !== undefined ? { allowed: bitmap } : {}),
        }),
      ),
    );
    const merged: Neighbour[] = [];
    for (const reply of replies) {
      const labels = reply.labels ?? new Float64Array(0);
      const scores = reply.scores ?? new Float32Array(0);
      for (let i = 0; i < labels.length; i++) {
        merged.push({ label: labels[i] as number, score: scores[i] as number });
      }
    }
    merged.sort((a, b) => b.score - a.score || a.label - b.label);
    return merged.slice(0, k);
  }

  /**
   * Saves each shard that changed (every shard with `force`) to `files[i]`, atomically and
   * checked (HnswIndex.save), all at once. Throws the first failure after all have finished,
   * once `onSaveFailures` has heard how many failed.
   */
  async save(files: readonly string[], force = false): Promise<void> {
    const results = await Promise.allSettled(
      this.shards.map((shard, i) => shard.send({ op: "save", file: files[i] as string, force })),
    );
    const failures = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failures.length > 0) {
      this.onSaveFailures(failures.length);
      throw failures[0]?.reason;
    }
  }

  /** Stops the workers once the requests in flight are answered (without saving). */
  async close(): Promise<void> {
    await Promise.all(this.shards.map((shard) => shard.drained()));
    await Promise.all(this.shards.map((shard) => shard.terminate()));
  }

  private shardOf(label: number): number {
    return label % this.shards.length;
  }

  private shard(i: number): Shard {
    return this.shards[i] as Shard;
  }

  /** How many of `labels` each shard holds. */
  private counts(labels: readonly number[]): number[] {
    const counts = new Array<number>(this.shards.length).fill(0);
    for (const label of labels) {
      const s = this.shardOf(label);
      counts[s] = (counts[s] as number) + 1;
    }
    return counts;
  }

  /** `labels` by shard. */
  private split(labels: readonly number[]): Float64Array[] {
    const parts = this.counts(labels).map((n) => ({ labels: new Float64Array(n), filled: 0 }));
    for (const label of labels) {
      const part = parts[this.shardOf(label)] as (typeof parts)[number];
      part.labels[part.filled++] = label;
    }
    return parts.map((part) => part.labels);
  }
}

/** Bit `label` set for each allowed label, in memory every shard reads without a copy. */
export function labelBitmap(labels: readonly number[]): SharedArrayBuffer {
  let max = 0;
  for (const label of labels) if (label > max) max = label;
  const buffer = new SharedArrayBuffer(Math.floor(max / 8) + 1);
  const bits = new Uint8Array(buffer);
  for (const label of labels) {
    const byte = Math.floor(label / 8);
    bits[byte] = (bits[byte] as number) | (1 << (label % 8));
  }
  return buffer;
}
