#!/usr/bin/env node
// Entry point of the `longclip` CLI: runs the compiled dist/cli/main.js (`npm run build`).
// In a checkout whose dist/ is missing or older than a file under src/, it runs the
// TypeScript sources through tsx (a development dependency) instead, so a fresh clone and
// an edit-and-test loop never run stale JavaScript. An install without src/ (the Docker
// image) always runs dist/.
import { existsSync, readdirSync, statSync } from "node:fs";

const compiled = new URL("../dist/cli/main.js", import.meta.url);
const sources = new URL("../src/", import.meta.url);

function newestMtime(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = new URL(entry.name + (entry.isDirectory() ? "/" : ""), dir);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(full) : statSync(full).mtimeMs);
  }
  return newest;
}

function compiledIsCurrent() {
  if (!existsSync(compiled)) return false;
  return !existsSync(sources) || newestMtime(sources) <= statSync(compiled).mtimeMs;
}

if (compiledIsCurrent()) {
  await import(compiled.href);
} else {
  let tsx;
  try {
    tsx = await import("tsx/esm/api");
  } catch {
    process.stderr.write(
      "longclip: dist/cli/main.js is missing or older than src/, and tsx (a development dependency) is not installed to run the sources. Run npm ci, then npm run build.\n",
    );
    process.exit(1);
  }
  tsx.register();
  await import(new URL("../src/cli/main.ts", import.meta.url).href);
}
