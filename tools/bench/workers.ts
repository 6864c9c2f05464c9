/**
 * Ingest through jobs and `longclip worker` processes on a fresh Postgres for each count: one
 * job of photo-sized JPEGs, run by 1 worker, then by 2, ..., each a separate process as users
 * run them; files per second from the first claim until the job is done, and the CPU time the
 * workers and the database used, to tell what limits the rate.
 */
import { type ChildProcess, spawn } from "node:child_process";
import path from "node:path";
import { createInterface } from "node:readline";
import { DEFAULT_SETTINGS, PROJECT_ROOT } from "../../src/core/settings.ts";
import { JobService } from "../../src/jobs/service.ts";
import { PostgresStore } from "../../src/store/postgres/store.ts";
import { processTreeCpuSeconds } from "./attack.ts";
import type { BenchContext } from "./context.ts";
import { writeSyntheticJpegs } from "./images.ts";
import { startPostgres, type TestPostgres } from "./test-postgres.ts";

export interface WorkerRow {
  workers: number;
  threadsEach: number;
  files: number;
  seconds: number;
  filesPerS: number;
  /** CPU seconds per file: all workers together, and the database server. */
  workerCpuMsPerFile: number;
  databaseCpuMsPerFile: number;
}

export interface WorkersParams {
  modelDir: string;
  files: number;
  width: number;
  height: number;
  imageBatchSize: number;
  /** Worker counts to run, e.g. [1, 2]; the machine's cores are split between them. */
  counts: readonly number[];
  cores: number;
  /** Starts the fresh Postgres of each count (default: the test Postgres, startPostgres). */
  startDatabase?: () => Promise<TestPostgres>;
}

async function startWorker(args: readonly string[]): Promise<ChildProcess> {
  const child = spawn(process.execPath, [path.join(PROJECT_ROOT, "bin", "longclip.js"), ...args], {
    cwd: PROJECT_ROOT,
    stdio: ["ignore", "ignore", "pipe"],
  });
  const lines = createInterface({ input: child.stderr as NodeJS.ReadableStream });
  for await (const line of lines) {
    if (line.includes('"worker started"')) {
      lines.on("line", () => {});
      return child;
    }
  }
  throw new Error("a worker exited before it started");
}

export async function measureWorkers(
  ctx: BenchContext,
  params: WorkersParams,
): Promise<WorkerRow[]> {
  const media = path.join(ctx.workDir, "workers-media");
  ctx.log(`workers: writing ${params.files} ${params.width}x${params.height} JPEGs`);
  await writeSyntheticJpegs(
    path.join(media, "photos"),
    params.files,
    params.width,
    params.height,
    5,
  );
  const rows: WorkerRow[] = [];
  for (const count of params.counts) {
    const db = await (params.startDatabase ?? startPostgres)();
    const store = await PostgresStore.open({
      url: db.url,
      vectorType: DEFAULT_SETTINGS.pgVectorType,
      m: DEFAULT_SETTINGS.hnswM,
      efConstruction: DEFAULT_SETTINGS.hnswEfConstruction,
      efSearch: DEFAULT_SETTINGS.hnswEfSearch,
    });
    const threads = Math.max(1, Math.floor(params.cores / count));
    const workers: ChildProcess[] = [];
    try {
      for (let w = 0; w < count; w++) {
        workers.push(
          await startWorker([
            "worker",
            "--model",
            params.modelDir,
            "--data",
            path.join(ctx.workDir, `workers-data-${w}`),
            "--database-url",
            db.url,
            "--media-root",
            media,
            "--threads",
            String(threads),
            "--image-batch-size",
            String(params.imageBatchSize),
          ]),
        );
      }
      const cpuBefore = workers.map((w) => processTreeCpuSeconds(w.pid));
      const dbCpuBefore = processTreeCpuSeconds(db.pid());
      const service = new JobService(store.jobs, { mediaRoot: media, maxJobItems: params.files });
      const job = await service.create({ paths: ["photos"] });
      let seconds = 0;
      for (;;) {
        const now = await service.get(job.id);
        if (now?.state === "done") {
          // From the first claim to the last commit: an idle worker polls every few seconds,
          // and that wait is not ingest.
          seconds = ((now.finishedAt ?? 0) - (now.startedAt ?? 0)) / 1000;
          break;
        }
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
      const workerCpu = workers.reduce(
        (sum, w, i) => sum + processTreeCpuSeconds(w.pid) - (cpuBefore[i] ?? 0),
        0,
      );
      rows.push({
        workers: count,
        threadsEach: threads,
        files: params.files,
        seconds,
        filesPerS: params.files / seconds,
        workerCpuMsPerFile: (workerCpu * 1000) / params.files,
        databaseCpuMsPerFile:
          ((processTreeCpuSeconds(db.pid()) - dbCpuBefore) * 1000) / params.files,
      });
      ctx.log(`workers: ${count} worker(s): ${(params.files / seconds).toFixed(1)} files/s`);
    } finally {
      for (const w of workers) w.kill("SIGTERM");
      await Promise.all(workers.map((w) => new Promise((resolve) => w.once("exit", resolve))));
      await store.close();
      await db.stop();
    }
  }
  return rows;
}
