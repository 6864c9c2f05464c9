/**
 * Moving a library from one store to another (the embedded default's data directory to
 * Postgres) without re-embedding: items, metadata, embeddings (the parts' too: regions,
 * frames, numbered from 0 again in their order) and uploaded originals are copied
 * page by page through the storage seam. Copying is idempotent — an item already in the target
 * (same content and id) is skipped — so an interrupted run is resumed by running it again. At
 * the end the target is checked: every source item is there, and a sample of vectors is equal.
 */
import { AppError } from "../core/errors.ts";
import { withVectors } from "./parts.ts";
import type { ItemStore, NewItem, StoredItem, StoredPart } from "./types.ts";

export interface MigrateProgress {
  done: number;
  total: number;
  copied: number;
  alreadyThere: number;
}

export interface MigrateReport extends MigrateProgress {
  /** Source items without an embedding of the source's model (not copied; reindex them). */
  notEmbedded: string[];
  /** Source items whose id is taken by other content in the target. */
  conflicts: string[];
  /** Source items found in the target at the end. */
  verified: number;
  /** Vectors compared at the end, and the largest absolute difference seen. */
  sampled: number;
  maxVectorDifference: number;
}

const PAGE = 200;
const SAMPLE = 100;

export async function migrateStore(
  source: ItemStore,
  target: ItemStore,
  onProgress?: (progress: MigrateProgress) => void,
): Promise<MigrateReport> {
  const model = await source.model();
  if (model === undefined) {
    throw new AppError("nothing_to_migrate", "The source library has no model yet: it is empty.");
  }
  const targetModel = await target.model();
  if (targetModel === undefined || (await target.count()) === 0) {
    await target.setModel(model);
  } else if (targetModel.modelId !== model.modelId || targetModel.dims !== model.dims) {
    throw new AppError(
      "model_mismatch",
      `The target holds embeddings of ${targetModel.modelId} (${targetModel.dims} dims), the source of ${model.modelId} (${model.dims}); migrate into an empty database, or reindex one side first.`,
    );
  }
  const report: MigrateReport = {
    done: 0,
    total: await source.count(),
    copied: 0,
    alreadyThere: 0,
    notEmbedded: [],
    conflicts: [],
    verified: 0,
    sampled: 0,
    maxVectorDifference: 0,
  };
  onProgress?.(report);
  for (let after = 0; ; ) {
    const page = await source.itemsAfter(after, PAGE);
    const last = page[page.length - 1];
    if (last === undefined) break;
    after = last.label;
    const labels = page.map((item) => item.label);
    const vectors = new Map(
      (await source.embeddingsOf(model.modelId, labels)).map((row) => [row.label, row.vector]),
    );
    const parts = await source.partsOf(model.modelId, labels);
    const entries: NewItem[] = [];
    const copied: StoredItem[] = [];
    for (const item of page) {
      const vector = vectors.get(item.label);
      if (vector === undefined) {
        report.notEmbedded.push(item.id);
        continue;
      }
      entries.push(await toNewItem(source, item, vector, parts.get(item.label) ?? []));
      copied.push(item);
    }
    const outcomes = await target.insertItems(entries, model.modelId);
    outcomes.forEach((outcome, k) => {
      const item = copied[k] as StoredItem;
      if (outcome.status === "inserted") report.copied++;
      else if (outcome.status === "duplicate" && outcome.id === item.id) report.alreadyThere++;
      else report.conflicts.push(item.id);
    });
    report.done += page.length;
    onProgress?.(report);
  }
  await verify(source, target, model.modelId, report);
  return report;
}

async function toNewItem(
  source: ItemStore,
  item: StoredItem,
  vector: Float32Array,
  parts: readonly StoredPart[],
): Promise<NewItem> {
  const entry: NewItem = {
    id: item.id,
    sha256: item.sha256,
    metadata: item.metadata,
    contentType: item.contentType,
    width: item.width,
    height: item.height,
    bytes: item.bytes,
    source: item.source,
    vector,
  };
  if (item.path !== undefined) entry.path = item.path;
  if (parts.length > 0) {
    entry.parts = withVectors(
      parts,
      parts.map((part) => part.vector),
    );
  }
  if (item.source === "upload") entry.original = await source.readOriginal(item.sha256);
  return entry;
}

/** Every source item is in the target with the same content; a sample of vectors is equal. */
async function verify(
  source: ItemStore,
  target: ItemStore,
  modelId: string,
  report: MigrateReport,
): Promise<void> {
  const sampleEvery = Math.max(1, Math.floor(report.total / SAMPLE));
  let index = 0;
  for (let after = 0; ; ) {
    const page = await source.itemsAfter(after, PAGE);
    const last = page[page.length - 1];
    if (last === undefined) break;
    after = last.label;
    for (const item of page) {
      const there = await target.getById(item.id);
      if (there?.sha256 === item.sha256) report.verified++;
      if (index++ % sampleEvery !== 0 || there === undefined) continue;
      const [mine] = await source.embeddingsOf(modelId, [item.label]);
      const [theirs] = await target.embeddingsOf(modelId, [there.label]);
      if (mine === undefined || theirs === undefined) continue;
      report.sampled++;
      for (let i = 0; i < mine.vector.length; i++) {
        const difference = Math.abs((mine.vector[i] as number) - (theirs.vector[i] ?? Number.NaN));
        report.maxVectorDifference = Math.max(report.maxVectorDifference, difference);
      }
    }
  }
}
