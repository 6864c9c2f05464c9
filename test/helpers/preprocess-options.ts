/** Preprocessing options of a 224-pixel CLIP model with the default limits. */
import { DEFAULT_SETTINGS } from "../../src/core/settings.ts";
import type { PreprocessOptions } from "../../src/preprocess/types.ts";

export const CLIP_224: PreprocessOptions = {
  resolution: 224,
  mean: [0.48145466, 0.4578275, 0.40821073],
  std: [0.26862954, 0.26130258, 0.27577711],
  maxImageBytes: DEFAULT_SETTINGS.maxImageBytes,
  maxImagePixels: DEFAULT_SETTINGS.maxImagePixels,
};
