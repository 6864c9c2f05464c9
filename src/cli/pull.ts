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

function progressBar(stream: NodeJS.WriteStream) {
  if (!stream.isTTY) return { update: () => {}, stop: () => {} };
  const bar = new cliProgress.SingleBar(
    {
      stream,
      format: "{file} [{bar}] {percentage}% | {done} / {size} MB | ETA {eta_formatted}",
      etaBuffer: 50,
    },
    cliProgress.Presets.shades_classic,
  );
  let current: string | undefined;
  const mb = (bytes: number) => (bytes / 1e6).toFixed(1);
  return {
    update(file: string, done: number, total: number | undefined) {
      if (file !== current) {
        if (current) bar.stop();
        current = file;
        bar.start(total ?? 0, done, { file, done: mb(done), size: total ? mb(total) : "?" });
      }
      bar.update(done, { file, done: mb(done), size: total ? mb(total) : "?" });
    },
    stop() {
      if (current) bar.stop();
      current = undefined;
    },
  };
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
  const bar = progressBar(process.stderr);
  const started = performance.now();
  try {
    const settings = settingsFromFlags(flags, process.env, PULL_SETTING_KEYS);
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
        bar.stop();
        process.stdout.write(`${line}\n`);
      },
      progress: (file, done, total) => bar.update(file, done, total),
    });
    bar.stop();
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    process.stdout.write(
      `wrote ${flags.out} (${String(result.config.model_id)}) in ${seconds}s; serve it with: longclip serve --model ${flags.out}\n`,
    );
    return 0;
  } catch (error) {
    bar.stop();
    return reportError(error);
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
