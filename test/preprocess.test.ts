/**
 * Decoding and limits of the preprocessing stage, on images generated here with sharp.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import sharp, { type Sharp } from "sharp";
import { AppError } from "../src/core/errors.ts";
import { decodeImage, preprocessImage } from "../src/preprocess/index.ts";
import { bilevelPng } from "./fixtures/bilevel-png.ts";
import { CLIP_224 } from "./helpers/preprocess-options.ts";

const OPTIONS = CLIP_224;

const RED = [255, 0, 0];
const BLUE = [0, 0, 255];

/** Left half red, right half blue. */
function halves(width: number, height: number) {
  const data = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      data.set(x < width / 2 ? RED : BLUE, (y * width + x) * 3);
    }
  }
  return sharp(data, { raw: { width, height, channels: 3 } });
}

function pixelAt(
  image: { data: Uint8Array; width: number; channels: number },
  x: number,
  y: number,
) {
  const i = (y * image.width + x) * image.channels;
  return Array.from(image.data.subarray(i, i + 3));
}

function assertNear(actual: number[], expected: number[], tolerance: number, what: string) {
  const far = actual.some((v, i) => Math.abs(v - (expected[i] as number)) > tolerance);
  assert.ok(!far, `${what}: got ${actual}, expected ${expected} ± ${tolerance}`);
}

async function assertAppError(promise: Promise<unknown>, code: string, status: number) {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof AppError, `expected an AppError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    assert.equal(error.status, status);
    return true;
  });
}

test("decodes JPEG, PNG, WebP, AVIF and TIFF to RGB", async () => {
  const encoders: [string, (s: Sharp) => Sharp][] = [
    ["jpeg", (s) => s.jpeg({ quality: 95 })],
    ["png", (s) => s.png()],
    ["webp", (s) => s.webp({ quality: 95 })],
    ["avif", (s) => s.avif({ quality: 90 })],
    ["tiff", (s) => s.tiff()],
  ];
  for (const [format, encode] of encoders) {
    const bytes = await encode(halves(64, 32)).toBuffer();
    const image = await decodeImage(bytes, OPTIONS);
    assert.equal(image.format, format);
    assert.equal(image.width, 64);
    assert.equal(image.height, 32);
    assert.equal(image.channels, 3);
    assertNear(pixelAt(image, 8, 16), RED, 12, `${format} left`);
    assertNear(pixelAt(image, 56, 16), BLUE, 12, `${format} right`);
    const { pixels, width, height } = await preprocessImage(bytes, OPTIONS);
    assert.equal(pixels.length, 3 * 224 * 224);
    assert.deepEqual([width, height], [64, 32]);
  }
});

test("GIF: the first frame of an animation", async () => {
  const frame = 16 * 16 * 3;
  const frames = Buffer.alloc(frame * 2);
  for (let i = 0; i < 16 * 16; i++) {
    frames[i * 3] = 255; // frame 1 red
    frames[frame + i * 3 + 1] = 255; // frame 2 green
  }
  const gif = await sharp(frames, { raw: { width: 16, height: 32, channels: 3, pageHeight: 16 } })
    .gif()
    .toBuffer();
  assert.equal((await sharp(gif).metadata()).pages, 2);
  const image = await decodeImage(gif, OPTIONS);
  assert.equal(image.format, "gif");
  assert.deepEqual([image.width, image.height], [16, 16]);
  assert.deepEqual(pixelAt(image, 8, 8), RED);
});

test("EXIF orientation 6 is applied: sides swapped, content turned clockwise", async () => {
  const bytes = await halves(64, 32)
    .jpeg({ quality: 95 })
    .withMetadata({ orientation: 6 })
    .toBuffer();
  assert.equal((await sharp(bytes).metadata()).orientation, 6);
  const image = await decodeImage(bytes, OPTIONS);
  assert.deepEqual([image.width, image.height], [32, 64]);
  // The stored left (red) half is on top once turned 90° clockwise.
  assertNear(pixelAt(image, 16, 8), RED, 12, "top");
  assertNear(pixelAt(image, 16, 56), BLUE, 12, "bottom");
  const result = await preprocessImage(bytes, OPTIONS);
  assert.deepEqual([result.width, result.height], [32, 64]);
});

test("grey PNG becomes RGB with equal channels and unchanged values", async () => {
  const grey = Buffer.alloc(40 * 30);
  for (let i = 0; i < grey.length; i++) grey[i] = (i * 37) % 256;
  const bytes = await sharp(grey, { raw: { width: 40, height: 30, channels: 1 } })
    .png()
    .toBuffer();
  const image = await decodeImage(bytes, OPTIONS);
  assert.equal(image.channels, 3);
  for (let i = 0; i < grey.length; i++) {
    assert.deepEqual(pixelAt(image, i % 40, Math.floor(i / 40)), [grey[i], grey[i], grey[i]]);
  }
});

test("CMYK JPEG is converted to sRGB with the right colours", async () => {
  const data = Buffer.alloc(48 * 16 * 3);
  const colours = [
    [255, 255, 255],
    [128, 128, 128],
    [200, 40, 40],
  ];
  for (let i = 0; i < 48 * 16; i++) data.set(colours[Math.floor((i % 48) / 16)] as number[], i * 3);
  const bytes = await sharp(data, { raw: { width: 48, height: 16, channels: 3 } })
    .toColourspace("cmyk")
    .jpeg({ quality: 95 })
    .toBuffer();
  const metadata = await sharp(bytes).metadata();
  assert.equal(metadata.space, "cmyk");
  assert.equal(metadata.channels, 4);
  const image = await decodeImage(bytes, OPTIONS);
  assert.equal(image.channels, 3);
  colours.forEach((colour, k) => {
    assertNear(pixelAt(image, k * 16 + 8, 8), colour, 30, `colour ${colour}`);
  });
});

test("16-bit PNG is decoded to 8 bits", async () => {
  const bytes = await halves(8, 8).toColourspace("rgb16").png().toBuffer();
  assert.equal((await sharp(bytes).metadata()).depth, "ushort");
  const image = await decodeImage(bytes, OPTIONS);
  assert.deepEqual(pixelAt(image, 1, 1), RED);
  assert.deepEqual(pixelAt(image, 6, 6), BLUE);
});

test("RGBA: alpha is dropped, not composited; colour under transparent pixels is kept", async () => {
  const size = OPTIONS.resolution;
  const colour = [200, 100, 50];
  const data = Buffer.alloc(size * size * 4);
  for (let i = 0; i < size * size; i++) data.set([...colour, i % 2 === 0 ? 0 : 128], i * 4);
  const bytes = await sharp(data, { raw: { width: size, height: size, channels: 4 } })
    .png()
    .toBuffer();
  const image = await decodeImage(bytes, OPTIONS);
  assert.equal(image.channels, 4);
  assert.deepEqual(pixelAt(image, 0, 0), colour);
  // Already at the model's size, so nothing is resampled: every pixel keeps its colour.
  const { pixels } = await preprocessImage(bytes, OPTIONS);
  for (let c = 0; c < 3; c++) {
    const mean = OPTIONS.mean[c] as number;
    const std = OPTIONS.std[c] as number;
    const expected = ((colour[c] as number) / 255 - mean) / std;
    const plane = pixels.subarray(c * size * size, (c + 1) * size * size);
    for (const value of [plane[0], plane[1], plane[size * size - 1]]) {
      assert.ok(
        Math.abs((value as number) - expected) < 1e-5,
        `channel ${c}: ${value} vs ${expected}`,
      );
    }
  }
});

test("errors: empty, too many bytes, not an image, unsupported format", async () => {
  const png = await halves(64, 32).png().toBuffer();
  await assertAppError(preprocessImage(Buffer.alloc(0), OPTIONS), "image_empty", 400);
  await assertAppError(
    preprocessImage(png, { ...OPTIONS, maxImageBytes: png.length - 1 }),
    "image_too_large",
    413,
  );
  await decodeImage(png, { ...OPTIONS, maxImageBytes: png.length });
  await assertAppError(
    preprocessImage(Buffer.from("this is a caption, not a picture ".repeat(10)), OPTIONS),
    "unsupported_image",
    415,
  );
  const svg = Buffer.from(
    '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>',
  );
  await assertAppError(preprocessImage(svg, OPTIONS), "unsupported_image", 415);
});

test("errors: truncated JPEG and PNG, corrupt header", async () => {
  const noisy = Buffer.alloc(300 * 200 * 3);
  for (let i = 0; i < noisy.length; i++) noisy[i] = (i * 7919) % 251;
  const raw = { raw: { width: 300, height: 200, channels: 3 as const } };
  const jpeg = await sharp(noisy, raw).jpeg().toBuffer();
  const png = await sharp(noisy, raw).png().toBuffer();
  await assertAppError(
    preprocessImage(jpeg.subarray(0, Math.floor(jpeg.length / 2)), OPTIONS),
    "image_corrupt",
    400,
  );
  // Only the end-of-image marker missing.
  await assertAppError(
    preprocessImage(jpeg.subarray(0, jpeg.length - 2), OPTIONS),
    "image_corrupt",
    400,
  );
  await assertAppError(
    preprocessImage(png.subarray(0, Math.floor(png.length / 2)), OPTIONS),
    "image_corrupt",
    400,
  );
  const corrupt = Buffer.concat([png.subarray(0, 16), Buffer.alloc(200, 3)]);
  await assertAppError(preprocessImage(corrupt, OPTIONS), "image_corrupt", 400);
});

test("errors: too many pixels, from the header, before decoding", async () => {
  const png = await halves(64, 32).png().toBuffer();
  await assertAppError(
    preprocessImage(png, { ...OPTIONS, maxImagePixels: 64 * 32 - 1 }),
    "image_too_many_pixels",
    413,
  );
  await decodeImage(png, { ...OPTIONS, maxImagePixels: 64 * 32 });
  // A decompression bomb: 20000×20000 pixels in a small file.
  const bomb = bilevelPng(20_000, 20_000);
  assert.ok(bomb.length < 200_000, `bomb is ${bomb.length} bytes`);
  const metadata = await sharp(bomb, { limitInputPixels: false }).metadata();
  assert.deepEqual([metadata.width, metadata.height], [20_000, 20_000]);
  await assertAppError(preprocessImage(bomb, OPTIONS), "image_too_many_pixels", 413);
  // The header check (which knows the dimensions) refused it, not the decoder's own limit.
  await assert.rejects(preprocessImage(bomb, OPTIONS), (error: AppError) => {
    assert.deepEqual(error.details, {
      width: 20_000,
      height: 20_000,
      limit: OPTIONS.maxImagePixels,
    });
    return true;
  });
});
