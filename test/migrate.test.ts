/**
 * `longclip migrate`: a data directory's library moves to Postgres (the test Postgres)
 * without re-embedding; running it again resumes (copies only what is missing) and verifies.
 */
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import path from "node:path";
import { Writable } from "node:stream";
import { after, before, test } from "node:test";
import { runMigrate } from "../src/cli/migrate.ts";
import { PostgresStore } from "../src/store/postgres/store.ts";
import { SqliteStore } from "../src/store/sqlite/store.ts";
import { tempDir } from "./helpers/library-fixtures.ts";
import { startPostgres, type TestPostgres } from "./helpers/postgres.ts";
import { newItem, vectorOf } from "./helpers/store-contract.ts";

const root = tempDir("migrate-test-");
const PARAMETERS = { m: 16, efConstruction: 64, efSearch: 64 };
let db: TestPostgres;
before(async () => {
  db = await startPostgres();
});
after(async () => {
  await db?.stop();
  rmSync(root, { recursive: true, force: true });
});

function io() {
  let out = "";
  let err = "";
  const stream = (append: (text: string) => void) =>
    new Writable({
      write(chunk, _encoding, done) {
        append(String(chunk));
        done();
      },
    });
  return {
    io: { out: stream((t) => (out += t)), err: stream((t) => (err += t)) },
    report: () => JSON.parse(out.trim().split("\n").at(-1) ?? "{}") as Record<string, unknown>,
    err: () => err,
  };
}

test("migrate copies items, metadata, embeddings (parts' too) and originals; a second run resumes", async () => {
  const dataDir = path.join(root, "data");
  const source = new SqliteStore({ dataDir, indexSaveIntervalMs: 0, ...PARAMETERS });
  await source.setModel({ modelId: "m1", dims: 8 });
  const uploads = [1, 2, 3].map((n) => ({
    ...newItem(n, { n, album: "a" }),
    source: "upload" as const,
    path: undefined,
    original: Buffer.from(`bytes-${n}`),
  }));
  const withParts = {
    ...newItem(4, { n: 4 }),
    parts: [
      { kind: "region" as const, box: { x: 1, y: 2, width: 3, height: 4 }, vector: vectorOf(41) },
      { kind: "frame" as const, t: 1.5, vector: vectorOf(42) },
    ],
  };
  await source.insertItems([...uploads, withParts, newItem(5)], "m1");
  // An item whose embedding is of another model (a reindex that could not read it).
  source.db
    .prepare(
      "UPDATE embeddings SET model_id = 'old' WHERE label = (SELECT label FROM items WHERE id = 'item-5')",
    )
    .run();
  await source.close();

  // Part of the library is already there, as after an interrupted run.
  const partial = await PostgresStore.open({ url: db.url, vectorType: "halfvec", ...PARAMETERS });
  await partial.setModel({ modelId: "m1", dims: 8 });
  await partial.insertItems([uploads[0] as (typeof uploads)[number]], "m1");
  await partial.close();

  const first = io();
  assert.equal(await runMigrate({ from: dataDir, to: db.url }, first.io), 0, first.err());
  assert.deepEqual(
    {
      copied: first.report().copied,
      alreadyThere: first.report().alreadyThere,
      notEmbedded: first.report().notEmbedded,
      verified: first.report().verified,
      maxVectorDifference: first.report().maxVectorDifference,
    },
    { copied: 3, alreadyThere: 1, notEmbedded: ["item-5"], verified: 4, maxVectorDifference: 0 },
  );
  assert.ok((first.report().sampled as number) >= 1);

  const target = await PostgresStore.open({ url: db.url, vectorType: "halfvec", ...PARAMETERS });
  try {
    const two = await target.getById("item-2");
    assert.deepEqual(two?.metadata, { n: 2, album: "a" });
    assert.equal(two?.source, "upload");
    assert.deepEqual(
      await target.readOriginal(uploads[1]?.sha256 as string),
      Buffer.from("bytes-2"),
    );
    assert.equal((await target.getById("item-4"))?.path, "/media/4.png");
    const [row] = await target.embeddingsOf("m1", [two?.label as number]);
    assert.deepEqual(row?.vector, newItem(2).vector, "the embedding is copied, not recomputed");
    const hits = await target.nearest({ vector: newItem(4).vector, k: 1 }, "m1");
    assert.equal(hits[0]?.item.id, "item-4");
    const four = (await target.getById("item-4"))?.label as number;
    assert.deepEqual((await target.partsOf("m1", [four])).get(four), [
      { ...withParts.parts[0], index: 0 },
      { ...withParts.parts[1], index: 1 },
    ]);
    const [byFrame] = await target.nearest({ vector: vectorOf(42), k: 1 }, "m1");
    assert.deepEqual(byFrame?.match, { kind: "frame", t: 1.5, index: 1, score: byFrame?.score });
  } finally {
    await target.close();
  }

  const second = io();
  assert.equal(await runMigrate({ from: dataDir, to: db.url }, second.io), 0, second.err());
  assert.equal(second.report().copied, 0);
  assert.equal(second.report().alreadyThere, 4);
});

test("migrate refuses a target of another model and says what to do", async () => {
  const dataDir = path.join(root, "other");
  const source = new SqliteStore({ dataDir, indexSaveIntervalMs: 0, ...PARAMETERS });
  await source.setModel({ modelId: "m2", dims: 8 });
  await source.insertItems([newItem(9)], "m2");
  await source.close();
  const run = io();
  assert.equal(await runMigrate({ from: dataDir, to: db.url }, run.io), 1);
  assert.match(run.err(), /\[model_mismatch\].*migrate into an empty database/);
  const missing = io();
  assert.equal(await runMigrate({ from: path.join(root, "nope"), to: db.url }, missing.io), 1);
  assert.match(missing.err(), /No library at/);
});
