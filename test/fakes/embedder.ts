/**
 * A deterministic stand-in for the encoder (src/encode) in fast unit tests: no ONNX, no model
 * directory. A text's embedding is the normalised sum of one fixed pseudo-random vector per
 * word (texts sharing words are similar), unless a test pins the text to a vector; an image's
 * is a fixed random projection of its preprocessed pixels (the same image, the same vector;
 * different images, different vectors). Tokens are words plus the start and end tokens.
 */
import type { Embedder, EncoderStats, TextEmbedding } from "../../src/encode/types.ts";
import { CLIP_IMAGE_MEAN, CLIP_IMAGE_STD, type ModelConfig } from "../../src/model/format.ts";
import type { TokenizedText } from "../../src/tokenize/types.ts";
import { vectorOf } from "../helpers/store-contract.ts";

/** A string's 32-bit FNV-1a hash. */
function hash(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

export function unit(values: ArrayLike<number>): Float32Array {
  let norm = 0;
  for (let i = 0; i < values.length; i++) norm += (values[i] as number) ** 2;
  norm = Math.sqrt(norm) || 1;
  return Float32Array.from(values, (value) => value / norm);
}

export interface FakeEmbedderOptions {
  modelId?: string;
  dims?: number;
  /** Tokens the "text tower" reads, start and end tokens included. */
  contextLength?: number;
  /** Side of the square image the preprocess stage makes (small keeps it fast). */
  imageResolution?: number;
}

export class FakeEmbedder implements Embedder {
  readonly config: ModelConfig;
  readonly modelId: string;
  readonly dims: number;
  /** Texts a test pinned to a vector (normalised when used). */
  readonly pinned = new Map<string, Float32Array>();
  textsEncoded = 0;
  /** The image projection's direction per pixel value, made as they are first needed. */
  private readonly directions: Float32Array[] = [];
  imagesEncoded = 0;
  /** The text each tokenization came from: the fake embeds words, not token ids. */
  private readonly tokenizedTexts = new WeakMap<TokenizedText, string>();

  constructor(options: FakeEmbedderOptions = {}) {
    this.modelId = options.modelId ?? "fake-model";
    this.dims = options.dims ?? 8;
    const tower = { input: "x", output: "y", precision: "fp32" as const };
    this.config = {
      format: "longclip-onnx",
      format_version: 1,
      model_id: this.modelId,
      name: "fake",
      model_type: "longclip",
      embed_dim: this.dims,
      image_resolution: options.imageResolution ?? 8,
      image_mean: [...CLIP_IMAGE_MEAN],
      image_std: [...CLIP_IMAGE_STD],
      context_length: options.contextLength ?? 32,
      vocab_size: 0x10000,
      start_token_id: 1,
      end_token_id: 2,
      tokenizer: { file: "none", type: "clip-bpe", num_merges: 0 },
      vision: { ...tower, file: "none" },
      text: { ...tower, file: "none" },
      source_sha256: "",
      exporter_version: "",
    };
  }

  /** The vector a text embeds to unless pinned: one fixed random vector per word, summed. */
  wordVector(text: string): Float32Array {
    const sum = new Float64Array(this.dims);
    for (const word of text.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? []) {
      const vector = vectorOf(hash(word), this.dims);
      for (let d = 0; d < this.dims; d++) sum[d] = (sum[d] as number) + (vector[d] as number);
    }
    return unit(sum);
  }

  tokenize(text: string): TokenizedText {
    const words = text.split(/\s+/).filter((word) => word !== "");
    const all = [1, ...words.map((word) => 3 + (hash(word) % 0xfff0)), 2];
    const limit = this.config.context_length;
    const ids = Int32Array.from(all.slice(0, limit));
    if (all.length > limit) ids[limit - 1] = 2;
    const tokenized = { ids, tokens: all.length, truncated: all.length > limit };
    this.tokenizedTexts.set(tokenized, text);
    return tokenized;
  }

  async embedTexts(texts: readonly string[]): Promise<TextEmbedding[]> {
    return this.embedTokenized(texts.map((text) => this.tokenize(text)));
  }

  async embedTokenized(rows: readonly TokenizedText[]): Promise<TextEmbedding[]> {
    this.textsEncoded += rows.length;
    return rows.map((row) => {
      const text = this.tokenizedTexts.get(row);
      if (text === undefined) throw new Error("these tokens were not made by this tokenize()");
      const pinned = this.pinned.get(text);
      const { tokens, truncated } = row;
      return { embedding: pinned ? unit(pinned) : this.wordVector(text), tokens, truncated };
    });
  }

  async embedPixels(pixels: readonly Float32Array[]): Promise<Float32Array[]> {
    this.imagesEncoded += pixels.length;
    return pixels.map((image) => {
      const out = new Float64Array(this.dims);
      for (let i = 0; i < image.length; i++) {
        // Pixel i adds its value times a fixed random direction.
        const direction = this.directions[i] ?? vectorOf(i + 1, this.dims);
        this.directions[i] = direction;
        for (let d = 0; d < this.dims; d++) {
          out[d] = (out[d] as number) + (image[i] as number) * (direction[d] as number);
        }
      }
      return unit(out);
    });
  }

  stats(): EncoderStats {
    return {
      modelId: this.modelId,
      dims: this.dims,
      device: "cpu",
      requestedDevice: "cpu",
      threads: 1,
      imageBatchSize: 4,
      imagesEncoded: this.imagesEncoded,
      textsEncoded: this.textsEncoded,
    };
  }

  async close(): Promise<void> {}
}
