import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { isAppError } from "../src/core/errors.ts";
import { CLIP_IMAGE_MEAN, CLIP_IMAGE_STD } from "../src/model/format.ts";
import { preprocessImage } from "../src/preprocess/index.ts";
import { PreprocessPool } from "../src/preprocess/pool.ts";
import { patternPng } from "./helpers/library-fixtures.ts";

const OPTIONS = {
  resolution: 32,
  mean: CLIP_IMAGE_MEAN,
  std: CLIP_IMAGE_STD,
  maxImageBytes: 1_000_000,
  maxImagePixels: 1_000_000,
};

describe("PreprocessPool", () => {
  const pool = new PreprocessPool(2);
  after(() => pool.close());

  test("gives exactly what preprocessImage gives on the main thread", async () => {
    const images = await Promise.all([1, 2, 3, 4, 5].map((seed) => patternPng(seed, 40 + seed)));
    const [inWorkers, inMain] = await Promise.all([
      Promise.all(images.map((bytes) => pool.run(bytes, OPTIONS))),
      Promise.all(images.map((bytes) => preprocessImage(bytes, OPTIONS))),
    ]);
    for (const [i, image] of inWorkers.entries()) {
      assert.deepEqual(image, inMain[i]);
      assert.ok(image.pixels instanceof Float32Array);
    }
  });

  test("errors keep their code and status", async () => {
    await assert.rejects(
      pool.run(Buffer.from("not an image"), OPTIONS),
      (e: unknown) => isAppError(e) && e.code === "unsupported_image" && e.status === 415,
    );
    await assert.rejects(
      pool.run(await patternPng(9, 64), { ...OPTIONS, maxImagePixels: 100 }),
      (e: unknown) =>
        isAppError(e) &&
        e.code === "image_too_many_pixels" &&
        e.status === 413 &&
        e.details?.limit === 100,
    );
    // The pool still works after errors.
    assert.equal((await pool.run(await patternPng(3), OPTIONS)).width, 48);
  });

  test("a closed pool refuses work", async () => {
    const closed = new PreprocessPool(1);
    await closed.close();
    await assert.rejects(closed.run(Buffer.alloc(1), OPTIONS), (e: unknown) => isAppError(e));
  });
});
