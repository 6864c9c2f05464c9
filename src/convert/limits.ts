/**
 * The sizes the converter accepts from a checkpoint, which is untrusted input: numbers inside a
 * file (a zip entry's inflated size, a storage's element count, a tensor's strides, a config's
 * layer count) decide how much memory reading it takes, so each is checked against what a CLIP
 * model can need before anything of that size is allocated. Far above every published CLIP and
 * Long-CLIP model (ViT-bigG/14: width 1664, 48 layers, 257 positions), far below what would
 * exhaust a machine. docs/model-format.md lists them.
 */
import { readFileSync, statSync } from "node:fs";
import { gunzipSync } from "node:zlib";
import { convertError } from "./errors.ts";

/** `data.pkl` of a torch.save zip (a CLIP-L state dict's is about 60 KB). */
export const MAX_PICKLE_BYTES = 4 * 1024 * 1024;
/** A safetensors JSON header (the format allows 100 MB; a CLIP-L header is about 70 KB). */
export const MAX_SAFETENSORS_HEADER_BYTES = 4 * 1024 * 1024;
/** config.json, vocab.json, a merges file after gunzip. */
export const MAX_TEXT_FILE_BYTES = 16 * 1024 * 1024;
/**
 * A checkpoint zip's entries together may inflate to at most MAX_INFLATION times the file's
 * size plus INFLATION_ALLOWANCE: torch.save stores entries uncompressed, and weights never
 * compress that well, while a zip bomb inflates 1000× (the allowance covers small files and
 * all-zero tensors, which compress to nothing).
 */
export const MAX_INFLATION = 16;
export const INFLATION_ALLOWANCE = 64 * 1024 * 1024;
/** A storage may hold at most this many times the elements its tensors reach. */
export const MAX_STORAGE_SLACK = 2;

/** Largest architecture sizes, per ClipSpec field. */
export const MAX_SPEC: Readonly<Record<string, number>> = {
  embedDim: 8192,
  imageResolution: 2048,
  patchSize: 256,
  visionWidth: 8192,
  visionLayers: 128,
  visionHeads: 256,
  textWidth: 8192,
  textLayers: 128,
  textHeads: 256,
  contextLength: 4096,
  vocabSize: 262_144,
};
/** Patches per side of the image (the vision position table has this squared + 1 rows). */
export const MAX_PATCH_GRID = 128;

export function tooLarge(what: string, size: number, limit: number, file?: string) {
  return convertError(
    "checkpoint_too_large",
    `${file === undefined ? "" : `${file}: `}${what} is ${size.toLocaleString("en")}, more than the converter accepts (${limit.toLocaleString("en")}); a CLIP checkpoint never needs that: the file is corrupted or crafted`,
    file === undefined ? { size, limit } : { file, size, limit },
  );
}

/** A small text file of a checkpoint (config.json, vocab.json), refused past MAX_TEXT_FILE_BYTES. */
export function readTextFile(file: string): string {
  const size = statSync(file).size;
  if (size > MAX_TEXT_FILE_BYTES)
    throw tooLarge("the file's size", size, MAX_TEXT_FILE_BYTES, file);
  return readFileSync(file, "utf8");
}

/** A file's bytes, gunzipped if gzip, never past MAX_TEXT_FILE_BYTES either way (a gzip bomb). */
export function readMaybeGzip(file: string): Buffer {
  const size = statSync(file).size;
  if (size > MAX_TEXT_FILE_BYTES)
    throw tooLarge("the file's size", size, MAX_TEXT_FILE_BYTES, file);
  const bytes = readFileSync(file);
  if (bytes[0] !== 0x1f || bytes[1] !== 0x8b) return bytes;
  try {
    return gunzipSync(bytes, { maxOutputLength: MAX_TEXT_FILE_BYTES });
  } catch (error) {
    if ((error as { code?: string }).code === "ERR_BUFFER_TOO_LARGE") {
      throw tooLarge("its gunzipped size", MAX_TEXT_FILE_BYTES + 1, MAX_TEXT_FILE_BYTES, file);
    }
    throw error;
  }
}
