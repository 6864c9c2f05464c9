/**
 * What the main thread and an HNSW shard worker (./hnsw-shard-worker.ts) say to each other.
 * Labels travel as Float64Array (exact for any label below 2^53), vectors as one row-major
 * Float32Array per batch; both are transferred, not copied.
 */
import type { HnswOptions } from "./hnsw.ts";

export type ShardRequest = { id: number } & (
  | { op: "init"; options: HnswOptions; file?: string }
  | { op: "add"; labels: Float64Array; vectors: Float32Array }
  | { op: "remove"; labels: Float64Array }
  /** `allowed`: a bitmap over labels (bit `label` set = accepted), shared by every shard. */
  | { op: "search"; query: Float32Array; k: number; allowed?: SharedArrayBuffer }
  | { op: "labels" }
  /** Writes the shard if it changed since its last save, or anyway with `force`. */
  | { op: "save"; file: string; force?: boolean }
);

export interface ShardState {
  size: number;
  capacity: number;
}

export type ShardReply =
  | ({ id: number; ok: true } & ShardState & {
        /** init: whether the file was read (false: it was missing or unreadable, so empty). */
        loaded?: boolean;
        /** labels: every live label; search: the neighbours' labels, best first. */
        labels?: Float64Array;
        /** search: cosine similarity of each label. */
        scores?: Float32Array;
        /** save: whether there was anything to write. */
        saved?: boolean;
      })
  | { id: number; ok: false; error: { message: string; code?: string } };
