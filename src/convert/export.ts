/**
 * `longclip export` without Python: an official Long-CLIP / OpenAI-format `.pt` state dict or
 * a Hugging Face CLIPModel directory to the model directory of docs/model-format.md (the same
 * towers and config.json as `python3 -m training export`), checked against the TypeScript
 * forward. config.json is written last, so a directory with one has passed the check.
 */
import { createHash } from "node:crypto";
import { createReadStream, existsSync, statSync } from "node:fs";
import { copyFile, mkdir, rm } from "node:fs/promises";
import path from "node:path";
import {
  CLIP_IMAGE_MEAN,
  CLIP_IMAGE_STD,
  CONFIG_FILE,
  type DenseKind,
  FORMAT_VERSION,
  MODEL_FORMAT,
  type ModelConfig,
} from "../model/format.ts";
import { writeModelConfig } from "../model/write.ts";
import type { ClipSpec, ClipWeights } from "./clip-spec.ts";
import { convertError } from "./errors.ts";
import { locateHfCheckpoint, openHfCheckpoint } from "./hf.ts";
import { readTextFile } from "./limits.ts";
import { openOfficialCheckpoint } from "./official.ts";
import {
  denseEntry,
  TEXT_INPUT,
  TEXT_OUTPUT,
  textGraph,
  VISION_INPUT,
  VISION_OUTPUT,
  visionGraph,
} from "./onnx-towers.ts";
import { writeOnnxModel } from "./onnx-writer.ts";
import { type CheckResult, checkTowers } from "./self-check.ts";
import { hfTokenizerFile, type TokenizerFile, tokenizerFile } from "./tokenizer-files.ts";

export const EXPORTER_VERSION = "0.1.0-ts";

export type CheckpointFormat = "torch" | "hf";

export interface ConvertOptions {
  readonly checkpoint: string;
  readonly out: string;
  /** CLIP BPE merges file; optional for a Hugging Face directory (its merges.txt is used). */
  readonly vocab?: string;
  readonly name?: string;
  readonly verify?: boolean;
  readonly threads?: number;
  /** Adds the vision tower's dense output `patch_embeds` of this kind (absent: none). */
  readonly dense?: DenseKind;
  readonly log?: (line: string) => void;
}

export interface ConvertResult {
  readonly config: ModelConfig;
  readonly format: CheckpointFormat;
  readonly check?: CheckResult;
}

export function checkpointFormat(checkpoint: string): CheckpointFormat {
  if (existsSync(checkpoint) && statSync(checkpoint).isDirectory()) return "hf";
  return checkpoint.endsWith(".safetensors") ? "hf" : "torch";
}

async function sha256File(file: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

async function modelId(name: string, out: string): Promise<string> {
  const hash = createHash("sha256");
  for (const file of ["vision.onnx", "text.onnx"]) {
    for await (const chunk of createReadStream(path.join(out, file))) hash.update(chunk as Buffer);
  }
  return `${name}-${hash.digest("hex").slice(0, 12)}`;
}

type Rgb = [number, number, number];

function triple(value: unknown, fallback: readonly number[]): Rgb {
  return (
    Array.isArray(value) && value.length === 3 && value.every((v) => typeof v === "number")
      ? value
      : [...fallback]
  ) as Rgb;
}

/** Normalisation of a Hugging Face directory's preprocessor_config.json, else CLIP's. */
function normalisation(format: CheckpointFormat, checkpoint: string): { mean: Rgb; std: Rgb } {
  const clip = { mean: triple(undefined, CLIP_IMAGE_MEAN), std: triple(undefined, CLIP_IMAGE_STD) };
  if (format !== "hf") return clip;
  const file = path.join(locateHfCheckpoint(checkpoint).dir, "preprocessor_config.json");
  if (!existsSync(file)) return clip;
  const config = JSON.parse(readTextFile(file)) as Record<string, unknown>;
  return {
    mean: triple(config.image_mean, CLIP_IMAGE_MEAN),
    std: triple(config.image_std, CLIP_IMAGE_STD),
  };
}

function chooseTokenizer(
  options: ConvertOptions,
  format: CheckpointFormat,
  spec: ClipSpec,
): TokenizerFile {
  if (options.vocab) return tokenizerFile(options.vocab, spec.vocabSize);
  if (format === "hf")
    return hfTokenizerFile(locateHfCheckpoint(options.checkpoint).dir, spec.vocabSize);
  throw convertError(
    "tokenizer_invalid",
    "a .pt checkpoint carries no tokenizer: pass --vocab bpe_simple_vocab_16e6.txt.gz (the CLIP BPE merges file from the Long-CLIP or OpenAI CLIP repository)",
  );
}

export async function openCheckpoint(
  checkpoint: string,
): Promise<{ weights: ClipWeights; format: CheckpointFormat }> {
  const format = checkpointFormat(checkpoint);
  const weights =
    format === "hf" ? openHfCheckpoint(checkpoint) : await openOfficialCheckpoint(checkpoint);
  return { weights, format };
}

/**
 * Converts a checkpoint into `options.out`. A failure leaves no partial model behind: the
 * directory is removed if this call created it, else the files it wrote are.
 */
export async function convertCheckpoint(options: ConvertOptions): Promise<ConvertResult> {
  const out = options.out;
  const created = !existsSync(out);
  const written: string[] = [];
  try {
    return await convertInto(options, written);
  } catch (error) {
    if (created) await rm(out, { recursive: true, force: true });
    else await Promise.all(written.map((file) => rm(file, { force: true })));
    throw error;
  }
}

async function convertInto(options: ConvertOptions, written: string[]): Promise<ConvertResult> {
  const log = options.log ?? (() => {});
  const { weights, format } = await openCheckpoint(options.checkpoint);
  try {
    const spec = weights.spec;
    const tokenizer = chooseTokenizer(options, format, spec);
    const out = options.out;
    const name = options.name ?? path.basename(path.resolve(out));
    await mkdir(out, { recursive: true });
    await rm(path.join(out, CONFIG_FILE), { force: true });
    // What a failure removes (never the tokenizer file itself when it already lives in out).
    const tokenizerCopy = path.join(out, path.basename(tokenizer.file));
    written.push(
      path.join(out, "vision.onnx"),
      path.join(out, "text.onnx"),
      path.join(out, CONFIG_FILE),
    );
    if (path.resolve(tokenizerCopy) !== path.resolve(tokenizer.file)) written.push(tokenizerCopy);
    log(
      `${format === "hf" ? "Hugging Face CLIPModel" : `${spec.modelType} state dict`}: ViT ${spec.visionWidth}×${spec.visionLayers} patch ${spec.patchSize}, text ${spec.textWidth}×${spec.textLayers}, ${spec.contextLength} positions, embed ${spec.embedDim}`,
    );
    await writeOnnxModel(
      path.join(out, "vision.onnx"),
      visionGraph(weights, EXPORTER_VERSION, options.dense),
    );
    await writeOnnxModel(path.join(out, "text.onnx"), textGraph(weights, EXPORTER_VERSION));
    let check: CheckResult | undefined;
    if (options.verify === false) {
      log("check skipped (--no-verify)");
    } else {
      check = await checkTowers(weights, out, options.threads ?? 2);
      log(
        `checked against the TypeScript forward (max relative difference): vision ${check.vision.toExponential(2)}, text ${check.text.toExponential(2)}`,
      );
    }
    const tokenizerName = path.basename(tokenizer.file);
    await copyFile(tokenizer.file, path.join(out, tokenizerName));
    const source =
      format === "hf" ? locateHfCheckpoint(options.checkpoint).safetensors : options.checkpoint;
    const { mean, std } = normalisation(format, options.checkpoint);
    const vocabSize = spec.vocabSize;
    const config: ModelConfig = {
      format: MODEL_FORMAT,
      format_version: FORMAT_VERSION,
      model_id: await modelId(name, out),
      name,
      model_type: spec.modelType,
      embed_dim: spec.embedDim,
      image_resolution: spec.imageResolution,
      image_mean: mean,
      image_std: std,
      context_length: spec.contextLength,
      vocab_size: vocabSize,
      start_token_id: vocabSize - 2,
      end_token_id: vocabSize - 1,
      tokenizer: { file: tokenizerName, type: "clip-bpe", num_merges: tokenizer.numMerges },
      vision: {
        file: "vision.onnx",
        input: VISION_INPUT,
        output: VISION_OUTPUT,
        precision: "fp32",
        ...(options.dense ? { dense: denseEntry(spec, options.dense) } : {}),
      },
      text: { file: "text.onnx", input: TEXT_INPUT, output: TEXT_OUTPUT, precision: "fp32" },
      source_sha256: await sha256File(source),
      exporter_version: EXPORTER_VERSION,
    };
    await writeModelConfig(out, config);
    return { config, format, ...(check ? { check } : {}) };
  } finally {
    weights.close();
  }
}
