/**
 * What `longclip pull` tells a person while it downloads (issue 26, item 8): a line per 10%
 * without a terminal, an ETA the bar can print before the rate is known, where Ctrl-C stopped
 * it and that the same command resumes, and an unreachable hub named as such with
 * LONGCLIP_HUB_URL. Served from 127.0.0.1; nothing here needs ../shared or the internet.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { Writable } from "node:stream";
import { after, before, describe, test } from "node:test";
import { downloadProgress, etaText } from "../src/cli/pull.ts";
import { PROJECT_ROOT } from "../src/core/settings.ts";
import { tempDir } from "./api-helpers.ts";

const SIZE = 1_000_000;
const DATA = Buffer.alloc(SIZE, 7);

/** `/full.pt` is sent whole in small chunks; `/stall.pt` sends 30% and then waits. */
let server: http.Server;
let base: string;
const ranges: string[] = [];
const stalled: http.ServerResponse[] = [];

function handle(request: http.IncomingMessage, response: http.ServerResponse): void {
  const range = /^bytes=(\d+)-$/.exec(request.headers.range ?? "");
  if (range) ranges.push(`${request.url} ${range[1]}`);
  const start = range ? Number(range[1]) : 0;
  const body = DATA.subarray(start);
  response.writeHead(range ? 206 : 200, {
    "content-length": String(body.length),
    ...(range ? { "content-range": `bytes ${start}-${SIZE - 1}/${SIZE}` } : {}),
  });
  if (request.url === "/stall.pt" && !range) {
    response.write(body.subarray(0, 300_000));
    stalled.push(response);
    return;
  }
  let at = 0;
  const next = () => {
    if (at >= body.length) return void response.end();
    response.write(body.subarray(at, at + 25_000), next);
    at += 25_000;
  };
  next();
}

interface Running {
  child: ChildProcess;
  stderr: () => string;
  exited: Promise<number | null>;
}

function pull(args: readonly string[], cache: string): Running {
  const child = spawn(
    process.execPath,
    [path.join(PROJECT_ROOT, "bin", "longclip.js"), "pull", ...args],
    {
      cwd: PROJECT_ROOT,
      env: { ...process.env, LONGCLIP_CACHE: cache, LONGCLIP_HUB_URL: "" },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let err = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    err += chunk.toString();
  });
  child.stdout?.resume();
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return { child, stderr: () => err, exited };
}

async function waitFor(condition: () => boolean, what: string, running: Running): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (!condition()) {
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}: ${running.stderr()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const lines = (text: string) => text.split("\n").filter((line) => line.trim() !== "");

describe("longclip pull's progress and interruptions", { timeout: 300_000 }, () => {
  before(async () => {
    server = http.createServer(handle);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    for (const response of stalled) response.destroy();
    await new Promise((resolve) => server.close(resolve));
  });

  test("the ETA before the rate is known reads --, never cli-progress's cut 'LLs'", () => {
    assert.equal(etaText("NULL"), "--");
    assert.equal(etaText("INF"), "--");
    assert.equal(etaText(Number.NaN), "--");
    assert.equal(etaText(7), "7s");
    assert.equal(etaText(75), "1m15s");
    assert.equal(etaText(3 * 3600 + 5 * 60), "3h05m");
    let shown = "";
    const terminal = Object.assign(
      new Writable({
        write(chunk, _encoding, done) {
          shown += String(chunk);
          done();
        },
      }),
      { isTTY: true, columns: 120 },
    );
    const progress = downloadProgress(terminal);
    progress.update({ file: "model.safetensors", done: 1000, total: SIZE });
    progress.stop();
    assert.match(shown, /model\.safetensors \[.*\] 0% \| 0\.0 \/ 1\.0 MB \| ETA --/);
    assert.doesNotMatch(shown, /LLs|NULL|INF/);
  });

  test("without a terminal: one line per 10% of the file", async () => {
    const cache = tempDir("longclip-pull-cache-");
    const run = pull(
      [`${base}/full.pt`, "--vocab", "merges.txt", "--out", path.join(cache, "out")],
      cache,
    );
    await run.exited;
    const progress = lines(run.stderr()).filter((line) => line.startsWith("full.pt: "));
    const shares = progress.map((line) => {
      const match = /^full\.pt: [\d.]+ of 1\.0 MB \((\d+)%\)$/.exec(line);
      assert.ok(match, line);
      return Math.floor(Number(match[1]) / 10);
    });
    assert.deepEqual(shares, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10], run.stderr());
  });

  test("Ctrl-C says where the download stopped and that a rerun resumes; a rerun does", async () => {
    const cache = tempDir("longclip-pull-cache-");
    const args = [`${base}/stall.pt`, "--vocab", "merges.txt", "--out", path.join(cache, "out")];
    const first = pull(args, cache);
    await waitFor(() => /stall\.pt: 0\.3 of 1\.0 MB \(30%\)/.test(first.stderr()), "30%", first);
    first.child.kill("SIGINT");
    assert.equal(await first.exited, 130, first.stderr());
    const last = lines(first.stderr()).at(-1) ?? "";
    assert.match(
      last,
      /^pull interrupted: stopped downloading stall\.pt: 0\.3 of 1\.0 MB \(30%\)\. What arrived is kept in .+; run the same command again to resume\.$/,
    );
    const partial = path.join(cache, "urls", new URL(base).host, "stall.pt.partial");
    assert.ok(existsSync(partial) && statSync(partial).size > 0, "the part is kept");
    const kept = statSync(partial).size;

    const again = pull(args, cache);
    await again.exited;
    assert.ok(ranges.includes(`/stall.pt ${kept}`), `resumed at ${kept}: ${ranges.join(", ")}`);
  });

  test("an unreachable hub is hub_unreachable and names LONGCLIP_HUB_URL", async () => {
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const hub = `http://127.0.0.1:${(closed.address() as AddressInfo).port}`;
    await new Promise((resolve) => closed.close(resolve));
    const cache = tempDir("longclip-pull-cache-");
    const run = pull(["longclip-b", "--out", path.join(cache, "out"), "--hub-url", hub], cache);
    assert.equal(await run.exited, 1, run.stderr());
    const error = lines(run.stderr()).find((line) => line.startsWith("error ")) ?? "";
    assert.match(
      error,
      new RegExp(
        `^error \\[hub_unreachable\\]: the model hub ${hub} cannot be reached \\(ECONNREFUSED\\): .*LONGCLIP_HUB_URL`,
      ),
    );
    assert.doesNotMatch(run.stderr(), /resume/);
  });
});
