/**
 * The tokenizer file a converted model carries: a CLIP BPE merges file (`--vocab`, as for the
 * Python exporter) or, for a Hugging Face directory, its merges.txt, checked against its
 * vocab.json (ids 512 + i for merge i, the start and end tokens last).
 */
import { existsSync } from "node:fs";
import path from "node:path";
import { isAppError } from "../core/errors.ts";
import { convertError } from "./errors.ts";
import { readMaybeGzip, readTextFile } from "./limits.ts";

/** CLIP's merge count; longer files are cut here, as the Python exporter does. */
export const CLIP_NUM_MERGES = 48894;
const START_TOKEN = "<|startoftext|>";
const END_TOKEN = "<|endoftext|>";

export interface TokenizerFile {
  readonly file: string;
  readonly numMerges: number;
}

function mergeLines(file: string): string[] {
  let bytes: Buffer;
  try {
    bytes = readMaybeGzip(file);
  } catch (error) {
    if (isAppError(error) && error.code === "checkpoint_too_large") throw error;
    throw convertError(
      "tokenizer_invalid",
      `cannot read the tokenizer file ${file} (${(error as Error).message}); pass the CLIP BPE merges file (bpe_simple_vocab_16e6.txt.gz from the Long-CLIP or OpenAI CLIP repository)`,
      { file },
    );
  }
  return bytes
    .toString("utf8")
    .split("\n")
    .slice(1)
    .filter((line) => line.trim() !== "");
}

/** Checks that `file` gives `vocabSize` tokens (512 byte symbols + merges + start and end). */
export function tokenizerFile(file: string, vocabSize: number): TokenizerFile {
  const numMerges = Math.min(mergeLines(file).length, CLIP_NUM_MERGES);
  if (512 + numMerges + 2 !== vocabSize) {
    throw convertError(
      "tokenizer_invalid",
      `the tokenizer file ${file} gives ${512 + numMerges + 2} tokens (512 + ${numMerges} merges + 2) but the model's token embedding has ${vocabSize} rows; pass the merges file the model was trained with`,
      { file },
    );
  }
  return { file, numMerges };
}

/** merges.txt of a Hugging Face directory, after checking vocab.json agrees with it. */
export function hfTokenizerFile(dir: string, vocabSize: number): TokenizerFile {
  const merges = path.join(dir, "merges.txt");
  const vocabFile = path.join(dir, "vocab.json");
  if (!existsSync(merges) || !existsSync(vocabFile)) {
    throw convertError(
      "tokenizer_invalid",
      `${dir} lacks vocab.json or merges.txt; pass the CLIP merges file with --vocab bpe_simple_vocab_16e6.txt.gz`,
      { dir },
    );
  }
  const result = tokenizerFile(merges, vocabSize);
  let vocab: Record<string, number>;
  try {
    vocab = JSON.parse(readTextFile(vocabFile));
  } catch (error) {
    if (isAppError(error) && error.code === "checkpoint_too_large") throw error;
    throw convertError(
      "tokenizer_invalid",
      `cannot read ${vocabFile} (${(error as Error).message}); it must be the JSON token → id map`,
    );
  }
  const problems: string[] = [];
  if (Object.keys(vocab).length !== vocabSize) {
    problems.push(`it has ${Object.keys(vocab).length} tokens, the model ${vocabSize}`);
  }
  if (vocab[START_TOKEN] !== vocabSize - 2 || vocab[END_TOKEN] !== vocabSize - 1) {
    problems.push(`${START_TOKEN} and ${END_TOKEN} are not the last two ids`);
  }
  const lines = mergeLines(merges).slice(0, result.numMerges);
  const wrong = lines.findIndex((line, i) => vocab[line.split(" ").join("")] !== 512 + i);
  if (wrong >= 0) problems.push(`merge ${wrong} (${lines[wrong]}) does not give id ${512 + wrong}`);
  if (problems.length > 0) {
    throw convertError(
      "tokenizer_invalid",
      `${vocabFile} does not match the CLIP vocabulary that merges.txt builds (${problems.join("; ")}); this tokenizer cannot be used as CLIP BPE`,
    );
  }
  return result;
}
