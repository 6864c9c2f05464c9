/**
 * What a video file says of itself (ffprobe reads the container headers, decodes nothing):
 * its duration, when it has one, and its first video stream's size and rotation. The limits
 * that can be checked before decoding are checked here; ./frames.ts checks them again on what
 * is actually decoded, since a header may lie or be missing (a live WebM has no duration).
 */
import { AppError } from "../../core/errors.ts";
import type { VideoSettings } from "../../core/settings.ts";
import { ffmpegComplaint, ffprobePath, runTool } from "./tool.ts";

export interface VideoProbe {
  /** Seconds, from the container; undefined when the container does not say. */
  duration: number | undefined;
  /** The frame size as displayed (after rotation). */
  width: number;
  height: number;
  codec: string;
}

interface ProbeJson {
  format?: { duration?: string };
  streams?: {
    codec_type?: string;
    codec_name?: string;
    width?: number;
    height?: number;
    duration?: string;
    tags?: { rotate?: string };
    side_data_list?: { rotation?: number }[];
  }[];
}

export function invalidVideo(reason: string): AppError {
  return new AppError(
    "invalid_video",
    `The video could not be decoded (${reason}). Check that the file is complete and plays, or re-export it as MP4 (H.264) or WebM.`,
  );
}

export function tooLong(seconds: number, limit: number): AppError {
  return new AppError(
    "video_too_long",
    `The video runs ${seconds.toFixed(1)} s or more; the limit is ${limit} s (maxVideoSeconds). Cut it into shorter clips.`,
    { seconds, limit },
  );
}

export function tooManyPixels(width: number, height: number, limit: number): AppError {
  return new AppError(
    "video_too_many_pixels",
    `The video's frames are ${width}×${height} pixels; the limit is ${limit} pixels per frame (maxVideoPixels). Scale it down first.`,
    { pixels: width * height, limit },
  );
}

export function decodeTimedOut(limitMs: number): AppError {
  return new AppError(
    "video_too_long",
    `Decoding the video took longer than ${limitMs} ms (videoDecodeTimeoutMs); send a shorter or smaller video.`,
    { limitMs },
  );
}

function finite(text: string | undefined): number | undefined {
  const value = Number(text);
  return text !== undefined && Number.isFinite(value) && value >= 0 ? value : undefined;
}

/** Probes `file`; throws invalid_video, video_too_long, video_too_many_pixels, unsupported_video. */
export async function probeVideo(
  file: string,
  settings: VideoSettings,
  signal?: AbortSignal,
): Promise<VideoProbe> {
  const args = ["-v", "error", "-of", "json", "-show_format", "-show_streams", "--", file];
  const result = await runTool(ffprobePath(settings.ffmpegPath), args, {
    timeoutMs: Math.min(settings.videoDecodeTimeoutMs, 30_000),
    timeoutError: () => decodeTimedOut(Math.min(settings.videoDecodeTimeoutMs, 30_000)),
    maxStdoutBytes: 1024 * 1024,
    signal,
  });
  if (result.exitCode !== 0) throw invalidVideo(ffmpegComplaint(result.stderr));
  let json: ProbeJson;
  try {
    json = JSON.parse(result.stdout.toString("utf8")) as ProbeJson;
  } catch {
    throw invalidVideo("its headers could not be read");
  }
  const stream = json.streams?.find((s) => s.codec_type === "video");
  if (stream === undefined) throw invalidVideo("it holds no video stream");
  if (stream.codec_name === undefined) {
    throw new AppError(
      "unsupported_video",
      "The video's codec is one this server's ffmpeg cannot decode; re-encode it as H.264 (MP4) or VP9 (WebM).",
    );
  }
  const coded = { width: stream.width ?? 0, height: stream.height ?? 0 };
  if (coded.width <= 0 || coded.height <= 0) throw invalidVideo("its frames have no size");
  if (coded.width * coded.height > settings.maxVideoPixels) {
    throw tooManyPixels(coded.width, coded.height, settings.maxVideoPixels);
  }
  const rotation =
    stream.side_data_list?.find((d) => d.rotation !== undefined)?.rotation ??
    Number(stream.tags?.rotate ?? 0);
  const sideways = Math.abs(Math.round(rotation / 90)) % 2 === 1;
  const duration = finite(json.format?.duration) ?? finite(stream.duration);
  if (duration !== undefined && duration > settings.maxVideoSeconds) {
    throw tooLong(duration, settings.maxVideoSeconds);
  }
  return {
    duration,
    width: sideways ? coded.height : coded.width,
    height: sideways ? coded.width : coded.height,
    codec: stream.codec_name,
  };
}
