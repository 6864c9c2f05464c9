/**
 * A tensor in a checkpoint file, read only when needed, and the conversion of its stored
 * element type to float32 (fp16 and bf16 widen exactly; fp64 rounds to nearest).
 */
import { endianness } from "node:os";
import { convertError } from "./errors.ts";

const LITTLE_ENDIAN = endianness() === "LE";

export type StoredDType = "float16" | "bfloat16" | "float32" | "float64" | "int64" | "int32";

export const BYTES_PER_ELEMENT: Readonly<Record<StoredDType, number>> = {
  float16: 2,
  bfloat16: 2,
  float32: 4,
  float64: 8,
  int64: 8,
  int32: 4,
};

/** A named tensor whose values are read from disk on demand, as float32 in C order. */
export interface LazyTensor {
  readonly name: string;
  readonly dtype: StoredDType;
  readonly shape: readonly number[];
  read(): Promise<Float32Array>;
}

export function elementCount(shape: readonly number[]): number {
  return shape.reduce((product, size) => product * size, 1);
}

let halfTable: Float32Array | undefined;

/** float32 value of every fp16 bit pattern, built once (256 KiB). */
function halfToFloatTable(): Float32Array {
  if (halfTable) return halfTable;
  const table = new Float32Array(65536);
  for (let bits = 0; bits < 65536; bits++) {
    const sign = bits & 0x8000 ? -1 : 1;
    const exponent = (bits >> 10) & 0x1f;
    const fraction = bits & 0x3ff;
    if (exponent === 0) table[bits] = sign * 2 ** -14 * (fraction / 1024);
    else if (exponent === 31) table[bits] = fraction ? Number.NaN : sign * Number.POSITIVE_INFINITY;
    else table[bits] = sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
  }
  halfTable = table;
  return table;
}

/** Little-endian stored elements (`count` of them from byte 0 of `bytes`) as float32. */
export function toFloat32(bytes: Uint8Array, dtype: StoredDType, count: number): Float32Array {
  const needed = count * BYTES_PER_ELEMENT[dtype];
  if (bytes.byteLength < needed) {
    throw convertError(
      "checkpoint_unreadable",
      `a ${dtype} tensor needs ${needed} bytes but only ${bytes.byteLength} are stored; the file is truncated or corrupted, download it again`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, needed);
  const out = new Float32Array(count);
  switch (dtype) {
    case "float32":
      if (LITTLE_ENDIAN) new Uint8Array(out.buffer).set(bytes.subarray(0, needed));
      else for (let i = 0; i < count; i++) out[i] = view.getFloat32(i * 4, true);
      break;
    case "float16": {
      const table = halfToFloatTable();
      for (let i = 0; i < count; i++) out[i] = table[view.getUint16(i * 2, true)] as number;
      break;
    }
    case "bfloat16": {
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < count; i++) bits[i] = view.getUint16(i * 2, true) << 16;
      break;
    }
    case "float64":
      for (let i = 0; i < count; i++) out[i] = view.getFloat64(i * 8, true);
      break;
    case "int64":
      for (let i = 0; i < count; i++) out[i] = Number(view.getBigInt64(i * 8, true));
      break;
    case "int32":
      for (let i = 0; i < count; i++) out[i] = view.getInt32(i * 4, true);
      break;
  }
  return out;
}

/** C-order strides of a shape, in elements. */
export function contiguousStrides(shape: readonly number[]): number[] {
  const strides = new Array<number>(shape.length).fill(1);
  for (let axis = shape.length - 2; axis >= 0; axis--) {
    strides[axis] = (strides[axis + 1] as number) * (shape[axis + 1] as number);
  }
  return strides;
}

/**
 * The C-order copy of a strided view: `source` holds the storage from element `offset` on,
 * `strides` are in elements. A contiguous view is returned as a subarray, without copying.
 */
export function gatherStrided(
  source: Float32Array,
  shape: readonly number[],
  strides: readonly number[],
): Float32Array {
  const count = elementCount(shape);
  const contiguous = contiguousStrides(shape);
  if (shape.every((size, axis) => size === 1 || strides[axis] === contiguous[axis])) {
    return source.subarray(0, count);
  }
  const out = new Float32Array(count);
  const index = new Array<number>(shape.length).fill(0);
  for (let i = 0; i < count; i++) {
    let at = 0;
    for (let axis = 0; axis < shape.length; axis++) {
      at += (index[axis] as number) * (strides[axis] as number);
    }
    out[i] = source[at] as number;
    for (let axis = shape.length - 1; axis >= 0; axis--) {
      index[axis] = (index[axis] as number) + 1;
      if ((index[axis] as number) < (shape[axis] as number)) break;
      index[axis] = 0;
    }
  }
  return out;
}

/** The highest element index + 1 a strided view touches (0 for an empty view). */
export function stridedSpan(shape: readonly number[], strides: readonly number[]): number {
  if (shape.some((size) => size === 0)) return 0;
  return 1 + shape.reduce((sum, size, axis) => sum + (size - 1) * (strides[axis] as number), 0);
}

/** The transpose of a row-major [rows, cols] matrix. */
export function transposed(values: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(values.length);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) out[c * rows + r] = values[r * cols + c] as number;
  }
  return out;
}
