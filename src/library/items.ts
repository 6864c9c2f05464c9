/**
 * Reading stored items: an item by id, a page of items, and an item's original image bytes
 * (from the store for uploads, from its file for items indexed by path). A file is re-checked
 * on every read, and a path in an error is shown relative to the media root, never as the
 * server's layout. The library (./library.ts) checks that it is open and delegates here.
 */
import { createHash } from "node:crypto";
import path from "node:path";
import { AppError, isAppError } from "../core/errors.ts";
import type { Settings } from "../core/settings.ts";
import type { Item, ItemOrder, Page } from "../core/types.ts";
import { frameAt, withTemporaryFile } from "../preprocess/video/index.ts";
import type { ItemStore, StoredItem } from "../store/types.ts";
import { FileRefusedError, openResolvedFile, readOpenedFile } from "../util/paths.ts";

/** A stored item as clients see it (without the store's internal label). */
export function publicItem(item: StoredItem): Item {
  const { label: _label, ...rest } = item;
  return rest;
}

export class ItemReader {
  constructor(
    private readonly settings: Settings,
    private readonly store: ItemStore,
  ) {}

  async get(id: string): Promise<Item | undefined> {
    const item = await this.store.getById(id);
    return item === undefined ? undefined : publicItem(item);
  }

  /** At most `limit` items (clamped to 1..maxK) after `cursor`, in `order`. */
  async list(
    cursor: string | null,
    limit: number,
    order: ItemOrder = "oldest",
  ): Promise<Page<Item>> {
    const bounded = Math.min(Math.max(1, Math.trunc(limit) || 1), this.settings.maxK);
    const page = await this.store.listItems(cursor, bounded, order);
    return { items: page.items.map(publicItem), nextCursor: page.nextCursor };
  }

  async readImage(id: string): Promise<{ bytes: Buffer; contentType: string } | undefined> {
    const item = await this.store.getById(id);
    if (item === undefined) return undefined;
    try {
      return { bytes: await this.readBytes(item), contentType: item.contentType };
    } catch (error) {
      if (isAppError(error)) throw error;
      // Deleted (by any node) since it was read: not found, as if it had been a moment later.
      if ((await this.store.getById(id))?.label !== item.label) return undefined;
      throw new AppError(
        "image_missing",
        `The image file of item "${id}" is gone${item.path ? ` (${this.shownPath(item.path)})` : ""}; restore it or delete the item.`,
      );
    }
  }

  /**
   * The frame of a video item at `t` seconds, as JPEG: decoded from its file (checked as any
   * read of it is) or from a temporary copy of its stored original.
   */
  async readFrame(id: string, t: number): Promise<Buffer | undefined> {
    const item = await this.store.getById(id);
    if (item === undefined) return undefined;
    if (!item.contentType.startsWith("video/")) {
      throw new AppError(
        "validation_failed",
        `Item "${id}" is an image (${item.contentType}), not a video; leave out t to get it.`,
      );
    }
    return this.frameOf(item, t);
  }

  /** The frame at `t` seconds of a stored video item, as JPEG (its file checked as any read). */
  async frameOf(item: StoredItem, t: number): Promise<Buffer> {
    const bytes = await this.readBytes(item);
    return item.source === "path"
      ? frameAt(item.path as string, t, this.settings)
      : withTemporaryFile(bytes, (file) => frameAt(file, t, this.settings));
  }

  /** An item's original bytes: from the store for uploads, from its file for paths. */
  readBytes(item: StoredItem): Promise<Buffer> {
    return item.source === "upload"
      ? this.store.readOriginal(item.sha256)
      : this.readIndexedFile(item);
  }

  /** A path as clients may see it: relative to the media root, never the server's layout. */
  private shownPath(file: string): string {
    const root = this.settings.mediaRoot;
    return root !== undefined && !path.relative(root, file).startsWith("..")
      ? path.relative(root, file)
      : path.basename(file);
  }

  /**
   * The file of an item indexed by path, re-checked on every read: it must still be the
   * regular file that was indexed (same real path, no symbolic link, same size and sha256),
   * so replacing it by a link to another file never serves that file.
   */
  private async readIndexedFile(item: StoredItem): Promise<Buffer> {
    const file = item.path as string;
    const changed = (why: string) =>
      new AppError(
        "image_changed",
        `The file of item "${item.id}" (${this.shownPath(file)}) ${why} since it was indexed; re-index it or delete the item.`,
      );
    let opened: Awaited<ReturnType<typeof openResolvedFile>>;
    try {
      opened = await openResolvedFile(file);
    } catch (error) {
      if (!(error instanceof FileRefusedError)) throw error;
      throw changed(
        error.reason === "symlink"
          ? "was replaced by a symbolic link"
          : error.reason === "not_regular"
            ? "is no longer a regular file"
            : "moved (a directory on its path is now a link)",
      );
    }
    const { handle, size } = opened;
    try {
      if (size !== item.bytes) throw changed(`changed size (${size} bytes, ${item.bytes} indexed)`);
      const { bytes, changed: resized } = await readOpenedFile(handle, size);
      if (resized) throw changed("changed size while it was read");
      if (createHash("sha256").update(bytes).digest("hex") !== item.sha256) {
        throw changed("changed content");
      }
      return bytes;
    } finally {
      await handle.close();
    }
  }
}
