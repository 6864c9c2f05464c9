import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import path from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { PROJECT_ROOT } from "../src/config.ts";

const run = promisify(execFile);
const CLI = path.join(PROJECT_ROOT, "bin", "longclip.js");

test("longclip export passes its arguments to python3 -m training export", async () => {
  const { stdout } = await run(CLI, ["export", "--help"], { cwd: PROJECT_ROOT });
  assert.match(stdout, /usage: python3 -m training export/);
  assert.match(stdout, /--checkpoint/);
  assert.match(stdout, /--random-init/);
});

test("longclip export reports the exporter's failure as its exit code", async () => {
  await assert.rejects(
    run(
      CLI,
      [
        "export",
        "--checkpoint",
        "/nonexistent/model.pt",
        "--vocab",
        "/nonexistent/v",
        "--out",
        "/tmp/x",
      ],
      {
        cwd: PROJECT_ROOT,
      },
    ),
    (error: { code?: number; stderr?: string }) => {
      assert.notEqual(error.code, 0);
      assert.match(String(error.stderr), /nonexistent/);
      return true;
    },
  );
});
