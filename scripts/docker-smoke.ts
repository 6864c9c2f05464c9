/**
 * Smoke test of a running server (scripts/test-docker.sh runs it against the container):
 * health, readiness, the page, a text search, an upload, and an image search that finds it.
 *
 *   node --import tsx scripts/docker-smoke.ts http://127.0.0.1:8080
 */
import assert from "node:assert/strict";
import sharp from "sharp";
import type { components } from "../src/api/types.gen.ts";

type S = components["schemas"];

const base = process.argv[2];
if (base === undefined) {
  process.stderr.write("usage: docker-smoke.ts BASE_URL\n");
  process.exit(2);
}
const READY_TIMEOUT_MS = 180_000;

async function waitFor(path: string): Promise<number> {
  const started = performance.now();
  let last = "no answer";
  while (performance.now() - started < READY_TIMEOUT_MS) {
    try {
      const res = await fetch(`${base}${path}`);
      if (res.ok) return Math.round(performance.now() - started);
      last = `${res.status} ${await res.text()}`;
    } catch (error) {
      last = (error as Error).message;
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`${path} did not answer 200 within ${READY_TIMEOUT_MS} ms (last: ${last})`);
}

async function json<T>(res: Response): Promise<T> {
  const text = await res.text();
  assert.ok(res.ok, `${res.url}: ${res.status} ${text}`);
  return JSON.parse(text) as T;
}

const health = await waitFor("/health");
const ready = await waitFor("/ready");
console.log(`    /health after ${health} ms, /ready after ${ready} ms`);

const page = await fetch(`${base}/`);
assert.equal(page.status, 200);
assert.match(page.headers.get("content-type") ?? "", /^text\/html/);

const stats = await json<S["Stats"]>(await fetch(`${base}/stats`));
assert.ok(stats.items > 0, "the demo model's gallery was indexed into the new /data");

const found = await json<S["SearchResponse"]>(
  await fetch(`${base}/search`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ query: "a photo of a red square on a blue background", k: 3 }),
  }),
);
assert.equal(found.hits.length, Math.min(3, stats.items));

// An image no gallery has: random pixels, so it cannot be a duplicate of a stored one.
const pixels = Buffer.from(
  Array.from({ length: 96 * 96 * 3 }, () => Math.floor(Math.random() * 256)),
);
const png = await sharp(pixels, { raw: { width: 96, height: 96, channels: 3 } })
  .png()
  .toBuffer();
const upload = new FormData();
upload.append("images", new Blob([png], { type: "image/png" }), "smoke.png");
const indexed = await json<S["IndexResponse"]>(
  await fetch(`${base}/index`, { method: "POST", body: upload }),
);
const id = indexed.results[0]?.id;
assert.equal(indexed.results[0]?.status, "indexed", JSON.stringify(indexed));

const query = new FormData();
query.append("image", new Blob([png], { type: "image/png" }), "query.png");
const byImage = await json<S["ImageSearchResponse"]>(
  await fetch(`${base}/search/image?k=1`, { method: "POST", body: query }),
);
assert.equal(byImage.hits[0]?.id, id, "the uploaded image is its own nearest neighbour");
assert.equal((await fetch(`${base}/items/${id}`)).status, 200);
console.log(`    search, index (${id}) and image search answered; ${stats.items + 1} items`);
