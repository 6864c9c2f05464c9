/**
 * The cleaning and splitting steps against Python itself, the language of the official code:
 * html.unescape, str.lower and re's whitespace from the standard library, and the official
 * pre-tokenisation pattern run by the `regex` module with IGNORECASE. Skips without python3
 * (the `regex` part without that module).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { describe, test } from "node:test";
import { cleanText, collapseWhitespace, htmlUnescape } from "../src/tokenize/clean.ts";
import { splitWords } from "../src/tokenize/clip-tokenizer.ts";
import { seededRandom } from "../tools/bench/vectors.ts";

const ORACLE = String.raw`
import html, html.entities, json, re, sys, unicodedata
request = json.load(sys.stdin)
out = {}
names = sorted(html.entities.html5)
# Every entity name with and without ";", upper-cased, cut short and followed by letters,
# plus numeric references around the special ranges.
refs = []
for name in names:
    base = name.rstrip(";")
    refs += ["&" + name, "&" + base + "x;", "&" + base.upper() + ";", "&" + base[:-1] + ";"]
for num in list(range(0, 0x110)) + [0xD7FF, 0xD800, 0xDFFF, 0xE000, 0xFDD0, 0xFDEF, 0xFFFE,
        0xFFFF, 0x1FFFE, 0x10FFFF, 0x110000, 10**20]:
    refs += ["&#%d;" % num, "&#x%X" % num, "a&#%dz" % num]
refs += request["html"]
out["html"] = [[s, html.unescape(s)] for s in refs]
# Code points Python's Unicode tables assign (surrogates aside), as [first, last] ranges, and
# the lower-case of each one that changes.
assigned, changed = [], {}
for c in range(0x110000):
    if unicodedata.category(chr(c)) in ("Cn", "Cs"):
        continue
    if assigned and assigned[-1][1] == c - 1:
        assigned[-1][1] = c
    else:
        assigned.append([c, c])
    if chr(c).lower() != chr(c):
        changed[c] = chr(c).lower()
out["assigned"] = assigned
out["lower_changed"] = changed
out["lower"] = [s.lower() for s in request["lower"]]
out["whitespace"] = [re.sub(r"\s+", " ", s).strip() for s in request["whitespace"]]
try:
    import regex
    pattern = regex.compile(
        r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
        regex.IGNORECASE,
    )
    out["split"] = [pattern.findall(s) for s in request["split"]]
except ImportError:
    out["split"] = None
json.dump(out, sys.stdout)
`;

const rand = seededRandom(7);
const PIECES = [
  "a",
  "Z",
  "cat",
  "İ",
  "ſ",
  "Σ",
  "ΣΑΣ",
  "ß",
  "é",
  "e\u0301",
  "\u0345",
  "ǅ",
  "Ⅻ",
  "٣",
  "²",
  "½",
  "7",
  "42",
  "'",
  "'s",
  "'S",
  "'ll",
  "'re",
  "'ve",
  "'m",
  "'d",
  "'t",
  "'x",
  "!",
  "?!",
  ".",
  "...",
  "&",
  "&amp;",
  "&lt",
  "&#233;",
  "<|endoftext|>",
  "<|startoftext|>",
  "<|ſtartoftext|>",
  "東京",
  "한국어",
  "😀",
  "👍🏽",
  "\u200b",
  "\u00ad",
  " ",
  "  ",
  "\t",
  "\n",
  "\u00a0",
  "\u3000",
  "\u2028",
  "\u001c",
  "\u0085",
  "\ufeff",
  "\u180e",
  "-",
  "_",
  "@",
  "#",
  "$",
  "🇫🇷",
  "ﬁ",
];
const piece = (): string => PIECES[Math.floor(rand() * PIECES.length)] as string;
const phrase = (n: number): string => Array.from({ length: n }, piece).join("");

function runOracle(request: object): Record<string, unknown> | undefined {
  const run = spawnSync("python3", ["-c", ORACLE], {
    input: JSON.stringify(request),
    encoding: "utf8",
    maxBuffer: 256 * 1024 * 1024,
  });
  if (run.error !== undefined || run.status !== 0) return undefined;
  return JSON.parse(run.stdout) as Record<string, unknown>;
}

const lowerInputs = [
  // Final sigma needs a cased letter before and none after.
  "ΟΔΟΣ",
  "ΟΔΟΣ.",
  "Σ",
  "ΑΣ'Β",
  "ΑΣ\u0301",
  "İI",
  ...Array.from({ length: 300 }, () => phrase(6)),
];
const allBmpSpaces = Array.from({ length: 0x3001 }, (_, code) =>
  code >= 0xd800 ? "" : String.fromCharCode(code),
).join("");
const whitespaceInputs = [allBmpSpaces, ...Array.from({ length: 300 }, () => phrase(8))];
const ASCII_PIECES = PIECES.filter((p) => /^[\x20-\x7e]+$/.test(p));
const asciiPhrase = (n: number): string =>
  Array.from({ length: n }, () => ASCII_PIECES[Math.floor(rand() * ASCII_PIECES.length)]).join("");
// Pure ASCII text goes through the hand-written splitter, the rest through the regex.
const splitInputs = [
  ...Array.from({ length: 500 }, () => cleanText(phrase(10))),
  ...Array.from({ length: 300 }, () => cleanText(asciiPhrase(12))),
];
const htmlInputs = Array.from({ length: 300 }, () => phrase(5));

const oracle = runOracle({
  html: htmlInputs,
  lower: lowerInputs,
  whitespace: whitespaceInputs,
  split: splitInputs,
});
const SKIP_WITHOUT_PYTHON = oracle === undefined ? "skipped: python3 is not available" : false;

describe("cleaning and splitting agree with Python", { skip: SKIP_WITHOUT_PYTHON }, () => {
  const answers = oracle as Record<string, unknown>;

  test("html.unescape", (t) => {
    const pairs = answers.html as [string, string][];
    const wrong = pairs.filter(([input, expected]) => htmlUnescape(input) !== expected);
    t.diagnostic(`${pairs.length - wrong.length}/${pairs.length} strings agree`);
    assert.deepEqual(wrong.slice(0, 10), []);
  });

  test("str.lower on every code point Python's Unicode tables assign", (t) => {
    const changed = answers.lower_changed as Record<string, string>;
    const wrong: number[] = [];
    let compared = 0;
    for (const [first, last] of answers.assigned as [number, number][]) {
      for (let code = first; code <= last; code++) {
        const ch = String.fromCodePoint(code);
        if (ch.toLowerCase() !== (changed[code] ?? ch)) wrong.push(code);
        compared++;
      }
    }
    t.diagnostic(`${compared - wrong.length}/${compared} code points agree`);
    assert.deepEqual(wrong.slice(0, 10), []);
  });

  test("str.lower in context (final sigma) and on mixed text", () => {
    const expected = answers.lower as string[];
    lowerInputs.forEach((input, i) => {
      assert.equal(input.toLowerCase(), expected[i], JSON.stringify(input));
    });
  });

  test("re.sub(r'\\s+', ' ', text).strip()", () => {
    const expected = answers.whitespace as string[];
    whitespaceInputs.forEach((input, i) => {
      assert.equal(collapseWhitespace(input), expected[i], JSON.stringify(input.slice(0, 40)));
    });
  });

  test("the official pattern under the regex module", (t) => {
    if (answers.split === null) {
      t.skip("skipped: the Python regex module is not installed");
      return;
    }
    const expected = answers.split as string[][];
    splitInputs.forEach((input, i) => {
      assert.deepEqual(splitWords(input), expected[i], JSON.stringify(input));
    });
  });
});
