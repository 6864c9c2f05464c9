/**
 * The time to switch a library to another model (issue 26, item 1): builds a library of
 * --items distinct images with the demo model, then times `longclip serve --model NEW` on that
 * data directory from spawn to the first 200 of /ready (it re-embeds every item by itself).
 * NEW is the demo model under another model id: the same cost as a real switch between two
 * models of the demo's size; a larger model costs what its encoder costs per image.
 *
 *   npm run bench:switch -- --items 10000
 */
import { spawn } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import sharp from "sharp";
import { DEFAULT_SETTINGS, PROJECT_ROOT } from "../../src/core/settings.ts";
import { Encoder } from "../../src/encode/encoder.ts";
import { createLibrary } from "../../src/library/library.ts";

const { values } = parseArgs({
  options: {
    items: { type: "string", default: "10000" },
    threads: { type: "string", default: "0" },
  },
});
const items = Number(values.items);
const threads = values.threads ?? "0";
const demo = path.join(PROJECT_ROOT, "models", "demo");
const root = mkdtempSync(path.join(os.tmpdir(), "longclip-bench-switch-"));
const dataDir = path.join(root, "data");

/** A 64×64 PNG whose pixels depend on `seed`: every image is distinct. */
function image(seed: number): Promise<Buffer> {
  const pixels = Buffer.alloc(64 * 64 * 3);
  for (let i = 0; i < pixels.length; i++) pixels[i] = (seed * 31 + i * ((seed % 7) + 1)) % 256;
  return sharp(pixels, { raw: { width: 64, height: 64, channels: 3 } })
    .png()
    .toBuffer();
}

async function buildLibrary(): Promise<number> {
  const settings = { ...DEFAULT_SETTINGS, modelDir: demo, dataDir, threads: Number(threads) };
  const encoder = await Encoder.load(demo, settings);
  const library = await createLibrary(settings, encoder);
  const started = performance.now();
  for (let start = 0; start < items; start += 64) {
    const count = Math.min(64, items - start);
    const inputs = await Promise.all(
      Array.from({ length: count }, async (_, k) => ({ bytes: await image(start + k) })),
    );
    const results = await library.index(inputs);
    const failed = results.filter((r) => r.status === "failed");
    if (failed.length > 0) throw new Error(`indexing failed: ${JSON.stringify(failed[0])}`);
  }
  const seconds = (performance.now() - started) / 1000;
  await library.close();
  return seconds;
}

/** Spawns `serve --model DIR` and resolves with the seconds until /ready answers 200. */
async function secondsToReady(modelDir: string): Promise<number> {
  const started = performance.now();
  const child = spawn(
    process.execPath,
    [
      path.join(PROJECT_ROOT, "bin", "longclip.js"),
      "serve",
      ...["--model", modelDir, "--data", dataDir, "--port", "0", "--threads", threads],
    ],
    {
      cwd: PROJECT_ROOT,
      env: { ...process.env, LONGCLIP_PORT: "" },
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  let out = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    out += chunk.toString();
  });
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`serve exited with ${child.exitCode}: ${out}`);
      const address = /"address":"([^"]+)"/.exec(out)?.[1];
      if (address !== undefined) {
        const ready = await fetch(`${address}/ready`).catch(() => undefined);
        if (ready?.status === 200) return (performance.now() - started) / 1000;
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  } finally {
    child.kill("SIGTERM");
    await new Promise((resolve) => child.on("exit", resolve));
  }
}

try {
  const indexSeconds = await buildLibrary();
  process.stdout.write(
    `built a library of ${items} items with the demo model in ${indexSeconds.toFixed(1)} s\n`,
  );
  const other = path.join(root, "other-model");
  cpSync(demo, other, { recursive: true });
  const config = JSON.parse(readFileSync(path.join(other, "config.json"), "utf8"));
  config.model_id = `${config.model_id}-other`;
  writeFileSync(path.join(other, "config.json"), JSON.stringify(config));
  const sameSeconds = await secondsToReady(demo);
  const switchSeconds = await secondsToReady(other);
  process.stdout.write(
    `serve on the same model, spawn to ready: ${sameSeconds.toFixed(1)} s\n` +
      `serve --model NEW (re-embeds ${items} items), spawn to ready: ${switchSeconds.toFixed(1)} s\n` +
      `the switch's own cost (difference): ${(switchSeconds - sameSeconds).toFixed(1)} s, ${(items / Math.max(0.1, switchSeconds - sameSeconds)).toFixed(0)} items/s\n`,
  );
} finally {
  rmSync(root, { recursive: true, force: true });
}
