/**
 * Start-up time of the `longclip` command on the compiled dist/ (bin/longclip.js after
 * `npm run build`) against the same sources run through tsx (what bin/longclip.js did before
 * dist/ existed): `longclip --help`, and `longclip serve` from spawn to the first 200 of
 * /ready (on a data directory indexed by a warm-up start, so the demo gallery's first
 * indexing is not counted). Runs alternate between the two, and medians are printed.
 *
 *   npm run build && npm run bench:startup -- --runs 5
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { createServer } from "node:net";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { PROJECT_ROOT } from "../../src/core/settings.ts";

const { values } = parseArgs({ options: { runs: { type: "string", default: "5" } } });
const runs = Number(values.runs);
const compiled = path.join(PROJECT_ROOT, "dist", "cli", "main.js");
const sources = path.join(PROJECT_ROOT, "src");
const newer = existsSync(compiled)
  ? readdirSync(sources, { recursive: true, encoding: "utf8" }).filter(
      (name) => statSync(path.join(sources, name)).mtimeMs > statSync(compiled).mtimeMs,
    )
  : ["(dist/cli/main.js is missing)"];
if (newer.length > 0) {
  // bin/longclip.js would run the sources through tsx and time the wrong thing.
  process.stderr.write(`dist/ is not current (${newer[0]}): run npm run build first\n`);
  process.exit(1);
}
const MODES = {
  dist: [path.join(PROJECT_ROOT, "bin", "longclip.js")],
  tsx: ["--import", "tsx", path.join(PROJECT_ROOT, "src", "cli", "main.ts")],
} as const;
type Mode = keyof typeof MODES;

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

function run(mode: Mode, args: string[]): { exited: Promise<number | null>; kill: () => void } {
  const child = spawn(process.execPath, [...MODES[mode], ...args], {
    cwd: PROJECT_ROOT,
    stdio: "ignore",
  });
  return {
    exited: new Promise((resolve) => child.on("exit", (code) => resolve(code))),
    kill: () => child.kill("SIGTERM"),
  };
}

async function helpMs(mode: Mode): Promise<number> {
  const started = performance.now();
  const code = await run(mode, ["--help"]).exited;
  if (code !== 0) throw new Error(`${mode} --help exited ${code}`);
  return performance.now() - started;
}

async function readyMs(mode: Mode, data: string): Promise<number> {
  const port = await freePort();
  const started = performance.now();
  const child = run(mode, ["serve", "--data", data, "--port", String(port), "--threads", "1"]);
  let exited = false;
  child.exited.then(() => {
    exited = true;
  });
  try {
    for (;;) {
      if (exited) throw new Error(`${mode} serve exited before /ready`);
      const ok = await fetch(`http://127.0.0.1:${port}/ready`).then(
        (res) => res.ok,
        () => false,
      );
      if (ok) return performance.now() - started;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  } finally {
    child.kill();
    await child.exited;
  }
}

const median = (xs: number[]) => {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
};

const data = mkdtempSync(path.join(os.tmpdir(), "longclip-bench-startup-"));
try {
  await readyMs("dist", data); // warm-up: indexes the demo gallery into the new data dir
  const times: Record<Mode, { help: number[]; ready: number[] }> = {
    dist: { help: [], ready: [] },
    tsx: { help: [], ready: [] },
  };
  for (let i = 0; i < runs; i++) {
    for (const mode of i % 2 ? (["tsx", "dist"] as const) : (["dist", "tsx"] as const)) {
      times[mode].help.push(await helpMs(mode));
      times[mode].ready.push(await readyMs(mode, data));
    }
  }
  console.log(`| start | longclip --help (median ms) | serve to /ready (median ms) | runs |`);
  console.log("| --- | --- | --- | --- |");
  for (const mode of ["tsx", "dist"] as const) {
    const { help, ready } = times[mode];
    console.log(
      `| ${mode === "tsx" ? "sources through tsx (before)" : "bin/longclip.js on dist/ (after)"} | ${Math.round(median(help))} | ${Math.round(median(ready))} | ${runs} |`,
    );
  }
} finally {
  rmSync(data, { recursive: true, force: true });
}
