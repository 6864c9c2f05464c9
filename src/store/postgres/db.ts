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

export class Db {
  readonly pool: pg.Pool;
  private state: StoreHealth = { available: true };

  constructor(options: DbOptions) {
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

  /**
   * Runs `work` in one transaction on one connection; rolls back if it throws. `work` may run
   * more than once (see retrying): it must do nothing but its queries.
   */
  transaction<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    return retrying(() => this.oneTransaction(work));
  }

  private oneTransaction<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    return this.withClient(async (client) => {
      await client.query("BEGIN");
      try {
        const result = await work(client);
        await client.query("COMMIT");
        return result;
      } catch (error) {
        if (!isConnectionError(error)) await client.query("ROLLBACK").catch(() => {});
        throw error;
      }
    });
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
