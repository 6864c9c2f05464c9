/**
 * The library: ingest (hash → duplicate check → preprocess → embed → one store transaction),
 * search, item management and reindex, over a storage backend (src/store: SQLite + HNSW, or
 * Postgres + pgvector).
 *
 * Invariants:
 * - The store is the source of truth. An item is reported "indexed" only after the transaction
 *   holding it, its embedding and (for uploads) its original committed.
 * - Embeddings of two models are never mixed: the store records its model, and a library whose
 *   embedder has another model id refuses to index or search until `reindex()` ran. On a
 *   shared store (Postgres) every node re-reads the model, so a reindex by one is seen by all.
 */
import { readFile } from "node:fs/promises";
import type { Settings } from "../config.ts";
import type { Embedder, TextEmbedding } from "../encode/types.ts";
import { AppError, isAppError } from "../errors.ts";
import type { PreprocessOptions } from "../preprocess/types.ts";
import { openStore } from "../store/open.ts";
import type { ItemStore, ModelInfo, StoredItem } from "../store/types.ts";
import { LruCache } from "../util/lru-cache.ts";
import { DuplicateGroups, flagNearDuplicates } from "./duplicates.ts";
import { parseTextFields, rankedSearch, withUploadFilename } from "./hybrid.ts";
import { errorOf, Ingest } from "./ingest.ts";
import { PreprocessPool } from "./preprocess-pool.ts";
import { EmbedQueue } from "./queue.ts";
import type {
  DuplicateGroupPage,
  Hit,
  IndexInput,
  IndexResult,
  Item,
  Library,
  LibraryStats,
  Page,
  SearchOptions,
  TextSearchResult,
} from "./types.ts";

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
}

/** How often a library on a shared store re-reads its model and reachability. */
const STORE_CHECK_INTERVAL_MS = 2_000;

function isUnavailable(error: unknown): boolean {
  return isAppError(error) && error.code === "database_unavailable";
}

function publicItem(item: StoredItem): Item {
  const { label: _label, ...rest } = item;
  return rest;
}

/** Opens (or creates) the library for `embedder`'s model on the store the settings name. */
export async function createLibrary(
  settings: Settings,
  embedder: Embedder,
  options: LibraryOptions = {},
): Promise<LongclipLibrary> {
  const store = options.store ?? (await openStore(settings, options.onBackgroundError));
  const library = new LongclipLibrary(settings, embedder, store, options);
  try {
    await library.start();
  } catch (error) {
    await store.close();
    throw error;
  }
  return library;
}

export class LongclipLibrary implements Library {
  /** Vision-tower work: image queries before ingest and reindex chunks. */
  private readonly queue: EmbedQueue;
  /**
   * Text queries. The text tower has its own worker thread (src/encode), so a text query need
   * not wait for the image chunk in progress; it only queues behind other text queries.
   */
  private readonly textQueue: EmbedQueue;
  private readonly pool = new PreprocessPool();
  /** Repeated queries skip the text tower (about 40 ms for LongCLIP-B on 2 cores; a hit ~1 µs). */
  private readonly queryCache: LruCache<string, TextEmbedding>;
  private currentState: LibraryState = "starting";
  private unavailableReason: string | undefined;
  /** The store's model when last read (for model_mismatch messages). */
  private storedModel: ModelInfo | undefined;
  private reindexing = false;
  private closing = false;
  private readonly active = new Set<Promise<unknown>>();
  private checkTimer: NodeJS.Timeout | undefined;
  private readonly preprocessOptions: PreprocessOptions;
  private readonly ingest: Ingest;
  /** Text fields keyword search looks in by default (the textFields setting). */
  private readonly textFields: string[];
  private readonly duplicateGroups: DuplicateGroups;

  constructor(
    private readonly settings: Settings,
    private readonly embedder: Embedder,
    readonly store: ItemStore,
    private readonly options: LibraryOptions,
  ) {
    this.queue = new EmbedQueue(settings.maxQueueDepth);
    this.textQueue = new EmbedQueue(settings.maxQueueDepth);
    this.queryCache = new LruCache(settings.queryCacheSize);
    this.textFields = parseTextFields(settings.textFields, "--text-fields (LONGCLIP_TEXT_FIELDS)");
    this.duplicateGroups = new DuplicateGroups(store, Math.max(1, settings.duplicateNeighbours));
    this.preprocessOptions = {
      resolution: embedder.config.image_resolution,
      mean: embedder.config.image_mean,
      std: embedder.config.image_std,
      maxImageBytes: settings.maxImageBytes,
      maxImagePixels: settings.maxImagePixels,
    };
    this.ingest = new Ingest({
      settings,
      embedder,
      store,
      queue: this.queue,
      pool: this.pool,
      preprocessOptions: this.preprocessOptions,
      allowAnyPath: options.allowAnyPath === true,
      assertUsable: () => this.assertUsable(),
    });
  }

  /**
   * Reads the store's model and decides the state. A store that cannot be reached yet leaves
   * the library "unavailable" (not an error): it keeps checking and becomes ready by itself.
   */
  async start(): Promise<void> {
    try {
      await this.checkModel();
    } catch (error) {
      if (!isUnavailable(error)) throw error;
      this.currentState = "unavailable";
      this.unavailableReason = (error as AppError).message;
    }
    if (this.store.backend !== "sqlite" || this.currentState === "unavailable") {
      this.checkTimer = setInterval(() => {
        this.checkModel().catch((error: unknown) => {
          if (isUnavailable(error)) {
            if (this.currentState === "starting" || this.currentState === "unavailable") {
              this.currentState = "unavailable";
              this.unavailableReason = (error as AppError).message;
            }
          } else {
            (this.options.onBackgroundError ?? ((e) => process.emitWarning(String(e))))(error);
          }
        });
      }, STORE_CHECK_INTERVAL_MS);
      this.checkTimer.unref();
    }
  }

  /** Compares the store's model with the embedder's (first use: records it). */
  private async checkModel(): Promise<void> {
    if (this.closing || this.reindexing) return;
    const stored = await this.store.model();
    this.storedModel = stored;
    const matches =
      stored !== undefined &&
      stored.modelId === this.embedder.modelId &&
      stored.dims === this.embedder.dims;
    const empty = !matches && (await this.store.count()) === 0;
    if (stored === undefined || empty) {
      await this.store.setModel({ modelId: this.embedder.modelId, dims: this.embedder.dims });
    }
    if (this.closing || this.reindexing) return;
    const next = stored === undefined || matches || empty ? "ready" : "needs_reindex";
    if (next === "ready" && this.currentState !== "ready") await this.store.prepare();
    this.currentState = next;
    this.unavailableReason = undefined;
  }

  state(): LibraryState {
    return this.currentState;
  }

  ready(): boolean {
    return this.currentState === "ready" && this.store.health().available;
  }

  /** Why the library is not ready, for /ready; undefined when it is. */
  notReadyReason(): string | undefined {
    if (this.ready()) return undefined;
    const health = this.store.health();
    if (!health.available) return `the database is unreachable: ${health.reason ?? "unknown"}`;
    switch (this.currentState) {
      case "starting":
        return "the library is starting";
      case "unavailable":
        return `the database is unreachable: ${this.unavailableReason ?? "unknown"}`;
      case "needs_reindex":
      case "reindexing":
        return "the stored embeddings come from another model (run longclip reindex)";
      default:
        return "the library is closed";
    }
  }

  // ---------------------------------------------------------------- index

  index(inputs: readonly IndexInput[]): Promise<IndexResult[]> {
    return this.track(async () => {
      this.duplicateGroups.invalidate();
      const keep = this.settings.keepUploadFilename === "on";
      const results = await this.ingest.run(inputs.map((input) => withUploadFilename(input, keep)));
      this.duplicateGroups.invalidate();
      await flagNearDuplicates(
        this.store,
        this.embedder.modelId,
        results,
        this.settings.nearDuplicateThreshold,
        this.options.onBackgroundError ?? ((e) => process.emitWarning(String(e))),
      );
      return results;
    });
  }

  // ---------------------------------------------------------------- duplicates

  duplicates(options: {
    threshold: number;
    cursor: string | null;
    limit: number;
  }): Promise<DuplicateGroupPage> {
    return this.track(async () => {
      this.assertUsable();
      const limit = Math.min(Math.max(1, Math.trunc(options.limit) || 1), this.settings.maxK);
      return this.duplicateGroups.page(this.embedder.modelId, { ...options, limit });
    });
  }

  // ---------------------------------------------------------------- search

  searchText(
    query: string,
    options: SearchOptions & { truncate?: boolean },
  ): Promise<TextSearchResult> {
    return this.track(() => this.searchTextNow(query, options));
  }

  private async searchTextNow(
    query: string,
    options: SearchOptions & { truncate?: boolean },
  ): Promise<TextSearchResult> {
    this.assertUsable();
    if (typeof query !== "string" || query.trim() === "") {
      throw new AppError("empty_query", "The query is empty; send some text to search for.");
    }
    if (query.length > this.settings.maxQueryChars) {
      throw new AppError(
        "query_too_long",
        `The query has ${query.length} characters; the limit is ${this.settings.maxQueryChars} (maxQueryChars). Shorten it.`,
        400,
        { chars: query.length, limit: this.settings.maxQueryChars },
      );
    }
    this.checkSearchOptions(options);
    const maxTokens = this.embedder.config.context_length;
    const tokenize = (this.embedder as Partial<{ tokenize(text: string): { tokens: number } }>)
      .tokenize;
    const refuseLong = (tokens: number) =>
      new AppError(
        "query_too_long",
        `The query is ${tokens} tokens; the model reads ${maxTokens}. Shorten it or allow truncation (truncate: true).`,
        400,
        { tokens, maxTokens },
      );
    if (options.truncate === false && tokenize !== undefined) {
      const tokens = tokenize.call(this.embedder, query).tokens;
      if (tokens > maxTokens) throw refuseLong(tokens);
    }
    const text = this.queryCache.get(query) ?? (await this.embedQuery(query));
    if (options.truncate === false && text.truncated) throw refuseLong(text.tokens);
    this.assertUsable();
    return {
      hits: await this.searchByMode(query, text.embedding, options),
      query: { tokens: text.tokens, truncated: text.truncated, max_tokens: maxTokens },
    };
  }

  /** Embeds a query through the text queue and caches the result. */
  private async embedQuery(query: string): Promise<TextEmbedding> {
    const reservation = this.textQueue.reserve("query", 1);
    let embedded: TextEmbedding[];
    try {
      embedded = await this.textQueue.run("query", 1, () => this.embedder.embedTexts([query]));
    } finally {
      reservation.release();
    }
    const text = embedded[0];
    if (text === undefined) throw new Error("the encoder returned no embedding");
    this.queryCache.set(query, text);
    return text;
  }

  searchImage(bytes: Buffer, options: SearchOptions): Promise<{ hits: Hit[] }> {
    return this.track(() => this.searchImageNow(bytes, options));
  }

  private async searchImageNow(bytes: Buffer, options: SearchOptions): Promise<{ hits: Hit[] }> {
    this.assertUsable();
    this.checkSearchOptions(options);
    const image = await this.pool.run(bytes, this.preprocessOptions);
    const reservation = this.queue.reserve("query", 1);
    let vectors: Float32Array[];
    try {
      vectors = await this.queue.run("query", 1, () => this.embedder.embedPixels([image.pixels]));
    } finally {
      reservation.release();
    }
    this.assertUsable();
    return { hits: await this.searchVector(vectors[0] as Float32Array, options) };
  }

  private checkSearchOptions(options: SearchOptions): void {
    const k = options.k;
    if (!Number.isInteger(k) || k < 1 || k > this.settings.maxK) {
      throw new AppError(
        "k_out_of_range",
        `k must be an integer from 1 to ${this.settings.maxK}, not ${String(k)}.`,
        400,
        { min: 1, max: this.settings.maxK },
      );
    }
    // Validates filter keys and values before any embedding work is queued.
    if (options.filter !== undefined) this.store.checkFilter(options.filter);
    if (options.mode !== undefined && !["vector", "keyword", "hybrid"].includes(options.mode)) {
      throw new AppError(
        "validation_failed",
        `mode must be vector, keyword or hybrid, not ${String(options.mode)}.`,
      );
    }
    if (options.textFields !== undefined) parseTextFields(options.textFields, "text_fields");
  }

  /** Vector, keyword or hybrid hits of a text query (./hybrid.ts). */
  private searchByMode(text: string, vector: Float32Array, options: SearchOptions): Promise<Hit[]> {
    const mode = options.mode ?? "vector";
    if (mode === "vector") return this.searchVector(vector, options);
    const query = {
      mode,
      vector,
      text,
      fields: options.textFields ?? this.textFields,
      k: options.k,
      candidates: this.settings.hybridCandidates,
      exact: options.exact === true,
    };
    return rankedSearch(
      this.store,
      this.embedder.modelId,
      options.filter === undefined ? query : { ...query, filter: options.filter },
    );
  }

  /** Nearest items to an embedding, by the store's ANN index or an exact scan, filtered. */
  async searchVector(vector: Float32Array, options: SearchOptions): Promise<Hit[]> {
    const query = { vector, k: options.k, exact: options.exact === true };
    const found = await this.store.nearest(
      options.filter === undefined ? query : { ...query, filter: options.filter },
      this.embedder.modelId,
    );
    return found.map(({ item, score }, i) => ({
      id: item.id,
      score,
      rank: i + 1,
      metadata: item.metadata,
    }));
  }

  // ---------------------------------------------------------------- items

  async getItem(id: string): Promise<Item | undefined> {
    this.assertOpen();
    const item = await this.store.getById(id);
    return item === undefined ? undefined : publicItem(item);
  }

  async readImage(id: string): Promise<{ bytes: Buffer; contentType: string } | undefined> {
    this.assertOpen();
    const item = await this.store.getById(id);
    if (item === undefined) return undefined;
    try {
      return { bytes: await this.readBytes(item), contentType: item.contentType };
    } catch (error) {
      if (isAppError(error)) throw error;
      throw new AppError(
        "image_missing",
        `The image file of item "${id}" is gone${item.path ? ` (${item.path})` : ""}; restore it or delete the item.`,
        404,
      );
    }
  }

  /** An item's original bytes: from the store for uploads, from its file for paths. */
  private readBytes(item: StoredItem): Promise<Buffer> {
    return item.source === "upload"
      ? this.store.readOriginal(item.sha256)
      : readFile(item.path as string);
  }

  async deleteItem(id: string): Promise<boolean> {
    this.assertOpen();
    this.duplicateGroups.invalidate();
    return (await this.store.deleteById(id)) !== undefined;
  }

  async listItems(cursor: string | null, limit: number): Promise<Page<Item>> {
    this.assertOpen();
    const bounded = Math.min(Math.max(1, Math.trunc(limit) || 1), this.settings.maxK);
    const page = await this.store.listItems(cursor, bounded);
    return { items: page.items.map(publicItem), nextCursor: page.nextCursor };
  }

  // ---------------------------------------------------------------- reindex

  reindex(
    onProgress?: (done: number, total: number) => void,
    onFailure?: (id: string, error: { code: string; message: string }) => void,
  ): Promise<number> {
    return this.track(() => this.reindexNow(onProgress, onFailure));
  }

  private async reindexNow(
    onProgress?: (done: number, total: number) => void,
    onFailure?: (id: string, error: { code: string; message: string }) => void,
  ): Promise<number> {
    this.assertOpen();
    if (this.reindexing) {
      throw new AppError("reindex_running", "A reindex is already running; wait for it.", 409);
    }
    this.reindexing = true;
    const before = this.currentState;
    // A library on the right model keeps serving from its current index meanwhile.
    if (before === "needs_reindex") this.currentState = "reindexing";
    try {
      const modelId = this.embedder.modelId;
      await this.store.clearStaging();
      const total = await this.store.count();
      const pageSize = Math.max(1, this.settings.imageBatchSize);
      let done = 0;
      let embedded = 0;
      let after = 0;
      onProgress?.(0, total);
      for (;;) {
        this.assertOpen();
        const page = await this.store.itemsAfter(after, pageSize);
        const last = page[page.length - 1];
        if (last === undefined) break;
        after = last.label;
        const decoded = await Promise.allSettled(
          page.map(async (item) =>
            this.pool.run(await this.readBytes(item), this.preprocessOptions),
          ),
        );
        const good: { label: number; pixels: Float32Array }[] = [];
        decoded.forEach((outcome, k) => {
          const item = page[k] as StoredItem;
          if (outcome.status === "fulfilled") {
            good.push({ label: item.label, pixels: outcome.value.pixels });
          } else {
            onFailure?.(item.id, errorOf(outcome.reason));
          }
        });
        if (good.length > 0) {
          const vectors = await this.queue.run("ingest", good.length, () =>
            this.embedder.embedPixels(good.map((g) => g.pixels)),
          );
          this.assertOpen();
          await this.store.putStaging(
            good.map((g, k) => ({ label: g.label, vector: vectors[k] as Float32Array })),
            modelId,
          );
          embedded += good.length;
        }
        done += page.length;
        onProgress?.(Math.min(done, total), total);
      }
      this.storedModel = { modelId, dims: this.embedder.dims };
      await this.store.swapStaging(this.storedModel);
      this.currentState = "ready";
      return embedded;
    } catch (error) {
      if (this.currentState === "reindexing") this.currentState = before;
      throw error;
    } finally {
      this.reindexing = false;
    }
  }

  // ---------------------------------------------------------------- stats, lifecycle

  async stats(): Promise<LibraryStats> {
    const encoder = this.embedder.stats();
    const closed = this.currentState === "closed";
    const [items, index] = closed
      ? [0, undefined]
      : await Promise.all([this.store.count(), this.store.indexStats()]);
    return {
      items,
      modelId: this.embedder.modelId,
      dims: this.embedder.dims,
      device: encoder.device,
      backend: this.store.backend,
      index: index ?? {
        type: "hnsw",
        space: "cosine",
        m: this.settings.hnswM,
        efConstruction: this.settings.hnswEfConstruction,
        efSearch: this.settings.hnswEfSearch,
        capacity: 0,
        size: 0,
      },
      queue: {
        pending: this.queue.pending + this.textQueue.pending,
        capacity: this.settings.maxQueueDepth,
      },
    };
  }

  /** Persists what the store keeps only in memory (the HNSW index) if it changed. */
  flush(): Promise<void> {
    return this.store.flush();
  }

  /** Refuses new work, lets running work finish, then closes the store and the encoder. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    if (this.checkTimer !== undefined) clearInterval(this.checkTimer);
    while (this.active.size > 0) await Promise.allSettled([...this.active]);
    this.currentState = "closed";
    await this.store.close();
    await Promise.all([this.pool.close(), this.embedder.close()]);
  }

  private track<T>(start: () => Promise<T>): Promise<T> {
    if (this.closing) {
      return Promise.reject(
        new AppError("library_closed", "The library is shutting down; retry shortly.", 503),
      );
    }
    const work = start();
    this.active.add(work);
    const done = () => this.active.delete(work);
    work.then(done, done);
    return work;
  }

  private assertOpen(): void {
    if (this.currentState === "closed") {
      throw new AppError("library_closed", "The library is shutting down; retry shortly.", 503);
    }
  }

  private assertUsable(): void {
    this.assertOpen();
    if (this.currentState === "starting" || this.currentState === "unavailable") {
      throw new AppError(
        "database_unavailable",
        `The database cannot be reached (${this.unavailableReason ?? "still connecting"}); the server keeps retrying, try again shortly.`,
        503,
        { retryAfterSeconds: 5 },
      );
    }
    if (this.currentState === "needs_reindex" || this.currentState === "reindexing") {
      const stored = this.storedModel;
      throw new AppError(
        "model_mismatch",
        `The library was embedded with model ${stored?.modelId ?? "?"} (${stored?.dims ?? "?"} dims), the loaded model is ${this.embedder.modelId} (${this.embedder.dims} dims); run \`longclip reindex\` to re-embed every item with the loaded model, or load the previous model.`,
        409,
        { storedModelId: stored?.modelId, modelId: this.embedder.modelId },
      );
    }
  }
}
