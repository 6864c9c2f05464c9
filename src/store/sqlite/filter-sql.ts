/**
 * Metadata filters (see ../filter.ts for the semantics) as SQLite conditions over
 * `items.metadata`, read with the JSON1 functions. Date ranges call a function that
 * `registerFilterFunctions` adds to each connection.
 */
import type Database from "better-sqlite3";
import type { Filter, FilterValue } from "../../core/types.ts";
import { filterTerms, isoDateMs } from "../filter.ts";

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

/** Equality of the value at `jsonPath` and `value`, JSON types kept apart; always 0 or 1. */
function equalsSql(jsonPath: string, value: FilterValue): { sql: string; params: unknown[] } {
  if (value === null) {
    return { sql: "coalesce(json_type(metadata, ?) = 'null', 0)", params: [jsonPath] };
  }
  if (typeof value === "boolean") {
    return { sql: "coalesce(json_type(metadata, ?) = ?, 0)", params: [jsonPath, String(value)] };
  }
  const types = typeof value === "number" ? "('integer', 'real')" : "('text')";
  return {
    sql: `coalesce(json_type(metadata, ?) IN ${types} AND json_extract(metadata, ?) = ?, 0)`,
    params: [jsonPath, jsonPath, value],
  };
}

function anyOfSql(jsonPath: string, values: readonly FilterValue[]) {
  if (values.length === 0) return { sql: "0", params: [] };
  const parts = values.map((value) => equalsSql(jsonPath, value));
  return {
    sql: `(${parts.map((p) => p.sql).join(" OR ")})`,
    params: parts.flatMap((p) => p.params),
  };
}

/** A filter as an SQL condition over `items.metadata`. */
export function filterToSql(filter: Filter): { where: string; params: unknown[] } {
  const clauses: string[] = [];
  const params: unknown[] = [];
  for (const term of filterTerms(filter)) {
    const jsonPath = `$${term.path.map((key) => `."${key}"`).join("")}`;
    let clause: { sql: string; params: unknown[] };
    switch (term.op) {
      case "eq":
        clause = equalsSql(jsonPath, term.value);
        break;
      case "ne": {
        const eq = equalsSql(jsonPath, term.value);
        clause = { sql: `NOT ${eq.sql}`, params: eq.params };
        break;
      }
      case "in":
        clause = anyOfSql(jsonPath, term.values);
        break;
      case "nin": {
        const any = anyOfSql(jsonPath, term.values);
        clause = { sql: `NOT ${any.sql}`, params: any.params };
        break;
      }
      case "exists":
        clause = {
          sql: `json_type(metadata, ?) IS ${term.value ? "NOT NULL" : "NULL"}`,
          params: [jsonPath],
        };
        break;
      default: {
        const op = RANGE_SQL[term.op];
        clause =
          term.bound.kind === "number"
            ? {
                sql: `coalesce(json_type(metadata, ?) IN ('integer', 'real') AND json_extract(metadata, ?) ${op} ?, 0)`,
                params: [jsonPath, jsonPath, term.bound.value],
              }
            : {
                sql: `coalesce(${ISO_MS_FUNCTION}(json_extract(metadata, ?)) ${op} ?, 0)`,
                params: [jsonPath, term.bound.ms],
              };
      }
    }
    clauses.push(clause.sql);
    params.push(...clause.params);
  }
  return { where: clauses.length > 0 ? clauses.join(" AND ") : "1", params };
}
