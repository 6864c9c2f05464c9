import type { Device } from "../core/settings.ts";
import type { DenseKind, ModelConfig } from "../model/format.ts";
import type { TokenizedText } from "../tokenize/types.ts";

export interface TextEmbedding {
  /** L2-normalised, length embed_dim. */
  embedding: Float32Array;
  tokens: number;
  truncated: boolean;
}

/** An image's patch embeddings (the vision tower's dense output, vision.dense). */
export interface PatchEmbeddings {
  kind: DenseKind;
  rows: number;
  columns: number;
  /** rows·columns L2-normalised embeddings of `dims` values, row-major patches. */
  patches: Float32Array;
}

export interface EncoderStats {
  modelId: string;
  dims: number;
  /** What actually runs, after `auto` resolved. */
  device: "cpu" | "cuda";
  requestedDevice: Device;
  threads: number;
  imageBatchSize: number;
  imagesEncoded: number;
  textsEncoded: number;
}

/** The encode stage: texts and preprocessed pixels → L2-normalised embeddings. */
export interface Embedder {
  readonly config: ModelConfig;
  readonly modelId: string;
  readonly dims: number;
  /**
   * The text tower's tokens of `text` (cut at the context length, with the full count): search
   * plans 248-token cuts and sentence windows with it before any embedding runs.
   */
  tokenize(text: string): TokenizedText;
  /** Tokenizes, pads each batch to its longest real length (never to 248), encodes. */
  embedTexts(texts: readonly string[]): Promise<TextEmbedding[]>;
  /** As `embedTexts`, for texts tokenized by `tokenize` already (a query is tokenized once). */
  embedTokenized(tokenized: readonly TokenizedText[]): Promise<TextEmbedding[]>;
  /** Each entry: CHW pixels from the preprocess stage. Batched by imageBatchSize. */
  embedPixels(pixels: readonly Float32Array[]): Promise<Float32Array[]>;
  /**
   * The patch embeddings of one image's CHW pixels; `dense_output_missing` when the model has
   * no dense output. Absent from embedders that never have one (test fakes).
   */
  embedPatches?(pixels: Float32Array): Promise<PatchEmbeddings>;
  stats(): EncoderStats;
  close(): Promise<void>;
}
