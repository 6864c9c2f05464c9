/**
 * The job runner against an in-memory library and job store: a database that goes away while
 * a chunk commits (the library answers those items `failed` with `database_unavailable`) is
 * waited out, never recorded as the file's outcome, and a file whose commit landed before the
 * connection was lost counts as indexed, not as a duplicate of itself. The real pipeline under
 * SIGKILLs and a loaded machine: test/stress-postgres.test.ts.
 */
import assert from "node:assert/strict";
import path from "node:path";
import { test } from "node:test";
import type { IndexInput, IndexResult } from "../src/core/types.ts";
import { JobRunner } from "../src/jobs/runner.ts";
import type { LongclipLibrary } from "../src/library/library.ts";
import type { ClaimedItem, JobItemResult, JobStore } from "../src/store/jobs.ts";

const MEDIA = "/media";
const unavailable = {
  code: "database_unavailable",
  message: "The database cannot be reached; retry in a few seconds.",
};

test("items that lost the database mid-commit are indexed again, not failed; an own commit counts as indexed", async () => {
  const calls: string[][] = [];
  // First call: a.jpg stored; b.jpg and c.jpg lost the database (b's commit had landed).
  const answers: IndexResult[][] = [
    [
      { id: "a", status: "indexed" },
      { id: "", status: "failed", error: unavailable },
      { id: "", status: "failed", error: unavailable },
    ],
    [
      { id: "b", status: "duplicate" },
      { id: "c", status: "indexed" },
    ],
  ];
  const library = {
    async index(inputs: IndexInput[]) {
      calls.push(inputs.map((input) => input.path as string));
      const answer = answers.shift();
      assert.ok(answer, "no more calls expected");
      return answer;
    },
    store: {
      // b was stored from this very file by the first attempt.
      async getById(id: string) {
        return { id, path: path.join(MEDIA, `${id}.jpg`) };
      },
    },
  } as unknown as LongclipLibrary;
  const finished: JobItemResult[] = [];
  const jobs = {
    async extendLease() {},
    async finish(_worker: string, outcomes: JobItemResult[]) {
      finished.push(...outcomes);
    },
  } as unknown as JobStore;
  const runner = new JobRunner(library, jobs, { chunkSize: 3, leaseMs: 60_000, mediaRoot: MEDIA });
  const claimed: ClaimedItem[] = ["a", "b", "c"].map((name, seq) => ({
    jobId: "j",
    seq,
    path: `${name}.jpg`,
    metadata: {},
    attempts: 1,
  }));
  await runner.process(claimed);
  assert.deepEqual(calls, [
    ["a.jpg", "b.jpg", "c.jpg"],
    ["b.jpg", "c.jpg"],
  ]);
  assert.deepEqual(
    finished.map((outcome) => [outcome.seq, outcome.state]),
    [
      [0, "indexed"],
      [1, "indexed"],
      [2, "indexed"],
    ],
  );
});
