/**
 * npm run bench:scale -- [--count N] [--dims D] [--queries Q] [--ef 40,100,200] [--json FILE]
 *
 * Nearest-neighbour search on the embedded backend (SQLite + hnswlib) against Postgres +
 * pgvector (HNSW on halfvec and on vector), through the storage seam, on the same clustered
 * vectors: recall@10 against exact search, p50/p99 per efSearch, index build time and size.
 * Starts its own PGlite (Postgres in WebAssembly) server on 127.0.0.1. Prints markdown tables.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { Command } from "commander";
import { cpuModel, loadAverage } from "../src/bench/context.ts";
import { fmt, markdownTable } from "../src/bench/markdown.ts";
import { startPostgres } from "../src/bench/pglite.ts";
import { measureScale } from "../src/bench/scale.ts";
import { integerFlag, parseOrExitCode, runScript } from "../src/cli/settings.ts";
import { PROJECT_ROOT } from "../src/config.ts";

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
  }>();
  const workDir = path.join(PROJECT_ROOT, "artifacts", "perf", "work");
  mkdirSync(workDir, { recursive: true });
  const db = await startPostgres();
  const started = new Date();
  try {
    const result = await measureScale(
      {
        workDir,
        modelsDir: workDir,
        quick: false,
        runs: 1,
        warmup: 0,
        threads: 1,
        log: (message) => process.stderr.write(`# ${message}\n`),
      },
      {
        count: flags.count,
        dims: flags.dims,
        queries: flags.queries,
        m: flags.m,
        efConstruction: flags.efConstruction,
        efSearch: flags.ef,
        databaseUrl: db.url,
      },
    );
    const machine = `${cpuModel()}, load ${loadAverage().join(" ")}, ${started.toISOString()}`;
    process.stdout.write(
      [
        `## Search at ${flags.count.toLocaleString("en-US")} clustered ${flags.dims}-d vectors (M ${flags.m}, efConstruction ${flags.efConstruction}; ${machine})`,
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
      ].join("\n"),
    );
    mkdirSync(path.dirname(flags.json), { recursive: true });
    writeFileSync(flags.json, `${JSON.stringify({ machine, ...result }, null, 2)}\n`);
    return 0;
  } finally {
    await db.stop();
  }
}

runScript("bench:scale", main);
