/**
 * The one place preprocessing options are made: from the model's config (the input size and
 * normalisation its vision tower expects) and the settings (mode, limits, JPEG decoder).
 */
import type { Settings } from "../core/settings.ts";
import type { ModelConfig } from "../model/format.ts";
import type { PreprocessOptions } from "./types.ts";

export type PreprocessSettings = Pick<Settings, "maxImageBytes" | "maxImagePixels"> &
  Partial<Pick<Settings, "preprocess" | "nativeJpeg">>;

/** What preprocessing gives a model's vision tower under these settings (`exact` unless set). */
export function preprocessOptions(
  config: Pick<ModelConfig, "image_resolution" | "image_mean" | "image_std">,
  settings: PreprocessSettings,
): PreprocessOptions {
  return {
    mode: settings.preprocess ?? "exact",
    resolution: config.image_resolution,
    mean: config.image_mean,
    std: config.image_std,
    maxImageBytes: settings.maxImageBytes,
    maxImagePixels: settings.maxImagePixels,
    ...(settings.nativeJpeg !== undefined ? { nativeJpeg: settings.nativeJpeg } : {}),
  };
}
