/**
 * The HNSW index on worker threads (src/vector-index/hnsw-shards.ts): neighbours against an
 * exact scan, filters, per-shard files reloaded and reconciled with SQLite, and the event loop
 * left free while a large batch is inserted (compared with the in-thread index in one run).
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import type { Worker } from "node:worker_threads";
import { SqliteStore } from "../src/store/sqlite/store.ts";
import { cosine, exactSearch } from "../src/vector-index/exact.ts";
import { HnswIndex } from "../src/vector-index/hnsw.ts";
import { ShardedHnsw } from "../src/vector-index/hnsw-shards.ts";
import { xorshift32 } from "../tools/bench/random.ts";
import { newItem, vectorOf } from "./helpers/store-contract.ts";

const tmp = mkdtempSync(path.join(os.tmpdir(), "hnsw-shards-test-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** Seeded unit vectors (xorshift), row-major. */
function unitVectors(count: number, dims: number, seed: number): Float32Array {
  const next = xorshift32(seed);
  const out = new Float32Array(count * dims);
  for (let i = 0; i < count; i++) {
    let norm = 0;
    for (let d = 0; d < dims; d++) {
      const v = next() / 0x1_0000_0000 - 0.5;
      out[i * dims + d] = v;
      norm += v * v;
    }
    for (let d = 0; d < dims; d++)
      out[i * dims + d] = (out[i * dims + d] as number) / Math.sqrt(norm);
  }
  return out;
}

const DIMS = 24;
const COUNT = 3000;
const OPTIONS = { dims: DIMS, m: 16, efConstruction: 100, efSearch: 64 };
const data = unitVectors(COUNT, DIMS, 11);
const rows = Array.from({ length: COUNT }, (_, i) => ({
  label: i + 1,
  vector: data.subarray(i * DIMS, (i + 1) * DIMS),
}));
const queries = Array.from({ length: 40 }, (_, q) => unitVectors(1, DIMS, 1000 + q));

/** Mean share of the exact top k that the index found. */
async function recall(
  index: ShardedHnsw,
  k: number,
  allowed?: readonly number[],
): Promise<{ recall: number; labels: number[][] }> {
  const allowedSet = allowed === undefined ? undefined : new Set(allowed);
  const reference = allowedSet === undefined ? rows : rows.filter((r) => allowedSet.has(r.label));
  let sum = 0;
  const labels: number[][] = [];
  for (const query of queries) {
    const hits = await index.search(query, k, allowed);
    const exact = new Set(exactSearch(query, reference, k).map((n) => n.label));
    sum += hits.filter((hit) => exact.has(hit.label)).length / exact.size;
    labels.push(hits.map((hit) => hit.label));
    // Scores are the cosine of the stored vectors, best first.
    for (let i = 0; i < hits.length; i++) {
      const hit = hits[i] as { label: number; score: number };
      const row = rows[hit.label - 1] as (typeof rows)[number];
      assert.ok(Math.abs(hit.score - cosine(query, row.vector)) < 1e-4);
      if (i > 0) assert.ok((hits[i - 1]?.score as number) >= hit.score);
    }
  }
  return { recall: sum / queries.length, labels };
}

describe("HNSW shards on worker threads", () => {
  test("3 shards find the same neighbours as an exact scan (recall@10 over 40 queries)", async () => {
    const index = new ShardedHnsw(OPTIONS, 3);
    try {
      await index.opened;
      // Two batches, the vectors passed as one row-major array and as rows.
      await index.add(
        rows.slice(0, 1000).map((r) => r.label),
        data.subarray(0, 1000 * DIMS),
      );
      await index.add(
        rows.slice(1000).map((r) => r.label),
        rows.slice(1000).map((r) => r.vector),
      );
      assert.equal(index.size, COUNT);
      const { recall: found, labels } = await recall(index, 10);
      // Each shard holds a third: a merge that dropped shards or ranked wrongly finds ≤ 1/3.
      assert.ok(found >= 0.95, `recall@10 ${found}`);
      assert.ok(labels.every((l) => l.length === 10));
      await index.remove([1, 2, 3]);
      assert.equal(index.size, COUNT - 3);
      const self = await index.search(rows[0]?.vector as Float32Array, 5);
      assert.ok(!self.some((hit) => hit.label <= 3));
    } finally {
      await index.close();
    }
  });

  test("a filtered search returns only allowed labels, close to an exact scan of them", async () => {
    const index = new ShardedHnsw(OPTIONS, 2);
    try {
      await index.add(
        rows.map((r) => r.label),
        data,
      );
      // Every 7th label: spread over both shards, a bitmap far from byte-aligned.
      const allowed = rows.filter((r) => r.label % 7 === 3).map((r) => r.label);
      const allowedSet = new Set(allowed);
      const { recall: found, labels } = await recall(index, 10, allowed);
      assert.ok(
        labels.every((l) => l.every((label) => allowedSet.has(label))),
        "only allowed labels",
      );
      assert.ok(found >= 0.9, `filtered recall@10 ${found}`);
      assert.deepEqual(await index.search(queries[0] as Float32Array, 10, []), []);
    } finally {
      await index.close();
    }
  });

  test("the event loop keeps running while a large batch is inserted (in-thread blocks it)", async () => {
    const count = 2500;
    const dims = 96;
    const vectors = unitVectors(count, dims, 5);
    const labels = Array.from({ length: count }, (_, i) => i + 1);
    const options = { dims, m: 16, efConstruction: 200, efSearch: 64 };
    /** Longest gap between 5 ms timer ticks while `work` runs, and the work's duration. */
    const gaps = async (work: () => Promise<void> | void) => {
      let last = performance.now();
      let longest = 0;
      let ticks = 0;
      const timer = setInterval(() => {
        const now = performance.now();
        longest = Math.max(longest, now - last);
        last = now;
        ticks++;
      }, 5);
      const started = performance.now();
      await work();
      const duration = performance.now() - started;
      await new Promise((resolve) => setTimeout(resolve, 20));
      clearInterval(timer);
      longest = Math.max(longest, performance.now() - last);
      return { longest, ticks, duration };
    };
    const inThread = HnswIndex.create(options);
    const blocked = await gaps(() => {
      for (let i = 0; i < count; i++) {
        inThread.add(labels[i] as number, vectors.subarray(i * dims, (i + 1) * dims));
      }
    });
    const sharded = new ShardedHnsw(options, 1);
    try {
      await sharded.opened;
      const free = await gaps(() => sharded.add(labels, vectors));
      assert.equal(sharded.size, count);
      // In-thread, one gap spans the whole insert; on the worker, ticks go on (a loaded
      // machine stretches gaps, so only ratios of this run are compared).
      assert.ok(blocked.longest >= 0.9 * blocked.duration, JSON.stringify(blocked));
      assert.ok(
        free.longest < 0.3 * free.duration && free.longest < 0.3 * blocked.longest,
        `worker ${JSON.stringify(free)} vs in-thread ${JSON.stringify(blocked)}`,
      );
      assert.ok(free.ticks >= 10, JSON.stringify(free));
    } finally {
      await sharded.close();
    }
  });
});

describe("SQLite store with HNSW shards", () => {
  const PARAMETERS = { m: 16, efConstruction: 64, efSearch: 64, indexSaveIntervalMs: 0 };
  const model = { modelId: "m1", dims: 8 };
  const indexFiles = (dataDir: string) =>
    readdirSync(path.join(dataDir, "index"))
      .filter((name) => name.startsWith("hnsw-"))
      .sort();
  const ids = async (store: SqliteStore, exact: boolean) =>
    (await store.nearest({ vector: vectorOf(5), k: 100, exact }, "m1")).map((h) => h.item.id);

  test("saves one file per shard, reloads them, reconciles with SQLite and rebuilds on a new count", async () => {
    const dataDir = path.join(tmp, "store");
    const first = new SqliteStore({ dataDir, ...PARAMETERS, hnswShards: 3 });
    await first.setModel(model);
    await first.insertItems(
      Array.from({ length: 60 }, (_, i) => newItem(i + 1)),
      "m1",
    );
    await first.close();
    const three = ["hnsw-m1-8.shard1of3.bin", "hnsw-m1-8.shard2of3.bin", "hnsw-m1-8.shard3of3.bin"];
    assert.deepEqual(indexFiles(dataDir), three);
    const mtimes = () => three.map((name) => statSync(path.join(dataDir, "index", name)).mtimeMs);
    const saved = mtimes();

    // Reopened unchanged: the files are read, not rebuilt (nothing is written).
    const same = new SqliteStore({ dataDir, ...PARAMETERS, hnswShards: 3 });
    await same.prepare();
    assert.equal((await same.indexStats()).size, 60);
    assert.deepEqual(await ids(same, false), await ids(same, true));
    await same.close();
    assert.deepEqual(mtimes(), saved);

    // Behind the index's back: two items deleted, one added.
    const other = new SqliteStore({ dataDir, ...PARAMETERS, hnswShards: 3 });
    other.db.prepare("DELETE FROM items WHERE id IN ('item-4', 'item-8')").run();
    other.db.close();
    const behind = new SqliteStore({ dataDir, ...PARAMETERS, hnswShards: 1 });
    await behind.insertItems([newItem(61)], "m1");
    await behind.prepare();
    await behind.close();
    // That store ran with one shard: its index file replaced the three.
    assert.deepEqual(indexFiles(dataDir), ["hnsw-m1-8.bin"]);

    const two = new SqliteStore({ dataDir, ...PARAMETERS, hnswShards: 2 });
    const found = await ids(two, false);
    assert.equal(found.length, 59);
    assert.ok(!found.includes("item-4") && !found.includes("item-8") && found.includes("item-61"));
    assert.deepEqual(found, await ids(two, true));
    assert.equal((await two.indexStats()).size, 59);
    // A filtered search above the exact-scan limit goes through the shards with a bitmap.
    await two.close();
    assert.deepEqual(indexFiles(dataDir), ["hnsw-m1-8.shard1of2.bin", "hnsw-m1-8.shard2of2.bin"]);
  });

  test("each shard save that fails counts in this store's health, not in a process-wide counter", async () => {
    // A file where the index folder should be: every save fails (ENOTDIR), even as root.
    const broken = path.join(tmp, "broken");
    mkdirSync(broken);
    writeFileSync(path.join(broken, "index"), "not a folder");
    const reported: unknown[] = [];
    const options = {
      ...PARAMETERS,
      hnswShards: 2,
      onBackgroundError: (e: unknown) => reported.push(e),
    };
    const store = new SqliteStore({ dataDir: broken, ...options });
    const healthy = new SqliteStore({ dataDir: path.join(tmp, "healthy"), ...options });
    try {
      assert.equal(store.health().indexSaveFailures, 0);
      for (const each of [store, healthy]) {
        await each.setModel(model);
        await each.insertItems([newItem(1), newItem(2)], "m1");
        await each.prepare();
      }
      // The first reconcile's save failed on both shards (reported in the background).
      assert.equal(store.health().indexSaveFailures, 2);
      assert.equal(reported.length, 1);
      await store.insertItems([newItem(3)], "m1");
      await assert.rejects(store.flush(), { code: "ENOTDIR" });
      // A failed save leaves both shards dirty: both were saved again, and failed.
      assert.equal(store.health().indexSaveFailures, 4);
      await healthy.flush();
      assert.equal(healthy.health().indexSaveFailures, 0);
    } finally {
      await store.close().catch(() => undefined);
      await healthy.close();
    }
  });

  test("a shard worker that dies loses nothing: a delete and an insert after it succeed, the next search sees both", async () => {
    const dataDir = path.join(tmp, "crashed");
    const store = new SqliteStore({ dataDir, ...PARAMETERS, hnswShards: 2 });
    await store.setModel(model);
    await store.insertItems(
      Array.from({ length: 40 }, (_, i) => newItem(i + 1)),
      "m1",
    );
    assert.equal((await ids(store, false)).length, 40);
    // The worker of the shard holding label 4 ends, as a crash would.
    const cache = (store as unknown as { hnsw: { loaded(): ShardedHnsw | undefined } }).hnsw;
    const dead = cache.loaded() as ShardedHnsw;
    const shards = (dead as unknown as { shards: { worker: Worker }[] }).shards;
    await shards[0]?.worker.terminate();
    while (dead.failed === undefined) await new Promise((resolve) => setImmediate(resolve));
    assert.equal(cache.loaded(), undefined);

    assert.equal((await store.deleteById("item-4"))?.id, "item-4");
    await store.insertItems([newItem(41), newItem(42)], "m1");
    const found = await ids(store, false);
    assert.deepEqual(found, await ids(store, true));
    assert.equal(found.length, 41);
    assert.ok(!found.includes("item-4") && found.includes("item-41") && found.includes("item-42"));
    assert.equal((await store.indexStats()).size, 41);
    await store.close();
  });

  test("a filtered search through the shards respects the filter", async () => {
    const dataDir = path.join(tmp, "filtered");
    const store = new SqliteStore({ dataDir, ...PARAMETERS, hnswShards: 2, exactFilterLimit: 0 });
    await store.setModel(model);
    await store.insertItems(
      Array.from({ length: 80 }, (_, i) => newItem(i + 1, { even: (i + 1) % 2 === 0 })),
      "m1",
    );
    const hits = await store.nearest({ vector: vectorOf(3), k: 10, filter: { even: true } }, "m1");
    const exact = await store.nearest(
      { vector: vectorOf(3), k: 10, filter: { even: true }, exact: true },
      "m1",
    );
    assert.equal(hits.length, 10);
    assert.ok(hits.every((h) => h.item.metadata.even === true));
    assert.deepEqual(
      hits.map((h) => h.item.id),
      exact.map((h) => h.item.id),
    );
    await store.close();
  });
});
