/**
 * A Postgres server for tests and benchmarks: PGlite + pgvector over the wire protocol
 * (tools/bench/pglite-server.ts) in a child process, so a test can kill it and start it again on
 * the same data directory and port while the product keeps running against it.
 */
import { type ChildProcess, spawn } from "node:child_process";
import path from "node:path";
import { createInterface } from "node:readline";
import pg from "pg";
import { PROJECT_ROOT } from "../../src/core/settings.ts";

export interface TestPostgres {
  url: string;
  port: number;
  /** Stops the server (SIGKILL, as a crash would) and waits for it to exit. */
  kill(): Promise<void>;
  /** Starts it again on the same port and data directory. */
  restart(): Promise<void>;
  /** Drops the product's schema, for a fresh store. */
  reset(): Promise<void>;
  stop(): Promise<void>;
  /** The server process's id (for CPU accounting). */
  pid(): number | undefined;
}

async function launch(dir: string | undefined, port: number) {
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
export async function startPostgres(dir?: string, port = 0): Promise<TestPostgres> {
  let current: { child: ChildProcess; exited: Promise<void>; port: number } = await launch(
    dir,
    port,
  );
  const url = `postgres://postgres:postgres@127.0.0.1:${current.port}/postgres`;
  const bound = current.port;
  return {
    url,
    port: bound,
    async kill() {
      current.child.kill("SIGKILL");
      await current.exited;
    },
    async restart() {
      current = await launch(dir, bound);
    },
    async reset() {
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        await client.query("DROP SCHEMA IF EXISTS longclip CASCADE");
      } finally {
        await client.end();
      }
    },
    pid() {
      return current.child.pid;
    },
    async stop() {
      current.child.kill("SIGTERM");
      await current.exited;
    },
  };
}
