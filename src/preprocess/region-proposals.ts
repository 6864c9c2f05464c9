/**
 * Content-aware region proposals: boxes likely to hold one whole thing, so a crop can frame it
 * more tightly than a fixed grid window. The scoring follows Edge Boxes (Zitnick & Dollár,
 * ECCV 2014): a box is likely to hold an object when many edge contours lie wholly inside it
 * and few cross its border. Computed on a small copy of the image:
 *
 * 1. edges: Sobel gradients (of the colour channel that changes most), thinned to their ridge
 *    along the gradient and kept above `EDGE_THRESHOLD` (region-edges.ts);
 * 2. edge groups: 8-connected edge pixels joined while the orientation turns by at most π/2
 *    along the chain; neighbouring groups get an affinity, high where they continue each other;
 * 3. each sliding-window box scores the magnitude of its groups, each weighted down by its
 *    strongest chain of affinities to a group crossing the border, less the part inside it of
 *    the groups it cuts, over the perimeter^κ; raised as its sides run along edges of their
 *    own direction (closure, a cue of Alexe et al.'s objectness); the best are refined by
 *    small steps of each side, shrunk to the groups they hold, and thinned by non-maximum
 *    suppression.
 */
import type { Box } from "../core/types.ts";
import { type EdgeGroup, type EdgeMap, edgeGroups, edgeMap, turn } from "./region-edges.ts";
import type { RawImage } from "./resample.ts";

/** Limits and parameters of the proposals; every one bounds work or output. */
export interface ProposalLimits {
  /** At most this many boxes, best first. */
  max: number;
  /** A box's short side is at least this many pixels of the original (the model's input). */
  minSide: number;
  /** A box's side is at most this share of the image's side (the whole image is there already). */
  maxShare: number;
  /** Boxes overlapping a better one by more than this intersection over union are dropped. */
  nmsIou: number;
}

/** Sliding windows: consecutive positions and sizes overlap by about this IoU (Edge Boxes' α). */
const WINDOW_STEP_IOU = 0.7;
/** Aspect ratios of the windows, at most this far from square either way. */
const MAX_ASPECT = 3;
/** Perimeter exponent: how strongly larger boxes are discounted (Edge Boxes' κ). */
const KAPPA = 1.5;
/** Affinity chains weaker than this are not followed (they would change a weight by less). */
const MIN_CHAIN = 0.02;
/** How much closure raises a score: up to (1 + this)× for a box whose border is all edge. */
const CLOSURE_WEIGHT = 2;
/** Boxes refined by coordinate steps, of the best-scoring windows. */
const REFINED = 60;
/** Windows overlapping a better one by more than this are not refined (it reaches the same box). */
const SEED_IOU = 0.4;

/** Inclusive pixel box of the working image. */
interface Window {
  left: number;
  top: number;
  right: number;
  bottom: number;
}

/** Scores boxes by Edge Boxes' measure over a fixed set of groups. */
class BoxScorer {
  /** Groups by the coarse cells their bounding boxes touch. */
  private readonly cells: number[][];
  private readonly cellsAcross: number;
  private readonly rowRuns: Float64Array;
  private readonly columnRuns: Float64Array;
  private readonly chain: Float64Array;
  private readonly holds: Int32Array;
  private readonly stamp: Int32Array;
  private visit = 0;

  constructor(
    private readonly edges: EdgeMap,
    private readonly groups: EdgeGroup[],
    private readonly cellSize = 16,
  ) {
    const { width, height, magnitude } = edges;
    // Prefix sums along rows of "a horizontal edge within a pixel", along columns of vertical.
    this.rowRuns = new Float64Array((width + 1) * height);
    this.columnRuns = new Float64Array(width * (height + 1));
    const along = (i: number, horizontal: boolean) => {
      if ((magnitude[i] as number) === 0) return false;
      const o = edges.orientation[i] as number;
      return horizontal ? turn(o, 0) <= Math.PI / 8 : turn(o, Math.PI / 2) <= Math.PI / 8;
    };
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const i = y * width + x;
        const h =
          along(i, true) ||
          (y > 0 && along(i - width, true)) ||
          (y + 1 < height && along(i + width, true));
        const v =
          along(i, false) ||
          (x > 0 && along(i - 1, false)) ||
          (x + 1 < width && along(i + 1, false));
        this.rowRuns[y * (width + 1) + x + 1] =
          (this.rowRuns[y * (width + 1) + x] as number) + (h ? 1 : 0);
        this.columnRuns[x * (height + 1) + y + 1] =
          (this.columnRuns[x * (height + 1) + y] as number) + (v ? 1 : 0);
      }
    }
    this.cellsAcross = Math.ceil(width / cellSize);
    this.cells = Array.from({ length: this.cellsAcross * Math.ceil(height / cellSize) }, () => []);
    for (const [g, group] of groups.entries()) {
      for (let cy = Math.floor(group.top / cellSize); cy <= group.bottom / cellSize; cy++) {
        for (let cx = Math.floor(group.left / cellSize); cx <= group.right / cellSize; cx++) {
          this.cells[cy * this.cellsAcross + cx]?.push(g);
        }
      }
    }
    this.chain = new Float64Array(groups.length);
    this.holds = new Int32Array(groups.length).fill(-1);
    this.stamp = new Int32Array(groups.length).fill(-1);
  }

  /** The share of `w`'s border that runs along an edge of the same direction (closure). */
  closure(w: Window): number {
    const { width, height } = this.edges;
    const row = (y: number) =>
      (this.rowRuns[y * (width + 1) + w.right + 1] as number) -
      (this.rowRuns[y * (width + 1) + w.left] as number);
    const column = (x: number) =>
      (this.columnRuns[x * (height + 1) + w.bottom + 1] as number) -
      (this.columnRuns[x * (height + 1) + w.top] as number);
    const across = w.right - w.left + 1;
    const down = w.bottom - w.top + 1;
    return (row(w.top) + row(w.bottom) + column(w.left) + column(w.right)) / (2 * (across + down));
  }

  /** The groups whose bounding boxes meet `w`, each once. */
  private groupsNear(w: Window): number[] {
    this.visit++;
    const found: number[] = [];
    const size = this.cellSize;
    for (let cy = Math.floor(w.top / size); cy <= w.bottom / size; cy++) {
      for (let cx = Math.floor(w.left / size); cx <= w.right / size; cx++) {
        for (const g of this.cells[cy * this.cellsAcross + cx] ?? []) {
          if (this.stamp[g] === this.visit) continue;
          this.stamp[g] = this.visit;
          const group = this.groups[g] as EdgeGroup;
          if (
            group.right >= w.left &&
            group.left <= w.right &&
            group.bottom >= w.top &&
            group.top <= w.bottom
          ) {
            found.push(g);
          }
        }
      }
    }
    return found;
  }

  /** Edge Boxes' score h_b^in of `w`, and the groups it holds wholly. */
  score(w: Window): { score: number; inside: number[] } {
    const near = this.groupsNear(w);
    const inside: number[] = [];
    // chain: strongest product of affinities from a group crossing the border (1 for those).
    const visit = this.visit;
    const frontier: number[] = [];
    for (const g of near) {
      const group = this.groups[g] as EdgeGroup;
      this.chain[g] = 0;
      if (
        group.left >= w.left &&
        group.right <= w.right &&
        group.top >= w.top &&
        group.bottom <= w.bottom
      ) {
        inside.push(g);
        this.holds[g] = visit;
      } else {
        this.chain[g] = 1;
        frontier.push(g);
      }
    }
    // Best-first spread of chain strengths (products of affinities ≤ 1) into the box.
    while (frontier.length > 0) {
      let best = 0;
      for (let k = 1; k < frontier.length; k++) {
        if (
          (this.chain[frontier[k] as number] as number) >
          (this.chain[frontier[best] as number] as number)
        )
          best = k;
      }
      const g = frontier[best] as number;
      frontier[best] = frontier[frontier.length - 1] as number;
      frontier.pop();
      const strength = this.chain[g] as number;
      for (const { group: n, affinity } of (this.groups[g] as EdgeGroup).neighbours) {
        if (this.holds[n] !== visit) continue;
        const through = strength * affinity;
        const before = this.chain[n] as number;
        if (through > before && through > MIN_CHAIN) {
          if (before === 0) frontier.push(n);
          this.chain[n] = through;
        }
      }
    }
    let total = 0;
    for (const g of inside) {
      total += (1 - (this.chain[g] as number)) * (this.groups[g] as EdgeGroup).magnitude;
    }
    // Contours cut by the border count against the box, by the share of their extent inside.
    for (const g of near) {
      if (this.holds[g] === visit) continue;
      const group = this.groups[g] as EdgeGroup;
      const across = group.right - group.left + 1;
      const down = group.bottom - group.top + 1;
      const inX = Math.min(group.right, w.right) - Math.max(group.left, w.left) + 1;
      const inY = Math.min(group.bottom, w.bottom) - Math.max(group.top, w.top) + 1;
      total -= (group.magnitude * inX * inY) / (across * down);
    }
    const width = w.right - w.left + 1;
    const height = w.bottom - w.top + 1;
    const perimeter = (2 * (width + height)) ** KAPPA;
    // Edge Boxes' h_b; its h_in (less the central half's edges) let a box just inside a thing
    // with a busy middle beat the thing's own box on the seed-301 canvases.
    const edgeBoxes = total / perimeter;
    return { score: edgeBoxes * (1 + CLOSURE_WEIGHT * this.closure(w)), inside };
  }

  /** The bounding box of the groups in `inside` (a box shrunk to what it holds). */
  shrink(inside: number[], fallback: Window): Window {
    if (inside.length === 0) return fallback;
    const out = { left: Infinity, top: Infinity, right: -Infinity, bottom: -Infinity };
    for (const g of inside) {
      const group = this.groups[g] as EdgeGroup;
      out.left = Math.min(out.left, group.left);
      out.top = Math.min(out.top, group.top);
      out.right = Math.max(out.right, group.right);
      out.bottom = Math.max(out.bottom, group.bottom);
    }
    return out;
  }
}

function iou(a: Window, b: Window): number {
  const w = Math.min(a.right, b.right) - Math.max(a.left, b.left) + 1;
  const h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top) + 1;
  if (w <= 0 || h <= 0) return 0;
  const inter = w * h;
  const area = (r: Window) => (r.right - r.left + 1) * (r.bottom - r.top + 1);
  return inter / (area(a) + area(b) - inter);
}

/** Side lengths from `min` to `max`, each about 1/α of the last. */
function sides(min: number, max: number): number[] {
  const out: number[] = [];
  for (let s = min; s <= max; s = Math.max(s + 1, Math.round(s / WINDOW_STEP_IOU))) out.push(s);
  return out;
}

/**
 * Proposals on `image` (a small copy of the original), as boxes in the original's pixels
 * (`scale`: original pixels per working pixel), best first, at most `limits.max`.
 */
export function proposeBoxes(
  image: RawImage,
  scale: number,
  originalWidth: number,
  originalHeight: number,
  limits: ProposalLimits,
): Box[] {
  if (limits.max <= 0) return [];
  const edges = edgeMap(image);
  const { groups } = edgeGroups(edges);
  if (groups.length === 0) return [];
  const scorer = new BoxScorer(edges, groups);
  const { width, height } = image;
  const minSide = Math.max(4, Math.ceil(limits.minSide / scale));
  const maxWidth = Math.floor(width * limits.maxShare);
  const maxHeight = Math.floor(height * limits.maxShare);
  if (minSide > Math.min(maxWidth, maxHeight)) return [];
  // Positions step so that neighbouring windows overlap by about α.
  const stepFor = (side: number) =>
    Math.max(1, Math.round((side * (1 - WINDOW_STEP_IOU)) / (1 + WINDOW_STEP_IOU)));
  const scored: { window: Window; score: number }[] = [];
  for (const w of sides(minSide, maxWidth)) {
    for (const h of sides(minSide, maxHeight)) {
      if (w > h * MAX_ASPECT || h > w * MAX_ASPECT) continue;
      for (let top = 0; top + h <= height; top += stepFor(h)) {
        for (let left = 0; left + w <= width; left += stepFor(w)) {
          const window = { left, top, right: left + w - 1, bottom: top + h - 1 };
          const { score } = scorer.score(window);
          if (score > 0) scored.push({ window, score });
        }
      }
    }
  }
  scored.sort((a, b) => b.score - a.score);
  // The windows worth refining: the best, less those nearly the same as a better one.
  const seeds: { window: Window; score: number }[] = [];
  for (const candidate of scored) {
    if (seeds.length >= REFINED) break;
    if (seeds.every((k) => iou(k.window, candidate.window) <= SEED_IOU)) seeds.push(candidate);
  }
  // Refine the best: move each side by shrinking steps while the score improves, then shrink
  // the box to the groups it holds wholly.
  const refined: { window: Window; score: number }[] = [];
  for (const { window, score } of seeds) {
    let current = window;
    let best = score;
    for (
      let step = Math.max(1, Math.round((current.right - current.left) / 8));
      step >= 1;
      step = Math.floor(step / 2)
    ) {
      let moved = true;
      while (moved) {
        moved = false;
        for (const side of ["left", "top", "right", "bottom"] as const) {
          for (const delta of [-step, step]) {
            const next = { ...current, [side]: current[side] + delta };
            if (
              next.left < 0 ||
              next.top < 0 ||
              next.right >= width ||
              next.bottom >= height ||
              next.right - next.left + 1 < minSide ||
              next.bottom - next.top + 1 < minSide
            ) {
              continue;
            }
            const s = scorer.score(next).score;
            if (s > best) {
              best = s;
              current = next;
              moved = true;
            }
          }
        }
      }
    }
    const tight = scorer.shrink(scorer.score(current).inside, current);
    if (tight.right - tight.left + 1 >= minSide && tight.bottom - tight.top + 1 >= minSide) {
      refined.push({ window: tight, score: best });
    }
  }
  refined.sort((a, b) => b.score - a.score);
  const kept: Window[] = [];
  for (const { window } of refined) {
    if (kept.length >= limits.max) break;
    if (kept.every((k) => iou(k, window) <= limits.nmsIou)) kept.push(window);
  }
  return kept.map((w) => toOriginal(w, scale, originalWidth, originalHeight));
}

/** A working-image window as a box of the original's pixels, inside the original. */
function toOriginal(w: Window, scale: number, width: number, height: number): Box {
  const x = Math.max(0, Math.min(width - 1, Math.round(w.left * scale)));
  const y = Math.max(0, Math.min(height - 1, Math.round(w.top * scale)));
  const right = Math.max(x + 1, Math.min(width, Math.round((w.right + 1) * scale)));
  const bottom = Math.max(y + 1, Math.min(height, Math.round((w.bottom + 1) * scale)));
  return { x, y, width: right - x, height: bottom - y };
}
