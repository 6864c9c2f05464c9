/**
 * Jobs on the embedded default: `longclip serve` (SQLite) runs them in its own process, with
 * the same API as on Postgres, and the CLI follows them.
 */
import assert from "node:assert/strict";
import { mkdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { Writable } from "node:stream";
import { after, before, describe, test } from "node:test";
import { runJobs } from "../src/cli/jobs.ts";
import { PROJECT_ROOT } from "../src/core/settings.ts";
import { patternPng, tempDir } from "./helpers/library-fixtures.ts";
import { type LongclipProcess, startServe, stopProcess } from "./helpers/longclip-process.ts";

const MODEL = path.join(PROJECT_ROOT, "models", "demo");
const root = tempDir("jobs-test-");
const media = path.join(root, "media");
const dataDir = path.join(root, "data");
let server: LongclipProcess;

interface Job {
  id: string;
  state: string;
  counts: {
    total: number;
    pending: number;
    indexed: number;
    duplicate: number;
    failed: number;
    cancelled: number;
  };
  failed_codes: Record<string, number>;
  failures?: { path: string; code: string; message: string }[];
  eta_seconds: number | null;
}

async function post(pathname: string, body: unknown) {
  return fetch(`${server.url}${pathname}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
}

async function waitFor(id: string, state: string): Promise<Job> {
  for (let i = 0; i < 600; i++) {
    const job = (await (await fetch(`${server.url}/jobs/${id}`)).json()) as Job;
    if (job.state === state) return job;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`job ${id} never reached ${state}`);
}

before(async () => {
  mkdirSync(path.join(media, "album", "nested"), { recursive: true });
  for (let seed = 0; seed < 6; seed++) {
    const dir = seed < 4 ? "album" : path.join("album", "nested");
    writeFileSync(path.join(media, dir, `p${seed}.png`), await patternPng(700 + seed));
  }
  writeFileSync(path.join(media, "album", "notes.txt"), "not an image");
  writeFileSync(path.join(media, "broken.png"), "not a png either");
  symlinkSync("/etc", path.join(media, "escape"));
  server = await startServe(["--model", MODEL, "--data", dataDir, "--media-root", media]);
});
after(async () => {
  if (server) await stopProcess(server);
  rmSync(root, { recursive: true, force: true });
});

describe("jobs on the embedded default", () => {
  test("a folder job runs in the server's own worker; each file once; bad files fail alone", async () => {
    const created = await post("/jobs", {
      paths: ["album", "broken.png", "missing.png"],
      metadata: { source: "job" },
    });
    assert.equal(created.status, 202);
    const job = (await created.json()) as Job;
    assert.equal(job.counts.total, 8, "6 images walked (not notes.txt) and the 2 named files");
    const done = await waitFor(job.id, "done");
    assert.equal(done.counts.indexed, 6);
    assert.equal(done.counts.failed, 2);
    assert.deepEqual(done.failed_codes, { file_not_found: 1, unsupported_image: 1 });
    assert.deepEqual(done.failures?.map((f) => f.path).sort(), ["broken.png", "missing.png"]);
    // Readable by any client: messages name paths as the client gave them, never the server's
    // own directories.
    for (const failure of done.failures ?? []) {
      assert.ok(!failure.message.includes(media), `${failure.code}: ${failure.message}`);
    }
    assert.equal(done.eta_seconds, 0);
    const items = (await (await fetch(`${server.url}/items?limit=100`)).json()) as {
      items: { metadata: Record<string, unknown>; path?: string }[];
    };
    const fromJob = items.items.filter((i) => i.metadata.source === "job");
    assert.equal(fromJob.length, 6);
    assert.ok(fromJob.some((i) => i.path === path.join("album", "nested", "p4.png")));
    // The same folder again: everything is a duplicate, nothing is stored twice.
    const again = (await (await post("/jobs", { paths: ["album"] })).json()) as Job;
    const second = await waitFor(again.id, "done");
    assert.equal(second.counts.duplicate, 6);
    assert.equal(second.counts.indexed, 0);
    const list = (await (await fetch(`${server.url}/jobs`)).json()) as { jobs: Job[] };
    assert.deepEqual(
      list.jobs.slice(0, 2).map((j) => j.id),
      [again.id, job.id],
    );
  });

  test("bad job requests get their 4xx and create nothing", async () => {
    const outside = await post("/jobs", { paths: ["../"] });
    assert.equal(outside.status, 403);
    assert.equal(
      ((await outside.json()) as { error: { code: string } }).error.code,
      "path_outside_media_root",
    );
    const link = await post("/jobs", { paths: ["escape"] });
    assert.equal(link.status, 403);
    const empty = await post("/jobs", { paths: [] });
    assert.equal(empty.status, 400);
    const unknown = await post("/jobs", { paths: ["album"], extra: 1 });
    assert.equal(unknown.status, 400);
    const none = await post("/jobs", { paths: ["album/notes.txt"] });
    assert.equal(none.status, 202, "a named file is tried even without an image extension");
    assert.equal((await fetch(`${server.url}/jobs/job-nope`)).status, 404);
    assert.equal((await fetch(`${server.url}/jobs/job-nope`, { method: "DELETE" })).status, 404);
  });

  test("cancel: a cancelled job indexes nothing more; the CLI shows jobs", async () => {
    // Cancelled at once: the worker may have claimed a first chunk, never the rest.
    mkdirSync(path.join(media, "many"));
    for (let seed = 0; seed < 40; seed++) {
      writeFileSync(path.join(media, "many", `m${seed}.png`), await patternPng(900 + seed));
    }
    const job = (await (await post("/jobs", { paths: ["many"] })).json()) as Job;
    const cancelled = (await (
      await fetch(`${server.url}/jobs/${job.id}`, { method: "DELETE" })
    ).json()) as Job;
    assert.ok(cancelled.counts.cancelled > 0);
    const final = await waitFor(job.id, "cancelled");
    assert.equal(final.counts.pending, 0);
    assert.equal(final.counts.indexed + final.counts.cancelled, 40);
    let out = "";
    const sink = new Writable({
      write(chunk, _encoding, done) {
        out += String(chunk);
        done();
      },
    });
    assert.equal(await runJobs(job.id, { data: dataDir }, { out: sink, err: sink }), 0);
    assert.match(out, new RegExp(`^${job.id}  cancelled  `));
  });

  test("without a media root, jobs are refused with what to do", async () => {
    const plain = await startServe(["--model", MODEL, "--data", path.join(root, "plain")]);
    try {
      const response = await fetch(`${plain.url}/jobs`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ paths: ["x"] }),
      });
      assert.equal(response.status, 403);
      const body = (await response.json()) as { error: { code: string; message: string } };
      assert.equal(body.error.code, "path_indexing_disabled");
      assert.match(body.error.message, /--media-root/);
    } finally {
      await stopProcess(plain);
    }
  });
});
