/**
 * Tokenizer throughput on generated paragraph-length captions (about 100–200 tokens each).
 *
 *   npm run bench:tokenizer -- --vocab PATH/bpe_simple_vocab_16e6.txt.gz [--captions 20000]
 *     [--cache-size WORDS] [--compound-share 0.01]
 *
 * Words come from the vocabulary's own whole-word tokens, with a share of made-up compounds
 * and numbers so that many words are new to the word cache. Three rates are printed:
 * cold (fresh tokenizer, empty cache), warm on unseen captions (cache filled by the first set),
 * and warm on the same captions again. Rates are given per CPU second of this process (fair on a
 * shared machine; garbage-collector threads count too) and per wall-clock second.
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { gunzipSync } from "node:zlib";
import { cleanText } from "../../src/tokenize/clean.ts";
import { ClipTokenizer, splitWords } from "../../src/tokenize/clip-tokenizer.ts";
import { seededRandom } from "./vectors.ts";

const { values } = parseArgs({
  options: {
    vocab: { type: "string" },
    captions: { type: "string", default: "20000" },
    "num-merges": { type: "string", default: "48894" },
    "context-length": { type: "string", default: "248" },
    seed: { type: "string", default: "1" },
    "cache-size": { type: "string" },
    "compound-share": { type: "string", default: "0.01" },
  },
});
if (values.vocab === undefined) {
  console.error("usage: npm run bench:tokenizer -- --vocab PATH/bpe_simple_vocab_16e6.txt.gz");
  process.exit(2);
}
const count = Number(values.captions);
const numMerges = Number(values["num-merges"]);
const contextLength = Number(values["context-length"]);
/** Share of made-up compound words, nearly all distinct: the cache-miss pressure. */
const compoundShare = Number(values["compound-share"]);

/** Whole-word tokens of the merges file that are plain ASCII letters, in merge order. */
function vocabularyWords(file: string): string[] {
  const bytes = readFileSync(file);
  const text = (file.endsWith(".gz") ? gunzipSync(bytes) : bytes).toString("utf8");
  const words: string[] = [];
  for (const line of text.split("\n").slice(1, numMerges + 1)) {
    const token = line.replace(" ", "");
    if (!token.endsWith("</w>")) continue;
    const word = token.slice(0, -4);
    if (/^[a-z]{2,}$/.test(word)) words.push(word);
  }
  return words;
}

const words = vocabularyWords(values.vocab);
const PUNCTUATION = [",", ",", ".", ";", ":", "!", "?", "-", "(", ")", "&", "'s"];

function makeCaptions(n: number, seed: number): string[] {
  const rand = seededRandom(seed);
  const pick = (): string => {
    // Earlier merges are more frequent words: skew the choice towards them.
    const index = Math.floor(words.length * rand() ** 2.5);
    return words[index] as string;
  };
  const captions: string[] = [];
  for (let c = 0; c < n; c++) {
    const length = 75 + Math.floor(rand() * 80);
    const parts: string[] = [];
    for (let w = 0; w < length; w++) {
      const r = rand();
      let word: string;
      if (r < compoundShare) word = pick() + pick();
      else if (r < compoundShare + 0.03) word = String(Math.floor(rand() * 10_000));
      else word = pick();
      if (rand() < 0.08) word = word.charAt(0).toUpperCase() + word.slice(1);
      parts.push(word);
      if (rand() < 0.1) parts.push(PUNCTUATION[Math.floor(rand() * PUNCTUATION.length)] as string);
    }
    captions.push(parts.join(" "));
  }
  return captions;
}

interface Measure {
  wall: number;
  cpu: number;
  tokens: number;
}

/** Wall time and this process's CPU time: on a shared machine the CPU time is the fair one. */
function run(tokenizer: ClipTokenizer, captions: string[]): Measure {
  let tokens = 0;
  const cpuStart = process.cpuUsage();
  const start = performance.now();
  for (const caption of captions) tokens += tokenizer.encode(caption).tokens;
  const wall = (performance.now() - start) / 1000;
  const cpuUsed = process.cpuUsage(cpuStart);
  return { wall, cpu: (cpuUsed.user + cpuUsed.system) / 1e6, tokens };
}

const seed = Number(values.seed);
const first = makeCaptions(count, seed);
const second = makeCaptions(count, seed + 1);
const cacheSize = values["cache-size"] === undefined ? undefined : Number(values["cache-size"]);
const tokenizer = ClipTokenizer.fromFile(values.vocab, { numMerges, contextLength, cacheSize });

const report = (label: string, captions: string[]): void => {
  const { wall, cpu, tokens } = run(tokenizer, captions);
  const rate = (n: number, seconds: number): string => (n / seconds).toFixed(0).padStart(8);
  console.log(
    `${label.padEnd(26)} ${rate(captions.length, cpu)} captions/s ${rate(tokens, cpu)} tokens/s` +
      ` per CPU second | ${rate(captions.length, wall)} captions/s wall` +
      ` | ${(tokens / captions.length).toFixed(1)} tokens per caption`,
  );
};

const distinct = new Set(first.flatMap((caption) => splitWords(cleanText(caption)))).size;
console.log(
  `${count} captions per set with ${distinct} distinct words (word cache: ${cacheSize ?? "default"}), one thread`,
);
report("cold (empty cache)", first);
report("warm, unseen captions", second);
report("warm, same captions again", first);
