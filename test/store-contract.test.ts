/** The storage contract (test/helpers/store-contract.ts) on both backends. */

import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import pg from "pg";
import { PostgresStore } from "../src/store/postgres/store.ts";
import { SCHEMA_VERSION } from "../src/store/sqlite/schema.ts";
import { SqliteStore } from "../src/store/sqlite/store.ts";
import { tempDir } from "./helpers/library-fixtures.ts";
import { startPostgres, type TestPostgres, testPostgresKind } from "./helpers/postgres.ts";
import { newItem, storeContract } from "./helpers/store-contract.ts";

const PARAMETERS = { m: 16, efConstruction: 64, efSearch: 64 };
const root = tempDir("store-contract-");
after(() => rmSync(root, { recursive: true, force: true }));

let counter = 0;
let sqliteDir = "";
type Overrides = { exactFilterLimit?: number };
const openSqlite = async (overrides: Overrides = {}) =>
  new SqliteStore({ dataDir: sqliteDir, indexSaveIntervalMs: 0, ...PARAMETERS, ...overrides });
storeContract("SQLite + HNSW", {
  async open(overrides) {
    counter++;
    sqliteDir = path.join(root, `sqlite-${counter}`);
    return openSqlite(overrides);
  },
  reopen: () => openSqlite(),
});

let postgres: TestPostgres | undefined;
before(async () => {
  postgres = await startPostgres();
});
after(() => postgres?.stop());
const openPostgres = (overrides: Overrides = {}) =>
  PostgresStore.open({
    url: (postgres as TestPostgres).url,
    vectorType: "halfvec",
    ...PARAMETERS,
    ...overrides,
  });
const server = testPostgresKind().kind === "native" ? "native server" : "PGlite over the wire";
storeContract(`Postgres + pgvector (${server})`, {
  async open(overrides) {
    await postgres?.reset();
    return openPostgres(overrides);
  },
  reopen: () => openPostgres(),
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

// Data written before full-text search existed: the migration indexes the stored metadata.
const BACKFILL_ITEMS = [
  newItem(1, { caption: "a kite over zorblat hill" }),
  newItem(2, { tags: ["zorblat", "x"] }),
  newItem(3, { caption: "nothing to see" }),
];
const BACKFILL_QUERY = { words: ["zorblat"], fields: ["caption", "tags"], k: 10 };

test("SQLite: a database from before schema 3 gets its stored metadata indexed for keywords", async () => {
  sqliteDir = path.join(root, "sqlite-backfill");
  const store = await openSqlite();
  await store.setModel({ modelId: "m1", dims: 8 });
  await store.insertItems(BACKFILL_ITEMS, "m1");
  // Back to schema 2 as an older build left it: no text tables, no triggers.
  store.db.exec(`
    DROP TRIGGER items_text_added; DROP TRIGGER items_text_changed;
    DROP VIEW item_text_source; DROP TABLE item_text_fts; DROP TABLE item_text;
    DROP TABLE item_parts_staging; DROP TABLE item_parts;
    PRAGMA user_version = 2;`);
  await store.close();
  const migrated = await openSqlite();
  try {
    assert.equal(migrated.db.pragma("user_version", { simple: true }), SCHEMA_VERSION);
    const hits = await migrated.keywordSearch(BACKFILL_QUERY);
    assert.deepEqual(hits.map((hit) => hit.item.id).sort(), ["item-1", "item-2"]);
  } finally {
    await migrated.close();
  }
});

test("Postgres: a database from before schema 2 gets its stored metadata indexed for keywords", async () => {
  await postgres?.reset();
  const store = await openPostgres();
  await store.setModel({ modelId: "m1", dims: 8 });
  await store.insertItems(BACKFILL_ITEMS, "m1");
  await store.close();
  const client = new pg.Client({ connectionString: (postgres as TestPostgres).url });
  await client.connect();
  await client.query(`
    DROP TRIGGER items_text ON longclip.items; DROP FUNCTION longclip.index_item_text();
    DROP TABLE longclip.item_text; DROP FUNCTION longclip.text_fields(jsonb);
    DROP TABLE longclip.item_parts_staging; DROP TABLE longclip.item_parts;
    UPDATE longclip.schema_version SET version = 1;`);
  await client.end();
  const migrated = await openPostgres();
  try {
    const hits = await migrated.keywordSearch(BACKFILL_QUERY);
    assert.deepEqual(hits.map((hit) => hit.item.id).sort(), ["item-1", "item-2"]);
  } finally {
    await migrated.close();
  }
});
