/**
 * A job worker: claims chunks of job items, indexes them through the library (the same
 * pipeline as POST /index), and records each item's outcome. It holds a lease on its chunk and
 * renews it while it works; if the worker dies, the lease runs out and another worker takes
 * the chunk over. Nothing is stored twice: the store's unique content hash decides, and a
 * retried item that finds its own earlier commit counts as indexed.
 *
 * Runs inside `longclip serve` on the embedded default, and as `longclip worker` processes
 * (any number, any host) on Postgres.
 */
import { realpath } from "node:fs/promises";
import { hostname } from "node:os";
import path from "node:path";
import { isAppError } from "../core/errors.ts";
import type { IndexInput, IndexResult } from "../core/types.ts";
import type { LongclipLibrary } from "../library/library.ts";
import type { ClaimedItem, JobItemResult, JobStore } from "../store/jobs.ts";

export interface RunnerOptions {
  /** Files per claim: one encoder batch or a few. */
  chunkSize: number;
  leaseMs: number;
  /** Leases an item may have before it fails as worker_lost. */
  maxAttempts?: number;
  /** Wait between claims when there is no work. */
  idleMs?: number;
  mediaRoot: string;
  log?: (message: string, fields?: Record<string, unknown>) => void;
}

const TRANSIENT = new Set(["queue_full", "database_unavailable", "library_closed"]);

export function workerId(): string {
  return `${hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 8)}`;
}

export class JobRunner {
  readonly id = workerId();
  private stopping = false;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  /** Items finished by this worker, for its progress log. */
  processed = 0;

  constructor(
    private readonly library: LongclipLibrary,
    private readonly jobs: JobStore,
    private readonly options: RunnerOptions,
  ) {}

  start(): void {
    this.loop ??= this.run();
  }

  /** Claims again now instead of after the idle wait (a job was just created). */
  poke(): void {
    this.wake?.();
  }

  /** Stops claiming; resolves when the chunk in progress is finished and recorded. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.wake?.();
    await this.loop;
  }

  private async run(): Promise<void> {
    let idle = this.options.idleMs ?? 1000;
    while (!this.stopping) {
      let claimed: ClaimedItem[] = [];
      try {
        claimed = await this.jobs.claim(
          this.id,
          this.options.chunkSize,
          this.options.leaseMs,
          this.options.maxAttempts ?? 3,
        );
      } catch (error) {
        this.options.log?.("claiming job items failed; retrying", { error: String(error) });
      }
      if (claimed.length === 0) {
        await this.sleep(idle);
        idle = Math.min(idle * 2, 5_000);
        continue;
      }
      idle = this.options.idleMs ?? 1000;
      await this.process(claimed);
    }
  }

  /** Indexes one chunk, renewing its lease meanwhile, and records the outcomes. */
  async process(claimed: readonly ClaimedItem[]): Promise<void> {
    const renew = setInterval(
      () => {
        this.jobs.extendLease(this.id, claimed, this.options.leaseMs).catch(() => {});
      },
      Math.max(50, this.options.leaseMs / 3),
    );
    try {
      const indexed = await this.indexWithRetry(claimed);
      if (indexed === undefined) return;
      const outcomes = await Promise.all(
        claimed.map((item, k) => this.outcome(item, indexed.results[k], indexed.retried.has(k))),
      );
      await this.jobs.finish(this.id, outcomes);
      this.processed += outcomes.length;
    } catch (error) {
      // The items stay claimed: another worker takes them over when the lease runs out.
      this.options.log?.("a chunk could not be recorded; its lease will expire", {
        error: String(error),
      });
    } finally {
      clearInterval(renew);
    }
  }

  /**
   * The library's results; a busy or unreachable backend is waited out, not failed: thrown, the
   * chunk is run again; as some items' results (a commit that lost its database), those items
   * are (`retried`: their own earlier commit may be found, as after a lost lease).
   */
  private async indexWithRetry(
    claimed: readonly ClaimedItem[],
  ): Promise<{ results: (IndexResult | undefined)[]; retried: Set<number> } | undefined> {
    // Relative to the media root, as the job stores them: the library resolves and confines
    // them, and its messages (readable by any client in the job's failures) name no server path.
    const inputs = claimed.map((item) => ({ path: item.path, metadata: item.metadata }));
    const results = new Array<IndexResult | undefined>(claimed.length);
    const retried = new Set<number>();
    let todo = claimed.map((_, i) => i);
    for (let wait = 500; ; wait = Math.min(wait * 2, 10_000)) {
      let code: string;
      try {
        const got = await this.library.index(todo.map((i) => inputs[i] as IndexInput));
        const again = todo.filter((i, k) => {
          const result = got[k];
          const transient = result?.status === "failed" && TRANSIENT.has(result.error?.code ?? "");
          if (!transient) results[i] = result;
          return transient;
        });
        if (again.length === 0) return { results, retried };
        for (const i of again) retried.add(i);
        todo = again;
        code = got.find((result) => result.status === "failed")?.error?.code ?? "";
      } catch (error) {
        if (!isAppError(error) || !TRANSIENT.has(error.code)) {
          if (!isAppError(error)) return undefined;
          for (const i of todo) {
            results[i] = {
              id: "",
              status: "failed",
              error: { code: error.code, message: `${claimed[i]?.path}: ${error.message}` },
            };
          }
          return { results, retried };
        }
        code = error.code;
      }
      if (this.stopping) return undefined;
      this.options.log?.("the library is busy or unreachable; retrying the chunk", { code });
      await this.sleep(wait);
    }
  }

  private async outcome(
    item: ClaimedItem,
    result: IndexResult | undefined,
    retried: boolean,
  ): Promise<JobItemResult> {
    const ref = { jobId: item.jobId, seq: item.seq };
    if (result === undefined) {
      return { ...ref, state: "failed", code: "internal_error", message: "no result" };
    }
    if (result.status === "failed") {
      const error = result.error ?? { code: "internal_error", message: "failed" };
      return { ...ref, state: "failed", code: error.code, message: error.message };
    }
    if (result.status === "duplicate" && (item.attempts > 1 || retried)) {
      // A retried item may find the commit of its own earlier attempt: that is not a duplicate.
      const existing = await this.library.store.getById(result.id);
      const file = path.resolve(this.options.mediaRoot, item.path);
      if (existing?.path !== undefined && (await samePath(existing.path, file))) {
        return { ...ref, state: "indexed", itemId: result.id };
      }
    }
    return { ...ref, state: result.status, itemId: result.id };
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
}

async function samePath(stored: string, file: string): Promise<boolean> {
  if (stored === file) return true;
  try {
    return (await realpath(file)) === stored;
  } catch {
    return false;
  }
}
