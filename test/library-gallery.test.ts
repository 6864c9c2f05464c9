/**
 * A model directory's sample gallery is indexed once into a new library, on either backend;
 * the library itself (not a node's data directory) remembers that it was added.
 */
import assert from "node:assert/strict";
import { mkdirSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, beforeEach, describe, test } from "node:test";
import type { Settings } from "../src/core/settings.ts";
import { PROJECT_ROOT } from "../src/core/settings.ts";
import { Encoder } from "../src/encode/encoder.ts";
import { indexGalleryIfNew } from "../src/library/gallery.ts";
import { createLibrary } from "../src/library/index.ts";
import { patternPng, tempDir, testSettings } from "./helpers/library-fixtures.ts";
import { startPostgres, type TestPostgres } from "./helpers/postgres.ts";

const DEMO_MODEL = path.join(PROJECT_ROOT, "models", "demo");
const root = tempDir("longclip-gallery-");
after(() => rmSync(root, { recursive: true, force: true }));

/** The demo model's towers and vocabulary with a three-image gallery, one of them not an image. */
async function modelWithGallery(): Promise<string> {
  const model = tempDir("longclip-gallery-model-");
  for (const name of readdirSync(DEMO_MODEL)) {
    if (name !== "gallery") symlinkSync(path.join(DEMO_MODEL, name), path.join(model, name));
  }
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

async function open(modelDir: string, dataDir: string, extra: Partial<Settings> = {}) {
  const settings = testSettings(modelDir, dataDir, extra);
  const encoder = await Encoder.load(settings.modelDir, settings);
  return createLibrary(settings, encoder);
}

let postgres: TestPostgres | undefined;
before(async () => {
  postgres = await startPostgres();
});
after(() => postgres?.stop());

const backends = [
  { name: "SQLite", extra: (): Partial<Settings> => ({}) },
  {
    name: "Postgres",
    extra: (): Partial<Settings> => ({ databaseUrl: (postgres as TestPostgres).url }),
  },
];

for (const backend of backends) {
  describe(`sample gallery (${backend.name})`, () => {
    beforeEach(async () => {
      await postgres?.reset();
    });

    test("indexed into a new library with its metadata, once, for every node", async () => {
      const model = await modelWithGallery();
      const data = tempDir("longclip-gallery-data-");
      const first = await open(model, data, backend.extra());
      try {
        const outcome = await indexGalleryIfNew(first, model, 2);
        assert.ok(outcome);
        assert.equal(outcome.indexed, 2);
        assert.deepEqual(
          outcome.failed.map((f) => [f.id, f.error?.code]),
          [["gallery-0002", "unsupported_image"]],
        );
        const item = await first.getItem("gallery-0001");
        assert.equal(item?.metadata.caption, "scene 1");
        assert.equal(item?.metadata.label, "blue square");
        assert.equal(item?.metadata.gallery, true);
        const hits = await first.searchText("scene", { k: 5, exact: true });
        assert.deepEqual(hits.hits.map((h) => h.id).sort(), ["gallery-0000", "gallery-0001"]);
        // Deleted by the user: a restart does not bring it back.
        assert.ok(await first.deleteItem("gallery-0000"));
        assert.ok(await first.deleteItem("gallery-0001"));
      } finally {
        await first.close();
      }
      // SQLite: the same data directory; Postgres: another node with a data directory of its
      // own on the same database.
      const secondData = backend.name === "SQLite" ? data : tempDir("longclip-gallery-data-");
      const second = await open(model, secondData, backend.extra());
      try {
        assert.equal(await indexGalleryIfNew(second, model, 2), undefined);
        assert.equal((await second.stats()).items, 0);
      } finally {
        await second.close();
      }
    });

    test("not indexed into a library that already has items", async () => {
      const model = await modelWithGallery();
      const library = await open(model, tempDir("longclip-gallery-data-"), backend.extra());
      try {
        const [own] = await library.index([{ id: "mine", bytes: await patternPng(9) }]);
        assert.equal(own?.status, "indexed");
        assert.equal(await indexGalleryIfNew(library, model, 8), undefined);
        assert.equal((await library.stats()).items, 1);
        assert.equal(await library.store.gallerySeeded(), false);
      } finally {
        await library.close();
      }
    });

    test("two nodes seeding one new library store each image once", async () => {
      const model = await modelWithGallery();
      const a = await open(model, tempDir("longclip-gallery-data-"), backend.extra());
      const b =
        backend.name === "Postgres"
          ? await open(model, tempDir("longclip-gallery-data-"), backend.extra())
          : undefined;
      try {
        const outcomes = await Promise.all([
          indexGalleryIfNew(a, model, 1),
          ...(b ? [indexGalleryIfNew(b, model, 1)] : []),
        ]);
        // A node whose insert met the other's row of the same id and bytes reports it indexed
        // (the library's answer for an id that holds those bytes); what counts is the store.
        for (const outcome of outcomes) {
          assert.deepEqual(
            outcome?.failed.map((f) => f.id),
            ["gallery-0002"],
          );
        }
        const { items } = await a.listItems(null, 10);
        assert.deepEqual(items.map((item) => item.id).sort(), ["gallery-0000", "gallery-0001"]);
        assert.equal((await a.stats()).items, 2);
      } finally {
        await a.close();
        await b?.close();
      }
    });

    test("a model directory without a gallery: nothing to do", async () => {
      const library = await open(DEMO_MODEL, tempDir("longclip-gallery-data-"), backend.extra());
      const bare = tempDir("longclip-gallery-model-");
      for (const name of readdirSync(DEMO_MODEL)) {
        if (name !== "gallery") symlinkSync(path.join(DEMO_MODEL, name), path.join(bare, name));
      }
      try {
        assert.equal(await indexGalleryIfNew(library, bare, 8), undefined);
        assert.equal(await library.store.gallerySeeded(), false);
      } finally {
        await library.close();
      }
    });
  });
}

test("Postgres: a data directory seeded on SQLite does not keep the gallery from the database", async () => {
  await postgres?.reset();
  const model = await modelWithGallery();
  const data = tempDir("longclip-gallery-data-");
  const sqlite = await open(model, data);
  try {
    assert.equal((await indexGalleryIfNew(sqlite, model, 8))?.indexed, 2);
  } finally {
    await sqlite.close();
  }
  const node = await open(model, data, { databaseUrl: (postgres as TestPostgres).url });
  try {
    assert.equal((await indexGalleryIfNew(node, model, 8))?.indexed, 2);
    assert.equal((await node.stats()).items, 2);
  } finally {
    await node.close();
  }
});

test("SQLite: a data directory seeded by an earlier version (its marker file) stays seeded", async () => {
  const model = await modelWithGallery();
  const data = tempDir("longclip-gallery-data-");
  mkdirSync(data, { recursive: true });
  writeFileSync(path.join(data, "gallery-indexed.json"), "{}\n");
  const library = await open(model, data);
  try {
    assert.equal(await library.store.gallerySeeded(), true);
    assert.equal(await indexGalleryIfNew(library, model, 8), undefined);
  } finally {
    await library.close();
  }
});
