/**
 * The cost of --regions auto against off, through the library on each backend (SQLite + HNSW,
 * and Postgres + pgvector: native where it can run, else PGlite, as the tests): the canvases
 * of bench:regions (tools/bench/canvases.ts) indexed once each way; prints vectors per item,
 * ingest CPU ms per image (the whole process: encoder and preprocessing threads included),
 * the store's size on disk and the p50 of text searches (each scene's caption, k = 10).
 *
 *   npm run bench:regions-cost -- [--seed 302] [--count 200] [--postgres-only | --sqlite-only]
 */
import { readdirSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import pg from "pg";
import { CANVAS_SHAPE, makeCanvases } from "./canvases.ts";
import { indexAll, openBenchLibrary, seededRandom, synthScenes } from "./search-extras.ts";
import { percentile } from "./stats.ts";

const { values } = parseArgs({
  options: {
    seed: { type: "string", default: "302" },
    count: { type: "string", default: "200" },
    "sqlite-only": { type: "boolean", default: false },
    "postgres-only": { type: "boolean", default: false },
  },
});
const seed = Number(values.seed);
const count = Number(values.count);

function dirBytes(dir: string): number {
  let total = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    total += entry.isDirectory() ? dirBytes(full) : statSync(full).size;
  }
  return total;
}

async function postgresBytes(url: string): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query("select pg_database_size(current_database()) as n");
    return Number(rows[0].n);
  } finally {
    await client.end();
  }
}

const scenes = await synthScenes(
  path.join(os.tmpdir(), `longclip-synth-${seed}-${count}-224`),
  count,
  seed,
  224,
);
const canvases = await makeCanvases(scenes, CANVAS_SHAPE, seededRandom(seed));
const captions = canvases.flatMap((c) => c.placements.map((p) => p.scene.caption));
const backends = [
  ...(values["postgres-only"] ? [] : [false]),
  ...(values["sqlite-only"] ? [] : [true]),
];
process.stdout.write(
  `${canvases.length} canvases of ${captions.length} scenes (seed ${seed}); demo model; ${captions.length} caption searches each\n`,
);
process.stdout.write(
  "| backend | regions | vectors per item | ingest CPU ms per image | store on disk MiB | search p50 ms |\n| --- | --- | ---: | ---: | ---: | ---: |\n",
);
for (const usePostgres of backends) {
  for (const regions of ["off", "auto"] as const) {
    const bench = await openBenchLibrary(usePostgres, { regions });
    try {
      const cpu = process.cpuUsage();
      await indexAll(
        bench.library,
        canvases.map((c) => ({ id: c.name, bytes: c.jpeg })),
        8,
      );
      const used = process.cpuUsage(cpu);
      const stats = await bench.library.stats();
      const bytes = usePostgres
        ? await postgresBytes(bench.settings.databaseUrl as string)
        : dirBytes(bench.settings.dataDir);
      // Each caption once: every search embeds its text (no cache hit), then ranks.
      const times: number[] = [];
      for (const caption of captions) {
        const started = performance.now();
        await bench.library.searchText(caption, { k: 10 });
        times.push(performance.now() - started);
      }
      process.stdout.write(
        `| ${bench.backend} | ${regions} | ${(stats.index.size / stats.items).toFixed(1)} | ${((used.user + used.system) / 1000 / canvases.length).toFixed(0)} | ${(bytes / 2 ** 20).toFixed(1)} | ${percentile(times, 50).toFixed(2)} |\n`,
      );
    } finally {
      await bench.close();
    }
  }
}
