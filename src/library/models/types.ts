/**
 * What the model lifecycle (./lifecycle.ts) shares with the library and with its own parts: the
 * one collaborator the library hands it, the models as a blue/green run sees them, and the
 * reindex status the HTTP layer and the CLI show.
 */
import type { ErrorInfo } from "../../core/errors.ts";
import type { Settings } from "../../core/settings.ts";
import type { Embedder } from "../../encode/types.ts";
import type { PreprocessPool } from "../../preprocess/pool.ts";
import type { ItemStore, StoredItem } from "../../store/types.ts";
import type { EmbedQueue } from "../queue.ts";
import type { Generation } from "./generation.ts";

/** The library, as its models see it. */
export interface ModelHost {
  readonly settings: Settings;
  readonly store: ItemStore;
  readonly pool: PreprocessPool;
  /** Vision-tower work; re-embedding queues as ingest does. */
  readonly queue: EmbedQueue;
  /** Loads another model (the library's loadModel option); without it no reindex to another model can be run or followed. */
  readonly loadModel: ((modelDir: string) => Promise<Embedder>) | undefined;
  /** An item's original bytes (a file indexed by path is re-checked, as every read of it is). */
  readBytes(item: StoredItem): Promise<Buffer>;
  /** The work in flight: a replaced model closes once it settled. */
  inFlight(): Iterable<Promise<unknown>>;
  /** Another model became live: the library rebuilds what depends on the model. */
  adopted(next: Generation): void;
  /** Throws when the library is closing. */
  assertOpen(): void;
  /** Background work failed (a store check, a run): reported, never thrown. */
  reportBackground(error: unknown): void;
}

/** The models as a blue/green run (./blue-green.ts) sees them: ModelLifecycle. */
export interface LiveModels {
  /** The model that embeds queries and new items. */
  readonly live: Generation;
  /** Loads the model in `modelDir` (ModelHost.loadModel), with its preprocessing. */
  load(modelDir: string): Promise<Generation>;
  /** `next` becomes live (queries, ingest); the old model closes once the work using it is done. */
  adopt(next: Generation): void;
  /** Closes `old` once the work in flight (which may embed with it) is done. */
  retire(old: Generation): void;
}

export type SwitchMode = "auto" | "manual";

export interface ReindexStatus {
  state: "running" | "waiting_for_switch" | "switched" | "failed";
  modelId: string;
  dims: number;
  modelDir: string;
  switchMode: SwitchMode;
  /** Items with an embedding by the next model, of `total`. */
  done: number;
  total: number;
  /** Items that could not be read (they have no embedding after the switch). */
  failed: number;
  failures: { id: string; code: string; message: string }[];
  startedAt: number;
  finishedAt?: number;
  error?: ErrorInfo;
}

export type ReindexProgress = (done: number, total: number) => void;
export type ReindexFailure = (id: string, error: ErrorInfo) => void;
