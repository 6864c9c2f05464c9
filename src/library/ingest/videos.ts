/**
 * Ingest's video step: a loaded input whose bytes are a video is decoded into the frames to
 * embed (src/preprocess/video/), at most a few videos at a time (each decode is an ffmpeg
 * process using a core or more). An upload is decoded from a temporary copy of its bytes, a
 * path from its file. The item's own vector is the normalised mean of its frames' vectors
 * (what the video shows overall); each frame is a part with its time, so a search finds the
 * moment (see docs/video.md).
 */
import { availableParallelism } from "node:os";
import { AppError } from "../../core/errors.ts";
import type { VideoSettings } from "../../core/settings.ts";
import { toModelInput } from "../../preprocess/index.ts";
import type { PreprocessOptions } from "../../preprocess/types.ts";
import {
  decodeVideoFrames,
  VIDEO_CONTENT_TYPES,
  type VideoFrame,
  videoContainer,
  withTemporaryFile,
} from "../../preprocess/video/index.ts";
import { Budget } from "../../util/budget.ts";
import type { LoadedInput } from "./inputs.ts";
import { namedLikeVideo } from "./inputs.ts";

/** A decoded video: its frames (RGB, short side the largest resolution asked for). */
export interface DecodedVideoInput {
  contentType: string;
  width: number;
  height: number;
  frames: VideoFrame[];
}

/** What an input is, from its bytes; a file named like a video that is none is invalid_video. */
export function isVideoInput(input: LoadedInput): boolean {
  if (videoContainer(input.bytes) !== undefined) return true;
  if (namedLikeVideo(input)) {
    throw new AppError(
      "invalid_video",
      "The file is named like a video but its bytes are not an MP4, MOV, WebM or Matroska file; check the file, or give it the right extension.",
    );
  }
  return false;
}

/** The model input of each frame for `options` (resized and cropped as an image would be). */
export function framePixels(
  frames: readonly VideoFrame[],
  options: Pick<PreprocessOptions, "resolution" | "mean" | "std">,
): Float32Array[] {
  return frames.map((frame) =>
    toModelInput(
      { data: frame.rgb, width: frame.width, height: frame.height, channels: 3 },
      options,
    ),
  );
}

/** The normalised mean of unit vectors: the video's own vector. */
export function meanVector(vectors: readonly Float32Array[]): Float32Array {
  const first = vectors[0];
  if (first === undefined) throw new Error("meanVector of no vectors");
  const mean = new Float32Array(first.length);
  for (const vector of vectors) {
    for (let i = 0; i < mean.length; i++) mean[i] = (mean[i] as number) + (vector[i] as number);
  }
  let norm = 0;
  for (const value of mean) norm += value * value;
  norm = Math.sqrt(norm) || 1;
  for (let i = 0; i < mean.length; i++) mean[i] = (mean[i] as number) / norm;
  return mean;
}

export class VideoDecoder {
  /** ffmpeg processes at once: half the cores (each decodes with threads of its own). */
  private readonly slots: Budget;

  constructor(private readonly settings: VideoSettings) {
    const capacity = Math.max(1, Math.floor(availableParallelism() / 2));
    this.slots = new Budget(
      capacity,
      Number.POSITIVE_INFINITY,
      () => new AppError("queue_full", "Too many videos are waiting to be decoded; retry shortly."),
    );
  }

  /** Decodes `input` (a video, see isVideoInput) into frames with short side `resolution`. */
  async decode(input: LoadedInput, resolution: number): Promise<DecodedVideoInput> {
    const release = await this.slots.acquire(1);
    try {
      const decode = (file: string) => decodeVideoFrames(file, this.settings, resolution);
      const video =
        input.source === "path" && input.path !== undefined
          ? await decode(input.path)
          : await withTemporaryFile(input.bytes, decode);
      const container = videoContainer(input.bytes) ?? "mp4";
      return {
        contentType: VIDEO_CONTENT_TYPES[container],
        width: video.probe.width,
        height: video.probe.height,
        frames: video.frames,
      };
    } finally {
      release();
    }
  }
}
