/**
 * Hugging Face transformers `CLIPModel` checkpoints (a directory with config.json and
 * model.safetensors, or the path of the safetensors file inside one), brought to the
 * converter's layout: q/k/v projections joined into `in_proj`, the two projections transposed,
 * `position_ids` buffers ignored.
 */
import { existsSync, statSync } from "node:fs";
import path from "node:path";
import { isAppError } from "../core/errors.ts";
import {
  type Activation,
  type ClipSpec,
  type ClipWeights,
  canonicalShapes,
  checkShape,
  checkSpec,
  LONGCLIP_CONTEXT,
  missingKeysError,
  TEXT_PREFIX,
  unknownKeysError,
  VISION_PREFIX,
} from "./clip-spec.ts";
import { convertError } from "./errors.ts";
import { readTextFile } from "./limits.ts";
import { openSafetensors } from "./safetensors.ts";
import { type LazyTensor, transposed } from "./tensor.ts";

const IGNORED = new Set([
  "text_model.embeddings.position_ids",
  "vision_model.embeddings.position_ids",
]);

/** A canonical parameter made of stored tensors: joined along axis 0, or transposed. */
interface Mapping {
  readonly parts: readonly string[];
  readonly transpose?: boolean;
}

export interface HfLocation {
  readonly dir: string;
  readonly safetensors: string;
}

/** The directory and weights file of a path that names either. */
export function locateHfCheckpoint(input: string): HfLocation {
  const isDir = existsSync(input) && statSync(input).isDirectory();
  const dir = isDir ? input : path.dirname(input);
  const safetensors = isDir ? path.join(input, "model.safetensors") : input;
  if (!existsSync(safetensors)) {
    const sharded = existsSync(path.join(dir, "model.safetensors.index.json"));
    throw convertError(
      "checkpoint_not_found",
      sharded
        ? `${dir} holds a sharded safetensors checkpoint (model.safetensors.index.json), which is not read yet; merge the shards into one model.safetensors`
        : `no model.safetensors in ${dir}; a Hugging Face CLIPModel directory needs config.json and model.safetensors (pytorch_model.bin is not read: convert it to safetensors)`,
      { file: safetensors },
    );
  }
  return { dir, safetensors };
}

/** transformers' CLIPTextConfig / CLIPVisionConfig / CLIPConfig defaults, for keys a config.json omits. */
const TEXT_DEFAULTS: Record<string, number> = {
  vocab_size: 49408,
  hidden_size: 512,
  intermediate_size: 2048,
  num_hidden_layers: 12,
  num_attention_heads: 8,
  max_position_embeddings: 77,
  layer_norm_eps: 1e-5,
};
const VISION_DEFAULTS: Record<string, number> = {
  hidden_size: 768,
  intermediate_size: 3072,
  num_hidden_layers: 12,
  num_attention_heads: 12,
  image_size: 224,
  patch_size: 32,
  layer_norm_eps: 1e-5,
};
const MODEL_DEFAULTS: Record<string, number> = { projection_dim: 512 };

function number(
  config: Record<string, unknown>,
  key: string,
  where: string,
  defaults: Record<string, number>,
) {
  const value = config[key] ?? defaults[key];
  if (typeof value !== "number" || !Number.isFinite(value)) {
    throw convertError(
      "checkpoint_unsupported",
      `${where} has a non-numeric "${key}" (${JSON.stringify(value)}); is this a transformers CLIPModel config.json?`,
    );
  }
  return value;
}

function activation(value: unknown, where: string): Activation {
  if (value === "quick_gelu" || value === "gelu") return value;
  throw convertError(
    "checkpoint_unsupported",
    `${where}.hidden_act is ${JSON.stringify(value)}; only quick_gelu (OpenAI CLIP, Long-CLIP) and gelu are supported`,
  );
}

/**
 * The spec from config.json; `positionRows` (the stored text position table's rows) gives the
 * context length, since some Long-CLIP conversions ship a config.json without
 * max_position_embeddings (transformers' default would say 77).
 */
function readSpec(dir: string, positionRows: number | undefined): ClipSpec {
  const file = path.join(dir, "config.json");
  let config: Record<string, unknown>;
  try {
    config = JSON.parse(readTextFile(file));
  } catch (error) {
    if (isAppError(error) && error.code === "checkpoint_too_large") throw error;
    throw convertError(
      "checkpoint_unsupported",
      `cannot read ${file} (${(error as Error).message}); a Hugging Face CLIPModel directory needs its config.json`,
      { file },
    );
  }
  const text = config.text_config as Record<string, unknown> | undefined;
  const vision = config.vision_config as Record<string, unknown> | undefined;
  if (typeof text !== "object" || typeof vision !== "object" || !text || !vision) {
    throw convertError(
      "checkpoint_unsupported",
      `${file} has no text_config and vision_config; expected a transformers CLIPModel config (model_type "clip")`,
      { file },
    );
  }
  const textAct = activation(text.hidden_act ?? "quick_gelu", "text_config");
  const visionAct = activation(vision.hidden_act ?? "quick_gelu", "vision_config");
  if (textAct !== visionAct) {
    throw convertError(
      "checkpoint_unsupported",
      `${file}: the towers use different activations (${textAct}, ${visionAct}), which is not supported`,
    );
  }
  const t = (key: string) => number(text, key, `${file} text_config`, TEXT_DEFAULTS);
  const v = (key: string) => number(vision, key, `${file} vision_config`, VISION_DEFAULTS);
  const contextLength = positionRows ?? t("max_position_embeddings");
  const spec: ClipSpec = {
    modelType: contextLength === LONGCLIP_CONTEXT ? "longclip" : "clip",
    embedDim: number(config, "projection_dim", file, MODEL_DEFAULTS),
    imageResolution: v("image_size"),
    patchSize: v("patch_size"),
    visionWidth: v("hidden_size"),
    visionLayers: v("num_hidden_layers"),
    visionHeads: v("num_attention_heads"),
    textWidth: t("hidden_size"),
    textLayers: t("num_hidden_layers"),
    textHeads: t("num_attention_heads"),
    contextLength,
    vocabSize: t("vocab_size"),
    activation: textAct,
    visionLayerNormEps: v("layer_norm_eps"),
    textLayerNormEps: t("layer_norm_eps"),
  };
  checkSpec(spec, file);
  const intermediate = [
    ["vision_config", vision, spec.visionWidth],
    ["text_config", text, spec.textWidth],
  ] as const;
  for (const [where, tower, width] of intermediate) {
    const size = tower.intermediate_size ?? 4 * width;
    if (size !== 4 * width) {
      throw convertError(
        "checkpoint_unsupported",
        `${file} ${where}.intermediate_size is ${String(size)}, not 4 × hidden_size as in CLIP; this architecture is not supported`,
      );
    }
  }
  return spec;
}

function blockMappings(map: Map<string, Mapping>, from: string, to: string, layers: number): void {
  for (let i = 0; i < layers; i++) {
    const a = `${from}.${i}`;
    const b = `${to}.${i}`;
    const qkv = (kind: string) => ["q", "k", "v"].map((x) => `${a}.self_attn.${x}_proj.${kind}`);
    map.set(`${b}.attn.in_proj_weight`, { parts: qkv("weight") });
    map.set(`${b}.attn.in_proj_bias`, { parts: qkv("bias") });
    const renames: [string, string][] = [
      ["self_attn.out_proj", "attn.out_proj"],
      ["layer_norm1", "ln_1"],
      ["layer_norm2", "ln_2"],
      ["mlp.fc1", "mlp.c_fc"],
      ["mlp.fc2", "mlp.c_proj"],
    ];
    for (const [hf, official] of renames) {
      for (const kind of ["weight", "bias"]) {
        map.set(`${b}.${official}.${kind}`, { parts: [`${a}.${hf}.${kind}`] });
      }
    }
  }
}

function mappings(spec: ClipSpec): Map<string, Mapping> {
  const map = new Map<string, Mapping>([
    ["visual.conv1.weight", { parts: ["vision_model.embeddings.patch_embedding.weight"] }],
    ["visual.class_embedding", { parts: ["vision_model.embeddings.class_embedding"] }],
    [
      "visual.positional_embedding",
      { parts: ["vision_model.embeddings.position_embedding.weight"] },
    ],
    ["visual.ln_pre.weight", { parts: ["vision_model.pre_layrnorm.weight"] }],
    ["visual.ln_pre.bias", { parts: ["vision_model.pre_layrnorm.bias"] }],
    ["visual.ln_post.weight", { parts: ["vision_model.post_layernorm.weight"] }],
    ["visual.ln_post.bias", { parts: ["vision_model.post_layernorm.bias"] }],
    ["visual.proj", { parts: ["visual_projection.weight"], transpose: true }],
    ["token_embedding.weight", { parts: ["text_model.embeddings.token_embedding.weight"] }],
    ["text_positions", { parts: ["text_model.embeddings.position_embedding.weight"] }],
    ["ln_final.weight", { parts: ["text_model.final_layer_norm.weight"] }],
    ["ln_final.bias", { parts: ["text_model.final_layer_norm.bias"] }],
    ["text_projection", { parts: ["text_projection.weight"], transpose: true }],
  ]);
  blockMappings(map, "vision_model.encoder.layers", VISION_PREFIX, spec.visionLayers);
  blockMappings(map, "text_model.encoder.layers", TEXT_PREFIX, spec.textLayers);
  return map;
}

/** The stored shape a canonical parameter implies for each of its parts. */
function partShape(expected: readonly number[], mapping: Mapping): number[] {
  if (mapping.transpose) return [expected[1] as number, expected[0] as number];
  if (mapping.parts.length === 1) return [...expected];
  return [(expected[0] as number) / mapping.parts.length, ...expected.slice(1)];
}

/** Opens a transformers CLIPModel directory (or its model.safetensors). */
export function openHfCheckpoint(input: string): ClipWeights {
  const { dir, safetensors } = locateHfCheckpoint(input);
  const file = openSafetensors(safetensors);
  try {
    const positions = file.tensors.get("text_model.embeddings.position_embedding.weight");
    const spec = readSpec(dir, positions?.shape[0]);
    const shapes = canonicalShapes(spec);
    const map = mappings(spec);
    const used = new Set([...map.values()].flatMap((m) => m.parts));
    used.add("logit_scale");
    const unknown = [...file.tensors.keys()].filter((key) => !used.has(key) && !IGNORED.has(key));
    if (unknown.length > 0) {
      throw unknownKeysError(
        safetensors,
        unknown,
        "the tensors of a transformers CLIPModel with the sizes of its config.json",
      );
    }
    const missing = [...used].filter((key) => key !== "logit_scale" && !file.tensors.has(key));
    if (missing.length > 0) throw missingKeysError(safetensors, missing);
    for (const [name, mapping] of map) {
      const expected = partShape(shapes.get(name) as number[], mapping);
      for (const part of mapping.parts) {
        checkShape(safetensors, part, (file.tensors.get(part) as LazyTensor).shape, expected);
      }
    }
    return {
      spec,
      async read(name: string): Promise<Float32Array> {
        const mapping = map.get(name);
        if (!mapping) throw new Error(`no parameter ${name} in the CLIP layout`);
        const parts = await Promise.all(
          mapping.parts.map((part) => (file.tensors.get(part) as LazyTensor).read()),
        );
        if (mapping.transpose) {
          const [rows, cols] = (file.tensors.get(mapping.parts[0] as string) as LazyTensor).shape;
          return transposed(parts[0] as Float32Array, rows as number, cols as number);
        }
        if (parts.length === 1) return parts[0] as Float32Array;
        const out = new Float32Array(parts.reduce((sum, part) => sum + part.length, 0));
        let at = 0;
        for (const part of parts) {
          out.set(part, at);
          at += part.length;
        }
        return out;
      },
      close: () => file.close(),
    };
  } catch (error) {
    file.close();
    throw error;
  }
}
