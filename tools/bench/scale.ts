/**
 * The search measurements of bench:scale, through the storage seam (`ItemStore.nearest`, what
 * the library calls): recall@k against the exact answers of the data set, p50/p99 of one client
 * in a row, queries per second with several clients at once, and the fewest results a query
 * returned. The same code measures the embedded store and Postgres, so their figures compare.
 */
import type { Filter } from "../../src/core/types.ts";
import type { ItemStore, NewItem } from "../../src/store/types.ts";
import type { ScaleDataset } from "./scale-data.ts";
import { percentile } from "./stats.ts";
import { meanRecall, rowOf } from "./vectors.ts";

/** Items "v<row>" of rows start..end-1, with `metadataOf(row)` as their metadata. */
export function benchItems(
  data: Float32Array,
  dims: number,
  start: number,
  end: number,
  metadataOf: (row: number) => Record<string, unknown> = () => ({}),
): NewItem[] {
  const entries: NewItem[] = [];
  for (let i = start; i < end; i++) {
    entries.push({
      id: `v${i}`,
      sha256: i.toString(16).padStart(64, "0"),
      metadata: metadataOf(i),
      contentType: "image/png",
      width: 1,
      height: 1,
      bytes: 1,
      source: "path",
      path: `/bench/${i}`,
      vector: rowOf(data, dims, i),
    });
  }
  return entries;
}

export interface SeamRow {
  backend: string;
  /** The configuration: "default" or what differs from it. */
  setting: string;
  k: number;
  /** The efSearch a k-result query used (the automatic one for "default"). */
  efSearch: number;
  recall: number;
  p50Ms: number;
  p99Ms: number;
  /** Fewest results any query returned. */
  minHits: number;
  /** Queries per second with `clients` concurrent clients (only measured for some rows). */
  qps?: number;
  clients?: number;
}

/** The data set row an item id ("v<row>") names. */
export function rowOfId(id: string): number {
  return Number(id.slice(1));
}

export interface SeamQuery {
  k: number;
  filter?: Filter;
}

/** Runs every query once, one at a time: what each found and how long each took. */
export async function runQueries(
  store: ItemStore,
  modelId: string,
  dataset: ScaleDataset,
  queryCount: number,
  query: SeamQuery,
): Promise<{ found: number[][]; times: number[] }> {
  const found: number[][] = [];
  const times: number[] = [];
  for (let q = 0; q < queryCount; q++) {
    const started = performance.now();
    const hits = await store.nearest(
      { vector: rowOf(dataset.queries, dataset.dims, q), ...query },
      modelId,
    );
    times.push(performance.now() - started);
    found.push(hits.map((hit) => rowOfId(hit.item.id)));
  }
  return { found, times };
}

/** Recall@k, p50/p99 and the fewest hits of `store` on the data set's queries. */
export async function measureSeam(
  store: ItemStore,
  modelId: string,
  dataset: ScaleDataset,
  row: { backend: string; setting: string; k: number; efSearch: number },
): Promise<SeamRow> {
  // One unmeasured pass of a few queries: first-use costs (connections, page cache) aside.
  await runQueries(store, modelId, dataset, Math.min(10, dataset.queryCount), { k: row.k });
  const { found, times } = await runQueries(store, modelId, dataset, dataset.queryCount, {
    k: row.k,
  });
  return {
    ...row,
    recall: meanRecall(
      found,
      dataset.truth.map((ids) => ids.slice(0, row.k)),
    ),
    p50Ms: percentile(times, 50),
    p99Ms: percentile(times, 99),
    minHits: Math.min(...found.map((ids) => ids.length)),
  };
}

/**
 * Queries per second with `clients` clients, each sending the data set's queries one after
 * another (in its own order) for `seconds`.
 */
export async function measureQps(
  store: ItemStore,
  modelId: string,
  dataset: ScaleDataset,
  clients: number,
  seconds: number,
  k = 10,
): Promise<number> {
  const deadline = performance.now() + seconds * 1000;
  let done = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      for (let q = c; performance.now() < deadline; q++) {
        const vector = rowOf(dataset.queries, dataset.dims, q % dataset.queryCount);
        await store.nearest({ vector, k }, modelId);
        done++;
      }
    }),
  );
  return done / ((performance.now() - started) / 1000);
}

/**
 * The fastest configuration of `rows` that reaches `recall` (by p50), for comparing backends
 * at equal recall; undefined when none reaches it.
 */
export function fastestAtRecall(rows: readonly SeamRow[], recall: number): SeamRow | undefined {
  return rows.filter((row) => row.recall >= recall).sort((a, b) => a.p50Ms - b.p50Ms)[0];
}
