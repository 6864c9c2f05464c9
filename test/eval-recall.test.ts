import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import path from "node:path";
import { describe, it } from "node:test";
import { PROJECT_ROOT } from "../src/core/settings.ts";
import { truncateIds } from "../tools/eval/bench.ts";
import {
  pairRanks,
  rankOf,
  recallFromSimilarity,
  retrievalRecall,
  similarityMatrix,
} from "../tools/eval/recall.ts";
import { loadReference, SKIP_WITHOUT_SHARED } from "./helpers/reference.ts";

/** n×n matrix from a function of (image i, text j). */
function matrix(n: number, f: (i: number, j: number) => number): Float64Array {
  const sim = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) sim[i * n + j] = f(i, j);
  return sim;
}

function oneHot(n: number, k: number): Float32Array {
  const v = new Float32Array(n);
  v[k] = 1;
  return v;
}

describe("recall arithmetic", () => {
  it("perfect matches give recall 1 everywhere", () => {
    const images = [0, 1, 2, 3].map((k) => oneHot(4, k));
    const r = retrievalRecall(images, images);
    assert.deepEqual(r, {
      n: 4,
      i2t: { r1: 1, r5: 1, r10: 1 },
      t2i: { r1: 1, r5: 1, r10: 1 },
      excluded: [],
    });
  });

  it("a match scored below every other item has rank n-1", () => {
    // 12 pairs: every match is last, rank 11 — outside the top 10.
    const worst = matrix(12, (i, j) => (i === j ? 0 : 1));
    assert.deepEqual(recallFromSimilarity(worst, 12), {
      n: 12,
      i2t: { r1: 0, r5: 0, r10: 0 },
      t2i: { r1: 0, r5: 0, r10: 0 },
    });
    // 6 pairs: rank 5 is outside the top 5 and inside the top 10.
    const six = recallFromSimilarity(
      matrix(6, (i, j) => (i === j ? 0 : 1)),
      6,
    );
    assert.deepEqual(six.i2t, { r1: 0, r5: 0, r10: 1 });
  });

  it("reversed order: image i's caption sits at rank n-1-i", () => {
    // Every image scores caption j as j: image i finds its caption behind the n-1-i captions
    // with higher indices. Caption i scores every image the same (i): all tie, the lowest index
    // wins, and image i has rank i.
    const n = 12;
    const sim = matrix(n, (_i, j) => j);
    const ranks = pairRanks(sim, n);
    assert.deepEqual(
      ranks.i2t,
      Array.from({ length: n }, (_, i) => n - 1 - i),
    );
    assert.deepEqual(
      ranks.t2i,
      Array.from({ length: n }, (_, i) => i),
    );
    const r = recallFromSimilarity(sim, n);
    // i2t hits at k: images with n-1-i < k, i.e. the k highest indices.
    assert.deepEqual(r.i2t, { r1: 1 / 12, r5: 5 / 12, r10: 10 / 12 });
    assert.deepEqual(r.t2i, { r1: 1 / 12, r5: 5 / 12, r10: 10 / 12 });
  });

  it("ties go to the lowest index, as torch.argmax's first maximal index", () => {
    const scores = [0.5, 0.9, 0.9, 0.1, 0.9];
    const score = (j: number) => scores[j] as number;
    assert.equal(rankOf(score, 5, 1), 0);
    assert.equal(rankOf(score, 5, 2), 1);
    assert.equal(rankOf(score, 5, 4), 2);
    assert.equal(rankOf(score, 5, 0), 3);
    assert.equal(rankOf(score, 5, 3), 4);
    // All scores equal: only pair 0 is found at R@1 in either direction.
    const flat = recallFromSimilarity(
      matrix(4, () => 0.25),
      4,
    );
    assert.deepEqual(flat.i2t, { r1: 0.25, r5: 1, r10: 1 });
    assert.deepEqual(flat.t2i, { r1: 0.25, r5: 1, r10: 1 });
  });

  it("pairs with a missing image or caption are left out of both directions", () => {
    const e = [0, 1, 2, 3, 4].map((k) => oneHot(5, k));
    // Pair 1 has no image, pair 3 no caption; caption 0 is made to match image 2 best.
    const texts: (Float32Array | undefined)[] = [
      Float32Array.from([0.6, 0, 0.8, 0, 0]),
      e[1],
      e[2],
      undefined,
      e[4],
    ];
    const images: (Float32Array | undefined)[] = [e[0], undefined, e[2], e[3], e[4]];
    const r = retrievalRecall(images, texts);
    assert.equal(r.n, 3);
    assert.deepEqual(r.excluded, [1, 3]);
    // Kept pairs 0, 2, 4. Image 0 → caption 0 (0.6) is its best; image 2 prefers caption 2 (1)
    // over caption 0 (0.8). Caption 0 prefers image 2 (0.8) over image 0 (0.6): a t2i miss.
    assert.deepEqual(r.i2t, { r1: 1, r5: 1, r10: 1 });
    assert.deepEqual(r.t2i, { r1: 2 / 3, r5: 1, r10: 1 });
  });

  it("similarity is the dot product of the embeddings", () => {
    const sim = similarityMatrix(
      [Float32Array.from([1, 2]), Float32Array.from([0, -1])],
      [Float32Array.from([3, 4]), Float32Array.from([1, 0]), Float32Array.from([0.5, 0.5])],
    );
    assert.deepEqual([...sim], [11, 1, 1.5, -4, 0, -0.5]);
    assert.throws(() => similarityMatrix([new Float32Array(2)], [new Float32Array(3)]));
  });

  it("agrees with the official argmax loop run by torch on a matrix full of ties", (t) => {
    const n = 40;
    // Scores from {0, 0.5, 1}: many ties, so the tie rule decides most queries.
    let state = 12345;
    const next = () => {
      state = (state * 1103515245 + 12345) % 2 ** 31;
      return (state % 3) / 2;
    };
    const sim = matrix(n, () => next());
    const script = [
      "import json, sys, torch",
      "n, values = json.load(sys.stdin)",
      "sim = torch.tensor(values, dtype=torch.float64).reshape(n, n)",
      "i2t = sum(int(torch.argmax(sim[i]) == i) for i in range(n))",
      "t2i = sum(int(torch.argmax(sim.T[i]) == i) for i in range(n))",
      "print(json.dumps([i2t / n, t2i / n]))",
    ].join("\n");
    let output: string;
    try {
      output = execFileSync(path.join(PROJECT_ROOT, "scripts", "python"), ["-c", script], {
        input: JSON.stringify([n, [...sim]]),
        encoding: "utf8",
        stdio: ["pipe", "pipe", "pipe"],
      });
    } catch (error) {
      t.skip(`no Python with torch to run the official rule: ${(error as Error).message}`);
      return;
    }
    const [i2t, t2i] = JSON.parse(output) as [number, number];
    const r = recallFromSimilarity(sim, n);
    assert.equal(r.i2t.r1, i2t);
    assert.equal(r.t2i.r1, t2i);
  });
});

describe("truncateIds", () => {
  it("keeps short rows and cuts long ones with the last kept id set to end", () => {
    const ids = Int32Array.from([9, 1, 2, 3, 4, 8]);
    assert.deepEqual([...truncateIds(ids, 6, 8)], [9, 1, 2, 3, 4, 8]);
    assert.deepEqual([...truncateIds(ids, 10, 8)], [9, 1, 2, 3, 4, 8]);
    assert.deepEqual([...truncateIds(ids, 4, 8)], [9, 1, 2, 8]);
    assert.deepEqual([...truncateIds(ids, 2, 8)], [9, 8]);
    assert.deepEqual([...ids], [9, 1, 2, 3, 4, 8], "the input row is not modified");
    assert.throws(() => truncateIds(ids, 1, 8), { code: "invalid_max_tokens" });
  });

  it("reproduces the official 248-token truncation of the reference texts", {
    skip: SKIP_WITHOUT_SHARED,
  }, () => {
    const reference = loadReference();
    let cut = 0;
    for (const text of reference.texts) {
      const got = truncateIds(Int32Array.from(text.ids), 248, 49407);
      assert.deepEqual([...got], text.ids_248);
      if (text.ids.length > 248) cut++;
    }
    assert.ok(cut >= 1, "the reference has a text longer than 248 tokens");
  });
});
