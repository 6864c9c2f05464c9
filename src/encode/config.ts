/**
 * Reads and validates a model directory's config.json (docs/model-format.md), so that a bad
 * or missing model fails at load time with one clear error instead of deep inside ONNX Runtime.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { AppError } from "../core/errors.ts";
import type {
  DenseKind,
  DenseOutput,
  ModelConfig,
  TowerCheck,
  TowerEntry,
  TowerPrecision,
} from "./types.ts";

export const MODEL_FORMAT = "longclip-onnx";
export const SUPPORTED_FORMAT_VERSIONS: readonly number[] = [1];
/** Tower precisions `export` and `quantize` write (docs/model-format.md). */
export const TOWER_PRECISIONS: readonly TowerPrecision[] = ["fp32", "int8", "fp16"];
/** Kinds of `vision.dense` that `export --dense` writes (docs/model-format.md). */
export const DENSE_KINDS: readonly DenseKind[] = ["value", "final"];

const HOW_TO_GET_A_MODEL =
  "Export one with `python3 -m training export --checkpoint longclip-B.pt --vocab bpe_simple_vocab_16e6.txt.gz --out DIR` " +
  "or build the demo model with `npm run demo:train`, then pass its directory with --model DIR " +
  "or LONGCLIP_MODEL_DIR (see README)";

function invalid(dir: string, problem: string): AppError {
  return new AppError(
    "model_invalid",
    `Model directory ${dir} is not a valid ${MODEL_FORMAT} model: ${problem}. Re-export it with the current training package. ${HOW_TO_GET_A_MODEL}.`,
    500,
    { modelDir: dir },
  );
}

/** Absolute path of a file named in config.json; names must stay inside the model directory. */
export function modelFilePath(dir: string, name: string): string {
  return path.join(path.resolve(dir), name);
}

export function loadModelConfig(dir: string): ModelConfig {
  const root = path.resolve(dir);
  const configPath = path.join(root, "config.json");
  if (!existsSync(root) || !statSync(root).isDirectory()) {
    throw new AppError(
      "model_not_found",
      `Model directory ${root} does not exist. ${HOW_TO_GET_A_MODEL}.`,
      500,
      { modelDir: root },
    );
  }
  if (!existsSync(configPath)) {
    throw new AppError(
      "model_not_found",
      `No config.json in ${root}, so it is not a model directory. ${HOW_TO_GET_A_MODEL}.`,
      500,
      { modelDir: root },
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(configPath, "utf8"));
  } catch (error) {
    throw invalid(root, `config.json is not valid JSON (${(error as Error).message})`);
  }
  return validateModelConfig(root, raw);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Checks every field the engine relies on; `dir` is used for messages and file checks. */
export function validateModelConfig(dir: string, raw: unknown): ModelConfig {
  if (!isObject(raw)) throw invalid(dir, "config.json must hold a JSON object");
  if (raw.format !== MODEL_FORMAT) {
    throw invalid(dir, `"format" is ${JSON.stringify(raw.format)}, expected "${MODEL_FORMAT}"`);
  }
  if (
    typeof raw.format_version !== "number" ||
    !SUPPORTED_FORMAT_VERSIONS.includes(raw.format_version)
  ) {
    throw invalid(
      dir,
      `"format_version" ${JSON.stringify(raw.format_version)} is not supported (this server reads ${SUPPORTED_FORMAT_VERSIONS.join(", ")})`,
    );
  }
  const str = (key: string, obj: Record<string, unknown> = raw, where = ""): string => {
    const value = obj[key];
    if (typeof value !== "string" || value === "") {
      throw invalid(dir, `"${where}${key}" must be a non-empty string`);
    }
    return value;
  };
  const int = (key: string, min: number): number => {
    const value = raw[key];
    if (typeof value !== "number" || !Number.isInteger(value) || value < min) {
      throw invalid(dir, `"${key}" must be an integer ≥ ${min}, not ${JSON.stringify(value)}`);
    }
    return value;
  };
  const triple = (key: string, positive: boolean): [number, number, number] => {
    const value = raw[key];
    if (
      !Array.isArray(value) ||
      value.length !== 3 ||
      !value.every((v) => typeof v === "number" && Number.isFinite(v) && (!positive || v > 0))
    ) {
      throw invalid(dir, `"${key}" must be a list of 3 ${positive ? "positive " : ""}numbers`);
    }
    return [value[0], value[1], value[2]];
  };
  const fileEntry = (key: string, fields: readonly string[]): Record<string, string> => {
    const value = raw[key];
    if (!isObject(value)) throw invalid(dir, `"${key}" must be an object`);
    const out: Record<string, string> = {};
    for (const field of fields) out[field] = str(field, value, `${key}.`);
    const file = out.file as string;
    if (path.basename(file) !== file) {
      throw invalid(dir, `"${key}.file" must be a file name inside the model directory`);
    }
    if (!existsSync(modelFilePath(dir, file))) {
      throw invalid(dir, `"${key}.file" names ${file}, which is missing`);
    }
    return out;
  };

  const modelType = raw.model_type;
  if (modelType !== "longclip" && modelType !== "clip") {
    throw invalid(
      dir,
      `"model_type" must be "longclip" or "clip", not ${JSON.stringify(modelType)}`,
    );
  }
  const vocabSize = int("vocab_size", 3);
  const startId = int("start_token_id", 0);
  const endId = int("end_token_id", 0);
  if (startId >= vocabSize || endId >= vocabSize || startId === endId) {
    throw invalid(
      dir,
      "start_token_id and end_token_id must be two different ids below vocab_size",
    );
  }
  const tokenizer = fileEntry("tokenizer", ["file", "type"]);
  if (tokenizer.type !== "clip-bpe") {
    throw invalid(
      dir,
      `"tokenizer.type" must be "clip-bpe", not ${JSON.stringify(tokenizer.type)}`,
    );
  }
  const tokenizerRaw = raw.tokenizer as Record<string, unknown>;
  const numMerges = tokenizerRaw.num_merges;
  if (typeof numMerges !== "number" || !Number.isInteger(numMerges) || numMerges < 0) {
    throw invalid(dir, `"tokenizer.num_merges" must be a non-negative integer`);
  }
  const embedDim = int("embed_dim", 1);
  const tower = (name: "vision" | "text"): TowerEntry => {
    const entry = fileEntry(name, ["file", "input", "output"]);
    const rawEntry = raw[name] as Record<string, unknown>;
    // Optional (older exports omit it): how the tower's weights are stored; ONNX Runtime runs
    // each, the output is float32 embeddings in all cases.
    const precision = rawEntry.precision ?? "fp32";
    if (!TOWER_PRECISIONS.includes(precision as TowerPrecision)) {
      throw invalid(
        dir,
        `"${name}.precision" must be one of ${TOWER_PRECISIONS.join(", ")}, not ${JSON.stringify(precision)}`,
      );
    }
    const out: TowerEntry = {
      file: entry.file as string,
      input: entry.input as string,
      output: entry.output as string,
      precision: precision as TowerPrecision,
    };
    if (rawEntry.check !== undefined) out.check = towerCheck(name, rawEntry.check);
    if (name === "vision" && rawEntry.dense !== undefined) out.dense = denseOutput(rawEntry.dense);
    return out;
  };
  // Optional: the vision tower's patch embeddings (export --dense); absent in older exports.
  const denseOutput = (value: unknown): DenseOutput => {
    const dense = isObject(value) ? value : {};
    const grid = dense.grid;
    if (typeof dense.output !== "string" || dense.output === "") {
      throw invalid(dir, `"vision.dense.output" must be a non-empty string`);
    }
    if (!DENSE_KINDS.includes(dense.kind as DenseKind)) {
      throw invalid(dir, `"vision.dense.kind" must be one of ${DENSE_KINDS.join(", ")}`);
    }
    if (
      !Array.isArray(grid) ||
      grid.length !== 2 ||
      !grid.every((v) => typeof v === "number" && Number.isInteger(v) && v >= 1)
    ) {
      throw invalid(dir, `"vision.dense.grid" must be [rows, columns], two positive integers`);
    }
    return { output: dense.output, kind: dense.kind as DenseKind, grid: [grid[0], grid[1]] };
  };
  // The fp32 embedding of the device check input (int8 and fp16 towers; see tower-check.ts).
  const towerCheck = (name: string, value: unknown): TowerCheck => {
    const check = isObject(value) ? value : {};
    const minCosine = check.min_cosine;
    const embedding = check.embedding;
    if (typeof minCosine !== "number" || !(minCosine > 0 && minCosine <= 1)) {
      throw invalid(dir, `"${name}.check.min_cosine" must be a number in (0, 1]`);
    }
    if (
      !Array.isArray(embedding) ||
      embedding.length !== embedDim ||
      !embedding.every((v) => typeof v === "number" && Number.isFinite(v))
    ) {
      throw invalid(dir, `"${name}.check.embedding" must be ${embedDim} finite numbers`);
    }
    return { min_cosine: minCosine, embedding: embedding as number[] };
  };
  const vision = tower("vision");
  const text = tower("text");

  return {
    format: MODEL_FORMAT,
    format_version: raw.format_version,
    model_id: str("model_id"),
    name: str("name"),
    model_type: modelType,
    embed_dim: embedDim,
    image_resolution: int("image_resolution", 1),
    image_mean: triple("image_mean", false),
    image_std: triple("image_std", true),
    context_length: int("context_length", 2),
    vocab_size: vocabSize,
    start_token_id: startId,
    end_token_id: endId,
    tokenizer: { file: tokenizer.file as string, type: "clip-bpe", num_merges: numMerges },
    vision,
    text,
    source_sha256: typeof raw.source_sha256 === "string" ? raw.source_sha256 : "",
    exporter_version: typeof raw.exporter_version === "string" ? raw.exporter_version : "",
  };
}
