/**
 * The scale sections of bench:perf: nearest-neighbour search through the storage seam on the
 * embedded backend (SQLite + hnswlib) against Postgres + pgvector (HNSW on `vector` and on
 * `halfvec`), on the same clustered vectors: recall@10 against exact search and p50/p99 of
 * `nearest` per efSearch, index build time and size, on the Postgres at `databaseUrl` (the
 * caller's: bench:scale starts a native server where it can run, else PGlite, whose absolute
 * times are a lower bound for a native one); the recall figures are the engine's own.
 */
import { rmSync } from "node:fs";
import path from "node:path";
import pg from "pg";
import { toSql } from "pgvector";
import type { VectorType } from "../../src/store/postgres/hnsw-index.ts";
import { PostgresStore } from "../../src/store/postgres/store.ts";
import { SqliteStore } from "../../src/store/sqlite/store.ts";
import type { ItemStore, NewItem } from "../../src/store/types.ts";
import type { BenchContext } from "./context.ts";
import { percentile } from "./stats.ts";
import { clusteredUnitVectors, exactTopK, meanRecall } from "./vectors.ts";

export interface ScaleParams {
  count: number;
  dims: number;
  queries: number;
  m: number;
  efConstruction: number;
  efSearch: readonly number[];
  /** A Postgres URL to an empty database (the bench owns its `longclip` schema). */
  databaseUrl: string;
}

export interface ScaleRow {
  backend: string;
  efSearch: number;
  recallAt10: number;
  p50Ms: number;
  p99Ms: number;
}

export interface ScaleResult {
  count: number;
  dims: number;
  m: number;
  efConstruction: number;
  /** p50 of `SELECT 1` on the Postgres: what every query pays before any work. */
  postgresRoundTripMs: number;
  /** Seconds to load the vectors and build each backend's index. */
  build: { backend: string; loadSeconds: number; indexSeconds: number; indexBytes: number }[];
  rows: ScaleRow[];
}

export const MODEL = "bench-model";

export function rowOf(data: Float32Array, dims: number, i: number): Float32Array {
  return data.subarray(i * dims, (i + 1) * dims);
}

async function measureQueries(
  store: ItemStore,
  backend: string,
  efSearch: number,
  queries: Float32Array,
  dims: number,
  truth: number[][],
): Promise<ScaleRow> {
  const found: number[][] = [];
  const times: number[] = [];
  const count = queries.length / dims;
  for (let q = 0; q < count; q++) {
    const started = performance.now();
    const hits = await store.nearest({ vector: rowOf(queries, dims, q), k: 10 }, MODEL);
    times.push(performance.now() - started);
    // Item ids are "v<row>": the row number is what exact search returns.
    found.push(hits.map((h) => Number(h.item.id.slice(1))));
  }
  return {
    backend,
    efSearch,
    recallAt10: meanRecall(found, truth),
    p50Ms: percentile(times, 50),
    p99Ms: percentile(times, 99),
  };
}

async function loadSqlite(dir: string, data: Float32Array, params: ScaleParams) {
  const store = new SqliteStore({
    dataDir: dir,
    indexSaveIntervalMs: 0,
    m: params.m,
    efConstruction: params.efConstruction,
    efSearch: params.efSearch[0] ?? 100,
  });
  await store.setModel({ modelId: MODEL, dims: params.dims });
  const started = performance.now();
  for (let start = 0; start < params.count; start += 1000) {
    const end = Math.min(params.count, start + 1000);
    await store.insertItems(benchItems(data, params.dims, start, end), MODEL);
  }
  // The HNSW index grows with every insert: load and index build are one step here.
  return { store, seconds: (performance.now() - started) / 1000 };
}

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

/**
 * Loads items "v<row>" with plain INSERTs and no HNSW index (dropped first), as a bulk load
 * should; returns the seconds taken.
 */
export async function bulkLoadPostgres(
  url: string,
  data: Float32Array,
  dims: number,
  metadataOf: (row: number) => Record<string, unknown> = () => ({}),
): Promise<number> {
  const count = data.length / dims;
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  const started = performance.now();
  try {
    await client.query("DROP INDEX IF EXISTS longclip.items_embedding_hnsw");
    await client.query("DELETE FROM longclip.meta WHERE key = 'hnsw_index'");
    for (let start = 0; start < count; start += 500) {
      const ids: string[] = [];
      const vectors: string[] = [];
      const metadata: string[] = [];
      for (let i = start; i < Math.min(count, start + 500); i++) {
        ids.push(String(i));
        vectors.push(toSql(Array.from(rowOf(data, dims, i))) as string);
        metadata.push(JSON.stringify(metadataOf(i)));
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
  return (performance.now() - started) / 1000;
}

/** p50 of a query that does nothing: the round-trip floor of this Postgres over its socket. */
async function roundTripMs(url: string): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const times: number[] = [];
    for (let i = 0; i < 200; i++) {
      const started = performance.now();
      await client.query("SELECT 1");
      times.push(performance.now() - started);
    }
    return percentile(times, 50);
  } finally {
    await client.end();
  }
}

async function buildPgIndex(url: string, type: VectorType, params: ScaleParams) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const name = `bench_hnsw_${type}`;
    const started = performance.now();
    await client.query(`DROP INDEX IF EXISTS longclip.${name}`);
    await client.query(
      `CREATE INDEX ${name} ON longclip.items USING hnsw ((embedding::${type}(${params.dims})) ${type}_cosine_ops) WITH (m = ${params.m}, ef_construction = ${params.efConstruction})`,
    );
    const seconds = (performance.now() - started) / 1000;
    const size = await client.query<{ bytes: string }>(
      "SELECT pg_relation_size($1::regclass) AS bytes",
      [`longclip.${name}`],
    );
    return { seconds, bytes: Number(size.rows[0]?.bytes ?? 0) };
  } finally {
    await client.end();
  }
}

export async function measureScale(ctx: BenchContext, params: ScaleParams): Promise<ScaleResult> {
  const clusters = { clusters: Math.max(10, Math.round(params.count / 100)), spread: 0.05 };
  ctx.log(`scale: ${params.count} clustered ${params.dims}-d vectors`);
  const data = clusteredUnitVectors(params.count, params.dims, clusters, 11, 1);
  const queries = clusteredUnitVectors(params.queries, params.dims, clusters, 12, 1);
  const truth = exactTopK(data, params.dims, queries, 10);
  const result: ScaleResult = {
    count: params.count,
    dims: params.dims,
    m: params.m,
    efConstruction: params.efConstruction,
    postgresRoundTripMs: await roundTripMs(params.databaseUrl),
    build: [],
    rows: [],
  };

  const dir = path.join(ctx.workDir, `scale-sqlite-${params.count}`);
  rmSync(dir, { recursive: true, force: true });
  ctx.log("scale: SQLite + HNSW load");
  const sqlite = await loadSqlite(dir, data, params);
  result.build.push({
    backend: "SQLite + hnswlib",
    loadSeconds: sqlite.seconds,
    indexSeconds: 0,
    indexBytes: 0,
  });
  await sqlite.store.close();
  for (const ef of params.efSearch) {
    const store = new SqliteStore({
      dataDir: dir,
      indexSaveIntervalMs: 0,
      m: params.m,
      efConstruction: params.efConstruction,
      efSearch: ef,
    });
    await store.prepare();
    result.rows.push(
      await measureQueries(store, "SQLite + hnswlib", ef, queries, params.dims, truth),
    );
    await store.close();
  }
  rmSync(dir, { recursive: true, force: true });

  const open = (type: VectorType, ef: number) =>
    PostgresStore.open({
      url: params.databaseUrl,
      vectorType: type,
      m: params.m,
      efConstruction: params.efConstruction,
      efSearch: ef,
    });
  const setup = await open("halfvec", 40);
  await setup.setModel({ modelId: MODEL, dims: params.dims });
  await setup.close();
  ctx.log("scale: Postgres load");
  const loadSeconds = await bulkLoadPostgres(params.databaseUrl, data, params.dims);
  for (const type of ["halfvec", "vector"] as const) {
    ctx.log(`scale: pgvector HNSW build (${type})`);
    const built = await buildPgIndex(params.databaseUrl, type, params);
    const backend = `pgvector ${type}`;
    result.build.push({
      backend,
      loadSeconds,
      indexSeconds: built.seconds,
      indexBytes: built.bytes,
    });
    for (const ef of params.efSearch) {
      const store = await open(type, ef);
      result.rows.push(await measureQueries(store, backend, ef, queries, params.dims, truth));
      await store.close();
    }
    ctx.log(`scale: ${backend} measured`);
  }
  return result;
}
