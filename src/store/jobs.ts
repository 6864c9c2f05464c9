/**
 * Jobs in the storage seam: a job is a list of files (paths relative to the media root), each
 * a job item that a worker claims with a lease, indexes, and finishes. A worker that dies
 * mid-chunk leaves its items claimed; when the lease expires they are claimed again, and an
 * item that has cost `maxAttempts` leases fails (`worker_lost`) rather than looping forever.
 * A worker that was only slow may still store its file after that: its outcome counts then.
 *
 * Both backends keep the same two tables and return the same summaries; only the SQL differs.
 */
import type { ItemFailureCode } from "../core/errors.ts";
import type { Metadata } from "../core/types.ts";

export type JobItemState = "pending" | "claimed" | "indexed" | "duplicate" | "failed" | "cancelled";

export type JobState = "queued" | "running" | "done" | "cancelled";

export interface NewJob {
  id: string;
  /** Files, relative to the media root, in the order they are processed. */
  paths: readonly string[];
  /** Metadata given to every item of the job. */
  metadata: Metadata;
  /** Paths that failed before the job started (folders that could not be read), after `paths`. */
  failed?: readonly JobFailure[];
}

export interface JobCounts {
  total: number;
  pending: number;
  /** Claimed by a worker and not finished yet. */
  running: number;
  indexed: number;
  duplicate: number;
  failed: number;
  cancelled: number;
}

export interface JobFailure {
  path: string;
  code: string;
  message: string;
}

export interface JobSummary {
  id: string;
  state: JobState;
  createdAt: number;
  /** When the first item was claimed. */
  startedAt: number | null;
  /** When the last item finished, or the job was cancelled. */
  finishedAt: number | null;
  counts: JobCounts;
  /** Failed items per error code. */
  failedCodes: Record<string, number>;
  /** Items finished per second over the last minute (or the whole run once it is over). */
  rate: number;
  /** Seconds until the pending and running items are done at `rate`; null when unknown. */
  etaSeconds: number | null;
}

export interface ClaimedItem {
  jobId: string;
  seq: number;
  path: string;
  metadata: Metadata;
  /** Leases this item has had, this one included. */
  attempts: number;
}

export type JobItemResult =
  | { jobId: string; seq: number; state: "indexed" | "duplicate"; itemId: string }
  | { jobId: string; seq: number; state: "failed"; code: string; message: string };

export interface JobStore {
  /** Creates a job and its items (pending, but `failed` ones failed already). */
  create(job: NewJob): Promise<JobSummary>;
  get(id: string): Promise<JobSummary | undefined>;
  /** Newest first. */
  list(limit: number): Promise<JobSummary[]>;
  /** The first failed items of a job, in file order. */
  failures(id: string, limit: number): Promise<JobFailure[]>;
  /** Cancels what is still pending; claimed items finish. Undefined for an unknown job. */
  cancel(id: string): Promise<JobSummary | undefined>;
  /**
   * Leases up to `limit` items to `workerId`: pending ones, and claimed ones whose lease
   * expired. Items already leased `maxAttempts` times fail instead.
   */
  claim(
    workerId: string,
    limit: number,
    leaseMs: number,
    maxAttempts: number,
  ): Promise<ClaimedItem[]>;
  /** Extends the lease of items this worker still holds. */
  extendLease(workerId: string, items: readonly ClaimedItem[], leaseMs: number): Promise<void>;
  /**
   * Records outcomes. A failure counts only while this worker still holds the item. A file
   * stored (indexed or duplicate) counts even when the lease expired meanwhile: while another
   * worker holds the item (whose own outcome then changes nothing) and after the item failed
   * as worker_lost, so that a job's counts always equal the rows it stored.
   */
  finish(workerId: string, results: readonly JobItemResult[]): Promise<void>;
}

/** Failure code of an item whose leases all expired. */
export const WORKER_LOST: ItemFailureCode = "worker_lost";

export function lostMessage(maxAttempts: number): string {
  return `Processing this file was interrupted ${maxAttempts} times (the worker holding it stopped or timed out); check the file and the workers' logs, then index it again.`;
}

export interface JobRow {
  id: string;
  created_at: number;
  /** When an item of the job was first claimed. */
  started_at: number | null;
  cancelled_at: number | null;
}

export interface JobAggregates {
  counts: Record<JobItemState, number>;
  failedCodes: Record<string, number>;
  lastDoneAt: number | null;
  doneLastMinute: number;
}

/** The summary both backends report, from a job row and its item aggregates at `now`. */
export function summarizeJob(row: JobRow, agg: JobAggregates, now: number): JobSummary {
  const c = agg.counts;
  const total = c.pending + c.claimed + c.indexed + c.duplicate + c.failed + c.cancelled;
  const open = c.pending + c.claimed;
  const finished = c.indexed + c.duplicate + c.failed;
  let state: JobState;
  // A cancelled job runs until the items claimed before the cancel have finished. A cancel
  // that found nothing pending (the job had finished, or its last items were claimed) leaves
  // it to end as done.
  if (row.cancelled_at !== null && open + c.cancelled > 0) {
    state = c.claimed > 0 ? "running" : "cancelled";
  } else if (open === 0) state = "done";
  else state = row.started_at === null ? "queued" : "running";

  let finishedAt: number | null = null;
  if (state === "done") finishedAt = agg.lastDoneAt ?? row.created_at;
  else if (state === "cancelled") finishedAt = Math.max(row.cancelled_at ?? 0, agg.lastDoneAt ?? 0);

  let rate = 0;
  if (row.started_at !== null) {
    if (state === "running" || state === "queued") {
      const window = Math.min(60_000, Math.max(1, now - row.started_at));
      rate = (agg.doneLastMinute / window) * 1000;
    } else if (finishedAt !== null) {
      rate = (finished / Math.max(1, finishedAt - row.started_at)) * 1000;
    }
  }
  const remaining = state === "cancelled" ? c.claimed : open;
  const etaSeconds = remaining === 0 ? 0 : rate > 0 ? remaining / rate : null;
  return {
    id: row.id,
    state,
    createdAt: row.created_at,
    startedAt: row.started_at,
    finishedAt,
    counts: {
      total,
      pending: c.pending,
      running: c.claimed,
      indexed: c.indexed,
      duplicate: c.duplicate,
      failed: c.failed,
      cancelled: c.cancelled,
    },
    failedCodes: agg.failedCodes,
    rate: Math.round(rate * 100) / 100,
    etaSeconds: etaSeconds === null ? null : Math.round(etaSeconds),
  };
}

export function emptyCounts(): Record<JobItemState, number> {
  return { pending: 0, claimed: 0, indexed: 0, duplicate: 0, failed: 0, cancelled: 0 };
}
