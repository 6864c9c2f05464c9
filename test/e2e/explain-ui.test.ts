/**
 * "Show why it matched" in Chromium against the real server (a tiny CLIP converted here with
 * the dense output, helpers/tiny-clip.ts): the heat map the detail view draws is POST
 * /explain's answer for the search on screen, cell for cell in the overlay's colours, over the
 * crop the API names; it toggles off; a hit that matched by a region shows that region's box
 * where the box lies on the image. Without a text search there is nothing to explain. On a
 * video hit the map is of the hit's frame (POST /explain's t), drawn over that frame's still.
 */
import assert from "node:assert/strict";
import { readFileSync, rmSync } from "node:fs";
import path from "node:path";
import { before, describe, test } from "node:test";
import type { components } from "../../src/api/types.gen.ts";
import type { Settings } from "../../src/core/settings.ts";
import { heatColour } from "../../src/library/explain/colour.ts";
import { photoJpeg } from "../helpers/demo-model.ts";
import { tinyClipModelDir } from "../helpers/tiny-clip.ts";
import { colourScenes, videoDir } from "../helpers/videos.ts";
import { SKIP_BROWSER, screenshot } from "./helpers.ts";
import { pageFixture, waitForCards, waitForText } from "./page-fixture.ts";

type S = components["schemas"];
const QUERY = "a large orange circle on the left above a pale bar";

interface PageGlobal {
  document: {
    getElementById(id: string): {
      getBoundingClientRect(): { left: number; top: number; width: number; height: number };
    } | null;
  };
}

describe("the detail view's heat map", { skip: SKIP_BROWSER }, () => {
  const settings: Partial<Settings> = {};
  before(async () => {
    settings.modelDir = await tinyClipModelDir("value");
  });
  const fixture = pageFixture({ settings });

  before(async () => {
    const form = new FormData();
    for (const [id, seed, width, height] of [
      ["wide", 3, 480, 320],
      ["square", 5, 300, 300],
    ] as const) {
      const bytes = await photoJpeg(seed, width, height);
      form.append("images", new Blob([new Uint8Array(bytes)], { type: "image/jpeg" }), `${id}.jpg`);
      form.append("ids", id);
    }
    const indexed = await fixture.api<S["IndexResponse"]>("/index", { method: "POST", body: form });
    assert.ok(
      indexed.results.every((r) => r.status === "indexed"),
      JSON.stringify(indexed),
    );
  });

  const rect = (id: string) =>
    fixture.page.evaluate(
      (elementId) =>
        (globalThis as unknown as PageGlobal).document
          .getElementById(elementId)
          ?.getBoundingClientRect(),
      id,
    );

  /** Opens the detail view of `id` after a search for QUERY (`match`: a box put on its hit). */
  async function openDetail(id: string): Promise<void> {
    const { page, server } = fixture;
    await page.goto(server.base);
    await page.getByLabel("Describe the image").fill(QUERY);
    await page.getByRole("button", { name: "Search", exact: true }).click();
    await waitForCards(page, 2);
    await page.locator(`#results .card[data-id="${id}"]`).click();
    await page.waitForSelector("#detail[open]");
    await page.waitForFunction(() => {
      const image = (
        globalThis as unknown as {
          document: {
            getElementById(id: string): { complete: boolean; naturalWidth: number } | null;
          };
        }
      ).document.getElementById("detail-image");
      return image?.complete === true && image.naturalWidth > 0;
    });
  }

  /** The heat canvas holds `expected`'s grid, a pixel a cell, in the overlay's colours. */
  async function assertDrawn(expected: S["ExplainResponse"]): Promise<void> {
    const drawn = await fixture.page.$eval("#detail-heat", (canvas) => {
      const c = canvas as unknown as {
        width: number;
        height: number;
        dataset: Record<string, string>;
        getContext(kind: "2d"): {
          getImageData(x: number, y: number, w: number, h: number): { data: ArrayLike<number> };
        };
      };
      return {
        width: c.width,
        height: c.height,
        peak: c.dataset.peak,
        data: Array.from(c.getContext("2d").getImageData(0, 0, c.width, c.height).data),
      };
    });
    assert.equal(drawn.width, expected.grid.columns);
    assert.equal(drawn.height, expected.grid.rows);
    assert.equal(drawn.peak, `${expected.peak.row},${expected.peak.column}`);
    const span = expected.max - expected.min;
    expected.scores.forEach((row, r) => {
      row.forEach((score, c) => {
        const colour = heatColour((score - expected.min) / span);
        const at = (r * expected.grid.columns + c) * 4;
        assert.deepEqual(drawn.data.slice(at, at + 3), colour, `cell ${r},${c}`);
      });
    });
  }

  test("the page draws POST /explain's grid over the crop it names, and hides it again", async () => {
    const { page } = fixture;
    await openDetail("wide");
    const expected = await fixture.postJson<S["ExplainResponse"]>("/explain", {
      item_id: "wide",
      query: QUERY,
    });
    await page.getByRole("button", { name: "Show why it matched" }).click();
    await waitForText(page, "#detail-heat-status", /agrees most with the query/);
    await assertDrawn(expected);
    assert.match(
      (await page.textContent("#detail-heat-status")) ?? "",
      new RegExp(`score ${expected.score.toFixed(4)}`),
    );
    // Over the crop: 480×320 → the centred 320×320 square, x from 80 of 480.
    assert.deepEqual(expected.crop, { x: 80, y: 0, width: 320, height: 320 });
    const image = await rect("detail-image");
    const heat = await rect("detail-heat");
    assert.ok(image && heat);
    const scale = Math.min(image.width / 480, image.height / 320);
    const imageLeft = image.left + (image.width - 480 * scale) / 2;
    const imageTop = image.top + (image.height - 320 * scale) / 2;
    assert.ok(Math.abs(heat.left - (imageLeft + 80 * scale)) < 1.5, `left ${heat.left}`);
    assert.ok(Math.abs(heat.top - imageTop) < 1.5, `top ${heat.top}`);
    assert.ok(Math.abs(heat.width - 320 * scale) < 1.5, `width ${heat.width}`);
    assert.ok(Math.abs(heat.height - 320 * scale) < 1.5, `height ${heat.height}`);
    await screenshot(page, "explain-heat-map");

    await page.getByRole("button", { name: "Hide why it matched" }).click();
    assert.equal(await page.locator("#detail-heat").isVisible(), false);
    assert.equal(
      await page.getByRole("button", { name: "Show why it matched" }).getAttribute("aria-pressed"),
      "false",
    );
    await page.keyboard.press("Escape");
  });

  test("a hit that matched by a region shows the region's box on the image", async () => {
    const { page } = fixture;
    const box = { x: 30, y: 60, width: 120, height: 90 };
    // A hit that matched by a region carries `match` (HitMatch); the answer gets one here, as
    // the tiny model's scenes are too small for regions.
    await page.route("**/search", async (route) => {
      const response = await route.fetch();
      const body = (await response.json()) as S["SearchResponse"];
      const hits = body.hits.map((hit) =>
        hit.id === "square" ? { ...hit, match: { kind: "region", box, score: hit.score } } : hit,
      );
      await route.fulfill({ response, json: { ...body, hits } });
    });
    try {
      await openDetail("square");
      await page.waitForSelector("#detail-box", { state: "visible" });
      const image = await rect("detail-image");
      const drawn = await rect("detail-box");
      assert.ok(image && drawn);
      const scale = Math.min(image.width / 300, image.height / 300);
      const left = image.left + (image.width - 300 * scale) / 2;
      const top = image.top + (image.height - 300 * scale) / 2;
      assert.ok(Math.abs(drawn.left - (left + box.x * scale)) < 1.5, `left ${drawn.left}`);
      assert.ok(Math.abs(drawn.top - (top + box.y * scale)) < 1.5, `top ${drawn.top}`);
      assert.ok(Math.abs(drawn.width - box.width * scale) < 1.5, `width ${drawn.width}`);
      assert.ok(Math.abs(drawn.height - box.height * scale) < 1.5, `height ${drawn.height}`);
      await page.keyboard.press("Escape");
    } finally {
      await page.unroute("**/search");
    }
  });

  test("the library view (no text search) offers no heat map", async () => {
    const { page, server } = fixture;
    // The first screen is the library view: the newest items, no search.
    await page.goto(server.base);
    await waitForCards(page, 2);
    await page.locator("#results .card").first().click();
    await page.waitForSelector("#detail[open]");
    assert.equal(await page.locator("#detail-heat-toggle").isVisible(), false);
    assert.equal(await page.locator("#detail-box").isVisible(), false);
    assert.deepEqual(fixture.browser.errors, []);
  });

  // Last: it adds a video to the library the tests above search.
  test("on a video hit the heat map is of the hit's frame, over that frame's still", async () => {
    const { page, server } = fixture;
    const made = videoDir();
    // red 0-1 s, lime 1-2 s, blue 2-3 s
    const file = colourScenes(path.join(made, "scenes.webm"), ["red", "lime", "blue"], 1, {
      size: "160x120",
      extra: ["-c:v", "libvpx"],
    });
    const form = new FormData();
    const video = new Uint8Array(readFileSync(file));
    form.append("images", new Blob([video], { type: "video/webm" }), "scenes.webm");
    form.append("ids", "clip");
    await fixture.api<S["IndexResponse"]>("/index", { method: "POST", body: form });
    rmSync(made, { recursive: true, force: true });
    const search = await fixture.postJson<S["SearchResponse"]>("/search", { query: QUERY });
    const t = search.hits.find((hit) => hit.id === "clip")?.match?.t;
    assert.ok(t !== undefined, JSON.stringify(search.hits));

    await page.goto(server.base);
    await page.getByLabel("Describe the image").fill(QUERY);
    await page.getByRole("button", { name: "Search", exact: true }).click();
    await waitForCards(page, 3);
    await page.locator('#results .card[data-id="clip"]').click();
    await page.waitForSelector("#detail-video", { state: "visible" });
    const asked = page.waitForRequest((request) => request.url().endsWith("/explain"));
    await page.getByRole("button", { name: "Show why it matched" }).click();
    assert.equal((await asked).postDataJSON().t, t, "the page explains the hit's frame");
    await waitForText(page, "#detail-heat-status", /agrees most with the query/);
    const expected = await fixture.postJson<S["ExplainResponse"]>("/explain", {
      item_id: "clip",
      query: QUERY,
      t,
    });
    assert.equal(expected.t, t);
    await assertDrawn(expected);
    // Over the still of that frame, in place of the playing video.
    assert.equal(await page.locator("#detail-video").isVisible(), false);
    const still = await page.getAttribute("#detail-image", "src");
    assert.equal(new URL(still ?? "", server.base).searchParams.get("t"), String(t));
    await page.getByRole("button", { name: "Hide why it matched" }).click();
    await page.waitForSelector("#detail-video", { state: "visible" });
    await page.keyboard.press("Escape");
    assert.deepEqual(fixture.browser.errors, []);
  });
});
