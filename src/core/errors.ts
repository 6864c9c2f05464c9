/**
 * One error type for every layer: a stable machine-readable `code`, a message that says
 * what to do next, and the HTTP status the server maps it to.
 */
export class AppError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status = 400,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
    this.name = "AppError";
  }
}

export function isAppError(value: unknown): value is AppError {
  return value instanceof AppError;
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
    507,
  );
}

/**
 * The `{code, message}` an item's result reports for an error: an AppError's own, 507 storage
 * conditions as storage_error, anything else as internal_error without its details.
 */
export function errorOf(error: unknown): { code: string; message: string } {
  if (isAppError(error)) return { code: error.code, message: error.message };
  if (isStorageFull(error)) return { code: "storage_error", message: storageFullError().message };
  // The message of an unexpected error may name server paths: clients get its kind only.
  const kind = (error as { code?: unknown } | undefined)?.code;
  return {
    code: "internal_error",
    message: `Unexpected error${typeof kind === "string" ? ` (${kind})` : ""}; the server log has the details. Retry, or report it.`,
  };
}
