/**
 * Jobs (src/jobs) over the in-memory store: a job's files walked under a media root, claimed
 * and indexed chunk by chunk by a JobRunner through the library, the job's state and counts as
 * items finish, a retried item that finds its own earlier commit, and a cancel.
 */
import assert from "node:assert/strict";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { createJob } from "../../src/jobs/create.ts";
import { JobRunner } from "../../src/jobs/runner.ts";
import { type FakeLibrary, openFakeLibrary } from "../fakes/library.ts";
import { patternPng, tempDir } from "../helpers/library-fixtures.ts";

const LEASE_MS = 60_000;

describe("jobs over the in-memory store", () => {
  const root = tempDir("fast-jobs-");
  let fake: FakeLibrary;
  const limits = { mediaRoot: root, maxJobItems: 100 };

  before(async () => {
    const [a, b, c] = await Promise.all([1, 2, 3].map((seed) => patternPng(seed, 16)));
    mkdirSync(path.join(root, "sub"));
    writeFileSync(path.join(root, "a.png"), a as Buffer);
    writeFileSync(path.join(root, "b.png"), b as Buffer);
    writeFileSync(path.join(root, "copy-of-a.png"), a as Buffer);
    writeFileSync(path.join(root, "broken.png"), "not an image");
    writeFileSync(path.join(root, "sub", "c.png"), c as Buffer);
    fake = await openFakeLibrary({ mediaRoot: root });
  });
  after(async () => {
    await fake.library.close();
    rmSync(root, { recursive: true, force: true });
  });

  /** Claims and processes chunks with `runner` until nothing is left to claim. */
  async function drain(runner: JobRunner, chunk: number): Promise<number> {
    let chunks = 0;
    for (;;) {
      const claimed = await fake.store.jobs.claim(runner.id, chunk, LEASE_MS, 3);
      if (claimed.length === 0) return chunks;
      await runner.process(claimed);
      chunks++;
    }
  }

  test("a job runs from queued to done; each file counts as indexed, duplicate or failed", async () => {
    const created = await createJob(
      fake.store.jobs,
      { paths: [".", "missing.png"], metadata: { album: "trip" } },
      limits,
    );
    assert.equal(created.state, "queued");
    assert.equal(created.counts.total, 6);
    const runner = new JobRunner(fake.library, fake.store.jobs, {
      chunkSize: 2,
      leaseMs: LEASE_MS,
      mediaRoot: root,
    });
    const first = await fake.store.jobs.claim(runner.id, 2, LEASE_MS, 3);
    assert.equal((await fake.store.jobs.get(created.id))?.state, "running");
    await runner.process(first);
    assert.equal(1 + (await drain(runner, 2)), 3, "six files in chunks of two");
    const done = await fake.store.jobs.get(created.id);
    assert.equal(done?.state, "done");
    assert.deepEqual(
      { ...done?.counts },
      { total: 6, pending: 0, running: 0, indexed: 3, duplicate: 1, failed: 2, cancelled: 0 },
    );
    assert.deepEqual(done?.failedCodes, { unsupported_image: 1, file_not_found: 1 });
    assert.equal(runner.processed, 6);
    assert.equal(await fake.store.count(), 3);
    const [item] = (await fake.store.listItems(null, 1)).items;
    assert.equal(item?.metadata.album, "trip");
    assert.equal(item?.source, "path");
  });

  test("a retried item that finds its own earlier commit counts as indexed, not duplicate", async () => {
    const fresh = path.join(root, "late");
    mkdirSync(fresh);
    writeFileSync(path.join(fresh, "d.png"), await patternPng(4, 16));
    writeFileSync(path.join(fresh, "e.png"), await patternPng(1, 16)); // a.png's bytes
    const job = await createJob(fake.store.jobs, { paths: ["late"] }, limits);
    // A worker claims both files, stores d.png, and dies before recording anything.
    const dead = await fake.store.jobs.claim("dead-worker", 2, 1, 3);
    assert.equal(dead.length, 2);
    await fake.library.index([{ path: "late/d.png" }]);
    await new Promise((resolve) => setTimeout(resolve, 10));
    const runner = new JobRunner(fake.library, fake.store.jobs, {
      chunkSize: 2,
      leaseMs: LEASE_MS,
      mediaRoot: root,
    });
    const retried = await fake.store.jobs.claim(runner.id, 2, LEASE_MS, 3);
    assert.deepEqual(
      retried.map((item) => item.attempts),
      [2, 2],
    );
    await runner.process(retried);
    const summary = await fake.store.jobs.get(job.id);
    // e.png holds another file's bytes: a duplicate even on a retry.
    assert.deepEqual(
      [summary?.state, summary?.counts.indexed, summary?.counts.duplicate],
      ["done", 1, 1],
    );
  });

  test("cancel: pending files are never claimed and the job ends cancelled", async () => {
    const job = await createJob(fake.store.jobs, { paths: ["sub", "b.png"] }, limits);
    const cancelled = await fake.store.jobs.cancel(job.id);
    assert.equal(cancelled?.state, "cancelled");
    assert.equal(cancelled?.counts.cancelled, 2);
    assert.deepEqual(await fake.store.jobs.claim("w", 10, LEASE_MS, 3), []);
    const listed = await fake.store.jobs.list(10);
    assert.equal(listed[0]?.id, job.id, "newest first");
  });
});
