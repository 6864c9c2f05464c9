/** What every bench:perf section shares: where files go, how long to measure, progress. */
import { cpus, loadavg } from "node:os";

export interface BenchContext {
  /** Scratch directory for generated inputs (artifacts/perf/work by default). */
  workDir: string;
  /** Model directories are created under here, one per size. */
  modelsDir: string;
  quick: boolean;
  /** Measured runs per configuration (median reported); warm-up runs come on top. */
  runs: number;
  warmup: number;
  threads: number;
  log(message: string): void;
}

export function loadAverage(): [number, number, number] {
  const [a = 0, b = 0, c = 0] = loadavg();
  return [Number(a.toFixed(2)), Number(b.toFixed(2)), Number(c.toFixed(2))];
}

export function cpuModel(): string {
  return cpus()[0]?.model.trim() ?? "unknown";
}

/** "ViT-B/16" → "B16", for directory names and table labels. */
export function sizeTag(size: string): string {
  return size.replace(/^ViT-/, "").replace("/", "");
}

/** CPU time of the whole process (every thread, libvips' included) in milliseconds. */
export function processCpuMs(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1000;
}

/** An Encoder logger that keeps the benchmark's output to its tables. */
export const quietLogger = {
  info: () => {},
  warn: (message: string) => process.stderr.write(`${message}\n`),
};
