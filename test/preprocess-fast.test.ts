/**
 * `mode: "fast"` preprocessing (libvips shrink-on-load and resize) against the exact mode on
 * photo-like images generated here: close to the exact input where it applies, identical
 * where it does not, and the same errors.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import sharp from "sharp";
import { AppError } from "../src/core/errors.ts";
import { decodeForModel, preprocessImage } from "../src/preprocess/index.ts";
import { photoLikePixels } from "../tools/bench/photos.ts";
import { inputPsnr } from "../tools/bench/preprocess.ts";
import { CLIP_224 } from "./helpers/preprocess-options.ts";

const EXACT = { ...CLIP_224, mode: "exact" as const };
const FAST = { ...CLIP_224, mode: "fast" as const };
const MIN_PSNR_DB = 35;

async function photo(width: number, height: number, seed: number) {
  const raw = await photoLikePixels(width, height, seed);
  return sharp(raw, { raw: { width, height, channels: 3 } });
}

test(`fast input within ${MIN_PSNR_DB} dB PSNR of exact: JPEG, WebP, EXIF-rotated, PNG, RGBA`, async () => {
  const landscape = await photo(960, 720, 1);
  const portrait = await photo(720, 960, 2);
  const inputs: [string, Buffer][] = [
    ["jpeg 960×720", await landscape.clone().jpeg({ quality: 90 }).toBuffer()],
    ["webp 960×720", await landscape.clone().webp({ quality: 90 }).toBuffer()],
    ["png 960×720", await landscape.clone().png().toBuffer()],
    // Stored lying on its side, EXIF orientation 6 turns it upright.
    [
      "jpeg 720×960, orientation 6",
      await sharp(await portrait.clone().rotate(-90).raw().toBuffer(), {
        raw: { width: 960, height: 720, channels: 3 },
      })
        .withMetadata({ orientation: 6 })
        .jpeg({ quality: 90 })
        .toBuffer(),
    ],
    ["rgba png 960×720", await landscape.clone().ensureAlpha(0.6).png().toBuffer()],
  ];
  for (const [name, bytes] of inputs) {
    const exact = await preprocessImage(bytes, EXACT);
    const fast = await preprocessImage(bytes, FAST);
    const psnr = inputPsnr(exact.pixels, fast.pixels, CLIP_224.std);
    console.log(`${name}: PSNR fast vs exact ${psnr.toFixed(1)} dB`);
    assert.ok(psnr >= MIN_PSNR_DB, `${name}: ${psnr.toFixed(1)} dB`);
    assert.ok(psnr < Number.POSITIVE_INFINITY, `${name}: fast took the exact path`);
    assert.deepEqual(
      [fast.width, fast.height, fast.format],
      [exact.width, exact.height, exact.format],
      name,
    );
  }
});

test("fast mode decodes large images smaller: shrink-on-load and resize in libvips", async () => {
  const bytes = await (await photo(1600, 1200, 3)).jpeg({ quality: 90 }).toBuffer();
  const exact = await decodeForModel(bytes, EXACT);
  const fast = await decodeForModel(bytes, FAST);
  assert.deepEqual([exact.width, exact.height], [1600, 1200]);
  // torchvision's Resize(224) size; toModelInput only crops it.
  assert.deepEqual([fast.width, fast.height], [298, 224]);
  assert.deepEqual([fast.sourceWidth, fast.sourceHeight], [1600, 1200]);
});

test("fast mode keeps the exact pixels where it does not downscale, and for palette images", async () => {
  const small = await (await photo(200, 150, 4)).png().toBuffer();
  const palette = await (await photo(640, 480, 5)).png({ colours: 32 }).toBuffer();
  const square = await (await photo(224, 224, 6)).jpeg().toBuffer();
  for (const [name, bytes] of [
    ["upscaled 200×150", small],
    ["palette 640×480", palette],
    ["224×224", square],
  ] as const) {
    const exact = await preprocessImage(bytes, EXACT);
    const fast = await preprocessImage(bytes, FAST);
    assert.deepEqual(fast.pixels, exact.pixels, name);
  }
});

test("fast mode refuses bad images like the exact one", async () => {
  const jpeg = await (await photo(640, 480, 7)).jpeg().toBuffer();
  const refused = async (bytes: Buffer, options: typeof FAST, code: string, status: number) =>
    assert.rejects(preprocessImage(bytes, options), (error: unknown) => {
      assert.ok(error instanceof AppError, String(error));
      assert.equal(error.code, code, error.message);
      assert.equal(error.status, status);
      return true;
    });
  await refused(jpeg.subarray(0, Math.floor(jpeg.length / 2)), FAST, "image_corrupt", 400);
  await refused(jpeg.subarray(0, jpeg.length - 2), FAST, "image_corrupt", 400);
  await refused(jpeg, { ...FAST, maxImagePixels: 640 * 480 - 1 }, "image_too_many_pixels", 413);
  await refused(Buffer.from("not an image"), FAST, "unsupported_image", 415);
});
