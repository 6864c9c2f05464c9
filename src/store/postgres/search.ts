/**
 * Searches on Postgres: nearest neighbours through the pgvector HNSW index (or an exact scan:
 * on request, or when a filter leaves few items), and keyword search through the `tsvector`
 * documents of the items' text fields.
 */
import { ITEM_COLUMNS } from "../item-row.ts";
import type { KeywordQuery, ModelInfo, NearestQuery, ScoredItem } from "../types.ts";
import type { Reads } from "./db.ts";
import { appendFilter } from "./filter-sql.ts";
import { type HnswIndexSettings, indexedExpression } from "./hnsw-index.ts";
import { type ItemRow, toItem, vectorParam } from "./rows.ts";

export interface PostgresSearchSettings extends HnswIndexSettings {
  efSearch: number;
  /** Filtered searches with at most this many matching items scan them exactly. */
  exactFilterLimit: number;
}

export class PostgresSearch {
  constructor(
    private readonly reads: Reads,
    private readonly ready: () => Promise<void>,
    private readonly settings: PostgresSearchSettings,
  ) {}

  /** The k nearest items of `model`'s embeddings, which the database must hold. */
  async nearest(query: NearestQuery, model: ModelInfo): Promise<ScoredItem[]> {
    const modelId = model.modelId;
    const params: unknown[] = [vectorParam(query.vector), modelId];
    const filter = appendFilter(params, query.filter);
    params.push(query.k);
    const sqlFor = (exact: boolean) => {
      // The exact scan orders by the full-precision distance, which no index serves.
      const order = exact
        ? "embedding <=> $1::vector"
        : `${indexedExpression(this.settings, model.dims, "embedding")} <=> ${indexedExpression(this.settings, model.dims, "$1")}`;
      return `SELECT ${ITEM_COLUMNS}, 1 - (embedding <=> $1::vector) AS score
        FROM longclip.items WHERE model_id = $2 ${filter ? `AND ${filter.where}` : ""}
        ORDER BY ${order} LIMIT $${params.length}`;
    };
    const limit = this.settings.exactFilterLimit;
    await this.ready();
    const rows = await this.reads.transaction(async (client) => {
      // ef_search at least k (pgvector returns at most ef_search rows); with a filter, the
      // iterative scan keeps reading the graph until k rows pass it. Zone-less dates are UTC.
      await client.query(
        "SELECT set_config('hnsw.ef_search', $1, true), set_config('hnsw.iterative_scan', 'strict_order', true), set_config('TimeZone', 'UTC', true)",
        [String(Math.min(1000, Math.max(this.settings.efSearch, query.k)))],
      );
      let exact = query.exact === true;
      if (!exact && filter !== undefined && limit > 0) {
        // Few matching items: scan them exactly (the walk loses recall on selective filters).
        // $1 is the count's own limit; the filter's parameters keep their numbers ($3…).
        const counted = await client.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM (SELECT 1 FROM longclip.items WHERE model_id = $2 AND ${filter.where} LIMIT $1) AS matching`,
          [limit + 1, modelId, ...filter.params],
        );
        exact = (counted.rows[0]?.n ?? 0) <= limit;
      }
      return (await client.query<ItemRow & { score: number }>(sqlFor(exact), params)).rows;
    });
    // The index ranks by the indexed (maybe half-precision) vectors; scores are exact.
    return rows
      .map((row) => ({ item: toItem(row), score: row.score }))
      .sort((a, b) => b.score - a.score || a.item.label - b.item.label);
  }

  async keyword(query: KeywordQuery): Promise<ScoredItem[]> {
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
    await this.ready();
    const { rows } = await this.reads.query<ItemRow & { score: number }>(sql, params);
    return rows.map((row) => ({ item: toItem(row), score: row.score }));
  }
}
