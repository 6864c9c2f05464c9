/**
 * The web UI's server side without a browser: the page at `/` (one document, the server's
 * limits inlined, a CSP that allows only its own inline code), thumbnails (WebP, bounded
 * size, never enlarged, ETag revalidation, documented errors), and /tokenize's kept_chars
 * checked against the model tokenizer's ids of the whole text.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { after, before, describe, test } from "node:test";
import sharp from "sharp";
import type { components } from "../../src/api/types.gen.ts";
import { tokenizerFromModelDir } from "../../src/tokenize/model-dir.ts";
import { multipart, startTestApp, type TestServer } from "../api-helpers.ts";
import { longParagraph, sampleImage } from "../helpers/demo-model.ts";

type S = components["schemas"];

const image = sampleImage;

describe("web UI routes", () => {
  let server: TestServer;
  const ids: Record<string, string> = {};

  before(async () => {
    server = await startTestApp({ maxBatchItems: 7, maxK: 500 });
    const files = ["hopper.jpg", "panorama.png", "tiny.png"];
    const { payload, headers } = multipart(
      files.map((name) => ({ name: "images", value: image(name), filename: name })),
    );
    const res = await server.app.inject({ method: "POST", url: "/index", payload, headers });
    const results = (res.json() as S["IndexResponse"]).results;
    files.forEach((name, i) => {
      const id = results[i]?.id;
      assert.ok(id && results[i]?.status === "indexed", `${name} indexed`);
      ids[name] = id;
    });
  });
  after(async () => {
    await server?.app.close();
  });

  const get = (url: string, headers: Record<string, string> = {}) =>
    server.app.inject({ method: "GET", url, headers });

  test("GET / serves one self-contained page with the server's limits", async () => {
    const res = await get("/");
    assert.equal(res.statusCode, 200);
    assert.match(res.headers["content-type"] as string, /^text\/html; charset=utf-8/);
    const html = res.body;
    const config = /<script type="application\/json" id="longclip-config">(.*?)<\/script>/.exec(
      html,
    );
    assert.ok(config?.[1], "the limits are inlined");
    const limits = JSON.parse(config[1]) as Record<string, number>;
    assert.equal(limits.maxBatchItems, 7);
    assert.equal(limits.maxK, 500);
    assert.equal(limits.maxImageBytes, server.settings.maxImageBytes);
    assert.doesNotMatch(html, /(src|href|url)\s*[=(:]\s*["']?(https?:)?\/\//i, "no remote URL");

    // The policy allows exactly the page's own inline script and style, by hash.
    const csp = res.headers["content-security-policy"] as string;
    const script = /<script type="module">([\s\S]*?)<\/script>/.exec(html)?.[1];
    const style = /<style>([\s\S]*?)<\/style>/.exec(html)?.[1];
    assert.ok(script && style);
    const hash = (text: string) => createHash("sha256").update(text).digest("base64");
    assert.match(csp, /default-src 'none'/);
    assert.ok(csp.includes(`script-src 'sha256-${hash(script)}'`), csp);
    assert.ok(csp.includes(`style-src 'sha256-${hash(style)}'`), csp);
    assert.match(csp, /connect-src 'self'/);
  });

  test("thumbnails are WebP, fit the requested box and keep the aspect ratio", async () => {
    for (const name of ["hopper.jpg", "panorama.png"]) {
      const original = await sharp(image(name)).metadata();
      for (const size of [256, 64]) {
        const res = await get(`/items/${ids[name]}/thumbnail?size=${size}`);
        assert.equal(res.statusCode, 200);
        assert.equal(res.headers["content-type"], "image/webp");
        const meta = await sharp(res.rawPayload).metadata();
        assert.equal(meta.format, "webp");
        const longest = Math.max(original.width, original.height);
        assert.equal(Math.max(meta.width, meta.height), Math.min(size, longest), `${name} ${size}`);
        const ratio = original.width / original.height;
        assert.ok(Math.abs(meta.width / meta.height - ratio) < 0.05 * ratio, `${name} ratio`);
      }
    }
    // Never enlarged: a small image keeps its own size.
    const tiny = await sharp(image("tiny.png")).metadata();
    const res = await get(`/items/${ids["tiny.png"]}/thumbnail?size=1024`);
    const meta = await sharp(res.rawPayload).metadata();
    assert.deepEqual([meta.width, meta.height], [tiny.width, tiny.height]);
  });

  test("thumbnails are cacheable and revalidate with their ETag", async () => {
    const url = `/items/${ids["hopper.jpg"]}/thumbnail`;
    const first = await get(url);
    const etag = first.headers.etag as string;
    assert.ok(etag);
    assert.match(first.headers["cache-control"] as string, /max-age=\d+/);
    const again = await get(url, { "if-none-match": etag });
    assert.equal(again.statusCode, 304);
    assert.equal(again.rawPayload.length, 0);
    const listed = await get(url, { "if-none-match": `"elsewhere", W/${etag}` });
    assert.equal(listed.statusCode, 304, "a weak tag in a list matches");
    const other = await get(`${url}?size=128`, { "if-none-match": etag });
    assert.equal(other.statusCode, 200, "another size is another representation");
  });

  test("thumbnail errors: unknown id 404, size out of range 400", async () => {
    const missing = await get("/items/no-such-item/thumbnail");
    assert.equal(missing.statusCode, 404);
    assert.equal((missing.json() as S["Error"]).error.code, "not_found");
    for (const size of ["8", "4096", "big"]) {
      const res = await get(`/items/${ids["hopper.jpg"]}/thumbnail?size=${size}`);
      assert.equal(res.statusCode, 400, size);
      assert.equal((res.json() as S["Error"]).error.code, "validation_failed");
    }
  });

  test("/tokenize kept_chars: the kept words are the whole text's ids' prefix", async () => {
    const tokenize = async (text: string) => {
      const res = await server.app.inject({ method: "POST", url: "/tokenize", payload: { text } });
      assert.equal(res.statusCode, 200, res.body);
      return res.json() as S["TokenizeResponse"];
    };
    const tokenizer = tokenizerFromModelDir(server.settings.modelDir);
    const texts = ["a photo of a cat", longParagraph(12), longParagraph(), longParagraph(25)];
    // The whole text's ids, from the tokenizer (cut at 248, so its first 247 are the prefix).
    const reference = texts.map((text) => {
      const encoded = tokenizer.encode(text);
      return { text, ids: Array.from(encoded.ids), tokens: encoded.tokens };
    });
    assert.ok(
      reference.some((r) => r.tokens > 248),
      "a text past 248 tokens",
    );
    for (const ref of reference) {
      const body = await tokenize(ref.text);
      if (ref.tokens <= 248) {
        assert.equal(body.kept_chars, ref.text.length);
        continue;
      }
      const kept = ref.text.slice(0, body.kept_chars);
      const keptIds = (await tokenize(kept)).ids;
      // [start] + the kept words' ids + [end]: the words' ids are the whole text's.
      assert.deepEqual(keptIds.slice(0, -1), ref.ids.slice(0, keptIds.length - 1));
      assert.ok(keptIds.length <= 248);
      // One more word would not fit.
      const next = /^\s*\S+/.exec(ref.text.slice(body.kept_chars))?.[0] ?? "";
      assert.ok(next.length > 0);
      assert.equal((await tokenize(kept + next)).truncated, true);
    }
  });
});
