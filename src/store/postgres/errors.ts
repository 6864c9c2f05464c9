/**
 * What a Postgres error means for the product: the database cannot be reached now (503
 * `database_unavailable` with Retry-After; the pool reconnects by itself), the node is
 * misconfigured (a start-up error that says what to fix), or anything else (rethrown).
 */
import { AppError, isAppError } from "../../core/errors.ts";
import { MIN_PGVECTOR_VERSION } from "./pgvector-version.ts";

/** Seconds a client is asked to wait before retrying when the database is unreachable. */
export const RETRY_AFTER_SECONDS = 5;

const CONNECTION_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EPIPE",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EAI_AGAIN",
  "57P01", // admin_shutdown
  "57P02", // crash_shutdown
  "57P03", // cannot_connect_now
  "53300", // too_many_connections
]);

const CONNECTION_MESSAGES = [
  "Connection terminated",
  "connection timeout",
  "timeout exceeded when trying to connect",
  "Client has encountered a connection error",
  "Connection ended",
  "not queryable",
];

function codeOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown })?.code;
  return typeof code === "string" ? code : undefined;
}

/** True for errors after which the same query may succeed once the database is back. */
export function isConnectionError(error: unknown): boolean {
  if (isAppError(error)) return error.code === "database_unavailable";
  const code = codeOf(error);
  if (code !== undefined && (CONNECTION_CODES.has(code) || code.startsWith("08"))) return true;
  const message = error instanceof Error ? error.message : String(error);
  return CONNECTION_MESSAGES.some((part) => message.includes(part));
}

export function unavailable(error: unknown): AppError {
  const detail = error instanceof Error ? error.message : String(error);
  return new AppError(
    "database_unavailable",
    `The database cannot be reached (${detail || codeOf(error) || "no answer"}); retry in a few seconds.`,
    { retryAfterSeconds: RETRY_AFTER_SECONDS },
  );
}

/** The start-up error for a database that refuses this node for good, else undefined. */
export function configurationError(error: unknown, shownUrl: string): AppError | undefined {
  const code = codeOf(error);
  const message = error instanceof Error ? error.message : String(error);
  if (code === "28P01" || code === "28000") {
    return new AppError(
      "database_auth_failed",
      `Postgres at ${shownUrl} refused the credentials (${message}); check the user and password in --database-url (LONGCLIP_DATABASE_URL).`,
    );
  }
  if (code === "3D000") {
    return new AppError(
      "database_not_found",
      `${message} at ${shownUrl}; create it (CREATE DATABASE ...) or fix the name in --database-url.`,
    );
  }
  if (code === "ENOTFOUND") {
    return new AppError(
      "database_host_not_found",
      `The host of ${shownUrl} does not resolve; check the host name in --database-url.`,
    );
  }
  if (code === "42501" || /permission denied/i.test(message)) {
    return new AppError(
      "database_permission_denied",
      `${message}. The user in --database-url needs to create tables in its database, and the pgvector extension must be installed (as a superuser: CREATE EXTENSION vector).`,
    );
  }
  if (/extension "vector" is not available|could not open extension control file/i.test(message)) {
    return new AppError(
      "pgvector_missing",
      `The Postgres server at ${shownUrl} has no pgvector extension (${message}); install pgvector ${MIN_PGVECTOR_VERSION} or later on it (https://github.com/pgvector/pgvector), then restart.`,
    );
  }
  return undefined;
}

/** A connection URL with its password replaced, for messages and logs. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== "") parsed.password = "***";
    return parsed.toString();
  } catch {
    return "(unparseable URL)";
  }
}
