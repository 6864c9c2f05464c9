/** The embedded backend's prepared statements over items, embeddings, staging and meta. */
import type Database from "better-sqlite3";
import { ITEM_COLUMNS } from "../item-row.ts";
import type { PartColumns } from "../parts.ts";
import type { ModelInfo } from "../types.ts";
import type { ItemRow } from "./rows.ts";

/** A part's row: its vector's label in the HNSW index, its item, position and locator. */
export type PartRow = PartColumns & { vector_label: number; item: number; part: number };
const PART_COLUMNS = "vector_label, item, part, kind, box_x, box_y, box_width, box_height, t";

export function prepareStatements(db: Database.Database) {
  return {
    getMeta: db.prepare<[string], { value: string }>("SELECT value FROM meta WHERE key = ?"),
    setMeta: db.prepare<[string, string]>(
      "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    ),
    count: db.prepare<[], { n: number }>("SELECT count(*) AS n FROM items"),
    countEmbeddings: db.prepare<[string], { n: number }>(
      "SELECT count(*) AS n FROM embeddings WHERE model_id = ?",
    ),
    maxLabel: db.prepare<[], { m: number | null }>(
      "SELECT max(m) AS m FROM (SELECT max(label) AS m FROM items UNION ALL SELECT max(vector_label) FROM item_parts)",
    ),
    byId: db.prepare<[string], ItemRow>(`SELECT ${ITEM_COLUMNS} FROM items WHERE id = ?`),
    bySha: db.prepare<[string], ItemRow>(`SELECT ${ITEM_COLUMNS} FROM items WHERE sha256 = ?`),
    byLabels: db.prepare<[string], ItemRow>(
      `SELECT ${ITEM_COLUMNS} FROM items WHERE label IN (SELECT value FROM json_each(?))`,
    ),
    insertItem: db.prepare(
      `INSERT INTO items (${ITEM_COLUMNS}) VALUES (@id, @label, @sha256, @metadata, @content_type, @width, @height, @bytes, @source, @path, @created_at)`,
    ),
    insertEmbedding: db.prepare<[number, string, Buffer]>(
      "INSERT INTO embeddings (label, model_id, vector) VALUES (?, ?, ?)",
    ),
    deleteById: db.prepare<[string], { label: number }>(
      "DELETE FROM items WHERE id = ? RETURNING label",
    ),
    page: db.prepare<[number, number], ItemRow>(
      `SELECT ${ITEM_COLUMNS} FROM items WHERE label > ? ORDER BY label LIMIT ?`,
    ),
    pageNewest: db.prepare<[number, number], ItemRow>(
      `SELECT ${ITEM_COLUMNS} FROM items WHERE label < ? ORDER BY label DESC LIMIT ?`,
    ),
    embeddingsRaw: db
      .prepare<[string], [number, Buffer]>(
        "SELECT label, vector FROM embeddings WHERE model_id = ? ORDER BY label",
      )
      .raw(true),
    embeddingLabels: db.prepare<[string], { label: number }>(
      "SELECT label FROM embeddings WHERE model_id = ?",
    ),
    embeddingsFor: db.prepare<[string, string], { label: number; vector: Buffer }>(
      "SELECT label, vector FROM embeddings WHERE model_id = ? AND label IN (SELECT value FROM json_each(?))",
    ),
    clearStaging: db.prepare("DELETE FROM embeddings_staging"),
    clearPartsStaging: db.prepare("DELETE FROM item_parts_staging"),
    insertPart: db.prepare(
      `INSERT INTO item_parts (vector_label, item, part, kind, box_x, box_y, box_width, box_height, t, model_id, vector)
       VALUES (@vector_label, @item, @part, @kind, @box_x, @box_y, @box_width, @box_height, @t, @model_id, @vector)`,
    ),
    countParts: db.prepare<[], { n: number }>("SELECT count(*) AS n FROM item_parts"),
    partLabelsOf: db.prepare<[number], { vector_label: number }>(
      "SELECT vector_label FROM item_parts WHERE item = ?",
    ),
    partsOf: db.prepare<[string, string], PartRow & { vector: Buffer }>(
      `SELECT ${PART_COLUMNS}, vector FROM item_parts
       WHERE model_id = ? AND item IN (SELECT value FROM json_each(?)) ORDER BY item, part`,
    ),
    partOwners: db.prepare<[string], PartRow>(
      `SELECT ${PART_COLUMNS} FROM item_parts WHERE vector_label IN (SELECT value FROM json_each(?))`,
    ),
    // A part of an item deleted meanwhile is skipped (its row is gone).
    putPartStaging: db.prepare<[number, number, string, Buffer]>(
      `INSERT OR REPLACE INTO item_parts_staging (item, part, model_id, vector)
       SELECT p.item, p.part, s.model_id, s.vector
       FROM (SELECT ? AS item, ? AS part, ? AS model_id, ? AS vector) s
       JOIN item_parts p ON p.item = s.item AND p.part = s.part`,
    ),
    /** A part the item gains at the swap: its locator beside its embedding. */
    putNewPartStaging: db.prepare(
      `INSERT OR REPLACE INTO item_parts_staging (item, part, model_id, vector, kind, box_x, box_y, box_width, box_height, t)
       VALUES (@item, @part, @model_id, @vector, @kind, @box_x, @box_y, @box_width, @box_height, @t)`,
    ),
    maxPart: db.prepare<[number], { m: number | null }>(
      "SELECT max(part) AS m FROM item_parts WHERE item = ?",
    ),
    deleteMeta: db.prepare<[string]>("DELETE FROM meta WHERE key = ?"),
    countStaging: db.prepare<[string], { n: number }>(
      "SELECT count(*) AS n FROM embeddings_staging WHERE model_id = ?",
    ),
    unstagedAfter: db.prepare<[number, string, number], ItemRow>(
      `SELECT ${ITEM_COLUMNS} FROM items i WHERE label > ? AND NOT EXISTS
        (SELECT 1 FROM embeddings_staging s WHERE s.label = i.label AND s.model_id = ?)
       ORDER BY label LIMIT ?`,
    ),
    countUnstaged: db.prepare<[string, string], { n: number }>(
      `SELECT count(*) AS n FROM items i WHERE NOT EXISTS
        (SELECT 1 FROM embeddings_staging s WHERE s.label = i.label AND s.model_id = ?)
       AND label NOT IN (SELECT value FROM json_each(?))`,
    ),
    // An item deleted meanwhile is skipped (its label is gone).
    putStaging: db.prepare<[number, string, Buffer]>(
      `INSERT OR REPLACE INTO embeddings_staging (label, model_id, vector)
       SELECT s.label, s.model_id, s.vector FROM (SELECT ? AS label, ? AS model_id, ? AS vector) s
       JOIN items i ON i.label = s.label`,
    ),
  };
}

export type Statements = ReturnType<typeof prepareStatements>;

/** The live model as the `meta` table records it; a reindex swap rewrites it. */
/** Labels only grow: after the largest ever issued, even if that item was deleted. */
export function nextLabel(stmts: Statements): number {
  const last = Number(stmts.getMeta.get("last_label")?.value ?? "0");
  const max = stmts.maxLabel.get()?.m ?? 0;
  return Math.max(last, max) + 1;
}

export function writeModel(stmts: Statements, info: ModelInfo): void {
  stmts.setMeta.run("model_id", info.modelId);
  stmts.setMeta.run("dims", String(info.dims));
  // A model recorded without its directory leaves no stale one behind.
  if (info.modelDir === undefined) stmts.deleteMeta.run("model_dir");
  else stmts.setMeta.run("model_dir", info.modelDir);
}
