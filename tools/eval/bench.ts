/**
 * `bench:urban`: embeds every image and caption of an Urban1k-layout dataset and measures
 * long-caption retrieval (R@1/5/10 both ways, see recall.ts), optionally with captions cut to a
 * token budget — the effective-length study of the Long-CLIP paper.
 */
import { readFile } from "node:fs/promises";
import type { ImageBytesResult } from "../../src/encode/encoder.ts";
import { l2NormalizedRow } from "../../src/encode/encoder.ts";
import { sentenceWindows, weightedUnitSum } from "../../src/library/search/search.ts";
import type { ModelConfig } from "../../src/model/format.ts";
import type { TokenizedText } from "../../src/tokenize/types.ts";
import { ScriptError } from "../script.ts";
import { type RecallAtK, retrievalRecall } from "./recall.ts";
import { type ScoreDistribution, scoreDistribution } from "./scores.ts";
import type { ExcludedPair, UrbanDataset } from "./urban1k.ts";

/** The token budgets of the paper's effective-length study. */
export const SWEEP_BUDGETS = [5, 10, 20, 30, 50, 77, 120, 160, 248] as const;

/**
 * What the bench needs of the encoder (src/encode/encoder.ts `Encoder` provides it): the
 * tokenizer, the text tower on explicit id rows (so captions can be cut below the model's
 * context length), and image bytes → embeddings with a per-image error.
 */
export interface BenchEncoder {
  readonly config: ModelConfig;
  readonly modelId: string;
  tokenize(text: string): TokenizedText;
  /** Unnormalised text embeddings of `[start] … [end]` id rows (zero padding is added). */
  rawText(rows: readonly Int32Array[]): Promise<Float32Array[]>;
  embedImageBytes(buffers: readonly Buffer[]): Promise<ImageBytesResult[]>;
}

export interface ProgressBar {
  increment(by: number): void;
  stop(): void;
}

export type ProgressFactory = (label: string, total: number) => ProgressBar;

export interface BenchOptions {
  /** Cut every caption to this many ids (start and end included), as CLIP cuts to 77. */
  maxTokens?: number;
  /** Token budgets to measure R@1 at (the effective-length curve). */
  sweep?: readonly number[];
  /** Images and captions per encoder call. */
  batchSize: number;
  progress?: ProgressFactory;
  /** Also measure captions past the context read in sentence windows (`long_query: "chunk"`). */
  chunk?: boolean;
}

/** Captions past the context: R@k when they are cut (the main result) and when chunked. */
export interface ChunkResult {
  /** Captions longer than the context (the ones chunking changes). */
  long_captions: number;
  mean_windows: number;
  i2t: RecallAtK;
  t2i: RecallAtK;
}

export interface SweepPoint {
  max_tokens: number;
  i2t_r1: number;
  t2i_r1: number;
  /** Fraction of captions longer than the budget, i.e. actually cut. */
  cut: number;
}

export interface BenchResult {
  n: number;
  i2t: RecallAtK;
  t2i: RecallAtK;
  model_id: string;
  /** The budget the main result used: --max-tokens, or the model's context length. */
  max_tokens: number;
  excluded: ExcludedPair[];
  /** Cosines of matching and non-matching pairs of the main result (for choosing min_score). */
  scores: ScoreDistribution;
  chunk?: ChunkResult;
  sweep?: SweepPoint[];
}

/**
 * Cuts `[start] + bpe + [end]` to `maxTokens` ids with the last kept id replaced by `end`, the
 * rule of the official `tokenize(..., truncate=True)` (which cuts to 77, or 248 in Long-CLIP).
 */
export function truncateIds(ids: Int32Array, maxTokens: number, endId: number): Int32Array {
  if (!Number.isInteger(maxTokens) || maxTokens < 2) {
    throw new ScriptError(
      "invalid_max_tokens",
      `A token budget must be an integer of at least 2 (start and end tokens), not ${maxTokens}.`,
    );
  }
  if (ids.length <= maxTokens) return ids;
  const cut = ids.slice(0, maxTokens);
  cut[maxTokens - 1] = endId;
  return cut;
}

const silentProgress: ProgressFactory = () => ({ increment() {}, stop() {} });

/** Embeds the images, `batchSize` files at a time; a file that fails leaves a hole and a reason. */
export async function embedImages(
  encoder: BenchEncoder,
  dataset: UrbanDataset,
  batchSize: number,
  progress: ProgressFactory = silentProgress,
): Promise<{ embeddings: (Float32Array | undefined)[]; failed: ExcludedPair[] }> {
  const pairs = dataset.pairs;
  const embeddings = new Array<Float32Array | undefined>(pairs.length).fill(undefined);
  const failed: ExcludedPair[] = [];
  const bar = progress("images", pairs.length);
  try {
    for (let start = 0; start < pairs.length; start += batchSize) {
      const chunk = pairs.slice(start, start + batchSize);
      const read = await Promise.allSettled(chunk.map((pair) => readFile(pair.imagePath)));
      const buffers: Buffer[] = [];
      const positions: number[] = [];
      read.forEach((result, k) => {
        const pair = chunk[k] as (typeof chunk)[number];
        if (result.status === "fulfilled") {
          buffers.push(result.value);
          positions.push(start + k);
        } else {
          const code = (result.reason as NodeJS.ErrnoException)?.code ?? "error";
          failed.push({
            name: pair.name,
            reason: "image_unreadable",
            message: `cannot read ${pair.imagePath} (${code})`,
          });
        }
      });
      const results = await encoder.embedImageBytes(buffers);
      results.forEach((result, k) => {
        const index = positions[k] as number;
        if (result.ok) {
          embeddings[index] = result.embedding;
        } else {
          const pair = pairs[index] as (typeof pairs)[number];
          failed.push({
            name: pair.name,
            reason: "image_unreadable",
            message: `${pair.imagePath}: ${result.error.code}: ${result.error.message}`,
          });
        }
      });
      bar.increment(chunk.length);
    }
  } finally {
    bar.stop();
  }
  return { embeddings, failed };
}

/**
 * L2-normalised text embeddings of id rows. Rows are batched by length so a batch's padding
 * stays small; results come back in input order.
 */
export async function embedIdRows(
  encoder: BenchEncoder,
  rows: readonly Int32Array[],
  batchSize: number,
  bar: ProgressBar,
): Promise<Float32Array[]> {
  const order = rows.map((_, i) => i).sort((a, b) => rowLength(rows, a) - rowLength(rows, b));
  const out = new Array<Float32Array>(rows.length);
  for (let start = 0; start < order.length; start += batchSize) {
    const indices = order.slice(start, start + batchSize);
    const raw = await encoder.rawText(indices.map((i) => rows[i] as Int32Array));
    indices.forEach((index, r) => {
      const row = raw[r] as Float32Array;
      out[index] = l2NormalizedRow(row, 0, row.length);
    });
    bar.increment(indices.length);
  }
  return out;
}

function rowLength(rows: readonly Int32Array[], i: number): number {
  return (rows[i] as Int32Array).length;
}

/** Runs the whole bench on a loaded dataset. */
export async function runUrbanBench(
  encoder: BenchEncoder,
  dataset: UrbanDataset,
  options: BenchOptions,
): Promise<BenchResult> {
  const context = encoder.config.context_length;
  const endId = encoder.config.end_token_id;
  const batchSize = Math.max(1, options.batchSize);
  const progress = options.progress ?? silentProgress;
  for (const budget of [options.maxTokens, ...(options.sweep ?? [])]) {
    if (budget !== undefined) truncateIds(new Int32Array(0), budget, endId);
  }
  const images = await embedImages(encoder, dataset, batchSize, progress);
  const kept = dataset.pairs.map((_, i) => images.embeddings[i] !== undefined);
  // Tokenized once at the model's context; shorter budgets cut these rows further.
  const tokenized = dataset.pairs.map((pair, i) =>
    kept[i] ? encoder.tokenize(pair.caption).ids : new Int32Array(0),
  );
  const keptIndices = tokenized.map((_, i) => i).filter((i) => kept[i]);

  const full = new Map<number, Float32Array>();
  const budgets = [options.maxTokens ?? context, ...(options.sweep ?? [])];
  // Each caption is embedded once uncut; a budget only re-embeds the captions it cuts.
  const cutCount = (budget: number) =>
    keptIndices.filter((i) => (tokenized[i] as Int32Array).length > Math.min(budget, context))
      .length;
  const total = keptIndices.length + budgets.reduce((sum, b) => sum + cutCount(b), 0);
  const bar = progress("captions", total);
  const textsAt = async (budget: number): Promise<(Float32Array | undefined)[]> => {
    if (full.size === 0 && keptIndices.length > 0) {
      const rows = keptIndices.map((i) => tokenized[i] as Int32Array);
      const embedded = await embedIdRows(encoder, rows, batchSize, bar);
      keptIndices.forEach((index, k) => {
        full.set(index, embedded[k] as Float32Array);
      });
    }
    const limit = Math.min(budget, context);
    const cut = keptIndices.filter((i) => (tokenized[i] as Int32Array).length > limit);
    const rows = cut.map((i) => truncateIds(tokenized[i] as Int32Array, limit, endId));
    const embedded = await embedIdRows(encoder, rows, batchSize, bar);
    const byIndex = new Map(cut.map((index, k) => [index, embedded[k] as Float32Array]));
    return dataset.pairs.map((_, i) => byIndex.get(i) ?? full.get(i));
  };
  let result: BenchResult;
  try {
    const mainTexts = await textsAt(budgets[0] as number);
    const main = retrievalRecall(images.embeddings, mainTexts);
    result = {
      n: main.n,
      i2t: main.i2t,
      t2i: main.t2i,
      model_id: encoder.modelId,
      max_tokens: Math.min(options.maxTokens ?? context, context),
      excluded: [...dataset.excluded, ...images.failed],
      scores: scoreDistribution(images.embeddings, mainTexts),
    };
    if (options.chunk) {
      const long = keptIndices.filter(
        (i) => encoder.tokenize(dataset.pairs[i]?.caption ?? "").tokens > context,
      );
      const pooled = new Map<number, Float32Array>();
      let windowsTotal = 0;
      for (const index of long) {
        const caption = (dataset.pairs[index] as (typeof dataset.pairs)[number]).caption;
        const windows = sentenceWindows(caption, (t) => encoder.tokenize(t).tokens, context);
        windowsTotal += windows.length;
        const embedded = await embedIdRows(
          encoder,
          windows.map((w) => encoder.tokenize(w).ids),
          batchSize,
          silentProgress("windows", 0),
        );
        pooled.set(
          index,
          weightedUnitSum(
            embedded,
            embedded.map(() => 1),
          ),
        );
      }
      const chunked = retrievalRecall(
        images.embeddings,
        dataset.pairs.map((_, i) => pooled.get(i) ?? full.get(i)),
      );
      result.chunk = {
        long_captions: long.length,
        mean_windows: long.length === 0 ? 0 : windowsTotal / long.length,
        i2t: chunked.i2t,
        t2i: chunked.t2i,
      };
    }
    if (options.sweep !== undefined) {
      result.sweep = [];
      for (const budget of options.sweep) {
        const recall = retrievalRecall(images.embeddings, await textsAt(budget));
        result.sweep.push({
          max_tokens: budget,
          i2t_r1: recall.i2t.r1,
          t2i_r1: recall.t2i.r1,
          cut: keptIndices.length === 0 ? 0 : cutCount(budget) / keptIndices.length,
        });
      }
    }
  } finally {
    bar.stop();
  }
  return result;
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`.padStart(7);

/** The result as a plain-text table. */
export function formatBenchTable(result: BenchResult): string {
  const lines = [
    `Urban1k-layout retrieval: ${result.n} pairs, model ${result.model_id}, captions cut to ${result.max_tokens} tokens`,
    `${"".padEnd(12)}${"R@1".padStart(7)}${"R@5".padStart(7)}${"R@10".padStart(7)}`,
    `${"image→text".padEnd(12)}${pct(result.i2t.r1)}${pct(result.i2t.r5)}${pct(result.i2t.r10)}`,
    `${"text→image".padEnd(12)}${pct(result.t2i.r1)}${pct(result.t2i.r5)}${pct(result.t2i.r10)}`,
  ];
  if (result.chunk !== undefined) {
    const c = result.chunk;
    lines.push(
      "",
      `Long queries: ${c.long_captions} captions past ${result.max_tokens} tokens read in sentence windows (long_query "chunk", ${c.mean_windows.toFixed(2)} windows on average) instead of cut:`,
      `${"image→text".padEnd(12)}${pct(c.i2t.r1)}${pct(c.i2t.r5)}${pct(c.i2t.r10)}`,
      `${"text→image".padEnd(12)}${pct(c.t2i.r1)}${pct(c.t2i.r5)}${pct(c.t2i.r10)}`,
    );
  }
  const sc = result.scores;
  const q = (x: { p5: number; p50: number; p95: number }) =>
    `${x.p5.toFixed(3)} / ${x.p50.toFixed(3)} / ${x.p95.toFixed(3)}`;
  lines.push(
    "",
    "Cosine scores (p5 / p50 / p95), for choosing min_score:",
    `  matching pairs            ${q(sc.matching)}`,
    `  non-matching pairs        ${q(sc.non_matching)}`,
    `  best non-matching/caption ${q(sc.best_non_matching)}`,
    `  min_score ${sc.suggested_min_score.toFixed(3)} keeps 95% of matching pairs and ${(100 * sc.non_matching_above_suggested).toFixed(1)}% of non-matching ones`,
  );
  if (result.sweep !== undefined) {
    lines.push(
      "",
      "Effective length (R@1 against the token budget):",
      `${"tokens".padEnd(8)}${"I2T R@1".padStart(9)}${"T2I R@1".padStart(9)}${"cut".padStart(8)}`,
    );
    for (const p of result.sweep) {
      lines.push(
        `${String(p.max_tokens).padEnd(8)}${pct(p.i2t_r1).padStart(9)}${pct(p.t2i_r1).padStart(9)}${pct(p.cut).padStart(8)}`,
      );
    }
  }
  return lines.join("\n");
}
