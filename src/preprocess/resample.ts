/**
 * Bicubic resampling that reproduces Pillow's `Image.resize(size, Image.BICUBIC)` on 8-bit
 * images bit for bit, so our pixels equal what the official (PIL + torchvision) pipeline
 * feeds the vision tower.
 *
 * Pillow's arithmetic, which every detail below follows:
 * - a cubic convolution kernel with a = -0.5 and support 2, stretched by the scale factor
 *   when shrinking (so downscaling averages over the whole footprint, i.e. antialiasing);
 * - per output pixel, the taps cover source pixels `trunc(center ± support + 0.5)` clamped to
 *   the image, the weights are normalised to sum 1, then turned into fixed point with 22
 *   fractional bits (rounded half away from zero);
 * - two separable passes, horizontal first, each accumulating integer products on top of a
 *   rounding bias of 2^21, shifting right by 22 and clipping to 0..255, so the intermediate
 *   image is 8-bit exactly as in Pillow;
 * - a pass whose axis keeps its size is skipped (it would be the identity anyway).
 *
 * Only the output window that survives the centre crop is computed: each output pixel
 * depends on its own coefficients only, so computing a window gives the same values as
 * computing everything and cropping afterwards.
 */

import { RESAMPLE_WASM_BASE64 } from "./resample-wasm.ts";

const PRECISION_BITS = 22;
const FIXED_ONE = 2 ** PRECISION_BITS;
const ROUNDING_BIAS = 2 ** (PRECISION_BITS - 1);
const BICUBIC_SUPPORT = 2;

/** Cubic convolution kernel, a = -0.5, written in the same operation order as Pillow. */
function bicubic(value: number): number {
  const x = value < 0 ? -value : value;
  if (x < 1) return (1.5 * x - 2.5) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * -0.5;
  return 0;
}

/** Fixed-point filter taps for a run of output positions along one axis. */
export interface AxisCoefficients {
  /** Taps per output position (the table's stride). */
  ksize: number;
  /** First source index used by each output position. */
  start: Int32Array;
  /** Number of source indices used by each output position. */
  count: Int32Array;
  /** `ksize` fixed-point weights per output position (2^22 = 1.0). */
  weights: Int32Array;
}

/**
 * Coefficients mapping an axis of `inSize` pixels onto `outSize` pixels, for the output
 * positions `first .. first + length - 1` only.
 */
export function axisCoefficients(
  inSize: number,
  outSize: number,
  first = 0,
  length = outSize - first,
): AxisCoefficients {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = BICUBIC_SUPPORT * filterScale;
  const ksize = Math.ceil(support) * 2 + 1;
  const inverse = 1 / filterScale;
  const start = new Int32Array(length);
  const count = new Int32Array(length);
  const weights = new Int32Array(length * ksize);
  const taps = new Float64Array(ksize);
  for (let i = 0; i < length; i++) {
    const center = (first + i + 0.5) * scale;
    const lo = Math.max(0, Math.trunc(center - support + 0.5));
    const hi = Math.min(inSize, Math.trunc(center + support + 0.5));
    const n = hi - lo;
    let total = 0;
    for (let x = 0; x < n; x++) {
      const w = bicubic((x + lo - center + 0.5) * inverse);
      taps[x] = w;
      total += w;
    }
    for (let x = 0; x < n; x++) {
      const w = total !== 0 ? (taps[x] as number) / total : (taps[x] as number);
      weights[i * ksize + x] =
        w < 0 ? Math.trunc(-0.5 + w * FIXED_ONE) : Math.trunc(0.5 + w * FIXED_ONE);
    }
    start[i] = lo;
    count[i] = n;
  }
  return { ksize, start, count, weights };
}

/** Interleaved 8-bit image. */
export interface RawImage {
  data: Uint8Array;
  width: number;
  height: number;
  channels: number;
}

/** A rectangle of the resized image to produce: columns left..left+width-1, rows top..top+height-1. */
export interface OutputWindow {
  left: number;
  top: number;
  width: number;
  height: number;
}

function checkWindow(window: OutputWindow, outWidth: number, outHeight: number): void {
  if (
    window.left < 0 ||
    window.top < 0 ||
    window.width < 1 ||
    window.height < 1 ||
    window.left + window.width > outWidth ||
    window.top + window.height > outHeight
  ) {
    throw new RangeError("output window outside the resized image");
  }
}

/*
 * Both passes accumulate in int32 as Pillow's C loops do (`INT32 ss`); the weights of an
 * output position sum to 2^22 and their positive part stays far below 2^31 / 255, so no sum
 * leaves the int32 range. `Math.imul` and `| 0` keep V8 on integer arithmetic, which is measurably
 * cheaper than the float64 it would otherwise use. The output arrays are Uint8ClampedArray
 * views, so storing `sum >> 22` clamps to 0..255 as Pillow's clip8 does (a negative sum
 * shifts to a negative value, stored as 0).
 */

function horizontalPassJs(
  src: RawImage,
  rowFirst: number,
  rowCount: number,
  coeffs: AxisCoefficients,
): RawImage {
  const { data, width, channels } = src;
  const outWidth = coeffs.start.length;
  const out = new Uint8Array(outWidth * rowCount * channels);
  const clamped = new Uint8ClampedArray(out.buffer);
  const { ksize, start, count, weights } = coeffs;
  const rowStride = width * channels;
  const outStride = outWidth * channels;
  if (channels === 3) {
    // The common case, unrolled: one walk over the taps for all three channels.
    for (let y = 0; y < rowCount; y++) {
      const rowBase = (rowFirst + y) * rowStride;
      let o = y * outStride;
      for (let xx = 0; xx < outWidth; xx++) {
        const kBase = xx * ksize;
        const kEnd = kBase + (count[xx] as number);
        let q = rowBase + (start[xx] as number) * 3;
        let s0 = ROUNDING_BIAS;
        let s1 = ROUNDING_BIAS;
        let s2 = ROUNDING_BIAS;
        for (let k = kBase; k < kEnd; k++) {
          const w = weights[k] as number;
          s0 = (s0 + Math.imul(data[q] as number, w)) | 0;
          s1 = (s1 + Math.imul(data[q + 1] as number, w)) | 0;
          s2 = (s2 + Math.imul(data[q + 2] as number, w)) | 0;
          q += 3;
        }
        clamped[o] = s0 >> PRECISION_BITS;
        clamped[o + 1] = s1 >> PRECISION_BITS;
        clamped[o + 2] = s2 >> PRECISION_BITS;
        o += 3;
      }
    }
    return { data: out, width: outWidth, height: rowCount, channels };
  }
  for (let y = 0; y < rowCount; y++) {
    const rowBase = (rowFirst + y) * rowStride;
    const outBase = y * outStride;
    for (let xx = 0; xx < outWidth; xx++) {
      const kBase = xx * ksize;
      const kEnd = kBase + (count[xx] as number);
      const p = rowBase + (start[xx] as number) * channels;
      const o = outBase + xx * channels;
      for (let c = 0; c < channels; c++) {
        let sum = ROUNDING_BIAS;
        let q = p + c;
        for (let k = kBase; k < kEnd; k++) {
          sum = (sum + Math.imul(data[q] as number, weights[k] as number)) | 0;
          q += channels;
        }
        clamped[o + c] = sum >> PRECISION_BITS;
      }
    }
  }
  return { data: out, width: outWidth, height: rowCount, channels };
}

function verticalPassJs(src: RawImage, rowOffset: number, coeffs: AxisCoefficients): RawImage {
  const { data, width, channels } = src;
  const outHeight = coeffs.start.length;
  const rowStride = width * channels;
  const out = new Uint8Array(rowStride * outHeight);
  const clamped = new Uint8ClampedArray(out.buffer);
  const { ksize, start, count, weights } = coeffs;
  for (let yy = 0; yy < outHeight; yy++) {
    const kBase = yy * ksize;
    const kEnd = kBase + (count[yy] as number);
    const srcBase = ((start[yy] as number) - rowOffset) * rowStride;
    const outBase = yy * rowStride;
    for (let i = 0; i < rowStride; i++) {
      let sum = ROUNDING_BIAS;
      let q = srcBase + i;
      for (let k = kBase; k < kEnd; k++) {
        sum = (sum + Math.imul(data[q] as number, weights[k] as number)) | 0;
        q += rowStride;
      }
      clamped[outBase + i] = sum >> PRECISION_BITS;
    }
  }
  return { data: out, width, height: outHeight, channels };
}

/** The same two passes in WebAssembly SIMD (./resample.wat): 4 or 16 output values per step. */
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}

/** The part of the WebAssembly global used here (the compiler's lib has no WebAssembly types). */
const wasmApi = (
  globalThis as unknown as {
    WebAssembly: {
      Module: new (bytes: Uint8Array) => object;
      Instance: new (module: object, imports: object) => { exports: unknown };
    };
  }
).WebAssembly;

interface SimdExports {
  memory: WasmMemory;
  horizontal(...args: number[]): void;
  vertical(...args: number[]): void;
}

let simdModule: SimdExports | null | undefined;

/** The SIMD passes, or null where WebAssembly SIMD is unavailable (then JavaScript runs). */
function simd(): SimdExports | null {
  if (simdModule === undefined) {
    try {
      const module = new wasmApi.Module(Buffer.from(RESAMPLE_WASM_BASE64, "base64"));
      simdModule = new wasmApi.Instance(module, {}).exports as SimdExports;
    } catch {
      simdModule = null;
    }
  }
  return simdModule;
}

/** Bump allocation in the module's memory, 16-byte aligned with 16 bytes of slack after each block. */
class Arena {
  private next = 0;
  constructor(private readonly memory: WasmMemory) {}

  alloc(bytes: number): number {
    const offset = this.next;
    this.next = offset + Math.ceil((bytes + 16) / 16) * 16;
    const missing = this.next - this.memory.buffer.byteLength;
    if (missing > 0) this.memory.grow(Math.ceil(missing / 65536));
    return offset;
  }

  put(data: Uint8Array | Int32Array): number {
    const offset = this.alloc(data.byteLength);
    new Uint8Array(this.memory.buffer, offset, data.byteLength).set(
      new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    );
    return offset;
  }

  /** Copies the coefficient tables in; their offsets: start, count, weights. */
  putCoefficients(coeffs: AxisCoefficients): [number, number, number] {
    return [this.put(coeffs.start), this.put(coeffs.count), this.put(coeffs.weights)];
  }

  take(offset: number, bytes: number): Uint8Array {
    return new Uint8Array(this.memory.buffer, offset, bytes).slice();
  }
}

function horizontalPassSimd(
  wasm: SimdExports,
  src: RawImage,
  rowFirst: number,
  rowCount: number,
  coeffs: AxisCoefficients,
): RawImage {
  const { width, channels } = src;
  const rowStride = width * channels;
  const outWidth = coeffs.start.length;
  const outBytes = outWidth * rowCount * channels;
  const arena = new Arena(wasm.memory);
  const from = rowFirst * rowStride;
  const srcAt = arena.put(src.data.subarray(from, from + rowCount * rowStride));
  const [startAt, countAt, weightsAt] = arena.putCoefficients(coeffs);
  const dstAt = arena.alloc(outBytes);
  wasm.horizontal(
    srcAt,
    rowStride,
    rowCount,
    channels,
    outWidth,
    startAt,
    countAt,
    weightsAt,
    coeffs.ksize,
    dstAt,
  );
  return { data: arena.take(dstAt, outBytes), width: outWidth, height: rowCount, channels };
}

function verticalPassSimd(
  wasm: SimdExports,
  src: RawImage,
  rowOffset: number,
  coeffs: AxisCoefficients,
): RawImage {
  const { width, channels } = src;
  const rowStride = width * channels;
  const outHeight = coeffs.start.length;
  const arena = new Arena(wasm.memory);
  const srcAt = arena.put(src.data);
  const [startAt, countAt, weightsAt] = arena.putCoefficients(coeffs);
  const dstAt = arena.alloc(rowStride * outHeight);
  wasm.vertical(
    srcAt,
    rowStride,
    rowOffset,
    outHeight,
    startAt,
    countAt,
    weightsAt,
    coeffs.ksize,
    dstAt,
  );
  return { data: arena.take(dstAt, rowStride * outHeight), width, height: outHeight, channels };
}

/** Which implementation of the passes runs: SIMD where available (the default), or JavaScript. */
export type ResampleEngine = "simd" | "js";

let preferred: ResampleEngine = "simd";

/** Chooses the implementation (tests compare both; their bytes are the same). */
export function setResampleEngine(engine: ResampleEngine): void {
  preferred = engine;
}

function horizontalPass(
  src: RawImage,
  rowFirst: number,
  rowCount: number,
  coeffs: AxisCoefficients,
): RawImage {
  const wasm = preferred === "simd" ? simd() : null;
  return wasm
    ? horizontalPassSimd(wasm, src, rowFirst, rowCount, coeffs)
    : horizontalPassJs(src, rowFirst, rowCount, coeffs);
}

function verticalPass(src: RawImage, rowOffset: number, coeffs: AxisCoefficients): RawImage {
  const wasm = preferred === "simd" ? simd() : null;
  return wasm
    ? verticalPassSimd(wasm, src, rowOffset, coeffs)
    : verticalPassJs(src, rowOffset, coeffs);
}

function copyWindow(src: RawImage, window: OutputWindow): RawImage {
  const { channels } = src;
  const out = new Uint8Array(window.width * window.height * channels);
  const rowBytes = window.width * channels;
  for (let y = 0; y < window.height; y++) {
    const from = ((window.top + y) * src.width + window.left) * channels;
    out.set(src.data.subarray(from, from + rowBytes), y * rowBytes);
  }
  return { data: out, width: window.width, height: window.height, channels };
}

/**
 * Pillow-exact bicubic resize of `src` to `outWidth`×`outHeight`, returning only `window`
 * of the result (the whole image by default).
 */
export function resizeBicubic(
  src: RawImage,
  outWidth: number,
  outHeight: number,
  window: OutputWindow = { left: 0, top: 0, width: outWidth, height: outHeight },
): RawImage {
  checkWindow(window, outWidth, outHeight);
  const needHorizontal = outWidth !== src.width;
  const needVertical = outHeight !== src.height;
  if (!needVertical) {
    const rows = copyWindow(src, {
      left: 0,
      top: window.top,
      width: src.width,
      height: window.height,
    });
    if (!needHorizontal) return copyWindow(rows, { ...window, top: 0 });
    return horizontalPass(
      rows,
      0,
      rows.height,
      axisCoefficients(src.width, outWidth, window.left, window.width),
    );
  }
  const vertical = axisCoefficients(src.height, outHeight, window.top, window.height);
  if (!needHorizontal) {
    const columns = copyWindow(src, {
      left: window.left,
      top: 0,
      width: window.width,
      height: src.height,
    });
    return verticalPass(columns, 0, vertical);
  }
  // Horizontal pass over just the source rows the vertical taps read, as Pillow does.
  const last = window.height - 1;
  const rowFirst = vertical.start[0] as number;
  const rowCount = (vertical.start[last] as number) + (vertical.count[last] as number) - rowFirst;
  const horizontal = axisCoefficients(src.width, outWidth, window.left, window.width);
  return verticalPass(horizontalPass(src, rowFirst, rowCount, horizontal), rowFirst, vertical);
}

/** Source index of each output position along an axis, for nearest-neighbour scaling. */
function nearestIndices(inSize: number, outSize: number): Int32Array {
  // Pillow's scale-only affine transform: the position starts half a step in and is
  // accumulated step by step in double precision, then truncated. Accumulating (rather than
  // multiplying) matters: it decides which side of a pixel boundary a rounded sum falls.
  const step = inSize / outSize;
  const indices = new Int32Array(outSize);
  let position = step * 0.5;
  for (let i = 0; i < outSize; i++) {
    indices[i] = Math.min(inSize - 1, Math.trunc(position));
    position += step;
  }
  return indices;
}

/**
 * Pillow-exact `Image.resize(size, NEAREST)`, which Pillow uses for palette ("P") and bilevel
 * ("1") images whatever filter was asked for. Returns only `window` of the result.
 */
export function resizeNearest(
  src: RawImage,
  outWidth: number,
  outHeight: number,
  window: OutputWindow = { left: 0, top: 0, width: outWidth, height: outHeight },
): RawImage {
  checkWindow(window, outWidth, outHeight);
  const { data, width, channels } = src;
  const columns = nearestIndices(width, outWidth);
  const rows = nearestIndices(src.height, outHeight);
  const out = new Uint8Array(window.width * window.height * channels);
  for (let y = 0; y < window.height; y++) {
    const rowBase = (rows[window.top + y] as number) * width * channels;
    for (let x = 0; x < window.width; x++) {
      const from = rowBase + (columns[window.left + x] as number) * channels;
      const to = (y * window.width + x) * channels;
      for (let c = 0; c < channels; c++) out[to + c] = data[from + c] as number;
    }
  }
  return { data: out, width: window.width, height: window.height, channels };
}
