/**
 * Reads of the stored embeddings: what the HNSW cache reconciles and rebuilds from
 * (./hnsw-cache.ts) and what exact searches scan.
 */
import type { EmbeddingRow } from "../types.ts";
import type { EmbeddingSource } from "./hnsw-cache.ts";
import { blobToVector } from "./rows.ts";
import type { Statements } from "./statements.ts";

export class SqliteEmbeddings implements EmbeddingSource {
  constructor(private readonly stmts: Statements) {}

  countEmbeddings(modelId: string): number {
    return this.stmts.countEmbeddings.get(modelId)?.n ?? 0;
  }

  *iterate(modelId: string): IterableIterator<EmbeddingRow> {
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
}
