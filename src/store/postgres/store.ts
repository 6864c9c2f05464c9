/**
 * The Postgres + pgvector backend: every node and worker shares one database, so what one
 * commits all see at once and nothing lives only in a process. An item, its embedding and
 * its original bytes are one row each in one transaction. Vectors are stored in full (fp32
 * `vector`) and searched through an HNSW index on a cast of the column: `halfvec` by default
 * (half the index memory, recall measured equal; see docs/scaling.md) or `vector`.
 *
 * The database holds one model's embeddings at a time (the `meta` table names it); a reindex
 * stages the new embeddings beside the live ones and swaps them in one transaction.
 *
 * Writes and the reads that decide a write go to the primary; searches, item pages, originals and
 * embeddings may go to streaming replicas, under the rule of ./replicas.ts.
 *
 * This module connects, migrates and keeps the items; searches are ./search.ts, the reindex
 * ./staging.ts, the HNSW index ./hnsw-index.ts, filters as SQL ./filter-sql.ts, replicas
 * ./replicas.ts.
 */

import type pg from "pg";
import { AppError } from "../../core/errors.ts";
import { DEFAULT_SETTINGS } from "../../core/settings.ts";
import type { Filter, ItemOrder } from "../../core/types.ts";
import { hnswStats, type LiveEmbedding, liveEmbedding, requireModel } from "../common.ts";
import { decodeCursor, EXACT_FILTER_LIMIT, filterTerms, pageOf } from "../filter.ts";
import { ITEM_COLUMNS } from "../item-row.ts";
import { type PartColumns, partColumns, storedPart } from "../parts.ts";
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
import { Db, type Reads } from "./db.ts";
import { configurationError, isConnectionError, redactUrl } from "./errors.ts";
import { ensureIndex, type HnswIndexSettings, indexMatches } from "./hnsw-index.ts";
import { PostgresJobs } from "./jobs.ts";
import { writeModel } from "./meta.ts";
import { ReplicaReads, serverName } from "./replicas.ts";
import { type ItemRow, parseVector, toItem, vectorParam } from "./rows.ts";
import { migrate } from "./schema.ts";
import { PostgresSearch } from "./search.ts";
import { PostgresStaging } from "./staging.ts";

export interface PostgresStoreOptions extends IndexParameters, HnswIndexSettings {
  url: string;
  /** Streaming replicas that may serve searches and item reads (./replicas.ts). */
  readUrls?: readonly string[];
  /** How stale a replica's answer may be, at most (ms; see ./replicas.ts). */
  readMaxLagMs?: number;
  poolSize?: number;
  connectTimeoutMs?: number;
  /** Filtered searches with at most this many matching items scan them exactly (default
   * EXACT_FILTER_LIMIT; the filtered-recall bench sets 0 to measure the index alone). */
  exactFilterLimit?: number;
  /** Candidates per result re-ranked by the full vectors with a halfvec index (bench:scale
   * sets 1 to measure without the re-rank; default RERANK_FACTOR). */
  rerankFactor?: number;
  /** Each search in a transaction of its own with SET LOCAL settings, as before they were
   * session settings (bench:scale compares the two; default false). */
  transactionPerSearch?: boolean;
}

const ITEMS_AFTER = `SELECT ${ITEM_COLUMNS} FROM longclip.items WHERE label > $1 ORDER BY label LIMIT $2`;
const ITEMS_BEFORE = `SELECT ${ITEM_COLUMNS} FROM longclip.items WHERE label < $1 ORDER BY label DESC LIMIT $2`;

/** Throws invalid_database_url unless `url` is a postgres:// URL; `flag` names where it came from. */
function checkUrl(url: string, flag: string): void {
  let protocol: string | undefined;
  try {
    protocol = new URL(url).protocol;
  } catch {}
  if (protocol !== "postgres:" && protocol !== "postgresql:") {
    throw new AppError(
      "invalid_database_url",
      `${flag} must be a URL like postgres://user:password@host:5432/dbname.`,
    );
  }
}

export class PostgresStore implements ItemStore {
  readonly backend = "postgres";
  readonly shared = true;
  readonly jobs: PostgresJobs;
  private readonly db: Db;
  /** Where searches and item reads go: replicas in front of the primary, or the primary. */
  private readonly reads: Reads;
  private readonly replicas: ReplicaReads | undefined;
  private readonly search: PostgresSearch;
  private readonly staging: PostgresStaging;
  private initialized: Promise<void> | undefined;
  /** The model last read; searches use it for the index's dimension (libraries re-read it). */
  private knownModel: ModelInfo | undefined;

  private constructor(private readonly options: PostgresStoreOptions) {
    const readUrls = options.readUrls ?? [];
    const poolSize = options.poolSize ?? 10;
    const connectTimeoutMs = options.connectTimeoutMs ?? 5_000;
    this.db = new Db({
      url: options.url,
      poolSize,
      connectTimeoutMs,
      trackWrites: readUrls.length > 0,
    });
    this.replicas =
      readUrls.length === 0
        ? undefined
        : new ReplicaReads(this.db, serverName(options.url), {
            urls: readUrls,
            maxLagMs: options.readMaxLagMs ?? DEFAULT_SETTINGS.databaseReadMaxLagMs,
            poolSize,
            connectTimeoutMs,
          });
    this.reads = this.replicas ?? this.db;
    const ready = () => this.ready();
    this.jobs = new PostgresJobs(this.db, ready);
    this.search = new PostgresSearch(this.reads, ready, {
      ...options,
      exactFilterLimit: options.exactFilterLimit ?? EXACT_FILTER_LIMIT,
    });
    this.staging = new PostgresStaging(this.db, ready, options);
  }

  /**
   * Connects and migrates. A database that refuses this node (credentials, missing database
   * or extension, newer schema) is a start-up error; one that cannot be reached yet is not:
   * the store is returned and retries on every call until the database answers.
   */
  static async open(options: PostgresStoreOptions): Promise<PostgresStore> {
    checkUrl(options.url, "--database-url (LONGCLIP_DATABASE_URL)");
    for (const url of options.readUrls ?? []) {
      checkUrl(url, "--database-read-url (LONGCLIP_DATABASE_READ_URL)");
    }
    const shown = redactUrl(options.url);
    const store = new PostgresStore(options);
    store.replicas?.start();
    try {
      await store.ready();
    } catch (error) {
      if (!isConnectionError(error)) {
        await store.close();
        throw configurationError(error, shown) ?? error;
      }
    }
    return store;
  }

  /**
   * Migrates once per process; a failed attempt is retried by the next call. With replicas, the
   * schema counts as this node's write: none serves it a read before it has the schema.
   */
  private ready(): Promise<void> {
    this.initialized ??= this.db
      .withClient(migrate)
      .then(() => (this.replicas === undefined ? undefined : this.db.noteWalPosition()))
      .catch((error: unknown) => {
        this.initialized = undefined;
        throw error;
      });
    return this.initialized;
  }

  /** A read that a replica may serve (`accept` false: the primary answers instead). */
  private async read<R extends pg.QueryResultRow>(
    sql: string,
    params: unknown[],
    accept?: (result: pg.QueryResult<R>) => boolean,
  ) {
    await this.ready();
    return this.reads.query<R>(sql, params, accept);
  }

  private async query<R extends pg.QueryResultRow>(sql: string, params: unknown[] = []) {
    await this.ready();
    return this.db.query<R>(sql, params);
  }

  private async transaction<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    await this.ready();
    return this.db.transaction(work);
  }

  async model(): Promise<ModelInfo | undefined> {
    const rows = await this.query<{ key: string; value: string }>(
      "SELECT key, value FROM longclip.meta WHERE key IN ('model_id', 'dims', 'model_dir')",
    );
    const meta = new Map(rows.rows.map((row) => [row.key, row.value]));
    const modelId = meta.get("model_id");
    const dims = meta.get("dims");
    const modelDir = meta.get("model_dir");
    this.knownModel =
      modelId === undefined || dims === undefined
        ? undefined
        : { modelId, dims: Number(dims), ...(modelDir === undefined ? {} : { modelDir }) };
    return this.knownModel;
  }

  async setModel(info: ModelInfo): Promise<void> {
    await this.transaction(async (client) => {
      await client.query("LOCK TABLE longclip.meta IN EXCLUSIVE MODE");
      // Inserts read the model row FOR SHARE: none commits between this check and the change.
      const other = await client.query<{ model_id: string }>(
        "SELECT model_id FROM longclip.items WHERE model_id <> $1 LIMIT 1",
        [info.modelId],
      );
      const stored = other.rows[0]?.model_id;
      if (stored !== undefined) throw holdsAnotherModel(stored, info.modelId);
      await writeModel(client, info);
      await ensureIndex(client, this.options, info.dims);
    });
    this.knownModel = info;
  }

  async count(): Promise<number> {
    const result = await this.query<{ n: number }>(
      "SELECT count(*)::bigint AS n FROM longclip.items",
    );
    return result.rows[0]?.n ?? 0;
  }

  async countEmbeddings(modelId: string): Promise<number> {
    const result = await this.query<{ n: number }>(
      "SELECT count(*)::bigint AS n FROM longclip.items WHERE model_id = $1",
      [modelId],
    );
    return result.rows[0]?.n ?? 0;
  }

  async getById(id: string): Promise<StoredItem | undefined> {
    const result = await this.query<ItemRow>(
      `SELECT ${ITEM_COLUMNS} FROM longclip.items WHERE id = $1`,
      [id],
    );
    const row = result.rows[0];
    return row === undefined ? undefined : toItem(row);
  }

  async getBySha(sha256: string): Promise<StoredItem | undefined> {
    const result = await this.query<ItemRow>(
      `SELECT ${ITEM_COLUMNS} FROM longclip.items WHERE sha256 = $1`,
      [sha256],
    );
    const row = result.rows[0];
    return row === undefined ? undefined : toItem(row);
  }

  async findContent(sha256: string, id: string): Promise<ContentMatch> {
    // One statement, one snapshot.
    const result = await this.query<ItemRow>(
      `SELECT ${ITEM_COLUMNS} FROM longclip.items WHERE sha256 = $1 OR id = $2`,
      [sha256, id],
    );
    const rows = result.rows.map(toItem);
    return {
      existing: rows.find((item) => item.sha256 === sha256),
      idTaken: rows.some((item) => item.id === id),
    };
  }

  /** Originals travel with their item's insert: nothing to do ahead of it. */
  async stageOriginal(): Promise<void> {}

  async readOriginal(sha256: string): Promise<Buffer> {
    const result = await this.read<{ bytes: Buffer }>(
      "SELECT bytes FROM longclip.originals WHERE sha256 = $1",
      [sha256],
      (found) => found.rows.length > 0,
    );
    const row = result.rows[0];
    if (row === undefined) throw new Error(`no stored original ${sha256}`);
    return row.bytes;
  }

  async insertItems(entries: readonly NewItem[], modelId: string): Promise<InsertOutcome[]> {
    if (entries.length === 0) return [];
    // In content-hash order: nodes inserting overlapping batches take the unique-index entries
    // in one order, so they wait for each other instead of deadlocking.
    const order = entries
      .map((_, k) => k)
      .sort((a, b) => compareText(entries[a]?.sha256 ?? "", entries[b]?.sha256 ?? ""));
    return this.transaction(async (client) => {
      // The live model, under a row lock that a switch or a model change (which rewrite it
      // under an exclusive table lock) waits for: no embedding of a replaced model gets in.
      const row = await client.query<{ value: string }>(
        "SELECT value FROM longclip.meta WHERE key = 'model_id' FOR SHARE",
      );
      const current = row.rows[0]?.value;
      const outcomes = new Array<InsertOutcome>(entries.length);
      for (const k of order) {
        outcomes[k] = await this.insertOne(client, entries[k] as NewItem, modelId, current);
      }
      return outcomes;
    });
  }

  /**
   * One item in the caller's transaction. The unique constraints decide, not an earlier read:
   * ON CONFLICT DO NOTHING waits for a concurrent insert of the same hash or id (another node)
   * to commit or roll back, then skips; one statement then says who holds the hash or the id.
   */
  private async insertOne(
    client: pg.PoolClient,
    entry: NewItem,
    modelId: string,
    current: string | undefined,
  ): Promise<InsertOutcome> {
    const live = liveEmbedding(entry, modelId, current);
    for (let attempt = 1; ; attempt++) {
      const inserted = await client.query<{ label: number }>(
        `INSERT INTO longclip.items (id, sha256, metadata, content_type, width, height, bytes, source, path, model_id, embedding)
         VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7, $8, $9, $10, $11::vector)
         ON CONFLICT DO NOTHING RETURNING label`,
        [
          entry.id,
          entry.sha256,
          JSON.stringify(entry.metadata),
          entry.contentType,
          entry.width,
          entry.height,
          entry.bytes,
          entry.source,
          entry.path ?? null,
          live.modelId,
          vectorParam(live.vector),
        ],
      );
      const label = inserted.rows[0]?.label;
      if (label !== undefined) {
        if (live.staged !== undefined) {
          await client.query(
            "INSERT INTO longclip.embeddings_staging (label, model_id, embedding) VALUES ($1, $2, $3::vector)",
            [label, live.staged.modelId, vectorParam(live.staged.vector)],
          );
        }
        if (live.parts.length > 0) await insertParts(client, label, live);
        if (entry.original !== undefined) {
          await client.query(
            "INSERT INTO longclip.originals (sha256, bytes) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            [entry.sha256, entry.original],
          );
        }
        return { status: "inserted", label };
      }
      const held = await client.query<{ id: string; sha256: string }>(
        "SELECT id, sha256 FROM longclip.items WHERE sha256 = $1 OR id = $2",
        [entry.sha256, entry.id],
      );
      const same = held.rows.find((r) => r.sha256 === entry.sha256);
      if (same !== undefined) return { status: "duplicate", id: same.id };
      if (held.rows.length > 0) return { status: "id_conflict" };
      // The row that stopped the insert was deleted since: the hash and id are free again.
      if (attempt >= 5) throw new Error(`inserting ${entry.id} kept meeting deleted rows`);
    }
  }

  async deleteById(id: string): Promise<StoredItem | undefined> {
    return this.transaction(async (client) => {
      const result = await client.query<ItemRow>(
        `DELETE FROM longclip.items WHERE id = $1 RETURNING ${ITEM_COLUMNS}`,
        [id],
      );
      const row = result.rows[0];
      if (row === undefined) return undefined;
      await client.query("DELETE FROM longclip.originals WHERE sha256 = $1", [row.sha256]);
      return toItem(row);
    });
  }

  async listItems(
    cursor: string | null,
    limit: number,
    order: ItemOrder = "oldest",
  ): Promise<{ items: StoredItem[]; nextCursor: string | null }> {
    if (order === "newest") {
      const before = cursor === null ? Number.MAX_SAFE_INTEGER : decodeCursor(cursor, order);
      const result = await this.read<ItemRow>(ITEMS_BEFORE, [before, limit + 1]);
      return pageOf(result.rows.map(toItem), limit, order);
    }
    const after = cursor === null ? 0 : decodeCursor(cursor);
    const result = await this.read<ItemRow>(ITEMS_AFTER, [after, limit + 1]);
    return pageOf(result.rows.map(toItem), limit);
  }

  async itemsAfter(label: number, limit: number): Promise<StoredItem[]> {
    const result = await this.query<ItemRow>(ITEMS_AFTER, [label, limit]);
    return result.rows.map(toItem);
  }

  async partsOf(modelId: string, labels: readonly number[]): Promise<Map<number, StoredPart[]>> {
    const result = await this.read<PartColumns & { item: number; part: number; embedding: string }>(
      `SELECT item, part, kind, box_x, box_y, box_width, box_height, t, embedding::text AS embedding
       FROM longclip.item_parts WHERE model_id = $1 AND item = ANY($2::bigint[]) ORDER BY item, part`,
      [modelId, labels],
    );
    const out = new Map<number, StoredPart[]>();
    for (const row of result.rows) {
      const item = Number(row.item);
      let parts = out.get(item);
      if (parts === undefined) {
        parts = [];
        out.set(item, parts);
      }
      parts.push(storedPart(row, row.part, parseVector(row.embedding)));
    }
    return out;
  }

  async embeddingsOf(modelId: string, labels: readonly number[]): Promise<EmbeddingRow[]> {
    const result = await this.read<{ label: number; embedding: string }>(
      "SELECT label, embedding::text AS embedding FROM longclip.items WHERE model_id = $1 AND label = ANY($2::bigint[]) ORDER BY label",
      [modelId, labels],
      (found) => found.rows.length >= new Set(labels).size,
    );
    return result.rows.map((row) => ({ label: row.label, vector: parseVector(row.embedding) }));
  }

  checkFilter(filter: Filter): void {
    filterTerms(filter);
  }

  async nearest(query: NearestQuery, modelId: string): Promise<ScoredItem[]> {
    const known = this.knownModel?.modelId === modelId ? this.knownModel : await this.model();
    return this.search.nearest(query, requireModel("database", known, modelId));
  }

  async keywordSearch(query: KeywordQuery): Promise<ScoredItem[]> {
    return this.search.keyword(query);
  }

  /**
   * Makes sure the HNSW index matches this node's settings (type, M, efConstruction): a
   * changed setting rebuilds it once, here. Every node should run with the same settings.
   */
  async prepare(): Promise<void> {
    const model = await this.model();
    if (model === undefined) return;
    // A start that finds the index as wanted (nearly all) takes no lock: the exclusive lock
    // waits for every insert in flight, a CPU-starved node's included, and every later insert
    // of every node queues behind it (a lock wait of 86 s in the stress test, issue 25).
    const { options } = this;
    if (await this.transaction((client) => indexMatches(client, options, model.dims))) return;
    await this.transaction(async (client) => {
      await client.query("LOCK TABLE longclip.meta IN EXCLUSIVE MODE");
      await ensureIndex(client, this.options, model.dims);
    });
  }

  async gallerySeeded(): Promise<boolean> {
    const result = await this.query("SELECT 1 FROM longclip.meta WHERE key = 'gallery_seeded'");
    return result.rows.length > 0;
  }

  async markGallerySeeded(note: string): Promise<void> {
    await this.query(
      "INSERT INTO longclip.meta (key, value) VALUES ('gallery_seeded', $1) ON CONFLICT (key) DO NOTHING",
      [note],
    );
  }

  async clearStaging(): Promise<void> {
    await this.staging.clear();
  }

  async putStaging(rows: readonly StagedRow[], modelId: string): Promise<void> {
    await this.staging.put(rows, modelId);
  }

  async swapStaging(info: ModelInfo, options: SwapOptions = {}): Promise<void> {
    await this.staging.swap(info, options);
    this.knownModel = info;
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
    const model = await this.model();
    let size = 0;
    if (model !== undefined) {
      const result = await this.query<{ n: number }>(
        `SELECT (SELECT count(*) FROM longclip.items WHERE model_id = $1)
           + (SELECT count(*) FROM longclip.item_parts WHERE model_id = $1) AS n`,
        [model.modelId],
      );
      size = Number(result.rows[0]?.n ?? 0);
    }
    // The database's indexes hold every row: as many slots as vectors.
    const efSearch = await this.search.efSearch(10);
    return hnswStats({ ...this.options, efSearch }, size, size);
  }

  health(): StoreHealth {
    const health = this.db.health();
    const servers = this.replicas?.servers() ?? [
      {
        name: serverName(this.options.url),
        role: "primary" as const,
        state: health.available ? ("up" as const) : ("down" as const),
        ...(health.reason === undefined ? {} : { reason: health.reason }),
      },
    ];
    return { ...health, servers };
  }

  async flush(): Promise<void> {}

  async close(): Promise<void> {
    await this.replicas?.close();
    await this.db.close();
  }
}

/**
 * An inserted item's parts (and their staged embeddings) in two statements, whatever their
 * number: one row per part from arrays.
 */
async function insertParts(client: pg.PoolClient, label: number, live: LiveEmbedding) {
  const columns = live.parts.map(partColumns);
  await client.query(
    `INSERT INTO longclip.item_parts (item, part, kind, box_x, box_y, box_width, box_height, t, model_id, embedding)
     SELECT $1, p.part - 1, p.kind, p.box_x, p.box_y, p.box_width, p.box_height, p.t, $2, p.embedding::vector
     FROM unnest($3::text[], $4::float8[], $5::float8[], $6::float8[], $7::float8[], $8::float8[], $9::text[])
       WITH ORDINALITY AS p (kind, box_x, box_y, box_width, box_height, t, embedding, part)`,
    [
      label,
      live.modelId,
      columns.map((c) => c.kind),
      columns.map((c) => c.box_x),
      columns.map((c) => c.box_y),
      columns.map((c) => c.box_width),
      columns.map((c) => c.box_height),
      columns.map((c) => c.t),
      live.parts.map((part) => vectorParam(part.vector)),
    ],
  );
  const staged = live.staged?.parts;
  if (live.staged !== undefined && staged !== undefined && staged.length > 0) {
    await client.query(
      `INSERT INTO longclip.item_parts_staging (item, part, model_id, embedding)
       SELECT $1, p.part - 1, $2, p.embedding::vector
       FROM unnest($3::text[]) WITH ORDINALITY AS p (embedding, part)`,
      [label, live.staged.modelId, staged.map(vectorParam)],
    );
  }
}

function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
