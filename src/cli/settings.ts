/**
 * Flags shared by every command: each setting of the table in src/core/setting-table.ts is a flag
 * (its `flag`, e.g. `--model`, `--max-image-bytes`) over its environment variable over its
 * default; the help is the table's. Also the one way commands turn an error into
 * `{code, message}`.
 */
import type { Command } from "commander";
import { AppError, isAppError } from "../core/errors.ts";
import { SETTINGS, type SettingSpec } from "../core/setting-table.ts";
import {
  DEFAULT_SETTINGS,
  loadSettings,
  parseSetting,
  SETTING_KEYS,
  type SettingKey,
  type Settings,
  settingKeys,
} from "../core/settings.ts";

/** The settings of the library, the encoder and the HTTP server: `serve`'s flags. */
export const SERVE_SETTING_KEYS = settingKeys("library", "server");

/** Settings of the library and encoder: everything but what only the HTTP server uses. */
export const LIBRARY_SETTING_KEYS = settingKeys("library");

/** Flag name of a setting, without its dashes. */
export function flagName(key: SettingKey): string {
  return SETTINGS[key].flag;
}

/** commander's camelCase property for a flag, e.g. `max-image-bytes` → `maxImageBytes`. */
function optionKey(flag: string): string {
  return flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

function placeholder(spec: SettingSpec): string {
  if (spec.placeholder !== undefined) return spec.placeholder;
  if (spec.kind === "choice") return (spec.choices ?? []).join("|");
  if (spec.kind === "path") return "dir";
  return "n";
}

/** The help of a setting's flag: what it does, its variable(s) and its default. */
export function settingHelp(key: SettingKey): string {
  const spec: SettingSpec = SETTINGS[key];
  const fallback = DEFAULT_SETTINGS[key];
  const variables = spec.platformEnv === undefined ? spec.env : `${spec.env}, ${spec.platformEnv}`;
  return `${spec.help} (${variables}; default: ${fallback === undefined ? "unset" : String(fallback)})`;
}

/** Adds one `--flag <value>` per setting, its help from the table. */
export function addSettingOptions(
  command: Command,
  keys: readonly SettingKey[] = SERVE_SETTING_KEYS,
): Command {
  for (const key of keys) {
    const spec: SettingSpec = SETTINGS[key];
    const flag = `--${flagName(key)} <${placeholder(spec)}>`;
    if (spec.repeatable) {
      // Given more than once, the values join as the variable's comma-separated list.
      command.option(flag, `${settingHelp(key)}; repeatable`, (value: string, previous?: string) =>
        previous === undefined ? value : `${previous},${value}`,
      );
    } else {
      command.option(flag, settingHelp(key));
    }
  }
  return command;
}

/**
 * Settings from parsed flags (strings), over LONGCLIP_* variables, over defaults. Only the
 * flags of `keys` are read: a command's own option may share a setting's name.
 */
export function settingsFromFlags(
  flags: Record<string, unknown>,
  env: NodeJS.ProcessEnv = process.env,
  keys: readonly SettingKey[] = SETTING_KEYS,
): Settings {
  const overrides: Record<string, unknown> = {};
  for (const key of keys) {
    const flag = flagName(key);
    const raw = flags[optionKey(flag)];
    if (typeof raw !== "string") continue;
    try {
      overrides[key] = parseSetting(key, raw, "the value");
    } catch (error) {
      throw new AppError("invalid_setting", `--${flag}: ${(error as Error).message}`);
    }
  }
  try {
    return loadSettings(overrides as Partial<Settings>, env);
  } catch (error) {
    throw new AppError("invalid_setting", (error as Error).message);
  }
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
