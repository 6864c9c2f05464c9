/**
 * The filtered section of bench:scale: does a metadata filter cost recall, and does a filtered
 * search return k results whenever k items match? Every item has a `bucket` from 0 to 99 drawn
 * independently of its vector, and `{bucket: {$lt: s}}` keeps s% of them (1%, 10%, 50%).
 * Recall@10 of `nearest` with the filter, through the storage seam, is measured against the
 * exact top 10 among the matching items (computed by the bench, not by a store), for the path
 * the product takes (an exact scan of up to 10,000 matching items, the index above) and with
 * the index forced at every selectivity (on Postgres: pgvector's iterative scan).
 */
import type { ItemStore } from "../../src/store/types.ts";
import { runQueries } from "./scale.ts";
import { FILTERED_QUERIES, type ScaleDataset, SELECTIVITIES } from "./scale-data.ts";
import { percentile } from "./stats.ts";
import { meanRecall } from "./vectors.ts";

export interface FilteredRow {
  backend: string;
  /** "product" (exact scan up to 10,000 matches) or "index forced". */
  path: string;
  /** Percent of items the filter keeps. */
  selectivity: number;
  matching: number;
  recallAt10: number;
  /** Mean and fewest hits returned (10 matching items exist at every selectivity here). */
  meanHits: number;
  minHits: number;
  p50Ms: number;
}

/** Every selectivity on one store. */
export async function measureFiltered(
  store: ItemStore,
  modelId: string,
  dataset: ScaleDataset,
  label: { backend: string; path: string },
  queryLimit: number,
  log: (message: string) => void,
): Promise<FilteredRow[]> {
  const rows: FilteredRow[] = [];
  const queries = Math.min(FILTERED_QUERIES, dataset.queryCount, queryLimit);
  for (const selectivity of SELECTIVITIES) {
    const truth = dataset.filtered.get(selectivity);
    if (truth === undefined) throw new Error(`no filtered truth at ${selectivity}%`);
    const { found, times } = await runQueries(store, modelId, dataset, queries, {
      k: 10,
      filter: { bucket: { $lt: selectivity } },
    });
    const hits = found.map((ids) => ids.length);
    rows.push({
      ...label,
      selectivity,
      matching: truth.matching,
      recallAt10: meanRecall(found, truth.truth.slice(0, queries)),
      meanHits: hits.reduce((a, b) => a + b, 0) / hits.length,
      minHits: Math.min(...hits),
      p50Ms: percentile(times, 50),
    });
    log(
      `filtered: ${label.backend} (${label.path}) ${selectivity}%: recall ${rows.at(-1)?.recallAt10.toFixed(3)}`,
    );
  }
  return rows;
}
