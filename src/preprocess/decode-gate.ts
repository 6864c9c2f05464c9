/**
 * Admission for image decoding, by memory rather than by count: a decoded image costs about
 * 3 bytes per pixel (plus libvips' working buffers) however small its file, so a 140 kB PNG of
 * 7060×7060 pixels costs ~150 MB while it is decoded. Every decode (ingest, image search,
 * thumbnails) first reads the header (cheap, nothing decoded), refuses what is over the
 * caller's pixel limit, then waits until its pixels fit in `maxDecodePixels` in flight.
 */
import sharp from "sharp";
import { AppError } from "../core/errors.ts";
import type { Settings } from "../core/settings.ts";
import { Budget } from "../util/budget.ts";

/** A pixel limit and the setting (with its variable) that sets it, for the error message. */
export interface PixelLimit {
  maxPixels: number;
  setting: string;
}

/** Pixels of the first frame, from the header; undefined when the header cannot be read. */
export async function headerPixels(bytes: Buffer): Promise<number | undefined> {
  try {
    const meta = await sharp(bytes, { limitInputPixels: false }).metadata();
    const width = meta.width ?? 0;
    const height = meta.pageHeight ?? meta.height ?? 0;
    return width * height;
  } catch {
    return undefined;
  }
}

export class DecodeGate {
  private readonly budget: Budget;

  constructor(settings: Pick<Settings, "maxDecodePixels" | "maxQueueDepth">) {
    this.budget = new Budget(
      Math.max(1, settings.maxDecodePixels),
      // Waiters hold only bytes already in memory (and counted in maxBufferedBytes).
      Math.max(16, 4 * settings.maxQueueDepth),
      () =>
        new AppError(
          "queue_full",
          `Too many images are waiting to be decoded (maxDecodePixels ${settings.maxDecodePixels} in flight); retry shortly.`,
          { retryAfterSeconds: 1 },
        ),
    );
  }

  /** Pixels being decoded now. */
  get pixelsInFlight(): number {
    return this.budget.inUse;
  }

  /** Waits until `pixels` may be decoded; call the returned function when done. */
  admitPixels(pixels: number): Promise<() => void> {
    return this.budget.acquire(pixels);
  }

  /**
   * Reads the header of `bytes`, refuses it when over `limit`, then admits it. An unreadable
   * header is admitted at a nominal cost: the decoder then reports what is wrong with it.
   */
  async admit(bytes: Buffer, limit?: PixelLimit): Promise<() => void> {
    const pixels = await headerPixels(bytes);
    if (pixels !== undefined && limit !== undefined && pixels > limit.maxPixels) {
      throw new AppError(
        "image_too_many_pixels",
        `The image has ${pixels} pixels; the limit here is ${limit.maxPixels} (${limit.setting}). Send a smaller image.`,
        { pixels, limit: limit.maxPixels },
      );
    }
    return this.budget.acquire(pixels ?? 1);
  }
}
