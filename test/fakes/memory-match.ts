/**
 * What the in-memory store (./memory-store.ts) evaluates in JavaScript where the real backends
 * run SQL: metadata filters (validated by the product's own filterTerms, evaluated here over
 * its parsed terms) and keyword search (words split on anything but letters and digits,
 * lower-cased, diacritics removed and Porter-stemmed, as SQLite's `porter unicode61` tokenizer
 * does; ranked by BM25 over one text row per item and field, summed per item).
 */
import { stemmer } from "stemmer";
import type { Filter, FilterValue, Metadata } from "../../src/core/types.ts";
import {
  type FilterTerm,
  filterTerms,
  isoDateMs,
  type RangeBound,
} from "../../src/store/filter.ts";

type Lookup = { present: false } | { present: true; value: unknown };

/** The value at a path: objects are walked, arrays are never indexed into. */
function lookup(metadata: Metadata, path: readonly string[]): Lookup {
  let current: unknown = metadata;
  for (const key of path) {
    const walkable = current !== null && typeof current === "object" && !Array.isArray(current);
    if (!walkable || !Object.hasOwn(current as object, key)) return { present: false };
    current = (current as Record<string, unknown>)[key];
  }
  return { present: true, value: current };
}

/** Equal with the JSON type kept apart; an array or object never equals a plain value. */
function equals(found: Lookup, wanted: FilterValue): boolean {
  if (!found.present) return false;
  const { value } = found;
  if (value === null || wanted === null) return value === wanted;
  return typeof value === typeof wanted && value === wanted;
}

/** Signed distance of a stored value from a range bound, or undefined where it is not comparable. */
function distance(found: Lookup, bound: RangeBound): number | undefined {
  if (!found.present) return undefined;
  if (bound.kind === "number") {
    return typeof found.value === "number" ? found.value - bound.value : undefined;
  }
  const at = isoDateMs(found.value);
  return at === undefined ? undefined : at - bound.ms;
}

function holds(term: FilterTerm, metadata: Metadata): boolean {
  const found = lookup(metadata, term.path);
  switch (term.op) {
    case "eq":
      return equals(found, term.value);
    case "ne":
      return !equals(found, term.value);
    case "in":
      return term.values.some((value) => equals(found, value));
    case "nin":
      return !term.values.some((value) => equals(found, value));
    case "exists":
      return found.present === term.value;
    default: {
      const d = distance(found, term.bound);
      if (d === undefined) return false;
      if (term.op === "gt") return d > 0;
      if (term.op === "gte") return d >= 0;
      if (term.op === "lt") return d < 0;
      return d <= 0;
    }
  }
}

/** A predicate over metadata for a filter; throws the product's errors for a bad one. */
export function metadataPredicate(filter: Filter | undefined): (metadata: Metadata) => boolean {
  const terms = filter === undefined ? [] : filterTerms(filter);
  return (metadata) => terms.every((term) => holds(term, metadata));
}

/** Index terms of a text: letter-and-digit runs, folded, stemmed. */
export function textTerms(text: string): string[] {
  const folded = text.normalize("NFKD").replace(/\p{M}/gu, "").toLowerCase();
  return (folded.match(/[\p{L}\p{N}]+/gu) ?? []).map((word) => stemmer(word));
}

/** The text rows of an item: each top-level field holding a string or an array with strings. */
export function textRows(metadata: Metadata): { field: string; terms: string[] }[] {
  const rows: { field: string; terms: string[] }[] = [];
  for (const [field, value] of Object.entries(metadata)) {
    let body: string | undefined;
    if (typeof value === "string") body = value;
    else if (Array.isArray(value)) {
      body = value.filter((element) => typeof element === "string").join(" ");
    }
    const terms = body === undefined ? [] : textTerms(body);
    if (terms.length > 0) rows.push({ field, terms });
  }
  return rows;
}

/** Occurrences of a phrase (a query word may split into several terms) in a row. */
function occurrences(terms: readonly string[], phrase: readonly string[]): number {
  let count = 0;
  for (let start = 0; start + phrase.length <= terms.length; start++) {
    if (phrase.every((term, i) => terms[start + i] === term)) count++;
  }
  return count;
}

export interface TextRow {
  label: number;
  field: string;
  terms: string[];
}

const K1 = 1.2;
const B = 0.75;

/**
 * Scores per label: BM25 of each row (one per item and field) over every row, summed over the
 * rows in `fields`. A query word with no letters or digits matches nothing.
 */
export function bm25Scores(
  rows: readonly TextRow[],
  words: readonly string[],
  fields: ReadonlySet<string>,
): Map<number, number> {
  const phrases = words.map(textTerms).filter((phrase) => phrase.length > 0);
  const scores = new Map<number, number>();
  if (rows.length === 0 || phrases.length === 0) return scores;
  const averageLength = rows.reduce((sum, row) => sum + row.terms.length, 0) / rows.length;
  for (const phrase of phrases) {
    const counts = rows.map((row) => occurrences(row.terms, phrase));
    const withPhrase = counts.filter((n) => n > 0).length;
    const idf = Math.log(1 + (rows.length - withPhrase + 0.5) / (withPhrase + 0.5));
    rows.forEach((row, i) => {
      const tf = counts[i] as number;
      if (tf === 0 || !fields.has(row.field)) return;
      const norm = 1 - B + (B * row.terms.length) / averageLength;
      const score = (idf * tf * (K1 + 1)) / (tf + K1 * norm);
      scores.set(row.label, (scores.get(row.label) ?? 0) + score);
    });
  }
  return scores;
}
