/**
 * POST /search's options over a real socket against a real library (SQLite + HNSW, the demo
 * model): filter operators, offset pages with absolute ranks, the min_score cutoff,
 * composed queries and long queries in sentence windows. Expected rankings and scores come
 * from independent searches (the full exact ranking, single-part searches), not from the code
 * under test.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { Response } from "supertest";
import type { components } from "../src/api/types.gen.ts";
import { sentenceWindows } from "../src/library/search/search.ts";
import { tokenizerFromModelDir } from "../src/tokenize/index.ts";
import { multipart, startTestApp, type TestServer } from "./api-helpers.ts";
import { longParagraph, sampleImage } from "./helpers/demo-model.ts";

type S = components["schemas"];
type Hit = S["Hit"];

const IMAGES = [
  "demo.png",
  "gradient.jpg",
  "grayscale.png",
  "hopper.jpg",
  "panorama.png",
  "rgba.png",
  "shapes.png",
  "tiny.png",
];
/** Item i: n = i, taken = 2024-01-(10+i) at 12:00 in zone +02:00, odd/even group. */
const metadataOf = (i: number) => ({
  n: i,
  taken: `2024-01-${10 + i}T12:00:00+02:00`,
  group: i % 2 === 0 ? "even" : "odd",
  ...(i === 0 ? { pinned: true } : {}),
});
const idOf = (i: number) => `img-${i}`;

describe("POST /search options over a real library", () => {
  let server: TestServer;
  const json = <T>(res: Response) => res.body as T;
  const search = (body: unknown) =>
    server.http.post("/search").send(body as object) as unknown as Promise<Response>;
  const ok = async (body: unknown) => {
    const res = await search(body);
    assert.equal(res.status, 200, res.text);
    return json<S["SearchResponse"]>(res);
  };
  const expectError = (res: Response, status: number, code: string, message?: RegExp) => {
    assert.equal(res.status, status, res.text);
    const error = json<S["Error"]>(res).error;
    assert.equal(error.code, code, res.text);
    if (message) assert.match(error.message, message);
  };
  /** The whole ranking, by exact scan: the reference pages and cutoffs are cut from. */
  const fullRanking = async (body: object) =>
    (await ok({ ...body, k: IMAGES.length, exact: true })).hits;

  before(async () => {
    server = await startTestApp({ indexSaveIntervalMs: 0 });
    const form = multipart([
      { name: "ids", value: JSON.stringify(IMAGES.map((_, i) => idOf(i))) },
      ...IMAGES.map((name) => ({
        name: "images",
        value: sampleImage(name),
        filename: name,
      })),
      ...IMAGES.map((_, i) => ({ name: "metadata", value: JSON.stringify(metadataOf(i)) })),
    ]);
    const res = await server.http.post("/index").set(form.headers).send(form.payload);
    assert.equal(res.status, 200, res.text);
    for (const result of json<S["IndexResponse"]>(res).results) {
      assert.equal(result.status, "indexed", JSON.stringify(result));
    }
  });
  after(async () => {
    await server?.app.close();
  });

  test("filter operators select what they say, on the exact scan and through HNSW", async () => {
    const ids = async (filter: object, exact = true) =>
      (await ok({ query: "a photo", k: 8, exact, filter })).hits.map((h) => h.id).sort();
    const expect = (ns: number[]) => ns.map(idOf).sort();
    for (const exact of [true, false]) {
      assert.deepEqual(await ids({ n: { $gte: 3, $lt: 6 } }, exact), expect([3, 4, 5]));
      assert.deepEqual(await ids({ n: { $in: [1, 7] }, group: "odd" }, exact), expect([1, 7]));
      assert.deepEqual(await ids({ n: { $nin: [0, 1, 2, 3] } }, exact), expect([4, 5, 6, 7]));
      assert.deepEqual(await ids({ group: { $ne: "odd" } }, exact), expect([0, 2, 4, 6]));
      assert.deepEqual(await ids({ pinned: { $exists: true } }, exact), expect([0]));
      // 2024-01-14T12:00+02:00 is 10:00Z: the bound is an instant, not a string prefix.
      assert.deepEqual(
        await ids({ taken: { $gte: "2024-01-14T10:00:00Z", $lte: "2024-01-15T10:00Z" } }, exact),
        expect([4, 5]),
      );
    }
  });

  test("bad operators and operands are 400 validation_failed naming the path", async () => {
    expectError(
      await search({ query: "x", filter: { n: { $regex: "1" } } }),
      400,
      "validation_failed",
      /filter\/n\/\$regex/,
    );
    expectError(
      await search({ query: "x", filter: { n: { $in: 5 } } }),
      400,
      "validation_failed",
      /filter\/n\/\$in/,
    );
    expectError(
      await search({ query: "x", filter: { n: { $exists: 1 } } }),
      400,
      "validation_failed",
      /filter\/n\/\$exists/,
    );
    expectError(
      await search({ query: "x", filter: { taken: { $gt: "last tuesday" } } }),
      400,
      "validation_failed",
      /filter\.taken\.\$gt/,
    );
    expectError(
      await search({ query: "x", filter: { taken: { $lt: "2024-02-30" } } }),
      400,
      "validation_failed",
      /filter\.taken\.\$lt/,
    );
    expectError(
      await search({ query: "x", filter: { n: {} } }),
      400,
      "validation_failed",
      /filter\/n/,
    );
  });

  test("a filter naming more values than maxFilterValues is 400 filter_too_large, on /search and /search/image", async () => {
    // Issue 24's ~10 KB filter: 32 keys, each $nin of 100 values (3,200 values in all).
    const wide: Record<string, unknown> = {};
    for (let k = 0; k < 32; k++) {
      wide[`k${k}`] = { $nin: Array.from({ length: 100 }, (_, v) => `value-${k}-${v}`) };
    }
    expectError(
      await search({ query: "x", filter: wide }),
      400,
      "filter_too_large",
      /3200 values; the limit is 256/,
    );
    expectError(
      await search({ query: "x", mode: "hybrid", filter: wide }),
      400,
      "filter_too_large",
    );
    const image = sampleImage("tiny.png");
    const form = multipart([
      { name: "image", value: image, filename: "q.png", contentType: "image/png" },
      { name: "filter", value: JSON.stringify(wide) },
    ]);
    const res = (await server.http
      .post("/search/image")
      .set(form.headers)
      .send(form.payload)) as unknown as Response;
    expectError(res, 400, "filter_too_large");
    // At the limit it is a filter like any other: 32 keys x $nin of 8 values match everything.
    const atLimit: Record<string, unknown> = {};
    for (let k = 0; k < 32; k++) {
      atLimit[`k${k}`] = { $nin: Array.from({ length: 8 }, (_, v) => `value-${k}-${v}`) };
    }
    assert.equal((await ok({ query: "x", k: 8, filter: atLimit })).hits.length, IMAGES.length);
  });

  test("offset pages through the same ranking; ranks stay absolute", async () => {
    const all = await fullRanking({ query: "a colourful picture" });
    assert.equal(all.length, 8);
    for (const exact of [true, false]) {
      const page = await ok({ query: "a colourful picture", k: 3, offset: 3, exact });
      assert.deepEqual(
        page.hits.map((h) => [h.id, h.rank]),
        all.slice(3, 6).map((h) => [h.id, h.rank]),
      );
      assert.deepEqual(
        page.hits.map((h) => h.rank),
        [4, 5, 6],
      );
    }
    const last = await ok({ query: "a colourful picture", k: 5, offset: 6, exact: true });
    assert.deepEqual(
      last.hits.map((h) => h.rank),
      [7, 8],
    );
    assert.equal(
      (await ok({ query: "a colourful picture", offset: 8, exact: true })).hits.length,
      0,
    );
    expectError(await search({ query: "x", k: 10, offset: 995 }), 400, "offset_out_of_range");
    expectError(await search({ query: "x", offset: -1 }), 400, "validation_failed");
  });

  test("min_score leaves out hits below the cutoff, possibly all of them", async () => {
    const all = await fullRanking({ query: "a grey photograph" });
    const cutoff = ((all[2] as Hit).score + (all[3] as Hit).score) / 2;
    const cut = await ok({ query: "a grey photograph", k: 8, exact: true, min_score: cutoff });
    assert.deepEqual(
      cut.hits.map((h) => h.id),
      all.filter((h) => h.score >= cutoff).map((h) => h.id),
    );
    assert.equal(cut.hits.length, 3);
    const none = await ok({ query: "a grey photograph", min_score: (all[0] as Hit).score + 1e-3 });
    assert.equal(none.hits.length, 0);
    const paged = await ok({
      query: "a grey photograph",
      k: 4,
      offset: 1,
      exact: true,
      min_score: cutoff,
    });
    assert.deepEqual(
      paged.hits.map((h) => [h.id, h.rank]),
      all.slice(1, 3).map((h) => [h.id, h.rank]),
    );
    expectError(await search({ query: "x", min_score: 1.5 }), 400, "validation_failed");
  });

  test("compose: the weighted sum of unit embeddings, renormalised; negative = less like", async () => {
    const text = "a photo of a cat";
    const single = await ok({ compose: [{ text, weight: 2 }], k: 8, exact: true });
    const plain = await fullRanking({ query: text });
    assert.deepEqual(
      single.hits.map((h) => h.id),
      plain.map((h) => h.id),
    );
    assert.equal(single.query.parts, 1);

    // Independent reference: with unit t (text) and i (item), cos(x, (t + w·i)/|t + w·i|) =
    // (cos(x,t) + w·cos(x,i)) / sqrt(1 + w² + 2w·cos(t,i)), from single-part scores.
    const item = idOf(6);
    const byItem = (await ok({ compose: [{ item_id: item, weight: 1 }], k: 8, exact: true })).hits;
    assert.equal(byItem[0]?.id, item);
    assert.ok(Math.abs((byItem[0]?.score ?? 0) - 1) < 1e-4, "an item is most like itself");
    const textScore = new Map(plain.map((h) => [h.id, h.score]));
    const itemScore = new Map(byItem.map((h) => [h.id, h.score]));
    for (const w of [0.5, -0.5]) {
      const composed = await ok({
        compose: [
          { text, weight: 1 },
          { item_id: item, weight: w },
        ],
        k: 8,
        exact: true,
      });
      const norm = Math.sqrt(1 + w * w + 2 * w * (textScore.get(item) as number));
      const expected = IMAGES.map((_, i) => idOf(i))
        .map((id) => ({
          id,
          score: ((textScore.get(id) as number) + w * (itemScore.get(id) as number)) / norm,
        }))
        .sort((a, b) => b.score - a.score);
      composed.hits.forEach((hit, r) => {
        assert.ok(Math.abs(hit.score - (expected[r]?.score as number)) < 1e-4, `w=${w} rank ${r}`);
      });
      assert.equal(composed.hits.length, 8);
    }
    const pushedAway = await ok({
      compose: [
        { text, weight: 1 },
        { item_id: item, weight: -0.5 },
      ],
      k: 8,
      exact: true,
    });
    const rankOf = (hits: Hit[]) => hits.findIndex((h) => h.id === item);
    assert.ok(rankOf(pushedAway.hits) >= rankOf(plain), "less like this moves the item down");

    expectError(await search({ k: 3 }), 400, "validation_failed", /exactly one of query/);
    expectError(
      await search({ query: "x", compose: [{ text: "y", weight: 1 }] }),
      400,
      "validation_failed",
    );
    expectError(
      await search({ compose: [{ text: "y", item_id: item, weight: 1 }] }),
      400,
      "validation_failed",
      /compose\[0\]/,
    );
    expectError(await search({ compose: [{ text: "y" }] }), 400, "validation_failed");
    expectError(await search({ compose: [] }), 400, "validation_failed");
    expectError(
      await search({ compose: [{ item_id: "no-such-item", weight: 1 }] }),
      404,
      "not_found",
    );
    expectError(
      await search({
        compose: [
          { text: "a dog", weight: 1 },
          { text: "a dog", weight: -1 },
        ],
      }),
      400,
      "validation_failed",
      /cancel/,
    );
  });

  test('long_query "chunk": sentence windows under the context, pooled like compose', async () => {
    const tokenizer = tokenizerFromModelDir(server.settings.modelDir as string);
    const long = { text: longParagraph(), tokens: tokenizer.encode(longParagraph()).tokens };
    assert.ok(long.tokens > 300, "a text well over 248 tokens");
    const cut = await ok({ query: long.text, k: 8, exact: true });
    assert.equal(cut.query.truncated, true);
    assert.equal(cut.query.chunks, 1);
    const chunked = await ok({ query: long.text, k: 8, exact: true, long_query: "chunk" });
    assert.equal(chunked.query.truncated, false);
    assert.equal(chunked.query.tokens, long.tokens);
    assert.ok((chunked.query.chunks ?? 0) >= 2, JSON.stringify(chunked.query));
    // Refusing long queries does not apply when they are read in windows.
    const strict = await ok({ query: long.text, truncate: false, long_query: "chunk", k: 1 });
    assert.equal(strict.query.chunks, chunked.query.chunks);
    const short = await ok({ query: "a cat", long_query: "chunk" });
    assert.equal(short.query.chunks, 1);

    // A request's text-tower runs are bounded: 16 such texts in windows are refused whole.
    expectError(
      await search({
        compose: Array.from({ length: 16 }, (_, i) => ({
          text: `${i} ${long.text} ${long.text}`,
          weight: 1,
        })),
        long_query: "chunk",
      }),
      400,
      "too_many_windows",
      /limit is 32 per request/,
    );

    // The pooled vector is Σ unit window embeddings / |Σ|: each item's score is Σ of its
    // per-window scores (separate searches) over one constant.
    const windows = sentenceWindows(long.text, (t) => tokenizer.encode(t).tokens, 248);
    assert.equal(windows.length, chunked.query.chunks);
    for (const window of windows) assert.ok(tokenizer.encode(window).tokens <= 248);
    const summed = new Map<string, number>();
    for (const window of windows) {
      for (const hit of await fullRanking({ query: window })) {
        summed.set(hit.id, (summed.get(hit.id) ?? 0) + hit.score);
      }
    }
    const ratios = chunked.hits.map((h) => (summed.get(h.id) as number) / h.score);
    for (const ratio of ratios)
      assert.ok(Math.abs(ratio - (ratios[0] as number)) < 1e-3, String(ratios));
  });
});
