import assert from "node:assert/strict";
import { test } from "node:test";
import { runCli } from "./helpers/cli.ts";

test("longclip export passes its arguments to python3 -m training export", async () => {
  const run = await runCli(["export", "--help"]);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, /usage: python3 -m training export/);
  assert.match(run.stdout, /--checkpoint/);
  assert.match(run.stdout, /--random-init/);
});

test("longclip export reports the exporter's failure as its exit code", async () => {
  const run = await runCli([
    "export",
    "--checkpoint",
    "/nonexistent/model.pt",
    "--vocab",
    "/nonexistent/vocab.txt.gz",
    "--out",
    "/tmp/longclip-export-test",
  ]);
  assert.notEqual(run.code, 0);
  assert.match(run.stderr, /nonexistent/);
});
