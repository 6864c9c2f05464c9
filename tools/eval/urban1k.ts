/**
 * Urban1k-layout datasets: `image/NAME.jpg` (or .jpeg/.png/.webp) and `caption/NAME.txt`, the
 * caption on the first line, as in the official Urban1k release. Pairs whose image or caption is
 * missing, unreadable or empty are reported and left out, never fatal.
 */
import { readdir, readFile, stat } from "node:fs/promises";
import path from "node:path";
import { ScriptError } from "../script.ts";

export const IMAGE_EXTENSIONS = [".jpg", ".jpeg", ".png", ".webp"] as const;

export interface UrbanPair {
  name: string;
  imagePath: string;
  caption: string;
}

export type ExclusionReason =
  | "image_missing"
  | "caption_missing"
  | "caption_unreadable"
  | "caption_empty"
  | "image_unreadable";

export interface ExcludedPair {
  name: string;
  reason: ExclusionReason | string;
  message: string;
}

export interface UrbanDataset {
  dir: string;
  pairs: UrbanPair[];
  excluded: ExcludedPair[];
}

export interface LoadOptions {
  /** Sub-directory holding the captions: `caption` (long) or e.g. `short` in synthetic sets. */
  captionDir?: string;
}

/** Natural order (2 before 10), so numbered datasets keep their numbering. */
export function compareNames(a: string, b: string): number {
  return a.localeCompare(b, "en", { numeric: true }) || (a < b ? -1 : a > b ? 1 : 0);
}

async function listFiles(dir: string, what: string): Promise<string[]> {
  try {
    return (await readdir(dir, { withFileTypes: true }))
      .filter((entry) => !entry.name.startsWith("."))
      .map((entry) => entry.name);
  } catch (error) {
    throw new ScriptError(
      "dataset_invalid",
      `Cannot read the ${what} directory ${dir} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}); an Urban1k-layout dataset has image/NAME.jpg and caption/NAME.txt.`,
    );
  }
}

/** First line of a caption file, trimmed; errors become exclusion reasons. */
async function readCaption(
  file: string,
): Promise<{ caption: string } | { reason: ExclusionReason; message: string }> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? "error";
    return { reason: "caption_unreadable", message: `cannot read ${file} (${code})` };
  }
  if (text.includes("\uFFFD")) {
    return { reason: "caption_unreadable", message: `${file} is not valid UTF-8 text` };
  }
  const caption = (text.split(/\r?\n/, 1)[0] ?? "").trim();
  if (caption === "")
    return { reason: "caption_empty", message: `${file} has an empty first line` };
  return { caption };
}

/** Lists the pairs of an Urban1k-layout directory, in natural name order. */
export async function loadUrbanDataset(
  dir: string,
  options: LoadOptions = {},
): Promise<UrbanDataset> {
  const root = path.resolve(dir);
  const captionDir = path.join(root, options.captionDir ?? "caption");
  const imageDir = path.join(root, "image");
  const [imageList, captionList] = await Promise.allSettled([
    listFiles(imageDir, "image"),
    listFiles(captionDir, "caption"),
  ]);
  // The image directory's error first when both fail: with Promise.all the first listing to
  // fail would win, and the message would change from run to run.
  if (imageList.status === "rejected") throw imageList.reason;
  if (captionList.status === "rejected") throw captionList.reason;
  const [imageFiles, captionFiles] = [imageList.value, captionList.value];
  const images = new Map<string, string>();
  // Prefer .jpg (what the official script opens), then the other extensions in order.
  for (const ext of IMAGE_EXTENSIONS) {
    for (const file of imageFiles) {
      const parsed = path.parse(file);
      if (parsed.ext.toLowerCase() === ext && !images.has(parsed.name)) {
        images.set(parsed.name, path.join(imageDir, file));
      }
    }
  }
  const captions = new Map<string, string>();
  for (const file of captionFiles) {
    const parsed = path.parse(file);
    if (parsed.ext === ".txt") captions.set(parsed.name, path.join(captionDir, file));
  }
  const names = [...new Set([...images.keys(), ...captions.keys()])].sort(compareNames);
  const pairs: UrbanPair[] = [];
  const excluded: ExcludedPair[] = [];
  const results = await Promise.all(
    names.map(async (name): Promise<UrbanPair | ExcludedPair> => {
      const imagePath = images.get(name);
      const captionPath = captions.get(name);
      if (captionPath === undefined) {
        return { name, reason: "caption_missing", message: `no caption/${name}.txt` };
      }
      if (imagePath === undefined) {
        return {
          name,
          reason: "image_missing",
          message: `no image/${name}${IMAGE_EXTENSIONS.join("|")}`,
        };
      }
      const imageProblem = await checkImageFile(imagePath);
      if (imageProblem !== undefined) {
        return { name, reason: "image_unreadable", message: imageProblem };
      }
      const read = await readCaption(captionPath);
      if ("reason" in read) return { name, ...read };
      return { name, imagePath, caption: read.caption };
    }),
  );
  for (const result of results) {
    if ("reason" in result) excluded.push(result);
    else pairs.push(result);
  }
  return { dir: root, pairs, excluded };
}

async function checkImageFile(file: string): Promise<string | undefined> {
  try {
    const info = await stat(file);
    if (!info.isFile()) return `${file} is not a file`;
    if (info.size === 0) return `${file} is empty`;
    return undefined;
  } catch (error) {
    return `cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? "error"})`;
  }
}

/** "3 pairs left out: 0007 (image_missing), 0012 (caption_empty), ..." — at most `limit` names. */
export function describeExcluded(excluded: readonly ExcludedPair[], limit = 20): string {
  if (excluded.length === 0) return "no pairs left out";
  const shown = excluded
    .slice(0, limit)
    .map((e) => `${e.name} (${e.reason})`)
    .join(", ");
  const more = excluded.length > limit ? `, and ${excluded.length - limit} more` : "";
  return `${excluded.length} pair${excluded.length === 1 ? "" : "s"} left out: ${shown}${more}`;
}
