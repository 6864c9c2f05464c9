/**
 * The model lifecycle, in one place: the model a library embeds with (its generation), switching
 * models and following the store's. The live generation embeds queries and new items; a reindex
 * in place re-embeds every item with it (after a model change: `longclip reindex`, `serve
 * --model`); during a blue/green reindex (./blue-green.ts) the next one embeds new items too,
 * until the store switches to it. On a shared store (Postgres) another node or process may start,
 * run or switch a reindex: a library re-reads the store's model and its recorded run, loads the
 * next model to embed new items with both, adopts a switch done elsewhere, takes over a run whose
 * node went quiet, and runs a search again when the model switched while it ran. A replaced model
 * closes once the work that used it is done. Both reindexes embed through one loop (./reembed.ts).
 */

import { AppError, isAppError, recordedError } from "../../core/errors.ts";
import type { IndexInput, IndexResult } from "../../core/types.ts";
import type { Embedder } from "../../encode/types.ts";
import type { ModelInfo } from "../../store/types.ts";
import { BlueGreen, STALE_MS } from "./blue-green.ts";
import { type Generation, generationOf } from "./generation.ts";
import { ModelFailure } from "./next-model.ts";
import { reembed } from "./reembed.ts";
import type {
  LiveModels,
  ModelHost,
  ReindexFailure,
  ReindexProgress,
  ReindexStatus,
  SwitchMode,
} from "./types.ts";

/** How often a switch call waiting for another node's switch reads the store. */
const SWITCH_POLL_MS = 100;

function sameInfo(a: ModelInfo, b: ModelInfo): boolean {
  return a.modelId === b.modelId && a.dims === b.dims;
}

function noReindex(): AppError {
  return new AppError("no_reindex", "No reindex is in progress; start one with --to-model.");
}

function libraryClosed(): AppError {
  return new AppError("library_closed", "The library is shutting down; retry shortly.");
}

function reindexRunning(): AppError {
  return new AppError("reindex_running", "A reindex is already running; wait for it.");
}

export class ModelLifecycle implements LiveModels {
  /** The model that embeds queries and new items; replaced by a blue/green switch. */
  private current: Generation;
  /** The store's model when last read (for model_mismatch messages). */
  private lastStored: ModelInfo | undefined;
  private readonly blueGreen: BlueGreen;
  /** Models replaced by a switch, closed once the work that used them is done. */
  private readonly retired = new Set<Promise<void>>();
  /** Following a switch of the store, one at a time (checks and refused inserts may race). */
  private following: Promise<boolean> | undefined;
  /** The store check in progress (checkStore). */
  private checking: Promise<"ready" | "needs_reindex"> | undefined;
  /** Items re-embedded so far by the running reindex in place (undefined: none runs). */
  private inPlace: { done: number; total: number } | undefined;

  constructor(
    private readonly host: ModelHost,
    encoder: Embedder,
  ) {
    this.current = generationOf(encoder, host.settings);
    this.blueGreen = new BlueGreen(host, this);
  }

  get live(): Generation {
    return this.current;
  }

  /** The next generation while a blue/green reindex runs or is followed (it embeds new items too). */
  get next(): Generation | undefined {
    return this.blueGreen.next;
  }

  /**
   * Reads the store's model (after following its reindex, when this library can load models)
   * and compares it with the live one; an empty store, or one used for the first time, records
   * the live model. "needs_reindex" when the stored embeddings come from another model. One
   * check at a time: a call while one runs (a model loading takes longer than the library's
   * 2 s interval) gets its answer, rather than loading the next model a second time.
   */
  checkStore(): Promise<"ready" | "needs_reindex"> {
    this.checking ??= this.checkStoreNow().finally(() => {
      this.checking = undefined;
    });
    return this.checking;
  }

  private async checkStoreNow(): Promise<"ready" | "needs_reindex"> {
    const { store } = this.host;
    let stored = await store.model();
    if (this.host.loadModel !== undefined) {
      const serving = this.serves(stored) || this.serves(this.lastStored);
      await this.followReindex(stored);
      stored = await store.model();
      // The store switched away from this node's model (during this check, or before a run
      // was followed here): follow it rather than refuse every request.
      if (serving && stored !== undefined && !this.serves(stored))
        await this.followSwitchOf(stored);
    }
    this.lastStored = stored;
    const matches =
      stored !== undefined &&
      stored.modelId === this.current.embedder.modelId &&
      stored.dims === this.current.embedder.dims;
    const empty = !matches && (await store.count()) === 0;
    if (stored === undefined || empty) {
      try {
        await store.setModel({
          modelId: this.current.embedder.modelId,
          dims: this.current.embedder.dims,
        });
      } catch (error) {
        // Another node (of another model) stored items since the store was read as empty.
        if (!isAppError(error) || error.code !== "model_mismatch") throw error;
        this.lastStored = await store.model();
        return "needs_reindex";
      }
    }
    return stored === undefined || matches || empty ? "ready" : "needs_reindex";
  }

  /** Whether a reindex in place runs (the store's model is not checked meanwhile). */
  get reindexing(): boolean {
    return this.inPlace !== undefined;
  }

  /** For /ready while a reindex in place runs: how far it is. */
  reindexProgressLine(): string {
    const { done = 0, total = 0 } = this.inPlace ?? {};
    const share = total > 0 ? ` (${Math.floor((100 * done) / total)}%)` : "";
    return `re-embedding the library with model ${this.current.embedder.modelId}: ${done} of ${total} items${share}`;
  }

  /** The error for work refused because the store holds embeddings of another model. */
  mismatch(): AppError {
    const stored = this.lastStored;
    const { modelId, dims } = this.current.embedder;
    return new AppError(
      "model_mismatch",
      `The library was embedded with model ${stored?.modelId ?? "?"} (${stored?.dims ?? "?"} dims), the loaded model is ${modelId} (${dims} dims); run \`longclip reindex\` to re-embed every item with the loaded model, or load the previous model.`,
      { storedModelId: stored?.modelId, modelId },
    );
  }

  /**
   * Reindex in place: every item is embedded again by the live model into the staging
   * embeddings (cleared first, so an interrupted run starts over), then the store swaps them in
   * and records the live model, in one transaction. An item that cannot be read or decoded
   * fails only itself. Returns how many were embedded.
   */
  async reindexInPlace(onProgress?: ReindexProgress, onFailure?: ReindexFailure): Promise<number> {
    if (this.inPlace !== undefined) throw reindexRunning();
    const progress = { done: 0, total: 0 };
    this.inPlace = progress;
    try {
      const { store, settings } = this.host;
      const model = this.current;
      const pageSize = Math.max(1, settings.imageBatchSize);
      await store.clearStaging();
      progress.total = await store.count();
      onProgress?.(0, progress.total);
      const embedded = await reembed(this.host, {
        model,
        list: (after) => store.itemsAfter(after, pageSize),
        failed: (item, error) => onFailure?.(item.id, error),
        paged: (listed) => {
          progress.done = Math.min(progress.done + listed, progress.total);
          onProgress?.(progress.done, progress.total);
        },
      }).catch((error: unknown) => {
        throw error instanceof ModelFailure ? error.reason : error;
      });
      this.lastStored = { modelId: model.embedder.modelId, dims: model.embedder.dims };
      await store.swapStaging(this.lastStored);
      return embedded;
    } finally {
      this.inPlace = undefined;
    }
  }

  /**
   * Starts embedding every item with the model in `modelDir` in the background (or resumes a
   * recorded run of that model); search keeps serving the live model until the switch.
   */
  startReindex(modelDir: string, switchMode: SwitchMode): Promise<ReindexStatus> {
    if (this.inPlace !== undefined) return Promise.reject(reindexRunning());
    return this.blueGreen.start(modelDir, switchMode);
  }

  /** The blue/green reindex this library runs or last ran, if any. */
  reindexStatus(): ReindexStatus | undefined {
    return this.blueGreen.current();
  }

  /**
   * Switches the blue/green run (one waiting in manual mode, or one a stopped process recorded)
   * after a last catch-up pass, and answers once the store switched. Of calls at the same time
   * on several nodes, one node switches and every call gets the switched status (a call that
   * comes just after the switch too); each node serves the new model before it answers.
   */
  async switchReindex(): Promise<ReindexStatus> {
    const { store } = this.host;
    for (;;) {
      const own = await this.blueGreen.requestSwitch();
      if (own !== undefined) return own;
      // In another node's hands, or done: the store says how it ended. The target is read
      // first: a switch removes it and records the model in one transaction.
      const run = this.blueGreen.known;
      const target = await store.reindexTarget();
      const stored = await store.model();
      const leftover = target === undefined || target.modelId === stored?.modelId;
      if (run !== undefined && stored !== undefined && leftover && sameInfo(run, stored)) {
        await this.followSwitchOf(stored);
        return this.blueGreen.switchedStatus(run);
      }
      if (target === undefined) throw noReindex();
      if (target.failed !== undefined) throw recordedError(target.failed, 409);
      if (this.blueGreen.stopped) throw libraryClosed();
      await new Promise((resolve) => setTimeout(resolve, SWITCH_POLL_MS));
    }
  }

  /** Resolves when the blue/green run (if any) ends. */
  waitForReindex(): Promise<void> {
    return this.blueGreen.settled();
  }

  /**
   * Blue/green, seen from the store: a switch done elsewhere is adopted, a recorded run is
   * followed (next model loaded, new items embedded by both) or, when stale, taken over.
   */
  private async followReindex(stored: ModelInfo | undefined): Promise<void> {
    const next = this.blueGreen.next;
    if (next !== undefined && stored?.modelId === next.embedder.modelId) {
      this.switchedElsewhere(next);
      return;
    }
    const { store } = this.host;
    const target = await store.reindexTarget();
    if (target === undefined) {
      // No run recorded: if because it switched since `stored` was read (a switch removes the
      // record and records the model in one transaction), the next model is live now: adopted,
      // not dropped (uploads in flight embed with it).
      const now = await store.model();
      if (next !== undefined && now?.modelId === next.embedder.modelId)
        this.switchedElsewhere(next);
      else this.blueGreen.drop();
      return;
    }
    if (target.modelId === stored?.modelId) {
      await store.setReindexTarget(undefined, target); // a leftover of a finished run
      return;
    }
    if (this.blueGreen.isRunning()) return;
    if (target.failed !== undefined) {
      this.blueGreen.drop(); // failed for its model: shown by GET /reindex, never resumed
      return;
    }
    if (Date.now() - target.heartbeatAt > STALE_MS) await this.blueGreen.resume(target);
    else await this.blueGreen.follow(target);
  }

  async load(modelDir: string): Promise<Generation> {
    const load = this.host.loadModel;
    if (load === undefined) {
      throw new AppError(
        "reindex_unsupported",
        "This library was opened without a model loader; it cannot load another model.",
      );
    }
    return generationOf(await load(modelDir), this.host.settings);
  }

  /** The next model becomes live; the old one closes once the work in flight is done. */
  adopt(next: Generation): void {
    const old = this.current;
    if (old === next) return;
    this.current = next;
    this.lastStored = { modelId: next.embedder.modelId, dims: next.embedder.dims };
    this.host.adopted(next);
    this.retire(old);
  }

  /** Closes `old` once the work in flight (which may embed with it) is done. */
  retire(old: Generation): void {
    const closing = Promise.allSettled([...this.host.inFlight()])
      .then(() => old.embedder.close())
      .catch((error: unknown) => this.host.reportBackground(error));
    this.retired.add(closing);
    closing.finally(() => this.retired.delete(closing));
  }

  /**
   * Runs a search again if the model switched while it ran (its query was embedded by the old
   * model). On a shared store during a reindex, the store's model is read first, so a node
   * switches at its first search after another node switched the store.
   */
  async acrossSwitch<T>(work: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const live = this.current;
      if (this.blueGreen.next !== undefined && this.host.store.shared) await this.followSwitch();
      try {
        const result = await work();
        if (this.current === live || attempt >= 3) return result;
      } catch (error) {
        if (attempt >= 3) throw error;
        if (this.current === live && !(await this.followSwitch())) throw error;
      }
    }
  }

  /**
   * After an insert was refused because the store holds another model than the one it was
   * embedded by: if the store switched away from the model this node was serving (a blue/green
   * run it had not followed, or not adopted, yet), adopt the store's model. True when the live
   * model is now the store's, so the refused items can be embedded again. A node started on
   * another model than the store's does not follow: it refuses until an operator decides.
   */
  private async followStoreModel(): Promise<boolean> {
    const stored = await this.host.store.model();
    if (stored === undefined) return false;
    if (this.serves(stored)) return true;
    if (!this.serves(this.lastStored)) return false;
    return this.followSwitchOf(stored);
  }

  /**
   * The store switched to `stored`: it becomes live here, the next model if this node loaded
   * it, else loaded from the directory the switch recorded. True when it is live now.
   */
  private followSwitchOf(stored: ModelInfo): Promise<boolean> {
    this.following ??= (async () => {
      if (this.serves(stored)) return true;
      const next = this.blueGreen.next;
      if (next !== undefined && next.embedder.modelId === stored.modelId) {
        this.switchedElsewhere(next);
        return true;
      }
      if (stored.modelDir === undefined || this.host.loadModel === undefined) return false;
      const loaded = await this.load(stored.modelDir);
      if (loaded.embedder.modelId !== stored.modelId || loaded.embedder.dims !== stored.dims) {
        await loaded.embedder.close(); // the directory holds another model now
        return false;
      }
      this.adopt(loaded);
      this.blueGreen.switchedElsewhere();
      return true;
    })().finally(() => {
      this.following = undefined;
    });
    return this.following;
  }

  /** Whether `info` is the live model. */
  private serves(info: ModelInfo | undefined): boolean {
    return (
      info?.modelId === this.current.embedder.modelId && info.dims === this.current.embedder.dims
    );
  }

  /**
   * Runs ingest, and again for the items the store refused because it switched models under
   * them (a blue/green run this node had not followed yet): the node follows the switch and
   * embeds them with the new model. A valid image never fails because of a switch.
   */
  async ingestAcrossSwitch(
    inputs: readonly IndexInput[],
    run: (inputs: readonly IndexInput[]) => Promise<IndexResult[]>,
  ): Promise<IndexResult[]> {
    const results = await run(inputs);
    for (let attempt = 1; attempt <= 2; attempt++) {
      const refused = results.flatMap((result, i) =>
        result.status === "failed" && result.error?.code === "model_mismatch" ? [i] : [],
      );
      if (refused.length === 0 || !(await this.followStoreModel())) break;
      const again = await run(refused.map((i) => inputs[i] as IndexInput));
      refused.forEach((i, k) => {
        results[i] = again[k] as IndexResult;
      });
    }
    return results;
  }

  /** Adopts the next model if the store switched to it; true when it did. */
  private async followSwitch(): Promise<boolean> {
    const next = this.blueGreen.next;
    if (next === undefined) return false;
    const stored = await this.host.store.model();
    if (stored?.modelId !== next.embedder.modelId) return false;
    this.switchedElsewhere(next);
    return true;
  }

  /** Another node switched the store to `next`: it becomes live here too. */
  private switchedElsewhere(next: Generation): void {
    this.blueGreen.next = undefined;
    this.adopt(next);
    this.blueGreen.switchedElsewhere();
  }

  /** Stops the blue/green run (if any) and waits until it ended. */
  async stop(): Promise<void> {
    this.blueGreen.stop();
    await this.blueGreen.settled();
  }

  /** Resolves when every replaced model has closed. */
  async retiredClosed(): Promise<void> {
    await Promise.allSettled([...this.retired]);
  }

  /** Closes the live model and the next one, if loaded. */
  async close(): Promise<void> {
    const next = this.blueGreen.next;
    this.blueGreen.next = undefined;
    await Promise.all([this.current.embedder.close(), next?.embedder.close()]);
  }
}
