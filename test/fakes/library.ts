/**
 * A real library (src/library) over the fakes: the in-memory store and the deterministic
 * embedder. Preprocessing is the real one (sharp, one worker thread, 8-pixel images).
 */
import { createHash } from "node:crypto";
import { loadSettings, type Settings } from "../../src/core/settings.ts";
import { createLibrary, type LongclipLibrary } from "../../src/library/index.ts";
import type { StoredItem } from "../../src/store/types.ts";
import { FakeEmbedder, type FakeEmbedderOptions, unit } from "./embedder.ts";
import { MemoryStore } from "./memory-store.ts";

export interface FakeLibrary {
  library: LongclipLibrary;
  store: MemoryStore;
  embedder: FakeEmbedder;
  settings: Settings;
}

/** Settings with no environment influence; nothing is read from modelDir or dataDir. */
export function fakeSettings(extra: Partial<Settings> = {}): Settings {
  return loadSettings(
    {
      modelDir: "fake-model-dir",
      dataDir: "fake-data-dir",
      preprocessWorkers: 1,
      imageBatchSize: 4,
      ...extra,
    },
    {},
  );
}

export async function openFakeLibrary(
  extra: Partial<Settings> = {},
  parts: { store?: MemoryStore; embedder?: FakeEmbedderOptions } = {},
): Promise<FakeLibrary> {
  const settings = fakeSettings(extra);
  const embedder = new FakeEmbedder(parts.embedder);
  const store = parts.store ?? new MemoryStore();
  const library = await createLibrary(settings, embedder, { store });
  return { library, store, embedder, settings };
}

/**
 * Stores items with the given embeddings (and metadata) straight into the store, under the
 * embedder's model, so a test knows every cosine the library will compute. Returns them.
 */
export async function putItems(
  { store, embedder }: Pick<FakeLibrary, "store" | "embedder">,
  entries: readonly { id: string; vector: ArrayLike<number>; metadata?: Record<string, unknown> }[],
): Promise<StoredItem[]> {
  if ((await store.model()) === undefined) {
    await store.setModel({ modelId: embedder.modelId, dims: embedder.dims });
  }
  const outcomes = await store.insertItems(
    entries.map((entry, n) => ({
      id: entry.id,
      sha256: createHash("sha256").update(entry.id).digest("hex"),
      metadata: entry.metadata ?? {},
      contentType: "image/png",
      width: 8,
      height: 8,
      bytes: 100 + n,
      source: "path" as const,
      path: `/media/${entry.id}.png`,
      vector: unit(entry.vector),
    })),
    embedder.modelId,
  );
  if (outcomes.some((outcome) => outcome.status !== "inserted")) {
    throw new Error(`putItems: not every item was inserted: ${JSON.stringify(outcomes)}`);
  }
  return Promise.all(entries.map(async (entry) => (await store.getById(entry.id)) as StoredItem));
}
