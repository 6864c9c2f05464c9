/**
 * The tokenizer of a model directory (docs/model-format.md): only the config.json fields the
 * tokenizer needs are read here, so `longclip tokenize` works on a directory holding just
 * config.json and the merges file.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { AppError } from "../core/errors.ts";
import type { ModelConfig } from "../encode/types.ts";
import { ClipTokenizer } from "./clip-tokenizer.ts";

/** The config.json fields the tokenizer depends on. */
export type TokenizerConfig = Pick<
  ModelConfig,
  "tokenizer" | "context_length" | "start_token_id" | "end_token_id" | "vocab_size"
>;

function invalid(dir: string, problem: string): AppError {
  return new AppError(
    "model_invalid",
    `The tokenizer settings in ${path.join(dir, "config.json")} are invalid: ${problem}. Re-export the model with \`python3 -m training export\`.`,
    { modelDir: dir },
  );
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function integer(dir: string, obj: Record<string, unknown>, key: string, where = ""): number {
  const value = obj[key];
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0) {
    throw invalid(
      dir,
      `"${where}${key}" must be a non-negative integer, not ${JSON.stringify(value)}`,
    );
  }
  return value;
}

/** Reads and checks the tokenizer fields of `dir/config.json`. */
export function readTokenizerConfig(dir: string): TokenizerConfig {
  const file = path.join(dir, "config.json");
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    throw new AppError(
      "model_not_found",
      `Cannot read ${file} (${(error as Error).message}); pass a model directory exported with \`python3 -m training export\` (--model DIR or LONGCLIP_MODEL_DIR).`,
      { modelDir: dir },
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw invalid(dir, `config.json is not valid JSON (${(error as Error).message})`);
  }
  if (!isObject(raw)) throw invalid(dir, "config.json must hold a JSON object");
  const tokenizer = raw.tokenizer;
  if (!isObject(tokenizer)) throw invalid(dir, `"tokenizer" must be an object`);
  if (tokenizer.type !== "clip-bpe") {
    throw invalid(
      dir,
      `"tokenizer.type" must be "clip-bpe", not ${JSON.stringify(tokenizer.type)}`,
    );
  }
  const name = tokenizer.file;
  if (typeof name !== "string" || name === "" || path.basename(name) !== name) {
    throw invalid(dir, `"tokenizer.file" must be the name of a file inside the model directory`);
  }
  return {
    tokenizer: {
      file: name,
      type: "clip-bpe",
      num_merges: integer(dir, tokenizer, "num_merges", "tokenizer."),
    },
    context_length: integer(dir, raw, "context_length"),
    start_token_id: integer(dir, raw, "start_token_id"),
    end_token_id: integer(dir, raw, "end_token_id"),
    vocab_size: integer(dir, raw, "vocab_size"),
  };
}

/** The tokenizer a model directory's config describes; its ids are checked against the config. */
export function tokenizerFromConfig(dir: string, config: TokenizerConfig): ClipTokenizer {
  const tokenizer = ClipTokenizer.fromFile(path.join(dir, config.tokenizer.file), {
    numMerges: config.tokenizer.num_merges,
    contextLength: config.context_length,
  });
  const expected = {
    vocab_size: tokenizer.vocabSize,
    start_token_id: tokenizer.startId,
    end_token_id: tokenizer.endId,
  };
  for (const [key, value] of Object.entries(expected)) {
    const actual = config[key as keyof typeof expected];
    if (actual !== value) {
      throw invalid(
        dir,
        `"${key}" is ${actual} but ${config.tokenizer.num_merges} merges give ${value} (vocab_size = 512 + num_merges + 2, start and end are the last two ids)`,
      );
    }
  }
  return tokenizer;
}

/** Loads the tokenizer of the model directory `dir` from its config.json. */
export function tokenizerFromModelDir(dir: string): ClipTokenizer {
  const root = path.resolve(dir);
  return tokenizerFromConfig(root, readTokenizerConfig(root));
}
