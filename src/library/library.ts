/**
 * The library: ingest (hash → duplicate check → preprocess → embed → one store transaction),
 * search, item management and reindex, over a storage backend (src/store: SQLite + HNSW, or
 * Postgres + pgvector). It orchestrates and owns the state (starting, ready, needs_reindex,
 * closed...); the work is done by its modules: ./ingest/ (the pipeline in ./ingest/ingest.ts),
 * ./search/ (search, hybrid, query embedding, duplicates), ./items.ts (reading items), and
 * ./models/ (the models it embeds with and following the store's: reindex in place,
 * blue/green).
 *
 * Invariants:
 * - The store is the source of truth. An item is reported "indexed" only after the transaction
 *   holding it, its embedding and (for uploads) its original committed.
 * - Embeddings of two models are never mixed: the store records its model, and a library whose
 *   embedder has another model id refuses to index or search until `reindex()` ran. On a
 *   shared store (Postgres) every node re-reads the model, so a reindex by one is seen by all.
 */

import { AppError, isAppError } from "../core/errors.ts";
import type { Settings } from "../core/settings.ts";
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
import { DecodeGate } from "../preprocess/decode-gate.ts";
import { PreprocessPool } from "../preprocess/pool.ts";
import { openStore } from "../store/open.ts";
import type { ItemStore, ReindexTarget, StoreHealth, StoreServer } from "../store/types.ts";
import { Explainer, type ExplainQuery, type Explanation } from "./explain/explain.ts";
import { Ingest } from "./ingest/ingest.ts";
import { ItemReader } from "./items.ts";
import type { Generation } from "./models/generation.ts";
import { ModelLifecycle } from "./models/lifecycle.ts";
import type {
  ModelHost,
  ReindexFailure,
  ReindexProgress,
  ReindexStatus,
  SwitchMode,
} from "./models/types.ts";
import { EmbedQueue } from "./queue.ts";
import { SearchService } from "./search/service.ts";
import type { Library, LibraryOptions, LibraryState, LibraryStats } from "./types.ts";

/** How often a library on a shared store re-reads its model and reachability. */
const STORE_CHECK_INTERVAL_MS = 2_000;

function isUnavailable(error: unknown): boolean {
  return isAppError(error) && error.code === "database_unavailable";
}

function libraryClosed(): AppError {
  return new AppError("library_closed", "The library is shutting down; retry shortly.");
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
  private readonly decodeGate: DecodeGate;
  private readonly pool: PreprocessPool;
  private currentState: LibraryState = "starting";
  private unavailableReason: string | undefined;
  private closing = false;
  private readonly active = new Set<Promise<unknown>>();
  private checkTimer: NodeJS.Timeout | undefined;
  private readonly ingest: Ingest;
  /** The models it embeds with: switching, blue/green, reindex. */
  private readonly models: ModelLifecycle;
  private readonly items: ItemReader;
  private readonly searches: SearchService;
  private readonly explainer: Explainer;

  constructor(
    private readonly settings: Settings,
    encoder: Embedder,
    readonly store: ItemStore,
    private readonly options: LibraryOptions,
  ) {
    this.queue = new EmbedQueue(settings.maxQueueDepth);
    this.decodeGate = new DecodeGate(settings);
    this.pool = new PreprocessPool(settings.preprocessWorkers, this.decodeGate);
    const host: ModelHost = {
      settings,
      store,
      pool: this.pool,
      queue: this.queue,
      loadModel: options.loadModel,
      readBytes: (item) => this.items.readBytes(item),
      inFlight: () => this.active,
      adopted: (next) => this.adopted(next),
      assertOpen: () => this.assertOpen(),
      reportBackground: (error) => this.reportBackground(error),
    };
    this.models = new ModelLifecycle(host, encoder);
    this.items = new ItemReader(settings, store);
    this.searches = new SearchService({
      settings,
      store,
      pool: this.pool,
      queue: this.queue,
      live: () => this.models.live,
      assertUsable: () => this.assertUsable(),
      reportBackground: (error) => this.reportBackground(error),
    });
    this.explainer = new Explainer({
      settings,
      store,
      pool: this.pool,
      gate: this.decodeGate,
      queue: this.queue,
      live: () => this.models.live,
      readBytes: (item) => this.items.readBytes(item),
      readFrame: (item, t) => this.items.frameOf(item, t),
      queryVector: (query) => this.searches.queryVector(query, query.options),
    });
    this.ingest = new Ingest({
      settings,
      generations: () => ({ live: this.models.live, next: this.models.next }),
      store,
      queue: this.queue,
      pool: this.pool,
      allowAnyPath: options.allowAnyPath === true,
      assertUsable: () => this.assertUsable(),
    });
  }

  private get embedder(): Embedder {
    return this.models.live.embedder;
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
    if (this.closing || this.models.reindexing) return;
    const next = await this.models.checkStore();
    if (this.closing || this.models.reindexing) return;
    if (next === "ready" && this.currentState !== "ready") await this.store.prepare();
    this.currentState = next;
    this.unavailableReason = undefined;
  }

  /** The next model became live: queries are embedded and searched with it from now on. */
  private adopted(next: Generation): void {
    this.searches.adopt(next.embedder);
    this.explainer.clear();
    if (this.currentState === "needs_reindex") this.currentState = "ready";
  }

  state(): LibraryState {
    return this.currentState;
  }

  ready(): boolean {
    return this.currentState === "ready" && this.store.health().available;
  }

  storeHealth(): StoreHealth {
    return this.store.health();
  }

  databaseServers(): StoreServer[] {
    return this.store.health().servers ?? [];
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
        return "the stored embeddings come from another model (run longclip reindex)";
      case "reindexing":
        return this.models.reindexProgressLine();
      default:
        return "the library is closed";
    }
  }

  // ---------------------------------------------------------------- index

  index(inputs: readonly IndexInput[]): Promise<IndexResult[]> {
    return this.track(async () => {
      this.searches.itemsChanged();
      const results = await this.models.ingestAcrossSwitch(inputs, (batch) =>
        this.ingest.run(batch),
      );
      this.searches.itemsChanged();
      await this.searches.flagNearDuplicates(results);
      return results;
    });
  }

  // ---------------------------------------------------------------- duplicates

  duplicates(options: {
    threshold: number;
    cursor: string | null;
    limit: number;
  }): Promise<DuplicateGroupPage> {
    return this.track(() => this.searches.duplicates(options));
  }

  // ---------------------------------------------------------------- search

  searchText(query: string, options: SearchOptions & TextOptions): Promise<TextSearchResult> {
    return this.track(() => this.models.acrossSwitch(() => this.searches.text(query, options)));
  }

  searchCompose(
    parts: readonly ComposePart[],
    options: SearchOptions & TextOptions,
  ): Promise<TextSearchResult> {
    return this.track(() => this.models.acrossSwitch(() => this.searches.compose(parts, options)));
  }

  searchImage(
    image: ImageQuery,
    options: SearchOptions & ImageQueryOptions,
  ): Promise<{ hits: Hit[] }> {
    return this.track(async () => {
      const bytes = Buffer.isBuffer(image) ? image : await this.storedImage(image.itemId);
      const { box, ...search } = options;
      return this.models.acrossSwitch(() => this.searches.image(bytes, search, box));
    });
  }

  /** A stored item's image bytes, for a query by it (404 not_found when there is none). */
  private async storedImage(id: string): Promise<Buffer> {
    const image = await this.items.readImage(id);
    if (image === undefined) {
      throw new AppError("not_found", `No item "${id}"; search by an indexed item's id.`, { id });
    }
    return image.bytes;
  }

  /** Nearest items to an embedding, by the store's ANN index or an exact scan, filtered. */
  searchVector(vector: Float32Array, options: SearchOptions): Promise<Hit[]> {
    return this.searches.vector(vector, options);
  }

  // ---------------------------------------------------------------- explain

  explain(itemId: string, query: ExplainQuery): Promise<Explanation> {
    return this.track(() =>
      this.models.acrossSwitch(() => {
        this.assertUsable();
        return this.explainer.explain(itemId, query);
      }),
    );
  }

  explainOverlay(itemId: string, query: ExplainQuery): Promise<Buffer> {
    return this.track(() =>
      this.models.acrossSwitch(() => {
        this.assertUsable();
        return this.explainer.overlay(itemId, query);
      }),
    );
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

  async readFrame(id: string, t: number): Promise<Buffer | undefined> {
    this.assertOpen();
    return this.items.readFrame(id, t);
  }

  /** Waits until `pixels` may be decoded (thumbnails share the ingest and search budget). */
  admitDecode(pixels: number): Promise<() => void> {
    return this.decodeGate.admitPixels(pixels);
  }

  async deleteItem(id: string): Promise<boolean> {
    this.assertOpen();
    this.searches.itemsChanged();
    return (await this.store.deleteById(id)) !== undefined;
  }

  async listItems(cursor: string | null, limit: number, order?: ItemOrder): Promise<Page<Item>> {
    this.assertOpen();
    return this.items.list(cursor, limit, order);
  }

  // ---------------------------------------------------------------- reindex

  reindex(onProgress?: ReindexProgress, onFailure?: ReindexFailure): Promise<number> {
    return this.track(() => this.reindexNow(onProgress, onFailure));
  }

  private async reindexNow(
    onProgress?: ReindexProgress,
    onFailure?: ReindexFailure,
  ): Promise<number> {
    this.assertOpen();
    const before = this.currentState;
    // Refused at once when a reindex runs; a library on the right model keeps serving from its
    // current index meanwhile.
    const run = this.models.reindexInPlace(onProgress, onFailure);
    if (before === "needs_reindex") this.currentState = "reindexing";
    try {
      const embedded = await run;
      this.currentState = "ready";
      return embedded;
    } catch (error) {
      if (this.currentState === "reindexing") this.currentState = before;
      throw error;
    }
  }

  // ---------------------------------------------------------------- blue/green reindex

  /**
   * Starts embedding every item with the model in `modelDir` in the background (or resumes a
   * recorded run of that model); search keeps serving the current model until the switch.
   */
  startReindex(modelDir: string, switchMode: SwitchMode = "auto"): Promise<ReindexStatus> {
    this.assertOpen();
    return this.models.startReindex(modelDir, switchMode);
  }

  /** The blue/green reindex this library runs or last ran, if any. */
  reindexStatus(): ReindexStatus | undefined {
    return this.models.reindexStatus();
  }

  /** The recorded run (any node's), for a status when this library runs none. */
  reindexTarget(): Promise<ReindexTarget | undefined> {
    return this.store.reindexTarget();
  }

  /** Switches a run that waits for it (manual mode), after a last catch-up pass. */
  switchReindex(): Promise<ReindexStatus> {
    this.assertOpen();
    return this.track(() => this.models.switchReindex());
  }

  /** The next model this library has loaded (it embeds new items with both), if any. */
  nextModelId(): string | undefined {
    return this.models.next?.embedder.modelId;
  }

  /** Resolves when the background reindex (if any) ends. */
  waitForReindex(): Promise<void> {
    return this.models.waitForReindex();
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
        pending: this.queue.pending + this.searches.pending,
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
    await this.models.stop();
    while (this.active.size > 0) await Promise.allSettled([...this.active]);
    await this.models.retiredClosed();
    this.currentState = "closed";
    await this.store.close();
    await Promise.all([this.pool.close(), this.models.close()]);
  }

  private track<T>(start: () => Promise<T>): Promise<T> {
    if (this.closing) {
      return Promise.reject(libraryClosed());
    }
    const work = start();
    this.active.add(work);
    const done = () => this.active.delete(work);
    work.then(done, done);
    return work;
  }

  private assertOpen(): void {
    if (this.currentState === "closed") {
      throw libraryClosed();
    }
  }

  private assertUsable(): void {
    this.assertOpen();
    if (this.currentState === "starting" || this.currentState === "unavailable") {
      throw new AppError(
        "database_unavailable",
        `The database cannot be reached (${this.unavailableReason ?? "still connecting"}); the server keeps retrying, try again shortly.`,
        { retryAfterSeconds: 5 },
      );
    }
    if (this.currentState === "needs_reindex" || this.currentState === "reindexing") {
      throw this.models.mismatch();
    }
  }
}
