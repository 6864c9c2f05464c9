/**
 * Ingest's first step: one input checked and read. The id and metadata are validated before
 * anything is read; a path is resolved against the media root (which confines it unless any
 * path is allowed), checked again after resolving symlinks, and checked once more on the open
 * file (a regular file, within the byte limit) before it is read.
 */
import { existsSync, realpathSync } from "node:fs";
import path from "node:path";
import { AppError } from "../../core/errors.ts";
import type { Settings } from "../../core/settings.ts";
import type { IndexInput, Metadata } from "../../core/types.ts";
import { hasVideoExtension, videoContainer } from "../../preprocess/video/index.ts";
import { FileRefusedError, isInside, openResolvedFile, readOpenedFile } from "../../util/paths.ts";
import { withPathNames, withUploadFilename } from "./names.ts";

export const CLIENT_ID = /^[A-Za-z0-9_.:-]{1,128}$/;
export const MAX_METADATA_BYTES = 64 * 1024;
/** Deepest nesting of metadata objects and arrays (SQLite's JSON functions stop at 1000). */
export const MAX_METADATA_DEPTH = 32;

/** An input's bytes, read and validated, and where they came from. */
export interface LoadedInput {
  bytes: Buffer;
  metadata: Metadata;
  source: "upload" | "path";
  /** The file's real path (symlinks resolved), for an input given by path. */
  path?: string;
  /** The upload's file name or the path's, when known: a file named like a video must be one. */
  name?: string;
}

/**
 * Bytes an input of this start may have, a video's limit or an image's, and the error for one
 * over it (`size` undefined: only known to be over, as a multipart file cut at the limit).
 */
export function byteLimit(
  head: Uint8Array,
  settings: Pick<Settings, "maxImageBytes" | "maxVideoBytes">,
): { limit: number; error: (what: string, size?: number) => AppError } {
  const video = videoContainer(head) !== undefined;
  const limit = video ? settings.maxVideoBytes : settings.maxImageBytes;
  return {
    limit,
    error: (what, size) => {
      const is = size === undefined ? `over ${limit}` : String(size);
      const details = { bytes: size ?? limit + 1, limit };
      return video
        ? new AppError(
            "video_too_large",
            `${what} is ${is} bytes; the limit for a video is ${limit} (maxVideoBytes). Cut or re-encode it smaller.`,
            details,
          )
        : new AppError(
            "image_too_large",
            `${what} is ${is} bytes; the limit is ${limit} (maxImageBytes).`,
            details,
          );
    },
  };
}

/** True when a file is named like a video (the bytes decide what it is; see ../videos.ts). */
export function namedLikeVideo(input: LoadedInput): boolean {
  return hasVideoExtension(input.name);
}

function checkNoNul(text: string): void {
  if (text.includes("\u0000")) {
    throw new AppError(
      "invalid_metadata",
      "metadata holds the character U+0000 (in a key or a string), which the store cannot keep; remove it.",
    );
  }
}

/**
 * Checks client metadata (an object, not too deep or large, no U+0000, which PostgreSQL's
 * jsonb cannot hold, refused on both backends alike) and returns a plain copy.
 */
export function validateMetadata(metadata: unknown): Metadata {
  if (metadata === undefined || metadata === null) return {};
  if (typeof metadata !== "object" || Array.isArray(metadata)) {
    throw new AppError("invalid_metadata", 'metadata must be a JSON object, e.g. {"album": "x"}.');
  }
  let depth = 0;
  for (let level: unknown[] = [metadata]; level.length > 0; depth++) {
    if (depth > MAX_METADATA_DEPTH) {
      throw new AppError(
        "invalid_metadata",
        `metadata is nested more than ${MAX_METADATA_DEPTH} levels deep; flatten it.`,
      );
    }
    level = level.flatMap((value) => {
      if (typeof value === "string") checkNoNul(value);
      if (typeof value !== "object" || value === null) return [];
      for (const key of Object.keys(value)) checkNoNul(key);
      return Object.values(value);
    });
  }
  const json = JSON.stringify(metadata);
  if (Buffer.byteLength(json) > MAX_METADATA_BYTES) {
    throw new AppError(
      "invalid_metadata",
      `metadata is ${Buffer.byteLength(json)} bytes of JSON; the limit is ${MAX_METADATA_BYTES}. Keep large data elsewhere and store a reference.`,
    );
  }
  return JSON.parse(json) as Metadata;
}

/** Reads inputs by path or upload, with the media root resolved once. */
export class InputReader {
  private readonly mediaRoot: string | undefined;

  constructor(
    private readonly settings: Pick<
      Settings,
      "mediaRoot" | "maxImageBytes" | "maxVideoBytes" | "keepUploadFilename"
    >,
    /** Accept paths anywhere (the local CLI), not only under the media root. */
    private readonly allowAnyPath: boolean,
  ) {
    this.mediaRoot =
      settings.mediaRoot !== undefined && existsSync(settings.mediaRoot)
        ? realpathSync(settings.mediaRoot)
        : undefined;
  }

  /** Reads the bytes of an input (upload or path) after validating what can be validated. */
  async load(given: IndexInput): Promise<LoadedInput> {
    const input = withUploadFilename(given, this.settings.keepUploadFilename === "on");
    // "." and ".." would be unreachable: URLs normalise /items/.. away.
    if (input.id !== undefined && (!CLIENT_ID.test(input.id) || /^\.{1,2}$/.test(input.id))) {
      throw new AppError(
        "invalid_id",
        `Item id "${String(input.id).slice(0, 140)}" is not allowed; use 1-128 characters of letters, digits, "_", ".", ":" or "-" (not "." or ".."), or omit it to get a content-based id.`,
      );
    }
    const metadata = validateMetadata(input.metadata);
    if (input.bytes !== undefined && input.path !== undefined) {
      throw new AppError("invalid_input", "Give either image bytes or a path, not both.");
    }
    if (input.bytes !== undefined) {
      const { limit, error } = byteLimit(input.bytes, this.settings);
      if (input.bytes.length > limit) throw error(input.filename || "the file", input.bytes.length);
      const loaded: LoadedInput = { bytes: input.bytes, metadata, source: "upload" };
      if (input.filename) loaded.name = input.filename;
      return loaded;
    }
    if (input.path === undefined || input.path === "") {
      throw new AppError("invalid_input", "Each item needs image bytes or a path.");
    }
    const real = this.resolvePath(input.path);
    return {
      bytes: await this.readFileAt(real, input.path),
      metadata: withPathNames(metadata, this.shownPath(real)),
      source: "path",
      path: real,
      name: real,
    };
  }

  /** A file's path as its metadata keeps it (as GET /items shows it): relative to the media root. */
  private shownPath(real: string): string {
    const root = this.mediaRoot;
    return root !== undefined && isInside(root, real) ? path.relative(root, real) : real;
  }

  /**
   * The bytes of a resolved path, checked on the open file (see openResolvedFile), within
   * maxImageBytes; a file that grows or shrinks meanwhile is refused, so none slips past the
   * limit.
   */
  private async readFileAt(real: string, given: string): Promise<Buffer> {
    let opened: Awaited<ReturnType<typeof openResolvedFile>>;
    try {
      opened = await openResolvedFile(real);
    } catch (error) {
      throw openError(error, given);
    }
    const { handle, size } = opened;
    try {
      const head = Buffer.alloc(Math.min(size, 64));
      await handle.read(head, 0, head.length, 0);
      const { limit, error } = byteLimit(head, this.settings);
      if (size > limit) throw error(given, size);
      const { bytes, changed } = await readOpenedFile(handle, size);
      if (changed) {
        throw new AppError(
          "file_changed",
          `${given} changed size while it was being read; index it again once it is complete.`,
        );
      }
      return bytes;
    } finally {
      await handle.close();
    }
  }

  /** Resolves symlinks and `..`, then checks the media root (unless any path is allowed). */
  private resolvePath(input: string): string {
    const root = this.mediaRoot;
    const confined = !this.allowAnyPath;
    if (root === undefined && confined) {
      throw new AppError(
        "path_indexing_disabled",
        this.settings.mediaRoot === undefined
          ? "Indexing by path is disabled; set a media root (LONGCLIP_MEDIA_ROOT or --media-root) or upload the image."
          : `Indexing by path is disabled: the media root ${this.settings.mediaRoot} does not exist. Create it or fix LONGCLIP_MEDIA_ROOT, then restart.`,
      );
    }
    // A name that merely starts with ".." ("..photo.jpg") is inside.
    const outside = (candidate: string) => !isInside(root as string, candidate);
    const refuse = () =>
      new AppError(
        "path_outside_media_root",
        `${input} is outside the media root; only files under it can be indexed by path.`,
      );
    const absolute = path.resolve(root ?? process.cwd(), input);
    // Checked before touching the file system, so answers never reveal what exists outside.
    // An absolute path may name the media root as configured, before its symlinks resolve.
    const configured = path.resolve(this.settings.mediaRoot ?? "");
    if (confined && outside(absolute) && !isInside(configured, absolute)) throw refuse();
    let real: string;
    try {
      real = realpathSync(absolute);
    } catch {
      throw fileNotFound(input);
    }
    // Again after resolving symlinks: a link inside the root may point outside it.
    if (confined && outside(real)) throw refuse();
    return real;
  }
}

/** What opening a resolved path can fail with, as the client's error. */
function openError(error: unknown, given: string): unknown {
  if (error instanceof FileRefusedError) {
    return error.reason === "not_regular"
      ? new AppError("not_a_file", `${given} is not a regular file; give an image file.`)
      : new AppError("file_changed", `${given} changed while it was being read; index it again.`);
  }
  const code = (error as { code?: unknown } | undefined)?.code;
  if (code === "ENOENT" || code === "ENOTDIR") {
    return fileNotFound(given);
  }
  if (code === "EACCES" || code === "EPERM") {
    return new AppError(
      "file_not_readable",
      `${given} cannot be read by the server (permission denied); make it readable to the server's user.`,
    );
  }
  return error;
}

function fileNotFound(given: string): AppError {
  return new AppError(
    "file_not_found",
    `No file at ${given}; check the path (relative paths are resolved against the media root).`,
  );
}
