/**
 * The library's model state over the in-memory store: a library whose embedder's model is not
 * the one the store holds refuses to search or index until a reindex re-embeds every item, and
 * a closed library refuses work.
 */
import assert from "node:assert/strict";
import { before, test } from "node:test";
import { isAppError } from "../../src/core/errors.ts";
import { openFakeLibrary } from "../fakes/library.ts";
import { MemoryDisk, MemoryStore } from "../fakes/memory-store.ts";
import { patternPng } from "../helpers/library-fixtures.ts";

function code(expected: string) {
  return (e: unknown) => isAppError(e) && e.code === expected;
}

let images: Buffer[] = [];
before(async () => {
  images = await Promise.all([1, 2, 3].map((seed) => patternPng(seed, 16)));
});

test("another model: refused until reindex, then every item is re-embedded and found", async () => {
  const disk = new MemoryDisk();
  const old = await openFakeLibrary(
    {},
    { store: new MemoryStore(disk), embedder: { modelId: "old" } },
  );
  await old.library.index(images.map((bytes, i) => ({ id: `i${i}`, bytes })));
  await old.library.close();

  const next = await openFakeLibrary(
    {},
    { store: new MemoryStore(disk), embedder: { modelId: "new" } },
  );
  try {
    assert.equal(next.library.state(), "needs_reindex");
    assert.equal(next.library.ready(), false);
    assert.match(next.library.notReadyReason() ?? "", /another model/);
    await assert.rejects(next.library.searchText("anything", { k: 1 }), code("model_mismatch"));
    await assert.rejects(
      next.library.index([{ id: "late", bytes: images[0] as Buffer }]),
      code("model_mismatch"),
    );
    const progress: number[] = [];
    assert.equal(await next.library.reindex((done) => progress.push(done)), 3);
    assert.equal(progress.at(-1), 3);
    assert.equal(next.library.state(), "ready");
    assert.deepEqual(await next.store.model(), { modelId: "new", dims: 8 });
    assert.equal(await next.store.countEmbeddings("new"), 3);
    assert.equal(await next.store.countEmbeddings("old"), 0);
    const { hits } = await next.library.searchImage(images[2] as Buffer, { k: 1 });
    assert.equal(hits[0]?.id, "i2");
  } finally {
    await next.library.close();
  }
  assert.equal(next.library.state(), "closed");
  await assert.rejects(next.library.searchText("anything", { k: 1 }), code("library_closed"));
});
