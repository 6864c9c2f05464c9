/**
 * The test Postgres must behave like one server to many connections. PGlite (the fallback where
 * no native server can run) is a single backend, and a parameterised query of one connection
 * must not lose its unnamed portal to another connection's BEGIN or Parse in between (before
 * its queue kept extended-protocol exchanges together, this failed with `portal "" does not
 * exist`). The same mix runs on the test Postgres, the native server where one can run.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { test } from "node:test";
import pg from "pg";
import { startPglite } from "../tools/bench/pglite.ts";
import { startPostgres, type TestPostgres } from "./helpers/postgres.ts";

async function manyConnections(server: TestPostgres): Promise<void> {
  const pool = new pg.Pool({ connectionString: server.url, max: 20, query_timeout: 30_000 });
  const errors: string[] = [];
  pool.on("error", (error) => errors.push(error.message));
  try {
    let answered = 0;
    await Promise.all(
      Array.from({ length: 1500 }, async (_, i) => {
        try {
          if (i % 3 === 0) {
            const client = await pool.connect();
            try {
              await client.query("BEGIN");
              const { rows } = await client.query("SELECT $1::int AS v", [i]);
              await client.query("COMMIT");
              if (rows[0]?.v === i) answered++;
            } finally {
              client.release();
            }
          } else {
            const { rows } = await pool.query("SELECT $1::int + $2::int AS s", [i, 1]);
            if (rows[0]?.s === i + 1) answered++;
          }
        } catch (error) {
          errors.push((error as Error).message);
        }
      }),
    );
    assert.deepEqual([...new Set(errors)], []);
    assert.equal(answered, 1500);
  } finally {
    await pool.end().catch(() => {});
  }
}

test("PGlite: many connections mixing transactions and parameterised queries all get their answers", async () => {
  // A data directory, as the tests use: its file I/O lets other connections' messages in.
  const dir = mkdtempSync(path.join(tmpdir(), "pglite-queue-"));
  const server = await startPglite(dir);
  try {
    await manyConnections(server);
  } finally {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the test Postgres (native where it can run): the same mix", async () => {
  const server = await startPostgres();
  try {
    await manyConnections(server);
  } finally {
    await server.stop();
  }
});
