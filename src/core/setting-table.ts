/**
 * The settings table: one record per setting of the product, with its default, the kind of
 * value it takes, where it applies, its environment variable, its CLI flag and its help. Data
 * only; ./settings.ts makes the `Settings` type, the defaults and the environment parsing from
 * it, src/cli/settings.ts the flags and their help.
 */

/**
 * How a setting's text is read: `integer` (from `min`, default 0), `fraction` (0 to 1), `choice`
 * (one of `choices`), `path` (resolved against the working directory) or `text` (as given).
 */
export type SettingKind = "integer" | "fraction" | "choice" | "path" | "text";

/**
 * Which commands take a setting as a flag: `library` the library and encoder settings (every
 * command that opens a library), `server` those only the HTTP server uses (`serve`), `pull`
 * those of downloading models (`pull`).
 */
export type SettingScope = "library" | "server" | "pull";

export interface SettingSpec {
  /** A `path` default is relative to the checkout, or to the home directory after `~/`. */
  readonly default: number | string | undefined;
  readonly kind: SettingKind;
  readonly choices?: readonly string[];
  /** The smallest integer accepted (default 0). */
  readonly min?: number;
  readonly scope: SettingScope;
  /** The environment variable. */
  readonly env: string;
  /** A variable container platforms set, honoured when `env` is unset or empty. */
  readonly platformEnv?: string;
  /** The CLI flag, without its dashes. */
  readonly flag: string;
  /** What the flag's value is called in --help (default: `n`, `dir`, or the choices). */
  readonly placeholder?: string;
  /** One line for --help. */
  readonly help: string;
  /** The flag may be given more than once; the values join as a comma-separated list. */
  readonly repeatable?: boolean;
}

const MiB = 1024 * 1024;

export const SETTINGS = {
  modelDir: {
    default: "models/demo",
    kind: "path",
    scope: "library",
    env: "LONGCLIP_MODEL_DIR",
    flag: "model",
    help: "model directory",
  },
  dataDir: {
    default: "data",
    kind: "path",
    scope: "library",
    env: "LONGCLIP_DATA_DIR",
    flag: "data",
    help: "data directory: SQLite database, HNSW index, uploaded originals",
  },
  host: {
    default: "127.0.0.1",
    kind: "text",
    scope: "server",
    env: "LONGCLIP_HOST",
    // Not HOST: shells export it with the machine's name, which would silently move the server.
    flag: "host",
    placeholder: "host",
    help: "address to listen on",
  },
  port: {
    default: 8080,
    kind: "integer",
    scope: "server",
    env: "LONGCLIP_PORT",
    platformEnv: "PORT",
    flag: "port",
    help: "port to listen on",
  },
  device: {
    default: "cpu",
    kind: "choice",
    choices: ["cpu", "cuda", "auto"],
    scope: "library",
    env: "LONGCLIP_DEVICE",
    flag: "device",
    placeholder: "device",
    help: "where the model runs: cpu, cuda (an error if CUDA is not usable) or auto (CUDA, else CPU)",
  },
  threads: {
    default: 0,
    kind: "integer",
    scope: "library",
    env: "LONGCLIP_THREADS",
    flag: "threads",
    help: "ONNX Runtime intra-op threads of each tower; 0 lets ONNX Runtime choose",
  },
  imageBatchSize: {
    default: 8,
    kind: "integer",
    min: 1,
    scope: "library",
    env: "LONGCLIP_IMAGE_BATCH_SIZE",
    flag: "image-batch-size",
    help: "images per encoder call",
  },
  preprocess: {
    default: "exact",
    kind: "choice",
    // Part of the library's model id: switching is a reindex.
    choices: ["exact", "fast"],
    scope: "library",
    env: "LONGCLIP_PREPROCESS",
    flag: "preprocess",
    help: "image resizing: exact reproduces the official (Pillow) pixels; fast lets libvips shrink JPEG/WebP while decoding, several times cheaper and a little different",
  },
  preprocessWorkers: {
    default: 0,
    kind: "integer",
    scope: "library",
    env: "LONGCLIP_PREPROCESS_WORKERS",
    flag: "preprocess-workers",
    help: "worker threads that decode and resize images; 0 = one per core but one (at least 1)",
  },
  nativeJpeg: {
    default: "on",
    kind: "choice",
    choices: ["on", "off"],
    scope: "library",
    env: "LONGCLIP_NATIVE_JPEG",
    flag: "native-jpeg",
    help: "decode plain JPEGs with the optional native libjpeg-turbo addon where its pixels are byte-identical to sharp's; off leaves all to sharp",
  },
  textBatchSize: {
    default: 32,
    kind: "integer",
    min: 1,
    scope: "library",
    env: "LONGCLIP_TEXT_BATCH_SIZE",
    flag: "text-batch-size",
    help: "texts per encoder call",
  },
  apiKey: {
    default: undefined,
    kind: "text",
    scope: "server",
    env: "LONGCLIP_API_KEY",
    flag: "api-key",
    placeholder: "key",
    help: "required on write endpoints when set; prefer the variable or --api-key-file (a flag shows in ps)",
  },
  apiKeyReads: {
    default: "off",
    kind: "choice",
    choices: ["on", "off"],
    scope: "server",
    env: "LONGCLIP_API_KEY_READS",
    flag: "api-key-reads",
    help: "on: the API key is required on reads too (search, image search, duplicates, jobs, reindex status, metrics)",
  },
  mediaRoot: {
    default: undefined,
    kind: "path",
    scope: "library",
    env: "LONGCLIP_MEDIA_ROOT",
    flag: "media-root",
    help: "files under this directory may be indexed by path (POST /index, jobs); unset disables it",
  },
  maxImageBytes: {
    default: 20 * MiB,
    kind: "integer",
    scope: "library",
    env: "LONGCLIP_MAX_IMAGE_BYTES",
    flag: "max-image-bytes",
    help: "largest accepted encoded image, in bytes",
  },
  maxImagePixels: {
    default: 50_000_000,
    kind: "integer",
    scope: "library",
    env: "LONGCLIP_MAX_IMAGE_PIXELS",
    flag: "max-image-pixels",
    help: "largest accepted decoded image, in pixels (width × height): decompression bombs",
  },
  maxBatchItems: {
    default: 64,
    kind: "integer",
    scope: "library",
    env: "LONGCLIP_MAX_BATCH_ITEMS",
    flag: "max-batch-items",
    help: "images or paths in one POST /index",
  },
  maxRequestBytes: {
    default: 200 * MiB,
    kind: "integer",
    scope: "library",
    env: "LONGCLIP_MAX_REQUEST_BYTES",
    flag: "max-request-bytes",
    help: "largest request body (multipart), counted as it streams",
  },
  maxQueryChars: {
    default: 10_000,
    kind: "integer",
    scope: "library",
    env: "LONGCLIP_MAX_QUERY_CHARS",
    flag: "max-query-chars",
    help: "characters of a text query",
  },
  maxK: {
    default: 1000,
    kind: "integer",
    scope: "library",
    env: "LONGCLIP_MAX_K",
    flag: "max-k",
    help: "largest k, and largest offset + k, of a search",
  },
  maxQueueDepth: {
    default: 256,
    kind: "integer",
    scope: "library",
    env: "LONGCLIP_MAX_QUEUE_DEPTH",
    flag: "max-queue-depth",
    help: "pending embedding jobs before the server answers 429",
  },
  queryCacheSize: {
    default: 1024,
    kind: "integer",
    scope: "library",
    env: "LONGCLIP_QUERY_CACHE_SIZE",
    flag: "query-cache-size",
    help: "query embeddings kept for repeated queries (least recently used go first); 0 turns it off",
  },
  hnswM: {
    default: 16,
    kind: "integer",
    scope: "library",
    env: "LONGCLIP_HNSW_M",
    flag: "hnsw-m",
    help: "HNSW links per node",
  },
  hnswEfConstruction: {
    default: 200,
    kind: "integer",
    scope: "library",
    env: "LONGCLIP_HNSW_EF_CONSTRUCTION",
    flag: "hnsw-ef-construction",
    help: "HNSW candidates kept while inserting",
  },
  hnswEfSearch: {
    default: 0,
    kind: "integer",
    scope: "library",
    env: "LONGCLIP_HNSW_EF_SEARCH",
    flag: "hnsw-ef-search",
    help: "HNSW candidates kept while searching, on both backends: trades speed for recall; 0 = chosen per search from k + offset and the index size (src/vector-index/ef-search.ts)",
  },
  hnswShards: {
    default: 1,
    kind: "integer",
    scope: "library",
    env: "LONGCLIP_HNSW_SHARDS",
    flag: "hnsw-shards",
    help: "HNSW shards of the embedded backend, each an index on its own worker thread (inserts scale with them, a search visits each); 0 = one per core",
  },
  indexSaveIntervalMs: {
    default: 30_000,
    kind: "integer",
    scope: "library",
    env: "LONGCLIP_INDEX_SAVE_INTERVAL_MS",
    flag: "index-save-interval-ms",
    help: "milliseconds between periodic saves of a changed HNSW index",
  },
  databaseUrl: {
    default: undefined,
    kind: "text",
    scope: "library",
    env: "LONGCLIP_DATABASE_URL",
    flag: "database-url",
    placeholder: "url",
    help: "postgres://… to keep the library in PostgreSQL + pgvector instead of the data directory (SQLite)",
  },
  databaseReadUrl: {
    default: undefined,
    kind: "text",
    scope: "library",
    env: "LONGCLIP_DATABASE_READ_URL",
    flag: "database-read-url",
    placeholder: "url",
    repeatable: true,
    help: "a streaming replica of the --database-url primary that serves searches and item reads (writes and job claims stay on the primary; docs/scaling.md, Read replicas); once per replica, or comma-separated",
  },
  databaseReadMaxLagMs: {
    default: 1000,
    kind: "integer",
    scope: "library",
    env: "LONGCLIP_DATABASE_READ_MAX_LAG_MS",
    flag: "database-read-max-lag-ms",
    help: "with read replicas: a read sees every write any node acknowledged this long before it (its own node's at once); a replica further behind serves none; 0 sends every read to the primary",
  },
  pgVectorType: {
    default: "halfvec",
    kind: "choice",
    choices: ["halfvec", "vector"],
    scope: "library",
    env: "LONGCLIP_PG_VECTOR_TYPE",
    flag: "pg-vector-type",
    placeholder: "type",
    help: "what pgvector's HNSW index stores: halfvec (half the memory) or vector",
  },
  pgBuildMemoryMb: {
    default: 0,
    kind: "integer",
    scope: "library",
    env: "LONGCLIP_PG_BUILD_MEMORY_MB",
    flag: "pg-build-memory-mb",
    help: "maintenance_work_mem (MiB) of a pgvector HNSW build; 0 = the graph's estimated size, so the build stays in memory (docs/scaling.md)",
  },
  pgBuildWorkers: {
    default: 0,
    kind: "integer",
    scope: "library",
    env: "LONGCLIP_PG_BUILD_WORKERS",
    flag: "pg-build-workers",
    help: "max_parallel_maintenance_workers of a pgvector HNSW build; 0 = the server's own setting",
  },
  jobWorker: {
    default: "auto",
    kind: "choice",
    choices: ["auto", "on", "off"],
    scope: "library",
    env: "LONGCLIP_JOB_WORKER",
    flag: "job-worker",
    placeholder: "on|off|auto",
    help: "whether serve also runs jobs (only with --media-root): auto = yes on SQLite, no on Postgres (run workers)",
  },
  jobLeaseMs: {
    default: 60_000,
    kind: "integer",
    scope: "library",
    env: "LONGCLIP_JOB_LEASE_MS",
    flag: "job-lease-ms",
    help: "how long a worker holds a claimed chunk before another may take it over (renewed while it works)",
  },
  maxJobItems: {
    default: 1_000_000,
    kind: "integer",
    scope: "library",
    env: "LONGCLIP_MAX_JOB_ITEMS",
    flag: "max-job-items",
    help: "files in one job",
  },
  maxQueryImagePixels: {
    default: 25_000_000,
    kind: "integer",
    scope: "library",
    env: "LONGCLIP_MAX_QUERY_IMAGE_PIXELS",
    flag: "max-query-image-pixels",
    help: "largest decoded image for POST /search/image (a query needs no 50 Mpx)",
  },
  maxDecodePixels: {
    default: 100_000_000,
    kind: "integer",
    scope: "library",
    env: "LONGCLIP_MAX_DECODE_PIXELS",
    flag: "max-decode-pixels",
    help: "pixels decoded at once across all requests (ingest, image search, thumbnails): bounds decoding memory",
  },
  maxBufferedBytes: {
    default: 512 * MiB,
    kind: "integer",
    scope: "server",
    env: "LONGCLIP_MAX_BUFFERED_BYTES",
    flag: "max-buffered-bytes",
    help: "bytes of request bodies and image reads held in memory at once, across all requests",
  },
  maxJsonBytes: {
    default: 8 * MiB,
    kind: "integer",
    scope: "server",
    env: "LONGCLIP_MAX_JSON_BYTES",
    flag: "max-json-bytes",
    help: "largest JSON request body (multipart uploads are bounded by --max-request-bytes)",
  },
  requestTimeoutMs: {
    default: 120_000,
    kind: "integer",
    scope: "server",
    env: "LONGCLIP_REQUEST_TIMEOUT_MS",
    flag: "request-timeout-ms",
    help: "a request must arrive completely within this time (0: no limit)",
  },
  headersTimeoutMs: {
    default: 20_000,
    kind: "integer",
    scope: "server",
    env: "LONGCLIP_HEADERS_TIMEOUT_MS",
    flag: "headers-timeout-ms",
    help: "a request's headers must arrive within this time",
  },
  idleTimeoutMs: {
    default: 10_000,
    kind: "integer",
    scope: "server",
    env: "LONGCLIP_IDLE_TIMEOUT_MS",
    flag: "idle-timeout-ms",
    help: "a kept-alive connection idle between requests for this long is closed",
  },
  maxConnections: {
    default: 1024,
    kind: "integer",
    scope: "server",
    env: "LONGCLIP_MAX_CONNECTIONS",
    flag: "max-connections",
    help: "open connections at once; more are closed at once",
  },
  allowedHosts: {
    default: undefined,
    kind: "text",
    scope: "server",
    env: "LONGCLIP_ALLOWED_HOSTS",
    flag: "allowed-hosts",
    placeholder: "hosts",
    help: "host names (besides IP literals, localhost and --host) this server answers to; comma-separated, * for any",
  },
  corsOrigins: {
    default: undefined,
    kind: "text",
    scope: "server",
    env: "LONGCLIP_CORS_ORIGINS",
    flag: "cors-origins",
    placeholder: "origins",
    help: "origins (scheme://host:port) whose pages may call this server (CORS); comma-separated, * for any",
  },
  apiKeyFile: {
    default: undefined,
    kind: "path",
    scope: "server",
    env: "LONGCLIP_API_KEY_FILE",
    flag: "api-key-file",
    placeholder: "file",
    // Read by withApiKeyFile: its first line is the key, over --api-key.
    help: "a file whose first line is the API key (wins over --api-key; keeps it out of ps and the environment)",
  },
  shutdownTimeoutMs: {
    // Under the 30 s grace Kubernetes and `docker stop --time 30` give before SIGKILL.
    default: 25_000,
    kind: "integer",
    scope: "server",
    env: "LONGCLIP_SHUTDOWN_TIMEOUT_MS",
    flag: "shutdown-timeout-ms",
    help: "longest a SIGTERM/SIGINT shutdown may take before the process exits anyway",
  },
  textFields: {
    default: "caption,filename,path,tags",
    kind: "text",
    scope: "library",
    env: "LONGCLIP_TEXT_FIELDS",
    flag: "text-fields",
    placeholder: "keys",
    // Every top-level string (or array of strings) is indexed: changing this needs no reindex.
    help: "metadata keys (comma-separated) that keyword and hybrid search look in",
  },
  keepUploadFilename: {
    default: "on",
    kind: "choice",
    choices: ["on", "off"],
    scope: "library",
    env: "LONGCLIP_KEEP_UPLOAD_FILENAME",
    flag: "keep-upload-filename",
    help: "keep an upload's file name as metadata filename (unless the metadata has one)",
  },
  hybridCandidates: {
    default: 100,
    kind: "integer",
    scope: "library",
    env: "LONGCLIP_HYBRID_CANDIDATES",
    flag: "hybrid-candidates",
    help: "candidates each ranking (vector, keyword) gives hybrid search before fusion",
  },
  duplicateNeighbours: {
    default: 10,
    kind: "integer",
    scope: "library",
    env: "LONGCLIP_DUPLICATE_NEIGHBOURS",
    flag: "duplicate-neighbours",
    help: "ANN neighbours looked at per item when grouping near-duplicates (GET /duplicates)",
  },
  nearDuplicateThreshold: {
    default: 0,
    kind: "fraction",
    scope: "library",
    env: "LONGCLIP_NEAR_DUPLICATE_THRESHOLD",
    flag: "near-duplicate-threshold",
    placeholder: "cosine",
    help: "POST /index flags a new item whose image embedding is at least this similar (cosine) to a stored one (near_duplicate_of); 0 turns the check off",
  },
  minDuplicateThreshold: {
    default: 0.5,
    kind: "fraction",
    scope: "library",
    env: "LONGCLIP_MIN_DUPLICATE_THRESHOLD",
    flag: "min-duplicate-threshold",
    placeholder: "cosine",
    help: "the lowest threshold GET /duplicates accepts: one scan keeps every neighbour pair at least this similar and answers every threshold above it",
  },
  maxFilterValues: {
    default: 256,
    kind: "integer",
    scope: "library",
    env: "LONGCLIP_MAX_FILTER_VALUES",
    flag: "max-filter-values",
    help: "values one metadata filter may name, all keys together (each $in/$nin element counts): bounds what a search costs to parse and bind",
  },
  maxQueryWindows: {
    default: 8,
    kind: "integer",
    scope: "library",
    env: "LONGCLIP_MAX_QUERY_WINDOWS",
    flag: "max-query-windows",
    help: 'sentence windows one text is read in with long_query: "chunk" (the rest is cut and flagged)',
  },
  maxRequestWindows: {
    default: 32,
    kind: "integer",
    scope: "library",
    env: "LONGCLIP_MAX_REQUEST_WINDOWS",
    flag: "max-request-windows",
    help: "text-tower runs (texts and their windows) one search request may need; more is refused",
  },
  sqliteReadWorkers: {
    // 0 is taken as 1 (src/store/sqlite/store.ts).
    default: 2,
    kind: "integer",
    scope: "library",
    env: "LONGCLIP_SQLITE_READ_WORKERS",
    flag: "sqlite-read-workers",
    help: "worker threads, each with its own SQLite connection, that run the embedded backend's filtered and keyword queries off the event loop",
  },
  logFormat: {
    default: "auto",
    kind: "choice",
    choices: ["auto", "pretty", "json"],
    scope: "server",
    env: "LONGCLIP_LOG_FORMAT",
    flag: "log-format",
    help: "the server log: pretty (a short line per event, for a person), json (a JSON object per line, for a log collector) or auto (pretty on a terminal, JSON otherwise)",
  },
  cacheDir: {
    default: "~/.cache/longclip",
    kind: "path",
    scope: "pull",
    env: "LONGCLIP_CACHE",
    flag: "cache",
    help: "where downloads are kept and resumed",
  },
  hubUrl: {
    default: "https://huggingface.co",
    kind: "text",
    scope: "pull",
    env: "LONGCLIP_HUB_URL",
    flag: "hub-url",
    placeholder: "url",
    help: "the Hugging Face hub, or a mirror of it, that models are downloaded from",
  },
} as const satisfies Record<string, SettingSpec>;
