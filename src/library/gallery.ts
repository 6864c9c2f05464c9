/**
 * The sample gallery a model directory may ship (models/demo/gallery/gallery.json, written by
 * `python3 -m training demo`): indexed once, when a data directory is new, so that a first
 * query on a fresh install has something to find. The library records that it was added
 * (ItemStore.markGallerySeeded, in the database), so every node sharing a Postgres library
 * sees it, and a gallery the user deleted never comes back.
 *
 * Nodes that start together on a new library may both add it: the items have fixed ids and
 * content hashes, so the second one's are duplicates and nothing is stored twice.
 */
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import type { IndexResult } from "../core/types.ts";
import type { ItemStore } from "../store/types.ts";
import type { Library } from "./types.ts";

export const GALLERY_MANIFEST = path.join("gallery", "gallery.json");

interface GalleryManifest {
  format: "longclip-gallery";
  version: number;
  items: { file: string; caption: string; [key: string]: unknown }[];
}

export interface GalleryOutcome {
  indexed: number;
  /** Already stored (another node added them first). */
  duplicate: number;
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
  library: Library & { readonly store: Pick<ItemStore, "gallerySeeded" | "markGallerySeeded"> },
  modelDir: string,
  batchSize: number,
): Promise<GalleryOutcome | undefined> {
  const manifestFile = path.join(modelDir, GALLERY_MANIFEST);
  if (
    !existsSync(manifestFile) ||
    (await library.store.gallerySeeded()) ||
    (await library.stats()).items > 0
  ) {
    return undefined;
  }
  const manifest = await readManifest(manifestFile);
  const directory = path.dirname(manifestFile);
  const outcome: GalleryOutcome = { indexed: 0, duplicate: 0, failed: [] };
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
      else outcome[result.status]++;
    }
  }
  await library.store.markGallerySeeded(
    JSON.stringify({
      model: path.basename(modelDir),
      indexed: outcome.indexed,
      at: new Date().toISOString(),
    }),
  );
  return outcome;
}
