/** The one test of a Box (./types.ts) against the image it is in, for every layer that checks one. */
import type { Box } from "./types.ts";

/** True when `box` is whole pixels, at least 1×1, inside a `width` × `height` image. */
export function boxInside(box: Box, width: number, height: number): boolean {
  const { x, y } = box;
  return (
    [x, y, box.width, box.height].every((v) => Number.isSafeInteger(v)) &&
    x >= 0 &&
    y >= 0 &&
    box.width >= 1 &&
    box.height >= 1 &&
    x + box.width <= width &&
    y + box.height <= height
  );
}
