/**
 * The search options of the page in Chromium against the real server: the filter row
 * (key, operator, value) and its server-side errors, the minimum-score cutoff, "load more"
 * pages with absolute ranks, and "less like this" on a result. Every expected grid is the
 * API's own answer to the same request.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import type { Page } from "playwright-core";
import type { components } from "../../src/api/types.gen.ts";
import { patternPng } from "../helpers/library-fixtures.ts";
import { SKIP_BROWSER, screenshot } from "./helpers.ts";
import { cardIds, pageFixture, waitForCards } from "./page-fixture.ts";

type S = components["schemas"];

const COUNT = 30;
const QUERY = "A large red circle fills the centre of the picture on a striped background.";

const cardRanks = (page: Page) =>
  page.$$eval("#results .card .rank", (ranks) => ranks.map((r) => r.textContent ?? ""));

describe("search options in Chromium", { skip: SKIP_BROWSER, timeout: 600_000 }, () => {
  const media = mkdtempSync(path.join(os.tmpdir(), "longclip-e2e-options-"));
  const items: { id: string; path: string; metadata: object }[] = [];
  before(async () => {
    for (let i = 0; i < COUNT; i++) {
      writeFileSync(path.join(media, `p${i}.png`), await patternPng(500 + i, 64));
      items.push({
        id: `p${i}`,
        path: `p${i}.png`,
        metadata: { n: i, taken: `2024-03-${String(1 + i).padStart(2, "0")}` },
      });
    }
  });
  const fixture = pageFixture({ settings: { mediaRoot: media } });
  let page: Page;
  before(async () => {
    await fixture.postJson("/index", { items });
    page = fixture.page;
    await page.goto(fixture.server.base);
    await page.fill("#query", QUERY);
    await page.selectOption("#k", "12");
  });
  after(() => rmSync(media, { recursive: true, force: true }));

  const search = (body: object) => fixture.postJson<S["SearchResponse"]>("/search", body);
  /** Submits the form and waits until the status line reports a finished search. */
  const submit = async () => {
    await page.click("#search-button");
    await page.waitForFunction(
      () => {
        const status = (
          globalThis as unknown as {
            document: { getElementById(id: string): { textContent: string | null } | null };
          }
        ).document.getElementById("results-status");
        return !/Searching/.test(status?.textContent ?? "Searching");
      },
      undefined,
      { timeout: 60_000 },
    );
  };
  const resetOptions = async () => {
    await page.fill("#filter-key", "");
    await page.fill("#filter-value", "");
    await page.selectOption("#filter-op", "eq");
    await page.fill("#min-score", "");
  };

  test("the filter row sends key, operator and value; the grid is the API's", async () => {
    await page.fill("#filter-key", "n");
    await page.selectOption("#filter-op", "gte");
    await page.fill("#filter-value", "20");
    await submit();
    const expected = await search({ query: QUERY, k: 12, filter: { n: { $gte: 20 } } });
    assert.equal(expected.hits.length, 10);
    assert.deepEqual(
      await cardIds(page),
      expected.hits.map((h) => h.id),
    );

    await page.fill("#filter-key", "taken");
    await page.selectOption("#filter-op", "lt");
    await page.fill("#filter-value", "2024-03-04");
    await submit();
    assert.deepEqual((await cardIds(page)).sort(), ["p0", "p1", "p2"]);

    await page.selectOption("#filter-op", "in");
    await page.fill("#filter-key", "n");
    await page.fill("#filter-value", "3, 7, 11");
    await submit();
    assert.deepEqual((await cardIds(page)).sort(), ["p11", "p3", "p7"]);
    await screenshot(page, "options-filter");
  });

  test("a bad operand shows the server's validation error with its path", async () => {
    await page.fill("#filter-key", "taken");
    await page.selectOption("#filter-op", "gt");
    await page.fill("#filter-value", "last week");
    await submit();
    const status = (await page.textContent("#results-status")) ?? "";
    assert.match(status, /validation_failed/);
    assert.match(status, /filter\.taken\.\$gt/);
    assert.equal((await cardIds(page)).length, 0);
    await resetOptions();
  });

  test("the minimum score leaves out weaker hits, as the API does", async () => {
    const all = await search({ query: QUERY, k: 12 });
    const cutoff = (((all.hits[4]?.score ?? 0) + (all.hits[5]?.score ?? 0)) / 2).toFixed(4);
    await page.fill("#min-score", cutoff);
    await submit();
    const expected = await search({ query: QUERY, k: 12, min_score: Number(cutoff) });
    assert.equal(expected.hits.length, 5);
    assert.deepEqual(
      await cardIds(page),
      expected.hits.map((h) => h.id),
    );
    assert.ok(await page.isHidden("#load-more"), "a cut page has no next page");
    await resetOptions();
  });

  test('"load more" appends the next ranks of the same ranking', async () => {
    await submit();
    assert.equal((await cardIds(page)).length, 12);
    await page.click("#load-more");
    await waitForCards(page, 24);
    const expected = await search({ query: QUERY, k: 24 });
    assert.deepEqual(
      await cardIds(page),
      expected.hits.map((h) => h.id),
    );
    assert.deepEqual(
      await cardRanks(page),
      expected.hits.map((h) => `#${h.rank}`),
    );
    await page.click("#load-more");
    await waitForCards(page, 30);
    assert.ok(await page.isHidden("#load-more"), "the last page hides the button");
    await screenshot(page, "options-load-more");
  });

  test('"less like this" searches the query minus the chosen image', async () => {
    await submit();
    const first = (await cardIds(page))[0] as string;
    await page.click(`#results .card[data-id="${first}"]`);
    await page.getByRole("button", { name: "Less like this" }).click();
    await page.waitForFunction(
      () =>
        /^Less like/.test(
          (
            globalThis as unknown as {
              document: { getElementById(id: string): { textContent: string | null } | null };
            }
          ).document.getElementById("results-title")?.textContent ?? "",
        ),
      undefined,
      { timeout: 60_000 },
    );
    await submitDone(page);
    const expected = await search({
      compose: [
        { text: QUERY, weight: 1 },
        { item_id: first, weight: -0.5 },
      ],
      k: 12,
    });
    assert.deepEqual(
      await cardIds(page),
      expected.hits.map((h) => h.id),
    );
    assert.notEqual((await cardIds(page))[0], first, "the chosen image is no longer first");
    await screenshot(page, "options-less-like-this");
    assert.deepEqual(fixture.browser.external, []);
    assert.deepEqual(fixture.browser.errors, []);
  });
});

/** Waits until no search is in flight (the grid is not busy). */
async function submitDone(page: Page): Promise<void> {
  await page.waitForSelector('#results[aria-busy="false"]', { timeout: 60_000 });
}
