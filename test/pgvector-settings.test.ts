/**
 * How the product sets pgvector up, without a server: the version it refuses, the HNSW build's
 * memory and workers (and its serial retry when shared memory is short), and the efSearch rule
 * both backends use. test/postgres-search.test.ts runs searches on a real server.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { isAppError } from "../src/core/errors.ts";
import type { Queryable } from "../src/store/postgres/db.ts";
import { buildMemoryMb, createHnswIndex } from "../src/store/postgres/hnsw-index.ts";
import {
  checkPgvectorVersion,
  MIN_PGVECTOR_VERSION,
  requirePgvector,
} from "../src/store/postgres/pgvector-version.ts";
import { efSearchFor } from "../src/vector-index/ef-search.ts";

/** A stand-in for a connection: records each statement, answers from `answer`. */
function fakeClient(answer: (sql: string, params?: unknown[]) => unknown[] | Error) {
  const statements: { sql: string; params?: unknown[] }[] = [];
  const client = {
    statements,
    async query(sql: string, params?: unknown[]) {
      statements.push({ sql, ...(params ? { params } : {}) });
      const rows = answer(sql, params);
      if (rows instanceof Error) throw rows;
      return { rows };
    },
  };
  return client as unknown as Queryable & { statements: typeof statements };
}

test("pgvector older than 0.8.4 is refused with pgvector_too_old, newer ones pass", () => {
  assert.equal(MIN_PGVECTOR_VERSION, "0.8.4");
  for (const old of ["0.5.1", "0.7.4", "0.8.0", "0.8.2", "0.8.3", "0.8", "garbage", undefined]) {
    assert.throws(
      () => checkPgvectorVersion(old),
      (error) =>
        isAppError(error) &&
        error.code === "pgvector_too_old" &&
        error.message.includes("0.8.4") &&
        error.message.includes("ALTER EXTENSION vector UPDATE") &&
        error.message.includes(old === undefined ? "not created" : `version ${old}`),
      String(old),
    );
  }
  for (const fine of ["0.8.4", "0.8.6", "0.8.10", "0.9.0", "0.10.0", "1.0.0", "1.0"]) {
    assert.doesNotThrow(() => checkPgvectorVersion(fine), fine);
  }
});

test("the start-up check reads the created extension's version and refuses an old one", async () => {
  const old = fakeClient(() => [{ extversion: "0.8.3" }]);
  await assert.rejects(requirePgvector(old), { code: "pgvector_too_old" });
  assert.match(old.statements[0]?.sql ?? "", /FROM pg_extension WHERE extname = 'vector'/);
  await requirePgvector(fakeClient(() => [{ extversion: "0.8.6" }]));
  await assert.rejects(requirePgvector(fakeClient(() => [])), { code: "pgvector_too_old" });
});

test("an HNSW build sets maintenance_work_mem to the graph's estimated size and the workers asked for", async () => {
  const client = fakeClient((sql) => (sql.startsWith("SELECT count(*)") ? [{ n: 1_000_000 }] : []));
  const settings = { vectorType: "halfvec" as const, m: 16, efConstruction: 200, buildWorkers: 3 };
  const built = await createHnswIndex(client, settings, 512);
  const expected = buildMemoryMb(1_000_000, 512, settings);
  assert.deepEqual(built, { memoryMb: expected, parallel: true });
  const sql = client.statements.map((s) => `${s.sql} ${JSON.stringify(s.params ?? [])}`);
  assert.ok(sql.some((s) => s.includes("'maintenance_work_mem'") && s.includes(`"${expected}MB"`)));
  assert.ok(sql.some((s) => s.includes("'max_parallel_maintenance_workers'") && s.includes('"3"')));
  assert.ok(
    sql.some((s) =>
      /CREATE INDEX items_embedding_hnsw .*halfvec\(512\).*m = 16, ef_construction = 200/.test(s),
    ),
  );
  // Per vector: a halfvec of 512 dims (1,032 bytes) plus the graph's links, about 1.6 GiB in all
  // (pgvector's own accounting is in hnsw.h); a vector index needs 1 KiB a vector more.
  assert.ok(expected > 1500 && expected < 2200, String(expected));
  const full = buildMemoryMb(1_000_000, 512, { ...settings, vectorType: "vector" });
  assert.ok(Math.abs(full - expected - 1_075) < 20, String(full));
  // Small tables keep Postgres's default; a fixed setting is used as it is.
  assert.equal(buildMemoryMb(100, 512, settings), 64);
  const fixed = fakeClient(() => []);
  assert.equal(
    (await createHnswIndex(fixed, { ...settings, buildMemoryMb: 300 }, 512)).memoryMb,
    300,
  );
  assert.ok(!fixed.statements.some((s) => s.sql.startsWith("SELECT count(*)")));
});

test("a parallel build that cannot get its shared memory runs again without workers", async () => {
  let creates = 0;
  const client = fakeClient((sql) => {
    if (!sql.startsWith("CREATE INDEX")) return [{ n: 10 }];
    creates++;
    return creates === 1
      ? Object.assign(
          new Error(
            'could not resize shared memory segment "/PostgreSQL.1" to 1073741824 bytes: No space left on device',
          ),
          { code: "53100" },
        )
      : [];
  });
  const built = await createHnswIndex(
    client,
    { vectorType: "vector", m: 16, efConstruction: 64 },
    8,
  );
  assert.equal(built.parallel, false);
  const sql = client.statements.map((s) => `${s.sql} ${JSON.stringify(s.params ?? [])}`);
  const rollback = sql.findIndex((s) => s.startsWith("ROLLBACK TO SAVEPOINT hnsw_build"));
  assert.ok(rollback > 0);
  assert.ok(sql.slice(rollback).some((s) => s.includes("'max_parallel_maintenance_workers', '0'")));
  assert.equal(creates, 2);
  // Any other error is the caller's.
  const failing = fakeClient((sql) =>
    sql.startsWith("CREATE INDEX")
      ? Object.assign(new Error("out of disk"), { code: "XX000" })
      : [],
  );
  await assert.rejects(
    createHnswIndex(
      failing,
      { vectorType: "vector", m: 16, efConstruction: 64, buildMemoryMb: 64 },
      8,
    ),
    /out of disk/,
  );
});

test("efSearch per query: at least the depth, growing with depth and index size; a fixed value overrides", () => {
  for (const size of [0, 1_000, 100_000, 1_000_000, 10_000_000]) {
    let previous = 0;
    for (const depth of [1, 10, 50, 100, 500, 1000]) {
      const ef = efSearchFor(depth, size);
      assert.ok(ef >= depth && Number.isInteger(ef), `${depth} at ${size}: ${ef}`);
      assert.ok(ef >= previous);
      previous = ef;
    }
  }
  for (const depth of [10, 100]) {
    assert.ok(efSearchFor(depth, 1_000_000) > efSearchFor(depth, 10_000));
    assert.ok(efSearchFor(depth, 10_000_000) >= efSearchFor(depth, 1_000_000));
  }
  assert.equal(efSearchFor(10, 1_000_000, 64), 64);
  assert.equal(efSearchFor(200, 1_000_000, 64), 200);
});
