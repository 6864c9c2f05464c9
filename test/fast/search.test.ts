/**
 * Search in the library (src/library/search/) over the in-memory store and the
 * deterministic embedder: items are stored with known embeddings, the query is pinned to a
 * known vector, and every expected ranking is computed here from those vectors.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { isAppError } from "../../src/core/errors.ts";
import type { Hit } from "../../src/core/types.ts";
import { unit } from "../fakes/embedder.ts";
import { type FakeLibrary, openFakeLibrary, putItems } from "../fakes/library.ts";
import { vectorOf } from "../helpers/store-contract.ts";

const QUERY = "a harbour at dusk";
const COUNT = 12;
const query = unit(vectorOf(1000));
const vectors = Array.from({ length: COUNT }, (_, n) => unit(vectorOf(n + 1)));
const ids = vectors.map((_, n) => `item-${n + 1}`);

function dot(a: Float32Array, b: Float32Array): number {
  return a.reduce((sum, value, i) => sum + value * (b[i] as number), 0);
}

/** The ids in cosine order with their scores, computed here from the stored vectors. */
function ranking(allowed: (n: number) => boolean = () => true) {
  return vectors
    .map((vector, n) => ({ id: ids[n] as string, n, score: dot(query, vector) }))
    .filter((entry) => allowed(entry.n))
    .sort((a, b) => b.score - a.score);
}

function code(expected: string) {
  return (e: unknown) => isAppError(e) && e.code === expected;
}

const idsOf = (hits: Hit[]) => hits.map((hit) => hit.id);

describe("search over the in-memory store", () => {
  let fake: FakeLibrary;

  before(async () => {
    fake = await openFakeLibrary({ maxK: 20, maxFilterValues: 4 });
    await putItems(
      fake,
      vectors.map((vector, n) => ({
        id: ids[n] as string,
        vector,
        metadata: { group: n % 3 === 0 ? "a" : "b", n, caption: `picture number ${n + 1}` },
      })),
    );
    fake.embedder.pinned.set(QUERY, query);
  });
  after(() => fake.library.close());

  test("the first page is the k best by cosine, scores are the cosines, ranks count from 1", async () => {
    const expected = ranking();
    const { hits, query: info } = await fake.library.searchText(QUERY, { k: 5 });
    assert.deepEqual(
      idsOf(hits),
      expected.slice(0, 5).map((e) => e.id),
    );
    assert.deepEqual(
      hits.map((hit) => hit.rank),
      [1, 2, 3, 4, 5],
    );
    hits.forEach((hit, i) => {
      assert.ok(Math.abs(hit.score - (expected[i]?.score as number)) < 1e-6, hit.id);
    });
    assert.deepEqual(info, { tokens: 6, truncated: false, max_tokens: 32, chunks: 1 });
  });

  test("offset pages continue the same ranking with absolute ranks; the last page is short", async () => {
    const expected = ranking();
    const second = await fake.library.searchText(QUERY, { k: 5, offset: 5 });
    assert.deepEqual(
      idsOf(second.hits),
      expected.slice(5, 10).map((e) => e.id),
    );
    assert.deepEqual(
      second.hits.map((hit) => hit.rank),
      [6, 7, 8, 9, 10],
    );
    const last = await fake.library.searchText(QUERY, { k: 5, offset: 10 });
    assert.deepEqual(
      idsOf(last.hits),
      expected.slice(10).map((e) => e.id),
    );
    const exact = await fake.library.searchText(QUERY, { k: 5, offset: 5, exact: true });
    assert.deepEqual(idsOf(exact.hits), idsOf(second.hits));
  });

  test("min_score leaves out the hits below it, without renumbering the ranks", async () => {
    const expected = ranking();
    const cut = ((expected[3]?.score as number) + (expected[4]?.score as number)) / 2;
    const { hits } = await fake.library.searchText(QUERY, { k: 10, minScore: cut });
    assert.deepEqual(
      idsOf(hits),
      expected.slice(0, 4).map((e) => e.id),
    );
    const paged = await fake.library.searchText(QUERY, { k: 3, offset: 2, minScore: cut });
    assert.deepEqual(
      paged.hits.map((hit) => [hit.id, hit.rank]),
      [
        [expected[2]?.id, 3],
        [expected[3]?.id, 4],
      ],
    );
    const none = await fake.library.searchText(QUERY, { k: 5, minScore: 1 });
    assert.deepEqual(none.hits, []);
  });

  test("a filter ranks only the items it selects", async () => {
    const expected = ranking((n) => n % 3 === 0);
    const { hits } = await fake.library.searchText(QUERY, { k: 10, filter: { group: "a" } });
    assert.deepEqual(
      idsOf(hits),
      expected.map((e) => e.id),
    );
    const ranged = await fake.library.searchText(QUERY, { k: 10, filter: { n: { $gte: 9 } } });
    assert.deepEqual(
      idsOf(ranged.hits),
      ranking((n) => n >= 9).map((e) => e.id),
    );
  });

  test("bad pages, cutoffs, filters and texts are refused with their codes", async () => {
    const search = (text: string, options: Parameters<typeof fake.library.searchText>[1]) =>
      fake.library.searchText(text, options);
    await assert.rejects(search(QUERY, { k: 0 }), code("k_out_of_range"));
    await assert.rejects(search(QUERY, { k: 21 }), code("k_out_of_range"));
    await assert.rejects(search(QUERY, { k: 10, offset: 11 }), code("offset_out_of_range"));
    await assert.rejects(search(QUERY, { k: 5, offset: -1 }), code("offset_out_of_range"));
    await assert.rejects(search(QUERY, { k: 5, minScore: 1.5 }), code("validation_failed"));
    await assert.rejects(search(QUERY, { k: 5, filter: { "a b": 1 } }), code("invalid_filter"));
    await assert.rejects(
      search(QUERY, { k: 5, filter: { n: { $in: [1, 2, 3, 4, 5] } } }),
      code("filter_too_large"),
    );
    await assert.rejects(search("   ", { k: 5 }), code("empty_query"));
    const long = Array.from({ length: 40 }, (_, i) => `word${i}`).join(" ");
    await assert.rejects(search(long, { k: 5, truncate: false }), code("query_too_long"));
  });

  test("a long query is cut at the context, or read in sentence windows", async () => {
    const sentence = Array.from({ length: 20 }, (_, i) => `w${i}`).join(" ");
    const long = `${sentence}. ${sentence}. ${sentence}.`;
    const cut = await fake.library.searchText(long, { k: 1 });
    assert.deepEqual(cut.query, { tokens: 62, truncated: true, max_tokens: 32, chunks: 1 });
    const windows = await fake.library.searchText(long, { k: 1, longQuery: "chunk" });
    assert.equal(windows.query.chunks, 3);
    assert.equal(windows.query.truncated, false);
  });

  test("a query is tokenized once: for its length check, then embedded from those tokens", async () => {
    const text = "a lighthouse on a cliff in fog";
    const seen: string[] = [];
    const tokenize = fake.embedder.tokenize.bind(fake.embedder);
    // The fake's embedTexts tokenizes through this too, as the real encoder does inside.
    fake.embedder.tokenize = (t) => {
      seen.push(t);
      return tokenize(t);
    };
    try {
      const { query: info } = await fake.library.searchText(text, { k: 1 });
      assert.equal(info.tokens, 9);
      assert.deepEqual(seen, [text]);
    } finally {
      fake.embedder.tokenize = tokenize;
    }
  });

  test("compose: a weighted sum of a text and a stored item's embedding", async () => {
    const item = vectors[4] as Float32Array;
    const mixed = unit(query.map((value, d) => value + 2 * (item[d] as number)));
    const { hits, query: info } = await fake.library.searchCompose(
      [
        { text: QUERY, weight: 1 },
        { itemId: "item-5", weight: 2 },
      ],
      { k: 3 },
    );
    const expected = vectors
      .map((vector, n) => ({ id: ids[n], score: dot(mixed, vector) }))
      .sort((a, b) => b.score - a.score);
    assert.deepEqual(
      idsOf(hits),
      expected.slice(0, 3).map((e) => e.id),
    );
    assert.equal(info.parts, 2);
    await assert.rejects(
      fake.library.searchCompose([{ itemId: "nope", weight: 1 }], { k: 3 }),
      code("not_found"),
    );
  });
});

describe("keyword and hybrid search over the in-memory store", () => {
  let fake: FakeLibrary;
  const TEXT = "lighthouse";

  before(async () => {
    fake = await openFakeLibrary({ textFields: "caption" });
    // item-5 is the only caption with the word; by its image it ranks 5th for the query.
    await putItems(
      fake,
      vectors.map((vector, n) => ({
        id: ids[n] as string,
        vector,
        metadata: { caption: n === 4 ? "a lighthouse on a cliff" : `a plain photo ${n}` },
      })),
    );
    fake.embedder.pinned.set(TEXT, query);
  });
  after(() => fake.library.close());

  test("keyword mode returns only the items whose text fields hold a word, scored by cosine", async () => {
    const { hits } = await fake.library.searchText(TEXT, { k: 5, mode: "keyword" });
    assert.deepEqual(idsOf(hits), ["item-5"]);
    assert.ok(Math.abs((hits[0]?.score as number) - dot(query, vectors[4] as Float32Array)) < 1e-6);
    assert.equal(hits[0]?.keywordRank, 1);
    const other = await fake.library.searchText(TEXT, {
      k: 5,
      mode: "keyword",
      textFields: ["title"],
    });
    assert.deepEqual(other.hits, []);
  });

  test("hybrid mode fuses the rankings by reciprocal rank: both rankings beat one", async () => {
    const byVector = ranking();
    const vectorRank = byVector.findIndex((e) => e.id === "item-5") + 1;
    assert.ok(vectorRank > 1, "the set-up needs item-5 below the top of the vector ranking");
    const { hits } = await fake.library.searchText(TEXT, { k: 4, mode: "hybrid" });
    // item-5: 1/(60 + its vector rank) + 1/(60 + 1) beats the best vector-only 1/(60 + 1).
    const rest = byVector.filter((e) => e.id !== "item-5").map((e) => e.id);
    assert.deepEqual(idsOf(hits), ["item-5", ...rest.slice(0, 3)]);
    const top = hits[0] as Hit;
    assert.equal(top.vectorRank, vectorRank);
    assert.equal(top.keywordRank, 1);
    assert.ok(Math.abs((top.fusedScore as number) - (1 / (60 + vectorRank) + 1 / 61)) < 1e-12);
    assert.ok(Math.abs(top.score - dot(query, vectors[4] as Float32Array)) < 1e-6);
    await assert.rejects(
      fake.library.searchText(TEXT, { k: 4, mode: "fuzzy" as never }),
      code("validation_failed"),
    );
  });
});
