/**
 * Server section of bench:perf: `/search` throughput and latency under concurrent load
 * (autocannon) against a real `longclip serve` child on 127.0.0.1, unloaded and while a bulk
 * ingest posts /index batches in a loop.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { rmSync } from "node:fs";
import { createRequire } from "node:module";
import { createServer } from "node:net";
import path from "node:path";
import { PROJECT_ROOT } from "../../src/core/settings.ts";
import type { BenchContext } from "./context.ts";
import type { BenchModel } from "./models.ts";

/** The part of autocannon's result this bench reads (the package ships no types). */
interface AutocannonResult {
  requests: { average: number; total: number };
  latency: { p50: number; p99: number; average: number; max: number };
  non2xx: number;
  errors: number;
  timeouts: number;
}

type Autocannon = (options: Record<string, unknown>) => Promise<AutocannonResult>;

const autocannon = createRequire(import.meta.url)("autocannon") as Autocannon;

export interface LoadRow {
  condition: "unloaded" | "ingesting";
  requestsPerS: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  requests: number;
  non2xx: number;
  errors: number;
  imagesIngested: number;
  /** For "ingesting": whether POST /index batches were still running when the window ended. */
  ingestCoveredWindow?: boolean;
}

export interface ServerResult {
  size: string;
  /** The server's --image-batch-size: images per encoder call, and per ingest chunk. */
  imageBatchSize: number;
  connections: number;
  durationS: number;
  rows: LoadRow[];
  p99Ratio: number;
}

const QUERIES = [
  "a red car parked next to an old stone house",
  "two children playing football on a sunny beach with a dog running after the ball and waves in the background",
  "a quiet library reading room with tall wooden shelves, green lamps on long tables and a large arched window letting in the afternoon light over the students",
  "a plate of pasta",
  "a busy street market at night with lanterns, food stalls selling noodles and grilled fish, crowds of people and neon signs reflected in puddles after the rain",
];

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

async function waitReady(base: string, child: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`longclip serve exited with ${child.exitCode}`);
    try {
      const response = await fetch(`${base}/ready`);
      if (response.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  throw new Error(`longclip serve was not ready within ${timeoutMs / 1000} s`);
}

async function postIndex(base: string, paths: readonly string[]): Promise<number> {
  const response = await fetch(`${base}/index`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ items: paths.map((p) => ({ path: p })) }),
  });
  if (!response.ok) throw new Error(`POST /index: ${response.status} ${await response.text()}`);
  const body = (await response.json()) as { results?: { status: string }[] };
  return (body.results ?? []).filter((r) => r.status === "indexed").length;
}

/**
 * Every request carries a query text never sent before (one of QUERIES, the window's condition
 * and a serial number),
 * so the server's query-embedding cache cannot answer it: each request runs the text tower.
 */
function load(
  base: string,
  connections: number,
  durationS: number,
  condition: LoadRow["condition"],
): Promise<AutocannonResult> {
  let serial = 0;
  return autocannon({
    url: `${base}/search`,
    connections,
    duration: durationS,
    requests: [
      {
        method: "POST",
        path: "/search",
        headers: { "content-type": "application/json" },
        setupRequest: (request: Record<string, unknown>) => {
          serial += 1;
          const query = `${QUERIES[serial % QUERIES.length]} (${condition} request ${serial})`;
          return { ...request, body: JSON.stringify({ query, k: 10 }) };
        },
      },
    ],
  });
}

function row(
  condition: LoadRow["condition"],
  result: AutocannonResult,
  imagesIngested: number,
): LoadRow {
  return {
    condition,
    requestsPerS: result.requests.average,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    maxMs: result.latency.max,
    requests: result.requests.total,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
    imagesIngested,
  };
}

/**
 * Starts `longclip serve` with `model`, indexes `seed` images, measures /search for
 * `durationS` seconds unloaded, then again while `ingest` images are posted 8 at a time.
 */
export async function measureServer(
  ctx: BenchContext,
  model: BenchModel,
  mediaRoot: string,
  seed: readonly string[],
  ingest: readonly string[],
  connections: number,
  durationS: number,
  imageBatchSize: number,
): Promise<ServerResult> {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const dataDir = path.join(ctx.workDir, "server-data");
  rmSync(dataDir, { recursive: true, force: true });
  ctx.log(`server: starting longclip serve on ${base}, image batch size ${imageBatchSize}`);
  const child = spawn(
    process.execPath,
    [
      path.join(PROJECT_ROOT, "bin", "longclip.js"),
      "serve",
      "--model",
      model.dir,
      "--data",
      dataDir,
      "--host",
      "127.0.0.1",
      "--port",
      String(port),
      "--media-root",
      mediaRoot,
      "--threads",
      String(ctx.threads),
      "--image-batch-size",
      String(imageBatchSize),
    ],
    {
      cwd: PROJECT_ROOT,
      stdio: ["ignore", "ignore", "pipe"],
      env: { ...process.env, LONGCLIP_API_KEY: "" },
    },
  );
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  try {
    await waitReady(base, child, 300_000);
    const relative = (file: string) => path.relative(mediaRoot, file);
    ctx.log(`server: indexing ${seed.length} seed images`);
    for (let i = 0; i < seed.length; i += 8)
      await postIndex(base, seed.slice(i, i + 8).map(relative));
    ctx.log(`server: /search for ${durationS} s, ${connections} connections, unloaded`);
    const unloaded = await load(base, connections, durationS, "unloaded");

    ctx.log(`server: /search for ${durationS} s while POST /index batches run`);
    let stop = false;
    let ingested = 0;
    let ingestDone = false;
    const ingestLoop = (async () => {
      for (let i = 0; !stop && i < ingest.length; i += 8) {
        ingested += await postIndex(base, ingest.slice(i, i + 8).map(relative));
      }
      ingestDone = true;
    })();
    // Let the first batch get through reading and decoding, so the window sees encoding.
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const before = ingested;
    const loaded = await load(base, connections, durationS, "ingesting");
    const ingestedDuringLoad = ingested - before;
    const ingestCoveredWindow = !ingestDone;
    stop = true;
    await ingestLoop;
    if (!ingestCoveredWindow) {
      ctx.log("server: the ingest ran out of images before the window ended; give more images");
    }
    const rows = [
      row("unloaded", unloaded, 0),
      { ...row("ingesting", loaded, ingestedDuringLoad), ingestCoveredWindow },
    ];
    return {
      size: model.size,
      imageBatchSize,
      connections,
      durationS,
      rows,
      p99Ratio: loaded.latency.p99 / unloaded.latency.p99,
    };
  } catch (error) {
    throw new Error(`${(error as Error).message}\nserver stderr: ${stderr.slice(-1500)}`);
  } finally {
    child.kill("SIGTERM");
    await new Promise((resolve) => {
      if (child.exitCode !== null) resolve(undefined);
      else child.once("exit", resolve);
    });
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/**
 * measureServer at each of `imageBatchSizes`, on the same photos: the first 16 seed the
 * library, the next 64 are ingested under load. `onResult` gets the results so far after each
 * run, so an interrupted benchmark keeps what it measured.
 */
export async function measureServerBatches(
  ctx: BenchContext,
  model: BenchModel,
  photos: { dir: string; files: readonly string[] },
  searchLoad: { connections: number; durationS: number },
  imageBatchSizes: readonly number[],
  onResult: (results: ServerResult[]) => void,
): Promise<ServerResult[]> {
  const results: ServerResult[] = [];
  for (const imageBatchSize of imageBatchSizes) {
    results.push(
      await measureServer(
        ctx,
        model,
        photos.dir,
        photos.files.slice(0, 16),
        photos.files.slice(16, 80),
        searchLoad.connections,
        searchLoad.durationS,
        imageBatchSize,
      ),
    );
    onResult(results);
  }
  return results;
}
