/**
 * Regions of large images (src/preprocess/regions.ts): the grids, the size threshold and the
 * cap, box checks, and crops cut from the image as shown (EXIF orientation applied), through
 * sharp and the preprocessing pool's worker threads.
 */
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import sharp from "sharp";
import { isAppError } from "../src/core/errors.ts";
import { PreprocessPool } from "../src/preprocess/pool.ts";
import { checkBox, cropRaw, preprocessWithCrops, regionBoxes } from "../src/preprocess/regions.ts";
import { CLIP_224 } from "./helpers/preprocess-options.ts";

const OPTIONS = { ...CLIP_224, resolution: 32 };

describe("regionBoxes", () => {
  test("no regions when the short side is under twice the model's input", () => {
    assert.deepEqual(regionBoxes(63, 1000, 32, 34), []);
    assert.deepEqual(regionBoxes(1000, 63, 32, 34), []);
  });

  test("2×2 windows half a cell apart from twice the input; tiles of the image", () => {
    // 200×128 at input 32: short side 128 is 4×, so both grids; at input 64 only 2×2.
    const boxes = regionBoxes(200, 128, 64, 34);
    const expected = [];
    for (const y of [0, 32, 64]) {
      for (const x of [0, 50, 100]) expected.push({ x, y, width: 100, height: 64 });
    }
    assert.deepEqual(boxes, expected);
  });

  test("3×3 windows too from three times the input: 9 + 25 boxes", () => {
    const boxes = regionBoxes(300, 96, 32, 34);
    assert.equal(boxes.length, 34);
    const fine = boxes.slice(9);
    // Cells of 100×32, every 50×16 px.
    assert.deepEqual(fine[0], { x: 0, y: 0, width: 100, height: 32 });
    assert.deepEqual(fine[1], { x: 50, y: 0, width: 100, height: 32 });
    assert.deepEqual(fine[5], { x: 0, y: 16, width: 100, height: 32 });
    assert.deepEqual(fine[24], { x: 200, y: 64, width: 100, height: 32 });
    for (const box of boxes) {
      assert.ok(box.x + box.width <= 300 && box.y + box.height <= 96, JSON.stringify(box));
    }
  });

  test("odd sizes: windows stay inside and a grid's cells cover every pixel once", () => {
    const boxes = regionBoxes(1001, 777, 32, 13);
    // 9 windows of 2×2 leave 4 of 13: not room for the 3×3 grid's 9 cells.
    assert.equal(boxes.length, 9);
    const cells = regionBoxes(1001, 777, 32, 4);
    assert.equal(cells.length, 4);
    const area = cells.reduce((sum, b) => sum + b.width * b.height, 0);
    assert.equal(area, 1001 * 777);
    assert.deepEqual(cells[3], { x: 501, y: 389, width: 500, height: 388 });
  });

  test("the cap thins the finer grid to its cells, or leaves it out", () => {
    assert.equal(regionBoxes(960, 960, 32, 34).length, 34);
    assert.equal(regionBoxes(960, 960, 32, 33).length, 18, "9 windows + 9 cells");
    assert.equal(regionBoxes(960, 960, 32, 17).length, 9, "3×3 cells do not fit beside 9");
    assert.equal(regionBoxes(960, 960, 32, 8).length, 4, "2×2 cells only");
    assert.deepEqual(regionBoxes(960, 960, 32, 3), []);
    assert.deepEqual(regionBoxes(960, 960, 32, 0), []);
  });

  test("4×4 from four times the input, when the cap leaves room for it", () => {
    assert.equal(regionBoxes(960, 960, 32, 83).length, 9 + 25 + 49);
    assert.equal(regionBoxes(960, 960, 32, 82).length, 9 + 25 + 16, "its cells only");
    assert.equal(regionBoxes(960, 127, 32, 83).length, 9 + 25, "short side under 4 × 32");
    assert.deepEqual(regionBoxes(960, 960, 32, 83)[34 + 48], {
      x: 720,
      y: 720,
      width: 240,
      height: 240,
    });
  });
});

describe("checkBox", () => {
  test("accepts a box inside the image, edges included", () => {
    checkBox({ x: 0, y: 0, width: 10, height: 5 }, 10, 5);
    checkBox({ x: 9, y: 4, width: 1, height: 1 }, 10, 5);
  });

  for (const [what, box] of [
    ["past the right edge", { x: 5, y: 0, width: 6, height: 1 }],
    ["past the bottom edge", { x: 0, y: 1, width: 1, height: 5 }],
    ["negative x", { x: -1, y: 0, width: 2, height: 2 }],
    ["zero width", { x: 0, y: 0, width: 0, height: 2 }],
    ["fractional", { x: 0.5, y: 0, width: 2, height: 2 }],
    ["NaN", { x: Number.NaN, y: 0, width: 2, height: 2 }],
  ] as const) {
    test(`refuses a box ${what} with 400 invalid_box`, () => {
      assert.throws(
        () => checkBox(box, 10, 5),
        (e: unknown) => isAppError(e) && e.code === "invalid_box" && e.status === 400,
      );
    });
  }
});

test("cropRaw copies the box's rows", () => {
  // 4×3 RGB, each pixel's channels (x, y, x + 10 * y).
  const data = new Uint8Array(4 * 3 * 3);
  for (let y = 0; y < 3; y++) {
    for (let x = 0; x < 4; x++) data.set([x, y, x + 10 * y], (y * 4 + x) * 3);
  }
  const crop = cropRaw(
    { data, width: 4, height: 3, channels: 3 },
    { x: 1, y: 1, width: 2, height: 2 },
  );
  assert.deepEqual(Array.from(crop.data), [1, 1, 11, 2, 1, 12, 1, 2, 21, 2, 2, 22]);
  assert.equal(crop.width, 2);
  assert.equal(crop.height, 2);
});

/** Model input channel c of a solid colour, as (v / 255 - mean) / std. */
function normalised(rgb: readonly number[]): number[] {
  return rgb.map((v, c) => (v / 255 - (OPTIONS.mean[c] as number)) / (OPTIONS.std[c] as number));
}

/** The mean of each channel plane of a model input. */
function channelMeans(pixels: Float32Array): number[] {
  const plane = pixels.length / 3;
  return [0, 1, 2].map((c) => {
    let sum = 0;
    for (let i = 0; i < plane; i++) sum += pixels[c * plane + i] as number;
    return sum / plane;
  });
}

function assertColour(pixels: Float32Array, rgb: readonly number[], what: string): void {
  const means = channelMeans(pixels);
  const expected = normalised(rgb);
  for (let c = 0; c < 3; c++) {
    assert.ok(
      Math.abs((means[c] as number) - (expected[c] as number)) < 0.15,
      `${what}: channel means ${means.map((m) => m.toFixed(2))}, expected ${expected.map((m) => m.toFixed(2))}`,
    );
  }
}

const RED = [220, 20, 20];
const BLUE = [20, 20, 220];

/**
 * A JPEG shown as `width` × `height` (portrait) with a red top-left quarter and blue elsewhere,
 * stored landscape with EXIF orientation 6 (turn clockwise to show).
 */
async function rotatedJpeg(width: number, height: number): Promise<Buffer> {
  const shown = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      shown.set(x < width / 2 && y < height / 2 ? RED : BLUE, (y * width + x) * 3);
    }
  }
  // Stored = shown turned anticlockwise; orientation 6 turns it back clockwise.
  const stored = await sharp(shown, { raw: { width, height, channels: 3 } })
    .rotate(270)
    .raw()
    .toBuffer({ resolveWithObject: true });
  assert.equal(stored.info.width, height);
  return sharp(stored.data, { raw: { width: height, height: width, channels: 3 } })
    .jpeg({ quality: 95 })
    .withMetadata({ orientation: 6 })
    .toBuffer();
}

describe("crops of the image as shown (EXIF orientation applied)", () => {
  const pool = new PreprocessPool(1);
  after(() => pool.close());

  test("auto: boxes in the shown frame, each crop its part of the picture", async () => {
    const bytes = await rotatedJpeg(240, 320);
    assert.equal((await sharp(bytes).metadata()).width, 320, "stored landscape");
    const image = await preprocessWithCrops(bytes, OPTIONS, { kind: "auto", max: 34 });
    assert.equal(image.width, 240);
    assert.equal(image.height, 320);
    const regions = image.regions ?? [];
    assert.deepEqual(
      regions.map((r) => r.box),
      regionBoxes(240, 320, 32, 34),
    );
    assert.equal(regions.length, 34);
    // The 2×2 grid's first window is the red quarter; its last the blue bottom-right one.
    assert.deepEqual(regions[0]?.box, { x: 0, y: 0, width: 120, height: 160 });
    assertColour(regions[0]?.pixels as Float32Array, RED, "top-left window");
    assertColour(regions[8]?.pixels as Float32Array, BLUE, "bottom-right window");
    // 3×3: the first cell is inside the red quarter, the one at (160, 213) in blue.
    assertColour(regions[9]?.pixels as Float32Array, RED, "top-left 3×3 window");
    assertColour(regions[33]?.pixels as Float32Array, BLUE, "bottom-right 3×3 window");
  });

  test("boxes: the whole image and the boxes' crops, through the pool's workers", async () => {
    const bytes = await rotatedJpeg(240, 320);
    const image = await pool.run(bytes, OPTIONS, undefined, {
      kind: "boxes",
      boxes: [
        { x: 10, y: 10, width: 100, height: 140 },
        { x: 130, y: 10, width: 100, height: 140 },
      ],
    });
    assert.deepEqual(image.pixels, (await pool.run(bytes, OPTIONS)).pixels, "whole image");
    const [red, blue] = image.regions ?? [];
    assert.equal(red?.pixels.length, 3 * 32 * 32);
    assertColour(red?.pixels as Float32Array, RED, "box in the red quarter");
    assertColour(blue?.pixels as Float32Array, BLUE, "box right of it");
  });

  test("a box outside the shown frame is refused, inside the stored one or not", async () => {
    const bytes = await rotatedJpeg(240, 320);
    // 300 wide fits the stored 320×240 but not the shown 240×320.
    await assert.rejects(
      pool.run(bytes, OPTIONS, undefined, {
        kind: "boxes",
        boxes: [{ x: 0, y: 0, width: 300, height: 200 }],
      }),
      (e: unknown) => isAppError(e) && e.code === "invalid_box" && e.status === 400,
    );
  });

  test("auto on a small image: no regions, the whole image as preprocessImage gives it", async () => {
    const small = await rotatedJpeg(60, 80);
    const image = await pool.run(small, OPTIONS, undefined, { kind: "auto", max: 34 });
    assert.equal(image.regions, undefined);
    assert.deepEqual(image, await pool.run(small, OPTIONS));
  });

  test("a large image's crops come from a shrunk copy, boxes still in its own pixels", async () => {
    const bytes = await rotatedJpeg(1200, 1600);
    const image = await pool.run(bytes, OPTIONS, undefined, { kind: "auto", max: 34 });
    const regions = image.regions ?? [];
    assert.deepEqual(regions[0]?.box, { x: 0, y: 0, width: 600, height: 800 });
    assertColour(regions[0]?.pixels as Float32Array, RED, "top-left window");
    assertColour(regions[33]?.pixels as Float32Array, BLUE, "bottom-right 3×3 window");
  });
});
