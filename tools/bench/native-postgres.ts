/**
 * A native PostgreSQL server for tests and benchmarks: `initdb` in a temporary directory, the
 * server on a free port on 127.0.0.1, pgvector's extension created, behind the same
 * `TestPostgres` handle as the PGlite server. Postgres refuses to run as root, so as root the
 * server binaries run as the `postgres` system user (setpriv), in a directory that user owns.
 *
 * The server is this process's child and gets SIGKILL when this process dies (setpriv's
 * parent-death signal), so a test runner that is killed leaves no server behind; at exit the
 * servers still up are stopped and their directories removed.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import {
  chownSync,
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
} from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { createVectorExtension, dropProductSchema } from "./postgres-admin.ts";
import type { TestPostgres } from "./postgres-handle.ts";

/** Where a usable server installation is, or why there is none. */
export type NativePostgresInstall =
  | { ok: true; bindir: string; version: string; runAs?: { uid: number; gid: number } }
  | { ok: false; reason: string };

/**
 * Settings that suit tests. fsync and full-page writes only protect against an operating-system
 * crash or power loss: a server killed as a process (`kill()`, `pg_ctl stop -m immediate`) has
 * already handed every committed WAL record to the kernel, so what it acknowledged survives the
 * restart without them. synchronous_commit stays on: with it off, a commit is acknowledged
 * before its WAL is written, and a killed server would lose it.
 */
export const TEST_SETTINGS: Readonly<Record<string, string>> = {
  fsync: "off",
  full_page_writes: "off",
  synchronous_commit: "on",
  // Several nodes (10 connections each) and workers on one server.
  max_connections: "200",
  // Lock waits past deadlock_timeout are logged, to be seen when a test is slow.
  log_lock_waits: "on",
};

const SERVER_BINARIES = ["postgres", "initdb", "pg_ctl"];

function commandOutput(command: string, args: readonly string[]): string | undefined {
  const result = spawnSync(command, args, { encoding: "utf8" });
  return result.status === 0 ? result.stdout.trim() : undefined;
}

/** The user the server runs as: this one, or `postgres` when this process is root. */
function serverUser(): { uid: number; gid: number } | undefined | "missing" {
  if (process.getuid?.() !== 0) return undefined;
  const uid = commandOutput("id", ["-u", "postgres"]);
  const gid = commandOutput("id", ["-g", "postgres"]);
  if (uid === undefined || gid === undefined) return "missing";
  return { uid: Number(uid), gid: Number(gid) };
}

/** Server bin directories: `pg_config --bindir` first, then Debian's, newest major first. */
function candidateBindirs(): string[] {
  const found: string[] = [];
  const configured = commandOutput("pg_config", ["--bindir"]);
  if (configured !== undefined) found.push(configured);
  const debian = "/usr/lib/postgresql";
  if (existsSync(debian)) {
    const majors = readdirSync(debian)
      .filter((name) => /^\d+$/.test(name))
      .sort((a, b) => Number(b) - Number(a));
    for (const major of majors) found.push(path.join(debian, major, "bin"));
  }
  return [...new Set(found)];
}

/** Where a bin directory's server looks for extensions' control files. */
function extensionDirs(bindir: string, major: string): string[] {
  const dirs: string[] = [];
  const pgConfig = path.join(bindir, "pg_config");
  const share = existsSync(pgConfig)
    ? commandOutput(pgConfig, ["--sharedir"])
    : commandOutput("pg_config", ["--bindir"]) === bindir
      ? commandOutput("pg_config", ["--sharedir"])
      : undefined;
  if (share !== undefined) dirs.push(path.join(share, "extension"));
  dirs.push(
    path.join(bindir, "..", "share", "extension"),
    path.join(bindir, "..", "share", "postgresql", "extension"),
    path.join("/usr/share/postgresql", major, "extension"),
  );
  return dirs;
}

let cachedInstall: NativePostgresInstall | undefined;

/** Finds server binaries with pgvector installed that this process can run. */
export function findNativePostgres(): NativePostgresInstall {
  cachedInstall ??= lookForInstall();
  return cachedInstall;
}

function lookForInstall(): NativePostgresInstall {
  const user = serverUser();
  if (user === "missing") {
    return {
      ok: false,
      reason: "running as root and there is no postgres user to run the server as",
    };
  }
  const bindirs = candidateBindirs().filter((dir) =>
    SERVER_BINARIES.every((name) => existsSync(path.join(dir, name))),
  );
  if (bindirs.length === 0) {
    return {
      ok: false,
      reason:
        "no PostgreSQL server binaries (pg_config --bindir, /usr/lib/postgresql/*/bin); Debian: apt-get install postgresql-15",
    };
  }
  const versions: string[] = [];
  for (const bindir of bindirs) {
    const version = /\d+(\.\d+)?/.exec(
      commandOutput(path.join(bindir, "postgres"), ["--version"]) ?? "",
    )?.[0];
    if (version === undefined) continue;
    versions.push(version);
    const major = version.split(".")[0] as string;
    if (extensionDirs(bindir, major).some((dir) => existsSync(path.join(dir, "vector.control")))) {
      return { ok: true, bindir, version, ...(user === undefined ? {} : { runAs: user }) };
    }
  }
  return {
    ok: false,
    reason: `pgvector is not installed in PostgreSQL ${versions.join(", ") || "(unknown version)"}; install it with bash scripts/install-pgvector.sh`,
  };
}

export interface NativePostgresOptions {
  /** A port on 127.0.0.1; a free one when absent or 0. */
  port?: number;
  /** Server settings on top of TEST_SETTINGS (e.g. fsync "on" for a benchmark). */
  settings?: Readonly<Record<string, string>>;
  /**
   * A directory kept between runs (a benchmark's cache): its cluster is reused when it has
   * one (initdb otherwise), shut down cleanly and never removed. Absent: a new temporary
   * directory, removed when this process exits.
   */
  keepDir?: string;
}

interface Running {
  child: ChildProcess;
  exited: Promise<number | null>;
}

/** Servers up in this process, stopped and removed at exit. */
const live = new Set<{ stopNow(): void }>();
process.once("exit", () => {
  for (const server of live) server.stopNow();
});

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function tail(file: string, lines = 15): string {
  try {
    return readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

/** A new temporary directory the server's user owns: `data` (PGDATA) and `server.log` in it. */
export function newServerDir(prefix = "longclip-pg-"): { base: string; data: string; log: string } {
  const install = findNativePostgres();
  if (!install.ok) throw new Error(`native PostgreSQL is not available: ${install.reason}`);
  const base = mkdtempSync(path.join(os.tmpdir(), prefix));
  if (install.runAs !== undefined) chownSync(base, install.runAs.uid, install.runAs.gid);
  return { base, data: path.join(base, "data"), log: path.join(base, "server.log") };
}

/**
 * A server binary's command line, run as the server's user (setpriv); with --pdeathsig it dies
 * with this process.
 */
function serverCommand(name: string, args: readonly string[]): [string, string[]] {
  const install = findNativePostgres();
  if (!install.ok) throw new Error(`native PostgreSQL is not available: ${install.reason}`);
  const { bindir, runAs } = install;
  const asUser =
    runAs === undefined
      ? []
      : [`--reuid=${runAs.uid}`, `--regid=${runAs.gid}`, "--init-groups", "--reset-env"];
  return ["setpriv", [...asUser, "--pdeathsig", "KILL", "--", path.join(bindir, name), ...args]];
}

/** Runs a server binary (initdb, pg_ctl, pg_basebackup) to its end, in `cwd`. */
export function runServerBinary(cwd: string, name: string, args: readonly string[]): void {
  const [file, argv] = serverCommand(name, args);
  execFileSync(file, argv, { cwd, stdio: ["ignore", "pipe", "pipe"] });
}

/** A running server process on a data directory, which can be crashed, stopped and restarted. */
export interface ServerProcess {
  port: number;
  url: string;
  /** `pg_ctl stop -m immediate` (a crash), waiting for the exit. */
  kill(): Promise<void>;
  /** `pg_ctl stop -m fast` (a clean shutdown). */
  stop(): Promise<void>;
  /** Starts it again on the same port and data directory. */
  restart(): Promise<void>;
  pid(): number | undefined;
}

/**
 * Starts `postgres` on the data directory `dir.data` (made by initdb or pg_basebackup) on
 * `options.port` (a free one when 0), logging to `dir.log`. The directory is removed when this
 * process exits.
 */
export async function serveDataDir(
  dir: { base: string; data: string; log: string },
  options: NativePostgresOptions = {},
): Promise<ServerProcess> {
  const { base, data, log } = dir;
  const settings = { ...TEST_SETTINGS, ...options.settings };
  const kept = options.keepDir !== undefined;
  const removeBase = () => {
    if (!kept) rmSync(base, { recursive: true, force: true });
  };

  const launch = async (port: number): Promise<Running> => {
    const args = ["-D", data, "-p", String(port), "-c", "listen_addresses=127.0.0.1"];
    // No Unix socket: its default directory (/var/run/postgresql) may not exist or be shared.
    args.push("-c", "unix_socket_directories=");
    for (const [name, value] of Object.entries(settings)) args.push("-c", `${name}=${value}`);
    const [file, argv] = serverCommand("postgres", args);
    const logFd = openSync(log, "a");
    const child = spawn(file, argv, { cwd: base, stdio: ["ignore", logFd, logFd] });
    closeSync(logFd);
    const exited = new Promise<number | null>((resolve) =>
      child.once("exit", (code) => resolve(code)),
    );
    let gone = false;
    void exited.then(() => {
      gone = true;
    });
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (gone) throw new Error(`PostgreSQL exited while starting:\n${tail(log)}`);
      const client = new pg.Client({ host: "127.0.0.1", port, user: "postgres" });
      client.on("error", () => {});
      try {
        await client.connect();
        await client.end();
        return { child, exited };
      } catch {
        await client.end().catch(() => {});
      }
      if (Date.now() > deadline) {
        child.kill("SIGKILL");
        throw new Error(`PostgreSQL did not accept connections within 60 s:\n${tail(log)}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };

  let port = options.port ?? 0;
  let current: Running | undefined;
  for (let attempt = 0; current === undefined; attempt++) {
    const tryPort = port === 0 ? await freePort() : port;
    try {
      current = await launch(tryPort);
      port = tryPort;
    } catch (error) {
      // Another process took the free port between the check and the bind: try another.
      const taken = /could not bind|Address already in use/.test(String(error));
      if (options.port || !taken || attempt >= 3) {
        removeBase();
        throw error;
      }
    }
  }

  const pgCtlStop = (mode: "fast" | "immediate") =>
    runServerBinary(base, "pg_ctl", [
      "stop",
      "--pgdata",
      data,
      "--mode",
      mode,
      "--wait",
      "--silent",
    ]);
  const stopRunning = async (mode: "fast" | "immediate") => {
    const running = current;
    if (running === undefined) return;
    if (running.child.exitCode === null && running.child.signalCode === null) {
      try {
        pgCtlStop(mode);
      } catch {
        running.child.kill("SIGKILL");
      }
    }
    await running.exited;
    current = undefined;
  };
  live.add({
    stopNow() {
      if (current !== undefined && current.child.exitCode === null) {
        try {
          // A kept cluster is shut down cleanly: no crash recovery at its next start.
          pgCtlStop(kept ? "fast" : "immediate");
        } catch {
          current.child.kill("SIGKILL");
        }
      }
      removeBase();
    },
  });

  return {
    port,
    url: `postgres://postgres:postgres@127.0.0.1:${port}/postgres`,
    kill: () => stopRunning("immediate"),
    stop: () => stopRunning("fast"),
    async restart() {
      if (current !== undefined) throw new Error("the test PostgreSQL is already running");
      current = await launch(port);
    },
    pid: () => current?.child.pid,
  };
}

/**
 * Starts a native server in a new temporary directory, or on the cluster kept in
 * `options.keepDir`; it must be available (findNativePostgres).
 */
export async function startNativePostgres(
  options: NativePostgresOptions = {},
): Promise<TestPostgres> {
  const dir = options.keepDir === undefined ? newServerDir() : keptServerDir(options.keepDir);
  if (!existsSync(path.join(dir.data, "PG_VERSION")))
    initCluster(dir, options.keepDir !== undefined);
  return startedOn(dir, options);
}

/** initdb in `dir.data` (emptied first); a directory not `kept` is removed when it fails. */
function initCluster(dir: { base: string; data: string }, kept: boolean): void {
  try {
    rmSync(dir.data, { recursive: true, force: true });
    runServerBinary(dir.base, "initdb", [
      "--pgdata",
      dir.data,
      "--username",
      "postgres",
      "--auth",
      "trust",
      "--encoding",
      "UTF8",
      "--locale",
      "C",
      "--no-sync",
    ]);
  } catch (error) {
    if (!kept) rmSync(dir.base, { recursive: true, force: true });
    const stderr = (error as { stderr?: Buffer }).stderr?.toString().trim();
    throw new Error(`initdb failed: ${stderr || (error as Error).message}`);
  }
}

/** `keepDir` made (if new) and owned by the server's user, as newServerDir's layout. */
function keptServerDir(keepDir: string): { base: string; data: string; log: string } {
  const install = findNativePostgres();
  if (!install.ok) throw new Error(`native PostgreSQL is not available: ${install.reason}`);
  const base = path.resolve(keepDir);
  mkdirSync(base, { recursive: true });
  if (install.runAs !== undefined) chownSync(base, install.runAs.uid, install.runAs.gid);
  return { base, data: path.join(base, "data"), log: path.join(base, "server.log") };
}

/** The server on `dir`'s cluster, with pgvector created, as the test Postgres handle. */
async function startedOn(
  dir: { base: string; data: string; log: string },
  options: NativePostgresOptions,
): Promise<TestPostgres> {
  const server = await serveDataDir(dir, options);
  await createVectorExtension(server.url);
  return {
    ...server,
    kind: "native",
    reset: () => dropProductSchema(server.url),
    logFile: dir.log,
  };
}
