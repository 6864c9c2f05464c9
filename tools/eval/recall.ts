/**
 * Retrieval recall on paired embeddings (pair i = image i and its caption i), computed as the
 * official Long-CLIP `eval/retrieval/Urban1k.py` does: cosine similarities of L2-normalised
 * embeddings, and a query counts as a hit at R@1 when `torch.argmax` over its similarity row
 * picks the paired item. `torch.argmax` returns the first maximal index, so among tied scores the
 * lowest index wins. R@5 and R@10 (which that script does not compute) rank the same way: the
 * paired item's rank is the number of items scoring strictly higher plus the number of
 * equal-scoring items with a lower index, and it is a hit at k when that rank is below k.
 */

export interface RecallAtK {
  r1: number;
  r5: number;
  r10: number;
}

export interface RetrievalRecall {
  /** Pairs evaluated. */
  n: number;
  /** Image → text: each image queries all captions. */
  i2t: RecallAtK;
  /** Text → image: each caption queries all images. */
  t2i: RecallAtK;
}

export const RECALL_KS = [1, 5, 10] as const;

/** Row-major n×m matrix of dot products, `sim[i*m + j] = a[i] · b[j]`, accumulated in float64. */
export function similarityMatrix(
  a: readonly Float32Array[],
  b: readonly Float32Array[],
): Float64Array {
  const n = a.length;
  const m = b.length;
  const sim = new Float64Array(n * m);
  for (let i = 0; i < n; i++) {
    const x = a[i] as Float32Array;
    for (let j = 0; j < m; j++) {
      const y = b[j] as Float32Array;
      if (y.length !== x.length) {
        throw new Error(`embedding ${j} has ${y.length} dims, embedding ${i} has ${x.length}`);
      }
      let dot = 0;
      for (let d = 0; d < x.length; d++) dot += (x[d] as number) * (y[d] as number);
      sim[i * m + j] = dot;
    }
  }
  return sim;
}

/**
 * 0-based rank of candidate `target` among `count` candidates whose scores are `score(j)`:
 * higher scores first, ties broken by the lower index (torch.argmax's first maximal index).
 */
export function rankOf(score: (j: number) => number, count: number, target: number): number {
  const mine = score(target);
  let rank = 0;
  for (let j = 0; j < count; j++) {
    if (j === target) continue;
    const s = score(j);
    if (s > mine || (s === mine && j < target)) rank++;
  }
  return rank;
}

function recallFromRanks(ranks: readonly number[]): RecallAtK {
  const n = ranks.length;
  const at = (k: number) => (n === 0 ? 0 : ranks.filter((r) => r < k).length / n);
  return { r1: at(1), r5: at(5), r10: at(10) };
}

/** Ranks of each pair's match, both directions, from an n×n image×text similarity matrix. */
export function pairRanks(sim: Float64Array, n: number): { i2t: number[]; t2i: number[] } {
  if (sim.length !== n * n)
    throw new Error(`similarity matrix has ${sim.length} entries, not ${n}²`);
  const i2t: number[] = [];
  const t2i: number[] = [];
  for (let i = 0; i < n; i++) {
    i2t.push(rankOf((j) => sim[i * n + j] as number, n, i));
    t2i.push(rankOf((j) => sim[j * n + i] as number, n, i));
  }
  return { i2t, t2i };
}

/** R@1/5/10 both ways from an n×n image×text similarity matrix (row i = image i). */
export function recallFromSimilarity(sim: Float64Array, n: number): RetrievalRecall {
  const ranks = pairRanks(sim, n);
  return { n, i2t: recallFromRanks(ranks.i2t), t2i: recallFromRanks(ranks.t2i) };
}

/**
 * Recall over the complete pairs only: a pair whose image or caption embedding is missing
 * (`undefined`: missing file, unreadable, failed to decode) is left out of both directions, as
 * if it were not in the dataset. Returns the indices left out.
 */
export function retrievalRecall(
  images: readonly (Float32Array | undefined)[],
  texts: readonly (Float32Array | undefined)[],
): RetrievalRecall & { excluded: number[] } {
  if (images.length !== texts.length) {
    throw new Error(`${images.length} image embeddings but ${texts.length} text embeddings`);
  }
  const kept: number[] = [];
  const excluded: number[] = [];
  images.forEach((image, i) => {
    if (image !== undefined && texts[i] !== undefined) kept.push(i);
    else excluded.push(i);
  });
  const sim = similarityMatrix(
    kept.map((i) => images[i] as Float32Array),
    kept.map((i) => texts[i] as Float32Array),
  );
  return { ...recallFromSimilarity(sim, kept.length), excluded };
}
