/**
 * The library: what the HTTP layer and the CLI call. It owns the ingest pipeline
 * (preprocess → encode → store), search, and item management.
 */
import type { Embedder } from "../encode/types.ts";
import type { Filter, ItemStore, ReindexTarget, VectorIndexStats } from "../store/types.ts";
import type { ReindexStatus, SwitchMode } from "./blue-green.ts";

export type Metadata = Record<string, unknown>;

export interface IndexInput {
  /** Client id; generated (content-hash based) when absent. */
  id?: string;
  metadata?: Metadata;
  /** Uploaded bytes (kept content-addressed in the data dir)... */
  bytes?: Buffer;
  /** ...or a file under the media root, referenced in place. */
  path?: string;
  /** Original file name / content type of an upload, if known. */
  filename?: string;
  contentType?: string;
}

export interface IndexResult {
  id: string;
  status: "indexed" | "duplicate" | "failed";
  error?: { code: string; message: string };
  /** A new item's most similar stored item, when at least nearDuplicateThreshold (cosine). */
  near_duplicate_of?: string;
  near_duplicate_score?: number;
}

export interface Item {
  id: string;
  metadata: Metadata;
  contentType: string;
  width: number;
  height: number;
  bytes: number;
  sha256: string;
  source: "upload" | "path";
  path?: string;
  createdAt: string;
}

/** vector: image embeddings only; keyword: the text fields only; hybrid: both, fused (RRF). */
export type SearchMode = "vector" | "keyword" | "hybrid";

export interface SearchOptions {
  /** Hits per page. */
  k: number;
  /** Ranks to skip: `offset: 10, k: 10` returns ranks 11-20 of the same ranking. */
  offset?: number;
  /** Cosine below which hits are left out (so fewer than k, or none, may come back). */
  minScore?: number;
  /** Metadata conditions (src/store/filter.ts); keys AND together. */
  filter?: Filter;
  /** Brute-force scan over every stored embedding instead of HNSW. */
  exact?: boolean;
  /** Text queries only (default vector). */
  mode?: SearchMode;
  /** Metadata keys keyword matching looks in (default: the textFields setting). */
  textFields?: readonly string[];
}

/** How a query text past the model's context is read. */
export interface TextOptions {
  /** false: refuse a text past the context (`query_too_long`) instead of cutting it. */
  truncate?: boolean;
  /** "truncate" (default): the first context-length tokens; "chunk": sentence windows, pooled. */
  longQuery?: "truncate" | "chunk";
}

/** One part of a composed query: a text or a stored item, weighted (negative = less like it). */
export interface ComposePart {
  text?: string;
  itemId?: string;
  weight: number;
}

export interface QueryInfo {
  tokens: number;
  truncated: boolean;
  max_tokens: number;
  /** Windows embedded (1 unless long_query is "chunk" and the text is past the context). */
  chunks?: number;
  /** Parts of a composed query. */
  parts?: number;
}

export interface Hit {
  id: string;
  score: number;
  rank: number;
  metadata: Metadata;
  /** Keyword and hybrid modes: the rank in the keyword ranking (null: not in it). */
  keywordRank?: number | null;
  /** The store's keyword relevance (higher is better; backend-specific scale). */
  keywordScore?: number | null;
  /** Hybrid mode: the rank in the vector ranking (null: not in its candidates). */
  vectorRank?: number | null;
  /** Hybrid mode: the reciprocal rank fusion score the hits are ordered by. */
  fusedScore?: number;
}

export interface DuplicateGroupPage {
  groups: { ids: string[]; maxScore: number }[];
  nextCursor: string | null;
}

export interface TextSearchResult {
  hits: Hit[];
  query: QueryInfo;
}

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

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
  searchImage(bytes: Buffer, options: SearchOptions): Promise<{ hits: Hit[] }>;
  /** Groups of near-duplicate items (image embeddings at least `threshold` similar), paged. */
  duplicates(options: {
    threshold: number;
    cursor: string | null;
    limit: number;
  }): Promise<DuplicateGroupPage>;
  getItem(id: string): Promise<Item | undefined>;
  /** The original bytes of an item's image, with its content type. */
  readImage(id: string): Promise<{ bytes: Buffer; contentType: string } | undefined>;
  deleteItem(id: string): Promise<boolean>;
  /** Waits until `pixels` may be decoded under maxDecodePixels; call the result when done. */
  admitDecode(pixels: number): Promise<() => void>;
  listItems(cursor: string | null, limit: number): Promise<Page<Item>>;
  /** Re-embeds every item with the current model. */
  reindex(onProgress?: (done: number, total: number) => void): Promise<number>;
  /** Blue/green: embeds every item with the model in `modelDir`, then switches (see blue-green.ts). */
  startReindex(modelDir: string, switchMode?: SwitchMode): Promise<ReindexStatus>;
  /** The blue/green reindex this library runs or last ran. */
  reindexStatus(): ReindexStatus | undefined;
  /** The run recorded in the store (any node's). */
  reindexTarget(): Promise<ReindexTarget | undefined>;
  /** Switches a run waiting for it (manual mode). */
  switchReindex(): Promise<ReindexStatus>;
  stats(): Promise<LibraryStats>;
  ready(): boolean;
  /** Why the library is not ready (undefined when it is): for /ready. */
  notReadyReason(): string | undefined;
  /** Persists what the store keeps only in memory (the SQLite backend's HNSW index). */
  flush(): Promise<void>;
  /** Lets running work finish, then closes the store and the encoder. */
  close(): Promise<void>;
}
