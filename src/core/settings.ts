/**
 * Every setting and limit of the product, from the table in ./setting-table.ts: the `Settings`
 * type, the defaults and the environment parsing (the flags and their help are in
 * src/cli/settings.ts). A value comes from the flag, else the variable, else the default.
 */
import { readFileSync } from "node:fs";
import { availableParallelism, homedir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { AppError } from "./errors.ts";
import { SETTINGS, type SettingScope, type SettingSpec } from "./setting-table.ts";

export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");

type Table = typeof SETTINGS;
export type SettingKey = keyof Table;

type ValueOf<S> = S extends { readonly kind: "choice"; readonly choices: readonly (infer C)[] }
  ? C
  : S extends { readonly kind: "integer" | "fraction" }
    ? number
    : string;

/** The value of every setting: unset ones (no default) are undefined. */
export type Settings = {
  -readonly [K in SettingKey]:
    | ValueOf<Table[K]>
    | (Table[K]["default"] extends undefined ? undefined : never);
};

export type Device = Settings["device"];

/** The limits an image is checked against before it is decoded. */
export type ImageLimits = Pick<Settings, "maxImageBytes" | "maxImagePixels">;

/** What a video is checked against and how its frames are sampled (src/preprocess/video/). */
export type VideoSettings = Pick<
  Settings,
  | "maxVideoBytes"
  | "maxVideoSeconds"
  | "maxVideoPixels"
  | "maxVideoFrames"
  | "videoMinIntervalMs"
  | "videoMaxIntervalMs"
  | "videoSceneThreshold"
  | "videoDecodeTimeoutMs"
  | "ffmpegPath"
>;

export const SETTING_KEYS = Object.keys(SETTINGS) as SettingKey[];

/** The keys of the settings of `scopes`, in table order. */
export function settingKeys(...scopes: SettingScope[]): SettingKey[] {
  return SETTING_KEYS.filter((key) => scopes.includes(SETTINGS[key].scope));
}

/** A `path` setting's default: under the home directory for `~/...`, else the checkout. */
function defaultOf(spec: SettingSpec): SettingSpec["default"] {
  if (spec.kind !== "path" || typeof spec.default !== "string") return spec.default;
  return spec.default.startsWith("~/")
    ? path.join(homedir(), spec.default.slice(2))
    : path.resolve(PROJECT_ROOT, spec.default);
}

export const DEFAULT_SETTINGS: Settings = Object.fromEntries(
  SETTING_KEYS.map((key) => [key, defaultOf(SETTINGS[key])]),
) as Settings;

/** The shard count `hnswShards` means (0: one per core). */
export function hnswShardCount(setting: number): number {
  return setting > 0 ? setting : availableParallelism();
}

/** LONGCLIP_MODEL_DIR for modelDir, LONGCLIP_MAX_IMAGE_BYTES for maxImageBytes, ... */
export function envName(key: SettingKey): string {
  return SETTINGS[key].env;
}

/** Settings from defaults, then environment variables, then explicit overrides (CLI flags). */
export function loadSettings(
  overrides: Partial<Settings> = {},
  env: NodeJS.ProcessEnv = process.env,
): Settings {
  const settings: Settings = { ...DEFAULT_SETTINGS };
  const target = settings as Record<SettingKey, unknown>;
  for (const key of SETTING_KEYS) {
    const spec: SettingSpec = SETTINGS[key];
    for (const name of [spec.env, spec.platformEnv]) {
      const raw = name === undefined ? undefined : env[name];
      if (raw === undefined || raw === "") continue;
      target[key] = parseSetting(key, raw, name);
      break;
    }
  }
  for (const [key, value] of Object.entries(overrides)) {
    if (value !== undefined) target[key as SettingKey] = value;
  }
  return settings;
}

/** A setting from its text; errors name `variable`, the variable the text came from. */
export function parseSetting(
  key: SettingKey,
  raw: string,
  variable: string = envName(key),
): Settings[SettingKey] {
  const spec: SettingSpec = SETTINGS[key];
  switch (spec.kind) {
    case "choice": {
      const choices = spec.choices ?? [];
      if (!choices.includes(raw)) {
        const words = `${choices.slice(0, -1).join(", ")} or ${choices.at(-1)}`;
        throw new Error(`${variable} must be ${words}, not "${raw}"`);
      }
      return raw as Settings[SettingKey];
    }
    case "path":
      return path.resolve(raw);
    case "text":
      return raw;
    case "fraction": {
      const value = Number(raw);
      if (raw.trim() === "" || !Number.isFinite(value) || value < 0 || value > 1) {
        throw new Error(`${variable} must be a number from 0 to 1, not "${raw}"`);
      }
      return value;
    }
    case "integer": {
      const value = Number(raw);
      const min = spec.min ?? 0;
      if (!Number.isFinite(value) || !Number.isInteger(value) || value < min) {
        throw new Error(
          min === 0
            ? `${variable} must be a non-negative integer, not "${raw}"`
            : `${variable} must be an integer of at least ${min}, not "${raw}"`,
        );
      }
      return value;
    }
  }
}

/** The key from --api-key-file (its first line, trimmed) over --api-key / LONGCLIP_API_KEY. */
export function withApiKeyFile(settings: Settings): Settings {
  if (settings.apiKeyFile === undefined) return settings;
  const flag = `--${SETTINGS.apiKeyFile.flag}`;
  let key: string;
  try {
    key = readFileSync(settings.apiKeyFile, "utf8").split("\n")[0]?.trim() ?? "";
  } catch (error) {
    throw new AppError(
      "invalid_setting",
      `${flag}: cannot read ${settings.apiKeyFile} (${(error as NodeJS.ErrnoException).code}); check the path and its permissions.`,
    );
  }
  if (key === "") {
    throw new AppError("invalid_setting", `${flag}: ${settings.apiKeyFile} is empty.`);
  }
  return { ...settings, apiKey: key };
}
