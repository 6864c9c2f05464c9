/**
 * bench:perf "inserts": HNSW insert rate at ViT-L/14's 768 dims against the rate a GPU encoder
 * produces embeddings, and what inserting does to the event loop, in one run:
 *   - in-thread: HnswIndex.add on the calling thread in batches (the path before shards), the
 *     event loop free only between batches;
 *   - workers: ShardedHnsw (vector-index/hnsw-shards.ts) with 1 and N shards, batches posted
 *     with a few in flight, as the ingest pipeline does.
 * An event-loop delay histogram (perf_hooks) runs during each; CPU is the whole process's
 * (every thread). Each worker build then answers queries (recall@10 against exact search,
 * queries/s) and filtered queries (10% of labels allowed, sent as a bitmap).
 */
import { monitorEventLoopDelay } from "node:perf_hooks";
import { setImmediate as tick } from "node:timers/promises";
import { DEFAULT_SETTINGS } from "../../src/core/settings.ts";
import { HnswIndex } from "../../src/vector-index/hnsw.ts";
import { ShardedHnsw } from "../../src/vector-index/hnsw-shards.ts";
import { type BenchContext, processCpuMs } from "./context.ts";
import { clusteredUnitVectors, exactTopK, meanRecall } from "./vectors.ts";

export interface InsertWindow {
  /** Index size when the window ended. */
  size: number;
  vectorsPerS: number;
  /** Inserts per second of process CPU time (all threads). */
  vectorsPerCpuS: number;
}

export interface InsertPathResult {
  path: "in-thread" | "workers";
  shards: number;
  count: number;
  vectorsPerS: number;
  vectorsPerCpuS: number;
  windows: InsertWindow[];
  /** Event-loop delay while inserting (perf_hooks.monitorEventLoopDelay, 10 ms resolution). */
  loopDelayP99Ms: number;
  loopDelayMaxMs: number;
  /** Worker builds: k=10 queries against exact search, unfiltered and with a 10% filter. */
  search?: SearchFigures;
}

export interface SearchFigures {
  queriesPerS: number;
  /** Process CPU (every thread) per query: steadier than queries/s on a loaded machine. */
  cpuMsPerQuery: number;
  recallAt10: number;
  filteredQueriesPerS: number;
}

export interface InsertRateResult {
  count: number;
  dims: number;
  m: number;
  efConstruction: number;
  batch: number;
  paths: InsertPathResult[];
  totalSeconds: number;
}

export interface InsertRateOptions {
  count: number;
  dims: number;
  m: number;
  efConstruction: number;
  /** Vectors per insert call (an ingest chunk). */
  batch: number;
  /** Shard counts of the worker runs, e.g. [1, 2]. */
  shards: number[];
  /** Vectors the in-thread run inserts (it is as slow as 1 shard; 0 skips it). */
  inThreadCount: number;
  queries: number;
}

const WINDOWS = 5;
/** The product's default (--hnsw-ef-search). */
const EF_SEARCH = DEFAULT_SETTINGS.hnswEfSearch;

/** Counts throughput per window of the run. */
class Progress {
  readonly windows: InsertWindow[] = [];
  private readonly started = performance.now();
  private readonly startCpu = processCpuMs();
  private windowStart = this.started;
  private windowCpu = this.startCpu;
  private windowSize = 0;

  constructor(
    private readonly ctx: BenchContext,
    private readonly label: string,
    private readonly count: number,
  ) {}

  done(size: number): void {
    const every = Math.max(1, Math.floor(this.count / WINDOWS));
    if (size - this.windowSize < every && size !== this.count) return;
    const now = performance.now();
    const cpu = processCpuMs();
    const n = size - this.windowSize;
    this.windows.push({
      size,
      vectorsPerS: n / ((now - this.windowStart) / 1000),
      vectorsPerCpuS: n / ((cpu - this.windowCpu) / 1000),
    });
    this.ctx.log(
      `inserts ${this.label}: ${size.toLocaleString("en-US")} vectors, ${this.windows.at(-1)?.vectorsPerS.toFixed(0)}/s, ${this.windows.at(-1)?.vectorsPerCpuS.toFixed(0)} per CPU second in the last window`,
    );
    this.windowStart = now;
    this.windowCpu = cpu;
    this.windowSize = size;
  }

  totals(): { vectorsPerS: number; vectorsPerCpuS: number } {
    return {
      vectorsPerS: this.count / ((performance.now() - this.started) / 1000),
      vectorsPerCpuS: this.count / ((processCpuMs() - this.startCpu) / 1000),
    };
  }
}

async function withLoopDelay<T>(
  run: () => Promise<T>,
): Promise<{ value: T; p99Ms: number; maxMs: number }> {
  const histogram = monitorEventLoopDelay({ resolution: 10 });
  histogram.enable();
  try {
    const value = await run();
    return { value, p99Ms: histogram.percentile(99) / 1e6, maxMs: histogram.max / 1e6 };
  } finally {
    histogram.disable();
  }
}

async function inThread(
  ctx: BenchContext,
  data: Float32Array,
  options: InsertRateOptions,
): Promise<InsertPathResult> {
  const { dims, m, efConstruction, batch } = options;
  const count = options.inThreadCount;
  const index = HnswIndex.create({ dims, m, efConstruction, efSearch: EF_SEARCH, capacity: count });
  const progress = new Progress(ctx, "in-thread", count);
  const { p99Ms, maxMs } = await withLoopDelay(async () => {
    for (let start = 0; start < count; start += batch) {
      const end = Math.min(count, start + batch);
      for (let i = start; i < end; i++) index.add(i, data.subarray(i * dims, (i + 1) * dims));
      progress.done(end);
      await tick();
    }
  });
  return {
    path: "in-thread",
    shards: 1,
    count,
    ...progress.totals(),
    windows: progress.windows,
    loopDelayP99Ms: p99Ms,
    loopDelayMaxMs: maxMs,
  };
}

async function workers(
  ctx: BenchContext,
  data: Float32Array,
  shards: number,
  queries: Float32Array,
  exact: number[][],
  options: InsertRateOptions,
): Promise<InsertPathResult> {
  const { count, dims, m, efConstruction, batch } = options;
  const index = new ShardedHnsw(
    { dims, m, efConstruction, efSearch: EF_SEARCH, capacity: count },
    shards,
  );
  try {
    await index.opened;
    const progress = new Progress(ctx, `${shards} shard(s)`, count);
    // Enough batches in flight that no shard waits for the next one.
    const window = 2 * shards;
    const { p99Ms, maxMs } = await withLoopDelay(async () => {
      const inFlight: Promise<void>[] = [];
      for (let start = 0; start < count; start += batch) {
        const end = Math.min(count, start + batch);
        const labels = Array.from({ length: end - start }, (_, i) => start + i);
        inFlight.push(
          index.add(labels, data.subarray(start * dims, end * dims)).then(() => progress.done(end)),
        );
        if (inFlight.length >= window) await inFlight.shift();
      }
      await Promise.all(inFlight);
    });
    const totals = progress.totals();
    const search = await measureSearch(index, dims, queries, exact, count);
    ctx.log(
      `inserts ${shards} shard(s): recall@10 ${search.recallAt10.toFixed(3)}, ${search.queriesPerS.toFixed(0)} queries/s, filtered ${search.filteredQueriesPerS.toFixed(0)}/s`,
    );
    return {
      path: "workers",
      shards,
      count,
      ...totals,
      windows: progress.windows,
      loopDelayP99Ms: p99Ms,
      loopDelayMaxMs: maxMs,
      search,
    };
  } finally {
    await index.close();
  }
}

async function measureSearch(
  index: ShardedHnsw,
  dims: number,
  queries: Float32Array,
  exact: number[][],
  count: number,
): Promise<SearchFigures> {
  const n = queries.length / dims;
  const found: number[][] = [];
  const cpu = processCpuMs();
  let started = performance.now();
  for (let q = 0; q < n; q++) {
    const hits = await index.search(queries.subarray(q * dims, (q + 1) * dims), 10);
    found.push(hits.map((hit) => hit.label));
  }
  const queriesPerS = n / ((performance.now() - started) / 1000);
  const cpuMsPerQuery = (processCpuMs() - cpu) / n;
  // A pseudo-random 10% of the labels, as a metadata filter would pick (independent of the
  // label, so of the shard).
  const allowed: number[] = [];
  for (let label = 0; label < count; label++) {
    if (Math.imul(label + 1, 2654435761) >>> 0 < 0x1999_9999) allowed.push(label);
  }
  started = performance.now();
  for (let q = 0; q < n; q++) {
    await index.search(queries.subarray(q * dims, (q + 1) * dims), 10, allowed);
  }
  const filteredQueriesPerS = n / ((performance.now() - started) / 1000);
  return { queriesPerS, cpuMsPerQuery, recallAt10: meanRecall(found, exact), filteredQueriesPerS };
}

/** Inserts `count` clustered unit vectors by each path (see the top). */
export async function measureInsertRate(
  ctx: BenchContext,
  options: InsertRateOptions,
): Promise<InsertRateResult> {
  const { count, dims } = options;
  const started = performance.now();
  ctx.log(`inserts: generating ${count.toLocaleString("en-US")} clustered ${dims}-d vectors`);
  const spec = { clusters: 1000, spread: 0.05 };
  const data = clusteredUnitVectors(count, dims, spec, 31, 1);
  const queries = clusteredUnitVectors(options.queries, dims, spec, 37, 1);
  ctx.log(`inserts: exact top-10 of ${options.queries} queries (brute force)`);
  const exact = exactTopK(data, dims, queries, 10);
  const paths: InsertPathResult[] = [];
  if (options.inThreadCount > 0) paths.push(await inThread(ctx, data, options));
  for (const shards of options.shards) {
    paths.push(await workers(ctx, data, shards, queries, exact, options));
  }
  return {
    count,
    dims,
    m: options.m,
    efConstruction: options.efConstruction,
    batch: options.batch,
    paths,
    totalSeconds: (performance.now() - started) / 1000,
  };
}
