/**
 * Blue/green reindex on SQLite: the next model's embeddings go to `embeddings_staging` (its
 * parts' to `item_parts_staging`) beside the live ones, and the swap replaces the live embeddings and the recorded model in one
 * transaction (the store then rebuilds the HNSW index). The reindex in progress is a `meta` row.
 */
import type Database from "better-sqlite3";
import { partColumns } from "../parts.ts";
import {
  parseReindexTarget,
  REINDEX_KEY,
  reindexIncomplete,
  reindexRecord,
  reindexSuperseded,
} from "../reindex-target.ts";
import type { ModelInfo, ReindexTarget, StagedRow, StoredItem, SwapOptions } from "../types.ts";
import { toItem, vectorToBlob } from "./rows.ts";
import { nextLabel, type Statements, writeModel } from "./statements.ts";

export class SqliteStaging {
  constructor(
    private readonly db: Database.Database,
    private readonly stmts: Statements,
  ) {}

  clear(): void {
    this.db.transaction(() => {
      this.stmts.clearPartsStaging.run();
      this.stmts.clearStaging.run();
    })();
  }

  put(rows: readonly StagedRow[], modelId: string): void {
    this.db.transaction(() => {
      for (const row of rows) {
        this.stmts.putStaging.run(row.label, modelId, vectorToBlob(row.vector));
        for (const part of row.parts ?? []) {
          this.stmts.putPartStaging.run(row.label, part.index, modelId, vectorToBlob(part.vector));
        }
        // New parts take the indexes after the stored ones.
        const first = (this.stmts.maxPart.get(row.label)?.m ?? -1) + 1;
        (row.newParts ?? []).forEach((part, i) => {
          this.stmts.putNewPartStaging.run({
            item: row.label,
            part: first + i,
            model_id: modelId,
            vector: vectorToBlob(part.vector),
            ...partColumns(part),
          });
        });
      }
    })();
  }

  /** Makes the staged embeddings of `info` the live ones; the HNSW index is the caller's. */
  swap(info: ModelInfo, options: SwapOptions): void {
    this.db.transaction(() => {
      if (
        options.target !== undefined &&
        this.stmts.getMeta.get(REINDEX_KEY)?.value !== reindexRecord(options.target)
      ) {
        throw reindexSuperseded();
      }
      const except = options.requireCompleteExcept;
      if (except !== undefined) {
        const missing = this.stmts.countUnstaged.get(info.modelId, JSON.stringify(except))?.n ?? 0;
        if (missing > 0) throw reindexIncomplete(missing);
      }
      this.db
        .prepare(
          "DELETE FROM embeddings WHERE model_id != ? OR label IN (SELECT label FROM embeddings_staging)",
        )
        .run(info.modelId);
      this.db
        .prepare(
          "INSERT INTO embeddings (label, model_id, vector) SELECT label, model_id, vector FROM embeddings_staging WHERE model_id = ?",
        )
        .run(info.modelId);
      // Parts likewise, by item and position; a part with no embedding of the model is dropped,
      // and so is a stored part an item staged without (its regions under another setting).
      this.db
        .prepare(
          `UPDATE item_parts SET model_id = s.model_id, vector = s.vector
           FROM item_parts_staging AS s
           WHERE s.item = item_parts.item AND s.part = item_parts.part AND s.model_id = ?`,
        )
        .run(info.modelId);
      this.db
        .prepare(
          `DELETE FROM item_parts WHERE model_id != @model OR (
             item IN (SELECT label FROM embeddings_staging WHERE model_id = @model)
             AND NOT EXISTS (SELECT 1 FROM item_parts_staging AS s
               WHERE s.item = item_parts.item AND s.part = item_parts.part AND s.model_id = @model))`,
        )
        .run({ model: info.modelId });
      // New parts take fresh labels, after every label ever issued.
      const base = nextLabel(this.stmts) - 1;
      const added = this.db
        .prepare(
          `INSERT INTO item_parts (vector_label, item, part, kind, box_x, box_y, box_width, box_height, t, model_id, vector)
           SELECT ? + row_number() OVER (ORDER BY s.item, s.part), s.item, s.part, s.kind,
             s.box_x, s.box_y, s.box_width, s.box_height, s.t, s.model_id, s.vector
           FROM item_parts_staging AS s
           WHERE s.model_id = ? AND s.kind IS NOT NULL
             AND s.item IN (SELECT label FROM embeddings_staging WHERE model_id = s.model_id)
             AND NOT EXISTS (SELECT 1 FROM item_parts AS p WHERE p.item = s.item AND p.part = s.part)`,
        )
        .run(base, info.modelId);
      if (added.changes > 0) this.stmts.setMeta.run("last_label", String(base + added.changes));
      this.stmts.clearPartsStaging.run();
      this.stmts.clearStaging.run();
      writeModel(this.stmts, info);
      this.stmts.deleteMeta.run(REINDEX_KEY);
    })();
  }

  unstagedAfter(modelId: string, label: number, limit: number): StoredItem[] {
    return this.stmts.unstagedAfter.all(label, modelId, limit).map(toItem);
  }

  count(modelId: string): number {
    return this.stmts.countStaging.get(modelId)?.n ?? 0;
  }

  reindexTarget(): ReindexTarget | undefined {
    return parseReindexTarget(this.stmts.getMeta.get(REINDEX_KEY)?.value);
  }

  setReindexTarget(target: ReindexTarget | undefined, expected?: ReindexTarget | null): boolean {
    return this.db.transaction(() => {
      const recorded = this.stmts.getMeta.get(REINDEX_KEY)?.value;
      if (expected !== undefined && recorded !== (expected ? reindexRecord(expected) : undefined)) {
        return false;
      }
      if (target === undefined) this.stmts.deleteMeta.run(REINDEX_KEY);
      else this.stmts.setMeta.run(REINDEX_KEY, reindexRecord(target));
      return true;
    })();
  }
}
