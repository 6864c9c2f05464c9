/**
 * The sample gallery a model directory may ship (models/demo/gallery/gallery.json, written by
 * `python3 -m training demo`): indexed once, when a data directory is new, so that a first
 * query on a fresh install has something to find. A marker file in the data directory keeps
 * it from coming back after the user deletes it.
 */
import { existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import type { IndexResult } from "../core/types.ts";
import type { Library } from "./types.ts";

export const GALLERY_MANIFEST = path.join("gallery", "gallery.json");
export const GALLERY_MARKER = "gallery-indexed.json";

interface GalleryManifest {
  format: "longclip-gallery";
  version: number;
  items: { file: string; caption: string; [key: string]: unknown }[];
}

export interface GalleryOutcome {
  indexed: number;
  failed: IndexResult[];
}

async function readManifest(file: string): Promise<GalleryManifest> {
  const manifest = JSON.parse(await readFile(file, "utf8")) as GalleryManifest;
  if (manifest.format !== "longclip-gallery" || !Array.isArray(manifest.items)) {
    throw new Error(`${file} is not a longclip-gallery manifest`);
  }
  return manifest;
}

/**
 * Indexes the model directory's gallery when the library is empty and has never had it;
 * returns undefined when there is nothing to do.
 */
export async function indexGalleryIfNew(
  library: Library,
  modelDir: string,
  dataDir: string,
  batchSize: number,
): Promise<GalleryOutcome | undefined> {
  const manifestFile = path.join(modelDir, GALLERY_MANIFEST);
  const marker = path.join(dataDir, GALLERY_MARKER);
  if (!existsSync(manifestFile) || existsSync(marker) || (await library.stats()).items > 0)
    return undefined;
  const manifest = await readManifest(manifestFile);
  const directory = path.dirname(manifestFile);
  const outcome: GalleryOutcome = { indexed: 0, failed: [] };
  for (let start = 0; start < manifest.items.length; start += Math.max(1, batchSize)) {
    const batch = manifest.items.slice(start, start + Math.max(1, batchSize));
    const inputs = await Promise.all(
      batch.map(async ({ file, ...metadata }) => ({
        id: `gallery-${path.parse(file).name}`,
        bytes: await readFile(path.join(directory, file)),
        filename: file,
        metadata: { ...metadata, file, gallery: true },
      })),
    );
    for (const result of await library.index(inputs)) {
      if (result.status === "failed") outcome.failed.push(result);
      else outcome.indexed++;
    }
  }
  // On Postgres nothing else lives in the data directory, so it may not exist yet.
  await mkdir(dataDir, { recursive: true });
  await writeFile(
    marker,
    `${JSON.stringify({ manifest: manifestFile, indexed: outcome.indexed, at: new Date().toISOString() })}\n`,
  );
  return outcome;
}
