/**
 * Encoded image bytes → the vision tower's input, reproducing the official Long-CLIP
 * preprocessing (torchvision `Resize(R, BICUBIC)`, `CenterCrop(R)`, `convert("RGB")`,
 * `ToTensor`, `Normalize(mean, std)` on a PIL image) as exactly as we can:
 *
 * - decoding is sharp's (libvips); the short side is resized to R with a Pillow-exact bicubic
 *   resampler (./resample.ts), the long side to `int(R * long / short)` as torchvision does;
 * - the centre crop offset is `round((size - R) / 2)` with Python's round-half-to-even;
 * - images with an alpha channel are resized premultiplied and un-premultiplied afterwards,
 *   because Pillow's `resize` does that for RGBA/LA images; `convert("RGB")` then just drops
 *   alpha (no compositing on a background), and so do we. So the colour under transparent
 *   pixels survives only when no resize happens; after a resize, fully transparent areas are
 *   black, in the official pipeline as here;
 * - grey images become three equal channels, as `convert("RGB")` makes them;
 * - palette images (indexed PNG, GIF) and 1-bit PNGs are resized with nearest neighbour:
 *   Pillow silently replaces the bicubic filter for its "P" and "1" modes;
 * - scaling and normalisation are done in float32 steps like torch (x / 255, then
 *   (x - mean) / std).
 *
 * `mode: "fast"` trades exactness for speed: libvips shrinks while decoding and does the
 * resize (see decodeScaled); everything else above holds for it too.
 *
 * Plain JPEGs (8-bit YCbCr or greyscale, no EXIF rotation, no ICC profile) are decoded by the
 * optional native libjpeg-turbo addon (./jpeg-native.ts) when it is built, in both modes: its
 * output is byte-identical to sharp's (test/jpeg-native.test.ts) at a fraction of the CPU.
 * Anything it declines or fails on goes to sharp, whose answer (pixels or error) stands.
 *
 * Deliberate differences from the official code:
 * - EXIF orientation is applied (the official code ignores it, so a phone photo taken in
 *   portrait would be embedded lying on its side); width/height are reported after rotation;
 * - CMYK images go through sharp's colour management to sRGB (Pillow uses a naive formula);
 * - 16-bit PNGs are scaled to 8 bits (Pillow keeps the high byte of 16-bit RGB, and clips
 *   16-bit grey, which its "I" mode holds, to 0..255);
 * - transparent pixels of GIFs come out as sharp decodes them, not as the palette colour.
 */
import sharp, { type Metadata, type Sharp } from "sharp";
import { AppError } from "../core/errors.ts";
import type { ImageLimits } from "../core/settings.ts";
import {
  countNativeJpeg,
  fastResize,
  jpegShrinkOnLoad,
  type NativeJpegDecoder,
  nativeJpegDecoder,
  nativeJpegResizer,
  nativeResizeApplies,
} from "./jpeg-native.ts";
import { type RawImage, resizeBicubic, resizeNearest } from "./resample.ts";
import type { PreprocessedImage, PreprocessOptions } from "./types.ts";

export { jpegShrinkOnLoad } from "./jpeg-native.ts";
export { axisCoefficients, type RawImage, resizeBicubic, resizeNearest } from "./resample.ts";
export type { PreprocessedImage, PreprocessMode, PreprocessOptions } from "./types.ts";

/** sharp's format name → the name we report; anything else is refused as unsupported. */
const ACCEPTED_FORMATS: Record<string, string> = {
  jpeg: "jpeg",
  png: "png",
  webp: "webp",
  gif: "gif",
  heif: "avif",
  tiff: "tiff",
};

const SUPPORTED_LIST = "JPEG, PNG, WebP, GIF, AVIF or TIFF";

/** Output size of torchvision's `Resize(size)` with an int size: short side → size. */
export function resizedSize(
  width: number,
  height: number,
  size: number,
): { width: number; height: number } {
  if (width <= height) return { width: size, height: Math.trunc((size * height) / width) };
  return { width: Math.trunc((size * width) / height), height: size };
}

/** Python's round(): halves go to the even neighbour. */
function roundHalfEven(value: number): number {
  const floor = Math.floor(value);
  const fraction = value - floor;
  if (fraction > 0.5) return floor + 1;
  if (fraction < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

/** torchvision `CenterCrop` offset: `int(round((size - crop) / 2.0))`. */
export function centerCropOffset(size: number, crop: number): number {
  return roundHalfEven((size - crop) / 2);
}

/** Pillow's RGBA → RGBa: c * a / 255 with its rounding ((t >> 8) + t) >> 8, t = c * a + 128. */
function premultiply(image: RawImage): void {
  const { data } = image;
  for (let i = 0; i < data.length; i += 4) {
    const alpha = data[i + 3] as number;
    if (alpha === 255) continue;
    for (let c = 0; c < 3; c++) {
      const t = (data[i + c] as number) * alpha + 128;
      data[i + c] = ((t >> 8) + t) >> 8;
    }
  }
}

/** Pillow's RGBa → RGBA: c * 255 / a (integer division, clipped); a of 0 or 255 leaves c as is. */
function unpremultiply(image: RawImage): void {
  const { data } = image;
  for (let i = 0; i < data.length; i += 4) {
    const alpha = data[i + 3] as number;
    if (alpha === 255 || alpha === 0) continue;
    for (let c = 0; c < 3; c++) {
      data[i + c] = Math.min(255, Math.trunc(((data[i + c] as number) * 255) / alpha));
    }
  }
}

function decodeError(error: unknown, limits: ImageLimits): AppError {
  const message = error instanceof Error ? error.message : String(error);
  if (/pixel limit/i.test(message)) {
    return new AppError(
      "image_too_many_pixels",
      `The decoded image has more than ${limits.maxImagePixels} pixels (maxImagePixels); send a smaller image.`,
      { limit: limits.maxImagePixels },
    );
  }
  if (/unsupported image format/i.test(message)) {
    return new AppError(
      "unsupported_image",
      `The bytes are not an image in a supported format; send ${SUPPORTED_LIST}.`,
    );
  }
  // libvips repeats its decoder's complaints line by line; the first line says it.
  const reason = (message.split("\n")[0] ?? "").replace(/:\s*$/, "").trim();
  return new AppError(
    "image_corrupt",
    `The image could not be decoded (corrupt or truncated: ${reason}). Re-export or re-upload the file.`,
  );
}

/**
 * Decodes `bytes` and returns the model input: float32 C×R×R pixels normalised with the
 * model's mean/std. Throws AppError: image_empty, image_too_large, image_too_many_pixels,
 * unsupported_image, image_corrupt.
 */
export async function preprocessImage(
  bytes: Buffer,
  options: PreprocessOptions,
): Promise<PreprocessedImage> {
  const image = await decodeForModel(bytes, options);
  const pixels = toModelInput(image, options);
  return { pixels, width: image.sourceWidth, height: image.sourceHeight, format: image.format };
}

/** Decoded 8-bit sRGB image (3 channels, or 4 with alpha), EXIF orientation applied. */
export interface DecodedImage extends RawImage {
  format: string;
  /** Pillow opens it as a palette or bilevel image and so resizes it with nearest neighbour. */
  nearest: boolean;
  /** Size of the encoded image after EXIF orientation (the fast path decodes it smaller). */
  sourceWidth: number;
  sourceHeight: number;
}

/**
 * Decodes for the model: the full image in exact mode (toModelInput then resizes it), the
 * image already resized to `Resize(R)`'s size in fast mode where the fast path applies.
 */
export async function decodeForModel(
  bytes: Buffer,
  options: PreprocessOptions,
): Promise<DecodedImage> {
  const header = await inspectImage(bytes, options);
  if (options.mode === "fast" && usesFastPath(header, options.resolution)) {
    return decodeScaled(bytes, options, header, options.resolution);
  }
  return decodeFull(bytes, options, header);
}

/** What the header says, after the limits were checked. */
interface ImageHeader {
  format: string;
  /** Size after EXIF orientation. */
  width: number;
  height: number;
  nearest: boolean;
  /**
   * The native decoder reproduces sharp's pixels for it: a JPEG without EXIF rotation or ICC
   * profile (sharp would rotate or colour-manage it), 8-bit YCbCr or greyscale.
   */
  plainJpeg: boolean;
}

/**
 * The fast path is for downscaling bicubic images: palette and bilevel images keep Pillow's
 * nearest neighbour, and images no larger than the model's input (upscaled or unchanged)
 * cost little the exact way.
 */
function usesFastPath(header: ImageHeader, resolution: number): boolean {
  return !header.nearest && Math.min(header.width, header.height) > resolution;
}

/** Checks the limits, then decodes with sharp to raw 8-bit sRGB pixels. */
export async function decodeImage(bytes: Buffer, limits: ImageLimits): Promise<DecodedImage> {
  return decodeFull(bytes, limits, await inspectImage(bytes, limits));
}

/** Reads the header and checks bytes, format and pixel count before anything is decoded. */
async function inspectImage(bytes: Buffer, limits: ImageLimits): Promise<ImageHeader> {
  if (bytes.length === 0) {
    throw new AppError("image_empty", "The image is empty (0 bytes); send the image file's bytes.");
  }
  if (bytes.length > limits.maxImageBytes) {
    throw new AppError(
      "image_too_large",
      `The image is ${bytes.length} bytes; the limit is ${limits.maxImageBytes} (maxImageBytes). Send a smaller file.`,
      { bytes: bytes.length, limit: limits.maxImageBytes },
    );
  }
  let metadata: Metadata;
  try {
    // Header only: the pixel count is checked before anything is decoded.
    metadata = await sharp(bytes, { limitInputPixels: false }).metadata();
  } catch (error) {
    throw decodeError(error, limits);
  }
  const format = ACCEPTED_FORMATS[metadata.format ?? ""];
  if (format === undefined || (format === "avif" && metadata.compression !== "av1")) {
    const found = metadata.format === "heif" ? `heif/${metadata.compression}` : metadata.format;
    throw new AppError(
      "unsupported_image",
      `Image format "${found}" is not supported; send ${SUPPORTED_LIST}.`,
      { format: found },
    );
  }
  const width = metadata.width ?? 0;
  const height = metadata.height ?? 0;
  if (width * height > limits.maxImagePixels) {
    throw new AppError(
      "image_too_many_pixels",
      `The image is ${width}×${height} = ${width * height} pixels; the limit is ${limits.maxImagePixels} (maxImagePixels). Send a smaller image.`,
      { width, height, limit: limits.maxImagePixels },
    );
  }
  return {
    format,
    width: metadata.autoOrient?.width ?? width,
    height: metadata.autoOrient?.height ?? height,
    nearest:
      format === "gif" ||
      (format === "png" && (metadata.isPalette || metadata.bitsPerSample === 1)),
    plainJpeg:
      format === "jpeg" &&
      (metadata.orientation ?? 1) === 1 &&
      !metadata.hasProfile &&
      metadata.depth === "uchar" &&
      ((metadata.space === "srgb" && metadata.channels === 3) ||
        (metadata.space === "b-w" && metadata.channels === 1)),
  };
}

/** sharp for one image: the first page/frame, failing on truncated data, within the limit. */
function openImage(bytes: Buffer, limits: ImageLimits): Sharp {
  return sharp(bytes, {
    // EXIF orientation, applied in the constructor: a .rotate() call would keep libvips from
    // shrinking on load (6× the CPU for a rotated phone photo in fast mode).
    autoOrient: true,
    // 'error' also fails on truncated data, which libvips would otherwise fill with grey.
    failOn: "error",
    limitInputPixels: limits.maxImagePixels,
    page: 0,
    pages: 1,
  });
}

/** Raw sharp output as an 8-bit RGB or RGBA image. */
async function rawImage(pipeline: Sharp): Promise<RawImage> {
  const { data, info } = await pipeline
    .toColourspace("srgb")
    .raw({ depth: "uchar" })
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== 3 && info.channels !== 4) {
    throw new Error(`unexpected ${info.channels} channels after conversion to sRGB`);
  }
  return {
    data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    width: info.width,
    height: info.height,
    channels: info.channels,
  };
}

/**
 * The native decoder's pixels of a plain JPEG, scaled by 1 / scaleDenom the way libvips'
 * shrink-on-load scales and, given `resize`, then resized to it as sharp's fastResize of the
 * JPEG would; undefined when it is not to be used (for a resize: when it does not reproduce
 * that one) or fails (sharp then decodes the image again and reports any error as it always
 * did).
 */
async function decodeNatively(
  bytes: Buffer,
  options: ImageLimits & Pick<PreprocessOptions, "nativeJpeg">,
  header: ImageHeader,
  scaleDenom: 1 | 2 | 4 | 8,
  resize?: { width: number; height: number },
): Promise<RawImage | undefined> {
  if (!header.plainJpeg) return undefined;
  if (
    resize !== undefined &&
    !nativeResizeApplies(
      Math.floor(header.width / scaleDenom),
      Math.floor(header.height / scaleDenom),
      resize.width,
      resize.height,
    )
  ) {
    return undefined;
  }
  const decoder: NativeJpegDecoder | undefined =
    resize === undefined
      ? await nativeJpegDecoder(options.nativeJpeg)
      : await nativeJpegResizer(options.nativeJpeg);
  if (decoder === undefined) return undefined;
  try {
    const { data, width, height, channels } =
      resize === undefined
        ? await decoder.decode(bytes, scaleDenom, options.maxImagePixels)
        : await decoder.decode(
            bytes,
            scaleDenom,
            options.maxImagePixels,
            resize.width,
            resize.height,
          );
    const resized = resize !== undefined && width === resize.width && height === resize.height;
    // Unresized pixels are no use to the fast path (see nativeJpegResizer).
    if (resize !== undefined && !resized) throw new Error("the addon did not resize");
    countNativeJpeg(true, resized);
    return {
      data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
      width,
      height,
      channels,
    };
  } catch {
    countNativeJpeg(false);
    return undefined;
  }
}

/** The whole image at full size (the exact path). */
async function decodeFull(
  bytes: Buffer,
  limits: ImageLimits & Pick<PreprocessOptions, "nativeJpeg">,
  header: ImageHeader,
): Promise<DecodedImage> {
  try {
    const image =
      (await decodeNatively(bytes, limits, header, 1)) ??
      (await rawImage(openImage(bytes, limits)));
    return {
      ...image,
      format: header.format,
      nearest: header.nearest,
      sourceWidth: image.width,
      sourceHeight: image.height,
    };
  } catch (error) {
    throw decodeError(error, limits);
  }
}

/**
 * The fast path: libvips resizes to the size torchvision's `Resize(R)` gives (toModelInput
 * then only crops the centre and normalises). Asked for a smaller image, it decodes JPEGs with DCT-domain
 * shrink-on-load (libjpeg scales by 1/2, 1/4 or 1/8 while decoding) and WebP through
 * libwebp's scaled decoding, then reduces the rest of the way with its cubic kernel
 * (Catmull-Rom, a = -0.5: the kernel of Pillow's BICUBIC), premultiplying alpha as Pillow
 * does. Differences from the exact pixels: the shrink-on-load prefilter, libvips' rounding,
 * and its sampling grid.
 *
 * For a plain JPEG the native decoder does the shrink-on-load (same factor, same libjpeg
 * scaled decoding, same cut to whole pixels) and, in the same call, the resize with libvips'
 * arithmetic (jpeg-native/resize.c; libvips does it where the addon does not reproduce it,
 * for reductions by 4 or more): the same bytes.
 */
async function decodeScaled(
  bytes: Buffer,
  limits: ImageLimits & Pick<PreprocessOptions, "nativeJpeg">,
  header: ImageHeader,
  resolution: number,
): Promise<DecodedImage> {
  const size = resizedSize(header.width, header.height, resolution);
  const resize = fastResize(size.width, size.height);
  try {
    const shrunk = await decodeNatively(
      bytes,
      limits,
      header,
      jpegShrinkOnLoad(header.width / size.width, header.height / size.height),
      size,
    );
    const image =
      shrunk ??
      // The centre crop is left to toModelInput: an extract() here would also keep libvips
      // from shrinking rotated images on load.
      (await rawImage(openImage(bytes, limits).resize(resize)));
    return {
      ...image,
      format: header.format,
      nearest: false,
      sourceWidth: header.width,
      sourceHeight: header.height,
    };
  } catch (error) {
    throw decodeError(error, limits);
  }
}

/**
 * Resize (Pillow bicubic, or nearest for palette images), centre crop, drop alpha, scale and
 * normalise to float32 CHW.
 */
export function toModelInput(
  image: RawImage & { nearest?: boolean },
  options: Pick<PreprocessOptions, "resolution" | "mean" | "std">,
): Float32Array {
  const r = options.resolution;
  const size = resizedSize(image.width, image.height, r);
  const window = {
    left: centerCropOffset(size.width, r),
    top: centerCropOffset(size.height, r),
    width: r,
    height: r,
  };
  // Pillow returns an unresized copy when the size already matches, without the lossy
  // premultiply round trip.
  const unchanged = size.width === image.width && size.height === image.height;
  if (image.nearest) {
    return normalise(resizeNearest(image, size.width, size.height, window), options);
  }
  const hasAlpha = image.channels === 4 && !unchanged;
  let source = image;
  if (hasAlpha) {
    source = { ...image, data: image.data.slice() };
    premultiply(source);
  }
  const resized = resizeBicubic(source, size.width, size.height, window);
  if (hasAlpha) unpremultiply(resized);
  return normalise(resized, options);
}

/** 8-bit R×R image (alpha, if any, ignored) → float32 CHW, (v / 255 - mean) / std. */
function normalise(
  resized: RawImage,
  options: Pick<PreprocessOptions, "resolution" | "mean" | "std">,
): Float32Array {
  const r = options.resolution;
  const plane = r * r;
  const out = new Float32Array(3 * plane);
  const { data, channels } = resized;
  for (let c = 0; c < 3; c++) {
    const mean = Math.fround(options.mean[c] as number);
    const std = Math.fround(options.std[c] as number);
    // One float32 value per byte value, computed as torch does: (v / 255 - mean) / std.
    const table = new Float32Array(256);
    for (let v = 0; v < 256; v++) {
      table[v] = Math.fround(Math.fround(Math.fround(v / 255) - mean) / std);
    }
    const base = c * plane;
    for (let i = 0; i < plane; i++) {
      out[base + i] = table[data[i * channels + c] as number] as number;
    }
  }
  return out;
}
