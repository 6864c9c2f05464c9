/** Sentence windows for long queries and the weighted unit sum, with the demo model's tokenizer. */
import assert from "node:assert/strict";
import path from "node:path";
import { test } from "node:test";
import { isAppError } from "../src/core/errors.ts";
import { PROJECT_ROOT } from "../src/core/settings.ts";
import { sentenceWindows, weightedUnitSum } from "../src/library/search/search.ts";
import { tokenizerFromModelDir } from "../src/tokenize/index.ts";

const tokenizer = tokenizerFromModelDir(path.join(PROJECT_ROOT, "models", "demo"));
const count = (text: string) => tokenizer.encode(text).tokens;
const words = (text: string) => text.split(/\s+/).filter((w) => w !== "");

const SENTENCES = Array.from(
  { length: 60 },
  (_, i) =>
    `A ${["red", "blue", "green"][i % 3]} circle number ${i} sits ${i % 2 ? "left" : "right"} of a small square.`,
);

test("windows keep whole sentences in order, each within the token budget", () => {
  const text = SENTENCES.join(" ");
  assert.ok(count(text) > 248 * 2, "the text needs several windows");
  const windows = sentenceWindows(text, count, 248);
  assert.ok(windows.length >= 3);
  for (const window of windows) {
    assert.ok(count(window) <= 248, `${count(window)} tokens`);
    assert.match(window, /\.$/, "a window ends at a sentence end");
  }
  assert.deepEqual(words(windows.join(" ")), words(text), "nothing lost, nothing reordered");
  // Greedy: a window plus the next window's first sentence would not have fit.
  for (let i = 0; i + 1 < windows.length; i++) {
    const next = SENTENCES.find((s) => (windows[i + 1] as string).startsWith(s)) as string;
    assert.ok(count(`${windows[i]} ${next}`) > 248);
  }
  assert.deepEqual(sentenceWindows("One sentence only.", count, 248), ["One sentence only."]);
});

test("a sentence longer than a window is split between words", () => {
  const run = Array.from({ length: 200 }, (_, i) => `circle${i % 7} square`).join(" ");
  const text = `Short start. ${run}. Short end.`;
  const windows = sentenceWindows(text, count, 248);
  assert.ok(windows.length >= 2);
  for (const window of windows) assert.ok(count(window) <= 248, `${count(window)} tokens`);
  assert.deepEqual(words(windows.join(" ")).join(""), words(text).join(""));
});

test("weightedUnitSum: Σ w·v normalised; a sum with no direction is refused", () => {
  const sum = weightedUnitSum([new Float32Array([1, 0, 0]), new Float32Array([0, 1, 0])], [3, -4]);
  assert.deepEqual(
    Array.from(sum).map((x) => Number(x.toFixed(6))),
    [0.6, -0.8, 0],
  );
  assert.throws(
    () => weightedUnitSum([new Float32Array([1, 0]), new Float32Array([1, 0])], [1, -1]),
    (e: unknown) => isAppError(e) && e.code === "validation_failed",
  );
});
