/**
 * `longclip tokenize --model DIR`: one JSON string per stdin line, one JSON object per stdout
 * line, `{"ids": [...], "tokens": N, "truncated": bool}`, in input order. A line that is not a
 * JSON string prints `{"error": {"code": "bad_input", "message": ...}}` in its place.
 */
import { createInterface } from "node:readline";
import type { Readable, Writable } from "node:stream";
import type { Command } from "commander";
import { AppError } from "../core/errors.ts";
import { tokenizerFromModelDir } from "../tokenize/model-dir.ts";
import type { TextTokenizer } from "../tokenize/types.ts";
import { addSettingOptions, type CliError, cliError, errorMessage } from "./settings.ts";
import { settingsOrUsageError } from "./usage.ts";

export interface TokenizeIo {
  input: Readable;
  output: Writable;
  errors: Writable;
}

function errorObject(error: unknown): { error: CliError } {
  return { error: cliError(error) };
}

/** The output line for one input line. */
export function tokenizeLine(tokenizer: TextTokenizer, line: string): object {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    value = undefined;
  }
  if (typeof value !== "string") {
    return errorObject(
      new AppError(
        "bad_input",
        'Each line must be one JSON string, such as "a photo of a cat"; quote and escape the text.',
      ),
    );
  }
  try {
    const { ids, tokens, truncated } = tokenizer.encode(value);
    return { ids: Array.from(ids), tokens, truncated };
  } catch (error) {
    return errorObject(error);
  }
}

/** Runs the command; returns the process exit code (1 when the model cannot be loaded). */
export async function runTokenize(modelDir: string, io: TokenizeIo): Promise<number> {
  let tokenizer: TextTokenizer;
  try {
    tokenizer = tokenizerFromModelDir(modelDir);
  } catch (error) {
    io.errors.write(errorMessage(error));
    return 1;
  }
  for await (const line of createInterface({ input: io.input, crlfDelay: Infinity })) {
    if (line.trim() === "") continue;
    const text = `${JSON.stringify(tokenizeLine(tokenizer, line))}\n`;
    if (!io.output.write(text)) {
      await new Promise<void>((resolve) => io.output.once("drain", () => resolve()));
    }
  }
  return 0;
}

export function register(program: Command): void {
  const command = program
    .command("tokenize")
    .description(
      'Tokenize JSON strings from stdin, one per line; prints {"ids": [...], "tokens": N, "truncated": bool} per line',
    );
  addSettingOptions(command, ["modelDir"]).action(async (flags: Record<string, unknown>) => {
    const settings = settingsOrUsageError(flags);
    if (settings === undefined) return;
    process.exitCode = await runTokenize(settings.modelDir, {
      input: process.stdin,
      output: process.stdout,
      errors: process.stderr,
    });
  });
}
