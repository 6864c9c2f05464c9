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
import type { Settings } from "../config.ts";
import type { Embedder, TextEmbedding } from "../encode/types.ts";
import { AppError, isAppError } from "../errors.ts";
import type { PreprocessMode, PreprocessOptions } from "../preprocess/types.ts";
import { openStore } from "../store/open.ts";
import type { ItemStore, ModelInfo, ReindexTarget, StoredItem } from "../store/types.ts";
import { LruCache } from "../util/lru-cache.ts";
import { BlueGreen, type ReindexStatus, STALE_MS, type SwitchMode } from "./blue-green.ts";
import { DecodeGate } from "./decode-gate.ts";
import { DuplicateGroups, flagNearDuplicates } from "./duplicates.ts";
import { withUploadFilename } from "./hybrid.ts";
import { errorOf, type Generation, Ingest } from "./ingest.ts";
import { ItemReader } from "./items.ts";
import { PreprocessPool } from "./preprocess-pool.ts";
import { EmbedQueue } from "./queue.ts";
import { Search } from "./search.ts";
import type {
  ComposePart,
  DuplicateGroupPage,
  Hit,
  IndexInput,
  IndexResult,
  Item,
  Library,
  LibraryStats,
  Page,
  SearchOptions,
  TextOptions,
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
  /**
   * Loads another model (blue/green reindex: `startReindex`, and following a reindex that
   * another node or process runs). Without it, this library cannot take part in one.
   */
  loadModel?: (modelDir: string) => Promise<Embedder>;
}

/** How often a library on a shared store re-reads its model and reachability. */
const STORE_CHECK_INTERVAL_MS = 2_000;

function isUnavailable(error: unknown): boolean {
  return isAppError(error) && error.code === "database_unavailable";
}

/**
 * The model id a library records: the encoder's, with the preprocessing mode appended unless
 * it is exact. Fast preprocessing gives slightly different embeddings, so a library built
 * with one mode and opened with the other needs a reindex, as after a model change.
 */
export function libraryModelId(modelId: string, mode: PreprocessMode): string {
  return mode === "exact" ? modelId : `${modelId}+preprocess-${mode}`;
}

function withPreprocessMode(embedder: Embedder, mode: PreprocessMode): Embedder {
  if (mode === "exact") return embedder;
  const modelId = libraryModelId(embedder.modelId, mode);
  return {
    config: embedder.config,
    modelId,
    dims: embedder.dims,
    embedTexts: (texts) => embedder.embedTexts(texts),
    embedPixels: (pixels) => embedder.embedPixels(pixels),
    stats: () => ({ ...embedder.stats(), modelId }),
    close: () => embedder.close(),
  };
}

function preprocessOptionsOf(embedder: Embedder, settings: Settings): PreprocessOptions {
  return {
    mode: settings.preprocess,
    resolution: embedder.config.image_resolution,
    mean: embedder.config.image_mean,
    std: embedder.config.image_std,
    maxImageBytes: settings.maxImageBytes,
    maxImagePixels: settings.maxImagePixels,
  };
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
  private readonly decodeGate: DecodeGate;
  private readonly pool: PreprocessPool;
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
  /** The model that embeds queries and new items; replaced by a blue/green switch. */
  private live: Generation;
  /** Models replaced by a switch, closed once the work that used them is done. */
  private readonly retired = new Set<Promise<void>>();
  private readonly ingest: Ingest;
  private readonly blueGreen: BlueGreen;
  private readonly duplicateGroups: DuplicateGroups;
  private readonly items: ItemReader;
  /** Search for the live model (rebuilt at a blue/green switch). */
  private search: Search;

  constructor(
    private readonly settings: Settings,
    encoder: Embedder,
    readonly store: ItemStore,
    private readonly options: LibraryOptions,
  ) {
    const embedder = withPreprocessMode(encoder, settings.preprocess);
    this.queue = new EmbedQueue(settings.maxQueueDepth);
    this.textQueue = new EmbedQueue(settings.maxQueueDepth);
    this.queryCache = new LruCache(settings.queryCacheSize);
    this.decodeGate = new DecodeGate(settings);
    this.pool = new PreprocessPool(settings.preprocessWorkers, this.decodeGate);
    this.live = { embedder, options: preprocessOptionsOf(embedder, settings) };
    this.blueGreen = new BlueGreen({
      settings,
      store,
      pool: this.pool,
      queue: this.queue,
      live: () => this.live,
      load: (modelDir) => this.loadGeneration(modelDir),
      adopt: (next) => this.adopt(next),
      assertOpen: () => this.assertOpen(),
      onBackgroundError: (error) => this.reportBackground(error),
    });
    this.items = new ItemReader(settings, store);
    this.duplicateGroups = new DuplicateGroups(store, Math.max(1, settings.duplicateNeighbours));
    this.ingest = new Ingest({
      settings,
      generations: () => ({ live: this.live, next: this.blueGreen.next }),
      store,
      queue: this.queue,
      pool: this.pool,
      allowAnyPath: options.allowAnyPath === true,
      assertUsable: () => this.assertUsable(),
    });
    this.search = this.searchFor(embedder);
  }

  private searchFor(embedder: Embedder): Search {
    const tokenize = (embedder as Partial<{ tokenize(text: string): { tokens: number } }>).tokenize;
    return new Search({
      settings: this.settings,
      store: this.store,
      modelId: embedder.modelId,
      contextLength: embedder.config.context_length,
      countTokens:
        tokenize === undefined ? undefined : (text) => tokenize.call(embedder, text).tokens,
      embedTexts: (texts) => this.embedTexts(texts),
    });
  }

  private get embedder(): Embedder {
    return this.live.embedder;
  }

  private get preprocessOptions(): PreprocessOptions {
    return this.live.options;
  }

  private reportBackground(error: unknown): void {
    (this.options.onBackgroundError ?? ((e) => process.emitWarning(String(e))))(error);
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
    this.checkTimer = setInterval(() => {
      this.checkModel().catch((error: unknown) => {
        if (isUnavailable(error)) {
          if (this.currentState === "starting" || this.currentState === "unavailable") {
            this.currentState = "unavailable";
            this.unavailableReason = (error as AppError).message;
          }
        } else {
          this.reportBackground(error);
        }
      });
    }, STORE_CHECK_INTERVAL_MS);
    this.checkTimer.unref();
  }

  /** Compares the store's model with the embedder's (first use: records it). */
  private async checkModel(): Promise<void> {
    if (this.closing || this.reindexing) return;
    let stored = await this.store.model();
    if (this.options.loadModel !== undefined) {
      await this.followReindex(stored);
      stored = await this.store.model();
    }
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

  /**
   * Blue/green, seen from the store: a switch done elsewhere is adopted, a recorded run is
   * followed (next model loaded, new items embedded by both) or, when stale, taken over.
   */
  private async followReindex(stored: ModelInfo | undefined): Promise<void> {
    const next = this.blueGreen.next;
    if (next !== undefined && stored?.modelId === next.embedder.modelId) {
      this.blueGreen.next = undefined;
      this.adopt(next);
      this.blueGreen.switchedElsewhere();
      return;
    }
    const target = await this.store.reindexTarget();
    if (target === undefined) {
      await this.blueGreen.drop();
      return;
    }
    if (target.modelId === this.embedder.modelId) {
      await this.store.setReindexTarget(undefined); // a leftover of a finished run
      return;
    }
    if (this.blueGreen.isRunning()) return;
    if (Date.now() - target.heartbeatAt > STALE_MS) await this.blueGreen.resume(target);
    else await this.blueGreen.follow(target);
  }

  private async loadGeneration(modelDir: string): Promise<Generation> {
    const load = this.options.loadModel;
    if (load === undefined) {
      throw new AppError(
        "reindex_unsupported",
        "This library was opened without a model loader; it cannot load another model.",
        409,
      );
    }
    const embedder = withPreprocessMode(await load(modelDir), this.settings.preprocess);
    return { embedder, options: preprocessOptionsOf(embedder, this.settings) };
  }

  /** The next model becomes live; the old one closes once the work in flight is done. */
  private adopt(next: Generation): void {
    const old = this.live;
    if (old === next) return;
    this.live = next;
    this.search = this.searchFor(next.embedder);
    this.queryCache.clear();
    this.storedModel = { modelId: next.embedder.modelId, dims: next.embedder.dims };
    if (this.currentState === "needs_reindex") this.currentState = "ready";
    const closing = Promise.allSettled([...this.active])
      .then(() => old.embedder.close())
      .catch((error: unknown) => this.reportBackground(error));
    this.retired.add(closing);
    closing.finally(() => this.retired.delete(closing));
  }

  /**
   * Runs a search again if the model switched while it ran (its query was embedded by the old
   * model). On a shared store during a reindex, the store's model is read first, so a node
   * switches at its first search after another node switched the store.
   */
  private async acrossSwitch<T>(work: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const live = this.live;
      if (this.blueGreen.next !== undefined && this.store.backend !== "sqlite")
        await this.followSwitch();
      try {
        const result = await work();
        if (this.live === live || attempt >= 3) return result;
      } catch (error) {
        if (attempt >= 3) throw error;
        if (this.live === live && !(await this.followSwitch())) throw error;
      }
    }
  }

  /** Adopts the next model if the store switched to it; true when it did. */
  private async followSwitch(): Promise<boolean> {
    const next = this.blueGreen.next;
    if (next === undefined) return false;
    const stored = await this.store.model();
    if (stored?.modelId !== next.embedder.modelId) return false;
    this.blueGreen.next = undefined;
    this.adopt(next);
    this.blueGreen.switchedElsewhere();
    return true;
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

  searchText(query: string, options: SearchOptions & TextOptions): Promise<TextSearchResult> {
    return this.track(() =>
      this.acrossSwitch(async () => {
        this.assertUsable();
        this.search.checkText(query);
        this.search.checkOptions(options);
        const embedded = await this.search.embedText(query, options);
        this.assertUsable();
        return {
          hits: await this.search.rank(embedded.vector, options, query),
          query: embedded.info,
        };
      }),
    );
  }

  searchCompose(
    parts: readonly ComposePart[],
    options: SearchOptions & TextOptions,
  ): Promise<TextSearchResult> {
    return this.track(() =>
      this.acrossSwitch(async () => {
        this.assertUsable();
        this.search.checkCompose(parts, options);
        this.search.checkOptions(options);
        const embedded = await this.search.embedCompose(parts, options);
        this.assertUsable();
        return { hits: await this.search.rank(embedded.vector, options), query: embedded.info };
      }),
    );
  }

  /** Unit embeddings of texts: cached ones at once, the rest in one batch on the text queue. */
  private async embedTexts(texts: readonly string[]): Promise<TextEmbedding[]> {
    // Keyed by model: a query embedded just before a switch must not serve after it.
    const embedder = this.embedder;
    const key = (text: string) => `${embedder.modelId}\n${text}`;
    const out = texts.map((text) => this.queryCache.get(key(text)));
    const missing = [...new Set(texts.filter((_, i) => out[i] === undefined))];
    if (missing.length > 0) {
      const reservation = this.textQueue.reserve("query", missing.length);
      let embedded: TextEmbedding[];
      try {
        embedded = await this.textQueue.run("query", missing.length, () =>
          embedder.embedTexts(missing),
        );
      } finally {
        reservation.release();
      }
      missing.forEach((text, i) => {
        const result = embedded[i];
        if (result === undefined) throw new Error("the encoder returned no embedding");
        this.queryCache.set(key(text), result);
      });
      texts.forEach((text, i) => {
        out[i] ??= embedded[missing.indexOf(text)];
      });
    }
    return out as TextEmbedding[];
  }

  searchImage(bytes: Buffer, options: SearchOptions): Promise<{ hits: Hit[] }> {
    return this.track(() => this.acrossSwitch(() => this.searchImageNow(bytes, options)));
  }

  private async searchImageNow(bytes: Buffer, options: SearchOptions): Promise<{ hits: Hit[] }> {
    this.assertUsable();
    this.search.checkOptions(options);
    // Admitted before decoding: a full queue refuses the query before it costs any memory.
    const reservation = this.queue.reserve("query", 1);
    let vectors: Float32Array[];
    try {
      const image = await this.pool.run(bytes, this.preprocessOptions, {
        maxPixels: Math.min(this.settings.maxQueryImagePixels, this.settings.maxImagePixels),
        setting: "maxQueryImagePixels, LONGCLIP_MAX_QUERY_IMAGE_PIXELS",
      });
      vectors = await this.queue.run("query", 1, () => this.embedder.embedPixels([image.pixels]));
    } finally {
      reservation.release();
    }
    this.assertUsable();
    return { hits: await this.search.rank(vectors[0] as Float32Array, options) };
  }

  /** Nearest items to an embedding, by the store's ANN index or an exact scan, filtered. */
  searchVector(vector: Float32Array, options: SearchOptions): Promise<Hit[]> {
    return this.search.rank(vector, options);
  }

  // ---------------------------------------------------------------- items

  async getItem(id: string): Promise<Item | undefined> {
    this.assertOpen();
    return this.items.get(id);
  }

  async readImage(id: string): Promise<{ bytes: Buffer; contentType: string } | undefined> {
    this.assertOpen();
    return this.items.readImage(id);
  }

  /** Waits until `pixels` may be decoded (thumbnails share the ingest and search budget). */
  admitDecode(pixels: number): Promise<() => void> {
    return this.decodeGate.admitPixels(pixels);
  }

  async deleteItem(id: string): Promise<boolean> {
    this.assertOpen();
    this.duplicateGroups.invalidate();
    return (await this.store.deleteById(id)) !== undefined;
  }

  async listItems(cursor: string | null, limit: number): Promise<Page<Item>> {
    this.assertOpen();
    return this.items.list(cursor, limit);
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
            this.pool.run(await this.items.readBytes(item), this.preprocessOptions),
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

  // ---------------------------------------------------------------- blue/green reindex

  /**
   * Starts embedding every item with the model in `modelDir` in the background (or resumes a
   * recorded run of that model); search keeps serving the current model until the switch.
   */
  startReindex(modelDir: string, switchMode: SwitchMode = "auto"): Promise<ReindexStatus> {
    this.assertOpen();
    if (this.reindexing) {
      return Promise.reject(
        new AppError("reindex_running", "A reindex is already running; wait for it.", 409),
      );
    }
    return this.blueGreen.start(modelDir, switchMode);
  }

  /** The blue/green reindex this library runs or last ran, if any. */
  reindexStatus(): ReindexStatus | undefined {
    return this.blueGreen.current();
  }

  /** The recorded run (any node's), for a status when this library runs none. */
  reindexTarget(): Promise<ReindexTarget | undefined> {
    return this.store.reindexTarget();
  }

  /** Switches a run that waits for it (manual mode), after a last catch-up pass. */
  switchReindex(): Promise<ReindexStatus> {
    this.assertOpen();
    return this.track(() => this.blueGreen.requestSwitch());
  }

  /** The next model this library has loaded (it embeds new items with both), if any. */
  nextModelId(): string | undefined {
    return this.blueGreen.next?.embedder.modelId;
  }

  /** Resolves when the background reindex (if any) ends. */
  waitForReindex(): Promise<void> {
    return this.blueGreen.settled();
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
    this.blueGreen.stop();
    await this.blueGreen.settled();
    while (this.active.size > 0) await Promise.allSettled([...this.active]);
    await Promise.allSettled([...this.retired]);
    this.currentState = "closed";
    await this.store.close();
    const next = this.blueGreen.next;
    this.blueGreen.next = undefined;
    await Promise.all([this.pool.close(), this.embedder.close(), next?.embedder.close()]);
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
