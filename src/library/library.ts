/**
 * The library: ingest (hash → duplicate check → preprocess → embed → one SQLite transaction →
 * HNSW), search (HNSW or exact), item management, start-up reconcile and reindex.
 *
 * Invariants:
 * - SQLite is the source of truth. An item is reported "indexed" only after the transaction
 *   holding it and its embedding committed (fsynced), and, for uploads, after its original was
 *   fsynced; the HNSW index is derived and reconciled with SQLite at start-up.
 * - Embeddings of two models are never mixed: the store records its model, and a library whose
 *   embedder has another model id refuses to index or search until `reindex()` ran.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, realpathSync, rmSync } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import type { Settings } from "../config.ts";
import type { Embedder, TextEmbedding } from "../encode/types.ts";
import { AppError, isAppError } from "../errors.ts";
import type { PreprocessOptions } from "../preprocess/types.ts";
import { type NewItem, Store, type StoredItem } from "../store/store.ts";
import { LruCache } from "../util/lru-cache.ts";
import { exactSearch } from "../vector-index/exact.ts";
import { HnswIndex, type Neighbour } from "../vector-index/hnsw.ts";
import { Originals } from "./originals.ts";
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

export type LibraryState = "ready" | "needs_reindex" | "reindexing" | "closed";

export interface LibraryOptions {
  /**
   * Accept `path` inputs anywhere on the file system, not only under settings.mediaRoot. For
   * the local CLI (`longclip index <paths>`), whose user already has the files; never for HTTP.
   */
  allowAnyPath?: boolean;
  /** Called when a background save of the HNSW index fails (default: a process warning). */
  onBackgroundError?: (error: unknown) => void;
}

const CLIENT_ID = /^[A-Za-z0-9_.:-]{1,128}$/;
/** Filtered searches over at most this many candidates scan them exactly (HNSW with a very
 * selective filter loses recall); larger candidate sets use HNSW with a label filter. */
const EXACT_FILTER_LIMIT = 10_000;
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

function indexFileName(modelId: string, dims: number): string {
  return `hnsw-${modelId.replace(/[^A-Za-z0-9_.-]/g, "_")}-${dims}.bin`;
}

/** Opens (or creates) the library in settings.dataDir for `embedder`'s model. */
export async function createLibrary(
  settings: Settings,
  embedder: Embedder,
  options: LibraryOptions = {},
): Promise<LongclipLibrary> {
  return new LongclipLibrary(settings, embedder, options);
}

export class LongclipLibrary implements Library {
  readonly store: Store;
  private readonly originals: Originals;
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
  private readonly indexDir: string;
  private hnsw: HnswIndex;
  private currentState: LibraryState;
  private reindexing = false;
  private closing = false;
  private readonly inflightSha = new Map<string, Claim>();
  private readonly inflightIds = new Map<string, string>();
  private readonly active = new Set<Promise<unknown>>();
  private readonly saveTimer: NodeJS.Timeout | undefined;
  private readonly preprocessOptions: PreprocessOptions;
  private readonly mediaRoot: string | undefined;

  constructor(
    private readonly settings: Settings,
    private readonly embedder: Embedder,
    private readonly options: LibraryOptions,
  ) {
    mkdirSync(settings.dataDir, { recursive: true });
    this.store = new Store(path.join(settings.dataDir, "library.sqlite"));
    this.originals = new Originals(path.join(settings.dataDir, "originals"));
    this.indexDir = path.join(settings.dataDir, "index");
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

    const stored = this.store.model();
    const matches =
      stored !== undefined && stored.modelId === embedder.modelId && stored.dims === embedder.dims;
    if (stored === undefined || (!matches && this.store.count() === 0)) {
      this.store.setModel({ modelId: embedder.modelId, dims: embedder.dims });
    }
    if (stored === undefined || matches || this.store.count() === 0) {
      this.currentState = "ready";
      this.hnsw = this.loadAndReconcile();
    } else {
      this.currentState = "needs_reindex";
      this.hnsw = this.emptyIndex();
    }
    if (settings.indexSaveIntervalMs > 0) {
      const report =
        options.onBackgroundError ??
        ((error: unknown) => process.emitWarning(`saving the HNSW index failed: ${String(error)}`));
      this.saveTimer = setInterval(() => {
        try {
          this.saveIfDirty();
        } catch (error) {
          report(error);
        }
      }, settings.indexSaveIntervalMs);
      this.saveTimer.unref();
    }
  }

  state(): LibraryState {
    return this.currentState;
  }

  ready(): boolean {
    return this.currentState === "ready";
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
        const jobs: Job[] = [];
        loaded.forEach((outcome, offset) => {
          const i = start + offset;
          if (outcome.status === "rejected") {
            fail(i, outcome.reason);
            reservation.release(1);
            return;
          }
          const job = this.claim(i, inputs[i] as IndexInput, outcome.value, results, waits);
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
            if (job.source === "upload") await this.writeOriginal(job);
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

  /**
   * Decides, before any decoding, whether an input is new work: a duplicate of a stored or an
   * in-flight item, an id conflict, or a job this call now owns (its hash and id are claimed).
   */
  private claim(
    i: number,
    input: IndexInput,
    loaded: Awaited<ReturnType<LongclipLibrary["load"]>>,
    results: IndexResult[],
    waits: Promise<void>[],
  ): Job | undefined {
    const sha256 = sha256Hex(loaded.bytes);
    const existing = this.store.getBySha(sha256);
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
    const id = input.id ?? sha256.slice(0, 32);
    if (this.store.getById(id) !== undefined || this.inflightIds.has(id)) {
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

  private async writeOriginal(job: Job): Promise<void> {
    try {
      await this.originals.write(job.sha256, job.bytes);
    } catch (error) {
      throw new AppError(
        "storage_error",
        `Could not store the uploaded image: ${(error as Error).message}. Check free space and permissions of the data directory.`,
        500,
      );
    }
  }

  /** Embeds one chunk, commits it in one transaction (originals are already on disk), then HNSW. */
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
        return entry;
      });
      const outcomes = this.store.insertItems(entries, this.embedder.modelId);
      outcomes.forEach((outcome, k) => {
        const job = prepared[k] as Prepared;
        if (outcome.status === "inserted") {
          // Durable from here on; the index catches up at the next start if this throws.
          this.hnsw.add(outcome.label, vectors[k] as Float32Array);
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
      hits: this.searchVector(text.embedding, options),
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
    return { hits: this.searchVector(vectors[0] as Float32Array, options) };
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
    if (options.filter !== undefined) this.store.labelsMatching(options.filter);
  }

  /** Nearest items to an embedding, by HNSW or exact scan, with an optional metadata filter. */
  searchVector(vector: Float32Array, options: SearchOptions): Hit[] {
    const modelId = this.embedder.modelId;
    const k = options.k;
    let neighbours: Neighbour[];
    if (options.filter !== undefined && Object.keys(options.filter).length > 0) {
      const labels = this.store.labelsMatching(options.filter);
      if (options.exact || labels.length <= EXACT_FILTER_LIMIT) {
        neighbours = exactSearch(vector, this.store.embeddingsFor(modelId, labels), k);
      } else {
        const allowed = new Set(labels);
        neighbours = this.hnsw.search(vector, k, (label) => allowed.has(label));
      }
    } else if (options.exact) {
      neighbours = exactSearch(vector, this.store.iterateEmbeddings(modelId), k);
    } else {
      neighbours = this.hnsw.search(vector, k);
    }
    const items = this.store.getByLabels(neighbours.map((n) => n.label));
    const hits: Hit[] = [];
    for (const n of neighbours) {
      const item = items.get(n.label);
      if (item === undefined) continue;
      hits.push({ id: item.id, score: n.score, rank: hits.length + 1, metadata: item.metadata });
    }
    return hits;
  }

  // ---------------------------------------------------------------- items

  getItem(id: string): Item | undefined {
    this.assertOpen();
    const item = this.store.getById(id);
    return item === undefined ? undefined : publicItem(item);
  }

  async readImage(id: string): Promise<{ bytes: Buffer; contentType: string } | undefined> {
    this.assertOpen();
    const item = this.store.getById(id);
    if (item === undefined) return undefined;
    try {
      const bytes =
        item.source === "upload"
          ? await this.originals.read(item.sha256)
          : await readFile(item.path as string);
      return { bytes, contentType: item.contentType };
    } catch {
      throw new AppError(
        "image_missing",
        `The image file of item "${id}" is gone${item.path ? ` (${item.path})` : ""}; restore it or delete the item.`,
        404,
      );
    }
  }

  deleteItem(id: string): boolean {
    this.assertOpen();
    const item = this.store.getById(id);
    if (item === undefined) return false;
    const label = this.store.deleteById(id);
    if (label === undefined) return false;
    this.hnsw.remove(label);
    if (item.source === "upload") {
      // After the commit: a crash in between leaves an unreferenced file, never a dangling row.
      try {
        this.originals.remove(item.sha256);
      } catch {
        // The item is deleted; a file that cannot be removed is only wasted space.
      }
    }
    return true;
  }

  listItems(cursor: string | null, limit: number): Page<Item> {
    this.assertOpen();
    const bounded = Math.min(Math.max(1, Math.trunc(limit) || 1), this.settings.maxK);
    const page = this.store.listItems(cursor, bounded);
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
      this.store.clearStaging();
      const total = this.store.count();
      const pageSize = Math.max(1, this.settings.imageBatchSize);
      let done = 0;
      let embedded = 0;
      let after = 0;
      onProgress?.(0, total);
      for (;;) {
        this.assertOpen();
        const page = this.store.itemsAfter(after, pageSize);
        const last = page[page.length - 1];
        if (last === undefined) break;
        after = last.label;
        const decoded = await Promise.allSettled(
          page.map(async (item) => {
            const bytes =
              item.source === "upload"
                ? await this.originals.read(item.sha256)
                : await readFile(item.path as string);
            return this.pool.run(bytes, this.preprocessOptions);
          }),
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
          this.store.putStaging(
            good.map((g, k) => ({ label: g.label, vector: vectors[k] as Float32Array })),
            modelId,
          );
          embedded += good.length;
        }
        done += page.length;
        onProgress?.(Math.min(done, total), total);
      }
      this.store.swapStaging({ modelId, dims: this.embedder.dims });
      this.hnsw = this.buildIndex();
      this.saveIndex();
      this.removeOtherIndexFiles();
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

  stats(): LibraryStats {
    const encoder = this.embedder.stats();
    return {
      items: this.currentState === "closed" ? 0 : this.store.count(),
      modelId: this.embedder.modelId,
      dims: this.embedder.dims,
      device: encoder.device,
      index: {
        type: "hnsw",
        space: "cosine",
        m: this.settings.hnswM,
        efConstruction: this.settings.hnswEfConstruction,
        efSearch: this.settings.hnswEfSearch,
        capacity: this.hnsw.capacity,
        size: this.hnsw.size,
      },
      queue: {
        pending: this.queue.pending + this.textQueue.pending,
        capacity: this.settings.maxQueueDepth,
      },
    };
  }

  /** Saves the index now if it changed since the last save. */
  saveIfDirty(): void {
    if (this.currentState === "ready" && this.hnsw.dirty) this.saveIndex();
  }

  /** Refuses new work, lets running work finish, saves the index, closes store and encoder. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    if (this.saveTimer !== undefined) clearInterval(this.saveTimer);
    while (this.active.size > 0) await Promise.allSettled([...this.active]);
    this.saveIfDirty();
    this.currentState = "closed";
    this.store.close();
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
    if (this.currentState === "needs_reindex" || this.currentState === "reindexing") {
      const stored = this.store.model();
      throw new AppError(
        "model_mismatch",
        `The library was embedded with model ${stored?.modelId ?? "?"} (${stored?.dims ?? "?"} dims), the loaded model is ${this.embedder.modelId} (${this.embedder.dims} dims); run \`longclip reindex\` to re-embed every item with the loaded model, or load the previous model.`,
        409,
        { storedModelId: stored?.modelId, modelId: this.embedder.modelId },
      );
    }
  }

  private indexOptions() {
    return {
      dims: this.embedder.dims,
      m: this.settings.hnswM,
      efConstruction: this.settings.hnswEfConstruction,
      efSearch: this.settings.hnswEfSearch,
    };
  }

  private indexFile(): string {
    return path.join(this.indexDir, indexFileName(this.embedder.modelId, this.embedder.dims));
  }

  private emptyIndex(): HnswIndex {
    return HnswIndex.create({ ...this.indexOptions(), capacity: 1 });
  }

  /** A new index holding every stored embedding of the current model. */
  private buildIndex(): HnswIndex {
    const modelId = this.embedder.modelId;
    const index = HnswIndex.create({
      ...this.indexOptions(),
      capacity: Math.max(1024, this.store.countEmbeddings(modelId)),
    });
    for (const row of this.store.iterateEmbeddings(modelId)) index.add(row.label, row.vector);
    return index;
  }

  /**
   * Loads the saved index of this model (the file name carries model id and dims) and brings
   * it in line with SQLite: labels SQLite lacks are deleted, embeddings the index lacks are
   * added. A missing or unreadable file means a rebuild from SQLite.
   */
  private loadAndReconcile(): HnswIndex {
    const file = this.indexFile();
    let index: HnswIndex | undefined;
    if (existsSync(file)) {
      try {
        index = HnswIndex.load(file, this.indexOptions());
      } catch {
        index = undefined;
      }
    }
    if (index === undefined) {
      const built = this.buildIndex();
      built.save(file);
      return built;
    }
    const modelId = this.embedder.modelId;
    const stored = this.store.embeddingLabels(modelId);
    for (const label of [...index.labels()]) {
      if (!stored.has(label)) index.remove(label);
    }
    const missing = [...stored].filter((label) => !index.has(label));
    for (let start = 0; start < missing.length; start += 1000) {
      for (const row of this.store.embeddingsFor(modelId, missing.slice(start, start + 1000))) {
        index.add(row.label, row.vector);
      }
    }
    if (index.dirty) index.save(file);
    return index;
  }

  private saveIndex(): void {
    this.hnsw.save(this.indexFile());
  }

  private removeOtherIndexFiles(): void {
    const keep = path.basename(this.indexFile());
    for (const name of readdirSync(this.indexDir)) {
      if (name !== keep && name.startsWith("hnsw-")) rmSync(path.join(this.indexDir, name));
    }
  }
}
