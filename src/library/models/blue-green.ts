/**
 * Blue/green model switch: every item is embedded by the next model into a second generation
 * (the store's staging embeddings) in the background while search keeps serving the live one;
 * items indexed meanwhile are embedded by both (src/library/ingest/). When every readable
 * item has its new embedding the store switches in one transaction (at once, or when told),
 * dropping the old generation, and each node starts embedding queries with the next model.
 *
 * The run is recorded in the store (target model, directory, switch mode, heartbeat), so a
 * crashed run resumes where it stopped: the items that already have a staged embedding are
 * skipped. A node whose heartbeat is stale is taken over by another (or by the next start).
 */

import { AppError, errorOf, isAppError, recordedError } from "../../core/errors.ts";
import type { Embedder } from "../../encode/types.ts";
import { reindexSuperseded } from "../../store/reindex-target.ts";
import type { ReindexTarget } from "../../store/types.ts";
import type { Generation } from "./generation.ts";
import { loadCheckedModel, ModelFailure } from "./next-model.ts";
import { reembed } from "./reembed.ts";
import type { LiveModels, ModelHost, ReindexStatus, SwitchMode } from "./types.ts";

const HEARTBEAT_MS = 5_000;
/** A run whose heartbeat is older than this is taken over (its node crashed or stopped). */
export const STALE_MS = 30_000;
/** Catch-up passes before a switch gives up on items that keep arriving without both embeddings. */
const MAX_PASSES = 10;
const MAX_LISTED_FAILURES = 50;

export function sameModel(a: Embedder, b: Embedder): boolean {
  return a.modelId === b.modelId && a.dims === b.dims;
}

export class BlueGreen {
  private status: ReindexStatus | undefined;
  /** The next generation, once loaded: ingest embeds with it too. */
  next: Generation | undefined;
  /** Where `next` was loaded from. */
  private nextDir: string | undefined;
  private running: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private switchRequested = false;
  private stopping = false;
  /** The run in progress was taken over by another node (or switched there). */
  private superseded = false;
  /** The run this node ran, resumed, followed or was asked to switch last. */
  known: ReindexTarget | undefined;
  private turn: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly host: ModelHost,
    private readonly models: LiveModels,
  ) {}

  current(): ReindexStatus | undefined {
    return this.status === undefined ? undefined : { ...this.status };
  }

  isRunning(): boolean {
    return this.running !== undefined;
  }

  /** Resolves when the run in progress (if any) ends. */
  async settled(): Promise<void> {
    await this.running;
  }

  /**
   * Starts (or resumes) a reindex to the model in `modelDir`. Resumes a recorded run of the same
   * model; refuses while a run to another model is in progress.
   */
  start(modelDir: string, switchMode: SwitchMode): Promise<ReindexStatus> {
    return this.serial(() => this.startNow(modelDir, switchMode));
  }

  private async startNow(modelDir: string, switchMode: SwitchMode): Promise<ReindexStatus> {
    const recorded = await this.host.store.reindexTarget();
    if (this.running !== undefined) {
      if (this.status?.modelDir === modelDir) return this.current() as ReindexStatus;
      throw new AppError(
        "reindex_running",
        `A reindex to ${this.status?.modelId ?? "another model"} is running; wait for it or switch when it is complete.`,
      );
    }
    if (recorded !== undefined && this.runByAnotherNode(recorded)) throw runningElsewhere(recorded);
    const loaded = this.next !== undefined && this.nextDir === modelDir ? undefined : this.next;
    const next =
      this.next !== undefined && this.nextDir === modelDir
        ? this.next
        : await loadCheckedModel(modelDir, (dir) => this.models.load(dir));
    if (loaded !== undefined) {
      this.next = undefined;
      this.models.retire(loaded);
    }
    const live = this.models.live;
    if (sameModel(next.embedder, live.embedder)) {
      if (next !== this.next) await next.embedder.close();
      throw new AppError(
        "same_model",
        `The library is already on ${live.embedder.modelId}; name another model directory.`,
      );
    }
    const resume = recorded !== undefined && recorded.modelId === next.embedder.modelId;
    const now = Date.now();
    const target: ReindexTarget = {
      modelId: next.embedder.modelId,
      dims: next.embedder.dims,
      modelDir,
      switchMode,
      startedAt: resume ? (recorded as ReindexTarget).startedAt : now,
      heartbeatAt: now,
      complete: false,
    };
    // Recorded only if nothing changed since it was read: of nodes starting one at the same
    // moment, one runs it.
    if (!(await this.host.store.setReindexTarget(target, recorded ?? null))) {
      if (next !== this.next) await next.embedder.close();
      const now = await this.host.store.reindexTarget();
      throw runningElsewhere(now ?? target);
    }
    if (!resume) await this.host.store.clearStaging();
    await this.begin(target, next);
    return this.current() as ReindexStatus;
  }

  /**
   * Whether a recorded run is another live node's: on a shared store, one whose heartbeat is
   * recent (a store only this process opens has no other node).
   */
  private runByAnotherNode(recorded: ReindexTarget): boolean {
    return (
      recorded.failed === undefined &&
      this.host.store.backend !== "sqlite" &&
      Date.now() - recorded.heartbeatAt <= STALE_MS
    );
  }

  /** Takes over a recorded run (after a crash, or when its node went quiet). */
  resume(target: ReindexTarget, toSwitch = false): Promise<void> {
    return this.serial(() => this.resumeNow(target, toSwitch));
  }

  private async resumeNow(seen: ReindexTarget, toSwitch: boolean): Promise<void> {
    if (this.running !== undefined) {
      if (toSwitch) this.askSwitch();
      return;
    }
    // Read again: a resume queued behind another may have seen the run before it failed.
    const target = await this.host.store.reindexTarget();
    if (target?.modelId !== seen.modelId || target.failed !== undefined) return;
    let next: Generation;
    try {
      next =
        this.next?.embedder.modelId === target.modelId
          ? this.next
          : await loadCheckedModel(target.modelDir, (dir) => this.models.load(dir));
    } catch (error) {
      const finishedAt = Date.now();
      this.status = { ...statusOf(target), state: "failed", error: errorOf(error), finishedAt };
      await this.recordModelFailure(target, error);
      throw error;
    }
    // Taken over only if the record is still the one read: of nodes that saw it go stale at
    // the same moment, one resumes it (the others keep following).
    const claimed = {
      ...target,
      heartbeatAt: Date.now(),
      ...(toSwitch ? { switchRequested: true } : {}),
    };
    if (!(await this.host.store.setReindexTarget(claimed, target))) {
      if (next !== this.next) await next.embedder.close();
      return;
    }
    if (toSwitch) this.switchRequested = true;
    await this.begin(claimed, next);
  }

  /** Starts and resumes one at a time: the second sees the run the first began. */
  private serial<T>(work: () => Promise<T>): Promise<T> {
    const result = this.turn.then(work);
    this.turn = result.catch(() => {});
    return result;
  }

  /** Loads the next model of a run another node is doing, so this node embeds with both. */
  async follow(target: ReindexTarget): Promise<void> {
    this.known = target;
    if (this.next?.embedder.modelId === target.modelId) return;
    const previous = this.next;
    this.next = await this.models.load(target.modelDir);
    this.nextDir = target.modelDir;
    if (previous !== undefined) this.models.retire(previous);
  }

  /** Forgets a next model whose run was abandoned (the target is gone, no switch happened). */
  drop(): void {
    if (this.running !== undefined || this.next === undefined) return;
    this.models.retire(this.next);
    this.next = undefined;
  }

  /**
   * Asks a run waiting in manual mode to switch, or switches (takes over) a run recorded by
   * another process. Undefined when the switch is in another node's hands: none is recorded
   * (one switched already, or none runs), that node is switching it, or it took the run over
   * or claimed it first; the caller then learns from the store how it ended.
   */
  async requestSwitch(): Promise<ReindexStatus | undefined> {
    if (this.running === undefined) {
      const recorded = await this.host.store.reindexTarget();
      if (recorded === undefined) return undefined;
      this.known = recorded;
      // A run that failed for its model is not retried by a switch: start it again instead.
      if (recorded.failed !== undefined) throw recordedError(recorded.failed, 409);
      if (recorded.switchRequested === true && this.runByAnotherNode(recorded)) return undefined;
      await this.resume(recorded, true);
      if (this.running === undefined) return undefined;
    } else {
      this.askSwitch();
    }
    await this.running;
    const status = this.current() as ReindexStatus;
    // Another node took the run over, or switched it: the store says how it ended.
    if (status.state === "failed" && status.error?.code === "reindex_superseded") return undefined;
    if (status.state === "failed") {
      // The run's own error, answered with 409: the switch conflicts with a failed run.
      throw recordedError(
        status.error ?? { code: "reindex_failed", message: "the reindex failed" },
        409,
      );
    }
    return status;
  }

  /**
   * The status of `run` once the store switched to its model: this node's own if it ran it, else
   * as the store shows it (items with an embedding by the new model, of all items).
   */
  async switchedStatus(run: ReindexTarget): Promise<ReindexStatus> {
    const own = this.status;
    if (own?.modelId === run.modelId && own.state === "switched") return { ...own };
    const { store } = this.host;
    // Two reads: an item indexed between them (with its new embedding) may count in `done`
    // only, so `done` is bounded by `total`.
    const total = await store.count();
    const done = Math.min(total, await store.countEmbeddings(run.modelId));
    const status = { ...statusOf(run), done, total, failed: total - done };
    return { ...status, state: "switched", finishedAt: Date.now() };
  }

  /** Stopping (the library closes): nothing waits for a switch any more. */
  get stopped(): boolean {
    return this.stopping;
  }

  /** The running run switches once complete (a manual one waiting for it is woken). */
  private askSwitch(): void {
    this.switchRequested = true;
    this.wake?.();
  }

  /** Another node switched the store: a local run ends and the status says so. */
  switchedElsewhere(): void {
    if (this.status !== undefined && this.status.state !== "failed") {
      this.status.state = "switched";
      this.status.finishedAt ??= Date.now();
    }
    this.wake?.();
  }

  stop(): void {
    this.stopping = true;
    this.wake?.();
  }

  /**
   * Records in the store that the run to `target` failed for its model, so that no node takes
   * it over (a store error, by contrast, leaves the run to be resumed); the model is closed.
   */
  private async recordModelFailure(target: ReindexTarget, error: unknown): Promise<void> {
    const failed = errorOf(error instanceof ModelFailure ? error.reason : error);
    await this.host.store.setReindexTarget({ ...target, failed, heartbeatAt: Date.now() });
    const next = this.next;
    if (next !== undefined && next.embedder.modelId === target.modelId) {
      this.next = undefined;
      this.models.retire(next);
    }
  }

  private async begin(target: ReindexTarget, next: Generation): Promise<void> {
    this.known = target;
    this.next = next;
    this.nextDir = target.modelDir;
    this.superseded = false;
    // where a resumed run stands, before its first page
    const [total, done] = await Promise.all([
      this.host.store.count(),
      this.host.store.countStaging(target.modelId),
    ]);
    this.status = { ...statusOf(target), done, total };
    const run = this.run(target, next).catch(async (error: unknown) => {
      const status = this.status as ReindexStatus;
      status.state = "failed";
      status.error = errorOf(error instanceof ModelFailure ? error.reason : error);
      status.finishedAt = Date.now();
      if (error instanceof ModelFailure) {
        await this.recordModelFailure(target, error).catch((cause: unknown) =>
          this.host.reportBackground(cause),
        );
      }
      if (!this.stopping) this.host.reportBackground(error);
    });
    this.running = run.finally(() => {
      this.running = undefined;
      this.switchRequested = false;
    });
  }

  private async run(target: ReindexTarget, next: Generation): Promise<void> {
    const { store } = this.host;
    const status = this.status as ReindexStatus;
    const failed = new Set<number>();
    // The record as this run last wrote it. Every write (heartbeat, completion) replaces only
    // that one, so a run another node took over (its heartbeats were late) learns it and ends.
    let written = target;
    let writes: Promise<unknown> = Promise.resolve();
    const write = (change: Partial<ReindexTarget>): Promise<unknown> => {
      writes = writes
        .then(async () => {
          if (this.superseded) return;
          const record = { ...written, ...change, heartbeatAt: Date.now() };
          if (await store.setReindexTarget(record, written)) written = record;
          else {
            this.superseded = true;
            this.wake?.();
          }
        })
        .catch(() => {}); // the store is unreachable: the next heartbeat tries again
      return writes;
    };
    // No heartbeat while the switch compares the record.
    let switching = false;
    const timer = setInterval(() => {
      if (!switching) void write({});
    }, HEARTBEAT_MS);
    timer.unref();
    try {
      for (let pass = 1; ; pass++) {
        await this.embedMissing(next, failed);
        if (this.ended()) break;
        if (target.switchMode === "manual" && !this.switchRequested) {
          await write({ complete: true });
          if (this.ended()) break;
          status.state = "waiting_for_switch";
          await new Promise<void>((resolve) => {
            this.wake = resolve;
          });
          this.wake = undefined;
          if (this.ended()) break;
          status.state = "running";
          continue;
        }
        // Recorded, so that other nodes asked to switch wait for this one instead of taking over.
        await write({ switchRequested: true });
        switching = true;
        await writes;
        if (this.ended()) break;
        try {
          await store.swapStaging(
            { modelId: next.embedder.modelId, dims: next.embedder.dims, modelDir: target.modelDir },
            { requireCompleteExcept: [...failed], target: written },
          );
        } catch (error) {
          switching = false;
          if (isAppError(error) && error.code === "reindex_superseded") {
            this.superseded = true;
            break;
          }
          if (!isAppError(error) || error.code !== "reindex_incomplete" || pass >= MAX_PASSES)
            throw error;
          continue;
        }
        this.next = undefined;
        this.models.adopt(next);
        status.state = "switched";
        status.finishedAt = Date.now();
        return;
      }
      if (this.superseded && status.state !== "switched") {
        status.state = "failed";
        status.error = errorOf(reindexSuperseded());
        status.finishedAt = Date.now();
      }
    } finally {
      clearInterval(timer);
    }
  }

  /** Stopped, switched by another node meanwhile, or taken over by one. */
  private ended(): boolean {
    return this.stopping || this.superseded || this.status?.state === "switched";
  }

  /** One pass over the items that have no staged embedding yet (except unreadable ones). */
  private async embedMissing(next: Generation, failed: Set<number>): Promise<void> {
    const { store, settings } = this.host;
    const status = this.status as ReindexStatus;
    const modelId = next.embedder.modelId;
    const limit = 2 * Math.max(1, settings.imageBatchSize);
    status.total = await store.count();
    status.done = await store.countStaging(modelId);
    await reembed(this.host, {
      model: next,
      list: (after) => store.unstagedAfter(modelId, after, limit),
      skip: (item) => failed.has(item.label),
      ended: () => this.ended(),
      failed: (item, error) => {
        failed.add(item.label);
        status.failed = failed.size;
        if (status.failures.length < MAX_LISTED_FAILURES)
          status.failures.push({ id: item.id, ...error });
      },
      paged: (_listed, staged) => {
        status.done += staged;
        status.total = Math.max(status.total, status.done + status.failed);
      },
    });
    if (this.ended()) return;
    // items indexed meanwhile arrive with both embeddings: count them too
    status.total = await store.count();
    status.done = await store.countStaging(modelId);
  }
}

function runningElsewhere(recorded: ReindexTarget): AppError {
  return new AppError(
    "reindex_running",
    `Another node runs a reindex to ${recorded.modelId}; every node follows it (GET /reindex), and any node takes it over if that one stops.`,
  );
}

/** A run's status before its first page. */
function statusOf(target: ReindexTarget): ReindexStatus {
  return {
    state: "running",
    modelId: target.modelId,
    dims: target.dims,
    modelDir: target.modelDir,
    switchMode: target.switchMode,
    done: 0,
    total: 0,
    failed: 0,
    failures: [],
    startedAt: target.startedAt,
  };
}
