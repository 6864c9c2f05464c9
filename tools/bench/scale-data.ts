/**
 * The data set of bench:scale: `count` clustered unit vectors (seeded, so every run draws the
 * same), each item with a `bucket` from 0 to 99 drawn independently of its vector (a filter
 * `{bucket: {$lt: s}}` keeps s% of the items), the query vectors, and the exact answers that
 * recall is measured against: the top 100 of each query over all items, and the top 10 among
 * the items of each filter. Exact answers take minutes at a million vectors, so they are kept
 * in the cache directory (outside the repository) and reused by the next run.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import path from "node:path";
import { clusteredUnitVectors, exactTopK, rowOf, seededRandom } from "./vectors.ts";

export interface ScaleDataset {
  /** Names the data set in the cache and in the databases the bench fills. */
  tag: string;
  count: number;
  dims: number;
  data: Float32Array;
  queries: Float32Array;
  queryCount: number;
  buckets: Uint8Array;
  /** Exact top TRUTH_K rows of each query, best first. */
  truth: number[][];
  /** Per selectivity (percent): the exact top 10 rows among matching items, and their number. */
  filtered: Map<number, { truth: number[][]; matching: number }>;
}

/** Depth of the exact answers kept: recall@k for k up to 100 can be measured. */
export const TRUTH_K = 100;
export const SELECTIVITIES = [1, 10, 50] as const;
/** Queries of the filtered section (the first ones of the query set). */
export const FILTERED_QUERIES = 100;

/** The generator's version: bump it when the vectors change, so caches are not reused. */
const GENERATOR = 1;

export function datasetTag(count: number, dims: number): string {
  return `clustered-v${GENERATOR}-${count}x${dims}`;
}

function cached<T>(file: string, compute: () => T, log: (message: string) => void): T {
  if (existsSync(file)) return JSON.parse(readFileSync(file, "utf8")) as T;
  const value = compute();
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(`${file}.tmp`, JSON.stringify(value));
  renameSync(`${file}.tmp`, file);
  log(`saved ${file}`);
  return value;
}

export function loadDataset(
  cacheDir: string,
  params: { count: number; dims: number; queries: number },
  log: (message: string) => void,
): ScaleDataset {
  const { count, dims } = params;
  const tag = datasetTag(count, dims);
  const clusters = { clusters: Math.max(10, Math.round(count / 100)), spread: 0.05 };
  log(`data: ${count.toLocaleString("en-US")} clustered ${dims}-d vectors`);
  const data = clusteredUnitVectors(count, dims, clusters, 11, 1);
  const queries = clusteredUnitVectors(params.queries, dims, clusters, 12, 1);
  const random = seededRandom(23);
  const buckets = new Uint8Array(count);
  for (let i = 0; i < count; i++) buckets[i] = Math.floor(random() * 100);
  const dir = path.join(cacheDir, tag);
  const truth = cached(
    path.join(dir, `truth-${params.queries}q.json`),
    () => {
      log(`data: exact top ${TRUTH_K} of ${params.queries} queries (minutes at 1M)`);
      return exactTopK(data, dims, queries, TRUTH_K);
    },
    log,
  );
  const filteredQueries = queries.subarray(0, Math.min(FILTERED_QUERIES, params.queries) * dims);
  const filtered = new Map<number, { truth: number[][]; matching: number }>();
  for (const selectivity of SELECTIVITIES) {
    filtered.set(
      selectivity,
      cached(
        path.join(dir, `filtered-${selectivity}-${filteredQueries.length / dims}q.json`),
        () => {
          log(`data: exact filtered top 10 at ${selectivity}%`);
          const rows: number[] = [];
          for (let i = 0; i < count; i++) if ((buckets[i] as number) < selectivity) rows.push(i);
          const subset = new Float32Array(rows.length * dims);
          rows.forEach((row, j) => {
            subset.set(rowOf(data, dims, row), j * dims);
          });
          const top = exactTopK(subset, dims, filteredQueries, 10);
          return {
            truth: top.map((ids) => ids.map((j) => rows[j] as number)),
            matching: rows.length,
          };
        },
        log,
      ),
    );
  }
  return {
    tag,
    count,
    dims,
    data,
    queries,
    queryCount: params.queries,
    buckets,
    truth,
    filtered,
  };
}
