import type { Device } from "../core/settings.ts";

/** How a tower's weights are stored; every precision takes and returns float32 tensors. */
export type TowerPrecision = "fp32" | "int8" | "fp16";

/** An int8 or fp16 tower's check on opening: the fp32 embedding of a formula input. */
export interface TowerCheck {
  min_cosine: number;
  embedding: number[];
}

/** Kinds of the vision tower's patch output (docs/model-format.md, `vision.dense`). */
export type DenseKind = "value" | "final";

/** The vision tower's optional second output: patch embeddings in the joint space. */
export interface DenseOutput {
  /** Output name, `patch_embeds`: float32 [N, rows*columns, embed_dim], row-major patches. */
  output: string;
  kind: DenseKind;
  /** [rows, columns] of patches. */
  grid: [number, number];
}

export interface TowerEntry {
  file: string;
  input: string;
  output: string;
  /** "fp32" when config.json omits it (older exports). */
  precision: TowerPrecision;
  check?: TowerCheck;
  /** Vision tower only; absent when the model has no dense output. */
  dense?: DenseOutput;
}

/** config.json of a model directory; see docs/model-format.md. */
export interface ModelConfig {
  format: "longclip-onnx";
  format_version: number;
  model_id: string;
  name: string;
  model_type: "longclip" | "clip";
  embed_dim: number;
  image_resolution: number;
  image_mean: [number, number, number];
  image_std: [number, number, number];
  context_length: number;
  vocab_size: number;
  start_token_id: number;
  end_token_id: number;
  tokenizer: { file: string; type: "clip-bpe"; num_merges: number };
  vision: TowerEntry;
  text: TowerEntry;
  source_sha256: string;
  exporter_version: string;
}

export interface TextEmbedding {
  /** L2-normalised, length embed_dim. */
  embedding: Float32Array;
  tokens: number;
  truncated: boolean;
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
  /** Tokenizes, pads each batch to its longest real length (never to 248), encodes. */
  embedTexts(texts: readonly string[]): Promise<TextEmbedding[]>;
  /** Each entry: CHW pixels from the preprocess stage. Batched by imageBatchSize. */
  embedPixels(pixels: readonly Float32Array[]): Promise<Float32Array[]>;
  stats(): EncoderStats;
  close(): Promise<void>;
}
