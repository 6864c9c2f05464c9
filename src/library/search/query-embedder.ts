/**
 * Queries become vectors by the live model: texts through the query cache and the text
 * tower's queue, images through the preprocess pool and the vision tower's queue. Ranking and
 * the checks of a query are ./search.ts's; the library's state checks stay in ../library.ts.
 */
import type { Settings } from "../../core/settings.ts";
import type { Box } from "../../core/types.ts";
import type { Embedder, TextEmbedding } from "../../encode/types.ts";
import type { PreprocessPool } from "../../preprocess/pool.ts";
import type { TokenizedText } from "../../tokenize/types.ts";
import { LruCache } from "../../util/lru-cache.ts";
import type { Generation } from "../models/generation.ts";
import { EmbedQueue } from "../queue.ts";

/** A text to embed, with its tokens when search has them already: a text is tokenized once. */
export interface TextQuery {
  text: string;
  tokenized?: TokenizedText;
}

export class QueryEmbedder {
  /**
   * Text queries. The text tower has its own worker thread (src/encode), so a text query need
   * not wait for the image chunk in progress; it only queues behind other text queries.
   */
  private readonly textQueue: EmbedQueue;
  /** Repeated queries skip the text tower (about 40 ms for LongCLIP-B on 2 cores; a hit ~1 µs). */
  private readonly cache: LruCache<string, TextEmbedding>;

  constructor(
    private readonly settings: Settings,
    private readonly pool: PreprocessPool,
    /** Vision-tower work, shared with ingest and reindex. */
    private readonly queue: EmbedQueue,
    private readonly live: () => Generation,
  ) {
    this.textQueue = new EmbedQueue(settings.maxQueueDepth);
    this.cache = new LruCache(settings.queryCacheSize);
  }

  /** Text queries waiting or running. */
  get pending(): number {
    return this.textQueue.pending;
  }

  /** Forgets the cached queries (the live model changed). */
  clear(): void {
    this.cache.clear();
  }

  /**
   * Unit embeddings of texts by `embedder` (the model search plans and ranks with, whose
   * tokenizer made the queries' tokens): cached ones at once, the rest in one batch on the
   * text queue.
   */
  async embedTexts(embedder: Embedder, queries: readonly TextQuery[]): Promise<TextEmbedding[]> {
    // Keyed by model: a query embedded just before a switch must not serve after it.
    const key = (text: string) => `${embedder.modelId}\n${text}`;
    const out = queries.map((query) => this.cache.get(key(query.text)));
    const missing = new Map<string, TextQuery>();
    queries.forEach((query, i) => {
      if (out[i] === undefined && !missing.has(query.text)) missing.set(query.text, query);
    });
    if (missing.size > 0) {
      const texts = [...missing.keys()];
      const reservation = this.textQueue.reserve("query", texts.length);
      let embedded: TextEmbedding[];
      try {
        embedded = await this.textQueue.run("query", texts.length, () =>
          embedder.embedTokenized(
            [...missing.values()].map((q) => q.tokenized ?? embedder.tokenize(q.text)),
          ),
        );
      } finally {
        reservation.release();
      }
      texts.forEach((text, i) => {
        const result = embedded[i];
        if (result === undefined) throw new Error("the encoder returned no embedding");
        this.cache.set(key(text), result);
      });
      queries.forEach((query, i) => {
        out[i] ??= embedded[texts.indexOf(query.text)];
      });
    }
    return out as TextEmbedding[];
  }

  /**
   * The embedding of an image query (of its `box` when given), decoded under
   * maxQueryImagePixels.
   */
  async embedImage(bytes: Buffer, box?: Box): Promise<Float32Array> {
    const { settings } = this;
    // Admitted before decoding: a full queue refuses the query before it costs any memory.
    const reservation = this.queue.reserve("query", 1);
    let vectors: Float32Array[];
    try {
      const image = await this.pool.run(
        bytes,
        this.live().options,
        {
          maxPixels: Math.min(settings.maxQueryImagePixels, settings.maxImagePixels),
          setting: "maxQueryImagePixels, LONGCLIP_MAX_QUERY_IMAGE_PIXELS",
        },
        box === undefined ? undefined : { kind: "boxes", boxes: [box] },
      );
      const pixels = box === undefined ? image.pixels : image.regions?.[0]?.pixels;
      if (pixels === undefined) throw new Error("the preprocessing pool returned no crop");
      vectors = await this.queue.run("query", 1, () => this.live().embedder.embedPixels([pixels]));
    } finally {
      reservation.release();
    }
    return vectors[0] as Float32Array;
  }
}
