/**
 * A generation: a model with the preprocessing its vision tower expects, and the model id a
 * library records for it. ./generations.ts follows which generation is live.
 */
import type { Settings } from "../../core/settings.ts";
import type { Embedder } from "../../encode/types.ts";
import { preprocessOptions } from "../../preprocess/options.ts";
import type { PreprocessMode, PreprocessOptions } from "../../preprocess/types.ts";

/** A model with the preprocessing its vision tower expects. */
export interface Generation {
  embedder: Embedder;
  options: PreprocessOptions;
}

/**
 * The model id a library records: the encoder's, with the preprocessing mode appended unless
 * it is exact. Fast preprocessing gives slightly different embeddings, so a library built
 * with one mode and opened with the other needs a reindex, as after a model change.
 */
export function libraryModelId(modelId: string, mode: PreprocessMode): string {
  return mode === "exact" ? modelId : `${modelId}+preprocess-${mode}`;
}

function withPreprocessMode(embedder: Embedder, mode: PreprocessMode): Embedder {
  if (mode === "exact") return embedder;
  const modelId = libraryModelId(embedder.modelId, mode);
  return {
    config: embedder.config,
    modelId,
    dims: embedder.dims,
    tokenize: (text) => embedder.tokenize(text),
    embedTexts: (texts) => embedder.embedTexts(texts),
    embedTokenized: (tokenized) => embedder.embedTokenized(tokenized),
    embedPixels: (pixels) => embedder.embedPixels(pixels),
    ...(embedder.embedPatches !== undefined
      ? { embedPatches: embedder.embedPatches.bind(embedder) }
      : {}),
    stats: () => ({ ...embedder.stats(), modelId }),
    close: () => embedder.close(),
  };
}

/** An encoder as a generation: its library model id and the preprocessing it expects. */
export function generationOf(encoder: Embedder, settings: Settings): Generation {
  const embedder = withPreprocessMode(encoder, settings.preprocess);
  return { embedder, options: preprocessOptions(embedder.config, settings) };
}
