/**
 * `longclip pull NAME|REPO|URL --out DIR`: downloads a model (a registry name such as
 * longclip-l, a Hugging Face CLIPModel repository id, or a .pt URL with --vocab) with a
 * progress bar and resume, checks sizes and checksums, and converts it without Python.
 * --hub-url (LONGCLIP_HUB_URL) names a hub mirror; --cache (LONGCLIP_CACHE) where downloads are
 * kept.
 */
import cliProgress from "cli-progress";
import type { Command } from "commander";
import { pullModel } from "../convert/pull.ts";
import { REGISTRY } from "../convert/registry.ts";
import { AppError } from "../core/errors.ts";
import { settingKeys } from "../core/settings.ts";
import { addSettingOptions, settingsFromFlags } from "./settings.ts";
import { reportError } from "./usage.ts";

const PULL_SETTING_KEYS = settingKeys("pull");

interface PullFlags {
  /** The settings' flags (--cache, --hub-url), read by settingsFromFlags. */
  [flag: string]: unknown;
  out: string;
  vocab?: string;
  name?: string;
  verify: boolean;
  threads: string;
}

const mb = (bytes: number) => (bytes / 1e6).toFixed(1);

/**
 * A time left as the bar shows it, or "--" while it is not known: cli-progress hands over
 * "NULL" or "INF" then, which its own formatting cut to "LLs".
 */
export function etaText(seconds: unknown): string {
  if (typeof seconds !== "number" || !Number.isFinite(seconds) || seconds < 0) return "--";
  const s = Math.round(seconds);
  const two = (n: number) => String(n).padStart(2, "0");
  if (s >= 3600) return `${Math.floor(s / 3600)}h${two(Math.floor((s % 3600) / 60))}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m${two(s % 60)}s`;
  return `${s}s`;
}

/** Where a download is: its file, the bytes so far and of how many. */
export interface Position {
  file: string;
  done: number;
  total: number | undefined;
}

export function describePosition({ file, done, total }: Position): string {
  if (!total) return `${file}: ${mb(done)} MB`;
  return `${file}: ${mb(done)} of ${mb(total)} MB (${Math.floor((100 * done) / total)}%)`;
}

export interface DownloadProgress {
  update(position: Position): void;
  stop(): void;
}

type ProgressStream = NodeJS.WritableStream & { isTTY?: boolean };

/** A bar on a terminal; elsewhere (a log, CI) a line per 10% (per 100 MB of an unknown size). */
export function downloadProgress(stream: ProgressStream): DownloadProgress {
  return stream.isTTY ? progressBar(stream) : progressLines(stream);
}

function progressLines(stream: ProgressStream): DownloadProgress {
  let file: string | undefined;
  let lastStep = -1;
  return {
    update(position) {
      if (position.file !== file) lastStep = -1;
      file = position.file;
      const { done, total } = position;
      const step = total ? Math.floor((10 * done) / total) : Math.floor(done / 100e6);
      if (step <= lastStep) return;
      lastStep = step;
      stream.write(`${describePosition(position)}\n`);
    },
    stop() {},
  };
}

function progressBar(stream: ProgressStream): DownloadProgress {
  const bar = new cliProgress.SingleBar(
    {
      stream,
      format: "{file} [{bar}] {percentage}% | {done} / {size} MB | ETA {eta_formatted}",
      etaBuffer: 50,
      formatTime: etaText,
    },
    cliProgress.Presets.shades_classic,
  );
  let current: string | undefined;
  return {
    update({ file, done, total }) {
      const payload = { file, done: mb(done), size: total ? mb(total) : "?" };
      if (file !== current) {
        if (current) bar.stop();
        current = file;
        bar.start(total ?? 0, done, payload);
      }
      bar.update(done, payload);
    },
    stop() {
      if (current) bar.stop();
      current = undefined;
    },
  };
}

/** What Ctrl-C prints: where the pull stopped, and that the same command resumes it. */
export function interruptedMessage(position: Position | undefined, cacheDir: string): string {
  const where = position
    ? `stopped downloading ${describePosition(position)}`
    : "stopped after the downloads, while converting";
  return `pull interrupted: ${where}. What arrived is kept in ${cacheDir}; run the same command again to resume.`;
}

export async function runPull(target: string, flags: PullFlags): Promise<number> {
  const threads = Number(flags.threads);
  if (!Number.isInteger(threads) || threads < 1) {
    return reportError(
      new AppError(
        "invalid_setting",
        `--threads takes a whole number from 1, not "${flags.threads}".`,
      ),
    );
  }
  const progress = downloadProgress(process.stderr);
  // The download in progress; undefined between files and while converting.
  let position: Position | undefined;
  let cacheDir = "the download cache";
  const onInterrupt = () => {
    progress.stop();
    process.stderr.write(`\n${interruptedMessage(position, cacheDir)}\n`);
    process.exit(130);
  };
  process.once("SIGINT", onInterrupt);
  const started = performance.now();
  try {
    const settings = settingsFromFlags(flags, process.env, PULL_SETTING_KEYS);
    cacheDir = settings.cacheDir;
    const result = await pullModel({
      target,
      out: flags.out,
      cacheDir: settings.cacheDir,
      hubUrl: settings.hubUrl,
      ...(flags.vocab ? { vocab: flags.vocab } : {}),
      ...(flags.name ? { name: flags.name } : {}),
      verify: flags.verify,
      threads,
      log: (line) => {
        position = undefined;
        progress.stop();
        process.stdout.write(`${line}\n`);
      },
      progress: (file, done, total) => {
        position = { file, done, total };
        progress.update(position);
      },
    });
    progress.stop();
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    process.stdout.write(
      `wrote ${flags.out} (${String(result.config.model_id)}) in ${seconds}s; serve it with: longclip serve --model ${flags.out}\n`,
    );
    return 0;
  } catch (error) {
    progress.stop();
    return reportError(error);
  } finally {
    process.removeListener("SIGINT", onInterrupt);
  }
}

export function register(program: Command): void {
  const command = program
    .command("pull")
    .description(
      `Download a model and convert it without Python: ${REGISTRY.map((m) => m.name).join(", ")}, a Hugging Face CLIPModel repository id (owner/name), or a .pt URL with --vocab`,
    )
    .argument("<model>", "registry name, owner/name repository id, or URL of a .pt checkpoint")
    .requiredOption("--out <dir>", "model directory to write")
    .option("--vocab <file>", "CLIP BPE merges file, for a .pt URL")
    .option("--name <name>", "model name (default: the registry or repository name)")
    .option("--no-verify", "skip the check of the towers against the TypeScript forward")
    .option("--threads <n>", "ONNX Runtime threads for the check", "2");
  addSettingOptions(command, PULL_SETTING_KEYS).action(async (target: string, flags: PullFlags) => {
    process.exitCode = await runPull(target, flags);
  });
}
