/**
 * One error type for every layer: a stable machine-readable `code`, a message that says what to
 * do next, and the HTTP status the server answers with. Every code is in `ERRORS`, with its
 * status and what it means; `new AppError(code, ...)` takes the status from there, and a code
 * that is not in the catalog does not compile. test/errors.test.ts checks openapi.yaml's error
 * responses and the README's list of codes against the catalog.
 */

export interface ErrorSpec {
  /** The HTTP status the server answers with. */
  readonly status: number;
  /** Statuses a site may give instead (each named by the site and in openapi.yaml). */
  readonly otherStatuses?: readonly number[];
  /** What the code means, in one line. */
  readonly meaning: string;
  /**
   * The command line itself is wrong (fixed by changing it, not by retrying): a CLI command
   * exits 2 and points to its help instead of exiting 1.
   */
  readonly commandLine?: true;
}

/** Whatever 4xx status the HTTP framework gave a request it refused (`bad_request`). */
const FRAMEWORK_4XX: readonly number[] = Array.from({ length: 100 }, (_, i) => 400 + i);

export const ERRORS = {
  // 400: the request (or a command's input) is wrong; the message says how.
  validation_failed: {
    status: 400,
    commandLine: true,
    meaning: "the request does not match openapi.yaml: a missing, unknown or malformed field",
  },
  malformed_json: { status: 400, meaning: "a body or JSON multipart field that is not JSON" },
  malformed_multipart: { status: 400, meaning: "a multipart body that is cut short or malformed" },
  bad_request: {
    status: 400,
    otherStatuses: FRAMEWORK_4XX,
    meaning: "a request the HTTP layer could not read (URL, framing); keeps the framework's 4xx",
  },
  empty_query: { status: 400, commandLine: true, meaning: "the text query is empty" },
  query_too_long: {
    status: 400,
    commandLine: true,
    meaning: "the query is over maxQueryChars, or past the context with truncate: false",
  },
  k_out_of_range: { status: 400, commandLine: true, meaning: "k is not an integer from 1 to maxK" },
  offset_out_of_range: {
    status: 400,
    commandLine: true,
    meaning: "offset is negative or offset + k is over maxK",
  },
  invalid_filter: {
    status: 400,
    commandLine: true,
    meaning: "a metadata filter key or value the store cannot use",
  },
  filter_too_large: {
    status: 400,
    commandLine: true,
    meaning: "a filter naming more than maxFilterValues values",
  },
  too_many_windows: {
    status: 400,
    commandLine: true,
    meaning: "a search needing more than maxRequestWindows text-tower runs",
  },
  invalid_cursor: { status: 400, meaning: "a page cursor this server did not issue" },
  image_corrupt: { status: 400, meaning: "the image cannot be decoded (corrupt or truncated)" },
  image_empty: { status: 400, meaning: "the image has 0 bytes" },
  invalid_video: {
    status: 400,
    meaning: "a video that cannot be decoded: truncated, no frames, or not its file name's format",
  },
  invalid_id: { status: 400, meaning: "an item id that is not 1-128 allowed characters" },
  invalid_input: { status: 400, meaning: "an input with both image bytes and a path, or neither" },
  invalid_metadata: { status: 400, meaning: "metadata that is not a JSON object, too big or deep" },
  invalid_box: {
    status: 400,
    meaning: "a region box that is not inside the image or not whole positive pixels",
  },
  zoom_too_large: {
    status: 400,
    meaning: "POST /explain: a zoom above the server's explainZoom",
  },
  invalid_pixels: { status: 400, meaning: "pixel data of another size than the model's input" },
  not_a_file: { status: 400, meaning: "a path that is not a regular file" },
  empty_job: { status: 400, meaning: "a job's paths hold no image files" },
  invalid_setting: {
    status: 400,
    commandLine: true,
    meaning: "a flag or variable with a value its setting refuses",
  },
  usage: {
    status: 400,
    commandLine: true,
    meaning: "a command line a command cannot run: unknown flag, no argument",
  },
  invalid_port: {
    status: 400,
    commandLine: true,
    meaning: "`longclip serve`: a port out of 0-65535, or below 1024 without privileges",
  },
  bad_input: { status: 400, meaning: "a line of `longclip embed`'s input that is not its JSON" },
  image_not_found: { status: 400, meaning: "`longclip embed` cannot read an image file" },
  model_unknown: { status: 400, meaning: "`longclip pull`: no registry name, repository or URL" },
  nothing_to_migrate: { status: 400, meaning: "`longclip migrate`: the source library is empty" },
  invalid_database_url: { status: 400, meaning: "--database-url is not a postgres:// URL" },
  database_auth_failed: { status: 400, meaning: "Postgres refused the user or password" },
  database_host_not_found: { status: 400, meaning: "the database URL's host does not resolve" },
  database_not_found: { status: 400, meaning: "the database URL names no existing database" },
  database_permission_denied: {
    status: 400,
    meaning: "the database user may not create the tables or the pgvector extension",
  },
  pgvector_missing: { status: 400, meaning: "the Postgres server has no pgvector extension" },
  pgvector_too_old: {
    status: 400,
    meaning: "the database's pgvector is older than 0.8.4 (HNSW corruption and build bugs)",
  },
  schema_too_new: { status: 400, meaning: "the database was made by a newer longclip" },
  checkpoint_not_found: { status: 400, meaning: "converter: the checkpoint path does not exist" },
  checkpoint_unreadable: {
    status: 400,
    meaning: "converter: the checkpoint is truncated, corrupted or not its claimed format",
  },
  checkpoint_unsafe: {
    status: 400,
    meaning: "converter: the pickle names a global a state dict never needs (could run code)",
  },
  checkpoint_torchscript: {
    status: 400,
    meaning: "converter: a TorchScript archive (only the Python exporter reads those)",
  },
  checkpoint_too_large: {
    status: 400,
    meaning:
      "converter: a size inside the file past what any CLIP model needs (src/convert/limits.ts)",
  },
  checkpoint_unsupported: {
    status: 400,
    meaning: "converter: not a CLIP ViT layout it knows (unknown keys, wrong shapes)",
  },
  export_check_failed: {
    status: 400,
    meaning: "converter: the written towers disagree with the TypeScript reference forward",
  },

  unauthorized: { status: 401, meaning: "a write endpoint without the server's API key" },

  cross_site_request: { status: 403, meaning: "a browser write from an origin not allowed" },
  host_not_allowed: { status: 403, meaning: "a Host header this server does not answer to" },
  file_not_readable: { status: 403, meaning: "a file the server's user may not read" },
  path_indexing_disabled: { status: 403, meaning: "indexing by path without a media root" },
  path_outside_media_root: { status: 403, meaning: "a path outside the media root" },
  path_outside_models: {
    status: 403,
    meaning: "a model_dir that is not beside the served model directory",
  },

  not_found: { status: 404, meaning: "no item, job or route of that id or path" },
  file_not_found: { status: 404, meaning: "no file at the path given" },
  image_missing: { status: 404, meaning: "an item's image file is gone from the disk" },
  model_not_found: { status: 404, meaning: "no model directory (config.json) at the path" },

  request_timeout: { status: 408, meaning: "the request did not arrive within requestTimeoutMs" },

  model_mismatch: {
    status: 409,
    meaning: "the store holds embeddings of another model: run longclip reindex",
  },
  id_conflict: { status: 409, meaning: "the id is taken by an item with another image" },
  image_changed: { status: 409, meaning: "a file indexed by path changed since it was indexed" },
  dense_output_missing: {
    status: 409,
    meaning: "POST /explain: the model has no patch output; re-export it with --dense value",
  },
  file_changed: { status: 409, meaning: "a file changed while it was being read" },
  port_in_use: { status: 409, meaning: "`longclip serve`: another program listens on the port" },
  no_reindex: {
    status: 409,
    otherStatuses: [404],
    meaning: "no reindex is in progress (404 from GET /reindex)",
  },
  reindex_incomplete: {
    status: 409,
    meaning: "a switch while items still lack an embedding by the next model",
  },
  reindex_running: { status: 409, meaning: "a reindex to another model is running" },
  reindex_superseded: {
    status: 409,
    meaning: "this node's reindex run was taken over by another node, which finishes it",
  },
  reindex_failed: { status: 409, meaning: "a switch of a reindex that failed (without its error)" },
  reindex_unsupported: { status: 409, meaning: "this library cannot load another model" },
  same_model: { status: 409, meaning: "a reindex to the model the library is on already" },

  payload_too_large: { status: 413, meaning: "a body over maxRequestBytes or maxJsonBytes" },
  too_many_items: { status: 413, meaning: "more than maxBatchItems images, or maxJobItems files" },
  image_too_large: { status: 413, meaning: "an image file over maxImageBytes" },
  image_too_many_pixels: {
    status: 413,
    meaning: "an image over maxImagePixels (maxQueryImagePixels for a query) once decoded",
  },
  video_too_large: { status: 413, meaning: "a video file over maxVideoBytes" },
  video_too_long: {
    status: 413,
    meaning: "a video over maxVideoSeconds, or whose decoding ran past videoDecodeTimeoutMs",
  },
  video_too_many_pixels: { status: 413, meaning: "a video whose frames are over maxVideoPixels" },

  unsupported_image: {
    status: 415,
    meaning: "bytes that are not an image format the server reads",
  },
  unsupported_video: {
    status: 415,
    meaning: "a video this server cannot decode: no ffmpeg installed, or a codec it lacks",
  },
  unsupported_media_type: { status: 415, meaning: "a Content-Type the endpoint does not take" },

  range_not_satisfiable: {
    status: 416,
    meaning: "a Range header whose byte ranges all start past the end of the original",
  },

  queue_full: { status: 429, meaning: "too much work is waiting: retry after Retry-After" },

  internal_error: { status: 500, meaning: "an unexpected error: a bug, the server log has it" },
  encoder_failed: { status: 500, meaning: "the encoder (ONNX Runtime) failed" },
  cuda_unavailable: { status: 500, meaning: "--device cuda, but CUDA cannot be used here" },
  model_invalid: {
    status: 500,
    otherStatuses: [400],
    meaning: "a model directory that breaks the model format (400 when a request names it)",
  },
  preprocess_failed: { status: 500, meaning: "an image preprocessing worker failed" },
  thumbnail_failed: { status: 500, meaning: "a stored image could not be made into a thumbnail" },
  tokenizer_invalid: { status: 500, meaning: "the tokenizer files are missing or inconsistent" },
  tokenizer_not_found: { status: 500, meaning: "the model's tokenizer file cannot be read" },

  download_failed: { status: 502, meaning: "a model download failed (it resumes when run again)" },
  download_corrupt: { status: 502, meaning: "a download is not the published file (size, hash)" },
  host_unreachable: { status: 502, meaning: "a download's host cannot be reached (DNS, refused)" },
  hub_unreachable: {
    status: 502,
    meaning: "the model hub cannot be reached: see LONGCLIP_HUB_URL",
  },

  not_ready: { status: 503, meaning: "the library is loading or the server is shutting down" },
  library_closed: { status: 503, meaning: "the library is shutting down" },
  database_unavailable: {
    status: 503,
    meaning: "the Postgres database cannot be reached: retry after Retry-After",
  },
  encoder_closed: { status: 503, meaning: "the encoder has been closed (shutting down)" },
  server_busy: {
    status: 503,
    meaning: "maxBufferedBytes of bodies are in memory: retry after Retry-After",
  },
  web_ui_missing: { status: 503, meaning: "the web page is not built" },

  storage_error: { status: 507, meaning: "the disk or database is full, or refused a write" },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

/**
 * Codes that only a job's failed item carries, never an HTTP response (a failed item otherwise
 * carries the code of the error that failed it): what happened to the item.
 */
export const ITEM_FAILURES = {
  worker_lost: "every lease of the item expired: the workers holding it stopped or timed out",
  folder_unreadable: "a folder the job's walk could not read; its files are not in the job",
} as const satisfies Record<string, string>;

export type ItemFailureCode = keyof typeof ITEM_FAILURES;

/** The statuses a site may give `code` instead of its own (none for most codes). */
export type OtherStatus<C extends ErrorCode> = (typeof ERRORS)[C] extends {
  readonly otherStatuses: readonly (infer S)[];
}
  ? S
  : never;

export function isErrorCode(code: string): code is ErrorCode {
  return Object.hasOwn(ERRORS, code);
}

export class AppError<C extends ErrorCode = ErrorCode> extends Error {
  readonly status: number;

  constructor(
    readonly code: C,
    message: string,
    readonly details?: Record<string, unknown>,
    status?: OtherStatus<C>,
  ) {
    super(message);
    this.name = "AppError";
    // A code from outside the catalog can only come through a cast: a bug, so a 500.
    const spec = ERRORS[code] as ErrorSpec | undefined;
    this.status = (status as number | undefined) ?? spec?.status ?? 500;
  }
}

export function isAppError(value: unknown): value is AppError {
  return value instanceof AppError;
}

/** The `{code, message}` an item's or a job's result carries for a failure. */
export interface ErrorInfo {
  code: ErrorCode;
  message: string;
}

/** An AppError as it crosses to or from a worker thread (structured clone keeps no class). */
export interface SerializedError extends ErrorInfo {
  status: number;
  details?: Record<string, unknown>;
}

export function serializeError(error: AppError): SerializedError {
  return {
    code: error.code,
    message: error.message,
    status: error.status,
    ...(error.details ? { details: error.details } : {}),
  };
}

/** The AppError a worker serialized, with the status it had there. */
export function deserializeError(error: SerializedError): AppError {
  const revived = new AppError(error.code, error.message, error.details);
  return Object.assign(revived, { status: error.status });
}

/** An error recorded earlier (a failed run's), answered now with `status`. */
export function recordedError(info: ErrorInfo, status: number): AppError {
  return deserializeError({ ...info, status });
}

/** A full disk or database: the client cannot fix it, but it is a condition, not a bug. */
export function isStorageFull(error: unknown): boolean {
  const code = (error as { code?: unknown } | undefined)?.code;
  return code === "SQLITE_FULL" || code === "ENOSPC" || code === "EDQUOT";
}

/** 507 storage_error for a full disk or database. */
export function storageFullError(): AppError {
  return new AppError(
    "storage_error",
    "The server's storage is full; free space in its data directory, then retry.",
  );
}

/** An item's id is taken by an item with another image. */
export function idConflict(id: string): ErrorInfo {
  return {
    code: "id_conflict",
    message: `Id "${id}" is already used by a different image; choose another id or delete the existing item first.`,
  };
}

/**
 * 409 model_mismatch from a store asked to search embeddings of a model it does not hold (the
 * library's model changed under the search): `where` holds `held`'s, not `wanted`'s.
 */
export function storeModelMismatch(
  where: string,
  held: string | undefined,
  wanted: string,
): AppError {
  return new AppError(
    "model_mismatch",
    `The ${where} holds embeddings of ${held ?? "no model"}, not ${wanted}; run longclip reindex.`,
  );
}

/**
 * The `{code, message}` an item's result reports for an error: an AppError's own, 507 storage
 * conditions as storage_error, anything else as internal_error without its details.
 */
export function errorOf(error: unknown): ErrorInfo {
  if (isAppError(error)) return { code: error.code, message: error.message };
  if (isStorageFull(error)) return { code: "storage_error", message: storageFullError().message };
  // The message of an unexpected error may name server paths: clients get its kind only.
  const kind = (error as { code?: unknown } | undefined)?.code;
  return {
    code: "internal_error",
    message: `Unexpected error${typeof kind === "string" ? ` (${kind})` : ""}; the server log has the details. Retry, or report it.`,
  };
}
