/** The storage contract's options and the items its cases store (test/helpers/store-contract.ts). */
import type { ItemStore, NewItem } from "../../src/store/types.ts";
import { xorshift32 } from "../../tools/bench/random.ts";

export interface ContractOptions {
  /** A new, empty store (`exactFilterLimit` overrides the backend's default). */
  open(overrides?: { exactFilterLimit?: number }): Promise<ItemStore>;
  /** The same store opened again (after close), to check durability. */
  reopen(): Promise<ItemStore>;
}

/** A deterministic unit-ish vector per seed (dims 8). */
export function vectorOf(seed: number, dims = 8): Float32Array {
  const v = new Float32Array(dims);
  const next = xorshift32((seed * 2654435761) >>> 0);
  for (let i = 0; i < dims; i++) {
    v[i] = (next() / 0xffffffff) * 2 - 1;
  }
  return v;
}

export function newItem(n: number, metadata: Record<string, unknown> = {}): NewItem {
  return {
    id: `item-${n}`,
    sha256: n.toString(16).padStart(64, "0"),
    metadata,
    contentType: "image/png",
    width: 10 + n,
    height: 20,
    bytes: 100 + n,
    source: "path",
    path: `/media/${n}.png`,
    vector: vectorOf(n),
  };
}

/** The model every contract case's store holds. */
export const MODEL = { modelId: "m1", dims: 8 };

/** The contract's fresh stores: new, empty, holding MODEL. */
export function freshStores(options: ContractOptions) {
  const fresh = async (overrides?: { exactFilterLimit?: number }) => {
    const store = await options.open(overrides);
    await store.setModel(MODEL);
    return store;
  };
  /** Runs `use` on a fresh store, and closes the store whatever happens. */
  const withFresh = async (use: (store: ItemStore) => Promise<void>) => {
    const store = await fresh();
    try {
      await use(store);
    } finally {
      await store.close();
    }
  };
  return { fresh, withFresh };
}
