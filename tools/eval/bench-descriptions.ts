/**
 * npm run bench:descriptions -- [--set FILE ...] [--model DIR] [--ranks] [--json FILE]
 *
 * Finding a picture from a person's own words: for each description set (tools/eval/descriptions.ts;
 * default: every set in tools/eval/descriptions/), each description queries every image of its
 * gallery, and text→image R@1/5/10 is printed per set. `--ranks` also prints each description's
 * rank and the image that came first.
 */
import { readdirSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { Command } from "commander";
import { loadSettings, PROJECT_ROOT, type Settings } from "../../src/core/settings.ts";
import { Encoder } from "../../src/encode/encoder.ts";
import { parseOrExitCode, runScript } from "../script.ts";
import { type DescriptionResult, loadDescriptionSet, rankDescriptions } from "./descriptions.ts";

const DEFAULT_DIR = path.join(PROJECT_ROOT, "tools", "eval", "descriptions");

function defaultSets(): string[] {
  return readdirSync(DEFAULT_DIR)
    .filter((name) => name.endsWith(".json"))
    .sort()
    .map((name) => path.join(DEFAULT_DIR, name));
}

const pct = (value: number) => `${(100 * value).toFixed(1)}%`;

async function main(argv: string[]): Promise<number> {
  const program = new Command("bench:descriptions")
    .description("Text→image R@1/5/10 of person-written descriptions over their gallery")
    .option(
      "--set <file>",
      "description set (repeatable; default: every set in tools/eval/descriptions)",
      (value: string, previous: string[] = []) => [...previous, value],
    )
    .option("--model <dir>", "model directory (default: LONGCLIP_MODEL_DIR or models/demo)")
    .option("--ranks", "print every description's rank and the image ranked first")
    .option("--json <file>", "write the results as JSON");
  const exitCode = parseOrExitCode(program, argv);
  if (exitCode !== undefined) return exitCode;
  const flags = program.opts<{ set?: string[]; model?: string; ranks?: boolean; json?: string }>();
  const overrides: Partial<Settings> = {};
  if (flags.model !== undefined) overrides.modelDir = path.resolve(flags.model);
  const settings = loadSettings(overrides);
  const sets = await Promise.all((flags.set ?? defaultSets()).map(loadDescriptionSet));
  const encoder = await Encoder.load(settings.modelDir, settings);
  const results: Record<string, DescriptionResult & { about: string }> = {};
  const modelId = encoder.modelId;
  try {
    process.stdout.write(`model ${modelId}\n`);
    process.stdout.write("| set | descriptions | images | R@1 | R@5 | R@10 |\n");
    process.stdout.write("| --- | ---: | ---: | ---: | ---: | ---: |\n");
    for (const set of sets) {
      const buffers = await Promise.all(
        set.images.map((name) => readFile(path.join(set.gallery, name))),
      );
      const images = (await encoder.embedImageBytes(buffers)).map((result, j) => {
        if (!result.ok) throw new Error(`${set.images[j]}: ${result.error.message}`);
        return result.embedding;
      });
      const texts = (await encoder.embedTexts(set.descriptions.map((d) => d.text))).map(
        (t) => t.embedding,
      );
      const result = rankDescriptions(set, images, texts);
      const name = path.basename(set.path, ".json");
      results[name] = { ...result, about: set.about };
      const { r1, r5, r10 } = result.t2i;
      process.stdout.write(
        `| ${name} | ${result.n} | ${result.images} | ${pct(r1)} | ${pct(r5)} | ${pct(r10)} |\n`,
      );
    }
  } finally {
    await encoder.close();
  }
  if (flags.ranks) {
    for (const [name, result] of Object.entries(results)) {
      process.stdout.write(`\n${name}:\n`);
      for (const r of result.ranks) {
        const hit = r.rank === 0 ? "first" : `rank ${r.rank + 1}, first ${r.top}`;
        process.stdout.write(`  ${r.file} (${hit}): ${r.text}\n`);
      }
    }
  }
  if (flags.json !== undefined) {
    await writeFile(
      flags.json,
      `${JSON.stringify({ model_id: modelId, sets: results }, null, 2)}\n`,
    );
  }
  return 0;
}

runScript("bench:descriptions", main);
