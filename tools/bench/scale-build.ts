/**
 * Loading and indexing the bench:scale data set, the long part at a million vectors, kept in
 * the cache so that a crash or a second run does not pay it again:
 * - the embedded backend: the product's SqliteStore in a data directory under the cache,
 *   filled through `insertItems` (SQLite rows and hnswlib inserts, as ingest does), resumed
 *   from the last committed batch;
 * - Postgres: rows loaded with bulk INSERTs and no index (as a first big load should be), then
 *   one HNSW index per vector type built by the product's own builder (createHnswIndex: its
 *   maintenance_work_mem and parallel workers), each named for its type so both stay; the
 *   progress and the build figures are `meta` rows of the database itself.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import type pg from "pg";
import { toSql } from "pgvector";
import { DEFAULT_SETTINGS } from "../../src/core/settings.ts";
import {
  createHnswIndex,
  type HnswIndexSettings,
  indexSignature,
  type VectorType,
} from "../../src/store/postgres/hnsw-index.ts";
import { PostgresStore } from "../../src/store/postgres/store.ts";
import { SqliteStore } from "../../src/store/sqlite/store.ts";
import { withClient } from "./postgres-admin.ts";
import { benchItems } from "./scale.ts";
import type { ScaleDataset } from "./scale-data.ts";
import { rowOf } from "./vectors.ts";

export interface BuildRecord {
  backend: string;
  /** Seconds to load the rows (embedded: rows and HNSW inserts together). */
  loadSeconds: number;
  /** Seconds of the HNSW build after the load (Postgres). */
  indexSeconds?: number;
  indexBytes: number;
  /** Postgres: the build's maintenance_work_mem, and whether it ran with parallel workers. */
  memoryMb?: number;
  parallel?: boolean;
  /** Postgres notices of the build (e.g. "hnsw graph no longer fits into maintenance_work_mem"). */
  notices?: string[];
  /** ISO time the build finished: a record read from the cache says when it was measured. */
  builtAt: string;
}

/** The product's index parameters: what a user gets without flags. */
export const INDEX = {
  m: DEFAULT_SETTINGS.hnswM,
  efConstruction: DEFAULT_SETTINGS.hnswEfConstruction,
};

const SQLITE_BATCH = 1000;
const PG_BATCH = 500;

export function sqliteDir(cacheDir: string, dataset: ScaleDataset): string {
  return path.join(cacheDir, dataset.tag, `sqlite-m${INDEX.m}-efc${INDEX.efConstruction}`);
}

const bucketOf = (dataset: ScaleDataset) => (row: number) => ({ bucket: dataset.buckets[row] });

function progress(log: (m: string) => void, what: string, done: number, total: number, t0: number) {
  const seconds = (performance.now() - t0) / 1000;
  log(
    `${what}: ${done.toLocaleString("en-US")}/${total.toLocaleString("en-US")} (${(done / Math.max(seconds, 1e-3)).toFixed(0)}/s this run)`,
  );
}

/** Fills (or resumes filling) the embedded store; returns its build record. */
export async function buildSqlite(
  cacheDir: string,
  dataset: ScaleDataset,
  modelId: string,
  log: (message: string) => void,
): Promise<BuildRecord> {
  const dir = sqliteDir(cacheDir, dataset);
  const stateFile = path.join(dir, "bench-build.json");
  const state = existsSync(stateFile)
    ? (JSON.parse(readFileSync(stateFile, "utf8")) as { seconds: number; record?: BuildRecord })
    : { seconds: 0 };
  if (state.record !== undefined) return state.record;
  mkdirSync(dir, { recursive: true });
  const store = new SqliteStore({
    dataDir: dir,
    // Saved every few minutes, so a resumed load re-adds little to the graph.
    indexSaveIntervalMs: 300_000,
    ...INDEX,
    efSearch: 0,
  });
  try {
    await store.setModel({ modelId, dims: dataset.dims });
    let done = await store.count();
    log(`sqlite: loading from row ${done.toLocaleString("en-US")}`);
    const t0 = performance.now();
    while (done < dataset.count) {
      const end = Math.min(dataset.count, done + SQLITE_BATCH);
      await store.insertItems(
        benchItems(dataset.data, dataset.dims, done, end, bucketOf(dataset)),
        modelId,
      );
      done = end;
      if (done % 25_000 === 0 || done === dataset.count) {
        progress(log, "sqlite", done, dataset.count, t0);
        // The time so far survives a crash: a resumed load adds to it.
        const seconds = state.seconds + (performance.now() - t0) / 1000;
        writeFileSync(stateFile, JSON.stringify({ seconds }));
      }
    }
    await store.flush();
    const seconds = state.seconds + (performance.now() - t0) / 1000;
    const indexDir = path.join(dir, "index");
    const indexBytes = readdirSync(indexDir)
      .filter((name) => name.startsWith("hnsw-"))
      .reduce((sum, name) => sum + statSync(path.join(indexDir, name)).size, 0);
    const record: BuildRecord = {
      backend: "SQLite + hnswlib",
      loadSeconds: seconds,
      indexBytes,
      builtAt: new Date().toISOString(),
    };
    writeFileSync(stateFile, JSON.stringify({ seconds, record }));
    return record;
  } finally {
    await store.close();
  }
}

async function metaValue(client: pg.Client, key: string): Promise<string | undefined> {
  const result = await client.query<{ value: string }>(
    "SELECT value FROM longclip.meta WHERE key = $1",
    [key],
  );
  return result.rows[0]?.value;
}

async function setMeta(client: pg.Client, key: string, value: string): Promise<void> {
  await client.query(
    "INSERT INTO longclip.meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    [key, value],
  );
}

/**
 * Loads the data set into the database at `url` (resuming a load of the same data set, or
 * replacing the product schema if it holds anything else); returns the load's seconds.
 */
export async function loadPostgres(
  url: string,
  dataset: ScaleDataset,
  modelId: string,
  log: (message: string) => void,
): Promise<number> {
  const store = await PostgresStore.open({ url, vectorType: "halfvec", ...INDEX, efSearch: 0 });
  await store.close();
  return withClient(url, async (client) => {
    const loaded = await metaValue(client, "bench_dataset");
    if (loaded !== undefined && loaded !== dataset.tag) {
      log(`postgres: the database holds ${loaded}; replacing it with ${dataset.tag}`);
      await client.query("DROP SCHEMA longclip CASCADE");
    }
    if (loaded !== dataset.tag) {
      const fresh = await PostgresStore.open({ url, vectorType: "halfvec", ...INDEX, efSearch: 0 });
      await fresh.setModel({ modelId, dims: dataset.dims });
      await fresh.close();
      // A bulk load inserts without the index; the builds come after it.
      await client.query("DROP INDEX IF EXISTS longclip.items_embedding_hnsw");
      await client.query("DELETE FROM longclip.meta WHERE key = 'hnsw_index'");
      await setMeta(client, "bench_dataset", dataset.tag);
    }
    const state = JSON.parse((await metaValue(client, "bench_load")) ?? '{"seconds":0}') as {
      seconds: number;
      done?: boolean;
    };
    if (state.done) return state.seconds;
    const counted = await client.query<{ n: number }>(
      "SELECT count(*)::bigint AS n FROM longclip.items",
    );
    let done = Number(counted.rows[0]?.n ?? 0);
    log(`postgres: loading from row ${done.toLocaleString("en-US")}`);
    const t0 = performance.now();
    while (done < dataset.count) {
      const end = Math.min(dataset.count, done + PG_BATCH);
      const ids: string[] = [];
      const vectors: string[] = [];
      const metadata: string[] = [];
      for (let i = done; i < end; i++) {
        ids.push(String(i));
        vectors.push(toSql(Array.from(rowOf(dataset.data, dataset.dims, i))) as string);
        metadata.push(JSON.stringify({ bucket: dataset.buckets[i] }));
      }
      await client.query("BEGIN");
      await client.query(
        `INSERT INTO longclip.items (id, sha256, metadata, content_type, width, height, bytes, source, path, model_id, embedding)
         SELECT 'v' || n, lpad(n, 64, '0'), m::jsonb, 'image/png', 1, 1, 1, 'path', '/bench/' || n, $4, e::vector
         FROM unnest($1::text[], $2::text[], $3::text[]) AS t(n, e, m)`,
        [ids, vectors, metadata, modelId],
      );
      await setMeta(
        client,
        "bench_load",
        JSON.stringify({ seconds: state.seconds + (performance.now() - t0) / 1000 }),
      );
      await client.query("COMMIT");
      done = end;
      if (done % 50_000 === 0 || done === dataset.count) {
        progress(log, "postgres", done, dataset.count, t0);
      }
    }
    await client.query("ANALYZE longclip.items");
    const seconds = state.seconds + (performance.now() - t0) / 1000;
    await setMeta(client, "bench_load", JSON.stringify({ seconds, done: true }));
    return seconds;
  });
}

export function pgIndexName(type: VectorType): string {
  return `bench_hnsw_${type}`;
}

export function pgIndexSettings(type: VectorType): HnswIndexSettings {
  return { vectorType: type, ...INDEX, buildMemoryMb: 0, buildWorkers: 0 };
}

/** Builds the `type` index with the product's builder, unless the cache has it. */
export async function buildPgIndex(
  url: string,
  dataset: ScaleDataset,
  type: VectorType,
  loadSeconds: number,
  log: (message: string) => void,
): Promise<BuildRecord> {
  return withClient(url, async (client) => {
    const key = `bench_build_${type}`;
    const cached = await metaValue(client, key);
    if (cached !== undefined) return JSON.parse(cached) as BuildRecord;
    const name = pgIndexName(type);
    const notices: string[] = [];
    client.on("notice", (notice) => notices.push(notice.message ?? String(notice)));
    log(`postgres: building the HNSW index on ${type}`);
    await client.query(`DROP INDEX IF EXISTS longclip.${name}`);
    const t0 = performance.now();
    await client.query("BEGIN");
    const built = await createHnswIndex(client, pgIndexSettings(type), dataset.dims, name);
    await client.query("COMMIT");
    const indexSeconds = (performance.now() - t0) / 1000;
    const size = await client.query<{ bytes: string }>(
      "SELECT pg_relation_size($1::regclass) AS bytes",
      [`longclip.${name}`],
    );
    const record: BuildRecord = {
      backend: `pgvector ${type}`,
      loadSeconds,
      indexSeconds,
      indexBytes: Number(size.rows[0]?.bytes ?? 0),
      memoryMb: built.memoryMb,
      parallel: built.parallel,
      notices,
      builtAt: new Date().toISOString(),
    };
    await setMeta(client, key, JSON.stringify(record));
    log(`postgres: ${type} index built in ${indexSeconds.toFixed(0)} s`);
    return record;
  });
}

/**
 * Makes the product take the `type` index as its own (the `meta` row ensureIndex compares), so a
 * node started with `--pg-vector-type type` searches it instead of rebuilding one.
 */
export async function adoptPgIndex(url: string, type: VectorType, dims: number): Promise<void> {
  await withClient(url, (client) =>
    setMeta(client, "hnsw_index", indexSignature(pgIndexSettings(type), dims)),
  );
}
