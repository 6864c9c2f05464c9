/**
 * The PNG of a heat map over its image: the original turned upright by EXIF, scaled to fit a
 * square of `side` pixels (never enlarged), the scores coloured over the part of the image the
 * grid covers (blue low, red high, from the grid's min to its max), the rest dimmed.
 */
import sharp from "sharp";
import { heatColour } from "./colour.ts";
import type { HeatMap } from "./heat-map.ts";

/** Opacity of the colours over the covered part, and of the black over the rest. */
const HEAT_ALPHA = 0.55;
const DIM_ALPHA = 0.5;

/** The grid as rows×columns RGBA pixels, each score scaled from the grid's min to its max. */
export function heatPixels(map: HeatMap): Buffer {
  const span = map.max - map.min;
  const pixels = Buffer.alloc(map.rows * map.columns * 4);
  map.scores.forEach((score, p) => {
    const [r, g, b] = heatColour(span > 0 ? (score - map.min) / span : 0.5);
    pixels.set([r, g, b, Math.round(255 * HEAT_ALPHA)], p * 4);
  });
  return pixels;
}

export interface OverlayInput {
  bytes: Buffer;
  map: HeatMap;
  /** What the grid covers, in the original's (upright) pixels. */
  crop: { x: number; y: number; width: number; height: number };
  image: { width: number; height: number };
  side: number;
  maxImagePixels: number;
}

export async function overlayPng(input: OverlayInput): Promise<Buffer> {
  const { map, crop, image } = input;
  const scale = Math.min(1, input.side / Math.max(image.width, image.height));
  const width = Math.max(1, Math.round(image.width * scale));
  const height = Math.max(1, Math.round(image.height * scale));
  const left = Math.min(width - 1, Math.round(crop.x * scale));
  const top = Math.min(height - 1, Math.round(crop.y * scale));
  const cropWidth = Math.max(1, Math.min(width - left, Math.round(crop.width * scale)));
  const cropHeight = Math.max(1, Math.min(height - top, Math.round(crop.height * scale)));
  const heat = await sharp(heatPixels(map), {
    raw: { width: map.columns, height: map.rows, channels: 4 },
  })
    .resize(cropWidth, cropHeight, { fit: "fill", kernel: "cubic" })
    .extend({
      top,
      left,
      bottom: height - top - cropHeight,
      right: width - left - cropWidth,
      background: { r: 0, g: 0, b: 0, alpha: DIM_ALPHA },
    })
    .png()
    .toBuffer();
  // failOn "error" as ingest decodes: what ingest accepted, an overlay can show.
  return sharp(input.bytes, { limitInputPixels: input.maxImagePixels, failOn: "error" })
    .rotate()
    .resize(width, height, { fit: "fill" })
    .composite([{ input: heat, left: 0, top: 0 }])
    .png()
    .toBuffer();
}
