import type { ImageLimits } from "../core/settings.ts";
import type { Box } from "../core/types.ts";

/**
 * `exact`: the official pipeline's pixels (Pillow bicubic on the full decoded image).
 * `fast`: libvips shrinks JPEG/WebP while decoding and resizes with its cubic kernel.
 */
export type PreprocessMode = "exact" | "fast";

/** The preprocessing stage: encoded image bytes → normalised CHW float32 pixels. */
export interface PreprocessOptions extends ImageLimits {
  /** `exact` unless given. */
  mode?: PreprocessMode;
  /** The nativeJpeg setting: `on` (the default) decodes plain JPEGs natively when built. */
  nativeJpeg?: "on" | "off";
  resolution: number;
  mean: readonly [number, number, number];
  std: readonly [number, number, number];
}

export interface PreprocessedImage {
  /** Float32 C×H×W, `resolution` square, normalised with mean/std. */
  pixels: Float32Array;
  /** Size of the decoded image after EXIF orientation. */
  width: number;
  height: number;
  /** Detected container format: jpeg, png, webp, gif, avif, tiff, ... */
  format: string;
  /** Crops asked for with `auto` regions (./regions.ts): each box and its model input. */
  regions?: { box: Box; pixels: Float32Array }[];
}
