import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { cosine, exactSearch } from "../src/vector-index/exact.ts";
import { HnswIndex } from "../src/vector-index/hnsw.ts";
import { xorshift32 } from "../tools/bench/random.ts";

const tmp = mkdtempSync(path.join(os.tmpdir(), "vector-index-test-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** Deterministic pseudo-random unit vectors (xorshift), so failures reproduce. */
function randomUnitVectors(count: number, dims: number, seed: number): Float32Array[] {
  const state = xorshift32(seed);
  const next = () => state() / 0x1_0000_0000 - 0.5;
  const out: Float32Array[] = [];
  for (let i = 0; i < count; i++) {
    const v = new Float32Array(dims);
    let norm = 0;
    for (let d = 0; d < dims; d++) {
      v[d] = next();
      norm += (v[d] as number) ** 2;
    }
    for (let d = 0; d < dims; d++) v[d] = (v[d] as number) / Math.sqrt(norm);
    out.push(v);
  }
  return out;
}

const OPTIONS = { dims: 16, m: 16, efConstruction: 100, efSearch: 64 };

describe("exactSearch", () => {
  test("ranks by cosine similarity, computed independently by sorting every score", () => {
    const vectors = randomUnitVectors(300, 16, 7);
    const query = randomUnitVectors(1, 16, 99)[0] as Float32Array;
    const rows = vectors.map((vector, i) => ({ label: i + 1, vector }));
    const expected = rows
      .map((row) => ({ label: row.label, score: cosine(query, row.vector) }))
      .sort((a, b) => b.score - a.score)
      .slice(0, 10);
    assert.deepEqual(exactSearch(query, rows, 10), expected);
  });

  test("cosine of orthogonal, parallel and opposite vectors", () => {
    const x = new Float32Array([1, 0]);
    assert.equal(cosine(x, new Float32Array([0, 3])), 0);
    assert.equal(cosine(x, new Float32Array([2, 0])), 1);
    assert.equal(cosine(x, new Float32Array([-1, 0])), -1);
  });

  test("k larger than the row count returns every row", () => {
    const rows = randomUnitVectors(3, 4, 1).map((vector, i) => ({ label: i, vector }));
    assert.equal(exactSearch(rows[0]?.vector as Float32Array, rows, 10).length, 3);
    assert.deepEqual(exactSearch(rows[0]?.vector as Float32Array, rows, 0), []);
  });
});

describe("HnswIndex", () => {
  test("scores are cosine similarities and the nearest neighbour of a stored vector is itself", () => {
    const vectors = randomUnitVectors(200, 16, 3);
    const index = HnswIndex.create({ ...OPTIONS, capacity: 8 });
    for (const [i, v] of vectors.entries()) index.add(i + 1, v);
    assert.equal(index.size, 200);
    assert.ok(index.capacity >= 200, "capacity grew by itself");
    const query = vectors[41] as Float32Array;
    const hits = index.search(query, 5);
    assert.equal(hits[0]?.label, 42);
    assert.ok(Math.abs((hits[0]?.score as number) - 1) < 1e-5);
    for (const hit of hits) {
      const expected = cosine(query, vectors[hit.label - 1] as Float32Array);
      assert.ok(Math.abs(hit.score - expected) < 1e-5, `score ${hit.score} vs ${expected}`);
    }
  });

  test("recall@10 against exact search is high at the default-like parameters", () => {
    const vectors = randomUnitVectors(2000, 16, 11);
    const rows = vectors.map((vector, i) => ({ label: i + 1, vector }));
    const index = HnswIndex.create(OPTIONS);
    for (const row of rows) index.add(row.label, row.vector);
    const queries = randomUnitVectors(30, 16, 12);
    let found = 0;
    for (const q of queries) {
      const truth = new Set(exactSearch(q, rows, 10).map((n) => n.label));
      for (const hit of index.search(q, 10)) if (truth.has(hit.label)) found++;
    }
    const recall = found / (queries.length * 10);
    assert.ok(recall >= 0.9, `recall@10 ${recall}`);
  });

  test("deleted labels are not returned, their slots are reused, a filter restricts labels", () => {
    const vectors = randomUnitVectors(20, 16, 5);
    const index = HnswIndex.create({ ...OPTIONS, capacity: 20 });
    for (const [i, v] of vectors.entries()) index.add(i + 1, v);
    index.remove(3);
    index.remove(3);
    index.remove(999);
    assert.equal(index.size, 19);
    assert.ok(!index.search(vectors[2] as Float32Array, 20).some((h) => h.label === 3));
    index.add(21, vectors[2] as Float32Array);
    assert.equal(index.capacity, 20, "the deleted slot was reused");
    const even = index.search(vectors[0] as Float32Array, 5, (label) => label % 2 === 0);
    assert.equal(even.length, 5);
    assert.ok(even.every((h) => h.label % 2 === 0));
    assert.equal(index.search(vectors[0] as Float32Array, 1000).length, 20);
  });

  test("save is atomic and load restores the same neighbours", () => {
    const vectors = randomUnitVectors(100, 16, 9);
    const index = HnswIndex.create(OPTIONS);
    for (const [i, v] of vectors.entries()) index.add(i + 1, v);
    index.remove(10);
    assert.ok(index.dirty);
    const file = path.join(tmp, "idx", "hnsw.bin");
    index.save(file);
    assert.ok(!index.dirty);
    assert.deepEqual(readdirSync(path.dirname(file)), ["hnsw.bin"], "no temporary file left");
    const loaded = HnswIndex.load(file, OPTIONS);
    const q = vectors[50] as Float32Array;
    assert.deepEqual(loaded.search(q, 10), index.search(q, 10));
    // The deleted label still reads as live until reconciled; removing it is harmless.
    loaded.remove(10);
    assert.equal(loaded.size, 99);
  });

  test("an empty index saved and loaded can grow", () => {
    const file = path.join(tmp, "empty.bin");
    HnswIndex.create(OPTIONS).save(file);
    const loaded = HnswIndex.load(file, OPTIONS);
    const vectors = randomUnitVectors(50, 16, 4);
    for (const [i, v] of vectors.entries()) loaded.add(i + 1, v);
    assert.equal(loaded.size, 50);
    assert.equal(loaded.search(vectors[7] as Float32Array, 1)[0]?.label, 8);
  });

  test("a loaded full index grows past its saved size", () => {
    const file = path.join(tmp, "full.bin");
    const vectors = randomUnitVectors(40, 16, 6);
    const index = HnswIndex.create(OPTIONS);
    for (const [i, v] of vectors.slice(0, 10).entries()) index.add(i + 1, v);
    index.save(file);
    const loaded = HnswIndex.load(file, OPTIONS);
    for (const [i, v] of vectors.slice(10).entries()) loaded.add(i + 11, v);
    assert.equal(loaded.size, 40);
    assert.equal(loaded.search(vectors[30] as Float32Array, 1)[0]?.label, 31);
  });

  test("a corrupt file is refused, not loaded", () => {
    const file = path.join(tmp, "corrupt.bin");
    writeFileSync(file, Buffer.alloc(100, 7));
    assert.throws(() => HnswIndex.load(file, OPTIONS));
  });

  test("a vector of the wrong length is refused", () => {
    const index = HnswIndex.create(OPTIONS);
    assert.throws(() => index.add(1, new Float32Array(8)), /dims/);
  });
});
