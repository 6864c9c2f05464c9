/**
 * npm run bench:urban -- --data DIR --model DIR [--max-tokens N] [--sweep] [--long-query chunk]
 *   [--json FILE]
 *   [--chart FILE] [--captions SUBDIR] [--batch-size N] [--device cpu|cuda|auto]
 *
 * Long-caption retrieval on an Urban1k-layout directory (image/NAME.jpg, caption/NAME.txt):
 * image→text and text→image R@1/5/10 as in the official Long-CLIP eval/retrieval/Urban1k.py.
 */
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { Command, InvalidArgumentError, Option } from "commander";
import { loadSettings, type Settings } from "../../src/core/settings.ts";
import { Encoder } from "../../src/encode/encoder.ts";
import { integerFlag, parseOrExitCode, runScript } from "../script.ts";
import { formatBenchTable, runUrbanBench, SWEEP_BUDGETS } from "./bench.ts";
import { writeLineChartPng } from "./chart.ts";
import { terminalProgress } from "./progress.ts";
import { describeExcluded, loadUrbanDataset } from "./urban1k.ts";

function budgets(raw: string): number[] {
  const values = raw.split(",").map((v) => integerFlag("each budget", 2)(v.trim()));
  if (values.length === 0) throw new InvalidArgumentError("give at least one budget.");
  return values;
}

interface Flags {
  data: string;
  model?: string;
  maxTokens?: number;
  sweep?: boolean;
  longQuery?: string;
  budgets: number[];
  json?: string;
  chart: string;
  captions: string;
  batchSize?: number;
  device?: string;
}

async function main(argv: string[]): Promise<number> {
  const program = new Command("bench:urban")
    .description("Long-caption retrieval R@1/5/10 on an Urban1k-layout directory")
    .requiredOption("--data <dir>", "dataset directory with image/ and caption/")
    .option("--model <dir>", "model directory (default: LONGCLIP_MODEL_DIR or models/demo)")
    .option(
      "--max-tokens <n>",
      "cut captions to N tokens, start and end included",
      integerFlag("--max-tokens", 2),
    )
    .option("--sweep", "also measure R@1 at each token budget and draw the curve")
    .option(
      "--long-query <mode>",
      'truncate (default) or chunk: also measure captions past the context read in sentence windows (POST /search long_query "chunk")',
    )
    .option("--budgets <list>", "token budgets for --sweep", budgets, [...SWEEP_BUDGETS])
    .option("--json <file>", "write the result as JSON")
    .option("--chart <file>", "PNG chart written by --sweep", "bench-urban-sweep.png")
    .option(
      "--captions <subdir>",
      "caption sub-directory (e.g. short in synthetic sets)",
      "caption",
    )
    .option(
      "--batch-size <n>",
      "images and captions per encoder call",
      integerFlag("--batch-size", 1),
    )
    .addOption(
      new Option("--device <device>", "where the model runs").choices(["cpu", "cuda", "auto"]),
    );
  const exitCode = parseOrExitCode(program, argv);
  if (exitCode !== undefined) return exitCode;
  const flags = program.opts<Flags>();
  if (flags.longQuery !== undefined && !["truncate", "chunk"].includes(flags.longQuery)) {
    process.stderr.write(
      `bench:urban: --long-query is truncate or chunk, not ${flags.longQuery}\n`,
    );
    return 2;
  }
  const overrides: Partial<Settings> = {};
  if (flags.model !== undefined) overrides.modelDir = path.resolve(flags.model);
  if (flags.device !== undefined) overrides.device = flags.device as Settings["device"];
  if (flags.batchSize !== undefined) {
    overrides.imageBatchSize = flags.batchSize;
    overrides.textBatchSize = flags.batchSize;
  }
  const settings = loadSettings(overrides);
  const log = (line: string) => process.stderr.write(`${line}\n`);

  const dataset = await loadUrbanDataset(flags.data, { captionDir: flags.captions });
  log(`bench:urban: ${dataset.pairs.length} pairs in ${dataset.dir}`);
  if (dataset.excluded.length > 0) log(`bench:urban: ${describeExcluded(dataset.excluded)}`);
  const encoder = await Encoder.load(settings.modelDir, settings);
  let result: Awaited<ReturnType<typeof runUrbanBench>>;
  try {
    log(`bench:urban: model ${encoder.modelId} on ${encoder.device}`);
    result = await runUrbanBench(encoder, dataset, {
      batchSize: Math.max(settings.imageBatchSize, settings.textBatchSize),
      progress: terminalProgress(),
      ...(flags.maxTokens !== undefined ? { maxTokens: flags.maxTokens } : {}),
      ...(flags.sweep ? { sweep: flags.budgets } : {}),
      chunk: flags.longQuery === "chunk",
    });
  } finally {
    await encoder.close();
  }
  const failed = result.excluded.length - dataset.excluded.length;
  if (failed > 0) log(`bench:urban: ${describeExcluded(result.excluded.slice(-failed))}`);
  process.stdout.write(`${formatBenchTable(result)}\n`);
  if (result.excluded.length > 0) {
    process.stdout.write(`${describeExcluded(result.excluded)}\n`);
  }
  if (result.sweep !== undefined) {
    await writeLineChartPng(
      flags.chart,
      [
        { label: "image→text R@1", points: result.sweep.map((p) => [p.max_tokens, p.i2t_r1]) },
        { label: "text→image R@1", points: result.sweep.map((p) => [p.max_tokens, p.t2i_r1]) },
      ],
      {
        title: `R@1 against caption token budget (${result.model_id}, n=${result.n})`,
        xLabel: "caption tokens kept (start and end included)",
        yLabel: "R@1",
      },
    );
    log(`bench:urban: wrote ${flags.chart}`);
  }
  if (flags.json !== undefined) {
    await writeFile(flags.json, `${JSON.stringify(result, null, 2)}\n`);
    log(`bench:urban: wrote ${flags.json}`);
  }
  return 0;
}

runScript("bench:urban", main);
