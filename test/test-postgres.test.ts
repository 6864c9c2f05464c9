/**
 * The test Postgres handle (tools/bench/test-postgres.ts): kill() is a crash after which what the
 * server acknowledged is still there, restart() comes back on the same port, reset() drops the
 * product's schema; LONGCLIP_TEST_POSTGRES picks the server.
 */
import assert from "node:assert/strict";
import { readFileSync, rmSync } from "node:fs";
import { test } from "node:test";
import { withClient } from "../tools/bench/postgres-admin.ts";
import { tempDir } from "./helpers/library-fixtures.ts";
import { startPostgres, testPostgresKind } from "./helpers/postgres.ts";

test("kill() crashes the server; acknowledged commits survive restart() on the same port", async () => {
  const dir = tempDir("test-postgres-");
  const server = await startPostgres(dir);
  try {
    await withClient(server.url, async (client) => {
      await client.query("CREATE SCHEMA longclip");
      await client.query("CREATE TABLE longclip.acked (n integer PRIMARY KEY)");
      for (let n = 0; n < 200; n++) {
        await client.query("INSERT INTO longclip.acked VALUES ($1)", [n]);
      }
      const { rows } = await client.query<{ extversion: string }>(
        "SELECT extversion FROM pg_extension WHERE extname = 'vector'",
      );
      assert.match(rows[0]?.extversion ?? "", /^\d+\.\d+\.\d+$/, "pgvector is created");
    });
    const pid = server.pid();
    assert.ok(pid !== undefined);
    await server.kill();
    assert.equal(server.pid(), undefined);
    await assert.rejects(withClient(server.url, (client) => client.query("SELECT 1")));
    await server.restart();
    assert.notEqual(server.pid(), pid);
    const count = await withClient(server.url, async (client) => {
      const { rows } = await client.query<{ n: string }>(
        "SELECT count(*) AS n FROM longclip.acked",
      );
      return Number(rows[0]?.n);
    });
    assert.equal(count, 200, "every acknowledged insert survives the crash");
    if (server.kind === "native") {
      const log = readFileSync(server.logFile as string, "utf8");
      assert.match(log, /automatic recovery in progress/, "the restart recovered from a crash");
    }
    await server.reset();
    const schemas = await withClient(server.url, async (client) => {
      const { rows } = await client.query("SELECT 1 FROM pg_namespace WHERE nspname = 'longclip'");
      return rows.length;
    });
    assert.equal(schemas, 0, "reset() drops the product's schema");
  } finally {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("LONGCLIP_TEST_POSTGRES forces PGlite, and refuses a value it does not know", (t) => {
  const before = process.env.LONGCLIP_TEST_POSTGRES;
  t.after(() => {
    if (before === undefined) delete process.env.LONGCLIP_TEST_POSTGRES;
    else process.env.LONGCLIP_TEST_POSTGRES = before;
  });
  process.env.LONGCLIP_TEST_POSTGRES = "pglite";
  assert.equal(testPostgresKind().kind, "pglite");
  process.env.LONGCLIP_TEST_POSTGRES = "mysql";
  assert.throws(() => testPostgresKind(), /must be native, pglite or auto/);
});
