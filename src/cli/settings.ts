/**
 * Flags shared by every command: each setting of src/core/settings.ts is a flag (kebab-case of its
 * key; `--model` and `--data` for the two directories) over its LONGCLIP_* environment
 * variable over the default. Also the one way commands turn an error into `{code, message}`.
 */
import { type Command, InvalidArgumentError } from "commander";
import { AppError, isAppError } from "../core/errors.ts";
import {
  DEFAULT_SETTINGS,
  envName,
  loadSettings,
  parseSetting,
  type Settings,
} from "../core/settings.ts";

export const SETTING_KEYS = Object.keys(DEFAULT_SETTINGS) as (keyof Settings)[];

/** Settings of the library and encoder: everything but what only the HTTP server uses. */
const SERVER_ONLY_KEYS = new Set<keyof Settings>([
  "host",
  "port",
  "apiKey",
  "apiKeyFile",
  "allowedHosts",
  "corsOrigins",
  "requestTimeoutMs",
  "headersTimeoutMs",
  "idleTimeoutMs",
  "maxConnections",
  "maxBufferedBytes",
  "maxJsonBytes",
  "shutdownTimeoutMs",
  "logFormat",
]);

export const LIBRARY_SETTING_KEYS = SETTING_KEYS.filter((key) => !SERVER_ONLY_KEYS.has(key));

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

function placeholder(key: keyof Settings): string {
  if (key.endsWith("Dir") || key === "mediaRoot") return "dir";
  if (key === "apiKeyFile") return "file";
  if (key === "allowedHosts") return "hosts";
  if (key === "corsOrigins") return "origins";
  if (key === "host" || key === "device") return key;
  if (key === "databaseUrl") return "url";
  if (key === "pgVectorType") return "type";
  if (key === "jobWorker") return "on|off|auto";
  if (key === "preprocess") return "exact|fast";
  if (key === "apiKey") return "key";
  if (key === "textFields") return "keys";
  if (key === "keepUploadFilename" || key === "nativeJpeg") return "on|off";
  if (key === "nearDuplicateThreshold" || key === "minDuplicateThreshold") return "cosine";
  if (key === "logFormat") return "auto|pretty|json";
  return "n";
}

/** Adds one `--flag <value>` per setting, its help naming the variable and the default. */
export function addSettingOptions(
  command: Command,
  keys: readonly (keyof Settings)[] = SETTING_KEYS,
): Command {
  for (const key of keys) {
    const fallback = DEFAULT_SETTINGS[key];
    const shown = fallback === undefined ? "unset" : String(fallback);
    command.option(
      `--${flagName(key)} <${placeholder(key)}>`,
      `${envName(key)} (default: ${shown})`,
    );
  }
  return command;
}

/** Settings from parsed flags (strings), over LONGCLIP_* variables, over defaults. */
export function settingsFromFlags(
  flags: Record<string, unknown>,
  env: NodeJS.ProcessEnv = process.env,
): Settings {
  const overrides: Record<string, unknown> = {};
  for (const key of SETTING_KEYS) {
    const flag = flagName(key);
    const raw = flags[optionKey(flag)];
    if (typeof raw !== "string") continue;
    try {
      overrides[key] = parseSetting(key, raw);
    } catch (error) {
      throw new AppError(
        "invalid_setting",
        `--${flag}: ${(error as Error).message.replace(envName(key), "the value")}`,
      );
    }
  }
  let settings: Settings;
  try {
    settings = loadSettings(overrides as Partial<Settings>, env);
  } catch (error) {
    throw new AppError("invalid_setting", (error as Error).message);
  }
  for (const key of ["imageBatchSize", "textBatchSize"] as const) {
    if (settings[key] < 1) {
      throw new AppError("invalid_setting", `--${flagName(key)} must be at least 1.`);
    }
  }
  return settings;
}

/** A commander argument parser for integer flags of at least `min`. */
export function integerFlag(name: string, min = 1): (raw: string) => number {
  return (raw: string): number => {
    const value = Number(raw);
    if (!Number.isInteger(value) || value < min) {
      throw new InvalidArgumentError(`${name} must be an integer of at least ${min}.`);
    }
    return value;
  };
}

/**
 * Parses a script's `argv` with `program`. Returns undefined when the script should go on, or
 * the exit code commander ends with (0 after --help, non-zero after a usage error it printed).
 */
export function parseOrExitCode(program: Command, argv: readonly string[]): number | undefined {
  program.exitOverride();
  try {
    program.parse([...argv]);
    return undefined;
  } catch (error) {
    return (error as { exitCode?: number }).exitCode ?? 2;
  }
}

/**
 * Runs a script's `main` and makes its result the exit code; an error is printed (an AppError
 * as its code and message, anything else with its stack) and exits with 1.
 */
export function runScript(name: string, main: (argv: string[]) => Promise<number>): void {
  main(process.argv).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      process.stderr.write(
        isAppError(error)
          ? `${name}: error ${error.code}: ${error.message}\n`
          : `${name} failed: ${(error as Error)?.stack ?? String(error)}\n`,
      );
      process.exitCode = 1;
    },
  );
}

export interface CliError {
  code: string;
  message: string;
}

/** `{code, message}` of any error: an AppError's own, `internal_error` otherwise. */
export function cliError(error: unknown): CliError {
  if (isAppError(error)) return { code: error.code, message: error.message };
  return { code: "internal_error", message: (error as Error)?.message ?? String(error) };
}

/** The line a command prints on stderr for an error. */
export function errorMessage(error: unknown): string {
  const { code, message } = cliError(error);
  return `error [${code}]: ${message}\n`;
}
