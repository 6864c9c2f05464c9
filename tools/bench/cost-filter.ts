/**
 * Cost of the largest metadata filters a client may send to `POST /search`: the attack of
 * issue 24 (32 keys, each `$nin` of 100 values, about 10 KB) and the largest filter the server
 * accepts by default (32 keys sharing 256 values), each once alone (server CPU seconds;
 * on Postgres the database's too) and three at once (the slowest `/health` meanwhile).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import {
  measureRequests,
  openBenchStore,
  postJson,
  processTreeCpuSeconds,
  type Served,
  seedItems,
  serve,
} from "./attack.ts";
import { startPostgres } from "./test-postgres.ts";

export interface FilterCostRow {
  backend: string;
  filter: string;
  status: number;
  serverCpuS: number;
  databaseCpuS: number | undefined;
  concurrentHealthMaxMs: number;
  idleHealthMaxMs: number;
}

/** 32 keys, each `$nin` of `values` strings: the shape of issue 24's attack. */
export function wideFilter(keys: number, values: number): Record<string, unknown> {
  const filter: Record<string, unknown> = {};
  for (let k = 0; k < keys; k++) {
    filter[`k${k}`] = { $nin: Array.from({ length: values }, (_, v) => `value-${k}-${v}`) };
  }
  return filter;
}

const metadataOf = (n: number) => ({
  k0: `value-0-${n % 150}`,
  k1: n % 13,
  city: ["Paris", "Rome", "Oslo"][n % 3] as string,
  caption: `seeded item ${n}`,
});

export async function measureFilterCosts(options: {
  items: number;
  postgres: boolean;
  log(message: string): void;
}): Promise<FilterCostRow[]> {
  const rows: FilterCostRow[] = [];
  const backends = options.postgres ? ["sqlite", "postgres"] : ["sqlite"];
  for (const backend of backends) {
    const dataDir = mkdtempSync(path.join(tmpdir(), "longclip-cost-filter-"));
    const pg = backend === "postgres" ? await startPostgres() : undefined;
    const where = pg === undefined ? { dataDir } : { url: pg.url };
    const args = ["--data", dataDir, "--threads", "1"];
    if (pg !== undefined) args.push("--database-url", pg.url, "--job-worker", "off");
    try {
      // First start: indexes the demo gallery, which records the model.
      let served: Served = await serve(args);
      await served.stop();
      options.log(`${backend}: seeding ${options.items} items`);
      const store = await openBenchStore(where);
      await seedItems(store, options.items, metadataOf);
      await store.close();
      served = await serve(args);
      try {
        const filters: [string, Record<string, unknown>][] = [
          ["issue 24: 32 keys x $nin 100", wideFilter(32, 100)],
          // 256 values in all: the most the default maxFilterValues accepts.
          ["32 keys x $nin 8", wideFilter(32, 8)],
        ];
        const search = (filter: Record<string, unknown>) => () =>
          postJson(`${served.url}/search`, { query: "a photo", k: 10, filter });
        await search({ city: "Paris" })(); // warm: model, index, statement cache
        const idle = await measureRequests(served, [search({ city: "Paris" })]);
        for (const [name, filter] of filters) {
          options.log(`${backend}: ${name}`);
          const dbBefore = pg?.pid() === undefined ? 0 : processTreeCpuSeconds(pg.pid() as number);
          const one = await measureRequests(served, [search(filter)]);
          const dbCpuS =
            pg?.pid() === undefined
              ? undefined
              : processTreeCpuSeconds(pg.pid() as number) - dbBefore;
          const three = await measureRequests(served, [
            search(filter),
            search(filter),
            search(filter),
          ]);
          rows.push({
            backend,
            filter: name,
            status: one.statuses[0] as number,
            serverCpuS: one.cpuS,
            databaseCpuS: dbCpuS,
            concurrentHealthMaxMs: three.healthMaxMs,
            idleHealthMaxMs: idle.healthMaxMs,
          });
        }
      } finally {
        await served.stop();
      }
    } finally {
      await pg?.stop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  }
  return rows;
}
