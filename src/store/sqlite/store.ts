/**
 * The embedded backend: SQLite is the source of truth for items, their metadata and
 * embeddings, and the model they were embedded with; uploaded originals are files under
 * dataDir/originals; the HNSW index (./hnsw-cache.ts) is derived from SQLite and can always be
 * rebuilt.
 *
 * Durability: WAL with `synchronous = FULL`. Every commit fsyncs the WAL before it returns,
 * so an item acknowledged as indexed survives `kill -9` and also a power loss or OS crash
 * (NORMAL would survive a process kill but could lose the last commits on power loss). The
 * cost is one fsync per transaction; the ingest pipeline commits a whole batch in one.
 *
 * better-sqlite3 is synchronous: the methods are async only to fit the seam.
 */
import { mkdirSync } from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import type { Metadata } from "../../library/types.ts";
import { exactSearch } from "../../vector-index/exact.ts";
import type { Neighbour } from "../../vector-index/hnsw.ts";
import { decodeCursor, EXACT_FILTER_LIMIT, filterTerms, isoDateMs, pageOf } from "../filter.ts";
import { ITEM_COLUMNS, type ItemRow as Row, rowToItem } from "../item-row.ts";
import { parseReindexTarget, REINDEX_KEY, reindexIncomplete } from "../reindex-target.ts";
import type {
  EmbeddingRow,
  Filter,
  FilterValue,
  IndexParameters,
  InsertOutcome,
  ItemStore,
  KeywordQuery,
  ModelInfo,
  NearestQuery,
  NewItem,
  ReindexTarget,
  ScoredItem,
  StoredItem,
  StoreHealth,
  SwapOptions,
  VectorIndexStats,
} from "../types.ts";
import { HnswCache } from "./hnsw-cache.ts";
import { SqliteJobs } from "./jobs.ts";
import { Originals } from "./originals.ts";
import { migrate } from "./schema.ts";

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
}

type ItemRow = Row<string, string>;

function toItem(row: ItemRow): StoredItem {
  return rowToItem(
    row,
    (value) => JSON.parse(value) as Metadata,
    (value) => value,
  );
}

/** Float32 vector → BLOB (little-endian, as stored). */
export function vectorToBlob(vector: Float32Array): Buffer {
  return Buffer.from(vector.buffer, vector.byteOffset, vector.byteLength);
}

/** BLOB → Float32 vector: a view when the bytes are 4-byte aligned (better-sqlite3 gives each
 * BLOB its own buffer), otherwise an aligned copy. */
export function blobToVector(blob: Buffer): Float32Array {
  if (blob.byteOffset % 4 === 0) {
    return new Float32Array(blob.buffer, blob.byteOffset, blob.byteLength / 4);
  }
  const out = new Float32Array(blob.byteLength / 4);
  new Uint8Array(out.buffer).set(blob);
  return out;
}

/** SQL function (registered per connection): epoch ms of an ISO-8601 date string, else NULL. */
const ISO_MS_FUNCTION = "longclip_iso_ms";

const RANGE_SQL = { gt: ">", gte: ">=", lt: "<", lte: "<=" } as const;

/** Equality of the value at `jsonPath` and `value`, JSON types kept apart; always 0 or 1. */
function equalsSql(jsonPath: string, value: FilterValue): { sql: string; params: unknown[] } {
  if (value === null) {
    return { sql: "coalesce(json_type(metadata, ?) = 'null', 0)", params: [jsonPath] };
  }
  if (typeof value === "boolean") {
    return { sql: "coalesce(json_type(metadata, ?) = ?, 0)", params: [jsonPath, String(value)] };
  }
  const types = typeof value === "number" ? "('integer', 'real')" : "('text')";
  return {
    sql: `coalesce(json_type(metadata, ?) IN ${types} AND json_extract(metadata, ?) = ?, 0)`,
    params: [jsonPath, jsonPath, value],
  };
}

function anyOfSql(jsonPath: string, values: readonly FilterValue[]) {
  if (values.length === 0) return { sql: "0", params: [] };
  const parts = values.map((value) => equalsSql(jsonPath, value));
  return {
    sql: `(${parts.map((p) => p.sql).join(" OR ")})`,
    params: parts.flatMap((p) => p.params),
  };
}

/** A filter as an SQL condition over `items.metadata` (see ../filter.ts for the semantics). */
export function filterToSql(filter: Filter): { where: string; params: unknown[] } {
  const clauses: string[] = [];
  const params: unknown[] = [];
  for (const term of filterTerms(filter)) {
    const jsonPath = `$${term.path.map((key) => `."${key}"`).join("")}`;
    let clause: { sql: string; params: unknown[] };
    switch (term.op) {
      case "eq":
        clause = equalsSql(jsonPath, term.value);
        break;
      case "ne": {
        const eq = equalsSql(jsonPath, term.value);
        clause = { sql: `NOT ${eq.sql}`, params: eq.params };
        break;
      }
      case "in":
        clause = anyOfSql(jsonPath, term.values);
        break;
      case "nin": {
        const any = anyOfSql(jsonPath, term.values);
        clause = { sql: `NOT ${any.sql}`, params: any.params };
        break;
      }
      case "exists":
        clause = {
          sql: `json_type(metadata, ?) IS ${term.value ? "NOT NULL" : "NULL"}`,
          params: [jsonPath],
        };
        break;
      default: {
        const op = RANGE_SQL[term.op];
        clause =
          term.bound.kind === "number"
            ? {
                sql: `coalesce(json_type(metadata, ?) IN ('integer', 'real') AND json_extract(metadata, ?) ${op} ?, 0)`,
                params: [jsonPath, jsonPath, term.bound.value],
              }
            : {
                sql: `coalesce(${ISO_MS_FUNCTION}(json_extract(metadata, ?)) ${op} ?, 0)`,
                params: [jsonPath, term.bound.ms],
              };
      }
    }
    clauses.push(clause.sql);
    params.push(...clause.params);
  }
  return { where: clauses.length > 0 ? clauses.join(" AND ") : "1", params };
}

function prepareStatements(db: Database.Database) {
  return {
    getMeta: db.prepare<[string], { value: string }>("SELECT value FROM meta WHERE key = ?"),
    setMeta: db.prepare<[string, string]>(
      "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    ),
    count: db.prepare<[], { n: number }>("SELECT count(*) AS n FROM items"),
    countEmbeddings: db.prepare<[string], { n: number }>(
      "SELECT count(*) AS n FROM embeddings WHERE model_id = ?",
    ),
    maxLabel: db.prepare<[], { m: number | null }>("SELECT max(label) AS m FROM items"),
    byId: db.prepare<[string], ItemRow>(`SELECT ${ITEM_COLUMNS} FROM items WHERE id = ?`),
    bySha: db.prepare<[string], ItemRow>(`SELECT ${ITEM_COLUMNS} FROM items WHERE sha256 = ?`),
    byLabels: db.prepare<[string], ItemRow>(
      `SELECT ${ITEM_COLUMNS} FROM items WHERE label IN (SELECT value FROM json_each(?))`,
    ),
    insertItem: db.prepare(
      `INSERT INTO items (${ITEM_COLUMNS}) VALUES (@id, @label, @sha256, @metadata, @content_type, @width, @height, @bytes, @source, @path, @created_at)`,
    ),
    insertEmbedding: db.prepare<[number, string, Buffer]>(
      "INSERT INTO embeddings (label, model_id, vector) VALUES (?, ?, ?)",
    ),
    deleteById: db.prepare<[string], { label: number }>(
      "DELETE FROM items WHERE id = ? RETURNING label",
    ),
    page: db.prepare<[number, number], ItemRow>(
      `SELECT ${ITEM_COLUMNS} FROM items WHERE label > ? ORDER BY label LIMIT ?`,
    ),
    embeddingsRaw: db
      .prepare<[string], [number, Buffer]>(
        "SELECT label, vector FROM embeddings WHERE model_id = ? ORDER BY label",
      )
      .raw(true),
    embeddingLabels: db.prepare<[string], { label: number }>(
      "SELECT label FROM embeddings WHERE model_id = ?",
    ),
    embeddingsFor: db.prepare<[string, string], { label: number; vector: Buffer }>(
      "SELECT label, vector FROM embeddings WHERE model_id = ? AND label IN (SELECT value FROM json_each(?))",
    ),
    clearStaging: db.prepare("DELETE FROM embeddings_staging"),
    deleteMeta: db.prepare<[string]>("DELETE FROM meta WHERE key = ?"),
    countStaging: db.prepare<[string], { n: number }>(
      "SELECT count(*) AS n FROM embeddings_staging WHERE model_id = ?",
    ),
    unstagedAfter: db.prepare<[number, string, number], ItemRow>(
      `SELECT ${ITEM_COLUMNS} FROM items i WHERE label > ? AND NOT EXISTS
        (SELECT 1 FROM embeddings_staging s WHERE s.label = i.label AND s.model_id = ?)
       ORDER BY label LIMIT ?`,
    ),
    countUnstaged: db.prepare<[string, string], { n: number }>(
      `SELECT count(*) AS n FROM items i WHERE NOT EXISTS
        (SELECT 1 FROM embeddings_staging s WHERE s.label = i.label AND s.model_id = ?)
       AND label NOT IN (SELECT value FROM json_each(?))`,
    ),
    putStaging: db.prepare<[number, string, Buffer]>(
      "INSERT OR REPLACE INTO embeddings_staging (label, model_id, vector) VALUES (?, ?, ?)",
    ),
  };
}

type Statements = ReturnType<typeof prepareStatements>;

export class SqliteStore implements ItemStore {
  readonly backend = "sqlite";
  readonly db: Database.Database;
  readonly jobs: SqliteJobs;
  private readonly stmts: Statements;
  private readonly originals: Originals;
  private readonly hnsw: HnswCache;
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
    this.db.function(
      ISO_MS_FUNCTION,
      { deterministic: true },
      (value: unknown) => isoDateMs(value) ?? null,
    );
    this.stmts = prepareStatements(this.db);
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
      {
        countEmbeddings: (modelId) => this.countEmbeddingsNow(modelId),
        embeddingLabels: (modelId) => this.embeddingLabels(modelId),
        embeddingsFor: (modelId, labels) => this.embeddingsFor(modelId, labels),
      },
      report,
    );
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
    if (modelId === undefined || dims === undefined) return undefined;
    return { modelId, dims: Number(dims) };
  }

  async setModel(info: ModelInfo): Promise<void> {
    this.db.transaction(() => {
      this.stmts.setMeta.run("model_id", info.modelId);
      this.stmts.setMeta.run("dims", String(info.dims));
    })();
  }

  async count(): Promise<number> {
    return this.stmts.count.get()?.n ?? 0;
  }

  async countEmbeddings(modelId: string): Promise<number> {
    return this.countEmbeddingsNow(modelId);
  }

  private countEmbeddingsNow(modelId: string): number {
    return this.stmts.countEmbeddings.get(modelId)?.n ?? 0;
  }

  async getById(id: string): Promise<StoredItem | undefined> {
    const row = this.stmts.byId.get(id);
    return row === undefined ? undefined : toItem(row);
  }

  async getBySha(sha256: string): Promise<StoredItem | undefined> {
    const row = this.stmts.bySha.get(sha256);
    return row === undefined ? undefined : toItem(row);
  }

  private getByLabels(labels: readonly number[]): Map<number, StoredItem> {
    const out = new Map<number, StoredItem>();
    if (labels.length === 0) return out;
    for (const row of this.stmts.byLabels.all(JSON.stringify(labels))) {
      out.set(row.label, toItem(row));
    }
    return out;
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
    let liveModel = modelId;
    const outcomes = this.db.transaction(() => {
      // Blue/green: if the store switched to the staged model meanwhile, that one is live.
      const current = this.modelNow()?.modelId;
      const switched = (entry: NewItem) =>
        entry.staged !== undefined && entry.staged.modelId === current && current !== modelId;
      if (entries.some(switched)) liveModel = current as string;
      let label = this.nextLabel();
      const createdAt = new Date().toISOString();
      const out: InsertOutcome[] = [];
      for (const entry of entries) {
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
        if (switched(entry) && entry.staged !== undefined) {
          this.stmts.insertEmbedding.run(label, liveModel, vectorToBlob(entry.staged.vector));
        } else {
          this.stmts.insertEmbedding.run(label, modelId, vectorToBlob(entry.vector));
          if (entry.staged !== undefined) {
            this.stmts.putStaging.run(
              label,
              entry.staged.modelId,
              vectorToBlob(entry.staged.vector),
            );
          }
        }
        out.push({ status: "inserted", label });
        label++;
      }
      this.stmts.setMeta.run("last_label", String(label - 1));
      return out;
    })();
    // Durable from here on; the HNSW index catches up at the next start if this throws.
    const model = this.modelNow();
    if (model?.modelId === liveModel) {
      const labels: number[] = [];
      const vectors: Float32Array[] = [];
      outcomes.forEach((outcome, k) => {
        const entry = entries[k] as NewItem;
        const live = liveModel === modelId ? entry.vector : entry.staged?.vector;
        if (outcome.status === "inserted" && live !== undefined) {
          labels.push(outcome.label);
          vectors.push(live);
        }
      });
      // On the shards' threads; resolves once searches see the new items.
      if (labels.length > 0) {
        await this.hnsw.apply(this.hnsw.of(model), (index) => index.add(labels, vectors));
      }
    }
    return outcomes;
  }

  /** Labels only grow: after the largest ever issued, even if that item was deleted. */
  private nextLabel(): number {
    const last = Number(this.stmts.getMeta.get("last_label")?.value ?? "0");
    const max = this.stmts.maxLabel.get()?.m ?? 0;
    return Math.max(last, max) + 1;
  }

  async deleteById(id: string): Promise<StoredItem | undefined> {
    const row = this.stmts.byId.get(id);
    if (row === undefined) return undefined;
    if (this.stmts.deleteById.get(id) === undefined) return undefined;
    await this.hnsw.apply(this.hnsw.loaded(), (index) => index.remove([row.label]));
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
  ): Promise<{ items: StoredItem[]; nextCursor: string | null }> {
    const after = cursor === null ? 0 : decodeCursor(cursor);
    return pageOf(this.stmts.page.all(after, limit + 1).map(toItem), limit);
  }

  async itemsAfter(label: number, limit: number): Promise<StoredItem[]> {
    return this.stmts.page.all(label, limit).map(toItem);
  }

  *iterateEmbeddings(modelId: string): IterableIterator<EmbeddingRow> {
    // Raw rows: a full scan (exact search) spends most of its time creating row objects.
    for (const [label, vector] of this.stmts.embeddingsRaw.iterate(modelId)) {
      yield { label, vector: blobToVector(vector) };
    }
  }

  private embeddingLabels(modelId: string): Set<number> {
    return new Set(this.stmts.embeddingLabels.all(modelId).map((row) => row.label));
  }

  private embeddingsFor(modelId: string, labels: readonly number[]): EmbeddingRow[] {
    return this.stmts.embeddingsFor
      .all(modelId, JSON.stringify(labels))
      .map((row) => ({ label: row.label, vector: blobToVector(row.vector) }));
  }

  async embeddingsOf(modelId: string, labels: readonly number[]): Promise<EmbeddingRow[]> {
    return this.embeddingsFor(modelId, labels);
  }

  checkFilter(filter: Filter): void {
    filterTerms(filter);
  }

  /** Labels of the items whose metadata matches every key of the filter. */
  private labelsMatching(filter: Filter): number[] {
    const { where, params } = filterToSql(filter);
    return this.db
      .prepare(`SELECT label FROM items WHERE ${where}`)
      .pluck()
      .all(...params) as number[];
  }

  async keywordSearch(query: KeywordQuery): Promise<ScoredItem[]> {
    if (query.words.length === 0 || query.fields.length === 0) return [];
    // Each word quoted (FTS5 syntax characters stay literal) and any may match; bm25() is
    // lower for better matches, so its negation summed over an item's fields is the score.
    const match = query.words.map((word) => `"${word.replaceAll('"', '""')}"`).join(" OR ");
    const params: unknown[] = [match, JSON.stringify(query.fields)];
    let restrict = "";
    if (query.filter !== undefined && Object.keys(query.filter).length > 0) {
      const { where, params: filterParams } = filterToSql(query.filter);
      restrict = `AND item_text.label IN (SELECT label FROM items WHERE ${where})`;
      params.push(...filterParams);
    }
    params.push(query.k);
    const rows = this.db
      .prepare<unknown[], { label: number; score: number }>(
        `SELECT item_text.label AS label, sum(-item_text_fts.rank) AS score
         FROM item_text_fts JOIN item_text ON item_text.id = item_text_fts.rowid
         WHERE item_text_fts MATCH ? AND item_text.field IN (SELECT value FROM json_each(?))
         ${restrict}
         GROUP BY item_text.label ORDER BY score DESC, item_text.label LIMIT ?`,
      )
      .all(...params);
    return this.withItems(rows);
  }

  /** Labelled scores with their items, in order (an item deleted meanwhile is left out). */
  private withItems(rows: readonly { label: number; score: number }[]): ScoredItem[] {
    const items = this.getByLabels(rows.map((row) => row.label));
    const out: ScoredItem[] = [];
    for (const row of rows) {
      const item = items.get(row.label);
      if (item !== undefined) out.push({ item, score: row.score });
    }
    return out;
  }

  async nearest(query: NearestQuery, modelId: string): Promise<ScoredItem[]> {
    const { vector, k } = query;
    const model = this.modelNow();
    const index = () => {
      if (model?.modelId !== modelId)
        throw new Error(`the store holds ${model?.modelId}, not ${modelId}`);
      return this.hnsw.ready(model);
    };
    let neighbours: Neighbour[];
    if (query.filter !== undefined && Object.keys(query.filter).length > 0) {
      const labels = this.labelsMatching(query.filter);
      if (query.exact || labels.length <= (this.options.exactFilterLimit ?? EXACT_FILTER_LIMIT)) {
        neighbours = exactSearch(vector, this.embeddingsFor(modelId, labels), k);
      } else {
        neighbours = await (await index()).search(vector, k, labels);
      }
    } else if (query.exact) {
      neighbours = exactSearch(vector, this.iterateEmbeddings(modelId), k);
    } else {
      neighbours = await (await index()).search(vector, k);
    }
    return this.withItems(neighbours);
  }

  /** Loads (or builds) the HNSW index of the stored model now rather than at the first search. */
  async prepare(): Promise<void> {
    const model = this.modelNow();
    if (model !== undefined) await this.hnsw.ready(model);
  }

  async clearStaging(): Promise<void> {
    this.stmts.clearStaging.run();
  }

  async putStaging(rows: readonly EmbeddingRow[], modelId: string): Promise<void> {
    this.db.transaction(() => {
      for (const row of rows)
        this.stmts.putStaging.run(row.label, modelId, vectorToBlob(row.vector));
    })();
  }

  async swapStaging(info: ModelInfo, options: SwapOptions = {}): Promise<void> {
    this.db.transaction(() => {
      const except = options.requireCompleteExcept;
      if (except !== undefined) {
        const missing = this.stmts.countUnstaged.get(info.modelId, JSON.stringify(except))?.n ?? 0;
        if (missing > 0) throw reindexIncomplete(missing);
      }
      this.db
        .prepare(
          "DELETE FROM embeddings WHERE model_id != ? OR label IN (SELECT label FROM embeddings_staging)",
        )
        .run(info.modelId);
      this.db
        .prepare(
          "INSERT INTO embeddings (label, model_id, vector) SELECT label, model_id, vector FROM embeddings_staging WHERE model_id = ?",
        )
        .run(info.modelId);
      this.stmts.clearStaging.run();
      this.stmts.setMeta.run("model_id", info.modelId);
      this.stmts.setMeta.run("dims", String(info.dims));
      this.stmts.deleteMeta.run(REINDEX_KEY);
    })();
    await this.hnsw.rebuild(info);
  }

  async unstagedAfter(modelId: string, label: number, limit: number): Promise<StoredItem[]> {
    return this.stmts.unstagedAfter.all(label, modelId, limit).map(toItem);
  }

  async countStaging(modelId: string): Promise<number> {
    return this.stmts.countStaging.get(modelId)?.n ?? 0;
  }

  async reindexTarget(): Promise<ReindexTarget | undefined> {
    return parseReindexTarget(this.stmts.getMeta.get(REINDEX_KEY)?.value);
  }

  async setReindexTarget(target: ReindexTarget | undefined): Promise<void> {
    if (target === undefined) this.stmts.deleteMeta.run(REINDEX_KEY);
    else this.stmts.setMeta.run(REINDEX_KEY, JSON.stringify(target));
  }

  async indexStats(): Promise<VectorIndexStats> {
    const index = this.hnsw.loaded();
    return {
      type: "hnsw",
      space: "cosine",
      m: this.options.m,
      efConstruction: this.options.efConstruction,
      efSearch: this.options.efSearch,
      capacity: index?.capacity ?? 0,
      size: index?.size ?? 0,
    };
  }

  health(): StoreHealth {
    return { available: this.db.open };
  }

  async flush(): Promise<void> {
    await this.hnsw.saveIfDirty();
  }

  async close(): Promise<void> {
    if (this.saveTimer !== undefined) clearInterval(this.saveTimer);
    if (!this.db.open) return;
    try {
      await this.hnsw.close();
    } finally {
      this.db.close();
    }
  }
}
