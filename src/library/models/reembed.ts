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
import { frameAt, withTemporaryFile } from "../../preprocess/video/still.ts";
import type { NewPart, StagedRow, StoredItem, StoredPart } from "../../store/types.ts";
import { meanVector } from "../ingest/videos.ts";
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
 * One decoded item: its own model input, its stored parts' (by part index) and the regions it
 * gains (by box). A video has no input of its own (`pixels` undefined): its vector is the
 * normalised mean of its frames', as at ingest.
 */
interface Decoded {
  label: number;
  pixels: Float32Array | undefined;
  regions: { index: number; pixels: Float32Array }[];
  added: { box: Box; pixels: Float32Array }[];
}

const boxKey = (box: Box) => `${box.x},${box.y},${box.width},${box.height}`;

/**
 * An image's regions after the reindex are those `--regions` lays over it now (`crops`, as
 * ingest cuts them): one at the box of a stored region keeps that part's index, the others are
 * new parts; a stored region at no box of them is dropped at the swap.
 */
function matchRegions(
  stored: readonly StoredPart[],
  crops: readonly { box: Box; pixels: Float32Array }[],
): Pick<Decoded, "regions" | "added"> {
  const byBox = new Map<string, number>();
  for (const part of stored) if (part.kind === "region") byBox.set(boxKey(part.box), part.index);
  const regions: Decoded["regions"] = [];
  const added: Decoded["added"] = [];
  for (const crop of crops) {
    const index = byBox.get(boxKey(crop.box));
    byBox.delete(boxKey(crop.box));
    if (index === undefined) added.push(crop);
    else regions.push({ index, pixels: crop.pixels });
  }
  return { regions, added };
}

/**
 * Embeds one page and stages it; returns how many items were staged. An item's regions are
 * cropped again from its image by their boxes (as the store lists them, partsOf), a video's
 * frames decoded again at their times, and staged with it.
 */
async function embedPage(
  host: ModelHost,
  pass: ReembedPass,
  page: readonly StoredItem[],
): Promise<number> {
  const { model } = pass;
  const stored = await host.store.model();
  const parts =
    stored === undefined || page.length === 0
      ? new Map<number, StoredPart[]>()
      : await host.store.partsOf(
          stored.modelId,
          page.map((item) => item.label),
        );
  const bytes = await Promise.all(page.map((item) => readForReembed(host, item)));
  const decoded = await Promise.allSettled(
    bytes.map(async (data, k) => {
      if (data instanceof Error) throw isAppError(data) ? data : imageMissing(data);
      if (data === DELETED) return DELETED;
      const item = page[k] as StoredItem;
      const label = item.label;
      if (item.contentType.startsWith("video/")) {
        return decodeFrames(host, pass, label, data, parts.get(label) ?? []);
      }
      const { regions, maxRegions } = host.settings;
      const crops = regions === "auto" ? { kind: "auto" as const, max: maxRegions } : undefined;
      const image = await host.pool.run(data, model.options, undefined, crops);
      return {
        label,
        pixels: image.pixels,
        ...matchRegions(parts.get(label) ?? [], image.regions ?? []),
      };
    }),
  );
  const good: Decoded[] = [];
  decoded.forEach((outcome, k) => {
    const item = page[k] as StoredItem;
    if (outcome.status === "rejected") pass.failed(item, errorOf(outcome.reason));
    else if (outcome.value !== DELETED) good.push(outcome.value);
  });
  if (good.length === 0) return 0;
  // Every model input of the page in one run: the items' own, then their parts'.
  const own = good.flatMap((g) => (g.pixels === undefined ? [] : [g.pixels]));
  const inputs = [
    ...own,
    ...good.flatMap((g) => [...g.regions.map((r) => r.pixels), ...g.added.map((a) => a.pixels)]),
  ];
  const vectors = await host.queue.run("ingest", inputs.length, () =>
    asModelFailure(() => model.embedder.embedPixels(inputs)),
  );
  host.assertOpen();
  let nextOwn = 0;
  let next = own.length;
  const rows: StagedRow[] = good.map((g) => {
    const parts = g.regions.map((r) => ({
      index: r.index,
      vector: vectors[next++] as Float32Array,
    }));
    const newParts = g.added.map(
      (a): NewPart => ({ kind: "region", box: a.box, vector: vectors[next++] as Float32Array }),
    );
    const vector =
      g.pixels === undefined
        ? meanVector(parts.map((part) => part.vector))
        : (vectors[nextOwn++] as Float32Array);
    const row: StagedRow = { label: g.label, vector };
    if (parts.length > 0) row.parts = parts;
    if (newParts.length > 0) row.newParts = newParts;
    return row;
  });
  await host.store.putStaging(rows, model.embedder.modelId);
  return good.length;
}

/** A video's frames decoded again at their stored times, one ffmpeg run each, in order. */
async function decodeFrames(
  host: ModelHost,
  pass: ReembedPass,
  label: number,
  video: Buffer,
  parts: readonly StoredPart[],
): Promise<Decoded> {
  const frames = parts.flatMap((part) => (part.kind === "frame" ? [part] : []));
  if (frames.length === 0) {
    throw new AppError(
      "invalid_video",
      "The video has no stored frames to embed again; index it again.",
    );
  }
  const stills = await withTemporaryFile(video, async (file) => {
    const out: Buffer[] = [];
    for (const frame of frames) out.push(await frameAt(file, frame.t, host.settings));
    return out;
  });
  const regions = [];
  for (const [i, still] of stills.entries()) {
    const image = await host.pool.run(still, pass.model.options);
    regions.push({ index: (frames[i] as StoredPart).index, pixels: image.pixels });
  }
  return { label, pixels: undefined, regions, added: [] };
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
