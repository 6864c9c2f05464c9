/**
 * The web UI's page on disk: where its sources (web/) and the built document
 * (dist/web/index.html) live, whether the built one is stale, and the build itself — web/main.ts
 * bundled with esbuild and web/style.css minified, both inlined into web/index.html, so the
 * server serves one document and the page needs no other request than the API's.
 *
 * Both the server (src/server/web.ts, which rebuilds a stale page in a checkout) and
 * `npm run build:web` (scripts/build-web.ts) use this module; esbuild, a development
 * dependency, is loaded only when a build runs, so a production install serves the page
 * built into its image without it.
 */
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  statSync,
  writeFileSync,
} from "node:fs";
import path from "node:path";
import { PROJECT_ROOT } from "../core/settings.ts";

export const WEB_SOURCE_DIR = path.join(PROJECT_ROOT, "web");
export const WEB_DIST_DIR = path.join(PROJECT_ROOT, "dist", "web");
export const PAGE_FILE = path.join(WEB_DIST_DIR, "index.html");

const TARGET = ["es2022", "chrome110", "firefox110", "safari16"];

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    const mtime = entry.isDirectory() ? newestMtime(full) : statSync(full).mtimeMs;
    newest = Math.max(newest, mtime);
  }
  return newest;
}

/** True when dist/web/index.html is missing or older than a file under web/. */
export function pageIsStale(): boolean {
  if (!existsSync(PAGE_FILE)) return true;
  if (!existsSync(WEB_SOURCE_DIR)) return false;
  return newestMtime(WEB_SOURCE_DIR) > statSync(PAGE_FILE).mtimeMs;
}

/** Text that cannot end the <script>/<style> element it is inlined into. */
function inlineSafe(code: string, tag: "script" | "style"): string {
  return code.replace(new RegExp(`</(${tag})`, "gi"), "<\\/$1");
}

/** Builds web/ into `outDir`/index.html; returns the path of the page. */
export async function buildWeb(outDir = WEB_DIST_DIR): Promise<string> {
  let esbuild: typeof import("esbuild");
  try {
    esbuild = await import("esbuild");
  } catch (error) {
    throw new Error(
      `building the web UI needs esbuild, a development dependency (${(error as Error).message}); run npm install (without --omit=dev) in a full checkout, then npm run build:web`,
    );
  }
  const script = await esbuild.build({
    entryPoints: [path.join(WEB_SOURCE_DIR, "main.ts")],
    bundle: true,
    format: "esm",
    minify: true,
    write: false,
    target: TARGET,
    platform: "browser",
    legalComments: "none",
    logLevel: "silent",
  });
  const js = script.outputFiles[0]?.text ?? "";
  const css = await esbuild.transform(
    readFileSync(path.join(WEB_SOURCE_DIR, "style.css"), "utf8"),
    { loader: "css", minify: true, target: TARGET },
  );
  const template = readFileSync(path.join(WEB_SOURCE_DIR, "index.html"), "utf8");
  const html = template
    .replace(
      "<!--longclip-style-->",
      () => `<style>${inlineSafe(css.code.trim(), "style")}</style>`,
    )
    .replace(
      "<!--longclip-script-->",
      () => `<script type="module">${inlineSafe(js.trim(), "script")}</script>`,
    );
  mkdirSync(outDir, { recursive: true });
  const out = path.join(outDir, "index.html");
  // Written aside and renamed, so a server never reads a half-written page.
  const temp = `${out}.${process.pid}.tmp`;
  writeFileSync(temp, html);
  renameSync(temp, out);
  return out;
}
