/**
 * Reindex in place (`longclip reindex`, after a model change): every item is embedded again
 * by the live model into the store's staging embeddings, page by page; then the store swaps
 * them in, in one transaction (./generations.ts). An item that cannot be read or decoded fails
 * only itself.
 * To move to another model while search keeps serving, see ./blue-green.ts.
 */

import { errorOf } from "../../core/errors.ts";
import type { Settings } from "../../core/settings.ts";
import type { PreprocessPool } from "../../preprocess/pool.ts";
import type { ItemStore, StoredItem } from "../../store/types.ts";
import type { EmbedQueue } from "../queue.ts";
import type { Generation } from "./generation.ts";

/** What re-embedding needs from the library. */
export interface ReembedHost {
  settings: Settings;
  store: ItemStore;
  pool: PreprocessPool;
  queue: EmbedQueue;
  live(): Generation;
  /** An item's original bytes (a file indexed by path is re-checked). */
  readBytes(item: StoredItem): Promise<Buffer>;
  /** Throws when the library is closing. */
  assertOpen(): void;
}

export type ReindexProgress = (done: number, total: number) => void;
export type ReindexFailure = (id: string, error: { code: string; message: string }) => void;

/**
 * Stages an embedding by the live model, recorded as `modelId`, for every readable item;
 * returns how many were embedded. Staging is cleared first, so an interrupted run starts over.
 */
export async function reembedAll(
  host: ReembedHost,
  modelId: string,
  onProgress?: ReindexProgress,
  onFailure?: ReindexFailure,
): Promise<number> {
  const { store, pool, queue } = host;
  await store.clearStaging();
  const total = await store.count();
  const pageSize = Math.max(1, host.settings.imageBatchSize);
  let done = 0;
  let embedded = 0;
  let after = 0;
  onProgress?.(0, total);
  for (;;) {
    host.assertOpen();
    const page = await store.itemsAfter(after, pageSize);
    const last = page[page.length - 1];
    if (last === undefined) break;
    after = last.label;
    const decoded = await Promise.allSettled(
      page.map(async (item) => pool.run(await host.readBytes(item), host.live().options)),
    );
    const good: { label: number; pixels: Float32Array }[] = [];
    decoded.forEach((outcome, k) => {
      const item = page[k] as StoredItem;
      if (outcome.status === "fulfilled") {
        good.push({ label: item.label, pixels: outcome.value.pixels });
      } else {
        onFailure?.(item.id, errorOf(outcome.reason));
      }
    });
    if (good.length > 0) {
      const vectors = await queue.run("ingest", good.length, () =>
        host.live().embedder.embedPixels(good.map((g) => g.pixels)),
      );
      host.assertOpen();
      await store.putStaging(
        good.map((g, k) => ({ label: g.label, vector: vectors[k] as Float32Array })),
        modelId,
      );
      embedded += good.length;
    }
    done += page.length;
    onProgress?.(Math.min(done, total), total);
  }
  return embedded;
}
