/**
 * What one cheap request may make the server compute (issue 24, finding 3): GET /duplicates
 * scans the library once for every threshold and every concurrent caller, and a long query
 * read in windows (`long_query: "chunk"`, also inside `compose`) runs the text tower a bounded
 * number of times. Counted on a real SQLite store and the demo model's tokenizer, with the
 * text tower replaced by a counter; the CPU figures come from `npm run bench:costs`.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { isAppError } from "../src/core/errors.ts";
import { DEFAULT_SETTINGS, PROJECT_ROOT } from "../src/core/settings.ts";
import type { TextEmbedding } from "../src/encode/types.ts";
import { DuplicateGroups } from "../src/library/search/duplicates.ts";
import { Search } from "../src/library/search/search.ts";
import type { ItemStore } from "../src/store/types.ts";
import { tokenizerFromModelDir } from "../src/tokenize/index.ts";
import { openSqliteStore } from "./helpers/library-fixtures.ts";
import { newItem, vectorOf } from "./helpers/store-contract.ts";

const tmp = mkdtempSync(path.join(os.tmpdir(), "request-costs-test-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** A store whose ANN queries are counted. */
function counting(store: ItemStore): { store: ItemStore; queries: () => number } {
  let queries = 0;
  const counted = new Proxy(store, {
    get(target, key, receiver) {
      const value = Reflect.get(target, key, receiver);
      if (key === "nearest") {
        return (...args: Parameters<ItemStore["nearest"]>) => {
          queries++;
          return target.nearest(...args);
        };
      }
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return { store: counted, queries: () => queries };
}

test("GET /duplicates: one scan answers every threshold and every concurrent caller; low thresholds are refused", async () => {
  const sqlite = openSqliteStore(path.join(tmp, "duplicates"));
  try {
    await sqlite.setModel({ modelId: "m1", dims: 8 });
    // Items 0..19, and a near copy of each of the first 5.
    const items = Array.from({ length: 20 }, (_, n) => newItem(n));
    for (let n = 0; n < 5; n++) {
      const copy = newItem(100 + n);
      copy.vector = vectorOf(n).map((x, i) => x + (i === 0 ? 0.01 : 0));
      items.push(copy);
    }
    await sqlite.insertItems(items, "m1");
    const { store, queries } = counting(sqlite);
    const groups = new DuplicateGroups(store, 5, 0.5);
    const page = (threshold: number) => groups.page("m1", { threshold, cursor: null, limit: 100 });

    const first = await page(0.95);
    assert.equal(first.groups.length, 5, JSON.stringify(first.groups));
    const oneScan = queries();
    assert.equal(oneScan, items.length, "one ANN query per item");
    // A sixth decimal, or any other threshold, is answered from the same scan.
    assert.deepEqual(await page(0.950001), first);
    assert.equal((await page(0.999999)).groups.length <= 5, true);
    assert.equal(queries(), oneScan, "no rescan for another threshold");

    // After a change, concurrent callers with different thresholds share one new scan.
    groups.invalidate();
    const pages = await Promise.all([0.9, 0.95, 0.96, 0.97, 0.98].map(page));
    assert.equal(queries(), 2 * oneScan, "five concurrent callers, one scan");
    assert.deepEqual(pages[1], first);

    await assert.rejects(
      page(0.1),
      (e: unknown) =>
        isAppError(e) && e.code === "validation_failed" && /from 0\.5/.test(e.message),
    );
  } finally {
    await sqlite.close();
  }
});

const tokenizer = tokenizerFromModelDir(path.join(PROJECT_ROOT, "models", "demo"));

/** A Search whose text tower counts the texts it is given (each a unit vector). */
function countingSearch() {
  const embedded: string[] = [];
  const search = new Search({
    settings: DEFAULT_SETTINGS,
    store: {} as ItemStore,
    modelId: "m1",
    contextLength: 248,
    tokenize: (text) => tokenizer.encode(text),
    async embedTexts(queries): Promise<TextEmbedding[]> {
      embedded.push(...queries.map((q) => q.text));
      return queries.map(({ text }, i) => ({
        embedding: vectorOf(embedded.length + i),
        tokens: tokenizer.encode(text).tokens,
        truncated: false,
      }));
    },
  });
  return { search, embedded };
}

/** About 20 KB of short sentences: the 82-window text, within maxQueryChars it is 40. */
const LONG = Array.from({ length: 400 }, (_, i) => `A red circle ${i} sits left of a square.`).join(
  " ",
);

test('long_query "chunk" reads at most maxQueryWindows windows of one text, flagged as cut', async () => {
  const { search, embedded } = countingSearch();
  const text = LONG.slice(0, DEFAULT_SETTINGS.maxQueryChars);
  const result = await search.embedText(text, { longQuery: "chunk" });
  assert.equal(embedded.length, DEFAULT_SETTINGS.maxQueryWindows);
  assert.equal(result.info.chunks, DEFAULT_SETTINGS.maxQueryWindows);
  assert.equal(result.info.truncated, true);
  await assert.rejects(
    search.embedText(text, { longQuery: "chunk", truncate: false }),
    (e: unknown) => isAppError(e) && e.code === "query_too_long" && /windows/.test(e.message),
  );
  assert.equal(embedded.length, DEFAULT_SETTINGS.maxQueryWindows, "nothing embedded for a refusal");
});

test("compose: a request needing more than maxRequestWindows text-tower runs is refused before any runs", async () => {
  const { search, embedded } = countingSearch();
  const text = LONG.slice(0, DEFAULT_SETTINGS.maxQueryChars);
  const parts = Array.from({ length: 16 }, (_, i) => ({ text: `${i} ${text}`, weight: 1 }));
  await assert.rejects(
    search.embedCompose(parts, { longQuery: "chunk" }),
    (e: unknown) => isAppError(e) && e.code === "too_many_windows",
  );
  assert.equal(embedded.length, 0);
  // Within the limit: 4 texts of 8 windows each.
  await search.embedCompose(parts.slice(0, 4), { longQuery: "chunk" });
  assert.equal(embedded.length, 4 * DEFAULT_SETTINGS.maxQueryWindows);
});
