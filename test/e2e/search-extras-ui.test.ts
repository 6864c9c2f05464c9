/**
 * The search mode switch and the near-duplicates view in Chromium against the real server:
 * the grid of a keyword and a hybrid search is the API's ranking with each card saying where
 * it ranked; the duplicates view lists the API's groups a page at a time ("Load more groups").
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { before, describe, test } from "node:test";
import sharp from "sharp";
import type { components } from "../../src/api/types.gen.ts";
import { e2eModelDir, SKIP_BROWSER, screenshot } from "./helpers.ts";
import { pageFixture } from "./page-fixture.ts";

type S = components["schemas"];

const GALLERY = path.join(e2eModelDir(), "gallery");
const THRESHOLD = 0.95;

describe("search modes and near-duplicates in the page", { skip: SKIP_BROWSER }, () => {
  const fixture = pageFixture();
  const { api } = fixture;
  let captions: string[] = [];

  before(async () => {
    const manifest = JSON.parse(readFileSync(path.join(GALLERY, "gallery.json"), "utf8")) as {
      items: { file: string; caption: string }[];
    };
    const scenes = manifest.items.slice(0, 24);
    captions = scenes.map((scene) => scene.caption);
    // 24 scenes (one tagged with a made-up word) and a re-encoded copy of each.
    const form = new FormData();
    for (const [i, scene] of scenes.entries()) {
      const bytes = readFileSync(path.join(GALLERY, scene.file));
      form.append("images", new Blob([bytes], { type: "image/jpeg" }), scene.file);
      form.append("ids", `scene-${i}`);
      form.append("metadata", JSON.stringify(i === 3 ? { tags: ["zorblat"] } : {}));
      const copy = await sharp(bytes).jpeg({ quality: 70 }).toBuffer();
      form.append("images", new Blob([copy], { type: "image/jpeg" }), `copy-${scene.file}`);
      form.append("ids", `copy-${i}`);
      form.append("metadata", "{}");
    }
    const indexed = await api<S["IndexResponse"]>("/index", { method: "POST", body: form });
    assert.ok(
      indexed.results.every((r) => r.status === "indexed"),
      JSON.stringify(indexed),
    );
  });

  const gridIds = () =>
    fixture.page
      .locator("#results .card")
      .evaluateAll((cards) => cards.map((card) => card.getAttribute("data-id")));

  test("keyword and hybrid modes: the grid is the API's ranking, each card says where it ranked", async () => {
    const { page, server } = fixture;
    await page.goto(server.base);
    await page.getByLabel("Describe the image").fill("zorblat");
    await page.getByLabel("Match").selectOption("keyword");
    await page.getByRole("button", { name: "Search", exact: true }).click();
    await page.getByText(/^1 result in/).waitFor();
    assert.deepEqual(await gridIds(), ["scene-3"]);
    assert.equal(await page.locator("#results .card .ranks").textContent(), "text #1");

    const query = `${captions[3]} zorblat`;
    const expected = await fixture.postJson<S["SearchResponse"]>("/search", {
      query,
      k: 12,
      mode: "hybrid",
    });
    await page.getByLabel("Describe the image").fill(query);
    await page.getByLabel("Match").selectOption("hybrid");
    await page.locator("#k").selectOption("12");
    await page.getByRole("button", { name: "Search", exact: true }).click();
    await page.getByText(/^12 results in/).waitFor();
    assert.deepEqual(
      await gridIds(),
      expected.hits.map((h) => h.id),
    );
    const notes = await page.locator("#results .card .ranks").allTextContents();
    expected.hits.forEach((hit, i) => {
      const rank = (r: number | null | undefined) => (r == null ? "–" : `#${r}`);
      assert.equal(notes[i], `image ${rank(hit.vector_rank)} · text ${rank(hit.keyword_rank)}`);
    });
    assert.equal(expected.hits[0]?.id, "scene-3", "the tagged scene described by its caption");
    await screenshot(page, "search-hybrid");

    // Back to the default: no rank notes.
    await page.getByLabel("Match").selectOption("vector");
    await page.getByRole("button", { name: "Search", exact: true }).click();
    await page.getByText(/^12 results in/).waitFor();
    assert.equal(await page.locator("#results .card .ranks").count(), 0);
  });

  test("the duplicates view lists the API's groups, 20 a page, and loads more", async () => {
    const { page, server } = fixture;
    await page.goto(server.base);
    const all: string[][] = [];
    let cursor: string | null = null;
    do {
      const url: string = `/duplicates?threshold=${THRESHOLD}&limit=1000${cursor ? `&cursor=${cursor}` : ""}`;
      const next: S["DuplicatesResponse"] = await api<S["DuplicatesResponse"]>(url);
      all.push(...next.groups.map((g) => g.ids));
      cursor = next.next_cursor;
    } while (cursor !== null);
    assert.ok(all.length > 20, `${all.length} groups: enough for a second page`);
    for (let i = 0; i < 24; i++) {
      assert.ok(
        all.some((ids) => ids.includes(`scene-${i}`) && ids.includes(`copy-${i}`)),
        `${i}`,
      );
    }

    assert.equal(await page.getByRole("button", { name: "Load more groups" }).isVisible(), false);
    await page.getByLabel("Similarity at least").fill(String(THRESHOLD));
    await page.getByRole("button", { name: "Find near-duplicates" }).click();
    await page.getByText(/^20 groups of near-duplicates .* \(more to load\)\.$/).waitFor();
    const shown = () =>
      page
        .locator("#duplicate-groups .duplicate-group")
        .evaluateAll((groups) => groups.map((g) => g.getAttribute("data-ids")?.split(" ")));
    assert.deepEqual(await shown(), all.slice(0, 20));
    await screenshot(page, "duplicates");
    await page.getByRole("button", { name: "Load more groups" }).click();
    await page
      .getByText(
        new RegExp(
          `^${all.length} groups of near-duplicates at similarity ${THRESHOLD} or more\\.$`,
        ),
      )
      .waitFor();
    assert.deepEqual(await shown(), all);
    assert.equal(await page.getByRole("button", { name: "Load more groups" }).isVisible(), false);

    // A bad threshold is the server's message, with its code.
    await page.getByLabel("Similarity at least").evaluate((input) => {
      input.removeAttribute("min");
      Object.assign(input, { value: "0" });
    });
    await page.getByRole("button", { name: "Find near-duplicates" }).click();
    await page.getByText(/Near-duplicates unavailable: .*\(validation_failed\)/).waitFor();
    assert.deepEqual(fixture.browser.external, []);
    assert.deepEqual(fixture.browser.errors, []);
  });
});
