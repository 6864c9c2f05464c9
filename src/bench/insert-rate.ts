/**
 * bench:perf "inserts": HNSW insert rate as the index grows, at ViT-L/14's 768 dims, against
 * the rate a GPU encoder produces embeddings. hnswlib-node inserts one vector per call on the
 * calling thread, so the rate per window is also how long each insert blocks the event loop.
 */
import { HnswIndex } from "../vector-index/hnsw.ts";
import type { BenchContext } from "./context.ts";
import { processCpuMs } from "./preprocess.ts";
import { percentile } from "./stats.ts";
import { clusteredUnitVectors } from "./vectors.ts";

export interface InsertWindow {
  /** Index size when the window ended. */
  size: number;
  vectorsPerS: number;
  /** Inserts per second of process CPU time: what one thread does when it has a core. */
  vectorsPerCpuS: number;
  p99Ms: number;
  maxMs: number;
}

export interface InsertRateResult {
  count: number;
  dims: number;
  m: number;
  efConstruction: number;
  windows: InsertWindow[];
  totalSeconds: number;
}

/** Inserts `count` clustered unit vectors one by one, timing each window of `window` inserts. */
export function measureInsertRate(
  ctx: BenchContext,
  options: { count: number; dims: number; m: number; efConstruction: number; window: number },
): InsertRateResult {
  const { count, dims, m, efConstruction, window } = options;
  ctx.log(`inserts: generating ${count.toLocaleString("en-US")} clustered ${dims}-d vectors`);
  const data = clusteredUnitVectors(count, dims, { clusters: 1000, spread: 0.05 }, 31, 1);
  const index = HnswIndex.create({ dims, m, efConstruction, efSearch: 64, capacity: count });
  const windows: InsertWindow[] = [];
  const started = performance.now();
  let windowStart = started;
  let windowCpu = processCpuMs();
  let times: number[] = [];
  for (let i = 0; i < count; i++) {
    const before = performance.now();
    index.add(i, data.subarray(i * dims, (i + 1) * dims));
    const after = performance.now();
    times.push(after - before);
    if ((i + 1) % window === 0 || i + 1 === count) {
      const cpu = processCpuMs();
      windows.push({
        size: i + 1,
        vectorsPerS: times.length / ((after - windowStart) / 1000),
        vectorsPerCpuS: times.length / ((cpu - windowCpu) / 1000),
        p99Ms: percentile(times, 99),
        maxMs: Math.max(...times),
      });
      ctx.log(
        `inserts: ${(i + 1).toLocaleString("en-US")} vectors, ${windows.at(-1)?.vectorsPerS.toFixed(0)}/s in the last window, ${windows.at(-1)?.vectorsPerCpuS.toFixed(0)} per CPU second`,
      );
      times = [];
      windowStart = after;
      windowCpu = cpu;
    }
  }
  return {
    count,
    dims,
    m,
    efConstruction,
    windows,
    totalSeconds: (performance.now() - started) / 1000,
  };
}
