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
import { createHash } from "node:crypto";
import { existsSync, realpathSync } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import type { Settings } from "../config.ts";
import type { Embedder, TextEmbedding } from "../encode/types.ts";
import { AppError, isAppError } from "../errors.ts";
import type { PreprocessOptions } from "../preprocess/types.ts";
import { openStore } from "../store/open.ts";
import type { ItemStore, ModelInfo, NewItem, StoredItem } from "../store/types.ts";
import { LruCache } from "../util/lru-cache.ts";
import { PreprocessPool } from "./preprocess-pool.ts";
import { EmbedQueue } from "./queue.ts";
import type {
  Hit,
  IndexInput,
  IndexResult,
  Item,
  Library,
  LibraryStats,
  Metadata,
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

const CLIENT_ID = /^[A-Za-z0-9_.:-]{1,128}$/;
const MAX_METADATA_BYTES = 64 * 1024;

const CONTENT_TYPES: Record<string, string> = {
  jpeg: "image/jpeg",
  png: "image/png",
  webp: "image/webp",
  gif: "image/gif",
  avif: "image/avif",
  tiff: "image/tiff",
};

/** One input on its way through the pipeline. */
interface Job {
  index: number;
  id: string;
  sha256: string;
  bytes: Buffer;
  metadata: Metadata;
  source: "upload" | "path";
  path?: string;
  claim: Claim;
}

interface Prepared extends Job {
  pixels: Float32Array;
  width: number;
  height: number;
  contentType: string;
}

interface Lookup {
  sha256: string;
  id: string;
  /** The stored item with the same content, if any. */
  existing: StoredItem | undefined;
  /** Whether the id is taken by a stored item. */
  idTaken: boolean;
}

type ClaimOutcome = { id: string } | { error: { code: string; message: string } };

/** An in-flight content hash: later copies of the same bytes wait for its outcome. */
interface Claim {
  promise: Promise<ClaimOutcome>;
  settle(outcome: ClaimOutcome): void;
}

function newClaim(): Claim {
  let settle: (outcome: ClaimOutcome) => void = () => {};
  const promise = new Promise<ClaimOutcome>((resolve) => {
    settle = resolve;
  });
  return { promise, settle };
}

function errorOf(error: unknown): { code: string; message: string } {
  if (isAppError(error)) return { code: error.code, message: error.message };
  const message = error instanceof Error ? error.message : String(error);
  return { code: "internal_error", message: `Unexpected error: ${message}` };
}

function isUnavailable(error: unknown): boolean {
  return isAppError(error) && error.code === "database_unavailable";
}

function sha256Hex(bytes: Buffer): string {
  return createHash("sha256").update(bytes).digest("hex");
}

function publicItem(item: StoredItem): Item {
  const { label: _label, ...rest } = item;
  return rest;
}

function validateMetadata(metadata: unknown): Metadata {
  if (metadata === undefined || metadata === null) return {};
  if (typeof metadata !== "object" || Array.isArray(metadata)) {
    throw new AppError("invalid_metadata", 'metadata must be a JSON object, e.g. {"album": "x"}.');
  }
  const json = JSON.stringify(metadata);
  if (Buffer.byteLength(json) > MAX_METADATA_BYTES) {
    throw new AppError(
      "invalid_metadata",
      `metadata is ${Buffer.byteLength(json)} bytes of JSON; the limit is ${MAX_METADATA_BYTES}. Keep large data elsewhere and store a reference.`,
    );
  }
  return JSON.parse(json) as Metadata;
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
  private readonly inflightSha = new Map<string, Claim>();
  private readonly inflightIds = new Map<string, string>();
  private readonly active = new Set<Promise<unknown>>();
  private checkTimer: NodeJS.Timeout | undefined;
  private readonly preprocessOptions: PreprocessOptions;
  private readonly mediaRoot: string | undefined;

  constructor(
    private readonly settings: Settings,
    private readonly embedder: Embedder,
    readonly store: ItemStore,
    private readonly options: LibraryOptions,
  ) {
    this.queue = new EmbedQueue(settings.maxQueueDepth);
    this.textQueue = new EmbedQueue(settings.maxQueueDepth);
    this.queryCache = new LruCache(settings.queryCacheSize);
    this.preprocessOptions = {
      resolution: embedder.config.image_resolution,
      mean: embedder.config.image_mean,
      std: embedder.config.image_std,
      maxImageBytes: settings.maxImageBytes,
      maxImagePixels: settings.maxImagePixels,
    };
    this.mediaRoot =
      settings.mediaRoot !== undefined && existsSync(settings.mediaRoot)
        ? realpathSync(settings.mediaRoot)
        : undefined;
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
    return this.track(() => this.indexAll(inputs));
  }

  private async indexAll(inputs: readonly IndexInput[]): Promise<IndexResult[]> {
    this.assertUsable();
    if (inputs.length === 0) return [];
    if (inputs.length > this.settings.maxBatchItems) {
      throw new AppError(
        "too_many_items",
        `The batch has ${inputs.length} items; the limit is ${this.settings.maxBatchItems} (maxBatchItems). Split it into smaller batches.`,
        413,
        { items: inputs.length, limit: this.settings.maxBatchItems },
      );
    }
    const reservation = this.queue.reserve("ingest", inputs.length);
    const results = new Array<IndexResult>(inputs.length);
    const waits: Promise<void>[] = [];
    const owned: Job[] = [];
    const fail = (i: number, error: unknown) => {
      results[i] = { id: inputs[i]?.id ?? "", status: "failed", error: errorOf(error) };
    };
    try {
      const chunkSize = Math.max(1, this.settings.imageBatchSize);
      // Preparation (read, hash, decode) of chunk n+1 overlaps the embedding of chunk n.
      const prepare = async (start: number): Promise<Prepared[]> => {
        const chunk = inputs.slice(start, start + chunkSize);
        const loaded = await Promise.allSettled(chunk.map((input) => this.load(input)));
        const known = await Promise.all(
          loaded.map((outcome, offset) =>
            outcome.status === "fulfilled"
              ? this.lookUp(inputs[start + offset] as IndexInput, outcome.value.bytes)
              : undefined,
          ),
        );
        // Claimed synchronously, after the lookups: two calls never both own the same bytes.
        const claims = loaded.map((outcome, offset) =>
          outcome.status === "fulfilled"
            ? this.claim(
                start + offset,
                inputs[start + offset] as IndexInput,
                outcome.value,
                known[offset] as Lookup,
                results,
                waits,
              )
            : undefined,
        );
        const jobs: Job[] = [];
        loaded.forEach((outcome, offset) => {
          const i = start + offset;
          if (outcome.status === "rejected") {
            fail(i, outcome.reason);
            reservation.release(1);
            return;
          }
          const job = claims[offset];
          if (job === undefined) {
            reservation.release(1);
            return;
          }
          owned.push(job);
          jobs.push(job);
        });
        // The original is made durable here, while the previous chunk is being embedded: it
        // must be on disk before the commit, and an undecodable upload is never stored.
        const decoded = await Promise.allSettled(
          jobs.map(async (job) => {
            const image = await this.pool.run(job.bytes, this.preprocessOptions);
            if (job.source === "upload") await this.stageOriginal(job);
            return image;
          }),
        );
        const prepared: Prepared[] = [];
        decoded.forEach((outcome, k) => {
          const job = jobs[k] as Job;
          if (outcome.status === "rejected") {
            this.finish(job, results, { error: errorOf(outcome.reason) });
            reservation.release(1);
            return;
          }
          const image = outcome.value;
          prepared.push({
            ...job,
            pixels: image.pixels,
            width: image.width,
            height: image.height,
            contentType: CONTENT_TYPES[image.format] ?? `image/${image.format}`,
          });
        });
        return prepared;
      };

      let next: Promise<Prepared[]> | undefined = prepare(0);
      for (let start = 0; next !== undefined; start += chunkSize) {
        const prepared: Prepared[] = await next;
        next = start + chunkSize < inputs.length ? prepare(start + chunkSize) : undefined;
        // A failing `next` must not become an unhandled rejection while this chunk runs.
        next?.catch(() => {});
        await this.commitChunk(prepared, results);
        reservation.release(prepared.length);
      }
    } finally {
      // Whatever happened, no claim may stay pending: waiters (maybe other calls) need an answer.
      for (const job of owned) {
        if (results[job.index] === undefined) {
          this.finish(job, results, {
            error: { code: "internal_error", message: "Indexing was interrupted; retry." },
          });
        }
      }
      reservation.release();
    }
    await Promise.all(waits);
    return results;
  }

  /** Reads the bytes of an input (upload or path) after validating what can be validated. */
  private async load(input: IndexInput): Promise<{
    bytes: Buffer;
    metadata: Metadata;
    source: "upload" | "path";
    path?: string;
  }> {
    if (input.id !== undefined && !CLIENT_ID.test(input.id)) {
      throw new AppError(
        "invalid_id",
        `Item id "${String(input.id).slice(0, 140)}" is not allowed; use 1-128 characters of letters, digits, "_", ".", ":" or "-", or omit it to get a content-based id.`,
      );
    }
    const metadata = validateMetadata(input.metadata);
    if (input.bytes !== undefined && input.path !== undefined) {
      throw new AppError("invalid_input", "Give either image bytes or a path, not both.");
    }
    if (input.bytes !== undefined) {
      return { bytes: input.bytes, metadata, source: "upload" };
    }
    if (input.path === undefined || input.path === "") {
      throw new AppError("invalid_input", "Each item needs image bytes or a path.");
    }
    const real = this.resolvePath(input.path);
    const info = await stat(real);
    if (!info.isFile()) {
      throw new AppError("not_a_file", `${input.path} is not a regular file; give an image file.`);
    }
    if (info.size > this.settings.maxImageBytes) {
      throw new AppError(
        "image_too_large",
        `${input.path} is ${info.size} bytes; the limit is ${this.settings.maxImageBytes} (maxImageBytes).`,
        413,
      );
    }
    return { bytes: await readFile(real), metadata, source: "path", path: real };
  }

  /** Resolves symlinks and `..`, then checks the media root (unless any path is allowed). */
  private resolvePath(input: string): string {
    const root = this.mediaRoot;
    const confined = !this.options.allowAnyPath;
    if (root === undefined && confined) {
      throw new AppError(
        "path_indexing_disabled",
        this.settings.mediaRoot === undefined
          ? "Indexing by path is disabled; set a media root (LONGCLIP_MEDIA_ROOT or --media-root) or upload the image."
          : `Indexing by path is disabled: the media root ${this.settings.mediaRoot} does not exist. Create it or fix LONGCLIP_MEDIA_ROOT, then restart.`,
        403,
      );
    }
    const outside = (candidate: string) => {
      const relative = path.relative(root as string, candidate);
      return relative === "" || relative.startsWith("..") || path.isAbsolute(relative);
    };
    const refuse = () =>
      new AppError(
        "path_outside_media_root",
        `${input} is outside the media root ${root}; only files under it can be indexed by path.`,
        403,
      );
    const absolute = path.resolve(root ?? process.cwd(), input);
    // Checked before touching the file system, so answers never reveal what exists outside.
    if (confined && outside(absolute)) throw refuse();
    let real: string;
    try {
      real = realpathSync(absolute);
    } catch {
      throw new AppError(
        "file_not_found",
        `No file at ${input}; check the path (relative paths are resolved against the media root).`,
        404,
      );
    }
    // Again after resolving symlinks: a link inside the root may point outside it.
    if (confined && outside(real)) throw refuse();
    return real;
  }

  /** What the store holds of an input's content and id. */
  private async lookUp(input: IndexInput, bytes: Buffer): Promise<Lookup> {
    const sha256 = sha256Hex(bytes);
    const id = input.id ?? sha256.slice(0, 32);
    const [existing, byId] = await Promise.all([
      this.store.getBySha(sha256),
      this.store.getById(id),
    ]);
    return { sha256, id, existing, idTaken: byId !== undefined };
  }

  /**
   * Decides, before any decoding, whether an input is new work: a duplicate of a stored or an
   * in-flight item, an id conflict, or a job this call now owns (its hash and id are claimed).
   */
  private claim(
    i: number,
    input: IndexInput,
    loaded: Awaited<ReturnType<LongclipLibrary["load"]>>,
    { sha256, id, existing, idTaken }: Lookup,
    results: IndexResult[],
    waits: Promise<void>[],
  ): Job | undefined {
    if (existing !== undefined) {
      results[i] = { id: existing.id, status: "duplicate" };
      return undefined;
    }
    const inflight = this.inflightSha.get(sha256);
    if (inflight !== undefined) {
      waits.push(
        inflight.promise.then((outcome) => {
          results[i] =
            "id" in outcome
              ? { id: outcome.id, status: "duplicate" }
              : { id: input.id ?? "", status: "failed", error: outcome.error };
        }),
      );
      return undefined;
    }
    if (idTaken || this.inflightIds.has(id)) {
      results[i] = {
        id,
        status: "failed",
        error: {
          code: "id_conflict",
          message: `Id "${id}" is already used by a different image; choose another id or delete the existing item first.`,
        },
      };
      return undefined;
    }
    const claim = newClaim();
    this.inflightSha.set(sha256, claim);
    this.inflightIds.set(id, sha256);
    const job: Job = { index: i, id, sha256, claim, ...loaded };
    return job;
  }

  /** Records a job's result and releases its claims. */
  private finish(job: Job, results: IndexResult[], outcome: ClaimOutcome): void {
    results[job.index] =
      "id" in outcome
        ? { id: outcome.id, status: outcome.id === job.id ? "indexed" : "duplicate" }
        : { id: job.id, status: "failed", error: outcome.error };
    this.inflightSha.delete(job.sha256);
    this.inflightIds.delete(job.id);
    job.claim.settle(outcome);
  }

  private async stageOriginal(job: Job): Promise<void> {
    try {
      await this.store.stageOriginal(job.sha256, job.bytes);
    } catch (error) {
      throw new AppError(
        "storage_error",
        `Could not store the uploaded image: ${(error as Error).message}. Check free space and permissions of the data directory.`,
        500,
      );
    }
  }

  /** Embeds one chunk and commits it in one transaction (originals are already staged). */
  private async commitChunk(prepared: Prepared[], results: IndexResult[]): Promise<void> {
    if (prepared.length === 0) return;
    try {
      const vectors = await this.queue.run("ingest", prepared.length, () =>
        this.embedder.embedPixels(prepared.map((p) => p.pixels)),
      );
      this.assertUsable();
      const entries: NewItem[] = prepared.map((p, k) => {
        const entry: NewItem = {
          id: p.id,
          sha256: p.sha256,
          metadata: p.metadata,
          contentType: p.contentType,
          width: p.width,
          height: p.height,
          bytes: p.bytes.length,
          source: p.source,
          vector: vectors[k] as Float32Array,
        };
        if (p.path !== undefined) entry.path = p.path;
        // Staged already on SQLite (a no-op there); committed with the row on Postgres.
        if (p.source === "upload") entry.original = p.bytes;
        return entry;
      });
      const outcomes = await this.store.insertItems(entries, this.embedder.modelId);
      outcomes.forEach((outcome, k) => {
        const job = prepared[k] as Prepared;
        if (outcome.status === "inserted") {
          this.finish(job, results, { id: job.id });
        } else if (outcome.status === "duplicate") {
          this.finish(job, results, { id: outcome.id });
        } else {
          this.finish(job, results, {
            error: {
              code: "id_conflict",
              message: `Id "${job.id}" is already used by a different image; choose another id.`,
            },
          });
        }
      });
    } catch (error) {
      for (const job of prepared) {
        if (results[job.index] === undefined) this.finish(job, results, { error: errorOf(error) });
      }
    }
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
      hits: await this.searchVector(text.embedding, options),
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
