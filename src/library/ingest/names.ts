/**
 * The names an item keeps as metadata, so keyword search (../search/hybrid.ts) finds it by its
 * file name and folder: an upload's file name, a path's name and path under the media root.
 */
import path from "node:path";
import type { IndexInput, Metadata } from "../../core/types.ts";

const MAX_FILENAME_CHARS = 255;

/**
 * An upload with its file name kept as metadata `filename` (so keyword search finds it), when
 * `keep` (keepUploadFilename) and the metadata has no `filename` of its own.
 */
export function withUploadFilename(input: IndexInput, keep: boolean): IndexInput {
  const metadata = input.metadata ?? {};
  if (
    !keep ||
    input.bytes === undefined ||
    !input.filename ||
    typeof metadata !== "object" ||
    metadata === null ||
    Array.isArray(metadata) ||
    "filename" in metadata
  ) {
    return input;
  }
  // The base name only, without control characters (a header's file name is client text).
  const name = [...path.basename(input.filename.replaceAll("\\", "/"))]
    .filter((c) => c >= " " && c !== "\u007f")
    .join("");
  if (name === "") return input;
  return { ...input, metadata: { ...metadata, filename: name.slice(0, MAX_FILENAME_CHARS) } };
}

/**
 * The metadata of a file indexed by path, with its name as `filename` and its path as `path`
 * (relative to the media root), as an upload keeps its file name: so keyword search finds
 * files by their names and folders. Fields the metadata already has are kept.
 */
export function withPathNames(metadata: Metadata, shownPath: string): Metadata {
  const names: Metadata = {
    filename: path.basename(shownPath).slice(0, MAX_FILENAME_CHARS),
    path: shownPath,
  };
  return { ...names, ...metadata };
}
