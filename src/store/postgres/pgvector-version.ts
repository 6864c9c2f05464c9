/**
 * The oldest pgvector this product runs on. Earlier releases have HNSW bugs that damage data
 * or the server on exactly what the product does: 0.8.2 fixed a buffer overflow in parallel
 * HNSW index builds, 0.8.3 and 0.8.4 index corruption and errors when VACUUM cleans an HNSW
 * index (every delete and reindex leaves dead rows to clean). 0.8.0 brought iterative index
 * scans, which filtered searches rely on.
 */
import type pg from "pg";
import { AppError } from "../../core/errors.ts";

/** A connection or pool (not ./db.ts's Queryable: db.ts imports this file through errors.ts). */
type Queryable = Pick<pg.PoolClient, "query">;

export const MIN_PGVECTOR_VERSION = "0.8.4";

/** "0.8.6" → [0, 8, 6]; undefined for anything that is not dot-separated numbers. */
function parts(version: string): number[] | undefined {
  const match = /^(\d+)\.(\d+)(?:\.(\d+))?$/.exec(version.trim());
  if (match === null) return undefined;
  return [Number(match[1]), Number(match[2]), Number(match[3] ?? 0)];
}

/** Throws `pgvector_too_old` unless `version` (pg_extension.extversion) is at least the minimum. */
export function checkPgvectorVersion(version: string | undefined): void {
  const have = version === undefined ? undefined : parts(version);
  const need = parts(MIN_PGVECTOR_VERSION) as number[];
  let older = have === undefined;
  for (let i = 0; have !== undefined && i < need.length; i++) {
    const a = have[i] as number;
    const b = need[i] as number;
    if (a !== b) {
      older = a < b;
      break;
    }
  }
  if (!older) return;
  throw new AppError(
    "pgvector_too_old",
    `The database's pgvector extension is ${version === undefined ? "not created" : `version ${version}`}; longclip needs ${MIN_PGVECTOR_VERSION} or later (earlier versions can corrupt HNSW indexes under VACUUM and overflow a buffer in parallel index builds). Install pgvector ${MIN_PGVECTOR_VERSION}+ on the server, then run ALTER EXTENSION vector UPDATE in this database (as its owner) and restart.`,
  );
}

/** Reads the version of pgvector created in the connected database and checks it. */
export async function requirePgvector(client: Queryable): Promise<void> {
  const result = await client.query<{ extversion: string }>(
    "SELECT extversion FROM pg_extension WHERE extname = 'vector'",
  );
  checkPgvectorVersion(result.rows[0]?.extversion);
}
