/**
 * A video file → the frames to embed, each with its time. One ffmpeg process decodes the first
 * video stream, samples it at SAMPLE_FPS and scales each sample so its short side is the
 * model's resolution (RGB, streamed through a pipe); ./scenes.ts picks the frames as they
 * pass. The limits hold on what is decoded, not only on what the header says: the decoder
 * refuses frames over maxVideoPixels (its max_pixels option), and the stream is cut off (the
 * process killed) as soon as it runs past maxVideoSeconds or videoDecodeTimeoutMs. Memory is
 * the kept frames and one frame in the making, however long the stream.
 */
import { AppError, isAppError } from "../../core/errors.ts";
import type { VideoSettings } from "../../core/settings.ts";
import {
  decodeTimedOut,
  invalidVideo,
  probeVideo,
  tooLong,
  tooManyPixels,
  type VideoProbe,
} from "./probe.ts";
import { type KeptFrame, SceneSampler, signature } from "./scenes.ts";
import { ffmpegComplaint, ffmpegQuietArgs, runTool } from "./tool.ts";

/** Frames per second looked at for scene changes (a cut is placed to within 1/SAMPLE_FPS s). */
export const SAMPLE_FPS = 4;

/** A decoded frame: packed RGB, short side the model's resolution. */
export interface VideoFrame {
  t: number;
  width: number;
  height: number;
  rgb: Buffer;
}

export interface DecodedVideo {
  probe: VideoProbe;
  /** Seconds of video decoded (the last sample's time plus one sample). */
  decodedSeconds: number;
  frames: VideoFrame[];
}

/** The sampled frames' size: the short side `resolution`, the long one at most 4 times it. */
export function frameSize(
  width: number,
  height: number,
  resolution: number,
): { width: number; height: number } {
  const long = (side: number, other: number) =>
    Math.max(1, Math.min(4 * resolution, Math.round((resolution * side) / other)));
  return width <= height
    ? { width: resolution, height: long(height, width) }
    : { width: long(width, height), height: resolution };
}

/** Pulls fixed-size frames out of a byte stream that arrives in arbitrary chunks. */
class FrameReader {
  private readonly frame: Buffer;
  private filled = 0;
  count = 0;

  constructor(
    frameBytes: number,
    private readonly onFrame: (frame: Buffer, index: number) => void,
  ) {
    this.frame = Buffer.allocUnsafe(frameBytes);
  }

  push(chunk: Buffer): void {
    let offset = 0;
    while (offset < chunk.length) {
      const take = Math.min(this.frame.length - this.filled, chunk.length - offset);
      chunk.copy(this.frame, this.filled, offset, offset + take);
      this.filled += take;
      offset += take;
      if (this.filled === this.frame.length) {
        this.filled = 0;
        this.onFrame(this.frame, this.count++);
      }
    }
  }
}

/**
 * Probes and decodes `file`, returning the frames to embed. Throws AppError: invalid_video,
 * unsupported_video, video_too_long, video_too_many_pixels.
 */
export async function decodeVideoFrames(
  file: string,
  settings: VideoSettings,
  resolution: number,
  signal?: AbortSignal,
): Promise<DecodedVideo> {
  const probe = await probeVideo(file, settings, signal);
  const size = frameSize(probe.width, probe.height, resolution);
  const sampler = new SceneSampler<Buffer>(
    {
      threshold: settings.videoSceneThreshold,
      minIntervalS: settings.videoMinIntervalMs / 1000,
      maxIntervalS: settings.videoMaxIntervalMs / 1000,
      maxFrames: settings.maxVideoFrames,
    },
    (frame) => Buffer.from(frame),
  );
  const reader = new FrameReader(size.width * size.height * 3, (frame, index) => {
    const t = index / SAMPLE_FPS;
    // A stream that goes on past the limit (whatever its header said) is cut off here.
    if (t > settings.maxVideoSeconds) throw tooLong(t, settings.maxVideoSeconds);
    sampler.push(t, signature(frame, size.width, size.height), frame);
  });
  const args = [
    ...ffmpegQuietArgs(settings.maxVideoPixels),
    "-i",
    file,
    "-map",
    "0:v:0",
    "-an",
    "-sn",
    "-dn",
    "-vf",
    `fps=${SAMPLE_FPS},scale=${size.width}:${size.height}:flags=area`,
    "-f",
    "rawvideo",
    "-pix_fmt",
    "rgb24",
    "pipe:1",
  ];
  let result: Awaited<ReturnType<typeof runTool>>;
  try {
    result = await runTool(settings.ffmpegPath, args, {
      timeoutMs: settings.videoDecodeTimeoutMs,
      timeoutError: () => decodeTimedOut(settings.videoDecodeTimeoutMs),
      onStdout: (chunk) => reader.push(chunk),
      signal,
    });
  } catch (error) {
    if (isAppError(error)) throw error;
    throw new AppError("internal_error", `ffmpeg failed: ${(error as Error).message}`);
  }
  if (/exceeds specified max pixel count/.test(result.stderr)) {
    throw tooManyPixels(probe.width, probe.height, settings.maxVideoPixels);
  }
  if (result.exitCode !== 0) throw invalidVideo(ffmpegComplaint(result.stderr));
  const decodedSeconds = reader.count / SAMPLE_FPS;
  if (reader.count === 0) throw invalidVideo("it holds no frames");
  // The header promised more than the file holds: cut short in transfer or while written.
  if (probe.duration !== undefined && decodedSeconds < 0.9 * probe.duration - 1) {
    throw invalidVideo(
      `truncated: frames stop at ${decodedSeconds.toFixed(1)} s of the ${probe.duration.toFixed(1)} s its header gives`,
    );
  }
  const frames = sampler.finish().map((kept: KeptFrame<Buffer>) => ({
    t: kept.t,
    width: size.width,
    height: size.height,
    rgb: kept.frame,
  }));
  return { probe, decodedSeconds, frames };
}
