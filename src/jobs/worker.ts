/** Starting a job worker for a library: in `serve` (embedded default) or `longclip worker`. */
import { existsSync } from "node:fs";
import type { Settings } from "../core/settings.ts";
import type { LongclipLibrary } from "../library/library.ts";
import { mediaRootOf } from "./create.ts";
import { JobRunner } from "./runner.ts";

/**
 * The in-process worker of `serve`, if it should run: `--job-worker on`, or `auto` on a store
 * this process owns (the embedded default). On a shared store (Postgres), `auto` leaves jobs to
 * `longclip worker` processes. Without a media root there are no jobs to run.
 */
export function startJobWorker(
  settings: Settings,
  library: LongclipLibrary,
  log?: (message: string, fields?: Record<string, unknown>) => void,
): JobRunner | undefined {
  const wanted =
    settings.jobWorker === "on" || (settings.jobWorker === "auto" && !library.store.shared);
  if (!wanted || settings.mediaRoot === undefined || !existsSync(settings.mediaRoot)) {
    return undefined;
  }
  const runner = new JobRunner(library, library.store.jobs, {
    chunkSize: Math.max(1, Math.min(settings.imageBatchSize, settings.maxBatchItems)),
    leaseMs: settings.jobLeaseMs,
    mediaRoot: mediaRootOf(settings),
    ...(log ? { log } : {}),
  });
  runner.start();
  return runner;
}
