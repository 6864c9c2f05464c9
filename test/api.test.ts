/**
 * The HTTP API against a real library (SQLite file, HNSW index, the demo model), driven with
 * supertest over a real socket (content-length, keep-alive, multipart over TCP): happy paths,
 * then every kind of bad input, then a check that the earlier data is intact and searchable.
 */
import assert from "node:assert/strict";
import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import sharp from "sharp";
import type { Response } from "supertest";
import { loadSpec, specOperations } from "../src/api/spec.ts";
import type { components } from "../src/api/types.gen.ts";
import { routesOf } from "../src/server/app.ts";
import { tokenizerFromModelDir } from "../src/tokenize/model-dir.ts";
import {
  bombPng,
  multipart,
  type Part,
  startTestApp,
  type TestServer,
  tempDir,
} from "./api-helpers.ts";
import { DEMO_MODEL_DIR, longParagraph, sampleImage } from "./helpers/demo-model.ts";

type S = components["schemas"];

const API_KEY = "test-key-123";
const image = sampleImage;
const tokenizer = tokenizerFromModelDir(DEMO_MODEL_DIR);

describe("HTTP API over a real library", () => {
  let server: TestServer;
  let mediaRoot: string;
  const outside = tempDir("longclip-outside-");

  const http = () => server.http;
  const json = <T>(res: Response) => res.body as T;
  const writeHeaders = { "x-api-key": API_KEY };
  /** A hand-built multipart body (see api-helpers.ts), so malformed ones can be sent too. */
  const postForm = (url: string, parts: Part[], headers: Record<string, string> = {}) => {
    const form = multipart(parts);
    return http()
      .post(url)
      .set({ ...form.headers, ...headers })
      .send(form.payload);
  };
  const upload = (parts: Part[], headers: Record<string, string> = writeHeaders) =>
    postForm("/index", parts, headers);
  const searchImage = (bytes: Buffer, query = "") =>
    postForm(`/search/image${query}`, [{ name: "image", value: bytes, filename: "q.png" }]);
  const search = (body: unknown) =>
    http()
      .post("/search")
      .send(body as object);
  const expectError = (res: Response, status: number, code: string) => {
    assert.equal(res.status, status, res.text);
    const body = json<S["Error"]>(res);
    assert.equal(body.error.code, code, res.text);
    assert.ok(body.error.message.length > 10, "the message says what to do");
  };

  before(async () => {
    mediaRoot = tempDir("longclip-media-");
    mkdirSync(path.join(mediaRoot, "sub"));
    writeFileSync(path.join(mediaRoot, "sub", "hopper.jpg"), image("hopper.jpg"));
    writeFileSync(path.join(outside, "secret.png"), image("shapes.png"));
    symlinkSync(path.join(outside, "secret.png"), path.join(mediaRoot, "link.png"));
    server = await startTestApp({
      apiKey: API_KEY,
      mediaRoot,
      maxBatchItems: 6,
      maxImageBytes: 400_000,
      maxRequestBytes: 2_000_000,
    });
  });
  after(async () => {
    await server?.app.close();
  });

  test("every operation of openapi.yaml has a route, and every route is in openapi.yaml", () => {
    const spec = loadSpec();
    const specRoutes = new Set(
      specOperations(spec).map((op) => `${op.method.toUpperCase()} ${op.url}`),
    );
    const served = new Set(
      routesOf(server.app)
        .filter((r) => r.method !== "HEAD" && !r.url.startsWith("/docs/"))
        .map((r) => `${r.method} ${r.url}`),
    );
    assert.deepEqual([...served].sort(), [...specRoutes].sort());
  });

  test("/openapi.json serves openapi.yaml and /docs works without external requests", async () => {
    const res = await http().get("/openapi.json");
    assert.equal(res.status, 200);
    assert.deepEqual(res.body, JSON.parse(JSON.stringify(loadSpec())));
    const docs = await http().get("/docs");
    assert.equal(docs.status, 200);
    assert.match(docs.text, /swagger/i);
    for (const asset of ["/docs", "/docs/static/swagger-initializer.js"]) {
      const body = (await http().get(asset)).text;
      assert.doesNotMatch(body, /(src|href|url)\s*[=:]\s*["']https?:/i, `${asset} loads remote`);
    }
  });

  test("health, ready, stats on an empty library", async () => {
    assert.deepEqual(json(await http().get("/health")), { status: "ok" });
    assert.deepEqual(json(await http().get("/ready")), { status: "ready" });
    const stats = json<S["Stats"]>(await http().get("/stats"));
    assert.equal(stats.items, 0);
    assert.equal(stats.dims, (await server.library.stats()).dims);
    assert.equal(stats.device, "cpu");
    assert.equal(stats.index.type, "hnsw");
    assert.equal(stats.index.m, server.settings.hnswM);
  });

  test("write endpoints need the API key; reads do not", async () => {
    const parts = [{ name: "images", value: image("shapes.png"), filename: "s.png" }];
    const missing = await upload(parts, {});
    expectError(missing, 401, "unauthorized");
    assert.match(String(missing.headers["www-authenticate"]), /^Bearer/);
    expectError(await upload(parts, { "x-api-key": "wrong" }), 401, "unauthorized");
    expectError(await http().delete("/items/whatever"), 401, "unauthorized");
    assert.equal((await http().get("/items")).status, 200);
    assert.equal(json<S["Stats"]>(await http().get("/stats")).items, 0);
  });

  test("multipart batch with ids (JSON array) and metadata (one field per file)", async () => {
    const res = await upload(
      [
        { name: "ids", value: JSON.stringify(["shapes", "gradient", "gray"]) },
        {
          name: "images",
          value: image("shapes.png"),
          filename: "shapes.png",
          contentType: "image/png",
        },
        {
          name: "images",
          value: image("gradient.jpg"),
          filename: "gradient.jpg",
          contentType: "image/jpeg",
        },
        { name: "images", value: image("grayscale.png"), filename: "grayscale.png" },
        { name: "metadata", value: JSON.stringify({ album: "a", n: 1 }) },
        { name: "metadata", value: JSON.stringify({ album: "a", n: 2 }) },
        { name: "metadata", value: JSON.stringify({ album: "b", n: 3 }) },
      ],
      { authorization: `Bearer ${API_KEY}` },
    );
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(json<S["IndexResponse"]>(res).results, [
      { id: "shapes", status: "indexed" },
      { id: "gradient", status: "indexed" },
      { id: "gray", status: "indexed" },
    ]);
    const item = json<S["Item"]>(await http().get("/items/gradient"));
    // The upload's file name is kept (keepUploadFilename, on by default).
    assert.deepEqual(item.metadata, { album: "a", n: 2, filename: "gradient.jpg" });
    assert.equal(item.source, "upload");
    assert.equal(item.image_url, "/items/gradient/image");
  });

  test("a re-uploaded image is a duplicate under its stored id; repeated ids fields work", async () => {
    const res = await upload([
      { name: "ids", value: "new-name" },
      { name: "images", value: image("shapes.png"), filename: "again.png" },
    ]);
    assert.equal(res.status, 200, res.text);
    const [result] = json<S["IndexResponse"]>(res).results;
    assert.equal(result?.status, "duplicate");
    assert.equal(result?.id, "shapes");
  });

  test("JSON body indexes a file under the media root in place", async () => {
    const res = await http()
      .post("/index")
      .set(writeHeaders)
      .send({ items: [{ id: "hopper", path: "sub/hopper.jpg", metadata: { album: "b" } }] });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(json<S["IndexResponse"]>(res).results, [{ id: "hopper", status: "indexed" }]);
    const item = json<S["Item"]>(await http().get("/items/hopper"));
    assert.equal(item.source, "path");
    assert.equal(item.path, path.join("sub", "hopper.jpg"));
    assert.equal(item.content_type, "image/jpeg");
  });

  test("text search: ranked hits with image urls, query info, filter, exact agrees", async () => {
    const res = await search({ query: "a photo of a cat", k: 3 });
    assert.equal(res.status, 200, res.text);
    const body = json<S["SearchResponse"]>(res);
    assert.equal(body.hits.length, 3);
    assert.deepEqual(
      body.hits.map((h) => h.rank),
      [1, 2, 3],
    );
    for (let i = 1; i < body.hits.length; i++) {
      assert.ok((body.hits[i - 1]?.score ?? 0) >= (body.hits[i]?.score ?? 0));
    }
    for (const hit of body.hits) assert.equal(hit.image_url, `/items/${hit.id}/image`);
    assert.deepEqual(body.query, {
      tokens: tokenizer.encode("a photo of a cat").tokens,
      truncated: false,
      max_tokens: 248,
      chunks: 1,
    });
    assert.ok(body.took_ms >= 0);

    const exact = json<S["SearchResponse"]>(
      await search({ query: "a photo of a cat", k: 3, exact: true }),
    );
    assert.deepEqual(
      exact.hits.map((h) => h.id),
      body.hits.map((h) => h.id),
    );

    const filtered = json<S["SearchResponse"]>(
      await search({ query: "a photo of a cat", k: 10, filter: { album: "a" } }),
    );
    assert.deepEqual(filtered.hits.map((h) => h.id).sort(), ["gradient", "shapes"]);

    const long = longParagraph();
    const tokens = tokenizer.encode(long).tokens;
    assert.ok(tokens > 248, "a text over 248 tokens");
    const cut = json<S["SearchResponse"]>(await search({ query: long }));
    assert.deepEqual(cut.query, { tokens, truncated: true, max_tokens: 248, chunks: 1 });
    expectError(await search({ query: long, truncate: false }), 400, "query_too_long");
  });

  test("image search finds the same image first", async () => {
    const res = await searchImage(image("gradient.jpg"), "?k=2");
    assert.equal(res.status, 200, res.text);
    const body = json<S["ImageSearchResponse"]>(res);
    assert.equal(body.hits.length, 2);
    assert.equal(body.hits[0]?.id, "gradient");
    assert.ok((body.hits[0]?.score ?? 0) > 0.999);
  });

  test("image search takes a filter field, offset and min_score like text search", async () => {
    const query = image("gradient.jpg");
    const all = json<S["ImageSearchResponse"]>(await searchImage(query, "?k=10")).hits;
    const withFilter = (filter: string, params = "?k=10") =>
      postForm(`/search/image${params}`, [
        { name: "image", value: query, filename: "q.jpg" },
        { name: "filter", value: filter },
      ]);
    const album = json<S["ImageSearchResponse"]>(await withFilter('{"album": "b"}')).hits;
    // An independent expectation: the unfiltered ranking restricted to album b.
    assert.deepEqual(
      album.map((h) => h.id),
      all.filter((h) => h.metadata.album === "b").map((h) => h.id),
    );
    assert.ok(album.length >= 2);
    const ranged = json<S["ImageSearchResponse"]>(await withFilter('{"n": {"$gte": 2}}')).hits;
    assert.deepEqual(ranged.map((h) => h.id).sort(), ["gradient", "gray"]);
    const second = json<S["ImageSearchResponse"]>(await searchImage(query, "?k=1&offset=1")).hits;
    assert.deepEqual(
      second.map((h) => h.id),
      [all[1]?.id],
    );
    const cut = all[1]?.score ?? 0;
    const above = json<S["ImageSearchResponse"]>(
      await searchImage(query, `?k=10&min_score=${cut}`),
    ).hits;
    assert.deepEqual(
      above.map((h) => h.id),
      all.filter((h) => h.score >= cut).map((h) => h.id),
    );

    expectError(await withFilter("{not json"), 400, "malformed_json");
    expectError(await withFilter('{"n": {"gte": 2}}'), 400, "validation_failed");
    expectError(await withFilter('["album"]'), 400, "validation_failed");
    expectError(await searchImage(query, "?min_score=2"), 400, "validation_failed");
  });

  test("items: pagination, original bytes with content type", async () => {
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const url: string = cursor
        ? `/items?limit=2&cursor=${encodeURIComponent(cursor)}`
        : "/items?limit=2";
      const page = json<S["ItemPage"]>(await http().get(url));
      assert.ok(page.items.length <= 2);
      seen.push(...page.items.map((i) => i.id));
      cursor = page.next_cursor;
    } while (cursor !== null);
    assert.deepEqual([...seen].sort(), ["gradient", "gray", "hopper", "shapes"]);

    // Newest first walks the same items in the opposite order; cursors keep their order.
    const newest: string[] = [];
    let next: string | null = null;
    let crossed: string | null = null;
    do {
      const url: string = next
        ? `/items?order=newest&limit=3&cursor=${encodeURIComponent(next)}`
        : "/items?order=newest&limit=3";
      const page = json<S["ItemPage"]>(await http().get(url));
      newest.push(...page.items.map((i) => i.id));
      next = page.next_cursor;
      crossed ??= next;
    } while (next !== null);
    assert.deepEqual(newest, [...seen].reverse());
    assert.ok(crossed !== null);
    expectError(
      await http().get(`/items?limit=3&cursor=${encodeURIComponent(crossed)}`),
      400,
      "invalid_cursor",
    );
    expectError(await http().get("/items?order=random"), 400, "validation_failed");

    const bytes = await http().get("/items/gradient/image");
    assert.equal(bytes.status, 200);
    assert.equal(bytes.headers["content-type"], "image/jpeg");
    assert.equal(bytes.headers["content-length"], String(image("gradient.jpg").length));
    assert.deepEqual(bytes.body, image("gradient.jpg"));
    const png = await http().get("/items/shapes/image");
    assert.equal(png.headers["content-type"], "image/png");
  });

  // The tokenizer's ids against the official ones: tokenize-reference.test.ts.
  test("tokenize answers the model tokenizer's ids, count and cut", async () => {
    for (const text of ["a photo of a cat", "", longParagraph()]) {
      const res = await http().post("/tokenize").send({ text });
      assert.equal(res.status, 200, res.text);
      const body = json<S["TokenizeResponse"]>(res);
      const expected = tokenizer.encode(text);
      assert.deepEqual(body.ids, Array.from(expected.ids));
      assert.equal(body.tokens, expected.tokens);
      assert.equal(body.truncated, expected.tokens > 248);
      assert.equal(body.max_tokens, 248);
    }
  });

  test("delete removes the item from items and from search", async () => {
    const added = await upload([
      { name: "ids", value: "to-delete" },
      { name: "images", value: image("demo.png"), filename: "demo.png" },
    ]);
    assert.equal(json<S["IndexResponse"]>(added).results[0]?.status, "indexed");
    const before = json<S["Stats"]>(await http().get("/stats")).items;
    const res = await http().delete("/items/to-delete").set(writeHeaders);
    assert.deepEqual(json(res), { id: "to-delete", deleted: true });
    expectError(await http().get("/items/to-delete"), 404, "not_found");
    const after = json<S["Stats"]>(await http().get("/stats")).items;
    assert.equal(after, before - 1);
    const hits = json<S["ImageSearchResponse"]>(await searchImage(image("demo.png"), "?k=10")).hits;
    assert.ok(!hits.some((h) => h.id === "to-delete"));
  });

  describe("bad inputs get their documented 4xx and change nothing", () => {
    let itemsBefore = 0;
    before(async () => {
      itemsBefore = json<S["Stats"]>(await http().get("/stats")).items;
    });

    test("bad files fail alone inside a batch; the good one is indexed", async () => {
      const bomb = bombPng(20000, 20000);
      const meta = await sharp(bomb, { limitInputPixels: false }).metadata();
      assert.equal(meta.width, 20000, "the bomb is a valid PNG header");
      const jpeg = image("hopper.jpg");
      const res = await upload([
        { name: "images", value: Buffer.from("this is not an image at all"), filename: "a.png" },
        { name: "images", value: jpeg.subarray(0, jpeg.length >> 1), filename: "cut.jpg" },
        { name: "images", value: Buffer.alloc(0), filename: "empty.png" },
        { name: "images", value: bomb, filename: "bomb.png" },
        { name: "images", value: Buffer.alloc(500_000, 7), filename: "big.png" },
        { name: "images", value: image("rgba.png"), filename: "rgba.png" },
      ]);
      assert.equal(res.status, 200, res.text);
      const results = json<S["IndexResponse"]>(res).results;
      assert.deepEqual(
        results.map((r) => r.status),
        ["failed", "failed", "failed", "failed", "failed", "indexed"],
      );
      assert.deepEqual(
        results.slice(0, 5).map((r) => r.error?.code),
        [
          "unsupported_image",
          "image_corrupt",
          "image_empty",
          "image_too_many_pixels",
          "image_too_large",
        ],
      );
      const added = results[5]?.id ?? "";
      const del = await http().delete(`/items/${added}`).set(writeHeaders);
      assert.equal(del.status, 200);
    });

    test("bad query images are refused with 4xx", async () => {
      const jpeg = image("hopper.jpg");
      expectError(await searchImage(Buffer.from("not an image")), 415, "unsupported_image");
      expectError(await searchImage(jpeg.subarray(0, jpeg.length >> 1)), 400, "image_corrupt");
      expectError(await searchImage(Buffer.alloc(0)), 400, "image_empty");
      expectError(await searchImage(bombPng(20000, 20000)), 413, "image_too_many_pixels");
      expectError(await searchImage(Buffer.alloc(500_000, 7)), 413, "image_too_large");
      expectError(
        await postForm("/search/image", [
          { name: "image", value: image("shapes.png"), filename: "a.png" },
          { name: "image", value: image("shapes.png"), filename: "b.png" },
        ]),
        400,
        "validation_failed",
      );
    });

    test("wrong content types get 415", async () => {
      expectError(
        await http()
          .post("/index")
          .set({ ...writeHeaders, "content-type": "text/plain" })
          .send("hello"),
        415,
        "unsupported_media_type",
      );
      expectError(
        await http()
          .post("/index")
          .set({ ...writeHeaders, "content-type": "image/png" })
          .send(image("shapes.png")),
        415,
        "unsupported_media_type",
      );
      expectError(
        await postForm("/search", [{ name: "query", value: "cat" }]),
        415,
        "unsupported_media_type",
      );
      expectError(
        await http().post("/search/image").send({ image: "x" }),
        415,
        "unsupported_media_type",
      );
    });

    test("malformed JSON and malformed multipart get 400", async () => {
      for (const payload of ['{"query": "cat"', "", "[1, 2"]) {
        expectError(
          await http().post("/search").set("content-type", "application/json").send(payload),
          400,
          "malformed_json",
        );
      }
      expectError(
        await upload([
          { name: "metadata", value: "{not json" },
          { name: "images", value: image("shapes.png"), filename: "s.png" },
        ]),
        400,
        "malformed_json",
      );
      const form = multipart([{ name: "images", value: image("shapes.png"), filename: "s.png" }]);
      expectError(
        await http()
          .post("/index")
          .set({ ...form.headers, ...writeHeaders })
          .send(form.payload.subarray(0, form.payload.length - 200)),
        400,
        "malformed_multipart",
      );
    });

    test("schema violations name the failing field", async () => {
      const res = await search({ query: "cat", kk: 3 });
      expectError(res, 400, "validation_failed");
      assert.match(json<S["Error"]>(res).error.message, /body\/kk/);
      const bad = await search({ query: "cat", filter: { album: { nested: 1 } } });
      expectError(bad, 400, "validation_failed");
      assert.match(json<S["Error"]>(bad).error.message, /body\/filter\/album/);
      expectError(await search({ k: 3 }), 400, "validation_failed");
      expectError(await search({ query: "" }), 400, "empty_query");
      expectError(await search({ query: "   \n " }), 400, "empty_query");
      expectError(
        await upload([
          { name: "ids", value: "has space" },
          { name: "images", value: image("shapes.png"), filename: "s.png" },
        ]),
        400,
        "validation_failed",
      );
      expectError(
        await upload([
          { name: "ids", value: JSON.stringify(["a", "b"]) },
          { name: "images", value: image("shapes.png"), filename: "s.png" },
        ]),
        400,
        "validation_failed",
      );
      expectError(await upload([{ name: "ids", value: "a" }]), 400, "validation_failed");
      expectError(await http().get("/items?limit=0"), 400, "validation_failed");
      expectError(await http().get("/items/bad%20id"), 400, "validation_failed");
    });

    test("oversized batches and bodies get 413", async () => {
      const seven = Array.from({ length: 7 }, (_, i) => ({
        name: "images",
        value: image("grayscale.png"),
        filename: `${i}.png`,
      }));
      expectError(await upload(seven), 413, "too_many_items");
      const paths = Array.from({ length: 7 }, () => ({ path: "sub/hopper.jpg" }));
      expectError(
        await http().post("/index").set(writeHeaders).send({ items: paths }),
        413,
        "too_many_items",
      );
      expectError(await search({ query: "x".repeat(2_100_000) }), 413, "payload_too_large");
      const big = Array.from({ length: 6 }, (_, i) => ({
        name: "images",
        value: Buffer.alloc(390_000, i),
        filename: `${i}.png`,
      }));
      expectError(await upload(big), 413, "payload_too_large");
    });

    test("k out of range gets 400 k_out_of_range", async () => {
      for (const k of [0, -1, 1001, 2.5, "ten"]) {
        expectError(await search({ query: "cat", k }), 400, "k_out_of_range");
      }
      expectError(await searchImage(image("shapes.png"), "?k=0"), 400, "k_out_of_range");
      expectError(await searchImage(image("shapes.png"), "?k=5000"), 400, "k_out_of_range");
    });

    test("a 20,000-character query gets 400 query_too_long", async () => {
      const query = "a very long description of a cat ".repeat(700).slice(0, 20_000);
      expectError(await search({ query }), 400, "query_too_long");
      expectError(await http().post("/tokenize").send({ text: query }), 400, "query_too_long");
    });

    test("unknown ids and routes get 404", async () => {
      expectError(await http().get("/items/nope"), 404, "not_found");
      expectError(await http().get("/items/nope/image"), 404, "not_found");
      expectError(await http().delete("/items/nope").set(writeHeaders), 404, "not_found");
      expectError(await http().get("/nothing/here"), 404, "not_found");
    });

    test("a path outside the media root fails only itself", async () => {
      for (const bad of [
        "../outside.jpg",
        path.join(outside, "secret.png"),
        "/etc/passwd",
        "link.png",
      ]) {
        const res = await http()
          .post("/index")
          .set(writeHeaders)
          .send({ items: [{ id: "fine", path: "sub/hopper.jpg" }, { path: bad }] });
        assert.equal(res.status, 200, res.text);
        const [good, refused] = json<S["IndexResponse"]>(res).results;
        // The good item is read: its bytes are stored already, as "hopper".
        assert.deepEqual(good, { id: "hopper", status: "duplicate" });
        assert.equal(refused?.status, "failed");
        assert.equal(refused?.error?.code, "path_outside_media_root");
      }
      expectError(await http().get("/items/fine"), 404, "not_found");
    });

    test("afterwards the data is intact and earlier items are still found", async () => {
      const stats = json<S["Stats"]>(await http().get("/stats"));
      assert.equal(stats.items, itemsBefore);
      const hits = json<S["ImageSearchResponse"]>(await searchImage(image("shapes.png"))).hits;
      assert.equal(hits[0]?.id, "shapes");
      const text = await search({ query: "a photo of a cat", k: 10 });
      assert.equal(json<S["SearchResponse"]>(text).hits.length, itemsBefore);
      assert.equal((await http().get("/ready")).status, 200);
    });
  });

  test("metrics count requests by route and status and report the items", async () => {
    const res = await http().get("/metrics");
    assert.equal(res.status, 200);
    assert.match(String(res.headers["content-type"]), /^text\/plain/);
    assert.match(
      res.text,
      /http_requests_total\{method="POST",route="\/search",status="200"\} \d+/,
    );
    assert.match(
      res.text,
      /http_requests_total\{method="POST",route="\/search",status="400"\} \d+/,
    );
    assert.match(
      res.text,
      /longclip_operation_duration_seconds_count\{operation="index",outcome="ok"\} \d+/,
    );
    const items = json<S["Stats"]>(await http().get("/stats")).items;
    assert.match(res.text, new RegExp(`longclip_items ${items}\\b`));
    assert.match(res.text, /longclip_queue_pending 0\b/);
  });
});
