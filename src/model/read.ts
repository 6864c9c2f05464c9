/**
 * Reads a model directory's config.json against the format's schema
 * (./model-format.schema.json), so a bad or missing model fails at load time with one clear
 * error instead of deep inside ONNX Runtime. The encoder reads the whole config; the tokenizer
 * only the fields it needs (`longclip tokenize` runs on config.json and the merges file alone).
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import type { ErrorObject, ValidateFunction } from "ajv";
import { Ajv2020 } from "ajv/dist/2020.js";
import { AppError } from "../core/errors.ts";
import {
  CONFIG_FILE,
  MODEL_FORMAT,
  type ModelConfig,
  type TokenizerConfig,
  type TowerEntry,
} from "./format.ts";
import schema from "./model-format.schema.json" with { type: "json" };

type SchemaNode = {
  $ref?: string;
  allOf?: SchemaNode[];
  properties?: Record<string, SchemaNode | boolean>;
  items?: SchemaNode;
  mustBe?: string;
};

// `mustBe` names what a field must be in error messages; validators ignore it.
const ajv = new Ajv2020({ strict: true, allErrors: false });
ajv.addVocabulary(["mustBe"]);
const validateConfig: ValidateFunction = ajv.compile(schema);
const validateTokenizerFields: ValidateFunction = ajv.compile({
  $ref: `${schema.$id}#/$defs/tokenizerFields`,
});
const ROOT = schema as unknown as SchemaNode;

const HOW_TO_GET_A_MODEL =
  "Export one with `python3 -m training export --checkpoint longclip-B.pt --vocab bpe_simple_vocab_16e6.txt.gz --out DIR` " +
  "or build the demo model with `npm run demo:train`, then pass its directory with --model DIR " +
  "or LONGCLIP_MODEL_DIR (see README)";

/** model_invalid for the model directory `dir`, saying what is wrong and how to get a model. */
export function modelInvalid(dir: string, problem: string): AppError {
  return new AppError(
    "model_invalid",
    `Model directory ${dir} is not a valid ${MODEL_FORMAT} model: ${problem}. Re-export it with the current training package. ${HOW_TO_GET_A_MODEL}.`,
    { modelDir: dir },
  );
}

/** Absolute path of a file named in config.json (the schema keeps names inside the directory). */
export function modelFilePath(dir: string, name: string): string {
  return path.join(path.resolve(dir), name);
}

function resolve(node: SchemaNode): SchemaNode {
  if (node.$ref === undefined) return node;
  const name = node.$ref.replace(/^.*#\/\$defs\//, "");
  return resolve((schema.$defs as unknown as Record<string, SchemaNode>)[name] as SchemaNode);
}

/** The schema node of a property of `node`, looking through `allOf` and `$ref`. */
function child(node: SchemaNode, key: string): SchemaNode | undefined {
  const here = resolve(node);
  const own = here.properties?.[key];
  if (typeof own === "object") return own;
  if (here.items !== undefined && /^\d+$/.test(key)) return here.items;
  for (const part of here.allOf ?? []) {
    const found = child(part, key);
    if (found !== undefined) return found;
  }
  return undefined;
}

function shown(value: unknown): string {
  const text = JSON.stringify(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/**
 * The first schema violation in words, named by the innermost field on its path that says what
 * it must be (`"vision.precision" must be one of fp32, int8, fp16, not "fp8"`; a bad element of
 * `image_std` names the list).
 */
function describe(error: ErrorObject, data: unknown, root: SchemaNode): string {
  const keys = error.instancePath.split("/").slice(1);
  if (error.keyword === "required") keys.push(String(error.params.missingProperty));
  let node: SchemaNode | undefined = root;
  let value: unknown = data;
  let named: { path: string[]; mustBe: string; value: unknown } | undefined;
  for (const [i, key] of keys.entries()) {
    node = node === undefined ? undefined : child(node, key);
    value = (value as Record<string, unknown> | undefined)?.[key];
    const mustBe = node === undefined ? undefined : resolve(node).mustBe;
    if (mustBe !== undefined) {
      named = { path: keys.slice(0, i + 1), mustBe, value };
    }
  }
  if (named === undefined) {
    return keys.length === 0
      ? `${CONFIG_FILE} must hold a JSON object`
      : `"${keys.join(".")}" ${error.message ?? "is invalid"}`;
  }
  const field = `"${named.path.join(".")}"`;
  return named.value === undefined
    ? `${field} is missing; it must be ${named.mustBe}`
    : `${field} must be ${named.mustBe}, not ${shown(named.value)}`;
}

/** config.json of `dir` parsed, or model_not_found / model_invalid. */
function readConfigFile(dir: string): unknown {
  const root = path.resolve(dir);
  const file = path.join(root, CONFIG_FILE);
  if (!existsSync(root) || !statSync(root).isDirectory()) {
    throw new AppError(
      "model_not_found",
      `Model directory ${root} does not exist. ${HOW_TO_GET_A_MODEL}.`,
      { modelDir: root },
    );
  }
  if (!existsSync(file)) {
    throw new AppError(
      "model_not_found",
      `No ${CONFIG_FILE} in ${root}, so it is not a model directory. ${HOW_TO_GET_A_MODEL}.`,
      { modelDir: root },
    );
  }
  try {
    return JSON.parse(readFileSync(file, "utf8"));
  } catch (error) {
    throw modelInvalid(root, `${CONFIG_FILE} is not valid JSON (${(error as Error).message})`);
  }
}

function towerOf(raw: Record<string, unknown>): TowerEntry {
  const entry: TowerEntry = {
    file: raw.file as string,
    input: raw.input as string,
    output: raw.output as string,
    precision: (raw.precision as TowerEntry["precision"] | undefined) ?? "fp32",
  };
  if (raw.check !== undefined) entry.check = raw.check as TowerEntry["check"] & {};
  if (raw.dense !== undefined) entry.dense = raw.dense as TowerEntry["dense"] & {};
  return entry;
}

/**
 * `raw` as a config of the model directory `dir`, or model_invalid: the schema, then what it
 * cannot say (ids below vocab_size, check embeddings of embed_dim numbers, the files present).
 */
export function checkModelConfig(dir: string, raw: unknown): ModelConfig {
  if (!validateConfig(raw)) {
    throw modelInvalid(dir, describe(validateConfig.errors?.[0] as ErrorObject, raw, ROOT));
  }
  const config = raw as ModelConfig;
  const { vocab_size: vocab, start_token_id: start, end_token_id: end } = config;
  if (start >= vocab || end >= vocab || start === end) {
    throw modelInvalid(
      dir,
      "start_token_id and end_token_id must be two different ids below vocab_size",
    );
  }
  for (const name of ["vision", "text"] as const) {
    const check = config[name].check;
    if (check !== undefined && check.embedding.length !== config.embed_dim) {
      throw modelInvalid(
        dir,
        `"${name}.check.embedding" must be ${config.embed_dim} finite numbers (embed_dim), not ${check.embedding.length}`,
      );
    }
  }
  if (config.text.dense !== undefined) {
    throw modelInvalid(dir, `"text.dense" is not allowed: only the vision tower has patch outputs`);
  }
  for (const key of ["tokenizer", "vision", "text"] as const) {
    const file = config[key].file;
    if (!existsSync(modelFilePath(dir, file))) {
      throw modelInvalid(dir, `"${key}.file" names ${file}, which is missing`);
    }
  }
  return {
    format: MODEL_FORMAT,
    format_version: config.format_version,
    model_id: config.model_id,
    name: config.name,
    model_type: config.model_type,
    embed_dim: config.embed_dim,
    image_resolution: config.image_resolution,
    image_mean: config.image_mean,
    image_std: config.image_std,
    context_length: config.context_length,
    vocab_size: vocab,
    start_token_id: start,
    end_token_id: end,
    tokenizer: config.tokenizer,
    vision: towerOf(config.vision as unknown as Record<string, unknown>),
    text: towerOf(config.text as unknown as Record<string, unknown>),
    source_sha256: config.source_sha256 ?? "",
    exporter_version: config.exporter_version ?? "",
  };
}

/** The config.json of the model directory `dir`, checked. */
export function readModelConfig(dir: string): ModelConfig {
  const root = path.resolve(dir);
  return checkModelConfig(root, readConfigFile(root));
}

/** The tokenizer fields of `dir/config.json`, checked; the rest may be absent. */
export function readTokenizerConfig(dir: string): TokenizerConfig {
  const root = path.resolve(dir);
  const raw = readConfigFile(root);
  if (!validateTokenizerFields(raw)) {
    const tokenizerFields = schema.$defs.tokenizerFields as unknown as SchemaNode;
    const error = validateTokenizerFields.errors?.[0] as ErrorObject;
    throw modelInvalid(root, describe(error, raw, tokenizerFields));
  }
  const config = raw as TokenizerConfig;
  return {
    tokenizer: config.tokenizer,
    context_length: config.context_length,
    start_token_id: config.start_token_id,
    end_token_id: config.end_token_id,
    vocab_size: config.vocab_size,
  };
}
