/**
 * Regions through the library (the demo model, SQLite + HNSW, the preprocessing pool): ingest
 * with --regions auto stores a large image's crops as parts of its item with their boxes (in
 * the image as shown), a small image none, and a search finds a small scene in a large canvas
 * by its caption, naming the region that matched; a reindex keeps the regions.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import sharp from "sharp";
import type { Box } from "../src/core/types.ts";
import { Encoder } from "../src/encode/encoder.ts";
import { createLibrary, type LongclipLibrary } from "../src/library/library.ts";
import { REGION_PROPOSALS, regionBoxes } from "../src/preprocess/regions.ts";
import { openStore } from "../src/store/open.ts";
import type { ItemStore, StoredPart } from "../src/store/types.ts";
import { cosine } from "../src/vector-index/exact.ts";
import { DEMO_MODEL_DIR } from "./helpers/demo-model.ts";
import { gallery, canvas as galleryCanvas, scene } from "./helpers/gallery-canvas.ts";
import { tempDir, testSettings } from "./helpers/library-fixtures.ts";

/** A canvas of gallery scenes as JPEG (the photos regions are for). */
const canvas = (width: number, height: number, scenes: readonly { index: number; box: Box }[]) =>
  galleryCanvas(width, height, scenes, "jpeg");

/** The area two boxes share. */
function overlap(a: Box, b: Box): number {
  const w = Math.min(a.x + a.width, b.x + b.width) - Math.max(a.x, b.x);
  const h = Math.min(a.y + a.height, b.y + b.height) - Math.max(a.y, b.y);
  return Math.max(0, w) * Math.max(0, h);
}

/**
 * The suite's library with --regions auto in a fresh data directory, opened before its tests
 * and closed after them (the suite reads its parts through `partsOf`).
 */
function regionsLibrary(prefix: string) {
  const open = {} as { library: LongclipLibrary; store: ItemStore; encoder: Encoder };
  before(async () => {
    const settings = testSettings(DEMO_MODEL_DIR, tempDir(prefix), { regions: "auto" });
    open.encoder = await Encoder.load(DEMO_MODEL_DIR, settings);
    open.store = await openStore(settings);
    open.library = await createLibrary(settings, open.encoder, { store: open.store });
  });
  after(async () => {
    await open.library?.close();
  });
  return {
    library: () => open.library,
    store: () => open.store,
    encoder: () => open.encoder,
    partsOf: async (id: string): Promise<StoredPart[]> => {
      const item = await open.store.getById(id);
      assert.ok(item !== undefined, id);
      const model = await open.store.model();
      const parts = await open.store.partsOf(model?.modelId as string, [item.label]);
      return parts.get(item.label) ?? [];
    },
  };
}

/** How many of `boxes` come before the first of a `width` × `height` image's grid boxes. */
function leadingProposals(boxes: readonly Box[], width: number, height: number): number {
  const grid = new Set(regionBoxes(width, height, 64, 1000).map((b) => JSON.stringify(b)));
  for (const b of regionBoxes(width, height, 64, 34)) grid.add(JSON.stringify(b));
  for (const b of regionBoxes(width, height, 64, 33)) grid.add(JSON.stringify(b));
  const first = boxes.findIndex((b) => grid.has(JSON.stringify(b)));
  return first < 0 ? boxes.length : first;
}

function iou(a: Box, b: Box): number {
  const w = Math.min(a.x + a.width, b.x + b.width) - Math.max(a.x, b.x);
  const h = Math.min(a.y + a.height, b.y + b.height) - Math.max(a.y, b.y);
  if (w <= 0 || h <= 0) return 0;
  return (w * h) / (a.width * a.height + b.width * b.height - w * h);
}

/** The target scene sits exactly in one of the 3×3 grid's windows of a 768×768 canvas. */
const TARGET = 5;
const TARGET_BOX: Box = { x: 384, y: 128, width: 256, height: 256 };

describe("regions through the library (--regions auto)", () => {
  const { library, partsOf } = regionsLibrary("longclip-regions-");

  test("a large image gets its regions as parts, boxes in its pixels; a small one none", async () => {
    const big = await canvas(768, 640, [
      { index: 0, box: { x: 10, y: 10, width: 200, height: 200 } },
    ]);
    const small = await sharp(scene(1)).resize(120, 100).png().toBuffer();
    const results = await library().index([
      { id: "big", bytes: big },
      { id: "small", bytes: small },
    ]);
    assert.deepEqual(
      results.map((r) => r.status),
      ["indexed", "indexed"],
    );
    assert.deepEqual(await partsOf("small"), []);
    const parts = await partsOf("big");
    assert.ok(parts.every((p) => p.kind === "region"));
    const boxes = parts.map((p) => (p.kind === "region" ? p.box : undefined)) as Box[];
    // The proposals first (the scene's box among them), then the grid windows in the room left.
    const proposed = leadingProposals(boxes, 768, 640);
    assert.ok(proposed >= 1 && proposed <= REGION_PROPOSALS, `${proposed} proposals`);
    assert.ok(
      boxes
        .slice(0, proposed)
        .some((b) => iou(b, { x: 10, y: 10, width: 200, height: 200 }) >= 0.85),
      JSON.stringify(boxes.slice(0, proposed)),
    );
    assert.ok(parts.length <= 34, "the cap");
    // 640 px is 10× the demo model's 64: the 2×2 windows, then 3×3 (its cells if its 25
    // windows do not fit beside the proposals).
    assert.deepEqual(boxes.slice(proposed), regionBoxes(768, 640, 64, 34 - proposed));
    const expected: Box[] = [];
    for (const y of [0, 160, 320]) {
      for (const x of [0, 192, 384]) expected.push({ x, y, width: 384, height: 320 });
    }
    assert.deepEqual(boxes.slice(proposed, proposed + 9), expected);
    assert.deepEqual(boxes[proposed + 9], { x: 0, y: 0, width: 256, height: 213 });
    assert.deepEqual(boxes.at(-1), { x: 512, y: 427, width: 256, height: 213 });
    assert.deepEqual(
      parts.map((p) => p.index),
      parts.map((_, i) => i),
    );
  });

  test("an EXIF-rotated photo's boxes are in the frame it is shown in", async () => {
    // Stored 640×400 with orientation 6: shown 400×640.
    const stored = await sharp(scene(2))
      .resize(640, 400)
      .jpeg()
      .withMetadata({ orientation: 6 })
      .toBuffer();
    const [result] = await library().index([{ id: "rotated", bytes: stored }]);
    assert.equal(result?.status, "indexed");
    const item = await library().getItem("rotated");
    assert.equal(item?.width, 400);
    assert.equal(item?.height, 640);
    const boxes = (await partsOf("rotated")).map((p) =>
      p.kind === "region" ? p.box : undefined,
    ) as Box[];
    for (const b of boxes) assert.ok(b.x + b.width <= 400 && b.y + b.height <= 640);
    const grid = boxes.slice(leadingProposals(boxes, 400, 640));
    assert.deepEqual(grid[0], { x: 0, y: 0, width: 200, height: 320 });
    assert.deepEqual(grid[8], { x: 200, y: 320, width: 200, height: 320 });
  });
});

describe("search by regions (--regions auto)", () => {
  const { library, store, encoder, partsOf } = regionsLibrary("longclip-regions-search-");

  test("a small scene in a big canvas is found by its caption, by the region holding it", async () => {
    const layout = [
      { index: 10, box: { x: 0, y: 0, width: 200, height: 200 } },
      { index: TARGET, box: TARGET_BOX },
      { index: 15, box: { x: 40, y: 420, width: 300, height: 300 } },
      { index: 30, box: { x: 480, y: 480, width: 240, height: 240 } },
    ];
    const big = await canvas(768, 768, layout);
    // Other scenes as photos too small for regions (under twice the model's 64 px input), of
    // those the scene alone outscores for its caption (scene 28 would beat even the scene).
    const others = await Promise.all(
      [20, 21, 22, 24, 25, 26, 33].map(async (i) => ({
        id: `scene${i}`,
        bytes: await sharp(scene(i)).resize(120, 120).png().toBuffer(),
      })),
    );
    const results = await library().index([{ id: "canvas", bytes: big }, ...others]);
    assert.ok(
      results.every((r) => r.status === "indexed"),
      JSON.stringify(results),
    );

    const caption = gallery.items[TARGET]?.caption as string;
    const [query] = await encoder().embedTexts([caption]);
    const cosineTo = async (bytes: Buffer) => {
      const [image] = await encoder().embedImageBytes([bytes]);
      assert.ok(image?.ok);
      return cosine(query?.embedding as Float32Array, image.embedding);
    };
    const alone = await cosineTo(scene(TARGET));
    for (const other of others) assert.ok((await cosineTo(other.bytes)) < alone, other.id);
    const whole = await cosineTo(big);

    const { hits } = await library().searchText(caption, { k: 3, exact: true });
    assert.equal(hits[0]?.id, "canvas", JSON.stringify(hits.map((h) => [h.id, h.score])));
    // Its best region scores about as the scene alone does, far above the whole canvas.
    const score = hits[0]?.score as number;
    assert.ok(Math.abs(score - alone) < 0.02, `canvas ${score}, scene alone ${alone}`);
    assert.ok(score > whole + 0.1, `canvas ${score}, its whole image ${whole}`);
    // The hit names the part that won, as the store ranked it: a region of the canvas.
    const match = hits[0]?.match;
    assert.equal(match?.kind, "region");
    assert.equal(match?.score, score);
    const model = await store().model();
    const [best] = await store().nearest(
      { vector: query?.embedding as Float32Array, k: 1, exact: true },
      model?.modelId as string,
    );
    assert.deepEqual(
      best?.match?.kind === "region" ? best.match.box : "none",
      match?.kind === "region" ? match.box : "none",
    );
    const box = match?.kind === "region" ? match.box : undefined;
    assert.ok(box !== undefined);
    // Of the canvas' scenes, the region shows most of this one.
    const overlaps = layout.map((placed) => [placed.index, overlap(box, placed.box)] as const);
    const most = overlaps.reduce((a, b) => (b[1] > a[1] ? b : a));
    assert.equal(
      most[0],
      TARGET,
      `matched ${JSON.stringify(box)}; overlaps ${JSON.stringify(overlaps)}`,
    );
    assert.equal(best?.score, hits[0]?.score);
  });

  test("a reindex re-embeds the regions at their boxes", async () => {
    const before = await partsOf("canvas");
    await library().reindex();
    const after = await partsOf("canvas");
    assert.deepEqual(
      after.map((p) => (p.kind === "region" ? p.box : undefined)),
      before.map((p) => (p.kind === "region" ? p.box : undefined)),
    );
    for (const [i, part] of after.entries()) {
      const old = before[i]?.vector as Float32Array;
      const max = part.vector.reduce((m, v, j) => Math.max(m, Math.abs(v - (old[j] as number))), 0);
      assert.ok(max < 1e-5, `part ${i} differs by ${max}`);
    }
    const { hits } = await library().searchText(gallery.items[TARGET]?.caption as string, {
      k: 1,
      exact: true,
    });
    assert.equal(hits[0]?.id, "canvas");
  });
});

describe("a reindex follows --regions (off removes an image's regions, auto adds them)", () => {
  const dataDir = tempDir("longclip-regions-switch-");

  /** The library over the suite's data directory with `regions`, passed to `work`, then closed. */
  async function withLibrary<T>(
    regions: "off" | "auto",
    work: (library: LongclipLibrary, store: ItemStore) => Promise<T>,
  ): Promise<T> {
    const settings = testSettings(DEMO_MODEL_DIR, dataDir, { regions });
    const encoder = await Encoder.load(DEMO_MODEL_DIR, settings);
    const store = await openStore(settings);
    const library = await createLibrary(settings, encoder, { store });
    try {
      return await work(library, store);
    } finally {
      await library.close();
    }
  }

  const partsOf = async (store: ItemStore, id: string): Promise<StoredPart[]> => {
    const item = await store.getById(id);
    assert.ok(item !== undefined, id);
    const model = await store.model();
    return (await store.partsOf(model?.modelId as string, [item.label])).get(item.label) ?? [];
  };

  test("regions off, then auto: each reindex leaves the regions ingest would have made", async () => {
    const big = await canvas(768, 768, [{ index: TARGET, box: TARGET_BOX }]);
    const small = await sharp(scene(1)).resize(120, 100).png().toBuffer();
    const caption = gallery.items[TARGET]?.caption as string;
    // Indexed with auto: what ingest makes is what a reindex under auto must make again.
    const ingested = await withLibrary("auto", async (library, store) => {
      const results = await library.index([
        { id: "canvas", bytes: big },
        { id: "small", bytes: small },
      ]);
      assert.deepEqual(
        results.map((r) => r.status),
        ["indexed", "indexed"],
      );
      return { parts: await partsOf(store, "canvas"), size: (await store.indexStats()).size };
    });
    assert.ok(ingested.parts.length > 0);
    assert.equal(ingested.size, 2 + ingested.parts.length);

    await withLibrary("off", async (library, store) => {
      assert.equal(await library.reindex(), 2);
      assert.deepEqual(await partsOf(store, "canvas"), []);
      assert.equal((await store.indexStats()).size, 2, "only the items' own vectors are left");
      const { hits } = await library.searchText(caption, { k: 2, exact: true });
      assert.ok(
        hits.every((hit) => hit.match === undefined),
        JSON.stringify(hits),
      );
    });

    await withLibrary("auto", async (library, store) => {
      assert.equal(await library.reindex(), 2);
      const parts = await partsOf(store, "canvas");
      assert.deepEqual(
        parts.map((p) => [p.index, p.kind === "region" ? p.box : undefined]),
        ingested.parts.map((p) => [p.index, p.kind === "region" ? p.box : undefined]),
      );
      for (const [i, part] of parts.entries()) {
        const old = ingested.parts[i]?.vector as Float32Array;
        const max = part.vector.reduce(
          (m, v, j) => Math.max(m, Math.abs(v - (old[j] as number))),
          0,
        );
        assert.ok(max < 1e-5, `part ${i} differs from ingest's by ${max}`);
      }
      assert.deepEqual(await partsOf(store, "small"), [], "a small image gets none");
      assert.equal((await store.indexStats()).size, ingested.size);
      // Searched by the new regions (the HNSW index was rebuilt with their labels).
      for (const exact of [true, false]) {
        const { hits } = await library.searchText(caption, { k: 1, exact });
        assert.equal(hits[0]?.id, "canvas");
        assert.equal(hits[0]?.match?.kind, "region", JSON.stringify(hits));
      }
    });
  });
});
