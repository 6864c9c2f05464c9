/**
 * The domain: what is stored (items and their metadata), asked (searches, filters) and
 * answered (hits, results), shared by every layer from the store up to the HTTP layer and the
 * CLI. Types only; nothing here imports from the rest of the tree.
 */
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

/**
 * A rectangle of an image in its pixels, after EXIF orientation (the image as shown, the
 * frame of `Item.width` × `Item.height`): `x`, `y` the top-left corner, integers.
 */
export interface Box {
  x: number;
  y: number;
  width: number;
  height: number;
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
  /** Metadata conditions (FilterOperators); keys AND together. */
  filter?: Filter;
  /** Brute-force scan over every stored embedding instead of HNSW. */
  exact?: boolean;
  /** Text queries only (default vector). */
  mode?: SearchMode;
  /** Metadata keys keyword matching looks in (default: the textFields setting). */
  textFields?: readonly string[];
}

/** An image query: uploaded bytes, or the image of a stored item (by its id). */
export type ImageQuery = Buffer | { itemId: string };

/** Options of an image query besides the search's own. */
export interface ImageQueryOptions {
  /** Search by this region of the image (in its pixels as shown), not the whole image. */
  box?: Box;
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

/**
 * Where a part of an item is: a region of an image (a box in the pixels of the original as
 * shown, as the item's width and height are), or a frame of a video (seconds from its start).
 */
export type PartLocator = { kind: "region"; box: Box } | { kind: "frame"; t: number };

/** The part of an item whose vector matched a query best, and its cosine similarity. */
export type HitMatch = PartLocator & { score: number };

export interface Hit {
  id: string;
  /** Cosine similarity of the item's best vector (its whole image's, or a part's). */
  score: number;
  rank: number;
  metadata: Metadata;
  /** The region or frame that matched best, when it was not the whole image. */
  match?: HitMatch;
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

/** The order items are listed in: as they were stored, or the most recently stored first. */
export type ItemOrder = "oldest" | "newest";

export type FilterValue = string | number | boolean | null;
/** Operators of one key (src/store/filter.ts evaluates them); several AND together. */
export interface FilterOperators {
  $eq?: FilterValue;
  $ne?: FilterValue;
  $in?: FilterValue[];
  $nin?: FilterValue[];
  /** A number, or an ISO-8601 date string (compared as an instant). */
  $gt?: number | string;
  $gte?: number | string;
  $lt?: number | string;
  $lte?: number | string;
  $exists?: boolean;
}
/** Metadata key (dotted for nested keys) → a value it must equal, or operators; keys AND. */
export type Filter = Record<string, FilterValue | FilterOperators>;
