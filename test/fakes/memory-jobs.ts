/**
 * Jobs of the in-memory store: the JobStore contract over plain arrays, the summaries made by
 * the product's own summarizeJob (as both real backends do). Every method runs to completion
 * without awaiting, so each is atomic as a transaction is.
 */
import type { Metadata } from "../../src/core/types.ts";
import {
  type ClaimedItem,
  emptyCounts,
  type JobFailure,
  type JobItemResult,
  type JobItemState,
  type JobRow,
  type JobStore,
  type JobSummary,
  lostMessage,
  type NewJob,
  summarizeJob,
  WORKER_LOST,
} from "../../src/store/jobs.ts";

interface JobItem {
  seq: number;
  path: string;
  state: JobItemState;
  worker?: string;
  leaseUntil: number;
  attempts: number;
  doneAt?: number;
  itemId?: string;
  failure?: { code: string; message: string };
}

/** A job as the store keeps it (the array of them outlives a store object: see MemoryDisk). */
export interface Job extends JobRow {
  metadata: Metadata;
  items: JobItem[];
}

const FINISHED: readonly JobItemState[] = ["indexed", "duplicate", "failed"];

export class MemoryJobs implements JobStore {
  constructor(
    /** Jobs in creation order. */
    private readonly jobs: Job[],
    private readonly assertOpen: () => void,
  ) {}

  async create(job: NewJob): Promise<JobSummary> {
    this.assertOpen();
    const now = Date.now();
    const items: JobItem[] = job.paths.map((path, seq) => ({
      seq,
      path,
      state: "pending",
      leaseUntil: 0,
      attempts: 0,
    }));
    for (const failure of job.failed ?? []) {
      items.push({
        seq: items.length,
        path: failure.path,
        state: "failed",
        leaseUntil: 0,
        attempts: 0,
        doneAt: now,
        failure: { code: failure.code, message: failure.message },
      });
    }
    const stored: Job = {
      id: job.id,
      created_at: now,
      started_at: null,
      cancelled_at: null,
      metadata: structuredClone(job.metadata),
      items,
    };
    this.jobs.push(stored);
    return summaryOf(stored, now);
  }

  async get(id: string): Promise<JobSummary | undefined> {
    this.assertOpen();
    const job = this.find(id);
    return job === undefined ? undefined : summaryOf(job, Date.now());
  }

  async list(limit: number): Promise<JobSummary[]> {
    this.assertOpen();
    const now = Date.now();
    const newest = [...this.jobs].sort(
      (a, b) => b.created_at - a.created_at || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0),
    );
    return newest.slice(0, limit).map((job) => summaryOf(job, now));
  }

  async failures(id: string, limit: number): Promise<JobFailure[]> {
    this.assertOpen();
    const failed = (this.find(id)?.items ?? []).filter((item) => item.state === "failed");
    return failed.slice(0, limit).map((item) => ({
      path: item.path,
      code: item.failure?.code ?? "",
      message: item.failure?.message ?? "",
    }));
  }

  async cancel(id: string): Promise<JobSummary | undefined> {
    this.assertOpen();
    const job = this.find(id);
    if (job === undefined) return undefined;
    const now = Date.now();
    job.cancelled_at ??= now;
    for (const item of job.items) {
      if (item.state === "pending") Object.assign(item, { state: "cancelled", doneAt: now });
    }
    return summaryOf(job, now);
  }

  async claim(
    workerId: string,
    limit: number,
    leaseMs: number,
    maxAttempts: number,
  ): Promise<ClaimedItem[]> {
    this.assertOpen();
    const now = Date.now();
    const expired = (item: JobItem) => item.state === "claimed" && item.leaseUntil < now;
    for (const job of this.jobs) {
      for (const item of job.items) {
        if (expired(item) && item.attempts >= maxAttempts) {
          item.state = "failed";
          item.doneAt = now;
          item.failure = { code: WORKER_LOST, message: lostMessage(maxAttempts) };
        }
      }
    }
    const claimed: ClaimedItem[] = [];
    const oldestFirst = [...this.jobs].sort(
      (a, b) => a.created_at - b.created_at || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0),
    );
    for (const job of oldestFirst) {
      if (job.cancelled_at !== null) continue;
      for (const item of job.items) {
        if (claimed.length >= limit) return claimed;
        if (item.state !== "pending" && !expired(item)) continue;
        Object.assign(item, { state: "claimed", worker: workerId, leaseUntil: now + leaseMs });
        item.attempts++;
        job.started_at ??= now;
        claimed.push({
          jobId: job.id,
          seq: item.seq,
          path: item.path,
          metadata: structuredClone(job.metadata),
          attempts: item.attempts,
        });
      }
    }
    return claimed;
  }

  async extendLease(workerId: string, items: readonly ClaimedItem[], leaseMs: number) {
    this.assertOpen();
    const until = Date.now() + leaseMs;
    for (const { jobId, seq } of items) {
      const item = this.find(jobId)?.items[seq];
      if (item?.state === "claimed" && item.worker === workerId) item.leaseUntil = until;
    }
  }

  async finish(workerId: string, results: readonly JobItemResult[]): Promise<void> {
    this.assertOpen();
    const now = Date.now();
    for (const result of results) {
      const item = this.find(result.jobId)?.items[result.seq];
      if (item === undefined) continue;
      const held = item.state === "claimed" && item.worker === workerId;
      // A stored file counts whoever holds the item now, and after it failed as worker_lost.
      const stored =
        result.state !== "failed" &&
        (item.state === "claimed" ||
          (item.state === "failed" && item.failure?.code === WORKER_LOST));
      if (!held && !stored) continue;
      item.state = result.state;
      item.doneAt = now;
      if (result.state === "failed") {
        item.failure = { code: result.code, message: result.message };
        delete item.itemId;
      } else {
        item.itemId = result.itemId;
        delete item.failure;
      }
    }
  }

  private find(id: string): Job | undefined {
    return this.jobs.find((job) => job.id === id);
  }
}

function summaryOf(job: Job, now: number): JobSummary {
  const counts = emptyCounts();
  const failedCodes: Record<string, number> = {};
  let lastDoneAt: number | null = null;
  let doneLastMinute = 0;
  for (const item of job.items) {
    counts[item.state]++;
    if (item.state === "failed" && item.failure !== undefined) {
      failedCodes[item.failure.code] = (failedCodes[item.failure.code] ?? 0) + 1;
    }
    if (item.doneAt !== undefined) {
      lastDoneAt = Math.max(lastDoneAt ?? item.doneAt, item.doneAt);
      if (item.doneAt > now - 60_000 && FINISHED.includes(item.state)) doneLastMinute++;
    }
  }
  return summarizeJob(job, { counts, failedCodes, lastDoneAt, doneLastMinute }, now);
}
