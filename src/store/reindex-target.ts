/** The blue/green reindex record both backends keep in their `meta` table. */
import { AppError } from "../core/errors.ts";
import type { ReindexTarget } from "./types.ts";

export const REINDEX_KEY = "reindex_target";

export function parseReindexTarget(value: string | undefined): ReindexTarget | undefined {
  return value === undefined ? undefined : (JSON.parse(value) as ReindexTarget);
}

export function reindexIncomplete(missing: number): AppError {
  return new AppError(
    "reindex_incomplete",
    `${missing} items have no embedding by the next model yet; the switch waits until every item has one (the reindex embeds them).`,
    { missing },
  );
}
