/**
 * Ingest's duplicate check, before any decoding: an input whose content is stored is a
 * duplicate; one whose content is being ingested now (by this call or another) waits for that
 * outcome; otherwise the call claims the content hash and id until the input's result is
 * recorded, so concurrent calls never both own the same bytes or id.
 */
import { createHash } from "node:crypto";
import { errorOf, idConflict } from "../../core/errors.ts";
import type { IndexInput, IndexResult } from "../../core/types.ts";
import type { ContentMatch, ItemStore } from "../../store/types.ts";
import type { LoadedInput } from "./inputs.ts";

/** An input this call owns: its content hash and id are claimed until its result is recorded. */
export interface Job extends LoadedInput {
  index: number;
  id: string;
  sha256: string;
  claim: Claim;
}

/** What the store holds of an input's content and id. */
export interface Lookup extends ContentMatch {
  sha256: string;
  id: string;
}

export type ClaimOutcome = { id: string } | { error: { code: string; message: string } };

/** An in-flight content hash: later copies of the same bytes wait for its outcome. */
interface Claim {
  promise: Promise<ClaimOutcome>;
  settle(outcome: ClaimOutcome): void;
}

function newClaim(): Claim {
  let settle: (outcome: ClaimOutcome) => void = () => {};
  const promise = new Promise<ClaimOutcome>((resolve) => {
    settle = resolve;
  });
  return { promise, settle };
}

function sha256Hex(bytes: Buffer): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Content hashes and ids being ingested now, and their outcomes when recorded. */
export class Claims {
  private readonly inflightSha = new Map<string, Claim>();
  private readonly inflightIds = new Map<string, string>();

  constructor(private readonly store: ItemStore) {}

  /** What the store holds of an input's content and id. */
  async lookUp(input: IndexInput, bytes: Buffer): Promise<Lookup> {
    const sha256 = sha256Hex(bytes);
    const id = input.id ?? sha256.slice(0, 32);
    return { sha256, id, ...(await this.store.findContent(sha256, id)) };
  }

  /**
   * Decides, before any decoding, whether an input is new work: a duplicate of a stored or an
   * in-flight item, an id conflict, or a job this call now owns (its hash and id are claimed).
   */
  claim(
    i: number,
    input: IndexInput,
    loaded: LoadedInput,
    { sha256, id, existing, idTaken }: Lookup,
    results: IndexResult[],
    waits: Promise<void>[],
  ): Job | undefined {
    if (existing !== undefined) {
      results[i] = { id: existing.id, status: "duplicate" };
      return undefined;
    }
    const inflight = this.inflightSha.get(sha256);
    if (inflight !== undefined) {
      waits.push(
        inflight.promise.then((outcome) => {
          results[i] =
            "id" in outcome
              ? { id: outcome.id, status: "duplicate" }
              : { id: input.id ?? "", status: "failed", error: outcome.error };
        }),
      );
      return undefined;
    }
    if (idTaken || this.inflightIds.has(id)) {
      results[i] = {
        id,
        status: "failed",
        error: idConflict(id),
      };
      return undefined;
    }
    const claim = newClaim();
    this.inflightSha.set(sha256, claim);
    this.inflightIds.set(id, sha256);
    const job: Job = { index: i, id, sha256, claim, ...loaded };
    return job;
  }

  /** Records a job's result and releases its claims. */
  finish(job: Job, results: IndexResult[], outcome: ClaimOutcome): void {
    results[job.index] =
      "id" in outcome
        ? { id: outcome.id, status: outcome.id === job.id ? "indexed" : "duplicate" }
        : { id: job.id, status: "failed", error: outcome.error };
    this.inflightSha.delete(job.sha256);
    this.inflightIds.delete(job.id);
    job.claim.settle(outcome);
  }

  /** Fails, with `error`, each of the jobs that has no result yet. */
  failAll(jobs: readonly Job[], results: IndexResult[], error: unknown): void {
    for (const job of jobs) {
      if (results[job.index] === undefined) this.finish(job, results, { error: errorOf(error) });
    }
  }
}
