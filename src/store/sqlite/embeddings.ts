/**
 * Reads of the stored vectors: what the HNSW cache reconciles and rebuilds from
 * (./hnsw-cache.ts: every vector, the items' whole-image ones under their item's label and
 * their parts' under their own) and what exact searches scan.
 *
 * How many parts are stored is counted here (at open, then kept as inserts, deletes and swaps
 * change it): a library without parts reads no part table at all, so it searches as before.
 */
import type Database from "better-sqlite3";
import type { Neighbour } from "../../vector-index/hnsw.ts";
import { type BestVector, bestPerItem, locatorOf, type VectorOwner } from "../parts.ts";
import type { EmbeddingRow } from "../types.ts";
import type { EmbeddingSource } from "./hnsw-cache.ts";
import { blobToVector } from "./rows.ts";
import type { Statements } from "./statements.ts";

export class SqliteEmbeddings implements EmbeddingSource {
  private partRows: number;
  private readonly partVectorsRaw: Database.Statement<[string], [number, Buffer]>;
  private readonly partLabels: Database.Statement<[string], { label: number }>;
  private readonly partCount: Database.Statement<[string], { n: number }>;
  private readonly partsFor: Database.Statement<
    [string, string],
    { label: number; vector: Buffer }
  >;

  constructor(
    db: Database.Database,
    private readonly stmts: Statements,
  ) {
    this.partRows = stmts.countParts.get()?.n ?? 0;
    this.partVectorsRaw = db
      .prepare<[string], [number, Buffer]>(
        "SELECT vector_label, vector FROM item_parts WHERE model_id = ? ORDER BY vector_label",
      )
      .raw(true);
    this.partLabels = db.prepare("SELECT vector_label AS label FROM item_parts WHERE model_id = ?");
    this.partCount = db.prepare("SELECT count(*) AS n FROM item_parts WHERE model_id = ?");
    this.partsFor = db.prepare(
      "SELECT vector_label AS label, vector FROM item_parts WHERE model_id = ? AND vector_label IN (SELECT value FROM json_each(?))",
    );
  }

  /** Parts stored (of any model). */
  get parts(): number {
    return this.partRows;
  }

  /** After a change to the parts table: `delta` rows, or undefined to count them again. */
  partsChanged(delta?: number): void {
    this.partRows =
      delta === undefined ? (this.stmts.countParts.get()?.n ?? 0) : this.partRows + delta;
  }

  /** Items with an embedding of the model. */
  countEmbeddings(modelId: string): number {
    return this.stmts.countEmbeddings.get(modelId)?.n ?? 0;
  }

  countVectors(modelId: string): number {
    const parts = this.partRows === 0 ? 0 : (this.partCount.get(modelId)?.n ?? 0);
    return this.countEmbeddings(modelId) + parts;
  }

  /** Every vector of the model (items' and, unless `wholeImage`, parts'), by label. */
  *iterate(modelId: string, wholeImage = false): IterableIterator<EmbeddingRow> {
    // Raw rows: a full scan (exact search) spends most of its time creating row objects.
    for (const [label, vector] of this.stmts.embeddingsRaw.iterate(modelId)) {
      yield { label, vector: blobToVector(vector) };
    }
    if (this.partRows === 0 || wholeImage) return;
    for (const [label, vector] of this.partVectorsRaw.iterate(modelId)) {
      yield { label, vector: blobToVector(vector) };
    }
  }

  vectorLabels(modelId: string): Set<number> {
    const labels = new Set(this.stmts.embeddingLabels.all(modelId).map((row) => row.label));
    if (this.partRows > 0) for (const row of this.partLabels.all(modelId)) labels.add(row.label);
    return labels;
  }

  /** The whole-image embeddings of these items. */
  embeddingsFor(modelId: string, labels: readonly number[]): EmbeddingRow[] {
    return this.stmts.embeddingsFor
      .all(modelId, JSON.stringify(labels))
      .map((row) => ({ label: row.label, vector: blobToVector(row.vector) }));
  }

  /** The vectors under these labels, items' and parts'. */
  vectorsFor(modelId: string, labels: readonly number[]): EmbeddingRow[] {
    const rows = this.embeddingsFor(modelId, labels);
    if (this.partRows === 0) return rows;
    for (const row of this.partsFor.all(modelId, JSON.stringify(labels))) {
      rows.push({ label: row.label, vector: blobToVector(row.vector) });
    }
    return rows;
  }

  /**
   * The neighbours (labels of any vector) as items with their best vector, best first (parts'
   * left out with `wholeImage`). Without parts every label is an item's, and the order is the
   * neighbours' own.
   */
  bestItems(neighbours: readonly Neighbour[], wholeImage = false): BestVector[] {
    if (this.partRows === 0) {
      return neighbours.map(({ label, score }) => ({ item: label, score }));
    }
    const owners = new Map<number, VectorOwner>();
    const labels = neighbours.map((n) => n.label);
    for (const row of this.stmts.partOwners.all(JSON.stringify(labels))) {
      owners.set(row.vector_label, {
        item: row.item,
        part: { index: row.part, locator: locatorOf(row) },
      });
    }
    const kept = wholeImage ? neighbours.filter((n) => !owners.has(n.label)) : neighbours;
    return bestPerItem(kept, (label) => owners.get(label));
  }
}
