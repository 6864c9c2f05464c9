/** The items table's columns as both backends name them, and a row made into a StoredItem. */
import type { Metadata } from "../core/types.ts";
import type { StoredItem } from "./types.ts";

export const ITEM_COLUMNS =
  "id, label, sha256, metadata, content_type, width, height, bytes, source, path, created_at";

/** A row of ITEM_COLUMNS; metadata and created_at are as the backend's driver returns them. */
export interface ItemRow<M, T> {
  id: string;
  label: number;
  sha256: string;
  metadata: M;
  content_type: string;
  width: number;
  height: number;
  bytes: number;
  source: "upload" | "path";
  path: string | null;
  created_at: T;
}

export function rowToItem<M, T>(
  row: ItemRow<M, T>,
  metadata: (value: M) => Metadata,
  createdAt: (value: T) => string,
): StoredItem {
  const item: StoredItem = {
    id: row.id,
    label: row.label,
    sha256: row.sha256,
    metadata: metadata(row.metadata),
    contentType: row.content_type,
    width: row.width,
    height: row.height,
    bytes: row.bytes,
    source: row.source,
    createdAt: createdAt(row.created_at),
  };
  if (row.path !== null) item.path = row.path;
  return item;
}
