/**
 * An ItemStore in memory, for fast unit tests of the library (`npm run test:fast`). It passes
 * the same storage contract as SQLite and Postgres (test/store-memory.test.ts), so a library
 * test over it exercises the behaviour the real backends promise, in milliseconds.
 *
 * What it keeps lives in a MemoryDisk: closing a store and opening another on the same disk is
 * a restart (what was committed is there, nothing else). Each method does its work without
 * awaiting in between, so it is atomic as the backends' transactions are. Nearest-neighbour
 * search is always an exact scan (no ANN index to approximate with); what it shares with the
 * backends (cursors, filter validation, the live-embedding rule, the model check, stats) is the
 * product's own code from src/store/.
 */
import type { Filter, ItemOrder } from "../../src/core/types.ts";
import {
  type Embedding,
  hnswStats,
  type LiveEmbedding,
  liveEmbedding,
  requireModel,
} from "../../src/store/common.ts";
import { decodeCursor, filterTerms, pageOf } from "../../src/store/filter.ts";
import { locatorCopy, partMatch } from "../../src/store/parts.ts";
import {
  holdsAnotherModel,
  parseReindexTarget,
  reindexIncomplete,
  reindexRecord,
  reindexSuperseded,
} from "../../src/store/reindex-target.ts";
import type {
  ContentMatch,
  EmbeddingRow,
  IndexParameters,
  InsertOutcome,
  ItemStore,
  KeywordQuery,
  ModelInfo,
  NearestQuery,
  NewItem,
  PartLocator,
  ReindexTarget,
  ScoredItem,
  StagedRow,
  StoredItem,
  StoredPart,
  StoreHealth,
  SwapOptions,
  VectorIndexStats,
} from "../../src/store/types.ts";
import { cosine, exactSearch } from "../../src/vector-index/exact.ts";
import { type Job, MemoryJobs } from "./memory-jobs.ts";
import { bm25Scores, metadataPredicate, type TextRow, textRows } from "./memory-match.ts";

/** Embeddings by model id, then by label. */
type Embeddings = Map<string, Map<number, Float32Array>>;

/** A stored part of an item: its locator and live embedding. */
interface MemoryPart {
  index: number;
  locator: PartLocator;
  modelId: string;
  vector: Float32Array;
}

/** A staged part embedding's key: the item's label and the part's position. */
const partKey = (label: number, index: number) => `${label}:${index}`;

/** What a store keeps across close and open: the fake's "database". */
export class MemoryDisk {
  model: ModelInfo | undefined;
  readonly items = new Map<number, StoredItem>();
  readonly live: Embeddings = new Map();
  readonly staging: Embeddings = new Map();
  /** Each item's parts, in part order. */
  readonly parts = new Map<number, MemoryPart[]>();
  /** Staged part embeddings by model id, then by partKey. */
  readonly partStaging = new Map<string, Map<string, Float32Array>>();
  /** Parts items gain at the swap, by model id, then by item label. */
  readonly newParts = new Map<string, Map<number, MemoryPart[]>>();
  readonly originals = new Map<string, Buffer>();
  readonly meta = new Map<string, string>();
  readonly jobs: Job[] = [];
  lastLabel = 0;
}

export interface MemoryStoreOptions {
  /**
   * Behave as a store several processes share (Postgres): the library then re-reads the model
   * instead of trusting what it last wrote. Default false (one process, as SQLite).
   */
  shared?: boolean;
  /** Reported by indexStats; the search itself is exact. */
  parameters?: IndexParameters;
}

const GALLERY_KEY = "gallery_seeded";
const REINDEX_KEY = "reindex_target";
const DEFAULT_PARAMETERS: IndexParameters = { m: 16, efConstruction: 64, efSearch: 64 };

function copyItem(item: StoredItem): StoredItem {
  return structuredClone(item);
}

function embeddingsOfModel(embeddings: Embeddings, modelId: string): Map<number, Float32Array> {
  let byLabel = embeddings.get(modelId);
  if (byLabel === undefined) {
    byLabel = new Map();
    embeddings.set(modelId, byLabel);
  }
  return byLabel;
}

export class MemoryStore implements ItemStore {
  /** For reports only (stats, logs): the backend whose sharing this fake stands in for. */
  readonly backend: "sqlite" | "postgres";
  readonly shared: boolean;
  readonly jobs: MemoryJobs;
  private closed = false;
  private readonly parameters: IndexParameters;

  constructor(
    readonly disk: MemoryDisk = new MemoryDisk(),
    options: MemoryStoreOptions = {},
  ) {
    this.shared = options.shared === true;
    this.backend = this.shared ? "postgres" : "sqlite";
    this.parameters = options.parameters ?? DEFAULT_PARAMETERS;
    this.jobs = new MemoryJobs(disk.jobs, () => this.assertOpen());
  }

  private assertOpen(): void {
    if (this.closed) throw new Error("The memory store is closed; open another on its disk.");
  }

  async model(): Promise<ModelInfo | undefined> {
    this.assertOpen();
    return this.disk.model === undefined ? undefined : { ...this.disk.model };
  }

  async setModel(info: ModelInfo): Promise<void> {
    this.assertOpen();
    for (const [modelId, byLabel] of this.disk.live) {
      if (modelId !== info.modelId && byLabel.size > 0)
        throw holdsAnotherModel(modelId, info.modelId);
    }
    this.disk.model = { ...info };
  }

  async count(): Promise<number> {
    this.assertOpen();
    return this.disk.items.size;
  }

  async getById(id: string): Promise<StoredItem | undefined> {
    this.assertOpen();
    const item = this.byId(id);
    return item === undefined ? undefined : copyItem(item);
  }

  async getBySha(sha256: string): Promise<StoredItem | undefined> {
    this.assertOpen();
    const item = this.bySha(sha256);
    return item === undefined ? undefined : copyItem(item);
  }

  async findContent(sha256: string, id: string): Promise<ContentMatch> {
    this.assertOpen();
    const existing = this.bySha(sha256);
    return {
      existing: existing === undefined ? undefined : copyItem(existing),
      idTaken: this.byId(id) !== undefined,
    };
  }

  /** Nothing to make durable ahead: the insert keeps the bytes. */
  async stageOriginal(): Promise<void> {
    this.assertOpen();
  }

  async insertItems(entries: readonly NewItem[], modelId: string): Promise<InsertOutcome[]> {
    this.assertOpen();
    // Decided for every entry before anything is written: a refusal changes nothing.
    const live = entries.map((entry) => liveEmbedding(entry, modelId, this.disk.model?.modelId));
    const createdAt = new Date().toISOString();
    return entries.map((entry, k): InsertOutcome => {
      const sameContent = this.bySha(entry.sha256);
      if (sameContent !== undefined) return { status: "duplicate", id: sameContent.id };
      if (this.byId(entry.id) !== undefined) return { status: "id_conflict" };
      const label = ++this.disk.lastLabel;
      const item: StoredItem = {
        id: entry.id,
        label,
        sha256: entry.sha256,
        metadata: structuredClone(entry.metadata),
        contentType: entry.contentType,
        width: entry.width,
        height: entry.height,
        bytes: entry.bytes,
        source: entry.source,
        createdAt,
      };
      if (entry.path !== undefined) item.path = entry.path;
      this.disk.items.set(label, item);
      if (entry.original !== undefined) {
        this.disk.originals.set(entry.sha256, Buffer.from(entry.original));
      }
      const embedding = live[k] as LiveEmbedding;
      embeddingsOfModel(this.disk.live, embedding.modelId).set(label, embedding.vector.slice());
      if (embedding.staged !== undefined) {
        const { modelId: next, vector } = embedding.staged;
        embeddingsOfModel(this.disk.staging, next).set(label, vector.slice());
      }
      if (embedding.parts.length > 0) {
        this.disk.parts.set(
          label,
          embedding.parts.map((part, index) => ({
            index,
            locator: locatorCopy(part),
            modelId: embedding.modelId,
            vector: part.vector.slice(),
          })),
        );
        embedding.staged?.parts?.forEach((vector, index) => {
          this.partStagingOf((embedding.staged as Embedding).modelId).set(
            partKey(label, index),
            vector.slice(),
          );
        });
      }
      return { status: "inserted", label };
    });
  }

  async deleteById(id: string): Promise<StoredItem | undefined> {
    this.assertOpen();
    const item = this.byId(id);
    if (item === undefined) return undefined;
    this.disk.items.delete(item.label);
    for (const embeddings of [this.disk.live, this.disk.staging]) {
      for (const byLabel of embeddings.values()) byLabel.delete(item.label);
    }
    const parts = this.disk.parts.get(item.label) ?? [];
    this.disk.parts.delete(item.label);
    for (const staged of this.disk.partStaging.values()) {
      for (const part of parts) staged.delete(partKey(item.label, part.index));
    }
    for (const added of this.disk.newParts.values()) added.delete(item.label);
    if (item.source === "upload") this.disk.originals.delete(item.sha256);
    return item;
  }

  async listItems(
    cursor: string | null,
    limit: number,
    order: ItemOrder = "oldest",
  ): Promise<{ items: StoredItem[]; nextCursor: string | null }> {
    this.assertOpen();
    const labels = this.labels();
    let rows: StoredItem[];
    if (order === "newest") {
      const before = cursor === null ? Number.MAX_SAFE_INTEGER : decodeCursor(cursor, order);
      rows = labels
        .filter((label) => label < before)
        .reverse()
        .map((label) => this.itemAt(label));
    } else {
      const after = cursor === null ? 0 : decodeCursor(cursor);
      rows = labels.filter((label) => label > after).map((label) => this.itemAt(label));
    }
    return pageOf(rows.slice(0, limit + 1), limit, order);
  }

  async itemsAfter(label: number, limit: number): Promise<StoredItem[]> {
    this.assertOpen();
    return this.labels()
      .filter((l) => l > label)
      .slice(0, limit)
      .map((l) => this.itemAt(l));
  }

  async readOriginal(sha256: string): Promise<Buffer> {
    this.assertOpen();
    const bytes = this.disk.originals.get(sha256);
    if (bytes === undefined) throw new Error(`no stored original ${sha256}`);
    return Buffer.from(bytes);
  }

  checkFilter(filter: Filter): void {
    filterTerms(filter);
  }

  async nearest(query: NearestQuery, modelId: string): Promise<ScoredItem[]> {
    this.assertOpen();
    requireModel("memory store", this.disk.model, modelId);
    const matches = metadataPredicate(query.filter);
    const rows: EmbeddingRow[] = [];
    for (const [label, vector] of this.disk.live.get(modelId) ?? []) {
      if (matches(this.itemAt(label).metadata)) rows.push({ label, vector });
    }
    if (this.disk.parts.size === 0 || query.wholeImage === true) {
      return exactSearch(query.vector, rows, query.k).map(({ label, score }) => ({
        item: this.itemAt(label),
        score,
      }));
    }
    // Each item by its best vector: its own, or a part's that scores higher (the first such).
    const best = rows.map(({ label, vector }): ScoredItem => {
      const hit: ScoredItem = { item: this.itemAt(label), score: cosine(query.vector, vector) };
      for (const part of this.disk.parts.get(label) ?? []) {
        if (part.modelId !== modelId) continue;
        const score = cosine(query.vector, part.vector);
        if (score > hit.score) {
          hit.score = score;
          hit.match = partMatch(part.locator, part.index, score);
        }
      }
      return hit;
    });
    return best
      .sort((a, b) => b.score - a.score || a.item.label - b.item.label)
      .slice(0, Math.max(0, query.k));
  }

  async keywordSearch(query: KeywordQuery): Promise<ScoredItem[]> {
    this.assertOpen();
    const matches = metadataPredicate(query.filter);
    const rows: TextRow[] = [];
    for (const item of this.disk.items.values()) {
      for (const row of textRows(item.metadata)) rows.push({ label: item.label, ...row });
    }
    const scores = bm25Scores(rows, query.words, new Set(query.fields));
    return [...scores]
      .filter(([label]) => matches(this.itemAt(label).metadata))
      .sort((a, b) => b[1] - a[1] || a[0] - b[0])
      .slice(0, query.k)
      .map(([label, score]) => ({ item: this.itemAt(label), score }));
  }

  async countEmbeddings(modelId: string): Promise<number> {
    this.assertOpen();
    return this.disk.live.get(modelId)?.size ?? 0;
  }

  async embeddingsOf(modelId: string, labels: readonly number[]): Promise<EmbeddingRow[]> {
    this.assertOpen();
    const byLabel = this.disk.live.get(modelId);
    return [...new Set(labels)]
      .sort((a, b) => a - b)
      .flatMap((label) => {
        const vector = byLabel?.get(label);
        return vector === undefined ? [] : [{ label, vector: vector.slice() }];
      });
  }

  async partsOf(modelId: string, labels: readonly number[]): Promise<Map<number, StoredPart[]>> {
    this.assertOpen();
    const out = new Map<number, StoredPart[]>();
    for (const label of new Set(labels)) {
      const parts = (this.disk.parts.get(label) ?? []).flatMap((part) =>
        part.modelId === modelId
          ? [{ ...locatorCopy(part.locator), index: part.index, vector: part.vector.slice() }]
          : [],
      );
      if (parts.length > 0) out.set(label, parts);
    }
    return out;
  }

  async clearStaging(): Promise<void> {
    this.assertOpen();
    this.disk.staging.clear();
    this.disk.partStaging.clear();
    this.disk.newParts.clear();
  }

  async putStaging(rows: readonly StagedRow[], modelId: string): Promise<void> {
    this.assertOpen();
    const staged = embeddingsOfModel(this.disk.staging, modelId);
    for (const { label, vector, parts, newParts } of rows) {
      if (!this.disk.items.has(label)) continue;
      staged.set(label, vector.slice());
      const storedParts = this.disk.parts.get(label) ?? [];
      const stored = new Set(storedParts.map((part) => part.index));
      for (const part of parts ?? []) {
        if (stored.has(part.index))
          this.partStagingOf(modelId).set(partKey(label, part.index), part.vector.slice());
      }
      if (newParts === undefined || newParts.length === 0) continue;
      let added = this.disk.newParts.get(modelId);
      if (added === undefined) {
        added = new Map();
        this.disk.newParts.set(modelId, added);
      }
      const first = Math.max(-1, ...stored) + 1;
      added.set(
        label,
        newParts.map(({ vector, ...locator }, i) => ({
          index: first + i,
          locator: locatorCopy(locator),
          modelId,
          vector: vector.slice(),
        })),
      );
    }
  }

  private partStagingOf(modelId: string): Map<string, Float32Array> {
    let staged = this.disk.partStaging.get(modelId);
    if (staged === undefined) {
      staged = new Map();
      this.disk.partStaging.set(modelId, staged);
    }
    return staged;
  }

  async swapStaging(info: ModelInfo, options: SwapOptions = {}): Promise<void> {
    this.assertOpen();
    if (
      options.target !== undefined &&
      this.disk.meta.get(REINDEX_KEY) !== reindexRecord(options.target)
    ) {
      throw reindexSuperseded();
    }
    const staged = this.disk.staging.get(info.modelId) ?? new Map<number, Float32Array>();
    if (options.requireCompleteExcept !== undefined) {
      const except = new Set(options.requireCompleteExcept);
      const missing = this.labels().filter((l) => !staged.has(l) && !except.has(l)).length;
      if (missing > 0) throw reindexIncomplete(missing);
    }
    // Staged rows replace live ones; any other model's embeddings go.
    const kept = this.disk.live.get(info.modelId) ?? new Map<number, Float32Array>();
    for (const byLabel of this.disk.staging.values()) {
      for (const label of byLabel.keys()) kept.delete(label);
    }
    for (const [label, vector] of staged) kept.set(label, vector);
    // Parts likewise; a part with no embedding of the model goes with its locator.
    // A stored part the item staged without goes too; the parts it gains come after.
    const stagedParts = this.disk.partStaging.get(info.modelId);
    const added = this.disk.newParts.get(info.modelId);
    for (const label of this.disk.items.keys()) {
      const parts = this.disk.parts.get(label) ?? [];
      const left = parts.flatMap((part): MemoryPart[] => {
        const vector = stagedParts?.get(partKey(label, part.index));
        if (vector !== undefined) return [{ ...part, modelId: info.modelId, vector }];
        return part.modelId === info.modelId && !staged.has(label) ? [part] : [];
      });
      if (staged.has(label)) left.push(...(added?.get(label) ?? []));
      if (left.length > 0) this.disk.parts.set(label, left);
      else this.disk.parts.delete(label);
    }
    this.disk.partStaging.clear();
    this.disk.newParts.clear();
    this.disk.live.clear();
    this.disk.live.set(info.modelId, kept);
    this.disk.staging.clear();
    this.disk.model = { ...info };
    this.disk.meta.delete(REINDEX_KEY);
  }

  async unstagedAfter(modelId: string, label: number, limit: number): Promise<StoredItem[]> {
    this.assertOpen();
    const staged = this.disk.staging.get(modelId);
    return this.labels()
      .filter((l) => l > label && staged?.has(l) !== true)
      .slice(0, limit)
      .map((l) => this.itemAt(l));
  }

  async countStaging(modelId: string): Promise<number> {
    this.assertOpen();
    return this.disk.staging.get(modelId)?.size ?? 0;
  }

  async reindexTarget(): Promise<ReindexTarget | undefined> {
    this.assertOpen();
    return parseReindexTarget(this.disk.meta.get(REINDEX_KEY));
  }

  async setReindexTarget(
    target: ReindexTarget | undefined,
    expected?: ReindexTarget | null,
  ): Promise<boolean> {
    this.assertOpen();
    const recorded = this.disk.meta.get(REINDEX_KEY);
    if (expected !== undefined && recorded !== (expected ? reindexRecord(expected) : undefined)) {
      return false;
    }
    if (target === undefined) this.disk.meta.delete(REINDEX_KEY);
    else this.disk.meta.set(REINDEX_KEY, reindexRecord(target));
    return true;
  }

  async gallerySeeded(): Promise<boolean> {
    this.assertOpen();
    return this.disk.meta.has(GALLERY_KEY);
  }

  async markGallerySeeded(note: string): Promise<void> {
    this.assertOpen();
    this.disk.meta.set(GALLERY_KEY, note);
  }

  async prepare(): Promise<void> {
    this.assertOpen();
  }

  async indexStats(): Promise<VectorIndexStats> {
    this.assertOpen();
    const modelId = this.disk.model?.modelId;
    let size = modelId === undefined ? 0 : (this.disk.live.get(modelId)?.size ?? 0);
    for (const parts of this.disk.parts.values()) {
      size += parts.filter((part) => part.modelId === modelId).length;
    }
    return hnswStats(this.parameters, size, size);
  }

  health(): StoreHealth {
    return this.closed
      ? { available: false, reason: "the memory store is closed" }
      : { available: true };
  }

  async flush(): Promise<void> {
    this.assertOpen();
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  /** Labels in order. */
  private labels(): number[] {
    return [...this.disk.items.keys()].sort((a, b) => a - b);
  }

  /** A copy of the item at a label that is known to be stored. */
  private itemAt(label: number): StoredItem {
    return copyItem(this.disk.items.get(label) as StoredItem);
  }

  private byId(id: string): StoredItem | undefined {
    for (const item of this.disk.items.values()) if (item.id === id) return item;
    return undefined;
  }

  private bySha(sha256: string): StoredItem | undefined {
    for (const item of this.disk.items.values()) if (item.sha256 === sha256) return item;
    return undefined;
  }
}
