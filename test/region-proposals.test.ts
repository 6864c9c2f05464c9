/**
 * Content-aware region proposals (src/preprocess/region-proposals.ts and proposeRegions): on
 * synthetic images whose objects' boxes are known, the best proposals frame them; a flat image
 * has none; the limits hold; `auto` regions put them before the grid windows.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import sharp from "sharp";
import type { Box } from "../src/core/types.ts";
import { decodeImage } from "../src/preprocess/index.ts";
import { proposeBoxes } from "../src/preprocess/region-proposals.ts";
import {
  autoRegionBoxes,
  PROPOSAL_MAX_SHARE,
  PROPOSAL_MIN_SHARE,
  preprocessWithCrops,
  proposeRegions,
  REGION_PROPOSALS,
  regionBoxes,
} from "../src/preprocess/regions.ts";
import { CLIP_224 } from "./helpers/preprocess-options.ts";

const OPTIONS = { ...CLIP_224, resolution: 32 };

function iou(a: Box, b: Box): number {
  const w = Math.min(a.x + a.width, b.x + b.width) - Math.max(a.x, b.x);
  const h = Math.min(a.y + a.height, b.y + b.height) - Math.max(a.y, b.y);
  if (w <= 0 || h <= 0) return 0;
  return (w * h) / (a.width * a.height + b.width * b.height - w * h);
}

/**
 * A `width` × `height` grey image with an object in each box: a coloured square with a
 * contrasting disc and short stripes inside (clear of its border), so it has edges within as
 * well as at its border.
 */
async function imageWithObjects(width: number, height: number, boxes: Box[]): Promise<Buffer> {
  const shapes = boxes.map((b, k) => {
    const fill = ["#c03020", "#2050c0", "#30a040"][k % 3];
    const r = Math.round(Math.min(b.width, b.height) / 4);
    const stripes = [0.15, 0.85]
      .map(
        (f) =>
          `<rect x="${Math.round(b.x + b.width / 5)}" y="${Math.round(b.y + f * b.height)}" width="${Math.round((3 * b.width) / 5)}" height="3" fill="#f0f0f0"/>`,
      )
      .join("");
    return `<rect x="${b.x}" y="${b.y}" width="${b.width}" height="${b.height}" fill="${fill}"/>${stripes}<circle cx="${b.x + b.width / 2}" cy="${b.y + b.height / 2}" r="${r}" fill="#f8e020"/>`;
  });
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}"><rect width="100%" height="100%" fill="#808080"/>${shapes.join("")}</svg>`;
  return sharp(Buffer.from(svg)).jpeg({ quality: 92 }).toBuffer();
}

const LIMITS = { maxImageBytes: 50_000_000, maxImagePixels: 100_000_000 };

async function proposalsOf(bytes: Buffer, max: number): Promise<Box[]> {
  return proposeRegions(await decodeImage(bytes, LIMITS), 32, max);
}

describe("proposeRegions", () => {
  test("one object on a plain ground: the best proposal frames it", async () => {
    const object = { x: 310, y: 140, width: 180, height: 180 };
    const boxes = await proposalsOf(await imageWithObjects(800, 600, [object]), 8);
    assert.ok(boxes.length >= 1);
    const best = boxes[0] as Box;
    assert.ok(iou(best, object) >= 0.85, `IoU ${iou(best, object)}: ${JSON.stringify(best)}`);
  });

  test("three objects: each framed by one of the best six", async () => {
    const objects = [
      { x: 40, y: 60, width: 200, height: 200 },
      { x: 500, y: 80, width: 150, height: 220 },
      { x: 260, y: 500, width: 190, height: 190 },
    ];
    const boxes = (await proposalsOf(await imageWithObjects(900, 760, objects), 8)).slice(0, 6);
    for (const object of objects) {
      const best = Math.max(...boxes.map((b) => iou(b, object)));
      assert.ok(best >= 0.85, `${JSON.stringify(object)}: best IoU ${best}`);
    }
  });

  test("a flat image, or one with only faint noise, has no proposals", async () => {
    const flat = await sharp({
      create: { width: 640, height: 480, channels: 3, background: { r: 90, g: 120, b: 150 } },
    })
      .jpeg()
      .toBuffer();
    assert.deepEqual(await proposalsOf(flat, 12), []);
    // ±6 levels of noise: gradients far under the edge threshold.
    const noise = Buffer.alloc(640 * 480 * 3);
    let seed = 7;
    for (let i = 0; i < noise.length; i++) {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      noise[i] = 120 + (seed % 13) - 6;
    }
    const noisy = await sharp(noise, { raw: { width: 640, height: 480, channels: 3 } })
      .png()
      .toBuffer();
    assert.deepEqual(await proposalsOf(noisy, 12), []);
  });

  test("limits: count, short side, share of the image, overlap between proposals", async () => {
    const objects = [
      { x: 20, y: 20, width: 120, height: 120 },
      { x: 200, y: 40, width: 90, height: 300 },
      { x: 380, y: 300, width: 250, height: 150 },
      { x: 60, y: 360, width: 60, height: 60 },
    ];
    const image = await decodeImage(await imageWithObjects(700, 500, objects), LIMITS);
    const all = await proposeRegions(image, 32, 20);
    assert.ok(all.length >= 4);
    assert.deepEqual(await proposeRegions(image, 32, 2), all.slice(0, 2), "a prefix of the list");
    assert.deepEqual(await proposeRegions(image, 32, 0), []);
    for (const box of all) {
      assert.ok(box.x >= 0 && box.y >= 0 && box.x + box.width <= 700 && box.y + box.height <= 500);
      assert.ok(Math.min(box.width, box.height) >= 32, JSON.stringify(box));
      assert.ok(
        Math.min(box.width, box.height) >= PROPOSAL_MIN_SHARE * 500 - 4,
        JSON.stringify(box),
      );
      assert.ok(box.width <= 700 * PROPOSAL_MAX_SHARE + 4, JSON.stringify(box));
      assert.ok(box.height <= 500 * PROPOSAL_MAX_SHARE + 4, JSON.stringify(box));
    }
    for (const [i, a] of all.entries()) {
      for (const b of all.slice(i + 1)) assert.ok(iou(a, b) <= 0.4 + 1e-9);
    }
    // A model input of 100 pixels rules out the 60-pixel object's box and any smaller.
    for (const box of await proposeRegions(image, 100, 20)) {
      assert.ok(Math.min(box.width, box.height) >= 100, JSON.stringify(box));
    }
  });

  test("proposeBoxes maps the working image's pixels to the original's", () => {
    // A 64×48 working copy of a 256×192 original (scale 4): a bright square at 20..39 × 10..29.
    const width = 64;
    const height = 48;
    const data = new Uint8Array(width * height * 3).fill(100);
    for (let y = 10; y < 30; y++) {
      for (let x = 20; x < 40; x++) data.fill(220, (y * width + x) * 3, (y * width + x) * 3 + 3);
    }
    const [best] = proposeBoxes({ data, width, height, channels: 3 }, 4, 256, 192, {
      max: 4,
      minSide: 16,
      maxShare: 0.6,
      nmsIou: 0.4,
    });
    assert.ok(
      best && iou(best, { x: 80, y: 40, width: 80, height: 80 }) >= 0.8,
      JSON.stringify(best),
    );
  });
});

describe("auto regions with proposals", () => {
  test("the proposals first, then the grid windows that fit in what the cap leaves", () => {
    const proposals = [
      { x: 1, y: 2, width: 100, height: 100 },
      { x: 300, y: 200, width: 150, height: 120 },
    ];
    const boxes = autoRegionBoxes(960, 960, 32, 34, proposals);
    assert.deepEqual(boxes.slice(0, 2), proposals);
    assert.deepEqual(boxes.slice(2), regionBoxes(960, 960, 32, 32));
    assert.equal(boxes.length, 2 + 9 + 9, "3×3 windows no longer fit: its cells");
    assert.deepEqual(autoRegionBoxes(960, 960, 32, 1, proposals), proposals.slice(0, 1));
  });

  test("preprocessWithCrops auto: an object's crop among the regions, in the image's pixels", async () => {
    const object = { x: 520, y: 300, width: 160, height: 160 };
    const bytes = await imageWithObjects(900, 700, [object]);
    const image = await preprocessWithCrops(bytes, OPTIONS, { kind: "auto", max: 34 });
    const boxes = (image.regions ?? []).map((r) => r.box);
    assert.ok(boxes.length <= 34);
    assert.ok(iou(boxes[0] as Box, object) >= 0.85, JSON.stringify(boxes[0]));
    const proposals = await proposalsOf(bytes, Math.min(34, REGION_PROPOSALS));
    assert.deepEqual(boxes, autoRegionBoxes(900, 700, 32, 34, proposals));
  });
});
