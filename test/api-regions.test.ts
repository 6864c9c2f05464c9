/**
 * Regions over HTTP, against a real library (SQLite + HNSW, the demo model, --regions auto)
 * on a real socket: canvases made of the demo gallery's scenes (captions known), searched by a
 * region of an image (`POST /search/image` with a `box`, of an upload or a stored item), and
 * bad boxes refused with 400 invalid_box.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import sharp from "sharp";
import type { Response } from "supertest";
import type { components } from "../src/api/types.gen.ts";
import type { Box } from "../src/core/types.ts";
import { multipart, type Part, startTestApp, type TestServer } from "./api-helpers.ts";
import { canvas, scene } from "./helpers/gallery-canvas.ts";

type S = components["schemas"];

describe("regions over HTTP (--regions auto)", () => {
  let server: TestServer;
  let big: Buffer;
  /** A part of `big` that is its own item too, with the same pixels. */
  const cropBox: Box = { x: 150, y: 260, width: 120, height: 100 };
  let crop: Buffer;

  const json = <T>(res: Response) => res.body as T;
  const postForm = (url: string, parts: Part[]) => {
    const form = multipart(parts);
    return server.http.post(url).set(form.headers).send(form.payload);
  };
  const searchImage = (parts: Part[], query = "?k=3") => postForm(`/search/image${query}`, parts);
  const file = (bytes: Buffer): Part => ({ name: "image", value: bytes, filename: "q.png" });
  const boxField = (box: unknown): Part => ({ name: "box", value: JSON.stringify(box) });
  const expectError = (res: Response, status: number, code: string) => {
    assert.equal(res.status, status, res.text);
    assert.equal(json<S["Error"]>(res).error.code, code, res.text);
  };

  before(async () => {
    server = await startTestApp({ regions: "auto" });
    big = await canvas(768, 640, [
      { index: 0, box: { x: 40, y: 30, width: 200, height: 200 } },
      { index: 5, box: { x: 150, y: 260, width: 300, height: 300 } },
      { index: 10, box: { x: 480, y: 90, width: 240, height: 240 } },
    ]);
    const raw = await sharp(big).extract({
      left: cropBox.x,
      top: cropBox.y,
      width: cropBox.width,
      height: cropBox.height,
    });
    crop = await raw.png().toBuffer();
    const form = multipart([
      { name: "images", value: big, filename: "big.png" },
      { name: "images", value: crop, filename: "crop.png" },
      ...[20, 21, 22].map((i) => ({ name: "images", value: scene(i), filename: `${i}.jpg` })),
      { name: "ids", value: JSON.stringify(["big", "crop", "s20", "s21", "s22"]) },
    ]);
    const res = await server.http.post("/index").set(form.headers).send(form.payload);
    assert.equal(res.status, 200, res.text);
    for (const result of json<S["IndexResponse"]>(res).results) {
      assert.equal(result.status, "indexed", JSON.stringify(result));
    }
  });
  after(async () => {
    await server?.app.close();
  });

  test("an uploaded image's box: the item with that crop's pixels comes first", async () => {
    const res = await searchImage([file(big), boxField(cropBox)]);
    assert.equal(res.status, 200, res.text);
    const [first] = json<S["ImageSearchResponse"]>(res).hits;
    assert.equal(first?.id, "crop");
    assert.ok((first?.score ?? 0) > 0.9999, `score ${first?.score}`);
    // Without the box the whole image is the query: itself first.
    const whole = await searchImage([file(big)]);
    assert.equal(json<S["ImageSearchResponse"]>(whole).hits[0]?.id, "big");
  });

  test("a stored item's box, by item_id", async () => {
    const res = await searchImage([{ name: "item_id", value: "big" }, boxField(cropBox)]);
    assert.equal(res.status, 200, res.text);
    const [first] = json<S["ImageSearchResponse"]>(res).hits;
    assert.equal(first?.id, "crop");
    assert.ok((first?.score ?? 0) > 0.9999, `score ${first?.score}`);
    const whole = await searchImage([{ name: "item_id", value: "s21" }]);
    assert.equal(json<S["ImageSearchResponse"]>(whole).hits[0]?.id, "s21");
  });

  test("a box outside the image, or not a box, is 400 invalid_box", async () => {
    for (const box of [
      { x: 700, y: 0, width: 100, height: 100 },
      { x: 0, y: 600, width: 10, height: 41 },
      { x: -1, y: 0, width: 10, height: 10 },
      { x: 0, y: 0, width: 0, height: 10 },
      { x: 1.5, y: 0, width: 10, height: 10 },
      { x: 0, y: 0, width: 10 },
      { x: "0", y: 0, width: 10, height: 10 },
      [0, 0, 10, 10],
    ]) {
      expectError(await searchImage([file(big), boxField(box)]), 400, "invalid_box");
    }
    expectError(
      await searchImage([
        { name: "item_id", value: "s20" },
        boxField({ x: 0, y: 0, width: 300, height: 300 }),
      ]),
      400,
      "invalid_box",
    );
    expectError(
      await searchImage([file(big), { name: "box", value: "{x:1" }]),
      400,
      "malformed_json",
    );
  });

  test("exactly one of a file and item_id; an unknown item is 404", async () => {
    expectError(await searchImage([boxField(cropBox)]), 400, "validation_failed");
    expectError(
      await searchImage([file(big), { name: "item_id", value: "big" }]),
      400,
      "validation_failed",
    );
    expectError(await searchImage([{ name: "item_id", value: "nope" }]), 404, "not_found");
  });
});
