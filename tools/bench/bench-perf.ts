/**
 * npm run bench:perf -- [--quick] [--sizes B16,L14] [--json FILE] [--skip SECTION,...]
 *
 * Speed of the engine on this machine, side by side with the PyTorch reference: image tower,
 * ingest pipeline, text tower, HNSW index, the HTTP server under load, the machine's matmul
 * peak, and the ONNX Runtime session options / int8 / query cache optimisations. Prints a
 * markdown table per section on stdout (progress on stderr) and writes JSON after each
 * section, so an interrupted run keeps what it measured. Creates its models and inputs under
 * artifacts/perf (random-init checkpoints of the real sizes, synthetic JPEGs).
 */
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { availableParallelism, totalmem } from "node:os";
import path from "node:path";
import { Command, InvalidArgumentError } from "commander";
import { DEFAULT_SETTINGS, PROJECT_ROOT } from "../../src/core/settings.ts";
import type { ModelConfig } from "../../src/model/format.ts";
import { integerFlag, parseOrExitCode, runScript } from "../script.ts";
import { type BenchContext, cpuModel, loadAverage, sizeTag } from "./context.ts";
import {
  measureCudaTower,
  measurePeak,
  measureSessionOptions,
  measureTower,
  type PeakResult,
  type PixelSet,
  preparePhotos,
  preparePixels,
} from "./image.ts";
import { indexDatasets, measureIndexSets } from "./index-bench.ts";
import { measureIngestCorpora } from "./ingest.ts";
import { measureInsertRate } from "./insert-rate.ts";
import { measureOnnxInt8, measureTorchInt8 } from "./int8.ts";
import type { MarkdownSection } from "./markdown.ts";
import { type BenchModel, ensureModel } from "./models.ts";
import { measurePipeline } from "./pipeline.ts";
import { measurePreprocess, preparePhotoLike, preparePhotoLikeJpegs } from "./preprocess.ts";
import { torchVersion } from "./python.ts";
import {
  cudaSection,
  ingestSection,
  onnxInt8Section,
  peakSection,
  pipelineSection,
  preprocessSection,
  sessionOptionsSection,
  torchInt8Section,
  towerSection,
} from "./report-image.ts";
import {
  indexSection,
  insertSection,
  queryUnderIngestSection,
  serverSection,
  textSection,
} from "./report-search.ts";
import { measureServerBatches } from "./server.ts";
import { measureQueryUnderIngest, measureText } from "./text.ts";

const SECTIONS = [
  "peak",
  "image",
  "cuda",
  "ingest",
  "preprocess",
  "pipeline",
  "text",
  "index100k",
  "index1m",
  "clustered",
  "inserts",
  "server",
  "options",
  "int8",
] as const;
type Section = (typeof SECTIONS)[number];

const SIZES: Record<string, string> = { B16: "ViT-B/16", L14: "ViT-L/14" };

function list<T extends string>(name: string, allowed: readonly T[]) {
  return (raw: string): T[] => {
    const values = raw
      .split(",")
      .map((v) => v.trim())
      .filter(Boolean);
    for (const v of values) {
      if (!allowed.includes(v as T)) {
        throw new InvalidArgumentError(`${name}: "${v}" is not one of ${allowed.join(", ")}.`);
      }
    }
    return values as T[];
  };
}

interface Flags {
  quick?: boolean;
  sizes: string[];
  json: string;
  skip: Section[];
  runs?: number;
  batches?: number[];
  threads: number;
  hnswM: number;
  hnswEfConstruction: number;
  indexSizes?: number[];
  clusteredSize?: number;
  insertSize?: number;
  insertShards?: number;
  insertThreadSize?: number;
  queries?: number;
  duration: number;
  connections: number;
  serverBatches: number[];
}

function section({ title, body, note }: MarkdownSection): void {
  process.stdout.write(`\n## ${title}\n\n${body}\n${note ? `\n${note}\n` : ""}`);
}

async function main(argv: string[]): Promise<number> {
  const program = new Command("bench:perf")
    .description("Engine speed against the PyTorch reference; markdown on stdout, JSON to a file")
    .option("--quick", "fewer runs and 10k/100k index sets instead of 100k/1M")
    .option("--sizes <list>", "model sizes: B16, L14", list("--sizes", Object.keys(SIZES)), [
      "B16",
      "L14",
    ])
    .option(
      "--json <file>",
      "JSON output",
      path.join(PROJECT_ROOT, "artifacts", "perf", "perf.json"),
    )
    .option(
      "--skip <list>",
      `sections to skip: ${SECTIONS.join(", ")}`,
      list("--skip", SECTIONS),
      [],
    )
    .option(
      "--batches <list>",
      "image tower batch sizes, at most 32 (default 1,8,32 for B16 and 1,8 for L14)",
      (raw: string) =>
        raw.split(",").map((v) => {
          const value = integerFlag("--batches")(v.trim());
          if (value > 32) throw new InvalidArgumentError("--batches: at most 32.");
          return value;
        }),
    )
    .option(
      "--runs <n>",
      "measured runs per configuration (median reported)",
      integerFlag("--runs"),
    )
    .option(
      "--threads <n>",
      "ONNX Runtime and PyTorch threads",
      integerFlag("--threads"),
      availableParallelism(),
    )
    .option("--hnsw-m <n>", "HNSW M for the index section", integerFlag("--hnsw-m"), 16)
    .option(
      "--hnsw-ef-construction <n>",
      "HNSW efConstruction for the index section",
      integerFlag("--hnsw-ef-construction"),
      200,
    )
    .option(
      "--index-sizes <list>",
      "uniform set sizes for index100k,index1m (default 100000,1000000; quick 10000,100000)",
      (raw: string) => raw.split(",").map((v) => integerFlag("--index-sizes")(v.trim())),
    )
    .option(
      "--clustered-size <n>",
      "clustered set size (default 100000; quick 10000)",
      integerFlag("--clustered-size"),
    )
    .option(
      "--insert-size <n>",
      "vectors for the HNSW insert-rate section (default 100000; quick 20000)",
      integerFlag("--insert-size"),
    )
    .option(
      "--insert-shards <n>",
      "shards of the multi-shard insert run (default: one per core)",
      integerFlag("--insert-shards"),
    )
    .option(
      "--insert-thread-size <n>",
      "vectors the in-thread insert run inserts (default 20000; quick 5000; 0 skips it)",
      integerFlag("--insert-thread-size", 0),
    )
    .option("--queries <n>", "recall queries per index set (default 200)", integerFlag("--queries"))
    .option(
      "--duration <s>",
      "seconds of load per server measurement",
      integerFlag("--duration"),
      10,
    )
    .option("--connections <n>", "concurrent /search connections", integerFlag("--connections"), 4)
    .option(
      "--server-batches <list>",
      "server --image-batch-size values to measure",
      (raw: string) => raw.split(",").map((v) => integerFlag("--server-batches")(v.trim())),
      [8, 2],
    );
  const exitCode = parseOrExitCode(program, argv);
  if (exitCode !== undefined) return exitCode;
  const flags = program.opts<Flags>();
  const quick = flags.quick === true;
  const skip = new Set<Section>(flags.skip);
  const runs = flags.runs ?? (quick ? 2 : 3);
  const outDir = path.join(PROJECT_ROOT, "artifacts", "perf");
  const ctx: BenchContext = {
    workDir: path.join(outDir, "work"),
    modelsDir: path.join(outDir, "models"),
    quick,
    runs,
    warmup: 1,
    threads: flags.threads,
    log: (message) =>
      process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${message}\n`),
  };
  mkdirSync(ctx.workDir, { recursive: true });
  const sizes = flags.sizes.map((s) => SIZES[s] as string);

  const report: Record<string, unknown> = {
    command: `npm run bench:perf -- ${argv.slice(2).join(" ")}`.trim(),
    started: new Date().toISOString(),
    machine: {
      cpu: cpuModel(),
      nproc: availableParallelism(),
      memoryGiB: Number((totalmem() / 2 ** 30).toFixed(1)),
      node: process.version,
      onnxruntimeNode: (await import("onnxruntime-node/package.json", { with: { type: "json" } }))
        .default.version,
      torch: await torchVersion(),
      loadAverageAtStart: loadAverage(),
    },
    settings: { quick, runs, warmup: ctx.warmup, threads: ctx.threads, sizes },
  };
  const save = () => {
    mkdirSync(path.dirname(flags.json), { recursive: true });
    report.loadAverageNow = loadAverage();
    writeFileSync(flags.json, `${JSON.stringify(report, null, 2)}\n`);
  };
  /** For the sections that measure in steps: saves what they measured so far under `key`. */
  const saveAs = (key: string) => (results: unknown) => {
    report[key] = results;
    save();
  };
  const machine = report.machine as Record<string, unknown>;
  process.stdout.write(
    `# bench:perf\n\n${machine.cpu}, nproc ${machine.nproc}, Node ${machine.node}, onnxruntime-node ${machine.onnxruntimeNode}, torch ${machine.torch}; load average at start ${loadAverage().join(" / ")}\n`,
  );

  // Inputs shared by the image sections.
  const needImages = [
    "image",
    "ingest",
    "preprocess",
    "pipeline",
    "text",
    "server",
    "options",
    "int8",
  ].some((s) => !skip.has(s as Section));
  const models = new Map<string, BenchModel>();
  for (const size of sizes) models.set(size, await ensureModel(ctx, size));
  const firstModel = models.get(sizes[0] as string);
  let photos: { dir: string; files: string[] } | undefined;
  let pixels: PixelSet | undefined;
  if (needImages && firstModel) {
    photos = await preparePhotos(ctx, 80);
    pixels = await preparePixels(ctx, photos.files.slice(0, 32), firstModel);
  }

  // 5. Peak first: every throughput below is stated as a fraction of it.
  let peak: PeakResult | undefined;
  if (!skip.has("peak")) {
    peak = await measurePeak(ctx, 2048);
    report.peak = peak;
    save();
    section(peakSection(peak, ctx.threads));
  }
  const peakGflops = peak?.bestGflops ?? Number.NaN;

  // 1. Image tower, ONNX Runtime through our Encoder against PyTorch.
  if (!skip.has("image") && pixels) {
    const towers = [];
    for (const size of sizes) {
      const model = models.get(size) as BenchModel;
      // PyTorch needs minutes per ViT-L batch of 32 on two cores: L14 stops at 8 unless asked.
      const batches = flags.batches ?? (size === "ViT-L/14" ? [1, 8] : [1, 8, 32]);
      towers.push(await measureTower(ctx, model, pixels, batches, peakGflops));
      report.image = towers;
      save();
    }
    section(towerSection(towers));
  }

  // 1a. The same tower on a GPU, when there is one.
  if (!skip.has("cuda") && pixels && firstModel) {
    const cuda = await measureCudaTower(ctx, firstModel, pixels, [1, 8, 32]);
    report.cuda = cuda;
    save();
    section(cudaSection(cuda));
  }

  // 1b. Ingest pipeline against the bare encoder, with each preprocessing mode, on noisy
  // synthetic JPEGs (the decoder's worst case) and on photo-like ones.
  const corpora = async (noisy: { files: string[] }) => [
    { corpus: "noisy synthetic", files: noisy.files },
    { corpus: "photo-like", files: await preparePhotoLikeJpegs(ctx, 72) },
  ];
  if (!skip.has("ingest") && photos && firstModel) {
    const ingests = await measureIngestCorpora(
      ctx,
      firstModel,
      await corpora(photos),
      quick ? 2 : 3,
      saveAs("ingest"),
    );
    section(ingestSection(ingests, availableParallelism()));
  }

  // 1c. Exact against fast preprocessing.
  if (!skip.has("preprocess") && photos && firstModel) {
    const photoLike = await preparePhotoLike(ctx);
    const demoDir = DEFAULT_SETTINGS.modelDir;
    const modelDirs = [{ name: `random-weight ${sizeTag(firstModel.size)}`, dir: firstModel.dir }];
    if (existsSync(path.join(demoDir, "config.json"))) {
      modelDirs.push({ name: "demo model (models/demo)", dir: demoDir });
    }
    const result = await measurePreprocess(
      ctx,
      [
        { label: "synthetic", files: photos.files.slice(0, quick ? 4 : 8) },
        { label: "photo-like", files: photoLike },
      ],
      modelDirs,
      quick ? 3 : 5,
    );
    report.preprocess = result;
    save();
    section(preprocessSection(result));
  }

  // 1d. The pipeline's CPU side alone, with a stand-in encoder of a GPU's speed.
  if (!skip.has("pipeline") && photos && firstModel) {
    const config = JSON.parse(
      await readFile(path.join(firstModel.dir, "config.json"), "utf8"),
    ) as ModelConfig;
    const results = [];
    for (const { corpus, files } of await corpora(photos)) {
      const result = await measurePipeline(ctx, config, files.slice(0, 64), files.slice(64, 72), {
        batch: 8,
        msPerBatch: 4,
        rounds: quick ? 1 : 2,
        modes: ["exact", "fast"],
      });
      results.push({ corpus, ...result });
      report.pipeline = results;
      save();
    }
    section(pipelineSection(results));
  }

  // 2. Text tower: dynamic length against padding to the full context.
  if (!skip.has("text")) {
    const texts = [];
    for (const size of sizes) {
      const model = models.get(size) as BenchModel;
      texts.push(await measureText(ctx, model, [10, 30, 77, 150, 248], quick ? 5 : 10));
      report.text = texts;
      save();
    }
    section(textSection(texts));
  }

  if (!skip.has("text") && pixels && firstModel) {
    const rows = await measureQueryUnderIngest(ctx, firstModel, pixels.pixels, 8, quick ? 6 : 12);
    report.queryUnderIngest = rows;
    save();
    section(queryUnderIngestSection(rows, firstModel.size));
  }

  // 3. Index.
  const hnsw = { m: flags.hnswM, efConstruction: flags.hnswEfConstruction };
  const datasets = indexDatasets(
    flags.indexSizes ?? (quick ? [10_000, 100_000] : [100_000, 1_000_000]),
    flags.clusteredSize ?? (quick ? 10_000 : 100_000),
  ).filter(([id]) => !skip.has(id));
  const indexResults = await measureIndexSets(
    ctx,
    datasets.map(([, dataset]) => dataset),
    {
      dims: 512,
      ...hnsw,
      efSearch: [16, 32, 64, 128, 256],
      queries: flags.queries ?? 200,
      clusters: 1000,
      spread: 0.05,
    },
    saveAs("index"),
  );
  if (indexResults.length > 0) section(indexSection(indexResults, hnsw));

  // 3b. Insert rate at ViT-L/14's width, against a GPU encoder's rate: in-thread vs workers.
  if (!skip.has("inserts")) {
    const count = flags.insertSize ?? (quick ? 20_000 : 100_000);
    const shards = flags.insertShards ?? availableParallelism();
    const inserts = await measureInsertRate(ctx, {
      count,
      dims: 768,
      ...hnsw,
      batch: 64,
      shards: shards > 1 ? [1, shards] : [1],
      inThreadCount: Math.min(count, flags.insertThreadSize ?? (quick ? 5_000 : 20_000)),
      queries: Math.min(flags.queries ?? 100, 100),
    });
    report.inserts = inserts;
    save();
    section(insertSection(inserts, count, hnsw));
  }

  // 4. Server under load, at the default image batch and at smaller ingest chunks.
  if (!skip.has("server") && photos && firstModel) {
    const servers = await measureServerBatches(
      ctx,
      firstModel,
      photos,
      { connections: flags.connections, durationS: flags.duration },
      flags.serverBatches,
      saveAs("server"),
    );
    section(serverSection(servers, firstModel.size));
  }

  // Optimisations: session options and int8.
  if (!skip.has("options") && pixels && firstModel) {
    const options = await measureSessionOptions(ctx, firstModel, pixels, 8);
    report.sessionOptions = options;
    save();
    section(sessionOptionsSection(options, firstModel.size));
  }
  if (!skip.has("int8") && pixels && firstModel) {
    const int8 = await measureTorchInt8(ctx, firstModel, pixels, 8);
    report.int8 = int8;
    save();
    section(torchInt8Section(int8));
  }

  if (!skip.has("int8") && pixels && firstModel) {
    const int8 = await measureOnnxInt8(ctx, firstModel, pixels, 8);
    report.int8Onnx = int8;
    save();
    section(onnxInt8Section(int8));
  }

  report.finished = new Date().toISOString();
  save();
  process.stdout.write(`\nload average at end ${loadAverage().join(" / ")}; JSON: ${flags.json}\n`);
  return 0;
}

runScript("bench:perf", main);
