/**
 * Index section of bench:perf: HNSW (our HnswIndex over hnswlib-node) build rate, memory per
 * vector, and queries/s with recall@10 against exact search, per efSearch.
 */
import { mkdtempSync, rmSync, statSync } from "node:fs";
import path from "node:path";
import { HnswIndex, type HnswOptions } from "../../src/vector-index/hnsw.ts";
import type { BenchContext } from "./context.ts";
import { clusteredUnitVectors, exactTopK, meanRecall, randomUnitVectors } from "./vectors.ts";

export interface EfRow {
  efSearch: number;
  queriesPerS: number;
  recallAt10: number;
}

export interface IndexResult {
  dataset: string;
  count: number;
  dims: number;
  m: number;
  efConstruction: number;
  buildSeconds: number;
  buildVectorsPerS: number;
  rssBytesPerVector: number;
  fileBytesPerVector: number;
  queries: number;
  exactQueriesPerS: number;
  rows: EfRow[];
  /** Smallest efSearch measured with recall@10 ≥ 0.98, if any. */
  efFor098: number | undefined;
}

export interface IndexDataset {
  name: string;
  count: number;
  kind: "uniform" | "clustered";
}

export interface IndexParams {
  dims: number;
  m: number;
  efConstruction: number;
  efSearch: readonly number[];
  queries: number;
  clusters: number;
  spread: number;
}

function vectorsFor(dataset: IndexDataset, params: IndexParams, count: number, seed: number) {
  return dataset.kind === "uniform"
    ? randomUnitVectors(count, params.dims, seed)
    : clusteredUnitVectors(
        count,
        params.dims,
        { clusters: params.clusters, spread: params.spread },
        seed,
        1,
      );
}

export async function measureIndex(
  ctx: BenchContext,
  dataset: IndexDataset,
  params: IndexParams,
): Promise<IndexResult> {
  const { dims, count } = { dims: params.dims, count: dataset.count };
  ctx.log(`index ${dataset.name}: generating ${count.toLocaleString("en-US")} ${dims}-d vectors`);
  const data = vectorsFor(dataset, params, count, 11);
  const queries = vectorsFor(dataset, params, params.queries, 23);

  global.gc?.();
  const rssBefore = process.memoryUsage().rss;
  // HnswIndex keeps this object and reads efSearch at each search, so the sweep below can
  // change it between searches without rebuilding the index.
  const options: HnswOptions = {
    dims,
    m: params.m,
    efConstruction: params.efConstruction,
    efSearch: params.efSearch[0] ?? 16,
    capacity: count,
  };
  const index = HnswIndex.create(options);
  const started = performance.now();
  const step = Math.max(1, Math.floor(count / 10));
  for (let i = 0; i < count; i++) {
    index.add(i, data.subarray(i * dims, (i + 1) * dims));
    if ((i + 1) % step === 0) {
      const seconds = (performance.now() - started) / 1000;
      ctx.log(`index ${dataset.name}: ${i + 1}/${count} inserted (${seconds.toFixed(0)} s)`);
    }
  }
  const buildSeconds = (performance.now() - started) / 1000;
  global.gc?.();
  const rssDelta = process.memoryUsage().rss - rssBefore;

  const dir = mkdtempSync(path.join(ctx.workDir, "hnsw-"));
  let fileBytes: number;
  try {
    const file = path.join(dir, "index.bin");
    index.save(file);
    fileBytes = statSync(file).size;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  ctx.log(`index ${dataset.name}: exact top-10 of ${params.queries} queries (brute force)`);
  const exactStarted = performance.now();
  const exact = exactTopK(data, dims, queries, 10);
  const exactSeconds = (performance.now() - exactStarted) / 1000;

  const rows: EfRow[] = [];
  // The listed values, then doublings until recall@10 reaches 0.98 (or efSearch 4096), so the
  // setting that reaches the target is found whenever it exists.
  const sweep = [...params.efSearch];
  for (let i = 0; i < sweep.length; i++) {
    const ef = sweep[i] as number;
    options.efSearch = ef;
    const found: number[][] = [];
    const t0 = performance.now();
    for (let q = 0; q < params.queries; q++) {
      const hits = index.search(queries.subarray(q * dims, (q + 1) * dims), 10);
      found.push(hits.map((h) => h.label));
    }
    const seconds = (performance.now() - t0) / 1000;
    rows.push({
      efSearch: ef,
      queriesPerS: params.queries / seconds,
      recallAt10: meanRecall(found, exact),
    });
    ctx.log(
      `index ${dataset.name}: efSearch ${ef} recall@10 ${rows.at(-1)?.recallAt10.toFixed(3)}`,
    );
    const reached = rows.some((r) => r.recallAt10 >= 0.98);
    if (i === sweep.length - 1 && !reached && ef < 4096) sweep.push(ef * 2);
  }
  return {
    dataset: dataset.name,
    count,
    dims,
    m: params.m,
    efConstruction: params.efConstruction,
    buildSeconds,
    buildVectorsPerS: count / buildSeconds,
    rssBytesPerVector: rssDelta / count,
    fileBytesPerVector: fileBytes / count,
    queries: params.queries,
    exactQueriesPerS: params.queries / exactSeconds,
    rows,
    efFor098: rows.find((r) => r.recallAt10 >= 0.98)?.efSearch,
  };
}

/** bench:perf's index sections, each with the set it builds. */
export type IndexSection = "index100k" | "index1m" | "clustered";

/**
 * The sets of the index sections: two uniform ones of `uniformSizes[0]` and `[1]` vectors (a
 * missing size falls back to 100k / 1M) and a clustered one.
 */
export function indexDatasets(
  uniformSizes: readonly number[],
  clusteredSize: number,
): [IndexSection, IndexDataset][] {
  const uniform = (size: number | undefined, fallback: number): IndexDataset => ({
    name: `uniform ${(size ?? 0).toLocaleString("en-US")}`,
    count: size ?? fallback,
    kind: "uniform",
  });
  return [
    ["index100k", uniform(uniformSizes[0], 100_000)],
    ["index1m", uniform(uniformSizes[1], 1_000_000)],
    [
      "clustered",
      {
        name: `clustered ${clusteredSize.toLocaleString("en-US")}`,
        count: clusteredSize,
        kind: "clustered",
      },
    ],
  ];
}

/**
 * measureIndex of each set in turn. `onResult` gets the results so far after each set, so an
 * interrupted benchmark keeps what it measured.
 */
export async function measureIndexSets(
  ctx: BenchContext,
  datasets: readonly IndexDataset[],
  params: IndexParams,
  onResult: (results: IndexResult[]) => void,
): Promise<IndexResult[]> {
  const results: IndexResult[] = [];
  for (const dataset of datasets) {
    results.push(await measureIndex(ctx, dataset, params));
    onResult(results);
  }
  return results;
}
