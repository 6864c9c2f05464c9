/** Image files to index, found by walking the paths a user gives (CLI, jobs). */
import { readdir, stat } from "node:fs/promises";
import path from "node:path";

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

/**
 * Files to index: each argument that is a file, and every file with an image extension
 * under each directory argument (recursive, sorted; symlinked directories are not followed,
 * so a link loop cannot trap the walk).
 */
export async function collectImageFiles(inputs: readonly string[]): Promise<{
  files: string[];
  missing: string[];
}> {
  const files: string[] = [];
  const missing: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    const entries = await readdir(dir, { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of entries) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) await walk(full);
      else if (
        (entry.isFile() || entry.isSymbolicLink()) &&
        IMAGE_EXTENSIONS.has(path.extname(entry.name).toLowerCase())
      ) {
        files.push(full);
      }
    }
  };
  for (const input of inputs) {
    const absolute = path.resolve(input);
    try {
      const info = await stat(absolute);
      if (info.isDirectory()) await walk(absolute);
      else files.push(absolute);
    } catch {
      missing.push(input);
    }
  }
  return { files: [...new Set(files)], missing };
}
