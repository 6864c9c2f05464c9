/**
 * The embedded backend's ANN index: an HNSW index (hnswlib) derived from the embeddings in
 * SQLite, saved atomically under dataDir/index/ (the file name carries model id and dims) and
 * reconciled with SQLite when loaded: labels SQLite lacks are deleted, embeddings the index
 * lacks are added; a missing or unreadable file means a rebuild.
 */
import { existsSync, readdirSync, rmSync } from "node:fs";
import path from "node:path";
import { HnswIndex } from "../../vector-index/hnsw.ts";
import type { EmbeddingRow, IndexParameters, ModelInfo } from "../types.ts";

/** What the cache reads from SQLite. */
export interface EmbeddingSource {
  countEmbeddings(modelId: string): number;
  iterateEmbeddings(modelId: string): IterableIterator<EmbeddingRow>;
  embeddingLabels(modelId: string): Set<number>;
  embeddingsFor(modelId: string, labels: readonly number[]): EmbeddingRow[];
}

function indexFileName(model: ModelInfo): string {
  return `hnsw-${model.modelId.replace(/[^A-Za-z0-9_.-]/g, "_")}-${model.dims}.bin`;
}

export class HnswCache {
  private index: HnswIndex | undefined;
  private model: ModelInfo | undefined;

  constructor(
    private readonly dir: string,
    private readonly parameters: IndexParameters,
    private readonly source: EmbeddingSource,
  ) {}

  /** The index of `model`, loaded (and reconciled) or built on first use. */
  of(model: ModelInfo): HnswIndex {
    if (
      this.index === undefined ||
      this.model?.modelId !== model.modelId ||
      this.model.dims !== model.dims
    ) {
      this.index = this.loadAndReconcile(model);
      this.model = model;
    }
    return this.index;
  }

  /** The loaded index, if any (stats and saves do not force a load). */
  loaded(): HnswIndex | undefined {
    return this.index;
  }

  /** Replaces the index by one built from SQLite, saves it and deletes other models' files. */
  rebuild(model: ModelInfo): void {
    this.index = this.build(model);
    this.model = model;
    this.index.save(this.file(model));
    const keep = indexFileName(model);
    for (const name of readdirSync(this.dir)) {
      if (name !== keep && name.startsWith("hnsw-")) rmSync(path.join(this.dir, name));
    }
  }

  saveIfDirty(): void {
    if (this.index?.dirty && this.model !== undefined) this.index.save(this.file(this.model));
  }

  private file(model: ModelInfo): string {
    return path.join(this.dir, indexFileName(model));
  }

  private options(model: ModelInfo) {
    return { dims: model.dims, ...this.parameters };
  }

  private build(model: ModelInfo): HnswIndex {
    const index = HnswIndex.create({
      ...this.options(model),
      capacity: Math.max(1024, this.source.countEmbeddings(model.modelId)),
    });
    for (const row of this.source.iterateEmbeddings(model.modelId))
      index.add(row.label, row.vector);
    return index;
  }

  private loadAndReconcile(model: ModelInfo): HnswIndex {
    const file = this.file(model);
    let index: HnswIndex | undefined;
    if (existsSync(file)) {
      try {
        index = HnswIndex.load(file, this.options(model));
      } catch {
        index = undefined;
      }
    }
    if (index === undefined) {
      const built = this.build(model);
      built.save(file);
      return built;
    }
    const stored = this.source.embeddingLabels(model.modelId);
    for (const label of [...index.labels()]) {
      if (!stored.has(label)) index.remove(label);
    }
    const missing = [...stored].filter((label) => !index.has(label));
    for (let start = 0; start < missing.length; start += 1000) {
      const rows = this.source.embeddingsFor(model.modelId, missing.slice(start, start + 1000));
      for (const row of rows) index.add(row.label, row.vector);
    }
    if (index.dirty) index.save(file);
    return index;
  }
}
