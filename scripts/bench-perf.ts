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
import { type BenchContext, cpuModel, loadAverage, sizeTag } from "../src/bench/context.ts";
import {
  measureCudaTower,
  measurePeak,
  measureSessionOptions,
  measureTower,
  type PeakResult,
  type PixelSet,
  preparePhotos,
  preparePixels,
} from "../src/bench/image.ts";
import { type IndexDataset, measureIndex } from "../src/bench/index-bench.ts";
import { type IngestResult, measureIngest } from "../src/bench/ingest.ts";
import { measureInsertRate } from "../src/bench/insert-rate.ts";
import { measureOnnxInt8, measureTorchInt8 } from "../src/bench/int8.ts";
import { fmt, markdownTable } from "../src/bench/markdown.ts";
import { type BenchModel, ensureModel } from "../src/bench/models.ts";
import { measurePipeline } from "../src/bench/pipeline.ts";
import {
  measurePreprocess,
  preparePhotoLike,
  preparePhotoLikeJpegs,
} from "../src/bench/preprocess.ts";
import { runPython } from "../src/bench/python.ts";
import { measureServer } from "../src/bench/server.ts";
import { measureQueryUnderIngest, measureText } from "../src/bench/text.ts";
import { integerFlag, parseOrExitCode, runScript } from "../src/cli/settings.ts";
import { DEFAULT_SETTINGS, PROJECT_ROOT } from "../src/config.ts";
import type { ModelConfig } from "../src/encode/types.ts";

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

function section(title: string, body: string, note?: string): void {
  process.stdout.write(`\n## ${title}\n\n${body}\n${note ? `\n${note}\n` : ""}`);
}

async function torchVersion(): Promise<string> {
  const result = (await runPython([
    "-c",
    "import json, torch; print(json.dumps({'v': torch.__version__}))",
  ])) as {
    v: string;
  };
  return result.v;
}

/** The caveat of the in-thread insert run, when there was one. */
function inThreadNote(paths: readonly { path: string; count: number }[]): string {
  const inThread = paths.find((p) => p.path === "in-thread");
  if (inThread === undefined) return "";
  return ` The in-thread run inserts only the first ${inThread.count.toLocaleString("en-US")} vectors (a smaller graph inserts faster, so its figures flatter it).`;
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
    section(
      "Peak: fp32 matmul 2048×2048 (best of 9 runs; median in brackets)",
      markdownTable(
        ["engine", "GFLOP/s"],
        [
          [
            `ONNX Runtime MatMul (${ctx.threads} threads)`,
            `${fmt(peak.ortGflops, 1)} (${fmt(peak.ortMedianGflops, 1)})`,
          ],
          [
            `PyTorch torch.mm (${peak.torchThreads} threads)`,
            `${fmt(peak.torchGflops, 1)} (${fmt(peak.torchMedianGflops, 1)})`,
          ],
        ],
      ),
      `Fractions of peak below use the best rate any engine reached: ${fmt(peak.bestGflops, 1)} GFLOP/s, ${peak.bestEngine}.`,
    );
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
    section(
      "Image tower: images/s (median of runs, warm-up excluded)",
      markdownTable(
        [
          "model",
          "batch",
          "ours (ONNX Runtime)",
          "PyTorch",
          "ours / PyTorch",
          "ours % of peak",
          "PyTorch % of peak",
        ],
        towers.flatMap((t) =>
          t.rows.map((r) => [
            sizeTag(t.size),
            r.batch,
            r.onnxImagesPerS,
            r.torchImagesPerS,
            r.ratio,
            fmt(100 * r.onnxFractionOfPeak, 1),
            fmt(100 * r.torchFractionOfPeak, 1),
          ]),
        ),
      ),
      towers
        .map(
          (t) =>
            `${sizeTag(t.size)}: ${fmt(t.gflopsPerImage, 1)} GFLOP/image; engines agree: min cosine ${t.agreement.minCosine.toFixed(6)}, max relative difference ${t.agreement.maxRelativeDifference.toExponential(2)}; torch ${t.torchVersion}, ${t.torchThreads} threads.`,
        )
        .join("\n"),
    );
  }

  // 1a. The same tower on a GPU, when there is one.
  if (!skip.has("cuda") && pixels && firstModel) {
    const cuda = await measureCudaTower(ctx, firstModel, pixels, [1, 8, 32]);
    report.cuda = cuda;
    save();
    if ("skipped" in cuda) {
      section("Image tower on CUDA (--device cuda)", `skipped: ${cuda.skipped}`);
    } else {
      section(
        `Image tower on CUDA (--device cuda), ${sizeTag(cuda.size)}, fp32 and fp16 towers: images/s (median of runs)`,
        markdownTable(
          ["tower", "batch", "images/s"],
          cuda.rows.map((r) => [r.precision, r.batch, r.imagesPerS]),
        ),
        `Minimum cosine to the fp32 CPU embeddings of the same pixels: ${Object.entries(
          cuda.minCosineToCpu,
        )
          .map(([precision, value]) => `${precision} ${value.toFixed(6)}`)
          .join(", ")}.`,
      );
    }
  }

  // 1b. Ingest pipeline against the bare encoder, with each preprocessing mode, on noisy
  // synthetic JPEGs (the decoder's worst case) and on photo-like ones.
  if (!skip.has("ingest") && photos && firstModel) {
    const photoLike = await preparePhotoLikeJpegs(ctx, 72);
    const corpora = [
      { corpus: "noisy synthetic", files: photos.files },
      { corpus: "photo-like", files: photoLike },
    ];
    const ingests: (IngestResult & { corpus: string })[] = [];
    for (const { corpus, files } of corpora) {
      for (const mode of ["exact", "fast"] as const) {
        const result = await measureIngest(
          ctx,
          firstModel,
          files.slice(0, 64),
          files.slice(64, 72),
          8,
          quick ? 2 : 3,
          mode,
        );
        ingests.push({ corpus, ...result });
        report.ingest = ingests;
        save();
      }
    }
    const cores = availableParallelism();
    const first = ingests[0] as (typeof ingests)[number];
    const label = (ingest: (typeof ingests)[number]) => `${ingest.corpus}, ${ingest.mode}`;
    section(
      `Ingest pipeline: ${first.images} JPEGs of 1600×1200 per corpus, ${sizeTag(first.size)}, batch ${first.batch}`,
      markdownTable(
        ["JPEGs, --preprocess", "stage", "images/s", "CPU ms per image"],
        ingests.flatMap((ingest) => [
          [
            label(ingest),
            "read + decode + preprocess alone (sequential)",
            ingest.preprocessImagesPerS,
            ingest.stageCpuMs.read + ingest.stageCpuMs.decode + ingest.stageCpuMs.resample,
          ],
          [
            label(ingest),
            "bare encoder (embedPixels)",
            ingest.bareEncoderImagesPerS,
            ingest.bareEncoderCpuMsPerImage,
          ],
          [
            label(ingest),
            "Library.index (read → … → SQLite + HNSW)",
            ingest.ingestImagesPerS,
            ingest.ingestCpuMsPerImage,
          ],
          [
            label(ingest),
            "**ingest / bare encoder**",
            `**${fmt(ingest.fractionOfEncoder, 3)}**`,
            "",
          ],
        ]),
      ),
      ingests
        .map(
          (ingest) =>
            `${label(ingest)}: CPU ms per image of preprocessing alone: read ${fmt(ingest.stageCpuMs.read)}, decode ${fmt(ingest.stageCpuMs.decode)}, resample + normalise ${fmt(ingest.stageCpuMs.resample)}. ` +
            `Ingest adds ${fmt(ingest.ingestCpuMsPerImage - ingest.bareEncoderCpuMsPerImage)} CPU ms per image to the encoder's ${fmt(ingest.bareEncoderCpuMsPerImage)}: with all ${cores} cores busy it could reach at most ${fmt((cores * 1000) / ingest.ingestCpuMsPerImage)} images/s, ${fmt((cores * 1000) / ingest.ingestCpuMsPerImage / ingest.bareEncoderImagesPerS, 3)} of the bare encoder. ` +
            `The encoder ran a batch ${fmt(100 * ingest.encoderBusyFraction, 1)}% of the ingest's wall time, and its batches took ${fmt(ingest.batchSlowdown, 3)}× as long as in the bare run. ` +
            `Rounds (bare / ingest images/s): ${ingest.perRound.map((r) => `${fmt(r.bareImagesPerS)} / ${fmt(r.ingestImagesPerS)}`).join(", ")}.`,
        )
        .join("\n\n"),
    );
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
    const stages = (c: { read: number; decode: number; resample: number; total: number }) =>
      `${fmt(c.read)} / ${fmt(c.decode)} / ${fmt(c.resample)} = **${fmt(c.total)}**`;
    section(
      `Preprocessing: exact vs fast (--preprocess), ${result.resolution}² model input, CPU ms per image`,
      [
        markdownTable(
          [
            "images",
            "n",
            "exact, JS resampler: read / decode / resample = total",
            "exact (SIMD resampler)",
            "fast",
            "resample JS / SIMD",
            "exact JS / fast",
            "exact SIMD / fast",
            "PSNR dB min (mean)",
          ],
          result.groups.map((g) => [
            g.group,
            g.images,
            stages(g.exactJs),
            stages(g.exact),
            stages(g.fast),
            fmt(g.simdResampleGain, 2),
            fmt(g.speedupOverJs, 2),
            fmt(g.speedup, 2),
            `${fmt(g.minPsnr, 1)} (${fmt(g.meanPsnr, 1)})`,
          ]),
        ),
        "",
        markdownTable(
          ["model", "images", "cosine exact vs fast: min", "mean"],
          result.cosines.map((c) => [
            c.model,
            c.images,
            c.minCosine.toFixed(5),
            c.meanCosine.toFixed(5),
          ]),
        ),
      ].join("\n"),
      `Median of ${result.runsPerImage} runs per image and mode, the modes alternating image by image; process CPU time (libvips threads included). JPEG decoder: ${result.jpegDecoder} (${result.nativeJpegDecodes} native decodes; LONGCLIP_NATIVE_JPEG=off for sharp alone). In fast mode "decode" is the shrink-on-load decode and libvips' resize to the model's size, "resample" only crops and normalises. PSNR is of the normalised model input, on the 0..1 pixel scale. Synthetic: the noisy gradient JPEGs of the ingest section; photo-like: src/bench/photos.ts.`,
    );
  }

  // 1d. The pipeline's CPU side alone, with a stand-in encoder of a GPU's speed.
  if (!skip.has("pipeline") && photos && firstModel) {
    const config = JSON.parse(
      await readFile(path.join(firstModel.dir, "config.json"), "utf8"),
    ) as ModelConfig;
    const result = await measurePipeline(
      ctx,
      config,
      photos.files.slice(0, 64),
      photos.files.slice(64, 72),
      { batch: 8, msPerBatch: 4, rounds: quick ? 1 : 2, modes: ["exact", "fast"] },
    );
    report.pipeline = result;
    save();
    section(
      `Pipeline with a simulated encoder (${fmt(result.msPerBatch, 0)} ms per batch of ${result.batch}, no CPU: ${fmt(result.encoderImagesPerS, 0)} images/s), ${result.rows[0]?.photos} JPEGs of 1600×1200`,
      markdownTable(
        [
          "--preprocess",
          "photos/s",
          "encoder busy",
          "CPU ms per photo",
          "photos/s per core",
          "cores for 1,000 img/s",
          "cores for 3,000 img/s",
        ],
        result.rows.map((r) => [
          r.mode,
          r.photosPerS,
          `${fmt(100 * r.encoderBusy, 0)}%`,
          r.cpuMsPerPhoto,
          r.photosPerSPerCore,
          fmt(r.coresFor1000, 1),
          fmt(r.coresFor3000, 1),
        ]),
      ),
      `Library.index (read → hash → decode → resize → embed → SQLite + HNSW) with ${result.workers} preprocessing worker(s) on ${result.cores} cores; CPU ms per photo is the whole process's CPU time (every thread) over the photos, the stand-in encoder using none. Cores needed = rate × CPU ms per photo, assuming the work spreads over cores (decode workers sized to the cores; the main thread's hashing, SQLite and HNSW share are in the figure). Rounds (photos/s): ${result.rows.map((r) => `${r.mode} ${r.rounds.map((v) => fmt(v)).join(", ")}`).join("; ")}.`,
    );
  }

  // 2. Text tower: dynamic length against padding to the full context.
  if (!skip.has("text")) {
    const texts = [];
    for (const size of sizes) {
      texts.push(
        await measureText(
          ctx,
          models.get(size) as BenchModel,
          [10, 30, 77, 150, 248],
          quick ? 5 : 10,
        ),
      );
      report.text = texts;
      save();
    }
    section(
      "Text tower: one query, latency in ms (median)",
      markdownTable(
        [
          "model",
          "tokens",
          "dynamic length (ours)",
          "padded to 248",
          "padded / dynamic",
          "cosine dyn vs padded",
        ],
        texts.flatMap((t) =>
          t.rows.map((r) => [
            sizeTag(t.size),
            r.tokens,
            r.dynamicMs,
            r.paddedMs,
            r.speedup,
            r.agreement.toFixed(6),
          ]),
        ),
      ),
      texts
        .map(
          (t) =>
            `${sizeTag(t.size)}: 248-token / 30-token latency ${fmt(t.ratio30vs248)}×. Query cache: embedTexts of a ${t.cache.tokens}-token query ${fmt(t.cache.encodeMs)} ms, LRU hit ${t.cache.cachedMs.toExponential(2)} ms (${fmt(t.cache.speedup, 0)}× faster).`,
        )
        .join("\n"),
    );
  }

  if (!skip.has("text") && pixels && firstModel) {
    const rows = await measureQueryUnderIngest(ctx, firstModel, pixels.pixels, 8, quick ? 6 : 12);
    report.queryUnderIngest = rows;
    save();
    section(
      `Query latency under ingest (engine level, ${sizeTag(firstModel.size)}, embedTexts of a one-line query)`,
      markdownTable(
        ["condition", "queries", "median ms", "max ms", "images/s of the ingest beside"],
        rows.map((r) => [r.condition, r.queries, r.medianMs, r.maxMs, r.imagesPerSecond]),
      ),
    );
  }

  // 3. Index.
  const [smallSize, largeSize] =
    flags.indexSizes ?? (quick ? [10_000, 100_000] : [100_000, 1_000_000]);
  const datasets: [Section, IndexDataset][] = [
    [
      "index100k",
      {
        name: `uniform ${(smallSize ?? 0).toLocaleString("en-US")}`,
        count: smallSize ?? 100_000,
        kind: "uniform",
      },
    ],
    [
      "index1m",
      {
        name: `uniform ${(largeSize ?? 0).toLocaleString("en-US")}`,
        count: largeSize ?? 1_000_000,
        kind: "uniform",
      },
    ],
    [
      "clustered",
      {
        name: `clustered ${(flags.clusteredSize ?? (quick ? 10_000 : 100_000)).toLocaleString("en-US")}`,
        count: flags.clusteredSize ?? (quick ? 10_000 : 100_000),
        kind: "clustered",
      },
    ],
  ];
  const indexResults = [];
  for (const [id, dataset] of datasets) {
    if (skip.has(id)) continue;
    indexResults.push(
      await measureIndex(ctx, dataset, {
        dims: 512,
        m: flags.hnswM,
        efConstruction: flags.hnswEfConstruction,
        efSearch: [16, 32, 64, 128, 256],
        queries: flags.queries ?? 200,
        clusters: 1000,
        spread: 0.05,
      }),
    );
    report.index = indexResults;
    save();
  }
  if (indexResults.length > 0) {
    section(
      `Index: HNSW (M ${flags.hnswM}, efConstruction ${flags.hnswEfConstruction}), 512-d, recall@10 against exact search`,
      [
        markdownTable(
          ["set", "build vectors/s", "RSS bytes/vector", "file bytes/vector", "exact queries/s"],
          indexResults.map((r) => [
            r.dataset,
            r.buildVectorsPerS,
            fmt(r.rssBytesPerVector, 0),
            fmt(r.fileBytesPerVector, 0),
            r.exactQueriesPerS,
          ]),
        ),
        "",
        markdownTable(
          ["set", "efSearch", "queries/s", "recall@10"],
          indexResults.flatMap((r) =>
            r.rows.map((e) => [r.dataset, e.efSearch, e.queriesPerS, fmt(e.recallAt10, 3)]),
          ),
        ),
      ].join("\n"),
      indexResults
        .map(
          (r) => `${r.dataset}: recall@10 ≥ 0.98 from efSearch ${r.efFor098 ?? "none measured"}.`,
        )
        .join("\n"),
    );
  }

  // 3b. Insert rate at ViT-L/14's width, against a GPU encoder's rate: in-thread vs workers.
  if (!skip.has("inserts")) {
    const count = flags.insertSize ?? (quick ? 20_000 : 100_000);
    const shards = flags.insertShards ?? availableParallelism();
    const inserts = await measureInsertRate(ctx, {
      count,
      dims: 768,
      m: flags.hnswM,
      efConstruction: flags.hnswEfConstruction,
      batch: 64,
      shards: shards > 1 ? [1, shards] : [1],
      inThreadCount: Math.min(count, flags.insertThreadSize ?? (quick ? 5_000 : 20_000)),
      queries: Math.min(flags.queries ?? 100, 100),
    });
    report.inserts = inserts;
    save();
    const name = (p: (typeof inserts.paths)[number]) =>
      p.path === "in-thread"
        ? "in-thread (before)"
        : `workers, ${p.shards} shard${p.shards > 1 ? "s" : ""}`;
    section(
      `HNSW inserts: ${count.toLocaleString("en-US")} clustered 768-d vectors (M ${flags.hnswM}, efConstruction ${flags.hnswEfConstruction}), batches of ${inserts.batch}`,
      [
        markdownTable(
          [
            "path",
            "vectors",
            "inserts/s (wall)",
            "inserts per CPU second",
            "last window /s (wall)",
            "last window per CPU s",
            "event-loop delay p99 ms",
            "max ms",
          ],
          inserts.paths.map((p) => [
            name(p),
            p.count,
            p.vectorsPerS,
            p.vectorsPerCpuS,
            p.windows.at(-1)?.vectorsPerS ?? Number.NaN,
            p.windows.at(-1)?.vectorsPerCpuS ?? Number.NaN,
            p.loopDelayP99Ms,
            p.loopDelayMaxMs,
          ]),
        ),
        "",
        markdownTable(
          [
            "path",
            "recall@10",
            "queries/s",
            "CPU ms per query",
            "queries/s, 10% of labels allowed",
          ],
          inserts.paths
            .filter((p) => p.search !== undefined)
            .map((p) => [
              name(p),
              fmt(p.search?.recallAt10 ?? Number.NaN, 3),
              p.search?.queriesPerS ?? Number.NaN,
              p.search?.cpuMsPerQuery ?? Number.NaN,
              p.search?.filteredQueriesPerS ?? Number.NaN,
            ]),
        ),
      ].join("\n"),
      `CPU is the whole process's (every thread); wall rates depend on the machine's load and on free cores (one shard = one thread). Event-loop delay: perf_hooks.monitorEventLoopDelay while inserting.${inThreadNote(inserts.paths)} Total ${fmt(inserts.totalSeconds, 0)} s.`,
    );
  }

  // 4. Server under load, at the default image batch and at smaller ingest chunks.
  if (!skip.has("server") && photos && firstModel) {
    const servers = [];
    for (const imageBatchSize of flags.serverBatches) {
      servers.push(
        await measureServer(
          ctx,
          firstModel,
          photos.dir,
          photos.files.slice(0, 16),
          photos.files.slice(16, 80),
          flags.connections,
          flags.duration,
          imageBatchSize,
        ),
      );
      report.server = servers;
      save();
    }
    const first = servers[0];
    section(
      `Server: POST /search, ${first?.connections} connections, ${first?.durationS} s each, ${sizeTag(firstModel.size)}`,
      markdownTable(
        [
          "image batch",
          "condition",
          "requests/s",
          "p50 ms",
          "p99 ms",
          "max ms",
          "requests",
          "non-2xx",
          "errors",
          "images ingested",
        ],
        servers.flatMap((server) =>
          server.rows.map((r) => [
            server.imageBatchSize,
            r.condition,
            r.requestsPerS,
            r.p50Ms,
            r.p99Ms,
            r.maxMs,
            r.requests,
            r.non2xx,
            r.errors,
            r.ingestCoveredWindow === false ? `${r.imagesIngested} (ran out)` : r.imagesIngested,
          ]),
        ),
      ),
      servers
        .map(
          (s) => `image batch ${s.imageBatchSize}: p99 ingesting / unloaded ${fmt(s.p99Ratio)}×.`,
        )
        .concat(
          "Every request's query text is new, so each one runs the text tower (no cache hits).",
        )
        .join("\n"),
    );
  }

  // Optimisations: session options and int8.
  if (!skip.has("options") && pixels && firstModel) {
    const options = await measureSessionOptions(ctx, firstModel, pixels, 8);
    report.sessionOptions = options;
    save();
    section(
      `Session options: ${sizeTag(firstModel.size)} vision tower, batch 8, in-process session`,
      markdownTable(
        ["options", "images/s", "engine images/s (alternating)", "gain"],
        options.map((o) => [o.name, o.imagesPerS, o.engineImagesPerS, fmt(o.gain, 3)]),
      ),
    );
  }
  if (!skip.has("int8") && pixels && firstModel) {
    const int8 = await measureTorchInt8(ctx, firstModel, pixels, 8);
    report.int8 = int8;
    save();
    section(
      `int8 (PyTorch dynamic quantisation of the Linear layers), ${sizeTag(int8.size)}, batch ${int8.batch}`,
      markdownTable(
        ["fp32 images/s", "int8 images/s", "speed-up", "cosine min", "cosine mean"],
        [
          [
            int8.fp32ImagesPerS,
            int8.int8ImagesPerS,
            int8.speedup,
            int8.cosineMin.toFixed(4),
            int8.cosineMean.toFixed(4),
          ],
        ],
      ),
      "The reference's own int8 path, for comparison with the int8 ONNX tower below.",
    );
  }

  if (!skip.has("int8") && pixels && firstModel) {
    const int8 = await measureOnnxInt8(ctx, firstModel, pixels, 8);
    report.int8Onnx = int8;
    save();
    section(
      `int8 ONNX towers (python3 -m training quantize) through our Encoder, ${sizeTag(int8.size)}, vision batch ${int8.batch}, text ${int8.text.tokens} tokens (alternating with fp32)`,
      markdownTable(
        [
          "MatMuls int8",
          "file MB fp32 → int8",
          "fp32 images/s",
          "int8 images/s",
          "speed-up",
          "cosine min",
          "cosine mean",
        ],
        [
          [
            int8.matmulsQuantized,
            `${fmt(int8.fp32Bytes / 1e6, 0)} → ${fmt(int8.int8Bytes / 1e6, 0)}`,
            int8.fp32ImagesPerS,
            int8.int8ImagesPerS,
            int8.speedup,
            int8.cosineMin.toFixed(4),
            int8.cosineMean.toFixed(4),
          ],
        ],
      ),
      [
        `Text tower: ${fmt(int8.text.fp32Ms)} ms fp32 → ${fmt(int8.text.int8Ms)} ms int8 per query (${fmt(int8.text.speedup)}×), min cosine ${int8.text.cosineMin.toFixed(4)}.`,
        "Cosines are to the fp32 embeddings of the same inputs; random-init weights, so a trained model's loss of retrieval quality must be checked with bench:urban before shipping int8.",
      ].join("\n\n"),
    );
  }

  report.finished = new Date().toISOString();
  save();
  process.stdout.write(`\nload average at end ${loadAverage().join(" / ")}; JSON: ${flags.json}\n`);
  return 0;
}

runScript("bench:perf", main);
