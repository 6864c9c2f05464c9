/**
 * The optional native JPEG decoder (src/preprocess/jpeg-native/decode.c, built into
 * build/jpeg-native.node by scripts/build-native.mjs): the system's libjpeg-turbo, called
 * without libvips' per-image overhead. It is an accelerator only: without it, or with
 * LONGCLIP_NATIVE_JPEG=off, sharp decodes every image and the output is the same bytes.
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { PROJECT_ROOT } from "../config.ts";

/** Pixels as the addon returns them: 8-bit RGB, rows packed. */
export interface NativeJpegImage {
  data: Buffer;
  width: number;
  height: number;
  channels: 3;
}

/**
 * The addon's one function. Rejects with `code` "unsupported" (not a plain 8-bit YCbCr or
 * greyscale JPEG, or more than maxPixels) or "corrupt" (any libjpeg error or warning).
 */
export interface NativeJpegDecoder {
  decode(bytes: Buffer, scaleDenom: 1 | 2 | 4 | 8, maxPixels: number): Promise<NativeJpegImage>;
}

export const NATIVE_JPEG_PATH = path.join(PROJECT_ROOT, "build", "jpeg-native.node");

let loaded: { decoder: NativeJpegDecoder | undefined; reason: string } | undefined;

function load(): { decoder: NativeJpegDecoder | undefined; reason: string } {
  if (loaded !== undefined) return loaded;
  if (!existsSync(NATIVE_JPEG_PATH)) {
    loaded = { decoder: undefined, reason: "not built (npm run build:native)" };
  } else {
    try {
      const decoder = createRequire(import.meta.url)(NATIVE_JPEG_PATH) as NativeJpegDecoder;
      loaded = { decoder, reason: "loaded" };
    } catch (error) {
      // e.g. libjpeg.so.62 missing at run time (apt-get install libjpeg62-turbo).
      const message = (error as Error).message.split("\n")[0] ?? "";
      loaded = { decoder: undefined, reason: `failed to load: ${message}` };
    }
  }
  return loaded;
}

/** The native decoder when it is built, loads, and the setting (`on` by default) allows it. */
export function nativeJpegDecoder(
  setting: "on" | "off" | undefined,
): NativeJpegDecoder | undefined {
  return setting === "off" ? undefined : load().decoder;
}

const counts = { native: 0, declined: 0 };

/**
 * Images this thread decoded natively, and plain JPEGs the decoder declined or failed on
 * (sharp decoded those): tests and benchmarks check which path ran.
 */
export function nativeJpegCounts(): { native: number; declined: number } {
  return { ...counts };
}

/** Counts one native decode attempt (see nativeJpegCounts). */
export function countNativeJpeg(decoded: boolean): void {
  if (decoded) counts.native++;
  else counts.declined++;
}

/** Which JPEG decoder preprocessing uses, for the startup log. */
export function jpegDecoderDescription(setting: "on" | "off" | undefined): string {
  if (setting === "off") return "sharp (nativeJpeg off)";
  const { decoder, reason } = load();
  return decoder === undefined
    ? `sharp (native decoder ${reason})`
    : "native libjpeg-turbo for plain JPEGs, sharp for the rest";
}
