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
import pg from "pg";
import { toSql } from "pgvector";
import { PostgresStore, type VectorType } from "../store/postgres/store.ts";
import { SqliteStore } from "../store/sqlite/store.ts";
import type { ItemStore, NewItem } from "../store/types.ts";
import type { BenchContext } from "./context.ts";
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

const MODEL = "bench-model";

function rowOf(data: Float32Array, dims: number, i: number): Float32Array {
  return data.subarray(i * dims, (i + 1) * dims);
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

function newItems(
  data: Float32Array,
  dims: number,
  buckets: readonly number[],
  start: number,
  end: number,
): NewItem[] {
  const entries: NewItem[] = [];
  for (let i = start; i < end; i++) {
    entries.push({
      id: `v${i}`,
      sha256: i.toString(16).padStart(64, "0"),
      metadata: { bucket: buckets[i] },
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

/** Bulk load without the HNSW index; `prepare()` then builds it with the store's settings. */
async function loadPostgres(
  url: string,
  data: Float32Array,
  buckets: readonly number[],
  dims: number,
) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query("DROP INDEX IF EXISTS longclip.items_embedding_hnsw");
    await client.query("DELETE FROM longclip.meta WHERE key = 'hnsw_index'");
    for (let start = 0; start < buckets.length; start += 500) {
      const ids: string[] = [];
      const vectors: string[] = [];
      const metadata: string[] = [];
      for (let i = start; i < Math.min(buckets.length, start + 500); i++) {
        ids.push(String(i));
        vectors.push(toSql(Array.from(rowOf(data, dims, i))) as string);
        metadata.push(JSON.stringify({ bucket: buckets[i] }));
      }
      await client.query(
        `INSERT INTO longclip.items (id, sha256, metadata, content_type, width, height, bytes, source, path, model_id, embedding)
         SELECT 'v' || n, lpad(n, 64, '0'), m::jsonb, 'image/png', 1, 1, 1, 'path', '/bench/' || n, $4, e::vector
         FROM unnest($1::text[], $2::text[], $3::text[]) AS t(n, e, m)`,
        [ids, vectors, metadata, MODEL],
      );
    }
    await client.query("ANALYZE longclip.items");
  } finally {
    await client.end();
  }
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
    await loader.insertItems(newItems(data, params.dims, buckets, start, end), MODEL);
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
  await loadPostgres(params.databaseUrl, data, buckets, params.dims);
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
