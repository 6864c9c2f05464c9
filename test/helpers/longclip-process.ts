/**
 * `longclip serve` and `longclip worker` as child processes (bin/longclip.js, as a user runs
 * them), for tests that kill them, run several at once, or take their database away.
 */
import { type ChildProcess, spawn } from "node:child_process";
import path from "node:path";
import { createInterface } from "node:readline";
import { PROJECT_ROOT } from "../../src/core/settings.ts";

export interface LongclipProcess {
  child: ChildProcess;
  /** The HTTP address of a server; empty for a worker. */
  url: string;
  exited: Promise<NodeJS.Signals | number | null>;
  /** Everything it wrote to stderr so far. */
  stderr(): string;
}

/**
 * Starts `longclip <args>` and resolves when it logs `readyMessage` (a JSON log line with that
 * `msg`, on stdout or stderr); rejects with its stderr if it exits first.
 */
export async function startLongclip(
  args: readonly string[],
  readyMessage: string,
  env: NodeJS.ProcessEnv = {},
): Promise<LongclipProcess> {
  const child = spawn(process.execPath, [path.join(PROJECT_ROOT, "bin", "longclip.js"), ...args], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) => {
    child.on("exit", (code, signal) => resolve(signal ?? code));
  });
  let errText = "";
  return new Promise((resolve, reject) => {
    let settled = false;
    const onLine = (line: string) => {
      let entry: { msg?: string; address?: string };
      try {
        entry = JSON.parse(line) as typeof entry;
      } catch {
        return;
      }
      if (!settled && entry.msg === readyMessage) {
        settled = true;
        resolve({ child, url: entry.address ?? "", exited, stderr: () => errText });
      }
    };
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on("line", onLine);
    createInterface({ input: child.stderr as NodeJS.ReadableStream }).on("line", (line) => {
      errText += `${line}\n`;
      onLine(line);
    });
    exited.then((how) => {
      if (!settled) {
        settled = true;
        reject(
          new Error(
            `longclip ${args[0]} exited (${String(how)}) before "${readyMessage}":\n${errText}`,
          ),
        );
      }
    });
  });
}

/** `longclip serve` on a free loopback port with one ONNX thread. */
export function startServe(extra: readonly string[], env: NodeJS.ProcessEnv = {}) {
  return startLongclip(
    ["serve", "--host", "127.0.0.1", "--port", "0", "--threads", "1", ...extra],
    "longclip serving",
    env,
  );
}

export async function stopProcess(proc: LongclipProcess, signal: NodeJS.Signals = "SIGTERM") {
  if (proc.child.exitCode === null && proc.child.signalCode === null) proc.child.kill(signal);
  return proc.exited;
}
