/**
 * Metadata filters and list cursors, as both backends accept them. A filter maps a key (a
 * dotted path into the metadata object) to a condition; several keys AND together. A condition
 * is either a plain value (equality) or an object of operators, which also AND together:
 *
 * - `$eq`, `$ne`: the value, types kept apart (true never matches 1, "1" never matches 1, null
 *   matches only an explicit null, a scalar never matches an array);
 * - `$in`, `$nin`: an array of such values;
 * - `$gt`, `$gte`, `$lt`, `$lte`: a number (matches numeric values only) or an ISO-8601 date
 *   string (matches string values that are ISO-8601 dates, compared as instants; a date or time
 *   without a zone is UTC);
 * - `$exists`: whether the key is present (an explicit null is present).
 *
 * `$ne` and `$nin` also match items without the key, as "not equal" reads.
 */
import { AppError } from "../core/errors.ts";
import type { Filter, FilterValue, ItemOrder } from "../core/types.ts";

/** Keys: dot-separated segments of letters, digits, "_" and "-", each segment non-empty. */
const METADATA_KEY = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;
const MAX_KEY_LENGTH = 64;
/**
 * Filtered searches whose filter matches at most this many items (or more, by
 * ../vector-index/ef-search.ts's scansFilterExactly) scan those items exactly on both backends: an HNSW walk with a very selective filter loses recall (measured with
 * `bench:scale` filtered section: pgvector's iterative scan found 0.78 of the true top 10 at
 * 1% of 30,000 items). Larger candidate sets go through the index with the filter.
 */
export const EXACT_FILTER_LIMIT = 10_000;

/** Values in one `$in` / `$nin` list. */
export const MAX_IN_VALUES = 100;

/**
 * Values a filter names, all keys together: one per plain value or operand, one per element
 * of an `$in` / `$nin` list (the setting maxFilterValues bounds it).
 */
export function filterValueCount(filter: Filter): number {
  let count = 0;
  for (const condition of Object.values(filter)) {
    if (condition === null || typeof condition !== "object" || Array.isArray(condition)) {
      count++;
      continue;
    }
    for (const operand of Object.values(condition)) {
      count += Array.isArray(operand) ? operand.length : 1;
    }
  }
  return count;
}

export type RangeOperator = "gt" | "gte" | "lt" | "lte";

/** A range operand: a number, or an instant in epoch milliseconds (with its ISO form). */
export type RangeBound =
  | { kind: "number"; value: number }
  | { kind: "date"; ms: number; iso: string };

export type FilterTerm = { path: string[] } & (
  | { op: "eq" | "ne"; value: FilterValue }
  | { op: "in" | "nin"; values: FilterValue[] }
  | { op: RangeOperator; bound: RangeBound }
  | { op: "exists"; value: boolean }
);

const YEAR = "(?:000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})";
const LEAP_YEAR =
  "(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)";
const MONTH_DAY =
  "(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)|(?:0[13578]|1[02])-31)";
const TIME = "[T ](?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\\.[0-9]{1,9})?)?";
const ZONE = "(?:Z|[+-](?:0[0-9]|1[0-4]):[0-5][0-9])";
/**
 * ISO-8601 calendar dates and date-times that both backends read the same way: only real
 * calendar days (no February 30, no hour 24, no leap second), so Postgres' timestamptz cast of
 * a matching string can never fail. The same pattern is POSIX-ARE (Postgres) and JS syntax.
 */
export const ISO_DATE_PATTERN = `^(?:${YEAR}-${MONTH_DAY}|${LEAP_YEAR}-02-29)(?:${TIME}${ZONE}?)?$`;
const ISO_DATE = new RegExp(ISO_DATE_PATTERN);

/** Epoch milliseconds of an ISO-8601 date string (undefined for anything else); no zone = UTC. */
export function isoDateMs(value: unknown): number | undefined {
  if (typeof value !== "string" || !ISO_DATE.test(value)) return undefined;
  let text = value.replace(" ", "T").replace(/(\.\d{3})\d+/, "$1");
  if (text.length === 10) text += "T00:00:00";
  if (!/(Z|[+-]\d{2}:\d{2})$/.test(text)) text += "Z";
  const ms = Date.parse(text);
  return Number.isFinite(ms) ? ms : undefined;
}

function invalid(where: string, message: string): AppError {
  return new AppError("validation_failed", `${where} ${message}`);
}

/** A value to compare with; operands of operators fail as validation_failed (the API's code for a
 * malformed request), a plain value keeps the older invalid_filter. */
function scalar(
  value: unknown,
  where: string,
  code: "validation_failed" | "invalid_filter" = "validation_failed",
): FilterValue {
  if (typeof value === "number" && !Number.isFinite(value)) {
    throw new AppError(code, `${where} must be finite.`);
  }
  if (value !== null && !["string", "number", "boolean"].includes(typeof value)) {
    throw new AppError(code, `${where} must be a string, number, boolean or null.`);
  }
  if (typeof value === "string" && value.includes("\u0000")) {
    throw new AppError(
      code,
      `${where} holds the character U+0000, which no stored metadata holds (neither backend keeps it); remove it.`,
    );
  }
  return value as FilterValue;
}

function rangeBound(value: unknown, where: string): RangeBound {
  if (typeof value === "number" && Number.isFinite(value)) return { kind: "number", value };
  const ms = isoDateMs(value);
  if (ms !== undefined) return { kind: "date", ms, iso: new Date(ms).toISOString() };
  throw invalid(
    where,
    'must be a number or an ISO-8601 date string such as "2024-05-01" or "2024-05-01T12:00:00Z"',
  );
}

function operatorTerm(
  path: string[],
  operator: string,
  operand: unknown,
  where: string,
): FilterTerm {
  switch (operator) {
    case "$eq":
    case "$ne":
      return { path, op: operator === "$eq" ? "eq" : "ne", value: scalar(operand, where) };
    case "$in":
    case "$nin": {
      if (!Array.isArray(operand)) throw invalid(where, "must be an array of values");
      if (operand.length > MAX_IN_VALUES) {
        throw invalid(where, `has ${operand.length} values; the limit is ${MAX_IN_VALUES}`);
      }
      const values = operand.map((v, i) => scalar(v, `${where}[${i}]`));
      return { path, op: operator === "$in" ? "in" : "nin", values };
    }
    case "$gt":
    case "$gte":
    case "$lt":
    case "$lte":
      return { path, op: operator.slice(1) as RangeOperator, bound: rangeBound(operand, where) };
    case "$exists":
      if (typeof operand !== "boolean") throw invalid(where, "must be true or false");
      return { path, op: "exists", value: operand };
    default:
      throw invalid(
        where,
        'is not a filter operator; use $eq, $ne, $in, $nin, $gt, $gte, $lt, $lte or $exists (nested keys are written with dots: {"camera.model": …})',
      );
  }
}

/** Validates a filter (keys, operators, operand types) and splits it into terms. */
export function filterTerms(filter: Filter): FilterTerm[] {
  const terms: FilterTerm[] = [];
  for (const [key, condition] of Object.entries(filter)) {
    if (key.length > MAX_KEY_LENGTH || !METADATA_KEY.test(key)) {
      throw new AppError(
        "invalid_filter",
        `Filter key "${key.slice(0, 80)}" is not allowed; keys are 1-${MAX_KEY_LENGTH} characters of letters, digits, "_" or "-", with "." between nested keys.`,
      );
    }
    const path = key.split(".");
    if (condition !== null && typeof condition === "object" && !Array.isArray(condition)) {
      const operators = Object.entries(condition);
      if (operators.length === 0) throw invalid(`filter.${key}`, "has no operator");
      for (const [operator, operand] of operators) {
        terms.push(operatorTerm(path, operator, operand, `filter.${key}.${operator}`));
      }
    } else {
      terms.push({
        path,
        op: "eq",
        value: scalar(condition, `Filter value of "${key}"`, "invalid_filter"),
      });
    }
  }
  return terms;
}

/** A newest-first cursor carries this mark, so it cannot continue an oldest-first listing. */
const NEWEST_MARK = "n";

export function encodeCursor(label: number, order: ItemOrder = "oldest"): string {
  const text = `${order === "newest" ? NEWEST_MARK : ""}${label}`;
  return Buffer.from(text, "utf8").toString("base64url");
}

export function decodeCursor(cursor: string, order: ItemOrder = "oldest"): number {
  const text = Buffer.from(cursor, "base64url").toString("utf8");
  const digits = order === "newest" ? text.slice(NEWEST_MARK.length) : text;
  const label = Number(digits);
  const marked = order !== "newest" || text.startsWith(NEWEST_MARK);
  if (!marked || !/^\d+$/.test(digits) || !Number.isSafeInteger(label)) {
    throw new AppError(
      "invalid_cursor",
      `The cursor is not one this server issued for order=${order}; pass the next_cursor of the previous page with the same order, or omit it to start over.`,
    );
  }
  return label;
}

/** One page of rows fetched with `limit + 1`: the rows to show and the next page's cursor. */
export function pageOf<T extends { label: number }>(
  rows: T[],
  limit: number,
  order: ItemOrder = "oldest",
): { items: T[]; nextCursor: string | null } {
  const items = rows.slice(0, limit);
  const last = items[items.length - 1];
  return {
    items,
    nextCursor: rows.length > limit && last !== undefined ? encodeCursor(last.label, order) : null,
  };
}
