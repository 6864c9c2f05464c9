/**
 * Brute-force k-nearest neighbours by cosine similarity: the ground truth that ANN recall is
 * measured against, and the search used for small filtered subsets.
 */
import type { Neighbour } from "./hnsw.ts";

export interface LabelledVector {
  label: number;
  vector: Float32Array;
}

export function cosine(a: Float32Array, b: Float32Array): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as number;
    const y = b[i] as number;
    dot += x * y;
    na += x * x;
    nb += y * y;
  }
  return na === 0 || nb === 0 ? 0 : dot / Math.sqrt(na * nb);
}

/** The k rows most similar to `query`, best first (ties: lower label first). */
export function exactSearch(
  query: Float32Array,
  rows: Iterable<LabelledVector>,
  k: number,
): Neighbour[] {
  if (k <= 0) return [];
  // A min-heap of the best k so far: memory O(k), time O(n log k).
  const heap: Neighbour[] = [];
  const worse = (a: Neighbour, b: Neighbour) =>
    a.score < b.score || (a.score === b.score && a.label > b.label);
  const swap = (i: number, j: number) => {
    const t = heap[i] as Neighbour;
    heap[i] = heap[j] as Neighbour;
    heap[j] = t;
  };
  for (const row of rows) {
    const candidate = { label: row.label, score: cosine(query, row.vector) };
    if (heap.length < k) {
      heap.push(candidate);
      let i = heap.length - 1;
      while (i > 0) {
        const parent = (i - 1) >> 1;
        if (!worse(heap[i] as Neighbour, heap[parent] as Neighbour)) break;
        swap(i, parent);
        i = parent;
      }
    } else if (worse(heap[0] as Neighbour, candidate)) {
      heap[0] = candidate;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let min = i;
        if (l < heap.length && worse(heap[l] as Neighbour, heap[min] as Neighbour)) min = l;
        if (r < heap.length && worse(heap[r] as Neighbour, heap[min] as Neighbour)) min = r;
        if (min === i) break;
        swap(i, min);
        i = min;
      }
    }
  }
  return heap.sort((a, b) => (worse(a, b) ? 1 : worse(b, a) ? -1 : 0));
}
