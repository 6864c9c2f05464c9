/**
 * The pgvector HNSW indexes over `items.embedding` and `item_parts.embedding`: built on a cast of the column to the
 * configured type (`halfvec` or `vector`) and dimension, and rebuilt when the type, dimension,
 * M or efConstruction change. The settings it was built with are a `meta` row.
 *
 * A build is fast only while pgvector's graph fits in `maintenance_work_mem` (past it, pgvector
 * says "hnsw graph no longer fits" and inserts into the on-disk graph, many times slower), so
 * the build sets it for its own transaction: to the graph's estimated size by default. Parallel
 * builds keep the graph in one shared-memory segment of that size; where the server cannot
 * allocate it (a container's small /dev/shm), the build runs again without parallel workers.
 */
import type { IndexParameters } from "../types.ts";
import type { Queryable } from "./db.ts";

export type VectorType = "halfvec" | "vector";

export interface HnswIndexSettings extends Pick<IndexParameters, "m" | "efConstruction"> {
  /** The type the HNSW index stores: halfvec (2 bytes a dimension) or vector (4). */
  vectorType: VectorType;
  /** maintenance_work_mem of a build in MiB; 0: the estimated graph size (buildMemoryMb). */
  buildMemoryMb?: number;
  /** max_parallel_maintenance_workers of a build; 0: the server's own setting. */
  buildWorkers?: number;
}

export const INDEX_NAME = "items_embedding_hnsw";
/** The index of the items' parts' vectors (store/parts.ts): the same kind, on its own table. */
export const PARTS_INDEX_NAME = "item_parts_embedding_hnsw";

/** The expression the HNSW index is built on, for a column or a parameter. */
export function indexedExpression(
  settings: HnswIndexSettings,
  dims: number,
  operand: string,
): string {
  return `${operand}::${settings.vectorType}(${Math.trunc(dims)})`;
}

/**
 * pgvector's in-memory graph for `rows` vectors, in MiB, from its structures (hnsw.h): per
 * element about 160 bytes of header and links list, the layer-0 neighbour array (2M candidates
 * of 16 bytes), upper layers (M candidates, on 1 element in M-1), and the vector itself; plus
 * a tenth for allocation slack, and never below Postgres's own 64 MiB default.
 */
export function buildMemoryMb(
  rows: number,
  dims: number,
  settings: Pick<HnswIndexSettings, "m" | "vectorType">,
): number {
  const m = Math.max(2, settings.m);
  const layer0 = 8 + 2 * m * 16;
  const upper = (8 + m * 16) / (m - 1);
  const vector = 8 + dims * (settings.vectorType === "halfvec" ? 2 : 4);
  const bytes = rows * (160 + layer0 + upper + vector) * 1.1;
  return Math.max(64, Math.ceil(bytes / 2 ** 20) + 8);
}

/** Postgres errors of a parallel build that could not get its shared memory (53100: disk_full). */
function sharedMemoryFailure(error: unknown): boolean {
  const { code, message } = error as { code?: string; message?: string };
  return code === "53100" || /shared memory segment/i.test(message ?? "");
}

/**
 * CREATE INDEX `name` on the embeddings of `table` (items, or item_parts) in the current
 * transaction of `client`, with the build memory and workers of `settings`. Returns the
 * maintenance_work_mem it used (MiB).
 */
export async function createHnswIndex(
  client: Queryable,
  settings: HnswIndexSettings,
  dims: number,
  name = INDEX_NAME,
  table: "items" | "item_parts" = "items",
): Promise<{ memoryMb: number; parallel: boolean }> {
  let memoryMb = settings.buildMemoryMb ?? 0;
  if (memoryMb <= 0) {
    const counted = await client.query<{ n: number }>(
      `SELECT count(*)::bigint AS n FROM longclip.${table} WHERE embedding IS NOT NULL`,
    );
    memoryMb = buildMemoryMb(Number(counted.rows[0]?.n ?? 0), dims, settings);
  }
  await client.query("SELECT set_config('maintenance_work_mem', $1, true)", [`${memoryMb}MB`]);
  if ((settings.buildWorkers ?? 0) > 0) {
    await client.query("SELECT set_config('max_parallel_maintenance_workers', $1, true)", [
      String(settings.buildWorkers),
    ]);
  }
  const create = `CREATE INDEX ${name} ON longclip.${table} USING hnsw ((${indexedExpression(settings, dims, "embedding")}) ${settings.vectorType}_cosine_ops) WITH (m = ${Number(settings.m)}, ef_construction = ${Number(settings.efConstruction)})`;
  await client.query("SAVEPOINT hnsw_build");
  try {
    await client.query(create);
    await client.query("RELEASE SAVEPOINT hnsw_build");
    return { memoryMb, parallel: true };
  } catch (error) {
    if (!sharedMemoryFailure(error)) throw error;
    // A serial build allocates its graph as it grows, in the backend's own memory.
    await client.query("ROLLBACK TO SAVEPOINT hnsw_build");
    await client.query("SELECT set_config('max_parallel_maintenance_workers', '0', true)");
    await client.query(create);
    return { memoryMb, parallel: false };
  }
}

/** What the `meta` row `hnsw_index` says of an index built with `settings` for `dims`. */
export function indexSignature(settings: HnswIndexSettings, dims: number): string {
  return `${settings.vectorType}(${dims}) m=${settings.m} ef=${settings.efConstruction}`;
}

/** Which of the two indexes are as `settings` want them for `dims`. */
async function indexState(
  client: Queryable,
  settings: HnswIndexSettings,
  dims: number,
): Promise<{ items: boolean; parts: boolean }> {
  const current = await client.query<{ value: string | null; parts: boolean }>(
    `SELECT (SELECT value FROM longclip.meta WHERE key = 'hnsw_index') AS value,
      to_regclass('longclip.${PARTS_INDEX_NAME}') IS NOT NULL AS parts`,
  );
  const row = current.rows[0];
  const items = row?.value === indexSignature(settings, dims);
  // The parts' index is built with the items' (a database from before parts lacks it only).
  return { items, parts: items && row?.parts === true };
}

/** Whether the recorded HNSW indexes are the ones `settings` want for `dims`. */
export async function indexMatches(
  client: Queryable,
  settings: HnswIndexSettings,
  dims: number,
): Promise<boolean> {
  const state = await indexState(client, settings, dims);
  return state.items && state.parts;
}

/**
 * The HNSW indexes (items' and parts') for `dims`-dimensional vectors of the configured type,
 * (re)built if needed; a database from before parts gets the parts' index alone.
 */
export async function ensureIndex(
  client: Queryable,
  settings: HnswIndexSettings,
  dims: number,
): Promise<void> {
  const state = await indexState(client, settings, dims);
  if (state.items && state.parts) return;
  if (!state.items) {
    const wanted = indexSignature(settings, dims);
    await dropIndex(client);
    await createHnswIndex(client, settings, dims);
    await client.query(
      "INSERT INTO longclip.meta (key, value) VALUES ('hnsw_index', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
      [wanted],
    );
  }
  await client.query(`DROP INDEX IF EXISTS longclip.${PARTS_INDEX_NAME}`);
  await createHnswIndex(client, settings, dims, PARTS_INDEX_NAME, "item_parts");
}

/** Drops the indexes and forgets their settings, so the next `ensureIndex` builds them. */
export async function dropIndex(client: Queryable): Promise<void> {
  await client.query(`DROP INDEX IF EXISTS longclip.${INDEX_NAME}`);
  await client.query(`DROP INDEX IF EXISTS longclip.${PARTS_INDEX_NAME}`);
  await client.query("DELETE FROM longclip.meta WHERE key = 'hnsw_index'");
}
