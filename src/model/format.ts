/**
 * The model directory format (docs/model-format.md): config.json as TypeScript sees it. Its
 * fields and their limits are defined once, in ./model-format.schema.json; ./read.ts reads a
 * directory against it and ./write.ts writes one. test/model-format.test.ts keeps these types
 * and the schema in step.
 */

export const MODEL_FORMAT = "longclip-onnx";
export const FORMAT_VERSION = 1;
export const CONFIG_FILE = "config.json";

/** CLIP's image normalisation (OpenAI CLIP and Long-CLIP): what an export without its own writes. */
export const CLIP_IMAGE_MEAN: readonly [number, number, number] = [
  0.48145466, 0.4578275, 0.40821073,
];
export const CLIP_IMAGE_STD: readonly [number, number, number] = [
  0.26862954, 0.26130258, 0.27577711,
];

/** How a tower's weights are stored; every precision takes and returns float32 tensors. */
export type TowerPrecision = "fp32" | "int8" | "fp16";

/** An int8 or fp16 tower's check on opening: the fp32 embedding of a formula input. */
export interface TowerCheck {
  min_cosine: number;
  embedding: number[];
}

/** Kinds of the vision tower's patch output (`vision.dense`). */
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
  /** Vision tower only; absent when the model has no dense output (export --dense). */
  dense?: DenseOutput;
}

/** config.json of a model directory. */
export interface ModelConfig {
  format: typeof MODEL_FORMAT;
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
  /** "" when config.json omits it (older exports). */
  source_sha256: string;
  /** "" when config.json omits it (older exports). */
  exporter_version: string;
}

/** The config.json fields the tokenizer depends on: all `longclip tokenize` needs. */
export type TokenizerConfig = Pick<
  ModelConfig,
  "tokenizer" | "context_length" | "start_token_id" | "end_token_id" | "vocab_size"
>;
