/**
 * Ingest: inputs (uploads or files under the media root) → read and validate
 * (./inputs.ts) → content hash and duplicate check, stored and in flight
 * (./claims.ts) → decode and resize in the preprocessing pool, a bounded number of
 * chunks ahead of the encoder → embed → one store transaction per chunk (./commit.ts),
 * overlapping the embedding of the next chunk. This module runs the pipeline: chunks, read-ahead,
 * decoding, embedding (by both models during a blue/green reindex) and the order of the writes.
 * One bad input fails only itself; an input is "indexed" only once its transaction committed.
 */
import { isDeepStrictEqual } from "node:util";
import { errorOf } from "../../core/errors.ts";
import type { Settings } from "../../core/settings.ts";
import type { IndexInput, IndexResult } from "../../core/types.ts";
import type { PreprocessPool } from "../../preprocess/pool.ts";
import type { CropRequest } from "../../preprocess/regions.ts";
import type { PreprocessedImage, PreprocessOptions } from "../../preprocess/types.ts";
import type { ItemStore, NewPart, PartLocator } from "../../store/types.ts";
import type { Generation } from "../models/generation.ts";
import type { EmbedQueue } from "../queue.ts";
import { Batch } from "./batch.ts";
import { Claims, type Job, type Lookup } from "./claims.ts";
import { Committer, type Decoded, type EmbeddedChunk, type ItemVectors } from "./commit.ts";
import { InputReader } from "./inputs.ts";
import {
  type DecodedVideoInput,
  framePixels,
  isVideoInput,
  meanVector,
  VideoDecoder,
} from "./videos.ts";

/** What ingest shares with the rest of the library. */
export interface IngestDeps {
  settings: Settings;
  /** The live model and, during a blue/green reindex, the next one (items get both). */
  generations: () => { live: Generation; next: Generation | undefined };
  store: ItemStore;
  /** The vision tower's queue (ingest runs below queries). */
  queue: EmbedQueue;
  pool: PreprocessPool;
  /** Accept paths anywhere (the local CLI), not only under the media root. */
  allowAnyPath: boolean;
  /** Throws when the library cannot take work now (closed, wrong model, no database). */
  assertUsable: () => void;
}

const CONTENT_TYPES: Record<string, string> = {
  jpeg: "image/jpeg",
  png: "image/png",
  webp: "image/webp",
  gif: "image/gif",
  avif: "image/avif",
  tiff: "image/tiff",
};

/**
 * An input's model inputs: its own (an image's; none for a video, whose frames' mean stands
 * for it) and its parts', each with its locator (a video's frames).
 */
interface ModelInputs {
  own?: Float32Array;
  parts: { locator: PartLocator; pixels: Float32Array }[];
}

/** A decoded input, with its pixels for the encoder. */
interface Prepared extends Decoded {
  /** The models when the chunk was decoded (pixels are for the live one's preprocessing). */
  generations: { live: Generation; next: Generation | undefined };
  inputs: ModelInputs;
  /** A video's frames, kept for the next model's inputs during a reindex. */
  video?: DecodedVideoInput;
}

export class Ingest {
  private readonly settings: Settings;
  private readonly generations: IngestDeps["generations"];
  private readonly queue: EmbedQueue;
  private readonly pool: PreprocessPool;
  private readonly assertUsable: () => void;
  private readonly inputs: InputReader;
  private readonly claims: Claims;
  private readonly committer: Committer;
  private readonly videos: VideoDecoder;
  /** The crops each image is asked for: its regions with --regions auto. */
  private readonly crops: CropRequest | undefined;

  constructor(deps: IngestDeps) {
    this.settings = deps.settings;
    this.generations = deps.generations;
    this.queue = deps.queue;
    this.pool = deps.pool;
    this.assertUsable = deps.assertUsable;
    this.inputs = new InputReader(deps.settings, deps.allowAnyPath);
    this.claims = new Claims(deps.store);
    this.committer = new Committer(deps.store, deps.assertUsable);
    this.videos = new VideoDecoder(deps.settings);
    this.crops =
      deps.settings.regions === "auto"
        ? { kind: "auto", max: deps.settings.maxRegions }
        : undefined;
  }

  /** One result per input, in order; a bad input fails only itself. Durable once "indexed". */
  async run(inputs: readonly IndexInput[]): Promise<IndexResult[]> {
    this.assertUsable();
    if (inputs.length === 0) return [];
    const batch = new Batch(inputs, this.settings.maxBatchItems, this.claims);
    const reservation = this.queue.reserve("ingest", inputs.length);
    // The store write in flight; awaited before returning, whatever happens.
    let writing: Promise<void> = Promise.resolve();
    try {
      const chunkSize = Math.max(1, this.settings.imageBatchSize);
      // Preparation (read, hash, decode) of the next chunks overlaps the embedding of this one.
      const prepare = async (start: number): Promise<Prepared[]> => {
        const chunk = inputs.slice(start, start + chunkSize);
        const loaded = await Promise.allSettled(chunk.map((input) => this.inputs.load(input)));
        const known = await Promise.all(
          loaded.map((outcome, offset) =>
            outcome.status === "fulfilled"
              ? this.claims.lookUp(inputs[start + offset] as IndexInput, outcome.value.bytes)
              : undefined,
          ),
        );
        // Claimed synchronously, after the lookups: two calls never both own the same bytes.
        const claimed = loaded.map((outcome, offset) =>
          outcome.status === "fulfilled"
            ? batch.claim(start + offset, outcome.value, known[offset] as Lookup)
            : undefined,
        );
        const jobs: Job[] = [];
        loaded.forEach((outcome, offset) => {
          const i = start + offset;
          if (outcome.status === "rejected") {
            batch.fail(i, outcome.reason);
            reservation.release(1);
            return;
          }
          const job = claimed[offset];
          if (job === undefined) {
            reservation.release(1);
            return;
          }
          jobs.push(job);
        });
        // The original is made durable here, while the previous chunk is being embedded: it
        // must be on disk before the commit, and an undecodable upload is never stored.
        const generations = this.generations();
        const decoded = await Promise.allSettled(
          jobs.map(async (job) => {
            const media = await this.decode(job, generations);
            if (job.source === "upload") await this.committer.stageOriginal(job);
            return media;
          }),
        );
        const prepared: Prepared[] = [];
        decoded.forEach((outcome, k) => {
          const job = jobs[k] as Job;
          if (outcome.status === "rejected") {
            batch.finish(job, { error: errorOf(outcome.reason) });
            reservation.release(1);
            return;
          }
          prepared.push({ ...job, generations, ...outcome.value });
        });
        return prepared;
      };

      // Bounded read-ahead: enough chunks in preparation to keep every preprocessing worker
      // busy twice over, no more (each prepared image holds its bytes and pixels). A slow
      // encoder or index writer stops the reading, since chunks are taken in order.
      const ahead = Math.max(1, Math.ceil((2 * this.pool.size) / chunkSize));
      const pending: Promise<Prepared[]>[] = [];
      let nextStart = 0;
      const fill = () => {
        while (pending.length < ahead && nextStart < inputs.length) {
          const chunk = prepare(nextStart);
          // A failing chunk must not become an unhandled rejection while others run.
          chunk.catch(() => {});
          pending.push(chunk);
          nextStart += chunkSize;
        }
      };
      fill();
      // The store transaction of chunk n runs while chunk n + 1 is embedded, so a fast
      // (GPU) encoder does not wait for SQLite and the HNSW inserts; one write at a time.
      for (let chunk = pending.shift(); chunk !== undefined; chunk = pending.shift()) {
        const prepared = await chunk;
        fill();
        const embedded = await this.embedChunk(batch, prepared);
        await writing;
        writing = this.committer
          .commit(batch, prepared, embedded)
          .finally(() => reservation.release(prepared.length));
      }
      await writing;
    } finally {
      await writing;
      // Whatever happened, no claim may stay pending: waiters (maybe other calls) need an answer.
      batch.interrupt();
      reservation.release();
    }
    return batch.settled();
  }

  /** An image decoded by the preprocessing pool, or a video's frames, for the live model. */
  private async decode(
    job: Job,
    generations: Prepared["generations"],
  ): Promise<Omit<Prepared, keyof Job | "generations">> {
    const { live, next } = generations;
    if (isVideoInput(job)) {
      // Decoded once, at the larger input of the two models; each resizes from there.
      const resolution = Math.max(live.options.resolution, next?.options.resolution ?? 0);
      const video = await this.videos.decode(job, resolution);
      return {
        inputs: videoInputs(video, live.options),
        video,
        width: video.width,
        height: video.height,
        contentType: video.contentType,
      };
    }
    const image = await this.pool.run(job.bytes, live.options, undefined, this.crops);
    return {
      inputs: imageInputs(image),
      width: image.width,
      height: image.height,
      contentType: CONTENT_TYPES[image.format] ?? `image/${image.format}`,
    };
  }

  /** A chunk's inputs for the next model: the live one's if their preprocessing agrees. */
  private async inputsForNext(
    prepared: readonly Prepared[],
    live: Generation,
    next: Generation,
  ): Promise<ModelInputs[]> {
    if (isDeepStrictEqual(live.options, next.options)) return prepared.map((p) => p.inputs);
    return Promise.all(
      prepared.map(async (p): Promise<ModelInputs> => {
        if (p.video !== undefined) return videoInputs(p.video, next.options);
        // Regions are cut again at the same boxes for the next model's input.
        const boxes = p.inputs.parts.flatMap((part) =>
          part.locator.kind === "region" ? [part.locator.box] : [],
        );
        const crops: CropRequest | undefined =
          boxes.length === 0 ? undefined : { kind: "boxes", boxes };
        return imageInputs(await this.pool.run(p.bytes, next.options, undefined, crops));
      }),
    );
  }

  /**
   * Embeds the chunk's inputs in one encoder run: each item's own vector (a video's: its
   * frames' normalised mean) and its parts' (undefined for an item without).
   */
  private async embedAll(
    generation: Generation,
    inputs: readonly ModelInputs[],
  ): Promise<ItemVectors> {
    const flat = inputs.flatMap((input) => [
      ...(input.own === undefined ? [] : [input.own]),
      ...input.parts.map((part) => part.pixels),
    ]);
    const vectors = await this.queue.run("ingest", flat.length, () =>
      generation.embedder.embedPixels(flat),
    );
    let at = 0;
    const take = () => vectors[at++] as Float32Array;
    const own: Float32Array[] = [];
    const parts: (NewPart[] | undefined)[] = [];
    for (const input of inputs) {
      const whole = input.own === undefined ? undefined : take();
      const mine = input.parts.map((part): NewPart => ({ ...part.locator, vector: take() }));
      own.push(whole ?? meanVector(mine.map((part) => part.vector)));
      parts.push(mine.length > 0 ? mine : undefined);
    }
    return { vectors: own, parts };
  }

  /** Embeds one chunk (and by the next model during a reindex); on failure its jobs fail. */
  private async embedChunk(batch: Batch, prepared: Prepared[]): Promise<EmbeddedChunk | undefined> {
    const first = prepared[0];
    if (first === undefined) return undefined;
    try {
      const { live, next } = first.generations;
      const own = await this.embedAll(
        live,
        prepared.map((p) => p.inputs),
      );
      const chunk: EmbeddedChunk = { modelId: live.embedder.modelId, ...own };
      if (next === undefined) return chunk;
      const staged = await this.embedAll(next, await this.inputsForNext(prepared, live, next));
      return { ...chunk, staged: { modelId: next.embedder.modelId, ...staged } };
    } catch (error) {
      batch.failAll(prepared, error);
      return undefined;
    }
  }
}

/** An image's model input, and its regions' (--regions auto) as parts, each at its box. */
function imageInputs(image: PreprocessedImage): ModelInputs {
  return {
    own: image.pixels,
    parts: (image.regions ?? []).map((region) => ({
      locator: { kind: "region", box: region.box },
      pixels: region.pixels,
    })),
  };
}

/** A video's frames as parts of its item, each at its time, for a model's input. */
function videoInputs(
  video: DecodedVideoInput,
  options: Pick<PreprocessOptions, "resolution" | "mean" | "std">,
): ModelInputs {
  const pixels = framePixels(video.frames, options);
  return {
    parts: video.frames.map((frame, i) => ({
      locator: { kind: "frame", t: frame.t },
      pixels: pixels[i] as Float32Array,
    })),
  };
}
