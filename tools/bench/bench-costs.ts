/**
 * What one cheap request can cost the server (issue 24): for each section, the attack's
 * request against a `longclip serve` child on 127.0.0.1 with the demo model, and the server's
 * CPU seconds, peak memory and `/health` latency meanwhile. Printed as tables; nothing is
 * asserted (timings are noisy: compare rows of one run).
 *
 *   npm run bench:costs -- [--sections filter,duplicates,chunk,jobs,weights] [--items 3254] [--postgres]
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { measureFilterCosts } from "./cost-filter.ts";
import { measureChunkCosts, measureDuplicateCosts, measureJobCosts } from "./cost-requests.ts";
import { runExport, writeCraftedCheckpoints } from "./crafted-checkpoints.ts";
import { fmt, markdownTable } from "./markdown.ts";

const { values } = parseArgs({
  options: {
    sections: { type: "string", default: "filter" },
    items: { type: "string", default: "3254" },
    postgres: { type: "boolean", default: false },
  },
});
const sections = new Set((values.sections as string).split(","));
const log = (message: string) => process.stderr.write(`${message}\n`);

if (sections.has("filter")) {
  const rows = await measureFilterCosts({
    items: Number(values.items),
    postgres: values.postgres === true,
    log,
  });
  console.log(`\n### Filters (${values.items} items)\n`);
  console.log(
    markdownTable(
      [
        "backend",
        "filter",
        "status",
        "server CPU s (1 request)",
        "database CPU s (1 request)",
        "/health max ms (3 at once)",
        "/health max ms (1 plain filter)",
      ],
      rows.map((r) => [
        r.backend,
        r.filter,
        r.status,
        fmt(r.serverCpuS),
        r.databaseCpuS === undefined ? "–" : fmt(r.databaseCpuS),
        fmt(r.concurrentHealthMaxMs, 0),
        fmt(r.idleHealthMaxMs, 0),
      ]),
    ),
  );
}

if (sections.has("duplicates")) {
  const rows = await measureDuplicateCosts({
    items: Number(values.items),
    postgres: values.postgres === true,
    log,
  });
  console.log(`\n### GET /duplicates (${values.items} items)\n`);
  console.log(
    markdownTable(
      ["backend", "requests", "status", "server CPU s", "database CPU s", "/health max ms"],
      rows.map((r) => [
        r.backend,
        r.request,
        r.statuses,
        fmt(r.serverCpuS),
        r.databaseCpuS === undefined ? "–" : fmt(r.databaseCpuS),
        fmt(r.healthMaxMs, 0),
      ]),
    ),
  );
}

if (sections.has("chunk")) {
  const rows = await measureChunkCosts({ log });
  console.log("\n### Long texts in windows (demo model, SQLite)\n");
  console.log(
    markdownTable(
      [
        "request",
        "status",
        "server CPU s (1 request)",
        "windows embedded",
        "third client's search p50 ms (2 clients sending it)",
        "its max ms",
      ],
      rows.map((r) => [
        r.request,
        r.status,
        fmt(r.serverCpuS),
        r.windows,
        fmt(r.thirdClientP50Ms, 0),
        fmt(r.thirdClientMaxMs, 0),
      ]),
    ),
  );
}

if (sections.has("jobs")) {
  const rows = await measureJobCosts({ files: 50_000, log });
  console.log("\n### POST /jobs on big folders (SQLite, job worker off)\n");
  console.log(
    markdownTable(
      ["paths", "status", "server CPU s", "peak RSS growth MB", "answer"],
      rows.map((r) => [r.request, r.status, fmt(r.serverCpuS), fmt(r.rssGrowthMb, 0), r.answer]),
    ),
  );
}

if (sections.has("weights")) {
  const dir = mkdtempSync(path.join(tmpdir(), "longclip-cost-weights-"));
  try {
    const rows: (string | number | undefined)[][] = [];
    for (const [i, file] of writeCraftedCheckpoints(path.join(dir, "files")).entries()) {
      log(`weights: ${file.name}`);
      const run = await runExport(file, path.join(dir, `out-${i}`), 180_000);
      rows.push([
        file.name,
        run.code ?? `none (exit ${String(run.exit)})`,
        run.peakRssMb === undefined ? "? (died or killed)" : fmt(run.peakRssMb, 0),
        fmt(run.seconds, 1),
        fmt(run.leftBytes / 1024 / 1024, 1),
      ]);
    }
    console.log("\n### longclip export on crafted checkpoints (killed after 180 s)\n");
    console.log(
      markdownTable(["file", "refused with", "peak RSS MB", "seconds", "MB left in --out"], rows),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
