/**
 * Regions of large images: crops of the decoded image, each preprocessed like a whole image,
 * so that a thing too small to survive the shrink to the model's input can still be found.
 *
 * `auto` lays n×n grids over the image (n = 2, 3, then 4), each cell `width / n` × `height / n`,
 * with windows every half cell ((2n - 1)² windows). A grid is used only where its cells are at
 * least the model's input on their short side, so a crop is never enlarged: an image whose
 * short side is under twice the input size gets no regions, one under three times only the 2×2
 * grid. `max` bounds the crops per image (the index growth): a grid whose windows do not fit
 * keeps only its n² cells, else it and the finer grids are left out.
 *
 * Boxes are in the pixels of the image as shown (EXIF orientation applied), as the item's
 * width and height are.
 */
import sharp from "sharp";
import { boxInside } from "../core/box.ts";
import { AppError } from "../core/errors.ts";
import type { Box } from "../core/types.ts";
import { decodeForModel, decodeImage, toModelInput } from "./index.ts";
import { proposeBoxes } from "./region-proposals.ts";
import type { RawImage } from "./resample.ts";
import type { PreprocessedImage, PreprocessOptions } from "./types.ts";

/** The grids `auto` lays over an image, coarse first. */
export const REGION_GRIDS = [2, 3, 4] as const;

/**
 * What crops a request asks for: `auto` regions (at most `max`), the crops of given boxes, or
 * the `zoom` windows of the centred square (`zoomBoxes`).
 */
export type CropRequest =
  | { kind: "auto"; max: number }
  | { kind: "boxes"; boxes: Box[] }
  | { kind: "zoom"; zoom: number };

/** One crop: its box in the image's pixels and its model input. */
export interface RegionPixels {
  box: Box;
  pixels: Float32Array;
}

/** The windows of an n×n grid, half a cell apart (`overlap`) or the n² cells only. */
function gridBoxes(width: number, height: number, n: number, overlap: boolean): Box[] {
  const steps = overlap ? 2 * n - 1 : n;
  const stride = overlap ? 0.5 : 1;
  const boxes: Box[] = [];
  for (let row = 0; row < steps; row++) {
    for (let col = 0; col < steps; col++) {
      // Edges rounded from the exact fractions, so the cells of a grid tile the image.
      const left = Math.round((col * stride * width) / n);
      const top = Math.round((row * stride * height) / n);
      const right = Math.round(((col * stride + 1) * width) / n);
      const bottom = Math.round(((row * stride + 1) * height) / n);
      boxes.push({ x: left, y: top, width: right - left, height: bottom - top });
    }
  }
  return boxes;
}

/** The `auto` regions of a `width` × `height` image for a model of input size `resolution`. */
export function regionBoxes(width: number, height: number, resolution: number, max: number): Box[] {
  const boxes: Box[] = [];
  for (const n of REGION_GRIDS) {
    if (Math.min(width, height) < n * resolution) break;
    const room = max - boxes.length;
    const windows = (2 * n - 1) ** 2;
    if (windows <= room) boxes.push(...gridBoxes(width, height, n, true));
    else if (n * n <= room) boxes.push(...gridBoxes(width, height, n, false));
    else break;
  }
  return boxes;
}

/** At most this many of an image's `auto` regions are content-aware proposals. */
export const REGION_PROPOSALS = 12;
/** Proposals are computed on a copy of the image this many pixels on its long side. */
export const PROPOSAL_SIDE = 256;
/**
 * A proposal's short side is at least this share of the image's short side (and the model's
 * input): the sliding windows' count, the proposals' cost, grows as the smallest shrinks.
 */
export const PROPOSAL_MIN_SHARE = 0.1;
/** A proposal's side is at most this share of the image's side. */
export const PROPOSAL_MAX_SHARE = 0.6;
/** Proposals overlapping a better one by more than this IoU are dropped. */
export const PROPOSAL_NMS_IOU = 0.4;

/**
 * Up to `max` content-aware boxes of `image` (region-proposals.ts), best first, in its pixels,
 * each at least the model's input on its short side.
 */
export async function proposeRegions(
  image: RawImage,
  resolution: number,
  max: number,
): Promise<Box[]> {
  if (max <= 0) return [];
  const shrink = Math.min(1, PROPOSAL_SIDE / Math.max(image.width, image.height));
  const width = Math.max(1, Math.round(image.width * shrink));
  const height = Math.max(1, Math.round(image.height * shrink));
  const working = await resizedCopy(image, width, height);
  return proposeBoxes(working, image.width / width, image.width, image.height, {
    max,
    minSide: Math.max(
      resolution,
      Math.round(PROPOSAL_MIN_SHARE * Math.min(image.width, image.height)),
    ),
    maxShare: PROPOSAL_MAX_SHARE,
    nmsIou: PROPOSAL_NMS_IOU,
  });
}

/**
 * The `auto` regions of an image with its content-aware `proposals` (best first): as many
 * proposals as the cap `max` allows, then the grid windows that fit in the room left.
 */
export function autoRegionBoxes(
  width: number,
  height: number,
  resolution: number,
  max: number,
  proposals: readonly Box[],
): Box[] {
  const chosen = proposals.slice(0, Math.max(0, max));
  return [...chosen, ...regionBoxes(width, height, resolution, max - chosen.length)];
}

/**
 * The windows POST /explain reads of a `width` × `height` image at `zoom` n ≥ 2: the centred
 * square the model sees, cut in an n×n grid, with windows every half cell ((2n − 1)² boxes,
 * none for n < 2, or when the square is under 2n pixels: half a cell would be under a pixel).
 * Edges are rounded from the exact fractions, so neighbours share them.
 */
export function zoomBoxes(width: number, height: number, zoom: number): Box[] {
  const side = Math.min(width, height);
  if (zoom < 2 || side < 2 * zoom) return [];
  const square = gridBoxes(side, side, zoom, true);
  const x = Math.floor((width - side) / 2);
  const y = Math.floor((height - side) / 2);
  return square.map((box) => ({ ...box, x: box.x + x, y: box.y + y }));
}

/** Refuses (400 invalid_box) a box that is not whole positive pixels inside the image. */
export function checkBox(box: Box, width: number, height: number): void {
  if (!boxInside(box, width, height)) {
    throw new AppError(
      "invalid_box",
      `The box ${JSON.stringify(box)} is not inside the ${width}×${height} image: give whole pixels with x, y ≥ 0, width, height ≥ 1, x + width ≤ ${width} and y + height ≤ ${height}.`,
      { box, width, height },
    );
  }
}

/** A copy of `box` of a raw image. */
export function cropRaw<T extends RawImage>(image: T, box: Box): T {
  const { channels } = image;
  const data = new Uint8Array(box.width * box.height * channels);
  const rowBytes = box.width * channels;
  for (let row = 0; row < box.height; row++) {
    const start = ((box.y + row) * image.width + box.x) * channels;
    data.set(image.data.subarray(start, start + rowBytes), row * rowBytes);
  }
  return { ...image, data, width: box.width, height: box.height };
}

/**
 * The image the crops are cut from: the decoded image, shrunk (libvips, cubic) where even the
 * smallest box would keep more than twice the model's input on its short side, since the
 * resampler's cost grows with the pixels it reads. Returns it and its scale to the original.
 */
async function workingImage<T extends RawImage>(
  image: T,
  boxes: readonly Box[],
  resolution: number,
): Promise<{ image: T; scale: number }> {
  const smallest = Math.min(...boxes.map((b) => Math.min(b.width, b.height)));
  const scale = (2 * resolution) / smallest;
  if (scale >= 1) return { image, scale: 1 };
  const width = Math.max(1, Math.round(image.width * scale));
  const height = Math.max(1, Math.round(image.height * scale));
  return { image: await resizedCopy(image, width, height), scale: width / image.width };
}

/** `image` resized to `width` × `height` (bicubic, aspect not kept), its other fields kept. */
async function resizedCopy<T extends RawImage>(
  image: T,
  width: number,
  height: number,
): Promise<T> {
  const raw = { width: image.width, height: image.height, channels: image.channels as 3 | 4 };
  const data = await sharp(image.data, { raw })
    .resize(width, height, { kernel: "cubic", fit: "fill" })
    .raw()
    .toBuffer();
  return {
    ...image,
    data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    width,
    height,
  };
}

/** `box` of the original in the pixels of an image `scale` times its size, at least 1×1. */
function scaleBox(box: Box, scale: number, width: number, height: number): Box {
  if (scale === 1) return box;
  const x = Math.min(width - 1, Math.round(box.x * scale));
  const y = Math.min(height - 1, Math.round(box.y * scale));
  return {
    x,
    y,
    width: Math.max(1, Math.min(width - x, Math.round(box.width * scale))),
    height: Math.max(1, Math.min(height - y, Math.round(box.height * scale))),
  };
}

async function cropsOf<T extends RawImage & { nearest?: boolean }>(
  image: T,
  boxes: readonly Box[],
  options: PreprocessOptions,
): Promise<RegionPixels[]> {
  const working = await workingImage(image, boxes, options.resolution);
  return boxes.map((box) => {
    const scaled = scaleBox(box, working.scale, working.image.width, working.image.height);
    return { box, pixels: toModelInput(cropRaw(working.image, scaled), options) };
  });
}

/**
 * Preprocesses `bytes` as preprocessImage does, plus crops: for `auto`, the image's regions
 * (none for a small image); for `boxes`, those boxes (400 invalid_box for one that is not
 * inside the image).
 */
export async function preprocessWithCrops(
  bytes: Buffer,
  options: PreprocessOptions,
  crops: CropRequest,
): Promise<PreprocessedImage> {
  const image = await decodeForModel(bytes, options);
  const whole: PreprocessedImage = {
    pixels: toModelInput(image, options),
    width: image.sourceWidth,
    height: image.sourceHeight,
    format: image.format,
  };
  const given =
    crops.kind === "boxes"
      ? crops.boxes
      : crops.kind === "zoom"
        ? zoomBoxes(whole.width, whole.height, crops.zoom)
        : undefined;
  for (const box of given ?? []) checkBox(box, whole.width, whole.height);
  if (given?.length === 0) return whole;
  if (
    crops.kind === "auto" &&
    (crops.max <= 0 || Math.min(whole.width, whole.height) < 2 * options.resolution)
  ) {
    return whole;
  }
  // The exact path decoded the full image already; the fast one a smaller one.
  const full =
    image.width === image.sourceWidth && image.height === image.sourceHeight
      ? image
      : await decodeImage(bytes, options);
  const boxes =
    crops.kind !== "auto"
      ? (given ?? [])
      : autoRegionBoxes(
          whole.width,
          whole.height,
          options.resolution,
          crops.max,
          await proposeRegions(full, options.resolution, Math.min(crops.max, REGION_PROPOSALS)),
        );
  return { ...whole, regions: await cropsOf(full, boxes, options) };
}
