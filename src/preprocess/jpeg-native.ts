/**
 * The optional native JPEG decoder (src/preprocess/jpeg-native/decode.c, built into
 * build/jpeg-native.node by scripts/build-native.mjs): the system's libjpeg-turbo, called
 * without libvips' per-image overhead. It is an accelerator only: without it, or with
 * LONGCLIP_NATIVE_JPEG=off, sharp decodes every image and the output is the same bytes.
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import sharp, { type Sharp } from "sharp";
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

/**
 * The JPEG shrink-on-load factor sharp 0.35 picks for a resize by these factors (its
 * pipeline.cc, with fastShrinkOnLoad): the largest of 8, 4, 2 not above the smaller factor,
 * halved when the factor's integer part equals it ("known libjpeg rounding errors").
 */
export function jpegShrinkOnLoad(hshrink: number, vshrink: number): 1 | 2 | 4 | 8 {
  const shrink = Math.min(hshrink, vshrink);
  const factor = shrink >= 8 ? 8 : shrink >= 4 ? 4 : shrink >= 2 ? 2 : 1;
  if (factor > 1 && Math.trunc(shrink) === factor) return (factor / 2) as 2 | 4;
  return factor;
}

/** The cubic resize of the fast path (src/preprocess/index.ts decodeScaled). */
export function fastResize(width: number, height: number) {
  return { width, height, fit: "fill", kernel: "cubic" } as const;
}

type Loaded = { decoder: NativeJpegDecoder | undefined; reason: string };

let loaded: Promise<Loaded> | undefined;

/** 8-bit RGB of a sharp pipeline. */
async function sharpPixels(pipeline: Sharp): Promise<Buffer> {
  return pipeline.toColourspace("srgb").raw({ depth: "uchar" }).toBuffer();
}

/**
 * Whether this build gives sharp's bytes: the system libjpeg must decode as the mozjpeg in
 * sharp's libvips does (both libjpeg-turbo code; another libjpeg, e.g. IJG's 9, upsamples and
 * scales differently). The tests cover more kinds of JPEG against this build. A noisy 4:2:0
 * JPEG, full size and through the fast path at 1/4 (shrink 6: sharp decodes at 1/4 too).
 */
export async function sameAsSharp(decoder: NativeJpegDecoder): Promise<boolean> {
  const [width, height] = [481, 361];
  const raw = Buffer.alloc(width * height * 3);
  for (let i = 0; i < raw.length; i++) raw[i] = ((i * 2654435761) >>> 24) ^ ((i % (width * 3)) / 4);
  const jpeg = await sharp(raw, { raw: { width, height, channels: 3 } })
    .jpeg()
    .toBuffer();
  const full = await decoder.decode(jpeg, 1, width * height);
  if (!full.data.equals(await sharpPixels(sharp(jpeg, { failOn: "error" })))) return false;
  const [w, h] = [Math.trunc(width / 6), Math.trunc(height / 6)];
  const quarter = await decoder.decode(
    jpeg,
    jpegShrinkOnLoad(width / w, height / h),
    width * height,
  );
  const native = sharp(quarter.data, {
    raw: { width: quarter.width, height: quarter.height, channels: 3 },
  }).resize(fastResize(w, h));
  const reference = sharp(jpeg, { failOn: "error" }).resize(fastResize(w, h));
  return (await sharpPixels(native)).equals(await sharpPixels(reference));
}

async function load(): Promise<Loaded> {
  if (!existsSync(NATIVE_JPEG_PATH)) {
    return { decoder: undefined, reason: "not built (npm run build:native)" };
  }
  let decoder: NativeJpegDecoder;
  try {
    decoder = createRequire(import.meta.url)(NATIVE_JPEG_PATH) as NativeJpegDecoder;
  } catch (error) {
    // e.g. libjpeg.so.62 missing at run time (apt-get install libjpeg62-turbo).
    const message = (error as Error).message.split("\n")[0] ?? "";
    return { decoder: undefined, reason: `failed to load: ${message}` };
  }
  try {
    if (!(await sameAsSharp(decoder))) {
      return { decoder: undefined, reason: "not used: its libjpeg decodes unlike sharp's" };
    }
  } catch (error) {
    return { decoder: undefined, reason: `failed its check: ${(error as Error).message}` };
  }
  return { decoder, reason: "loaded" };
}

/**
 * The native decoder when it is built, loads, decodes as sharp does (checked once per thread)
 * and the setting (`on` by default) allows it.
 */
export async function nativeJpegDecoder(
  setting: "on" | "off" | undefined,
): Promise<NativeJpegDecoder | undefined> {
  if (setting === "off") return undefined;
  loaded ??= load();
  return (await loaded).decoder;
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
export async function jpegDecoderDescription(setting: "on" | "off" | undefined): Promise<string> {
  if (setting === "off") return "sharp (nativeJpeg off)";
  loaded ??= load();
  const { decoder, reason } = await loaded;
  return decoder === undefined
    ? `sharp (native decoder ${reason})`
    : "native libjpeg-turbo for plain JPEGs, sharp for the rest";
}
