/**
 * Searches on Postgres: nearest neighbours through the pgvector HNSW index (or an exact scan:
 * on request, when a filter leaves few items, or when the index walk found fewer than k), and
 * keyword search through the `tsvector` documents of the items' text fields.
 *
 * How a nearest-neighbour search uses pgvector (one round trip without a filter: its settings
 * stay on each pooled connection and are set again only where they differ, searchSession):
 * - `hnsw.ef_search` from the depth asked (k + offset) and the table's size (efSearchFor);
 * - `hnsw.iterative_scan = relaxed_order`: with a filter, the walk goes on until enough rows pass
 *   it. Relaxed, because strict_order drops every row found after a farther one (lost recall);
 *   the order is restored by the exact re-rank below. `hnsw.max_scan_tuples` (MAX_SCAN_TUPLES)
 *   bounds the walk, and `hnsw.scan_mem_multiplier` lets that many tuples fit in memory;
 * - the walk's candidates (RERANK_FACTOR x the depth with a halfvec index) are re-ranked by the
 *   stored full-precision vectors, so half precision decides which rows are candidates, not
 *   their final order;
 * - a filtered search first asks the planner how many items match (EXPLAIN: no row is read;
 *   the GIN index and the metadata's statistics serve equality and $in). Few enough
 *   (scansFilterExactly): they are ranked exactly, the planner going to them through the GIN
 *   index where it serves the filter. More: the walk, with ef_search scaled by the inverse of
 *   the filter's share (filteredEfSearch);
 * - a walk that returns fewer rows than asked (a selective filter whose rows lie far from the
 *   query, past the tuple bound) is answered by an exact scan instead: a filtered search
 *   returns k rows whenever k rows match.
 */
import {
  efSearchFor,
  filteredEfSearch,
  MAX_PGVECTOR_EF_SEARCH,
  scansFilterExactly,
} from "../../vector-index/ef-search.ts";
import { ITEM_COLUMNS } from "../item-row.ts";
import { locatorOf, type PartColumns, partMatch } from "../parts.ts";
import type { KeywordQuery, ModelInfo, NearestQuery, ScoredItem } from "../types.ts";
import {
  applySession,
  type Queryable,
  type Reads,
  type SessionSettings,
  settingsSql,
} from "./db.ts";
import { appendFilter } from "./filter-sql.ts";
import { type HnswIndexSettings, indexedExpression } from "./hnsw-index.ts";
import { type ItemRow, toItem, vectorParam } from "./rows.ts";

export interface PostgresSearchSettings extends HnswIndexSettings {
  /** hnsw.ef_search; 0 chooses it per query (efSearchFor). */
  efSearch: number;
  /**
   * Filtered searches estimated to match at most this many items (or more, by
   * scansFilterExactly) rank them exactly; 0: never.
   */
  exactFilterLimit: number;
  /** Candidates per result re-ranked with a halfvec index (default RERANK_FACTOR; 1: none). */
  rerankFactor?: number;
  /**
   * Each search in a transaction of its own, its settings SET LOCAL: three round trips where
   * the default takes one (for bench:scale's comparison only).
   */
  transactionPerSearch?: boolean;
}

/** Tuples an iterative (filtered) walk may visit before the exact scan takes over. */
export const MAX_SCAN_TUPLES = 20_000;
/** Candidates per result re-ranked by the full vectors when the index holds halfvec. */
export const RERANK_FACTOR = 2;
/** How long the tables' row estimates (for efSearchFor) are reused. */
const SIZE_TTL_MS = 30_000;
/** The most part candidates per item candidate a walk asks for. */
const MAX_PART_CANDIDATES_PER_RESULT = 16;

interface TableSizes {
  items: number;
  /** Items' and parts' vectors. */
  vectors: number;
}

type PartColumnsOrNone = { [K in keyof PartColumns]: PartColumns[K] | null };

const PART_LOCATOR =
  "parts.kind, parts.box_x, parts.box_y, parts.box_width, parts.box_height, parts.t";

/**
 * One statement for a nearest search, items ranked by their best vector. Candidates come from
 * two branches: the items' own vectors and their parts' (joined to the items where a filter
 * reads them), each the `candidates` nearest by the HNSW index (a walk) or, `exact`, each
 * item's best of its kind by a scan; each item keeps its best candidate, and the k best items
 * come back with the part that won, if a part did (`wholeImage`: the items' branch alone).
 * Every item has its own vector, so the
 * items' branch alone has k items whenever k match: parts only ever add better candidates. The
 * score is always of the full-precision vectors (a halfvec index only chooses candidates).
 */
function nearestSql(
  filter: string | undefined,
  k: string,
  walk:
    | "exact"
    | { candidates: number; partCandidates: number; indexed: (operand: string) => string },
  wholeImage: boolean,
): string {
  const itemsWhere = `model_id = $2 ${filter ? `AND ${filter}` : ""}`;
  const partsFrom = filter
    ? `longclip.item_parts AS p JOIN longclip.items ON items.label = p.item WHERE p.model_id = $2 AND ${filter}`
    : "longclip.item_parts AS p WHERE p.model_id = $2";
  // $1 is typed by the first cast Postgres reads: `vector` everywhere, or it could arrive as
  // halfvec and the score would use a half-precision query.
  const own =
    walk === "exact"
      ? `SELECT label AS item, NULL::integer AS part, embedding FROM longclip.items WHERE ${itemsWhere}
         ORDER BY embedding <=> $1::vector, label LIMIT ${k}`
      : `SELECT label AS item, NULL::integer AS part, embedding FROM longclip.items WHERE ${itemsWhere}
         ORDER BY ${walk.indexed("embedding")} <=> ${walk.indexed("$1::vector")} LIMIT ${walk.candidates}`;
  const parts =
    walk === "exact"
      ? `SELECT item, part, embedding FROM (
           SELECT DISTINCT ON (p.item) p.item, p.part, p.embedding, p.embedding <=> $1::vector AS distance
           FROM ${partsFrom} ORDER BY p.item, p.embedding <=> $1::vector, p.part
         ) AS best_parts ORDER BY distance, item LIMIT ${k}`
      : `SELECT p.item, p.part, p.embedding FROM ${partsFrom}
         ORDER BY ${walk.indexed("p.embedding")} <=> ${walk.indexed("$1::vector")} LIMIT ${walk.partCandidates}`;
  const candidates = wholeImage ? `(${own})` : `((${own}) UNION ALL (${parts}))`;
  return `SELECT ${ITEM_COLUMNS}, best.score, best.part, ${PART_LOCATOR} FROM (
      SELECT DISTINCT ON (item) item, part, 1 - distance AS score FROM (
        SELECT item, part, embedding <=> $1::vector AS distance FROM ${candidates} AS candidates
      ) AS scored ORDER BY item, distance, part NULLS FIRST
    ) AS best JOIN longclip.items ON items.label = best.item
    LEFT JOIN longclip.item_parts AS parts ON parts.item = best.item AND parts.part = best.part
    ORDER BY best.score DESC, items.label LIMIT ${k}`;
}

export class PostgresSearch {
  private size: (TableSizes & { at: number }) | undefined;

  constructor(
    private readonly reads: Reads,
    private readonly ready: () => Promise<void>,
    private readonly settings: PostgresSearchSettings,
  ) {}

  /** The efSearch a search of `depth` results gets now (for /stats and for nearest). */
  async efSearch(depth: number): Promise<number> {
    const rows = this.settings.efSearch > 0 ? 0 : (await this.rows()).vectors;
    return Math.min(MAX_PGVECTOR_EF_SEARCH, efSearchFor(depth, rows, this.settings.efSearch));
  }

  /**
   * The k nearest items of `model`'s embeddings, which the database must hold: each item by its
   * best vector, its own or a part's, in one statement (nearestSql).
   */
  async nearest(query: NearestQuery, model: ModelInfo): Promise<ScoredItem[]> {
    await this.ready();
    const params: unknown[] = [vectorParam(query.vector), model.modelId];
    const filter = appendFilter(params, query.filter);
    params.push(query.k);
    const k = `$${params.length}`;
    const whole = query.wholeImage === true;
    const exactSql = nearestSql(filter?.where, k, "exact", whole);
    const ef = await this.efSearch(query.k);
    const candidates =
      this.settings.vectorType === "halfvec"
        ? Math.max(query.k, (this.settings.rerankFactor ?? RERANK_FACTOR) * query.k)
        : query.k;
    const { items, vectors } = await this.rows();
    // Parts: as many candidates per result as items hold vectors on average (an item's parts
    // may fill several places of the walk), within MAX_PART_CANDIDATES_PER_RESULT.
    const perItem = Math.min(
      MAX_PART_CANDIDATES_PER_RESULT,
      Math.max(1, Math.ceil(vectors / Math.max(1, items))),
    );
    const indexed = (operand: string) => indexedExpression(this.settings, model.dims, operand);
    const annSql = nearestSql(
      filter?.where,
      k,
      { candidates, partCandidates: candidates * perItem, indexed },
      whole,
    );
    const limit = this.settings.exactFilterLimit;
    // Filtered: how many items match, as the planner estimates it (no rows read), decides
    // between ranking them exactly and a longer filtered walk (scansFilterExactly).
    const size = filter !== undefined && !query.exact ? vectors : 0;
    const rows = await this.withSettings(searchSession(ef, model.dims), async (client, set) => {
      let exact = query.exact === true;
      if (!exact && filter !== undefined) {
        // $1 is the estimate's own LIMIT; the filter's parameters keep their numbers ($3…).
        const plan = await client.query<{ "QUERY PLAN": [{ Plan: { "Plan Rows": number } }] }>(
          `EXPLAIN (FORMAT JSON) SELECT 1 FROM longclip.items WHERE model_id = $2 AND ${filter.where} LIMIT $1`,
          [size + 1, model.modelId, ...filter.params],
        );
        const estimate = plan.rows[0]?.["QUERY PLAN"][0].Plan["Plan Rows"] ?? size;
        // The matching items' vectors, their parts' included.
        const matching = Math.min(size, Math.ceil((estimate * vectors) / Math.max(1, items)));
        exact = scansFilterExactly(matching, size, ef, limit);
        if (!exact) {
          const wider = filteredEfSearch(ef, matching, size, MAX_PGVECTOR_EF_SEARCH);
          await set(searchSession(wider, model.dims));
        }
      }
      type Row = ItemRow & PartColumnsOrNone & { score: number; part: number | null };
      if (!exact) {
        const found = await client.query<Row>(annSql, params);
        if (found.rows.length >= query.k) return found.rows;
      }
      return (await client.query<Row>(exactSql, params)).rows;
    });
    return rows
      .map((row) => ({
        item: toItem(row),
        score: row.score,
        ...(row.part === null
          ? {}
          : { match: partMatch(locatorOf(row as PartColumns), row.part, row.score) }),
      }))
      .sort((a, b) => b.score - a.score || a.item.label - b.item.label);
  }

  /**
   * Runs `work` on a connection with `settings` (and `set` to change them there): session
   * settings, set where the connection's differ, or SET LOCAL in a transaction of its own.
   */
  private withSettings<T>(
    settings: SessionSettings,
    work: (client: Queryable, set: (changed: SessionSettings) => Promise<void>) => Promise<T>,
  ): Promise<T> {
    if (this.settings.transactionPerSearch) {
      return this.reads.transaction(
        (client) =>
          work(client, async (changed) => {
            await client.query(settingsSql(changed, true));
          }),
        settingsSql(settings, true),
      );
    }
    return this.reads.withSession(settings, (client) =>
      work(client, (changed) => applySession(client, changed)),
    );
  }

  /**
   * The items and all vectors (items' and parts') as the planner knows their tables (a count
   * when never analyzed), cached.
   */
  private async rows(): Promise<TableSizes> {
    const now = Date.now();
    if (this.size !== undefined && now - this.size.at < SIZE_TTL_MS) return this.size;
    const estimate = (table: string) =>
      `(SELECT CASE WHEN reltuples >= 0 THEN reltuples::bigint
        ELSE (SELECT count(*) FROM longclip.${table}) END
       FROM pg_class WHERE oid = 'longclip.${table}'::regclass)`;
    const result = await this.reads.query<{ items: number; parts: number }>(
      `SELECT ${estimate("items")} AS items, ${estimate("item_parts")} AS parts`,
    );
    const items = Number(result.rows[0]?.items ?? 0);
    const parts = Number(result.rows[0]?.parts ?? 0);
    this.size = { items, vectors: items + parts, at: now };
    return this.size;
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
    const { rows } = await this.reads.withSession(FILTER_SESSION, (client) =>
      client.query<ItemRow & { score: number }>(sql, params),
    );
    return rows.map((row) => ({ item: toItem(row), score: row.score }));
  }
}

/** Zone-less dates in filters are UTC, on every connection that ran a filter. */
const FILTER_SESSION: SessionSettings = { TimeZone: "'UTC'" };

/**
 * The session a search runs in. Set on the connection (not SET LOCAL in a transaction, which
 * costs a BEGIN and a COMMIT round trip) and only where the connection's differ (applySession):
 * every search sets all of them, and nothing else reads them, so what a connection keeps from
 * an earlier search never reaches another query.
 */
export function searchSession(efSearch: number, dims: number): SessionSettings {
  return {
    "hnsw.ef_search": `'${Math.trunc(efSearch)}'`,
    "hnsw.iterative_scan": "'relaxed_order'",
    "hnsw.max_scan_tuples": `'${MAX_SCAN_TUPLES}'`,
    "hnsw.scan_mem_multiplier": `greatest(1, ceil(${scanMemoryBytes(dims)} / pg_size_bytes(current_setting('work_mem'))))`,
    ...FILTER_SESSION,
  };
}

/**
 * Memory an iterative walk needs for MAX_SCAN_TUPLES tuples of `dims` dimensions: pgvector
 * keeps each visited element with its vector and candidate entries in a context bounded by
 * work_mem x hnsw.scan_mem_multiplier, and stops at that bound before the tuple bound.
 */
function scanMemoryBytes(dims: number): number {
  return MAX_SCAN_TUPLES * (256 + 4 * dims);
}
