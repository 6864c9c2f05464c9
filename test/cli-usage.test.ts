/**
 * The command line behaves like the tools people know (issue 26, item 3): --version, one line
 * and a pointer to --help after a usage error, exit 2 for usage errors and 1 for runtime
 * errors, port errors by name, a missing path said as such, search's help without the server's
 * flags, the missing-model error naming pull and export first, HOST not read.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { describe, test } from "node:test";
import { serve } from "../src/cli/serve.ts";
import { isAppError } from "../src/core/errors.ts";
import { DEFAULT_SETTINGS, loadSettings, PROJECT_ROOT } from "../src/core/settings.ts";
import { tempDir } from "./api-helpers.ts";

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** `longclip ARGS` as a user runs it, on a data directory of its own. */
function longclip(args: readonly string[], env: NodeJS.ProcessEnv = {}): Run {
  const result = spawnSync(
    process.execPath,
    [path.join(PROJECT_ROOT, "bin", "longclip.js"), ...args],
    {
      cwd: PROJECT_ROOT,
      env: { ...process.env, LONGCLIP_DATA_DIR: tempDir("longclip-cli-"), ...env },
      encoding: "utf8",
      timeout: 120_000,
    },
  );
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

const lines = (text: string) => text.split("\n").filter((line) => line.trim() !== "");

/** A usage error: exit 2, the error and the pointer to the command's help, nothing else. */
function assertUsageError(run: Run, command: string, error: RegExp): void {
  assert.equal(run.status, 2, run.stderr);
  assert.deepEqual(
    lines(run.stderr).map((line, i) => (i === 0 ? error.test(line) : line)),
    [true, `Run 'longclip ${command} --help' for its options.`],
    run.stderr,
  );
}

describe("longclip's command line", { timeout: 300_000 }, () => {
  test("--version prints package.json's version and exits 0", () => {
    const { version } = JSON.parse(
      readFileSync(path.join(PROJECT_ROOT, "package.json"), "utf8"),
    ) as { version: string };
    const run = longclip(["--version"]);
    assert.equal(run.status, 0, run.stderr);
    assert.equal(run.stdout.trim(), version);
  });

  test("an unknown flag or a bad value: one line, the pointer to --help, exit 2", () => {
    assertUsageError(longclip(["serve", "--bogus"]), "serve", /^error: unknown option '--bogus'/);
    assertUsageError(
      longclip(["serve", "--port", "eighty"]),
      "serve",
      /^error \[invalid_setting\]: --port: .*"eighty"/,
    );
    assertUsageError(
      longclip(["search", "--k", "0", "a red circle"]),
      "search",
      /^error \[invalid_setting\]: --k /,
    );
    assertUsageError(
      longclip(["duplicates", "--threshold", "2"]),
      "duplicates",
      /^error \[invalid_setting\]: --threshold /,
    );
    assertUsageError(longclip(["export", "--bogus"]), "export", /^error \[usage\]: .*--bogus/);
  });

  test("a port out of range is invalid_port (exit 2), from the flag or from PORT", () => {
    assertUsageError(
      longclip(["serve", "--port", "99999"]),
      "serve",
      /^error \[invalid_port\]: port 99999 /,
    );
    assertUsageError(
      longclip(["serve"], { LONGCLIP_PORT: "", PORT: "70000" }),
      "serve",
      /^error \[invalid_port\]: port 70000 /,
    );
  });

  test("index on a path that does not exist says so and exits 1", () => {
    const missing = path.join(tempDir("longclip-cli-index-"), "no-such-folder");
    const run = longclip(["index", missing]);
    assert.equal(run.status, 1, run.stderr);
    assert.deepEqual(lines(run.stderr), [`${missing}: no such file or directory`]);
  });

  test("the missing-model error names longclip pull and export before Python; exit 1", () => {
    const run = longclip(["serve", "--model", path.join(tempDir("longclip-cli-"), "none")]);
    assert.equal(run.status, 1, run.stderr);
    assert.match(run.stderr, /^error \[model_not_found\]/);
    const pull = run.stderr.indexOf("longclip pull ");
    const exported = run.stderr.indexOf("longclip export ");
    const python = run.stderr.indexOf("python3 -m training export");
    assert.ok(pull > 0 && exported > pull && python > exported, run.stderr);
  });

  test("search --help lists what a search reads, not the server's or ingest's tuning", () => {
    const run = longclip(["search", "--help"]);
    assert.equal(run.status, 0, run.stderr);
    for (const flag of ["--model", "--data", "--database-url", "--hnsw-ef-search", "--k"]) {
      assert.match(run.stdout, new RegExp(`${flag} `), flag);
    }
    for (const flag of [
      "--port",
      "--max-request-bytes",
      "--max-queue-depth",
      "--job-lease-ms",
      "--image-batch-size",
      "--near-duplicate-threshold",
    ]) {
      assert.doesNotMatch(run.stdout, new RegExp(`${flag} `), flag);
    }
  });

  test("HOST is not read (a shell exports it); PORT is, under LONGCLIP_PORT", () => {
    assert.equal(loadSettings({}, { HOST: "0.0.0.0" }).host, DEFAULT_SETTINGS.host);
    assert.equal(loadSettings({}, { PORT: "3000" }).port, 3000);
  });

  test("a port another program holds is port_in_use, and serve lets the process end", async () => {
    const holder = net.createServer();
    await new Promise<void>((resolve) => holder.listen(0, "127.0.0.1", resolve));
    const { port } = holder.address() as net.AddressInfo;
    try {
      await assert.rejects(
        serve({
          ...DEFAULT_SETTINGS,
          dataDir: tempDir("longclip-cli-port-"),
          port,
          threads: 1,
          logFormat: "json",
          jobWorker: "off",
        }),
        (error: unknown) =>
          isAppError(error) &&
          error.code === "port_in_use" &&
          error.message.includes(`127.0.0.1:${port} is in use`),
      );
    } finally {
      holder.close();
    }
  });
});
