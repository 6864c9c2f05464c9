/**
 * Creating a job: the paths a client names (files or folders under the media root) become the
 * job's files, relative to the media root, so a worker on another host resolves them against
 * its own mount of the same media. Folders are walked here, once; a missing path becomes an
 * item that fails by itself (`file_not_found`), it does not refuse the whole job.
 */
import { randomBytes } from "node:crypto";
import { existsSync, realpathSync } from "node:fs";
import { stat } from "node:fs/promises";
import path from "node:path";
import { AppError } from "../core/errors.ts";
import type { Metadata } from "../core/types.ts";
import { collectImageFiles } from "../library/files.ts";
import type { JobStore, JobSummary } from "../store/jobs.ts";
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

/** The job's files, relative to the media root, in a stable order (folders walked, sorted). */
export async function jobFiles(request: JobRequest, limits: JobLimits): Promise<string[]> {
  const root = mediaRootOf(limits);
  const absolute: string[] = [];
  for (const [i, given] of request.paths.entries()) {
    const resolved = path.resolve(root, given);
    if (resolved !== root && !isInside(root, resolved)) {
      throw new AppError(
        "path_outside_media_root",
        `paths/${i} "${given.slice(0, 200)}" is outside the media root; give paths relative to it. No job was created.`,
      );
    }
    const real = realPathOrUndefined(resolved);
    if (real !== undefined && real !== root && !isInside(root, real)) {
      throw new AppError(
        "path_outside_media_root",
        `paths/${i} "${given.slice(0, 200)}" leads outside the media root through a link. No job was created.`,
      );
    }
    const info = real === undefined ? undefined : await stat(real).catch(() => undefined);
    if (info?.isDirectory()) {
      absolute.push(...(await collectImageFiles([resolved])).files);
    } else {
      absolute.push(resolved);
    }
    if (absolute.length > limits.maxJobItems) break;
  }
  const files = [...new Set(absolute)];
  if (files.length === 0) {
    throw new AppError(
      "empty_job",
      "The paths hold no image files (.jpg, .jpeg, .png, .webp, .gif, .avif, .tif, .tiff); nothing to index.",
    );
  }
  if (files.length > limits.maxJobItems) {
    throw new AppError(
      "too_many_items",
      `The paths hold more than ${limits.maxJobItems} files (maxJobItems, LONGCLIP_MAX_JOB_ITEMS); split them into several jobs.`,
    );
  }
  return files.map((file) => path.relative(root, file));
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
  const paths = await jobFiles(request, limits);
  return jobs.create({ id: newJobId(), paths, metadata: request.metadata ?? {} });
}
