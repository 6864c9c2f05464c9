/**
 * Items with many vectors over HTTP: POST /search ranks items by their best vector (the whole
 * image's or a part's), lists each item once, and says which region or frame matched
 * (`match`), with `k`, `offset`, `min_score` and keyword mode keeping their meaning. A real
 * library (SQLite + HNSW, the demo model) over a real socket; the parts are stored through the
 * storage seam with vectors taken from stored images, so which one must win is known here.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { Response } from "supertest";
import type { components } from "../src/api/types.gen.ts";
import type { ItemStore, NewItem } from "../src/store/types.ts";
import { multipart, startTestApp, type TestServer } from "./api-helpers.ts";
import { sampleImage } from "./helpers/demo-model.ts";

type S = components["schemas"];

const IMAGES = ["demo.png", "shapes.png", "gradient.jpg", "hopper.jpg"];
const idOf = (i: number) => `img-${i}`;
const BOX = { x: 2, y: 3, width: 40, height: 30 };
const QUERIES = ["zorblat", "red circle", "colorful shapes", "a photo of a man", "smooth gradient"];

describe("POST /search over items with parts", () => {
  let server: TestServer;
  let modelId: string;
  const ok = async (body: object) => {
    const res: Response = await server.http.post("/search").send(body);
    assert.equal(res.status, 200, res.text);
    return (res.body as S["SearchResponse"]).hits;
  };
  const byItem = (id: string, body: object = {}) =>
    ok({ compose: [{ item_id: id, weight: 1 }], k: 10, ...body });

  before(async () => {
    server = await startTestApp({ indexSaveIntervalMs: 0 });
    const form = multipart([
      { name: "ids", value: JSON.stringify(IMAGES.map((_, i) => idOf(i))) },
      ...IMAGES.map((name) => ({ name: "images", value: sampleImage(name), filename: name })),
      ...IMAGES.map((_, i) => ({
        name: "metadata",
        value: JSON.stringify({ caption: i === 3 ? "a zorblat" : `image ${i}` }),
      })),
    ]);
    const res = await server.http.post("/index").set(form.headers).send(form.payload);
    assert.equal(res.status, 200, res.text);
    const store = (server.library as unknown as { store: ItemStore }).store;
    modelId = (await server.library.stats()).modelId;
    const labels = await Promise.all(
      [0, 1, 2].map(async (i) => (await store.getById(idOf(i)))?.label as number),
    );
    const [demo, shapes, gradient] = (await store.embeddingsOf(modelId, labels)).map(
      (row) => row.vector,
    ) as [Float32Array, Float32Array, Float32Array];
    // A stored item whose whole image is unlike demo.png, but with a region that is demo.png's
    // vector, and a frame that is shapes.png's.
    const withParts: NewItem = {
      id: "with-parts",
      sha256: "ab".repeat(32),
      metadata: { caption: QUERIES.join(" ") },
      contentType: "image/png",
      width: 100,
      height: 80,
      bytes: 1,
      source: "path",
      path: "/nowhere/with-parts.png",
      vector: gradient.map((x) => -x),
      parts: [
        { kind: "region", box: BOX, vector: demo },
        { kind: "frame", t: 2.5, vector: shapes },
      ],
    };
    const [outcome] = await store.insertItems([withParts], modelId);
    assert.equal(outcome?.status, "inserted");
  });
  after(async () => {
    await server?.app.close();
  });

  test("the item with the matching region is listed once, with the region and its score", async () => {
    for (const exact of [true, false]) {
      const hits = await byItem(idOf(0), { exact });
      assert.deepEqual(
        hits.map((hit) => hit.id).sort(),
        [...IMAGES.map((_, i) => idOf(i)), "with-parts"].sort(),
        "every item once",
      );
      const part = hits.find((hit) => hit.id === "with-parts");
      const self = hits.find((hit) => hit.id === idOf(0));
      assert.ok(Math.abs((self?.score ?? 0) - 1) < 1e-4, "the item itself");
      assert.equal(self?.match, undefined, "the whole image matched");
      assert.deepEqual(part?.match, { kind: "region", box: BOX, score: part?.score });
      assert.ok(Math.abs((part?.score ?? 0) - 1) < 1e-4, "the region is the same vector");
      assert.ok(
        hits.slice(0, 2).some((hit) => hit.id === "with-parts"),
        "ranked by the region",
      );
    }
    const byFrame = await byItem(idOf(1), { exact: true });
    const frame = byFrame.find((hit) => hit.id === "with-parts");
    assert.deepEqual(frame?.match, { kind: "frame", t: 2.5, score: frame?.score });
  });

  test("offset pages, k and min_score cut the ranking of items, not of vectors", async () => {
    const all = await byItem(idOf(0), { exact: true });
    assert.equal(all.length, IMAGES.length + 1);
    const page = await byItem(idOf(0), { exact: true, k: 2, offset: 1 });
    assert.deepEqual(page, all.slice(1, 3));
    const cut = await byItem(idOf(0), { exact: true, min_score: 0.999 });
    assert.deepEqual(cut.map((hit) => hit.id).sort(), [idOf(0), "with-parts"].sort());
  });

  test("keyword mode scores a hit by its best vector, as vector mode does", async () => {
    // Queries whose words are all in with-parts' caption; the first where vector mode says a
    // part of it matched best shows the same in keyword mode.
    let checked = 0;
    for (const query of QUERIES) {
      const vectorHits = await ok({ query, k: 10, exact: true });
      const keywordHits = await ok({ query, k: 10, mode: "keyword" });
      assert.ok(
        keywordHits.some((hit) => hit.id === "with-parts"),
        query,
      );
      for (const hit of keywordHits) {
        const same = vectorHits.find((v) => v.id === hit.id);
        assert.ok(Math.abs(hit.score - (same?.score ?? Number.NaN)) < 1e-5, hit.id);
        assert.deepEqual(hit.match, same?.match, `${hit.id}'s match`);
        if (hit.match !== undefined) checked++;
      }
    }
    assert.ok(checked > 0, "no query was matched best by a part: pick others");
  });
});
