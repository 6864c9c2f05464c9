/**
 * Metadata filters (see ../filter.ts for the semantics) as SQLite conditions over
 * `items.metadata`, read with the JSON1 functions. Date ranges call a function that
 * `registerFilterFunctions` adds to each connection.
 *
 * The cost per row is bounded by the keys, not the values: all conditions on one key become
 * one `CASE` on the value's JSON type (read once per row), whose branch for that type holds
 * only the conditions that can hold for it, and an `$in` / `$nin` list is one membership test
 * in a list SQLite builds once per statement (`IN (SELECT value FROM json_each(?))`).
 */
import type Database from "better-sqlite3";
import type { Filter, FilterValue } from "../../core/types.ts";
import { type FilterTerm, filterTerms, isoDateMs } from "../filter.ts";

/** SQL function (registered per connection): epoch ms of an ISO-8601 date string, else NULL. */
const ISO_MS_FUNCTION = "longclip_iso_ms";

/** Adds the functions `filterToSql`'s conditions call to a connection. */
export function registerFilterFunctions(db: Database.Database): void {
  db.function(
    ISO_MS_FUNCTION,
    { deterministic: true },
    (value: unknown) => isoDateMs(value) ?? null,
  );
}

const RANGE_SQL = { gt: ">", gte: ">=", lt: "<", lte: "<=" } as const;

/** The JSON types `json_type` reports, grouped as filters compare them; `missing`: no value. */
type Kind = "text" | "number" | "true" | "false" | "null" | "container" | "missing";
const KINDS: readonly Kind[] = ["text", "number", "true", "false", "null", "container", "missing"];
/** `json_type` names of each kind (missing is the CASE's ELSE). */
const TYPE_NAMES: Record<Exclude<Kind, "missing">, readonly string[]> = {
  text: ["text"],
  number: ["integer", "real"],
  true: ["true"],
  false: ["false"],
  null: ["null"],
  container: ["array", "object"],
};

/** A condition on one row's value of a known kind: a constant, or SQL over `value` (`?`s in order). */
type Outcome = boolean | { sql: (value: string) => string; params: unknown[] };

const not = (outcome: Outcome): Outcome =>
  typeof outcome === "boolean"
    ? !outcome
    : { sql: (value) => `NOT ${outcome.sql(value)}`, params: outcome.params };

/** Whether a value of `kind` equals one of `values` (types kept apart). */
function memberOf(kind: Kind, values: readonly FilterValue[]): Outcome {
  switch (kind) {
    case "text":
    case "number": {
      const same = values.filter((v) => typeof v === (kind === "text" ? "string" : "number"));
      if (same.length === 0) return false;
      if (same.length === 1) return { sql: (value) => `${value} = ?`, params: same };
      return {
        sql: (value) => `${value} IN (SELECT value FROM json_each(?))`,
        params: [JSON.stringify(same)],
      };
    }
    case "true":
      return values.includes(true);
    case "false":
      return values.includes(false);
    case "null":
      return values.includes(null);
    default:
      return false;
  }
}

/** What one term requires of a value of `kind`. */
function outcome(term: FilterTerm, kind: Kind): Outcome {
  switch (term.op) {
    case "eq":
      return memberOf(kind, [term.value]);
    case "ne":
      return not(memberOf(kind, [term.value]));
    case "in":
      return memberOf(kind, term.values);
    case "nin":
      return not(memberOf(kind, term.values));
    case "exists":
      return (kind !== "missing") === term.value;
    default: {
      const op = RANGE_SQL[term.op];
      const { bound } = term;
      if (bound.kind === "number") {
        return kind === "number"
          ? { sql: (value) => `${value} ${op} ?`, params: [bound.value] }
          : false;
      }
      return kind === "text"
        ? {
            sql: (value) => `coalesce(${ISO_MS_FUNCTION}(${value}) ${op} ?, 0)`,
            params: [bound.ms],
          }
        : false;
    }
  }
}

/** Every term on one key, as one condition that reads the value's type once. */
function keySql(
  jsonPath: string,
  terms: readonly FilterTerm[],
): { sql: string; params: unknown[] } {
  const value = "json_extract(metadata, ?)";
  const branch = (kind: Kind): { sql: string; params: unknown[] } => {
    const parts: string[] = [];
    const params: unknown[] = [];
    for (const term of terms) {
      const result = outcome(term, kind);
      if (result === false) return { sql: "0", params: [] };
      if (result === true) continue;
      parts.push(result.sql(value));
      // The value's path comes before the operands in each part.
      params.push(jsonPath, ...result.params);
    }
    return parts.length === 0
      ? { sql: "1", params: [] }
      : { sql: `(${parts.join(" AND ")})`, params };
  };
  const branches = new Map(KINDS.map((kind) => [kind, branch(kind)]));
  const missing = branches.get("missing") as { sql: string; params: unknown[] };
  let sql = "CASE json_type(metadata, ?)";
  const params: unknown[] = [jsonPath];
  let read = false;
  for (const kind of KINDS) {
    if (kind === "missing") continue;
    const result = branches.get(kind) as { sql: string; params: unknown[] };
    // A type that behaves as a missing value falls through to ELSE.
    if (result.params.length === 0 && result.sql === missing.sql) continue;
    read = true;
    for (const name of TYPE_NAMES[kind]) {
      sql += ` WHEN '${name}' THEN ${result.sql}`;
      params.push(...result.params);
    }
  }
  // Every type as a missing value: no need to read it.
  if (!read) return missing;
  sql += ` ELSE ${missing.sql} END`;
  params.push(...missing.params);
  return { sql, params };
}

/** A filter as an SQL condition over `items.metadata`. */
export function filterToSql(filter: Filter): { where: string; params: unknown[] } {
  const byKey = new Map<string, FilterTerm[]>();
  for (const term of filterTerms(filter)) {
    const key = term.path.join(".");
    byKey.set(key, [...(byKey.get(key) ?? []), term]);
  }
  const clauses: string[] = [];
  const params: unknown[] = [];
  for (const terms of byKey.values()) {
    const path = (terms[0] as FilterTerm).path;
    const clause = keySql(`$${path.map((key) => `."${key}"`).join("")}`, terms);
    clauses.push(clause.sql);
    params.push(...clause.params);
  }
  return { where: clauses.length > 0 ? clauses.join(" AND ") : "1", params };
}
