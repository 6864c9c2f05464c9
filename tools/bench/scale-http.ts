/**
 * The HTTP part of bench:scale: a real `longclip serve` on the benchmark's library (the cached
 * SQLite directory, or the Postgres database with one of its indexes), the projected demo
 * model (scale-model.ts) embedding each text query: p50/p99 of `POST /search` sent one at a
 * time, requests per second with 8 connections (autocannon), and the memory the server holds.
 * Every request carries a text never sent before, so the query-embedding cache never answers.
 */
import { readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { type Served, serve } from "./attack.ts";
import { percentile } from "./stats.ts";

/** The part of autocannon's result read here (the package ships no types). */
interface LoadResult {
  requests: { average: number; total: number };
  non2xx: number;
  errors: number;
  timeouts: number;
}
const autocannon = createRequire(import.meta.url)("autocannon") as (
  options: Record<string, unknown>,
) => Promise<LoadResult>;

export interface HttpRow {
  backend: string;
  p50Ms: number;
  p99Ms: number;
  requestsPerS: number;
  connections: number;
  failed: number;
  /** Resident memory of the serve process tree, MB. */
  serveRssMb: number;
  /** Proportional memory of the Postgres server's processes (shared buffers once), MB. */
  postgresPssMb?: number;
}

const SUBJECTS = [
  "a large black triangle on the left and a small orange hexagon above it",
  "two blue circles side by side on a plain ivory background",
  "a green square in the top right corner next to a red star",
  "three yellow shapes in a row, the middle one the largest",
];

function queryText(serial: number): string {
  return `${SUBJECTS[serial % SUBJECTS.length]}, picture ${serial}`;
}

/** Sum of one /proc memory field (kB) over `pid` and its descendants, in MB. */
export function treeMemoryMb(pid: number, field: "Rss" | "Pss"): number {
  const parents = new Map<number, number>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      parents.set(Number(entry), Number(stat.slice(stat.lastIndexOf(") ") + 2).split(" ")[1]));
    } catch {
      // The process ended while /proc was read.
    }
  }
  let kb = 0;
  const pending = [pid];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    try {
      const rollup = readFileSync(`/proc/${next}/smaps_rollup`, "utf8");
      kb += Number(new RegExp(`^${field}:\\s+(\\d+)`, "m").exec(rollup)?.[1] ?? 0);
    } catch {
      // Gone, or not readable: counted as nothing.
    }
    for (const [child, parent] of parents) if (parent === next) pending.push(child);
  }
  return kb / 1024;
}

async function search(url: string, query: string): Promise<void> {
  const response = await fetch(`${url}/search`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ query, k: 10 }),
  });
  if (!response.ok) throw new Error(`POST /search: ${response.status} ${await response.text()}`);
  await response.arrayBuffer();
}

async function whenReady(url: string, server: Served, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (server.child.exitCode !== null) throw new Error("longclip serve exited");
    const response = await fetch(`${url}/ready`).catch(() => undefined);
    if (response?.ok) return;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  throw new Error(`longclip serve was not ready within ${timeoutMs / 1000} s`);
}

/**
 * Starts `longclip serve` with `args`, measures `/search`, stops it. `postgresPid` is the
 * Postgres server's process (when it runs on this machine) for its memory.
 */
export async function measureHttp(
  backend: string,
  args: readonly string[],
  options: { queries: number; seconds: number; connections: number; postgresPid?: number },
  log: (message: string) => void,
): Promise<HttpRow> {
  const server = await serve(args, { LONGCLIP_API_KEY: "" });
  try {
    await whenReady(server.url, server, 600_000);
    log(
      `http: ${backend}: serving at ${server.url}; warming up (the first search loads the index)`,
    );
    let serial = 0;
    for (let i = 0; i < 10; i++) await search(server.url, queryText(serial++));
    const times: number[] = [];
    for (let i = 0; i < options.queries; i++) {
      const started = performance.now();
      await search(server.url, queryText(serial++));
      times.push(performance.now() - started);
    }
    log(`http: ${backend}: ${options.connections} connections for ${options.seconds} s`);
    const load = await autocannon({
      url: `${server.url}/search`,
      connections: options.connections,
      duration: options.seconds,
      requests: [
        {
          method: "POST",
          path: "/search",
          headers: { "content-type": "application/json" },
          setupRequest: (request: Record<string, unknown>) => ({
            ...request,
            body: JSON.stringify({ query: queryText(serial++), k: 10 }),
          }),
        },
      ],
    });
    return {
      backend,
      p50Ms: percentile(times, 50),
      p99Ms: percentile(times, 99),
      requestsPerS: load.requests.average,
      connections: options.connections,
      failed: load.non2xx + load.errors + load.timeouts,
      serveRssMb: treeMemoryMb(server.pid, "Rss"),
      ...(options.postgresPid !== undefined
        ? { postgresPssMb: treeMemoryMb(options.postgresPid, "Pss") }
        : {}),
    };
  } finally {
    await server.stop();
  }
}
