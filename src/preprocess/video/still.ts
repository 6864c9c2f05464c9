/**
 * One frame of a stored video as a JPEG (what `GET /items/{id}/image?t=` answers), and the
 * temporary file a video held in memory is decoded from (ffmpeg must seek in an MP4 whose
 * index is at its end, which a pipe cannot do).
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { AppError } from "../../core/errors.ts";
import type { VideoSettings } from "../../core/settings.ts";
import { decodeTimedOut, invalidVideo } from "./probe.ts";
import { ffmpegComplaint, ffmpegQuietArgs, runTool } from "./tool.ts";

/** The frame shown at `t` seconds (the last one when `t` is past the end), as JPEG bytes. */
export async function frameAt(
  file: string,
  t: number,
  settings: VideoSettings,
  signal?: AbortSignal,
): Promise<Buffer> {
  const args = [
    ...ffmpegQuietArgs(settings.maxVideoPixels),
    // -sseof would need a duration; seeking past the end gives no frame, answered below.
    "-ss",
    t.toFixed(3),
    "-i",
    file,
    "-map",
    "0:v:0",
    "-frames:v",
    "1",
    "-q:v",
    "3",
    "-f",
    "image2pipe",
    "-c:v",
    "mjpeg",
    "pipe:1",
  ];
  const result = await runTool(settings.ffmpegPath, args, {
    timeoutMs: settings.videoDecodeTimeoutMs,
    timeoutError: () => decodeTimedOut(settings.videoDecodeTimeoutMs),
    // A JPEG is far smaller than its raw pixels.
    maxStdoutBytes: settings.maxVideoPixels * 3,
    signal,
  });
  if (result.exitCode !== 0) throw invalidVideo(ffmpegComplaint(result.stderr));
  if (result.stdout.length === 0) {
    throw new AppError("not_found", `The video has no frame at ${t} s; give a time within it.`);
  }
  return result.stdout;
}

/** Runs `use` on a temporary file holding `bytes`, removed afterwards whatever happens. */
export async function withTemporaryFile<T>(
  bytes: Uint8Array,
  use: (file: string) => Promise<T>,
): Promise<T> {
  const dir = await mkdtemp(path.join(tmpdir(), "longclip-video-"));
  try {
    const file = path.join(dir, "video");
    await writeFile(file, bytes);
    return await use(file);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
