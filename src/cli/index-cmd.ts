/**
 * `longclip index <paths...>`, `longclip search "<text>"`, `longclip reindex`: the library
 * from the command line, on the same data directory the server uses. Files are indexed by
 * path, in place (the CLI user already has them); uploads through the server are copied.
 *
 * The server keeps its own HNSW index in memory: items indexed here while a server runs on
 * the same data directory are in SQLite at once and in that server's index after its restart.
 */
import path from "node:path";
import cliProgress from "cli-progress";
import type { Command } from "commander";
import { AppError } from "../core/errors.ts";
import type { Settings } from "../core/settings.ts";
import type {
  Filter,
  FilterOperators,
  FilterValue,
  Hit,
  IndexResult,
  Metadata,
  SearchMode,
  SearchOptions,
  TextOptions,
} from "../core/types.ts";
import { Encoder } from "../encode/encoder.ts";
import type { ReindexStatus, SwitchMode } from "../library/index.ts";
import { collectImageFiles, type WalkError } from "../library/ingest/files.ts";
import { createLibrary, type LongclipLibrary } from "../library/library.ts";
import { runIndexJob } from "./jobs.ts";
import {
  addSettingOptions,
  cliError,
  LIBRARY_SETTING_KEYS,
  settingsFromFlags,
} from "./settings.ts";
import { RUNTIME_EXIT, reportError } from "./usage.ts";

/** Setting flags as commander parses them (strings), see ./settings.ts. */
export type LibraryFlags = Record<string, unknown>;

export interface Io {
  out: NodeJS.WritableStream;
  err: NodeJS.WritableStream & { isTTY?: boolean };
}

export const STDIO: Io = { out: process.stdout, err: process.stderr };

/** `blueGreen`: the library may load other models (longclip reindex --to-model / --switch). */
async function openLibrary(settings: Settings, blueGreen = false): Promise<LongclipLibrary> {
  const encoder = await Encoder.load(settings.modelDir, settings);
  try {
    return await createLibrary(settings, encoder, {
      allowAnyPath: true,
      ...(blueGreen ? { loadModel: (dir: string) => Encoder.load(dir, settings) } : {}),
    });
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

function printSummary(
  summary: IndexSummary,
  missing: readonly string[],
  unreadable: readonly WalkError[],
  io: Io,
): void {
  const rate = summary.total / Math.max(1e-3, summary.seconds);
  io.err.write(
    `indexed ${summary.indexed}, already indexed ${summary.duplicate}, failed ${summary.failed.length} of ${summary.total} files in ${summary.seconds.toFixed(1)} s (${rate.toFixed(1)} img/s)\n`,
  );
  for (const input of missing) io.err.write(`  ${input}: no such file or directory\n`);
  for (const e of unreadable) io.err.write(`  could not read folder: ${e.path} (${e.reason})\n`);
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
    return reportError(error, io.err);
  } finally {
    await library?.close();
  }
}

export async function runIndex(
  inputs: readonly string[],
  flags: LibraryFlags & { meta?: string[] },
  io: Io = STDIO,
): Promise<number> {
  // The paths first: a typo is reported at once, before the model loads.
  const { files, missing, errors } = await collectImageFiles(inputs);
  if (files.length === 0) {
    for (const input of missing) io.err.write(`${input}: no such file or directory\n`);
    for (const e of errors) io.err.write(`could not read folder: ${e.path} (${e.reason})\n`);
    const found = inputs.filter((input) => !missing.includes(input));
    if (found.length > 0) io.err.write(`no image files found in ${found.join(", ")}\n`);
    return missing.length > 0 || errors.length > 0 ? RUNTIME_EXIT : 0;
  }
  return withLibrary(flags, io, async (library, settings) => {
    const metadata = parseMeta(flags.meta ?? []);
    const summary = await indexFiles(library, files, {
      batch: Math.max(1, settings.maxBatchItems),
      metadata,
      io,
    });
    printSummary(summary, missing, errors, io);
    return summary.failed.length > 0 || missing.length > 0 || errors.length > 0 ? 1 : 0;
  });
}

const FILTER_OPERATORS = [
  [">=", "$gte"],
  ["<=", "$lte"],
  ["!=", "$ne"],
  [">", "$gt"],
  ["<", "$lt"],
  ["=", "$eq"],
] as const;

/**
 * `--filter` flags as one filter: a JSON object (`{"year": {"$gte": 2020}}`) or `key OP value`
 * with OP one of = != > >= < <= (`=` and `!=` compare strings, as `--meta` stores them; the
 * range operators take a number or an ISO-8601 date). Conditions on one key AND together.
 */
export function parseFilter(flags: readonly string[]): Filter | undefined {
  if (flags.length === 0) return undefined;
  const filter: Record<string, FilterOperators> = {};
  const add = (key: string, operators: FilterOperators) => {
    filter[key] = { ...filter[key], ...operators };
  };
  for (const flag of flags) {
    if (flag.trimStart().startsWith("{")) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(flag);
      } catch {
        throw new AppError("invalid_setting", `--filter: "${flag}" is not valid JSON.`);
      }
      for (const [key, condition] of Object.entries(parsed as Record<string, unknown>)) {
        add(
          key,
          condition !== null && typeof condition === "object" && !Array.isArray(condition)
            ? (condition as FilterOperators)
            : { $eq: condition as FilterValue },
        );
      }
      continue;
    }
    const found = FILTER_OPERATORS.map(([symbol, op]) => ({ symbol, op, at: flag.indexOf(symbol) }))
      .filter((f) => f.at > 0)
      .sort((a, b) => a.at - b.at || b.symbol.length - a.symbol.length)[0];
    if (found === undefined) {
      throw new AppError(
        "invalid_setting",
        `--filter takes key=value, key!=value, key>value, key>=value, key<value, key<=value or a JSON object, not "${flag}".`,
      );
    }
    const raw = flag.slice(found.at + found.symbol.length);
    const ranged = found.op !== "$eq" && found.op !== "$ne";
    const value = ranged && raw.trim() !== "" && Number.isFinite(Number(raw)) ? Number(raw) : raw;
    add(flag.slice(0, found.at), { [found.op]: value });
  }
  return filter;
}

export interface SearchFlags extends LibraryFlags {
  k?: string;
  json?: boolean;
  exact?: boolean;
  filter?: string[];
  mode?: string;
  minScore?: string;
  offset?: string;
  longQuery?: string;
}

const SEARCH_MODES: readonly SearchMode[] = ["vector", "keyword", "hybrid"];

/** The search's options from its flags; a bad value is an invalid_setting (a usage error). */
export function searchOptionsOf(flags: SearchFlags): SearchOptions & TextOptions {
  const refuse = (message: string) => new AppError("invalid_setting", message);
  const k = flags.k === undefined ? 10 : Number(flags.k);
  if (!Number.isInteger(k) || k < 1)
    throw refuse(`--k takes a whole number of hits, not "${flags.k}".`);
  const offset = flags.offset === undefined ? undefined : Number(flags.offset);
  if (offset !== undefined && (!Number.isInteger(offset) || offset < 0)) {
    throw refuse(`--offset takes a whole number of ranks to skip, not "${flags.offset}".`);
  }
  const minScore = flags.minScore === undefined ? undefined : Number(flags.minScore);
  if (minScore !== undefined && (flags.minScore?.trim() === "" || !Number.isFinite(minScore))) {
    throw refuse(`--min-score takes a cosine such as 0.2, not "${flags.minScore}".`);
  }
  const mode = flags.mode as SearchMode | undefined;
  if (mode !== undefined && !SEARCH_MODES.includes(mode)) {
    throw refuse(`--mode is ${SEARCH_MODES.join(", ")}, not "${flags.mode}".`);
  }
  const longQuery = flags.longQuery ?? "truncate";
  if (longQuery !== "truncate" && longQuery !== "chunk") {
    throw refuse(`--long-query is truncate or chunk, not "${longQuery}".`);
  }
  const filter = parseFilter(flags.filter ?? []);
  return {
    k,
    exact: flags.exact === true,
    longQuery,
    ...(offset !== undefined ? { offset } : {}),
    ...(minScore !== undefined ? { minScore } : {}),
    ...(filter ? { filter } : {}),
    ...(mode ? { mode } : {}),
  };
}

export async function runSearch(
  query: string,
  flags: SearchFlags,
  io: Io = STDIO,
): Promise<number> {
  let options: SearchOptions & TextOptions;
  try {
    options = searchOptionsOf(flags);
  } catch (error) {
    return reportError(error, io.err);
  }
  return withLibrary(flags, io, async (library, settings) => {
    const started = performance.now();
    const result = await library.searchText(query, options);
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

function describeStatus(status: ReindexStatus): string {
  return `${status.done}/${status.total} items embedded by ${status.modelId}${status.failed > 0 ? `, ${status.failed} unreadable` : ""}`;
}

/**
 * `longclip reindex --to-model DIR [--switch auto|manual]` and `longclip reindex --switch`:
 * the blue/green reindex in this process, with progress; a server on the same store keeps
 * answering with the current model and switches with the store.
 */
export async function runBlueGreen(
  flags: LibraryFlags & { toModel?: string; switch?: string | boolean },
  io: Io = STDIO,
): Promise<number> {
  const mode = typeof flags.switch === "string" ? flags.switch : "auto";
  if (flags.toModel !== undefined && mode !== "auto" && mode !== "manual") {
    return reportError(
      new AppError("invalid_setting", `--switch takes auto or manual, not "${mode}"`),
      io.err,
    );
  }
  let library: LongclipLibrary | undefined;
  try {
    library = await openLibrary(settingsFromFlags(flags), true);
    const open = library;
    const started = performance.now();
    if (flags.toModel === undefined) {
      const status = await open.switchReindex();
      io.err.write(`switched to ${status.modelId}: ${describeStatus(status)}\n`);
      return 0;
    }
    await open.startReindex(path.resolve(flags.toModel), mode as SwitchMode);
    let lastLogged = 0;
    for (;;) {
      const status = open.reindexStatus() as ReindexStatus;
      const finished = status.state !== "running";
      if (finished || performance.now() - lastLogged > 2000) {
        lastLogged = performance.now();
        io.err.write(`reindex: ${describeStatus(status)} (${status.state})\n`);
      }
      if (finished) {
        const seconds = ((performance.now() - started) / 1000).toFixed(1);
        for (const failure of status.failures)
          io.err.write(`  failed: ${failure.id}: [${failure.code}] ${failure.message}\n`);
        if (status.state === "failed") {
          io.err.write(
            `error [${status.error?.code}]: ${status.error?.message}; run the same command again to resume\n`,
          );
          return 1;
        }
        io.err.write(
          status.state === "switched"
            ? `switched to ${status.modelId} in ${seconds} s; the previous model's embeddings are dropped\n`
            : `every item is embedded by ${status.modelId} (${seconds} s); switch with: longclip reindex --switch\n`,
        );
        return status.failed > 0 ? 1 : 0;
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  } catch (error) {
    return reportError(error, io.err);
  } finally {
    await library?.close();
  }
}

const collect = (value: string, previous: string[] = []) => [...previous, value];

function libraryOptions(command: Command): Command {
  return addSettingOptions(command, LIBRARY_SETTING_KEYS);
}

/**
 * The settings a search reads: where the library and model are, how the query is encoded and
 * looked up. The rest (ingest, server tuning) still apply from their LONGCLIP_* variables.
 */
export const SEARCH_SETTING_KEYS = [
  "modelDir",
  "dataDir",
  "databaseUrl",
  "device",
  "threads",
  "preprocess",
  "textBatchSize",
  "hnswShards",
  "hnswEfSearch",
  "maxK",
  "maxQueryChars",
  "maxQueryWindows",
  "maxRequestWindows",
  "maxFilterValues",
  "textFields",
  "hybridCandidates",
] as const satisfies readonly (keyof Settings)[];

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

  addSettingOptions(
    program
      .command("search")
      .description("Search the indexed images with a text query (up to 248 tokens)")
      .argument("<text>", "the query")
      .option("-k, --k <n>", "number of hits", "10")
      .option("--json", "print the result as JSON")
      .option("--exact", "brute-force scan instead of the HNSW index")
      .option(
        "--filter <condition>",
        'metadata filter, repeatable: key=value, key!=value, key>value, key>=value, key<value, key<=value (numbers or ISO-8601 dates) or JSON such as \'{"year":{"$in":[2020,2021]}}\'',
        collect,
      )
      .option("--min-score <cosine>", "leave out hits below this cosine (see docs/search.md)")
      .option("--offset <n>", "skip this many ranks (page 2 of k=10 is --offset 10)")
      .option(
        "--long-query <mode>",
        "a query past 248 tokens: truncate (default) or chunk (sentence windows, pooled)",
      )
      .option(
        "--mode <mode>",
        "vector (default), keyword (the words in the --text-fields of the metadata) or hybrid (both, fused)",
      ),
    SEARCH_SETTING_KEYS,
  ).action(async (text: string, flags: SearchFlags) => {
    process.exitCode = await runSearch(text, flags);
  });

  libraryOptions(
    program
      .command("reindex")
      .description(
        "Re-embed every item with the current model (needed after a model change), or with --to-model switch to another model without downtime",
      )
      .option(
        "--to-model <dir>",
        "blue/green: embed every item with this model while search keeps using the current one, then switch (resumes a run of the same model)",
      )
      .option(
        "--switch [mode]",
        "with --to-model: auto (switch when complete, the default) or manual; alone: switch a completed manual run now",
      ),
  ).action(async (flags: LibraryFlags & { toModel?: string; switch?: string | boolean }) => {
    process.exitCode =
      flags.toModel !== undefined || flags.switch !== undefined
        ? await runBlueGreen(flags)
        : await runReindex(flags);
  });
}
