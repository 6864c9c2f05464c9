/**
 * `longclip serve` and `longclip worker` as child processes (bin/longclip.js, as a user runs
 * them), for tests that kill them, run several at once, or take their database away.
 */
import { type ChildProcess, spawn } from "node:child_process";
import path from "node:path";
import { createInterface } from "node:readline";
import { PROJECT_ROOT } from "../../src/core/settings.ts";

/** A JSON log line (pino's fields, and whatever the event adds). */
export interface LogEntry {
  level: number;
  msg?: string;
  [key: string]: unknown;
}

export interface LongclipProcess {
  child: ChildProcess;
  /** The HTTP address of a server; empty for a worker. */
  url: string;
  exited: Promise<NodeJS.Signals | number | null>;
  /** Everything it wrote to stderr so far. */
  stderr(): string;
  /** Everything it wrote to stdout so far (a server's log). */
  stdout(): string;
  /** The JSON lines it wrote to stdout so far. */
  log(): LogEntry[];
}

/**
 * What says a process is ready: a JSON log line whose `msg` is this string (its `address` is
 * the URL), or a line matching this pattern (its first group is the URL).
 */
export type ReadySign = string | RegExp;

function readyUrl(line: string, ready: ReadySign): string | undefined {
  if (typeof ready !== "string") return ready.exec(line)?.[1];
  let entry: { msg?: string; address?: string };
  try {
    entry = JSON.parse(line) as typeof entry;
  } catch {
    return undefined;
  }
  return entry.msg === ready ? (entry.address ?? "") : undefined;
}

/**
 * Starts `longclip <args>` and resolves when it writes the `ready` sign on stdout or stderr;
 * rejects with its output if it exits first.
 */
export async function startLongclip(
  args: readonly string[],
  ready: ReadySign,
  env: NodeJS.ProcessEnv = {},
): Promise<LongclipProcess> {
  const child = spawn(process.execPath, [path.join(PROJECT_ROOT, "bin", "longclip.js"), ...args], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  // "close", not "exit": its output has been read to the end by then.
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) => {
    child.on("close", (code, signal) => resolve(signal ?? code));
  });
  let outText = "";
  let errText = "";
  const log = () =>
    outText
      .split("\n")
      .filter((line) => line.startsWith("{"))
      .map((line) => JSON.parse(line) as LogEntry);
  return new Promise((resolve, reject) => {
    let settled = false;
    const onLine = (line: string) => {
      const url = settled ? undefined : readyUrl(line, ready);
      if (url !== undefined) {
        settled = true;
        resolve({ child, url, exited, stderr: () => errText, stdout: () => outText, log });
      }
    };
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on("line", (line) => {
      outText += `${line}\n`;
      onLine(line);
    });
    createInterface({ input: child.stderr as NodeJS.ReadableStream }).on("line", (line) => {
      errText += `${line}\n`;
      onLine(line);
    });
    exited.then((how) => {
      if (!settled) {
        settled = true;
        reject(
          new Error(
            `longclip ${args[0]} exited (${String(how)}) before "${ready}":\n${outText}\n${errText}`,
          ),
        );
      }
    });
  });
}

/**
 * `longclip serve` on a free loopback port with one ONNX thread, ready once it logs
 * "longclip serving" (or the given sign).
 */
export function startServe(
  extra: readonly string[],
  env: NodeJS.ProcessEnv = {},
  ready: ReadySign = "longclip serving",
) {
  return startLongclip(
    ["serve", "--host", "127.0.0.1", "--port", "0", "--threads", "1", ...extra],
    ready,
    env,
  );
}

export async function stopProcess(proc: LongclipProcess, signal: NodeJS.Signals = "SIGTERM") {
  if (proc.child.exitCode === null && proc.child.signalCode === null) proc.child.kill(signal);
  return proc.exited;
}
