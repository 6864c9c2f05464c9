/**
 * PGlite + pgvector over the wire protocol (tools/bench/pglite-server.ts) in a child process, so a
 * test can kill it and start it again on the same data directory and port while the product
 * keeps running against it: the test Postgres where no native server can run (test-postgres.ts),
 * and the user's no-install try-out.
 */
import { type ChildProcess, spawn } from "node:child_process";
import path from "node:path";
import { createInterface } from "node:readline";
import { PROJECT_ROOT } from "../../src/core/settings.ts";
import { createVectorExtension, dropProductSchema } from "./postgres-admin.ts";
import type { TestPostgres } from "./postgres-handle.ts";

interface Launched {
  child: ChildProcess;
  exited: Promise<void>;
  port: number;
}

async function launch(dir: string | undefined, port: number): Promise<Launched> {
  const args = [
    "--import",
    "tsx",
    path.join(PROJECT_ROOT, "tools", "bench", "pglite-server.ts"),
    "--port",
    String(port),
  ];
  if (dir !== undefined) args.push("--dir", dir);
  const child = spawn(process.execPath, args, {
    cwd: PROJECT_ROOT,
    stdio: ["ignore", "pipe", "inherit"],
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  for await (const line of lines) {
    const match = /^ready (\d+)$/.exec(line);
    if (match) return { child, exited, port: Number(match[1]) };
  }
  throw new Error("the PGlite server exited before it was ready");
}

/** Starts PGlite on a free port (or `port`), keeping its data in `dir` (memory when absent). */
export async function startPglite(dir?: string, port = 0): Promise<TestPostgres> {
  let current: Launched | undefined = await launch(dir, port);
  const bound = current.port;
  const url = `postgres://postgres:postgres@127.0.0.1:${bound}/postgres`;
  await createVectorExtension(url);
  const end = async (signal: NodeJS.Signals) => {
    const running = current;
    if (running === undefined) return;
    running.child.kill(signal);
    await running.exited;
    current = undefined;
  };
  return {
    url,
    port: bound,
    kind: "pglite",
    kill: () => end("SIGKILL"),
    async restart() {
      if (current !== undefined) throw new Error("the test PostgreSQL is already running");
      current = await launch(dir, bound);
    },
    reset: () => dropProductSchema(url),
    pid: () => current?.child.pid,
    stop: () => end("SIGTERM"),
  };
}
