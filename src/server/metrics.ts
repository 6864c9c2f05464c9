/**
 * Prometheus metrics of one app instance. A registry per app (not prom-client's global one)
 * so that several apps in one process (tests) do not clash.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { Library } from "../library/types.ts";
import { storeRetries } from "../store/retries.ts";

export type Operation = "index" | "search_text" | "search_image" | "duplicates" | "explain";

export interface AppMetrics {
  registry: Registry;
  observeRequest(method: string, route: string, status: number, seconds: number): void;
  /** Times one library call (the embedding work behind a request). */
  time<T>(operation: Operation, work: () => Promise<T>): Promise<T>;
  countIndexResults(statuses: readonly string[]): void;
}

export function createMetrics(library: Library): AppMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const requests = new Counter({
    name: "http_requests_total",
    help: "HTTP requests by method, route and status",
    labelNames: ["method", "route", "status"] as const,
    registers: [registry],
  });
  const durations = new Histogram({
    name: "http_request_duration_seconds",
    help: "HTTP request durations by method, route and status",
    labelNames: ["method", "route", "status"] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
  const operations = new Histogram({
    name: "longclip_operation_duration_seconds",
    help: "Duration of library operations (preprocess + embed + store/search) by operation",
    labelNames: ["operation", "outcome"] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [registry],
  });
  const indexResults = new Counter({
    name: "longclip_index_results_total",
    help: "Items submitted to POST /index by result status",
    labelNames: ["status"] as const,
    registers: [registry],
  });
  new Gauge({
    name: "longclip_items",
    help: "Items stored",
    registers: [registry],
    async collect() {
      this.set((await library.stats()).items);
    },
  });
  new Gauge({
    name: "longclip_queue_pending",
    help: "Embedding jobs waiting in the queue",
    registers: [registry],
    async collect() {
      this.set((await library.stats()).queue.pending);
    },
  });
  const servers = ["server", "role"] as const;
  new Gauge({
    name: "longclip_database_server_up",
    help: "1 while a database server serves reads, else 0 (unreachable, or behind --database-read-max-lag-ms)",
    labelNames: servers,
    registers: [registry],
    collect() {
      this.reset();
      for (const server of library.databaseServers()) {
        this.set({ server: server.name, role: server.role }, server.state === "up" ? 1 : 0);
      }
    },
  });
  new Gauge({
    name: "longclip_database_server_lag_bytes",
    help: "WAL bytes a database server has still to replay, as of the last probe",
    labelNames: servers,
    registers: [registry],
    collect() {
      this.reset();
      for (const server of library.databaseServers()) {
        if (server.lagBytes === undefined) continue;
        this.set({ server: server.name, role: server.role }, server.lagBytes);
      }
    },
  });
  new Counter({
    name: "longclip_database_server_reads_total",
    help: "Reads a database server served since start (searches, item pages, originals)",
    labelNames: servers,
    registers: [registry],
    collect() {
      this.reset();
      for (const server of library.databaseServers()) {
        if (server.reads === undefined || server.reads === 0) continue;
        this.inc({ server: server.name, role: server.role }, server.reads);
      }
    },
  });
  new Gauge({
    name: "longclip_index_save_failures",
    help: "HNSW index saves that failed since start (full disk, write errors); the previous file is kept",
    registers: [registry],
    collect() {
      this.set(library.storeHealth().indexSaveFailures ?? 0);
    },
  });
  new Gauge({
    name: "longclip_store_retries",
    help: "Store work the database aborted for a deadlock or a serialization failure and that ran again, since start (never an error to clients)",
    labelNames: ["reason"] as const,
    registers: [registry],
    collect() {
      for (const [reason, count] of Object.entries(storeRetries())) this.set({ reason }, count);
    },
  });
  return {
    registry,
    observeRequest(method, route, status, seconds) {
      const labels = { method, route, status: String(status) };
      requests.inc(labels);
      durations.observe(labels, seconds);
    },
    async time(operation, work) {
      const end = operations.startTimer({ operation });
      try {
        const result = await work();
        end({ outcome: "ok" });
        return result;
      } catch (error) {
        end({ outcome: "error" });
        throw error;
      }
    },
    countIndexResults(statuses) {
      for (const status of statuses) indexResults.inc({ status });
    },
  };
}
