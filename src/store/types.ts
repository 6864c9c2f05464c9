/**
 * The storage seam: everything the library keeps, behind one small interface with two
 * backends, `sqlite/` (the embedded default: SQLite + an in-process HNSW index + originals on
 * disk) and `postgres/` (PostgreSQL + pgvector, shared by any number of nodes and workers).
 * Both pass one contract suite (test/store-contract.test.ts).
 *
 * An item, its embedding and (for uploads) its original bytes are committed together: when
 * `insertItems` resolves, they are durable, and a crash never leaves half an item.
 */
import type { ErrorInfo } from "../core/errors.ts";
import type { Filter, Item, ItemOrder, Metadata, PartLocator } from "../core/types.ts";
import type { JobStore } from "./jobs.ts";

export interface StoredItem extends Item {
  /** Internal row key: unique, increasing, never reused after a deletion. */
  label: number;
}

export type { PartLocator };

/**
 * A part of an item with its own embedding, searched beside the item's whole-image vector: a
 * search ranks items by their best vector. An item's parts are numbered by their position in
 * `NewItem.parts` (`index`, from 0) and are stored, searched, reindexed, migrated and deleted
 * with it; near-duplicates compare whole-image vectors only.
 */
export type NewPart = PartLocator & { vector: Float32Array };

/** A stored part: its locator, its position among its item's parts, and its embedding. */
export type StoredPart = NewPart & { index: number };

/** The vector of a hit that matched best, when it is a part rather than the whole image. */
export type PartMatch = PartLocator & { index: number; score: number };

export interface NewItem {
  id: string;
  sha256: string;
  metadata: Metadata;
  contentType: string;
  width: number;
  height: number;
  bytes: number;
  source: "upload" | "path";
  path?: string;
  vector: Float32Array;
  /** More vectors: regions or frames, each with its locator (none: the item has one vector). */
  parts?: readonly NewPart[];
  /** An upload's bytes: stored with the item (see `stageOriginal`). */
  original?: Buffer;
  /**
   * During a blue/green reindex: the item's embedding by the next model. The store decides in
   * the insert's transaction which one is live: normally `vector` (and this one is staged),
   * but `staged` alone if the store switched to its model meanwhile.
   */
  staged?: {
    modelId: string;
    vector: Float32Array;
    /** The parts' embeddings by the next model, in the order of `parts` (all or none). */
    parts?: readonly Float32Array[];
  };
}

export interface ContentMatch {
  /** The stored item with the same content, if any. */
  existing: StoredItem | undefined;
  /** Whether a stored item has the id (the one with the same content, or another). */
  idTaken: boolean;
}

export type InsertOutcome =
  | { status: "inserted"; label: number }
  | { status: "duplicate"; id: string }
  | { status: "id_conflict" };

export interface EmbeddingRow {
  label: number;
  vector: Float32Array;
}

/** A part's embedding, by the part's position among its item's parts. */
export interface PartVector {
  index: number;
  vector: Float32Array;
}

/**
 * An item's new embeddings for a reindex: the whole image's and, when it has parts, theirs. At
 * the swap the item's parts become exactly those staged: its stored parts given a new
 * embedding, plus the new ones.
 */
export interface StagedRow extends EmbeddingRow {
  /**
   * Its stored parts' new embeddings, by index as `partsOf` lists them (a StoredPart is one); a
   * stored part left without one is dropped at the swap, the item keeping its other vectors.
   */
  parts?: readonly PartVector[];
  /**
   * Parts the item gains at the swap, with their locators (regions under another `--regions`
   * setting than the item was indexed with); they take the indexes after its stored parts'.
   */
  newParts?: readonly NewPart[];
}

export interface ModelInfo {
  modelId: string;
  dims: number;
  /**
   * Where the model is, when a blue/green switch recorded it (the same path on every host):
   * a node whose model the store switched away from loads this one and follows.
   */
  modelDir?: string;
}

/** A blue/green reindex in progress, as the store records it for every node and restart. */
export interface ReindexTarget extends ModelInfo {
  /** Where the next model is (each node loads it from this path). */
  modelDir: string;
  /** "auto": switch when every item is embedded; "manual": wait for a switch command. */
  switchMode: "auto" | "manual";
  startedAt: number;
  /** Last sign of life of the node running it (ms); a stale one is taken over. */
  heartbeatAt: number;
  /** Every item has a staged embedding (manual mode waits here). */
  complete: boolean;
  /** The run failed for its model (it loads no more, or its graph disagrees): never resumed. */
  failed?: ErrorInfo;
  /** A switch was asked for: the node running it switches, the others wait for the store. */
  switchRequested?: boolean;
}

export interface NearestQuery {
  vector: Float32Array;
  k: number;
  filter?: Filter;
  /** Scan every embedding instead of using the ANN index (the ground truth for recall). */
  exact?: boolean;
  /**
   * Rank by the items' whole-image vectors only, never their parts' (near-duplicates compare
   * images, and a region of one photo is no duplicate of another photo).
   */
  wholeImage?: boolean;
}

/** Full-text search over the text fields of the items' metadata. */
export interface KeywordQuery {
  /** The words to look for; an item matches when any of them is in one of `fields`. */
  words: readonly string[];
  /** Top-level metadata keys to search (strings, or arrays of strings). */
  fields: readonly string[];
  k: number;
  filter?: Filter;
}

export interface ScoredItem {
  item: StoredItem;
  /** Cosine similarity (of the item's best vector, for nearest). */
  score: number;
  /** nearest: the part whose vector matched best, when not the whole image (score is its own). */
  match?: PartMatch;
}

export interface IndexParameters {
  m: number;
  efConstruction: number;
  efSearch: number;
}

export interface VectorIndexStats extends IndexParameters {
  type: "hnsw";
  space: "cosine";
  /** Slots allocated (SQLite backend) or rows indexed (Postgres). */
  capacity: number;
  /** Vectors searchable through the index (items' and their parts'). */
  size: number;
}

/** Whether the store can be reached now, and if not, why (for /ready and 503 answers). */
export interface StoreHealth {
  available: boolean;
  reason?: string;
  /**
   * Saves of the index files the store keeps that failed in this process (SQLite's HNSW: a
   * full disk, a write error); absent where the database keeps the index.
   */
  indexSaveFailures?: number;
  /** The database servers a shared store uses, for /ready, /stats and /metrics. */
  servers?: StoreServer[];
}

/**
 * One database server of a shared store: the primary (every write, and the reads no replica
 * may serve) or a streaming replica (reads, under the rule in postgres/replicas.ts).
 */
export interface StoreServer {
  /** host:port/database, without credentials. */
  name: string;
  role: "primary" | "replica";
  /**
   * `up`: in use; `lagging`: behind the staleness bound, so not used; `down`: unreachable;
   * `starting`: not probed yet; `not_a_replica`: the URL names no standby of the primary.
   */
  state: "up" | "lagging" | "down" | "starting" | "not_a_replica";
  reason?: string;
  /** WAL bytes the replica has still to replay, as of the last probe. */
  lagBytes?: number;
  /** Reads it served since this process started (counted where replicas are configured). */
  reads?: number;
}

export interface SwapOptions {
  /**
   * Switch only if every item, except these labels (items that could not be read), has a
   * staged embedding of the model; otherwise throw AppError("reindex_incomplete") and change
   * nothing. Without it, items with no staged embedding are left with none.
   */
  requireCompleteExcept?: readonly number[];
  /**
   * The blue/green run's record as it last wrote it: switch only while it is still the
   * recorded one, else throw AppError("reindex_superseded") and change nothing (another node
   * took the run over, or switched already).
   */
  target?: ReindexTarget;
}

export interface ItemStore {
  /** Which backend this is: for reports (stats, logs) only; behaviour asks the capabilities. */
  readonly backend: "sqlite" | "postgres";
  /**
   * Several processes (API nodes, workers) may use this store at once: what another process
   * did (a model switch, a claimed job) is seen only by asking the store. False when one
   * process owns it, as the embedded default does.
   */
  readonly shared: boolean;
  /** Jobs: bulk indexing work that workers claim in chunks. */
  readonly jobs: JobStore;

  /** The model whose embeddings the store holds; undefined for a new store. */
  model(): Promise<ModelInfo | undefined>;
  /**
   * Records the model of a store that holds no embeddings yet (of another model: else
   * AppError("model_mismatch"), checked in the same transaction).
   */
  setModel(info: ModelInfo): Promise<void>;
  count(): Promise<number>;

  getById(id: string): Promise<StoredItem | undefined>;
  getBySha(sha256: string): Promise<StoredItem | undefined>;
  /**
   * The item with this content and whether the id is taken, read at one moment: another
   * node's commit is seen whole or not at all (two reads could see it between them and take
   * the same image under the same id for "a different image").
   */
  findContent(sha256: string, id: string): Promise<ContentMatch>;
  /**
   * Makes an upload's bytes durable ahead of its `insertItems`, so the slow part can overlap
   * other work (the SQLite backend writes and fsyncs the file here; Postgres stores the bytes
   * in the insert's own transaction and does nothing here).
   */
  stageOriginal(sha256: string, bytes: Buffer): Promise<void>;
  /**
   * Inserts items with their embeddings (and originals) in one transaction. Each entry is
   * checked against what is committed: the same content hash is a duplicate, the same id with
   * other content a conflict. Durable when it resolves.
   */
  insertItems(entries: readonly NewItem[], modelId: string): Promise<InsertOutcome[]>;
  /** Deletes an item, its embedding and its stored original; returns what was deleted. */
  deleteById(id: string): Promise<StoredItem | undefined>;
  /** A page of items in label order, or newest first; a cursor continues only its own order. */
  listItems(
    cursor: string | null,
    limit: number,
    order?: ItemOrder,
  ): Promise<{ items: StoredItem[]; nextCursor: string | null }>;
  /** Items in label order after `label`. */
  itemsAfter(label: number, limit: number): Promise<StoredItem[]>;
  /** An upload's original bytes. */
  readOriginal(sha256: string): Promise<Buffer>;

  /** Throws AppError("invalid_filter") for a filter this store cannot evaluate. */
  checkFilter(filter: Filter): void;
  /**
   * The k nearest items of the model's embeddings, best first: an item scores by its best
   * vector (whole image or part), is listed once, and `match` names the part that won.
   */
  nearest(query: NearestQuery, modelId: string): Promise<ScoredItem[]>;
  /**
   * The k items whose text fields best match the words, best first; `score` is the backend's
   * relevance (SQLite: BM25 summed over the fields; Postgres: ts_rank summed), higher is better,
   * and not comparable across backends. Words are stemmed (English); any word may match.
   */
  keywordSearch(query: KeywordQuery): Promise<ScoredItem[]>;
  countEmbeddings(modelId: string): Promise<number>;
  /** The whole-image embeddings of the model of these items. */
  embeddingsOf(modelId: string, labels: readonly number[]): Promise<EmbeddingRow[]>;
  /**
   * The parts of these items with their embeddings of the model, in part order (items with
   * none are absent): what a reindex re-embeds (by locator) and a migration copies.
   */
  partsOf(modelId: string, labels: readonly number[]): Promise<Map<number, StoredPart[]>>;

  /** Reindex: forget a previous interrupted run's new embeddings. */
  clearStaging(): Promise<void>;
  /**
   * Reindex: new embeddings go beside the live ones (items deleted meanwhile are skipped), the
   * parts' too when the row carries them.
   */
  putStaging(rows: readonly StagedRow[], modelId: string): Promise<void>;
  /**
   * Reindex, atomically: staged embeddings replace the live ones, embeddings of any other
   * model are dropped (never mixed; a part with no embedding of `info` is dropped with its
   * locator), the store's model becomes `info`, and the recorded reindex target (if any) is
   * cleared.
   */
  swapStaging(info: ModelInfo, options?: SwapOptions): Promise<void>;
  /** Blue/green reindex: items after `label` (in label order) with no staged embedding of the model. */
  unstagedAfter(modelId: string, label: number, limit: number): Promise<StoredItem[]>;
  /** Blue/green reindex: how many items have a staged embedding of the model. */
  countStaging(modelId: string): Promise<number>;
  /** The recorded blue/green reindex, if one is in progress. */
  reindexTarget(): Promise<ReindexTarget | undefined>;
  /**
   * Records (or with undefined, forgets) the blue/green reindex in progress. With `expected`,
   * only if what is recorded is exactly that record (null: only if none is): several nodes may
   * take over or start a run at the same moment, and one wins. True when it was written.
   */
  setReindexTarget(
    target: ReindexTarget | undefined,
    expected?: ReindexTarget | null,
  ): Promise<boolean>;

  /**
   * Whether a model's sample gallery was ever added to this library. Kept in the library
   * itself, so every node sharing a database sees it and a deleted gallery never comes back.
   */
  gallerySeeded(): Promise<boolean>;
  /** Records that the sample gallery was added (`note`: what, for a person reading the row). */
  markGallerySeeded(note: string): Promise<void>;

  /** Loads what search needs (the SQLite backend's HNSW index) now, not at the first search. */
  prepare(): Promise<void>;
  indexStats(): Promise<VectorIndexStats>;
  health(): StoreHealth;
  /** Persists what is only in memory (the SQLite backend's HNSW index) if it changed. */
  flush(): Promise<void>;
  close(): Promise<void>;
}
