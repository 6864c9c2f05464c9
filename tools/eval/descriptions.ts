/**
 * Description sets: paragraphs a person wrote about the images of a gallery, each naming the
 * image it describes, for measuring how well a model finds a picture from someone's own words
 * (`npm run bench:descriptions`). A set is a JSON file:
 *
 *   {"format": "longclip-descriptions", "version": 1, "gallery": "DIR", "about": "…",
 *    "descriptions": [{"file": "000000.jpg", "text": "…"}, …]}
 *
 * `gallery` is relative to the set file; every image in it is a candidate, so a description
 * must find its image among all of them (text→image R@k). An image may have several
 * descriptions or none.
 */
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { ScriptError } from "../script.ts";
import { RECALL_KS, type RecallAtK, rankOf, similarityMatrix } from "./recall.ts";
import { compareNames, IMAGE_EXTENSIONS } from "./urban1k.ts";

export const DESCRIPTION_FORMAT = "longclip-descriptions";

export interface Description {
  file: string;
  text: string;
}

export interface DescriptionSet {
  /** The set file. */
  path: string;
  about: string;
  /** Absolute gallery directory. */
  gallery: string;
  /** Image files of the gallery, in natural order: the candidates. */
  images: string[];
  descriptions: Description[];
}

function invalid(file: string, what: string): ScriptError {
  return new ScriptError(
    "dataset_invalid",
    `${file}: ${what}; a description set is {"format": "${DESCRIPTION_FORMAT}", "version": 1, "gallery": DIR, "descriptions": [{"file", "text"}]}.`,
  );
}

/** Reads and checks a set: every description names an image of the gallery. */
export async function loadDescriptionSet(file: string): Promise<DescriptionSet> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(file, "utf8"));
  } catch (error) {
    throw invalid(file, `not readable JSON (${(error as Error).message})`);
  }
  const set = raw as Record<string, unknown>;
  if (set?.format !== DESCRIPTION_FORMAT || set.version !== 1) {
    throw invalid(file, `format must be "${DESCRIPTION_FORMAT}" version 1`);
  }
  if (typeof set.gallery !== "string" || !Array.isArray(set.descriptions)) {
    throw invalid(file, `"gallery" (a directory) and "descriptions" (a list) are required`);
  }
  const gallery = path.resolve(path.dirname(file), set.gallery);
  let names: string[];
  try {
    names = await readdir(gallery);
  } catch (error) {
    throw invalid(file, `cannot list the gallery ${gallery} (${(error as Error).message})`);
  }
  const images = names
    .filter((name) => (IMAGE_EXTENSIONS as readonly string[]).includes(path.extname(name)))
    .sort(compareNames);
  const descriptions = set.descriptions.map((entry: unknown, index: number) => {
    const item = entry as Record<string, unknown>;
    if (typeof item?.file !== "string" || typeof item.text !== "string" || !item.text.trim()) {
      throw invalid(file, `description ${index} needs a "file" and a non-empty "text"`);
    }
    if (!images.includes(item.file)) {
      throw invalid(file, `description ${index} names ${item.file}, not an image of ${gallery}`);
    }
    return { file: item.file, text: item.text };
  });
  if (descriptions.length === 0) throw invalid(file, "no descriptions");
  return {
    path: file,
    about: typeof set.about === "string" ? set.about : "",
    gallery,
    images,
    descriptions,
  };
}

export interface DescriptionRank {
  file: string;
  text: string;
  /** 0-based rank of the described image among the gallery's (ties: lower index first). */
  rank: number;
  /** The image ranked first. */
  top: string;
}

export interface DescriptionResult {
  n: number;
  images: number;
  t2i: RecallAtK;
  ranks: DescriptionRank[];
}

/**
 * Text→image recall of each description against every gallery image, from L2-normalised
 * embeddings (`images[j]` of `set.images[j]`, `texts[i]` of `set.descriptions[i]`).
 */
export function rankDescriptions(
  set: DescriptionSet,
  images: readonly Float32Array[],
  texts: readonly Float32Array[],
): DescriptionResult {
  const m = images.length;
  const sim = similarityMatrix(texts, images);
  const ranks = set.descriptions.map((description, i) => {
    const target = set.images.indexOf(description.file);
    const score = (j: number) => sim[i * m + j] as number;
    let top = 0;
    for (let j = 1; j < m; j++) if (score(j) > score(top)) top = j;
    return {
      file: description.file,
      text: description.text,
      rank: rankOf(score, m, target),
      top: set.images[top] as string,
    };
  });
  const at = (k: number) => ranks.filter((r) => r.rank < k).length / ranks.length;
  const [k1, k5, k10] = RECALL_KS;
  return { n: ranks.length, images: m, t2i: { r1: at(k1), r5: at(k5), r10: at(k10) }, ranks };
}
