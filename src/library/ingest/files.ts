/** Image and video files to index, found by walking the paths a user gives (CLI, jobs). */
import type { Dirent, Stats } from "node:fs";
import { readdir, stat } from "node:fs/promises";
import path from "node:path";
import { VIDEO_EXTENSIONS } from "../../preprocess/video/index.ts";

export const IMAGE_EXTENSIONS = new Set([
  ".jpg",
  ".jpeg",
  ".png",
  ".webp",
  ".gif",
  ".avif",
  ".tif",
  ".tiff",
]);

function isMediaName(name: string): boolean {
  const extension = path.extname(name).toLowerCase();
  return IMAGE_EXTENSIONS.has(extension) || VIDEO_EXTENSIONS.has(extension);
}

/** A folder (or given path) the walk could not read, and why (the system's error code). */
export interface WalkError {
  path: string;
  reason: string;
}

export interface CollectOptions {
  /** Stop once more than this many files were found (the caller refuses the set then). */
  limit?: number;
}

/**
 * Files to index: each argument that is a file, and every file with an image or video
 * extension under each directory argument (recursive, sorted; symlinked directories are not followed,
 * so a link loop cannot trap the walk). A folder is walked once however often it is named or
 * nested in another named one; a folder that cannot be read (permissions, a path past the
 * system's length limit) is reported in `errors` and the walk goes on without it.
 */
export async function collectImageFiles(
  inputs: readonly string[],
  options: CollectOptions = {},
): Promise<{
  files: string[];
  missing: string[];
  errors: WalkError[];
  /** The walk stopped at `limit`. */
  stopped: boolean;
  /** Folders listed (each once). */
  folders: number;
}> {
  const limit = options.limit ?? Number.POSITIVE_INFINITY;
  const files = new Set<string>();
  const missing: string[] = [];
  const errors: WalkError[] = [];
  const walked = new Set<string>();
  const full = () => files.size > limit;
  const walk = async (dir: string): Promise<void> => {
    if (walked.has(dir)) return;
    walked.add(dir);
    let entries: Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (error) {
      errors.push({ path: dir, reason: String((error as { code?: unknown }).code ?? error) });
      return;
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of entries) {
      if (full()) return;
      const child = path.join(dir, entry.name);
      if (entry.isDirectory()) await walk(child);
      else if ((entry.isFile() || entry.isSymbolicLink()) && isMediaName(entry.name)) {
        files.add(child);
      }
    }
  };
  for (const input of inputs) {
    if (full()) break;
    const absolute = path.resolve(input);
    let info: Stats;
    try {
      info = await stat(absolute);
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      if (code === "ENOENT" || code === "ENOTDIR") missing.push(input);
      else errors.push({ path: absolute, reason: String(code ?? error) });
      continue;
    }
    if (info.isDirectory()) await walk(absolute);
    else files.add(absolute);
  }
  return { files: [...files], missing, errors, stopped: full(), folders: walked.size };
}
