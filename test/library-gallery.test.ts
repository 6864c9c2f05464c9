/** A model directory's sample gallery is indexed once, into a new data directory only. */
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readdirSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, test } from "node:test";
import { Encoder } from "../src/encode/encoder.ts";
import { GALLERY_MARKER, indexGalleryIfNew } from "../src/library/gallery.ts";
import { createLibrary } from "../src/library/index.ts";
import { patternPng, tempDir, testSettings } from "./helpers/library-fixtures.ts";
import { SKIP_WITHOUT_SHARED, tinyModelDir } from "./helpers/reference.ts";

/** The tiny reference model plus a three-image gallery, one of them not an image. */
async function modelWithGallery(): Promise<string> {
  const model = tempDir("longclip-gallery-model-");
  const source = tinyModelDir();
  for (const name of readdirSync(source))
    symlinkSync(path.join(source, name), path.join(model, name));
  const gallery = path.join(model, "gallery");
  mkdirSync(gallery);
  writeFileSync(path.join(gallery, "0000.png"), await patternPng(1));
  writeFileSync(path.join(gallery, "0001.png"), await patternPng(2));
  writeFileSync(path.join(gallery, "0002.png"), "not an image");
  const items = ["0000.png", "0001.png", "0002.png"].map((file, i) => ({
    file,
    caption: `scene ${i}`,
    label: i % 2 === 0 ? "red circle" : "blue square",
  }));
  writeFileSync(
    path.join(gallery, "gallery.json"),
    JSON.stringify({ format: "longclip-gallery", version: 1, items }),
  );
  return model;
}

async function open(modelDir: string, dataDir: string) {
  const settings = testSettings(modelDir, dataDir);
  const encoder = await Encoder.load(settings.modelDir, settings);
  return { library: await createLibrary(settings, encoder), settings };
}

describe("sample gallery", { skip: SKIP_WITHOUT_SHARED }, () => {
  test("indexed into a new data directory with its metadata, once", async () => {
    const model = await modelWithGallery();
    const data = tempDir("longclip-gallery-data-");
    const first = await open(model, data);
    try {
      const outcome = await indexGalleryIfNew(first.library, model, data, 2);
      assert.ok(outcome);
      assert.equal(outcome.indexed, 2);
      assert.deepEqual(
        outcome.failed.map((f) => [f.id, f.error?.code]),
        [["gallery-0002", "unsupported_image"]],
      );
      assert.ok(existsSync(path.join(data, GALLERY_MARKER)));
      const item = await first.library.getItem("gallery-0001");
      assert.equal(item?.metadata.caption, "scene 1");
      assert.equal(item?.metadata.label, "blue square");
      assert.equal(item?.metadata.gallery, true);
      const hits = await first.library.searchText("scene", { k: 5, exact: true });
      assert.deepEqual(hits.hits.map((h) => h.id).sort(), ["gallery-0000", "gallery-0001"]);
      // Deleted by the user: a restart does not bring it back.
      assert.ok(await first.library.deleteItem("gallery-0000"));
      assert.ok(await first.library.deleteItem("gallery-0001"));
    } finally {
      await first.library.close();
    }
    const second = await open(model, data);
    try {
      assert.equal(await indexGalleryIfNew(second.library, model, data, 2), undefined);
      assert.equal((await second.library.stats()).items, 0);
    } finally {
      await second.library.close();
    }
  });

  test("not indexed into a data directory that already has items", async () => {
    const model = await modelWithGallery();
    const data = tempDir("longclip-gallery-data-");
    const { library } = await open(model, data);
    try {
      const [own] = await library.index([{ id: "mine", bytes: await patternPng(9) }]);
      assert.equal(own?.status, "indexed");
      assert.equal(await indexGalleryIfNew(library, model, data, 8), undefined);
      assert.equal((await library.stats()).items, 1);
      assert.equal(existsSync(path.join(data, GALLERY_MARKER)), false);
    } finally {
      await library.close();
    }
  });

  test("a model directory without a gallery: nothing to do", async () => {
    const data = tempDir("longclip-gallery-data-");
    const { library } = await open(tinyModelDir(), data);
    try {
      assert.equal(await indexGalleryIfNew(library, tinyModelDir(), data, 8), undefined);
    } finally {
      await library.close();
    }
  });
});
