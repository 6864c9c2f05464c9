/**
 * bench:perf's markdown for the image side: matmul peak, image tower (CPU and CUDA), ingest,
 * preprocessing, the pipeline's CPU side, session options and int8. Each function turns one
 * section's measured result into its title, table(s) and note, and does nothing else.
 */
import { sizeTag } from "./context.ts";
import type { CudaTowerResult, PeakResult, SessionOptionRow, TowerResult } from "./image.ts";
import type { CorpusIngestResult } from "./ingest.ts";
import type { OnnxInt8Result, QuantResult } from "./int8.ts";
import { fmt, type MarkdownSection, markdownTable } from "./markdown.ts";
import type { PipelineResult } from "./pipeline.ts";
import type { PreprocessResult, StageCpu } from "./preprocess.ts";

export function peakSection(peak: PeakResult, threads: number): MarkdownSection {
  return {
    title: "Peak: fp32 matmul 2048×2048 (best of 9 runs; median in brackets)",
    body: markdownTable(
      ["engine", "GFLOP/s"],
      [
        [
          `ONNX Runtime MatMul (${threads} threads)`,
          `${fmt(peak.ortGflops, 1)} (${fmt(peak.ortMedianGflops, 1)})`,
        ],
        [
          `PyTorch torch.mm (${peak.torchThreads} threads)`,
          `${fmt(peak.torchGflops, 1)} (${fmt(peak.torchMedianGflops, 1)})`,
        ],
      ],
    ),
    note: `Fractions of peak below use the best rate any engine reached: ${fmt(peak.bestGflops, 1)} GFLOP/s, ${peak.bestEngine}.`,
  };
}

export function towerSection(towers: readonly TowerResult[]): MarkdownSection {
  return {
    title: "Image tower: images/s (median of runs, warm-up excluded)",
    body: markdownTable(
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
    note: towers
      .map(
        (t) =>
          `${sizeTag(t.size)}: ${fmt(t.gflopsPerImage, 1)} GFLOP/image; engines agree: min cosine ${t.agreement.minCosine.toFixed(6)}, max relative difference ${t.agreement.maxRelativeDifference.toExponential(2)}; torch ${t.torchVersion}, ${t.torchThreads} threads.`,
      )
      .join("\n"),
  };
}

export function cudaSection(cuda: CudaTowerResult): MarkdownSection {
  if ("skipped" in cuda) {
    return { title: "Image tower on CUDA (--device cuda)", body: `skipped: ${cuda.skipped}` };
  }
  return {
    title: `Image tower on CUDA (--device cuda), ${sizeTag(cuda.size)}, fp32 and fp16 towers: images/s (median of runs)`,
    body: markdownTable(
      ["tower", "batch", "images/s"],
      cuda.rows.map((r) => [r.precision, r.batch, r.imagesPerS]),
    ),
    note: `Minimum cosine to the fp32 CPU embeddings of the same pixels: ${Object.entries(
      cuda.minCosineToCpu,
    )
      .map(([precision, value]) => `${precision} ${value.toFixed(6)}`)
      .join(", ")}.`,
  };
}

/** `cores`: the machine's, for the rate ingest could reach with all of them busy. */
export function ingestSection(
  ingests: readonly CorpusIngestResult[],
  cores: number,
): MarkdownSection {
  const first = ingests[0] as CorpusIngestResult;
  const label = (ingest: CorpusIngestResult) => `${ingest.corpus}, ${ingest.mode}`;
  return {
    title: `Ingest pipeline: ${first.images} JPEGs of 1600×1200 per corpus, ${sizeTag(first.size)}, batch ${first.batch}`,
    body: markdownTable(
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
        [label(ingest), "**ingest / bare encoder**", `**${fmt(ingest.fractionOfEncoder, 3)}**`, ""],
      ]),
    ),
    note: ingests
      .map(
        (ingest) =>
          `${label(ingest)}: CPU ms per image of preprocessing alone: read ${fmt(ingest.stageCpuMs.read)}, decode ${fmt(ingest.stageCpuMs.decode)}, resample + normalise ${fmt(ingest.stageCpuMs.resample)}. ` +
          `Ingest adds ${fmt(ingest.ingestCpuMsPerImage - ingest.bareEncoderCpuMsPerImage)} CPU ms per image to the encoder's ${fmt(ingest.bareEncoderCpuMsPerImage)}: with all ${cores} cores busy it could reach at most ${fmt((cores * 1000) / ingest.ingestCpuMsPerImage)} images/s, ${fmt((cores * 1000) / ingest.ingestCpuMsPerImage / ingest.bareEncoderImagesPerS, 3)} of the bare encoder. ` +
          `The encoder ran a batch ${fmt(100 * ingest.encoderBusyFraction, 1)}% of the ingest's wall time, and its batches took ${fmt(ingest.batchSlowdown, 3)}× as long as in the bare run. ` +
          `Rounds (bare / ingest images/s): ${ingest.perRound.map((r) => `${fmt(r.bareImagesPerS)} / ${fmt(r.ingestImagesPerS)}`).join(", ")}.`,
      )
      .join("\n\n"),
  };
}

/** "read / decode / resample = **total**", CPU ms per image. */
function stages(c: StageCpu): string {
  return `${fmt(c.read)} / ${fmt(c.decode)} / ${fmt(c.resample)} = **${fmt(c.total)}**`;
}

export function preprocessSection(result: PreprocessResult): MarkdownSection {
  return {
    title: `Preprocessing: exact vs fast (--preprocess), ${result.resolution}² model input, CPU ms per image`,
    body: [
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
    note: `Median of ${result.runsPerImage} runs per image and mode, the modes alternating image by image; process CPU time (libvips threads included). JPEG decoder: ${result.jpegDecoder} (${result.nativeJpegDecodes} native decodes, ${result.nativeJpegResizes} of them resized natively too; LONGCLIP_NATIVE_JPEG=off for sharp alone). In fast mode "decode" is the shrink-on-load decode and the resize to the model's size (the native addon's for plain JPEGs, libvips' otherwise), "resample" only crops and normalises. PSNR is of the normalised model input, on the 0..1 pixel scale. Synthetic: the noisy gradient JPEGs of the ingest section; photo-like: tools/bench/photos.ts.`,
  };
}

/** One pipeline run per corpus of JPEGs (`corpus` names it). */
export function pipelineSection(
  results: readonly (PipelineResult & { corpus: string })[],
): MarkdownSection {
  const first = results[0];
  return {
    title: `Pipeline with a simulated encoder (${fmt(first?.msPerBatch ?? Number.NaN, 0)} ms per batch of ${first?.batch}, no CPU: ${fmt(first?.encoderImagesPerS ?? Number.NaN, 0)} images/s), ${first?.rows[0]?.photos} JPEGs of 1600×1200 per corpus`,
    body: markdownTable(
      [
        "JPEGs, --preprocess",
        "photos/s",
        "encoder busy",
        "CPU ms per photo",
        "photos/s per core",
        "cores for 1,000 img/s",
        "cores for 3,000 img/s",
      ],
      results.flatMap((result) =>
        result.rows.map((r) => [
          `${result.corpus}, ${r.mode}`,
          r.photosPerS,
          `${fmt(100 * r.encoderBusy, 0)}%`,
          r.cpuMsPerPhoto,
          r.photosPerSPerCore,
          fmt(r.coresFor1000, 1),
          fmt(r.coresFor3000, 1),
        ]),
      ),
    ),
    note: `Library.index (read → hash → decode → resize → embed → SQLite + HNSW) with ${first?.workers} preprocessing worker(s) on ${first?.cores} cores; CPU ms per photo is the whole process's CPU time (every thread) over the photos, the stand-in encoder using none. Cores needed = rate × CPU ms per photo, assuming the work spreads over cores (decode workers sized to the cores; the main thread's hashing, SQLite and HNSW share are in the figure). Rounds (photos/s): ${results.flatMap((result) => result.rows.map((r) => `${result.corpus}, ${r.mode} ${r.rounds.map((v) => fmt(v)).join(", ")}`)).join("; ")}.`,
  };
}

/** `size`: the model whose vision tower ran, e.g. "ViT-B/16". */
export function sessionOptionsSection(
  options: readonly SessionOptionRow[],
  size: string,
): MarkdownSection {
  return {
    title: `Session options: ${sizeTag(size)} vision tower, batch 8, in-process session`,
    body: markdownTable(
      ["options", "images/s", "engine images/s (alternating)", "gain"],
      options.map((o) => [o.name, o.imagesPerS, o.engineImagesPerS, fmt(o.gain, 3)]),
    ),
  };
}

export function torchInt8Section(int8: QuantResult): MarkdownSection {
  return {
    title: `int8 (PyTorch dynamic quantisation of the Linear layers), ${sizeTag(int8.size)}, batch ${int8.batch}`,
    body: markdownTable(
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
    note: "The reference's own int8 path, for comparison with the int8 ONNX tower below.",
  };
}

export function onnxInt8Section(int8: OnnxInt8Result): MarkdownSection {
  return {
    title: `int8 ONNX towers (python3 -m training quantize) through our Encoder, ${sizeTag(int8.size)}, vision batch ${int8.batch}, text ${int8.text.tokens} tokens (alternating with fp32)`,
    body: markdownTable(
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
    note: [
      `Text tower: ${fmt(int8.text.fp32Ms)} ms fp32 → ${fmt(int8.text.int8Ms)} ms int8 per query (${fmt(int8.text.speedup)}×), min cosine ${int8.text.cosineMin.toFixed(4)}.`,
      "Cosines are to the fp32 embeddings of the same inputs; random-init weights, so a trained model's loss of retrieval quality must be checked with bench:urban before shipping int8.",
    ].join("\n\n"),
  };
}
