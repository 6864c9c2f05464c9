/**
 * Jobs on SQLite: the embedded default's in-process worker claims items from the same tables
 * the Postgres backend has. One process owns the database, so a transaction is the lock.
 */
import type Database from "better-sqlite3";
import type { Metadata } from "../../core/types.ts";
import {
  type ClaimedItem,
  emptyCounts,
  type JobAggregates,
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
} from "../jobs.ts";

export class SqliteJobs implements JobStore {
  constructor(private readonly db: Database.Database) {}

  async create(job: NewJob): Promise<JobSummary> {
    const now = Date.now();
    const insertItem = this.db.prepare<[string, number, string]>(
      "INSERT INTO job_items (job_id, seq, path) VALUES (?, ?, ?)",
    );
    this.db.transaction(() => {
      this.db
        .prepare("INSERT INTO jobs (id, metadata, created_at) VALUES (?, ?, ?)")
        .run(job.id, JSON.stringify(job.metadata), now);
      job.paths.forEach((file, seq) => {
        insertItem.run(job.id, seq, file);
      });
      const insertFailed = this.db.prepare(
        "INSERT INTO job_items (job_id, seq, path, state, done_at, error_code, error_message) VALUES (?, ?, ?, 'failed', ?, ?, ?)",
      );
      (job.failed ?? []).forEach((failure, i) => {
        insertFailed.run(
          job.id,
          job.paths.length + i,
          failure.path,
          now,
          failure.code,
          failure.message,
        );
      });
    })();
    return this.summaryOf(job.id, now) as JobSummary;
  }

  async get(id: string): Promise<JobSummary | undefined> {
    return this.summaryOf(id, Date.now());
  }

  async list(limit: number): Promise<JobSummary[]> {
    const now = Date.now();
    const ids = this.db
      .prepare("SELECT id FROM jobs ORDER BY created_at DESC, id DESC LIMIT ?")
      .pluck()
      .all(limit) as string[];
    return ids.map((id) => this.summaryOf(id, now) as JobSummary);
  }

  async failures(id: string, limit: number): Promise<JobFailure[]> {
    return this.db
      .prepare(
        "SELECT path, error_code AS code, error_message AS message FROM job_items WHERE job_id = ? AND state = 'failed' ORDER BY seq LIMIT ?",
      )
      .all(id, limit) as JobFailure[];
  }

  async cancel(id: string): Promise<JobSummary | undefined> {
    const now = Date.now();
    const found = this.db.transaction(() => {
      const changed = this.db
        .prepare("UPDATE jobs SET cancelled_at = coalesce(cancelled_at, ?) WHERE id = ?")
        .run(now, id).changes;
      if (changed === 0) return false;
      this.db
        .prepare(
          "UPDATE job_items SET state = 'cancelled', done_at = ? WHERE job_id = ? AND state = 'pending'",
        )
        .run(now, id);
      return true;
    })();
    return found ? this.summaryOf(id, now) : undefined;
  }

  async claim(
    workerId: string,
    limit: number,
    leaseMs: number,
    maxAttempts: number,
  ): Promise<ClaimedItem[]> {
    const now = Date.now();
    return this.db.transaction(() => {
      this.db
        .prepare(
          `UPDATE job_items SET state = 'failed', done_at = ?, error_code = ?, error_message = ?
           WHERE state = 'claimed' AND lease_until < ? AND attempts >= ?`,
        )
        .run(now, WORKER_LOST, lostMessage(maxAttempts), now, maxAttempts);
      const rows = this.db
        .prepare(
          `UPDATE job_items SET state = 'claimed', worker = ?, lease_until = ?, attempts = attempts + 1
           WHERE rowid IN (
             SELECT ji.rowid FROM job_items ji JOIN jobs j ON j.id = ji.job_id
             WHERE j.cancelled_at IS NULL
               AND (ji.state = 'pending' OR (ji.state = 'claimed' AND ji.lease_until < ?))
             ORDER BY j.created_at, ji.job_id, ji.seq LIMIT ?)
           RETURNING job_id, seq, path, attempts`,
        )
        .all(workerId, now + leaseMs, now, limit) as {
        job_id: string;
        seq: number;
        path: string;
        attempts: number;
      }[];
      const metadata = new Map<string, Metadata>();
      const created = new Map<string, number>();
      for (const row of rows) {
        if (metadata.has(row.job_id)) continue;
        const job = this.db
          .prepare("SELECT metadata, created_at FROM jobs WHERE id = ?")
          .get(row.job_id) as { metadata: string; created_at: number };
        metadata.set(row.job_id, JSON.parse(job.metadata) as Metadata);
        created.set(row.job_id, job.created_at);
        this.db
          .prepare("UPDATE jobs SET started_at = coalesce(started_at, ?) WHERE id = ?")
          .run(now, row.job_id);
      }
      return rows
        .map((row) => ({
          jobId: row.job_id,
          seq: row.seq,
          path: row.path,
          attempts: row.attempts,
          metadata: metadata.get(row.job_id) ?? {},
        }))
        .sort(
          (a, b) =>
            (created.get(a.jobId) ?? 0) - (created.get(b.jobId) ?? 0) ||
            (a.jobId < b.jobId ? -1 : a.jobId > b.jobId ? 1 : a.seq - b.seq),
        );
    })();
  }

  async extendLease(workerId: string, items: readonly ClaimedItem[], leaseMs: number) {
    const update = this.db.prepare(
      "UPDATE job_items SET lease_until = ? WHERE job_id = ? AND seq = ? AND state = 'claimed' AND worker = ?",
    );
    const until = Date.now() + leaseMs;
    this.db.transaction(() => {
      for (const item of items) update.run(until, item.jobId, item.seq, workerId);
    })();
  }

  async finish(workerId: string, results: readonly JobItemResult[]): Promise<void> {
    const update = this.db.prepare(
      `UPDATE job_items SET state = ?, done_at = ?, item_id = ?, error_code = ?, error_message = ?
       WHERE job_id = ? AND seq = ?
         AND ((state = 'claimed' AND worker = ?)
           OR (? AND (state = 'claimed' OR (state = 'failed' AND error_code = ?))))`,
    );
    const now = Date.now();
    this.db.transaction(() => {
      for (const r of results) {
        const failed = r.state === "failed";
        update.run(
          r.state,
          now,
          failed ? null : r.itemId,
          failed ? r.code : null,
          failed ? r.message : null,
          r.jobId,
          r.seq,
          workerId,
          // The outcome stored the file, which counts whoever holds the item now (see JobStore).
          failed ? 0 : 1,
          WORKER_LOST,
        );
      }
    })();
  }

  private summaryOf(id: string, now: number): JobSummary | undefined {
    const row = this.db
      .prepare("SELECT id, created_at, started_at, cancelled_at FROM jobs WHERE id = ?")
      .get(id) as JobRow | undefined;
    if (row === undefined) return undefined;
    const counts = emptyCounts();
    const byState = this.db
      .prepare("SELECT state, count(*) AS n FROM job_items WHERE job_id = ? GROUP BY state")
      .all(id) as { state: JobItemState; n: number }[];
    for (const { state, n } of byState) counts[state] = n;
    const failedCodes: Record<string, number> = {};
    const codes = this.db
      .prepare(
        "SELECT error_code AS code, count(*) AS n FROM job_items WHERE job_id = ? AND state = 'failed' GROUP BY error_code",
      )
      .all(id) as { code: string; n: number }[];
    for (const { code, n } of codes) failedCodes[code] = n;
    const times = this.db
      .prepare(
        `SELECT max(done_at) AS last,
                sum(CASE WHEN done_at > ? AND state IN ('indexed', 'duplicate', 'failed') THEN 1 ELSE 0 END) AS recent
         FROM job_items WHERE job_id = ?`,
      )
      .get(now - 60_000, id) as { last: number | null; recent: number | null };
    const agg: JobAggregates = {
      counts,
      failedCodes,
      lastDoneAt: times.last,
      doneLastMinute: times.recent ?? 0,
    };
    return summarizeJob(row, agg, now);
  }
}
