/**
 * The settings table (src/core/setting-table.ts) is the one source of every flag, variable and
 * default: they stay what they were before the table existed, the CLI's flags come from it, and
 * what openapi.yaml and the README say of the settings agrees with it.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import path from "node:path";
import { describe, test } from "node:test";
import { Command } from "commander";
import {
  addSettingOptions,
  LIBRARY_SETTING_KEYS,
  SERVE_SETTING_KEYS,
  settingsFromFlags,
} from "../src/cli/settings.ts";
import { isAppError } from "../src/core/errors.ts";
import { SETTINGS, type SettingSpec } from "../src/core/setting-table.ts";
import {
  DEFAULT_SETTINGS,
  loadSettings,
  PROJECT_ROOT,
  SETTING_KEYS,
  type SettingKey,
  settingKeys,
  withApiKeyFile,
} from "../src/core/settings.ts";
import { tempDir } from "./helpers/library-fixtures.ts";

const MiB = 1024 * 1024;

/**
 * Every setting as the old code had it (Settings, DEFAULT_SETTINGS, envName, PLATFORM_ENV,
 * flagName, SERVER_ONLY_KEYS, placeholder(); cli/pull.ts for --cache), read off it before the
 * table replaced them: key, flag, placeholder, variable, platform variable, scope, default
 * (`<root>` the checkout, `<home>` the home directory). Added on main meanwhile:
 * minDuplicateThreshold, maxFilterValues, maxQueryWindows, maxRequestWindows, sqliteReadWorkers,
 * logFormat, databaseReadUrl, databaseReadMaxLagMs (read replicas), the video limits (maxVideoBytes to
 * ffmpegPath), explainCacheSize, explainOverlaySide and explainZoom (POST /explain); new with the table:
 * --hub-url (pull read only LONGCLIP_HUB_URL). Renaming one breaks every script and deployment that uses it.
 */
const BEFORE = `
modelDir               --model                    dir         LONGCLIP_MODEL_DIR                -    library <root>/models/demo
dataDir                --data                     dir         LONGCLIP_DATA_DIR                 -    library <root>/data
host                   --host                     host        LONGCLIP_HOST                     -    server  127.0.0.1
port                   --port                     n           LONGCLIP_PORT                     PORT server  8080
device                 --device                   device      LONGCLIP_DEVICE                   -    library cpu
threads                --threads                  n           LONGCLIP_THREADS                  -    library 0
imageBatchSize         --image-batch-size         n           LONGCLIP_IMAGE_BATCH_SIZE         -    library 8
preprocess             --preprocess               exact|fast  LONGCLIP_PREPROCESS               -    library exact
preprocessWorkers      --preprocess-workers       n           LONGCLIP_PREPROCESS_WORKERS       -    library 0
nativeJpeg             --native-jpeg              on|off      LONGCLIP_NATIVE_JPEG              -    library on
regions                --regions                  off|auto    LONGCLIP_REGIONS                  -    library off
maxRegions             --max-regions              n           LONGCLIP_MAX_REGIONS              -    library 34
textBatchSize          --text-batch-size          n           LONGCLIP_TEXT_BATCH_SIZE          -    library 32
apiKey                 --api-key                  key         LONGCLIP_API_KEY                  -    server  unset
apiKeyReads            --api-key-reads            on|off      LONGCLIP_API_KEY_READS            -    server  off
mediaRoot              --media-root               dir         LONGCLIP_MEDIA_ROOT               -    library unset
maxImageBytes          --max-image-bytes          n           LONGCLIP_MAX_IMAGE_BYTES          -    library 20971520
maxImagePixels         --max-image-pixels         n           LONGCLIP_MAX_IMAGE_PIXELS         -    library 50000000
maxVideoBytes          --max-video-bytes          n           LONGCLIP_MAX_VIDEO_BYTES          -    library 209715200
maxVideoSeconds        --max-video-seconds        n           LONGCLIP_MAX_VIDEO_SECONDS        -    library 600
maxVideoPixels         --max-video-pixels         n           LONGCLIP_MAX_VIDEO_PIXELS         -    library 8847360
maxVideoFrames         --max-video-frames         n           LONGCLIP_MAX_VIDEO_FRAMES         -    library 32
videoMinIntervalMs     --video-min-interval-ms    n           LONGCLIP_VIDEO_MIN_INTERVAL_MS    -    library 1000
videoMaxIntervalMs     --video-max-interval-ms    n           LONGCLIP_VIDEO_MAX_INTERVAL_MS    -    library 10000
videoSceneThreshold    --video-scene-threshold    fraction    LONGCLIP_VIDEO_SCENE_THRESHOLD    -    library 0.1
videoDecodeTimeoutMs   --video-decode-timeout-ms  n           LONGCLIP_VIDEO_DECODE_TIMEOUT_MS  -    library 120000
ffmpegPath             --ffmpeg                   path        LONGCLIP_FFMPEG                   -    library ffmpeg
maxBatchItems          --max-batch-items          n           LONGCLIP_MAX_BATCH_ITEMS          -    library 64
maxRequestBytes        --max-request-bytes        n           LONGCLIP_MAX_REQUEST_BYTES        -    library 209715200
maxQueryChars          --max-query-chars          n           LONGCLIP_MAX_QUERY_CHARS          -    library 10000
maxK                   --max-k                    n           LONGCLIP_MAX_K                    -    library 1000
maxQueueDepth          --max-queue-depth          n           LONGCLIP_MAX_QUEUE_DEPTH          -    library 256
queryCacheSize         --query-cache-size         n           LONGCLIP_QUERY_CACHE_SIZE         -    library 1024
explainCacheSize       --explain-cache-size       n           LONGCLIP_EXPLAIN_CACHE_SIZE       -    library 256
explainOverlaySide     --explain-overlay-side     n           LONGCLIP_EXPLAIN_OVERLAY_SIDE     -    library 512
explainZoom            --explain-zoom             n           LONGCLIP_EXPLAIN_ZOOM             -    library 3
hnswM                  --hnsw-m                   n           LONGCLIP_HNSW_M                   -    library 16
hnswEfConstruction     --hnsw-ef-construction     n           LONGCLIP_HNSW_EF_CONSTRUCTION     -    library 200
hnswEfSearch           --hnsw-ef-search           n           LONGCLIP_HNSW_EF_SEARCH           -    library 0
hnswShards             --hnsw-shards              n           LONGCLIP_HNSW_SHARDS              -    library 1
indexSaveIntervalMs    --index-save-interval-ms   n           LONGCLIP_INDEX_SAVE_INTERVAL_MS   -    library 30000
databaseUrl            --database-url             url         LONGCLIP_DATABASE_URL             -    library unset
databaseReadUrl        --database-read-url        url         LONGCLIP_DATABASE_READ_URL        -    library unset
databaseReadMaxLagMs   --database-read-max-lag-ms n           LONGCLIP_DATABASE_READ_MAX_LAG_MS -    library 1000
pgVectorType           --pg-vector-type           type        LONGCLIP_PG_VECTOR_TYPE           -    library halfvec
pgBuildMemoryMb        --pg-build-memory-mb       n           LONGCLIP_PG_BUILD_MEMORY_MB       -    library 0
pgBuildWorkers         --pg-build-workers         n           LONGCLIP_PG_BUILD_WORKERS         -    library 0
jobWorker              --job-worker               on|off|auto LONGCLIP_JOB_WORKER               -    library auto
jobLeaseMs             --job-lease-ms             n           LONGCLIP_JOB_LEASE_MS             -    library 60000
maxJobItems            --max-job-items            n           LONGCLIP_MAX_JOB_ITEMS            -    library 1000000
maxQueryImagePixels    --max-query-image-pixels   n           LONGCLIP_MAX_QUERY_IMAGE_PIXELS   -    library 25000000
maxDecodePixels        --max-decode-pixels        n           LONGCLIP_MAX_DECODE_PIXELS        -    library 100000000
maxBufferedBytes       --max-buffered-bytes       n           LONGCLIP_MAX_BUFFERED_BYTES       -    server  536870912
maxJsonBytes           --max-json-bytes           n           LONGCLIP_MAX_JSON_BYTES           -    server  8388608
requestTimeoutMs       --request-timeout-ms       n           LONGCLIP_REQUEST_TIMEOUT_MS       -    server  120000
headersTimeoutMs       --headers-timeout-ms       n           LONGCLIP_HEADERS_TIMEOUT_MS       -    server  20000
idleTimeoutMs          --idle-timeout-ms          n           LONGCLIP_IDLE_TIMEOUT_MS          -    server  10000
maxConnections         --max-connections          n           LONGCLIP_MAX_CONNECTIONS          -    server  1024
allowedHosts           --allowed-hosts            hosts       LONGCLIP_ALLOWED_HOSTS            -    server  unset
corsOrigins            --cors-origins             origins     LONGCLIP_CORS_ORIGINS             -    server  unset
apiKeyFile             --api-key-file             file        LONGCLIP_API_KEY_FILE             -    server  unset
shutdownTimeoutMs      --shutdown-timeout-ms      n           LONGCLIP_SHUTDOWN_TIMEOUT_MS      -    server  25000
textFields             --text-fields              keys        LONGCLIP_TEXT_FIELDS              -    library caption,filename,path,tags
keepUploadFilename     --keep-upload-filename     on|off      LONGCLIP_KEEP_UPLOAD_FILENAME     -    library on
hybridCandidates       --hybrid-candidates        n           LONGCLIP_HYBRID_CANDIDATES        -    library 100
duplicateNeighbours    --duplicate-neighbours     n           LONGCLIP_DUPLICATE_NEIGHBOURS     -    library 10
nearDuplicateThreshold --near-duplicate-threshold cosine      LONGCLIP_NEAR_DUPLICATE_THRESHOLD -    library 0
minDuplicateThreshold  --min-duplicate-threshold  cosine      LONGCLIP_MIN_DUPLICATE_THRESHOLD  -    library 0.5
maxFilterValues        --max-filter-values        n           LONGCLIP_MAX_FILTER_VALUES        -    library 256
maxQueryWindows        --max-query-windows        n           LONGCLIP_MAX_QUERY_WINDOWS        -    library 8
maxRequestWindows      --max-request-windows      n           LONGCLIP_MAX_REQUEST_WINDOWS      -    library 32
sqliteReadWorkers      --sqlite-read-workers      n           LONGCLIP_SQLITE_READ_WORKERS      -    library 2
logFormat              --log-format               auto|pretty|json LONGCLIP_LOG_FORMAT          -    server  auto
cacheDir               --cache                    dir         LONGCLIP_CACHE                    -    pull    <home>/.cache/longclip
hubUrl                 --hub-url                  url         LONGCLIP_HUB_URL                  -    pull    https://huggingface.co
`
  .trim()
  .split("\n")
  .map((line) => {
    const [key = "", flag = "", placeholder = "", env = "", platform = "", scope = "", shown = ""] =
      line.split(/ +/);
    const fallback =
      shown === "unset"
        ? undefined
        : /^\d+(\.\d+)?$/.test(shown)
          ? Number(shown)
          : shown.replace("<root>", PROJECT_ROOT).replace("<home>", homedir());
    return {
      key,
      flag,
      placeholder,
      env,
      platform: platform === "-" ? null : platform,
      scope,
      fallback,
    };
  });

/** `--flag <placeholder>` of each option of a command, by its long flag. */
function optionsOf(command: Command): Map<string, string> {
  return new Map(command.options.map((option) => [option.long ?? "", option.flags]));
}

describe("the settings table", () => {
  test("every flag, variable, scope and default is what it was", () => {
    const now = SETTING_KEYS.map((key) => {
      const spec: SettingSpec = SETTINGS[key];
      return [
        key,
        `--${spec.flag}`,
        spec.env,
        spec.platformEnv ?? null,
        spec.scope,
        DEFAULT_SETTINGS[key],
      ];
    });
    assert.deepEqual(
      now,
      BEFORE.map((row) => [row.key, row.flag, row.env, row.platform, row.scope, row.fallback]),
    );
  });

  test("the CLI's flags and placeholders come from the table", () => {
    const command = addSettingOptions(new Command(), SETTING_KEYS);
    const options = optionsOf(command);
    for (const { flag, placeholder } of BEFORE) {
      assert.equal(options.get(flag), `${flag} <${placeholder}>`);
    }
    const help = new Map(command.options.map((option) => [option.long, option.description]));
    assert.equal(
      help.get("--max-image-bytes"),
      "largest accepted encoded image, in bytes (LONGCLIP_MAX_IMAGE_BYTES; default: 20971520)",
    );
    assert.equal(help.get("--port"), "port to listen on (LONGCLIP_PORT, PORT; default: 8080)");
    assert.match(help.get("--api-key") ?? "", /\(LONGCLIP_API_KEY; default: unset\)$/);
  });

  test("flags, variables and defaults are each one setting's", () => {
    for (const field of ["flag", "env"] as const) {
      const names = SETTING_KEYS.map((key) => SETTINGS[key][field]);
      assert.equal(new Set(names).size, names.length, `${field}s are unique`);
    }
    assert.deepEqual(
      [...SERVE_SETTING_KEYS, ...settingKeys("pull")].sort(),
      [...SETTING_KEYS].sort(),
    );
    assert.ok(LIBRARY_SETTING_KEYS.every((key) => SERVE_SETTING_KEYS.includes(key)));
  });

  test("values are parsed by kind; a bad one names where it came from", () => {
    const settings = loadSettings(
      {},
      {
        LONGCLIP_DEVICE: "auto",
        LONGCLIP_MEDIA_ROOT: "media",
        LONGCLIP_CACHE: "cache",
        LONGCLIP_HUB_URL: "http://127.0.0.1:1/",
        LONGCLIP_THREADS: "3",
      },
    );
    assert.equal(settings.device, "auto");
    assert.equal(settings.mediaRoot, path.resolve("media"));
    assert.equal(settings.cacheDir, path.resolve("cache"));
    assert.equal(settings.hubUrl, "http://127.0.0.1:1/");
    assert.equal(settings.threads, 3);
    assert.throws(
      () => loadSettings({}, { LONGCLIP_DEVICE: "gpu" }),
      /LONGCLIP_DEVICE must be cpu, cuda or auto, not "gpu"/,
    );
    assert.throws(
      () => loadSettings({}, { LONGCLIP_THREADS: "1.5" }),
      /LONGCLIP_THREADS must be a non-negative integer/,
    );
    assert.throws(() => loadSettings({}, { LONGCLIP_THREADS: "-1" }), /non-negative integer/);
    // The batch sizes start at 1 (checked after loading before the table).
    assert.throws(
      () => loadSettings({}, { LONGCLIP_TEXT_BATCH_SIZE: "0" }),
      /LONGCLIP_TEXT_BATCH_SIZE must be an integer of at least 1, not "0"/,
    );
    assert.throws(
      () => settingsFromFlags({ imageBatchSize: "0" }, {}),
      (error: unknown) =>
        isAppError(error) &&
        error.code === "invalid_setting" &&
        error.message === '--image-batch-size: the value must be an integer of at least 1, not "0"',
    );
  });

  test("only the given keys' flags are read (a command's own option may share a name)", () => {
    assert.equal(settingsFromFlags({ threads: "2" }, {}, settingKeys("pull")).threads, 0);
    assert.equal(settingsFromFlags({ threads: "2" }, {}).threads, 2);
  });

  test("--api-key-file: its first line is the key; a missing or empty file is invalid_setting", () => {
    const dir = tempDir("longclip-key-file-");
    const file = path.join(dir, "key");
    writeFileSync(file, "  file-key  \nsecond line\n");
    const settings = loadSettings({ apiKey: "flag-key" }, { LONGCLIP_API_KEY_FILE: file });
    assert.equal(withApiKeyFile(settings).apiKey, "file-key");
    assert.equal(withApiKeyFile(loadSettings({}, {})).apiKey, undefined);
    writeFileSync(file, "\n");
    assert.throws(
      () => withApiKeyFile(settings),
      (error: unknown) =>
        isAppError(error) &&
        error.code === "invalid_setting" &&
        /--api-key-file: .* is empty/.test(error.message),
    );
    assert.throws(
      () => withApiKeyFile({ ...settings, apiKeyFile: path.join(dir, "missing") }),
      (error: unknown) =>
        isAppError(error) &&
        error.code === "invalid_setting" &&
        /cannot read .*ENOENT/.test(error.message),
    );
  });
});

/** `1000`, `0.5`, `50,000,000`, `20 MiB`, `120 s` (a *Ms setting), as a number. */
function quantity(text: string, key: SettingKey): number | undefined {
  const match = /^([\d,]+(?:\.\d+)?)(?:\s*(MiB|s))?$/.exec(text.trim());
  if (match === null) return undefined;
  const value = Number((match[1] ?? "").replaceAll(",", ""));
  if (match[2] === "MiB") return value * MiB;
  if (match[2] === "s") return key.endsWith("Ms") ? value * 1000 : undefined;
  return value;
}

function keyOfEnv(env: string): SettingKey {
  const key = SETTING_KEYS.find((k) => SETTINGS[k].env === env);
  assert.ok(key, `${env} is a setting's variable`);
  return key;
}

describe("what the docs say of the settings agrees with the table", () => {
  test("openapi.yaml's limits: variable, flag and default", () => {
    const spec = readFileSync(path.join(PROJECT_ROOT, "openapi.yaml"), "utf8");
    const mentions = [
      ...spec.matchAll(/`(LONGCLIP_[A-Z_]+)`(?: \/ `--([a-z-]+)`)? \(([^),]+(?:,\d{3})*)/g),
    ];
    assert.ok(mentions.length >= 14, `found the limits (${mentions.length})`);
    for (const [, env = "", flag, shown = ""] of mentions) {
      const key = keyOfEnv(env);
      if (flag !== undefined) assert.equal(flag, SETTINGS[key].flag, env);
      assert.equal(quantity(shown, key), DEFAULT_SETTINGS[key], `${env}'s default in openapi.yaml`);
    }
  });

  test("openapi.yaml's defaults named by setting key: `maxQueryWindows` (8 by default)", () => {
    const spec = readFileSync(path.join(PROJECT_ROOT, "openapi.yaml"), "utf8");
    const mentions = [
      ...spec.matchAll(
        /`([a-z][A-Za-z]+)`[^`(]{0,40}\((?:default setting )?([\d,.]+)(?: by default)?[;)]/g,
      ),
    ];
    assert.ok(mentions.length >= 5, `found the defaults (${mentions.length})`);
    for (const [, key = "", shown = ""] of mentions) {
      assert.ok(SETTING_KEYS.includes(key as SettingKey), `${key} in openapi.yaml is a setting`);
      assert.equal(quantity(shown, key as SettingKey), DEFAULT_SETTINGS[key as SettingKey], key);
    }
  });

  test("the README's settings table: every setting of serve, its flag, variable and default", () => {
    const readme = readFileSync(path.join(PROJECT_ROOT, "README.md"), "utf8");
    const section = readme.slice(readme.indexOf("## Configuration and limits"));
    const rows = section
      .slice(0, section.indexOf("\n\n", section.indexOf("| --- |")))
      .split("\n")
      .filter((line) => line.startsWith("| `--"));
    const seen = new Set<SettingKey>();
    for (const row of rows) {
      const [flags = "", envs = "", defaults = ""] = row
        .split(" | ")
        .map((cell) => cell.replace(/^\| /, ""));
      const flagList = [...flags.matchAll(/`--([a-z-]+)`/g)].map((m) => m[1]);
      const envList = [...envs.matchAll(/`(LONGCLIP_[A-Z_]+)`/g)].map((m) => m[1]);
      const defaultList = flagList.length > 1 ? defaults.split(", ") : [defaults];
      flagList.forEach((flag, i) => {
        const key = SETTING_KEYS.find((k) => SETTINGS[k].flag === flag);
        assert.ok(key, `--${flag} in the README is a setting's flag`);
        seen.add(key);
        if (envList[i] !== undefined) assert.equal(envList[i], SETTINGS[key].env, `--${flag}`);
        const shown = (defaultList[i] ?? "").replace(/ \(.*\)$/, "").replaceAll("`", "");
        const fallback = DEFAULT_SETTINGS[key];
        if (shown === "unset") assert.equal(fallback, undefined, `--${flag}`);
        else if (typeof fallback === "number")
          assert.equal(quantity(shown, key), fallback, `--${flag}`);
        else if (SETTINGS[key].kind === "path")
          assert.equal(path.resolve(PROJECT_ROOT, shown), fallback, `--${flag}`);
        else assert.equal(shown, fallback, `--${flag}`);
      });
    }
    assert.deepEqual(
      SERVE_SETTING_KEYS.filter((key) => !seen.has(key)),
      [],
      "every setting of serve has a row",
    );
  });

  test("where src/ names a setting beside its variable, the variable is that setting's", () => {
    // Messages say "(maxK, LONGCLIP_MAX_K)" or "--media-root DIR (LONGCLIP_MEDIA_ROOT)": copies
    // of the table's names, checked here against it.
    const pairs = readdirSync(path.join(PROJECT_ROOT, "src"), { recursive: true, encoding: "utf8" })
      .filter((name) => name.endsWith(".ts") && !name.endsWith(".gen.ts"))
      .flatMap((name) => {
        const text = readFileSync(path.join(PROJECT_ROOT, "src", name), "utf8");
        const byKey = [...text.matchAll(/[("]([a-z][A-Za-z]+), (LONGCLIP_[A-Z_]+)[)"]/g)].map(
          ([, key = "", env = ""]) => ({ name, env, key, flag: undefined }),
        );
        const byFlag = [...text.matchAll(/--([a-z-]+)(?: [A-Za-z]+)? \((LONGCLIP_[A-Z_]+)\b/g)].map(
          ([, flag = "", env = ""]) => ({ name, env, key: undefined, flag }),
        );
        return [...byKey, ...byFlag];
      });
    assert.ok(pairs.length >= 20, `found the pairs (${pairs.length})`);
    for (const { name, env, key, flag } of pairs) {
      const owner = keyOfEnv(env);
      if (key !== undefined) assert.equal(key, owner, `src/${name}: ${key}, ${env}`);
      if (flag !== undefined)
        assert.equal(flag, SETTINGS[owner].flag, `src/${name}: --${flag} (${env})`);
    }
  });

  test("every LONGCLIP_ variable named in src/ and openapi.yaml is a setting's", () => {
    // Names that are not variables: a constant of the converter.
    const notVariables = new Set(["LONGCLIP_CONTEXT"]);
    const files = [
      path.join(PROJECT_ROOT, "openapi.yaml"),
      ...readdirSync(path.join(PROJECT_ROOT, "src"), { recursive: true, encoding: "utf8" })
        .filter((name) => name.endsWith(".ts") && !name.endsWith(".gen.ts"))
        .map((name) => path.join(PROJECT_ROOT, "src", name)),
    ];
    const envs = new Set(SETTING_KEYS.map((key) => SETTINGS[key].env as string));
    const unknown = files.flatMap((file) =>
      [...readFileSync(file, "utf8").matchAll(/\bLONGCLIP_[A-Z][A-Z_]*[A-Z]\b/g)]
        .map((m) => m[0])
        .filter((name) => !envs.has(name) && !notVariables.has(name))
        .map((name) => `${path.relative(PROJECT_ROOT, file)}: ${name}`),
    );
    assert.deepEqual(unknown, []);
  });
});
