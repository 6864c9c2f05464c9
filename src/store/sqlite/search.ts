/**
 * Searches of the embedded backend: nearest neighbours through the HNSW cache (or an exact scan
 * of the embeddings: on request, or when a filter leaves few enough items, scansFilterExactly)
 * and keyword search through
 * the FTS5 table of the items' text fields.
 */
import type { Filter } from "../../core/types.ts";
import { efSearchFor, scansFilterExactly } from "../../vector-index/ef-search.ts";
import { exactSearch } from "../../vector-index/exact.ts";
import type { Neighbour } from "../../vector-index/hnsw.ts";
import { requireModel } from "../common.ts";
import type { KeywordQuery, ModelInfo, NearestQuery, ScoredItem, StoredItem } from "../types.ts";
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
    const model = requireModel("library", this.options.currentModel(), modelId);
    const index = () => this.hnsw.ready(model);
    let neighbours: Neighbour[];
    if (query.filter !== undefined && Object.keys(query.filter).length > 0) {
      // The matching labels are the candidates: counted exactly here, and ranked exactly while
      // that costs less than a filtered walk would (scansFilterExactly).
      const labels = await this.labelsMatching(query.filter);
      const size = query.exact ? 0 : (await index()).size;
      const ef = efSearchFor(k, size, this.options.efSearch);
      if (
        query.exact ||
        scansFilterExactly(labels.length, size, ef, this.options.exactFilterLimit)
      ) {
        neighbours = exactSearch(vector, this.embeddings.embeddingsFor(modelId, labels), k);
      } else {
        neighbours = await (await index()).search(vector, k, labels);
      }
    } else if (query.exact) {
      neighbours = exactSearch(vector, this.embeddings.iterate(modelId), k);
    } else {
      neighbours = await (await index()).search(vector, k);
    }
    return this.withItems(neighbours);
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
      rows.map(([label, score]) => ({ label: label as number, score: score as number })),
    );
  }

  /** Labels of the items whose metadata matches every key of the filter (on a read worker). */
  private async labelsMatching(filter: Filter): Promise<number[]> {
    const { where, params } = filterToSql(filter);
    const rows = await this.readers.all(`SELECT label FROM items WHERE ${where}`, params);
    return rows.map((row) => row[0] as number);
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

  private getByLabels(labels: readonly number[]): Map<number, StoredItem> {
    const out = new Map<number, StoredItem>();
    if (labels.length === 0) return out;
    for (const row of this.stmts.byLabels.all(JSON.stringify(labels))) {
      out.set(row.label, toItem(row));
    }
    return out;
  }
}
