/**
 * Tokenizer unit tests that need no shared material: BPE mechanics on a tiny hand-made merges
 * file, pre-tokenisation, framing and truncation, the cleaning rules, and load errors.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { gzipSync } from "node:zlib";
import { isAppError } from "../src/core/errors.ts";
import {
  ClipTokenizer,
  cleanText,
  collapseWhitespace,
  fixText,
  htmlUnescape,
  tokenizerFromModelDir,
} from "../src/tokenize/index.ts";

const dir = mkdtempSync(path.join(tmpdir(), "longclip-tokenize-"));
after(() => rmSync(dir, { recursive: true, force: true }));

/**
 * Vocabulary id of a byte's symbol. bytes_to_unicode lists the printable bytes ! (0x21) to ~
 * (0x7e) first, so for those the id is the byte minus 0x21; "</w>" forms are 256 later.
 */
const byte = (ch: string): number => ch.charCodeAt(0) - 0x21;
const byteEnd = (ch: string): number => byte(ch) + 256;
/**
 * Id of a byte from the ¡..¬ and ®..ÿ ranges, which follow the 94 printable ASCII bytes in
 * bytes_to_unicode (¡..¬ is 12 bytes).
 */
const latin1 = (b: number): number => (b <= 0xac ? 94 + b - 0xa1 : 106 + b - 0xae);
/** Merge line k (0-based, after the header) is token 512 + k. */
const merge = (k: number): number => 512 + k;

const MERGES = [
  "#version: tiny test vocabulary",
  "l o", // 0: lo
  "lo w</w>", // 1: low</w>
  "b c</w>", // 2: bc</w>
  "a b", // 3: ab
  "a a", // 4: aa
  "x yz</w>", // 5: xyz</w>, "yz</w>" is no token: never applies
  "a bc", // 6: abc
  "ab c", // 7: abc again: the later id wins, as in the official dict
  "abc d</w>", // 8: abcd</w>
];

function tiny(contextLength = 248, lines = MERGES): ClipTokenizer {
  return ClipTokenizer.fromMerges(lines.join("\n"), {
    numMerges: lines.length - 1,
    contextLength,
  });
}

const ids = (tokenizer: ClipTokenizer, text: string): number[] =>
  Array.from(tokenizer.bpeIds(text));

describe("BPE on a hand-made merges file", () => {
  const tokenizer = tiny();

  test("vocabulary layout: 512 byte symbols, one token per merge, then start and end", () => {
    assert.equal(tokenizer.startId, 512 + MERGES.length - 1);
    assert.equal(tokenizer.endId, tokenizer.startId + 1);
    assert.equal(tokenizer.vocabSize, tokenizer.endId + 1);
  });

  test("merges apply in rank order until no ranked pair is left", () => {
    assert.deepEqual(ids(tokenizer, "low"), [merge(1)]);
    // "lo" alone: l o</w> is not a ranked pair (only "l o" is), so the bytes stay.
    assert.deepEqual(ids(tokenizer, "lo"), [byte("l"), byteEnd("o")]);
    // b c</w> (rank 2) beats a b (rank 3): a + bc</w>, which has no rank.
    assert.deepEqual(ids(tokenizer, "abc"), [byte("a"), merge(2)]);
  });

  test("a single-character word is its byte symbol with </w>", () => {
    assert.deepEqual(ids(tokenizer, "q"), [byteEnd("q")]);
  });

  test("every occurrence of the best pair merges, left to right, without overlap", () => {
    assert.deepEqual(ids(tokenizer, "aaaaa"), [merge(4), merge(4), byteEnd("a")]);
  });

  test("a merge string made by two lines takes the later line's id", () => {
    // a b (rank 3) first, then ab c (rank 7) gives "abc", whose id is line 7's.
    assert.deepEqual(ids(tokenizer, "abcx"), [merge(7), byteEnd("x")]);
    assert.deepEqual(ids(tokenizer, "abcd"), [merge(8)]);
  });

  test("a merge whose part is no token never applies", () => {
    assert.deepEqual(ids(tokenizer, "xyz"), [byte("x"), byte("y"), byteEnd("z")]);
  });

  test("non-ASCII words are BPE'd over their UTF-8 bytes", () => {
    // é is C3 A9.
    assert.deepEqual(ids(tokenizer, "é"), [latin1(0xc3), latin1(0xa9) + 256]);
  });
});

describe("pre-tokenisation", () => {
  const tokenizer = tiny();

  test("contractions, single digits and punctuation runs are separate words", () => {
    assert.deepEqual(ids(tokenizer, "it's"), [byte("i"), byteEnd("t"), byte("'"), byteEnd("s")]);
    assert.deepEqual(ids(tokenizer, "42"), [byteEnd("4"), byteEnd("2")]);
    assert.deepEqual(ids(tokenizer, "?!"), [byte("?"), byteEnd("!")]);
    assert.deepEqual(ids(tokenizer, "a.b"), [byteEnd("a"), byteEnd("."), byteEnd("b")]);
  });

  test("the same words with and without non-ASCII text around them", () => {
    // The ASCII scanner and the regex path must agree.
    const ascii = ids(tokenizer, "we're low's 7 ?! lo");
    const mixed = ids(tokenizer, "we're low's 7 ?! lo é").slice(0, ascii.length);
    assert.deepEqual(mixed, ascii);
  });

  test("special-token text maps to the special ids", () => {
    assert.deepEqual(ids(tokenizer, "<|startoftext|>low<|endoftext|>"), [
      tokenizer.startId,
      merge(1),
      tokenizer.endId,
    ]);
  });

  test("ſ counts as s in contractions, as under the official IGNORECASE", () => {
    // One word "'ſ" (ſ is C5 BF), not "'" and "ſ" apart.
    assert.deepEqual(ids(tokenizer, "'ſ"), [byte("'"), latin1(0xc5), latin1(0xbf) + 256]);
  });

  test("U+0345 is dropped, as under the official IGNORECASE", () => {
    assert.deepEqual(ids(tokenizer, "a\u0345"), ids(tokenizer, "a"));
  });
});

describe("framing and truncation", () => {
  test("empty and blank text give [start, end]", () => {
    const tokenizer = tiny();
    for (const text of ["", "   ", "\n\t"]) {
      const out = tokenizer.encode(text);
      assert.deepEqual(Array.from(out.ids), [tokenizer.startId, tokenizer.endId]);
      assert.equal(out.tokens, 2);
      assert.equal(out.truncated, false);
    }
  });

  test("text that fits exactly is not cut", () => {
    const tokenizer = tiny(5);
    const out = tokenizer.encode("1 2 3");
    assert.deepEqual(Array.from(out.ids), [
      tokenizer.startId,
      byteEnd("1"),
      byteEnd("2"),
      byteEnd("3"),
      tokenizer.endId,
    ]);
    assert.equal(out.tokens, 5);
    assert.equal(out.truncated, false);
  });

  test("longer text is cut to the context length with the last kept id set to end", () => {
    const tokenizer = tiny(5);
    const out = tokenizer.encode("1 2 3 4 5 6");
    assert.deepEqual(Array.from(out.ids), [
      tokenizer.startId,
      byteEnd("1"),
      byteEnd("2"),
      byteEnd("3"),
      tokenizer.endId,
    ]);
    assert.equal(out.tokens, 8);
    assert.equal(out.truncated, true);
  });

  test("248 positions: tokens counts everything, ids stop at 248", () => {
    const tokenizer = tiny(248);
    const out = tokenizer.encode(Array.from({ length: 300 }, (_, i) => String(i % 10)).join(" "));
    assert.equal(out.ids.length, 248);
    assert.equal(out.ids[0], tokenizer.startId);
    assert.equal(out.ids[247], tokenizer.endId);
    assert.equal(out.ids[246], byteEnd(String(245 % 10)));
    assert.equal(out.tokens, 302);
    assert.equal(out.truncated, true);
  });

  test("results do not depend on the cache", () => {
    const cached = tiny();
    const uncached = ClipTokenizer.fromMerges(MERGES.join("\n"), {
      numMerges: MERGES.length - 1,
      contextLength: 248,
      cacheSize: 0,
    });
    const text = "low abc aaaaa low abcd xyz low é é";
    for (let round = 0; round < 3; round++) {
      assert.deepEqual(ids(cached, text), ids(uncached, text));
    }
  });
});

describe("loading", () => {
  test("plain and gzip-compressed merges files give the same tokenizer", () => {
    const plain = path.join(dir, "merges.txt");
    const gz = path.join(dir, "merges.txt.gz");
    writeFileSync(plain, MERGES.join("\n"));
    writeFileSync(gz, gzipSync(MERGES.join("\n")));
    const options = { numMerges: MERGES.length - 1, contextLength: 77 };
    const a = ClipTokenizer.fromFile(plain, options);
    const b = ClipTokenizer.fromFile(gz, options);
    assert.deepEqual(ids(a, "low abcd"), ids(b, "low abcd"));
    assert.equal(a.contextLength, 77);
  });

  test("fewer merge lines than num_merges is a tokenizer_invalid error", () => {
    assert.throws(
      () => ClipTokenizer.fromMerges(MERGES.join("\n"), { numMerges: 50, contextLength: 248 }),
      (error) => isAppError(error) && error.code === "tokenizer_invalid",
    );
  });

  test("a missing file is tokenizer_not_found; a broken gzip is tokenizer_invalid", () => {
    const options = { numMerges: 1, contextLength: 248 };
    assert.throws(
      () => ClipTokenizer.fromFile(path.join(dir, "absent.txt.gz"), options),
      (error) => isAppError(error) && error.code === "tokenizer_not_found",
    );
    const broken = path.join(dir, "broken.txt.gz");
    writeFileSync(broken, Buffer.from([0x1f, 0x8b, 1, 2, 3]));
    assert.throws(
      () => ClipTokenizer.fromFile(broken, options),
      (error) => isAppError(error) && error.code === "tokenizer_invalid",
    );
  });

  test("a context length below 2 is refused", () => {
    assert.throws(
      () => tiny(1),
      (error) => isAppError(error) && error.code === "tokenizer_invalid",
    );
  });
});

describe("model directory", () => {
  const model = path.join(dir, "model");
  const numMerges = MERGES.length - 1;
  const writeModel = (config: Record<string, unknown>): void => {
    mkdirSync(model, { recursive: true });
    writeFileSync(path.join(model, "merges.txt.gz"), gzipSync(MERGES.join("\n")));
    writeFileSync(
      path.join(model, "config.json"),
      JSON.stringify({
        context_length: 77,
        vocab_size: 512 + numMerges + 2,
        start_token_id: 512 + numMerges,
        end_token_id: 512 + numMerges + 1,
        tokenizer: { file: "merges.txt.gz", type: "clip-bpe", num_merges: numMerges },
        ...config,
      }),
    );
  };

  test("config.json names the merges file, the merge count and the context length", () => {
    writeModel({});
    const tokenizer = tokenizerFromModelDir(model);
    assert.equal(tokenizer.contextLength, 77);
    assert.deepEqual(ids(tokenizer, "low"), [merge(1)]);
  });

  test("ids that do not follow from num_merges are a model_invalid error", () => {
    writeModel({ end_token_id: 5 });
    assert.throws(
      () => tokenizerFromModelDir(model),
      (error) =>
        isAppError(error) && error.code === "model_invalid" && /end_token_id/.test(error.message),
    );
  });

  test("a tokenizer file outside the directory is refused", () => {
    writeModel({ tokenizer: { file: "../merges.txt", type: "clip-bpe", num_merges: numMerges } });
    assert.throws(
      () => tokenizerFromModelDir(model),
      (error) => isAppError(error) && error.code === "model_invalid",
    );
  });

  test("a missing directory is model_not_found", () => {
    assert.throws(
      () => tokenizerFromModelDir(path.join(dir, "no-model")),
      (error) => isAppError(error) && error.code === "model_not_found",
    );
  });
});

describe("cleaning: ftfy fixes", () => {
  // Expected values are ftfy's documented examples (docstrings of ftfy.fixes).
  test("HTML entities with semicolons, including all-caps forms", () => {
    assert.equal(fixText("&lt;tag&gt;"), "<tag>");
    assert.equal(fixText("&Jscr;ohn &HilbertSpace;ancock"), "𝒥ohn ℋancock");
    assert.equal(fixText("&checkmark;"), "✓");
    assert.equal(fixText("P&eacute;rez"), "Pérez");
    assert.equal(fixText("P&EACUTE;REZ"), "PÉREZ");
    assert.equal(fixText("BUNDESSTRA&SZLIG;E"), "BUNDESSTRASSE");
    assert.equal(fixText("&ntilde; &Ntilde; &NTILDE; &nTILDE;"), "ñ Ñ Ñ &nTILDE;");
  });

  test("entities without a semicolon are left to html.unescape", () => {
    assert.equal(fixText("this&not that"), "this&not that");
  });

  test("nested escapes unescape until stable; a line with < switches unescaping off", () => {
    assert.equal(fixText("&amp;amp;amp;"), "&");
    assert.equal(fixText("<b>&eacute;</b>"), "<b>&eacute;</b>");
    assert.equal(fixText("&eacute;\n<b>&eacute;\n&eacute;"), "é\n<b>&eacute;\n&eacute;");
  });

  test("typographic ligatures become letters", () => {
    assert.equal(fixText("ﬂuﬃeﬆ"), "fluffiest");
    assert.equal(fixText("ﬀ ﬁ ﬂ ﬃ ﬄ ﬅ ﬆ"), "ff fi fl ffi ffl ſt st");
  });

  test("full-width and half-width forms become normal width", () => {
    assert.equal(fixText("ＬＯＵＤ　ＮＯＩＳＥＳ"), "LOUD NOISES");
    assert.equal(fixText("Ｕﾀｰﾝ"), "Uターン");
  });

  test("curly quotes become straight", () => {
    assert.equal(fixText("\u201chere\u2019s a test\u201d"), '"here\'s a test"');
    assert.equal(fixText("\u2018\u2019\u201a\u201b\u02bc"), "'''''");
    assert.equal(fixText("\u201c\u201d\u201e\u201f"), '""""');
  });

  test("C1 controls read as Windows-1252", () => {
    assert.equal(fixText("wait\u0085"), "wait…");
    assert.equal(fixText("it\u0092s \u0080"), "it's €");
  });

  test("terminal escapes and control characters are removed", () => {
    assert.equal(
      fixText("\u001b[36;44mI'm blue, da ba dee da ba doo...\u001b[0m"),
      "I'm blue, da ba dee da ba doo...",
    );
    assert.equal(fixText("a\u0000b\u000bc\u001fd\u007fe\ufefff\u206ag\ufffch"), "abcdefgh");
    assert.equal(fixText("tab\tline\nff\fcr\r"), "tab\tline\nff\fcr\n");
  });

  test("lone surrogates become U+FFFD, pairs stay", () => {
    assert.equal(fixText("a\ud800b"), "a\ufffdb");
    assert.equal(fixText("\udc00"), "\ufffd");
    assert.equal(fixText("😀"), "😀");
  });

  test("NFC normalisation", () => {
    assert.equal(fixText("e\u0301"), "\u00e9");
    assert.equal(fixText("\u212b"), "\u00c5");
  });
});

describe("cleaning: html.unescape, whitespace, lower-case", () => {
  test("html.unescape decodes entities without semicolons and numeric references", () => {
    assert.equal(htmlUnescape("&amp"), "&");
    assert.equal(htmlUnescape("&ampx"), "&x");
    assert.equal(htmlUnescape("&#65;&#x42&#X43;"), "ABC");
    assert.equal(htmlUnescape("&#128;"), "€");
    assert.equal(htmlUnescape("&#0;&#xD800;&#99999999999;"), "\ufffd\ufffd\ufffd");
    assert.equal(htmlUnescape("a&#1;b&#xFFFE;c"), "abc");
    assert.equal(htmlUnescape("&bogus; & &#;"), "&bogus; & &#;");
  });

  test("the official cleaning unescapes twice and no more", () => {
    // ftfy unescapes fully only when every level ends in ";"; html.unescape twice then.
    assert.equal(cleanText("&amp;amp"), "&");
    assert.equal(cleanText("&ampamp;lt"), "&lt");
    assert.equal(cleanText("<p>&amp;amp;lt;</p>"), "<p>&lt;</p>");
  });

  test("whitespace is collapsed and stripped with Python's definition", () => {
    assert.equal(collapseWhitespace("  a \t\n b\u00a0\u2003c\u3000\u001cd  "), "a b c d");
    assert.equal(collapseWhitespace("a\u200bb"), "a\u200bb");
    assert.equal(collapseWhitespace("already clean"), "already clean");
    assert.equal(collapseWhitespace(" "), "");
  });

  test("lower-casing uses the full Unicode mapping", () => {
    assert.equal(cleanText("İSTANBUL"), "i\u0307stanbul");
    assert.equal(cleanText("ΟΔΟΣ"), "\u03bf\u03b4\u03bf\u03c2");
    assert.equal(cleanText("STRASSE Straße"), "strasse straße");
  });

  test("the whole pipeline", () => {
    assert.equal(
      cleanText("  A “Photo”\u00a0of\tthe ＣＡＴ &amp; ﬁsh  "),
      'a "photo" of the cat & fish',
    );
  });
});
