/** Wrappers around a real encoder for tests that need to see or hold its work. */
import type { Embedder } from "../../src/encode/types.ts";

/** `inner`, each image embedding waiting for `first` (a signal, a hold) before it runs. */
export function withBeforeImages(inner: Embedder, first: () => void | Promise<void>): Embedder {
  return {
    config: inner.config,
    modelId: inner.modelId,
    dims: inner.dims,
    tokenize: (text) => inner.tokenize(text),
    embedTexts: (texts) => inner.embedTexts(texts),
    embedTokenized: (tokenized) => inner.embedTokenized(tokenized),
    embedPixels: async (pixels) => {
      await first();
      return inner.embedPixels(pixels);
    },
    stats: () => inner.stats(),
    close: () => inner.close(),
  };
}
