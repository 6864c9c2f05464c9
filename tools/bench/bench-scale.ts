/**
 * npm run bench:scale -- [--skip search,filtered,workers] [--filtered-count N] [--filtered-dims D]
 *   [--filtered-queries Q] [--filtered-vector-type vector|halfvec] [--count N] [--dims D] [--queries Q]
 *   [--ef 40,100,200] [--workers 1,2] [--worker-files N] [--worker-model DIR] [--json FILE]
 *
 * search: nearest-neighbour search on the embedded backend (SQLite + hnswlib) against
 * Postgres + pgvector (HNSW on halfvec and on vector), through the storage seam, on the same
 * clustered vectors: recall@10 against exact search, p50/p99 per efSearch, index build time
 * and size. filtered: recall@10 of filtered search against the exact filtered top 10 at 1%, 10%
 * and 50% selectivity on both backends. workers: one job of photo-sized JPEGs run by 1 and by 2
 * `longclip worker` processes. Starts its own Postgres servers on 127.0.0.1: native PostgreSQL +
 * pgvector where it can run, else PGlite (Postgres in WebAssembly; see test-postgres.ts),
 * named in the tables' machine line. Prints markdown tables.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import path from "node:path";
import { Command } from "commander";
import { integerFlag, parseOrExitCode, runScript } from "../../src/cli/settings.ts";
import { PROJECT_ROOT } from "../../src/core/settings.ts";
import { cpuModel, loadAverage } from "./context.ts";
import { type FilteredResult, measureFiltered } from "./filtered.ts";
import { fmt, markdownTable } from "./markdown.ts";
import { measureScale, type ScaleResult } from "./scale.ts";
import { startPostgres, testPostgresKind } from "./test-postgres.ts";
import { measureWorkers, type WorkerRow } from "./workers.ts";

async function main(argv: string[]): Promise<number> {
  const program = new Command("bench:scale")
    .option("--count <n>", "vectors", integerFlag("--count"), 100_000)
    .option("--dims <n>", "dimensions (512: ViT-B/16, 768: ViT-L/14)", integerFlag("--dims"), 512)
    .option("--queries <n>", "queries", integerFlag("--queries"), 200)
    .option("--m <n>", "HNSW M", integerFlag("--m"), 16)
    .option("--ef-construction <n>", "HNSW efConstruction", integerFlag("--ef-construction"), 64)
    .option(
      "--ef <list>",
      "efSearch values",
      (raw: string) => raw.split(",").map(Number),
      [40, 100, 200],
    )
    .option(
      "--filtered-count <n>",
      "vectors of the filtered-recall section",
      integerFlag("--filtered-count"),
      20_000,
    )
    .option("--filtered-dims <n>", "their dimensions", integerFlag("--filtered-dims"), 256)
    .option(
      "--filtered-queries <n>",
      "queries per selectivity",
      integerFlag("--filtered-queries"),
      100,
    )
    .option(
      "--filtered-vector-type <type>",
      "pgvector index type of the filtered section (halfvec builds ~19x slower in PGlite)",
      "vector",
    )
    .option(
      "--skip <list>",
      "sections to skip: search, filtered, workers",
      (raw: string) => raw.split(","),
      [],
    )
    .option(
      "--workers <list>",
      "worker counts",
      (raw: string) => raw.split(",").map(Number),
      [1, 2],
    )
    .option("--worker-files <n>", "JPEGs in the workers' job", integerFlag("--worker-files"), 200)
    .option(
      "--worker-model <dir>",
      "model the workers run",
      path.join(PROJECT_ROOT, "models", "demo"),
    )
    .option(
      "--json <file>",
      "write the results as JSON",
      path.join(PROJECT_ROOT, "artifacts", "perf", "scale.json"),
    );
  const exit = parseOrExitCode(program, argv);
  if (exit !== undefined) return exit;
  const flags = program.opts<{
    count: number;
    dims: number;
    queries: number;
    m: number;
    efConstruction: number;
    ef: number[];
    json: string;
    skip: string[];
    workers: number[];
    workerFiles: number;
    workerModel: string;
    filteredCount: number;
    filteredDims: number;
    filteredQueries: number;
    filteredVectorType: string;
  }>();
  const workDir = path.join(PROJECT_ROOT, "artifacts", "perf", "work");
  mkdirSync(workDir, { recursive: true });
  const ctx = {
    workDir,
    modelsDir: workDir,
    quick: false,
    runs: 1,
    warmup: 0,
    threads: 1,
    log: (message: string) => process.stderr.write(`# ${message}\n`),
  };
  const postgres = testPostgresKind().kind === "native" ? "native Postgres" : "PGlite";
  const machine = `${cpuModel()}, ${cpus().length} cores, load ${loadAverage().join(" ")}, ${postgres}, ${new Date().toISOString()}`;
  const report: {
    machine: string;
    search?: ScaleResult;
    filtered?: FilteredResult;
    workers?: WorkerRow[];
  } = { machine };
  const save = () => {
    mkdirSync(path.dirname(flags.json), { recursive: true });
    writeFileSync(flags.json, `${JSON.stringify(report, null, 2)}\n`);
  };
  if (!flags.skip.includes("search")) {
    const db = await startPostgres();
    try {
      report.search = await measureScale(ctx, {
        count: flags.count,
        dims: flags.dims,
        queries: flags.queries,
        m: flags.m,
        efConstruction: flags.efConstruction,
        efSearch: flags.ef,
        databaseUrl: db.url,
      });
    } finally {
      await db.stop();
    }
    save();
    process.stdout.write(searchTables(report.search, machine));
  }
  if (!flags.skip.includes("filtered")) {
    const vectorType = flags.filteredVectorType;
    if (vectorType !== "vector" && vectorType !== "halfvec") {
      throw new Error(`--filtered-vector-type is vector or halfvec, not ${vectorType}`);
    }
    const db = await startPostgres();
    try {
      report.filtered = await measureFiltered(ctx, {
        count: flags.filteredCount,
        dims: flags.filteredDims,
        queries: flags.filteredQueries,
        m: flags.m,
        efConstruction: flags.efConstruction,
        efSearch: 100,
        vectorType,
        selectivities: [1, 10, 50],
        databaseUrl: db.url,
      });
    } finally {
      await db.stop();
    }
    save();
    const f = report.filtered;
    process.stdout.write(
      [
        `## Filtered search: recall@10 against the exact filtered top 10, ${f.count.toLocaleString("en-US")} clustered ${f.dims}-d vectors, ${f.queries} queries, efSearch ${f.efSearch} (M ${flags.m}, efConstruction ${flags.efConstruction}; ${machine})`,
        "",
        markdownTable(
          ["backend", "selectivity %", "matching items", "recall@10", "mean hits", "p50 ms"],
          f.rows.map((r) => [
            r.backend,
            r.selectivity,
            r.matching,
            fmt(r.recallAt10, 3),
            fmt(r.meanHits, 2),
            fmt(r.p50Ms),
          ]),
        ),
        "",
      ].join("\n"),
    );
  }
  if (!flags.skip.includes("workers")) {
    report.workers = await measureWorkers(ctx, {
      modelDir: path.resolve(flags.workerModel),
      files: flags.workerFiles,
      width: 1600,
      height: 1200,
      imageBatchSize: 8,
      counts: flags.workers,
      cores: cpus().length,
    });
    save();
    process.stdout.write(
      [
        `## One job, ${flags.workerFiles} JPEGs of 1600x1200, model ${path.relative(PROJECT_ROOT, path.resolve(flags.workerModel))}; ${machine}`,
        "",
        markdownTable(
          ["workers", "threads each", "files/s", "worker CPU ms/file", "database CPU ms/file"],
          report.workers.map((r) => [
            r.workers,
            r.threadsEach,
            fmt(r.filesPerS, 1),
            fmt(r.workerCpuMsPerFile, 0),
            fmt(r.databaseCpuMsPerFile, 0),
          ]),
        ),
        "",
      ].join("\n"),
    );
  }
  return 0;
}

function searchTables(result: ScaleResult, machine: string): string {
  return [
    `## Search at ${result.count.toLocaleString("en-US")} clustered ${result.dims}-d vectors (M ${result.m}, efConstruction ${result.efConstruction}; ${machine})`,
    "",
    markdownTable(
      ["backend", "load s", "index build s", "index MB"],
      result.build.map((b) => [
        b.backend,
        fmt(b.loadSeconds, 1),
        b.indexSeconds ? fmt(b.indexSeconds, 1) : "(during load)",
        b.indexBytes ? fmt(b.indexBytes / 1e6, 1) : "-",
      ]),
    ),
    "",
    `A search on Postgres is one transaction of three statements; \`SELECT 1\` alone takes ${fmt(result.postgresRoundTripMs)} ms (p50) on this server.`,
    "",
    markdownTable(
      ["backend", "efSearch", "recall@10", "p50 ms", "p99 ms"],
      result.rows.map((r) => [
        r.backend,
        r.efSearch,
        fmt(r.recallAt10, 3),
        fmt(r.p50Ms),
        fmt(r.p99Ms),
      ]),
    ),
    "",
  ].join("\n");
}

runScript("bench:scale", main);
