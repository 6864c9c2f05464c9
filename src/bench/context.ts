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
