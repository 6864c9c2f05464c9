/**
 * Near-duplicates: groups of items whose image embeddings are at least `threshold` similar
 * (cosine). Each item asks the store's ANN index for its nearest neighbours (never all pairs:
 * n queries of k neighbours), the pairs above the threshold link items, and the connected
 * components of two or more items are the groups (so A~B and B~C group A, B and C even when
 * A and C are a little further apart).
 */
import { AppError } from "../core/errors.ts";
import type { DuplicateGroupPage, IndexResult } from "../core/types.ts";
import { decodeCursor, encodeCursor } from "../store/filter.ts";
import type { ItemStore } from "../store/types.ts";

/** How long computed groups are reused while the item count stays the same (other nodes of a
 * shared store may add and delete items in equal numbers meanwhile). */
const CACHE_MS = 30_000;

export interface DuplicateGroup {
  /** Ids in the order they were stored. */
  ids: string[];
  /** The highest similarity of a linked pair in the group. */
  maxScore: number;
  /** The store label of the group's first item: the order of groups and the page cursor. */
  firstLabel: number;
}

export interface DuplicateScan {
  threshold: number;
  /** ANN neighbours looked at per item. */
  neighbours: number;
  /** Items read per page of the scan. */
  pageSize?: number;
  onProgress?: (done: number) => void;
}

/** Scans every item of `modelId` and returns its duplicate groups, ordered by first label. */
export async function findDuplicateGroups(
  store: ItemStore,
  modelId: string,
  scan: DuplicateScan,
): Promise<DuplicateGroup[]> {
  const parent = new Map<number, number>();
  const ids = new Map<number, string>();
  const best = new Map<number, number>();
  const root = (label: number): number => {
    let r = label;
    while (parent.get(r) !== undefined && parent.get(r) !== r) r = parent.get(r) as number;
    // Path compression keeps later look-ups short.
    let x = label;
    while (x !== r) {
      const next = parent.get(x) as number;
      parent.set(x, r);
      x = next;
    }
    return r;
  };
  const link = (a: number, b: number, score: number) => {
    if (!parent.has(a)) parent.set(a, a);
    if (!parent.has(b)) parent.set(b, b);
    const ra = root(a);
    const rb = root(b);
    const top = Math.max(score, best.get(ra) ?? 0, best.get(rb) ?? 0);
    // The smaller label becomes the root, so a group's root is its first item.
    const [keep, drop] = ra < rb ? [ra, rb] : [rb, ra];
    parent.set(drop, keep);
    best.set(keep, top);
  };

  let after = 0;
  let done = 0;
  for (;;) {
    const page = await store.itemsAfter(after, scan.pageSize ?? 256);
    const last = page[page.length - 1];
    if (last === undefined) break;
    after = last.label;
    const vectors = await store.embeddingsOf(
      modelId,
      page.map((item) => item.label),
    );
    for (const item of page) ids.set(item.label, item.id);
    for (const { label, vector } of vectors) {
      const hits = await store.nearest({ vector, k: scan.neighbours + 1 }, modelId);
      for (const hit of hits) {
        if (hit.item.label === label || hit.score < scan.threshold) continue;
        ids.set(hit.item.label, hit.item.id);
        link(label, hit.item.label, hit.score);
      }
    }
    done += page.length;
    scan.onProgress?.(done);
  }

  const members = new Map<number, number[]>();
  for (const label of parent.keys()) {
    const r = root(label);
    const list = members.get(r);
    if (list === undefined) members.set(r, [label]);
    else list.push(label);
  }
  const groups: DuplicateGroup[] = [];
  for (const [r, labels] of members) {
    if (labels.length < 2) continue;
    labels.sort((a, b) => a - b);
    // Items deleted during the scan may lack an id; they are left out.
    const groupIds = labels.map((l) => ids.get(l)).filter((id): id is string => id !== undefined);
    if (groupIds.length < 2) continue;
    groups.push({
      ids: groupIds,
      maxScore: best.get(r) ?? scan.threshold,
      firstLabel: labels[0] as number,
    });
  }
  return groups.sort((a, b) => a.firstLabel - b.firstLabel);
}

/**
 * The item most similar to `label`'s embedding other than itself, if at least `threshold`:
 * what POST /index reports as `near_duplicate_of`.
 */
export async function nearestOther(
  store: ItemStore,
  modelId: string,
  label: number,
  threshold: number,
): Promise<{ id: string; score: number } | undefined> {
  const [row] = await store.embeddingsOf(modelId, [label]);
  if (row === undefined) return undefined;
  const hits = await store.nearest({ vector: row.vector, k: 2 }, modelId);
  const other = hits.find((hit) => hit.item.label !== label);
  return other !== undefined && other.score >= threshold
    ? { id: other.item.id, score: other.score }
    : undefined;
}

/** Adds `near_duplicate_of` to the new items of `results` that have a stored item at least
 * `threshold` similar (0: off); the item is stored either way, so a failed check only leaves
 * the flag out. */
export async function flagNearDuplicates(
  store: ItemStore,
  modelId: string,
  results: IndexResult[],
  threshold: number,
  onError: (error: unknown) => void,
): Promise<void> {
  if (!(threshold > 0)) return;
  for (const result of results) {
    if (result.status !== "indexed") continue;
    try {
      const item = await store.getById(result.id);
      if (item === undefined) continue;
      const near = await nearestOther(store, modelId, item.label, threshold);
      if (near !== undefined) {
        result.near_duplicate_of = near.id;
        result.near_duplicate_score = near.score;
      }
    } catch (error) {
      onError(error);
    }
  }
}

/**
 * GET /duplicates: the groups of a threshold, computed once and paged by the label of each
 * group's first item (stable when the groups are recomputed between pages).
 */
export class DuplicateGroups {
  /** Bumped by every index and delete through this node: its computed groups are stale. */
  private generation = 0;
  private cached: { key: string; at: number; groups: Promise<DuplicateGroup[]> } | undefined;

  constructor(
    private readonly store: ItemStore,
    private readonly neighbours: number,
  ) {}

  invalidate(): void {
    this.generation++;
  }

  async page(
    modelId: string,
    options: { threshold: number; cursor: string | null; limit: number },
  ): Promise<DuplicateGroupPage> {
    const { threshold, limit } = options;
    if (!(threshold > 0 && threshold <= 1)) {
      throw new AppError(
        "validation_failed",
        `threshold must be a cosine similarity above 0 and at most 1, not ${String(threshold)}.`,
      );
    }
    const after = options.cursor === null ? 0 : decodeCursor(options.cursor);
    const key = `${modelId}|${threshold}|${this.generation}|${await this.store.count()}`;
    const cached = this.cached;
    if (cached === undefined || cached.key !== key || Date.now() - cached.at > CACHE_MS) {
      const groups = findDuplicateGroups(this.store, modelId, {
        threshold,
        neighbours: this.neighbours,
      });
      this.cached = { key, at: Date.now(), groups };
      groups.catch(() => {
        if (this.cached?.groups === groups) this.cached = undefined;
      });
    }
    const groups = await (this.cached as { groups: Promise<DuplicateGroup[]> }).groups;
    const start = groups.findIndex((group) => group.firstLabel > after);
    const page = start < 0 ? [] : groups.slice(start, start + limit);
    const last = page[page.length - 1];
    return {
      groups: page.map((group) => ({ ids: group.ids, maxScore: group.maxScore })),
      nextCursor:
        last !== undefined && start + limit < groups.length ? encodeCursor(last.firstLabel) : null,
    };
  }
}
