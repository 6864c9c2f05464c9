/**
 * Read queries of the embedded backend off the event loop: a few worker threads
 * (./read-worker.ts), each with its own connection to the database file, started on first use.
 * better-sqlite3 runs a query synchronously on the calling thread and the bundled SQLite has no
 * progress callback to interrupt one, so a filter that scans every row would otherwise stop the
 * server for as long as it runs. A query goes to the worker with the fewest in flight.
 */
import type { Worker } from "node:worker_threads";
import { startModuleWorker } from "../../util/module-worker.ts";

export interface ReadRequest {
  id: number;
  sql: string;
  params: unknown[];
}

export type ReadReply =
  | { id: number; ok: true; rows: unknown[][] }
  | { id: number; ok: false; error: { message: string; code?: string } };

interface Pending {
  resolve(rows: unknown[][]): void;
  reject(error: unknown): void;
}

class Reader {
  readonly pending = new Map<number, Pending>();
  private readonly worker: Worker;
  failure: Error | undefined;

  constructor(file: string) {
    this.worker = startModuleWorker(import.meta.url, "read-worker", { workerData: { file } });
    this.worker.unref();
    this.worker.on("message", (reply: ReadReply) => this.settle(reply));
    this.worker.on("error", (error) => this.fail(error));
    this.worker.on("exit", (code) => this.fail(new Error(`a SQLite read worker exited (${code})`)));
  }

  send(request: ReadRequest): Promise<unknown[][]> {
    return new Promise((resolve, reject) => {
      if (this.pending.size === 0) this.worker.ref();
      this.pending.set(request.id, { resolve, reject });
      this.worker.postMessage(request);
    });
  }

  async terminate(): Promise<void> {
    this.fail(new Error("the store is closed"));
    await this.worker.terminate();
  }

  private settle(reply: ReadReply): void {
    const pending = this.pending.get(reply.id);
    if (pending === undefined) return;
    this.pending.delete(reply.id);
    if (this.pending.size === 0) this.worker.unref();
    if (reply.ok) pending.resolve(reply.rows);
    else pending.reject(Object.assign(new Error(reply.error.message), { code: reply.error.code }));
  }

  private fail(error: Error): void {
    this.failure ??= error;
    for (const pending of this.pending.values()) pending.reject(error);
    this.pending.clear();
  }
}

export class SqliteReaders {
  private readers: Reader[] = [];
  private nextId = 1;
  private closed = false;

  constructor(
    private readonly file: string,
    private readonly count: number,
  ) {}

  /** The rows of a read-only query, each an array of its columns. */
  all(sql: string, params: readonly unknown[]): Promise<unknown[][]> {
    if (this.closed) return Promise.reject(new Error("the store is closed"));
    // A reader that died is replaced: the next query starts a fresh one.
    this.readers = this.readers.filter((reader) => reader.failure === undefined);
    let reader = this.readers.reduce<Reader | undefined>(
      (best, r) => (best === undefined || r.pending.size < best.pending.size ? r : best),
      undefined,
    );
    if (reader === undefined || (reader.pending.size > 0 && this.readers.length < this.count)) {
      reader = new Reader(this.file);
      this.readers.push(reader);
    }
    return reader.send({ id: this.nextId++, sql, params: [...params] });
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.readers.map((reader) => reader.terminate()));
    this.readers = [];
  }
}
