/**
 * The connection pool and the one place Postgres errors are translated: every query and
 * transaction of the Postgres backend goes through `Db`, which tracks whether the database
 * answers (health for /ready) and turns lost connections into `database_unavailable`. The
 * pool replaces broken connections by itself, so a database that comes back is used again
 * without a restart. A statement or transaction the server aborts for a deadlock or a
 * serialization failure is run again (../retries.ts).
 */
import pg from "pg";
import { countStoreRetry, type RetryReason } from "../retries.ts";
import type { StoreHealth } from "../types.ts";
import { isConnectionError, unavailable } from "./errors.ts";

// bigint (int8) columns — labels, counts, millisecond times — as numbers: they stay far below 2^53.
pg.types.setTypeParser(20, (value: string) => Number(value));

export interface DbOptions {
  url: string;
  /** Connections per node. */
  poolSize: number;
  /** How long to wait for a connection before the database counts as unreachable. */
  connectTimeoutMs: number;
  /**
   * Record the WAL position after each write this node commits (`lastWriteLsn`), so reads from
   * replicas can wait for it (./replicas.ts). Costs one query after an autocommit write.
   */
  trackWrites?: boolean;
}

export type Queryable = Pick<pg.PoolClient, "query">;

/** SQLSTATEs after which the same work, run again, may succeed. */
const RETRYABLE: Record<string, RetryReason> = {
  "40P01": "deadlock",
  "40001": "serialization_failure",
};
/** Runs of one piece of work before its error is let through. */
const MAX_ATTEMPTS = 8;

function retryReason(error: unknown): RetryReason | undefined {
  const code = (error as { code?: unknown })?.code;
  return typeof code === "string" ? RETRYABLE[code] : undefined;
}

/**
 * Runs `work` again while the database aborts it for a deadlock or a serialization failure,
 * after a short random pause that grows (the other party usually finishes meanwhile).
 */
async function retrying<T>(work: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await work();
    } catch (error) {
      const reason = retryReason(error);
      if (reason === undefined || attempt >= MAX_ATTEMPTS) throw error;
      countStoreRetry(reason);
      const pause = Math.random() * 10 * 2 ** attempt;
      await new Promise((resolve) => setTimeout(resolve, pause));
    }
  }
}

/** Where reads go: the primary's `Db` itself, or replicas in front of it (./replicas.ts). */
export interface Reads {
  /** `accept` false (a replica's answer lacks a row the primary may have): the primary answers. */
  query<R extends pg.QueryResultRow>(
    sql: string,
    params?: unknown[],
    accept?: (result: pg.QueryResult<R>) => boolean,
  ): Promise<pg.QueryResult<R>>;
  /** `prelude`: statements without parameters (e.g. SET LOCAL) sent with the BEGIN. */
  transaction<T>(work: (client: Queryable) => Promise<T>, prelude?: string): Promise<T>;
  /**
   * Runs `work` (autocommit statements) on one connection whose session has `settings`: a
   * search in one round trip, where SET LOCAL needs a BEGIN and a COMMIT around it.
   */
  withSession<T>(settings: SessionSettings, work: (client: Queryable) => Promise<T>): Promise<T>;
}

/**
 * Session settings by name, each value an SQL expression giving its text (computed by the
 * server when set). Only settings that every user of a pooled connection either sets itself
 * or does not read belong here: they stay on the connection after the work.
 */
export type SessionSettings = Readonly<Record<string, string>>;

/** The settings each open connection has been given (by name, the expression set). */
const sessionOf = new WeakMap<object, Map<string, string>>();

/**
 * Gives `client`'s session the `settings` it does not have yet, all in one statement, and
 * nothing when it has them all (the usual case: a connection serves many searches alike).
 * Remembered only after the server confirmed them; an aborted statement changes nothing.
 */
export async function applySession(client: Queryable, settings: SessionSettings): Promise<void> {
  let applied = sessionOf.get(client);
  const missing = Object.entries(settings).filter(([name, value]) => applied?.get(name) !== value);
  if (missing.length === 0) return;
  await client.query(settingsSql(Object.fromEntries(missing), false));
  if (applied === undefined) {
    applied = new Map();
    sessionOf.set(client, applied);
  }
  for (const [name, value] of missing) applied.set(name, value);
}

/** One statement that sets `settings` for the session, or (`local`) the transaction. */
export function settingsSql(settings: SessionSettings, local: boolean): string {
  const calls = Object.entries(settings).map(
    ([name, value]) => `set_config(${quoteLiteral(name)}, (${value})::text, ${local})`,
  );
  return `SELECT ${calls.join(", ")}`;
}

/** A string as an SQL literal (for setting names, which are ours). */
export function quoteLiteral(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}

/** A WAL position (`16/B374D848`) as a number, for comparing positions. */
export function parseLsn(text: string): bigint {
  const [high, low] = text.split("/");
  return (BigInt(`0x${high}`) << 32n) | BigInt(`0x${low}`);
}

/** Runs `work` in a transaction on `client`; rolls back if it throws (a lost connection cannot). */
export async function inTransaction<C extends Queryable, T>(
  client: C,
  work: (client: C) => Promise<T>,
  commit = "COMMIT",
  prelude?: string,
): Promise<{ result: T; committed: pg.QueryResult | pg.QueryResult[] }> {
  // The prelude rides with the BEGIN: one round trip.
  await client.query(prelude === undefined ? "BEGIN" : `BEGIN; ${prelude}`);
  try {
    const result = await work(client);
    return { result, committed: await client.query(commit) };
  } catch (error) {
    if (!isConnectionError(error)) await client.query("ROLLBACK").catch(() => {});
    throw error;
  }
}

const WRITE_COMMANDS = new Set(["INSERT", "UPDATE", "DELETE", "MERGE"]);

/**
 * COMMIT, sent with what tells whether the transaction wrote and the WAL position after its
 * commit record: one round trip, as a simple-protocol query of three statements.
 */
const TRACKED_COMMIT =
  "SELECT pg_current_xact_id_if_assigned() IS NOT NULL AS wrote; COMMIT; SELECT pg_current_wal_insert_lsn()::text AS lsn";

export class Db {
  readonly pool: pg.Pool;
  private state: StoreHealth = { available: true };
  /** The WAL position after this node's last write (0 until one, or without trackWrites). */
  lastWriteLsn = 0n;

  constructor(private readonly options: DbOptions) {
    this.pool = new pg.Pool({
      connectionString: options.url,
      max: options.poolSize,
      connectionTimeoutMillis: options.connectTimeoutMs,
      idleTimeoutMillis: 30_000,
    });
    // An idle connection that the server drops emits here; without a listener it would crash
    // the process. The pool discards that connection and opens another when next needed.
    this.pool.on("error", (error) => this.lost(error));
  }

  health(): StoreHealth {
    return this.state;
  }

  async query<R extends pg.QueryResultRow>(
    sql: string,
    params: unknown[] = [],
  ): Promise<pg.QueryResult<R>> {
    try {
      const result = await retrying(() => this.pool.query<R>(sql, params));
      this.state = { available: true };
      if (this.options.trackWrites && WRITE_COMMANDS.has(result.command) && result.rowCount) {
        await this.noteWalPosition();
      }
      return result;
    } catch (error) {
      throw this.translate(error);
    }
  }

  /** Runs `work` on one connection; a connection that failed is not given back for reuse. */
  async withClient<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (error) {
      throw this.translate(error);
    }
    let broken = false;
    // A connection lost between two queries of a checked-out client is reported as an
    // 'error' event; without a listener it would crash the process.
    const onError = (error: Error) => {
      broken = true;
      this.lost(error);
    };
    client.on("error", onError);
    try {
      const result = await work(client);
      this.state = { available: true };
      return result;
    } catch (error) {
      broken ||= isConnectionError(error);
      throw this.translate(error);
    } finally {
      client.off("error", onError);
      client.release(broken);
    }
  }

  withSession<T>(settings: SessionSettings, work: (client: Queryable) => Promise<T>): Promise<T> {
    return this.withClient(async (client) => {
      await applySession(client, settings);
      return work(client);
    });
  }

  /**
   * Runs `work` in one transaction on one connection; rolls back if it throws. `prelude`
   * (statements without parameters, e.g. SET LOCAL) is sent with the BEGIN, in one round trip.
   * `work` may run more than once (see retrying): it must do nothing but its queries.
   */
  transaction<T>(work: (client: pg.PoolClient) => Promise<T>, prelude?: string): Promise<T> {
    return retrying(() => this.oneTransaction(work, prelude));
  }

  private oneTransaction<T>(
    work: (client: pg.PoolClient) => Promise<T>,
    prelude: string | undefined,
  ): Promise<T> {
    return this.withClient(async (client) => {
      if (!this.options.trackWrites) {
        return (await inTransaction(client, work, "COMMIT", prelude)).result;
      }
      const { result, committed } = await inTransaction(client, work, TRACKED_COMMIT, prelude);
      const [wrote, , position] = committed as pg.QueryResult[];
      if (wrote?.rows[0]?.wrote === true) this.noteWrite(position?.rows[0]?.lsn);
      return result;
    });
  }

  /** Records the primary's current WAL position as this node's last write (e.g. after DDL). */
  async noteWalPosition(): Promise<void> {
    const { rows } = await this.query<{ lsn: string }>(
      "SELECT pg_current_wal_insert_lsn()::text AS lsn",
    );
    this.noteWrite(rows[0]?.lsn);
  }

  private noteWrite(lsn: string | undefined): void {
    if (lsn === undefined) return;
    const position = parseLsn(lsn);
    if (position > this.lastWriteLsn) this.lastWriteLsn = position;
  }

  async close(): Promise<void> {
    await this.pool.end();
  }

  private lost(error: unknown): void {
    this.state = {
      available: false,
      reason: error instanceof Error ? error.message : String(error),
    };
  }

  private translate(error: unknown): unknown {
    if (!isConnectionError(error)) return error;
    this.lost(error);
    return unavailable(error);
  }
}
