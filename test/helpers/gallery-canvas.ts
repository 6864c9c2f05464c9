/**
 * Large images made of the demo model's gallery scenes (their captions known), for the tests of
 * regions: a grey canvas with scenes resized into given boxes.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import sharp from "sharp";
import type { Box } from "../../src/core/types.ts";
import { DEMO_MODEL_DIR } from "./demo-model.ts";

const GALLERY = path.join(DEMO_MODEL_DIR, "gallery");

/** The demo gallery's manifest: each scene's file and long caption. */
export const gallery = JSON.parse(readFileSync(path.join(GALLERY, "gallery.json"), "utf8")) as {
  items: { file: string; caption: string }[];
};

/** The bytes of gallery scene `i`. */
export function scene(i: number): Buffer {
  return readFileSync(path.join(GALLERY, gallery.items[i]?.file as string));
}

/** A `width` × `height` grey canvas with scenes (gallery indexes) drawn at the given boxes. */
export async function canvas(
  width: number,
  height: number,
  scenes: readonly { index: number; box: Box }[],
  format: "png" | "jpeg" = "png",
): Promise<Buffer> {
  const layers = await Promise.all(
    scenes.map(async ({ index, box }) => ({
      input: await sharp(scene(index)).resize(box.width, box.height).toBuffer(),
      left: box.x,
      top: box.y,
    })),
  );
  const grey = sharp({
    create: { width, height, channels: 3, background: { r: 128, g: 128, b: 128 } },
  }).composite(layers);
  return format === "png" ? grey.png().toBuffer() : grey.jpeg({ quality: 92 }).toBuffer();
}
