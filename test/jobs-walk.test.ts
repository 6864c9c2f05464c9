/**
 * Walking a job's folders on hostile trees (issue 24, finding 4): a folder of more files than
 * fit in one call's arguments, a folder named many times or inside another named one, a walk
 * that passes maxJobItems, and a tree deeper than the system's path length limit.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, test } from "node:test";
import { isAppError } from "../src/core/errors.ts";
import { jobFiles } from "../src/jobs/create.ts";
import { collectImageFiles } from "../src/library/ingest/files.ts";
import { tempDir } from "./helpers/library-fixtures.ts";

const root = tempDir("jobs-walk-test-");
// rm -r copes with trees deeper than PATH_MAX (fs.rmSync does not).
after(() => execFileSync("rm", ["-rf", root]));

function files(dir: string, count: number): void {
  mkdirSync(dir, { recursive: true });
  for (let i = 0; i < count; i++) writeFileSync(path.join(dir, `f${i}.png`), "");
}

test("a folder of 150,000 files becomes a job (no argument spread), and past maxJobItems it is 413", async () => {
  const media = path.join(root, "big");
  files(path.join(media, "all"), 150_000);
  const job = await jobFiles({ paths: ["all"] }, { mediaRoot: media, maxJobItems: 1_000_000 });
  assert.equal(job.files.length, 150_000);
  await assert.rejects(
    jobFiles({ paths: ["all"] }, { mediaRoot: media, maxJobItems: 1000 }),
    (e: unknown) => isAppError(e) && e.code === "too_many_items" && e.status === 413,
  );
});

test("the walk lists each folder once, however often it is named or nested, and stops past the limit", async () => {
  const media = path.join(root, "repeat");
  for (let d = 0; d < 20; d++) files(path.join(media, "a", `d${d}`), 10);
  const a = path.join(media, "a");
  const named = [a, a, path.join(a, "d3"), a, path.join(a, "d3"), a];
  const walked = await collectImageFiles(named);
  assert.equal(walked.files.length, 200);
  assert.equal(walked.folders, 21, "a and its 20 subfolders, each once");
  const stopped = await collectImageFiles([a], { limit: 25 });
  assert.equal(stopped.stopped, true);
  assert.ok(stopped.files.length <= 26, `${stopped.files.length} files collected`);
  assert.ok(stopped.folders <= 4, `${stopped.folders} folders listed after the limit`);
});

test("a tree deeper than PATH_MAX: the folder the walk cannot read is a failed item, the rest is indexed", async () => {
  const media = path.join(root, "deep");
  files(path.join(media, "tree"), 2);
  // Built relative to a moving working directory: its absolute path passes 4096 bytes.
  const cwd = process.cwd();
  try {
    process.chdir(path.join(media, "tree"));
    for (let level = 0; level < 25; level++) {
      const name = `${level}`.padStart(200, "d");
      mkdirSync(name);
      process.chdir(name);
    }
    writeFileSync("bottom.png", "");
  } finally {
    process.chdir(cwd);
  }
  const job = await jobFiles({ paths: ["tree"] }, { mediaRoot: media, maxJobItems: 1000 });
  assert.deepEqual(job.files, ["tree/f0.png", "tree/f1.png"]);
  assert.equal(job.unreadable.length, 1, JSON.stringify(job.unreadable).slice(0, 300));
  const [failure] = job.unreadable;
  assert.equal(failure?.code, "folder_unreadable");
  assert.match(failure?.message ?? "", /ENAMETOOLONG/);
  assert.ok(failure?.path.startsWith("tree/"), "relative to the media root");
  assert.ok(!failure?.message.includes(media), "no server path in the message");
});
