/**
 * An embedding queue: one tower, one job at a time, two priorities. Query jobs always run
 * before waiting ingest jobs, and ingest work is submitted in small chunks, so a bulk ingest
 * delays an image search by at most one chunk. (The library gives text queries a queue of
 * their own: the text tower runs in its own worker, beside the image chunks.)
 *
 * Admission is bounded per priority: each side may hold `capacity` pending units (images or
 * queries) before `reserve` refuses with 429 queue_full. Queries get their own budget so a
 * full ingest queue never turns searches away.
 */
import { AppError } from "../core/errors.ts";

export type Priority = "query" | "ingest";

export interface Reservation {
  /** Gives back `units` (default: all that remain); extra calls are harmless. */
  release(units?: number): void;
}

export class EmbedQueue {
  private readonly pendingUnits: Record<Priority, number> = { query: 0, ingest: 0 };
  private readonly waiting: Record<Priority, (() => void)[]> = { query: [], ingest: [] };
  private running = false;
  /** Moving average of seconds per unit of work, for Retry-After. */
  private secondsPerUnit = 0.05;

  constructor(readonly capacity: number) {}

  get pending(): number {
    return this.pendingUnits.query + this.pendingUnits.ingest;
  }

  /** Claims room for `units` units of work, or throws queue_full (429) with a retry hint. */
  reserve(priority: Priority, units: number): Reservation {
    const pending = this.pendingUnits[priority];
    // An idle queue accepts any batch, so a batch larger than the capacity is still possible.
    if (pending > 0 && pending + units > this.capacity) {
      const retryAfterSeconds = Math.max(1, Math.ceil(pending * this.secondsPerUnit));
      throw new AppError(
        "queue_full",
        `The embedding queue is full (${pending} pending ${priority === "query" ? "queries" : "images"}, capacity ${this.capacity}); retry after ${retryAfterSeconds} s or send smaller batches.`,
        { retryAfterSeconds },
      );
    }
    this.pendingUnits[priority] += units;
    let left = units;
    return {
      release: (n = left) => {
        const amount = Math.min(Math.max(0, n), left);
        left -= amount;
        this.pendingUnits[priority] -= amount;
      },
    };
  }

  /** Runs `job` when it is its turn: after any running job and every waiting query job. */
  async run<T>(priority: Priority, units: number, job: () => Promise<T>): Promise<T> {
    await this.turn(priority);
    const started = performance.now();
    try {
      return await job();
    } finally {
      if (units > 0) {
        const perUnit = (performance.now() - started) / 1000 / units;
        this.secondsPerUnit = 0.8 * this.secondsPerUnit + 0.2 * perUnit;
      }
      this.running = false;
      this.next();
    }
  }

  private turn(priority: Priority): Promise<void> {
    if (!this.running && this.waiting.query.length === 0 && this.waiting.ingest.length === 0) {
      this.running = true;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiting[priority].push(resolve));
  }

  private next(): void {
    const start = this.waiting.query.shift() ?? this.waiting.ingest.shift();
    if (start !== undefined) {
      this.running = true;
      start();
    }
  }
}
