/**
 * `longclip duplicates`: groups of near-duplicate images in the library (image embeddings at
 * least --threshold similar), found through the ANN index, as text or JSON lines.
 */
import type { Command } from "commander";
import { AppError } from "../core/errors.ts";
import { type Io, type LibraryFlags, STDIO, withLibrary } from "./index-cmd.ts";
import { addSettingOptions, LIBRARY_SETTING_KEYS } from "./settings.ts";
import { reportError } from "./usage.ts";

export async function runDuplicates(
  flags: LibraryFlags & { threshold?: string; json?: boolean },
  io: Io = STDIO,
): Promise<number> {
  const threshold = flags.threshold === undefined ? 0.95 : Number(flags.threshold);
  if (!(threshold > 0 && threshold <= 1)) {
    return reportError(
      new AppError(
        "invalid_setting",
        `--threshold must be a cosine similarity above 0 and at most 1, not "${flags.threshold}".`,
      ),
      io.err,
    );
  }
  return withLibrary(flags, io, async (library) => {
    let cursor: string | null = null;
    let groups = 0;
    let items = 0;
    do {
      const page = await library.duplicates({ threshold, cursor, limit: 1000 });
      for (const group of page.groups) {
        groups++;
        items += group.ids.length;
        io.out.write(
          flags.json
            ? `${JSON.stringify({ ids: group.ids, max_score: group.maxScore })}\n`
            : `${group.maxScore.toFixed(4)}  ${group.ids.join("  ")}\n`,
        );
      }
      cursor = page.nextCursor;
    } while (cursor !== null);
    io.err.write(
      `${groups} groups of near-duplicates (${items} items) at cosine >= ${threshold}\n`,
    );
    return 0;
  });
}

export function register(program: Command): void {
  addSettingOptions(
    program
      .command("duplicates")
      .description(
        "List groups of near-duplicate images (re-encoded, resized copies): one group a line, its best similarity first",
      )
      .option("--threshold <cosine>", "similarity at which two images are near-duplicates", "0.95")
      .option("--json", "one JSON object a line: {ids, max_score}"),
    LIBRARY_SETTING_KEYS,
  ).action(async (flags: LibraryFlags & { threshold?: string; json?: boolean }) => {
    process.exitCode = await runDuplicates(flags);
  });
}
