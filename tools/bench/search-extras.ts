/**
 * Shared by bench:hybrid and bench:duplicates: a rendered synthetic scene set (training.synth,
 * a seed the demo model never trained on), and a library over the demo model in a temporary
 * data directory (SQLite) or the test Postgres (`--postgres`: native where it can run, else PGlite).
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { loadSettings, type Settings } from "../../src/core/settings.ts";
import type { IndexInput, IndexResult } from "../../src/core/types.ts";
import { Encoder } from "../../src/encode/encoder.ts";
import { createLibrary, type LongclipLibrary } from "../../src/library/library.ts";
import { runPython } from "./python.ts";
import { xorshift32 } from "./random.ts";
import { startPostgres, type TestPostgres } from "./test-postgres.ts";

export interface Scene {
  name: string;
  image: string;
  caption: string;
  /** The first sentence (shared by the scenes of one hard-negative group of 4). */
  short: string;
}

/** The flags both benchmarks take: the scene set, the backend, the output. */
export const SCENE_FLAGS = {
  count: { type: "string", default: "400" },
  seed: { type: "string", default: "41" },
  postgres: { type: "boolean", default: false },
  json: { type: "boolean", default: false },
  /** Where the rendered scenes are kept (default: a temp directory named by seed and count). */
  data: { type: "string" },
} as const;

/** The scenes the flags name, rendered on first use. */
export function scenesOf(flags: { count: string; seed: string; data?: string }): Promise<Scene[]> {
  const count = Number(flags.count);
  const seed = Number(flags.seed);
  return synthScenes(
    flags.data ?? path.join(os.tmpdir(), `longclip-synth-${seed}-${count}`),
    count,
    seed,
  );
}

/** Renders `count` scenes of `size` pixels with `seed` into `dir` (reused when already there). */
export async function synthScenes(
  dir: string,
  count: number,
  seed: number,
  size = 128,
): Promise<Scene[]> {
  const images = path.join(dir, "image");
  if (!existsSync(images) || readdirSync(images).length !== count) {
    rmSync(dir, { recursive: true, force: true });
    await runPython([
      "-m",
      "training",
      "synth",
      "--out",
      dir,
      "--count",
      String(count),
      "--seed",
      String(seed),
      "--layout",
      "urban1k",
      "--size",
      String(size),
    ]);
  }
  return readdirSync(images)
    .sort()
    .map((file) => {
      const name = path.parse(file).name;
      const read = (sub: string) => readFileSync(path.join(dir, sub, `${name}.txt`), "utf8").trim();
      return {
        name,
        image: path.join(images, file),
        caption: read("caption"),
        short: read("short"),
      };
    });
}

/** A deterministic generator (xorshift32) for the benchmarks' random choices, in [0, 1). */
export function seededRandom(seed: number): () => number {
  const next = xorshift32(seed * 2654435761);
  return () => next() / 0x100000000;
}

export interface BenchLibrary {
  library: LongclipLibrary;
  settings: Settings;
  backend: string;
  close(): Promise<void>;
}

/** The demo model's library on a fresh store: SQLite in a temp dir, or the test Postgres. */
export async function openBenchLibrary(
  usePostgres: boolean,
  extra: Partial<Settings> = {},
): Promise<BenchLibrary> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "longclip-bench-extras-"));
  let postgres: TestPostgres | undefined;
  if (usePostgres) postgres = await startPostgres();
  const settings = loadSettings({
    dataDir,
    indexSaveIntervalMs: 0,
    ...(postgres ? { databaseUrl: postgres.url } : {}),
    ...extra,
  });
  const encoder = await Encoder.load(settings.modelDir, settings);
  const library = await createLibrary(settings, encoder);
  return {
    library,
    settings,
    backend: postgres
      ? `Postgres + pgvector (${postgres.kind === "native" ? "native" : "PGlite"})`
      : "SQLite + HNSW",
    async close() {
      await library.close();
      await postgres?.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Indexes inputs in batches, printing progress; throws on a failed item. */
export async function indexAll(
  library: LongclipLibrary,
  inputs: readonly IndexInput[],
  batch = 32,
): Promise<IndexResult[]> {
  const results: IndexResult[] = [];
  for (let start = 0; start < inputs.length; start += batch) {
    const done = await library.index(inputs.slice(start, start + batch));
    for (const result of done) {
      if (result.status === "failed") {
        throw new Error(`indexing failed: ${result.id}: ${JSON.stringify(result.error)}`);
      }
    }
    results.push(...done);
    process.stderr.write(`indexed ${results.length}/${inputs.length}\r`);
  }
  process.stderr.write("\n");
  return results;
}
