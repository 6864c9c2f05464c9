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
import type { CropRequest, RegionPixels } from "../../preprocess/regions.ts";
import type { ItemStore, NewPart } from "../../store/types.ts";
import type { Generation } from "../models/generation.ts";
import type { EmbedQueue } from "../queue.ts";
import { Batch } from "./batch.ts";
import { Claims, type Job, type Lookup } from "./claims.ts";
import { Committer, type Decoded, type EmbeddedChunk } from "./commit.ts";
import { InputReader } from "./inputs.ts";

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

/** A decoded input, with its pixels for the encoder. */
interface Prepared extends Decoded {
  /** The models when the chunk was decoded (pixels are for the live one's preprocessing). */
  generations: { live: Generation; next: Generation | undefined };
  pixels: Float32Array;
  /** With --regions auto, a large image's crops (src/preprocess/regions.ts). */
  regions?: RegionPixels[];
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
            const image = await this.pool.run(
              job.bytes,
              generations.live.options,
              undefined,
              this.crops,
            );
            if (job.source === "upload") await this.committer.stageOriginal(job);
            return image;
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
          const image = outcome.value;
          prepared.push({
            ...job,
            generations,
            pixels: image.pixels,
            width: image.width,
            height: image.height,
            contentType: CONTENT_TYPES[image.format] ?? `image/${image.format}`,
            ...(image.regions !== undefined ? { regions: image.regions } : {}),
          });
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

  /**
   * A chunk's inputs for the next model: the live one's when their preprocessing agrees, else
   * decoded again (the regions at the same boxes).
   */
  private async pixelsForNext(
    prepared: readonly Prepared[],
    live: Generation,
    next: Generation,
  ): Promise<readonly { pixels: Float32Array; regions?: RegionPixels[] }[]> {
    if (isDeepStrictEqual(live.options, next.options)) return prepared;
    return Promise.all(
      prepared.map((p) =>
        this.pool.run(
          p.bytes,
          next.options,
          undefined,
          p.regions === undefined
            ? undefined
            : { kind: "boxes", boxes: p.regions.map((r) => r.box) },
        ),
      ),
    );
  }

  /**
   * Embeds each input's whole image and regions in the chunk's encoder run: the items' vectors,
   * in order, and each item's regions' (none for an image without).
   */
  private async embedWithRegions(
    generation: Generation,
    inputs: readonly { pixels: Float32Array; regions?: RegionPixels[] }[],
  ): Promise<{ vectors: Float32Array[]; regions: Float32Array[][] }> {
    const crops = inputs.flatMap((input) => (input.regions ?? []).map((r) => r.pixels));
    const all = [...inputs.map((input) => input.pixels), ...crops];
    const vectors = await this.queue.run("ingest", all.length, () =>
      generation.embedder.embedPixels(all),
    );
    let at = inputs.length;
    const regions = inputs.map((input) => {
      at += input.regions?.length ?? 0;
      return vectors.slice(at - (input.regions?.length ?? 0), at);
    });
    return { vectors: vectors.slice(0, inputs.length), regions };
  }

  /** Embeds one chunk (and by the next model during a reindex); on failure its jobs fail. */
  private async embedChunk(batch: Batch, prepared: Prepared[]): Promise<EmbeddedChunk | undefined> {
    const first = prepared[0];
    if (first === undefined) return undefined;
    try {
      const { live, next } = first.generations;
      const { vectors, regions } = await this.embedWithRegions(live, prepared);
      const parts = prepared.map((p, k) =>
        p.regions?.map(
          (region, i): NewPart => ({
            kind: "region",
            box: region.box,
            vector: regions[k]?.[i] as Float32Array,
          }),
        ),
      );
      const chunk: EmbeddedChunk = { modelId: live.embedder.modelId, vectors, parts };
      if (next === undefined) return chunk;
      const staged = await this.embedWithRegions(
        next,
        await this.pixelsForNext(prepared, live, next),
      );
      return {
        ...chunk,
        staged: {
          modelId: next.embedder.modelId,
          vectors: staged.vectors,
          parts: staged.regions,
        },
      };
    } catch (error) {
      batch.failAll(prepared, error);
      return undefined;
    }
  }
}
