/**
 * The embedded backend: SQLite is the source of truth for items, their metadata and
 * embeddings, and the model they were embedded with; uploaded originals are files under
 * dataDir/originals; the HNSW index (./hnsw-cache.ts) is derived from SQLite and can always be
 * rebuilt. This module opens them and keeps the items; searches are ./search.ts, the
 * blue/green reindex ./staging.ts, filters as SQL ./filter-sql.ts.
 *
 * Durability: WAL with `synchronous = FULL`. Every commit fsyncs the WAL before it returns,
 * so an item acknowledged as indexed survives `kill -9` and also a power loss or OS crash
 * (NORMAL would survive a process kill but could lose the last commits on power loss). The
 * cost is one fsync per transaction; the ingest pipeline commits a whole batch in one.
 *
 * better-sqlite3 is synchronous: the methods are async only to fit the seam.
 */

import { existsSync, mkdirSync } from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { DEFAULT_SETTINGS } from "../../core/settings.ts";
import type { Filter, ItemOrder } from "../../core/types.ts";
import { efSearchFor } from "../../vector-index/ef-search.ts";
import { hnswStats, type LiveEmbedding, liveEmbedding } from "../common.ts";
import { decodeCursor, EXACT_FILTER_LIMIT, filterTerms, pageOf } from "../filter.ts";
import { partColumns, storedPart } from "../parts.ts";
import { holdsAnotherModel } from "../reindex-target.ts";
import type {
  ContentMatch,
  EmbeddingRow,
  IndexParameters,
  InsertOutcome,
  ItemStore,
  KeywordQuery,
  ModelInfo,
  NearestQuery,
  NewItem,
  ReindexTarget,
  ScoredItem,
  StagedRow,
  StoredItem,
  StoredPart,
  StoreHealth,
  SwapOptions,
  VectorIndexStats,
} from "../types.ts";
import { SqliteEmbeddings } from "./embeddings.ts";
import { registerFilterFunctions } from "./filter-sql.ts";
import { HnswCache } from "./hnsw-cache.ts";
import { SqliteJobs } from "./jobs.ts";
import { Originals } from "./originals.ts";
import { SqliteReaders } from "./readers.ts";
import { blobToVector, toItem, vectorToBlob } from "./rows.ts";
import { migrate } from "./schema.ts";
import { SqliteSearch } from "./search.ts";
import { SqliteStaging } from "./staging.ts";
import { nextLabel, prepareStatements, type Statements, writeModel } from "./statements.ts";

/** The meta row that says the sample gallery was added (see ItemStore.gallerySeeded). */
const GALLERY_SEEDED_KEY = "gallery_seeded";
/** Where earlier versions kept that fact: a file in the data directory. */
const LEGACY_GALLERY_MARKER = "gallery-indexed.json";

export interface SqliteStoreOptions extends IndexParameters {
  dataDir: string;
  /** Milliseconds between saves of a changed HNSW index; 0 saves only on flush and close. */
  indexSaveIntervalMs: number;
  /** Called when a background save of the HNSW index fails (default: a process warning). */
  onBackgroundError?: (error: unknown) => void;
  /** Filtered searches with at most this many matching items scan them exactly (default
   * EXACT_FILTER_LIMIT; the filtered-recall bench sets 0 to measure HNSW alone). */
  exactFilterLimit?: number;
  /** HNSW shards, each on its own worker thread (default 1; see vector-index/hnsw-shards.ts). */
  hnswShards?: number;
  /** Worker threads for filtered and keyword queries (default: sqliteReadWorkers; at least 1). */
  readWorkers?: number;
}

export class SqliteStore implements ItemStore {
  readonly backend = "sqlite";
  readonly shared = false;
  readonly db: Database.Database;
  readonly jobs: SqliteJobs;
  private readonly stmts: Statements;
  private readonly originals: Originals;
  private readonly embeddings: SqliteEmbeddings;
  private readonly hnsw: HnswCache;
  private readonly search: SqliteSearch;
  private readonly staging: SqliteStaging;
  private readonly readers: SqliteReaders;
  private readonly saveTimer: NodeJS.Timeout | undefined;

  constructor(private readonly options: SqliteStoreOptions) {
    const file = path.join(options.dataDir, "library.sqlite");
    mkdirSync(path.dirname(file), { recursive: true });
    this.db = new Database(file);
    this.db.pragma("journal_mode = WAL");
    this.db.pragma("synchronous = FULL");
    this.db.pragma("foreign_keys = ON");
    this.db.pragma("busy_timeout = 5000");
    migrate(this.db);
    registerFilterFunctions(this.db);
    this.stmts = prepareStatements(this.db);
    this.embeddings = new SqliteEmbeddings(this.db, this.stmts);
    this.jobs = new SqliteJobs(this.db);
    this.originals = new Originals(path.join(options.dataDir, "originals"));
    this.originals.sweepOrphans();
    const report =
      options.onBackgroundError ??
      ((error: unknown) => process.emitWarning(`saving the HNSW index failed: ${String(error)}`));
    this.hnsw = new HnswCache(
      path.join(options.dataDir, "index"),
      {
        m: options.m,
        efConstruction: options.efConstruction,
        efSearch: options.efSearch,
        shards: options.hnswShards ?? 1,
      },
      this.embeddings,
      report,
    );
    this.readers = new SqliteReaders(
      file,
      Math.max(1, options.readWorkers ?? DEFAULT_SETTINGS.sqliteReadWorkers),
    );
    this.search = new SqliteSearch(this.stmts, this.embeddings, this.hnsw, this.readers, {
      exactFilterLimit: options.exactFilterLimit ?? EXACT_FILTER_LIMIT,
      efSearch: options.efSearch,
      currentModel: () => this.modelNow(),
    });
    this.staging = new SqliteStaging(this.db, this.stmts);
    if (options.indexSaveIntervalMs > 0) {
      this.saveTimer = setInterval(() => {
        this.hnsw.saveIfDirty().catch(report);
      }, options.indexSaveIntervalMs);
      this.saveTimer.unref();
    }
  }

  async model(): Promise<ModelInfo | undefined> {
    return this.modelNow();
  }

  private modelNow(): ModelInfo | undefined {
    const modelId = this.stmts.getMeta.get("model_id")?.value;
    const dims = this.stmts.getMeta.get("dims")?.value;
    const modelDir = this.stmts.getMeta.get("model_dir")?.value;
    if (modelId === undefined || dims === undefined) return undefined;
    return { modelId, dims: Number(dims), ...(modelDir === undefined ? {} : { modelDir }) };
  }

  async setModel(info: ModelInfo): Promise<void> {
    this.db.transaction(() => {
      const other = this.db
        .prepare<[string], { model_id: string }>(
          "SELECT model_id FROM embeddings WHERE model_id <> ? LIMIT 1",
        )
        .get(info.modelId);
      if (other !== undefined) throw holdsAnotherModel(other.model_id, info.modelId);
      writeModel(this.stmts, info);
    })();
  }

  async count(): Promise<number> {
    return this.stmts.count.get()?.n ?? 0;
  }

  async countEmbeddings(modelId: string): Promise<number> {
    return this.embeddings.countEmbeddings(modelId);
  }

  async getById(id: string): Promise<StoredItem | undefined> {
    const row = this.stmts.byId.get(id);
    return row === undefined ? undefined : toItem(row);
  }

  async getBySha(sha256: string): Promise<StoredItem | undefined> {
    const row = this.stmts.bySha.get(sha256);
    return row === undefined ? undefined : toItem(row);
  }

  /** Both reads in one transaction: one snapshot, whoever else has the file open. */
  async findContent(sha256: string, id: string): Promise<ContentMatch> {
    return this.db.transaction(() => {
      const bySha = this.stmts.bySha.get(sha256);
      return {
        existing: bySha === undefined ? undefined : toItem(bySha),
        idTaken: this.stmts.byId.get(id) !== undefined,
      };
    })();
  }

  /** The original is written, fsynced and renamed into place before the item's commit. */
  stageOriginal(sha256: string, bytes: Buffer): Promise<void> {
    return this.originals.write(sha256, bytes);
  }

  readOriginal(sha256: string): Promise<Buffer> {
    return this.originals.read(sha256);
  }

  async insertItems(entries: readonly NewItem[], modelId: string): Promise<InsertOutcome[]> {
    // Uploads not staged by the caller are made durable before the transaction refers to them.
    for (const entry of entries) {
      if (entry.original !== undefined) await this.originals.write(entry.sha256, entry.original);
    }
    let live: LiveEmbedding[] = [];
    /** What the HNSW index gets once committed: every vector of the live model, by label. */
    const added: { labels: number[]; vectors: Float32Array[]; modelId: string | undefined } = {
      labels: [],
      vectors: [],
      modelId: undefined,
    };
    let partsAdded = 0;
    const outcomes = this.db.transaction(() => {
      // Blue/green: if the store switched to the staged model meanwhile, that one is live.
      const current = this.modelNow()?.modelId;
      added.modelId = current;
      live = entries.map((entry) => liveEmbedding(entry, modelId, current));
      let label = nextLabel(this.stmts);
      const createdAt = new Date().toISOString();
      const out: InsertOutcome[] = [];
      for (const [k, entry] of entries.entries()) {
        const sameContent = this.stmts.bySha.get(entry.sha256);
        if (sameContent !== undefined) {
          out.push({ status: "duplicate", id: sameContent.id });
          continue;
        }
        if (this.stmts.byId.get(entry.id) !== undefined) {
          out.push({ status: "id_conflict" });
          continue;
        }
        this.stmts.insertItem.run({
          id: entry.id,
          label,
          sha256: entry.sha256,
          metadata: JSON.stringify(entry.metadata),
          content_type: entry.contentType,
          width: entry.width,
          height: entry.height,
          bytes: entry.bytes,
          source: entry.source,
          path: entry.path ?? null,
          created_at: createdAt,
        });
        const embedding = live[k] as LiveEmbedding;
        this.stmts.insertEmbedding.run(label, embedding.modelId, vectorToBlob(embedding.vector));
        if (embedding.modelId === current) {
          added.labels.push(label);
          added.vectors.push(embedding.vector);
        }
        if (embedding.staged !== undefined) {
          const { modelId: next, vector } = embedding.staged;
          this.stmts.putStaging.run(label, next, vectorToBlob(vector));
        }
        out.push({ status: "inserted", label });
        // The item's parts take the labels after its own (schema 4).
        const item = label;
        embedding.parts.forEach((part, index) => {
          label++;
          this.stmts.insertPart.run({
            vector_label: label,
            item,
            part: index,
            ...partColumns(part),
            model_id: embedding.modelId,
            vector: vectorToBlob(part.vector),
          });
          if (embedding.modelId === current) {
            added.labels.push(label);
            added.vectors.push(part.vector);
          }
          const staged = embedding.staged?.parts?.[index];
          if (embedding.staged !== undefined && staged !== undefined) {
            this.stmts.putPartStaging.run(
              item,
              index,
              embedding.staged.modelId,
              vectorToBlob(staged),
            );
          }
        });
        partsAdded += embedding.parts.length;
        label++;
      }
      this.stmts.setMeta.run("last_label", String(label - 1));
      return out;
    })();
    if (partsAdded > 0) this.embeddings.partsChanged(partsAdded);
    // Durable from here on; the HNSW index catches up at the next start if this throws.
    const model = this.modelNow();
    if (model !== undefined && model.modelId === added.modelId && added.labels.length > 0) {
      // On the shards' threads; resolves once searches see the new items.
      await this.hnsw.apply(this.hnsw.of(model), (index) => index.add(added.labels, added.vectors));
    }
    return outcomes;
  }

  async deleteById(id: string): Promise<StoredItem | undefined> {
    const row = this.stmts.byId.get(id);
    if (row === undefined) return undefined;
    // The item's vectors: its own label and its parts' (which the delete cascades to).
    const labels = [row.label];
    const deleted = this.db.transaction(() => {
      if (this.embeddings.parts > 0) {
        for (const part of this.stmts.partLabelsOf.all(row.label)) labels.push(part.vector_label);
      }
      return this.stmts.deleteById.get(id) !== undefined;
    })();
    if (!deleted) return undefined;
    if (labels.length > 1) this.embeddings.partsChanged(-(labels.length - 1));
    await this.hnsw.apply(this.hnsw.loaded(), (index) => index.remove(labels));
    if (row.source === "upload") {
      // After the commit: a crash in between leaves an unreferenced file, never a dangling row.
      try {
        this.originals.remove(row.sha256);
      } catch {
        // The item is deleted; a file that cannot be removed is only wasted space.
      }
    }
    return toItem(row);
  }

  async listItems(
    cursor: string | null,
    limit: number,
    order: ItemOrder = "oldest",
  ): Promise<{ items: StoredItem[]; nextCursor: string | null }> {
    if (order === "newest") {
      const before = cursor === null ? Number.MAX_SAFE_INTEGER : decodeCursor(cursor, order);
      return pageOf(this.stmts.pageNewest.all(before, limit + 1).map(toItem), limit, order);
    }
    const after = cursor === null ? 0 : decodeCursor(cursor);
    return pageOf(this.stmts.page.all(after, limit + 1).map(toItem), limit);
  }

  async itemsAfter(label: number, limit: number): Promise<StoredItem[]> {
    return this.stmts.page.all(label, limit).map(toItem);
  }

  /** Every vector of the model, items' then parts', in label order (exact search scans these). */
  iterateEmbeddings(modelId: string): IterableIterator<EmbeddingRow> {
    return this.embeddings.iterate(modelId);
  }

  async embeddingsOf(modelId: string, labels: readonly number[]): Promise<EmbeddingRow[]> {
    return this.embeddings.embeddingsFor(modelId, labels);
  }

  async partsOf(modelId: string, labels: readonly number[]): Promise<Map<number, StoredPart[]>> {
    const out = new Map<number, StoredPart[]>();
    if (this.embeddings.parts === 0) return out;
    for (const row of this.stmts.partsOf.all(modelId, JSON.stringify(labels))) {
      let parts = out.get(row.item);
      if (parts === undefined) {
        parts = [];
        out.set(row.item, parts);
      }
      parts.push(storedPart(row, row.part, blobToVector(row.vector)));
    }
    return out;
  }

  checkFilter(filter: Filter): void {
    filterTerms(filter);
  }

  async nearest(query: NearestQuery, modelId: string): Promise<ScoredItem[]> {
    return this.search.nearest(query, modelId);
  }

  async keywordSearch(query: KeywordQuery): Promise<ScoredItem[]> {
    return this.search.keyword(query);
  }

  /** Loads (or builds) the HNSW index of the stored model now rather than at the first search. */
  async prepare(): Promise<void> {
    const model = this.modelNow();
    if (model !== undefined) await this.hnsw.ready(model);
  }

  async gallerySeeded(): Promise<boolean> {
    // Data directories seeded before the fact moved into the database have the marker file.
    return (
      this.stmts.getMeta.get(GALLERY_SEEDED_KEY) !== undefined ||
      existsSync(path.join(this.options.dataDir, LEGACY_GALLERY_MARKER))
    );
  }

  async markGallerySeeded(note: string): Promise<void> {
    this.stmts.setMeta.run(GALLERY_SEEDED_KEY, note);
  }

  async clearStaging(): Promise<void> {
    this.staging.clear();
  }

  async putStaging(rows: readonly StagedRow[], modelId: string): Promise<void> {
    this.staging.put(rows, modelId);
  }

  async swapStaging(info: ModelInfo, options: SwapOptions = {}): Promise<void> {
    this.staging.swap(info, options);
    // Parts left without an embedding of the model were dropped.
    this.embeddings.partsChanged();
    await this.hnsw.rebuild(info);
  }

  async unstagedAfter(modelId: string, label: number, limit: number): Promise<StoredItem[]> {
    return this.staging.unstagedAfter(modelId, label, limit);
  }

  async countStaging(modelId: string): Promise<number> {
    return this.staging.count(modelId);
  }

  async reindexTarget(): Promise<ReindexTarget | undefined> {
    return this.staging.reindexTarget();
  }

  async setReindexTarget(
    target: ReindexTarget | undefined,
    expected?: ReindexTarget | null,
  ): Promise<boolean> {
    return this.staging.setReindexTarget(target, expected);
  }

  async indexStats(): Promise<VectorIndexStats> {
    const index = this.hnsw.loaded();
    // What a 10-result search uses now: each shard sizes its list by its own graph.
    const shardSize = (index?.size ?? 0) / Math.max(1, this.options.hnswShards ?? 1);
    const efSearch = efSearchFor(10, shardSize, this.options.efSearch);
    return hnswStats({ ...this.options, efSearch }, index?.capacity ?? 0, index?.size ?? 0);
  }

  health(): StoreHealth {
    return { available: this.db.open, indexSaveFailures: this.hnsw.saveFailures };
  }

  async flush(): Promise<void> {
    await this.hnsw.saveIfDirty();
  }

  async close(): Promise<void> {
    if (this.saveTimer !== undefined) clearInterval(this.saveTimer);
    if (!this.db.open) return;
    try {
      await this.readers.close();
      await this.hnsw.close();
    } finally {
      this.db.close();
    }
  }
}
