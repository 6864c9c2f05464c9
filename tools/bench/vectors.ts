/**
 * Synthetic embedding sets for the index benchmark, and exact k-NN as the recall reference.
 * Everything is seeded, so two runs build the same vectors.
 */

/** Row `i` of a row-major matrix of `dims` columns, without a copy. */
export function rowOf(data: Float32Array, dims: number, i: number): Float32Array {
  return data.subarray(i * dims, (i + 1) * dims);
}

/** mulberry32: a small, fast, seedable PRNG with uniform output in [0, 1). */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normal samples (Box-Muller, both outputs used). */
export function seededGaussian(seed: number): () => number {
  const uniform = seededRandom(seed);
  let spare: number | undefined;
  return () => {
    if (spare !== undefined) {
      const value = spare;
      spare = undefined;
      return value;
    }
    const u = 1 - uniform();
    const v = uniform();
    const radius = Math.sqrt(-2 * Math.log(u));
    spare = radius * Math.sin(2 * Math.PI * v);
    return radius * Math.cos(2 * Math.PI * v);
  };
}

function normaliseRows(data: Float32Array, dims: number): void {
  for (let offset = 0; offset < data.length; offset += dims) {
    let sum = 0;
    for (let j = 0; j < dims; j++) {
      const v = data[offset + j] as number;
      sum += v * v;
    }
    const scale = 1 / Math.max(Math.sqrt(sum), 1e-12);
    for (let j = 0; j < dims; j++) data[offset + j] = (data[offset + j] as number) * scale;
  }
}

/** `count` unit vectors drawn uniformly on the sphere, row-major in one array. */
export function randomUnitVectors(count: number, dims: number, seed: number): Float32Array {
  const gaussian = seededGaussian(seed);
  const data = new Float32Array(count * dims);
  for (let i = 0; i < data.length; i++) data[i] = gaussian();
  normaliseRows(data, dims);
  return data;
}

export interface ClusterSpec {
  clusters: number;
  /** Standard deviation of the noise per dimension around a unit-length centre. */
  spread: number;
}

/**
 * Unit vectors around `clusters` random centres (Gaussian noise, then normalised), a stand-in
 * for embeddings that have structure. Each vector picks its cluster at random; the centres
 * depend on `centresSeed` only, so data and queries drawn with different seeds share them.
 * (Measured, this set is far easier for HNSW than uniform noise on the sphere, whose
 * neighbours are all nearly equidistant.)
 */
export function clusteredUnitVectors(
  count: number,
  dims: number,
  spec: ClusterSpec,
  seed: number,
  centresSeed = seed,
): Float32Array {
  const centres = randomUnitVectors(spec.clusters, dims, centresSeed);
  const gaussian = seededGaussian(seed + 7919);
  const pick = seededRandom(seed + 104729);
  const data = new Float32Array(count * dims);
  for (let i = 0; i < count; i++) {
    const c = Math.floor(pick() * spec.clusters) * dims;
    const offset = i * dims;
    for (let j = 0; j < dims; j++) {
      data[offset + j] = (centres[c + j] as number) + spec.spread * gaussian();
    }
  }
  normaliseRows(data, dims);
  return data;
}

/**
 * Exact top-k by inner product (cosine for unit vectors) for each query, best first. Queries
 * are processed in blocks so each stored vector is read once per block, not once per query.
 */
export function exactTopK(
  data: Float32Array,
  dims: number,
  queries: Float32Array,
  k: number,
  blockSize = 8,
): number[][] {
  const count = data.length / dims;
  const queryCount = queries.length / dims;
  const results: number[][] = [];
  for (let q0 = 0; q0 < queryCount; q0 += blockSize) {
    const block = Math.min(blockSize, queryCount - q0);
    const topIds = Array.from({ length: block }, () => new Int32Array(k).fill(-1));
    const topScores = Array.from({ length: block }, () => new Float64Array(k).fill(-Infinity));
    for (let i = 0; i < count; i++) {
      const offset = i * dims;
      for (let b = 0; b < block; b++) {
        const qOffset = (q0 + b) * dims;
        let dot = 0;
        for (let j = 0; j < dims; j++) {
          dot += (data[offset + j] as number) * (queries[qOffset + j] as number);
        }
        const scores = topScores[b] as Float64Array;
        if (dot <= (scores[k - 1] as number)) continue;
        const ids = topIds[b] as Int32Array;
        let pos = k - 1;
        while (pos > 0 && (scores[pos - 1] as number) < dot) {
          scores[pos] = scores[pos - 1] as number;
          ids[pos] = ids[pos - 1] as number;
          pos--;
        }
        scores[pos] = dot;
        ids[pos] = i;
      }
    }
    for (const ids of topIds) results.push(Array.from(ids).filter((id) => id >= 0));
  }
  return results;
}

/** Mean over queries of |approx ∩ exact| / |exact| (recall@k with k = exact row length). */
export function meanRecall(
  approx: readonly (readonly number[])[],
  exact: readonly (readonly number[])[],
): number {
  if (approx.length !== exact.length) {
    throw new Error(`${approx.length} approximate result rows for ${exact.length} exact rows`);
  }
  if (exact.length === 0) return 0;
  let total = 0;
  exact.forEach((truth, q) => {
    if (truth.length === 0) return;
    const found = new Set(approx[q]);
    let hits = 0;
    for (const id of truth) if (found.has(id)) hits++;
    total += hits / truth.length;
  });
  return total / exact.length;
}
