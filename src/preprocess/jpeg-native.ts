/**
 * The optional native JPEG decoder (src/preprocess/jpeg-native/decode.c, built into
 * build/jpeg-native.node by scripts/build-native.mjs): the system's libjpeg-turbo, called
 * without libvips' per-image overhead, and for the fast path the rest of sharp's cubic resize
 * (jpeg-native/resize.c). It is an accelerator only: without it, or with
 * LONGCLIP_NATIVE_JPEG=off, sharp decodes and resizes every image and the output is the same
 * bytes.
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import sharp, { type Sharp } from "sharp";
import { PROJECT_ROOT } from "../core/settings.ts";

/** Pixels as the addon returns them: 8-bit RGB, rows packed. */
export interface NativeJpegImage {
  data: Buffer;
  width: number;
  height: number;
  channels: 3;
}

/**
 * libvips' rows per region in the resize's vertical pass, which decide how sample positions
 * round: 10 when sharp reads a JPEG (the line cache after its vertical reduce), 16 for raw
 * pixels (the strips it writes memory in).
 */
export const REGION_ROWS = { jpeg: 10, raw: 16 } as const;

/** The addon's functions. */
export interface NativeJpegDecoder {
  /**
   * Decodes, scaled by 1 / scaleDenom. Given an output size, also resizes to it as sharp's
   * `resize(fastResize(outWidth, outHeight))` of the JPEG would, when the addon reproduces
   * that size change (each side kept or reduced by less than 4); otherwise the image comes
   * back unresized. Rejects with `code` "unsupported" (not a plain 8-bit YCbCr or greyscale
   * JPEG, or more than maxPixels) or "corrupt" (any libjpeg error or warning).
   */
  decode(
    bytes: Buffer,
    scaleDenom: 1 | 2 | 4 | 8,
    maxPixels: number,
    outWidth?: number,
    outHeight?: number,
  ): Promise<NativeJpegImage>;
  /**
   * That resize alone, of packed RGB pixels, on the calling thread (checks and tests);
   * regionRows: REGION_ROWS.raw reproduces sharp's resize of raw pixels. Throws a RangeError
   * for a size change it does not reproduce.
   */
  resize(
    pixels: Buffer,
    width: number,
    height: number,
    outWidth: number,
    outHeight: number,
    regionRows: number,
  ): Buffer;
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

type Loaded = { decoder: NativeJpegDecoder | undefined; reason: string; resizes: boolean };

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
  // Resizing the scaled decode as raw pixels gives the JPEG path's bytes here because this
  // reduction is by exactly 1.5 (no sample position falls half-way; see REGION_ROWS): the
  // check is of the decoder, and resizesAsSharp checks the resize.
  const native = sharp(quarter.data, {
    raw: { width: quarter.width, height: quarter.height, channels: 3 },
  }).resize(fastResize(w, h));
  const reference = sharp(jpeg, { failOn: "error" }).resize(fastResize(w, h));
  return (await sharpPixels(native)).equals(await sharpPixels(reference));
}

/** Noise, so that any rounding difference shows. */
function noise(length: number): Buffer {
  const pixels = Buffer.alloc(length);
  for (let i = 0; i < length; i++) pixels[i] = (i * 2654435761) >>> 24;
  return pixels;
}

/**
 * Whether the addon's resize gives sharp's bytes (it reproduces libvips' arithmetic, which a
 * sharp upgrade may change). A JPEG through the fast path: 164×590 to 33×192 decodes at 1/2
 * to 82×295, then reduces by 295 / 192 vertically, where some sample positions fall exactly
 * half-way between two of libvips' 64ths; and raw pixels reduced on both sides.
 */
export async function resizesAsSharp(decoder: NativeJpegDecoder): Promise<boolean> {
  const [width, height, w, h] = [164, 590, 33, 192];
  const jpeg = await sharp(noise(width * height * 3), { raw: { width, height, channels: 3 } })
    .jpeg()
    .toBuffer();
  const scale = jpegShrinkOnLoad(width / w, height / h);
  const native = await decoder.decode(jpeg, scale, width * height, w, h);
  const reference = await sharpPixels(sharp(jpeg, { failOn: "error" }).resize(fastResize(w, h)));
  if (native.width !== w || native.height !== h || !native.data.equals(reference)) return false;
  const [rawWidth, rawHeight, outWidth, outHeight] = [211, 97, 192, 61];
  const raw = noise(rawWidth * rawHeight * 3);
  const resized = decoder.resize(raw, rawWidth, rawHeight, outWidth, outHeight, REGION_ROWS.raw);
  const sharpResized = await sharpPixels(
    sharp(raw, { raw: { width: rawWidth, height: rawHeight, channels: 3 } }).resize(
      fastResize(outWidth, outHeight),
    ),
  );
  return resized.equals(sharpResized);
}

/** Reductions per side the addon's resize reproduces (resize.c MAX_FACTOR). */
const NATIVE_RESIZE_MAX_FACTOR = 4;

/**
 * Whether the addon's resize reproduces sharp's for this size change (resize.c
 * cubic_reduce_supported): each side kept, or reduced by a factor below 4.
 */
export function nativeResizeApplies(
  width: number,
  height: number,
  outWidth: number,
  outHeight: number,
): boolean {
  const side = (size: number, out: number) =>
    out >= 1 && (out === size || (out < size && size < NATIVE_RESIZE_MAX_FACTOR * out));
  return side(width, outWidth) && side(height, outHeight);
}

async function load(): Promise<Loaded> {
  if (!existsSync(NATIVE_JPEG_PATH)) {
    return { decoder: undefined, reason: "not built (npm run build:native)", resizes: false };
  }
  let decoder: NativeJpegDecoder;
  try {
    decoder = createRequire(import.meta.url)(NATIVE_JPEG_PATH) as NativeJpegDecoder;
  } catch (error) {
    // e.g. libjpeg.so.62 missing at run time (apt-get install libjpeg62-turbo).
    const message = (error as Error).message.split("\n")[0] ?? "";
    return { decoder: undefined, reason: `failed to load: ${message}`, resizes: false };
  }
  try {
    if (!(await sameAsSharp(decoder))) {
      return {
        decoder: undefined,
        reason: "not used: its libjpeg decodes unlike sharp's",
        resizes: false,
      };
    }
  } catch (error) {
    return {
      decoder: undefined,
      reason: `failed its check: ${(error as Error).message}`,
      resizes: false,
    };
  }
  let resizes = false;
  try {
    resizes = await resizesAsSharp(decoder);
  } catch {
    // An addon built before the resize (no resize function): sharp does the fast path.
  }
  return { decoder, reason: "loaded", resizes };
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

/**
 * The native decoder for the fast path, which must decode and resize: only when its resize
 * also gives this sharp's bytes (checked once per thread). Otherwise sharp does the fast path
 * from the file: its resize of raw pixels rounds some sample positions unlike its resize of a
 * JPEG (REGION_ROWS), so decoding here and resizing there would not give fast mode's bytes.
 */
export async function nativeJpegResizer(
  setting: "on" | "off" | undefined,
): Promise<NativeJpegDecoder | undefined> {
  if (setting === "off") return undefined;
  loaded ??= load();
  const { decoder, resizes } = await loaded;
  return resizes ? decoder : undefined;
}

const counts = { native: 0, declined: 0, resized: 0 };

/**
 * Images this thread decoded natively, plain JPEGs the decoder declined or failed on (sharp
 * decoded those), and fast-path images the addon also resized: tests and benchmarks check
 * which path ran.
 */
export function nativeJpegCounts(): { native: number; declined: number; resized: number } {
  return { ...counts };
}

/** Counts one native decode attempt, and whether the addon resized too (see nativeJpegCounts). */
export function countNativeJpeg(decoded: boolean, resized = false): void {
  if (decoded) counts.native++;
  else counts.declined++;
  if (resized) counts.resized++;
}

/** Which JPEG decoder preprocessing uses, for the startup log. */
export async function jpegDecoderDescription(setting: "on" | "off" | undefined): Promise<string> {
  if (setting === "off") return "sharp (nativeJpeg off)";
  loaded ??= load();
  const { decoder, reason, resizes } = await loaded;
  if (decoder === undefined) return `sharp (native decoder ${reason})`;
  return resizes
    ? "native libjpeg-turbo and fast-mode resize for plain JPEGs, sharp for the rest"
    : "native libjpeg-turbo for plain JPEGs in exact mode (sharp does fast mode: the native resize differs from this sharp's), sharp for the rest";
}
