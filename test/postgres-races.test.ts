/**
 * Two nodes (two libraries, each with its own connection pool) on one Postgres, indexing the
 * same new images at the same moment. What they answer must not depend on where the other
 * node's commit lands between their statements: a statement gate in front of node B holds
 * B's k-th statement while node A indexes the same images, for every k until B finishes
 * before it. Before the duplicate check read by content hash and by id in one statement, A's
 * commit landing between the two reads made B answer `id_conflict` for the same image.
 */
import assert from "node:assert/strict";
import path from "node:path";
import { after, before, test } from "node:test";
import { PROJECT_ROOT, type Settings } from "../src/core/settings.ts";
import type { IndexResult } from "../src/core/types.ts";
import { Encoder } from "../src/encode/encoder.ts";
import { createLibrary, type LongclipLibrary } from "../src/library/library.ts";
import { openStore } from "../src/store/open.ts";
import { withClient } from "../tools/bench/postgres-admin.ts";
import { patternPng, tempDir, testSettings } from "./helpers/library-fixtures.ts";
import { startPostgres, type TestPostgres } from "./helpers/postgres.ts";
import { type StatementGate, startStatementGate } from "./helpers/statement-gate.ts";

const MODEL = path.join(PROJECT_ROOT, "models", "demo");
const root = tempDir("postgres-races-");
let db: TestPostgres;
let gate: StatementGate;
const libraries: LongclipLibrary[] = [];

async function node(name: string, url: string): Promise<LongclipLibrary> {
  const settings: Settings = testSettings(MODEL, path.join(root, name), { databaseUrl: url });
  const library = await createLibrary(settings, await Encoder.load(MODEL, settings));
  libraries.push(library);
  return library;
}

before(async () => {
  db = await startPostgres();
  gate = await startStatementGate(db.url);
});

after(async () => {
  await Promise.all(libraries.map((library) => library.close()));
  await gate?.close();
  await db?.stop();
});

function statuses(results: readonly IndexResult[]): string[] {
  return results.map((r) => (r.status === "failed" ? `failed: ${r.error?.code}` : r.status));
}

/**
 * Sweeps: which of B's statements is the k-th depends on how its pooled queries reach the
 * server (concurrent reads race for connections), so one sweep may miss an interleaving.
 */
const SWEEPS = 3;

test("another node's commit between any two statements never fails an image", async () => {
  const a = await node("a", db.url);
  const b = await node("b", gate.url);
  let seed = 7000;
  let points = 0;
  for (let sweep = 1; sweep <= SWEEPS; sweep++) {
    for (let k = 1; k < 200; k++) {
      const images = [await patternPng(seed++), await patternPng(seed++)];
      let aIndexing: Promise<IndexResult[]> | undefined;
      gate.arm(gate.statements() + k, async () => {
        // Node A indexes the same images (in the other order) while B's statement waits. If
        // B holds a transaction open here, A waits for it: let B go on after a while.
        aIndexing = a.index([...images].reverse().map((bytes) => ({ bytes })));
        await Promise.race([aIndexing, new Promise((resolve) => setTimeout(resolve, 1500))]);
      });
      const fromB = await b.index(images.map((bytes) => ({ bytes })));
      if (aIndexing === undefined) break; // B finished before its k-th statement
      points++;
      const fromA = await aIndexing;
      const where = `sweep ${sweep}, k = ${k}`;
      for (const status of [...statuses(fromA), ...statuses(fromB)]) {
        assert.match(
          status,
          /^(indexed|duplicate)$/,
          `${where}: ${JSON.stringify({ fromA, fromB })}`,
        );
      }
      const ids = new Set([...fromA, ...fromB].map((r) => r.id));
      assert.equal(ids.size, 2, `${where}: both nodes name the same two items`);
      const stored = await withClient(db.url, async (client) => {
        const { rows } = await client.query<{ n: string }>(
          "SELECT count(*) AS n FROM longclip.items WHERE id = ANY($1::text[])",
          [[...ids]],
        );
        return Number(rows[0]?.n);
      });
      assert.equal(stored, 2, `${where}: each image stored once`);
    }
  }
  console.log(`interleavings checked: ${points}`);
  assert.ok(points >= 3 * SWEEPS, "node B's work has several statements to put a commit between");
});

test("an image read while another node deletes its item is not found, not a missing file", async () => {
  const [a, b] = libraries as [LongclipLibrary, LongclipLibrary];
  const bytes = await patternPng(9000);
  const [stored] = await a.index([{ bytes }]);
  assert.equal(stored?.status, "indexed");
  const id = stored?.id as string;
  assert.deepEqual((await b.readImage(id))?.bytes, bytes);
  // B reads the item, then its original: node A deletes the item between the two.
  let deleted = false;
  gate.arm(/FROM longclip\.originals/, async () => {
    deleted = await a.deleteItem(id);
  });
  const image = await b.readImage(id);
  assert.ok(deleted, "the delete landed between the two reads");
  assert.equal(image, undefined);
});

test("a node starting while another node's insert is in flight does not queue every insert behind it", async () => {
  const b = await node("starved", gate.url);
  // A third node, with the same settings (its index is the one already built).
  const starting = await openStore(
    testSettings(MODEL, path.join(root, "starting"), { databaseUrl: db.url }),
  );
  let preparing: Promise<void> | undefined;
  let prepared = false;
  let lockWaits = 0;
  try {
    // B's insert holds the model row FOR SHARE; its INSERT waits at the relay (a node starved
    // for CPU mid-transaction) while a third node starts on the same store.
    gate.arm(/INSERT INTO longclip\.items/, async () => {
      preparing = starting.prepare().then(() => {
        prepared = true;
      });
      // Either the start finishes, or it waits for a lock that every later insert queues behind.
      while (!prepared && lockWaits === 0) {
        lockWaits = await withClient(db.url, async (client) => {
          const { rows } = await client.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM pg_stat_activity
             WHERE wait_event_type = 'Lock' AND query LIKE 'LOCK TABLE longclip.meta%'`,
          );
          return rows[0]?.n ?? 0;
        });
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    });
    const [stored] = await b.index([{ bytes: await patternPng(9100) }]);
    assert.equal(stored?.status, "indexed");
    await preparing;
    assert.equal(lockWaits, 0, "the starting node waited for an exclusive lock on longclip.meta");
  } finally {
    await preparing?.catch(() => {});
    await starting.close();
  }
});
