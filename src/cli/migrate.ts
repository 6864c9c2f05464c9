/**
 * `longclip migrate --from DATA_DIR --to postgres://…`: moves the embedded default's library
 * to Postgres without re-embedding (src/store/migrate.ts). Run it again to resume.
 */

import { existsSync } from "node:fs";
import path from "node:path";
import cliProgress from "cli-progress";
import type { Command } from "commander";
import { AppError } from "../core/errors.ts";
import { type MigrateReport, migrateStore } from "../store/migrate.ts";
import { redactUrl } from "../store/postgres/errors.ts";
import { PostgresStore } from "../store/postgres/store.ts";
import { SqliteStore } from "../store/sqlite/store.ts";
import { addSettingOptions, settingsFromFlags } from "./settings.ts";
import { reportError } from "./usage.ts";

interface Io {
  out: NodeJS.WritableStream;
  err: NodeJS.WritableStream & { isTTY?: boolean };
}

/** True when the target holds every source item, with equal sampled vectors. */
export function migrationComplete(report: MigrateReport): boolean {
  return (
    report.conflicts.length === 0 &&
    report.verified === report.total - report.notEmbedded.length &&
    report.maxVectorDifference === 0
  );
}

export async function runMigrate(
  flags: Record<string, unknown> & { from?: string; to?: string },
  io: Io = { out: process.stdout, err: process.stderr },
): Promise<number> {
  let source: SqliteStore | undefined;
  let target: PostgresStore | undefined;
  try {
    const settings = settingsFromFlags(flags);
    const from = path.resolve(flags.from ?? settings.dataDir);
    const to = flags.to ?? settings.databaseUrl;
    if (to === undefined) {
      throw new AppError(
        "invalid_setting",
        "--to postgres://… (or LONGCLIP_DATABASE_URL) is required.",
      );
    }
    if (!existsSync(path.join(from, "library.sqlite"))) {
      throw new AppError(
        "not_found",
        `No library at ${from} (library.sqlite not found); give --from DATA_DIR.`,
      );
    }
    const parameters = {
      m: settings.hnswM,
      efConstruction: settings.hnswEfConstruction,
      efSearch: settings.hnswEfSearch,
    };
    source = new SqliteStore({ dataDir: from, indexSaveIntervalMs: 0, ...parameters });
    target = await PostgresStore.open({
      url: to,
      vectorType: settings.pgVectorType,
      ...parameters,
    });
    io.err.write(`migrating ${from} to ${redactUrl(to)}\n`);
    const bar = io.err.isTTY
      ? new cliProgress.SingleBar(
          {
            stream: io.err,
            format: "migrate [{bar}] {value}/{total} | {rate} items/s | ETA {eta_formatted}",
          },
          cliProgress.Presets.shades_classic,
        )
      : undefined;
    const started = performance.now();
    let lastLine = 0;
    const report = await migrateStore(source, target, (p) => {
      const rate = (p.done / Math.max(1e-3, (performance.now() - started) / 1000)).toFixed(1);
      if (bar) {
        if (!bar.isActive) bar.start(p.total, p.done, { rate });
        bar.update(p.done, { rate });
      } else if (performance.now() - lastLine > 2000 || p.done === p.total) {
        lastLine = performance.now();
        io.err.write(`migrate: ${p.done}/${p.total} items (${rate}/s)\n`);
      }
    });
    bar?.stop();
    io.out.write(`${JSON.stringify(report)}\n`);
    io.err.write(
      `copied ${report.copied}, already there ${report.alreadyThere}, not embedded ${report.notEmbedded.length}, id conflicts ${report.conflicts.length}; verified ${report.verified} of ${report.total} items and ${report.sampled} vectors (largest difference ${report.maxVectorDifference})\n`,
    );
    if (!migrationComplete(report)) {
      io.err.write(
        "the target does not hold every source item: see the counts above; run migrate again\n",
      );
      return 1;
    }
    return 0;
  } catch (error) {
    return reportError(error, io.err);
  } finally {
    await source?.close();
    await target?.close();
  }
}

export function register(program: Command): void {
  addSettingOptions(
    program
      .command("migrate")
      .description(
        "Copy a data directory's library (items, metadata, embeddings, originals) into Postgres without re-embedding; resumable, verified at the end",
      )
      .option("--from <dir>", "the data directory to copy (default: --data)")
      .option("--to <url>", "postgres://… (default: --database-url)"),
    ["hnswM", "hnswEfConstruction", "hnswEfSearch", "pgVectorType", "dataDir", "databaseUrl"],
  ).action(async (flags: Record<string, unknown>) => {
    process.exitCode = await runMigrate(flags);
  });
}
