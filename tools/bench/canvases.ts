/**
 * Large canvases of small scenes, for bench:regions: each canvas holds 4–9 rendered scenes
 * (training.synth) at random sizes and random positions (not on a grid; no two overlap) on a
 * plain background of a random grey, written as a JPEG. A scene appears on one canvas only.
 */
import { readFile } from "node:fs/promises";
import sharp from "sharp";
import type { Box } from "../../src/core/types.ts";
import type { Scene } from "./search-extras.ts";

export interface Placement {
  scene: Scene;
  /** Where the scene is on its canvas, in the canvas' pixels. */
  box: Box;
}

export interface Canvas {
  name: string;
  width: number;
  height: number;
  placements: Placement[];
  jpeg: Buffer;
}

export interface CanvasShape {
  /** Scenes per canvas, from `min` to `max`. */
  min: number;
  max: number;
  /** Canvas sides, each drawn from `minSide` to `maxSide` pixels. */
  minSide: number;
  maxSide: number;
  /** A scene's side as a share of the canvas' short side, drawn from `small` to `large`. */
  small: number;
  large: number;
}

export const CANVAS_SHAPE: CanvasShape = {
  min: 4,
  max: 9,
  minSide: 720,
  maxSide: 1024,
  small: 0.16,
  large: 0.32,
};

function overlaps(a: Box, b: Box, gap: number): boolean {
  return (
    a.x < b.x + b.width + gap &&
    b.x < a.x + a.width + gap &&
    a.y < b.y + b.height + gap &&
    b.y < a.y + a.height + gap
  );
}

/**
 * Boxes for `count` square scenes on a `width` × `height` canvas: each side drawn at random,
 * each position drawn until it overlaps no earlier box (the side shrinks by a tenth after every
 * 200 misses, so a crowded canvas still fills).
 */
export function placeBoxes(
  count: number,
  width: number,
  height: number,
  shape: CanvasShape,
  random: () => number,
): Box[] {
  const short = Math.min(width, height);
  const boxes: Box[] = [];
  for (let i = 0; i < count; i++) {
    let side = Math.round(short * (shape.small + random() * (shape.large - shape.small)));
    for (let attempt = 1; ; attempt++) {
      const box = {
        x: Math.floor(random() * (width - side)),
        y: Math.floor(random() * (height - side)),
        width: side,
        height: side,
      };
      if (!boxes.some((other) => overlaps(box, other, 4))) {
        boxes.push(box);
        break;
      }
      if (attempt % 200 === 0) side = Math.max(16, Math.round(side * 0.9));
    }
  }
  return boxes;
}

/** Canvases of the scenes in order, `shape.min`–`shape.max` each, until the scenes run out. */
export async function makeCanvases(
  scenes: readonly Scene[],
  shape: CanvasShape,
  random: () => number,
): Promise<Canvas[]> {
  const draw = (lo: number, hi: number) => lo + Math.floor(random() * (hi - lo + 1));
  const canvases: Canvas[] = [];
  for (let next = 0; next + shape.min <= scenes.length; ) {
    const count = Math.min(draw(shape.min, shape.max), scenes.length - next);
    const width = draw(shape.minSide, shape.maxSide);
    const height = draw(shape.minSide, shape.maxSide);
    const boxes = placeBoxes(count, width, height, shape, random);
    const grey = draw(60, 200);
    const placements = boxes.map((box, k) => ({ scene: scenes[next + k] as Scene, box }));
    const layers = await Promise.all(
      placements.map(async ({ scene, box }) => ({
        input: await sharp(await readFile(scene.image))
          .resize(box.width, box.height, { kernel: "cubic" })
          .toBuffer(),
        left: box.x,
        top: box.y,
      })),
    );
    const jpeg = await sharp({
      create: { width, height, channels: 3, background: { r: grey, g: grey, b: grey } },
    })
      .composite(layers)
      .jpeg({ quality: 90 })
      .toBuffer();
    canvases.push({
      name: `canvas${String(canvases.length).padStart(4, "0")}`,
      width,
      height,
      placements,
      jpeg,
    });
    next += count;
  }
  return canvases;
}
