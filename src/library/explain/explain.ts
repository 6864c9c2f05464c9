/**
 * POST /explain's computation: why an item matches a query, as a heat map of the query's
 * cosine to each patch of the item's image (the vision tower's dense output), and its PNG
 * overlay. On demand, cached by model, item content and query, and bounded like a query: the
 * query by search's limits, the decode by maxImagePixels and the decode gate, the tower run by
 * the embedding queue, the PNG by explainOverlaySide.
 */
import { AppError } from "../../core/errors.ts";
import type { Settings } from "../../core/settings.ts";
import type { ComposePart, QueryInfo, TextOptions } from "../../core/types.ts";
import { denseOutputMissing } from "../../encode/dense.ts";
import type { DenseKind } from "../../model/format.ts";
import type { DecodeGate } from "../../preprocess/decode-gate.ts";
import type { PreprocessPool } from "../../preprocess/pool.ts";
import type { ItemStore, StoredItem } from "../../store/types.ts";
import { LruCache } from "../../util/lru-cache.ts";
import { cosine } from "../../vector-index/exact.ts";
import type { Generation } from "../models/generation.ts";
import type { EmbedQueue } from "../queue.ts";
import { type QueryVector, weightedUnitSum } from "../search/search.ts";
import {
  contrasted,
  DEFAULT_HEAT_MAP,
  type HeatMap,
  heatMap,
  NEUTRAL_CAPTION,
} from "./heat-map.ts";
import { overlayPng } from "./overlay.ts";

/** The query of an explanation: a text or a composition, as search takes them. */
export interface ExplainQuery {
  text?: string;
  compose?: readonly ComposePart[];
  options: TextOptions;
}

export interface Explanation extends HeatMap {
  itemId: string;
  modelId: string;
  kind: DenseKind;
  /** The query's cosine to the item's stored embedding (its search score). */
  score: number;
  /** The part of the original the grid covers (the model's centred square crop). */
  crop: { x: number; y: number; width: number; height: number };
  image: { width: number; height: number };
  query: QueryInfo;
}

export interface ExplainDeps {
  settings: Settings;
  store: ItemStore;
  pool: PreprocessPool;
  gate: DecodeGate;
  queue: EmbedQueue;
  live: () => Generation;
  readBytes: (item: StoredItem) => Promise<Buffer>;
  /** The query's unit vector, checked and embedded as search does. */
  queryVector: (query: ExplainQuery) => Promise<QueryVector>;
}

const IMAGE_LIMIT = (settings: Settings) => ({
  maxPixels: settings.maxImagePixels,
  setting: "maxImagePixels, LONGCLIP_MAX_IMAGE_PIXELS",
});

function itemNotFound(id: string): AppError {
  return new AppError("not_found", `No item with id "${id}"; GET /items lists the stored ids.`);
}

/** The centred square a CLIP preprocessing keeps of a width×height image. */
export function centredSquare(width: number, height: number): Explanation["crop"] {
  const side = Math.min(width, height);
  return { x: (width - side) / 2, y: (height - side) / 2, width: side, height: side };
}

export class Explainer {
  private readonly cache: LruCache<string, Explanation>;

  constructor(private readonly deps: ExplainDeps) {
    this.cache = new LruCache(deps.settings.explainCacheSize);
  }

  /** Forgets the cached heat maps (the live model changed). */
  clear(): void {
    this.cache.clear();
  }

  async explain(itemId: string, query: ExplainQuery): Promise<Explanation> {
    return (await this.compute(itemId, query)).explanation;
  }

  /** The heat map drawn over the item's image, as a PNG. */
  async overlay(itemId: string, query: ExplainQuery): Promise<Buffer> {
    const { settings, gate } = this.deps;
    const { explanation, item, bytes } = await this.compute(itemId, query);
    const original = bytes ?? (await this.deps.readBytes(item));
    const release = await gate.admit(original, IMAGE_LIMIT(settings));
    try {
      return await overlayPng({
        bytes: original,
        map: explanation,
        crop: explanation.crop,
        image: explanation.image,
        side: settings.explainOverlaySide,
        maxImagePixels: settings.maxImagePixels,
      });
    } finally {
      release();
    }
  }

  private async compute(
    itemId: string,
    query: ExplainQuery,
  ): Promise<{ explanation: Explanation; item: StoredItem; bytes?: Buffer }> {
    const { store, live } = this.deps;
    const { embedder } = live();
    const dense = embedder.config.vision.dense;
    if (dense === undefined || embedder.embedPatches === undefined) {
      throw denseOutputMissing(embedder.modelId);
    }
    const item = await store.getById(itemId);
    if (item === undefined) throw itemNotFound(itemId);
    const key = JSON.stringify([
      embedder.modelId,
      itemId,
      item.sha256,
      query.text ?? null,
      query.compose ?? null,
      query.options.truncate ?? true,
      query.options.longQuery ?? "truncate",
    ]);
    const cached = this.cache.get(key);
    if (cached !== undefined) return { explanation: cached, item };
    // The query first: a bad one is refused before the image is read or decoded.
    const { vector, info } = await this.deps.queryVector(query);
    const stored = (await store.embeddingsOf(embedder.modelId, [item.label]))[0];
    if (stored === undefined) throw itemNotFound(itemId);
    const bytes = await this.deps.readBytes(item);
    const { width, height, patches } = await this.patchesOf(bytes);
    const image = weightedUnitSum([stored.vector], [1]);
    // The neutral caption's embedding comes from the query cache after its first use.
    const heatQuery = DEFAULT_HEAT_MAP.contrast
      ? contrasted(
          vector,
          (await this.deps.queryVector({ text: NEUTRAL_CAPTION, options: {} })).vector,
        )
      : vector;
    const map = heatMap(patches, heatQuery, image, DEFAULT_HEAT_MAP);
    const explanation: Explanation = {
      ...map,
      itemId,
      modelId: embedder.modelId,
      kind: patches.kind,
      score: cosine(vector, image),
      crop: centredSquare(width, height),
      image: { width, height },
      query: info,
    };
    this.cache.set(key, explanation);
    return { explanation, item, bytes };
  }

  private async patchesOf(bytes: Buffer) {
    const { pool, queue, live, settings } = this.deps;
    const generation = live();
    // Admitted before decoding: a full queue refuses the request before it costs any memory.
    const reservation = queue.reserve("query", 1);
    try {
      const image = await pool.run(bytes, generation.options, IMAGE_LIMIT(settings));
      const embedPatches = generation.embedder.embedPatches;
      if (embedPatches === undefined) throw denseOutputMissing(generation.embedder.modelId);
      const patches = await queue.run("query", 1, () =>
        embedPatches.call(generation.embedder, image.pixels),
      );
      return { ...image, patches };
    } finally {
      reservation.release();
    }
  }
}
