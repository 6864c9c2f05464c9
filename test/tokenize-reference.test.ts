/**
 * Token ids against the official outputs in ../shared/reference: every case of
 * tokenizer-cases.json (SimpleTokenizer.encode) and every text of longclip-tiny/reference.json
 * (framed ids, and the 248-position cut the model reads).
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, test } from "node:test";
import { ClipTokenizer } from "../src/tokenize/index.ts";
import {
  CLIP_VOCAB,
  loadReference,
  REFERENCE_DIR,
  SKIP_WITHOUT_SHARED,
} from "./helpers/reference.ts";

interface TokenizerCase {
  text: string;
  ids: number[];
}

describe("token ids equal the official ones", { skip: SKIP_WITHOUT_SHARED }, () => {
  const tokenizer = (): ClipTokenizer =>
    ClipTokenizer.fromFile(CLIP_VOCAB, { numMerges: 48_894, contextLength: 248 });

  test("the CLIP vocabulary: 49,408 tokens, start 49406, end 49407", () => {
    const t = tokenizer();
    assert.equal(t.vocabSize, 49_408);
    assert.equal(t.startId, 49_406);
    assert.equal(t.endId, 49_407);
  });

  test("all cases of tokenizer-cases.json", (t) => {
    const { cases } = JSON.parse(
      readFileSync(path.join(REFERENCE_DIR, "tokenizer-cases.json"), "utf8"),
    ) as { cases: TokenizerCase[] };
    const tok = tokenizer();
    const failures: string[] = [];
    for (const [index, item] of cases.entries()) {
      const ids = Array.from(tok.bpeIds(item.text));
      if (ids.length !== item.ids.length || ids.some((id, i) => id !== item.ids[i])) {
        failures.push(`case ${index}: ${JSON.stringify(item.text.slice(0, 60))}`);
      }
    }
    t.diagnostic(`${cases.length - failures.length}/${cases.length} cases agree`);
    assert.equal(cases.length, 400);
    assert.deepEqual(failures, []);
  });

  test("every text of longclip-tiny/reference.json, framed and cut to 248", (t) => {
    const reference = loadReference();
    const tok = tokenizer();
    let truncatedTexts = 0;
    for (const item of reference.texts) {
      const full = [tok.startId, ...tok.bpeIds(item.text), tok.endId];
      assert.deepEqual(full, item.ids, item.text.slice(0, 60));
      const out = tok.encode(item.text);
      assert.deepEqual(Array.from(out.ids), item.ids_248, item.text.slice(0, 60));
      assert.equal(out.tokens, item.ids.length);
      assert.equal(out.truncated, item.ids.length > 248);
      if (out.truncated) truncatedTexts++;
    }
    t.diagnostic(`${reference.texts.length}/${reference.texts.length} texts agree`);
    // The reference includes a text longer than 248 tokens to show truncation.
    assert.ok(truncatedTexts >= 1);
  });
});
