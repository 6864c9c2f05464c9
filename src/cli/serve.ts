/**
 * `longclip serve`: loads the model and the library, then serves the HTTP API. Every setting
 * is a flag (kebab-case of its Settings key; `--model` and `--data` for the two directories)
 * over its LONGCLIP_* environment variable over the default.
 */
import { existsSync } from "node:fs";
import path from "node:path";
import type { Command } from "commander";
import { DEFAULT_SETTINGS, envName, loadSettings, parseSetting, type Settings } from "../config.ts";
import { Encoder } from "../encode/encoder.ts";
import { AppError, isAppError } from "../errors.ts";
import { createLibrary } from "../library/index.ts";
import { buildApp } from "../server/app.ts";

/** Flag name of each setting; the directories get the short names of the README. */
export function flagName(key: keyof Settings): string {
  if (key === "modelDir") return "model";
  if (key === "dataDir") return "data";
  return key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** commander's camelCase property for a flag, e.g. `max-image-bytes` → `maxImageBytes`. */
function optionKey(flag: string): string {
  return flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

const SETTING_KEYS = Object.keys(DEFAULT_SETTINGS) as (keyof Settings)[];

/** Settings from parsed flags (strings), over LONGCLIP_* variables, over defaults. */
export function serveSettings(
  flags: Record<string, string | undefined>,
  env: NodeJS.ProcessEnv = process.env,
): Settings {
  const overrides: Record<string, unknown> = {};
  for (const key of SETTING_KEYS) {
    const flag = flagName(key);
    const raw = flags[optionKey(flag)];
    if (raw === undefined) continue;
    try {
      overrides[key] = parseSetting(key, raw);
    } catch (error) {
      throw new AppError(
        "invalid_setting",
        `--${flag}: ${(error as Error).message.replace(envName(key), "the value")}`,
      );
    }
  }
  try {
    return loadSettings(overrides as Partial<Settings>, env);
  } catch (error) {
    throw new AppError("invalid_setting", (error as Error).message);
  }
}

/** The message printed when the model directory is missing: how to get one. */
export function missingModelMessage(modelDir: string): string {
  const relative = path.relative(process.cwd(), modelDir);
  const shown = relative && !relative.startsWith("..") ? relative : modelDir;
  return [
    `No model at ${shown} (config.json not found).`,
    "Get one by exporting a Long-CLIP (or OpenAI CLIP) checkpoint with the bundled training package:",
    `  python3 -m training export --checkpoint longclip-B.pt --vocab bpe_simple_vocab_16e6.txt.gz --out ${shown}`,
    "(see README), or point the server at an existing model directory with --model DIR or",
    `${envName("modelDir")}=DIR.`,
  ].join("\n");
}

/** Starts the server; resolves once it listens. Returns a function that shuts it down. */
export async function serve(settings: Settings): Promise<() => Promise<void>> {
  if (!existsSync(path.join(settings.modelDir, "config.json"))) {
    throw new AppError("model_not_found", missingModelMessage(settings.modelDir));
  }
  const encoder = await Encoder.load(settings.modelDir, settings);
  const library = await createLibrary(settings, encoder);
  const app = buildApp(settings, library, {
    tokenizer: encoder.tokenizer,
    logger: { level: "info" },
  });
  const address = await app.listen({ host: settings.host, port: settings.port });
  const stats = library.stats();
  app.log.info(
    {
      address,
      modelId: stats.modelId,
      device: stats.device,
      items: stats.items,
      dataDir: settings.dataDir,
      apiKey: settings.apiKey ? "required on write endpoints" : "none",
    },
    "longclip serving",
  );
  let closing: Promise<void> | undefined;
  const shutdown = () => {
    // Stops accepting, lets in-flight requests finish, then saves the index (library.close).
    closing ??= app.close();
    return closing;
  };
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    process.once(signal, () => {
      app.log.info({ signal }, "shutting down");
      shutdown().then(
        () => process.exit(0),
        (error: unknown) => {
          app.log.error({ err: error }, "shutdown failed");
          process.exit(1);
        },
      );
    });
  }
  return shutdown;
}

export function register(program: Command): void {
  const command = program
    .command("serve")
    .description(
      "Serve the HTTP API (openapi.yaml; docs at /docs) over the model and data directory",
    );
  for (const key of SETTING_KEYS) {
    const flag = flagName(key);
    const fallback = DEFAULT_SETTINGS[key];
    const shown = fallback === undefined ? "unset" : String(fallback);
    const kind =
      key.endsWith("Dir") || key === "mediaRoot"
        ? "dir"
        : key === "host"
          ? "host"
          : key === "device"
            ? "device"
            : key === "apiKey"
              ? "key"
              : "n";
    command.option(`--${flag} <${kind}>`, `${envName(key)} (default: ${shown})`);
  }
  command.action(async (flags: Record<string, string | undefined>) => {
    try {
      await serve(serveSettings(flags));
    } catch (error) {
      const message = isAppError(error)
        ? `error [${error.code}]: ${error.message}`
        : `error: ${(error as Error)?.stack ?? String(error)}`;
      process.stderr.write(`${message}\n`);
      process.exit(1);
    }
  });
}
