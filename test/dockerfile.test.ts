/**
 * The Dockerfile's ffmpeg opt-in, checked without a container engine (scripts/test-docker.sh
 * builds the real image where podman runs): each runtime stage declares `WITH_FFMPEG`, off by
 * default, and its RUN lines, run by bash with every command they call replaced by one that
 * records its arguments, install ffmpeg with `WITH_FFMPEG=yes` and not without it.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { PROJECT_ROOT } from "../src/core/settings.ts";

const dockerfile = readFileSync(path.join(PROJECT_ROOT, "Dockerfile"), "utf8");

/** The text of stage `name` (`FROM ... AS name` up to the next FROM). */
function stage(name: string): string {
  const start = dockerfile.search(new RegExp(`^FROM \\S+ AS ${name}$`, "m"));
  assert.ok(start >= 0, `the Dockerfile has a stage ${name}`);
  const next = dockerfile.indexOf("\nFROM ", start + 1);
  return dockerfile.slice(start, next === -1 ? undefined : next);
}

/** The shell commands of a stage's RUN instructions, continuation lines joined as Docker does. */
function runCommands(text: string): string[] {
  const joined = text.replace(/\\\n/g, " ");
  return [...joined.matchAll(/^RUN (.*)$/gm)].map((m) => m[1] as string);
}

const stubs = mkdtempSync(path.join(os.tmpdir(), "longclip-dockerfile-"));
after(() => rmSync(stubs, { recursive: true, force: true }));
const log = path.join(stubs, "calls.log");
// Every program the RUN lines call records its name and arguments instead of running.
for (const program of ["apt-get", "rm", "groupadd", "useradd", "mkdir", "chown"]) {
  const stub = path.join(stubs, program);
  writeFileSync(stub, `#!/bin/bash\necho "${program} $*" >> "${log}"\n`);
  chmodSync(stub, 0o755);
}

/** The `apt-get install` calls of a stage's RUN lines, built with WITH_FFMPEG=`value`. */
function installs(name: string, value: string | undefined): string[] {
  rmSync(log, { force: true });
  for (const command of runCommands(stage(name))) {
    const env: Record<string, string> = { PATH: stubs };
    if (value !== undefined) env.WITH_FFMPEG = value;
    const run = spawnSync("/bin/bash", ["-e", "-c", command], { env, encoding: "utf8" });
    assert.equal(run.status, 0, `${name}: ${command}\n${run.stderr}`);
  }
  let calls: string[];
  try {
    calls = readFileSync(log, "utf8").trim().split("\n");
  } catch {
    calls = [];
  }
  return calls.filter((call) => call.startsWith("apt-get install"));
}

for (const name of ["runtime", "runtime-cuda"]) {
  test(`${name}: ffmpeg is installed with --build-arg WITH_FFMPEG=yes, and only then`, () => {
    assert.match(stage(name), /^ARG WITH_FFMPEG=no$/m, "declared, off by default");
    // The default (no), as Docker passes a declared ARG's default to RUN.
    for (const value of ["no", "", "true"]) {
      const calls = installs(name, value);
      assert.ok(
        calls.every((call) => !call.split(" ").includes("ffmpeg")),
        `WITH_FFMPEG=${value}: ${calls}`,
      );
    }
    const calls = installs(name, "yes");
    assert.ok(
      calls.some((call) => call.split(" ").includes("ffmpeg")),
      `WITH_FFMPEG=yes installs ffmpeg: ${calls}`,
    );
    // The CPU image keeps its one other package beside it.
    if (name === "runtime") assert.ok(calls.some((call) => call.includes("libjpeg62-turbo")));
  });
}
