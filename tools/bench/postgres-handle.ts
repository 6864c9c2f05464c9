/** The handle of a test Postgres (native or PGlite): see test-postgres.ts. */
export type TestPostgresKind = "native" | "pglite";

export interface TestPostgres {
  url: string;
  port: number;
  kind: TestPostgresKind;
  /**
   * Crashes the server and waits for it to exit: native `pg_ctl stop -m immediate` (no
   * checkpoint, crash recovery at the next start), PGlite SIGKILL.
   */
  kill(): Promise<void>;
  /** Starts it again on the same port and data directory. */
  restart(): Promise<void>;
  /** Drops the product's schema, for a fresh store. */
  reset(): Promise<void>;
  /** Shuts the server down cleanly; `restart()` brings it back with its data. */
  stop(): Promise<void>;
  /** The server process's id (native: the postmaster; backends are its children). */
  pid(): number | undefined;
  /** The native server's log (lock waits, crash recovery), absent for PGlite. */
  logFile?: string;
}
