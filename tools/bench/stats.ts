/** Timing and summary helpers for bench:perf. */

export function median(values: readonly number[]): number {
  return percentile(values, 50);
}

/** Linear-interpolated percentile (0..100) of `values`; NaN for an empty list. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = (Math.min(100, Math.max(0, p)) / 100) * (sorted.length - 1);
  const low = Math.floor(rank);
  const high = Math.ceil(rank);
  const a = sorted[low] as number;
  const b = sorted[high] as number;
  return a + (b - a) * (rank - low);
}

export interface Timing {
  /** Seconds of each measured run (warm-up runs excluded). */
  seconds: number[];
  medianSeconds: number;
}

async function secondsOf(fn: () => Promise<unknown> | unknown): Promise<number> {
  const started = performance.now();
  await fn();
  return (performance.now() - started) / 1000;
}

function timing(seconds: number[]): Timing {
  return { seconds, medianSeconds: median(seconds) };
}

/** Runs `fn` `warmup` times unmeasured, then `runs` times measured. */
export async function timeRuns(
  fn: () => Promise<unknown> | unknown,
  warmup: number,
  runs: number,
): Promise<Timing> {
  for (let i = 0; i < warmup; i++) await fn();
  const seconds: number[] = [];
  for (let i = 0; i < runs; i++) seconds.push(await secondsOf(fn));
  return timing(seconds);
}

/**
 * Times `a` and `b` in turn (a, b, a, b, ...) after `warmup` unmeasured rounds, so a change in
 * machine load during the measurement hits both alike and their ratio stays comparable.
 */
export async function alternateRuns(
  a: () => Promise<unknown> | unknown,
  b: () => Promise<unknown> | unknown,
  warmup: number,
  runs: number,
): Promise<[Timing, Timing]> {
  for (let i = 0; i < warmup; i++) {
    await a();
    await b();
  }
  const secondsA: number[] = [];
  const secondsB: number[] = [];
  for (let i = 0; i < runs; i++) {
    secondsA.push(await secondsOf(a));
    secondsB.push(await secondsOf(b));
  }
  return [timing(secondsA), timing(secondsB)];
}

export { cosine } from "../../src/vector-index/exact.ts";
