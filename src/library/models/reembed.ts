/**
 * The one re-embed loop: items, page by page, are read, preprocessed and embedded by a model
 * into the store's staging embeddings (recorded under that model's id). Reindex in place
 * (./lifecycle.ts) runs it once over every item with the live model; a blue/green run
 * (./blue-green.ts) runs it pass after pass over the items the next model has not embedded yet.
 *
 * An item that cannot be read or decoded fails only itself; an item deleted since its page was
 * listed is skipped; an upload that cannot be read is the store's error, not the item's. A store
 * error is retried a few times, then ends the pass (a run resumes from its staged embeddings).
 * What the model itself throws is a ModelFailure (./next-model.ts): it is never the item's.
 */

import { AppError, type ErrorInfo, errorOf, isAppError } from "../../core/errors.ts";
import type { Box } from "../../core/types.ts";
import type { StagedRow, StoredItem } from "../../store/types.ts";
import type { Generation } from "./generation.ts";
import { asModelFailure } from "./next-model.ts";
import type { ModelHost } from "./types.ts";

/** Tries of one page's store work before the pass fails. */
const STORE_ATTEMPTS = 3;

export interface ReembedPass {
  /** Reads, preprocesses and embeds; its model id is the one staged. */
  model: Generation;
  /** The items after label `after`, in label order (empty at the end). */
  list(after: number): Promise<StoredItem[]>;
  /** Items listed but left out (those that failed in an earlier pass). */
  skip?(item: StoredItem): boolean;
  /** True when the pass should end early (stopped, switched, taken over elsewhere). */
  ended?(): boolean;
  /** An item that cannot be read or decoded. */
  failed(item: StoredItem, error: ErrorInfo): void;
  /** A page is done: `listed` items, `staged` of them embedded. */
  paged(listed: number, staged: number): void;
}

/** Runs `pass` to the end of its listing; returns how many items were embedded and staged. */
export async function reembed(host: ModelHost, pass: ReembedPass): Promise<number> {
  let after = 0;
  let staged = 0;
  for (;;) {
    host.assertOpen();
    if (pass.ended?.()) return staged;
    const page = await withRetries(pass, () => pass.list(after));
    const last = page[page.length - 1];
    if (last === undefined) return staged;
    after = last.label;
    const todo = pass.skip === undefined ? page : page.filter((item) => !pass.skip?.(item));
    const count = await withRetries(pass, () => embedPage(host, pass, todo));
    staged += count;
    pass.paged(page.length, count);
  }
}

/**
 * A store error (a connection lost, a failover) is retried a few times; an AppError (a client
 * or model error the store reported) is not.
 */
async function withRetries<T>(pass: ReembedPass, work: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await work();
    } catch (error) {
      if (attempt >= STORE_ATTEMPTS || pass.ended?.() || isAppError(error)) throw error;
      await new Promise((resolve) => setTimeout(resolve, 500 * attempt));
    }
  }
}

/**
 * The regions each item of `page` keeps (by the store's live model), to be cut again at the
 * same boxes: what --regions was when the item was indexed, not what it is now.
 */
async function regionsOf(
  host: ModelHost,
  page: readonly StoredItem[],
): Promise<Map<number, { index: number; box: Box }[]>> {
  const live = await host.store.model();
  const regions = new Map<number, { index: number; box: Box }[]>();
  if (live === undefined) return regions;
  const parts = await host.store.partsOf(
    live.modelId,
    page.map((item) => item.label),
  );
  for (const [label, list] of parts) {
    const boxes = list.flatMap((part) =>
      part.kind === "region" ? [{ index: part.index, box: part.box }] : [],
    );
    if (boxes.length > 0) regions.set(label, boxes);
  }
  return regions;
}

/** Embeds one page (each item's regions too) and stages it; returns how many were staged. */
async function embedPage(
  host: ModelHost,
  pass: ReembedPass,
  page: readonly StoredItem[],
): Promise<number> {
  const { model } = pass;
  const regions = await regionsOf(host, page);
  const bytes = await Promise.all(page.map((item) => readForReembed(host, item)));
  const decoded = await Promise.allSettled(
    bytes.map(async (data, k) => {
      if (data instanceof Error) throw isAppError(data) ? data : imageMissing(data);
      if (data === DELETED) return DELETED;
      const boxes = regions.get((page[k] as StoredItem).label)?.map((r) => r.box);
      return host.pool.run(
        data,
        model.options,
        undefined,
        boxes === undefined ? undefined : { kind: "boxes", boxes },
      );
    }),
  );
  const good: { label: number; pixels: Float32Array[] }[] = [];
  decoded.forEach((outcome, k) => {
    const item = page[k] as StoredItem;
    if (outcome.status === "rejected") pass.failed(item, errorOf(outcome.reason));
    else if (outcome.value !== DELETED) {
      const crops = (outcome.value.regions ?? []).map((r) => r.pixels);
      good.push({ label: item.label, pixels: [outcome.value.pixels, ...crops] });
    }
  });
  if (good.length === 0) return 0;
  const flat = good.flatMap((g) => g.pixels);
  const vectors = await host.queue.run("ingest", flat.length, () =>
    asModelFailure(() => model.embedder.embedPixels(flat)),
  );
  host.assertOpen();
  let at = 0;
  const rows: StagedRow[] = good.map((g) => {
    const row: StagedRow = { label: g.label, vector: vectors[at] as Float32Array };
    const indexes = regions.get(g.label) ?? [];
    if (indexes.length > 0) {
      row.parts = indexes.map((r, i) => ({
        index: r.index,
        vector: vectors[at + 1 + i] as Float32Array,
      }));
    }
    at += g.pixels.length;
    return row;
  });
  await host.store.putStaging(rows, model.embedder.modelId);
  return good.length;
}

/** An item deleted (by any node) since its page was listed: it needs no new embedding. */
const DELETED = Symbol("deleted");

/**
 * An item's bytes. Uploads are read from the store (an error there is the store's, not the
 * item's, unless the item was deleted meanwhile); files by path may be gone or replaced
 * (re-checked as every read of them is), which fails only that item.
 */
async function readForReembed(
  host: ModelHost,
  item: StoredItem,
): Promise<Buffer | Error | typeof DELETED> {
  try {
    return await host.readBytes(item);
  } catch (error) {
    if ((await host.store.getById(item.id))?.label !== item.label) return DELETED;
    if (item.source === "upload") throw error;
    return error as Error;
  }
}

function imageMissing(error: Error): AppError {
  return new AppError(
    "image_missing",
    `The item's file cannot be read (${error.message}); restore it or delete the item.`,
  );
}
