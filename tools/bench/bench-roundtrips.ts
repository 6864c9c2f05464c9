/**
 * npm run bench:roundtrips -- [--count 20000] [--dims 512] [--queries 300]
 *
 * What a pgvector search costs in round trips, on a small set: the same k-10 searches through
 * the storage seam (1) as the product runs them, in one round trip (the search's settings stay
 * on the pooled connection, src/store/postgres/search.ts), (2) each in a transaction of its own
 * with SET LOCAL settings (BEGIN, the query, COMMIT: three round trips, as before), and (3) on
 * hnswlib in this process, on the same clustered vectors with the same M, efConstruction and
 * automatic efSearch, and (4) a bare round trip (`SELECT 1`). The three are timed in turn, query by query, so a change of machine load
 * hits them alike: compare the ratios printed, not the times. Starts its own Postgres (native
 * where it runs, tools/bench/test-postgres.ts).
 */
import { parseArgs } from "node:util";
import pg from "pg";
import { PostgresStore } from "../../src/store/postgres/store.ts";
import { efSearchFor } from "../../src/vector-index/ef-search.ts";
import { HnswIndex } from "../../src/vector-index/hnsw.ts";
import { loadAverage } from "./context.ts";
import { benchItems } from "./scale.ts";
import { percentile } from "./stats.ts";
import { startPostgres } from "./test-postgres.ts";
import { clusteredUnitVectors, rowOf } from "./vectors.ts";

const { values } = parseArgs({
  options: {
    count: { type: "string", default: "20000" },
    dims: { type: "string", default: "512" },
    queries: { type: "string", default: "300" },
  },
});
const count = Number(values.count);
const dims = Number(values.dims);
const queries = Number(values.queries);
/** The rows' order in `ways`: hnswlib is the reference of the ratios. */
const HNSWLIB = 2;
const INDEX = { m: 16, efConstruction: 200 };
const MODEL = { modelId: "bench", dims };
const log = (message: string) => process.stderr.write(`# ${message}\n`);

const spec = { clusters: Math.max(10, Math.round(count / 100)), spread: 0.03 };
const data = clusteredUnitVectors(count, dims, spec, 1);
const queryData = clusteredUnitVectors(queries, dims, spec, 2, 1);
const postgres = await startPostgres();
const open = (extra: object = {}) =>
  PostgresStore.open({ url: postgres.url, vectorType: "halfvec", ...INDEX, efSearch: 0, ...extra });
try {
  const store = await open();
  await store.setModel(MODEL);
  // Loaded without the HNSW index, which the product then builds once (prepare).
  const admin = new pg.Client({ connectionString: postgres.url });
  await admin.connect();
  await admin.query("DROP INDEX longclip.items_embedding_hnsw");
  await admin.query("DELETE FROM longclip.meta WHERE key = 'hnsw_index'");
  await admin.end();
  for (let start = 0; start < count; start += 1_000) {
    await store.insertItems(benchItems(data, dims, start, Math.min(count, start + 1_000)), "bench");
  }
  await store.prepare();
  log(`${count} vectors of ${dims} dimensions loaded and indexed`);
  const asBefore = await open({ transactionPerSearch: true });
  const bare = new pg.Pool({ connectionString: postgres.url, max: 1 });
  const hnsw = HnswIndex.create({ dims, ...INDEX, efSearch: 0, capacity: count });
  for (let i = 0; i < count; i++) hnsw.add(i, rowOf(data, dims, i));

  const ways: [string, (vector: Float32Array) => Promise<unknown>][] = [
    [
      "pgvector halfvec, one round trip (the product)",
      (v) => store.nearest({ vector: v, k: 10 }, "bench"),
    ],
    [
      "pgvector halfvec, three round trips (as before)",
      (v) => asBefore.nearest({ vector: v, k: 10 }, "bench"),
    ],
    ["hnswlib, in process", async (v) => hnsw.search(v, 10)],
    ["a round trip alone (SELECT 1 on a pooled connection)", () => bare.query("SELECT 1")],
  ];
  const times = ways.map(() => [] as number[]);
  const start = loadAverage();
  for (let q = -20; q < queries; q++) {
    const vector = rowOf(queryData, dims, (q + queries) % queries);
    // Each query on all three, in a rotating order; the first 20 warm up.
    for (let j = 0; j < ways.length; j++) {
      const way = (q + queries + j) % ways.length;
      const began = performance.now();
      await (ways[way] as (typeof ways)[number])[1](vector);
      if (q >= 0) times[way]?.push(performance.now() - began);
    }
  }
  await store.close();
  await asBefore.close();
  await bare.end();
  const p50 = times.map((t) => percentile(t, 50));
  const hnswP50 = p50[HNSWLIB] as number;
  console.log(
    `bench:roundtrips: ${count} clustered ${dims}-d vectors, k 10, efSearch ${efSearchFor(10, count)}, ${queries} queries; load average ${start.join(" ")} at start, ${loadAverage().join(" ")} at the end, ${new Date().toISOString()}`,
  );
  console.log("| search | p50 ms | p99 ms | p50 / hnswlib's |");
  console.log("| --- | --- | --- | --- |");
  ways.forEach(([name], i) => {
    const t = times[i] as number[];
    console.log(
      `| ${name} | ${percentile(t, 50).toFixed(2)} | ${percentile(t, 99).toFixed(2)} | ${((p50[i] as number) / hnswP50).toFixed(1)} |`,
    );
  });
  console.log(
    `three round trips / one: ${((p50[1] as number) / (p50[0] as number)).toFixed(2)} (p50)`,
  );
} finally {
  await postgres.stop();
}
