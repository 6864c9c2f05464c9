/**
 * The server over real sockets: the app listening on 127.0.0.1 and driven with supertest
 * (multipart uploads as a browser sends them), and the `longclip serve` command as a child
 * process (bin/longclip.js: the compiled dist/ when it is current): start, ingest, SIGTERM with
 * requests in flight, restart on the same data directory.
 */
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import sharp from "sharp";
import supertest from "supertest";
import type { components } from "../src/api/types.gen.ts";

import { settingsFromFlags } from "../src/cli/settings.ts";
import { isAppError } from "../src/core/errors.ts";
import { DEFAULT_SETTINGS, loadSettings } from "../src/core/settings.ts";
import { HnswIndex } from "../src/vector-index/hnsw.ts";
import { multipart, startTestApp, type TestServer, tempDir } from "./api-helpers.ts";
import { demoModelWithoutGallery, sampleImage } from "./helpers/demo-model.ts";
import { type LongclipProcess, startLongclip } from "./helpers/longclip-process.ts";

type S = components["schemas"];

const image = sampleImage;

/** `n` different PNGs (random pixels), so no upload is a duplicate of another. */
function distinctPngs(n: number): Promise<Buffer[]> {
  return Promise.all(
    Array.from({ length: n }, () => {
      const pixels = Buffer.from(Array.from({ length: 64 * 64 * 3 }, () => Math.random() * 256));
      return sharp(pixels, { raw: { width: 64, height: 64, channels: 3 } })
        .png()
        .toBuffer();
    }),
  );
}

describe("listening server", () => {
  let server: TestServer;
  const key = "listen-key";

  before(async () => {
    server = await startTestApp({ apiKey: key });
  });
  after(async () => {
    await server?.app.close();
  });

  test("browser-style multipart upload, search and image bytes over HTTP", async () => {
    const upload = () =>
      server.http
        .post("/index")
        .attach("images", image("hopper.jpg"), {
          filename: "hopper.jpg",
          contentType: "image/jpeg",
        })
        .attach("images", image("shapes.png"), { filename: "shapes.png", contentType: "image/png" })
        .field("metadata", JSON.stringify([{ kind: "photo" }, { kind: "drawing" }]));
    const denied = await upload();
    assert.equal(denied.status, 401);
    assert.equal((denied.body as S["Error"]).error.code, "unauthorized");

    const res = await upload().set("authorization", `Bearer ${key}`);
    assert.equal(res.status, 200, res.text);
    const results = (res.body as S["IndexResponse"]).results;
    assert.deepEqual(
      results.map((r) => r.status),
      ["indexed", "indexed"],
    );

    const search = await server.http
      .post("/search")
      .send({ query: "a drawing of shapes", filter: { kind: "drawing" } });
    const hits = (search.body as S["SearchResponse"]).hits;
    assert.equal(hits.length, 1);
    assert.equal(hits[0]?.id, results[1]?.id);

    const bytes = await server.http.get(hits[0]?.image_url ?? "");
    assert.equal(bytes.headers["content-type"], "image/png");
    assert.deepEqual(bytes.body, image("shapes.png"));

    const byImage = await server.http
      .post("/search/image?k=1")
      .attach("image", image("hopper.jpg"), { filename: "q.jpg", contentType: "image/jpeg" });
    assert.equal((byImage.body as S["ImageSearchResponse"]).hits[0]?.id, results[0]?.id);
  });

  test("a full queue answers 429 with Retry-After, and everything else still completes", async () => {
    // Several batches at once against a queue of 2: whichever do not fit are refused with 429
    // and a retry hint, the rest are indexed. Which ones get through depends on scheduling,
    // so only the shape of each answer is checked.
    const busy = await startTestApp({ maxQueueDepth: 2 });
    try {
      const names = ["demo.png", "panorama.png", "rgba.png", "gradient.jpg", "grayscale.png"];
      const answers = await Promise.all(
        names.map((name) =>
          busy.http
            .post("/index")
            .attach("images", image(name), { filename: name, contentType: "image/png" })
            .attach("images", image("hopper.jpg"), {
              filename: "hopper.jpg",
              contentType: "image/jpeg",
            }),
        ),
      );
      for (const answer of answers) {
        assert.ok([200, 429].includes(answer.status), `status ${answer.status}`);
        if (answer.status === 429) {
          assert.match(answer.headers["retry-after"] ?? "", /^[1-9]\d*$/);
          assert.equal((answer.body as S["Error"]).error.code, "queue_full");
        } else {
          assert.equal((answer.body as S["IndexResponse"]).results.length, 2);
        }
      }
      // An idle queue takes any batch, so the first batch to arrive always gets through.
      assert.ok(answers.some((answer) => answer.status === 200));
      assert.equal((await busy.http.get("/ready")).status, 200);
    } finally {
      await busy.app.close();
    }
  });
});

/** `longclip serve ARGS` (no host or port flags of its own: the tests choose them). */
function serve(args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<LongclipProcess> {
  return startLongclip(["serve", ...args], "longclip serving", env);
}

/**
 * A POST /index whose body is sent in two halves: the first now, the rest on `finish()`, so
 * the request is in flight (headers read, body still arriving) for as long as the test likes.
 */
function slowUpload(url: string, parts: Parameters<typeof multipart>[0], headers = {}) {
  const form = multipart(parts);
  const half = form.payload.length >> 1;
  let answer: (value: { status: number; body: string }) => void = () => {};
  let fail: (error: Error) => void = () => {};
  const response = new Promise<{ status: number; body: string }>((resolve, reject) => {
    answer = resolve;
    fail = reject;
  });
  const request = http.request(`${url}/index`, {
    method: "POST",
    headers: { ...form.headers, ...headers, "content-length": form.payload.length },
  });
  request.on("error", fail);
  request.on("response", (res) => {
    let body = "";
    res.setEncoding("utf8").on("data", (chunk: string) => {
      body += chunk;
    });
    res.on("end", () => answer({ status: res.statusCode ?? 0, body }));
  });
  request.write(form.payload.subarray(0, half));
  return {
    response,
    finish: () => request.end(form.payload.subarray(half)),
  };
}

describe("longclip serve", () => {
  test("without a model it exits 1 and says how to get one", async () => {
    await assert.rejects(
      serve(["--model", path.join(tempDir("longclip-nomodel-"), "missing")]),
      /exited \(1\)[\s\S]*model_not_found[\s\S]*python3 -m training export/,
    );
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

  test("PORT counts when LONGCLIP_PORT is unset; HOST, which shells export, does not", () => {
    const platform = loadSettings({}, { PORT: "3000", HOST: "0.0.0.0" });
    assert.equal(platform.port, 3000);
    assert.equal(platform.host, DEFAULT_SETTINGS.host);
    const both = loadSettings({}, { PORT: "3000", LONGCLIP_PORT: "7000", HOST: "0.0.0.0" });
    assert.equal(both.port, 7000, "LONGCLIP_PORT wins over PORT");
    assert.equal(loadSettings({}, { PORT: "", LONGCLIP_PORT: "" }).port, DEFAULT_SETTINGS.port);
    assert.equal(loadSettings({}, { LONGCLIP_HOST: "::1", HOST: "0.0.0.0" }).host, "::1");
    assert.equal(settingsFromFlags({ port: "9000" }, { PORT: "3000" }).port, 9000);
    assert.throws(() => loadSettings({}, { PORT: "http" }), /^Error: PORT must be/);
  });

  test("search settings: a fraction for the near-duplicate threshold, on/off, key lists", () => {
    const env = {
      LONGCLIP_NEAR_DUPLICATE_THRESHOLD: "0.97",
      LONGCLIP_KEEP_UPLOAD_FILENAME: "off",
      LONGCLIP_TEXT_FIELDS: "caption,album",
    };
    const settings = loadSettings({}, env);
    assert.equal(settings.nearDuplicateThreshold, 0.97);
    assert.equal(settings.keepUploadFilename, "off");
    assert.equal(settings.textFields, "caption,album");
    assert.equal(DEFAULT_SETTINGS.nearDuplicateThreshold, 0, "off by default");
    assert.equal(settingsFromFlags({ nearDuplicateThreshold: "1" }, {}).nearDuplicateThreshold, 1);
    for (const bad of ["1.5", "-0.1", "x"]) {
      assert.throws(
        () => loadSettings({}, { LONGCLIP_NEAR_DUPLICATE_THRESHOLD: bad }),
        /LONGCLIP_NEAR_DUPLICATE_THRESHOLD must be a number from 0 to 1/,
      );
    }
    assert.throws(
      () => loadSettings({}, { LONGCLIP_KEEP_UPLOAD_FILENAME: "yes" }),
      /must be on or off, not "yes"/,
    );
  });

  test("serves on PORT, shuts down on SIGTERM, keeps the data across restarts", async () => {
    const data = tempDir("longclip-serve-data-");
    const args = ["--model", demoModelWithoutGallery(), "--data", data, "--threads", "1"];
    const env = {
      LONGCLIP_API_KEY: "env-key",
      PORT: "0",
      LONGCLIP_PORT: "",
      LONGCLIP_HOST: "",
    };
    const first = await serve(args, env);
    try {
      const url = first.url;
      assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
      const res = await supertest(url)
        .post("/index")
        .set("x-api-key", "env-key")
        .attach("images", image("hopper.jpg"), { filename: "hopper.jpg" });
      assert.equal(res.status, 200, res.text);
      const [result] = (res.body as S["IndexResponse"]).results;
      assert.equal(result?.status, "indexed");
      first.child.kill("SIGTERM");
      assert.equal(await first.exited, 0);

      const second = await serve(args, env);
      try {
        const again = supertest(second.url);
        assert.equal(((await again.get("/stats")).body as S["Stats"]).items, 1);
        assert.equal((await again.get(`/items/${result?.id}`)).status, 200);
      } finally {
        second.child.kill("SIGTERM");
        assert.equal(await second.exited, 0);
      }
    } finally {
      if (first.child.exitCode === null) first.child.kill("SIGKILL");
    }
  });

  test("SIGTERM loses nothing acknowledged: in-flight uploads finish, the index is saved", async () => {
    const data = tempDir("longclip-sigterm-data-");
    const args = [
      "--model",
      demoModelWithoutGallery(),
      "--data",
      data,
      "--threads",
      "1",
      "--port",
      "0",
    ];
    const pngs = await distinctPngs(5);
    const parts = (from: number, to: number) =>
      pngs.slice(from, to).map((png, i) => ({
        name: "images",
        value: png,
        filename: `${from + i}.png`,
        contentType: "image/png",
      }));
    const first = await serve(args);
    try {
      const url = first.url;
      const api = supertest(url);
      const dims = ((await api.get("/stats")).body as S["Stats"]).dims;

      // Acknowledged before the signal.
      const batch = multipart(parts(0, 3));
      const done = await api.post("/index").set(batch.headers).send(batch.payload);
      assert.equal(done.status, 200, done.text);
      const acknowledged = (done.body as S["IndexResponse"]).results.map((r) => r.id);

      // In flight at the signal: its headers are read, half its body is sent.
      const inFlight = slowUpload(url, parts(3, 5));
      await new Promise((resolve) => setTimeout(resolve, 500));
      const signalled = performance.now();
      first.child.kill("SIGTERM");

      // The listener closes at once: a new connection is refused while the upload finishes.
      let refused = false;
      for (let tries = 0; tries < 50 && !refused; tries++) {
        refused = await fetch(`${url}/health`).then(
          () => false,
          () => true,
        );
        if (!refused) await new Promise((resolve) => setTimeout(resolve, 50));
      }
      assert.ok(refused, "the server still accepts connections after SIGTERM");
      assert.equal(first.child.exitCode, null, "it exited with a request in flight");

      inFlight.finish();
      const late = await inFlight.response;
      assert.equal(late.status, 200, late.body);
      const lateResults = (JSON.parse(late.body) as S["IndexResponse"]).results;
      assert.deepEqual(
        lateResults.map((r) => r.status),
        ["indexed", "indexed"],
      );
      acknowledged.push(...lateResults.map((r) => r.id));

      assert.equal(await first.exited, 0, first.stderr());
      assert.ok(performance.now() - signalled < DEFAULT_SETTINGS.shutdownTimeoutMs);
      assert.ok(first.log().some((entry) => entry.msg === "shut down"));

      // The index on disk holds every acknowledged item: nothing was left to a rebuild.
      const indexDir = path.join(data, "index");
      const files = readdirSync(indexDir).filter((name) => name.startsWith("hnsw-"));
      assert.equal(files.length, 1, `index files: ${files}`);
      const saved = HnswIndex.load(path.join(indexDir, files[0] as string), {
        dims,
        m: DEFAULT_SETTINGS.hnswM,
        efConstruction: DEFAULT_SETTINGS.hnswEfConstruction,
        efSearch: DEFAULT_SETTINGS.hnswEfSearch,
      });
      assert.equal(saved.size, acknowledged.length);

      const second = await serve(args);
      try {
        const again = supertest(second.url);
        assert.equal(((await again.get("/stats")).body as S["Stats"]).items, acknowledged.length);
        for (const [i, png] of pngs.entries()) {
          const found = await again
            .post("/search/image?k=1")
            .attach("image", png, { filename: "q.png", contentType: "image/png" });
          assert.equal((found.body as S["ImageSearchResponse"]).hits[0]?.id, acknowledged[i]);
        }
      } finally {
        second.child.kill("SIGTERM");
        assert.equal(await second.exited, 0);
      }
    } finally {
      if (first.child.exitCode === null) first.child.kill("SIGKILL");
    }
  });
});
