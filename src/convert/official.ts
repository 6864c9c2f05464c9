/**
 * Official Long-CLIP (`longclip-B.pt`, two 248-row position tables) and OpenAI-format
 * (77 positions) state dicts, read from a `torch.save` zip, brought to the converter's layout.
 * Dimensions are inferred the way the official builder does (heads = width / 64).
 */
import {
  type ClipSpec,
  type ClipWeights,
  canonicalShapes,
  checkShape,
  checkSpec,
  KEEP_POSITIONS,
  missingKeysError,
  TEXT_PREFIX,
  unknownKeysError,
  VISION_PREFIX,
} from "./clip-spec.ts";
import { convertError } from "./errors.ts";
import type { LazyTensor } from "./tensor.ts";
import { openTorchCheckpoint } from "./torch-zip.ts";

const HEAD_WIDTH = 64;
/** Metadata or derived entries of OpenAI's files, not parameters. */
const IGNORED_KEYS = new Set(["input_resolution", "context_length", "vocab_size", "attn_mask"]);

function countBlocks(keys: readonly string[], prefix: string): number {
  const indices = new Set<string>();
  for (const key of keys) {
    if (key.startsWith(`${prefix}.`)) indices.add(key.slice(prefix.length + 1).split(".")[0] ?? "");
  }
  return indices.size;
}

function inferSpec(tensors: ReadonlyMap<string, LazyTensor>, source: string): ClipSpec {
  const keys = [...tensors.keys()];
  if (!tensors.has("visual.proj")) {
    const resnet = keys.some((key) => key.startsWith("visual.layer1"));
    throw convertError(
      "checkpoint_unsupported",
      resnet
        ? `${source} has a ResNet image tower, which is not supported; use a ViT checkpoint (ViT-B/16, ViT-L/14, ...)`
        : `${source} is not a CLIP state dict (no visual.proj); expected an official Long-CLIP or OpenAI CLIP ViT checkpoint, or a Hugging Face CLIPModel directory`,
    );
  }
  const required = [
    "visual.conv1.weight",
    "visual.positional_embedding",
    "text_projection",
    "positional_embedding",
    "token_embedding.weight",
    "ln_final.weight",
  ];
  const missing = required.filter((key) => !tensors.has(key));
  if (missing.length > 0) throw missingKeysError(source, missing);
  const shape = (key: string) => (tensors.get(key) as LazyTensor).shape;
  const conv = shape("visual.conv1.weight");
  const patch = conv[3] ?? 0;
  const grid = Math.round(Math.sqrt((shape("visual.positional_embedding")[0] ?? 1) - 1));
  const visionWidth = conv[0] ?? 0;
  const textWidth = shape("ln_final.weight")[0] ?? 0;
  const spec: ClipSpec = {
    modelType: tensors.has("positional_embedding_res") ? "longclip" : "clip",
    embedDim: shape("text_projection")[1] ?? 0,
    imageResolution: patch * grid,
    patchSize: patch,
    visionWidth,
    visionLayers: countBlocks(keys, VISION_PREFIX),
    visionHeads: Math.max(1, Math.floor(visionWidth / HEAD_WIDTH)),
    textWidth,
    textLayers: countBlocks(keys, TEXT_PREFIX),
    textHeads: Math.max(1, Math.floor(textWidth / HEAD_WIDTH)),
    contextLength: shape("positional_embedding")[0] ?? 0,
    vocabSize: shape("token_embedding.weight")[0] ?? 0,
    activation: "quick_gelu",
    visionLayerNormEps: 1e-5,
    textLayerNormEps: 1e-5,
  };
  checkSpec(spec, source);
  return spec;
}

/** The stored entries each canonical parameter is made of (text_positions: one or two). */
function storedKeys(spec: ClipSpec): Map<string, string[]> {
  const map = new Map<string, string[]>();
  for (const name of canonicalShapes(spec).keys()) map.set(name, [name]);
  map.set(
    "text_positions",
    spec.modelType === "longclip"
      ? ["positional_embedding", "positional_embedding_res"]
      : ["positional_embedding"],
  );
  return map;
}

/** Opens an official Long-CLIP or OpenAI-format `.pt` state dict. */
export async function openOfficialCheckpoint(file: string): Promise<ClipWeights> {
  const checkpoint = await openTorchCheckpoint(file);
  try {
    const { tensors } = checkpoint;
    if (checkpoint.values.get("format") === "longclip-training") {
      throw convertError(
        "checkpoint_unsupported",
        `${file} is a training checkpoint of this project (python3 -m training train); export it with the Python exporter: longclip export --python --checkpoint ${file} --vocab VOCAB --out DIR`,
      );
    }
    const spec = inferSpec(tensors, file);
    const shapes = canonicalShapes(spec);
    const stored = storedKeys(spec);
    const known = new Set([...stored.values()].flat());
    known.add("logit_scale");
    const unknown = [...tensors.keys()].filter((key) => !known.has(key) && !IGNORED_KEYS.has(key));
    if (unknown.length > 0) {
      throw unknownKeysError(
        file,
        unknown,
        "the parameters of an official Long-CLIP or OpenAI CLIP ViT",
      );
    }
    const missing = [...known].filter((key) => key !== "logit_scale" && !tensors.has(key));
    if (missing.length > 0) throw missingKeysError(file, missing);
    for (const [name, keys] of stored) {
      for (const key of keys) {
        checkShape(file, key, (tensors.get(key) as LazyTensor).shape, shapes.get(name) as number[]);
      }
    }
    const read = (key: string) => (tensors.get(key) as LazyTensor).read();
    return {
      spec,
      async read(name: string): Promise<Float32Array> {
        if (name === "text_positions" && spec.modelType === "longclip") {
          const table = await read("positional_embedding");
          const residual = await read("positional_embedding_res");
          const keepValues = KEEP_POSITIONS * spec.textWidth;
          table.set(residual.subarray(keepValues), keepValues);
          return table;
        }
        const keys = stored.get(name);
        if (!keys) throw new Error(`no parameter ${name} in the CLIP layout`);
        return read(keys[0] as string);
      },
      close: () => checkpoint.close(),
    };
  } catch (error) {
    checkpoint.close();
    throw error;
  }
}
