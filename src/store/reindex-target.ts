/** The blue/green reindex record both backends keep in their `meta` table. */
import { AppError } from "../core/errors.ts";
import type { ReindexTarget } from "./types.ts";

export const REINDEX_KEY = "reindex_target";

export function parseReindexTarget(value: string | undefined): ReindexTarget | undefined {
  return value === undefined ? undefined : (JSON.parse(value) as ReindexTarget);
}

/** setModel on a store that holds embeddings of another model. */
export function holdsAnotherModel(stored: string, wanted: string): AppError {
  return new AppError(
    "model_mismatch",
    `The library holds embeddings of model ${stored}, not ${wanted} (another node stored some meanwhile); run longclip reindex, or load ${stored}.`,
    { storedModelId: stored, modelId: wanted },
  );
}

/** The text a record is stored as; records are compared by it. */
export function reindexRecord(target: ReindexTarget): string {
  return JSON.stringify(target);
}

export function reindexSuperseded(): AppError {
  return new AppError(
    "reindex_superseded",
    "Another node took this reindex over (or switched already); it finishes there.",
  );
}

export function reindexIncomplete(missing: number): AppError {
  return new AppError(
    "reindex_incomplete",
    `${missing} items have no embedding by the next model yet; the switch waits until every item has one (the reindex embeds them).`,
    { missing },
  );
}
