/**
 * The filtered section of bench:scale: does a metadata filter cost recall, and does a filtered
 * search return k results whenever k items match? Every item has a `bucket` from 0 to 99 drawn
 * independently of its vector, and s% of them (1%, 10%, 50%) are kept by either of two filters
 * that select the same items: `{bucket: {$in: [0, …, s-1]}}` (equality, which Postgres's GIN
 * index serves and its statistics estimate) and `{bucket: {$lt: s}}` (a range: no index).
 * Recall@10 of `nearest` with the filter, through the storage seam, is measured against the
 * exact top 10 among the matching items (computed by the bench, not by a store), for the path
 * the product takes (exact ranking or a filtered walk, by the filter's share) and with the
 * index forced at every selectivity (on Postgres: pgvector's iterative scan).
 */
import type { ItemStore } from "../../src/store/types.ts";
import { runQueries } from "./scale.ts";
import { FILTERED_QUERIES, type ScaleDataset, SELECTIVITIES } from "./scale-data.ts";
import { percentile } from "./stats.ts";
import { meanRecall } from "./vectors.ts";

export interface FilteredRow {
  backend: string;
  /** "product" (exact or walk, by the filter's share) or "index forced". */
  path: string;
  /** The filter's form: "$in" or "$lt". */
  form: FilterForm;
  /** Percent of items the filter keeps. */
  selectivity: number;
  matching: number;
  recallAt10: number;
  /** Mean and fewest hits returned (10 matching items exist at every selectivity here). */
  meanHits: number;
  minHits: number;
  p50Ms: number;
}

export type FilterForm = "$in" | "$lt";

/** The filter of `form` that keeps the buckets below `selectivity` (s% of the items). */
function bucketFilter(form: FilterForm, selectivity: number) {
  return form === "$in"
    ? { bucket: { $in: Array.from({ length: selectivity }, (_, bucket) => bucket) } }
    : { bucket: { $lt: selectivity } };
}

/** Every selectivity on one store. */
export async function measureFiltered(
  store: ItemStore,
  modelId: string,
  dataset: ScaleDataset,
  label: { backend: string; path: string; form: FilterForm },
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
      filter: bucketFilter(label.form, selectivity),
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
      `filtered: ${label.backend} (${label.path}, ${label.form}) ${selectivity}%: recall ${rows.at(-1)?.recallAt10.toFixed(3)}`,
    );
  }
  return rows;
}
