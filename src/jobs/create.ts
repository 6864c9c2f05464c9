/**
 * Creating a job: the paths a client names (files or folders under the media root) become the
 * job's files, relative to the media root, so a worker on another host resolves them against
 * its own mount of the same media. Folders are walked here, once; a missing path becomes an
 * item that fails by itself (`file_not_found`), and a folder that cannot be read an item that
 * has failed (`folder_unreadable`): neither refuses the whole job.
 */
import { randomBytes } from "node:crypto";
import { existsSync, realpathSync } from "node:fs";
import path from "node:path";
import { AppError, type ItemFailureCode } from "../core/errors.ts";
import type { Metadata } from "../core/types.ts";
import { collectImageFiles } from "../library/ingest/files.ts";
import { validateMetadata } from "../library/ingest/inputs.ts";
import type { JobFailure, JobStore, JobSummary } from "../store/jobs.ts";
import { isInside, realPathOrUndefined } from "../util/paths.ts";

export interface JobRequest {
  paths: readonly string[];
  metadata?: Metadata;
}

export interface JobLimits {
  mediaRoot: string | undefined;
  maxJobItems: number;
}

/** The media root, resolved; refuses when path indexing is off. */
export function mediaRootOf(limits: JobLimits): string {
  const root = limits.mediaRoot;
  if (root === undefined || !existsSync(root)) {
    throw new AppError(
      "path_indexing_disabled",
      root === undefined
        ? "Jobs index files by path and need a media root: start with --media-root DIR (LONGCLIP_MEDIA_ROOT), or upload images to POST /index."
        : `The media root ${root} does not exist; create it or fix LONGCLIP_MEDIA_ROOT, then restart.`,
    );
  }
  return realpathSync(root);
}

/** What a job holds: its files, and the folders that could not be read (failed items). */
export interface JobPaths {
  /** Files relative to the media root, in a stable order (folders walked, sorted). */
  files: string[];
  unreadable: JobFailure[];
}

/**
 * The job's files, relative to the media root. Each path is walked once however often it is
 * given, the walk stops past maxJobItems, and a folder it cannot read becomes a failed item
 * (`folder_unreadable`) rather than vanishing from the job.
 */
export async function jobFiles(request: JobRequest, limits: JobLimits): Promise<JobPaths> {
  const root = mediaRootOf(limits);
  const starts: string[] = [];
  const given = new Set<string>();
  for (const [i, name] of request.paths.entries()) {
    if (name.includes("\u0000")) {
      throw new AppError(
        "validation_failed",
        `paths/${i} holds the character U+0000, which no file name can; remove it. No job was created.`,
      );
    }
    const resolved = path.resolve(root, name);
    if (resolved !== root && !isInside(root, resolved)) {
      throw new AppError(
        "path_outside_media_root",
        `paths/${i} "${name.slice(0, 200)}" is outside the media root; give paths relative to it. No job was created.`,
      );
    }
    const real = realPathOrUndefined(resolved);
    if (real !== undefined && real !== root && !isInside(root, real)) {
      throw new AppError(
        "path_outside_media_root",
        `paths/${i} "${name.slice(0, 200)}" leads outside the media root through a link. No job was created.`,
      );
    }
    const key = real ?? resolved;
    if (given.has(key)) continue;
    given.add(key);
    starts.push(resolved);
  }
  const found = await collectImageFiles(starts, { limit: limits.maxJobItems });
  // A missing path stays in the job: it fails by itself (file_not_found) when a worker takes it.
  const files = [...found.files, ...found.missing];
  if (found.stopped || files.length > limits.maxJobItems) {
    throw new AppError(
      "too_many_items",
      `The paths hold more than ${limits.maxJobItems} files (maxJobItems, LONGCLIP_MAX_JOB_ITEMS); split them into several jobs.`,
    );
  }
  const unreadable = found.errors.map((error) => ({
    path: path.relative(root, error.path),
    code: "folder_unreadable" satisfies ItemFailureCode,
    message: `This folder could not be read (${error.reason}${error.reason === "ENAMETOOLONG" ? ": its path is longer than the system allows" : ""}); its files are not in the job. Fix its permissions or shorten the path, then index it again.`,
  }));
  if (files.length === 0 && unreadable.length === 0) {
    throw new AppError(
      "empty_job",
      "The paths hold no image files (.jpg, .jpeg, .png, .webp, .gif, .avif, .tif, .tiff); nothing to index.",
    );
  }
  return { files: files.map((file) => path.relative(root, file)), unreadable };
}

export function newJobId(): string {
  return `job-${Date.now().toString(36)}-${randomBytes(6).toString("hex")}`;
}

/** Walks the paths and records the job; it runs when a worker claims its items. */
export async function createJob(
  jobs: JobStore,
  request: JobRequest,
  limits: JobLimits,
): Promise<JobSummary> {
  // checked now, not when every item fails with it
  const metadata = validateMetadata(request.metadata);
  const { files, unreadable } = await jobFiles(request, limits);
  return jobs.create({
    id: newJobId(),
    paths: files,
    failed: unreadable,
    metadata,
  });
}
