/**
 * The search side of the library, for the live model: text, composed, image and vector
 * queries (checked by ./search.ts, embedded by ./query-embedder.ts, ranked by the store) and
 * near-duplicate groups (./duplicates.ts). The library (../library.ts) keeps the state: it
 * tracks each call, repeats it across a model switch, and says when the store can be used.
 */
import { AppError } from "../../core/errors.ts";
import type { Settings } from "../../core/settings.ts";
import type {
  Box,
  ComposePart,
  DuplicateGroupPage,
  Hit,
  IndexResult,
  SearchOptions,
  TextOptions,
  TextSearchResult,
} from "../../core/types.ts";
import type { Embedder } from "../../encode/types.ts";
import type { PreprocessPool } from "../../preprocess/pool.ts";
import type { ItemStore } from "../../store/types.ts";
import type { Generation } from "../models/generation.ts";
import type { EmbedQueue } from "../queue.ts";
import { DuplicateGroups, flagNearDuplicates } from "./duplicates.ts";
import { QueryEmbedder } from "./query-embedder.ts";
import { type QueryVector, Search } from "./search.ts";

/** What search needs of the library around it. */
export interface SearchDeps {
  settings: Settings;
  store: ItemStore;
  pool: PreprocessPool;
  /** Vision-tower work (image queries go before ingest and reindex chunks). */
  queue: EmbedQueue;
  /** The live model. */
  live: () => Generation;
  /** Throws when the library cannot take work now (closed, wrong model, no database). */
  assertUsable: () => void;
  reportBackground: (error: unknown) => void;
}

export class SearchService {
  private readonly queries: QueryEmbedder;
  private readonly duplicateGroups: DuplicateGroups;
  /** Search for the live model (rebuilt when another model becomes live). */
  private search: Search;

  constructor(private readonly deps: SearchDeps) {
    const { settings, store } = deps;
    this.queries = new QueryEmbedder(settings, deps.pool, deps.queue, deps.live);
    this.duplicateGroups = new DuplicateGroups(
      store,
      Math.max(1, settings.duplicateNeighbours),
      settings.minDuplicateThreshold,
    );
    this.search = this.searchFor(deps.live().embedder);
  }

  private searchFor(embedder: Embedder): Search {
    return new Search({
      settings: this.deps.settings,
      store: this.deps.store,
      modelId: embedder.modelId,
      contextLength: embedder.config.context_length,
      tokenize: (text) => embedder.tokenize(text),
      embedTexts: (queries) => this.queries.embedTexts(embedder, queries),
    });
  }

  private get modelId(): string {
    return this.deps.live().embedder.modelId;
  }

  /** `embedder` became live: queries are embedded and searched with it from now on. */
  adopt(embedder: Embedder): void {
    this.search = this.searchFor(embedder);
    this.queries.clear();
  }

  /** Text queries waiting or running. */
  get pending(): number {
    return this.queries.pending;
  }

  /** Items were added or deleted: near-duplicate groups are found again. */
  itemsChanged(): void {
    this.duplicateGroups.invalidate();
  }

  /** Flags the new items of an ingest that are near-duplicates of stored ones. */
  flagNearDuplicates(results: IndexResult[]): Promise<void> {
    return flagNearDuplicates(
      this.deps.store,
      this.modelId,
      results,
      this.deps.settings.nearDuplicateThreshold,
      this.deps.reportBackground,
    );
  }

  async duplicates(options: {
    threshold: number;
    cursor: string | null;
    limit: number;
  }): Promise<DuplicateGroupPage> {
    this.deps.assertUsable();
    const limit = Math.min(Math.max(1, Math.trunc(options.limit) || 1), this.deps.settings.maxK);
    return this.duplicateGroups.page(this.modelId, { ...options, limit });
  }

  async text(query: string, options: SearchOptions & TextOptions): Promise<TextSearchResult> {
    this.deps.assertUsable();
    this.search.checkText(query);
    this.search.checkOptions(options);
    const embedded = await this.search.embedText(query, options);
    this.deps.assertUsable();
    return {
      hits: await this.search.rank(embedded.vector, options, query),
      query: embedded.info,
    };
  }

  async compose(
    parts: readonly ComposePart[],
    options: SearchOptions & TextOptions,
  ): Promise<TextSearchResult> {
    this.deps.assertUsable();
    this.search.checkCompose(parts, options);
    this.search.checkOptions(options);
    const embedded = await this.search.embedCompose(parts, options);
    this.deps.assertUsable();
    return { hits: await this.search.rank(embedded.vector, options), query: embedded.info };
  }

  /** Items like an image, or like the region `box` of it. */
  async image(bytes: Buffer, options: SearchOptions, box?: Box): Promise<{ hits: Hit[] }> {
    this.deps.assertUsable();
    this.search.checkOptions(options);
    const vector = await this.queries.embedImage(bytes, box);
    this.deps.assertUsable();
    return { hits: await this.search.rank(vector, options) };
  }

  /**
   * The unit vector of a text or a composed query, checked and embedded as `text` and
   * `compose` do (POST /explain's query).
   */
  async queryVector(
    query: { text?: string; compose?: readonly ComposePart[] },
    options: TextOptions,
  ): Promise<QueryVector> {
    this.deps.assertUsable();
    if ((query.text === undefined) === (query.compose === undefined)) {
      throw new AppError(
        "validation_failed",
        "the query needs exactly one of query (a text) and compose (weighted texts and items)",
      );
    }
    if (query.compose !== undefined) {
      this.search.checkCompose(query.compose, { k: 1 });
      return this.search.embedCompose(query.compose, options);
    }
    this.search.checkText(query.text);
    return this.search.embedText(query.text as string, options);
  }

  /** Nearest items to an embedding, by the store's ANN index or an exact scan, filtered. */
  vector(vector: Float32Array, options: SearchOptions): Promise<Hit[]> {
    return this.search.rank(vector, options);
  }
}
