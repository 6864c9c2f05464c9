/**
 * Builds the web UI (web/) into dist/web/index.html: web/main.ts bundled with esbuild and
 * web/style.css minified, both inlined into web/index.html, so the server serves one
 * document and the page needs no other request than the API's.
 *
 *   npm run build:web
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { build, transform } from "esbuild";
import { WEB_DIST_DIR, WEB_SOURCE_DIR } from "../src/server/web.ts";

const TARGET = ["es2022", "chrome110", "firefox110", "safari16"];

/** Text that cannot end the <script>/<style> element it is inlined into. */
function inlineSafe(code: string, tag: "script" | "style"): string {
  return code.replace(new RegExp(`</(${tag})`, "gi"), "<\\/$1");
}

export async function buildWeb(outDir = WEB_DIST_DIR): Promise<string> {
  const script = await build({
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
  const css = await transform(readFileSync(path.join(WEB_SOURCE_DIR, "style.css"), "utf8"), {
    loader: "css",
    minify: true,
    target: TARGET,
  });
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

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const out = await buildWeb();
  process.stdout.write(`built ${path.relative(process.cwd(), out)}\n`);
}
