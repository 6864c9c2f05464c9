/**
 * Scale-out under faults, on the test Postgres: 3 `serve` nodes with 2 concurrent writers each
 * (uploads of overlapping JPEG sets in random orders, the round's new images posted to every
 * node at the same moment, deletes of the same ids), a path job per round run by 3 `worker`s,
 * a blue/green reindex every third round, nodes started at the same moment (schema
 * migrations) and two `longclip migrate` runs at once; nodes and workers SIGKILLed at random
 * moments. After each round, once the job and any reindex are done, the invariants are
 * checked against the database and every node (./helpers/stress-checks.ts).
 *
 * Without LONGCLIP_STRESS_ROUNDS it runs its short form in `npm test` (and CI), on a native
 * Postgres only (PGlite serialises every transaction, so it could show none of the races):
 * one round of 6 s with the reindex, two nodes and a worker killed. LONGCLIP_STRESS_ROUNDS=N
 * runs N rounds (the longer form; on PGlite too), LONGCLIP_STRESS_ROUND_SECONDS makes rounds
 * longer. Its checks are the same in either form. It found,
 * now fixed: job items failed as worker_lost (their lease expired while a CPU-starved worker
 * was still working) whose images the worker then stored, so the job's counts disagreed with
 * its rows; 409 model_mismatch for uploads across the blue/green switch on nodes that had not
 * followed it yet; and a lock wait of 86 s under load ~30 (its likely cause, an exclusive lock
 * on meta at every node start, is fixed; not re-measured under that load). It prints its
 * counts: rounds, kills, acknowledged items, invariant checks, retries.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, test } from "node:test";
import sharp from "sharp";
import { PROJECT_ROOT } from "../src/core/settings.ts";
import { Encoder } from "../src/encode/encoder.ts";
import { createLibrary } from "../src/library/library.ts";
import { Cluster, twoModels } from "./helpers/cluster.ts";
import { patternPng, tempDir, testSettings } from "./helpers/library-fixtures.ts";
import { startPostgres, type TestPostgres, testPostgresKind } from "./helpers/postgres.ts";
import {
  type Image,
  imageOf,
  Ledger,
  LockWaitSampler,
  StressChecks,
  scrapeRetries,
} from "./helpers/stress-checks.ts";

/** LONGCLIP_STRESS_ROUNDS, or the short form's one round. */
const ROUNDS = Number(process.env.LONGCLIP_STRESS_ROUNDS || 1);
const SHORT_FORM = !process.env.LONGCLIP_STRESS_ROUNDS;
const ROUND_MS = Number(process.env.LONGCLIP_STRESS_ROUND_SECONDS ?? 6) * 1000;
const NODES = 3;
const WRITERS_PER_NODE = 2;
const WORKERS = 3;
const JOB_FILES = 9;
const NEW_PER_ROUND = 8;

const root = tempDir("stress-postgres-");
const media = path.join(root, "media");
let db: TestPostgres | undefined;
let cluster: Cluster | undefined;

after(async () => {
  await cluster?.stopAll();
  await db?.stop();
  rmSync(root, { recursive: true, force: true });
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const pick = <T>(items: readonly T[]): T => items[Math.floor(Math.random() * items.length)] as T;
function shuffled<T>(items: readonly T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

let seed = 1;
async function newJpeg(): Promise<Buffer> {
  return sharp(await patternPng(seed++, 64))
    .jpeg({ quality: 90 })
    .toBuffer();
}

/** `longclip migrate --from DIR --to URL`; resolves with its exit code and output. */
function runMigrate(from: string, to: string): Promise<{ code: number | null; output: string }> {
  const child = spawn(
    process.execPath,
    [path.join(PROJECT_ROOT, "bin", "longclip.js"), "migrate", "--from", from, "--to", to],
    { cwd: PROJECT_ROOT, stdio: ["ignore", "pipe", "pipe"] },
  );
  let output = "";
  child.stdout.on("data", (d) => {
    output += d;
  });
  child.stderr.on("data", (d) => {
    output += d;
  });
  return new Promise((resolve) => child.on("exit", (code) => resolve({ code, output })));
}

/** A SQLite library of `images` (the embedded default), to migrate from. */
async function sqliteLibrary(dir: string, modelDir: string, images: readonly Image[]) {
  const settings = testSettings(modelDir, dir);
  const library = await createLibrary(settings, await Encoder.load(modelDir, settings));
  try {
    const results = await library.index(images.map((image) => ({ bytes: image.bytes })));
    assert.deepEqual(
      results.map((r) => r.status),
      images.map(() => "indexed"),
    );
  } finally {
    await library.close();
  }
}

test("nodes, writers, workers, a reindex and migrations under SIGKILLs keep every invariant", {
  // The short form takes a few minutes on a loaded 2-core machine; a round about one more.
  timeout: (SHORT_FORM ? 15 : 10 + 5 * ROUNDS) * 60 * 1000,
  skip:
    SHORT_FORM && testPostgresKind().kind !== "native"
      ? `the short form runs on a native Postgres only (${testPostgresKind().reason}); LONGCLIP_STRESS_ROUNDS=N runs it on PGlite`
      : false,
}, async () => {
  db = await startPostgres();
  const database = db;
  const models = twoModels(root);
  const [blue, green] = [...models.keys()] as [string, string];
  mkdirSync(media, { recursive: true });
  const ledger = new Ledger();
  const checks = new StressChecks(database.url, ledger);
  const c = new Cluster({
    root,
    databaseUrl: database.url,
    mediaRoot: media,
    models,
    nodes: NODES,
    workers: WORKERS,
    jobLeaseMs: 5000,
  });
  cluster = c;
  const counts = { rounds: 0, nodeKills: 0, workerKills: 0, reindexes: 0, migrations: 0 };
  let mark = Date.now();
  const phase = (name: string) => {
    console.log(`stress: ${name} (${((Date.now() - mark) / 1000).toFixed(0)} s)`);
    mark = Date.now();
  };

  // Every node and worker starts at the same moment on a new database: they migrate the
  // schema together. Meanwhile a SQLite library is made, for two `longclip migrate` runs of it
  // at the same moment.
  const migrated = await Promise.all(
    Array.from({ length: 6 }, async () => imageOf(await newJpeg())),
  );
  const sqliteDir = path.join(root, "sqlite");
  await Promise.all([
    c.startNodes([0, 1, 2]),
    c.startWorkers([0, 1, 2]),
    sqliteLibrary(sqliteDir, models.get(blue) as string, migrated),
  ]);
  phase("3 nodes and 3 workers started");
  const runs = await Promise.all([0, 1].map(() => runMigrate(sqliteDir, database.url)));
  for (const run of runs) assert.equal(run.code, 0, run.output);
  counts.migrations = runs.length;
  for (const image of migrated) ledger.acknowledged(image, 0, 0);
  phase("2 migrations");

  const pool: Image[] = [...migrated];
  const retries = new Map<string, number>();
  const scrape = async () => {
    for (const node of c.liveNodes()) {
      const count = await scrapeRetries(node.url).catch(() => undefined);
      if (count !== undefined) retries.set(node.url, count);
    }
  };
  const deadlocksBefore = await checks.deadlocks();
  const sampler = new LockWaitSampler(database.url);
  sampler.start();
  try {
    for (let round = 0; round < ROUNDS; round++) {
      counts.rounds++;
      const fresh = await Promise.all(
        Array.from({ length: NEW_PER_ROUND }, async () => imageOf(await newJpeg())),
      );
      pool.push(...fresh);
      // The round's path job: new files, none of them uploaded.
      const folder = `round-${round}`;
      mkdirSync(path.join(media, folder));
      for (let i = 0; i < JOB_FILES; i++) {
        writeFileSync(path.join(media, folder, `f${i}.jpg`), await newJpeg());
      }
      const created = await fetch(`${pick(c.liveNodes()).url}/jobs`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ paths: [folder] }),
      });
      assert.equal(created.status, 202, await created.clone().text());
      const jobId = ((await created.json()) as { id: string }).id;
      // A blue/green reindex in the first round (so the short form has one) and every third.
      if (round % 3 === 0) {
        const live = (await checks.liveModel()) === blue ? green : blue;
        const started = await fetch(`${pick(c.liveNodes()).url}/reindex`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ model_dir: path.basename(models.get(live) as string) }),
        });
        assert.equal(started.status, 202, await started.clone().text());
        counts.reindexes++;
      }

      const stopAt = Date.now() + ROUND_MS;
      let deletedThisRound = false;
      const writer = async (slot: number) => {
        // First the round's new images, on every node at once, each writer in its own order.
        let batch: Image[] = shuffled(fresh);
        while (Date.now() < stopAt) {
          const node = c.nodes[slot];
          if (node === undefined) {
            await sleep(100);
            continue;
          }
          if (batch.length === 0 && Math.random() < 0.25) {
            deletedThisRound = true;
            const id = ledger.someAcknowledgedId();
            if (id !== undefined) await checks.deleteOn(node.url, id);
            continue;
          }
          if (batch.length === 0) {
            batch = shuffled(pool).slice(0, 2 + Math.floor(Math.random() * 5));
          }
          await checks.uploadTo(node.url, batch);
          batch = [];
        }
        // Every round deletes (a short round on a loaded machine may have had no turn left).
        const node = c.nodes[slot];
        const id = ledger.someAcknowledgedId();
        if (!deletedThisRound && node !== undefined && id !== undefined) {
          deletedThisRound = true;
          await checks.deleteOn(node.url, id);
        }
      };
      const writers = Array.from({ length: NODES * WRITERS_PER_NODE }, (_, w) => writer(w % NODES));
      // Faults at random moments: two nodes or one, and a worker (restarted at once).
      const victims = shuffled([0, 1, 2]).slice(0, 2 - (round % 2));
      const faults = (async () => {
        await sleep(ROUND_MS * (0.2 + 0.5 * Math.random()));
        await scrape();
        for (const slot of victims) {
          await c.kill("nodes", slot);
          counts.nodeKills++;
        }
        const worker = Math.floor(Math.random() * WORKERS);
        await c.kill("workers", worker);
        counts.workerKills++;
        return worker;
      })();
      await Promise.all(writers);
      const worker = await faults;
      phase(`round ${round}: writers`);
      // The killed nodes come back together with the worker (they migrate at the same moment).
      await Promise.all([c.startNodes(victims), c.startWorkers([worker])]);
      phase(`${victims.length} nodes and a worker restarted`);
      const job = await checks.jobDone(c, jobId);
      phase("job done");
      await checks.reindexSettled(c);
      phase("reindex settled");
      await checks.afterRound(c, { folder, job, files: JOB_FILES });
      phase("checks");
    }
  } finally {
    await sampler.stop();
  }
  await scrape();
  const summary = {
    ...counts,
    acknowledgedItems: ledger.acknowledgedIds(),
    acknowledgements: ledger.acknowledgements,
    deletes: ledger.deletes,
    invariantChecks: checks.count,
    storeRetriesOnNodes: [...retries.values()].reduce((a, b) => a + b, 0),
    deadlocksOnServer: (await checks.deadlocks()) - deadlocksBefore,
    longestLockWaitS: Number(sampler.longest.toFixed(2)),
    serverBusy: checks.busy,
    postgres: database.kind,
  };
  console.log(`stress: ${JSON.stringify(summary)}`);
  assert.deepEqual(checks.violations, [], "no invariant was broken");
  assert.ok(sampler.longest < 30, `a lock wait of ${sampler.longest} s (bound 30 s)`);
});
