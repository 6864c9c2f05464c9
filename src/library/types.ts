/**
 * The library: what the HTTP layer and the CLI call. It owns the ingest pipeline
 * (preprocess → encode → store), search, and item management.
 */
import type {
  ComposePart,
  DuplicateGroupPage,
  Hit,
  ImageQuery,
  ImageQueryOptions,
  IndexInput,
  IndexResult,
  Item,
  ItemOrder,
  Page,
  SearchOptions,
  TextOptions,
  TextSearchResult,
} from "../core/types.ts";
import type { Embedder } from "../encode/types.ts";
import type {
  ItemStore,
  ReindexTarget,
  StoreHealth,
  StoreServer,
  VectorIndexStats,
} from "../store/types.ts";
import type { ExplainQuery, Explanation } from "./explain/explain.ts";
import type { ReindexStatus, SwitchMode } from "./models/types.ts";

export type { ReindexStatus, SwitchMode };

export type LibraryState =
  | "starting"
  | "unavailable"
  | "ready"
  | "needs_reindex"
  | "reindexing"
  | "closed";

export interface LibraryOptions {
  /**
   * Accept `path` inputs anywhere on the file system, not only under settings.mediaRoot. For
   * the local CLI (`longclip index <paths>`), whose user already has the files; never for HTTP.
   */
  allowAnyPath?: boolean;
  /** Called when background work (index saves, store checks) fails (default: a warning). */
  onBackgroundError?: (error: unknown) => void;
  /** The store to use instead of the one the settings name (tests, migrate). */
  store?: ItemStore;
  /**
   * Loads another model (blue/green reindex: `startReindex`, and following a reindex that
   * another node or process runs). Without it, this library cannot take part in one.
   */
  loadModel?: (modelDir: string) => Promise<Embedder>;
}

export interface LibraryStats {
  items: number;
  modelId: string;
  dims: number;
  device: "cpu" | "cuda";
  backend: "sqlite" | "postgres";
  index: VectorIndexStats;
  queue: { pending: number; capacity: number };
}

export interface Library {
  /** One result per input, in order; a bad input fails only itself. Durable once "indexed". */
  index(inputs: readonly IndexInput[]): Promise<IndexResult[]>;
  /** Throws AppError("query_too_long") when `truncate` is false and the query exceeds the context. */
  searchText(query: string, options: SearchOptions & TextOptions): Promise<TextSearchResult>;
  /** The weighted sum of the parts' unit embeddings, normalised again, as the query. */
  searchCompose(
    parts: readonly ComposePart[],
    options: SearchOptions & TextOptions,
  ): Promise<TextSearchResult>;
  /** Items like an image (uploaded or stored), or like a region of it (`box`). */
  searchImage(
    image: ImageQuery,
    options: SearchOptions & ImageQueryOptions,
  ): Promise<{ hits: Hit[] }>;
  /** Groups of near-duplicate items (image embeddings at least `threshold` similar), paged. */
  duplicates(options: {
    threshold: number;
    cursor: string | null;
    limit: number;
  }): Promise<DuplicateGroupPage>;
  /** Why `itemId` matches `query`: a heat map of its patches (POST /explain; ./explain/). */
  explain(itemId: string, query: ExplainQuery): Promise<Explanation>;
  /** The same heat map drawn over the item's image, as a PNG. */
  explainOverlay(itemId: string, query: ExplainQuery): Promise<Buffer>;
  getItem(id: string): Promise<Item | undefined>;
  /** The original bytes of an item's image, with its content type. */
  readImage(id: string): Promise<{ bytes: Buffer; contentType: string } | undefined>;
  /** A video item's frame at `t` seconds, as JPEG (400 validation_failed for an image item). */
  readFrame(id: string, t: number): Promise<Buffer | undefined>;
  deleteItem(id: string): Promise<boolean>;
  /** Waits until `pixels` may be decoded under maxDecodePixels; call the result when done. */
  admitDecode(pixels: number): Promise<() => void>;
  /** A page of items, oldest first unless `order` is "newest". */
  listItems(cursor: string | null, limit: number, order?: ItemOrder): Promise<Page<Item>>;
  /** Re-embeds every item with the current model. */
  reindex(onProgress?: (done: number, total: number) => void): Promise<number>;
  /** Blue/green: embeds every item with the model in `modelDir`, then switches (see models/blue-green.ts). */
  startReindex(modelDir: string, switchMode?: SwitchMode): Promise<ReindexStatus>;
  /** The blue/green reindex this library runs or last ran. */
  reindexStatus(): ReindexStatus | undefined;
  /** The run recorded in the store (any node's). */
  reindexTarget(): Promise<ReindexTarget | undefined>;
  /** Switches a run waiting for it (manual mode). */
  switchReindex(): Promise<ReindexStatus>;
  stats(): Promise<LibraryStats>;
  ready(): boolean;
  /** The store's health: reachable or not, and its index saves that failed (for /metrics). */
  storeHealth(): StoreHealth;
  /** Why the library is not ready (undefined when it is): for /ready. */
  notReadyReason(): string | undefined;
  /** The database servers a shared store uses and their state (none for the embedded store). */
  databaseServers(): StoreServer[];
  /** Persists what the store keeps only in memory (the SQLite backend's HNSW index). */
  flush(): Promise<void>;
  /** Lets running work finish, then closes the store and the encoder. */
  close(): Promise<void>;
}
