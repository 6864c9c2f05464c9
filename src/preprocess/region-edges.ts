/**
 * The edge stage of the region proposals (region-proposals.ts), after Edge Boxes (Zitnick &
 * Dollár, ECCV 2014): Sobel edges thinned to their ridges, joined into edge groups (contour
 * pieces that turn by at most π/2), and the affinities of touching groups.
 */
import type { RawImage } from "./resample.ts";

/** Gradient magnitude (Sobel, 0–255 channels) under which a pixel is not an edge. */
export const EDGE_THRESHOLD = 48;
/** Affinity exponent (Edge Boxes' γ). */
const GAMMA = 2;
/** Touching groups with a lower affinity than this are not linked. */
const MIN_AFFINITY = 0.05;

export interface EdgeMap {
  width: number;
  height: number;
  magnitude: Float32Array;
  orientation: Float32Array;
}

/** Sobel gradients of the channel with the largest change at each pixel, thinned and thresholded. */
export function edgeMap(image: RawImage): EdgeMap {
  const { width, height, channels, data } = image;
  const colours = Math.min(3, channels);
  const raw = new Float32Array(width * height);
  const angle = new Float32Array(width * height);
  const at = (x: number, y: number, c: number) => data[(y * width + x) * channels + c] as number;
  for (let y = 1; y < height - 1; y++) {
    for (let x = 1; x < width - 1; x++) {
      let best = 0;
      let bx = 0;
      let by = 0;
      for (let c = 0; c < colours; c++) {
        const gx =
          at(x + 1, y - 1, c) +
          2 * at(x + 1, y, c) +
          at(x + 1, y + 1, c) -
          at(x - 1, y - 1, c) -
          2 * at(x - 1, y, c) -
          at(x - 1, y + 1, c);
        const gy =
          at(x - 1, y + 1, c) +
          2 * at(x, y + 1, c) +
          at(x + 1, y + 1, c) -
          at(x - 1, y - 1, c) -
          2 * at(x, y - 1, c) -
          at(x + 1, y - 1, c);
        const m = gx * gx + gy * gy;
        if (m > best) {
          best = m;
          bx = gx;
          by = gy;
        }
      }
      raw[y * width + x] = Math.sqrt(best);
      angle[y * width + x] = Math.atan2(by, bx);
    }
  }
  // Thin to the ridge: keep a pixel that is no weaker than its two neighbours along the gradient.
  const magnitude = new Float32Array(width * height);
  const orientation = new Float32Array(width * height);
  for (let y = 1; y < height - 1; y++) {
    for (let x = 1; x < width - 1; x++) {
      const i = y * width + x;
      const m = raw[i] as number;
      if (m < EDGE_THRESHOLD) continue;
      const a = angle[i] as number;
      const dx = Math.round(Math.cos(a));
      const dy = Math.round(Math.sin(a));
      const ahead = raw[(y + dy) * width + x + dx] as number;
      const behind = raw[(y - dy) * width + x - dx] as number;
      // Of a two-pixel-wide ridge (equal magnitudes) only the pixel ahead is kept.
      if (!(m > ahead && m >= behind)) continue;
      magnitude[i] = m;
      // The edge runs across the gradient; orientations are taken modulo π.
      orientation[i] = (((a + Math.PI / 2) % Math.PI) + Math.PI) % Math.PI;
    }
  }
  return { width, height, magnitude, orientation };
}

/** The smaller angle between two orientations modulo π. */
export function turn(a: number, b: number): number {
  const d = Math.abs(a - b) % Math.PI;
  return Math.min(d, Math.PI - d);
}

export interface EdgeGroup {
  magnitude: number;
  /** Magnitude-weighted mean position and orientation (modulo π). */
  x: number;
  y: number;
  orientation: number;
  left: number;
  top: number;
  right: number;
  bottom: number;
  neighbours: { group: number; affinity: number }[];
}

const NEIGHBOURS = [
  [-1, -1],
  [0, -1],
  [1, -1],
  [-1, 0],
  [1, 0],
  [-1, 1],
  [0, 1],
  [1, 1],
] as const;

/** Edge groups and their affinities (Edge Boxes §3.1). */
export function edgeGroups(edges: EdgeMap): { groups: EdgeGroup[]; label: Int32Array } {
  const { width, height, magnitude, orientation } = edges;
  const label = new Int32Array(width * height).fill(-1);
  const groups: EdgeGroup[] = [];
  const turned = new Float32Array(width * height);
  for (let start = 0; start < width * height; start++) {
    if ((magnitude[start] as number) === 0 || (label[start] as number) >= 0) continue;
    const id = groups.length;
    const queue = [start];
    label[start] = id;
    turned[start] = 0;
    let total = 0;
    let sx = 0;
    let sy = 0;
    let sc = 0;
    let ss = 0;
    let left = width;
    let top = height;
    let right = 0;
    let bottom = 0;
    for (let head = 0; head < queue.length; head++) {
      const i = queue[head] as number;
      const x = i % width;
      const y = (i - x) / width;
      const m = magnitude[i] as number;
      const o = orientation[i] as number;
      total += m;
      sx += m * x;
      sy += m * y;
      sc += m * Math.cos(2 * o);
      ss += m * Math.sin(2 * o);
      left = Math.min(left, x);
      right = Math.max(right, x);
      top = Math.min(top, y);
      bottom = Math.max(bottom, y);
      for (const [dx, dy] of NEIGHBOURS) {
        const nx = x + dx;
        const ny = y + dy;
        if (nx < 0 || ny < 0 || nx >= width || ny >= height) continue;
        const j = ny * width + nx;
        if ((magnitude[j] as number) === 0 || (label[j] as number) >= 0) continue;
        const t = (turned[i] as number) + turn(o, orientation[j] as number);
        if (t > Math.PI / 2) continue;
        label[j] = id;
        turned[j] = t;
        queue.push(j);
      }
    }
    groups.push({
      magnitude: total,
      x: sx / total,
      y: sy / total,
      orientation: (((Math.atan2(ss, sc) / 2) % Math.PI) + Math.PI) % Math.PI,
      left,
      top,
      right,
      bottom,
      neighbours: [],
    });
  }
  // Affinity of touching groups: high when each runs along the line joining their centres.
  const linked = new Set<number>();
  for (let i = 0; i < width * height; i++) {
    const a = label[i] as number;
    if (a < 0) continue;
    const x = i % width;
    const y = (i - x) / width;
    for (const [dx, dy] of NEIGHBOURS) {
      const nx = x + dx;
      const ny = y + dy;
      if (nx < 0 || ny < 0 || nx >= width || ny >= height) continue;
      const b = label[ny * width + nx] as number;
      if (b <= a || linked.has(a * groups.length + b)) continue;
      linked.add(a * groups.length + b);
      const ga = groups[a] as EdgeGroup;
      const gb = groups[b] as EdgeGroup;
      const joining = Math.atan2(gb.y - ga.y, gb.x - ga.x);
      const affinity =
        Math.abs(Math.cos(ga.orientation - joining) * Math.cos(gb.orientation - joining)) ** GAMMA;
      if (affinity < MIN_AFFINITY) continue;
      ga.neighbours.push({ group: b, affinity });
      gb.neighbours.push({ group: a, affinity });
    }
  }
  return { groups, label };
}
