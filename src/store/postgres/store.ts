/**
 * The Postgres + pgvector backend: every node and worker shares one database, so what one
 * commits all see at once and nothing lives only in a process. An item, its embedding and
 * its original bytes are one row each in one transaction. Vectors are stored in full (fp32
 * `vector`) and searched through an HNSW index on a cast of the column: `halfvec` by default
 * (half the index memory, recall measured equal; see docs/scaling.md) or `vector`.
 *
 * The database holds one model's embeddings at a time (the `meta` table names it); a reindex
 * stages the new embeddings beside the live ones and swaps them in one transaction.
 */

import type pg from "pg";
import { fromSql, toSql } from "pgvector";
import { AppError } from "../../errors.ts";
import type { Metadata } from "../../library/types.ts";
import { decodeCursor, filterTerms, pageOf } from "../filter.ts";
import { ITEM_COLUMNS, type ItemRow as Row, rowToItem } from "../item-row.ts";
import type {
  EmbeddingRow,
  Filter,
  IndexParameters,
  InsertOutcome,
  ItemStore,
  KeywordQuery,
  ModelInfo,
  NearestQuery,
  NewItem,
  ScoredItem,
  StoredItem,
  StoreHealth,
  VectorIndexStats,
} from "../types.ts";
import { Db, type Queryable } from "./db.ts";
import { configurationError, isConnectionError, redactUrl } from "./errors.ts";
import { PostgresJobs } from "./jobs.ts";
import { migrate } from "./schema.ts";

export type VectorType = "halfvec" | "vector";

export interface PostgresStoreOptions extends IndexParameters {
  url: string;
  /** The type the HNSW index stores: halfvec (2 bytes a dimension) or vector (4). */
  vectorType: VectorType;
  poolSize?: number;
  connectTimeoutMs?: number;
}

type ItemRow = Row<Metadata, Date>;

function toItem(row: ItemRow): StoredItem {
  return rowToItem(
    row,
    (value) => value,
    (value) => value.toISOString(),
  );
}

function vectorParam(vector: Float32Array): string {
  return toSql(Array.from(vector)) as string;
}

function parseVector(text: string): Float32Array {
  return Float32Array.from(fromSql(text) as number[]);
}

/** A filter as jsonb containment terms, one per key (each can use the GIN index). */
function filterToSql(filter: Filter, firstParam: number): { where: string; params: unknown[] } {
  const clauses: string[] = [];
  const params: unknown[] = [];
  for (const term of filterTerms(filter)) {
    let value: unknown = term.value;
    for (const key of [...term.path].reverse()) value = { [key]: value };
    params.push(JSON.stringify(value));
    clauses.push(`metadata @> $${firstParam + params.length - 1}::jsonb`);
  }
  return { where: clauses.join(" AND "), params };
}

/** A non-empty filter's SQL, its values appended to `params` (numbered after them). */
function appendFilter(
  params: unknown[],
  filter: Filter | undefined,
): { where: string } | undefined {
  if (filter === undefined || Object.keys(filter).length === 0) return undefined;
  const sql = filterToSql(filter, params.length + 1);
  params.push(...sql.params);
  return sql;
}

export class PostgresStore implements ItemStore {
  readonly backend = "postgres";
  readonly jobs: PostgresJobs;
  private readonly db: Db;
  private initialized: Promise<void> | undefined;
  /** The model last read; searches use it for the index's dimension (libraries re-read it). */
  private knownModel: ModelInfo | undefined;

  private constructor(private readonly options: PostgresStoreOptions) {
    this.db = new Db({
      url: options.url,
      poolSize: options.poolSize ?? 10,
      connectTimeoutMs: options.connectTimeoutMs ?? 5_000,
    });
    this.jobs = new PostgresJobs(this.db, () => this.ready());
  }

  /**
   * Connects and migrates. A database that refuses this node (credentials, missing database
   * or extension, newer schema) is a start-up error; one that cannot be reached yet is not:
   * the store is returned and retries on every call until the database answers.
   */
  static async open(options: PostgresStoreOptions): Promise<PostgresStore> {
    let shown: string;
    try {
      const parsed = new URL(options.url);
      if (parsed.protocol !== "postgres:" && parsed.protocol !== "postgresql:") throw new Error();
      shown = redactUrl(options.url);
    } catch {
      throw new AppError(
        "invalid_database_url",
        "--database-url (LONGCLIP_DATABASE_URL) must be a URL like postgres://user:password@host:5432/dbname.",
      );
    }
    const store = new PostgresStore(options);
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

  /** Migrates once per process; a failed attempt is retried by the next call. */
  private ready(): Promise<void> {
    this.initialized ??= this.db.withClient(migrate).catch((error: unknown) => {
      this.initialized = undefined;
      throw error;
    });
    return this.initialized;
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
      "SELECT key, value FROM longclip.meta WHERE key IN ('model_id', 'dims')",
    );
    const meta = new Map(rows.rows.map((row) => [row.key, row.value]));
    const modelId = meta.get("model_id");
    const dims = meta.get("dims");
    this.knownModel =
      modelId === undefined || dims === undefined ? undefined : { modelId, dims: Number(dims) };
    return this.knownModel;
  }

  async setModel(info: ModelInfo): Promise<void> {
    await this.transaction(async (client) => {
      await client.query("LOCK TABLE longclip.meta IN EXCLUSIVE MODE");
      await this.writeModel(client, info);
      await this.ensureIndex(client, info.dims);
    });
    this.knownModel = info;
  }

  private async writeModel(client: Queryable, info: ModelInfo): Promise<void> {
    for (const [key, value] of [
      ["model_id", info.modelId],
      ["dims", String(info.dims)],
    ]) {
      await client.query(
        "INSERT INTO longclip.meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [key, value],
      );
    }
  }

  /** The HNSW index for `dims`-dimensional vectors of the configured type, (re)built if needed. */
  private async ensureIndex(client: Queryable, dims: number): Promise<void> {
    const wanted = `${this.options.vectorType}(${dims}) m=${this.options.m} ef=${this.options.efConstruction}`;
    const current = await client.query<{ value: string }>(
      "SELECT value FROM longclip.meta WHERE key = 'hnsw_index'",
    );
    if (current.rows[0]?.value === wanted) return;
    await client.query("DROP INDEX IF EXISTS longclip.items_embedding_hnsw");
    await client.query(
      `CREATE INDEX items_embedding_hnsw ON longclip.items USING hnsw ((${this.indexed(dims, "embedding")}) ${this.options.vectorType}_cosine_ops) WITH (m = ${Number(this.options.m)}, ef_construction = ${Number(this.options.efConstruction)})`,
    );
    await client.query(
      "INSERT INTO longclip.meta (key, value) VALUES ('hnsw_index', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
      [wanted],
    );
  }

  /** The expression the HNSW index is built on, for a column or a parameter. */
  private indexed(dims: number, operand: string): string {
    return `${operand}::${this.options.vectorType}(${Math.trunc(dims)})`;
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

  /** Originals travel with their item's insert: nothing to do ahead of it. */
  async stageOriginal(): Promise<void> {}

  async readOriginal(sha256: string): Promise<Buffer> {
    const result = await this.query<{ bytes: Buffer }>(
      "SELECT bytes FROM longclip.originals WHERE sha256 = $1",
      [sha256],
    );
    const row = result.rows[0];
    if (row === undefined) throw new Error(`no stored original ${sha256}`);
    return row.bytes;
  }

  async insertItems(entries: readonly NewItem[], modelId: string): Promise<InsertOutcome[]> {
    if (entries.length === 0) return [];
    return this.transaction(async (client) => {
      const outcomes: InsertOutcome[] = [];
      for (const entry of entries) {
        // ON CONFLICT DO NOTHING waits for a concurrent insert of the same hash or id (another
        // node) to commit or roll back, then skips: the unique constraints decide, not a read.
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
            modelId,
            vectorParam(entry.vector),
          ],
        );
        const label = inserted.rows[0]?.label;
        if (label !== undefined) {
          if (entry.original !== undefined) {
            await client.query(
              "INSERT INTO longclip.originals (sha256, bytes) VALUES ($1, $2) ON CONFLICT DO NOTHING",
              [entry.sha256, entry.original],
            );
          }
          outcomes.push({ status: "inserted", label });
          continue;
        }
        const same = await client.query<{ id: string }>(
          "SELECT id FROM longclip.items WHERE sha256 = $1",
          [entry.sha256],
        );
        const existing = same.rows[0];
        outcomes.push(
          existing !== undefined
            ? { status: "duplicate", id: existing.id }
            : { status: "id_conflict" },
        );
      }
      return outcomes;
    });
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
  ): Promise<{ items: StoredItem[]; nextCursor: string | null }> {
    const after = cursor === null ? 0 : decodeCursor(cursor);
    return pageOf(await this.itemsAfter(after, limit + 1), limit);
  }

  async itemsAfter(label: number, limit: number): Promise<StoredItem[]> {
    const result = await this.query<ItemRow>(
      `SELECT ${ITEM_COLUMNS} FROM longclip.items WHERE label > $1 ORDER BY label LIMIT $2`,
      [label, limit],
    );
    return result.rows.map(toItem);
  }

  async embeddingsOf(modelId: string, labels: readonly number[]): Promise<EmbeddingRow[]> {
    const result = await this.query<{ label: number; embedding: string }>(
      "SELECT label, embedding::text AS embedding FROM longclip.items WHERE model_id = $1 AND label = ANY($2::bigint[]) ORDER BY label",
      [modelId, labels],
    );
    return result.rows.map((row) => ({ label: row.label, vector: parseVector(row.embedding) }));
  }

  checkFilter(filter: Filter): void {
    filterTerms(filter);
  }

  async keywordSearch(query: KeywordQuery): Promise<ScoredItem[]> {
    if (query.words.length === 0 || query.fields.length === 0) return [];
    // Any word may match: the words (letters and digits only) joined by "|" for to_tsquery,
    // which stems them and drops English stop words as to_tsvector did.
    const words = query.words.filter((word) => /^[\p{L}\p{N}]+$/u.test(word));
    if (words.length === 0) return [];
    const params: unknown[] = [words.join(" | "), query.fields];
    const filter = appendFilter(params, query.filter);
    params.push(query.k);
    const sql = `WITH matched AS (
        SELECT t.label, sum(ts_rank(t.document, q.query)) AS score
        FROM longclip.item_text AS t, to_tsquery('english'::regconfig, $1) AS q (query)
        WHERE t.document @@ q.query AND t.field = ANY($2::text[])
        GROUP BY t.label)
      SELECT ${ITEM_COLUMNS}, matched.score::float8 AS score
      FROM matched JOIN longclip.items USING (label)
      ${filter ? `WHERE ${filter.where}` : ""}
      ORDER BY matched.score DESC, label LIMIT $${params.length}`;
    const { rows } = await this.query<ItemRow & { score: number }>(sql, params);
    return rows.map((row) => ({ item: toItem(row), score: row.score }));
  }

  async nearest(query: NearestQuery, modelId: string): Promise<ScoredItem[]> {
    const model = this.knownModel?.modelId === modelId ? this.knownModel : await this.model();
    if (model?.modelId !== modelId) {
      throw new AppError(
        "model_mismatch",
        `The database holds embeddings of ${model?.modelId ?? "no model"}, not ${modelId}; run longclip reindex.`,
        409,
      );
    }
    const params: unknown[] = [vectorParam(query.vector), modelId];
    const filter = appendFilter(params, query.filter);
    params.push(query.k);
    // The exact scan orders by the full-precision distance, which no index serves.
    const order = query.exact
      ? "embedding <=> $1::vector"
      : `${this.indexed(model.dims, "embedding")} <=> ${this.indexed(model.dims, "$1")}`;
    const sql = `SELECT ${ITEM_COLUMNS}, 1 - (embedding <=> $1::vector) AS score
      FROM longclip.items WHERE model_id = $2 ${filter ? `AND ${filter.where}` : ""}
      ORDER BY ${order} LIMIT $${params.length}`;
    const rows = await this.transaction(async (client) => {
      // ef_search at least k (pgvector returns at most ef_search rows); with a filter, the
      // iterative scan keeps reading the graph until k rows pass it.
      await client.query(
        "SELECT set_config('hnsw.ef_search', $1, true), set_config('hnsw.iterative_scan', 'strict_order', true)",
        [String(Math.min(1000, Math.max(this.options.efSearch, query.k)))],
      );
      return (await client.query<ItemRow & { score: number }>(sql, params)).rows;
    });
    // The index ranks by the indexed (maybe half-precision) vectors; scores are exact.
    return rows
      .map((row) => ({ item: toItem(row), score: row.score }))
      .sort((a, b) => b.score - a.score || a.item.label - b.item.label);
  }

  /**
   * Makes sure the HNSW index matches this node's settings (type, M, efConstruction): a
   * changed setting rebuilds it once, here. Every node should run with the same settings.
   */
  async prepare(): Promise<void> {
    const model = await this.model();
    if (model === undefined) return;
    await this.transaction(async (client) => {
      await client.query("LOCK TABLE longclip.meta IN EXCLUSIVE MODE");
      await this.ensureIndex(client, model.dims);
    });
  }

  async clearStaging(): Promise<void> {
    await this.query("DELETE FROM longclip.embeddings_staging");
  }

  async putStaging(rows: readonly EmbeddingRow[], modelId: string): Promise<void> {
    if (rows.length === 0) return;
    await this.transaction(async (client) => {
      for (const row of rows) {
        await client.query(
          `INSERT INTO longclip.embeddings_staging (label, model_id, embedding) VALUES ($1, $2, $3::vector)
           ON CONFLICT (label) DO UPDATE SET model_id = excluded.model_id, embedding = excluded.embedding`,
          [row.label, modelId, vectorParam(row.vector)],
        );
      }
    });
  }

  async swapStaging(info: ModelInfo): Promise<void> {
    await this.transaction(async (client) => {
      await client.query("LOCK TABLE longclip.meta IN EXCLUSIVE MODE");
      // Rebuilding the index once is far cheaper than updating it row by row.
      await client.query("DROP INDEX IF EXISTS longclip.items_embedding_hnsw");
      await client.query("DELETE FROM longclip.meta WHERE key = 'hnsw_index'");
      await client.query(
        `UPDATE longclip.items AS i SET model_id = s.model_id, embedding = s.embedding
         FROM longclip.embeddings_staging AS s WHERE s.label = i.label AND s.model_id = $1`,
        [info.modelId],
      );
      await client.query(
        "UPDATE longclip.items SET model_id = NULL, embedding = NULL WHERE model_id <> $1",
        [info.modelId],
      );
      await client.query("DELETE FROM longclip.embeddings_staging");
      await this.writeModel(client, info);
      await this.ensureIndex(client, info.dims);
    });
    this.knownModel = info;
  }

  async indexStats(): Promise<VectorIndexStats> {
    const model = await this.model();
    const size = model === undefined ? 0 : await this.countEmbeddings(model.modelId);
    return {
      type: "hnsw",
      space: "cosine",
      m: this.options.m,
      efConstruction: this.options.efConstruction,
      efSearch: this.options.efSearch,
      capacity: size,
      size,
    };
  }

  health(): StoreHealth {
    return this.db.health();
  }

  async flush(): Promise<void> {}

  async close(): Promise<void> {
    await this.db.close();
  }
}
