/**
 * The server over real sockets: the app listening on 127.0.0.1 and driven with fetch and
 * FormData (as a browser would), and the `longclip serve` command as a child process: start,
 * ingest, SIGTERM, restart on the same data directory.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import type { components } from "../src/api/types.gen.ts";
import { settingsFromFlags } from "../src/cli/settings.ts";
import { PROJECT_ROOT } from "../src/config.ts";
import { isAppError } from "../src/errors.ts";
import { startTestApp, type TestServer, tempDir } from "./api-helpers.ts";
import { SKIP_WITHOUT_SHARED, TINY_DIR, tinyModelDir } from "./helpers/reference.ts";

type S = components["schemas"];

const image = (name: string) => readFileSync(path.join(TINY_DIR, "images", name));

function form(files: { name: string; bytes: Buffer; type: string }[], field = "images"): FormData {
  const body = new FormData();
  for (const file of files) {
    body.append(field, new Blob([file.bytes], { type: file.type }), file.name);
  }
  return body;
}

describe("listening server", { skip: SKIP_WITHOUT_SHARED }, () => {
  let server: TestServer;
  let base: string;
  const key = "listen-key";

  before(async () => {
    server = await startTestApp({ apiKey: key });
    base = await server.app.listen({ host: "127.0.0.1", port: 0 });
  });
  after(async () => {
    await server?.app.close();
  });

  test("browser-style multipart upload, search and image bytes over HTTP", async () => {
    const body = form([
      { name: "hopper.jpg", bytes: image("hopper.jpg"), type: "image/jpeg" },
      { name: "shapes.png", bytes: image("shapes.png"), type: "image/png" },
    ]);
    body.append("metadata", JSON.stringify([{ kind: "photo" }, { kind: "drawing" }]));
    const denied = await fetch(`${base}/index`, { method: "POST", body });
    assert.equal(denied.status, 401);
    assert.equal(((await denied.json()) as S["Error"]).error.code, "unauthorized");

    const res = await fetch(`${base}/index`, {
      method: "POST",
      body,
      headers: { authorization: `Bearer ${key}` },
    });
    assert.equal(res.status, 200);
    const results = ((await res.json()) as S["IndexResponse"]).results;
    assert.deepEqual(
      results.map((r) => r.status),
      ["indexed", "indexed"],
    );

    const search = await fetch(`${base}/search`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query: "a drawing of shapes", filter: { kind: "drawing" } }),
    });
    const hits = ((await search.json()) as S["SearchResponse"]).hits;
    assert.equal(hits.length, 1);
    assert.equal(hits[0]?.id, results[1]?.id);

    const bytes = await fetch(`${base}${hits[0]?.image_url}`);
    assert.equal(bytes.headers.get("content-type"), "image/png");
    assert.deepEqual(Buffer.from(await bytes.arrayBuffer()), image("shapes.png"));

    const byImage = await fetch(`${base}/search/image?k=1`, {
      method: "POST",
      body: form([{ name: "q.jpg", bytes: image("hopper.jpg"), type: "image/jpeg" }], "image"),
    });
    assert.equal(((await byImage.json()) as S["ImageSearchResponse"]).hits[0]?.id, results[0]?.id);
  });

  test("a full queue answers 429 with Retry-After, and everything else still completes", async () => {
    // Several batches at once against a queue of 2: whichever do not fit are refused with 429
    // and a retry hint, the rest are indexed. Which ones get through depends on scheduling,
    // so only the shape of each answer is checked.
    const busy = await startTestApp({ maxQueueDepth: 2 });
    try {
      const url = await busy.app.listen({ host: "127.0.0.1", port: 0 });
      const names = ["demo.png", "panorama.png", "rgba.png", "gradient.jpg", "grayscale.png"];
      const answers = await Promise.all(
        names.map((name) =>
          fetch(`${url}/index`, {
            method: "POST",
            body: form([
              { name, bytes: image(name), type: "image/png" },
              { name: "hopper.jpg", bytes: image("hopper.jpg"), type: "image/jpeg" },
            ]),
          }),
        ),
      );
      for (const answer of answers) {
        assert.ok([200, 429].includes(answer.status), `status ${answer.status}`);
        if (answer.status === 429) {
          assert.match(answer.headers.get("retry-after") ?? "", /^[1-9]\d*$/);
          assert.equal(((await answer.json()) as S["Error"]).error.code, "queue_full");
        } else {
          const results = ((await answer.json()) as S["IndexResponse"]).results;
          assert.equal(results.length, 2);
        }
      }
      // An idle queue takes any batch, so the first batch to arrive always gets through.
      assert.ok(answers.some((answer) => answer.status === 200));
      const ready = await fetch(`${url}/ready`);
      assert.equal(ready.status, 200);
    } finally {
      await busy.app.close();
    }
  });
});

interface Child {
  process: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
}

function startServe(args: string[], env: NodeJS.ProcessEnv = {}): Child {
  const child = spawn(
    process.execPath,
    ["--import", "tsx", path.join(PROJECT_ROOT, "src", "cli", "main.ts"), "serve", ...args],
    { cwd: PROJECT_ROOT, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] },
  );
  let out = "";
  let err = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    out += chunk.toString();
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    err += chunk.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return { process: child, stdout: () => out, stderr: () => err, exited };
}

/** Waits for the JSON log line announcing the address; fails if the process exits first. */
async function listeningAddress(child: Child): Promise<string> {
  for (;;) {
    for (const line of child.stdout().split("\n")) {
      if (!line.startsWith("{")) continue;
      const entry = JSON.parse(line) as { msg?: string; address?: string };
      if (entry.msg === "longclip serving" && entry.address) return entry.address;
    }
    const code = await Promise.race([
      child.exited,
      new Promise<"waiting">((resolve) => setTimeout(() => resolve("waiting"), 100)),
    ]);
    if (code !== "waiting") {
      throw new Error(`serve exited with ${code}: ${child.stderr()}${child.stdout()}`);
    }
  }
}

describe("longclip serve", () => {
  test("without a model it exits 1 and says how to get one", async () => {
    const child = startServe(["--model", path.join(tempDir("longclip-nomodel-"), "missing")]);
    assert.equal(await child.exited, 1);
    assert.match(child.stderr(), /model_not_found/);
    assert.match(child.stderr(), /python3 -m training export/);
  });

  test("flags parse into settings over the environment; a bad value names the flag", () => {
    const settings = settingsFromFlags(
      { model: "m", data: "d", port: "9000", maxK: "50", apiKey: "flag-key" },
      { LONGCLIP_PORT: "7000", LONGCLIP_MAX_BATCH_ITEMS: "3", LONGCLIP_API_KEY: "env-key" },
    );
    assert.equal(settings.modelDir, path.resolve("m"));
    assert.equal(settings.dataDir, path.resolve("d"));
    assert.equal(settings.port, 9000);
    assert.equal(settings.maxK, 50);
    assert.equal(settings.maxBatchItems, 3);
    assert.equal(settings.apiKey, "flag-key");
    assert.throws(
      () => settingsFromFlags({ port: "eighty" }, {}),
      (error: unknown) =>
        isAppError(error) && error.code === "invalid_setting" && /--port/.test(error.message),
    );
  });

  test("serves from flags and env, shuts down on SIGTERM, keeps the data across restarts", {
    skip: SKIP_WITHOUT_SHARED,
  }, async () => {
    const data = tempDir("longclip-serve-data-");
    const args = ["--model", tinyModelDir(), "--data", data, "--port", "0", "--threads", "1"];
    const env = { LONGCLIP_API_KEY: "env-key" };
    const first = startServe(args, env);
    try {
      const url = await listeningAddress(first);
      assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
      const upload = () =>
        fetch(`${url}/index`, {
          method: "POST",
          headers: { "x-api-key": "env-key" },
          body: form([{ name: "hopper.jpg", bytes: image("hopper.jpg"), type: "image/jpeg" }]),
        });
      const res = await upload();
      assert.equal(res.status, 200);
      const [result] = ((await res.json()) as S["IndexResponse"]).results;
      assert.equal(result?.status, "indexed");
      first.process.kill("SIGTERM");
      assert.equal(await first.exited, 0);

      const second = startServe(args, env);
      try {
        const again = await listeningAddress(second);
        const stats = (await (await fetch(`${again}/stats`)).json()) as S["Stats"];
        assert.equal(stats.items, 1);
        const item = await fetch(`${again}/items/${result?.id}`);
        assert.equal(item.status, 200);
      } finally {
        second.process.kill("SIGTERM");
        assert.equal(await second.exited, 0);
      }
    } finally {
      if (first.process.exitCode === null) first.process.kill("SIGKILL");
    }
  });
});
