/**
 * The query side of search: a text, a long text in sentence windows, or a weighted composition
 * of texts and stored items becomes one unit query vector; the store ranks items by it; the
 * page (`offset`, `k`) and the relevance cutoff (`minScore`) are cut from that ranking with
 * ranks kept absolute. ./query-embedder.ts supplies the text queue and the query cache, the
 * library (../library.ts) its state checks; the HTTP layer and the CLI only translate to and
 * from this.
 */

import { AppError } from "../../core/errors.ts";
import type { Settings } from "../../core/settings.ts";
import type { ComposePart, Hit, QueryInfo, SearchOptions, TextOptions } from "../../core/types.ts";
import type { TextEmbedding } from "../../encode/types.ts";
import { filterValueCount } from "../../store/filter.ts";
import type { ItemStore } from "../../store/types.ts";
import type { TokenizedText } from "../../tokenize/types.ts";
import { hitMatch, parseTextFields, rankedSearch } from "./hybrid.ts";
import type { TextQuery } from "./query-embedder.ts";

/** Parts of one composed query. */
export const MAX_COMPOSE_PARTS = 16;

/** What search needs of the library around it. */
export interface SearchContext {
  settings: Settings;
  store: ItemStore;
  modelId: string;
  contextLength: number;
  /**
   * The model's tokens of a text (`tokens` counts `[start] + bpe + [end]` before any cut);
   * undefined without a tokenizer.
   */
  tokenize: ((text: string) => TokenizedText) | undefined;
  /** Unit embeddings of texts, from their tokens when given (batched, queued and cached). */
  embedTexts(queries: readonly TextQuery[]): Promise<TextEmbedding[]>;
}

/** How a text is embedded: as one text (`whole`, cut by the encoder) or as sentence windows. */
export interface TextPlan {
  windows: string[];
  /** Tokens of the whole text (undefined without a tokenizer). */
  tokens: number | undefined;
  /** The whole text's tokens, embedded as they are when the text is embedded whole. */
  tokenized?: TokenizedText;
  /** Windows past maxQueryWindows were left out. */
  cut: boolean;
  whole?: true;
}

function refuseLong(tokens: number, maxTokens: number): AppError {
  return new AppError(
    "query_too_long",
    `The query is ${tokens} tokens; the model reads ${maxTokens}. Shorten it, allow truncation (truncate: true) or embed it in sentence windows (long_query: "chunk").`,
    { tokens, maxTokens },
  );
}

/** An embedded query: the unit vector and what the answer says about the text. */
export interface QueryVector {
  vector: Float32Array;
  info: QueryInfo;
}

const sentences = new Intl.Segmenter("en", { granularity: "sentence" });
const words = new Intl.Segmenter("en", { granularity: "word" });

/**
 * Splits a text into windows of whole sentences, each at most `maxTokens` tokens with the start
 * and end tokens. A sentence longer than a window is split between words. CLIP's BPE never
 * merges across whitespace, so a window's token count is the sum of its pieces' counts.
 */
export function sentenceWindows(
  text: string,
  countTokens: (text: string) => number,
  maxTokens: number,
): string[] {
  const budget = maxTokens - 2;
  const content = (piece: string) => countTokens(piece) - 2;
  const pieces: { text: string; tokens: number }[] = [];
  for (const { segment } of sentences.segment(text)) {
    const tokens = content(segment);
    if (tokens <= 0) continue;
    if (tokens <= budget) {
      pieces.push({ text: segment.trim(), tokens });
      continue;
    }
    for (const { segment: word } of words.segment(segment)) {
      const wordTokens = content(word);
      // A single "word" past the budget (no spaces in 240+ tokens) is cut by the encoder.
      if (wordTokens > 0) pieces.push({ text: word, tokens: Math.min(wordTokens, budget) });
    }
  }
  const windows: string[] = [];
  let current: string[] = [];
  let used = 0;
  for (const piece of pieces) {
    if (used + piece.tokens > budget && current.length > 0) {
      windows.push(current.join(" ").trim());
      current = [];
      used = 0;
    }
    current.push(piece.text);
    used += piece.tokens;
  }
  if (current.length > 0) windows.push(current.join(" ").trim());
  return windows;
}

/** Σ weight·vector, normalised to unit length; refuses a sum with no direction. */
export function weightedUnitSum(
  vectors: readonly Float32Array[],
  weights: readonly number[],
): Float32Array {
  const dims = vectors[0]?.length ?? 0;
  // Only the weights' ratios matter: scaled by the largest first (1e200 and 1e-200 are as good
  // as 1), and summed in float64, so no finite weight overflows the sum.
  const largest = Math.max(0, ...weights.map(Math.abs));
  if (!Number.isFinite(largest)) {
    throw new AppError("validation_failed", "compose: every weight must be a finite number.");
  }
  const sum = new Float64Array(dims);
  vectors.forEach((vector, i) => {
    const weight = largest > 0 ? (weights[i] ?? 0) / largest : 0;
    for (let d = 0; d < dims; d++) sum[d] = (sum[d] as number) + weight * (vector[d] as number);
  });
  let norm = 0;
  for (let d = 0; d < dims; d++) norm += (sum[d] as number) ** 2;
  norm = Math.sqrt(norm);
  if (!(norm > 1e-6)) {
    throw new AppError(
      "validation_failed",
      "compose: the weighted parts cancel out (their sum has no direction); change the weights.",
    );
  }
  return Float32Array.from(sum, (value) => value / norm);
}

function checkPage(options: SearchOptions, maxK: number): void {
  const { k } = options;
  if (!Number.isInteger(k) || k < 1 || k > maxK) {
    throw new AppError(
      "k_out_of_range",
      `k must be an integer from 1 to ${maxK}, not ${String(k)}.`,
      {
        min: 1,
        max: maxK,
      },
    );
  }
  const offset = options.offset ?? 0;
  if (!Number.isInteger(offset) || offset < 0 || offset + k > maxK) {
    throw new AppError(
      "offset_out_of_range",
      `offset must be an integer from 0 and offset + k at most ${maxK} (maxK, LONGCLIP_MAX_K), not offset ${String(offset)} with k ${k}.`,
      { max: maxK },
    );
  }
  const minScore = options.minScore;
  if (minScore !== undefined && !(Number.isFinite(minScore) && minScore >= -1 && minScore <= 1)) {
    throw new AppError(
      "validation_failed",
      `min_score must be a cosine from -1 to 1, not ${String(minScore)}.`,
    );
  }
}

const MODES = ["vector", "keyword", "hybrid"];

export class Search {
  /** Text fields keyword search looks in by default (the textFields setting). */
  private readonly textFields: string[];

  constructor(private readonly ctx: SearchContext) {
    this.textFields = parseTextFields(
      ctx.settings.textFields,
      "--text-fields (LONGCLIP_TEXT_FIELDS)",
    );
  }

  /** Checks page, cutoff, filter and mode before any embedding work is queued. */
  checkOptions(options: SearchOptions): void {
    checkPage(options, this.ctx.settings.maxK);
    if (options.filter !== undefined) {
      this.ctx.store.checkFilter(options.filter);
      const values = filterValueCount(options.filter);
      const limit = this.ctx.settings.maxFilterValues;
      if (values > limit) {
        throw new AppError(
          "filter_too_large",
          `The filter names ${values} values; the limit is ${limit} in all keys together (maxFilterValues, LONGCLIP_MAX_FILTER_VALUES). Split the search or use fewer $in/$nin values.`,
          { values, limit },
        );
      }
    }
    if (options.mode !== undefined && !MODES.includes(options.mode)) {
      throw new AppError(
        "validation_failed",
        `mode must be vector, keyword or hybrid, not ${String(options.mode)}.`,
      );
    }
    if (options.textFields !== undefined) parseTextFields(options.textFields, "text_fields");
  }

  checkText(query: unknown, where = "query"): asserts query is string {
    if (typeof query !== "string" || query.trim() === "") {
      throw new AppError("empty_query", `The ${where} is empty; send some text to search for.`);
    }
    const limit = this.ctx.settings.maxQueryChars;
    if (query.length > limit) {
      throw new AppError(
        "query_too_long",
        `The ${where} has ${query.length} characters; the limit is ${limit} (maxQueryChars). Shorten it.`,
        { chars: query.length, limit },
      );
    }
  }

  /**
   * What embedding a text takes, decided before any work is queued: the text itself (cut at
   * the context by the encoder), or with `long_query: "chunk"` its sentence windows, at most
   * `maxQueryWindows` of them (the rest cut and flagged, or refused when `truncate` is false).
   */
  planText(text: string, options: TextOptions): TextPlan {
    const maxTokens = this.ctx.contextLength;
    const tokenize = this.ctx.tokenize;
    const tokenized = tokenize?.(text);
    const tokens = tokenized?.tokens;
    if (options.longQuery === "chunk" && tokens !== undefined && tokens > maxTokens && tokenize) {
      const windows = sentenceWindows(text, (piece) => tokenize(piece).tokens, maxTokens);
      const limit = this.ctx.settings.maxQueryWindows;
      if (windows.length > limit && options.truncate === false) {
        throw new AppError(
          "query_too_long",
          `The query is ${tokens} tokens, ${windows.length} windows of ${maxTokens}; the limit is ${limit} windows (maxQueryWindows, LONGCLIP_MAX_QUERY_WINDOWS). Shorten it or allow truncation (truncate: true) to read its first ${limit} windows.`,
          { tokens, windows: windows.length, maxWindows: limit },
        );
      }
      return { windows: windows.slice(0, limit), tokens, cut: windows.length > limit };
    }
    if (options.truncate === false && tokens !== undefined && tokens > maxTokens) {
      throw refuseLong(tokens, maxTokens);
    }
    const plan: TextPlan = { windows: [text], tokens, cut: false, whole: true };
    if (tokenized !== undefined) plan.tokenized = tokenized;
    return plan;
  }

  /** Refuses plans that together need more text-tower runs than maxRequestWindows. */
  checkRuns(plans: readonly TextPlan[]): void {
    const runs = plans.reduce((sum, plan) => sum + plan.windows.length, 0);
    const limit = this.ctx.settings.maxRequestWindows;
    if (runs > limit) {
      throw new AppError(
        "too_many_windows",
        `This search needs ${runs} text-tower runs (windows of its texts); the limit is ${limit} per request (maxRequestWindows, LONGCLIP_MAX_REQUEST_WINDOWS). Use fewer or shorter texts, or long_query "truncate".`,
        { windows: runs, limit },
      );
    }
  }

  /**
   * A text's query vector. `truncate` (default) embeds the first `contextLength` tokens; `chunk`
   * embeds sentence windows of at most that many tokens and averages their unit embeddings.
   */
  async embedText(text: string, options: TextOptions): Promise<QueryVector> {
    const plan = this.planText(text, options);
    this.checkRuns([plan]);
    return this.embedPlan(plan, options);
  }

  private async embedPlan(plan: TextPlan, options: TextOptions): Promise<QueryVector> {
    const maxTokens = this.ctx.contextLength;
    if (plan.whole !== true) {
      const embedded = await this.ctx.embedTexts(plan.windows.map((text) => ({ text })));
      return {
        vector: weightedUnitSum(
          embedded.map((e) => e.embedding),
          embedded.map(() => 1),
        ),
        info: {
          tokens: plan.tokens as number,
          truncated: plan.cut,
          max_tokens: maxTokens,
          chunks: plan.windows.length,
        },
      };
    }
    const [text] = plan.windows as [string];
    const [embedded] = await this.ctx.embedTexts([
      plan.tokenized === undefined ? { text } : { text, tokenized: plan.tokenized },
    ]);
    if (embedded === undefined) throw new Error("the encoder returned no embedding");
    if (options.truncate === false && embedded.truncated) {
      throw refuseLong(embedded.tokens, maxTokens);
    }
    return {
      vector: embedded.embedding,
      info: {
        tokens: embedded.tokens,
        truncated: embedded.truncated,
        max_tokens: maxTokens,
        chunks: 1,
      },
    };
  }

  /** Checks a composition's shape (before embedding work): 1..16 parts, text xor item_id. */
  checkCompose(parts: readonly ComposePart[], options: SearchOptions): void {
    if ((options.mode ?? "vector") !== "vector") {
      throw new AppError(
        "validation_failed",
        `mode ${options.mode} ranks by the words of a query text; compose has no single text, so it searches with mode "vector".`,
      );
    }
    if (!Array.isArray(parts) || parts.length === 0 || parts.length > MAX_COMPOSE_PARTS) {
      throw new AppError(
        "validation_failed",
        `compose takes 1 to ${MAX_COMPOSE_PARTS} parts, not ${Array.isArray(parts) ? parts.length : "a non-array"}.`,
      );
    }
    parts.forEach((part, i) => {
      const where = `compose[${i}]`;
      if ((part.text === undefined) === (part.itemId === undefined)) {
        throw new AppError("validation_failed", `${where} needs exactly one of text or item_id.`);
      }
      if (!Number.isFinite(part.weight)) {
        throw new AppError("validation_failed", `${where}.weight must be a finite number.`);
      }
      if (part.text !== undefined) this.checkText(part.text, `${where}.text`);
    });
  }

  /**
   * Σ weight · unit embedding over the parts (texts through the text tower, items by their
   * stored image embedding), normalised again: a negative weight pushes away from its part.
   */
  async embedCompose(parts: readonly ComposePart[], options: TextOptions): Promise<QueryVector> {
    const vectors: Float32Array[] = [];
    let info: QueryInfo = {
      tokens: 0,
      truncated: false,
      max_tokens: this.ctx.contextLength,
      chunks: 0,
    };
    // Every text's windows are known before any is embedded: the request's cost is checked whole.
    const plans = parts.map((part) =>
      part.text === undefined ? undefined : this.planText(part.text, options),
    );
    this.checkRuns(plans.filter((plan): plan is TextPlan => plan !== undefined));
    for (const [i, part] of parts.entries()) {
      const plan = plans[i];
      if (plan !== undefined) {
        const text = await this.embedPlan(plan, options);
        vectors.push(text.vector);
        info = {
          tokens: Math.max(info.tokens, text.info.tokens),
          truncated: info.truncated || text.info.truncated,
          max_tokens: info.max_tokens,
          chunks: (info.chunks ?? 0) + (text.info.chunks ?? 1),
        };
      } else {
        vectors.push(await this.itemVector(part.itemId as string));
      }
    }
    return {
      vector: weightedUnitSum(
        vectors,
        parts.map((p) => p.weight),
      ),
      info: { ...info, parts: parts.length },
    };
  }

  private async itemVector(id: string): Promise<Float32Array> {
    const item = await this.ctx.store.getById(id);
    const row =
      item === undefined
        ? undefined
        : (await this.ctx.store.embeddingsOf(this.ctx.modelId, [item.label]))[0];
    if (row === undefined) {
      throw new AppError(
        "not_found",
        `compose: no indexed item with id "${id}"; GET /items lists the stored ids.`,
      );
    }
    // Stored image embeddings are unit vectors already; normalise anyway (older stores).
    return weightedUnitSum([row.vector], [1]);
  }

  /**
   * Ranks `offset + k` items — by the store (its ANN index, or an exact scan) in vector mode, by
   * the full-text index or both fused in keyword and hybrid mode (./hybrid.ts, which needs the
   * query `text`) — filtered, and returns ranks offset+1..offset+k whose cosine score is at
   * least `minScore`.
   */
  async rank(vector: Float32Array, options: SearchOptions, text?: string): Promise<Hit[]> {
    const offset = options.offset ?? 0;
    const depth = offset + options.k;
    const exact = options.exact === true;
    const filter = options.filter === undefined ? {} : { filter: options.filter };
    const mode = options.mode ?? "vector";
    let ranked: Hit[];
    if (mode === "vector") {
      const found = await this.ctx.store.nearest(
        { vector, k: depth, exact, ...filter },
        this.ctx.modelId,
      );
      ranked = found.map(({ item, score, match }, i) => ({
        id: item.id,
        score,
        rank: i + 1,
        metadata: item.metadata,
        ...hitMatch(match),
      }));
    } else {
      if (text === undefined) {
        throw new AppError("validation_failed", `mode ${mode} needs a query text.`);
      }
      ranked = await rankedSearch(this.ctx.store, this.ctx.modelId, {
        mode,
        vector,
        text,
        fields: options.textFields ?? this.textFields,
        k: depth,
        candidates: this.ctx.settings.hybridCandidates,
        exact,
        ...filter,
      });
    }
    const minScore = options.minScore ?? Number.NEGATIVE_INFINITY;
    return ranked.slice(offset).filter((hit) => hit.score >= minScore);
  }
}
