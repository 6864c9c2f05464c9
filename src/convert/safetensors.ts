/**
 * Reads a `.safetensors` file (an 8-byte little-endian header length, a JSON header naming
 * each tensor's dtype, shape and byte range, then the raw little-endian data) into lazily
 * read tensors. No maintained npm package reads the format from Node without loading the whole
 * file, and the header is a few lines, so it is read here.
 */
import { closeSync, existsSync, fstatSync, openSync, readSync } from "node:fs";
import { convertError } from "./errors.ts";
import { MAX_SAFETENSORS_HEADER_BYTES, tooLarge } from "./limits.ts";
import {
  BYTES_PER_ELEMENT,
  elementCount,
  type LazyTensor,
  type StoredDType,
  toFloat32,
} from "./tensor.ts";

const DTYPES: Readonly<Record<string, StoredDType>> = {
  F16: "float16",
  BF16: "bfloat16",
  F32: "float32",
  F64: "float64",
  I64: "int64",
  I32: "int32",
};

export interface SafetensorsFile {
  readonly tensors: ReadonlyMap<string, LazyTensor>;
  close(): void;
}

function unreadable(file: string, problem: string) {
  return convertError(
    "checkpoint_unreadable",
    `cannot read ${file} as safetensors: ${problem}. If it was downloaded, it may be truncated or corrupted: download it again`,
    { file },
  );
}

function readExactly(fd: number, length: number, position: number, file: string): Buffer {
  const out = Buffer.allocUnsafe(length);
  let done = 0;
  while (done < length) {
    const got = readSync(fd, out, done, length - done, position + done);
    if (got === 0) throw unreadable(file, "the file ends early");
    done += got;
  }
  return out;
}

interface HeaderEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

function isHeaderEntry(value: unknown): value is HeaderEntry {
  const entry = value as HeaderEntry;
  return (
    typeof entry?.dtype === "string" &&
    Array.isArray(entry.shape) &&
    entry.shape.every((size) => Number.isSafeInteger(size) && size >= 0) &&
    Array.isArray(entry.data_offsets) &&
    entry.data_offsets.length === 2 &&
    entry.data_offsets.every((offset) => Number.isSafeInteger(offset) && offset >= 0)
  );
}

export function openSafetensors(file: string): SafetensorsFile {
  if (!existsSync(file)) {
    throw convertError("checkpoint_not_found", `safetensors file not found: ${file}`, { file });
  }
  const fd = openSync(file, "r");
  try {
    const fileSize = fstatSync(fd).size;
    if (fileSize < 8) throw unreadable(file, "it is shorter than the 8-byte header length");
    const headerLength = Number(readExactly(fd, 8, 0, file).readBigUInt64LE(0));
    if (headerLength > MAX_SAFETENSORS_HEADER_BYTES) {
      throw tooLarge("the header length", headerLength, MAX_SAFETENSORS_HEADER_BYTES, file);
    }
    if (8 + headerLength > fileSize) {
      throw unreadable(file, `the header length ${headerLength} does not fit the file`);
    }
    let header: Record<string, unknown>;
    try {
      header = JSON.parse(readExactly(fd, headerLength, 8, file).toString("utf8"));
    } catch (error) {
      throw unreadable(file, `the header is not JSON (${(error as Error).message})`);
    }
    const dataStart = 8 + headerLength;
    const tensors = new Map<string, LazyTensor>();
    for (const [name, value] of Object.entries(header)) {
      if (name === "__metadata__") continue;
      if (!isHeaderEntry(value)) throw unreadable(file, `the header entry of ${name} is malformed`);
      const dtype = DTYPES[value.dtype];
      if (!dtype) {
        throw convertError(
          "checkpoint_unsupported",
          `${file}: tensor ${name} has dtype ${value.dtype}; only F16, BF16, F32, F64, I64 and I32 are read`,
        );
      }
      const [begin, end] = value.data_offsets;
      const count = elementCount(value.shape);
      if (end - begin !== count * BYTES_PER_ELEMENT[dtype] || dataStart + end > fileSize) {
        throw unreadable(
          file,
          `tensor ${name} (bytes ${begin}–${end}) does not fit its shape or the file (${fileSize} bytes)`,
        );
      }
      tensors.set(name, {
        name,
        dtype,
        shape: value.shape,
        read: async () =>
          toFloat32(readExactly(fd, end - begin, dataStart + begin, file), dtype, count),
      });
    }
    return { tensors, close: () => closeSync(fd) };
  } catch (error) {
    closeSync(fd);
    throw error;
  }
}
