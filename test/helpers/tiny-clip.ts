/**
 * A tiny Long-CLIP made by the tests themselves, without ../shared or Python: a Hugging Face
 * CLIPModel directory (config.json, model.safetensors with seeded random weights, and the demo
 * model's BPE as merges.txt + vocab.json) written here, and a model directory converted from
 * it by the TypeScript exporter. Its vision tower reads 224-pixel images, like real CLIP, so
 * it is the model for tests that need image batches that take a while.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { convertCheckpoint } from "../../src/convert/export.ts";
import { PROJECT_ROOT } from "../../src/core/settings.ts";
import type { DenseKind } from "../../src/model/format.ts";
import { xorshift32 } from "../../tools/bench/random.ts";
import { DEMO_MODEL_DIR } from "./demo-model.ts";

export interface TinyClipShape {
  imageSize: number;
  patchSize: number;
  width: number;
  layers: number;
  embedDim: number;
  contextLength: number;
}

/** The shape of the reference checkpoint in ../shared (longclip-tiny), with the demo BPE. */
export const TINY_CLIP: TinyClipShape = {
  imageSize: 224,
  patchSize: 16,
  width: 128,
  layers: 2,
  embedDim: 64,
  contextLength: 248,
};

/** CLIP's byte → printable character table (each byte a visible symbol for the BPE). */
function byteSymbols(): string[] {
  const printable: number[] = [];
  for (const [from, to] of [
    [0x21, 0x7e],
    [0xa1, 0xac],
    [0xae, 0xff],
  ] as const) {
    for (let b = from; b <= to; b++) printable.push(b);
  }
  const symbols: string[] = new Array(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    symbols[b] = printable.includes(b)
      ? String.fromCodePoint(b)
      : String.fromCodePoint(256 + extra++);
  }
  // Printable bytes first, then the others, in byte order: CLIP's vocabulary order.
  const printableSet = new Set(printable);
  return [
    ...printable.map((b) => symbols[b] as string),
    ...symbols.filter((_, b) => !printableSet.has(b)),
  ];
}

/** merges.txt (the demo model's BPE) and the vocab.json CLIP builds from it. */
function tokenizerFiles(): { merges: string; vocab: Record<string, number> } {
  const merges = readFileSync(path.join(DEMO_MODEL_DIR, "vocab.txt"), "utf8");
  const lines = merges
    .split("\n")
    .slice(1)
    .filter((line) => line.trim() !== "");
  const symbols = byteSymbols();
  const tokens = [
    ...symbols,
    ...symbols.map((s) => `${s}</w>`),
    ...lines.map((line) => line.split(" ").join("")),
    "<|startoftext|>",
    "<|endoftext|>",
  ];
  return { merges, vocab: Object.fromEntries(tokens.map((token, id) => [token, id])) };
}

/** A deterministic generator of normal-ish values (sum of uniforms), for the weights. */
function randomNormal(seed: number): () => number {
  const next = xorshift32(seed);
  const uniform = () => next() / 2 ** 32;
  return () => uniform() + uniform() + uniform() - 1.5;
}

/** Every tensor of a CLIPModel of this shape, as transformers names it. */
function tensorShapes(shape: TinyClipShape, vocabSize: number): [string, number[]][] {
  const w = shape.width;
  const tensors: [string, number[]][] = [];
  const layerNorm = (name: string) => {
    tensors.push([`${name}.weight`, [w]], [`${name}.bias`, [w]]);
  };
  const encoder = (prefix: string) => {
    for (let i = 0; i < shape.layers; i++) {
      const layer = `${prefix}.encoder.layers.${i}`;
      for (const proj of ["q_proj", "k_proj", "v_proj", "out_proj"]) {
        tensors.push([`${layer}.self_attn.${proj}.weight`, [w, w]]);
        tensors.push([`${layer}.self_attn.${proj}.bias`, [w]]);
      }
      layerNorm(`${layer}.layer_norm1`);
      tensors.push([`${layer}.mlp.fc1.weight`, [4 * w, w]], [`${layer}.mlp.fc1.bias`, [4 * w]]);
      tensors.push([`${layer}.mlp.fc2.weight`, [w, 4 * w]], [`${layer}.mlp.fc2.bias`, [w]]);
      layerNorm(`${layer}.layer_norm2`);
    }
  };
  const patches = (shape.imageSize / shape.patchSize) ** 2;
  tensors.push(["text_model.embeddings.token_embedding.weight", [vocabSize, w]]);
  tensors.push(["text_model.embeddings.position_embedding.weight", [shape.contextLength, w]]);
  encoder("text_model");
  layerNorm("text_model.final_layer_norm");
  tensors.push(["vision_model.embeddings.class_embedding", [w]]);
  tensors.push([
    "vision_model.embeddings.patch_embedding.weight",
    [w, 3, shape.patchSize, shape.patchSize],
  ]);
  tensors.push(["vision_model.embeddings.position_embedding.weight", [patches + 1, w]]);
  layerNorm("vision_model.pre_layrnorm");
  encoder("vision_model");
  layerNorm("vision_model.post_layernorm");
  tensors.push(["visual_projection.weight", [shape.embedDim, w]]);
  tensors.push(["text_projection.weight", [shape.embedDim, w]]);
  tensors.push(["logit_scale", []]);
  return tensors;
}

/** A safetensors file of float32 tensors. */
function safetensors(tensors: [string, Float32Array, number[]][]): Buffer {
  const header: Record<string, unknown> = { __metadata__: { format: "pt" } };
  let offset = 0;
  for (const [name, data, shape] of tensors) {
    header[name] = { dtype: "F32", shape, data_offsets: [offset, offset + data.byteLength] };
    offset += data.byteLength;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (json.length % 8)) % 8);
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  return Buffer.concat([
    length,
    Buffer.from(json),
    ...tensors.map(([, data]) => Buffer.from(data.buffer, data.byteOffset, data.byteLength)),
  ]);
}

/** Writes a Hugging Face CLIPModel directory of this shape with weights drawn from `seed`. */
export function writeTinyClipHf(dir: string, shape: TinyClipShape = TINY_CLIP, seed = 7): void {
  const { merges, vocab } = tokenizerFiles();
  const vocabSize = Object.keys(vocab).length;
  const next = randomNormal(seed);
  const tensors = tensorShapes(shape, vocabSize).map(
    ([name, dims]): [string, Float32Array, number[]] => {
      const size = dims.reduce((a, b) => a * b, 1);
      const data = new Float32Array(size);
      if (name === "logit_scale") data[0] = Math.log(1 / 0.07);
      else if (/norm[12]?\.weight$|layrnorm\.weight$|layernorm\.weight$/.test(name)) data.fill(1);
      else if (!/norm[12]?\.bias$|layrnorm\.bias$|layernorm\.bias$/.test(name)) {
        for (let i = 0; i < size; i++) data[i] = next() * 0.04;
      }
      return [name, data, dims];
    },
  );
  const layer = (kind: string, extra: Record<string, unknown>) => ({
    model_type: kind,
    hidden_size: shape.width,
    intermediate_size: 4 * shape.width,
    num_attention_heads: 2,
    num_hidden_layers: shape.layers,
    hidden_act: "quick_gelu",
    layer_norm_eps: 1e-5,
    projection_dim: shape.embedDim,
    ...extra,
  });
  const config = {
    architectures: ["CLIPModel"],
    model_type: "clip",
    projection_dim: shape.embedDim,
    logit_scale_init_value: 2.6592,
    text_config: layer("clip_text_model", {
      max_position_embeddings: shape.contextLength,
      vocab_size: vocabSize,
      bos_token_id: vocabSize - 2,
      eos_token_id: vocabSize - 1,
    }),
    vision_config: layer("clip_vision_model", {
      image_size: shape.imageSize,
      patch_size: shape.patchSize,
      num_channels: 3,
    }),
    torch_dtype: "float32",
  };
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, "config.json"), `${JSON.stringify(config, null, 2)}\n`);
  writeFileSync(path.join(dir, "merges.txt"), merges);
  writeFileSync(path.join(dir, "vocab.json"), JSON.stringify(vocab));
  writeFileSync(path.join(dir, "model.safetensors"), safetensors(tensors));
}

/**
 * A model directory converted from the tiny CLIPModel by the TypeScript exporter (with the
 * dense output `dense` when given), made once
 * under artifacts/test-models/ and reused (the directory is complete once its config.json
 * exists; it is built beside it and renamed into place).
 */
export async function tinyClipModelDir(dense?: DenseKind): Promise<string> {
  const out = path.join(
    PROJECT_ROOT,
    "artifacts",
    "test-models",
    dense ? `tiny-clip-ts-dense-${dense}` : "tiny-clip-ts",
  );
  if (existsSync(path.join(out, "config.json"))) return out;
  const work = `${out}.${process.pid}.tmp`;
  rmSync(work, { recursive: true, force: true });
  writeTinyClipHf(path.join(work, "hf"));
  await convertCheckpoint({
    checkpoint: path.join(work, "hf"),
    out: path.join(work, "model"),
    name: "tiny-clip-test",
    threads: 1,
    ...(dense ? { dense } : {}),
  });
  rmSync(out, { recursive: true, force: true });
  mkdirSync(path.dirname(out), { recursive: true });
  renameSync(path.join(work, "model"), out);
  rmSync(work, { recursive: true, force: true });
  return out;
}

/** Model input of the tiny model's size (3 × 224 × 224): a fixed pattern per seed. */
export function tinyClipPixels(seed = 0): Float32Array {
  const side = TINY_CLIP.imageSize;
  return Float32Array.from({ length: 3 * side * side }, (_, i) => Math.sin(i * 0.37 + seed) * 1.5);
}

/**
 * An official-format checkpoint (a plain state dict as the Long-CLIP code saves it; `clip`:
 * OpenAI-style, 77 positions) of the training package's "tiny" preset with random weights from
 * `seed` and the demo vocabulary's size, written by Python with torch (scripts/python).
 */
export function writeOfficialCheckpoint(
  file: string,
  modelType: "longclip" | "clip",
  seed: number,
): void {
  execFileSync(
    path.join(PROJECT_ROOT, "scripts", "python"),
    [
      "-c",
      [
        "import dataclasses, sys, torch",
        "from training.model.clip import CLIP, model_config",
        "from training.model.checkpoint import save_official",
        "torch.manual_seed(int(sys.argv[3]))",
        "config = dataclasses.replace(model_config('tiny', sys.argv[2]), vocab_size=860)",
        "save_official(CLIP.random_init(config), sys.argv[1])",
      ].join("\n"),
      file,
      modelType,
      String(seed),
    ],
    { cwd: PROJECT_ROOT, stdio: ["ignore", "ignore", "inherit"] },
  );
}
