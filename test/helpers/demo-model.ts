/**
 * The model the tests run with when they do not compare with the official code's outputs:
 * models/demo, which the project trains itself and commits, so these tests need nothing
 * beyond the checkout (no ../shared, no Python). And material made here: a photo-like JPEG
 * drawn with sharp, and text longer than the 248-token context.
 */
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import sharp, { type Sharp } from "sharp";
import { PROJECT_ROOT } from "../../src/core/settings.ts";

export const DEMO_MODEL_DIR = path.join(PROJECT_ROOT, "models", "demo");

let bare: string | undefined;

/**
 * models/demo without its sample gallery (its files linked into a temporary directory), for
 * `longclip serve` processes that must start on an empty library.
 */
export function demoModelWithoutGallery(): string {
  if (bare === undefined) {
    const root = mkdtempSync(path.join(os.tmpdir(), "longclip-demo-model-"));
    process.once("exit", () => rmSync(root, { recursive: true, force: true }));
    const dir = path.join(root, "demo");
    mkdirSync(dir);
    for (const name of readdirSync(DEMO_MODEL_DIR)) {
      if (name !== "gallery") symlinkSync(path.join(DEMO_MODEL_DIR, name), path.join(dir, name));
    }
    bare = dir;
  }
  return bare;
}

/**
 * A photo-like JPEG: a smooth two-colour gradient with a disc and a bar on it, different for
 * every seed, `width`×`height` pixels.
 */
export async function photoJpeg(seed: number, width = 320, height = 240): Promise<Buffer> {
  const hue = (n: number) => (seed * 97 + n * 61) % 360;
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">
    <defs><linearGradient id="g" x1="0" y1="0" x2="1" y2="1">
      <stop offset="0" stop-color="hsl(${hue(0)},70%,60%)"/>
      <stop offset="1" stop-color="hsl(${hue(1)},60%,30%)"/>
    </linearGradient></defs>
    <rect width="100%" height="100%" fill="url(#g)"/>
    <circle cx="${(0.2 + (seed % 5) * 0.15) * width}" cy="${0.45 * height}" r="${0.2 * height}"
      fill="hsl(${hue(2)},80%,50%)"/>
    <rect x="${0.1 * width}" y="${(0.7 + (seed % 3) * 0.05) * height}" width="${0.8 * width}"
      height="${0.08 * height}" fill="hsl(${hue(3)},40%,85%)"/>
  </svg>`;
  return sharp(Buffer.from(svg)).jpeg({ quality: 88 }).toBuffer();
}

/** A paragraph of `sentences` sentences in the demo captions' words: past 248 tokens at 40. */
export function longParagraph(sentences = 40): string {
  const shapes = ["circle", "square", "triangle", "star", "hexagon", "diamond", "pentagon"];
  const colours = ["red", "blue", "green", "orange", "white", "black", "yellow", "cyan"];
  const places = ["top left corner", "bottom right corner", "centre", "left side", "right side"];
  return Array.from({ length: sentences }, (_, i) => {
    const shape = shapes[i % shapes.length];
    const colour = colours[(i * 3) % colours.length];
    const place = places[(i * 2) % places.length];
    return `A small ${colour} ${shape} sits in the ${place} of the picture.`;
  }).join(" ");
}

/** Noise-free RGB pixels from a function of (x, y), as a PNG or JPEG made by sharp. */
function drawn(
  width: number,
  height: number,
  channels: 1 | 3 | 4,
  pixel: (x: number, y: number) => number[],
): Sharp {
  const data = Buffer.alloc(width * height * channels);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) data.set(pixel(x, y), (y * width + x) * channels);
  }
  return sharp(data, { raw: { width, height, channels } });
}

/**
 * Test images of the kinds and sizes the API tests need, made here: `hopper.jpg` (a small
 * photo-like JPEG), `gradient.jpg`, `grayscale.png` (one channel), `rgba.png` (with alpha),
 * `shapes.png` (portrait), `panorama.png` (5:1), `tiny.png` (20×30) and `demo.png` (800×600).
 */
export const SAMPLE_IMAGES: Readonly<Record<string, Buffer>> = {
  "hopper.jpg": await photoJpeg(11, 128, 128),
  "gradient.jpg": await drawn(640, 480, 3, (x, y) => [x / 2.6, y / 1.9, 255 - x / 2.6])
    .jpeg({ quality: 90 })
    .toBuffer(),
  "grayscale.png": await drawn(300, 300, 1, (x, y) => [((x >> 4) + (y >> 4)) % 2 ? 220 : 40])
    .png()
    .toBuffer(),
  "rgba.png": await drawn(256, 256, 4, (x, y) => [x, y, 255 - x, (x + y) >> 1])
    .png()
    .toBuffer(),
  "shapes.png": await sharp(
    Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" width="360" height="540">
      <rect width="100%" height="100%" fill="#f4efe1"/>
      <circle cx="120" cy="140" r="80" fill="#d22"/>
      <rect x="180" y="300" width="140" height="140" fill="#25c"/>
      <polygon points="60,500 160,330 260,500" fill="#2a4"/>
    </svg>`),
  )
    .png()
    .toBuffer(),
  "panorama.png": await drawn(900, 180, 3, (x, y) => [
    (x * 7) % 256,
    (y * 13 + x) % 256,
    (x * y) % 256,
  ])
    .png()
    .toBuffer(),
  "tiny.png": await drawn(20, 30, 3, (x, y) => [x * 12, y * 8, 128])
    .png()
    .toBuffer(),
  "demo.png": await sharp(await photoJpeg(5, 800, 600))
    .png()
    .toBuffer(),
};

/** One of SAMPLE_IMAGES by name. */
export function sampleImage(name: string): Buffer {
  const bytes = SAMPLE_IMAGES[name];
  if (bytes === undefined) throw new Error(`no sample image ${name}`);
  return bytes;
}
