/**
 * `longclip tokenize` as a child process, on a temporary model directory holding only
 * config.json and the CLIP merges file; outputs are compared with the official ids.
 */
import assert from "node:assert/strict";
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { runCli } from "./helpers/cli.ts";
import { CLIP_VOCAB, loadReference, SKIP_WITHOUT_SHARED } from "./helpers/reference.ts";

describe("longclip tokenize", { skip: SKIP_WITHOUT_SHARED }, () => {
  const dir = mkdtempSync(path.join(tmpdir(), "longclip-tokenize-cli-"));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const vocabName = path.basename(CLIP_VOCAB);

  test("one output line per input line, in order; bad lines give bad_input", async () => {
    copyFileSync(CLIP_VOCAB, path.join(dir, vocabName));
    writeFileSync(
      path.join(dir, "config.json"),
      JSON.stringify({
        format: "longclip-onnx",
        format_version: 1,
        context_length: 248,
        vocab_size: 49_408,
        start_token_id: 49_406,
        end_token_id: 49_407,
        tokenizer: { file: vocabName, type: "clip-bpe", num_merges: 48_894 },
      }),
    );
    const texts = loadReference().texts;
    const lines = texts.map((t) => JSON.stringify(t.text));
    // Bad lines in the middle: not JSON, and JSON that is not a string.
    lines.splice(1, 0, "not json", '{"text": "a cat"}');
    const run = await runCli(["tokenize", "--model", dir], `${lines.join("\n")}\n`);
    assert.equal(run.code, 0, run.stderr);
    const outputs = run.stdout
      .trimEnd()
      .split("\n")
      .map((line) => JSON.parse(line));
    assert.equal(outputs.length, texts.length + 2);
    for (const bad of outputs.splice(1, 2)) assert.equal(bad.error.code, "bad_input");
    outputs.forEach((out, i) => {
      const expected = texts[i];
      assert.ok(expected);
      assert.deepEqual(out, {
        ids: expected.ids_248,
        tokens: expected.ids.length,
        truncated: expected.ids.length > 248,
      });
    });
  });

  test("a directory without config.json fails with model_not_found", async () => {
    const run = await runCli(["tokenize", "--model", path.join(dir, "absent")], '"a cat"\n');
    assert.equal(run.code, 1);
    assert.match(run.stderr, /model_not_found/);
    assert.equal(run.stdout, "");
  });
});
