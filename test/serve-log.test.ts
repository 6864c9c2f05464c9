/**
 * The server log, as `longclip serve` writes it: JSON lines when stdout is not a terminal (or
 * with --log-format json), a short human line per event on a terminal (or with --log-format
 * pretty). Probes and polling are not logged per request at info, and a state the server
 * expects (its database away, so /ready answers 503) is never an error with a stack.
 */
import assert from "node:assert/strict";
import { mkdirSync, readdirSync, rmSync, symlinkSync } from "node:fs";
import path from "node:path";
import { PassThrough } from "node:stream";
import { after, describe, test } from "node:test";
import { PROJECT_ROOT } from "../src/core/settings.ts";
import { createLogger, humanLog } from "../src/server/logger.ts";
import { tempDir } from "./helpers/library-fixtures.ts";
import { startServe, stopProcess } from "./helpers/longclip-process.ts";
import { freePort } from "./helpers/postgres.ts";

const DEMO = path.join(PROJECT_ROOT, "models", "demo");
const root = tempDir("longclip-serve-log-");
after(() => rmSync(root, { recursive: true, force: true }));

let bareModel: string | undefined;

/** models/demo without its gallery, so a new data directory starts at once. */
function modelWithoutGallery(): string {
  if (bareModel === undefined) {
    bareModel = path.join(root, "model");
    mkdirSync(bareModel);
    for (const name of readdirSync(DEMO)) {
      if (name !== "gallery") symlinkSync(path.join(DEMO, name), path.join(bareModel, name));
    }
  }
  return bareModel;
}

/**
 * `longclip serve` on the gallery-less demo model and a data directory of its own, stdout a
 * pipe and no colours, ready at a line matching `ready`.
 */
function serve(data: string, args: readonly string[], ready: RegExp) {
  const model = ["--model", modelWithoutGallery(), "--data", path.join(root, data)];
  return startServe([...model, ...args], { NO_COLOR: "1" }, ready);
}

interface JsonLine {
  level: number;
  msg: string;
  url?: string;
  statusCode?: number;
  [key: string]: unknown;
}

describe("longclip serve's log", { timeout: 300_000 }, () => {
  test("not a terminal: JSON lines; probes at debug; a database away is no error", async () => {
    // Nothing listens on this port: the library cannot reach its database, /ready says 503.
    const url = `postgres://postgres:postgres@127.0.0.1:${await freePort()}/postgres`;
    const server = await serve(
      "data-pg",
      ["--database-url", url],
      /"msg":"open (http:\/\/127\.0\.0\.1:\d+)\/ in your browser"/,
    );
    try {
      for (let i = 0; i < 3; i++) {
        assert.equal((await fetch(`${server.url}/ready`)).status, 503);
        assert.equal((await fetch(`${server.url}/health`)).status, 200);
        const tokens = await fetch(`${server.url}/tokenize`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ text: "a red circle" }),
        });
        assert.equal(tokens.status, 200);
      }
      assert.equal((await fetch(`${server.url}/no-such-route`)).status, 404);
    } finally {
      await stopProcess(server);
      const out = server.stdout();
      const lines = out
        .trim()
        .split("\n")
        .map((line) => JSON.parse(line) as JsonLine);
      const problems = lines.filter((line) => line.level >= 50 || "err" in line);
      assert.deepEqual(problems, [], "no error, and no stack, for an expected state");
      const polls = lines.filter(
        (line) => line.level >= 30 && /^\/(ready|health|tokenize)\b/.test(line.url ?? ""),
      );
      assert.deepEqual(polls, [], "probes and token counts are not logged at info");
      const serving = lines.find((line) => line.msg === "longclip serving");
      assert.equal(serving?.address, server.url);
      assert.ok(
        lines.some((line) => line.msg === `open ${server.url}/ in your browser`),
        "the browser line",
      );
      const notFound = lines.find((line) => line.url === "/no-such-route");
      assert.equal(notFound?.level, 30);
      assert.equal(notFound?.statusCode, 404);
      assert.match(notFound?.msg ?? "", /^GET \/no-such-route 404 \d+ ms$/);
      assert.match(
        String(serving?.ready),
        /database is unreachable/,
        "the start says why not ready",
      );
    }
  });

  test("--log-format pretty: one short line per event, and where to open the page", async () => {
    const server = await serve(
      "data-pretty",
      ["--log-format", "pretty"],
      /INFO: open (http:\/\/127\.0\.0\.1:\d+)\/ in your browser$/,
    );
    try {
      const search = await fetch(`${server.url}/search`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ query: "a red circle", k: 1 }),
      });
      assert.equal(search.status, 200);
      assert.equal((await fetch(`${server.url}/health`)).status, 200);
    } finally {
      await stopProcess(server);
      const out = server.stdout();
      const lines = out.trim().split("\n");
      for (const line of lines) {
        assert.match(line, /^\[\d\d:\d\d:\d\d\] (INFO|WARN): \S/, "time, level, message");
        assert.ok(line.length < 400, `a short line: ${line}`);
      }
      const port = new URL(server.url).port;
      assert.ok(
        lines.some((line) =>
          line.includes(`longclip serving  address=http://127.0.0.1:${port}  modelId=`),
        ),
        out,
      );
      assert.equal(
        lines.filter((line) =>
          line.endsWith(`INFO: open http://127.0.0.1:${port}/ in your browser`),
        ).length,
        1,
      );
      assert.ok(
        lines.some((line) => / INFO: POST \/search 200 \d+ ms$/.test(line)),
        out,
      );
      assert.ok(!lines.some((line) => line.includes("/health")), "no line for a probe");
      assert.ok(
        lines.some((line) => / INFO: shut down {2}ms=\d+$/.test(line)),
        out,
      );
    }
  });

  test("auto: human lines on a terminal, JSON elsewhere; an unexpected error keeps its stack", () => {
    assert.equal(humanLog("auto", { isTTY: true }), true);
    assert.equal(humanLog("auto", { isTTY: false }), false);
    assert.equal(humanLog("auto", {}), false);
    assert.equal(humanLog("json", { isTTY: true }), false);
    assert.equal(humanLog("pretty", {}), true);

    const terminal = Object.assign(new PassThrough(), { isTTY: true });
    let written = "";
    terminal.on("data", (chunk: Buffer) => {
      written += chunk.toString();
    });
    const log = createLogger("auto", terminal);
    log.info({ items: 36, backend: "sqlite", note: "two words" }, "longclip serving");
    log.error({ err: new Error("boom") }, "request failed");
    // biome-ignore lint/suspicious/noControlCharactersInRegex: the terminal's colour codes
    const plain = written.replace(/\u001b\[[0-9;]*m/g, "");
    assert.match(
      plain,
      /^\[\d\d:\d\d:\d\d\] INFO: longclip serving {2}items=36 {2}backend=sqlite {2}note="two words"\n/,
    );
    assert.match(plain, /ERROR: request failed\nError: boom\n {4}at /);
    assert.notEqual(written, plain, "coloured on a terminal");
  });
});
