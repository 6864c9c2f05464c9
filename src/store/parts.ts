/**
 * Items with many vectors, as both backends keep them: an item's whole-image vector plus its
 * parts (regions of an image, frames of a video), each with an embedding and a locator. A part
 * is stored as a row of its item's (deleted with it); a search ranks items by their best vector
 * and says which part won. What is decided alike for both backends is here: the checks of a
 * new item's parts, a part's locator as columns and back, and the best vector per item.
 */
import { boxInside } from "../core/box.ts";
import type { Neighbour } from "../vector-index/hnsw.ts";
import type { NewItem, NewPart, PartLocator, PartMatch, StoredPart } from "./types.ts";

/** A part's locator as table columns (both backends name them alike). */
export interface PartColumns {
  kind: "region" | "frame";
  box_x: number | null;
  box_y: number | null;
  box_width: number | null;
  box_height: number | null;
  t: number | null;
}

export function partColumns(part: PartLocator): PartColumns {
  if (part.kind === "frame") {
    return {
      kind: "frame",
      box_x: null,
      box_y: null,
      box_width: null,
      box_height: null,
      t: part.t,
    };
  }
  const { x, y, width, height } = part.box;
  return { kind: "region", box_x: x, box_y: y, box_width: width, box_height: height, t: null };
}

export function locatorOf(row: PartColumns): PartLocator {
  if (row.kind === "frame") return { kind: "frame", t: row.t as number };
  return {
    kind: "region",
    box: {
      x: row.box_x as number,
      y: row.box_y as number,
      width: row.box_width as number,
      height: row.box_height as number,
    },
  };
}

/** A copy of a locator alone (a part without its vector). */
export function locatorCopy(part: PartLocator): PartLocator {
  return locatorOf(partColumns(part));
}

export function partMatch(part: PartLocator, index: number, score: number): PartMatch {
  return { ...locatorCopy(part), index, score };
}

/**
 * Refuses a new item whose parts the store could not keep as given: a vector of another
 * dimension than the whole image's, a box that is not whole pixels inside the original, a negative or
 * non-finite time, staged part vectors that do not pair with the parts. These come from the
 * product's own code (ingest, reindex, migrate), not from a client: a plain Error.
 */
export function checkParts(entry: NewItem): void {
  const parts = entry.parts ?? [];
  const dims = entry.vector.length;
  parts.forEach((part, index) => {
    const where = `item ${entry.id}, part ${index}`;
    if (part.vector.length !== dims) {
      throw new Error(`${where}: vector has ${part.vector.length} dims, the item's ${dims}`);
    }
    if (part.kind === "frame") {
      if (!Number.isFinite(part.t) || part.t < 0) {
        throw new Error(`${where}: a frame's time must be a finite number of seconds ≥ 0`);
      }
    } else if (part.kind === "region") {
      if (!boxInside(part.box, entry.width, entry.height)) {
        throw new Error(
          `${where}: the box ${JSON.stringify(part.box)} is not inside the ${entry.width}x${entry.height} original`,
        );
      }
    } else {
      throw new Error(`${where}: unknown part kind ${JSON.stringify((part as NewPart).kind)}`);
    }
  });
  const staged = entry.staged?.parts;
  if (staged !== undefined && staged.length !== parts.length) {
    throw new Error(
      `item ${entry.id}: ${staged.length} staged part vectors for ${parts.length} parts`,
    );
  }
}

/** `parts` with their vectors replaced by `vectors` (the same order). */
export function withVectors(
  parts: readonly PartLocator[],
  vectors: readonly Float32Array[],
): NewPart[] {
  return parts.map((part, i) => ({ ...locatorCopy(part), vector: vectors[i] as Float32Array }));
}

/** A stored part as the seam returns it. */
export function storedPart(row: PartColumns, index: number, vector: Float32Array): StoredPart {
  return { ...locatorOf(row), index, vector };
}

/** What a vector of the index belongs to: an item, and which of its parts (none: the whole). */
export interface VectorOwner {
  item: number;
  part?: { index: number; locator: PartLocator };
}

/** An item's best vector among a search's neighbours. */
export interface BestVector {
  item: number;
  score: number;
  part?: { index: number; locator: PartLocator };
}

/**
 * The neighbours grouped by item, each item's best vector kept, best first (ties: the lower
 * item label, and within an item the whole image before a part). `ownerOf` undefined: the
 * vector's label is an item's own.
 */
export function bestPerItem(
  neighbours: readonly Neighbour[],
  ownerOf: (label: number) => VectorOwner | undefined,
): BestVector[] {
  const best = new Map<number, BestVector>();
  for (const { label, score } of neighbours) {
    const owner = ownerOf(label) ?? { item: label };
    const held = best.get(owner.item);
    const better =
      held === undefined ||
      score > held.score ||
      (score === held.score &&
        (owner.part?.index ?? -1) < (held.part === undefined ? -1 : held.part.index));
    if (better) {
      best.set(owner.item, {
        item: owner.item,
        score,
        ...(owner.part !== undefined ? { part: owner.part } : {}),
      });
    }
  }
  return [...best.values()].sort((a, b) => b.score - a.score || a.item - b.item);
}

/** A best vector's part as a hit's `match`, if a part won. */
export function matchOf(best: BestVector): { match?: PartMatch } {
  return best.part === undefined
    ? {}
    : { match: partMatch(best.part.locator, best.part.index, best.score) };
}
