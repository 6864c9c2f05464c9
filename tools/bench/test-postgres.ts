/**
 * The Postgres that tests and benchmarks start: a native PostgreSQL + pgvector when this
 * machine can run one (native-postgres.ts), else PGlite over the wire (pglite.ts), saying so in
 * one line. LONGCLIP_TEST_POSTGRES=native or =pglite forces either (native fails with the
 * reason when it cannot start).
 */
import { findNativePostgres, startNativePostgres } from "./native-postgres.ts";
import { startPglite } from "./pglite.ts";
import type { TestPostgres, TestPostgresKind } from "./postgres-handle.ts";

export type { TestPostgres, TestPostgresKind } from "./postgres-handle.ts";

const VARIABLE = "LONGCLIP_TEST_POSTGRES";
let said = false;

/** Which server startPostgres starts here, and why when it is not the native one. */
export function testPostgresKind(): { kind: TestPostgresKind; reason?: string } {
  const forced = process.env[VARIABLE];
  if (forced === "pglite") return { kind: "pglite", reason: `${VARIABLE}=pglite` };
  if (forced !== undefined && forced !== "" && forced !== "native" && forced !== "auto") {
    throw new Error(`${VARIABLE} must be native, pglite or auto (got ${JSON.stringify(forced)})`);
  }
  const install = findNativePostgres();
  if (install.ok) return { kind: "native" };
  if (forced === "native") {
    throw new Error(`${VARIABLE}=native, but ${install.reason}`);
  }
  return { kind: "pglite", reason: install.reason };
}

/**
 * Starts a Postgres with pgvector on a free port of 127.0.0.1 (or `port`). `pgliteDir` keeps
 * PGlite's data on disk (memory when absent); a native server always keeps its data in its own
 * temporary directory, removed when this process exits.
 */
export async function startPostgres(pgliteDir?: string, port = 0): Promise<TestPostgres> {
  const { kind, reason } = testPostgresKind();
  if (kind === "native") return startNativePostgres({ port });
  if (!said) {
    said = true;
    const line =
      process.env[VARIABLE] === "pglite"
        ? `test Postgres: PGlite (${VARIABLE}=pglite)`
        : `test Postgres: PGlite, not a native server: ${reason} (${VARIABLE}=native|pglite forces one)`;
    process.stderr.write(`${line}\n`);
  }
  return startPglite(pgliteDir, port);
}
