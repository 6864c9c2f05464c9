/**
 * Text cleaning exactly as the official CLIP/Long-CLIP tokenizer does it before BPE:
 *
 *   whitespace_clean(basic_clean(text)).lower()
 *   basic_clean = ftfy.fix_text, html.unescape twice, strip
 *   whitespace_clean = re.sub(r"\s+", " "), strip
 *
 * ftfy is reproduced for the fixes that change ordinary text; each runs in ftfy 6's order,
 * per line (ftfy's segments end after "\n"), repeated until the text stops changing, as
 * ftfy's fix_and_explain loop does:
 *
 *   1. unescape_html: `&name;` entities of the HTML5 table, their all-caps forms for
 *      lower-case names (`&EACUTE;` → "É"), and `&#...;` references whose whole text is
 *      consumed. Like ftfy's "auto" mode it is switched off from the first line holding "<".
 *   2. fix_c1_controls: U+0080–U+009F read as Windows-1252 (U+0085 → "…", U+0092 → "’").
 *   3. fix_latin_ligatures, typographic ones only: ﬀ ﬁ ﬂ ﬃ ﬄ ﬅ ﬆ to their letters.
 *   4. fix_character_width: U+FF01–U+FFEF to their NFKC form (full-width ASCII to ASCII,
 *      half-width katakana/hangul to normal width), U+3000 to a space.
 *   5. uncurl_quotes: U+02BC and U+2018–U+201B to ', U+201C–U+201F to ".
 *   6. fix_line_breaks: CR, U+2028, U+2029, U+0085 to "\n" (no effect after step 2 and the
 *      whitespace collapse, kept for fidelity).
 *   7. fix_surrogates: lone UTF-16 surrogates to U+FFFD.
 *   8. remove_terminal_escapes: ANSI sequences `ESC [ digits/; letter`.
 *   9. remove_control_chars: U+0000–0008, 000B, 000E–001F, 007F, 206A–206F, FEFF, FFF9–FFFC.
 *  10. NFC normalisation.
 *
 * Not reproduced: ftfy's digraph "ligatures" (Ĳ ĳ ŉ Ǳ–ǌ, see LIGATURES below) and its fix_encoding (mojibake repair, including restore_byte_a0,
 * replace_lossy_sequences and decode_inconsistent_utf8). It only acts on text that its
 * heuristics judge to be mis-decoded UTF-8, never on correctly encoded text.
 */
import { decodeHTML, decodeHTMLStrict } from "entities";

/** Windows-1252 for 0x80–0x9F; the five bytes it leaves undefined keep their code point. */
const CP1252_C1 = [
  0x20ac, 0x81, 0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021, 0x02c6, 0x2030, 0x0160, 0x2039,
  0x0152, 0x8d, 0x017d, 0x8f, 0x90, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022, 0x2013, 0x2014, 0x02dc,
  0x2122, 0x0161, 0x203a, 0x0153, 0x9d, 0x017e, 0x0178,
];

/**
 * ftfy's typographic ligatures. Its digraphs (Ĳ ĳ ŉ Ǳ ǲ ǳ Ǆ ǅ ǆ Ǉ ǈ ǉ Ǌ ǋ ǌ) are left alone: the
 * reference token ids (../shared/reference/tokenizer-cases.json) keep "ĳ", which occurs in
 * CLIP's own byte-symbol strings such as "ðŁĳĮ".
 */
const LIGATURES: Record<string, string> = {
  "\ufb00": "ff",
  "\ufb01": "fi",
  "\ufb02": "fl",
  "\ufb03": "ffi",
  "\ufb04": "ffl",
  "\ufb05": "\u017ft",
  "\ufb06": "st",
};

function isControlToRemove(code: number): boolean {
  return (
    code <= 0x08 ||
    code === 0x0b ||
    (code >= 0x0e && code <= 0x1f) ||
    code === 0x7f ||
    (code >= 0x206a && code <= 0x206f) ||
    code === 0xfeff ||
    (code >= 0xfff9 && code <= 0xfffc)
  );
}

function mapChars(text: string, map: (ch: string) => string): string {
  let out = "";
  for (const ch of text) out += map(ch);
  return out;
}

/** ftfy steps 2–6 composed per character: each is a character-by-character translation. */
function buildTranslation(): Map<number, string> {
  const c1 = (ch: string): string => {
    const code = ch.charCodeAt(0);
    return code >= 0x80 && code <= 0x9f ? String.fromCharCode(CP1252_C1[code - 0x80] ?? code) : ch;
  };
  const ligature = (ch: string): string => LIGATURES[ch] ?? ch;
  const width = (ch: string): string => {
    const code = ch.charCodeAt(0);
    if (code === 0x3000) return " ";
    return code >= 0xff01 && code <= 0xffef ? ch.normalize("NFKC") : ch;
  };
  const quotes = (ch: string): string => {
    const code = ch.charCodeAt(0);
    if (code === 0x02bc || (code >= 0x2018 && code <= 0x201b)) return "'";
    if (code >= 0x201c && code <= 0x201f) return '"';
    return ch;
  };
  const lineBreak = (ch: string): string =>
    ch === "\r" || ch === "\u2028" || ch === "\u2029" || ch === "\u0085" ? "\n" : ch;
  // Every step is the identity outside its own domain, so only their union can change.
  const domain = [0x0d, 0x02bc, 0x2028, 0x2029, 0x3000];
  for (let code = 0x80; code <= 0x9f; code++) domain.push(code);
  for (let code = 0x2018; code <= 0x201f; code++) domain.push(code);
  for (let code = 0xff01; code <= 0xffef; code++) domain.push(code);
  for (const ch of Object.keys(LIGATURES)) domain.push(ch.charCodeAt(0));
  const table = new Map<number, string>();
  for (const code of domain) {
    const ch = String.fromCharCode(code);
    let out = mapChars(ch, c1);
    out = mapChars(out, ligature);
    out = mapChars(out, width);
    out = mapChars(out, quotes);
    out = mapChars(out, lineBreak);
    if (out !== ch) table.set(code, out);
  }
  return table;
}

const TRANSLATION = buildTranslation();

/** 1 where translate() has work to do: translated characters, removed controls, surrogates. */
const SPECIAL = new Uint8Array(0x10000);
for (const code of TRANSLATION.keys()) SPECIAL[code] = 1;
for (let code = 0; code < 0x10000; code++) {
  if (isControlToRemove(code) || (code >= 0xd800 && code <= 0xdfff)) SPECIAL[code] = 1;
}

/** Applies ftfy steps 2–7 and, when `stripControls`, step 9 in one pass over the text. */
function translate(text: string, stripControls: boolean): string {
  let out = "";
  let start = 0;
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const code = text.charCodeAt(i);
    if (SPECIAL[code] === 0) continue;
    let replacement: string | undefined;
    if (code >= 0xd800 && code <= 0xdfff) {
      const next = i + 1 < n ? text.charCodeAt(i + 1) : 0;
      if (code <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
        i++;
        continue;
      }
      replacement = "\ufffd";
    } else if (stripControls && isControlToRemove(code)) {
      replacement = "";
    } else {
      replacement = TRANSLATION.get(code);
      if (replacement === undefined) continue;
    }
    out += text.slice(start, i) + replacement;
    start = i + 1;
  }
  return start === 0 ? text : out + text.slice(start);
}

function removeControlChars(text: string): string {
  let out = "";
  for (const ch of text) if (!isControlToRemove(ch.charCodeAt(0))) out += ch;
  return out;
}

// Python's \d is any decimal digit in str patterns, hence \p{Nd}.
// biome-ignore lint/suspicious/noControlCharactersInRegex: ESC starts the sequences to remove.
const ANSI_ESCAPE = /\x1b\[(?:\p{Nd}|;)*[a-zA-Z]/gu;

/** Python's html._invalid_charrefs: references the HTML5 spec remaps. */
function remappedCharref(num: number): string | undefined {
  if (num === 0) return "\ufffd";
  if (num === 0x0d) return "\r";
  if (num >= 0x80 && num <= 0x9f) return String.fromCharCode(CP1252_C1[num - 0x80] ?? num);
  return undefined;
}

/** Python's html._invalid_codepoints (after the remapped ones): dropped from the output. */
function isDroppedCodepoint(num: number): boolean {
  return (
    (num >= 0x01 && num <= 0x08) ||
    num === 0x0b ||
    (num >= 0x0e && num <= 0x1f) ||
    (num >= 0x7f && num <= 0x9f) ||
    (num >= 0xfdd0 && num <= 0xfdef) ||
    (num & 0xfffe) === 0xfffe
  );
}

function numericCharref(digits: string, radix: 10 | 16): string {
  const significant = digits.replace(/^0+/, "");
  // More than 8 significant digits is beyond U+10FFFF in either radix.
  const num = significant.length > 8 ? Number.POSITIVE_INFINITY : Number.parseInt(digits, radix);
  const remapped = remappedCharref(num);
  if (remapped !== undefined) return remapped;
  if ((num >= 0xd800 && num <= 0xdfff) || num > 0x10ffff) return "\ufffd";
  if (isDroppedCodepoint(num)) return "";
  return String.fromCodePoint(num);
}

const CHARREF = /&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)/gu;

function replaceCharref(_match: string, ref: string): string {
  if (ref.startsWith("#")) {
    const hex = ref[1] === "x" || ref[1] === "X";
    const digits = ref.slice(hex ? 2 : 1).replace(/;$/, "");
    return numericCharref(digits, hex ? 16 : 10);
  }
  // Named reference: the whole name if it is an entity, else the longest legacy entity
  // (the ones valid without ";") it starts with, as Python's html.unescape does.
  return decodeHTML(`&${ref}`);
}

/** Python's `html.unescape`. */
export function htmlUnescape(text: string): string {
  if (!text.includes("&")) return text;
  return text.replace(CHARREF, replaceCharref);
}

const FTFY_ENTITY = /&#?[0-9A-Za-z]{1,24};/g;

function ftfyEntity(entity: string): string {
  if (entity.startsWith("&#")) {
    const decoded = htmlUnescape(entity);
    // Only a reference consumed up to its ";" counts.
    return decoded.includes(";") ? entity : decoded;
  }
  const exact = decodeHTMLStrict(entity);
  if (exact !== entity) return exact;
  // All-caps form of an all-lower-case entity name, unless that form means something else.
  const lower = entity.toLowerCase();
  if (lower.toUpperCase() !== entity || htmlUnescape(entity) !== entity) return entity;
  const value = decodeHTMLStrict(lower);
  return value !== lower ? value.toUpperCase() : entity;
}

function fixSegment(segment: string, unescapeHtml: boolean): string {
  let text = segment;
  for (;;) {
    const before = text;
    if (unescapeHtml && text.includes("&")) text = text.replace(FTFY_ENTITY, ftfyEntity);
    if (text.includes("\x1b")) {
      text = translate(text, false).replace(ANSI_ESCAPE, "");
      text = removeControlChars(text);
    } else {
      text = translate(text, true);
    }
    text = text.normalize("NFC");
    if (text === before) return text;
  }
}

/** The ftfy.fix_text fixes listed above, with ftfy's per-line segmentation. */
export function fixText(text: string): string {
  let unescapeHtml = true;
  let out = "";
  let pos = 0;
  while (pos < text.length) {
    const newline = text.indexOf("\n", pos);
    const end = newline === -1 ? text.length : newline + 1;
    const segment = text.slice(pos, end);
    if (unescapeHtml && segment.includes("<")) unescapeHtml = false;
    out += fixSegment(segment, unescapeHtml);
    pos = end;
  }
  return out;
}

/** Runs of Python's `\s` (str.isspace), as used by whitespace_clean and str.split(). */
export const PY_WHITESPACE_RUN =
  // biome-ignore lint/suspicious/noControlCharactersInRegex: Python counts U+001C–U+001F as whitespace.
  /[\t\n\v\f\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/g;

const PY_SPACE = new Uint8Array(0x3001);
for (const code of [0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x85, 0xa0]) {
  PY_SPACE[code] = 1;
}
for (const code of [0x1680, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000]) PY_SPACE[code] = 1;
for (let code = 0x2000; code <= 0x200a; code++) PY_SPACE[code] = 1;

/** True when the text has no whitespace but single spaces between other characters. */
function isCollapsed(text: string): boolean {
  let previousSpace = true;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code <= 0x3000 && PY_SPACE[code] === 1) {
      if (code !== 0x20 || previousSpace) return false;
      previousSpace = true;
    } else {
      previousSpace = false;
    }
  }
  return !previousSpace;
}

/** `re.sub(r"\s+", " ", text).strip()` with Python's definition of whitespace. */
export function collapseWhitespace(text: string): string {
  if (isCollapsed(text)) return text;
  const collapsed = text.replace(PY_WHITESPACE_RUN, " ");
  const start = collapsed.startsWith(" ") ? 1 : 0;
  const end = collapsed.endsWith(" ") ? collapsed.length - 1 : collapsed.length;
  return start < end ? collapsed.slice(start, end) : "";
}

/** Printable ASCII and tab/LF/FF/CR without "&": every ftfy fix and unescape is a no-op. */
const NEEDS_FIXING = /[^\t\n\f\r\x20-\x25\x27-\x7e]/;

/** The official cleaning: ftfy fixes, html.unescape twice, whitespace collapse, lower-case. */
export function cleanText(text: string): string {
  let cleaned = text;
  if (NEEDS_FIXING.test(text)) {
    cleaned = htmlUnescape(htmlUnescape(fixText(text)));
  }
  // JS toLowerCase, like Python's str.lower, applies the full Unicode lower-case mapping
  // (İ → i̇) and the final-sigma rule.
  return collapseWhitespace(cleaned).toLowerCase();
}
