/**
 * The tokenizer of a model directory (docs/model-format.md): src/model/read.ts reads only the
 * config.json fields the tokenizer needs, so `longclip tokenize` works on a directory holding
 * just config.json and the merges file.
 */
import path from "node:path";
import type { TokenizerConfig } from "../model/format.ts";
import { modelInvalid, readTokenizerConfig } from "../model/read.ts";
import { ClipTokenizer } from "./clip-tokenizer.ts";

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
      throw modelInvalid(
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
