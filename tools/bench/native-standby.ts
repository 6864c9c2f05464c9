/**
 * A streaming replica of a native test PostgreSQL (native-postgres.ts): `pg_basebackup -R` of the
 * primary into a new temporary directory (with a replication slot, so the primary keeps the WAL
 * a stopped standby still needs), started as a hot standby on another free port of 127.0.0.1.
 * Like the primary it can be crashed, stopped and restarted; its replay can be paused to make it
 * lag on purpose.
 */
import { rmSync } from "node:fs";
import {
  type NativePostgresOptions,
  newServerDir,
  runServerBinary,
  type ServerProcess,
  serveDataDir,
} from "./native-postgres.ts";
import { withClient } from "./postgres-admin.ts";
import type { TestPostgres } from "./postgres-handle.ts";

export interface TestStandby extends ServerProcess {
  /** The standby's log (recovery, replication). */
  logFile: string;
  /** Stops applying WAL (it keeps receiving it): the standby falls behind the primary. */
  pauseReplay(): Promise<void>;
  resumeReplay(): Promise<void>;
  /** The last WAL position the standby applied. */
  replayLsn(): Promise<string>;
}

let standbys = 0;

/** Starts a hot standby of `primary` (a native test Postgres), streaming from it. */
export async function startNativeStandby(
  primary: Pick<TestPostgres, "port" | "kind">,
  options: NativePostgresOptions = {},
): Promise<TestStandby> {
  if (primary.kind !== "native") throw new Error("a standby needs a native primary");
  const dir = newServerDir("longclip-pg-standby-");
  const slot = `longclip_standby_${process.pid}_${++standbys}`;
  try {
    runServerBinary(dir.base, "pg_basebackup", [
      "--host=127.0.0.1",
      `--port=${primary.port}`,
      "--username=postgres",
      `--pgdata=${dir.data}`,
      // standby.signal and primary_conninfo: the copy starts as a standby of the primary.
      "--write-recovery-conf",
      "--wal-method=stream",
      "--create-slot",
      `--slot=${slot}`,
      "--checkpoint=fast",
      "--no-sync",
    ]);
  } catch (error) {
    rmSync(dir.base, { recursive: true, force: true });
    const stderr = (error as { stderr?: Buffer }).stderr?.toString().trim();
    throw new Error(`pg_basebackup failed: ${stderr || (error as Error).message}`);
  }
  const server = await serveDataDir(dir, {
    ...options,
    // Report replay progress to the primary often (pg_stat_replication), as a test reads it.
    settings: { hot_standby: "on", wal_receiver_status_interval: "1s", ...options.settings },
  });
  const sql = (text: string) =>
    withClient(server.url, async (client) => (await client.query(text)).rows[0]);
  return {
    ...server,
    logFile: dir.log,
    async pauseReplay() {
      await sql("SELECT pg_wal_replay_pause()");
    },
    async resumeReplay() {
      await sql("SELECT pg_wal_replay_resume()");
    },
    async replayLsn() {
      const row = (await sql("SELECT pg_last_wal_replay_lsn()::text AS lsn")) as { lsn: string };
      return row.lsn;
    },
  };
}
