/** Photo-sized JPEGs for the ingest benchmark: smooth gradients plus noise, all different. */
import { mkdirSync } from "node:fs";
import path from "node:path";
import sharp from "sharp";
import { seededRandom } from "./vectors.ts";

/**
 * Writes `count` JPEGs of width×height into `dir` (quality 90, like a camera) and returns
 * their paths. Each has its own colour gradient and noise, so no two share a content hash.
 */
export async function writeSyntheticJpegs(
  dir: string,
  count: number,
  width: number,
  height: number,
  seed: number,
): Promise<string[]> {
  mkdirSync(dir, { recursive: true });
  const random = seededRandom(seed);
  const files: string[] = [];
  const raw = Buffer.alloc(width * height * 3);
  for (let n = 0; n < count; n++) {
    const base = [random() * 255, random() * 255, random() * 255];
    const slope = [random() - 0.5, random() - 0.5, random() - 0.5];
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const offset = (y * width + x) * 3;
        const t = (x / width + y / height) * 255;
        for (let c = 0; c < 3; c++) {
          const noise = (random() - 0.5) * 60;
          raw[offset + c] = Math.max(
            0,
            Math.min(255, (base[c] as number) + (slope[c] as number) * t + noise),
          );
        }
      }
    }
    const file = path.join(dir, `photo-${String(n).padStart(4, "0")}.jpg`);
    await sharp(raw, { raw: { width, height, channels: 3 } })
      .jpeg({ quality: 90 })
      .toFile(file);
    files.push(file);
  }
  return files;
}
