/** Metadata filters (see ../filter.ts for the semantics) as Postgres conditions over jsonb. */

import type { Filter, FilterValue } from "../../core/types.ts";
import { filterTerms, ISO_DATE_PATTERN } from "../filter.ts";

const RANGE_SQL = { gt: ">", gte: ">=", lt: "<", lte: "<=" } as const;

/** `$in` lists up to this long are containment tests (GIN-served, at most this many a row). */
export const INDEXED_IN_VALUES = 16;

/**
 * A filter as a condition over `metadata`, with its parameters numbered from `firstParam`.
 * Equality and short `$in` lists are jsonb containment (the GIN index serves them); the others read the value by
 * chained `->` with text keys, which never index into an array, as SQLite's JSON paths do not.
 * `$nin` and longer `$in` lists are one hashed membership test per row, so a long list costs no
 * more per row.
 */
export function filterToSql(
  filter: Filter,
  firstParam: number,
): { where: string; params: unknown[] } {
  const clauses: string[] = [];
  const params: unknown[] = [];
  const param = (value: unknown, cast = "") => {
    params.push(value);
    return `$${firstParam + params.length - 1}${cast}`;
  };
  const contains = (path: readonly string[], value: FilterValue) =>
    `metadata @> ${param(containedDocument(path, value), "::jsonb")}`;
  for (const term of filterTerms(filter)) {
    // Only the operators that read the value bind its keys (an unused parameter has no type).
    const readValue = () =>
      `(metadata -> ${term.path.map((key) => param(key, "::text")).join(" -> ")})`;
    // One membership test per row, whatever the list's length: Postgres hashes the list once
    // (jsonb equality keeps types apart as containment does; a missing key is no member).
    const anyOf = (values: readonly FilterValue[]) =>
      values.length === 0
        ? "false"
        : `coalesce(${readValue()} IN (SELECT jsonb_array_elements(${param(JSON.stringify(values), "::jsonb")})), false)`;
    switch (term.op) {
      case "eq":
        clauses.push(contains(term.path, term.value));
        break;
      case "ne":
        clauses.push(`NOT ${contains(term.path, term.value)}`);
        break;
      case "in":
        // A short list: containment of any one of its documents, which the GIN index serves
        // (a bitmap scan per value) and the planner estimates from the metadata's statistics,
        // so a selective $in goes to its rows first (./search.ts). A row tests each value, so
        // longer lists keep the one hashed membership test.
        clauses.push(
          term.values.length > 0 && term.values.length <= INDEXED_IN_VALUES
            ? `metadata @> ANY(${param(
                term.values.map((value) => containedDocument(term.path, value)),
                "::jsonb[]",
              )})`
            : anyOf(term.values),
        );
        break;
      case "nin":
        clauses.push(`NOT ${anyOf(term.values)}`);
        break;
      case "exists":
        clauses.push(`${readValue()} IS ${term.value ? "NOT NULL" : "NULL"}`);
        break;
      default: {
        const op = RANGE_SQL[term.op];
        const value = readValue();
        if (term.bound.kind === "number") {
          // jsonb orders numbers numerically and never fails across types.
          clauses.push(
            `coalesce(jsonb_typeof(${value}) = 'number' AND ${value} ${op} ${param(JSON.stringify(term.bound.value), "::jsonb")}, false)`,
          );
        } else {
          // The pattern admits only strings the cast reads (see ISO_DATE_PATTERN); CASE keeps
          // the cast from ever seeing another string. Zone-less values are UTC (nearest sets it).
          const text = `(${value} #>> '{}')`;
          clauses.push(
            `coalesce(CASE WHEN jsonb_typeof(${value}) = 'string' AND ${text} ~ ${param(ISO_DATE_PATTERN)} THEN ${text}::timestamptz ${op} ${param(term.bound.iso, "::timestamptz")} END, false)`,
          );
        }
      }
    }
  }
  return { where: clauses.join(" AND "), params };
}

/** The document `{path: value}` that contains exactly the items whose value at `path` is `value`. */
function containedDocument(path: readonly string[], value: FilterValue): string {
  let nested: unknown = value;
  for (const key of [...path].reverse()) nested = { [key]: nested };
  return JSON.stringify(nested);
}

/** A non-empty filter's SQL, its values appended to `params` (numbered after them). */
export function appendFilter(
  params: unknown[],
  filter: Filter | undefined,
): { where: string; params: unknown[] } | undefined {
  if (filter === undefined || Object.keys(filter).length === 0) return undefined;
  const sql = filterToSql(filter, params.length + 1);
  params.push(...sql.params);
  return sql;
}
