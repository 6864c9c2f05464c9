/**
 * The one re-embed loop (src/library/models/reembed.ts) over the in-memory store, with the real
 * preprocessing and queue: what it stages, and what fails only an item (a file gone), what is
 * skipped (an item deleted since its page was listed) and what ends the pass (an upload that
 * cannot be read is the store's error, not the item's).
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import sharp from "sharp";
import type { ErrorInfo } from "../../src/core/errors.ts";
import type { Box } from "../../src/core/types.ts";
import { generationOf } from "../../src/library/models/generation.ts";
import { reembed } from "../../src/library/models/reembed.ts";
import type { ModelHost } from "../../src/library/models/types.ts";
import { EmbedQueue } from "../../src/library/queue.ts";
import { PreprocessPool } from "../../src/preprocess/pool.ts";
import type { StoredItem } from "../../src/store/types.ts";
import { FakeEmbedder } from "../fakes/embedder.ts";
import { fakeSettings, putItems } from "../fakes/library.ts";
import { MemoryStore } from "../fakes/memory-store.ts";
import { patternPng } from "../helpers/library-fixtures.ts";

const settings = fakeSettings();
const pool = new PreprocessPool(1);
let image: Buffer;
before(async () => {
  image = await patternPng(7, 16);
});
after(() => pool.close());

/** A host whose item reads are `read`; it stays open. */
function hostOver(
  store: MemoryStore,
  read: (item: StoredItem) => Promise<Buffer>,
  hostSettings = settings,
): ModelHost {
  return {
    settings: hostSettings,
    store,
    pool,
    queue: new EmbedQueue(settings.maxQueueDepth),
    loadModel: undefined,
    readBytes: read,
    inFlight: () => [],
    adopted: () => {},
    assertOpen: () => {},
    reportBackground: (error) => {
      throw error;
    },
  };
}

test("stages every readable item; a file gone fails alone; an item deleted meanwhile is skipped", async () => {
  const store = new MemoryStore();
  const live = new FakeEmbedder({ modelId: "old" });
  const ids = ["a", "b", "gone", "deleted", "c"];
  await putItems(
    { store, embedder: live },
    ids.map((id, i) => ({ id, vector: [i + 1, 1, 0, 0, 0, 0, 0, 0] })),
  );
  const host = hostOver(store, async (item) => {
    if (item.id === "gone") throw new Error("ENOENT: no such file");
    if (item.id === "deleted") {
      await store.deleteById(item.id); // another node deletes it after the page was listed
      throw new Error("ENOENT: no such file");
    }
    return image;
  });
  const model = generationOf(new FakeEmbedder({ modelId: "new" }), settings);
  const failed: [string, ErrorInfo][] = [];
  const pages: [number, number][] = [];
  const staged = await reembed(host, {
    model,
    list: (after) => store.itemsAfter(after, 2),
    failed: (item, error) => failed.push([item.id, error]),
    paged: (listed, count) => pages.push([listed, count]),
  });
  assert.equal(staged, 3);
  assert.deepEqual(
    failed.map(([id, error]) => [id, error.code]),
    [["gone", "image_missing"]],
  );
  assert.deepEqual(pages, [
    [2, 2],
    [2, 0],
    [1, 1],
  ]);
  assert.equal(await store.countStaging("new"), 3);
});

test("an upload that cannot be read ends the pass (the store's error, retried first), and `skip` leaves items out", async () => {
  const store = new MemoryStore();
  const live = new FakeEmbedder({ modelId: "old" });
  await putItems(
    { store, embedder: live },
    ["x", "y"].map((id, i) => ({ id, vector: [i + 1, 0, 1, 0, 0, 0, 0, 0] })),
  );
  let reads = 0;
  const host = hostOver(store, async (item) => {
    reads++;
    if (item.id === "y") throw new Error("connection reset");
    return image;
  });
  const upload = async (after: number) =>
    (await store.itemsAfter(after, 10)).map((item) => ({ ...item, source: "upload" as const }));
  const model = generationOf(new FakeEmbedder({ modelId: "new" }), settings);
  const pass = { model, list: upload, failed: () => {}, paged: () => {} };
  await assert.rejects(reembed(host, pass), /connection reset/);
  assert.equal(reads, 6, "three tries of the page, each reading both items");
  assert.equal(await store.countStaging("new"), 0, "a page is staged whole or not at all");
  reads = 0;
  const staged = await reembed(host, { ...pass, skip: (item) => item.id === "y" });
  assert.equal(staged, 1);
  assert.equal(reads, 1);
});

for (const regions of ["auto", "off"] as const) {
  test(`--regions ${regions}: an image's regions are those the setting lays now (a stored one kept by its box and index); its frames are dropped`, async () => {
    const store = new MemoryStore();
    const live = new FakeEmbedder({ modelId: "old" });
    await store.setModel({ modelId: "old", dims: live.dims });
    const next = new FakeEmbedder({ modelId: "new" });
    const model = generationOf(next, settings);
    const hostSettings = fakeSettings({ regions });
    // What ingest cuts of the image with --regions auto (proposals, then grid windows).
    const ingested = await pool.run(image, model.options, undefined, {
      kind: "auto",
      max: hostSettings.maxRegions,
    });
    const autoBoxes = (ingested.regions ?? []).map((region) => region.box);
    assert.ok(autoBoxes.length >= 2, "the image has auto regions");
    // The item was indexed with one of those regions (and a frame, which an image cannot keep).
    const box = autoBoxes[1] as Box;
    const vector = (seed: number) =>
      Float32Array.from({ length: live.dims }, (_, i) => Math.sin(seed + i));
    const [outcome] = await store.insertItems(
      [
        {
          id: "with-parts",
          sha256: "cd".repeat(32),
          metadata: {},
          contentType: "image/png",
          width: 16,
          height: 16,
          bytes: image.length,
          source: "path",
          path: "/media/with-parts.png",
          vector: vector(1),
          parts: [
            { kind: "frame", t: 1, vector: vector(2) },
            { kind: "region", box, vector: vector(3) },
          ],
        },
      ],
      "old",
    );
    assert.equal(outcome?.status, "inserted");
    const staged = await reembed(
      hostOver(store, async () => image, hostSettings),
      {
        model,
        list: (after) => store.itemsAfter(after, 10),
        failed: (item, error) => assert.fail(`${item.id}: ${error.message}`),
        paged: () => {},
      },
    );
    assert.equal(staged, 1);
    await store.swapStaging({ modelId: "new", dims: next.dims });
    // Expected: the region cut from the PNG (sharp), preprocessed as a whole image of its own.
    const cropped = await sharp(image)
      .extract({ left: box.x, top: box.y, width: box.width, height: box.height })
      .png()
      .toBuffer();
    const [expected] = await next.embedPixels([(await pool.run(cropped, model.options)).pixels]);
    const [whole] = await next.embedPixels([(await pool.run(image, model.options)).pixels]);
    const label = (await store.getById("with-parts"))?.label as number;
    assert.deepEqual((await store.embeddingsOf("new", [label]))[0]?.vector, whole);
    const parts = (await store.partsOf("new", [label])).get(label);
    if (regions === "off") {
      assert.equal(parts, undefined, "no regions with --regions off");
      return;
    }
    assert.deepEqual(parts?.[0], { kind: "region", box, index: 1, vector: expected });
    // The other auto regions are added, in ingest's order, after the stored parts' indexes.
    const others = autoBoxes.filter((_, i) => i !== 1).map((b, i): [number, Box] => [i + 2, b]);
    assert.deepEqual(
      parts?.slice(1).map((p) => [p.index, p.kind === "region" ? p.box : undefined]),
      others,
    );
  });
}
