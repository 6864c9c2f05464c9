/**
 * A heat map from patch embeddings: each patch's agreement with a query embedding, as a grid of
 * scores. Pure arithmetic, shared by POST /explain (./explain.ts) and the pointing benchmark
 * (tools/eval/bench-pointing.ts), which measures the methods below against the generator's
 * object boxes.
 */
import type { PatchEmbeddings } from "../../encode/types.ts";

/**
 * How patch scores are made. `removeImage`: each patch's component along the image's own
 * (pooled) embedding is taken out before the cosine, so what every patch shares with the whole
 * image does not decide where the maximum falls. `smoothing`: passes of a 3×3 mean over the
 * grid (each cell with the neighbours it has). `centre`: the mean of the image's patch
 * embeddings is taken out of each before the cosine (what all patches share). `contrast`: the
 * query is its unit embedding less NEUTRAL_CAPTION's, normalised (`contrasted`), so what any
 * caption would find in a patch does not count.
 */
export interface HeatMapMethod {
  removeImage: boolean;
  smoothing: number;
  centre?: boolean;
  contrast?: boolean;
}

/** The caption that names nothing, for `contrast`. */
export const NEUTRAL_CAPTION = "A picture.";

/** What POST /explain uses (chosen with npm run bench:pointing; docs/search.md has the table). */
export const DEFAULT_HEAT_MAP: HeatMapMethod = { removeImage: false, smoothing: 0, contrast: true };

/** unit(query − neutral): the query with what a caption naming nothing agrees with taken out. */
export function contrasted(query: Float32Array, neutral: Float32Array): Float32Array {
  const out = query.map((v, i) => v - (neutral[i] as number));
  const norm = Math.sqrt(out.reduce((sum, v) => sum + v * v, 0)) || 1;
  return out.map((v) => v / norm);
}

export interface HeatMap {
  rows: number;
  columns: number;
  /** rows·columns scores, row-major. */
  scores: Float32Array;
  min: number;
  max: number;
  /** The cell of the largest score (the first one on ties). */
  peak: { row: number; column: number };
}

function dot(a: Float32Array, aOffset: number, b: Float32Array, dims: number): number {
  let sum = 0;
  for (let d = 0; d < dims; d++) sum += (a[aOffset + d] as number) * (b[d] as number);
  return sum;
}

/** The patches less their mean, normalised again. */
function centred(patches: PatchEmbeddings, dims: number): PatchEmbeddings {
  const count = patches.rows * patches.columns;
  const mean = new Float64Array(dims);
  for (let p = 0; p < count; p++) {
    for (let d = 0; d < dims; d++)
      mean[d] = (mean[d] as number) + (patches.patches[p * dims + d] as number) / count;
  }
  const out = new Float32Array(count * dims);
  for (let p = 0; p < count; p++) {
    let norm = 0;
    for (let d = 0; d < dims; d++) {
      const v = (patches.patches[p * dims + d] as number) - (mean[d] as number);
      out[p * dims + d] = v;
      norm += v * v;
    }
    norm = Math.sqrt(norm) || 1;
    for (let d = 0; d < dims; d++) out[p * dims + d] = (out[p * dims + d] as number) / norm;
  }
  return { ...patches, patches: out };
}

/** One 3×3 mean pass (edge cells average the neighbours they have). */
function smoothed(scores: Float32Array, rows: number, columns: number): Float32Array {
  const out = new Float32Array(scores.length);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < columns; c++) {
      let sum = 0;
      let count = 0;
      for (let dr = -1; dr <= 1; dr++) {
        for (let dc = -1; dc <= 1; dc++) {
          const rr = r + dr;
          const cc = c + dc;
          if (rr < 0 || rr >= rows || cc < 0 || cc >= columns) continue;
          sum += scores[rr * columns + cc] as number;
          count++;
        }
      }
      out[r * columns + c] = sum / count;
    }
  }
  return out;
}

/**
 * The heat map of `query` (a unit vector) over `patches` (unit rows); `image` is the image's
 * own unit embedding, used by `removeImage`.
 */
export function heatMap(
  patches: PatchEmbeddings,
  query: Float32Array,
  image: Float32Array | undefined,
  method: HeatMapMethod = DEFAULT_HEAT_MAP,
): HeatMap {
  const { rows, columns } = patches;
  const dims = query.length;
  const count = rows * columns;
  let scores: Float32Array = new Float32Array(count);
  if (method.centre === true) patches = centred(patches, dims);
  const removing = method.removeImage && image !== undefined;
  const queryAlongImage = removing ? dot(query, 0, image, dims) : 0;
  for (let p = 0; p < count; p++) {
    const offset = p * dims;
    let score = dot(patches.patches, offset, query, dims);
    if (removing) {
      // cosine of (patch - (patch·image) image) with the query
      const along = dot(patches.patches, offset, image, dims);
      const rest = Math.sqrt(Math.max(1e-12, 1 - along * along));
      score = (score - along * queryAlongImage) / rest;
    }
    scores[p] = score;
  }
  for (let pass = 0; pass < method.smoothing; pass++) scores = smoothed(scores, rows, columns);
  return { rows, columns, scores, ...peakOf(scores, columns) };
}

/** The largest score of `scores` and the first cell that has it. */
export function peakOf(
  scores: Float32Array,
  columns: number,
): Pick<HeatMap, "min" | "max" | "peak"> {
  let min = Number.POSITIVE_INFINITY;
  let max = Number.NEGATIVE_INFINITY;
  let peak = 0;
  scores.forEach((score, p) => {
    min = Math.min(min, score);
    if (score > max) {
      max = score;
      peak = p;
    }
  });
  return { min, max, peak: { row: Math.floor(peak / columns), column: peak % columns } };
}
