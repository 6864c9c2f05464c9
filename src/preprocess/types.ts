import type { ImageLimits } from "../config.ts";

/** The preprocessing stage: encoded image bytes → normalised CHW float32 pixels. */
export interface PreprocessOptions extends ImageLimits {
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
}
