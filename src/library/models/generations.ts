/**
 * The models a library embeds with, and following the store's. The live generation embeds
 * queries and new items; during a blue/green reindex (./blue-green.ts) the next one embeds new
 * items too, until the store switches to it. On a shared store (Postgres) another node or
 * process may start, run or switch a reindex: a library re-reads the store's model and its
 * recorded run, loads the next model to embed new items with both, adopts a switch done
 * elsewhere, takes over a run whose node went quiet, and runs a search again when the model
 * switched while it ran. A replaced model closes once the work that used it is done.
 */

import { AppError, isAppError } from "../../core/errors.ts";
import type { IndexInput, IndexResult } from "../../core/types.ts";
import type { Embedder } from "../../encode/types.ts";
import type { ModelInfo, StoredItem } from "../../store/types.ts";
import { BlueGreen, type BlueGreenHost, STALE_MS } from "./blue-green.ts";
import { type Generation, generationOf } from "./generation.ts";
import { type ReindexFailure, type ReindexProgress, reembedAll } from "./reindex.ts";

/** What following the store needs from the library. */
export interface GenerationsHost extends Omit<BlueGreenHost, "live" | "load" | "adopt"> {
  /** The library's loadModel option; without it, no reindex can be run or followed. */
  loadModel: ((modelDir: string) => Promise<Embedder>) | undefined;
  /** The work in flight: a replaced model closes once it settled. */
  active(): Iterable<Promise<unknown>>;
  /** The next generation became live: the library rebuilds what depends on the model. */
  adopted(next: Generation): void;
}

export class Generations {
  /** The model that embeds queries and new items; replaced by a blue/green switch. */
  private current: Generation;
  /** The store's model when last read (for model_mismatch messages). */
  private lastStored: ModelInfo | undefined;
  readonly blueGreen: BlueGreen;
  /** Models replaced by a switch, closed once the work that used them is done. */
  private readonly retired = new Set<Promise<void>>();
  /** Following a switch of the store, one at a time (checks and refused inserts may race). */
  private following: Promise<boolean> | undefined;

  constructor(
    private readonly host: GenerationsHost,
    encoder: Embedder,
  ) {
    this.current = generationOf(encoder, host.settings);
    this.blueGreen = new BlueGreen({
      settings: host.settings,
      store: host.store,
      pool: host.pool,
      queue: host.queue,
      readBytes: host.readBytes,
      live: () => this.current,
      load: (modelDir) => this.load(modelDir),
      adopt: (next) => this.adopt(next),
      assertOpen: () => host.assertOpen(),
      onBackgroundError: (error) => host.onBackgroundError(error),
    });
  }

  get live(): Generation {
    return this.current;
  }

  get stored(): ModelInfo | undefined {
    return this.lastStored;
  }

  /** The next generation while a blue/green reindex runs or is followed (it embeds new items too). */
  get next(): Generation | undefined {
    return this.blueGreen.next;
  }

  /**
   * Reads the store's model (after following its reindex, when this library can load models)
   * and compares it with the live one; an empty store, or one used for the first time, records
   * the live model. "needs_reindex" when the stored embeddings come from another model.
   */
  async checkStore(): Promise<"ready" | "needs_reindex"> {
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

  /**
   * Reindex in place (./reindex.ts): every item is embedded again by the live model, then the
   * store swaps the new embeddings in and records the live model. Returns how many were embedded.
   */
  async reindexInPlace(
    readBytes: (item: StoredItem) => Promise<Buffer>,
    onProgress?: ReindexProgress,
    onFailure?: ReindexFailure,
  ): Promise<number> {
    const { settings, store, pool, queue } = this.host;
    const modelId = this.current.embedder.modelId;
    const embedded = await reembedAll(
      {
        settings,
        store,
        pool,
        queue,
        live: () => this.current,
        readBytes,
        assertOpen: () => this.host.assertOpen(),
      },
      modelId,
      onProgress,
      onFailure,
    );
    this.lastStored = { modelId, dims: this.current.embedder.dims };
    await store.swapStaging(this.lastStored);
    return embedded;
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
      await this.blueGreen.drop();
      return;
    }
    if (target.modelId === stored?.modelId) {
      await store.setReindexTarget(undefined, target); // a leftover of a finished run
      return;
    }
    if (this.blueGreen.isRunning()) return;
    if (target.failed !== undefined) {
      await this.blueGreen.drop(); // failed for its model: shown by GET /reindex, never resumed
      return;
    }
    if (Date.now() - target.heartbeatAt > STALE_MS) await this.blueGreen.resume(target);
    else await this.blueGreen.follow(target);
  }

  private async load(modelDir: string): Promise<Generation> {
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
  private adopt(next: Generation): void {
    const old = this.current;
    if (old === next) return;
    this.current = next;
    this.lastStored = { modelId: next.embedder.modelId, dims: next.embedder.dims };
    this.host.adopted(next);
    const closing = Promise.allSettled([...this.host.active()])
      .then(() => old.embedder.close())
      .catch((error: unknown) => this.host.onBackgroundError(error));
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
