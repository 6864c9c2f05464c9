/**
 * Near-duplicates: groups of items whose image embeddings are at least `threshold` similar
 * (cosine). Each item asks the store's ANN index for its nearest neighbours (never all pairs:
 * n queries of k neighbours), the pairs above the threshold link items, and the connected
 * components of two or more items are the groups (so A~B and B~C group A, B and C even when
 * A and C are a little further apart). Only whole-image vectors are compared, never an item's
 * parts (regions, frames): a crop of one photo is no duplicate of another.
 */
import { AppError } from "../../core/errors.ts";
import type { DuplicateGroupPage, IndexResult } from "../../core/types.ts";
import { decodeCursor, encodeCursor } from "../../store/filter.ts";
import type { ItemStore } from "../../store/types.ts";

/** How long a scan's neighbour lists are reused while the item count stays the same (other
 * nodes of a shared store may add and delete items in equal numbers meanwhile). */
const CACHE_MS = 30_000;

export interface DuplicateGroup {
  /** Ids in the order they were stored. */
  ids: string[];
  /** The highest similarity of a linked pair in the group. */
  maxScore: number;
  /** The store label of the group's first item: the order of groups and the page cursor. */
  firstLabel: number;
}

/**
 * What one scan of the library found: every item's ANN neighbours at least `minScore` similar,
 * as pairs of labels with their cosine, and the ids of the labels in a pair. Any threshold from
 * `minScore` up groups from these without asking the index again.
 */
export interface NeighbourPairs {
  minScore: number;
  a: Int32Array;
  b: Int32Array;
  score: Float32Array;
  ids: Map<number, string>;
}

export interface DuplicateScan {
  /** Pairs below this similarity are not kept (the lowest threshold the pairs can answer). */
  minScore: number;
  /** ANN neighbours looked at per item. */
  neighbours: number;
  /** Items read per page of the scan. */
  pageSize?: number;
  onProgress?: (done: number) => void;
}

/** Asks the ANN index for every item's nearest neighbours once; keeps the pairs at or above `minScore`. */
export async function findNeighbourPairs(
  store: ItemStore,
  modelId: string,
  scan: DuplicateScan,
): Promise<NeighbourPairs> {
  const a: number[] = [];
  const b: number[] = [];
  const score: number[] = [];
  const ids = new Map<number, string>();
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
      const hits = await store.nearest(
        { vector, k: scan.neighbours + 1, wholeImage: true },
        modelId,
      );
      for (const hit of hits) {
        if (hit.item.label === label || hit.score < scan.minScore) continue;
        ids.set(hit.item.label, hit.item.id);
        a.push(label);
        b.push(hit.item.label);
        score.push(hit.score);
      }
    }
    done += page.length;
    scan.onProgress?.(done);
  }
  return {
    minScore: scan.minScore,
    a: Int32Array.from(a),
    b: Int32Array.from(b),
    score: Float32Array.from(score),
    ids,
  };
}

/** The groups of the pairs at or above `threshold`, ordered by first label. */
export function groupPairs(pairs: NeighbourPairs, threshold: number): DuplicateGroup[] {
  const parent = new Map<number, number>();
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
  for (let i = 0; i < pairs.a.length; i++) {
    // Scores were kept as float32: compare the threshold at the same precision.
    const pairScore = pairs.score[i] as number;
    if (pairScore < Math.fround(threshold)) continue;
    const a = pairs.a[i] as number;
    const b = pairs.b[i] as number;
    if (!parent.has(a)) parent.set(a, a);
    if (!parent.has(b)) parent.set(b, b);
    const ra = root(a);
    const rb = root(b);
    const top = Math.max(pairScore, best.get(ra) ?? 0, best.get(rb) ?? 0);
    // The smaller label becomes the root, so a group's root is its first item.
    const [keep, drop] = ra < rb ? [ra, rb] : [rb, ra];
    parent.set(drop, keep);
    best.set(keep, top);
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
    labels.sort((x, y) => x - y);
    // Items deleted during the scan may lack an id; they are left out.
    const groupIds = labels
      .map((l) => pairs.ids.get(l))
      .filter((id): id is string => id !== undefined);
    if (groupIds.length < 2) continue;
    groups.push({
      ids: groupIds,
      maxScore: best.get(r) ?? threshold,
      firstLabel: labels[0] as number,
    });
  }
  return groups.sort((x, y) => x.firstLabel - y.firstLabel);
}

/** Scans every item of `modelId` and returns its duplicate groups at `threshold`. */
export async function findDuplicateGroups(
  store: ItemStore,
  modelId: string,
  scan: Omit<DuplicateScan, "minScore"> & { threshold: number },
): Promise<DuplicateGroup[]> {
  const pairs = await findNeighbourPairs(store, modelId, { ...scan, minScore: scan.threshold });
  return groupPairs(pairs, scan.threshold);
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
  const hits = await store.nearest({ vector: row.vector, k: 2, wholeImage: true }, modelId);
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
 * GET /duplicates: one scan of the library's neighbour pairs serves every threshold from
 * `minThreshold` up, reused for CACHE_MS while this node indexed and deleted nothing and the
 * item count is unchanged; groups are paged by the label of each group's first item (stable
 * when they are recomputed between pages). At most one scan runs at a time: requests during a
 * scan wait for it, or for the one scan queued after it when the library changed meanwhile.
 */
export class DuplicateGroups {
  /** Bumped by every index and delete through this node: its computed pairs are stale. */
  private generation = 0;
  private cached: { key: string; at: number; pairs: NeighbourPairs } | undefined;
  private running: { key: string; pairs: Promise<NeighbourPairs> } | undefined;
  /** The scan to run after `running`, which every request arriving meanwhile shares. */
  private queued: Promise<NeighbourPairs> | undefined;
  /** Scans started (for tests and metrics). */
  scans = 0;

  constructor(
    private readonly store: ItemStore,
    private readonly neighbours: number,
    private readonly minThreshold: number,
  ) {}

  invalidate(): void {
    this.generation++;
  }

  async page(
    modelId: string,
    options: { threshold: number; cursor: string | null; limit: number },
  ): Promise<DuplicateGroupPage> {
    const { threshold, limit } = options;
    if (!(threshold >= this.minThreshold && threshold > 0 && threshold <= 1)) {
      throw new AppError(
        "validation_failed",
        `threshold must be a cosine similarity from ${this.minThreshold} (minDuplicateThreshold, LONGCLIP_MIN_DUPLICATE_THRESHOLD) to 1, not ${String(threshold)}.`,
        { min: this.minThreshold, max: 1 },
      );
    }
    const after = options.cursor === null ? 0 : decodeCursor(options.cursor);
    const groups = groupPairs(await this.pairs(modelId), threshold);
    const start = groups.findIndex((group) => group.firstLabel > after);
    const page = start < 0 ? [] : groups.slice(start, start + limit);
    const last = page[page.length - 1];
    return {
      groups: page.map((group) => ({ ids: group.ids, maxScore: group.maxScore })),
      nextCursor:
        last !== undefined && start + limit < groups.length ? encodeCursor(last.firstLabel) : null,
    };
  }

  private async key(modelId: string): Promise<string> {
    return `${modelId}|${this.generation}|${await this.store.count()}`;
  }

  private async pairs(modelId: string): Promise<NeighbourPairs> {
    const key = await this.key(modelId);
    const cached = this.cached;
    if (cached !== undefined && cached.key === key && Date.now() - cached.at <= CACHE_MS) {
      return cached.pairs;
    }
    if (this.running?.key === key) return this.running.pairs;
    if (this.queued !== undefined) return this.queued;
    if (this.running === undefined) return this.scan(modelId, key);
    // A scan of a library that changed since is running: one more after it, for all.
    const queued = this.running.pairs
      .catch(() => {})
      .then(async () => {
        this.queued = undefined;
        return this.scan(modelId, await this.key(modelId));
      });
    this.queued = queued;
    return queued;
  }

  private scan(modelId: string, key: string): Promise<NeighbourPairs> {
    this.scans++;
    const pairs = findNeighbourPairs(this.store, modelId, {
      minScore: this.minThreshold,
      neighbours: this.neighbours,
    });
    const running = { key, pairs };
    this.running = running;
    pairs.then(
      (found) => {
        // The key as the scan started: what changed during it makes the result stale.
        this.cached = { key, at: Date.now(), pairs: found };
      },
      () => {},
    );
    pairs
      .finally(() => {
        if (this.running === running) this.running = undefined;
      })
      .catch(() => {});
    return pairs;
  }
}
