/**
 * Text-side section of bench:perf: one query's latency at several token counts, with the
 * engine's dynamic length and zero-padded to the full context as the official code does, and
 * what a query-embedding cache saves on a repeated query.
 */
import { loadSettings } from "../../src/core/settings.ts";
import { Encoder } from "../../src/encode/encoder.ts";
import { LruCache } from "../../src/util/lru-cache.ts";
import type { BenchContext } from "./context.ts";
import { sizeTag } from "./context.ts";
import type { BenchModel } from "./models.ts";
import { cosine, median, timeRuns } from "./stats.ts";
import { seededRandom } from "./vectors.ts";

const quietLogger = { info: () => {}, warn: (m: string) => process.stderr.write(`${m}\n`) };

export interface TextRow {
  tokens: number;
  dynamicMs: number;
  paddedMs: number;
  /** padded / dynamic */
  speedup: number;
  /** Cosine between the dynamic and the padded result (1 up to float rounding). */
  agreement: number;
}

export interface TextResult {
  size: string;
  context: number;
  rows: TextRow[];
  /** Latency of 30 tokens against 248 tokens, both dynamic (the ratio). */
  ratio30vs248: number;
  cache: { query: string; tokens: number; encodeMs: number; cachedMs: number; speedup: number };
}

/** A start token, `length - 2` random BPE ids and an end token. */
export function tokenRow(length: number, vocabSize: number, random: () => number): Int32Array {
  const row = new Int32Array(length);
  row[0] = vocabSize - 2;
  for (let i = 1; i < length - 1; i++) row[i] = 1 + Math.floor(random() * (vocabSize - 3));
  row[length - 1] = vocabSize - 1;
  return row;
}

export async function measureText(
  ctx: BenchContext,
  model: BenchModel,
  lengths: readonly number[],
  runs: number,
): Promise<TextResult> {
  const settings = loadSettings({ threads: ctx.threads });
  const encoder = await Encoder.load(model.dir, settings, { logger: quietLogger });
  try {
    const context = encoder.config.context_length;
    const vocab = encoder.config.vocab_size;
    const random = seededRandom(7);
    const rows: TextRow[] = [];
    for (const tokens of lengths.filter((n) => n <= context)) {
      const row = tokenRow(tokens, vocab, random);
      const padded = new Int32Array(context);
      padded.set(row);
      ctx.log(
        `${sizeTag(model.size)} text tower: ${tokens} tokens, dynamic and padded, ${runs} runs`,
      );
      const dynamic = await timeRuns(() => encoder.rawText([row]), ctx.warmup, runs);
      const full = await timeRuns(() => encoder.rawText([padded]), ctx.warmup, runs);
      const [a] = await encoder.rawText([row]);
      const [b] = await encoder.rawText([padded]);
      rows.push({
        tokens,
        dynamicMs: dynamic.medianSeconds * 1000,
        paddedMs: full.medianSeconds * 1000,
        speedup: full.medianSeconds / dynamic.medianSeconds,
        agreement: a && b ? cosine(a, b) : Number.NaN,
      });
    }
    const at = (n: number) => rows.find((r) => r.tokens === n)?.dynamicMs ?? Number.NaN;

    // A repeated query: the whole embedTexts path (tokenize + encode) against a cache hit.
    const query =
      "A red vintage car parked in front of an old stone house with ivy on the walls, a bicycle leaning against the fence and two children playing";
    const cache = new LruCache<string, Float32Array>(1024);
    const encode = await timeRuns(() => encoder.embedTexts([query]), ctx.warmup, runs);
    const [first] = await encoder.embedTexts([query]);
    if (first) cache.set(query, first.embedding);
    const lookups = 10_000;
    const cached = await timeRuns(
      () => {
        for (let i = 0; i < lookups; i++) cache.get(query);
      },
      1,
      runs,
    );
    const cachedMs = (cached.medianSeconds * 1000) / lookups;
    return {
      size: model.size,
      context,
      rows,
      ratio30vs248: at(context) / at(30),
      cache: {
        query,
        tokens: first?.tokens ?? 0,
        encodeMs: encode.medianSeconds * 1000,
        cachedMs,
        speedup: (encode.medianSeconds * 1000) / cachedMs,
      },
    };
  } finally {
    await encoder.close();
  }
}

export interface QueryUnderIngestRow {
  condition: string;
  queries: number;
  medianMs: number;
  maxMs: number;
  /** Images/s of the ingest loop while the queries ran (absent for "alone"). */
  imagesPerSecond?: number;
}

/**
 * Engine-level view of search during ingest: the latency of a query alone, then while image
 * batches run on the same Encoder, as the product does it (each tower in its own worker) and
 * with both towers in one worker (the layout before the split: a query waits for the batch in
 * progress).
 */
export async function measureQueryUnderIngest(
  ctx: BenchContext,
  model: BenchModel,
  pixels: readonly Float32Array[],
  batch: number,
  queries: number,
): Promise<QueryUnderIngestRow[]> {
  const settings = loadSettings({ threads: ctx.threads, imageBatchSize: batch });
  const query = "a red car parked next to an old stone house, a bicycle leaning against the fence";
  const images = pixels.slice(0, batch);
  const timeQueries = async (encoder: Encoder): Promise<number[]> => {
    const ms: number[] = [];
    for (let i = 0; i < queries; i++) {
      const started = performance.now();
      await encoder.embedTexts([query]);
      ms.push(performance.now() - started);
      // Queries arrive at random moments of the batch, not right after one finishes.
      await new Promise((resolve) => setTimeout(resolve, 50 + ((i * 397) % 700)));
    }
    return ms;
  };
  const summary = (condition: string, ms: number[]): QueryUnderIngestRow => ({
    condition,
    queries: ms.length,
    medianMs: median(ms),
    maxMs: Math.max(...ms),
  });
  const whileIngesting = async (condition: string, encoder: Encoder) => {
    let stop = false;
    let encoded = 0;
    const started = performance.now();
    const loop = (async () => {
      while (!stop) encoded += (await encoder.embedPixels(images)).length;
    })();
    let ms: number[];
    try {
      ms = await timeQueries(encoder);
    } finally {
      stop = true;
      await loop;
    }
    const seconds = (performance.now() - started) / 1000;
    return { ...summary(condition, ms), imagesPerSecond: encoded / seconds };
  };
  const rows: QueryUnderIngestRow[] = [];
  for (const [layout, sharedWorker] of [
    ["own text worker (product)", false],
    ["shared worker (before)", true],
  ] as const) {
    const encoder = await Encoder.load(model.dir, settings, { logger: quietLogger, sharedWorker });
    try {
      await encoder.embedTexts([query]);
      await encoder.embedPixels(images);
      if (rows.length === 0) {
        ctx.log(`${sizeTag(model.size)} query latency: alone`);
        rows.push(summary("alone", await timeQueries(encoder)));
      }
      ctx.log(`${sizeTag(model.size)} query latency: ${layout}, under image batches of ${batch}`);
      rows.push(await whileIngesting(`${layout}, batches of ${batch} running`, encoder));
    } finally {
      await encoder.close();
    }
  }
  return rows;
}
