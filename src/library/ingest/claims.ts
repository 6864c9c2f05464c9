/**
 * Ingest's duplicate check, before any decoding: an input whose content is stored is a
 * duplicate; one whose content is being ingested now (by this call or another) waits for that
 * outcome; otherwise the call claims the content hash and id until the input's result is
 * recorded, so concurrent calls never both own the same bytes or id. These claims are shared
 * by every call; each call's results are its ./batch.ts's.
 */
import { createHash } from "node:crypto";
import type { IndexInput } from "../../core/types.ts";
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

/** What `claim` found of some content: who has it, or that the caller has it now. */
export type ClaimDecision =
  | { status: "stored"; id: string }
  | { status: "in_flight"; outcome: Promise<ClaimOutcome> }
  | { status: "id_taken" }
  | { status: "claimed"; claim: Claim };

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
   * Decides, before any decoding, whether content is new work: stored already, being ingested
   * now (its outcome comes later), an id taken by other content, or claimed now for the caller
   * (its hash and id stay claimed until `release`).
   */
  claim({ sha256, id, existing, idTaken }: Lookup): ClaimDecision {
    if (existing !== undefined) return { status: "stored", id: existing.id };
    const inflight = this.inflightSha.get(sha256);
    if (inflight !== undefined) return { status: "in_flight", outcome: inflight.promise };
    if (idTaken || this.inflightIds.has(id)) return { status: "id_taken" };
    const claim = newClaim();
    this.inflightSha.set(sha256, claim);
    this.inflightIds.set(id, sha256);
    return { status: "claimed", claim };
  }

  /** Releases a job's claims and tells those waiting for its content the outcome. */
  release(job: Job, outcome: ClaimOutcome): void {
    this.inflightSha.delete(job.sha256);
    this.inflightIds.delete(job.id);
    job.claim.settle(outcome);
  }
}
