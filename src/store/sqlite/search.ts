/**
 * Searches of the embedded backend: nearest neighbours through the HNSW cache (or an exact scan
 * of the embeddings: on request, or when a filter leaves few enough items, scansFilterExactly)
 * and keyword search through the FTS5 table of the items' text fields. The index holds every
 * vector, an item's parts' beside its own (../parts.ts): a search ranks items by their best.
 */
import type { Filter } from "../../core/types.ts";
import { efSearchFor, scansFilterExactly } from "../../vector-index/ef-search.ts";
import { cosine, exactSearch } from "../../vector-index/exact.ts";
import type { Neighbour } from "../../vector-index/hnsw.ts";
import type { ShardedHnsw } from "../../vector-index/hnsw-shards.ts";
import { requireModel } from "../common.ts";
import { type BestVector, matchOf } from "../parts.ts";
import type {
  EmbeddingRow,
  KeywordQuery,
  ModelInfo,
  NearestQuery,
  ScoredItem,
  StoredItem,
} from "../types.ts";
import type { SqliteEmbeddings } from "./embeddings.ts";
import { filterToSql } from "./filter-sql.ts";
import type { HnswCache } from "./hnsw-cache.ts";
import type { SqliteReaders } from "./readers.ts";
import { toItem } from "./rows.ts";
import type { Statements } from "./statements.ts";

export interface SqliteSearchOptions {
  /**
   * Filtered searches with at most this many matching items (or more, by scansFilterExactly)
   * rank them exactly; 0: never.
   */
  exactFilterLimit: number;
  /** --hnsw-ef-search (0: automatic), for choosing between the exact scan and the walk. */
  efSearch: number;
  /** The model whose embeddings the store holds now. */
  currentModel: () => ModelInfo | undefined;
}

/** The most results per item wanted that a first walk asks for (more come by widening). */
const MAX_FIRST_WIDENING = 16;

export class SqliteSearch {
  constructor(
    private readonly stmts: Statements,
    private readonly embeddings: SqliteEmbeddings,
    private readonly hnsw: HnswCache,
    private readonly readers: SqliteReaders,
    private readonly options: SqliteSearchOptions,
  ) {}

  async nearest(query: NearestQuery, modelId: string): Promise<ScoredItem[]> {
    const { vector, k } = query;
    const whole = query.wholeImage === true;
    const model = requireModel("library", this.options.currentModel(), modelId);
    const index = () => this.hnsw.ready(model);
    let best: BestVector[];
    if (query.filter !== undefined && Object.keys(query.filter).length > 0) {
      // The matching labels are the candidates: counted exactly here, and ranked exactly while
      // that costs less than a filtered walk would (scansFilterExactly).
      const labels = await this.labelsMatching(query.filter, modelId, whole);
      const size = query.exact ? 0 : (await index()).size;
      const ef = efSearchFor(k, size, this.options.efSearch);
      if (
        query.exact ||
        scansFilterExactly(labels.length, size, ef, this.options.exactFilterLimit)
      ) {
        best = this.exact(vector, this.embeddings.vectorsFor(modelId, labels), k);
      } else {
        best = await this.walk(await index(), vector, k, whole, labels);
      }
    } else if (query.exact) {
      best = this.exact(vector, this.embeddings.iterate(modelId, whole), k);
    } else {
      best = await this.walk(await index(), vector, k, whole);
    }
    return this.withItems(best);
  }

  /** The k best items of an exact scan of `rows` (vectors of items and their parts). */
  private exact(vector: Float32Array, rows: Iterable<EmbeddingRow>, k: number): BestVector[] {
    if (this.embeddings.parts === 0) return this.embeddings.bestItems(exactSearch(vector, rows, k));
    // Every vector scored, then each item's best: k vectors might all be one item's parts.
    const scored: Neighbour[] = [];
    for (const row of rows) scored.push({ label: row.label, score: cosine(vector, row.vector) });
    return this.embeddings.bestItems(scored).slice(0, k);
  }

  /**
   * The k best items of a walk of the index (`allowed`: the labels a filter accepts). With
   * parts, an item may fill several of the walk's results: it asks for as many results per item
   * as items hold vectors on average, and for four times more while it finds fewer than k
   * distinct items and more could be found (parts' results are dropped with `wholeImage`).
   */
  private async walk(
    index: ShardedHnsw,
    vector: Float32Array,
    k: number,
    wholeImage: boolean,
    allowed?: readonly number[],
  ): Promise<BestVector[]> {
    const parts = this.embeddings.parts;
    if (parts === 0) return this.embeddings.bestItems(await index.search(vector, k, allowed));
    const findable = allowed?.length ?? index.size;
    const perItem = Math.ceil(index.size / Math.max(1, index.size - parts));
    let want = Math.min(findable, k * Math.min(MAX_FIRST_WIDENING, Math.max(1, perItem)));
    for (;;) {
      const neighbours = await index.search(vector, want, allowed);
      const best = this.embeddings.bestItems(neighbours, wholeImage);
      if (best.length >= k || neighbours.length < want || want >= findable) {
        return best.slice(0, k);
      }
      want = Math.min(findable, want * 4);
    }
  }

  async keyword(query: KeywordQuery): Promise<ScoredItem[]> {
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
    // On a read worker: the filter and the full-text match may scan many rows.
    const rows = await this.readers.all(
      `SELECT item_text.label AS label, sum(-item_text_fts.rank) AS score
       FROM item_text_fts JOIN item_text ON item_text.id = item_text_fts.rowid
       WHERE item_text_fts MATCH ? AND item_text.field IN (SELECT value FROM json_each(?))
       ${restrict}
       GROUP BY item_text.label ORDER BY score DESC, item_text.label LIMIT ?`,
      params,
    );
    return this.withItems(
      rows.map(([label, score]) => ({ item: label as number, score: score as number })),
    );
  }

  /**
   * Labels of the vectors of the items whose metadata matches every key of the filter: the
   * items' own, and their parts' where parts are stored, unless `wholeImage` (on a read worker).
   */
  private async labelsMatching(
    filter: Filter,
    modelId: string,
    wholeImage: boolean,
  ): Promise<number[]> {
    const { where, params } = filterToSql(filter);
    const items = `SELECT label FROM items WHERE ${where}`;
    const rows =
      this.embeddings.parts === 0 || wholeImage
        ? await this.readers.all(items, params)
        : await this.readers.all(
            `${items} UNION ALL SELECT vector_label FROM item_parts WHERE model_id = ? AND item IN (${items})`,
            [...params, modelId, ...params],
          );
    return rows.map((row) => row[0] as number);
  }

  /** Scores by item with their items, in order (an item deleted meanwhile is left out). */
  private withItems(rows: readonly BestVector[]): ScoredItem[] {
    const items = this.getByLabels(rows.map((row) => row.item));
    const out: ScoredItem[] = [];
    for (const row of rows) {
      const item = items.get(row.item);
      if (item !== undefined) out.push({ item, score: row.score, ...matchOf(row) });
    }
    return out;
  }

  private getByLabels(labels: readonly number[]): Map<number, StoredItem> {
    const out = new Map<number, StoredItem>();
    if (labels.length === 0) return out;
    for (const row of this.stmts.byLabels.all(JSON.stringify(labels))) {
      out.set(row.label, toItem(row));
    }
    return out;
  }
}
