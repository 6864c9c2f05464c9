/**
 * The pgvector HNSW index over `items.embedding`: built on a cast of the column to the
 * configured type (`halfvec` or `vector`) and dimension, and rebuilt when the type, dimension,
 * M or efConstruction change. The settings it was built with are a `meta` row.
 */
import type { IndexParameters } from "../types.ts";
import type { Queryable } from "./db.ts";

export type VectorType = "halfvec" | "vector";

export interface HnswIndexSettings extends Pick<IndexParameters, "m" | "efConstruction"> {
  /** The type the HNSW index stores: halfvec (2 bytes a dimension) or vector (4). */
  vectorType: VectorType;
}

/** The expression the HNSW index is built on, for a column or a parameter. */
export function indexedExpression(
  settings: HnswIndexSettings,
  dims: number,
  operand: string,
): string {
  return `${operand}::${settings.vectorType}(${Math.trunc(dims)})`;
}

/** The HNSW index for `dims`-dimensional vectors of the configured type, (re)built if needed. */
export async function ensureIndex(
  client: Queryable,
  settings: HnswIndexSettings,
  dims: number,
): Promise<void> {
  const wanted = `${settings.vectorType}(${dims}) m=${settings.m} ef=${settings.efConstruction}`;
  const current = await client.query<{ value: string }>(
    "SELECT value FROM longclip.meta WHERE key = 'hnsw_index'",
  );
  if (current.rows[0]?.value === wanted) return;
  await client.query("DROP INDEX IF EXISTS longclip.items_embedding_hnsw");
  await client.query(
    `CREATE INDEX items_embedding_hnsw ON longclip.items USING hnsw ((${indexedExpression(settings, dims, "embedding")}) ${settings.vectorType}_cosine_ops) WITH (m = ${Number(settings.m)}, ef_construction = ${Number(settings.efConstruction)})`,
  );
  await client.query(
    "INSERT INTO longclip.meta (key, value) VALUES ('hnsw_index', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    [wanted],
  );
}

/** Drops the index and forgets its settings, so the next `ensureIndex` builds it. */
export async function dropIndex(client: Queryable): Promise<void> {
  await client.query("DROP INDEX IF EXISTS longclip.items_embedding_hnsw");
  await client.query("DELETE FROM longclip.meta WHERE key = 'hnsw_index'");
}
