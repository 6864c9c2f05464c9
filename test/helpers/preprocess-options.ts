/** Preprocessing options of a 224-pixel CLIP model with the default limits. */
import { DEFAULT_SETTINGS } from "../../src/core/settings.ts";
import { CLIP_IMAGE_MEAN, CLIP_IMAGE_STD } from "../../src/model/format.ts";
import type { PreprocessOptions } from "../../src/preprocess/types.ts";

export const CLIP_224: PreprocessOptions = {
  resolution: 224,
  mean: CLIP_IMAGE_MEAN,
  std: CLIP_IMAGE_STD,
  maxImageBytes: DEFAULT_SETTINGS.maxImageBytes,
  maxImagePixels: DEFAULT_SETTINGS.maxImagePixels,
};
