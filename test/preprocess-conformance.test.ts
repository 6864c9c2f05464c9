/**
 * Our preprocessing of the reference images against the official pixels (Long-CLIP's own
 * PIL + torchvision pipeline), with a per-image report of the differences.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { DEFAULT_SETTINGS } from "../src/core/settings.ts";
import { preprocessImage } from "../src/preprocess/index.ts";
import {
  loadReference,
  loadReferencePixels,
  SKIP_WITHOUT_SHARED,
  TINY_DIR,
} from "./helpers/reference.ts";

const MAX_MEAN_ABS_DIFF = 0.01;

test("reference images preprocess like the official pipeline", {
  skip: SKIP_WITHOUT_SHARED,
}, async () => {
  const reference = loadReference();
  const { mean, std, image_resolution: resolution } = reference.config;
  const options = {
    resolution,
    mean: mean as unknown as readonly [number, number, number],
    std: std as unknown as readonly [number, number, number],
    maxImageBytes: DEFAULT_SETTINGS.maxImageBytes,
    maxImagePixels: DEFAULT_SETTINGS.maxImagePixels,
  };
  assert.ok(reference.images.length > 0, "reference.json lists no images");
  const rows: Record<string, string | number>[] = [];
  const failures: string[] = [];
  for (const image of reference.images) {
    const bytes = readFileSync(path.join(TINY_DIR, "images", image.file));
    const expected = loadReferencePixels(image);
    const { pixels, width, height, format } = await preprocessImage(bytes, options);
    assert.equal(pixels.length, expected.length, `${image.file}: pixel count`);
    let sum = 0;
    let max = 0;
    let differing = 0;
    for (let i = 0; i < expected.length; i++) {
      const d = Math.abs((expected[i] as number) - (pixels[i] as number));
      sum += d;
      if (d > max) max = d;
      if (d > 0) differing++;
    }
    const meanAbs = sum / expected.length;
    rows.push({
      image: image.file,
      format,
      size: `${width}×${height}`,
      meanAbsDiff: meanAbs,
      maxAbsDiff: max,
      differingValues: differing,
    });
    if (!(meanAbs <= MAX_MEAN_ABS_DIFF)) failures.push(`${image.file}: mean abs diff ${meanAbs}`);
  }
  console.log("Preprocessing vs official pixels (normalised units):");
  console.table(rows);
  assert.deepEqual(failures, [], `mean abs difference above ${MAX_MEAN_ABS_DIFF}`);
});
