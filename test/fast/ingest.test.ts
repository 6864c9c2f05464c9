/**
 * Ingest in the library (src/library/ingest/) over the in-memory store and the
 * deterministic embedder, with real image decoding: duplicates by content, id conflicts,
 * concurrent copies claimed once, bad inputs failing alone, and what is stored.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { before, describe, test } from "node:test";
import { isAppError } from "../../src/core/errors.ts";
import { type FakeLibrary, openFakeLibrary } from "../fakes/library.ts";
import { patternPng } from "../helpers/library-fixtures.ts";

const sha256 = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");

describe("ingest over the in-memory store", () => {
  let fake: FakeLibrary;
  let images: Buffer[] = [];

  before(async () => {
    images = await Promise.all(Array.from({ length: 8 }, (_, i) => patternPng(i + 1, 16)));
  });

  test("one call: indexed, duplicates by content, id conflicts; bad inputs fail alone", async () => {
    fake = await openFakeLibrary();
    try {
      const [a, b, c] = images as [Buffer, Buffer, Buffer];
      const results = await fake.library.index([
        { id: "a", bytes: a, metadata: { album: "x" } },
        { bytes: b },
        { id: "copy-of-a", bytes: a },
        { id: "a", bytes: c },
        { id: "broken", bytes: Buffer.from("not an image") },
        { id: "bad id!", bytes: c },
        { id: "empty", bytes: Buffer.alloc(0) },
        { id: "meta", bytes: c, metadata: [] as never },
      ]);
      assert.deepEqual(
        results.map((r) => [r.id, r.status, r.error?.code]),
        [
          ["a", "indexed", undefined],
          [sha256(b).slice(0, 32), "indexed", undefined],
          ["a", "duplicate", undefined],
          ["a", "failed", "id_conflict"],
          ["broken", "failed", "unsupported_image"],
          ["bad id!", "failed", "invalid_id"],
          ["empty", "failed", "image_empty"],
          ["meta", "failed", "invalid_metadata"],
        ],
      );
      assert.equal(await fake.store.count(), 2);
      const stored = await fake.store.getById("a");
      assert.deepEqual(stored?.metadata, { album: "x" });
      assert.equal(stored?.sha256, sha256(a));
      assert.equal(stored?.source, "upload");
      assert.deepEqual(await fake.store.readOriginal(sha256(a)), a);
      // A later call finds the stored content, under the id it was stored with.
      const again = await fake.library.index([{ id: "another", bytes: a }]);
      assert.deepEqual(
        again.map((r) => [r.id, r.status]),
        [["a", "duplicate"]],
      );
      assert.equal(fake.embedder.imagesEncoded, 2, "duplicates and failures are never embedded");
    } finally {
      await fake.library.close();
    }
  });

  test("a batch over maxBatchItems is refused whole before any work; one at the limit is not", async () => {
    fake = await openFakeLibrary({ maxBatchItems: 3 });
    try {
      const inputs = images.slice(0, 4).map((bytes, i) => ({ id: `b${i}`, bytes }));
      await assert.rejects(
        fake.library.index(inputs),
        (e: unknown) =>
          isAppError(e) &&
          e.code === "too_many_items" &&
          e.status === 413 &&
          /maxBatchItems/.test(e.message),
      );
      assert.equal(await fake.store.count(), 0);
      assert.equal(fake.embedder.imagesEncoded, 0);
      const results = await fake.library.index(inputs.slice(0, 3));
      assert.deepEqual(
        results.map((r) => r.status),
        ["indexed", "indexed", "indexed"],
      );
    } finally {
      await fake.library.close();
    }
  });

  test("concurrent calls with the same bytes store them once, all answered with its id", async () => {
    fake = await openFakeLibrary();
    try {
      const bytes = images[3] as Buffer;
      const results = await Promise.all(
        ["first", "second", "third", "fourth"].map((id) => fake.library.index([{ id, bytes }])),
      );
      const flat = results.flat();
      assert.equal(flat.filter((r) => r.status === "indexed").length, 1);
      assert.equal(flat.filter((r) => r.status === "duplicate").length, 3);
      const owner = flat.find((r) => r.status === "indexed")?.id;
      assert.ok(flat.every((r) => r.id === owner));
      assert.equal(await fake.store.count(), 1);
      assert.equal(fake.embedder.imagesEncoded, 1, "the copies waited for the first, unembedded");
      // The same id with other bytes, at the same moment: one wins, the other conflicts.
      const racing = await Promise.all([
        fake.library.index([{ id: "same", bytes: images[4] as Buffer }]),
        fake.library.index([{ id: "same", bytes: images[5] as Buffer }]),
      ]);
      assert.deepEqual(
        racing
          .flat()
          .map((r) => r.error?.code ?? r.status)
          .sort(),
        ["id_conflict", "indexed"],
      );
    } finally {
      await fake.library.close();
    }
  });

  test("the stored embedding is the encoder's: an image finds itself first, at cosine 1", async () => {
    fake = await openFakeLibrary();
    try {
      await fake.library.index(images.slice(0, 6).map((bytes, i) => ({ id: `img-${i}`, bytes })));
      for (const i of [0, 4]) {
        const { hits } = await fake.library.searchImage(images[i] as Buffer, { k: 2 });
        assert.equal(hits[0]?.id, `img-${i}`);
        assert.ok(Math.abs((hits[0]?.score as number) - 1) < 1e-5);
        assert.ok((hits[1]?.score as number) < 0.999, "another image is another vector");
      }
    } finally {
      await fake.library.close();
    }
  });

  test("a deleted item's bytes can be indexed again; listing pages are in ingest order", async () => {
    fake = await openFakeLibrary();
    try {
      await fake.library.index(images.slice(0, 5).map((bytes, i) => ({ id: `p${i}`, bytes })));
      assert.equal(await fake.library.deleteItem("p1"), true);
      assert.equal(await fake.library.deleteItem("p1"), false);
      const [back] = await fake.library.index([{ id: "p1-again", bytes: images[1] as Buffer }]);
      assert.equal(back?.status, "indexed");
      const first = await fake.library.listItems(null, 3);
      const rest = await fake.library.listItems(first.nextCursor, 3);
      assert.deepEqual(
        [...first.items, ...rest.items].map((item) => item.id),
        ["p0", "p2", "p3", "p4", "p1-again"],
      );
      assert.equal(rest.nextCursor, null);
      const newest = await fake.library.listItems(null, 2, "newest");
      assert.deepEqual(
        newest.items.map((item) => item.id),
        ["p1-again", "p4"],
      );
    } finally {
      await fake.library.close();
    }
  });
});
