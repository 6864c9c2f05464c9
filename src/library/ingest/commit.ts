/**
 * Ingest's last step: an embedded chunk committed to the store in one transaction (each item in
 * its own if that fails), then each input's result recorded in its batch and its claim
 * released. Uploads' originals are staged before, while the previous chunk is being embedded.
 */
import {
  AppError,
  errorOf,
  idConflict,
  isAppError,
  isStorageFull,
  storageFullError,
} from "../../core/errors.ts";
import type { InsertOutcome, ItemStore, NewItem, NewPart } from "../../store/types.ts";
import type { Batch } from "./batch.ts";
import type { Job } from "./claims.ts";

/** A job whose image decoded: what its stored item records of the image. */
export interface Decoded extends Job {
  width: number;
  height: number;
  contentType: string;
}

/** Items' vectors: each one's own, and its parts' (undefined for an item without). */
export interface ItemVectors {
  vectors: Float32Array[];
  parts: (NewPart[] | undefined)[];
}

/** A chunk's embeddings: by the live model, and by the next one while a reindex runs. */
export interface EmbeddedChunk extends ItemVectors {
  modelId: string;
  staged?: ItemVectors & { modelId: string };
}

/** Writes ingest's results to the store. */
export class Committer {
  constructor(
    private readonly store: ItemStore,
    /** Throws when the library cannot take work now (closed, wrong model, no database). */
    private readonly assertUsable: () => void,
  ) {}

  /** Makes an upload's original durable before its chunk is committed. */
  async stageOriginal(job: Job): Promise<void> {
    try {
      await this.store.stageOriginal(job.sha256, job.bytes);
    } catch (error) {
      if (isStorageFull(error)) throw storageFullError();
      throw new AppError(
        "storage_error",
        `Could not store the uploaded image (${String((error as NodeJS.ErrnoException).code ?? "error")}). Check free space and permissions of the data directory.`,
      );
    }
  }

  /** Commits an embedded chunk in one transaction (originals are already staged). */
  async commit(
    batch: Batch,
    chunk: readonly Decoded[],
    embedded: EmbeddedChunk | undefined,
  ): Promise<void> {
    if (embedded === undefined) return;
    const { vectors, parts, staged } = embedded;
    try {
      this.assertUsable();
      const entries: NewItem[] = chunk.map((p, k) => {
        const entry: NewItem = {
          id: p.id,
          sha256: p.sha256,
          metadata: p.metadata,
          contentType: p.contentType,
          width: p.width,
          height: p.height,
          bytes: p.bytes.length,
          source: p.source,
          vector: vectors[k] as Float32Array,
        };
        if (p.path !== undefined) entry.path = p.path;
        const own = parts[k];
        if (own !== undefined) entry.parts = own;
        if (staged !== undefined) {
          entry.staged = { modelId: staged.modelId, vector: staged.vectors[k] as Float32Array };
          const next = staged.parts[k];
          if (own !== undefined && next !== undefined) {
            entry.staged.parts = next.map((part) => part.vector);
          }
        }
        // Staged already on SQLite (a no-op there); committed with the row on Postgres.
        if (p.source === "upload") entry.original = p.bytes;
        return entry;
      });
      const outcomes = await this.insertEach(entries, embedded.modelId);
      outcomes.forEach((outcome, k) => {
        const job = chunk[k] as Decoded;
        if (outcome.status === "failed") {
          batch.finish(job, { error: errorOf(outcome.error) });
        } else if (outcome.status === "inserted") {
          batch.finish(job, { id: job.id });
        } else if (outcome.status === "duplicate") {
          batch.finish(job, { id: outcome.id });
        } else {
          batch.finish(job, { error: idConflict(job.id) });
        }
      });
    } catch (error) {
      batch.failAll(chunk, error);
    }
  }

  /**
   * Commits the chunk in one transaction; if that fails, each item in its own, so one item the
   * store refuses fails only itself. A store that cannot be reached fails them all at once.
   */
  private async insertEach(
    entries: NewItem[],
    modelId: string,
  ): Promise<(InsertOutcome | { status: "failed"; error: unknown })[]> {
    try {
      return await this.store.insertItems(entries, modelId);
    } catch (error) {
      if (entries.length === 1 || (isAppError(error) && error.code === "database_unavailable")) {
        throw error;
      }
    }
    const outcomes: (InsertOutcome | { status: "failed"; error: unknown })[] = [];
    for (const entry of entries) {
      try {
        const [outcome] = await this.store.insertItems([entry], modelId);
        outcomes.push(outcome as InsertOutcome);
      } catch (error) {
        if (isAppError(error) && error.code === "database_unavailable") throw error;
        outcomes.push({ status: "failed", error });
      }
    }
    return outcomes;
  }
}
