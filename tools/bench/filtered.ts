/**
 * The filtered section of bench:scale: does a metadata filter cost recall? Every item gets a
 * `bucket` from 0 to 99 drawn independently of its vector, and `{bucket: {$lt: s}}` keeps
 * s% of them (1%, 10%, 50%). Recall@10 of `nearest` with the filter, through the storage
 * seam, is measured against the exact top 10 among the matching items (computed here, not by
 * the store): on SQLite as the product runs (matches up to 10,000 are scanned exactly, more go
 * through HNSW with the filter) and with HNSW forced at every selectivity; the same two on
 * Postgres + pgvector (whose index walk is an iterative scan in strict order).
 */
import { rmSync } from "node:fs";
import path from "node:path";
import type { VectorType } from "../../src/store/postgres/hnsw-index.ts";
import { PostgresStore } from "../../src/store/postgres/store.ts";
import { SqliteStore } from "../../src/store/sqlite/store.ts";
import type { ItemStore } from "../../src/store/types.ts";
import type { BenchContext } from "./context.ts";
import { benchItems, bulkLoadPostgres, MODEL, rowOf } from "./scale.ts";
import { percentile } from "./stats.ts";
import { clusteredUnitVectors, exactTopK, meanRecall, seededRandom } from "./vectors.ts";

export interface FilteredParams {
  count: number;
  dims: number;
  queries: number;
  m: number;
  efConstruction: number;
  efSearch: number;
  /** The type of the pgvector index (halfvec builds ~19x slower in PGlite; see docs/scaling.md). */
  vectorType: VectorType;
  selectivities: readonly number[];
  databaseUrl: string;
}

export interface FilteredRow {
  backend: string;
  /** Percent of items the filter keeps. */
  selectivity: number;
  matching: number;
  recallAt10: number;
  /** Mean hits returned (fewer than 10 is lost recall too). */
  meanHits: number;
  p50Ms: number;
}

export interface FilteredResult {
  count: number;
  dims: number;
  queries: number;
  efSearch: number;
  rows: FilteredRow[];
}

/** The exact top 10 among the items whose bucket is below `selectivity`, as item rows. */
function filteredTruth(
  data: Float32Array,
  dims: number,
  buckets: readonly number[],
  queries: Float32Array,
  selectivity: number,
): { truth: number[][]; matching: number } {
  const rows = buckets.flatMap((bucket, i) => (bucket < selectivity ? [i] : []));
  const subset = new Float32Array(rows.length * dims);
  rows.forEach((row, j) => {
    subset.set(rowOf(data, dims, row), j * dims);
  });
  const truth = exactTopK(subset, dims, queries, 10).map((ids) =>
    ids.map((j) => rows[j] as number),
  );
  return { truth, matching: rows.length };
}

async function measure(
  store: ItemStore,
  backend: string,
  queries: Float32Array,
  dims: number,
  selectivity: number,
  truth: { truth: number[][]; matching: number },
): Promise<FilteredRow> {
  const found: number[][] = [];
  const times: number[] = [];
  for (let q = 0; q < queries.length / dims; q++) {
    const started = performance.now();
    const hits = await store.nearest(
      { vector: rowOf(queries, dims, q), k: 10, filter: { bucket: { $lt: selectivity } } },
      MODEL,
    );
    times.push(performance.now() - started);
    found.push(hits.map((h) => Number(h.item.id.slice(1))));
  }
  return {
    backend,
    selectivity,
    matching: truth.matching,
    recallAt10: meanRecall(found, truth.truth),
    meanHits: found.reduce((sum, row) => sum + row.length, 0) / found.length,
    p50Ms: percentile(times, 50),
  };
}

export async function measureFiltered(
  ctx: BenchContext,
  params: FilteredParams,
): Promise<FilteredResult> {
  const clusters = { clusters: Math.max(10, Math.round(params.count / 100)), spread: 0.05 };
  ctx.log(`filtered: ${params.count} clustered ${params.dims}-d vectors`);
  const data = clusteredUnitVectors(params.count, params.dims, clusters, 21, 1);
  const queries = clusteredUnitVectors(params.queries, params.dims, clusters, 22, 1);
  const random = seededRandom(23);
  const buckets = Array.from({ length: params.count }, () => Math.floor(random() * 100));
  const bucketOf = (row: number) => ({ bucket: buckets[row] });
  const truths = new Map(
    params.selectivities.map((s) => [s, filteredTruth(data, params.dims, buckets, queries, s)]),
  );
  const result: FilteredResult = {
    count: params.count,
    dims: params.dims,
    queries: params.queries,
    efSearch: params.efSearch,
    rows: [],
  };
  const index = { m: params.m, efConstruction: params.efConstruction, efSearch: params.efSearch };

  const dir = path.join(ctx.workDir, `filtered-sqlite-${params.count}`);
  rmSync(dir, { recursive: true, force: true });
  ctx.log("filtered: SQLite + HNSW load");
  const loader = new SqliteStore({ dataDir: dir, indexSaveIntervalMs: 0, ...index });
  await loader.setModel({ modelId: MODEL, dims: params.dims });
  for (let start = 0; start < params.count; start += 1000) {
    const end = Math.min(params.count, start + 1000);
    await loader.insertItems(benchItems(data, params.dims, start, end, bucketOf), MODEL);
  }
  await loader.close();
  for (const [label, exactFilterLimit] of [
    ["SQLite (product: exact scan up to 10,000 matches)", undefined],
    ["SQLite, HNSW with the filter forced", 0],
  ] as const) {
    const store = new SqliteStore({
      dataDir: dir,
      indexSaveIntervalMs: 0,
      ...index,
      ...(exactFilterLimit === undefined ? {} : { exactFilterLimit }),
    });
    await store.prepare();
    for (const s of params.selectivities) {
      result.rows.push(
        await measure(store, label, queries, params.dims, s, truths.get(s) as never),
      );
    }
    await store.close();
  }
  rmSync(dir, { recursive: true, force: true });

  const open = (exactFilterLimit?: number) =>
    PostgresStore.open({
      url: params.databaseUrl,
      vectorType: params.vectorType,
      ...index,
      ...(exactFilterLimit === undefined ? {} : { exactFilterLimit }),
    });
  const setup = await open();
  await setup.setModel({ modelId: MODEL, dims: params.dims });
  await setup.close();
  ctx.log("filtered: Postgres load");
  await bulkLoadPostgres(params.databaseUrl, data, params.dims, bucketOf);
  ctx.log(`filtered: pgvector HNSW build (${params.vectorType})`);
  const builder = await open();
  await builder.prepare();
  await builder.close();
  for (const [label, exactFilterLimit] of [
    [`pgvector ${params.vectorType} (product: exact scan up to 10,000 matches)`, undefined],
    [`pgvector ${params.vectorType}, HNSW iterative scan forced`, 0],
  ] as const) {
    const store = await open(exactFilterLimit);
    try {
      for (const s of params.selectivities) {
        result.rows.push(
          await measure(store, label, queries, params.dims, s, truths.get(s) as never),
        );
      }
    } finally {
      await store.close();
    }
  }
  return result;
}
