/**
 * The search options row of the page: one metadata filter (key, operator, value), a minimum
 * score and how to read a query past 248 tokens, turned into the fields of POST /search. The
 * server validates them; its 400 answers name the field, and the page shows them as they are.
 */
import type { Schemas } from "./api.ts";
import { $ } from "./dom.ts";

/** What the page sends: the spec's defaults (k, offset, exact…) are optional on the wire. */
export type SearchBody = Partial<Schemas["SearchRequest"]>;
type FilterCondition = Schemas["FilterCondition"];

/**
 * A typed value from the text box: true, false, null and numbers as such, "quoted" text as a
 * string (so "2024" can be a string), anything else as the text itself.
 */
export function parseValue(raw: string): string | number | boolean | null {
  const text = raw.trim();
  if (text === "true") return true;
  if (text === "false") return false;
  if (text === "null") return null;
  if (/^".*"$/.test(text)) return text.slice(1, -1);
  if (text !== "" && Number.isFinite(Number(text))) return Number(text);
  return text;
}

const OPERATORS: Record<string, string> = {
  eq: "$eq",
  ne: "$ne",
  gt: "$gt",
  gte: "$gte",
  lt: "$lt",
  lte: "$lte",
  in: "$in",
  nin: "$nin",
  exists: "$exists",
};

/** The filter of one row, or undefined when no key is given. */
export function filterOf(key: string, operator: string, raw: string): SearchBody["filter"] {
  const name = key.trim();
  if (name === "") return undefined;
  const op = OPERATORS[operator] ?? "$eq";
  let operand: unknown;
  if (op === "$in" || op === "$nin") {
    operand = raw.split(",").map(parseValue);
  } else if (op === "$exists") {
    operand = raw.trim() !== "false";
  } else {
    // Ranges take numbers or ISO dates (a date stays a string); the server checks which.
    operand = parseValue(raw);
  }
  return { [name]: { [op]: operand } as FilterCondition };
}

export interface SearchOptionsRow {
  /** The fields of POST /search the row sets (filter, min_score, long_query). */
  fields(): Pick<SearchBody, "filter" | "min_score" | "long_query">;
}

export function searchOptionsRow(): SearchOptionsRow {
  const key = $<HTMLInputElement>("filter-key");
  const operator = $<HTMLSelectElement>("filter-op");
  const value = $<HTMLInputElement>("filter-value");
  const minScore = $<HTMLInputElement>("min-score");
  const chunk = $<HTMLInputElement>("long-chunk");
  const syncValue = () => {
    const exists = operator.value === "exists";
    value.placeholder = exists
      ? "true or false"
      : operator.value === "in" || operator.value === "nin"
        ? "a, b, c"
        : "value (number, date or text)";
  };
  operator.addEventListener("change", syncValue);
  syncValue();
  return {
    fields() {
      const filter = filterOf(key.value, operator.value, value.value);
      const cutoff = minScore.value.trim() === "" ? undefined : Number(minScore.value);
      return {
        ...(filter ? { filter } : {}),
        ...(cutoff !== undefined ? { min_score: cutoff } : {}),
        ...(chunk.checked ? { long_query: "chunk" as const } : {}),
      };
    },
  };
}
