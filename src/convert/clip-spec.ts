/**
 * The one layout every input format is brought to: the dimensions of a CLIP ViT model and its
 * parameters under the official (OpenAI / Long-CLIP) names, with one difference: the text
 * position table is `text_positions`, the rows the model actually adds (for Long-CLIP, rows
 * below `keep` of `positional_embedding` and the rest of `positional_embedding_res`).
 */
import { convertError } from "./errors.ts";
import { MAX_PATCH_GRID, MAX_SPEC } from "./limits.ts";

export type Activation = "quick_gelu" | "gelu";

export interface ClipSpec {
  /** "longclip" (248 positions) or "clip" (an OpenAI-style model), as config.json says. */
  readonly modelType: "longclip" | "clip";
  readonly embedDim: number;
  readonly imageResolution: number;
  readonly patchSize: number;
  readonly visionWidth: number;
  readonly visionLayers: number;
  readonly visionHeads: number;
  readonly textWidth: number;
  readonly textLayers: number;
  readonly textHeads: number;
  readonly contextLength: number;
  readonly vocabSize: number;
  readonly activation: Activation;
  readonly visionLayerNormEps: number;
  readonly textLayerNormEps: number;
}

/** Parameters in the official layout, read as float32 on demand. */
export interface ClipWeights {
  readonly spec: ClipSpec;
  read(name: string): Promise<Float32Array>;
  close(): void;
}

export const VISION_PREFIX = "visual.transformer.resblocks";
export const TEXT_PREFIX = "transformer.resblocks";
/** Official Long-CLIP: positions below this come from `positional_embedding`. */
export const KEEP_POSITIONS = 20;
export const LONGCLIP_CONTEXT = 248;

function blockShapes(prefix: string, layers: number, width: number): [string, number[]][] {
  const shapes: [string, number[]][] = [];
  for (let i = 0; i < layers; i++) {
    const block = `${prefix}.${i}`;
    shapes.push(
      [`${block}.ln_1.weight`, [width]],
      [`${block}.ln_1.bias`, [width]],
      [`${block}.attn.in_proj_weight`, [3 * width, width]],
      [`${block}.attn.in_proj_bias`, [3 * width]],
      [`${block}.attn.out_proj.weight`, [width, width]],
      [`${block}.attn.out_proj.bias`, [width]],
      [`${block}.ln_2.weight`, [width]],
      [`${block}.ln_2.bias`, [width]],
      [`${block}.mlp.c_fc.weight`, [4 * width, width]],
      [`${block}.mlp.c_fc.bias`, [4 * width]],
      [`${block}.mlp.c_proj.weight`, [width, 4 * width]],
      [`${block}.mlp.c_proj.bias`, [width]],
    );
  }
  return shapes;
}

/** Every parameter the towers use, with its shape. */
export function canonicalShapes(spec: ClipSpec): Map<string, number[]> {
  const grid = spec.imageResolution / spec.patchSize;
  const vw = spec.visionWidth;
  const tw = spec.textWidth;
  return new Map<string, number[]>([
    ["visual.conv1.weight", [vw, 3, spec.patchSize, spec.patchSize]],
    ["visual.class_embedding", [vw]],
    ["visual.positional_embedding", [grid * grid + 1, vw]],
    ["visual.ln_pre.weight", [vw]],
    ["visual.ln_pre.bias", [vw]],
    ...blockShapes(VISION_PREFIX, spec.visionLayers, vw),
    ["visual.ln_post.weight", [vw]],
    ["visual.ln_post.bias", [vw]],
    ["visual.proj", [vw, spec.embedDim]],
    ["token_embedding.weight", [spec.vocabSize, tw]],
    ["text_positions", [spec.contextLength, tw]],
    ...blockShapes(TEXT_PREFIX, spec.textLayers, tw),
    ["ln_final.weight", [tw]],
    ["ln_final.bias", [tw]],
    ["text_projection", [tw, spec.embedDim]],
  ]);
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((size, i) => size === b[i]);
}

/**
 * Refuses a spec whose sizes cannot make the towers (e.g. a width not divisible by the heads),
 * or are past what any CLIP model needs (./limits.ts): checked before anything of those sizes
 * is built.
 */
export function checkSpec(spec: ClipSpec, source: string): void {
  const tooLarge: string[] = [];
  for (const [key, limit] of Object.entries(MAX_SPEC)) {
    const value = spec[key as keyof ClipSpec] as number;
    if (value > limit) tooLarge.push(`${key} is ${value}, above the ${limit} any CLIP model needs`);
  }
  const grid = spec.imageResolution / spec.patchSize;
  if (grid > MAX_PATCH_GRID) {
    tooLarge.push(`${grid} patches per side, above the ${MAX_PATCH_GRID} any CLIP model needs`);
  }
  if (tooLarge.length > 0) {
    throw convertError(
      "checkpoint_too_large",
      `${source} does not describe a CLIP ViT model this converter can write: ${tooLarge.join("; ")}`,
    );
  }
  const problems: string[] = [];
  const positive = Object.entries(spec).filter(
    ([, value]) => typeof value === "number" && !(value > 0),
  );
  for (const [key, value] of positive) problems.push(`${key} is ${value}`);
  for (const key of Object.keys(MAX_SPEC)) {
    const value = spec[key as keyof ClipSpec] as number;
    if (!Number.isInteger(value)) problems.push(`${key} is ${value}, not a whole number`);
  }
  if (spec.imageResolution % spec.patchSize !== 0) {
    problems.push(
      `image size ${spec.imageResolution} is not a multiple of patch ${spec.patchSize}`,
    );
  }
  if (spec.visionWidth % spec.visionHeads !== 0) {
    problems.push(`vision width ${spec.visionWidth} is not divisible by ${spec.visionHeads} heads`);
  }
  if (spec.textWidth % spec.textHeads !== 0) {
    problems.push(`text width ${spec.textWidth} is not divisible by ${spec.textHeads} heads`);
  }
  if (problems.length > 0) {
    throw convertError(
      "checkpoint_unsupported",
      `${source} does not describe a CLIP ViT model this converter can write: ${problems.join("; ")}`,
    );
  }
}

/** Checks a mapped parameter's stored shape against the layout; `stored` names it in the file. */
export function checkShape(
  source: string,
  stored: string,
  shape: readonly number[],
  expected: readonly number[],
): void {
  if (!sameShape(shape, expected)) {
    throw convertError(
      "checkpoint_unsupported",
      `${source}: ${stored} has shape [${shape.join(", ")}], but the model's other sizes imply [${expected.join(", ")}]; the checkpoint is inconsistent or not a CLIP ViT`,
      { tensor: stored },
    );
  }
}

export function unknownKeysError(source: string, keys: readonly string[], expected: string) {
  const shown =
    keys.slice(0, 8).join(", ") + (keys.length > 8 ? `, … (${keys.length} in all)` : "");
  return convertError(
    "checkpoint_unsupported",
    `${source} has entries this converter does not know: ${shown}. It expected ${expected}; for other architectures use the Python exporter or a CLIP ViT checkpoint`,
    { keys: keys.slice(0, 50) },
  );
}

export function missingKeysError(source: string, keys: readonly string[]) {
  const shown =
    keys.slice(0, 8).join(", ") + (keys.length > 8 ? `, … (${keys.length} in all)` : "");
  return convertError(
    "checkpoint_unsupported",
    `${source} lacks parameters the model needs: ${shown}; the checkpoint is incomplete or not a CLIP ViT`,
    { keys: keys.slice(0, 50) },
  );
}
