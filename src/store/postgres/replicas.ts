/**
 * Reads from streaming replicas (`--database-read-url`, any number), everything else on the
 * primary. The consistency rule, enforced for every read a replica serves:
 *
 *   the replica has replayed (1) the WAL position after this node's last write (`Db.lastWriteLsn`)
 *   and (2) a position of the primary's WAL sampled no more than `maxLagMs` ago.
 *
 * (1) gives read-your-writes on one node: what a node acknowledged, its next read finds. (2) bounds
 * the staleness everywhere: a write any node acknowledged at least `maxLagMs` before a read began
 * is in that read, since its commit record precedes the sample. A replica that is behind either
 * position, unreachable, or fails in the middle of a read is skipped, and the primary answers:
 * a replica's trouble costs a client time, never an error or an older answer.
 *
 * Positions are checked without an extra query per read: a probe (every `maxLagMs / 4`, at most
 * 1 s) samples the primary's WAL position and each replica's replay position, and each pooled
 * connection to a replica remembers the replay position it last saw. A connection dies with its
 * server, so a position seen on a live connection still holds for it (a restarted replica may
 * come back behind where it was, and its new connections ask again).
 */
import { performance } from "node:perf_hooks";
import pg from "pg";
import type { StoreServer } from "../types.ts";
import {
  applySession,
  type Db,
  inTransaction,
  parseLsn,
  type Queryable,
  type Reads,
  type SessionSettings,
} from "./db.ts";
import { isConnectionError } from "./errors.ts";

export interface ReplicaOptions {
  urls: readonly string[];
  /** The staleness bound (2) above, in milliseconds. */
  maxLagMs: number;
  /** Connections per replica. */
  poolSize: number;
  connectTimeoutMs: number;
}

/** How often the probe runs for a bound: four times within it, at most every second. */
export function probeIntervalMs(maxLagMs: number): number {
  // A bound of 0 lets no replica serve (every read needs the primary's latest position): the
  // probe only keeps the replicas' states for /ready and /metrics.
  if (maxLagMs <= 0) return 1_000;
  return Math.min(1_000, Math.max(25, Math.floor(maxLagMs / 4)));
}

/** host:port/database of a connection URL: names a server in /stats and /metrics, no credentials. */
export function serverName(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.hostname}:${parsed.port || "5432"}${parsed.pathname}`;
  } catch {
    return "(unparseable URL)";
  }
}

const REPLICA_PROBE = `SELECT pg_is_in_recovery() AS standby,
  pg_last_wal_replay_lsn()::text AS replayed,
  (SELECT system_identifier::text FROM pg_control_system()) AS system`;

const PRIMARY_PROBE = `SELECT pg_current_wal_insert_lsn()::text AS lsn,
  (SELECT system_identifier::text FROM pg_control_system()) AS system`;

/** A query that fails after `timeoutMs` without an answer (pg's per-query read timeout). */
function timed(text: string, timeoutMs: number): pg.QueryConfig {
  return { text, query_timeout: timeoutMs } as pg.QueryConfig;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

class Replica {
  state: StoreServer["state"] = "starting";
  reason: string | undefined;
  /** Its replay position, as last seen (by the probe or a connection). */
  replayed = 0n;
  reads = 0;
  /** The replay position each open connection last saw. */
  readonly seen = new WeakMap<pg.PoolClient, bigint>();
  readonly pool: pg.Pool;

  constructor(
    readonly name: string,
    url: string,
    options: ReplicaOptions,
  ) {
    this.pool = new pg.Pool({
      connectionString: url,
      max: options.poolSize,
      connectionTimeoutMillis: options.connectTimeoutMs,
      idleTimeoutMillis: 30_000,
    });
    // An idle connection dropped by the server (the replica died): out of rotation until a
    // probe reaches it again.
    this.pool.on("error", (error) => this.down(error));
  }

  down(error: unknown): void {
    this.state = "down";
    this.reason = messageOf(error);
  }
}

export class ReplicaReads implements Reads {
  private readonly replicas: Replica[];
  /** Primary WAL positions with when they were sampled (performance.now()), oldest first. */
  private samples: { at: number; lsn: bigint }[] = [];
  private primarySystem: string | undefined;
  private primaryReads = 0;
  private turn = 0;
  private timer: NodeJS.Timeout | undefined;
  private probing: Promise<void> | undefined;
  private closed = false;
  private readonly interval: number;

  constructor(
    private readonly primary: Db,
    private readonly primaryName: string,
    private readonly options: ReplicaOptions,
  ) {
    this.replicas = options.urls.map((url) => new Replica(serverName(url), url, options));
    this.interval = probeIntervalMs(options.maxLagMs);
  }

  /** Starts probing (the first probe at once); replicas serve reads from the first one on. */
  start(): void {
    if (this.closed) return;
    this.probing = this.probe().finally(() => {
      this.probing = undefined;
      if (this.closed) return;
      this.timer = setTimeout(() => this.start(), this.interval);
      this.timer.unref();
    });
  }

  async query<R extends pg.QueryResultRow>(
    sql: string,
    params: unknown[] = [],
    accept?: (result: pg.QueryResult<R>) => boolean,
  ): Promise<pg.QueryResult<R>> {
    const served = await this.onReplica((client) => client.query<R>(sql, params), accept);
    return served !== undefined ? served.value : this.primary.query<R>(sql, params);
  }

  async transaction<T>(work: (client: Queryable) => Promise<T>, prelude?: string): Promise<T> {
    const served = await this.onReplica(
      async (client) => (await inTransaction(client, work, "COMMIT", prelude)).result,
    );
    return served !== undefined ? served.value : this.primary.transaction(work, prelude);
  }

  async withSession<T>(
    settings: SessionSettings,
    work: (client: Queryable) => Promise<T>,
  ): Promise<T> {
    const served = await this.onReplica(async (client) => {
      await applySession(client, settings);
      return work(client);
    });
    return served !== undefined ? served.value : this.primary.withSession(settings, work);
  }

  /** The primary and each replica: whether it serves reads now, how far behind, reads served. */
  servers(): StoreServer[] {
    const health = this.primary.health();
    const newest = this.samples.at(-1)?.lsn;
    return [
      {
        name: this.primaryName,
        role: "primary",
        state: health.available ? "up" : "down",
        ...(health.reason === undefined ? {} : { reason: health.reason }),
        reads: this.primaryReads,
      },
      ...this.replicas.map((replica) => ({
        name: replica.name,
        role: "replica" as const,
        state: replica.state,
        ...(replica.reason === undefined ? {} : { reason: replica.reason }),
        ...(newest === undefined || replica.state === "down" || replica.state === "starting"
          ? {}
          : { lagBytes: Math.max(0, Number(newest - replica.replayed)) }),
        reads: replica.reads,
      })),
    ];
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    await this.probing;
    await Promise.all(this.replicas.map((replica) => replica.pool.end()));
  }

  /** The position a replica must have replayed to serve a read now; undefined: none may. */
  private required(): bigint | undefined {
    if (this.options.maxLagMs <= 0) return undefined;
    const oldest = performance.now() - this.options.maxLagMs;
    const sample = this.samples.find((candidate) => candidate.at >= oldest);
    if (sample === undefined) return undefined;
    const ownWrite = this.primary.lastWriteLsn;
    // biome-ignore lint/complexity/useMathMinMax: Math.max takes no bigint
    return sample.lsn > ownWrite ? sample.lsn : ownWrite;
  }

  /** Runs a read on a replica that satisfies the rule; undefined: the primary must. */
  private async onReplica<T>(
    work: (client: pg.PoolClient) => Promise<T>,
    accept?: (value: T) => boolean,
  ): Promise<{ value: T } | undefined> {
    const required = this.required();
    const count = this.replicas.length;
    const first = this.turn++ % count;
    for (let i = 0; required !== undefined && i < count; i++) {
      const replica = this.replicas[(first + i) % count] as Replica;
      if (replica.state !== "up" && replica.state !== "lagging") continue;
      // Known to be behind: skip it without asking (the probe or a connection updates this).
      if (replica.replayed < required) continue;
      const served = await this.tryReplica(replica, required, work);
      if (served === undefined) continue;
      // A miss on a replica (an item another node just wrote) is asked of the primary.
      if (accept !== undefined && !accept(served.value)) break;
      replica.reads++;
      return served;
    }
    this.primaryReads++;
    return undefined;
  }

  private async tryReplica<T>(
    replica: Replica,
    required: bigint,
    work: (client: pg.PoolClient) => Promise<T>,
  ): Promise<{ value: T } | undefined> {
    let client: pg.PoolClient;
    try {
      client = await replica.pool.connect();
    } catch (error) {
      replica.down(error);
      return undefined;
    }
    let broken = false;
    const onError = (error: Error) => {
      broken = true;
      replica.down(error);
    };
    client.on("error", onError);
    try {
      if ((replica.seen.get(client) ?? -1n) < required) {
        const { rows } = await client.query<{ replayed: string | null }>(
          "SELECT pg_last_wal_replay_lsn()::text AS replayed",
        );
        const replayed = rows[0]?.replayed ? parseLsn(rows[0].replayed) : 0n;
        replica.seen.set(client, replayed);
        replica.replayed = replayed;
        if (replayed < required) return undefined;
      }
      return { value: await work(client) };
    } catch (error) {
      // Any failure on a replica (it died, a query cancelled by a replay conflict) is retried
      // on the primary, which gives the same error if the read itself is at fault.
      if (isConnectionError(error)) {
        broken = true;
        replica.down(error);
      }
      return undefined;
    } finally {
      client.off("error", onError);
      client.release(broken);
    }
  }

  private async probe(): Promise<void> {
    const timeout = Math.max(1_000, this.interval * 2);
    const at = performance.now();
    try {
      const { rows } = await this.primary.pool.query<{ lsn: string; system: string }>(
        timed(PRIMARY_PROBE, timeout),
      );
      const row = rows[0];
      if (row !== undefined) {
        this.samples.push({ at, lsn: parseLsn(row.lsn) });
        this.primarySystem = row.system;
      }
    } catch {
      // No sample: once the last one is older than the bound, reads go to the primary (which
      // answers database_unavailable while it is down).
    }
    const oldest = performance.now() - this.options.maxLagMs;
    this.samples = this.samples.filter((sample) => sample.at >= oldest);
    await Promise.all(this.replicas.map((replica) => this.probeReplica(replica, timeout)));
  }

  private async probeReplica(replica: Replica, timeout: number): Promise<void> {
    try {
      const { rows } = await replica.pool.query<{
        standby: boolean;
        replayed: string | null;
        system: string;
      }>(timed(REPLICA_PROBE, timeout));
      const row = rows[0];
      if (row === undefined) return;
      if (!row.standby) {
        replica.state = "not_a_replica";
        replica.reason = "it is not a standby (pg_is_in_recovery() is false); it serves no reads";
        return;
      }
      if (this.primarySystem !== undefined && row.system !== this.primarySystem) {
        replica.state = "not_a_replica";
        replica.reason = `it replicates another cluster (system identifier ${row.system}, the primary's is ${this.primarySystem}); it serves no reads`;
        return;
      }
      replica.replayed = row.replayed === null ? 0n : parseLsn(row.replayed);
      const oldest = performance.now() - this.options.maxLagMs;
      const bound = this.samples.find((sample) => sample.at >= oldest)?.lsn;
      const current = bound !== undefined && replica.replayed >= bound;
      replica.state = current ? "up" : "lagging";
      replica.reason = current
        ? undefined
        : `it has not replayed what the primary wrote ${this.options.maxLagMs} ms ago; reads go elsewhere`;
    } catch (error) {
      replica.down(error);
    }
  }
}
