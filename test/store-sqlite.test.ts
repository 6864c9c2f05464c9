import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import Database from "better-sqlite3";
import { isAppError } from "../src/errors.ts";
import { SCHEMA_VERSION } from "../src/store/schema.ts";
import { decodeCursor, encodeCursor, type NewItem, Store } from "../src/store/store.ts";

const tmp = mkdtempSync(path.join(os.tmpdir(), "store-test-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

let counter = 0;
function openStore(): Store {
  counter++;
  return new Store(path.join(tmp, `db-${counter}`, "library.sqlite"));
}

function item(n: number, metadata: Record<string, unknown> = {}): NewItem {
  return {
    id: `item-${n}`,
    sha256: n.toString(16).padStart(64, "0"),
    metadata,
    contentType: "image/png",
    width: 10 + n,
    height: 20,
    bytes: 100 + n,
    source: "upload",
    vector: new Float32Array([n, 1, 2, 3]),
  };
}

describe("Store", () => {
  test("a new database is migrated to the current schema in WAL mode with FULL sync", () => {
    const store = openStore();
    assert.equal(store.db.pragma("user_version", { simple: true }), SCHEMA_VERSION);
    assert.equal(store.db.pragma("journal_mode", { simple: true }), "wal");
    assert.equal(store.db.pragma("synchronous", { simple: true }), 2);
    assert.equal(store.model(), undefined);
    store.setModel({ modelId: "m1", dims: 4 });
    assert.deepEqual(store.model(), { modelId: "m1", dims: 4 });
    store.close();
  });

  test("a database from a newer schema is refused", () => {
    const file = path.join(tmp, "newer.sqlite");
    const raw = new Database(file);
    raw.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    raw.close();
    assert.throws(() => new Store(file), /newer than this build/);
  });

  test("insert, read back by id, hash and label; embeddings round-trip bit-exactly", () => {
    const store = openStore();
    const vector = new Float32Array([0.1, -0.2, 1e-30, 3.4e38]);
    const outcomes = store.insertItems(
      [
        { ...item(1, { city: "Paris" }), vector },
        { ...item(2), source: "path", path: "/x/y.png" },
      ],
      "m1",
    );
    assert.deepEqual(outcomes, [
      { status: "inserted", label: 1 },
      { status: "inserted", label: 2 },
    ]);
    const one = store.getById("item-1");
    assert.equal(one?.label, 1);
    assert.deepEqual(one?.metadata, { city: "Paris" });
    assert.equal(one?.width, 11);
    assert.equal(one?.path, undefined);
    assert.equal(store.getBySha(item(2).sha256)?.path, "/x/y.png");
    assert.deepEqual([...store.getByLabels([2, 1, 77]).keys()].sort(), [1, 2]);
    const rows = [...store.iterateEmbeddings("m1")];
    assert.deepEqual(rows[0]?.vector, vector);
    assert.equal([...store.iterateEmbeddings("other")].length, 0);
    assert.equal(store.countEmbeddings("m1"), 2);
    store.close();
  });

  test("duplicates by content hash and id conflicts are detected, also within one batch", () => {
    const store = openStore();
    store.insertItems([item(1)], "m1");
    const outcomes = store.insertItems(
      [
        { ...item(1), id: "other-id" },
        { ...item(5), id: "item-1" },
        item(6),
        { ...item(6), id: "again" },
      ],
      "m1",
    );
    assert.deepEqual(outcomes, [
      { status: "duplicate", id: "item-1" },
      { status: "id_conflict" },
      { status: "inserted", label: 2 },
      { status: "duplicate", id: "item-6" },
    ]);
    assert.equal(store.count(), 2);
    store.close();
  });

  test("labels are never reused after deleting the newest item; delete cascades to embeddings", () => {
    const store = openStore();
    store.insertItems([item(1), item(2)], "m1");
    assert.equal(store.deleteById("item-2"), 2);
    assert.equal(store.deleteById("item-2"), undefined);
    assert.equal(store.countEmbeddings("m1"), 1);
    assert.deepEqual(store.insertItems([item(3)], "m1"), [{ status: "inserted", label: 3 }]);
    store.close();
  });

  test("cursor pagination walks every item once, in label order", () => {
    const store = openStore();
    store.insertItems(
      Array.from({ length: 7 }, (_, i) => item(i + 1)),
      "m1",
    );
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const page = store.listItems(cursor, 3);
      seen.push(...page.items.map((i) => i.id));
      cursor = page.nextCursor;
      pages++;
    } while (cursor !== null);
    assert.equal(pages, 3);
    assert.deepEqual(
      seen,
      Array.from({ length: 7 }, (_, i) => `item-${i + 1}`),
    );
    assert.equal(store.listItems(null, 7).nextCursor, null);
    assert.equal(decodeCursor(encodeCursor(42)), 42);
    assert.throws(
      () => store.listItems("not a cursor!", 3),
      (e: unknown) => isAppError(e) && e.code === "invalid_cursor",
    );
    store.close();
  });

  test("metadata filters match by key and JSON type, nested keys included", () => {
    const store = openStore();
    store.insertItems(
      [
        item(1, { city: "Paris", year: 2020, color: true, "my-key": "x", nested: { a: 1 } }),
        item(2, { city: "Paris", year: "2020", color: 1, none: null }),
        item(3, { city: "Rome", year: 2020.0 }),
      ],
      "m1",
    );
    const labels = (f: Record<string, string | number | boolean | null>) =>
      store.labelsMatching(f).sort();
    assert.deepEqual(labels({ city: "Paris" }), [1, 2]);
    assert.deepEqual(labels({ year: 2020 }), [1, 3]);
    assert.deepEqual(labels({ year: "2020" }), [2]);
    assert.deepEqual(labels({ color: true }), [1]);
    assert.deepEqual(labels({ color: 1 }), [2]);
    assert.deepEqual(labels({ none: null }), [2]);
    assert.deepEqual(labels({ "my-key": "x" }), [1]);
    assert.deepEqual(labels({ "nested.a": 1 }), [1]);
    assert.deepEqual(labels({ city: "Paris", year: 2020 }), [1]);
    assert.deepEqual(labels({ city: "Oslo" }), []);
    for (const bad of ["", "a b", "x'); DROP TABLE items; --", "k".repeat(65)]) {
      assert.throws(
        () => store.labelsMatching({ [bad]: 1 }),
        (e: unknown) => isAppError(e) && e.code === "invalid_filter",
      );
    }
    assert.equal(store.count(), 3);
    store.close();
  });

  test("reindex staging swaps embeddings in one step and drops other models' embeddings", () => {
    const store = openStore();
    store.setModel({ modelId: "old", dims: 4 });
    store.insertItems([item(1), item(2), item(3)], "old");
    store.clearStaging();
    store.putStaging(
      [
        { label: 1, vector: new Float32Array([9, 9]) },
        { label: 2, vector: new Float32Array([8, 8]) },
      ],
      "new",
    );
    assert.equal(store.countEmbeddings("new"), 0, "staged rows are not live");
    store.swapStaging({ modelId: "new", dims: 2 });
    assert.deepEqual(store.model(), { modelId: "new", dims: 2 });
    assert.equal(store.countEmbeddings("old"), 0);
    assert.deepEqual(
      [...store.iterateEmbeddings("new")].map((r) => [r.label, [...r.vector]]),
      [
        [1, [9, 9]],
        [2, [8, 8]],
      ],
    );
    assert.equal(store.count(), 3, "items are kept even when one could not be re-embedded");
    store.close();
  });

  test("data written before close is there after reopening", () => {
    const file = path.join(tmp, "reopen.sqlite");
    const a = new Store(file);
    a.insertItems([item(1)], "m1");
    a.close();
    const b = new Store(file);
    assert.equal(b.getById("item-1")?.sha256, item(1).sha256);
    b.close();
  });
});
