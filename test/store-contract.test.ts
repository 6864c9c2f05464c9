/** The storage contract (test/helpers/store-contract.ts) on both backends. */

import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import pg from "pg";
import { PostgresStore } from "../src/store/postgres/store.ts";
import { SqliteStore } from "../src/store/sqlite/store.ts";
import { tempDir } from "./helpers/library-fixtures.ts";
import { startPostgres, type TestPostgres } from "./helpers/postgres.ts";
import { newItem, storeContract } from "./helpers/store-contract.ts";

const PARAMETERS = { m: 16, efConstruction: 64, efSearch: 64 };
const root = tempDir("store-contract-");
after(() => rmSync(root, { recursive: true, force: true }));

let counter = 0;
let sqliteDir = "";
const openSqlite = async () =>
  new SqliteStore({ dataDir: sqliteDir, indexSaveIntervalMs: 0, ...PARAMETERS });
storeContract("SQLite + HNSW", {
  async open() {
    counter++;
    sqliteDir = path.join(root, `sqlite-${counter}`);
    return openSqlite();
  },
  reopen: openSqlite,
});

let postgres: TestPostgres | undefined;
before(async () => {
  postgres = await startPostgres();
});
after(() => postgres?.stop());
const openPostgres = () =>
  PostgresStore.open({ url: (postgres as TestPostgres).url, vectorType: "halfvec", ...PARAMETERS });
storeContract("Postgres + pgvector (PGlite over the wire)", {
  async open() {
    await postgres?.reset();
    return openPostgres();
  },
  reopen: openPostgres,
});

test("Postgres: a node started with another --pg-vector-type rebuilds the index to match", async () => {
  await postgres?.reset();
  const first = await openPostgres();
  await first.setModel({ modelId: "m1", dims: 8 });
  await first.insertItems([newItem(1), newItem(2)], "m1");
  await first.close();
  const other = await PostgresStore.open({
    url: (postgres as TestPostgres).url,
    vectorType: "vector",
    ...PARAMETERS,
  });
  try {
    await other.prepare();
    const client = new pg.Client({ connectionString: (postgres as TestPostgres).url });
    await client.connect();
    const { rows } = await client.query<{ def: string }>(
      "SELECT pg_get_indexdef('longclip.items_embedding_hnsw'::regclass) AS def",
    );
    await client.end();
    assert.match(rows[0]?.def ?? "", /vector_cosine_ops/);
    assert.doesNotMatch(rows[0]?.def ?? "", /halfvec/);
    const hits = await other.nearest({ vector: newItem(2).vector, k: 1 }, "m1");
    assert.equal(hits[0]?.item.id, "item-2");
  } finally {
    await other.close();
  }
});
