/** Score distributions for choosing min_score, on hand-made unit vectors. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { scoreDistribution } from "../tools/eval/scores.ts";

const unit = (angle: number) => new Float32Array([Math.cos(angle), Math.sin(angle)]);

test("matching pairs are the diagonal; the best non-matching image per caption is its max", () => {
  // Images at 0, 90°, 180°; captions at 0, 60°, 180°: cosines by hand.
  const images = [unit(0), unit(Math.PI / 2), unit(Math.PI)];
  const texts = [unit(0), unit(Math.PI / 3), unit(Math.PI)];
  const d = scoreDistribution(images, texts);
  // matching: cos 0 = 1, cos 30° = 0.866, cos 0 = 1
  assert.equal(d.matching.p50, 1);
  assert.equal(d.matching.mean, Number(((2 + Math.cos(Math.PI / 6)) / 3).toFixed(4)));
  // non-matching per caption: t0: 0, -1; t1: cos60=0.5, cos120=-0.5; t2: -1, 0
  assert.equal(d.non_matching.p50, -0.25);
  // best per caption: 0, 0.5, 0 → sorted [0, 0, 0.5]; p95 at rank 1.9 = 0.9 · 0.5
  assert.deepEqual([d.best_non_matching.p5, d.best_non_matching.p95], [0, 0.45]);
  assert.ok(d.suggested_min_score <= 0.88 && d.suggested_min_score >= 0.86);
  assert.equal(d.non_matching_above_suggested, 0);
});

test("pairs with a missing embedding are left out", () => {
  const d = scoreDistribution([unit(0), undefined], [unit(0), unit(1)]);
  assert.equal(d.matching.p50, 1);
  assert.ok(Number.isNaN(d.non_matching.p50));
});
