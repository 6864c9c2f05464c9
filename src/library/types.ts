/**
 * The library: what the HTTP layer and the CLI call. It owns the ingest pipeline
 * (preprocess → encode → store), search, and item management.
 */
import type { VectorIndexStats } from "../store/types.ts";

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

export interface SearchOptions {
  k: number;
  filter?: Record<string, string | number | boolean | null>;
  /** Brute-force scan over every stored embedding instead of HNSW. */
  exact?: boolean;
}

export interface Hit {
  id: string;
  score: number;
  rank: number;
  metadata: Metadata;
}

export interface TextSearchResult {
  hits: Hit[];
  query: { tokens: number; truncated: boolean; max_tokens: number };
}

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
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
  searchText(
    query: string,
    options: SearchOptions & { truncate?: boolean },
  ): Promise<TextSearchResult>;
  searchImage(bytes: Buffer, options: SearchOptions): Promise<{ hits: Hit[] }>;
  getItem(id: string): Promise<Item | undefined>;
  /** The original bytes of an item's image, with its content type. */
  readImage(id: string): Promise<{ bytes: Buffer; contentType: string } | undefined>;
  deleteItem(id: string): Promise<boolean>;
  /** Waits until `pixels` may be decoded under maxDecodePixels; call the result when done. */
  admitDecode(pixels: number): Promise<() => void>;
  listItems(cursor: string | null, limit: number): Promise<Page<Item>>;
  /** Re-embeds every item with the current model. */
  reindex(onProgress?: (done: number, total: number) => void): Promise<number>;
  stats(): Promise<LibraryStats>;
  ready(): boolean;
  /** Why the library is not ready (undefined when it is): for /ready. */
  notReadyReason(): string | undefined;
  /** Persists what the store keeps only in memory (the SQLite backend's HNSW index). */
  flush(): Promise<void>;
  /** Lets running work finish, then closes the store and the encoder. */
  close(): Promise<void>;
}
