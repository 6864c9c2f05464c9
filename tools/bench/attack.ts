/**
 * What the cost benchmarks of tools/bench/bench-costs.ts share: a `longclip serve` child on
 * 127.0.0.1 whose CPU time and peak memory are read from /proc, a library seeded straight
 * through the store (random unit vectors, so thousands of items take seconds), and a /health
 * probe that measures how long the event loop keeps other clients waiting meanwhile.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { createInterface } from "node:readline";
import { PROJECT_ROOT } from "../../src/core/settings.ts";
import { PostgresStore } from "../../src/store/postgres/store.ts";
import { SqliteStore } from "../../src/store/sqlite/store.ts";
import type { ItemStore, NewItem } from "../../src/store/types.ts";

const CLOCK_TICKS_PER_S = 100;

/** User + system CPU seconds of a process (every thread), from /proc/PID/stat. */
export function cpuSeconds(pid: number): number {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return Number.NaN; // the process is gone
  }
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_S;
}

/**
 * CPU seconds (user + system) a process and its descendants have used, from /proc (Linux): a
 * native Postgres works in one child process per connection. Children already reaped are in
 * their parent's cutime/cstime.
 */
export function processTreeCpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return 0;
  const processes = new Map<number, { parent: number; ticks: number }>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      // After "comm) ": state, ppid, ... utime, stime, cutime, cstime (0-based 11 to 14).
      const fields = stat.slice(stat.lastIndexOf(") ") + 2).split(" ");
      const ticks = [11, 12, 13, 14].reduce((sum, i) => sum + Number(fields[i]), 0);
      processes.set(Number(entry), { parent: Number(fields[1]), ticks });
    } catch {
      // The process ended while we read /proc.
    }
  }
  let ticks = 0;
  const pending = [pid];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    ticks += processes.get(next)?.ticks ?? 0;
    for (const [child, info] of processes) if (info.parent === next) pending.push(child);
  }
  return ticks / CLOCK_TICKS_PER_S;
}

/** Peak resident memory of a process so far (VmHWM), in MB. */
export function peakRssMb(pid: number): number {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, "utf8");
  } catch {
    return Number.NaN; // the process is gone
  }
  const kb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN);
  return kb / 1024;
}

export interface Served {
  child: ChildProcess;
  url: string;
  pid: number;
  /** The last lines the server logged (its log is JSON lines on stdout and stderr). */
  logTail(lines?: number): string;
  stop(): Promise<void>;
}

/** `longclip serve ARGS` on a free loopback port; resolves once it listens. */
export async function serve(args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<Served> {
  const child = spawn(
    process.execPath,
    [
      path.join(PROJECT_ROOT, "bin", "longclip.js"),
      "serve",
      "--host",
      "127.0.0.1",
      "--port",
      "0",
      ...args,
    ],
    { cwd: PROJECT_ROOT, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] },
  );
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  let log = "";
  const url = await new Promise<string>((resolve, reject) => {
    const onLine = (line: string) => {
      log += `${line}\n`;
      try {
        const entry = JSON.parse(line) as { msg?: string; address?: string };
        if (entry.msg === "longclip serving" && entry.address) resolve(entry.address);
      } catch {}
    };
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on("line", onLine);
    createInterface({ input: child.stderr as NodeJS.ReadableStream }).on("line", onLine);
    exited.then(() => reject(new Error(`longclip serve exited before listening:\n${log}`)));
  });
  return {
    child,
    url,
    pid: child.pid as number,
    logTail: (lines = 20) => log.trimEnd().split("\n").slice(-lines).join("\n"),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      await exited;
    },
  };
}

/** Deterministic pseudo-random numbers in [0, 1). */
export function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Adds `count` items with random unit vectors of the store's model and metadata from `meta`,
 * through the store itself (the server must not be running on a SQLite directory meanwhile).
 */
export async function seedItems(
  store: ItemStore,
  count: number,
  meta: (n: number) => NewItem["metadata"],
  seed = 1,
): Promise<void> {
  const model = await store.model();
  if (model === undefined) throw new Error("seed a store that has a model (start serve once)");
  const random = seeded(seed);
  for (let start = 0; start < count; start += 500) {
    const batch: NewItem[] = [];
    for (let n = start; n < Math.min(count, start + 500); n++) {
      const vector = new Float32Array(model.dims).map(() => random() - 0.5);
      const norm = Math.hypot(...vector);
      batch.push({
        id: `seed-${seed}-${n}`,
        sha256: `${seed.toString(16).padStart(8, "0")}${n.toString(16).padStart(56, "0")}`,
        metadata: meta(n),
        contentType: "image/png",
        width: 64,
        height: 64,
        bytes: 100,
        source: "path",
        path: `/seed/${n}.png`,
        vector: vector.map((v) => v / norm),
      });
    }
    await store.insertItems(batch, model.modelId);
  }
}

/** The store a `serve` with these arguments uses (SQLite in `dataDir`, or Postgres at `url`). */
export async function openBenchStore(where: { dataDir?: string; url?: string }) {
  if (where.url !== undefined) {
    return PostgresStore.open({
      url: where.url,
      vectorType: "halfvec",
      m: 16,
      efConstruction: 64,
      efSearch: 64,
    });
  }
  return new SqliteStore({
    dataDir: where.dataDir as string,
    indexSaveIntervalMs: 0,
    m: 16,
    efConstruction: 64,
    efSearch: 64,
  });
}

export interface Probe {
  /** Stops probing; the slowest /health answer and how many were sent, in ms. */
  stop(): Promise<{ maxMs: number; probes: number }>;
}

/** Asks `/health` every `everyMs` (one at a time) until stopped; records the slowest answer. */
export function probeHealth(url: string, everyMs = 50): Probe {
  let running = true;
  let maxMs = 0;
  let probes = 0;
  const loop = (async () => {
    while (running) {
      const started = performance.now();
      try {
        await fetch(`${url}/health`).then((r) => r.arrayBuffer());
      } catch {
        // The server is gone; whoever waits on it reports that.
        return;
      }
      maxMs = Math.max(maxMs, performance.now() - started);
      probes++;
      await new Promise((resolve) => setTimeout(resolve, everyMs));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return { maxMs, probes };
    },
  };
}

export async function postJson(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string }> {
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: await res.text() };
}

/** Runs `requests` at once; the server's CPU seconds for them, the slowest /health meanwhile. */
export async function measureRequests(
  served: Served,
  requests: readonly (() => Promise<{ status: number; body: string }>)[],
  cpuPid: number = served.pid,
): Promise<{
  cpuS: number;
  healthMaxMs: number;
  statuses: number[];
  wallS: number;
  sample: string;
}> {
  const probe = probeHealth(served.url);
  await new Promise((resolve) => setTimeout(resolve, 100));
  const cpuBefore = cpuSeconds(cpuPid);
  const started = performance.now();
  const answers = await Promise.all(
    requests.map((send) =>
      send().catch((error: unknown) => {
        const exited = served.child.exitCode ?? served.child.signalCode;
        const why = exited === null ? String(error) : `the server exited (${exited})`;
        process.stderr.write(`${why}; its last log lines:\n${served.logTail()}\n`);
        return { status: 0, body: why };
      }),
    ),
  );
  const wallS = (performance.now() - started) / 1000;
  const cpuS = cpuSeconds(cpuPid) - cpuBefore;
  const { maxMs } = await probe.stop();
  return {
    cpuS,
    healthMaxMs: maxMs,
    statuses: answers.map((a) => a.status),
    wallS,
    sample: answers[0]?.body.slice(0, 160) ?? "",
  };
}
