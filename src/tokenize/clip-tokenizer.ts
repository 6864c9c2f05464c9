/**
 * CLIP's byte-level BPE tokenizer (the official simple_tokenizer.py), driven by a merges file.
 *
 * Vocabulary, in id order: the 256 byte symbols of bytes_to_unicode, the same 256 with "</w>",
 * one token per merge line, then <|startoftext|> and <|endoftext|>. BPE runs on integer ids:
 * a word is its UTF-8 bytes as symbol ids (the last one with "</w>"); the adjacent pair with
 * the lowest merge rank is merged everywhere in the word, left to right, until no pair has a
 * rank, exactly as the official loop does.
 */
import { readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";
import { AppError } from "../core/errors.ts";
import { cleanText, PY_WHITESPACE_RUN } from "./clean.ts";
import type { TextTokenizer, TokenizedText } from "./types.ts";

export const START_TOKEN = "<|startoftext|>";
export const END_TOKEN = "<|endoftext|>";
/** Largest merges file read (gunzipped): CLIP's is 1.4 MB. */
const MAX_MERGES_BYTES = 64 * 1024 * 1024;

/**
 * The official pre-tokenisation pattern
 *
 *   <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
 *
 * which the `regex` module runs with IGNORECASE on lower-cased text. Case-insensitivity then
 * matters for two characters only, spelled out here so the faster case-sensitive form can be
 * used: "ſ" (U+017F) folds to "s", and U+0345 (combining ypogegrammeni, folding to ι) matches
 * neither the letter class nor the negated class, so it is dropped like whitespace. `\s` is
 * spelled out as the `regex` module's set (JavaScript's also holds U+FEFF).
 */
const PRE_TOKENIZE =
  // biome-ignore lint/suspicious/noMisleadingCharacterClass: U+0345 is meant as a lone character.
  /<\|[sſ]tartoftext\|>|<\|endoftext\|>|'[sſ]|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\p{L}\p{N}\u0345]+/gu;

/**
 * bytes_to_unicode as an ordered byte list: the printable bytes ! to ~, ¡ to ¬ and ® to ÿ stand
 * for themselves, the other 68 map to U+0100 upwards in byte order. The position of a byte in
 * this list is its vocabulary id.
 */
function byteOrder(): { bytes: number[]; chars: string[] } {
  const bytes: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bytes.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bytes.push(b);
  for (let b = 0xae; b <= 0xff; b++) bytes.push(b);
  const chars = new Array<string>(256);
  for (const b of bytes) chars[b] = String.fromCharCode(b);
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    if (chars[b] !== undefined) continue;
    bytes.push(b);
    chars[b] = String.fromCharCode(256 + extra);
    extra++;
  }
  return { bytes, chars };
}

const NON_ASCII = /[\u0080-\uffff]/;

/** Python whitespace other than " ": a merge line holding one is split the slow way. */
const OTHER_SPACE =
  // biome-ignore lint/suspicious/noControlCharactersInRegex: Python counts U+001C–U+001F as whitespace.
  /[\t\n\v\f\r\x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]/;

function isAsciiLetter(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a);
}

/** ASCII `\s` of the pattern: space and tab to carriage return. */
function isAsciiSpace(c: number): boolean {
  return c === 0x20 || (c >= 0x09 && c <= 0x0d);
}

/** Neither whitespace, letter nor digit. */
function isAsciiOther(c: number): boolean {
  return !isAsciiSpace(c) && !isAsciiLetter(c) && !(c >= 0x30 && c <= 0x39);
}

/** Length of the contraction ('s 't 're 've 'm 'll 'd) at `i`, or 0. */
function contractionLength(text: string, i: number): number {
  const a = text.charCodeAt(i + 1);
  if (a === 0x73 || a === 0x74 || a === 0x6d || a === 0x64) return 2;
  const b = text.charCodeAt(i + 2);
  if ((a === 0x72 && b === 0x65) || (a === 0x76 && b === 0x65) || (a === 0x6c && b === 0x6c)) {
    return 3;
  }
  return 0;
}

const HOT_MASK = (1 << 17) - 1;

/**
 * Calls `emit(text, start, end)` for each word of PRE_TOKENIZE in the cleaned text. ASCII text
 * is split by hand: letters are a–z (A–Z cannot survive lower-casing), and every character that
 * is neither whitespace, letter nor digit belongs to the "anything else" runs.
 */
export function forEachWord(
  text: string,
  emit: (text: string, start: number, end: number) => void,
): void {
  if (NON_ASCII.test(text)) {
    PRE_TOKENIZE.lastIndex = 0;
    for (let match = PRE_TOKENIZE.exec(text); match !== null; match = PRE_TOKENIZE.exec(text)) {
      emit(text, match.index, match.index + match[0].length);
    }
    return;
  }
  const n = text.length;
  let i = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    let end = i + 1;
    if (isAsciiSpace(c)) {
      i = end;
      continue;
    }
    if (isAsciiLetter(c)) {
      while (end < n && isAsciiLetter(text.charCodeAt(end))) end++;
    } else if (c >= 0x30 && c <= 0x39) {
      // A digit is a word on its own.
    } else if (c === 0x3c && text.startsWith(START_TOKEN, i)) {
      end = i + START_TOKEN.length;
    } else if (c === 0x3c && text.startsWith(END_TOKEN, i)) {
      end = i + END_TOKEN.length;
    } else if (c === 0x27 && contractionLength(text, i) > 0) {
      end = i + contractionLength(text, i);
    } else {
      while (end < n && isAsciiOther(text.charCodeAt(end))) end++;
    }
    emit(text, i, end);
    i = end;
  }
}

/** The words of cleaned text, as the official `re.findall(pat, text)` lists them. */
export function splitWords(cleaned: string): string[] {
  const words: string[] = [];
  forEachWord(cleaned, (text, start, end) => words.push(text.slice(start, end)));
  return words;
}

const BYTE_ORDER = byteOrder();
/** Byte value → vocabulary id of its symbol (add 256 for the "</w>" form). */
const BYTE_ID = new Int32Array(256);
BYTE_ORDER.bytes.forEach((b, id) => {
  BYTE_ID[b] = id;
});

/**
 * Merge ranks keyed by the id pair: open addressing over typed arrays, because a Map keyed by
 * `first * vocab + second` would hold non-small-integer keys and be several times slower.
 */
class PairTable {
  private readonly mask: number;
  private readonly firsts: Int32Array;
  private readonly seconds: Int32Array;
  private readonly ranks: Int32Array;
  private readonly merged: Int32Array;

  constructor(expected: number) {
    let capacity = 16;
    while (capacity < expected * 2) capacity *= 2;
    this.mask = capacity - 1;
    this.firsts = new Int32Array(capacity).fill(-1);
    this.seconds = new Int32Array(capacity);
    this.ranks = new Int32Array(capacity);
    this.merged = new Int32Array(capacity);
  }

  private slot(first: number, second: number): number {
    let slot = (Math.imul(first, 0x9e3779b1) ^ Math.imul(second, 0x85ebca6b)) & this.mask;
    while (this.firsts[slot] !== -1) {
      if (this.firsts[slot] === first && this.seconds[slot] === second) return slot;
      slot = (slot + 1) & this.mask;
    }
    return slot;
  }

  /** A later line with the same pair wins, as in the official `dict(zip(merges, ...))`. */
  set(first: number, second: number, rank: number, merged: number): void {
    const slot = this.slot(first, second);
    this.firsts[slot] = first;
    this.seconds[slot] = second;
    this.ranks[slot] = rank;
    this.merged[slot] = merged;
  }

  /** Slot of the pair, or -1 when the pair has no rank. */
  find(first: number, second: number): number {
    const slot = this.slot(first, second);
    return this.firsts[slot] === -1 ? -1 : slot;
  }

  rank(slot: number): number {
    return this.ranks[slot] as number;
  }

  mergedId(slot: number): number {
    return this.merged[slot] as number;
  }
}

/** A word's ids: most words are one token, stored as a plain number to spare allocations. */
type WordIds = number | number[];

export interface ClipTokenizerOptions {
  /** Merge lines used after the header (48,894 for CLIP's vocabulary). */
  numMerges: number;
  /** Model input length: 248 for Long-CLIP, 77 for CLIP. */
  contextLength: number;
  /** About how many distinct words keep their ids cached (default 100,000); 0 turns caching off. */
  cacheSize?: number;
}

const DEFAULT_CACHE_SIZE = 100_000;

export class ClipTokenizer implements TextTokenizer {
  readonly contextLength: number;
  readonly startId: number;
  readonly endId: number;
  readonly vocabSize: number;
  private readonly pairs: PairTable;
  /**
   * Word → ids, in two generations: when the young one is full it becomes the old one and the
   * previous old one is dropped; a hit in the old generation moves the word back to the young.
   * This keeps recently used words at O(1) cost per lookup without per-hit bookkeeping.
   */
  private young = new Map<string, WordIds>();
  private old = new Map<string, WordIds>();
  private readonly generationSize: number;
  /**
   * Direct-mapped table in front of the word cache, probed with a hash of the word's characters
   * in the text, so a hit costs no substring allocation.
   */
  private readonly hotKeys = new Array<string | undefined>(HOT_MASK + 1);
  private readonly hotIds = new Array<WordIds | undefined>(HOT_MASK + 1);
  /** Ids of the text being tokenised, grown on demand, and how many are set. */
  private output = new Int32Array(1024);
  private length = 0;
  /** Scratch buffers for BPE, grown on demand. */
  private symbols = new Int32Array(64);
  private utf8 = new Uint8Array(256);

  private constructor(merges: string, source: string, options: ClipTokenizerOptions) {
    const { numMerges, contextLength } = options;
    if (!Number.isInteger(numMerges) || numMerges < 0) {
      throw new AppError(
        "tokenizer_invalid",
        `num_merges must be a non-negative integer, not ${numMerges}; fix tokenizer.num_merges in the model's config.json.`,
      );
    }
    if (!Number.isInteger(contextLength) || contextLength < 2) {
      throw new AppError(
        "tokenizer_invalid",
        `The context length must be an integer of at least 2 (room for the start and end tokens), not ${contextLength}; fix context_length in the model's config.json.`,
      );
    }
    this.contextLength = contextLength;
    this.generationSize = Math.floor(Math.max(0, options.cacheSize ?? DEFAULT_CACHE_SIZE) / 2);

    const lines = merges.split("\n");
    if (lines.length - 1 < numMerges) {
      throw new AppError(
        "tokenizer_invalid",
        `${source} has ${Math.max(0, lines.length - 1)} merge lines after its header but the model expects ${numMerges}; use the tokenizer file the model was exported with.`,
      );
    }
    // Token string → id; a string produced by two merge lines keeps the later id, as in
    // the official `dict(zip(vocab, range(len(vocab))))`.
    const encoder = new Map<string, number>();
    BYTE_ORDER.bytes.forEach((b, id) => {
      const symbol = BYTE_ORDER.chars[b] as string;
      encoder.set(symbol, id);
      encoder.set(`${symbol}</w>`, id + 256);
    });
    // Python's `line.split()`; the parts of lines that are not exactly two never pair up.
    const firsts = new Array<string | undefined>(numMerges);
    const seconds = new Array<string | undefined>(numMerges);
    for (let i = 0; i < numMerges; i++) {
      const line = lines[i + 1] as string;
      let parts = line.split(" ");
      if (parts.length !== 2 || parts[0] === "" || parts[1] === "" || OTHER_SPACE.test(line)) {
        parts = line.split(PY_WHITESPACE_RUN).filter((p) => p !== "");
      }
      if (parts.length === 2) {
        firsts[i] = parts[0];
        seconds[i] = parts[1];
      }
      encoder.set(parts.join(""), 512 + i);
    }
    this.startId = 512 + numMerges;
    this.endId = this.startId + 1;
    this.vocabSize = this.endId + 1;

    this.pairs = new PairTable(numMerges);
    for (let rank = 0; rank < numMerges; rank++) {
      const firstPart = firsts[rank];
      const secondPart = seconds[rank];
      if (firstPart === undefined || secondPart === undefined) continue;
      const first = encoder.get(firstPart);
      const second = encoder.get(secondPart);
      // A part that is no vocabulary token can never be a symbol of a word: the pair never applies.
      if (first === undefined || second === undefined) continue;
      this.pairs.set(first, second, rank, encoder.get(firstPart + secondPart) as number);
    }
  }

  /** Reads a CLIP merges file, gzip-compressed (.txt.gz) or plain (.txt). */
  static fromFile(file: string, options: ClipTokenizerOptions): ClipTokenizer {
    let bytes: Buffer;
    try {
      bytes = readFileSync(file);
    } catch (error) {
      throw new AppError(
        "tokenizer_not_found",
        `Cannot read the tokenizer file ${file} (${(error as Error).message}); put the BPE merges file named in config.json into the model directory.`,
        { file },
      );
    }
    let text: string;
    try {
      // A model directory may come from a hub: no gzip bomb (CLIP's merges are 1.4 MB).
      text = (
        bytes[0] === 0x1f && bytes[1] === 0x8b
          ? gunzipSync(bytes, { maxOutputLength: MAX_MERGES_BYTES })
          : bytes
      ).toString("utf8");
    } catch (error) {
      throw new AppError(
        "tokenizer_invalid",
        `The tokenizer file ${file} is not a readable gzip file (${(error as Error).message}); replace it with the CLIP BPE merges file.`,
        { file },
      );
    }
    return new ClipTokenizer(text, file, options);
  }

  /** From the text of a merges file (first line a header). */
  static fromMerges(merges: string, options: ClipTokenizerOptions): ClipTokenizer {
    return new ClipTokenizer(merges, "The merges text", options);
  }

  /** `[start] + bpe ids + [end]`, cut to the context length with the last kept id set to end. */
  encode(text: string): TokenizedText {
    const count = this.tokenizeInto(text);
    const tokens = count + 2;
    const length = Math.min(tokens, this.contextLength);
    const ids = new Int32Array(length);
    ids[0] = this.startId;
    ids.set(this.output.subarray(0, length - 2), 1);
    ids[length - 1] = this.endId;
    return { ids, tokens, truncated: tokens > this.contextLength };
  }

  /** The ids of the official `SimpleTokenizer.encode(text)`: no start/end, no cut. */
  bpeIds(text: string): Int32Array {
    return this.output.slice(0, this.tokenizeInto(text));
  }

  /** Cleans, pre-tokenises and BPE-encodes `text` into `this.output`; returns the id count. */
  private tokenizeInto(text: string): number {
    this.length = 0;
    forEachWord(cleanText(text), this.emitWord);
    return this.length;
  }

  /** Appends the ids of `text[start, end)`, looking in the hot table before slicing. */
  private readonly emitWord = (text: string, start: number, end: number): void => {
    if (this.generationSize === 0) {
      this.append(this.wordIds(text.slice(start, end)));
      return;
    }
    let hash = end - start;
    for (let i = start; i < end; i++) hash = (Math.imul(hash, 31) + text.charCodeAt(i)) | 0;
    const slot = (hash ^ (hash >>> 15)) & HOT_MASK;
    const key = this.hotKeys[slot];
    if (key !== undefined && key.length === end - start && text.startsWith(key, start)) {
      this.append(this.hotIds[slot] as WordIds);
      return;
    }
    const word = text.slice(start, end);
    const ids = this.wordIds(word);
    this.hotKeys[slot] = word;
    this.hotIds[slot] = ids;
    this.append(ids);
  };

  private append(ids: WordIds): void {
    const count = typeof ids === "number" ? 1 : ids.length;
    if (this.length + count > this.output.length) {
      const grown = new Int32Array(Math.max(this.output.length * 2, this.length + count));
      grown.set(this.output.subarray(0, this.length));
      this.output = grown;
    }
    if (typeof ids === "number") {
      this.output[this.length++] = ids;
    } else {
      for (const id of ids) this.output[this.length++] = id;
    }
  }

  /** Number of words whose ids are cached. */
  get cachedWords(): number {
    return this.young.size + this.old.size;
  }

  private wordIds(word: string): WordIds {
    let ids = this.young.get(word);
    if (ids !== undefined) return ids;
    ids = this.old.get(word);
    if (ids === undefined) {
      if (word === START_TOKEN) ids = this.startId;
      else if (word === END_TOKEN) ids = this.endId;
      else ids = this.bpe(word);
    }
    if (this.generationSize > 0) {
      if (this.young.size >= this.generationSize) {
        this.old = this.young;
        this.young = new Map();
      }
      this.young.set(word, ids);
    }
    return ids;
  }

  /** Writes the UTF-8 bytes of `word` into the scratch buffer; returns their count. */
  private encodeUtf8(word: string): number {
    if (this.utf8.length < word.length * 3) this.utf8 = new Uint8Array(word.length * 3);
    const buffer = this.utf8;
    let n = 0;
    for (let i = 0; i < word.length; i++) {
      let code = word.charCodeAt(i);
      if (code < 0x80) {
        buffer[n++] = code;
      } else if (code < 0x800) {
        buffer[n++] = 0xc0 | (code >> 6);
        buffer[n++] = 0x80 | (code & 0x3f);
      } else {
        if (code >= 0xd800 && code <= 0xdbff && i + 1 < word.length) {
          const low = word.charCodeAt(i + 1);
          if (low >= 0xdc00 && low <= 0xdfff) {
            code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
            i++;
            buffer[n++] = 0xf0 | (code >> 18);
            buffer[n++] = 0x80 | ((code >> 12) & 0x3f);
            buffer[n++] = 0x80 | ((code >> 6) & 0x3f);
            buffer[n++] = 0x80 | (code & 0x3f);
            continue;
          }
        }
        // Lone surrogates cannot reach here after cleaning; encode them as U+FFFD regardless.
        if (code >= 0xd800 && code <= 0xdfff) code = 0xfffd;
        buffer[n++] = 0xe0 | (code >> 12);
        buffer[n++] = 0x80 | ((code >> 6) & 0x3f);
        buffer[n++] = 0x80 | (code & 0x3f);
      }
    }
    return n;
  }

  private bpe(word: string): WordIds {
    let n = this.encodeUtf8(word);
    if (this.symbols.length < n) this.symbols = new Int32Array(n * 2);
    const symbols = this.symbols;
    const bytes = this.utf8;
    for (let i = 0; i < n; i++) symbols[i] = BYTE_ID[bytes[i] as number] as number;
    symbols[n - 1] = (symbols[n - 1] as number) + 256;
    const pairs = this.pairs;
    while (n > 1) {
      let bestRank = 0x7fffffff;
      let bestSlot = -1;
      let first = -1;
      let second = -1;
      for (let i = 0; i < n - 1; i++) {
        const slot = pairs.find(symbols[i] as number, symbols[i + 1] as number);
        if (slot !== -1 && pairs.rank(slot) < bestRank) {
          bestRank = pairs.rank(slot);
          bestSlot = slot;
          first = symbols[i] as number;
          second = symbols[i + 1] as number;
        }
      }
      if (bestSlot === -1) break;
      const merged = pairs.mergedId(bestSlot);
      let w = 0;
      for (let i = 0; i < n; ) {
        if (i < n - 1 && symbols[i] === first && symbols[i + 1] === second) {
          symbols[w++] = merged;
          i += 2;
        } else {
          symbols[w++] = symbols[i++] as number;
        }
      }
      n = w;
    }
    return n === 1 ? (symbols[0] as number) : Array.from(symbols.subarray(0, n));
  }
}
