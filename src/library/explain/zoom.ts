/**
 * Zoomed explanations: the model reads its input through a coarse patch grid (8 × 8 for the
 * demo model, 7 × 7 for ViT-B/32), so a thing smaller than a patch cannot be pointed at. At
 * zoom n the centred square is also read through the overlapping windows of an n × n grid
 * (preprocess/regions.ts `zoomBoxes`, each cropped from the original and preprocessed like a
 * whole image); every view gets its own heat map and the maps are fused on a grid n times
 * finer than the model's: each fine cell is the mean of the scores of the views that cover it.
 * Pure arithmetic; ./explain.ts runs the views through the model.
 */
import type { Box } from "../../core/types.ts";
import { type HeatMap, peakOf } from "./heat-map.ts";

/** One view's heat map and its box in the original's pixels. */
export interface View {
  box: Box;
  map: Pick<HeatMap, "rows" | "columns" | "scores">;
}

/** The score of `map` at (u, v) in fractions of its own view: the cell that holds the point. */
function sample(map: View["map"], u: number, v: number): number {
  const column = Math.min(map.columns - 1, Math.floor(u * map.columns));
  const row = Math.min(map.rows - 1, Math.floor(v * map.rows));
  return map.scores[row * map.columns + column] as number;
}

/**
 * The views' maps fused on a `rows` × `columns` grid over `crop` (the centred square): each
 * cell the mean of the views whose box holds its centre. (Taking each view's own mean out
 * first, or z-scoring, or the max over views, pointed less often on the tuning seed.)
 */
export function fuseViews(
  views: readonly View[],
  crop: Box,
  rows: number,
  columns: number,
): HeatMap {
  const sums = new Float64Array(rows * columns);
  const counts = new Uint16Array(rows * columns);
  for (const { box, map } of views) {
    for (let r = 0; r < rows; r++) {
      const v = (crop.y + ((r + 0.5) * crop.height) / rows - box.y) / box.height;
      if (v < 0 || v >= 1) continue;
      for (let c = 0; c < columns; c++) {
        const u = (crop.x + ((c + 0.5) * crop.width) / columns - box.x) / box.width;
        if (u < 0 || u >= 1) continue;
        const cell = r * columns + c;
        sums[cell] = (sums[cell] as number) + sample(map, u, v);
        counts[cell] = (counts[cell] as number) + 1;
      }
    }
  }
  const scores = new Float32Array(rows * columns);
  for (let p = 0; p < scores.length; p++) {
    scores[p] = (sums[p] as number) / Math.max(1, counts[p] as number);
  }
  return { rows, columns, scores, ...peakOf(scores, columns) };
}
