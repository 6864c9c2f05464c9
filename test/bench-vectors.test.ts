import assert from "node:assert/strict";
import { test } from "node:test";
import { LruCache } from "../src/util/lru-cache.ts";
import { percentile } from "../tools/bench/stats.ts";
import {
  clusteredUnitVectors,
  exactTopK,
  meanRecall,
  randomUnitVectors,
} from "../tools/bench/vectors.ts";

/** Top-k by a full sort of every score: slow, obviously right. */
function sortedTopK(data: Float32Array, dims: number, query: Float32Array, k: number): number[] {
  const scores: { id: number; score: number }[] = [];
  for (let i = 0; i < data.length / dims; i++) {
    let dot = 0;
    for (let j = 0; j < dims; j++) dot += (data[i * dims + j] as number) * (query[j] as number);
    scores.push({ id: i, score: dot });
  }
  scores.sort((a, b) => b.score - a.score);
  return scores.slice(0, k).map((s) => s.id);
}

test("exactTopK matches a full sort for uniform and clustered sets, across query blocks", () => {
  const dims = 16;
  for (const data of [
    randomUnitVectors(500, dims, 1),
    clusteredUnitVectors(500, dims, { clusters: 5, spread: 0.05 }, 2),
  ]) {
    const queries = randomUnitVectors(11, dims, 3);
    const got = exactTopK(data, dims, queries, 10, 4);
    assert.equal(got.length, 11);
    got.forEach((row, q) => {
      assert.deepEqual(row, sortedTopK(data, dims, queries.subarray(q * dims, (q + 1) * dims), 10));
    });
  }
});

test("exactTopK returns fewer ids than k when the set is smaller", () => {
  const data = randomUnitVectors(3, 8, 4);
  const [row] = exactTopK(data, 8, data.subarray(0, 8), 10);
  assert.equal(row?.length, 3);
  assert.equal(row?.[0], 0);
});

test("generated vectors have unit length and are reproducible", () => {
  const a = randomUnitVectors(20, 32, 9);
  assert.deepEqual(a, randomUnitVectors(20, 32, 9));
  for (let i = 0; i < 20; i++) {
    let sum = 0;
    for (let j = 0; j < 32; j++) sum += (a[i * 32 + j] as number) ** 2;
    assert.ok(Math.abs(sum - 1) < 1e-5);
  }
});

test("clustered vectors sit closer to each other than uniform ones", () => {
  const dims = 64;
  const meanNearest = (data: Float32Array) => {
    const top = exactTopK(data, dims, data.subarray(0, 20 * dims), 2);
    let total = 0;
    top.forEach((row, q) => {
      const other = row[1] as number;
      let dot = 0;
      for (let j = 0; j < dims; j++) {
        dot += (data[q * dims + j] as number) * (data[other * dims + j] as number);
      }
      total += dot;
    });
    return total / top.length;
  };
  const clustered = clusteredUnitVectors(400, dims, { clusters: 10, spread: 0.05 }, 5);
  const uniform = randomUnitVectors(400, dims, 5);
  assert.ok(meanNearest(clustered) > meanNearest(uniform) + 0.2);
});

test("meanRecall counts the share of exact neighbours found, averaged over queries", () => {
  assert.equal(meanRecall([[1, 2, 3]], [[1, 2, 3]]), 1);
  assert.equal(meanRecall([[3, 2, 9]], [[1, 2, 3]]), 2 / 3);
  assert.equal(
    meanRecall(
      [
        [1, 2],
        [7, 8],
      ],
      [
        [1, 2],
        [5, 6],
      ],
    ),
    0.5,
  );
  assert.throws(() => meanRecall([[1]], []));
});

test("percentile interpolates between ranks", () => {
  assert.equal(percentile([4, 1, 3, 2], 50), 2.5);
  assert.equal(percentile([5], 99), 5);
  assert.equal(percentile([1, 2, 3, 4, 5], 100), 5);
  assert.ok(Number.isNaN(percentile([], 50)));
});

test("LruCache evicts the least recently used entry", () => {
  const cache = new LruCache<string, number>(2);
  cache.set("a", 1);
  cache.set("b", 2);
  assert.equal(cache.get("a"), 1);
  cache.set("c", 3);
  assert.equal(cache.get("b"), undefined);
  assert.equal(cache.get("a"), 1);
  assert.equal(cache.get("c"), 3);
  assert.equal(cache.size, 2);
  const none = new LruCache<string, number>(0);
  none.set("a", 1);
  assert.equal(none.get("a"), undefined);
});
