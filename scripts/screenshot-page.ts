/**
 * The page's first screen as a new user sees it: `longclip serve` on a new data directory
 * with the demo model (its sample gallery indexed), opened in Debian's Chromium at 1280×900,
 * photographed once the library's thumbnails have loaded, written as a palette PNG.
 *
 *   npx tsx scripts/screenshot-page.ts [--out docs/figures/first-screen.png] [--query TEXT]
 *
 * --query types TEXT into the box and searches first (the screen after a search).
 */
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";
import sharp from "sharp";
import { loadSettings, PROJECT_ROOT } from "../src/core/settings.ts";
import { Encoder } from "../src/encode/encoder.ts";
import { indexGalleryIfNew } from "../src/library/gallery.ts";
import { createLibrary } from "../src/library/index.ts";
import { buildApp } from "../src/server/app.ts";

interface PageWindow {
  innerHeight: number;
  document: {
    querySelectorAll(selector: string): ArrayLike<{
      complete: boolean;
      naturalWidth: number;
      getBoundingClientRect(): { top: number };
    }>;
  };
}

const { values } = parseArgs({
  options: {
    out: { type: "string", default: path.join("docs", "figures", "first-screen.png") },
    query: { type: "string" },
    chromium: { type: "string", default: process.env.LONGCLIP_CHROMIUM ?? "/usr/bin/chromium" },
  },
});

const dataDir = mkdtempSync(path.join(os.tmpdir(), "longclip-screenshot-"));
const settings = loadSettings({ dataDir, threads: 1 }, {});
const encoder = await Encoder.load(settings.modelDir, settings);
const library = await createLibrary(settings, encoder);
const gallery = await indexGalleryIfNew(library, settings.modelDir, settings.maxBatchItems);
const app = buildApp(settings, library, { tokenizer: encoder.tokenizer });
const base = await app.listen({ host: "127.0.0.1", port: 0 });
const profile = mkdtempSync(path.join(os.tmpdir(), "longclip-screenshot-chromium-"));
try {
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: values.chromium,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
    viewport: { width: 1280, height: 900 },
  });
  const page = context.pages()[0] ?? (await context.newPage());
  await page.goto(`${base}/`);
  await page.locator("#results .card img").first().waitFor();
  if (values.query) {
    await page.fill("#query", values.query);
    await page.click("#search-button");
    await page.locator("#results-status", { hasText: /result/ }).waitFor();
  }
  // Every thumbnail on screen has arrived (lazy ones further down never load here). This
  // script is type-checked without the DOM library, so the page is reached through a shape.
  await page.waitForFunction(() => {
    const { document, innerHeight } = globalThis as unknown as PageWindow;
    return Array.from(document.querySelectorAll("#results img")).every(
      (img) =>
        img.getBoundingClientRect().top > innerHeight || (img.complete && img.naturalWidth > 0),
    );
  });
  const out = path.resolve(PROJECT_ROOT, values.out as string);
  mkdirSync(path.dirname(out), { recursive: true });
  // A 256-colour palette keeps the README's picture small (flat UI colours survive it).
  await sharp(await page.screenshot())
    .png({ palette: true, colours: 256, effort: 10 })
    .toFile(out);
  await context.close();
  console.log(
    `${path.relative(process.cwd(), out)}: ${gallery?.indexed ?? 0} gallery images indexed, first screen at 1280×900`,
  );
} finally {
  await app.close();
  rmSync(profile, { recursive: true, force: true });
  rmSync(dataDir, { recursive: true, force: true });
}
