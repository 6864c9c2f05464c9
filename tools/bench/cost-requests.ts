/**
 * Cost of the requests issue 24 found buying much CPU for little: `GET /duplicates` at a
 * threshold that changes in the sixth decimal (each a rescan before), five at once, and a
 * 16-part `compose` of long texts read in windows (`long_query: "chunk"`), with a third
 * client's plain search latency while two clients send such requests.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import {
  measureRequests,
  openBenchStore,
  peakRssMb,
  postJson,
  processTreeCpuSeconds,
  type Served,
  seedItems,
  serve,
} from "./attack.ts";
import { startPostgres } from "./test-postgres.ts";

export interface RequestCostRow {
  backend: string;
  request: string;
  statuses: string;
  serverCpuS: number;
  databaseCpuS: number | undefined;
  healthMaxMs: number;
}

async function withServer<T>(
  backend: string,
  items: number,
  run: (served: Served, dbPid: number | undefined) => Promise<T>,
  log: (message: string) => void,
): Promise<T> {
  const dataDir = mkdtempSync(path.join(tmpdir(), "longclip-cost-requests-"));
  const pg = backend === "postgres" ? await startPostgres() : undefined;
  const args = ["--data", dataDir, "--threads", "1"];
  if (pg !== undefined) args.push("--database-url", pg.url, "--job-worker", "off");
  try {
    let served = await serve(args);
    await served.stop();
    log(`${backend}: seeding ${items} items`);
    const store = await openBenchStore(pg === undefined ? { dataDir } : { url: pg.url });
    await seedItems(store, items, (n) => ({ n }));
    await store.close();
    served = await serve(args);
    try {
      return await run(served, pg?.pid());
    } finally {
      await served.stop();
    }
  } finally {
    await pg?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** About `chars` characters of short sentences (the demo tokenizer reads ~10 tokens each). */
export function longText(chars: number, seed = 0): string {
  let text = "";
  for (let i = 0; text.length < chars; i++) {
    text += `A ${["red", "green", "blue"][(i + seed) % 3]} circle ${i} sits left of a square. `;
  }
  return text.slice(0, chars);
}

export async function measureDuplicateCosts(options: {
  items: number;
  postgres: boolean;
  log(message: string): void;
}): Promise<RequestCostRow[]> {
  const rows: RequestCostRow[] = [];
  for (const backend of options.postgres ? ["sqlite", "postgres"] : ["sqlite"]) {
    await withServer(
      backend,
      options.items,
      async (served, dbPid) => {
        const get = (threshold: number) => async () => {
          const res = await fetch(`${served.url}/duplicates?threshold=${threshold}`);
          return { status: res.status, body: await res.text() };
        };
        const measure = async (
          request: string,
          sends: (() => Promise<{ status: number; body: string }>)[],
        ) => {
          options.log(`${backend}: ${request}`);
          const dbBefore = dbPid === undefined ? 0 : processTreeCpuSeconds(dbPid);
          const result = await measureRequests(served, sends);
          rows.push({
            backend,
            request,
            statuses: [...new Set(result.statuses)].join(","),
            serverCpuS: result.cpuS,
            databaseCpuS: dbPid === undefined ? undefined : processTreeCpuSeconds(dbPid) - dbBefore,
            healthMaxMs: result.healthMaxMs,
          });
        };
        await measure("GET /duplicates?threshold=0.95 (first)", [get(0.95)]);
        await measure("then 0.950001, 0.950002, 0.950003, 0.950004, 0.950005 one after another", [
          async () => {
            let last = { status: 0, body: "" };
            for (const t of [0.950001, 0.950002, 0.950003, 0.950004, 0.950005])
              last = await get(t)();
            return last;
          },
        ]);
        await measure(
          "then 5 at once (0.960001 ... 0.960005)",
          [0.960001, 0.960002, 0.960003, 0.960004, 0.960005].map(get),
        );
        await measure("GET /duplicates?threshold=0.01", [get(0.01)]);
      },
      options.log,
    );
  }
  return rows;
}

export interface ChunkCostRow {
  request: string;
  status: number;
  serverCpuS: number;
  windows: number | undefined;
  thirdClientP50Ms: number;
  thirdClientMaxMs: number;
}

/** Plain searches, one at a time, for `ms`: the latencies. */
async function searchLatencies(url: string, ms: number): Promise<number[]> {
  const out: number[] = [];
  const end = performance.now() + ms;
  for (let i = 0; performance.now() < end; i++) {
    const started = performance.now();
    await postJson(`${url}/search`, { query: `a small photo number ${i}`, k: 5 });
    out.push(performance.now() - started);
  }
  return out.sort((a, b) => a - b);
}

export async function measureChunkCosts(options: {
  log(message: string): void;
}): Promise<ChunkCostRow[]> {
  const rows: ChunkCostRow[] = [];
  await withServer(
    "sqlite",
    100,
    async (served) => {
      const text = longText(10_000);
      const requests: [string, unknown][] = [
        ['one 10,000-character query, long_query "chunk"', { query: text, long_query: "chunk" }],
        [
          '16-part compose of 10,000-character texts, long_query "chunk"',
          {
            compose: Array.from({ length: 16 }, (_, i) => ({
              text: longText(10_000, i),
              weight: 1,
            })),
            long_query: "chunk",
          },
        ],
      ];
      const baseline = await searchLatencies(served.url, 3_000);
      rows.push({
        request: "none (plain searches alone)",
        status: 200,
        serverCpuS: 0,
        windows: undefined,
        thirdClientP50Ms: baseline[Math.floor(baseline.length / 2)] as number,
        thirdClientMaxMs: baseline[baseline.length - 1] as number,
      });
      for (const [name, body] of requests) {
        options.log(`chunk: ${name}`);
        const send = () => postJson(`${served.url}/search`, { ...(body as object), k: 5 });
        const one = await measureRequests(served, [send]);
        let windows: number | undefined;
        try {
          windows = (JSON.parse((await send()).body) as { query?: { chunks?: number } }).query
            ?.chunks;
        } catch {}
        // Two clients sending it in a loop while a third searches.
        let running = true;
        const attackers = [0, 1].map(async () => {
          while (running) await send();
        });
        const latencies = await searchLatencies(served.url, 8_000);
        running = false;
        await Promise.all(attackers);
        rows.push({
          request: name,
          status: one.statuses[0] as number,
          serverCpuS: one.cpuS,
          windows,
          thirdClientP50Ms: latencies[Math.floor(latencies.length / 2)] as number,
          thirdClientMaxMs: latencies[latencies.length - 1] as number,
        });
      }
    },
    options.log,
  );
  return rows;
}

export interface JobCostRow {
  request: string;
  status: number;
  serverCpuS: number;
  rssGrowthMb: number;
  answer: string;
}

/**
 * `POST /jobs` on big folders, with the job worker off (only the walk is measured): a folder
 * named ten times, and a folder of more files than one call's arguments hold.
 */
export async function measureJobCosts(options: {
  files: number;
  log(message: string): void;
}): Promise<JobCostRow[]> {
  const rows: JobCostRow[] = [];
  const media = mkdtempSync(path.join(tmpdir(), "longclip-cost-jobs-"));
  const dataDir = mkdtempSync(path.join(tmpdir(), "longclip-cost-jobs-data-"));
  try {
    options.log(`jobs: writing ${options.files} + 150,000 empty files`);
    const fill = (dir: string, count: number) => {
      mkdirSync(dir, { recursive: true });
      for (let i = 0; i < count; i++) writeFileSync(path.join(dir, `f${i}.png`), "");
    };
    fill(path.join(media, "photos"), options.files);
    fill(path.join(media, "huge"), 150_000);
    const served = await serve([
      "--data",
      dataDir,
      "--media-root",
      media,
      "--job-worker",
      "off",
      "--max-job-items",
      "1000000",
    ]);
    try {
      const requests: [string, unknown][] = [
        [`"photos" (${options.files} files) named once`, { paths: ["photos"] }],
        [`"photos" named 10 times (101 bytes)`, { paths: Array(10).fill("photos") }],
        ['"huge" (150,000 files)', { paths: ["huge"] }],
      ];
      for (const [name, body] of requests) {
        options.log(`jobs: ${name}`);
        const rssBefore = peakRssMb(served.pid);
        const result = await measureRequests(served, [() => postJson(`${served.url}/jobs`, body)]);
        rows.push({
          request: name,
          status: result.statuses[0] as number,
          serverCpuS: result.cpuS,
          rssGrowthMb: peakRssMb(served.pid) - rssBefore,
          answer: result.sample.replace(/\s+/g, " ").slice(0, 90),
        });
      }
    } finally {
      await served.stop();
    }
  } finally {
    rmSync(media, { recursive: true, force: true });
    rmSync(dataDir, { recursive: true, force: true });
  }
  return rows;
}
