/**
 * What both backends decide alike, written once: which of a new item's embeddings is live
 * during a blue/green reindex, the model check in front of a search, and the index statistics.
 * Only the SQL (and SQLite's in-process index) differs between sqlite/ and postgres/.
 */
import { AppError, storeModelMismatch } from "../core/errors.ts";
import { checkParts, withVectors } from "./parts.ts";
import type { IndexParameters, ModelInfo, NewItem, NewPart, VectorIndexStats } from "./types.ts";

export interface Embedding {
  modelId: string;
  vector: Float32Array;
}

/**
 * A new item's live embedding with its parts' (none when it has none, or when the live model
 * is the staged one and the parts were not embedded by it), and the one to stage beside it
 * (blue/green), if any, with its parts' vectors in part order.
 */
export interface LiveEmbedding extends Embedding {
  parts: readonly NewPart[];
  staged?: Embedding & { parts?: readonly Float32Array[] };
}

/**
 * Which embedding of a new item is live, decided in the insert's transaction against the
 * store's model now (`current`): normally the one by `modelId`, with the next model's staged
 * beside it; but the staged one alone if the store switched to that model meanwhile. An item
 * embedded only by a model the store no longer holds is refused (409 model_mismatch): stored,
 * it would be unsearchable under the live model.
 */
export function liveEmbedding(
  entry: NewItem,
  modelId: string,
  current: string | undefined,
): LiveEmbedding {
  checkParts(entry);
  const staged = entry.staged;
  if (current !== undefined && current !== modelId) {
    if (staged?.modelId === current) {
      const parts = staged.parts === undefined ? [] : withVectors(entry.parts ?? [], staged.parts);
      return { modelId: staged.modelId, vector: staged.vector, parts };
    }
    throw new AppError(
      "model_mismatch",
      `The library switched to model ${current} while this image was embedded by ${modelId}; this node follows within seconds (or restart it with the new model), then retry.`,
      { storedModelId: current, modelId },
    );
  }
  return {
    modelId,
    vector: entry.vector,
    parts: entry.parts ?? [],
    ...(staged !== undefined ? { staged } : {}),
  };
}

/**
 * The store's model, if it is the one a search's query was embedded by; otherwise 409
 * model_mismatch (the library's model changed under the search). `where` names the store.
 */
export function requireModel(
  where: string,
  held: ModelInfo | undefined,
  wanted: string,
): ModelInfo {
  if (held?.modelId !== wanted) throw storeModelMismatch(where, held?.modelId, wanted);
  return held;
}

/** The HNSW index's statistics: parameters (efSearch as a search uses it now), slots, vectors. */
export function hnswStats(
  parameters: IndexParameters,
  capacity: number,
  size: number,
): VectorIndexStats {
  const { m, efConstruction, efSearch } = parameters;
  return { type: "hnsw", space: "cosine", m, efConstruction, efSearch, capacity, size };
}
