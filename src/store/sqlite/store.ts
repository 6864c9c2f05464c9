/**
 * The SQLite store: the source of truth for items, their metadata and embeddings, and the
 * model they were embedded with. The HNSW index is derived from it and can always be rebuilt.
 *
 * Durability: WAL with `synchronous = FULL`. Every commit fsyncs the WAL before it returns,
 * so an item acknowledged as indexed survives `kill -9` and also a power loss or OS crash
 * (NORMAL would survive a process kill but could lose the last commits on power loss). The
 * cost is one fsync per transaction; the ingest pipeline commits a whole batch in one.
 */
import { mkdirSync } from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { AppError } from "../errors.ts";
import type { Item, Metadata } from "../library/types.ts";
import { migrate } from "./schema.ts";

export interface StoredItem extends Item {
  /** The item's HNSW label: unique, never reused after a deletion. */
  label: number;
}

export interface NewItem {
  id: string;
  sha256: string;
  metadata: Metadata;
  contentType: string;
  width: number;
  height: number;
  bytes: number;
  source: "upload" | "path";
  path?: string;
  vector: Float32Array;
}

export type InsertOutcome =
  | { status: "inserted"; label: number }
  | { status: "duplicate"; id: string }
  | { status: "id_conflict" };

export interface EmbeddingRow {
  label: number;
  vector: Float32Array;
}

export interface ModelInfo {
  modelId: string;
  dims: number;
}

export type FilterValue = string | number | boolean | null;

const METADATA_KEY = /^[A-Za-z0-9_.-]{1,64}$/;

interface ItemRow {
  id: string;
  label: number;
  sha256: string;
  metadata: string;
  content_type: string;
  width: number;
  height: number;
  bytes: number;
  source: "upload" | "path";
  path: string | null;
  created_at: string;
}

const ITEM_COLUMNS =
  "id, label, sha256, metadata, content_type, width, height, bytes, source, path, created_at";

function toItem(row: ItemRow): StoredItem {
  const item: StoredItem = {
    id: row.id,
    label: row.label,
    sha256: row.sha256,
    metadata: JSON.parse(row.metadata) as Metadata,
    contentType: row.content_type,
    width: row.width,
    height: row.height,
    bytes: row.bytes,
    source: row.source,
    createdAt: row.created_at,
  };
  if (row.path !== null) item.path = row.path;
  return item;
}

/** Float32 vector → BLOB (little-endian, as stored). */
export function vectorToBlob(vector: Float32Array): Buffer {
  return Buffer.from(vector.buffer, vector.byteOffset, vector.byteLength);
}

/** BLOB → Float32 vector: a view when the bytes are 4-byte aligned (better-sqlite3 gives each
 * BLOB its own buffer), otherwise an aligned copy. */
export function blobToVector(blob: Buffer): Float32Array {
  if (blob.byteOffset % 4 === 0) {
    return new Float32Array(blob.buffer, blob.byteOffset, blob.byteLength / 4);
  }
  const out = new Float32Array(blob.byteLength / 4);
  new Uint8Array(out.buffer).set(blob);
  return out;
}

export function encodeCursor(label: number): string {
  return Buffer.from(String(label), "utf8").toString("base64url");
}

export function decodeCursor(cursor: string): number {
  const text = Buffer.from(cursor, "base64url").toString("utf8");
  const label = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(label)) {
    throw new AppError(
      "invalid_cursor",
      "The cursor is not one this server issued; pass the nextCursor of the previous page or omit it to start over.",
      400,
    );
  }
  return label;
}

/** Validates a metadata filter and turns it into an SQL condition over `items.metadata`. */
export function filterToSql(filter: Record<string, FilterValue>): {
  where: string;
  params: unknown[];
} {
  const clauses: string[] = [];
  const params: unknown[] = [];
  for (const [key, value] of Object.entries(filter)) {
    if (!METADATA_KEY.test(key)) {
      throw new AppError(
        "invalid_filter",
        `Filter key "${key.slice(0, 80)}" is not allowed; keys are 1-64 characters of letters, digits, "_", "." or "-".`,
        400,
      );
    }
    const jsonPath = `$.${key}`;
    // json_type keeps types apart: true never matches 1, "1" never matches 1.
    if (value === null) {
      clauses.push("json_type(metadata, ?) = 'null'");
      params.push(jsonPath);
    } else if (typeof value === "boolean") {
      clauses.push("json_type(metadata, ?) = ?");
      params.push(jsonPath, value ? "true" : "false");
    } else if (typeof value === "number") {
      if (!Number.isFinite(value)) {
        throw new AppError("invalid_filter", `Filter value of "${key}" must be finite.`, 400);
      }
      clauses.push(
        "(json_type(metadata, ?) IN ('integer', 'real') AND json_extract(metadata, ?) = ?)",
      );
      params.push(jsonPath, jsonPath, value);
    } else if (typeof value === "string") {
      clauses.push("(json_type(metadata, ?) = 'text' AND json_extract(metadata, ?) = ?)");
      params.push(jsonPath, jsonPath, value);
    } else {
      throw new AppError(
        "invalid_filter",
        `Filter value of "${key}" must be a string, number, boolean or null.`,
        400,
      );
    }
  }
  return { where: clauses.length > 0 ? clauses.join(" AND ") : "1", params };
}

function prepareStatements(db: Database.Database) {
  return {
    getMeta: db.prepare<[string], { value: string }>("SELECT value FROM meta WHERE key = ?"),
    setMeta: db.prepare<[string, string]>(
      "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    ),
    count: db.prepare<[], { n: number }>("SELECT count(*) AS n FROM items"),
    countEmbeddings: db.prepare<[string], { n: number }>(
      "SELECT count(*) AS n FROM embeddings WHERE model_id = ?",
    ),
    maxLabel: db.prepare<[], { m: number | null }>("SELECT max(label) AS m FROM items"),
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
    putStaging: db.prepare<[number, string, Buffer]>(
      "INSERT OR REPLACE INTO embeddings_staging (label, model_id, vector) VALUES (?, ?, ?)",
    ),
  };
}

type Statements = ReturnType<typeof prepareStatements>;

export class Store {
  readonly db: Database.Database;
  private readonly stmts: Statements;

  constructor(file: string) {
    mkdirSync(path.dirname(file), { recursive: true });
    this.db = new Database(file);
    this.db.pragma("journal_mode = WAL");
    this.db.pragma("synchronous = FULL");
    this.db.pragma("foreign_keys = ON");
    this.db.pragma("busy_timeout = 5000");
    migrate(this.db);
    this.stmts = prepareStatements(this.db);
  }

  /** The model whose embeddings the store holds; undefined for a new database. */
  model(): ModelInfo | undefined {
    const modelId = this.stmts.getMeta.get("model_id")?.value;
    const dims = this.stmts.getMeta.get("dims")?.value;
    if (modelId === undefined || dims === undefined) return undefined;
    return { modelId, dims: Number(dims) };
  }

  setModel(info: ModelInfo): void {
    this.db.transaction(() => {
      this.stmts.setMeta.run("model_id", info.modelId);
      this.stmts.setMeta.run("dims", String(info.dims));
    })();
  }

  count(): number {
    return this.stmts.count.get()?.n ?? 0;
  }

  countEmbeddings(modelId: string): number {
    return this.stmts.countEmbeddings.get(modelId)?.n ?? 0;
  }

  getById(id: string): StoredItem | undefined {
    const row = this.stmts.byId.get(id);
    return row === undefined ? undefined : toItem(row);
  }

  getBySha(sha256: string): StoredItem | undefined {
    const row = this.stmts.bySha.get(sha256);
    return row === undefined ? undefined : toItem(row);
  }

  getByLabels(labels: readonly number[]): Map<number, StoredItem> {
    const out = new Map<number, StoredItem>();
    if (labels.length === 0) return out;
    for (const row of this.stmts.byLabels.all(JSON.stringify(labels))) {
      out.set(row.label, toItem(row));
    }
    return out;
  }

  /**
   * Inserts items and their embeddings in ONE transaction (one fsync). Each entry is checked
   * against what is committed: an existing content hash is a duplicate, an existing id with
   * other content a conflict. When this returns, the inserted items are durable.
   */
  insertItems(entries: readonly NewItem[], modelId: string): InsertOutcome[] {
    return this.db.transaction(() => {
      let label = this.nextLabel();
      const createdAt = new Date().toISOString();
      const outcomes: InsertOutcome[] = [];
      for (const entry of entries) {
        const sameContent = this.stmts.bySha.get(entry.sha256);
        if (sameContent !== undefined) {
          outcomes.push({ status: "duplicate", id: sameContent.id });
          continue;
        }
        if (this.stmts.byId.get(entry.id) !== undefined) {
          outcomes.push({ status: "id_conflict" });
          continue;
        }
        this.stmts.insertItem.run({
          id: entry.id,
          label,
          sha256: entry.sha256,
          metadata: JSON.stringify(entry.metadata),
          content_type: entry.contentType,
          width: entry.width,
          height: entry.height,
          bytes: entry.bytes,
          source: entry.source,
          path: entry.path ?? null,
          created_at: createdAt,
        });
        this.stmts.insertEmbedding.run(label, modelId, vectorToBlob(entry.vector));
        outcomes.push({ status: "inserted", label });
        label++;
      }
      this.stmts.setMeta.run("last_label", String(label - 1));
      return outcomes;
    })();
  }

  /** Labels only grow: after the largest ever issued, even if that item was deleted. */
  private nextLabel(): number {
    const last = Number(this.stmts.getMeta.get("last_label")?.value ?? "0");
    const max = this.stmts.maxLabel.get()?.m ?? 0;
    return Math.max(last, max) + 1;
  }

  /** Deletes an item (and, by cascade, its embeddings); returns its label. */
  deleteById(id: string): number | undefined {
    return this.stmts.deleteById.get(id)?.label;
  }

  listItems(
    cursor: string | null,
    limit: number,
  ): { items: StoredItem[]; nextCursor: string | null } {
    const after = cursor === null ? 0 : decodeCursor(cursor);
    const rows = this.stmts.page.all(after, limit + 1);
    const items = rows.slice(0, limit).map(toItem);
    const last = items[items.length - 1];
    return {
      items,
      nextCursor: rows.length > limit && last !== undefined ? encodeCursor(last.label) : null,
    };
  }

  /** Items in label order after `label`: a page that holds no open cursor across awaits. */
  itemsAfter(label: number, limit: number): StoredItem[] {
    return this.stmts.page.all(label, limit).map(toItem);
  }

  *iterateEmbeddings(modelId: string): IterableIterator<EmbeddingRow> {
    // Raw rows: a full scan (exact search) spends most of its time creating row objects.
    for (const [label, vector] of this.stmts.embeddingsRaw.iterate(modelId)) {
      yield { label, vector: blobToVector(vector) };
    }
  }

  embeddingLabels(modelId: string): Set<number> {
    return new Set(this.stmts.embeddingLabels.all(modelId).map((row) => row.label));
  }

  embeddingsFor(modelId: string, labels: readonly number[]): EmbeddingRow[] {
    return this.stmts.embeddingsFor
      .all(modelId, JSON.stringify(labels))
      .map((row) => ({ label: row.label, vector: blobToVector(row.vector) }));
  }

  /** Labels of the items whose metadata matches every key of the filter. */
  labelsMatching(filter: Record<string, FilterValue>): number[] {
    const { where, params } = filterToSql(filter);
    return this.db
      .prepare(`SELECT label FROM items WHERE ${where}`)
      .pluck()
      .all(...params) as number[];
  }

  /** Reindex, step 1: forget a previous interrupted run. */
  clearStaging(): void {
    this.stmts.clearStaging.run();
  }

  /** Reindex, step 2: new embeddings go beside the live ones, one transaction per batch. */
  putStaging(rows: readonly EmbeddingRow[], modelId: string): void {
    this.db.transaction(() => {
      for (const row of rows)
        this.stmts.putStaging.run(row.label, modelId, vectorToBlob(row.vector));
    })();
  }

  /**
   * Reindex, step 3, in one transaction: staged embeddings replace the live ones, embeddings
   * of any other model are dropped (never mixed), and the store's model becomes `info`.
   */
  swapStaging(info: ModelInfo): void {
    this.db.transaction(() => {
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
      this.stmts.clearStaging.run();
      this.stmts.setMeta.run("model_id", info.modelId);
      this.stmts.setMeta.run("dims", String(info.dims));
    })();
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
