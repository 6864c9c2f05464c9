/**
 * The embedded backend's ANN index: HNSW shards on worker threads (vector-index/hnsw-shards.ts)
 * derived from the embeddings in SQLite, saved atomically under dataDir/index/ (one file per
 * shard; the name carries model id, dims and shard count) and reconciled with SQLite when
 * opened: labels SQLite lacks are deleted, embeddings the index lacks are added, so a missing
 * or unreadable file, or another shard count, means a rebuild.
 *
 * Inserts and deletes are sent to the shards at once, even while the index is still being
 * opened: a shard handles its messages in order, and every read of SQLite is sent on in the
 * same synchronous step, so the index never misses a change nor keeps a deleted label.
 * Searches wait until the index is reconciled.
 */
import { readdirSync, rmSync } from "node:fs";
import path from "node:path";
import { ShardedHnsw } from "../../vector-index/hnsw-shards.ts";
import type { EmbeddingRow, IndexParameters, ModelInfo } from "../types.ts";

/** What the cache reads from SQLite: every vector of a model (items' and parts'), by label. */
export interface EmbeddingSource {
  countVectors(modelId: string): number;
  vectorLabels(modelId: string): Set<number>;
  vectorsFor(modelId: string, labels: readonly number[]): EmbeddingRow[];
}

/** Embeddings read from SQLite and sent to the shards per step of a rebuild or reconcile. */
const CHUNK = 1000;
/** Steps in flight: the next chunk is read while the shards insert the previous one. */
const WINDOW = 2;

function filePrefix(model: ModelInfo): string {
  return `hnsw-${model.modelId.replace(/[^A-Za-z0-9_.-]/g, "_")}-${model.dims}.`;
}

/** One file per shard: `…-768.bin` for one shard (as before shards), `…-768.shard2of4.bin`. */
export function indexFileNames(model: ModelInfo, shards: number): string[] {
  const prefix = filePrefix(model);
  if (shards === 1) return [`${prefix}bin`];
  return Array.from({ length: shards }, (_, i) => `${prefix}shard${i + 1}of${shards}.bin`);
}

interface Entry {
  model: ModelInfo;
  index: ShardedHnsw;
  /** Settles when the index matches SQLite (as of when it was opened). */
  ready: Promise<void>;
}

export class HnswCache {
  private entry: Entry | undefined;
  private failedSaves = 0;
  /** Replaced indexes being closed. */
  private readonly retiring = new Set<Promise<void>>();

  constructor(
    private readonly dir: string,
    private readonly parameters: IndexParameters & { shards: number },
    private readonly source: EmbeddingSource,
    /** A save after opening failed (it is counted in saveFailures as well). */
    private readonly onSaveError: (error: unknown) => void,
  ) {}

  /**
   * The index of `model`, opened on first use (its reconcile runs in the background): inserts
   * and deletes may be sent at once; searches should go through `ready`.
   */
  of(model: ModelInfo): ShardedHnsw {
    const entry = this.entry;
    if (
      entry !== undefined &&
      entry.model.modelId === model.modelId &&
      entry.model.dims === model.dims &&
      entry.index.failed === undefined
    ) {
      return entry.index;
    }
    return this.replace(this.open(model, true)).index;
  }

  /**
   * The index of `model` once it is reconciled with SQLite. A shard worker that dies during
   * the reconcile costs one more open, not an error.
   */
  async ready(model: ModelInfo): Promise<ShardedHnsw> {
    for (let attempt = 1; ; attempt++) {
      const index = this.of(model);
      try {
        await (this.entry as Entry).ready;
        return index;
      } catch (error) {
        if (index.failed === undefined || attempt === 2) throw error;
      }
    }
  }

  /** The open, working index, if any (stats and deletes do not force an open). */
  loaded(): ShardedHnsw | undefined {
    const index = this.entry?.index;
    return index?.failed === undefined ? index : undefined;
  }

  /**
   * Sends a change SQLite has already committed to `index`. If a shard worker dies meanwhile,
   * the change is not lost: the next use reopens the index from its files and reconciles it
   * with SQLite, which holds the change.
   */
  async apply(
    index: ShardedHnsw | undefined,
    change: (index: ShardedHnsw) => Promise<void>,
  ): Promise<void> {
    if (index === undefined) return;
    try {
      await change(index);
    } catch (error) {
      if (index.failed === undefined) throw error;
    }
  }

  /** Replaces the index by one built from SQLite, saves it and deletes every other file. */
  async rebuild(model: ModelInfo): Promise<void> {
    const entry = this.replace(this.open(model, false));
    await entry.ready;
    this.removeFilesExcept(model, "hnsw-");
  }

  /** Shard saves that failed since this cache was made (a full disk, a write error). */
  get saveFailures(): number {
    return this.failedSaves;
  }

  async saveIfDirty(): Promise<void> {
    const index = this.loaded();
    if (index !== undefined) await index.save(this.files((this.entry as Entry).model));
  }

  /** Waits for the reconcile, saves what changed and stops the shard workers. */
  async close(): Promise<void> {
    const entry = this.entry;
    this.entry = undefined;
    await Promise.all(this.retiring);
    if (entry === undefined) return;
    try {
      await entry.ready.catch(() => undefined);
      // A dead shard saved nothing since its last save; the next open reconciles.
      if (entry.index.failed === undefined) await entry.index.save(this.files(entry.model));
    } finally {
      await entry.index.close();
    }
  }

  private replace(entry: Entry): Entry {
    const previous = this.entry;
    this.entry = entry;
    if (previous !== undefined) {
      // Another model's index is of no further use: its reconcile stops at the next chunk, and
      // it is closed once a search that took it a moment ago has its answer.
      const closing = previous.ready
        .catch(() => undefined)
        .then(() => new Promise((resolve) => setImmediate(resolve)))
        .then(() => previous.index.close())
        .catch(() => undefined)
        .finally(() => this.retiring.delete(closing));
      this.retiring.add(closing);
    }
    return entry;
  }

  private names(model: ModelInfo): string[] {
    return indexFileNames(model, this.parameters.shards);
  }

  private files(model: ModelInfo): string[] {
    return this.names(model).map((name) => path.join(this.dir, name));
  }

  /** Opens the shards (reading their files if `load`) and reconciles them with SQLite. */
  private open(model: ModelInfo, load: boolean): Entry {
    const { shards, ...parameters } = this.parameters;
    const files = this.files(model);
    const index = new ShardedHnsw(
      {
        dims: model.dims,
        ...parameters,
        capacity: Math.max(1024, this.source.countVectors(model.modelId)),
      },
      shards,
      load ? files : undefined,
      (failed) => {
        this.failedSaves += failed;
      },
    );
    const ready = this.reconcile(model, index, files);
    ready.catch(() => undefined);
    return { model, index, ready };
  }

  private async reconcile(model: ModelInfo, index: ShardedHnsw, files: string[]): Promise<void> {
    const opened = await index.opened;
    const indexed = await index.labels();
    // From here to the last send below, reads of SQLite and sends to the shards happen in one
    // synchronous step each, so a concurrent insert or delete is never lost (see the top).
    const stored = this.source.vectorLabels(model.modelId);
    const present = new Set<number>();
    const stale: number[] = [];
    for (const labels of indexed) {
      for (const label of labels) {
        if (stored.has(label)) present.add(label);
        else stale.push(label);
      }
    }
    const steps: Promise<void>[] = [index.remove(stale)];
    const missing = [...stored].filter((label) => !present.has(label));
    const current = () => this.entry?.index === index;
    for (let start = 0; start < missing.length; start += CHUNK) {
      // Replaced (another model) or closed meanwhile: the rest is of no use (a close saves
      // what was done, and the next start reconciles from there).
      if (!current()) break;
      const rows = this.source.vectorsFor(model.modelId, missing.slice(start, start + CHUNK));
      steps.push(
        index.add(
          rows.map((row) => row.label),
          rows.map((row) => row.vector),
        ),
      );
      if (steps.length > WINDOW) await steps.shift();
    }
    await Promise.all(steps);
    if (!current()) return;
    // A rebuilt index is written even when it holds nothing. A failed save (a full disk) leaves
    // the index usable and dirty: the periodic save tries again.
    const unread = opened.some((read) => !read);
    try {
      await index.save(files, unread);
    } catch (error) {
      this.onSaveError(error);
      return;
    }
    // Files of this model saved with another shard count are out of date now.
    if (unread || stale.length > 0 || missing.length > 0) {
      this.removeFilesExcept(model, filePrefix(model));
    }
  }

  /** Deletes the index files starting with `prefix`, except those of `model`'s index. */
  private removeFilesExcept(model: ModelInfo, prefix: string): void {
    const keep = new Set(this.names(model));
    for (const name of readdirSync(this.dir)) {
      if (name.startsWith(prefix) && !keep.has(name))
        rmSync(path.join(this.dir, name), { force: true });
    }
  }
}
