/**
 * Jobs from the command line: `longclip worker` (claims and runs jobs; any number, any host,
 * on Postgres), `longclip jobs [id] [--cancel]`, and `longclip index --job` (submit, then
 * follow the job's progress). Paths of a job are relative to the media root.
 */
import cliProgress from "cli-progress";
import type { Command } from "commander";
import { AppError } from "../core/errors.ts";
import type { Settings } from "../core/settings.ts";
import type { Metadata } from "../core/types.ts";
import { Encoder } from "../encode/encoder.ts";
import { mediaRootOf } from "../jobs/create.ts";
import { JobRunner } from "../jobs/runner.ts";
import { JobService } from "../jobs/service.ts";
import { createLibrary } from "../library/library.ts";
import type { JobSummary } from "../store/jobs.ts";
import { openStore } from "../store/open.ts";
import { addSettingOptions, LIBRARY_SETTING_KEYS, settingsFromFlags } from "./settings.ts";
import { reportError } from "./usage.ts";

interface Io {
  out: NodeJS.WritableStream;
  err: NodeJS.WritableStream & { isTTY?: boolean };
}

const STDIO: Io = { out: process.stdout, err: process.stderr };

export function describeJob(job: JobSummary): string {
  const c = job.counts;
  const eta = job.etaSeconds === null ? "?" : `${job.etaSeconds} s`;
  const codes = Object.entries(job.failedCodes)
    .map(([code, n]) => `${code} ${n}`)
    .join(", ");
  return `${job.id}  ${job.state}  ${c.indexed + c.duplicate + c.failed}/${c.total} done (indexed ${c.indexed}, duplicate ${c.duplicate}, failed ${c.failed}${codes ? `: ${codes}` : ""}, running ${c.running}, pending ${c.pending}${c.cancelled ? `, cancelled ${c.cancelled}` : ""})  ${job.rate.toFixed(1)} files/s  ETA ${eta}`;
}

/** Waits for a job to end, showing a bar on a terminal and a line every few seconds otherwise. */
export async function followJob(service: JobService, id: string, io: Io, pollMs = 1000) {
  const bar = io.err.isTTY
    ? new cliProgress.SingleBar(
        {
          stream: io.err,
          format:
            "job [{bar}] {value}/{total} | {rate} files/s | ETA {eta_formatted} | failed {failed}",
        },
        cliProgress.Presets.shades_classic,
      )
    : undefined;
  let lastLine = 0;
  for (;;) {
    const job = await service.get(id);
    if (job === undefined) throw new AppError("not_found", `no job ${id}`);
    const c = job.counts;
    const done = c.indexed + c.duplicate + c.failed + c.cancelled;
    if (bar) {
      if (!bar.isActive) bar.start(c.total, done, { rate: "0.0", failed: 0 });
      bar.update(done, { rate: job.rate.toFixed(1), failed: c.failed });
    } else if (performance.now() - lastLine > 5000 || job.state === "done") {
      lastLine = performance.now();
      io.err.write(`${describeJob(job)}\n`);
    }
    if (job.state === "done" || job.state === "cancelled") {
      bar?.stop();
      for (const f of job.failures) io.err.write(`  failed: ${f.path}: [${f.code}] ${f.message}\n`);
      return job;
    }
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}

/** Runs `work` on the job service; an error is reported and becomes the exit code. */
async function withJobs(
  flags: Record<string, unknown>,
  io: Io,
  work: (service: JobService, settings: Settings) => Promise<number>,
): Promise<number> {
  let store: Awaited<ReturnType<typeof openStore>> | undefined;
  try {
    const settings = settingsFromFlags(flags);
    store = await openStore(settings);
    return await work(new JobService(store.jobs, settings), settings);
  } catch (error) {
    return reportError(error, io.err);
  } finally {
    await store?.close();
  }
}

/** `longclip index --job PATHS`: creates a job for the workers and follows it (unless --no-wait). */
export async function runIndexJob(
  paths: readonly string[],
  flags: Record<string, unknown> & { wait?: boolean },
  metadata: Metadata,
  io: Io = STDIO,
): Promise<number> {
  return withJobs(flags, io, async (service) => {
    const job = await service.create({ paths, metadata });
    io.out.write(`${job.id}\n`);
    io.err.write(`job ${job.id}: ${job.counts.total} files queued for the workers\n`);
    if (flags.wait === false) return 0;
    const final = await followJob(service, job.id, io);
    io.err.write(`${describeJob(final)}\n`);
    return final.counts.failed > 0 || final.state === "cancelled" ? 1 : 0;
  });
}

export async function runJobs(
  id: string | undefined,
  flags: Record<string, unknown> & { cancel?: boolean; json?: boolean },
  io: Io = STDIO,
): Promise<number> {
  return withJobs(flags, io, async (service) => {
    if (id === undefined) {
      const jobs = await service.list(20);
      for (const job of jobs)
        io.out.write(flags.json ? `${JSON.stringify(job)}\n` : `${describeJob(job)}\n`);
      if (jobs.length === 0) io.err.write("no jobs\n");
      return 0;
    }
    if (flags.cancel) await service.cancel(id);
    const job = await service.get(id);
    if (job === undefined)
      throw new AppError("not_found", `no job ${id}; longclip jobs lists them`);
    if (flags.json) io.out.write(`${JSON.stringify(job)}\n`);
    else {
      io.out.write(`${describeJob(job)}\n`);
      for (const f of job.failures) io.out.write(`  failed: ${f.path}: [${f.code}] ${f.message}\n`);
    }
    return 0;
  });
}

/** `longclip worker`: runs jobs until SIGTERM/SIGINT, then finishes its chunk and exits. */
export async function runWorker(flags: Record<string, unknown>, io: Io = STDIO): Promise<number> {
  const settings = settingsFromFlags(flags);
  if (settings.databaseUrl === undefined) {
    throw new AppError(
      "invalid_setting",
      "longclip worker runs jobs from a shared Postgres database: give --database-url (LONGCLIP_DATABASE_URL). On the embedded default, longclip serve runs jobs itself.",
    );
  }
  const mediaRoot = mediaRootOf(settings);
  const encoder = await Encoder.load(settings.modelDir, settings);
  const library = await createLibrary(settings, encoder, {
    loadModel: (dir) => Encoder.load(dir, settings),
  });
  const log = (message: string, fields: Record<string, unknown> = {}) =>
    io.err.write(
      `${JSON.stringify({ time: new Date().toISOString(), msg: message, ...fields })}\n`,
    );
  const runner = new JobRunner(library, library.store.jobs, {
    chunkSize: Math.max(1, Math.min(settings.imageBatchSize, settings.maxBatchItems)),
    leaseMs: settings.jobLeaseMs,
    mediaRoot,
    log,
  });
  log("worker started", { worker: runner.id, mediaRoot, model: encoder.modelId });
  runner.start();
  let last = 0;
  const progress = setInterval(() => {
    if (runner.processed !== last) {
      log("progress", { processed: runner.processed, rate: (runner.processed - last) / 10 });
      last = runner.processed;
    }
  }, 10_000);
  progress.unref();
  await new Promise<void>((resolve) => {
    for (const signal of ["SIGTERM", "SIGINT"] as const) process.once(signal, () => resolve());
  });
  log("stopping: finishing the chunk in progress");
  clearInterval(progress);
  await runner.stop();
  await library.close();
  log("worker stopped", { processed: runner.processed });
  return 0;
}

export function register(program: Command): void {
  addSettingOptions(
    program
      .command("worker")
      .description(
        "Run indexing jobs from the Postgres database (--database-url): claim files, embed, commit; any number of workers on any hosts",
      ),
    LIBRARY_SETTING_KEYS,
  ).action(async (flags: Record<string, unknown>) => {
    try {
      process.exitCode = await runWorker(flags);
    } catch (error) {
      process.exitCode = reportError(error);
    }
  });
  addSettingOptions(
    program
      .command("jobs")
      .description("List the jobs, or show (or --cancel) one")
      .argument("[id]", "a job id")
      .option("--cancel", "cancel the job: what is pending is not indexed")
      .option("--json", "print JSON lines"),
    LIBRARY_SETTING_KEYS,
  ).action(async (id: string | undefined, flags: Record<string, unknown>) => {
    process.exitCode = await runJobs(id, flags);
  });
}
