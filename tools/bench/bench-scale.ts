/**
 * npm run bench:scale -- [--database-url URL] [--count 1000000] [--dims 512] [--queries 200]
 *   [--cache-dir DIR] [--skip build,search,filtered,http,workers] [--ef 32,64,...]
 *   [--workers 1,2,3] [--worker-files N] [--filtered-queries N] [--json FILE]
 *
 * The embedded backend (SQLite + hnswlib) against Postgres + pgvector (HNSW on halfvec and on
 * vector) on the same clustered vectors, side by side in one run, with the product's default
 * settings unless a row says otherwise:
 * - build: load time, index build time and size (scale-build.ts; cached, see below);
 * - search: recall@10 against exact search, p50/p99 through the storage seam, queries per
 *   second with 8 concurrent clients; a sweep of fixed efSearch values (and, for halfvec,
 *   without the full-precision re-rank) for comparing backends at equal recall; recall@100;
 * - filtered: recall@10 and the fewest hits at 1%, 10% and 50% selectivity (filtered.ts);
 * - http: `POST /search` with text queries on the demo model (scale-http.ts, scale-model.ts):
 *   p50/p99, requests per second with 8 connections, server memory;
 * - workers: ingest rate of one job run by 1, 2 and 3 `longclip worker` processes.
 *
 * Postgres: the database at --database-url (the bench owns its `longclip` schema and
 * replaces it), or a native PostgreSQL + pgvector the bench starts itself with its data
 * directory in the cache. Generated answers, the SQLite library and the Postgres cluster are
 * kept in --cache-dir (default: $LONGCLIP_BENCH_CACHE or the system's temporary directory), so
 * an interrupted run resumes its loads and builds, and a second run measures without them
 * (their figures then come from the run that built them, with its date). Prints markdown
 * tables; writes them as JSON too.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import path from "node:path";
import { Command } from "commander";
import { PROJECT_ROOT } from "../../src/core/settings.ts";
import type { VectorType } from "../../src/store/postgres/hnsw-index.ts";
import { PostgresStore } from "../../src/store/postgres/store.ts";
import { SqliteStore } from "../../src/store/sqlite/store.ts";
import type { ItemStore } from "../../src/store/types.ts";
import { efSearchFor } from "../../src/vector-index/ef-search.ts";
import { integerFlag, parseOrExitCode, runScript } from "../script.ts";
import { cpuModel, loadAverage } from "./context.ts";
import { type FilteredRow, measureFiltered } from "./filtered.ts";
import { fmt, markdownTable } from "./markdown.ts";
import { findNativePostgres, startNativePostgres } from "./native-postgres.ts";
import { withClient } from "./postgres-admin.ts";
import type { TestPostgres } from "./postgres-handle.ts";
import { fastestAtRecall, measureQps, measureSeam, type SeamRow } from "./scale.ts";
import {
  adoptPgIndex,
  type BuildRecord,
  buildPgIndex,
  buildSqlite,
  INDEX,
  loadPostgres,
  sqliteDir,
} from "./scale-build.ts";
import { FILTERED_QUERIES, loadDataset, type ScaleDataset } from "./scale-data.ts";
import { type HttpRow, measureHttp } from "./scale-http.ts";
import { projectedDemoModel } from "./scale-model.ts";
import { measureWorkers, type WorkerRow } from "./workers.ts";

/** Server settings of the Postgres the bench starts: durable as in production, more memory. */
const BENCH_POSTGRES = {
  fsync: "on",
  full_page_writes: "on",
  shared_buffers: "2GB",
  max_wal_size: "4GB",
};

const TYPES: readonly VectorType[] = ["halfvec", "vector"];
const SQLITE = "SQLite + hnswlib";
const RECALL_TARGET = 0.95;

interface Flags {
  count: number;
  dims: number;
  queries: number;
  databaseUrl?: string;
  cacheDir: string;
  skip: string[];
  ef: number[];
  clients: number;
  qpsSeconds: number;
  httpQueries: number;
  httpSeconds: number;
  workers: number[];
  workerFiles: number;
  workerModel: string;
  filteredQueries: number;
  json?: string;
}

interface Report {
  machine: string;
  finished?: string;
  build: BuildRecord[];
  search: SeamRow[];
  filtered: FilteredRow[];
  http: HttpRow[];
  workers: WorkerRow[];
}

const list = (raw: string) => raw.split(",").filter((part) => part !== "");
const numbers = (raw: string) => list(raw).map(Number);

async function main(argv: string[]): Promise<number> {
  const program = new Command("bench:scale")
    .option("--count <n>", "vectors", integerFlag("--count"), 1_000_000)
    .option("--dims <n>", "dimensions (512: ViT-B/16, 768: ViT-L/14)", integerFlag("--dims"), 512)
    .option(
      "--queries <n>",
      "queries (the filtered section uses the first 100)",
      integerFlag("--queries"),
      200,
    )
    .option("--database-url <url>", "a Postgres with pgvector to measure (default: start one)")
    .option(
      "--cache-dir <dir>",
      "generated answers, libraries and the started Postgres's data",
      process.env.LONGCLIP_BENCH_CACHE || path.join(tmpdir(), "longclip-bench"),
    )
    .option("--skip <list>", "sections to skip: build,search,filtered,http,workers", list, [])
    .option(
      "--ef <list>",
      "fixed efSearch values of the sweep",
      numbers,
      [32, 64, 100, 128, 200, 256, 400],
    )
    .option("--clients <n>", "concurrent clients of the QPS figures", integerFlag("--clients"), 8)
    .option(
      "--qps-seconds <n>",
      "seconds of each QPS measurement",
      integerFlag("--qps-seconds"),
      10,
    )
    .option(
      "--http-queries <n>",
      "sequential /search requests timed",
      integerFlag("--http-queries"),
      200,
    )
    .option("--http-seconds <n>", "seconds of the /search load", integerFlag("--http-seconds"), 15)
    .option(
      "--filtered-queries <n>",
      "queries of each filtered measurement (at most 100; the embedded backend scans every item's metadata for each)",
      integerFlag("--filtered-queries"),
      100,
    )
    .option("--workers <list>", "worker counts of the ingest section", numbers, [1, 2, 3])
    .option("--worker-files <n>", "JPEGs in the workers' job", integerFlag("--worker-files"), 200)
    .option(
      "--worker-model <dir>",
      "model the workers run",
      path.join(PROJECT_ROOT, "models", "demo"),
    )
    .option(
      "--json <file>",
      "write the results as JSON (default: artifacts/perf/scale-COUNTxDIMS.json)",
    );
  const exit = parseOrExitCode(program, argv);
  if (exit !== undefined) return exit;
  const flags = program.opts<Flags>();
  const log = (message: string) =>
    process.stderr.write(`# ${new Date().toISOString().slice(11, 19)} ${message}\n`);
  const runs = (section: string) => !flags.skip.includes(section);
  const jsonFile =
    flags.json ??
    path.join(PROJECT_ROOT, "artifacts", "perf", `scale-${flags.count}x${flags.dims}.json`);

  let postgres: TestPostgres | undefined;
  let url = flags.databaseUrl;
  const dataset = loadDataset(flags.cacheDir, flags, log);
  const model = projectedDemoModel(flags.cacheDir, flags.dims);
  if (url === undefined) {
    const install = findNativePostgres();
    if (!install.ok) {
      throw new Error(
        `bench:scale starts a native PostgreSQL with pgvector, and there is none: ${install.reason}. Or give --database-url.`,
      );
    }
    postgres = await startNativePostgres({
      keepDir: path.join(flags.cacheDir, dataset.tag, "postgres"),
      settings: BENCH_POSTGRES,
    });
    url = postgres.url;
  }
  const serverVersion = await withClient(url, async (client) => {
    const row = await client.query<{ pg: string; vector: string | null }>(
      "SELECT current_setting('server_version') AS pg, (SELECT extversion FROM pg_extension WHERE extname = 'vector') AS vector",
    );
    return `PostgreSQL ${row.rows[0]?.pg} + pgvector ${row.rows[0]?.vector ?? "?"}${postgres ? " (native, started by the bench)" : ""}`;
  });
  const machine = `${cpuModel()}, ${cpus().length} cores, load average ${loadAverage().join(" ")} at start, ${serverVersion}, ${new Date().toISOString()}`;
  const report: Report = { machine, build: [], search: [], filtered: [], http: [], workers: [] };
  const save = () => {
    mkdirSync(path.dirname(jsonFile), { recursive: true });
    writeFileSync(jsonFile, `${JSON.stringify(report, null, 2)}\n`);
  };
  const databaseUrl = url;
  try {
    // The loads and builds always run (or come from the cache): every section needs them.
    log("build: the embedded library");
    report.build.push(await buildSqlite(flags.cacheDir, dataset, model.modelId, log));
    log("build: Postgres");
    const loadSeconds = await loadPostgres(databaseUrl, dataset, model.modelId, log);
    for (const type of TYPES) {
      report.build.push(await buildPgIndex(databaseUrl, dataset, type, loadSeconds, log));
    }
    save();
    const openers = storeOpeners(flags.cacheDir, dataset, databaseUrl);
    if (runs("search")) {
      report.search = await searchSection(openers, dataset, model.modelId, flags, log);
      save();
    }
    if (runs("http")) {
      const common = ["--model", model.dir, "--threads", "1"];
      const options = {
        queries: flags.httpQueries,
        seconds: flags.httpSeconds,
        connections: flags.clients,
      };
      report.http.push(
        await measureHttp(
          SQLITE,
          [...common, "--data", sqliteDir(flags.cacheDir, dataset)],
          options,
          log,
        ),
      );
      save();
      for (const type of TYPES) {
        await adoptPgIndex(databaseUrl, type, dataset.dims);
        const pid = postgres?.pid();
        report.http.push(
          await measureHttp(
            `pgvector ${type}`,
            [
              ...common,
              "--data",
              path.join(flags.cacheDir, dataset.tag, "serve-data"),
              "--database-url",
              databaseUrl,
              "--pg-vector-type",
              type,
            ],
            { ...options, ...(pid !== undefined ? { postgresPid: pid } : {}) },
            log,
          ),
        );
        save();
      }
    }
    if (runs("workers")) {
      report.workers = await measureWorkers(
        {
          workDir: path.join(flags.cacheDir, "workers"),
          modelsDir: flags.cacheDir,
          quick: false,
          runs: 1,
          warmup: 0,
          threads: 1,
          log,
        },
        {
          modelDir: path.resolve(flags.workerModel),
          files: flags.workerFiles,
          width: 1600,
          height: 1200,
          imageBatchSize: 8,
          counts: flags.workers,
          cores: cpus().length,
          startDatabase: () => startNativePostgres({ settings: BENCH_POSTGRES }),
        },
      );
      save();
    }
    if (runs("filtered")) {
      for (const [backend, open] of [
        [SQLITE, openers.sqlite],
        ["pgvector halfvec", (ef: number, extra: object) => openers.postgres("halfvec", ef, extra)],
      ] as const) {
        for (const [pathName, form, exactFilterLimit] of [
          ["product", "$in", undefined],
          ["product", "$lt", undefined],
          ["index forced", "$in", 0],
        ] as const) {
          const store = await open(0, exactFilterLimit === undefined ? {} : { exactFilterLimit });
          try {
            report.filtered.push(
              ...(await measureFiltered(
                store,
                model.modelId,
                dataset,
                { backend, path: pathName, form },
                flags.filteredQueries,
                log,
              )),
            );
          } finally {
            await store.close();
          }
          save();
        }
      }
    }
  } finally {
    await postgres?.stop();
  }
  report.finished = `load average ${loadAverage().join(" ")} at the end, ${new Date().toISOString()}`;
  save();
  process.stdout.write(tables(report, dataset, flags));
  return 0;
}

type Opener = (efSearch: number, extra: object) => Promise<ItemStore>;

function storeOpeners(cacheDir: string, dataset: ScaleDataset, url: string) {
  const sqlite: Opener = async (efSearch, extra) => {
    const store = new SqliteStore({
      dataDir: sqliteDir(cacheDir, dataset),
      indexSaveIntervalMs: 0,
      ...INDEX,
      efSearch,
      ...extra,
    });
    return store;
  };
  const postgres = (type: VectorType, efSearch: number, extra: object) =>
    PostgresStore.open({ url, vectorType: type, ...INDEX, efSearch, ...extra });
  return { sqlite, postgres };
}

async function searchSection(
  openers: ReturnType<typeof storeOpeners>,
  dataset: ScaleDataset,
  modelId: string,
  flags: Flags,
  log: (message: string) => void,
): Promise<SeamRow[]> {
  const rows: SeamRow[] = [];
  const backends: {
    backend: string;
    open: Opener;
    variants: { setting: string; extra: object }[];
    maxEf: number;
  }[] = [
    {
      backend: SQLITE,
      open: openers.sqlite,
      variants: [{ setting: "", extra: {} }],
      maxEf: Infinity,
    },
    {
      backend: "pgvector halfvec",
      open: (ef, extra) => openers.postgres("halfvec", ef, extra),
      variants: [
        { setting: "", extra: {} },
        { setting: "no re-rank", extra: { rerankFactor: 1 } },
      ],
      maxEf: 1000,
    },
    {
      backend: "pgvector vector",
      open: (ef, extra) => openers.postgres("vector", ef, extra),
      variants: [{ setting: "", extra: {} }],
      maxEf: 1000,
    },
  ];
  for (const { backend, open, variants, maxEf } of backends) {
    // Defaults first: recall@10 and @100, latency, and QPS with concurrent clients.
    const store = await open(0, {});
    try {
      for (const k of [10, 100]) {
        const row = await measureSeam(store, modelId, dataset, {
          backend,
          setting: "default",
          k,
          efSearch: Math.min(maxEf, efSearchFor(k, dataset.count)),
        });
        if (k === 10) {
          row.qps = await measureQps(store, modelId, dataset, flags.clients, flags.qpsSeconds);
          row.clients = flags.clients;
        }
        rows.push(row);
        log(
          `search: ${backend} default k ${k}: recall ${row.recall.toFixed(3)}, p50 ${row.p50Ms.toFixed(2)} ms`,
        );
      }
    } finally {
      await store.close();
    }
    if (backend !== SQLITE) {
      // The same searches as before a search's settings stayed on its connection: each in a
      // transaction of its own (BEGIN with SET LOCAL, the query, COMMIT: three round trips).
      const before = await open(0, { transactionPerSearch: true });
      try {
        const row = await measureSeam(before, modelId, dataset, {
          backend,
          setting: "default, 3 round trips (as before)",
          k: 10,
          efSearch: Math.min(maxEf, efSearchFor(10, dataset.count)),
        });
        rows.push(row);
        log(`search: ${backend} ${row.setting}: p50 ${row.p50Ms.toFixed(2)} ms`);
      } finally {
        await before.close();
      }
    }
    for (const variant of variants) {
      for (const ef of flags.ef.filter((value) => value <= maxEf)) {
        const fixed = await open(ef, variant.extra);
        try {
          const row = await measureSeam(fixed, modelId, dataset, {
            backend,
            setting: [`efSearch ${ef}`, variant.setting].filter(Boolean).join(", "),
            k: 10,
            efSearch: ef,
          });
          rows.push(row);
          log(
            `search: ${backend} ${row.setting}: recall ${row.recall.toFixed(3)}, p50 ${row.p50Ms.toFixed(2)} ms`,
          );
        } finally {
          await fixed.close();
        }
      }
    }
  }
  return rows;
}

function tables(report: Report, dataset: ScaleDataset, flags: Flags): string {
  const out: string[] = [];
  const heading = (title: string) =>
    out.push(`## ${title}`, "", `(${report.machine}; ${report.finished})`, "");
  heading(
    `bench:scale: ${dataset.count.toLocaleString("en-US")} clustered ${dataset.dims}-d vectors, M ${INDEX.m}, efConstruction ${INDEX.efConstruction}, ${dataset.queryCount} queries`,
  );
  out.push(
    markdownTable(
      ["backend", "load s", "index build s", "index MB", "build memory", "measured"],
      report.build.map((b) => [
        b.backend,
        fmt(b.loadSeconds, 0),
        b.indexSeconds === undefined ? "(during load)" : fmt(b.indexSeconds, 0),
        fmt(b.indexBytes / 1e6, 0),
        b.memoryMb === undefined
          ? "-"
          : `${b.memoryMb} MB${b.parallel ? ", parallel" : ", serial"}${b.notices?.some((n) => /no longer fits/.test(n)) ? " (did not fit)" : ""}`,
        b.builtAt.slice(0, 16),
      ]),
    ),
    "",
  );
  const search = report.search;
  if (search.length > 0) {
    out.push(
      `### Search through the storage seam (k 10 unless said; QPS: ${flags.clients} concurrent clients for ${flags.qpsSeconds} s)`,
      "",
      markdownTable(
        [
          "backend",
          "setting",
          "k",
          "efSearch",
          "recall@k",
          "p50 ms",
          "p99 ms",
          "QPS",
          "fewest hits",
        ],
        search.map((r) => [
          r.backend,
          r.setting,
          r.k,
          r.efSearch,
          fmt(r.recall, 3),
          fmt(r.p50Ms),
          fmt(r.p99Ms),
          r.qps === undefined ? "" : fmt(r.qps, 0),
          r.minHits,
        ]),
      ),
      "",
    );
    const at10 = search.filter((r) => r.k === 10);
    const best = (backend: string) =>
      fastestAtRecall(
        at10.filter((r) => r.backend === backend),
        RECALL_TARGET,
      );
    const hnsw = best(SQLITE);
    const lines = [
      `Fastest setting with recall@10 >= ${RECALL_TARGET} (p50 through the seam):`,
      "",
    ];
    for (const backend of [SQLITE, ...TYPES.map((t) => `pgvector ${t}`)]) {
      const row = best(backend);
      lines.push(
        row === undefined
          ? `- ${backend}: none reached it`
          : `- ${backend}: ${row.setting}, recall ${fmt(row.recall, 3)}, p50 ${fmt(row.p50Ms)} ms${hnsw && backend !== SQLITE ? ` (${fmt(row.p50Ms / hnsw.p50Ms, 1)}x hnswlib)` : ""}`,
      );
    }
    const defaults = at10.filter((r) => r.setting === "default");
    lines.push(
      "",
      `Targets: recall@10 >= ${RECALL_TARGET} with default settings: ${defaults.map((r) => `${r.backend} ${fmt(r.recall, 3)} ${r.recall >= RECALL_TARGET ? "(met)" : "(NOT met)"}`).join(", ")}.`,
      "",
    );
    out.push(...lines);
  }
  if (report.filtered.length > 0) {
    out.push(
      `### Filtered search: recall@10 against the exact filtered top 10 (${Math.min(FILTERED_QUERIES, flags.filteredQueries)} queries)`,
      "",
      markdownTable(
        [
          "backend",
          "path",
          "filter",
          "selectivity %",
          "matching items",
          "recall@10",
          "mean hits",
          "fewest hits",
          "p50 ms",
        ],
        report.filtered.map((r) => [
          r.backend,
          r.path,
          r.form,
          r.selectivity,
          r.matching,
          fmt(r.recallAt10, 3),
          fmt(r.meanHits, 2),
          r.minHits,
          fmt(r.p50Ms),
        ]),
      ),
      "",
      `Target: a filtered query never returns fewer than k when k rows match: ${report.filtered.every((r) => r.minHits >= 10) ? "met (every query returned 10)" : "NOT met"}.`,
      "",
    );
  }
  if (report.http.length > 0) {
    out.push(
      "### HTTP `POST /search`, text queries on the demo model (projected to the bench's dimensions)",
      "",
      markdownTable(
        [
          "backend",
          "p50 ms",
          "p99 ms",
          `requests/s (${flags.clients} connections)`,
          "failed",
          "serve RSS MB",
          "Postgres PSS MB",
        ],
        report.http.map((r) => [
          r.backend,
          fmt(r.p50Ms),
          fmt(r.p99Ms),
          fmt(r.requestsPerS, 0),
          r.failed,
          fmt(r.serveRssMb, 0),
          r.postgresPssMb === undefined ? "-" : fmt(r.postgresPssMb, 0),
        ]),
      ),
      "",
    );
  }
  if (report.workers.length > 0) {
    out.push(
      `### Ingest: one job of ${flags.workerFiles} JPEGs of 1600x1200 on a fresh Postgres`,
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
    );
  }
  return out.join("\n");
}

runScript("bench:scale", main);
