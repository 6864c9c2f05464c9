import assert from "node:assert/strict";
import { test } from "node:test";
import { runWithoutPython } from "./convert-helpers.ts";
import { runCli } from "./helpers/cli.ts";
import { SKIP_WITHOUT_PYTHON } from "./helpers/python.ts";

test("longclip export --help describes the TypeScript converter, without Python", async () => {
  const run = await runWithoutPython(["export", "--help"]);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, /usage: longclip export --checkpoint PATH/);
  assert.match(run.stdout, /Hugging Face CLIPModel/);
  assert.match(run.stdout, /--python/);
});

test("longclip export without --out is a usage error", async () => {
  const run = await runWithoutPython(["export", "--checkpoint", "model.pt"]);
  assert.equal(run.code, 2);
  assert.match(run.stderr, /error \[usage\]: --checkpoint and --out are required/);
});

test("longclip export of a missing checkpoint says so with a code, without Python", async () => {
  const run = await runWithoutPython([
    "export",
    "--checkpoint",
    "/nonexistent/model.pt",
    "--vocab",
    "/nonexistent/vocab.txt.gz",
    "--out",
    "/tmp/longclip-export-test",
  ]);
  assert.equal(run.code, 1);
  assert.match(
    run.stderr,
    /error \[checkpoint_not_found\]: checkpoint not found: \/nonexistent\/model\.pt/,
  );
});

test("longclip export --python passes its arguments to python3 -m training export", {
  skip: SKIP_WITHOUT_PYTHON,
}, async () => {
  const run = await runCli(["export", "--python", "--help"]);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, /usage: python3 -m training export/);
  assert.match(run.stdout, /--random-init/);
  assert.match(run.stdout, /--fp16/);
});

test("longclip export --random-init goes to the Python exporter, whose failure is the exit code", {
  skip: SKIP_WITHOUT_PYTHON,
}, async () => {
  const run = await runCli([
    "export",
    "--random-init",
    "tiny",
    "--vocab",
    "/nonexistent/vocab.txt.gz",
    "--out",
    "/tmp/longclip-export-test",
  ]);
  assert.notEqual(run.code, 0);
  assert.match(run.stderr, /vocab file not found: \/nonexistent/);
});
