/**
 * Crash test at the library level: a child process ingests in a loop and is killed with
 * SIGKILL in the middle of its work, twice. After each kill every item the child had
 * acknowledged must be stored once, findable by HNSW and by exact search, and the HNSW index
 * must hold exactly what SQLite holds.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { rmSync } from "node:fs";
import path from "node:path";
import { createInterface } from "node:readline";
import { after, test } from "node:test";
import { PROJECT_ROOT } from "../src/core/settings.ts";
import { Encoder } from "../src/encode/encoder.ts";
import { createLibrary } from "../src/library/index.ts";
import type { SqliteStore } from "../src/store/sqlite/store.ts";
import { demoModelWithoutGallery } from "./helpers/demo-model.ts";
import { patternPng, tempDir, testSettings } from "./helpers/library-fixtures.ts";

const root = tempDir("crash-library-test-");
after(() => rmSync(root, { recursive: true, force: true }));

/** Runs the child until it has acknowledged at least `minAcked` items, then SIGKILLs it. */
async function ingestAndKill(
  modelDir: string,
  dataDir: string,
  firstSeed: number,
  minAcked: number,
): Promise<Map<string, number>> {
  const child: ChildProcess = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      path.join(PROJECT_ROOT, "test", "helpers", "crash-child.ts"),
      modelDir,
      dataDir,
      String(firstSeed),
    ],
    { cwd: PROJECT_ROOT, stdio: ["ignore", "pipe", "inherit"] },
  );
  const acked = new Map<string, number>();
  const exited = new Promise<NodeJS.Signals | null>((resolve) => {
    child.on("exit", (_code, signal) => resolve(signal));
  });
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  for await (const line of lines) {
    const message = JSON.parse(line) as { acked?: [string, number][] };
    for (const [id, seed] of message.acked ?? []) acked.set(id, seed);
    if (acked.size >= minAcked) {
      // The child is already preparing or committing its next batch: kill it mid-batch.
      child.kill("SIGKILL");
      break;
    }
  }
  lines.close();
  assert.equal(await exited, "SIGKILL", "the child was killed, it did not exit on its own");
  return acked;
}

async function verify(modelDir: string, dataDir: string, acked: Map<string, number>) {
  const settings = testSettings(modelDir, dataDir);
  const library = await createLibrary(settings, await Encoder.load(modelDir, settings));
  try {
    const stats = await library.stats();
    assert.equal(stats.index.size, stats.items, "HNSW holds exactly what SQLite holds");
    assert.ok(stats.items >= acked.size, `${stats.items} stored, ${acked.size} acknowledged`);
    const distinct = (library.store as SqliteStore).db
      .prepare("SELECT count(DISTINCT sha256) AS n, count(*) AS total FROM items")
      .get() as { n: number; total: number };
    assert.equal(distinct.n, distinct.total, "no content stored twice");
    for (const [id, seed] of acked) {
      const item = await library.getItem(id);
      assert.ok(item, `acknowledged item ${id} is stored`);
      assert.deepEqual(item.metadata, { seed });
      const bytes = await patternPng(seed);
      for (const exact of [false, true]) {
        const { hits } = await library.searchImage(bytes, { k: 1, exact });
        assert.equal(hits[0]?.id, id, `${id} is found by ${exact ? "exact" : "HNSW"} search`);
      }
    }
    return stats.items;
  } finally {
    await library.close();
  }
}

test("SIGKILL mid-ingest loses no acknowledged item and duplicates nothing", {
  timeout: 240_000,
}, async (t) => {
  const modelDir = demoModelWithoutGallery();
  const dataDir = path.join(root, "data");
  const first = await ingestAndKill(modelDir, dataDir, 1, 12);
  const afterFirst = await verify(modelDir, dataDir, first);
  const ackedFirst = first.size;
  // The second run starts inside the range the first one covered: re-sent items are duplicates.
  const second = await ingestAndKill(modelDir, dataDir, 6, 20);
  for (const [id, seed] of second) first.set(id, seed);
  const afterSecond = await verify(modelDir, dataDir, first);
  assert.ok(afterSecond >= afterFirst);
  t.diagnostic(
    `kill 1: ${afterFirst} stored, ${ackedFirst} acknowledged; kill 2: ${afterSecond} stored, ${first.size} acknowledged`,
  );
});
