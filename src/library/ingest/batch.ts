/**
 * One call's batch: its inputs and the result of each, recorded once. Inputs the call owns
 * (./claims.ts) get theirs when they fail or commit; duplicates of content another call is
 * ingesting get theirs when that call's outcome is known. The batch limit is checked here, for
 * every caller (HTTP, CLI, jobs, gallery).
 */
import { AppError, type ErrorInfo, errorOf, idConflict } from "../../core/errors.ts";
import type { IndexInput, IndexResult } from "../../core/types.ts";
import type { ClaimOutcome, Claims, Job, Lookup } from "./claims.ts";
import type { LoadedInput } from "./inputs.ts";

/** 413 too_many_items: more inputs in one batch than maxBatchItems (`items` when known). */
export function tooManyItems(limit: number, items?: number): AppError {
  const count = items === undefined ? `More than ${limit}` : `${items}`;
  return new AppError(
    "too_many_items",
    `${count} items in one batch; the limit is ${limit} (maxBatchItems, LONGCLIP_MAX_BATCH_ITEMS). Split it into smaller batches.`,
    items === undefined ? { limit } : { items, limit },
  );
}

export class Batch {
  private readonly results: (IndexResult | undefined)[];
  /** Results that wait for another call's outcome for the same content. */
  private readonly waits: Promise<void>[] = [];
  /** The jobs this batch claimed: each must get a result, whatever happens. */
  private readonly owned: Job[] = [];

  /** Refuses, before any work, a batch of more than `limit` inputs. */
  constructor(
    readonly inputs: readonly IndexInput[],
    limit: number,
    private readonly claims: Claims,
  ) {
    if (inputs.length > limit) throw tooManyItems(limit, inputs.length);
    this.results = new Array<IndexResult | undefined>(inputs.length);
  }

  /** Input `i` failed before it was claimed (unreadable, invalid). */
  fail(i: number, error: unknown): void {
    this.results[i] = { id: this.inputs[i]?.id ?? "", status: "failed", error: errorOf(error) };
  }

  /**
   * Decides, before any decoding, whether input `i` is new work: a duplicate of a stored or an
   * in-flight item, an id conflict, or a job this batch now owns (its hash and id are claimed).
   */
  claim(i: number, loaded: LoadedInput, lookup: Lookup): Job | undefined {
    const decision = this.claims.claim(lookup);
    switch (decision.status) {
      case "stored":
        this.results[i] = { id: decision.id, status: "duplicate" };
        return undefined;
      case "in_flight":
        this.waits.push(
          decision.outcome.then((outcome) => {
            this.results[i] =
              "id" in outcome
                ? { id: outcome.id, status: "duplicate" }
                : { id: this.inputs[i]?.id ?? "", status: "failed", error: outcome.error };
          }),
        );
        return undefined;
      case "id_taken":
        this.results[i] = { id: lookup.id, status: "failed", error: idConflict(lookup.id) };
        return undefined;
      case "claimed": {
        const job: Job = {
          index: i,
          id: lookup.id,
          sha256: lookup.sha256,
          claim: decision.claim,
          ...loaded,
        };
        this.owned.push(job);
        return job;
      }
    }
  }

  /** Records a job's result and releases its claims. */
  finish(job: Job, outcome: ClaimOutcome): void {
    this.results[job.index] =
      "id" in outcome
        ? { id: outcome.id, status: outcome.id === job.id ? "indexed" : "duplicate" }
        : { id: job.id, status: "failed", error: outcome.error };
    this.claims.release(job, outcome);
  }

  /** Fails, with `error`, each of `jobs` that has no result yet. */
  failAll(jobs: readonly Job[], error: unknown): void {
    this.failUnfinished(jobs, errorOf(error));
  }

  /** Fails the owned jobs left without a result (the run stopped): their waiters need one. */
  interrupt(): void {
    this.failUnfinished(this.owned, {
      code: "internal_error",
      message: "Indexing was interrupted; retry.",
    });
  }

  private failUnfinished(jobs: readonly Job[], error: ErrorInfo): void {
    for (const job of jobs) {
      if (this.results[job.index] === undefined) this.finish(job, { error });
    }
  }

  /** One result per input, in order, once those waiting for other calls have theirs. */
  async settled(): Promise<IndexResult[]> {
    await Promise.all(this.waits);
    return this.results as IndexResult[];
  }
}
