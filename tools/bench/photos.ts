/**
 * Photo-like test images for the preprocessing benchmark. The gradient-plus-noise JPEGs of
 * ./images.ts cost realistic decode time but have no structure, so they say little about
 * how far a cheaper resize drifts from the exact one. These have what photos have: detail at
 * every scale with a roughly 1/f amplitude spectrum (octaves of smooth value noise, each
 * octave's amplitude growing with its scale), hard edges (filled shapes and lines) and fine
 * high-contrast detail (text), drawn with sharp (libvips, librsvg). Seeded: the same files
 * every run.
 */
import { mkdirSync } from "node:fs";
import path from "node:path";
import sharp, { type Sharp } from "sharp";
import { seededRandom } from "./vectors.ts";

export interface PhotoSpec {
  width: number;
  height: number;
  format: "jpeg" | "webp" | "png";
  /** EXIF orientation to record (the pixels are stored turned accordingly); 1 by default. */
  orientation?: number;
}

/** Raw 8-bit RGB pixels of a photo-like scene. */
export async function photoLikePixels(
  width: number,
  height: number,
  seed: number,
): Promise<Buffer> {
  const random = seededRandom(seed);
  const sum = new Float32Array(width * height * 3);
  // Octaves from a cell of half the long side down to 2 pixels.
  for (let cell = 2 ** Math.floor(Math.log2(Math.max(width, height) / 2)); cell >= 2; cell /= 2) {
    const gw = Math.ceil(width / cell) + 1;
    const gh = Math.ceil(height / cell) + 1;
    const grid = Buffer.alloc(gw * gh * 3);
    // Mostly luminance with some chroma, as in natural scenes.
    for (let i = 0; i < gw * gh; i++) {
      const luma = random() * 255;
      for (let c = 0; c < 3; c++) {
        grid[i * 3 + c] = Math.round(0.75 * luma + 0.25 * random() * 255);
      }
    }
    const up = await sharp(grid, { raw: { width: gw, height: gh, channels: 3 } })
      .resize({ width: gw * cell, height: gh * cell, kernel: "cubic", fit: "fill" })
      .extract({ left: 0, top: 0, width, height })
      .raw()
      .toBuffer();
    // Slightly flatter than 1/f (cell^0.6): more fine texture than most photos, so the
    // comparison of resizes errs on the hard side.
    const amplitude = cell ** 0.6;
    for (let i = 0; i < sum.length; i++)
      sum[i] = (sum[i] as number) + (up[i] as number) * amplitude;
  }
  let lo = Number.POSITIVE_INFINITY;
  let hi = Number.NEGATIVE_INFINITY;
  for (const v of sum) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  const texture = Buffer.alloc(sum.length);
  for (let i = 0; i < sum.length; i++) {
    texture[i] = Math.round((((sum[i] as number) - lo) / (hi - lo)) * 235 + 10);
  }
  const colour = () =>
    `rgb(${Math.floor(random() * 256)},${Math.floor(random() * 256)},${Math.floor(random() * 256)})`;
  const shapes: string[] = [];
  const scale = Math.min(width, height);
  for (let i = 0; i < 40; i++) {
    const x = random() * width;
    const y = random() * height;
    const size = scale * (0.01 + random() ** 2 * 0.25);
    const opacity = (0.5 + random() * 0.5).toFixed(2);
    switch (i % 4) {
      case 0:
        shapes.push(
          `<circle cx="${x}" cy="${y}" r="${size / 2}" fill="${colour()}" opacity="${opacity}"/>`,
        );
        break;
      case 1:
        shapes.push(
          `<rect x="${x}" y="${y}" width="${size}" height="${size * (0.3 + random())}" fill="${colour()}" opacity="${opacity}" transform="rotate(${random() * 90} ${x} ${y})"/>`,
        );
        break;
      case 2:
        shapes.push(
          `<line x1="${x}" y1="${y}" x2="${random() * width}" y2="${random() * height}" stroke="${colour()}" stroke-width="${1 + random() * 6}"/>`,
        );
        break;
      default:
        shapes.push(
          `<text x="${x}" y="${y}" font-size="${8 + random() * scale * 0.06}" font-family="sans-serif" fill="${colour()}">Long-CLIP ${seed}-${i}</text>`,
        );
    }
  }
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">${shapes.join("")}</svg>`;
  return sharp(texture, { raw: { width, height, channels: 3 } })
    .composite([{ input: Buffer.from(svg), left: 0, top: 0 }])
    .removeAlpha()
    .raw()
    .toBuffer();
}

/** EXIF orientation 6 means "turn 90° clockwise to display": store the scene turned back. */
function storedPixels(image: Sharp, orientation: number): Sharp {
  if (orientation === 6) return image.rotate(-90);
  if (orientation === 8) return image.rotate(90);
  if (orientation === 3) return image.rotate(180);
  return image;
}

/** Writes one file per spec into `dir` (JPEG/WebP quality 90) and returns the paths. */
export async function writePhotoLikeImages(
  dir: string,
  specs: readonly PhotoSpec[],
  seed: number,
): Promise<string[]> {
  mkdirSync(dir, { recursive: true });
  const files: string[] = [];
  for (const [n, spec] of specs.entries()) {
    const raw = await photoLikePixels(spec.width, spec.height, seed + n);
    const orientation = spec.orientation ?? 1;
    // Rotation happens in a pipeline of its own: sharp applies rotate before the encoder.
    const turned = await storedPixels(
      sharp(raw, { raw: { width: spec.width, height: spec.height, channels: 3 } }),
      orientation,
    )
      .raw()
      .toBuffer({ resolveWithObject: true });
    let image = sharp(turned.data, {
      raw: { width: turned.info.width, height: turned.info.height, channels: 3 },
    });
    if (orientation !== 1) image = image.withMetadata({ orientation });
    const name = `photo-${String(n).padStart(2, "0")}-${spec.width}x${spec.height}${orientation !== 1 ? `-o${orientation}` : ""}`;
    const ext = spec.format === "jpeg" ? "jpg" : spec.format;
    const file = path.join(dir, `${name}.${ext}`);
    if (spec.format === "jpeg") await image.jpeg({ quality: 90 }).toFile(file);
    else if (spec.format === "webp") await image.webp({ quality: 90 }).toFile(file);
    else await image.png().toFile(file);
    files.push(file);
  }
  return files;
}
