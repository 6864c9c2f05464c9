/**
 * Metadata filters and list cursors, as both backends accept them: a filter maps a key (a
 * dotted path into the metadata object) to the value it must equal, types kept apart (true
 * never matches 1, "1" never matches 1, null matches only an explicit null).
 */
import { AppError } from "../errors.ts";
import type { Filter, FilterValue } from "./types.ts";

/** Keys: dot-separated segments of letters, digits, "_" and "-", each segment non-empty. */
const METADATA_KEY = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;
const MAX_KEY_LENGTH = 64;

export interface FilterTerm {
  /** The key's segments: "camera.model" → ["camera", "model"]. */
  path: string[];
  value: FilterValue;
}

/** Validates a filter (keys and value types) and splits its keys into paths. */
export function filterTerms(filter: Filter): FilterTerm[] {
  const terms: FilterTerm[] = [];
  for (const [key, value] of Object.entries(filter)) {
    if (key.length > MAX_KEY_LENGTH || !METADATA_KEY.test(key)) {
      throw new AppError(
        "invalid_filter",
        `Filter key "${key.slice(0, 80)}" is not allowed; keys are 1-${MAX_KEY_LENGTH} characters of letters, digits, "_" or "-", with "." between nested keys.`,
        400,
      );
    }
    if (typeof value === "number" && !Number.isFinite(value)) {
      throw new AppError("invalid_filter", `Filter value of "${key}" must be finite.`, 400);
    }
    if (value !== null && !["string", "number", "boolean"].includes(typeof value)) {
      throw new AppError(
        "invalid_filter",
        `Filter value of "${key}" must be a string, number, boolean or null.`,
        400,
      );
    }
    terms.push({ path: key.split("."), value });
  }
  return terms;
}

export function encodeCursor(label: number): string {
  return Buffer.from(String(label), "utf8").toString("base64url");
}

export function decodeCursor(cursor: string): number {
  const text = Buffer.from(cursor, "base64url").toString("utf8");
  const label = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(label)) {
    throw new AppError(
      "invalid_cursor",
      "The cursor is not one this server issued; pass the nextCursor of the previous page or omit it to start over.",
      400,
    );
  }
  return label;
}

/** One page of rows fetched with `limit + 1`: the rows to show and the next page's cursor. */
export function pageOf<T extends { label: number }>(
  rows: T[],
  limit: number,
): { items: T[]; nextCursor: string | null } {
  const items = rows.slice(0, limit);
  const last = items[items.length - 1];
  return {
    items,
    nextCursor: rows.length > limit && last !== undefined ? encodeCursor(last.label) : null,
  };
}
