/**
 * What only the SQLite backend has (the shared behaviour is in the storage contract suite):
 * WAL with FULL sync, the schema version, and the HNSW index file it derives from SQLite.
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import Database from "better-sqlite3";
import { SCHEMA_VERSION } from "../src/store/sqlite/schema.ts";
import { SqliteStore } from "../src/store/sqlite/store.ts";
import { newItem, vectorOf } from "./helpers/store-contract.ts";

const tmp = mkdtempSync(path.join(os.tmpdir(), "store-sqlite-test-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

const PARAMETERS = { m: 16, efConstruction: 64, efSearch: 64, indexSaveIntervalMs: 0 };

describe("SQLite store", () => {
  test("a new database is migrated to the current schema in WAL mode with FULL sync", async () => {
    const store = new SqliteStore({ dataDir: path.join(tmp, "new"), ...PARAMETERS });
    assert.equal(store.db.pragma("user_version", { simple: true }), SCHEMA_VERSION);
    assert.equal(store.db.pragma("journal_mode", { simple: true }), "wal");
    assert.equal(store.db.pragma("synchronous", { simple: true }), 2);
    await store.close();
  });

  test("a database from a newer schema is refused", () => {
    const dataDir = path.join(tmp, "newer");
    mkdirSync(dataDir);
    const raw = new Database(path.join(dataDir, "library.sqlite"));
    raw.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    raw.close();
    assert.throws(() => new SqliteStore({ dataDir, ...PARAMETERS }), /newer than this build/);
  });

  test("the HNSW index is saved on close and reconciled with SQLite when it is behind", async () => {
    const dataDir = path.join(tmp, "hnsw");
    const store = new SqliteStore({ dataDir, ...PARAMETERS });
    await store.setModel({ modelId: "m1", dims: 8 });
    await store.insertItems([newItem(1), newItem(2)], "m1");
    await store.close();
    assert.ok(existsSync(path.join(dataDir, "index", "hnsw-m1-8.bin")));
    // Rows written behind the index's back (another process) are found after a reopen.
    const other = new SqliteStore({ dataDir, ...PARAMETERS, indexSaveIntervalMs: 0 });
    other.db.prepare("DELETE FROM items WHERE id = 'item-1'").run();
    other.db.close();
    const again = new SqliteStore({ dataDir, ...PARAMETERS });
    await again.insertItems([newItem(3)], "m1");
    const hits = await again.nearest({ vector: vectorOf(1), k: 10 }, "m1");
    assert.deepEqual(hits.map((h) => h.item.id).sort(), ["item-2", "item-3"]);
    assert.equal((await again.indexStats()).size, 2);
    await again.close();
  });
});
