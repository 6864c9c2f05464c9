/**
 * `longclip tokenize` as a child process, on a temporary model directory holding only
 * config.json and a merges file: the demo model's (outputs compared with the tokenizer in
 * process), and the CLIP merges file of ../shared (outputs compared with the official ids).
 */
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { tokenizerFromModelDir } from "../src/tokenize/model-dir.ts";
import { runCli } from "./helpers/cli.ts";
import { DEMO_MODEL_DIR, longParagraph } from "./helpers/demo-model.ts";
import { CLIP_VOCAB, loadReference, SKIP_WITHOUT_SHARED } from "./helpers/reference.ts";

interface Expected {
  text: string;
  ids: number[];
  tokens: number;
}

/** A model directory with only config.json and the merges file, and the CLI's answers. */
async function tokenizeWith(
  dir: string,
  vocab: string,
  tokenizer: { vocab_size: number; num_merges: number },
  texts: readonly string[],
) {
  mkdirSync(dir, { recursive: true });
  copyFileSync(vocab, path.join(dir, path.basename(vocab)));
  writeFileSync(
    path.join(dir, "config.json"),
    JSON.stringify({
      format: "longclip-onnx",
      format_version: 1,
      context_length: 248,
      vocab_size: tokenizer.vocab_size,
      start_token_id: tokenizer.vocab_size - 2,
      end_token_id: tokenizer.vocab_size - 1,
      tokenizer: { file: path.basename(vocab), type: "clip-bpe", num_merges: tokenizer.num_merges },
    }),
  );
  const lines = texts.map((text) => JSON.stringify(text));
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
  return outputs;
}

function check(outputs: unknown[], expected: readonly Expected[]) {
  outputs.forEach((out, i) => {
    const want = expected[i] as Expected;
    assert.deepEqual(out, {
      ids: want.ids.slice(0, 248),
      tokens: want.tokens,
      truncated: want.tokens > 248,
    });
  });
}

describe("longclip tokenize", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "longclip-tokenize-cli-"));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test("one output line per input line, in order; bad lines give bad_input", async () => {
    const texts = ["", "a photo of a cat", longParagraph(12), longParagraph()];
    const tokenizer = tokenizerFromModelDir(DEMO_MODEL_DIR);
    const outputs = await tokenizeWith(
      path.join(dir, "demo"),
      path.join(DEMO_MODEL_DIR, "vocab.txt"),
      { vocab_size: 860, num_merges: 346 },
      texts,
    );
    check(
      outputs,
      texts.map((text) => {
        const encoded = tokenizer.encode(text);
        return { text, ids: Array.from(encoded.ids), tokens: encoded.tokens };
      }),
    );
  });

  test("with the CLIP merges file, the ids are the official ones", {
    skip: SKIP_WITHOUT_SHARED,
  }, async () => {
    const texts = loadReference().texts;
    const outputs = await tokenizeWith(
      path.join(dir, "clip"),
      CLIP_VOCAB,
      { vocab_size: 49_408, num_merges: 48_894 },
      texts.map((t) => t.text),
    );
    check(
      outputs,
      texts.map((t) => ({ text: t.text, ids: t.ids_248, tokens: t.ids.length })),
    );
  });

  test("a directory without config.json fails with model_not_found", async () => {
    const run = await runCli(["tokenize", "--model", path.join(dir, "absent")], '"a cat"\n');
    assert.equal(run.code, 1);
    assert.match(run.stderr, /model_not_found/);
    assert.equal(run.stdout, "");
  });
});
