/**
 * POST /explain's computation: why an item matches a query, as a heat map of the query's
 * cosine to each patch of the item's image (the vision tower's dense output), read at a zoom
 * (./zoom.ts: the whole image and overlapping zoomed windows, fused on a finer grid), and its
 * PNG overlay. On demand, cached by model, item content, query and zoom, and bounded like a
 * query: the query by search's limits, the decode by maxImagePixels and the decode gate, the
 * tower runs (1 + (2·zoom − 1)²) by explainZoom and the embedding queue, the PNG by
 * explainOverlaySide.
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
import { fuseViews } from "./zoom.ts";

/** The query of an explanation: a text or a composition, as search takes them. */
export interface ExplainQuery {
  text?: string;
  compose?: readonly ComposePart[];
  options: TextOptions;
  /** 1 reads the whole image only; n ≥ 2 adds the zoomed windows (default explainZoom). */
  zoom?: number;
  /** A video item's frame, in seconds (default: its stored frame the query matches best). */
  t?: number;
}

export interface Explanation extends HeatMap {
  itemId: string;
  modelId: string;
  kind: DenseKind;
  /** The zoom the map was read at (its grid is the model's patch grid times it). */
  zoom: number;
  /**
   * The query's cosine to the item's stored embedding (its search score); for a video, to its
   * stored frame nearest `t`.
   */
  score: number;
  /** A video item's frame the map is of, in seconds. */
  t?: number;
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
  /** A video item's frame at `t` seconds, as an image file. */
  readFrame: (item: StoredItem, t: number) => Promise<Buffer>;
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
    const original =
      bytes ??
      (explanation.t !== undefined
        ? await this.deps.readFrame(item, explanation.t)
        : await this.deps.readBytes(item));
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
    const zoom = this.zoomOf(query);
    const item = await store.getById(itemId);
    if (item === undefined) throw itemNotFound(itemId);
    const video = item.contentType.startsWith("video/");
    if (!video && query.t !== undefined) {
      throw new AppError(
        "validation_failed",
        `Item "${itemId}" is an image (${item.contentType}), not a video; leave out t to explain it.`,
      );
    }
    const key = JSON.stringify([
      query.t ?? null,
      zoom,
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
    const frame = video ? await this.frameFor(item, vector, query.t) : undefined;
    const bytes =
      frame === undefined
        ? await this.deps.readBytes(item)
        : await this.deps.readFrame(item, frame.t);
    const { width, height, views } = await this.patchesOf(bytes, zoom);
    const image = weightedUnitSum([frame?.vector ?? stored.vector], [1]);
    // The neutral caption's embedding comes from the query cache after its first use.
    const heatQuery = DEFAULT_HEAT_MAP.contrast
      ? contrasted(
          vector,
          (await this.deps.queryVector({ text: NEUTRAL_CAPTION, options: {} })).vector,
        )
      : vector;
    const crop = centredSquare(width, height);
    const maps = views.map(({ box, patches }) => ({
      box,
      map: heatMap(patches, heatQuery, image, DEFAULT_HEAT_MAP),
    }));
    const whole = maps[0]?.map as HeatMap;
    // An image too small for windows (preprocess/regions.ts zoomBoxes) is read whole.
    const read = maps.length === 1 ? 1 : zoom;
    const map = read === 1 ? whole : fuseViews(maps, crop, whole.rows * read, whole.columns * read);
    const explanation: Explanation = {
      ...map,
      itemId,
      modelId: embedder.modelId,
      kind: dense.kind,
      zoom: read,
      score: cosine(vector, image),
      crop,
      image: { width, height },
      query: info,
      ...(frame !== undefined ? { t: frame.t } : {}),
    };
    this.cache.set(key, explanation);
    return { explanation, item, bytes };
  }

  /**
   * A video item's frame to explain: at `t` when asked (with the embedding of the stored frame
   * nearest it), else the stored frame the query matches best (at 0 s with the item's own
   * embedding when it has no stored frames).
   */
  private async frameFor(
    item: StoredItem,
    query: Float32Array,
    t: number | undefined,
  ): Promise<{ t: number; vector?: Float32Array }> {
    const { store, live } = this.deps;
    const parts = (await store.partsOf(live().embedder.modelId, [item.label])).get(item.label);
    const frames = (parts ?? []).flatMap((p) => (p.kind === "frame" ? [p] : []));
    let chosen: (typeof frames)[number] | undefined;
    for (const frame of frames) {
      const better =
        chosen === undefined ||
        (t === undefined
          ? cosine(query, frame.vector) > cosine(query, chosen.vector)
          : Math.abs(frame.t - t) < Math.abs(chosen.t - t));
      if (better) chosen = frame;
    }
    return { t: t ?? chosen?.t ?? 0, ...(chosen !== undefined ? { vector: chosen.vector } : {}) };
  }

  /** The request's zoom, or explainZoom; 400 zoom_too_large above explainZoom. */
  private zoomOf(query: ExplainQuery): number {
    const largest = this.deps.settings.explainZoom;
    const zoom = query.zoom ?? largest;
    if (!Number.isSafeInteger(zoom) || zoom < 1 || zoom > largest) {
      throw new AppError(
        "zoom_too_large",
        `zoom ${zoom} is not between 1 and this server's largest, ${largest} (explainZoom, LONGCLIP_EXPLAIN_ZOOM); ask for less.`,
        { zoom, largest },
      );
    }
    return zoom;
  }

  /**
   * The patch embeddings of the whole image and, at zoom ≥ 2, of its zoomed windows (decoded
   * once; every view takes a unit of the embedding queue).
   */
  private async patchesOf(bytes: Buffer, zoom: number) {
    const { pool, queue, live, settings } = this.deps;
    const generation = live();
    const count = zoom < 2 ? 1 : 1 + (2 * zoom - 1) ** 2;
    // Admitted before decoding: a full queue refuses the request before it costs any memory.
    const reservation = queue.reserve("query", count);
    try {
      const crops = zoom < 2 ? undefined : ({ kind: "zoom", zoom } as const);
      const image = await pool.run(bytes, generation.options, IMAGE_LIMIT(settings), crops);
      const embedPatches = generation.embedder.embedPatches;
      if (embedPatches === undefined) throw denseOutputMissing(generation.embedder.modelId);
      const inputs = [
        { box: centredSquare(image.width, image.height), pixels: image.pixels },
        ...(image.regions ?? []),
      ];
      const views = await queue.run("query", inputs.length, () =>
        Promise.all(
          inputs.map(async ({ box, pixels }) => ({
            box,
            patches: await embedPatches.call(generation.embedder, pixels),
          })),
        ),
      );
      return { width: image.width, height: image.height, views };
    } finally {
      reservation.release();
    }
  }
}
