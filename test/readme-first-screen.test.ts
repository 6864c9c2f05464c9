/**
 * The README's first screen, run as a newcomer runs it (issue 26, "done when"): `npm start`,
 * the curl query, then `npx longclip pull longclip-l --out models/longclip-l` and `npx longclip
 * serve --model models/longclip-l` on the same data directory, which must end in a ready server
 * that searches the whole library with the new model. The commands are taken from README.md and
 * run through a shell in the checkout, so a README edit that breaks them fails here.
 *
 * What is moved, and only that: the data directory, port and hub (through their documented
 * environment variables: LONGCLIP_DATA_DIR, LONGCLIP_PORT=0, LONGCLIP_HUB_URL, LONGCLIP_CACHE)
 * and `models/longclip-l` (to a temporary directory, so a real model a developer pulled there is
 * never touched). The hub is a local HTTP server serving, at longclip-l's paths, a small
 * Long-CLIP with random weights in the official checkpoint format and a CLIP-sized merges file,
 * both written here without Python or ../shared. `npm install` is the step .ci/run runs.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { after, before, test } from "node:test";
import { gzipSync } from "node:zlib";
import { PROJECT_ROOT } from "../src/core/settings.ts";
import {
  mergesFile,
  stateDictPickle,
  stateDictViews,
  TINY_ZEROS,
  writeZip,
} from "../tools/bench/crafted-checkpoints.ts";
import { xorshift32 } from "../tools/bench/random.ts";
import { type FakeHub, startFakeHub } from "./helpers/fake-hub.ts";
import { writeTinyClipHf } from "./helpers/tiny-clip.ts";

const README = readFileSync(path.join(PROJECT_ROOT, "README.md"), "utf8");

/** The shell commands of the fenced blocks in the README section that starts with `heading`. */
function sectionCommands(heading: string): string[] {
  const start = README.indexOf(`\n## ${heading}\n`);
  assert.ok(start >= 0, `README has a "## ${heading}" section`);
  const end = README.indexOf("\n## ", start + 1);
  const section = README.slice(start, end < 0 ? undefined : end);
  const blocks = [...section.matchAll(/^```sh\n([\s\S]*?)^```/gm)].map((m) => m[1] ?? "");
  // One command per line, with `\` continuations joined and comments dropped.
  return blocks.flatMap((block) =>
    block
      .replace(/\\\n\s*/g, " ")
      .split("\n")
      .map((line) => line.replace(/\s+#.*$/, "").trim())
      .filter((line) => line !== ""),
  );
}

let dir: string;
let hub: FakeHub;
const children = new Set<ChildProcess>();

/** The env every command gets: the moved data directory, a free port, the local hub. */
function commandEnv(): NodeJS.ProcessEnv {
  return {
    ...process.env,
    LONGCLIP_DATA_DIR: path.join(dir, "data"),
    LONGCLIP_PORT: "0",
    LONGCLIP_THREADS: "1",
    LONGCLIP_HUB_URL: hub.url,
    LONGCLIP_CACHE: path.join(dir, "cache"),
    LONGCLIP_LOG_FORMAT: "json",
  };
}

/** The README's file arguments (`models/NAME`, input files), moved into the temporary directory. */
function movePaths(command: string, inputs: Record<string, string> = {}): string {
  let moved = command.replaceAll(
    / models\/([\w-]+)/g,
    (_, name) => ` ${path.join(dir, "models", name)}`,
  );
  for (const [written, actual] of Object.entries(inputs)) {
    assert.ok(moved.includes(` ${written}`), `the README's command names ${written}`);
    moved = moved.replaceAll(` ${written}`, ` ${actual}`);
  }
  return moved;
}

/** Runs a command to its end (or stops it after `limitMs`); resolves with its exit code and output. */
function runCommand(
  command: string,
  limitMs = 300_000,
): Promise<{ code: number | null; output: string }> {
  const child = spawn("sh", ["-c", command], {
    cwd: PROJECT_ROOT,
    env: commandEnv(),
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  const timer = setTimeout(
    () => child.pid !== undefined && process.kill(-child.pid, "SIGTERM"),
    limitMs,
  );
  child.on("close", () => clearTimeout(timer));
  let output = "";
  child.stdout.on("data", (chunk: Buffer) => (output += chunk));
  child.stderr.on("data", (chunk: Buffer) => (output += chunk));
  return new Promise((resolve) => child.on("close", (code) => resolve({ code, output })));
}

interface Server {
  url: string;
  stop(): Promise<void>;
}

/** Starts a server command; resolves with its address once it says where to open it. */
function startServer(command: string): Promise<Server> {
  // Its own process group: `npm start` runs node under npm, and both are stopped together.
  const child = spawn("sh", ["-c", command], {
    cwd: PROJECT_ROOT,
    env: commandEnv(),
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  children.add(child);
  const exited = new Promise<void>((resolve) => child.on("close", () => resolve()));
  let output = "";
  return new Promise((resolve, reject) => {
    let settled = false;
    const onLine = (line: string) => {
      output += `${line}\n`;
      const url = /open (http:\/\/[^\s/]+)\/ in your browser/.exec(line)?.[1];
      if (url === undefined || settled) return;
      settled = true;
      resolve({
        url,
        stop: async () => {
          if (child.exitCode === null && child.pid !== undefined)
            process.kill(-child.pid, "SIGTERM");
          await exited;
          children.delete(child);
        },
      });
    };
    createInterface({ input: child.stdout }).on("line", onLine);
    createInterface({ input: child.stderr }).on("line", onLine);
    void exited.then(() => {
      if (!settled) reject(new Error(`"${command}" exited before serving:\n${output}`));
    });
  });
}

/** Polls /ready until it answers 200; returns the one-line reasons it gave meanwhile. */
async function waitReady(url: string, timeoutMs: number): Promise<string[]> {
  const reasons: string[] = [];
  for (const deadline = Date.now() + timeoutMs; ; ) {
    const response = await fetch(`${url}/ready`);
    if (response.status === 200) return reasons;
    const body = (await response.json()) as { error?: { message?: string } };
    reasons.push(body.error?.message ?? `HTTP ${response.status}`);
    assert.ok(Date.now() < deadline, `not ready after ${timeoutMs} ms: ${reasons.at(-1)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * A small Long-CLIP (TINY_ZEROS's shapes: width 64, one layer per tower, 248 positions, CLIP's
 * vocabulary size) in the official checkpoint format, with random weights from a fixed seed.
 */
function tinyLongclipCheckpoint(): Buffer {
  const file = path.join(dir, "longclip-tiny.pt");
  const views = stateDictViews(TINY_ZEROS);
  const next = xorshift32(20261207);
  const storages = [...views.values()].map((view) => {
    const values = new Float32Array(view.numel);
    for (let i = 0; i < values.length; i++) values[i] = (next() / 2 ** 32 - 0.5) * 0.1;
    return { name: `archive/data/${view.key}`, data: Buffer.from(values.buffer) };
  });
  writeZip(file, [{ name: "archive/data.pkl", data: stateDictPickle(views) }, ...storages]);
  return readFileSync(file);
}

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), "readme-first-screen-"));
  hub = await startFakeHub();
  hub.files.set("/BeichenZhang/LongCLIP-L/resolve/main/longclip-L.pt", {
    data: tinyLongclipCheckpoint(),
  });
  hub.files.set("/openai/clip-vit-base-patch16/resolve/main/merges.txt", {
    data: readFileSync(mergesFile(path.join(dir, "merges.txt"))),
  });
});

after(async () => {
  for (const child of children) if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
  await hub?.close();
  rmSync(dir, { recursive: true, force: true });
});

test("the README's first screen: npm start, the query, then pull and serve --model of real weights", {
  timeout: 600_000,
}, async () => {
  const tryIt = sectionCommands("Try it");
  assert.deepEqual(tryIt.slice(0, 2), ["npm install", "npm start"]);
  const curl = tryIt.slice(2);
  assert.equal(curl.length, 1, `one query command after the two: ${curl.join(" | ")}`);
  const realWeights = sectionCommands("Using real Long-CLIP weights");
  const [pull, serve] = realWeights;
  assert.match(pull ?? "", /^npx longclip pull longclip-l --out models\/longclip-l$/);
  assert.match(serve ?? "", /^npx longclip serve --model models\/longclip-l$/);

  // npm start: the demo model and its sample library; the README's query finds its scene first.
  const demo = await startServer(tryIt[1] as string);
  try {
    await waitReady(demo.url, 120_000);
    const query = await runCommand(
      (curl[0] as string).replaceAll("127.0.0.1:8080", demo.url.slice(7)),
    );
    assert.equal(query.code, 0, query.output);
    const answer = JSON.parse(query.output) as {
      hits: { metadata: { caption?: string; file?: string } }[];
    };
    const asked = /"query": "([^"]+)"/.exec(curl[0] as string)?.[1];
    assert.equal(answer.hits.length, 5);
    assert.equal(answer.hits[0]?.metadata.caption, asked, "the query's own scene comes first");
  } finally {
    await demo.stop();
  }

  // Real weights: pulled without Python, then served on the same data directory.
  const pulled = await runCommand(movePaths(pull as string));
  assert.equal(pulled.code, 0, pulled.output);
  const switched = await startServer(movePaths(serve as string));
  try {
    const reasons = await waitReady(switched.url, 300_000);
    for (const reason of reasons) assert.match(reason, /^not ready: re-embedding the library/);
    const stats = (await (await fetch(`${switched.url}/stats`)).json()) as {
      items: number;
      model_id: string;
      dims: number;
    };
    assert.equal(stats.items, 36);
    assert.match(stats.model_id, /^longclip-l/, "the library is the pulled model's now");
    assert.equal(stats.dims, TINY_ZEROS.embedDim);
    const search = await fetch(`${switched.url}/search`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query: "a small orange hexagon", k: 50 }),
    });
    assert.equal(search.status, 200);
    const body = (await search.json()) as { hits: unknown[] };
    assert.equal(body.hits.length, 36, "every item of the library is searchable by the new model");
  } finally {
    await switched.stop();
  }
});

test("the README's conversions of files already at hand, without Python", {
  timeout: 300_000,
}, async () => {
  const exports = sectionCommands("Using real Long-CLIP weights").filter((c) =>
    c.startsWith("npx longclip export"),
  );
  assert.equal(exports.length, 2, exports.join(" | "));
  const vocab = path.join(dir, "bpe_simple_vocab_16e6.txt.gz");
  writeFileSync(vocab, gzipSync(readFileSync(mergesFile(path.join(dir, "merges-export.txt")))));
  const hf = path.join(dir, "CLIPModel-dir");
  writeTinyClipHf(hf);
  const inputs = {
    "longclip-L.pt": path.join(dir, "longclip-tiny.pt"),
    "bpe_simple_vocab_16e6.txt.gz": vocab,
    "path/to/CLIPModel-dir": hf,
  };
  for (const command of exports) {
    const used = Object.fromEntries(
      Object.entries(inputs).filter(([key]) => command.includes(key)),
    );
    // Without Python: scripts/python is never reached, as a user without it would run them.
    const run = await runCommand(`LONGCLIP_PYTHON=/nonexistent/python ${movePaths(command, used)}`);
    assert.equal(run.code, 0, `${command}\n${run.output}`);
    const out = /--out models\/([\w-]+)/.exec(command)?.[1] as string;
    assert.ok(existsSync(path.join(dir, "models", out, "config.json")), `${out}/config.json`);
  }
});

test("the README's GPU command says what is missing on a machine without CUDA", {
  timeout: 120_000,
}, async (t) => {
  const serveCuda = sectionCommands("GPU (CUDA)").find((c) => c.includes("--device cuda"));
  assert.ok(serveCuda, "README shows serve --device cuda");
  const run = await runCommand(serveCuda, 60_000);
  if (/in your browser/.test(run.output)) {
    t.skip("this machine has a usable CUDA provider: the server started");
    return;
  }
  assert.equal(run.code, 1, run.output);
  assert.match(run.output, /cuda_unavailable/);
});
