/**
 * The explain cache, with in-memory fakes around the real Explainer: a repeated request is
 * answered without decoding or running the tower again, the cache holds explainCacheSize
 * entries (least recently used go first), and another model or changed item content is a miss.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { DEFAULT_SETTINGS } from "../../src/core/settings.ts";
import type { Embedder, PatchEmbeddings } from "../../src/encode/types.ts";
import { Explainer } from "../../src/library/explain/explain.ts";
import type { Generation } from "../../src/library/models/generation.ts";
import { EmbedQueue } from "../../src/library/queue.ts";
import type { DecodeGate } from "../../src/preprocess/decode-gate.ts";
import type { PreprocessPool } from "../../src/preprocess/pool.ts";
import type { ItemStore, StoredItem } from "../../src/store/types.ts";

function setup(cacheSize: number) {
  const counts = { decoded: 0, towers: 0 };
  const items = new Map<string, StoredItem>();
  for (const id of ["a", "b"]) {
    items.set(id, {
      id,
      label: id === "a" ? 1 : 2,
      sha256: `sha-${id}`,
      contentType: "image/png",
    } as unknown as StoredItem);
  }
  const patches: PatchEmbeddings = {
    kind: "value",
    rows: 2,
    columns: 2,
    patches: Float32Array.from([1, 0, 0, 1, 0.6, 0.8, 0.8, 0.6]),
  };
  let modelId = "m1";
  const embedder = {
    get modelId() {
      return modelId;
    },
    config: { vision: { dense: { output: "patch_embeds", kind: "value", grid: [2, 2] } } },
    embedPatches: async () => {
      counts.towers++;
      return patches;
    },
  } as unknown as Embedder;
  const explainer = new Explainer({
    settings: { ...DEFAULT_SETTINGS, explainCacheSize: cacheSize },
    store: {
      getById: async (id: string) => items.get(id),
      embeddingsOf: async (_model: string, labels: number[]) =>
        labels.map((label) => ({ label, vector: Float32Array.from([0.6, 0.8]) })),
    } as unknown as ItemStore,
    pool: {
      run: async () => {
        counts.decoded++;
        return { pixels: new Float32Array(0), width: 4, height: 2, format: "png" };
      },
    } as unknown as PreprocessPool,
    gate: { admit: async () => () => {} } as unknown as DecodeGate,
    queue: new EmbedQueue(8),
    live: () => ({ embedder, options: {} }) as unknown as Generation,
    readBytes: async () => Buffer.from("image"),
    readFrame: async () => Buffer.from("frame"),
    queryVector: async (query) => ({
      vector: query.text === "left" ? Float32Array.from([1, 0]) : Float32Array.from([0, 1]),
      info: { tokens: 3, truncated: false, max_tokens: 77 },
    }),
  });
  return {
    counts,
    items,
    explainer,
    switchModel: (id: string) => {
      modelId = id;
    },
  };
}

const ask = (text: string) => ({ text, options: {} });

test("a repeated explanation comes from the cache; the cache keeps its size", async () => {
  const { counts, explainer } = setup(2);
  const first = await explainer.explain("a", ask("left"));
  assert.deepEqual(first.peak, { row: 0, column: 0 });
  assert.deepEqual(first.crop, { x: 1, y: 0, width: 2, height: 2 });
  await explainer.explain("a", ask("left"));
  assert.equal(counts.towers, 1);
  assert.equal(counts.decoded, 1);
  await explainer.explain("a", ask("right"));
  await explainer.explain("b", ask("left"));
  assert.equal(counts.towers, 3);
  // two entries: ("a", left) was the least recently used and is gone
  await explainer.explain("b", ask("left"));
  await explainer.explain("a", ask("right"));
  assert.equal(counts.towers, 3);
  await explainer.explain("a", ask("left"));
  assert.equal(counts.towers, 4);
});

test("another model or changed item content is computed again; size 0 keeps nothing", async () => {
  const { counts, explainer, items, switchModel } = setup(4);
  await explainer.explain("a", ask("left"));
  switchModel("m2");
  await explainer.explain("a", ask("left"));
  assert.equal(counts.towers, 2);
  items.set("a", { ...(items.get("a") as StoredItem), sha256: "sha-new" });
  await explainer.explain("a", ask("left"));
  assert.equal(counts.towers, 3);
  const none = setup(0);
  await none.explainer.explain("a", ask("left"));
  await none.explainer.explain("a", ask("left"));
  assert.equal(none.counts.towers, 2);
});
