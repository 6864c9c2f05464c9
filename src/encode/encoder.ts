/**
 * The encode stage: a model directory's two ONNX towers behind the `Embedder` interface.
 * Texts are tokenized, batched and padded to the longest row of each batch; images arrive as
 * preprocessed CHW pixels. Every output row is L2-normalised.
 */

import { AppError, type ErrorCode, isAppError } from "../core/errors.ts";
import type { Settings } from "../core/settings.ts";
import type { ModelConfig } from "../model/format.ts";
import { modelFilePath, readModelConfig } from "../model/read.ts";
import { preprocessImage } from "../preprocess/index.ts";
import { preprocessOptions } from "../preprocess/options.ts";
import { tokenizerFromModelDir } from "../tokenize/index.ts";
import type { TextTokenizer, TokenizedText } from "../tokenize/types.ts";
import { denseOutputMissing } from "./dense.ts";
import { type EngineLogger, type ResolvedDevice, stderrLogger } from "./session.ts";
import { checkConvertedTowers } from "./tower-check.ts";
import {
  openJoined,
  openTowers,
  type TensorData,
  type TowerName,
  type Towers,
  type TowersSpec,
} from "./towers.ts";
import type { Embedder, EncoderStats, PatchEmbeddings, TextEmbedding } from "./types.ts";
import { WorkerTowers } from "./worker-towers.ts";

export type EncoderSettings = Pick<
  Settings,
  "device" | "threads" | "imageBatchSize" | "textBatchSize" | "maxImageBytes" | "maxImagePixels"
> &
  Partial<Pick<Settings, "preprocess" | "nativeJpeg">>;

export interface EncoderOptions {
  /** Where "device auto" reports its choice; stderr by default. */
  logger?: EngineLogger;
  /** Run ONNX Runtime in worker threads, one per tower (default), or on the calling thread. */
  inWorker?: boolean;
  /**
   * Both towers in one worker, so a query waits behind the image batch in progress: the layout
   * before each tower had its own worker, kept so bench:perf can measure what the split gains.
   */
  sharedWorker?: boolean;
}

/** One entry of `embedImageBytes`: an embedding, or the error of that image alone. */
export type ImageBytesResult =
  | { ok: true; embedding: Float32Array; width: number; height: number; format: string }
  | { ok: false; error: AppError };

/** Divides `data[offset .. offset+dims)` by its L2 norm into a new array (F.normalize's eps). */
export function l2NormalizedRow(data: Float32Array, offset: number, dims: number): Float32Array {
  let sum = 0;
  for (let i = 0; i < dims; i++) {
    const v = data[offset + i] as number;
    sum += v * v;
  }
  const scale = 1 / Math.max(Math.sqrt(sum), 1e-12);
  const out = new Float32Array(dims);
  for (let i = 0; i < dims; i++) out[i] = (data[offset + i] as number) * scale;
  return out;
}

/**
 * Packs token id rows into one zero-padded int64 [N, L] tensor, L = the longest row. The text
 * tower pools at each row's end token under a causal mask, so the padding never changes a row.
 */
export function padTokenBatch(rows: readonly Int32Array[]): { data: BigInt64Array; width: number } {
  let width = 1;
  for (const row of rows) width = Math.max(width, row.length);
  const data = new BigInt64Array(rows.length * width);
  rows.forEach((row, r) => {
    for (let i = 0; i < row.length; i++) data[r * width + i] = BigInt(row[i] as number);
  });
  return { data, width };
}

function asAppError(error: unknown, code: ErrorCode): AppError {
  if (isAppError(error)) return error;
  return new AppError(code, (error as Error)?.message ?? String(error));
}

export class Encoder implements Embedder {
  readonly modelId: string;
  readonly dims: number;
  #imagesEncoded = 0;
  #textsEncoded = 0;

  private constructor(
    readonly config: ModelConfig,
    readonly modelDir: string,
    readonly tokenizer: TextTokenizer,
    private readonly towers: Towers,
    private readonly settings: EncoderSettings,
  ) {
    this.modelId = config.model_id;
    this.dims = config.embed_dim;
  }

  /**
   * Loads config.json, the tokenizer and both ONNX sessions on `settings.device`, by default each
   * tower in its own worker thread (see worker-towers.ts).
   */
  static async load(
    modelDir: string,
    settings: EncoderSettings,
    options: EncoderOptions = {},
  ): Promise<Encoder> {
    const config = readModelConfig(modelDir);
    // Both towers get settings.threads (0: ONNX Runtime's default, one per physical core). Giving
    // the text tower half was measured on this 2-core host (B16, a query under batches of 8, five
    // paired runs of 10-12 queries): no consistent gain under ingest (medians 77-134 ms with 1
    // text thread, 53-163 ms with 2), the same ingest rate, and a slower query alone (36 against
    // 20 ms when the machine was quiet).
    const tower = (name: TowerName) => ({
      ...config[name],
      path: modelFilePath(modelDir, config[name].file),
      threads: settings.threads,
    });
    const spec: TowersSpec = {
      device: settings.device,
      towers: { vision: tower("vision"), text: tower("text") },
    };
    const logger = options.logger ?? stderrLogger;
    const inWorker = (towers: TowersSpec["towers"]) =>
      WorkerTowers.open({ device: spec.device, towers }, logger);
    // The workers load the ONNX files while this thread builds the tokenizer.
    const opening =
      options.inWorker === false
        ? openTowers(spec, logger)
        : options.sharedWorker === true
          ? inWorker(spec.towers)
          : openJoined([
              inWorker({ vision: spec.towers.vision }),
              inWorker({ text: spec.towers.text }),
            ]);
    let tokenizer: TextTokenizer;
    try {
      tokenizer = tokenizerFromModelDir(modelDir);
      if (tokenizer.contextLength !== config.context_length) {
        throw new AppError(
          "model_invalid",
          `The tokenizer of ${modelDir} uses context length ${tokenizer.contextLength}, config.json says ${config.context_length}; re-export the model.`,
        );
      }
    } catch (error) {
      await opening.then((towers) => towers.close()).catch(() => undefined);
      throw error;
    }
    const towers = await opening;
    const { vision, text } = towers.devices;
    if (vision !== text) {
      logger.warn(
        `device ${settings.device}: the vision tower runs on ${vision}, the text tower on ${text}`,
      );
    }
    try {
      await checkConvertedTowers(towers, config, modelDir, logger);
    } catch (error) {
      await towers.close().catch(() => undefined);
      throw error;
    }
    return new Encoder(config, modelDir, tokenizer, towers, settings);
  }

  /** Where the vision tower, which does most of the work, runs. */
  get device(): ResolvedDevice {
    return this.towers.devices.vision ?? "cpu";
  }

  tokenize(text: string): TokenizedText {
    return this.tokenizer.encode(text);
  }

  async embedTexts(texts: readonly string[]): Promise<TextEmbedding[]> {
    return this.embedTokenized(texts.map((text) => this.tokenizer.encode(text)));
  }

  async embedTokenized(tokenized: readonly TokenizedText[]): Promise<TextEmbedding[]> {
    // Batching rows of similar length keeps the padding (wasted compute) small; the order of
    // the results is restored below.
    const order = tokenized
      .map((_, i) => i)
      .sort((a, b) => {
        return (
          (tokenized[a] as TokenizedText).ids.length - (tokenized[b] as TokenizedText).ids.length
        );
      });
    const batchSize = Math.max(1, this.settings.textBatchSize);
    const results = new Array<TextEmbedding>(tokenized.length);
    for (let start = 0; start < order.length; start += batchSize) {
      const indices = order.slice(start, start + batchSize);
      const rows = indices.map((i) => (tokenized[i] as TokenizedText).ids);
      const embeddings = await this.runText(rows);
      indices.forEach((index, r) => {
        const tok = tokenized[index] as TokenizedText;
        results[index] = {
          embedding: embeddings[r] as Float32Array,
          tokens: tok.tokens,
          truncated: tok.truncated,
        };
      });
    }
    this.#textsEncoded += tokenized.length;
    return results;
  }

  private checkPixels(pixels: readonly Float32Array[]): void {
    const r = this.config.image_resolution;
    const size = 3 * r * r;
    pixels.forEach((p, i) => {
      if (p.length !== size) {
        throw new AppError(
          "invalid_pixels",
          `Image ${i} has ${p.length} pixel values; this model needs 3×${r}×${r} = ${size} (preprocess it with the model's resolution).`,
        );
      }
    });
  }

  async embedPixels(pixels: readonly Float32Array[]): Promise<Float32Array[]> {
    const r = this.config.image_resolution;
    const size = 3 * r * r;
    this.checkPixels(pixels);
    const batchSize = Math.max(1, this.settings.imageBatchSize);
    const out: Float32Array[] = [];
    for (let start = 0; start < pixels.length; start += batchSize) {
      const batch = pixels.slice(start, start + batchSize);
      const data = new Float32Array(batch.length * size);
      batch.forEach((p, i) => {
        data.set(p, i * size);
      });
      out.push(...(await this.runVision(data, batch.length)));
    }
    this.#imagesEncoded += pixels.length;
    return out;
  }

  async embedPatches(pixels: Float32Array): Promise<PatchEmbeddings> {
    const dense = this.config.vision.dense;
    if (dense === undefined) throw denseOutputMissing(this.modelId);
    const r = this.config.image_resolution;
    this.checkPixels([pixels]);
    const [rows, columns] = dense.grid;
    const patches = rows * columns;
    const output = await this.towers.run(
      "vision",
      { type: "float32", data: pixels, dims: [1, 3, r, r] },
      dense.output,
    );
    const dims = this.dims;
    if (output.dims.join() !== [1, patches, dims].join()) {
      throw new AppError(
        "model_invalid",
        `The vision tower of ${this.modelDir} returned "${dense.output}" of shape [${output.dims.join(", ")}]; config.json promises [1, ${patches}, ${dims}]. Re-export the model.`,
      );
    }
    const normalised = new Float32Array(patches * dims);
    for (let p = 0; p < patches; p++) {
      normalised.set(l2NormalizedRow(output.data as Float32Array, p * dims, dims), p * dims);
    }
    return { kind: dense.kind, rows, columns, patches: normalised };
  }

  /**
   * Decodes and preprocesses each encoded image, then embeds the ones that worked. A bad image
   * yields its own error entry and never fails the others.
   */
  async embedImageBytes(buffers: readonly Buffer[]): Promise<ImageBytesResult[]> {
    const options = preprocessOptions(this.config, this.settings);
    const results = new Array<ImageBytesResult>(buffers.length);
    // Decode one batch at a time so memory stays bounded by the batch size.
    const batchSize = Math.max(1, this.settings.imageBatchSize);
    for (let start = 0; start < buffers.length; start += batchSize) {
      const chunk = buffers.slice(start, start + batchSize);
      const decoded = await Promise.allSettled(chunk.map((b) => preprocessImage(b, options)));
      const good: number[] = [];
      decoded.forEach((d, i) => {
        if (d.status === "fulfilled") good.push(i);
        else results[start + i] = { ok: false, error: asAppError(d.reason, "image_corrupt") };
      });
      const embeddings = await this.embedPixels(
        good.map(
          (i) => (decoded[i] as PromiseFulfilledResult<{ pixels: Float32Array }>).value.pixels,
        ),
      );
      good.forEach((i, k) => {
        const image = (
          decoded[i] as PromiseFulfilledResult<Awaited<ReturnType<typeof preprocessImage>>>
        ).value;
        results[start + i] = {
          ok: true,
          embedding: embeddings[k] as Float32Array,
          width: image.width,
          height: image.height,
          format: image.format,
        };
      });
    }
    return results;
  }

  /** Unnormalised text tower output for id rows, as [N][D] (for conformance checks). */
  rawText(rows: readonly Int32Array[]): Promise<Float32Array[]> {
    return this.runText(rows, false);
  }

  /** Unnormalised vision tower output for one [N,3,R,R] batch. */
  rawVision(data: Float32Array, n: number): Promise<Float32Array[]> {
    return this.runVision(data, n, false);
  }

  stats(): EncoderStats {
    return {
      modelId: this.modelId,
      dims: this.dims,
      device: this.device,
      requestedDevice: this.settings.device,
      threads: this.settings.threads,
      imageBatchSize: this.settings.imageBatchSize,
      imagesEncoded: this.#imagesEncoded,
      textsEncoded: this.#textsEncoded,
    };
  }

  async close(): Promise<void> {
    await this.towers.close();
  }

  private runText(rows: readonly Int32Array[], normalise = true): Promise<Float32Array[]> {
    const { data, width } = padTokenBatch(rows);
    return this.runTower("text", { type: "int64", data, dims: [rows.length, width] }, normalise);
  }

  private runVision(data: Float32Array, n: number, normalise = true): Promise<Float32Array[]> {
    const r = this.config.image_resolution;
    return this.runTower("vision", { type: "float32", data, dims: [n, 3, r, r] }, normalise);
  }

  private async runTower(
    tower: TowerName,
    input: TensorData,
    normalise: boolean,
  ): Promise<Float32Array[]> {
    const n = input.dims[0] ?? 0;
    if (n === 0) return [];
    const output = await this.towers.run(tower, input);
    const dims = this.dims;
    if (
      output.type !== "float32" ||
      output.dims.length !== 2 ||
      output.dims[0] !== n ||
      output.dims[1] !== dims
    ) {
      throw new AppError(
        "model_invalid",
        `The ${tower} tower of ${this.modelDir} returned shape [${output.dims.join(", ")}] (${output.type}); config.json promises float32 [${n}, ${dims}]. Re-export the model.`,
      );
    }
    const rows: Float32Array[] = [];
    for (let i = 0; i < n; i++) {
      rows.push(
        normalise
          ? l2NormalizedRow(output.data, i * dims, dims)
          : output.data.slice(i * dims, (i + 1) * dims),
      );
    }
    return rows;
  }
}
