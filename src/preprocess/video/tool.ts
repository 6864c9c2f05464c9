/**
 * Running ffmpeg and ffprobe: spawned with an argument array (never a shell, so no file name
 * is ever parsed as a command), killed at a time limit or when the caller aborts, their output
 * handed on chunk by chunk or collected up to a cap, so a stream that never ends costs time up
 * to the limit and memory up to the cap, never more.
 */
import { spawn } from "node:child_process";
import path from "node:path";
import { AppError } from "../../core/errors.ts";

/** Bytes of stderr kept for an error message (ffmpeg repeats itself; the start says it). */
const MAX_STDERR_BYTES = 16 * 1024;

export interface ToolRun {
  /** Stops the program (SIGKILL) and rejects with `error` once it has exited. */
  timeoutMs: number;
  timeoutError: () => AppError;
  /** Each chunk of stdout as it arrives; throwing from it kills the program and rejects. */
  onStdout?: (chunk: Buffer) => void;
  /** Largest stdout collected when there is no onStdout (more kills the program). */
  maxStdoutBytes?: number;
  signal?: AbortSignal;
}

export interface ToolResult {
  exitCode: number | null;
  stdout: Buffer;
  stderr: string;
}

/** ffprobe beside the configured ffmpeg (or on the PATH when ffmpeg is given by name). */
export function ffprobePath(ffmpegPath: string): string {
  if (!ffmpegPath.includes(path.sep)) return "ffprobe";
  return path.join(path.dirname(ffmpegPath), "ffprobe");
}

export function decoderMissing(program: string): AppError {
  return new AppError(
    "unsupported_video",
    `This server cannot decode videos: ${program} is not installed or not executable. Install ffmpeg (Debian/Ubuntu: apt-get install ffmpeg) or set LONGCLIP_FFMPEG (--ffmpeg) to its path, then restart.`,
  );
}

/** Runs `program` with `args`; resolves with its exit and output, whatever the exit code. */
export function runTool(
  program: string,
  args: readonly string[],
  run: ToolRun,
): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(program, args, { stdio: ["ignore", "pipe", "pipe"], shell: false });
    const stdout: Buffer[] = [];
    let stdoutBytes = 0;
    let stderr = "";
    // The first reason to stop wins; the promise settles once the process is gone.
    let failure: unknown;
    const stop = (reason: unknown) => {
      if (failure !== undefined) return;
      failure = reason;
      child.kill("SIGKILL");
    };
    const timer = setTimeout(() => stop(run.timeoutError()), run.timeoutMs);
    const onAbort = () => stop(run.signal?.reason ?? new Error("aborted"));
    if (run.signal?.aborted) onAbort();
    run.signal?.addEventListener("abort", onAbort, { once: true });

    child.stdout.on("data", (chunk: Buffer) => {
      if (failure !== undefined) return;
      if (run.onStdout !== undefined) {
        try {
          run.onStdout(chunk);
        } catch (error) {
          stop(error);
        }
        return;
      }
      stdoutBytes += chunk.length;
      if (stdoutBytes > (run.maxStdoutBytes ?? 1024 * 1024)) {
        stop(new Error(`${program} wrote more than ${run.maxStdoutBytes} bytes`));
        return;
      }
      stdout.push(chunk);
    });
    child.stderr.on("data", (chunk: Buffer) => {
      if (stderr.length < MAX_STDERR_BYTES) stderr += chunk.toString("utf8");
    });
    child.on("error", (error: NodeJS.ErrnoException) => {
      stop(error.code === "ENOENT" || error.code === "EACCES" ? decoderMissing(program) : error);
    });
    child.on("close", (exitCode) => {
      clearTimeout(timer);
      run.signal?.removeEventListener("abort", onAbort);
      if (failure !== undefined) reject(failure);
      else
        resolve({
          exitCode,
          stdout: Buffer.concat(stdout),
          stderr: stderr.slice(0, MAX_STDERR_BYTES),
        });
    });
  });
}

/**
 * ffmpeg's options before its input: no reading of stdin, errors only, and the decoder's own
 * refusal of any frame over `maxPixels` (a header can lie about the size).
 */
export function ffmpegQuietArgs(maxPixels: number): string[] {
  return ["-nostdin", "-hide_banner", "-v", "error", "-max_pixels", String(maxPixels)];
}

/** What ffmpeg said went wrong: its last line (the summary after the details), not the banner. */
export function ffmpegComplaint(stderr: string): string {
  const lines = stderr
    .split("\n")
    .map((line) => line.trim())
    .filter(
      (line) =>
        line !== "" && !/^(ffmpeg|ffprobe) version|^built with|^configuration:|^lib\w+ /.test(line),
    );
  return (lines.at(-1) ?? "no output").slice(0, 300);
}
