/**
 * The page's first screen in real Chromium, as a new user sees it: the demo model's sample
 * gallery indexed (as `longclip serve` does), the search box on top and the library under it
 * (the newest items in the API's order, the count and model from /stats) before any search.
 * Also the parts around it: the example paragraph is a placeholder (the box is empty), the
 * detail view of a library item (drawn wider than its 128-px original, "sample gallery", a
 * date that reads the same in every locale and time zone), the near-duplicates threshold box
 * styled like the other fields, the filter value's placeholders not cut off, and a line that
 * says how to get the jobs panel when it is hidden. The browser runs in German on New York
 * time, so a date formatted with the browser's locale would show.
 */
import assert from "node:assert/strict";
import { before, describe, test } from "node:test";
import type { Page } from "playwright-core";
import type { components } from "../../src/api/types.gen.ts";
import { SKIP_BROWSER, screenshot } from "./helpers.ts";
import { cardIds, pageFixture, waitForText } from "./page-fixture.ts";

type S = components["schemas"];

/** The page's grid page size (its "Results" select starts at 24). */
const PAGE_SIZE = 24;

/*
 * This file is type-checked without the DOM library, so code that runs in the page reaches
 * the document through these few shapes (functions, not strings: the page's CSP forbids eval).
 */
interface Box {
  top: number;
  width: number;
}
interface PageElement {
  textContent: string | null;
  placeholder: string;
  clientWidth: number;
  naturalWidth: number;
  complete: boolean;
  getBoundingClientRect(): Box;
}
interface PageWindow {
  document: {
    querySelector(selector: string): PageElement | null;
    querySelectorAll(selector: string): ArrayLike<PageElement>;
    createElement(tag: "canvas"): {
      getContext(kind: "2d"): { font: string; measureText(text: string): { width: number } };
    };
  };
  getComputedStyle(
    element: PageElement,
  ): Record<
    | "fontStyle"
    | "fontWeight"
    | "fontSize"
    | "fontFamily"
    | "paddingLeft"
    | "paddingRight"
    | "borderTopStyle"
    | "borderTopColor"
    | "borderRadius",
    string
  >;
}

/** "2026-12-07 11:47 UTC", built from the date's UTC fields (not the page's formatter). */
function utcMinute(iso: string): string {
  const d = new Date(iso);
  const two = (n: number) => String(n).padStart(2, "0");
  return `${d.getUTCFullYear()}-${two(d.getUTCMonth() + 1)}-${two(d.getUTCDate())} ${two(d.getUTCHours())}:${two(d.getUTCMinutes())} UTC`;
}

describe("the first screen in Chromium", { skip: SKIP_BROWSER, timeout: 600_000 }, () => {
  const fixture = pageFixture({
    gallery: true,
    where: { locale: "de-DE", timezoneId: "America/New_York" },
  });
  const { api } = fixture;
  let page: Page;
  before(() => {
    page = fixture.page;
  });

  test("before any search: the search box on top, the newest items of the library, count and model", async () => {
    await page.goto(fixture.server.base);
    const stats = await api<S["Stats"]>("/stats");
    assert.ok(stats.items > PAGE_SIZE, `the gallery has ${stats.items} items`);
    const expected = await api<S["ItemPage"]>(`/items?order=newest&limit=${PAGE_SIZE}`);
    await waitForText(page, "#results-status", /most recently added/);
    assert.deepEqual(
      await cardIds(page),
      expected.items.map((item) => item.id),
    );
    assert.equal(
      await page.textContent("#stats"),
      `${stats.items} images · model ${stats.model_id}`,
    );
    assert.equal(
      await page.textContent("#results-status"),
      `The ${PAGE_SIZE} of ${stats.items} most recently added images, newest first. Describe an image above to search them all.`,
    );
    assert.equal(await page.textContent("#results-title"), "Library");
    assert.ok(await page.isHidden("#show-library"));
    const [queryTop, gridTop] = await Promise.all(
      ["#query", "#results"].map((sel) =>
        page.$eval(sel, (e) => (e as unknown as PageElement).getBoundingClientRect().top),
      ),
    );
    assert.ok(
      queryTop !== undefined && gridTop !== undefined && queryTop < gridTop && gridTop < 900,
      `the search box (${queryTop}px) is above the library (${gridTop}px), on the first screen`,
    );
    // The example is a placeholder: the box is empty and the counter agrees.
    assert.equal(await page.inputValue("#query"), "");
    assert.match((await page.getAttribute("#query", "placeholder")) ?? "", /^For example: /);
    await waitForText(page, "#token-count", /^0 \/ 248 tokens$/);
    await screenshot(page, "first-screen");

    // "Load more" continues the API's newest-first order to the end of the library.
    await page.click("#load-more");
    await waitForText(page, "#results-status", new RegExp(`^The ${stats.items} of`));
    const next = await api<S["ItemPage"]>(
      `/items?order=newest&limit=${PAGE_SIZE}&cursor=${expected.next_cursor}`,
    );
    assert.equal(next.next_cursor, null);
    assert.deepEqual(
      await cardIds(page),
      [...expected.items, ...next.items].map((i) => i.id),
    );
    assert.ok(await page.isHidden("#load-more"), "the last page hides the button");
  });

  test("the detail view of a library item: wide image, sample gallery, a locale-neutral date", async (t) => {
    const [id] = await cardIds(page);
    assert.ok(id);
    const item = await api<S["Item"]>(`/items/${encodeURIComponent(id)}`);
    await page.click(`#results .card[data-id="${id}"]`);
    await page.waitForSelector("#detail[open]");
    // A failure below must not leave the modal open over the next tests.
    t.after(() => page.keyboard.press("Escape"));
    const meta = await waitForText(page, "#detail-meta", /Added/);
    assert.equal(await page.textContent("#detail-title"), item.metadata.file);
    assert.equal(await page.textContent("#detail-score"), "In the library");
    assert.match(meta, /Sourcesample gallery of the model/);
    assert.ok(meta.includes(`Added${utcMinute(item.created_at)}`), meta);
    await page.waitForFunction(
      () =>
        ((globalThis as unknown as PageWindow).document.querySelector("#detail-image")
          ?.naturalWidth ?? 0) > 0,
      undefined,
      { timeout: 60_000 },
    );
    const [natural, drawn] = await page.$eval("#detail-image", (i) => [
      (i as unknown as PageElement).naturalWidth,
      (i as unknown as PageElement).getBoundingClientRect().width,
    ]);
    assert.equal(natural, item.width);
    assert.ok(
      drawn !== undefined && drawn >= 2 * item.width,
      `the ${item.width}-px image is drawn ${drawn}px wide`,
    );
    await screenshot(page, "first-screen-detail");
    await page.keyboard.press("Escape");
    await page.waitForSelector("#detail:not([open])", { state: "attached" });
  });

  test("after a search, 'Back to the library' shows the library again", async () => {
    await page.fill("#query", "a large blue star in the top left corner");
    await page.press("#query", "Control+Enter");
    await waitForText(page, "#results-status", /^\d+ results? in/);
    assert.equal(await page.textContent("#results-title"), "Results");
    await page.click("#show-library");
    await waitForText(page, "#results-status", /most recently added/);
    const expected = await api<S["ItemPage"]>(`/items?order=newest&limit=${PAGE_SIZE}`);
    assert.deepEqual(
      await cardIds(page),
      expected.items.map((item) => item.id),
    );
    assert.ok(await page.isHidden("#show-library"));
  });

  test("fields: the threshold box is styled like the others, no placeholder is cut off, the jobs hint shows", async () => {
    const style = (sel: string) =>
      page.$eval(sel, (e) => {
        const s = (globalThis as unknown as PageWindow).getComputedStyle(
          e as unknown as PageElement,
        );
        return [s.borderTopStyle, s.borderTopColor, s.borderRadius, s.paddingLeft];
      });
    assert.deepEqual(await style("#duplicates-threshold"), await style("#filter-key"));
    assert.notEqual(
      (await style("#duplicates-threshold"))[2],
      "0px",
      "the threshold box has rounded corners",
    );

    for (const operator of ["eq", "in", "exists"]) {
      await page.selectOption("#filter-op", operator);
      const [placeholder, textWidth, room] = await page.$eval("#filter-value", (e) => {
        const w = globalThis as unknown as PageWindow;
        const input = e as unknown as PageElement;
        const s = w.getComputedStyle(input);
        const context = w.document.createElement("canvas").getContext("2d");
        context.font = `${s.fontStyle} ${s.fontWeight} ${s.fontSize} ${s.fontFamily}`;
        const inner =
          input.clientWidth - Number.parseFloat(s.paddingLeft) - Number.parseFloat(s.paddingRight);
        return [input.placeholder, context.measureText(input.placeholder).width, inner] as const;
      });
      assert.ok(
        textWidth <= room,
        `"${placeholder}" is ${textWidth.toFixed(0)}px in a ${room.toFixed(0)}px field`,
      );
    }

    assert.ok(await page.isHidden("#jobs-panel"), "no media root: no jobs panel");
    assert.match(
      (await page.textContent("#jobs-hint")) ?? "",
      /start the\s+server with --media-root DIR/,
    );
    assert.ok(await page.isVisible("#jobs-hint"));
  });

  test("no request left 127.0.0.1 and the page logged no errors", () => {
    assert.deepEqual(fixture.browser.external, []);
    assert.deepEqual(fixture.browser.errors, []);
  });
});
