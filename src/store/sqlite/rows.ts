/**
 * How the embedded backend stores an item and a vector: metadata as JSON text, created_at as
 * ISO text, embeddings as little-endian float32 BLOBs.
 */
import type { Metadata } from "../../core/types.ts";
import { type ItemRow as Row, rowToItem } from "../item-row.ts";
import type { StoredItem } from "../types.ts";

export type ItemRow = Row<string, string>;

export function toItem(row: ItemRow): StoredItem {
  return rowToItem(
    row,
    (value) => JSON.parse(value) as Metadata,
    (value) => value,
  );
}

/** Float32 vector → BLOB (little-endian, as stored). */
export function vectorToBlob(vector: Float32Array): Buffer {
  return Buffer.from(vector.buffer, vector.byteOffset, vector.byteLength);
}

/** BLOB → Float32 vector: a view when the bytes are 4-byte aligned (better-sqlite3 gives each
 * BLOB its own buffer), otherwise an aligned copy. */
export function blobToVector(blob: Buffer): Float32Array {
  if (blob.byteOffset % 4 === 0) {
    return new Float32Array(blob.buffer, blob.byteOffset, blob.byteLength / 4);
  }
  const out = new Float32Array(blob.byteLength / 4);
  new Uint8Array(out.buffer).set(blob);
  return out;
}
