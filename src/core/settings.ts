/**
 * Every setting and limit of the product in one place. Each has a default, an environment
 * variable (LONGCLIP_*) and a CLI flag (kebab-case of the key, wired in src/cli).
 */
import { availableParallelism } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");

export type Device = "cpu" | "cuda" | "auto";

/** Choices of the settings that are one of a few words. */
const CHOICES: Partial<Record<keyof Settings, readonly string[]>> = {
  pgVectorType: ["halfvec", "vector"],
  jobWorker: ["auto", "on", "off"],
  preprocess: ["exact", "fast"],
  nativeJpeg: ["on", "off"],
  keepUploadFilename: ["on", "off"],
  logFormat: ["auto", "pretty", "json"],
};

/** Settings that are a fraction from 0 to 1 rather than an integer. */
const FRACTION_KEYS = new Set<keyof Settings>(["nearDuplicateThreshold", "minDuplicateThreshold"]);

export interface ImageLimits {
  /** Largest accepted encoded image, in bytes. */
  maxImageBytes: number;
  /** Largest accepted decoded image, in pixels (width × height): decompression bombs. */
  maxImagePixels: number;
}

export interface Settings extends ImageLimits {
  modelDir: string;
  dataDir: string;
  host: string;
  port: number;
  device: Device;
  /** ONNX Runtime intra-op threads; 0 lets ONNX Runtime choose. */
  threads: number;
  /** Images per encoder call. */
  imageBatchSize: number;
  /**
   * How images are resized for the vision tower: `exact` reproduces the official (Pillow)
   * pixels; `fast` lets libvips shrink JPEG/WebP while decoding and resize, several times
   * cheaper and a little different (src/preprocess). Part of the library's model id.
   */
  preprocess: "exact" | "fast";
  /** Worker threads that decode and resize images; 0 = one per core but one (at least 1). */
  preprocessWorkers: number;
  /**
   * Decode plain JPEGs with the optional native libjpeg-turbo addon where its pixels are
   * byte-identical to sharp's (src/preprocess/jpeg-native.ts); `off` leaves all to sharp.
   */
  nativeJpeg: "on" | "off";
  /** Texts per encoder call. */
  textBatchSize: number;
  apiKey: string | undefined;
  /** Files under this directory may be indexed by path (POST /index JSON body); unset disables it. */
  mediaRoot: string | undefined;
  maxBatchItems: number;
  maxRequestBytes: number;
  maxQueryChars: number;
  maxK: number;
  /** Pending embedding jobs before the server answers 429. */
  maxQueueDepth: number;
  /** Query embeddings kept for repeated queries (least recently used go first); 0 turns it off. */
  queryCacheSize: number;
  hnswM: number;
  hnswEfConstruction: number;
  hnswEfSearch: number;
  /**
   * HNSW shards of the embedded backend, each an index on its own worker thread: inserts scale
   * with the shards (given the cores), a search visits every shard. 0 = one per core.
   */
  hnswShards: number;
  /** Milliseconds between periodic saves of the HNSW index. */
  indexSaveIntervalMs: number;
  /** postgres://… to keep the library in PostgreSQL + pgvector instead of dataDir (SQLite). */
  databaseUrl: string | undefined;
  /** The type pgvector's HNSW index stores: halfvec (half the memory) or vector. */
  pgVectorType: "halfvec" | "vector";
  /** Whether `serve` also runs jobs: auto = yes on SQLite, no on Postgres (run workers). */
  jobWorker: "auto" | "on" | "off";
  /** How long a worker holds a claimed chunk before another may take it over (renewed while it works). */
  jobLeaseMs: number;
  /** Files in one job. */
  maxJobItems: number;
  /** Largest decoded image for `POST /search/image` (lower than maxImagePixels: a query needs no 50 Mpx). */
  maxQueryImagePixels: number;
  /** Pixels decoded at once across all requests (ingest, image search, thumbnails): bounds decoding memory. */
  maxDecodePixels: number;
  /** Bytes of request bodies and image reads held in memory at once, across all requests. */
  maxBufferedBytes: number;
  /** Largest JSON request body (multipart uploads are bounded by maxRequestBytes). */
  maxJsonBytes: number;
  /** A request must arrive completely within this time (0: no limit). */
  requestTimeoutMs: number;
  /** A request's headers must arrive within this time. */
  headersTimeoutMs: number;
  /** A kept-alive connection idle between requests for this long is closed. */
  idleTimeoutMs: number;
  /** Open connections at once; more are closed at once. */
  maxConnections: number;
  /** Host names (besides IP literals, localhost and --host) this server answers to; comma-separated, `*` for any. */
  allowedHosts: string | undefined;
  /** Origins (scheme://host:port) whose pages may call this server (CORS); comma-separated, `*` for any. */
  corsOrigins: string | undefined;
  /** A file holding the API key (keeps it out of `ps` and the environment). */
  apiKeyFile: string | undefined;
  /** Longest a SIGTERM/SIGINT shutdown may take before the process exits anyway. */
  shutdownTimeoutMs: number;
  /**
   * Metadata keys (comma-separated) that keyword and hybrid search look in. Every top-level
   * string (or array of strings) is indexed, so changing this needs no re-indexing.
   */
  textFields: string;
  /** Keep an upload's file name as metadata `filename` (unless the metadata has one). */
  keepUploadFilename: "on" | "off";
  /** Candidates each ranking (vector, keyword) gives hybrid search before fusion. */
  hybridCandidates: number;
  /** ANN neighbours looked at per item when grouping near-duplicates (GET /duplicates). */
  duplicateNeighbours: number;
  /**
   * POST /index flags a new item whose image embedding is at least this similar (cosine) to a
   * stored one (`near_duplicate_of`); 0 turns the check off.
   */
  nearDuplicateThreshold: number;
  /**
   * The lowest threshold GET /duplicates accepts: one scan keeps every neighbour pair at least
   * this similar and answers every threshold above it, so it bounds the pairs kept in memory.
   */
  minDuplicateThreshold: number;
  /**
   * Values one metadata filter may name, all keys together (each `$in`/`$nin` element counts):
   * bounds what one search request costs to parse and bind.
   */
  maxFilterValues: number;
  /** Sentence windows one text is read in with `long_query: "chunk"` (the rest is cut and flagged). */
  maxQueryWindows: number;
  /** Text-tower runs (texts and their windows) one search request may need; more is refused. */
  maxRequestWindows: number;
  /**
   * Worker threads that run the embedded backend's filtered and keyword queries (each with its
   * own SQLite connection), so a costly filter never holds up the event loop.
   */
  sqliteReadWorkers: number;
  /**
   * The server log: `pretty` (a short line per event, for a person), `json` (a JSON object
   * per line, for a log collector) or `auto` (pretty on a terminal, JSON otherwise).
   */
  logFormat: "auto" | "pretty" | "json";
}

export const DEFAULT_SETTINGS: Settings = {
  modelDir: path.join(PROJECT_ROOT, "models", "demo"),
  dataDir: path.join(PROJECT_ROOT, "data"),
  host: "127.0.0.1",
  port: 8080,
  device: "cpu",
  threads: 0,
  imageBatchSize: 8,
  preprocess: "exact",
  preprocessWorkers: 0,
  nativeJpeg: "on",
  textBatchSize: 32,
  apiKey: undefined,
  mediaRoot: undefined,
  maxImageBytes: 20 * 1024 * 1024,
  maxImagePixels: 50_000_000,
  maxBatchItems: 64,
  maxRequestBytes: 200 * 1024 * 1024,
  maxQueryChars: 10_000,
  maxK: 1000,
  maxQueueDepth: 256,
  queryCacheSize: 1024,
  hnswM: 16,
  hnswEfConstruction: 200,
  hnswEfSearch: 100,
  hnswShards: 1,
  indexSaveIntervalMs: 30_000,
  databaseUrl: undefined,
  pgVectorType: "halfvec",
  jobWorker: "auto",
  jobLeaseMs: 60_000,
  maxJobItems: 1_000_000,
  maxQueryImagePixels: 25_000_000,
  maxDecodePixels: 100_000_000,
  maxBufferedBytes: 512 * 1024 * 1024,
  maxJsonBytes: 8 * 1024 * 1024,
  requestTimeoutMs: 120_000,
  headersTimeoutMs: 20_000,
  idleTimeoutMs: 10_000,
  maxConnections: 1024,
  allowedHosts: undefined,
  corsOrigins: undefined,
  apiKeyFile: undefined,
  // Under the 30 s grace Kubernetes and `docker stop --time 30` give before SIGKILL.
  shutdownTimeoutMs: 25_000,
  textFields: "caption,filename,path,tags",
  keepUploadFilename: "on",
  hybridCandidates: 100,
  duplicateNeighbours: 10,
  nearDuplicateThreshold: 0,
  minDuplicateThreshold: 0.5,
  maxFilterValues: 256,
  maxQueryWindows: 8,
  maxRequestWindows: 32,
  sqliteReadWorkers: 2,
  logFormat: "auto",
};

/** The shard count `hnswShards` means (0: one per core). */
export function hnswShardCount(setting: number): number {
  return setting > 0 ? setting : availableParallelism();
}

/** LONGCLIP_MODEL_DIR for modelDir, LONGCLIP_MAX_IMAGE_BYTES for maxImageBytes, ... */
export function envName(key: keyof Settings): string {
  return `LONGCLIP_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
}

/**
 * The variables container platforms (Heroku, Cloud Run, Fly, Render, ...) set, honoured when
 * the LONGCLIP_* variable of the same setting is unset or empty. Not HOST: shells export it
 * with the machine's name, which would silently move the server.
 */
export const PLATFORM_ENV: Partial<Record<keyof Settings, string>> = { port: "PORT" };

/** Settings from defaults, then environment variables, then explicit overrides (CLI flags). */
export function loadSettings(
  overrides: Partial<Settings> = {},
  env: NodeJS.ProcessEnv = process.env,
): Settings {
  const settings: Settings = { ...DEFAULT_SETTINGS };
  const target = settings as unknown as Record<string, unknown>;
  for (const key of Object.keys(DEFAULT_SETTINGS) as (keyof Settings)[]) {
    for (const name of [envName(key), PLATFORM_ENV[key]]) {
      const raw = name === undefined ? undefined : env[name];
      if (raw === undefined || raw === "") continue;
      target[key] = parseSetting(key, raw, name);
      break;
    }
  }
  for (const [key, value] of Object.entries(overrides)) {
    if (value !== undefined) target[key] = value;
  }
  return settings;
}

const STRING_KEYS = new Set<keyof Settings>([
  "modelDir",
  "dataDir",
  "host",
  "apiKey",
  "mediaRoot",
  "databaseUrl",
  "allowedHosts",
  "corsOrigins",
  "apiKeyFile",
  "textFields",
]);

/** A setting from its text; errors name `variable`, the variable the text came from. */
export function parseSetting(
  key: keyof Settings,
  raw: string,
  variable: string = envName(key),
): Settings[keyof Settings] {
  if (key === "device") {
    if (raw !== "cpu" && raw !== "cuda" && raw !== "auto") {
      throw new Error(`${variable} must be cpu, cuda or auto, not "${raw}"`);
    }
    return raw;
  }
  const choices = CHOICES[key];
  if (choices !== undefined) {
    if (!choices.includes(raw)) {
      throw new Error(`${variable} must be ${choices.join(", ")}, not "${raw}"`);
    }
    return raw as Settings[keyof Settings];
  }
  if (STRING_KEYS.has(key))
    return key.endsWith("Dir") || key === "mediaRoot" || key === "apiKeyFile"
      ? path.resolve(raw)
      : raw;
  const value = Number(raw);
  if (FRACTION_KEYS.has(key)) {
    if (raw.trim() === "" || !Number.isFinite(value) || value < 0 || value > 1) {
      throw new Error(`${variable} must be a number from 0 to 1, not "${raw}"`);
    }
    return value;
  }
  if (!Number.isFinite(value) || value < 0 || !Number.isInteger(value)) {
    throw new Error(`${variable} must be a non-negative integer, not "${raw}"`);
  }
  return value;
}
