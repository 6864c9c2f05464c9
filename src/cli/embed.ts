/**
 * `longclip embed`: JSON lines on stdin (`{"text": ...}` or `{"image": "path"}`), one JSON line
 * per input on stdout in input order. A failing line prints `{"error": {...}}` in its place.
 */
import { realpath } from "node:fs/promises";
import { createInterface } from "node:readline";
import type { Readable, Writable } from "node:stream";
import cliProgress from "cli-progress";
import type { Command } from "commander";
import { AppError } from "../core/errors.ts";
import type { Settings } from "../core/settings.ts";
import { Encoder } from "../encode/encoder.ts";
import type { EngineLogger } from "../encode/session.ts";
import { FileRefusedError, openResolvedFile, readOpenedFile } from "../util/paths.ts";
import { addSettingOptions, type CliError, cliError, errorMessage } from "./settings.ts";
import { settingsOrUsageError } from "./usage.ts";

/** Inputs handled per round: bounds memory and gives the progress display its steps. */
const CHUNK = 64;

interface ErrorLine {
  error: CliError;
}

function errorLine(error: unknown): ErrorLine {
  return { error: cliError(error) };
}

/** An image file's bytes, its kind and size checked on the open file (see openResolvedFile). */
async function readImage(file: string, maxBytes: number): Promise<Buffer> {
  let opened: Awaited<ReturnType<typeof openResolvedFile>>;
  try {
    // The user's own path: symbolic links are theirs to follow.
    opened = await openResolvedFile(await realpath(file));
  } catch (error) {
    const why =
      error instanceof FileRefusedError
        ? error.reason === "not_regular"
          ? "not a regular file"
          : "it changed while it was opened (a link was put in its path)"
        : (error as Error).message;
    throw new AppError("image_not_found", `Cannot read image ${file}: ${why}.`);
  }
  const { handle, size } = opened;
  try {
    // Checked before reading so a huge file is never loaded into memory.
    if (size > maxBytes) {
      throw new AppError(
        "image_too_large",
        `Image ${file} has ${size} bytes, more than the limit of ${maxBytes} (raise it with LONGCLIP_MAX_IMAGE_BYTES).`,
      );
    }
    const { bytes, changed } = await readOpenedFile(handle, size);
    if (changed) {
      throw new AppError("image_changed", `Image ${file} changed size while it was read; retry.`);
    }
    return bytes;
  } finally {
    await handle.close();
  }
}

type Parsed = { kind: "text"; text: string } | { kind: "image"; file: string } | ErrorLine;

function parseLine(line: string): Parsed {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return errorLine(
      new AppError(
        "bad_input",
        'Not JSON: each line must be {"text": "..."} or {"image": "path"}.',
      ),
    );
  }
  if (typeof value === "object" && value !== null && !Array.isArray(value)) {
    const obj = value as Record<string, unknown>;
    if (typeof obj.text === "string" && !("image" in obj)) return { kind: "text", text: obj.text };
    if (typeof obj.image === "string" && !("text" in obj))
      return { kind: "image", file: obj.image };
  }
  return errorLine(
    new AppError(
      "bad_input",
      'Each line must be an object with exactly one of "text" (a string) or "image" (a file path).',
    ),
  );
}

async function embedChunk(
  encoder: Encoder,
  lines: readonly string[],
  maxBytes: number,
): Promise<object[]> {
  const parsed = lines.map(parseLine);
  const out: object[] = parsed.map((p) => ("error" in p ? p : {}));

  const textIdx = parsed.flatMap((p, i) => ("kind" in p && p.kind === "text" ? [i] : []));
  if (textIdx.length > 0) {
    try {
      const embedded = await encoder.embedTexts(
        textIdx.map((i) => (parsed[i] as { text: string }).text),
      );
      textIdx.forEach((index, k) => {
        const e = embedded[k];
        if (e)
          out[index] = {
            embedding: Array.from(e.embedding),
            tokens: e.tokens,
            truncated: e.truncated,
          };
      });
    } catch (error) {
      for (const index of textIdx) out[index] = errorLine(error);
    }
  }

  const imageIdx = parsed.flatMap((p, i) => ("kind" in p && p.kind === "image" ? [i] : []));
  const buffers: Buffer[] = [];
  const readable: number[] = [];
  for (const index of imageIdx) {
    try {
      buffers.push(await readImage((parsed[index] as { file: string }).file, maxBytes));
      readable.push(index);
    } catch (error) {
      out[index] = errorLine(error);
    }
  }
  if (readable.length > 0) {
    try {
      const results = await encoder.embedImageBytes(buffers);
      readable.forEach((index, k) => {
        const r = results[k];
        if (r === undefined) return;
        out[index] = r.ok
          ? { embedding: Array.from(r.embedding), width: r.width, height: r.height }
          : errorLine(r.error);
      });
    } catch (error) {
      for (const index of readable) out[index] = errorLine(error);
    }
  }
  return out;
}

function write(stream: Writable, text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    stream.write(text, (error) => (error ? reject(error) : resolve()));
  });
}

export interface EmbedIo {
  input: Readable;
  output: Writable;
  errors: Writable & { isTTY?: boolean };
}

/** Runs the command; returns the process exit code (1 only when nothing could be embedded). */
export async function runEmbed(settings: Settings, io: EmbedIo): Promise<number> {
  const logger: EngineLogger = {
    info: (message) => io.errors.write(`${message}\n`),
    warn: (message) => io.errors.write(`warning: ${message}\n`),
  };
  let encoder: Encoder;
  try {
    encoder = await Encoder.load(settings.modelDir, settings, { logger });
  } catch (error) {
    io.errors.write(errorMessage(error));
    return 1;
  }
  // All lines are read first so the progress display knows the total; outputs still stream.
  const lines: string[] = [];
  for await (const line of createInterface({ input: io.input, crlfDelay: Infinity })) {
    if (line.trim() !== "") lines.push(line);
  }
  const long = lines.length > CHUNK;
  const bar =
    long && io.errors.isTTY
      ? new cliProgress.SingleBar(
          { stream: io.errors, format: "embed [{bar}] {value}/{total} lines | {eta}s left" },
          cliProgress.Presets.shades_classic,
        )
      : undefined;
  bar?.start(lines.length, 0);
  try {
    for (let start = 0; start < lines.length; start += CHUNK) {
      const chunk = lines.slice(start, start + CHUNK);
      const results = await embedChunk(encoder, chunk, settings.maxImageBytes);
      await write(io.output, `${results.map((r) => JSON.stringify(r)).join("\n")}\n`);
      const done = start + chunk.length;
      if (bar) bar.update(done);
      else if (long) io.errors.write(`embed: ${done}/${lines.length} lines\n`);
    }
  } finally {
    bar?.stop();
    await encoder.close();
  }
  const stats = encoder.stats();
  if (long) {
    io.errors.write(
      `embed: ${stats.textsEncoded} texts and ${stats.imagesEncoded} images on ${stats.device}\n`,
    );
  }
  return 0;
}

/** The encoder's settings; the data directory, server and index settings do not apply. */
const EMBED_SETTING_KEYS = [
  "modelDir",
  "device",
  "threads",
  "imageBatchSize",
  "textBatchSize",
  "maxImageBytes",
  "maxImagePixels",
] as const;

export function register(program: Command): void {
  const command = program
    .command("embed")
    .description(
      'Embed JSON lines from stdin ({"text": "..."} or {"image": "path"}); prints one JSON line per input, in order',
    );
  addSettingOptions(command, EMBED_SETTING_KEYS).action(async (flags: Record<string, unknown>) => {
    const settings = settingsOrUsageError(flags);
    if (settings === undefined) return;
    process.exitCode = await runEmbed(settings, {
      input: process.stdin,
      output: process.stdout,
      errors: process.stderr,
    });
  });
}
