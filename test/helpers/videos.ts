/** Tiny videos made by ffmpeg for the tests (a few seconds, small frames). */
import { execFileSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { DEFAULT_SETTINGS, type VideoSettings } from "../../src/core/settings.ts";

export const VIDEO_SETTINGS: VideoSettings = {
  maxVideoBytes: DEFAULT_SETTINGS.maxVideoBytes,
  maxVideoSeconds: DEFAULT_SETTINGS.maxVideoSeconds,
  maxVideoPixels: DEFAULT_SETTINGS.maxVideoPixels,
  maxVideoFrames: DEFAULT_SETTINGS.maxVideoFrames,
  videoMinIntervalMs: DEFAULT_SETTINGS.videoMinIntervalMs,
  videoMaxIntervalMs: DEFAULT_SETTINGS.videoMaxIntervalMs,
  videoSceneThreshold: DEFAULT_SETTINGS.videoSceneThreshold,
  videoDecodeTimeoutMs: DEFAULT_SETTINGS.videoDecodeTimeoutMs,
  ffmpegPath: DEFAULT_SETTINGS.ffmpegPath,
};

export function videoDir(): string {
  return mkdtempSync(path.join(tmpdir(), "longclip-videos-"));
}

/** Runs ffmpeg with `args` (quiet, overwriting) and returns `output`. */
export function ffmpeg(output: string, args: readonly string[]): string {
  execFileSync("ffmpeg", ["-v", "error", "-y", ...args, output], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  return output;
}

/** Solid-colour scenes of `seconds` each, cut together (`fade` seconds of cross-fade before the last). */
export function colourScenes(
  output: string,
  colours: readonly string[],
  seconds: number,
  options: { size?: string; fade?: number; extra?: readonly string[] } = {},
): string {
  const size = options.size ?? "96x64";
  const inputs = colours.flatMap((c) => [
    "-f",
    "lavfi",
    "-i",
    `color=c=${c}:s=${size}:r=10:d=${seconds}`,
  ]);
  const fade = options.fade ?? 0;
  const n = colours.length;
  let graph: string;
  if (fade > 0 && n >= 2) {
    const head = Array.from({ length: n - 1 }, (_, i) => `[${i}:v]`).join("");
    // xfade needs both inputs on one time base.
    graph = `${head}concat=n=${n - 1}:v=1,settb=AVTB,fps=10[a];[${n - 1}:v]settb=AVTB,fps=10[b];[a][b]xfade=transition=fade:duration=${fade}:offset=${(n - 1) * seconds - fade},format=yuv420p[v]`;
  } else {
    graph = `${colours.map((_, i) => `[${i}:v]`).join("")}concat=n=${n}:v=1,format=yuv420p[v]`;
  }
  return ffmpeg(output, [
    ...inputs,
    "-filter_complex",
    graph,
    "-map",
    "[v]",
    ...(options.extra ?? []),
  ]);
}

/** A WebM written as a live stream: no duration in its header, `seconds` of red frames. */
export function liveWebm(output: string, seconds: number): string {
  const source = `color=c=red:s=32x32:r=10:d=${seconds}`;
  return ffmpeg(output, [
    "-f",
    "lavfi",
    "-i",
    source,
    "-c:v",
    "libvpx",
    "-live",
    "1",
    "-f",
    "webm",
  ]);
}
