/**
 * End-to-end helpers: the real server (real library, SQLite, HNSW and ONNX model) listening
 * on 127.0.0.1, Debian's Chromium driven through playwright-core with a fresh profile and
 * every request checked to stay on 127.0.0.1, and screenshots under artifacts/e2e/.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import type { FastifyInstance } from "fastify";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { loadSettings, PROJECT_ROOT, type Settings } from "../../src/core/settings.ts";
import { Encoder } from "../../src/encode/encoder.ts";
import { JobService } from "../../src/jobs/service.ts";
import { startJobWorker } from "../../src/jobs/worker.ts";
import { indexGalleryIfNew } from "../../src/library/gallery.ts";
import { createLibrary } from "../../src/library/index.ts";
import { buildApp } from "../../src/server/app.ts";
import { DEMO_MODEL_DIR } from "../helpers/demo-model.ts";

export const CHROMIUM = process.env.LONGCLIP_CHROMIUM ?? "/usr/bin/chromium";
export const SCREENSHOT_DIR = path.join(PROJECT_ROOT, "artifacts", "e2e");
/** Skip reason for browser tests: no Chromium. */
export const SKIP_BROWSER: string | false = existsSync(CHROMIUM)
  ? false
  : `skipped: Chromium not found at ${CHROMIUM} (install it with apt-get install chromium, or set LONGCLIP_CHROMIUM); .ci/run installs it`;

/** The model the page tests serve: the demo model (models/demo). */
export function e2eModelDir(): string {
  return DEMO_MODEL_DIR;
}

export interface RunningServer {
  app: FastifyInstance;
  base: string;
  settings: Settings;
  close(): Promise<void>;
}

/**
 * The page's server on a new data directory (the demo model unless `extra.modelDir` names
 * another); with `gallery`, the demo model's sample gallery is
 * indexed first, as `longclip serve` does for a new user.
 */
export async function startServer(
  extra: Partial<Settings> = {},
  { gallery = false }: { gallery?: boolean } = {},
): Promise<RunningServer> {
  const modelDir = extra.modelDir ?? e2eModelDir();
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "longclip-e2e-data-"));
  const settings = loadSettings(
    { modelDir, dataDir, threads: 1, imageBatchSize: 4, indexSaveIntervalMs: 0, ...extra },
    {},
  );
  const encoder = await Encoder.load(modelDir, settings);
  const library = await createLibrary(settings, encoder);
  if (gallery) await indexGalleryIfNew(library, modelDir, settings.maxBatchItems);
  const jobs = new JobService(library.store.jobs, settings);
  const app = buildApp(settings, library, { tokenizer: encoder.tokenizer, jobs });
  const runner = startJobWorker(settings, library);
  if (runner !== undefined) {
    jobs.onCreated = () => runner.poke();
    app.addHook("preClose", () => runner.stop());
  }
  const base = await app.listen({ host: "127.0.0.1", port: 0 });
  return {
    app,
    base,
    settings,
    async close() {
      await app.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export interface Browser {
  context: BrowserContext;
  page: Page;
  /** Every URL the page tried to load that was not on 127.0.0.1 (aborted). */
  external: string[];
  /** Console errors and uncaught page errors. */
  errors: string[];
  close(): Promise<void>;
}

const LOCAL_SCHEMES = new Set(["data:", "blob:", "about:"]);

/** Chromium at 1280×900; `locale` and `timezoneId` as a person elsewhere would have them. */
export async function launchBrowser(
  where: { locale?: string; timezoneId?: string } = {},
): Promise<Browser> {
  const profile = mkdtempSync(path.join(os.tmpdir(), "longclip-e2e-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    viewport: { width: 1280, height: 900 },
    ...where,
  });
  const external: string[] = [];
  const errors: string[] = [];
  await context.route("**/*", (route) => {
    const url = new URL(route.request().url());
    if (url.hostname === "127.0.0.1" || LOCAL_SCHEMES.has(url.protocol)) return route.continue();
    external.push(url.href);
    return route.abort();
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("pageerror", (error) => errors.push(`pageerror: ${error.message}`));
  page.on("console", (message) => {
    // 4xx answers the page handles itself (401 before the key prompt, 400 on a bad query)
    // are logged by Chromium as failed resources; they are not page errors.
    if (message.type() === "error" && !/Failed to load resource/.test(message.text())) {
      errors.push(`console: ${message.text()}`);
    }
  });
  return {
    context,
    page,
    external,
    errors,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

export async function screenshot(page: Page, name: string): Promise<void> {
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  await page.screenshot({ path: path.join(SCREENSHOT_DIR, `${name}.png`), fullPage: true });
}
