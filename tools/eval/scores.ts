/**
 * What cosine scores look like on a bench set, for choosing a `min_score`: the scores of
 * matching image-caption pairs against non-matching ones (every other pair, and the best
 * non-matching image of each caption — the one a cutoff must beat).
 */
import { percentile } from "../bench/stats.ts";
import { similarityMatrix } from "./recall.ts";

export interface Quantiles {
  p5: number;
  p25: number;
  p50: number;
  p75: number;
  p95: number;
  mean: number;
}

export interface ScoreDistribution {
  matching: Quantiles;
  non_matching: Quantiles;
  /** Per caption, the highest-scoring image that is not its own. */
  best_non_matching: Quantiles;
  /** A starting cutoff: the cosine that keeps 95% of matching pairs (their 5th percentile)... */
  suggested_min_score: number;
  /** ...and the share of non-matching pairs that still pass it. */
  non_matching_above_suggested: number;
}

function quantiles(values: readonly number[]): Quantiles {
  const round = (x: number) => Number(x.toFixed(4));
  return {
    p5: round(percentile(values, 5)),
    p25: round(percentile(values, 25)),
    p50: round(percentile(values, 50)),
    p75: round(percentile(values, 75)),
    p95: round(percentile(values, 95)),
    mean: round(values.reduce((sum, v) => sum + v, 0) / Math.max(1, values.length)),
  };
}

/** Distributions over the complete pairs (both embeddings present); unit embeddings. */
export function scoreDistribution(
  images: readonly (Float32Array | undefined)[],
  texts: readonly (Float32Array | undefined)[],
): ScoreDistribution {
  const kept = images.flatMap((image, i) =>
    image !== undefined && texts[i] !== undefined ? [i] : [],
  );
  const n = kept.length;
  const sim = similarityMatrix(
    kept.map((i) => images[i] as Float32Array),
    kept.map((i) => texts[i] as Float32Array),
  );
  const matching: number[] = [];
  const nonMatching: number[] = [];
  const best: number[] = [];
  for (let t = 0; t < n; t++) {
    let top = Number.NEGATIVE_INFINITY;
    for (let i = 0; i < n; i++) {
      const score = sim[i * n + t] as number;
      if (i === t) {
        matching.push(score);
      } else {
        nonMatching.push(score);
        top = Math.max(top, score);
      }
    }
    if (n > 1) best.push(top);
  }
  const suggested = Number(percentile(matching, 5).toFixed(3));
  return {
    matching: quantiles(matching),
    non_matching: quantiles(nonMatching),
    best_non_matching: quantiles(best),
    suggested_min_score: suggested,
    non_matching_above_suggested: Number(
      (nonMatching.filter((s) => s >= suggested).length / Math.max(1, nonMatching.length)).toFixed(
        4,
      ),
    ),
  };
}
