/**
 * The server's log: on a terminal one short line per event for a person (pino-pretty: time,
 * level, message, then the event's fields as key=value); elsewhere, or with
 * `--log-format json`, one JSON object per line for a log collector (pino). Both carry the
 * same events and fields.
 */
import pino, { type Logger } from "pino";
import pretty from "pino-pretty";
import type { Settings } from "../core/settings.ts";

/** Fields a human line leaves out: pino's own, and those a request line already says. */
const UNSHOWN_FIELDS = new Set([
  "level",
  "time",
  "pid",
  "hostname",
  "msg",
  "reqId",
  "err",
  "method",
  "url",
  "statusCode",
  "responseTime",
]);

/** Whether the log is for a person: `pretty`, or `auto` on a terminal. */
export function humanLog(format: Settings["logFormat"], stream: { isTTY?: boolean }): boolean {
  return format === "pretty" || (format === "auto" && stream.isTTY === true);
}

function shownValue(value: unknown): string {
  if (typeof value === "string") return /\s/.test(value) ? JSON.stringify(value) : value;
  return JSON.stringify(value) ?? String(value);
}

/** The text of a human line after its time and level. */
export function humanMessage(log: Record<string, unknown>): string {
  const fields = Object.entries(log)
    .filter(([key, value]) => !UNSHOWN_FIELDS.has(key) && value !== undefined)
    .map(([key, value]) => `${key}=${shownValue(value)}`);
  const line = [String(log.msg ?? ""), ...fields].join("  ");
  // Only an unexpected error carries `err`: its stack is what a person needs to report it.
  const err = log.err as { stack?: unknown; message?: unknown } | undefined;
  if (err === undefined) return line;
  return `${line}\n${String(err.stack ?? err.message ?? "")}`;
}

export function createLogger(
  format: Settings["logFormat"],
  stream: NodeJS.WritableStream & { isTTY?: boolean } = process.stdout,
  level = "info",
): Logger {
  if (!humanLog(format, stream)) return pino({ level }, stream);
  return pino(
    { level },
    pretty({
      destination: stream,
      sync: true,
      colorize: stream.isTTY === true,
      translateTime: "SYS:HH:MM:ss",
      ignore: "pid,hostname",
      hideObject: true,
      messageFormat: (log) => humanMessage(log),
    }),
  );
}
