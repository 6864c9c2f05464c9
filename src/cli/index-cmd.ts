/**
 * `longclip index <paths...>`, `longclip search "<text>"`, `longclip reindex`: the library
 * from the command line, on the same data directory the server uses. Files are indexed by
 * path, in place (the CLI user already has them); uploads through the server are copied.
 *
 * The server keeps its own HNSW index in memory: items indexed here while a server runs on
 * the same data directory are in SQLite at once and in that server's index after its restart.
 */
import cliProgress from "cli-progress";
import type { Command } from "commander";
import type { Settings } from "../config.ts";
import { Encoder } from "../encode/encoder.ts";
import { AppError, isAppError } from "../errors.ts";
import { collectImageFiles } from "../library/files.ts";
import { createLibrary, type LongclipLibrary } from "../library/library.ts";
import type { Hit, IndexResult, Metadata, SearchMode } from "../library/types.ts";
import { runIndexJob } from "./jobs.ts";
import {
  addSettingOptions,
  cliError,
  errorMessage,
  LIBRARY_SETTING_KEYS,
  settingsFromFlags,
} from "./settings.ts";

/** Setting flags as commander parses them (strings), see ./settings.ts. */
export type LibraryFlags = Record<string, unknown>;

export interface Io {
  out: NodeJS.WritableStream;
  err: NodeJS.WritableStream & { isTTY?: boolean };
}

export const STDIO: Io = { out: process.stdout, err: process.stderr };

async function openLibrary(settings: Settings): Promise<LongclipLibrary> {
  const encoder = await Encoder.load(settings.modelDir, settings);
  try {
    return await createLibrary(settings, encoder, { allowAnyPath: true });
  } catch (error) {
    await encoder.close();
    throw error;
  }
}

export function parseMeta(pairs: readonly string[]): Metadata {
  const metadata: Metadata = {};
  for (const pair of pairs) {
    const at = pair.indexOf("=");
    if (at <= 0) {
      throw new AppError("invalid_setting", `--meta takes key=value, not "${pair}".`);
    }
    metadata[pair.slice(0, at)] = pair.slice(at + 1);
  }
  return metadata;
}

export interface IndexSummary {
  total: number;
  indexed: number;
  duplicate: number;
  failed: { file: string; code: string; message: string }[];
  seconds: number;
}

/** Indexes files in batches, reporting progress; one bad file never stops the run. */
export async function indexFiles(
  library: LongclipLibrary,
  files: readonly string[],
  options: { batch: number; metadata: Metadata; io?: Io },
): Promise<IndexSummary> {
  const io = options.io ?? STDIO;
  const summary: IndexSummary = {
    total: files.length,
    indexed: 0,
    duplicate: 0,
    failed: [],
    seconds: 0,
  };
  const started = performance.now();
  const bar = io.err.isTTY
    ? new cliProgress.SingleBar(
        {
          stream: io.err,
          format:
            "index [{bar}] {value}/{total} | {rate} img/s | ETA {eta_formatted} | {failed} failed",
          etaBuffer: 200,
        },
        cliProgress.Presets.shades_classic,
      )
    : undefined;
  bar?.start(files.length, 0, { rate: "0.0", failed: 0 });
  try {
    for (let start = 0; start < files.length; start += options.batch) {
      const batch = files.slice(start, start + options.batch);
      let results: IndexResult[];
      try {
        results = await library.index(
          batch.map((file) => ({ path: file, metadata: options.metadata })),
        );
      } catch (error) {
        const e = cliError(error);
        results = batch.map(() => ({ id: "", status: "failed" as const, error: e }));
      }
      results.forEach((result, k) => {
        if (result.status === "indexed") summary.indexed++;
        else if (result.status === "duplicate") summary.duplicate++;
        else {
          summary.failed.push({
            file: batch[k] as string,
            code: result.error?.code ?? "internal_error",
            message: result.error?.message ?? "unknown error",
          });
        }
      });
      const done = start + batch.length;
      const rate = done / Math.max(1e-3, (performance.now() - started) / 1000);
      if (bar) bar.update(done, { rate: rate.toFixed(1), failed: summary.failed.length });
      else {
        io.err.write(
          `index: ${done}/${files.length} files, ${summary.indexed} indexed, ${summary.duplicate} already indexed, ${summary.failed.length} failed, ${rate.toFixed(1)} img/s\n`,
        );
      }
    }
  } finally {
    bar?.stop();
  }
  summary.seconds = (performance.now() - started) / 1000;
  return summary;
}

function printSummary(summary: IndexSummary, missing: readonly string[], io: Io): void {
  const rate = summary.total / Math.max(1e-3, summary.seconds);
  io.err.write(
    `indexed ${summary.indexed}, already indexed ${summary.duplicate}, failed ${summary.failed.length} of ${summary.total} files in ${summary.seconds.toFixed(1)} s (${rate.toFixed(1)} img/s)\n`,
  );
  for (const input of missing) io.err.write(`  not found: ${input}\n`);
  const shown = summary.failed.slice(0, 50);
  for (const f of shown) io.err.write(`  failed: ${f.file}: [${f.code}] ${f.message}\n`);
  if (summary.failed.length > shown.length) {
    io.err.write(`  ... and ${summary.failed.length - shown.length} more failures\n`);
  }
}

export async function withLibrary(
  flags: LibraryFlags,
  io: Io,
  work: (library: LongclipLibrary, settings: Settings) => Promise<number>,
): Promise<number> {
  let library: LongclipLibrary | undefined;
  try {
    const settings = settingsFromFlags(flags);
    library = await openLibrary(settings);
    return await work(library, settings);
  } catch (error) {
    io.err.write(errorMessage(error));
    return isAppError(error) && error.code === "invalid_setting" ? 2 : 1;
  } finally {
    await library?.close();
  }
}

export async function runIndex(
  inputs: readonly string[],
  flags: LibraryFlags & { meta?: string[] },
  io: Io = STDIO,
): Promise<number> {
  return withLibrary(flags, io, async (library, settings) => {
    const metadata = parseMeta(flags.meta ?? []);
    const { files, missing } = await collectImageFiles(inputs);
    if (files.length === 0) {
      io.err.write(`no image files found in ${inputs.join(", ")}\n`);
      return missing.length > 0 ? 1 : 0;
    }
    const summary = await indexFiles(library, files, {
      batch: Math.max(1, settings.maxBatchItems),
      metadata,
      io,
    });
    printSummary(summary, missing, io);
    return summary.failed.length > 0 || missing.length > 0 ? 1 : 0;
  });
}

export async function runSearch(
  query: string,
  flags: LibraryFlags & {
    k?: string;
    json?: boolean;
    exact?: boolean;
    filter?: string[];
    mode?: string;
  },
  io: Io = STDIO,
): Promise<number> {
  return withLibrary(flags, io, async (library, settings) => {
    const k = flags.k === undefined ? 10 : Number(flags.k);
    const filter = flags.filter && flags.filter.length > 0 ? parseMeta(flags.filter) : undefined;
    const started = performance.now();
    const result = await library.searchText(query, {
      k,
      exact: flags.exact === true,
      ...(filter ? { filter: filter as Record<string, string> } : {}),
      ...(flags.mode ? { mode: flags.mode as SearchMode } : {}),
    });
    const tookMs = performance.now() - started;
    if (flags.json) {
      io.out.write(`${JSON.stringify({ ...result, took_ms: Number(tookMs.toFixed(2)) })}\n`);
      return 0;
    }
    if (result.query.truncated) {
      io.err.write(
        `note: the query has ${result.query.tokens} tokens; the model read the first ${result.query.max_tokens}\n`,
      );
    }
    for (const hit of result.hits) {
      const item = await library.getItem(hit.id);
      const where = item?.path ?? "(upload)";
      io.out.write(
        `${String(hit.rank).padStart(3)}  ${hit.score.toFixed(4)}  ${hit.id}  ${where}${rankNote(hit)}\n`,
      );
    }
    if (result.hits.length === 0) io.err.write(`no items in ${settings.dataDir}\n`);
    return 0;
  });
}

/** Where a keyword or hybrid hit ranked in each ranking ("-": not in it). */
function rankNote(hit: Hit): string {
  const rank = (r: number | null | undefined) => (r === null || r === undefined ? "-" : `#${r}`);
  if (hit.vectorRank !== undefined) {
    return `  (vector ${rank(hit.vectorRank)}, keyword ${rank(hit.keywordRank)})`;
  }
  return hit.keywordRank !== undefined ? `  (keyword ${rank(hit.keywordRank)})` : "";
}

export async function runReindex(flags: LibraryFlags, io: Io = STDIO): Promise<number> {
  return withLibrary(flags, io, async (library) => {
    const bar = io.err.isTTY
      ? new cliProgress.SingleBar(
          { stream: io.err, format: "reindex [{bar}] {value}/{total} | ETA {eta_formatted}" },
          cliProgress.Presets.shades_classic,
        )
      : undefined;
    const failures: string[] = [];
    let lastLogged = 0;
    const started = performance.now();
    let total = 0;
    const embedded = await library.reindex(
      (done, all) => {
        total = all;
        if (bar) {
          if (done === 0) bar.start(all, 0);
          else bar.update(done);
        } else if (done === all || performance.now() - lastLogged > 2000) {
          lastLogged = performance.now();
          io.err.write(`reindex: ${done}/${all} items\n`);
        }
      },
      (id, error) => failures.push(`  failed: ${id}: [${error.code}] ${error.message}\n`),
    );
    bar?.stop();
    const seconds = (performance.now() - started) / 1000;
    io.err.write(
      `re-embedded ${embedded} of ${total} items with ${(await library.stats()).modelId} in ${seconds.toFixed(1)} s; ${failures.length} could not be read and are not searchable until re-indexed\n`,
    );
    for (const line of failures.slice(0, 50)) io.err.write(line);
    return failures.length > 0 ? 1 : 0;
  });
}

const collect = (value: string, previous: string[] = []) => [...previous, value];

function libraryOptions(command: Command): Command {
  return addSettingOptions(command, LIBRARY_SETTING_KEYS);
}

export function register(program: Command): void {
  libraryOptions(
    program
      .command("index")
      .description(
        "Index image files and directories (recursive) by path; files already indexed are skipped",
      )
      .argument("<paths...>", "image files or directories")
      .option("--meta <key=value>", "metadata for every file (repeatable)", collect)
      .option(
        "--job",
        "submit the paths (relative to the media root) as a job for the workers and follow it",
      )
      .option("--no-wait", "with --job: print the job id and return"),
  ).action(async (paths: string[], flags: LibraryFlags & { meta?: string[]; job?: boolean }) => {
    process.exitCode = flags.job
      ? await runIndexJob(paths, flags, parseMeta(flags.meta ?? []))
      : await runIndex(paths, flags);
  });

  libraryOptions(
    program
      .command("search")
      .description("Search the indexed images with a text query (up to 248 tokens)")
      .argument("<text>", "the query")
      .option("-k, --k <n>", "number of hits", "10")
      .option("--json", "print the result as JSON")
      .option("--exact", "brute-force scan instead of the HNSW index")
      .option("--filter <key=value>", "metadata equality filter (repeatable)", collect)
      .option(
        "--mode <mode>",
        "vector (default), keyword (the words in the --text-fields of the metadata) or hybrid (both, fused)",
      ),
  ).action(async (text: string, flags: LibraryFlags & { k?: string; json?: boolean }) => {
    process.exitCode = await runSearch(text, flags);
  });

  libraryOptions(
    program
      .command("reindex")
      .description("Re-embed every item with the current model (needed after a model change)"),
  ).action(async (flags: LibraryFlags) => {
    process.exitCode = await runReindex(flags);
  });
}
