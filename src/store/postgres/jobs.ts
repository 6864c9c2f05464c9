/**
 * Jobs on Postgres. Workers on any host claim chunks with `FOR UPDATE SKIP LOCKED`: two
 * workers never wait for each other nor take the same rows, and a claim is one short
 * transaction. Times come from the database's clock, so leases do not depend on the hosts'.
 */
import type { Metadata } from "../../core/types.ts";
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
} from "../jobs.ts";
import type { Db } from "./db.ts";

/** The database's clock in milliseconds. */
const NOW_MS = "(extract(epoch from clock_timestamp()) * 1000)::bigint";
const INSERT_BATCH = 1000;

export class PostgresJobs implements JobStore {
  constructor(
    private readonly db: Db,
    private readonly ready: () => Promise<void>,
  ) {}

  async create(job: NewJob): Promise<JobSummary> {
    await this.ready();
    await this.db.transaction(async (client) => {
      await client.query(
        `INSERT INTO longclip.jobs (id, metadata, created_at) VALUES ($1, $2::jsonb, ${NOW_MS})`,
        [job.id, JSON.stringify(job.metadata)],
      );
      for (let start = 0; start < job.paths.length; start += INSERT_BATCH) {
        const paths = job.paths.slice(start, start + INSERT_BATCH);
        await client.query(
          `INSERT INTO longclip.job_items (job_id, seq, path)
           SELECT $1, $2 + ordinality - 1, path FROM unnest($3::text[]) WITH ORDINALITY AS p(path, ordinality)`,
          [job.id, start, paths],
        );
      }
      const failed = job.failed ?? [];
      if (failed.length > 0) {
        await client.query(
          `INSERT INTO longclip.job_items (job_id, seq, path, state, done_at, error_code, error_message)
           SELECT $1, $2 + ordinality - 1, path, 'failed', ${NOW_MS}, code, message
           FROM unnest($3::text[], $4::text[], $5::text[]) WITH ORDINALITY AS f(path, code, message, ordinality)`,
          [
            job.id,
            job.paths.length,
            failed.map((f) => f.path),
            failed.map((f) => f.code),
            failed.map((f) => f.message),
          ],
        );
      }
    });
    return (await this.get(job.id)) as JobSummary;
  }

  async get(id: string): Promise<JobSummary | undefined> {
    await this.ready();
    const rows = await this.db.query<JobRow & { now: number }>(
      `SELECT id, created_at, started_at, cancelled_at, ${NOW_MS} AS now FROM longclip.jobs WHERE id = $1`,
      [id],
    );
    const row = rows.rows[0];
    return row === undefined ? undefined : this.summarize(row, row.now);
  }

  async list(limit: number): Promise<JobSummary[]> {
    await this.ready();
    const rows = await this.db.query<JobRow & { now: number }>(
      `SELECT id, created_at, started_at, cancelled_at, ${NOW_MS} AS now FROM longclip.jobs
       ORDER BY created_at DESC, id DESC LIMIT $1`,
      [limit],
    );
    return Promise.all(rows.rows.map((row) => this.summarize(row, row.now)));
  }

  async failures(id: string, limit: number): Promise<JobFailure[]> {
    await this.ready();
    const rows = await this.db.query<JobFailure>(
      `SELECT path, error_code AS code, error_message AS message FROM longclip.job_items
       WHERE job_id = $1 AND state = 'failed' ORDER BY seq LIMIT $2`,
      [id, limit],
    );
    return rows.rows;
  }

  async cancel(id: string): Promise<JobSummary | undefined> {
    await this.ready();
    const found = await this.db.transaction(async (client) => {
      const updated = await client.query(
        `UPDATE longclip.jobs SET cancelled_at = coalesce(cancelled_at, ${NOW_MS}) WHERE id = $1`,
        [id],
      );
      if (updated.rowCount === 0) return false;
      await client.query(
        `UPDATE longclip.job_items SET state = 'cancelled', done_at = ${NOW_MS}
         WHERE job_id = $1 AND state = 'pending'`,
        [id],
      );
      return true;
    });
    return found ? this.get(id) : undefined;
  }

  async claim(
    workerId: string,
    limit: number,
    leaseMs: number,
    maxAttempts: number,
  ): Promise<ClaimedItem[]> {
    await this.ready();
    return this.db.transaction(async (client) => {
      await client.query(
        `UPDATE longclip.job_items SET state = 'failed', done_at = ${NOW_MS}, error_code = $1, error_message = $2
         WHERE state = 'claimed' AND lease_until < ${NOW_MS} AND attempts >= $3`,
        [WORKER_LOST, lostMessage(maxAttempts), maxAttempts],
      );
      const claimed = await client.query<{
        job_id: string;
        seq: number;
        path: string;
        attempts: number;
        metadata: Metadata;
        created_at: number;
      }>(
        `WITH picked AS (
           SELECT ji.job_id, ji.seq FROM longclip.job_items ji
           JOIN longclip.jobs j ON j.id = ji.job_id
           WHERE j.cancelled_at IS NULL
             AND (ji.state = 'pending' OR (ji.state = 'claimed' AND ji.lease_until < ${NOW_MS}))
           ORDER BY j.created_at, ji.job_id, ji.seq
           LIMIT $2
           FOR UPDATE OF ji SKIP LOCKED)
         UPDATE longclip.job_items ji
         SET state = 'claimed', worker = $1, lease_until = ${NOW_MS} + $3, attempts = ji.attempts + 1
         FROM picked, longclip.jobs j
         WHERE ji.job_id = picked.job_id AND ji.seq = picked.seq AND j.id = ji.job_id
         RETURNING ji.job_id, ji.seq, ji.path, ji.attempts, j.metadata, j.created_at`,
        [workerId, limit, leaseMs],
      );
      const jobIds = [...new Set(claimed.rows.map((row) => row.job_id))];
      const created = new Map(claimed.rows.map((row) => [row.job_id, row.created_at]));
      if (jobIds.length > 0) {
        await client.query(
          `UPDATE longclip.jobs SET started_at = coalesce(started_at, ${NOW_MS}) WHERE id = ANY($1::text[])`,
          [jobIds],
        );
      }
      return claimed.rows
        .map((row) => ({
          jobId: row.job_id,
          seq: row.seq,
          path: row.path,
          attempts: row.attempts,
          metadata: row.metadata,
        }))
        .sort(
          (a, b) =>
            (created.get(a.jobId) ?? 0) - (created.get(b.jobId) ?? 0) ||
            (a.jobId < b.jobId ? -1 : a.jobId > b.jobId ? 1 : a.seq - b.seq),
        );
    });
  }

  async extendLease(workerId: string, items: readonly ClaimedItem[], leaseMs: number) {
    if (items.length === 0) return;
    await this.db.query(
      `UPDATE longclip.job_items SET lease_until = ${NOW_MS} + $1
       WHERE state = 'claimed' AND worker = $2 AND job_id = $3 AND seq = ANY($4::integer[])`,
      [leaseMs, workerId, items[0]?.jobId, items.map((item) => item.seq)],
    );
    // Chunks come from one job almost always; items of others are extended one job at a time.
    const others = items.filter((item) => item.jobId !== items[0]?.jobId);
    if (others.length > 0) await this.extendLease(workerId, others, leaseMs);
  }

  async finish(workerId: string, results: readonly JobItemResult[]): Promise<void> {
    if (results.length === 0) return;
    // $8: the outcome stored the file, which counts whoever holds the item now (see JobStore).
    await this.db.transaction(async (client) => {
      for (const r of results) {
        const failed = r.state === "failed";
        await client.query(
          `UPDATE longclip.job_items
           SET state = $1, done_at = ${NOW_MS}, item_id = $2, error_code = $3, error_message = $4
           WHERE job_id = $5 AND seq = $6
             AND ((state = 'claimed' AND worker = $7)
               OR ($8 AND (state = 'claimed' OR (state = 'failed' AND error_code = $9))))`,
          [
            r.state,
            failed ? null : r.itemId,
            failed ? r.code : null,
            failed ? r.message : null,
            r.jobId,
            r.seq,
            workerId,
            !failed,
            WORKER_LOST,
          ],
        );
      }
    });
  }

  private async summarize(row: JobRow, now: number): Promise<JobSummary> {
    const counts = emptyCounts();
    const failedCodes: Record<string, number> = {};
    const byState = await this.db.query<{ state: JobItemState; code: string | null; n: number }>(
      `SELECT state, error_code AS code, count(*)::bigint AS n FROM longclip.job_items
       WHERE job_id = $1 GROUP BY state, error_code`,
      [row.id],
    );
    for (const { state, code, n } of byState.rows) {
      counts[state] += n;
      if (state === "failed")
        failedCodes[code ?? "unknown"] = (failedCodes[code ?? "unknown"] ?? 0) + n;
    }
    const times = await this.db.query<{ last: number | null; recent: number }>(
      `SELECT max(done_at) AS last,
              count(*) FILTER (WHERE done_at > $2 AND state IN ('indexed', 'duplicate', 'failed'))::bigint AS recent
       FROM longclip.job_items WHERE job_id = $1`,
      [row.id, now - 60_000],
    );
    const t = times.rows[0];
    return summarizeJob(
      row,
      { counts, failedCodes, lastDoneAt: t?.last ?? null, doneLastMinute: t?.recent ?? 0 },
      now,
    );
  }
}
