/**
 * Files for indexing: what a drop holds (files and whole folders, read through the
 * FileSystem entry API), and batches that respect the server's item and byte limits.
 */
import type { ErrorCode } from "../src/core/errors.ts";

export interface PendingFile {
  file: File;
  /** The name shown to the user: the path inside a dropped or picked folder, or the name. */
  name: string;
}

export interface Rejected {
  file: PendingFile;
  /** What the server would have answered: a code of its catalog. */
  code: ErrorCode;
  message: string;
}

export interface BatchLimits {
  maxBatchItems: number;
  maxImageBytes: number;
  maxRequestBytes: number;
}

/** Room left in each request for multipart framing and the metadata field. */
const REQUEST_OVERHEAD = 64 * 1024;
const PER_FILE_OVERHEAD = 1024;

/**
 * Splits files into upload batches of at most maxBatchItems files and maxRequestBytes bytes.
 * A file over maxImageBytes is not sent (the server would refuse it after receiving it all).
 */
export function planBatches(
  files: readonly PendingFile[],
  limits: BatchLimits,
): { batches: PendingFile[][]; rejected: Rejected[] } {
  const batches: PendingFile[][] = [];
  const rejected: Rejected[] = [];
  const budget = Math.max(limits.maxRequestBytes - REQUEST_OVERHEAD, 1);
  let batch: PendingFile[] = [];
  let bytes = 0;
  for (const f of files) {
    if (f.file.size > limits.maxImageBytes) {
      rejected.push({
        file: f,
        code: "image_too_large",
        message: `${f.file.size} bytes is over the server's limit of ${limits.maxImageBytes} bytes per image (maxImageBytes); not uploaded`,
      });
      continue;
    }
    const size = f.file.size + PER_FILE_OVERHEAD;
    if (batch.length > 0 && (batch.length >= limits.maxBatchItems || bytes + size > budget)) {
      batches.push(batch);
      batch = [];
      bytes = 0;
    }
    batch.push(f);
    bytes += size;
  }
  if (batch.length > 0) batches.push(batch);
  return { batches, rejected };
}

function readEntries(reader: FileSystemDirectoryReader): Promise<FileSystemEntry[]> {
  return new Promise((resolve, reject) => reader.readEntries(resolve, reject));
}

function entryFile(entry: FileSystemFileEntry): Promise<File> {
  return new Promise((resolve, reject) => entry.file(resolve, reject));
}

async function walk(entry: FileSystemEntry, out: PendingFile[]): Promise<void> {
  // Hidden files (.DS_Store, ._foo) are operating-system clutter, not pictures.
  if (entry.name.startsWith(".")) return;
  if (entry.isFile) {
    const file = await entryFile(entry as FileSystemFileEntry);
    out.push({ file, name: entry.fullPath.replace(/^\//, "") || file.name });
  } else if (entry.isDirectory) {
    const reader = (entry as FileSystemDirectoryEntry).createReader();
    // readEntries answers in chunks (100 in Chromium) until it returns an empty list.
    for (;;) {
      const chunk = await readEntries(reader);
      if (chunk.length === 0) break;
      for (const child of chunk) await walk(child, out);
    }
  }
}

/** Every file of a drop, folders walked recursively, in the order they were found. */
export async function collectDropped(data: DataTransfer): Promise<PendingFile[]> {
  const entries: FileSystemEntry[] = [];
  const plain: File[] = [];
  for (const item of Array.from(data.items)) {
    if (item.kind !== "file") continue;
    const entry = item.webkitGetAsEntry?.();
    if (entry) entries.push(entry);
    else {
      const file = item.getAsFile();
      if (file) plain.push(file);
    }
  }
  const out: PendingFile[] = plain.map((file) => ({ file, name: file.name }));
  for (const entry of entries) await walk(entry, out);
  return out;
}
