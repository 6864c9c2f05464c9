/**
 * The proxy of compose.yaml for real: nginx with deploy/nginx.conf (only its upstream addresses
 * and listen port rewritten to 127.0.0.1) in front of two `longclip serve` nodes on one test
 * Postgres. Both nodes answer through the one port, the client's Host reaches them (the nodes
 * refuse unknown names), an upload past nginx's default 1 MiB body limit streams through, and
 * with one node SIGKILLed the other answers every request. Skipped, saying so, where nginx is
 * not installed (CI installs nginx-light).
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import sharp from "sharp";
import { PROJECT_ROOT } from "../src/core/settings.ts";
import { tempDir } from "./helpers/library-fixtures.ts";
import { type LongclipProcess, startServe, stopProcess } from "./helpers/longclip-process.ts";
import { freePort, startPostgres, type TestPostgres } from "./helpers/postgres.ts";

const nginxFound = spawnSync("nginx", ["-v"]).status === 0;
const skip = nginxFound ? false : "nginx is not installed (apt-get install nginx-light)";

/** deploy/nginx.conf with api-1/api-2 replaced by `nodes` and listening on 127.0.0.1:`port`. */
function proxyConfig(nodes: readonly string[], port: number, dir: string): string {
  let text = readFileSync(path.join(PROJECT_ROOT, "deploy", "nginx.conf"), "utf8");
  nodes.forEach((address, i) => {
    const upstream = `server api-${i + 1}:8080`;
    assert.ok(text.includes(upstream), `deploy/nginx.conf has ${upstream}`);
    text = text.replace(upstream, `server ${address}`);
  });
  assert.match(text, /listen 8080;/);
  text = text.replace("listen 8080;", `listen 127.0.0.1:${port};`);
  // Temporary files and logs in the test's directory instead of the system's.
  const temp = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
    .map((kind) => `  ${kind}_temp_path ${path.join(dir, kind)};`)
    .join("\n");
  return text.replace(
    "http {\n",
    `http {\n${temp}\n  access_log ${path.join(dir, "access.log")};\n`,
  );
}

/** GET with a Host header of our choosing (fetch sends the URL's). */
function getWithHost(url: string, host: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { headers: { host } }, (response) => {
        let body = "";
        response.setEncoding("utf8");
        response.on("data", (chunk: string) => {
          body += chunk;
        });
        response.on("end", () => resolve({ status: response.statusCode ?? 0, body }));
      })
      .on("error", reject);
  });
}

async function metricCount(nodeUrl: string, pattern: RegExp): Promise<number> {
  const text = await (await fetch(`${nodeUrl}/metrics`)).text();
  return text
    .split("\n")
    .filter((line) => pattern.test(line))
    .reduce((sum, line) => sum + Number(line.split(" ").at(-1)), 0);
}

/** A PNG of noise, which does not compress: about 3 bytes per pixel. */
function noisePng(side: number, seed: number): Promise<Buffer> {
  const data = Buffer.alloc(side * side * 3);
  let state = seed >>> 0 || 1;
  for (let i = 0; i < data.length; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    data[i] = state >>> 24;
  }
  return sharp(data, { raw: { width: side, height: side, channels: 3 } })
    .png()
    .toBuffer();
}

describe("nginx with deploy/nginx.conf in front of two API nodes", { skip }, () => {
  const root = tempDir("compose-proxy-");
  let postgres: TestPostgres;
  const nodes: LongclipProcess[] = [];
  let nginx: ChildProcess | undefined;
  let proxyUrl = "";

  before(async () => {
    postgres = await startPostgres();
    for (const name of ["api-1", "api-2"]) {
      nodes.push(
        await startServe([
          "--model",
          path.join(PROJECT_ROOT, "models", "demo"),
          "--data",
          path.join(root, name),
          "--database-url",
          postgres.url,
        ]),
      );
    }
    const dir = path.join(root, "nginx");
    mkdirSync(dir);
    // nginx's workers (another user when it runs as root) write their temporary files here.
    chmodSync(root, 0o755);
    chmodSync(dir, 0o777);
    const port = await freePort();
    const config = path.join(dir, "nginx.conf");
    writeFileSync(
      config,
      proxyConfig(
        nodes.map((node) => new URL(node.url).host),
        port,
        dir,
      ),
    );
    nginx = spawn(
      "nginx",
      [
        "-p",
        dir,
        "-c",
        config,
        "-g",
        `daemon off; pid ${path.join(dir, "nginx.pid")}; error_log ${path.join(dir, "error.log")};`,
      ],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    let stderr = "";
    nginx.stderr?.on("data", (chunk) => {
      stderr += String(chunk);
    });
    proxyUrl = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + 20_000;
    for (;;) {
      // Any answer: nginx is listening (what it answers is for the tests to judge).
      const answered = await fetch(`${proxyUrl}/health`).then(
        () => true,
        () => false,
      );
      if (answered) break;
      if (nginx.exitCode !== null || Date.now() > deadline) {
        assert.fail(`nginx did not start: ${stderr}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  });

  after(async () => {
    if (nginx?.exitCode === null) {
      const exited = new Promise((resolve) => nginx?.on("exit", resolve));
      nginx.kill("SIGQUIT");
      await exited;
    }
    for (const node of nodes) await stopProcess(node);
    await postgres?.stop();
    rmSync(root, { recursive: true, force: true });
  });

  test("both nodes answer through the one port, and see the client's Host", async () => {
    const readyOn = (node: LongclipProcess) =>
      metricCount(node.url, /^http_requests_total\{method="GET",route="\/ready",status="200"\}/);
    const before = await Promise.all(nodes.map(readyOn));
    for (let i = 0; i < 10; i++) {
      const response = await fetch(`${proxyUrl}/ready`);
      assert.equal(response.status, 200, await response.text());
    }
    const served = (await Promise.all(nodes.map(readyOn))).map((n, i) => n - (before[i] ?? 0));
    assert.ok(
      served.every((n) => n > 0),
      `requests per node: ${served.join(", ")}`,
    );
    // A name the nodes were not told about is refused by them: the proxy passed it on.
    const named = await getWithHost(`${proxyUrl}/ready`, "search.example");
    assert.equal(named.status, 403);
    assert.equal(
      (JSON.parse(named.body) as { error: { code: string } }).error.code,
      "host_not_allowed",
    );
  });

  test("an upload larger than nginx's default body limit streams through and is found", async () => {
    const image = await noisePng(800, 7);
    assert.ok(image.length > 1024 * 1024, `${image.length} bytes`);
    const form = new FormData();
    form.append("images", new Blob([image], { type: "image/png" }), "noise.png");
    form.append("ids", "big-1");
    const indexed = await fetch(`${proxyUrl}/index`, { method: "POST", body: form });
    assert.equal(indexed.status, 200, await indexed.clone().text());
    const query = new FormData();
    query.append("image", new Blob([image], { type: "image/png" }), "q.png");
    for (let i = 0; i < 2; i++) {
      // Twice: one of the searches lands on the node that did not take the upload.
      const found = await fetch(`${proxyUrl}/search/image?k=1`, { method: "POST", body: query });
      assert.equal(found.status, 200);
      const hits = ((await found.json()) as { hits: { id: string }[] }).hits;
      assert.equal(hits[0]?.id, "big-1");
    }
  });

  test("with one node killed, the other answers every request", async () => {
    const [dead] = nodes;
    assert.ok(dead);
    await stopProcess(dead, "SIGKILL");
    const statuses: number[] = [];
    for (let i = 0; i < 10; i++) {
      const search = await fetch(`${proxyUrl}/search`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ query: "noise", k: 1 }),
      });
      statuses.push(search.status);
      await search.arrayBuffer();
      const items = await fetch(`${proxyUrl}/items?limit=1`);
      statuses.push(items.status);
      await items.arrayBuffer();
    }
    assert.deepEqual(
      statuses,
      statuses.map(() => 200),
    );
  });
});
