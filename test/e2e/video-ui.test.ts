/**
 * Video hits in Chromium against the real server (real ffmpeg, the demo model): "more like
 * this" on a blue picture finds a video by its blue frame; the card shows that frame (GET
 * /items/{id}/image?t=) and its time; the detail view plays the video's original from that moment, in a <video>
 * element Chromium feeds by byte ranges, and the picture on show is the matched scene's.
 */
import assert from "node:assert/strict";
import { readFileSync, rmSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import sharp from "sharp";
import type { components } from "../../src/api/types.gen.ts";
import { colourScenes, videoDir } from "../helpers/videos.ts";
import { SKIP_BROWSER, screenshot } from "./helpers.ts";
import { pageFixture, waitForCards, waitForText } from "./page-fixture.ts";

type S = components["schemas"];

const FPS = 10;

/** The page's state of the detail view's video (this folder is type-checked without the DOM). */
interface VideoState {
  hidden: boolean;
  currentTime: number;
  currentSrc: string;
  paused: boolean;
  /** The centre pixel of the picture on show, drawn to a canvas. */
  centre: number[];
}

describe("a video hit in the page", { skip: SKIP_BROWSER }, () => {
  const made = videoDir();
  let video: Buffer;
  let bluePicture: Buffer;
  before(async () => {
    bluePicture = await sharp({
      create: { width: 160, height: 120, channels: 3, background: { r: 0, g: 0, b: 255 } },
    })
      .png()
      .toBuffer();
    // red 0-1 s, lime 1-2 s, blue 2-3 s, at FPS frames a second (helpers/videos.ts).
    const file = colourScenes(path.join(made, "scenes.webm"), ["red", "lime", "blue"], 1, {
      size: "160x120",
      extra: ["-c:v", "libvpx"],
    });
    video = readFileSync(file);
  });
  after(() => rmSync(made, { recursive: true, force: true }));
  const fixture = pageFixture();

  let videoId: string;
  let pictureId: string;
  before(async () => {
    const form = new FormData();
    form.append("images", new Blob([new Uint8Array(video)], { type: "video/webm" }), "scenes.webm");
    form.append(
      "images",
      new Blob([new Uint8Array(bluePicture)], { type: "image/png" }),
      "blue.png",
    );
    const indexed = await fixture.api<S["IndexResponse"]>("/index", { method: "POST", body: form });
    assert.deepEqual(
      indexed.results.map((r) => r.status),
      ["indexed", "indexed"],
      JSON.stringify(indexed),
    );
    [videoId, pictureId] = indexed.results.map((r) => r.id) as [string, string];
  });

  test("the card shows the matched frame and its time; the detail view plays from it", async () => {
    const { page, server } = fixture;
    // What the page's "more like this" asks: POST /search/image with the picture, k 24.
    const form = new FormData();
    form.append("image", new Blob([new Uint8Array(bluePicture)], { type: "image/png" }), "blue");
    const found = await fixture.api<S["ImageSearchResponse"]>("/search/image?k=24", {
      method: "POST",
      body: form,
    });
    const hit = found.hits.find((h) => h.id === videoId);
    assert.equal(hit?.match?.kind, "frame", `the API's hit is by a frame: ${JSON.stringify(hit)}`);
    const t = hit?.match?.t as number;
    // The blue scene is the one like the picture.
    assert.ok(t >= 2 && t < 3, `matched at ${t} s`);

    const ranged: number[] = [];
    const original = `${server.base}/items/${videoId}/image`;
    page.on("response", (response) => {
      if (response.url() === original) ranged.push(response.status());
    });
    // The library view shows both items; the picture's detail view searches like it.
    await page.goto(server.base);
    await waitForCards(page, 2);
    await page.locator(`#results .card[data-id="${pictureId}"]`).click();
    await page.waitForSelector("#detail[open]");
    await page.getByRole("button", { name: "More like this" }).click();
    await waitForText(page, "#results-title", /More like/);
    await waitForCards(page, found.hits.length);

    const card = page.locator(`#results .card[data-id="${videoId}"]`);
    const thumb = card.locator("img");
    assert.equal(await thumb.getAttribute("src"), `/items/${videoId}/image?t=${t}`);
    await page.waitForFunction(
      (id) => {
        const img = (
          globalThis as unknown as {
            document: {
              querySelector(s: string): { complete: boolean; naturalWidth: number } | null;
            };
          }
        ).document.querySelector(`#results .card[data-id="${id}"] img`);
        return img?.complete === true && img.naturalWidth > 0;
      },
      videoId,
      { timeout: 60_000 },
    );
    // "at 0:02.5" for t = 2.5 s.
    const shownTime = `at 0:${t.toFixed(1).padStart(4, "0")}`;
    assert.equal(await card.locator(".frame-time").textContent(), shownTime);

    // Chromium seeks before it reports where the video stands: wait for the seek to land.
    await page.evaluate(() => {
      const doc = (globalThis as unknown as { document: { getElementById(id: string): unknown } })
        .document;
      const element = doc.getElementById("detail-video") as {
        addEventListener(name: string, listener: () => void): void;
        dataset: Record<string, string>;
      };
      element.addEventListener("seeked", () => {
        element.dataset.seekedForTest = "yes";
      });
    });
    await card.click();
    await page.waitForSelector("#detail[open]");
    await page.waitForSelector('#detail-video[data-seeked-for-test="yes"]', { timeout: 60_000 });
    const state = await page.$eval("#detail-video", (element): VideoState => {
      const v = element as unknown as {
        hidden: boolean;
        currentTime: number;
        currentSrc: string;
        paused: boolean;
        videoWidth: number;
        videoHeight: number;
        ownerDocument: {
          createElement(tag: "canvas"): {
            width: number;
            height: number;
            getContext(kind: "2d"): {
              drawImage(source: unknown, x: number, y: number): void;
              getImageData(x: number, y: number, w: number, h: number): { data: ArrayLike<number> };
            };
          };
        };
      };
      const canvas = v.ownerDocument.createElement("canvas");
      canvas.width = v.videoWidth;
      canvas.height = v.videoHeight;
      const context = canvas.getContext("2d");
      context.drawImage(v, 0, 0);
      const centre = context.getImageData(v.videoWidth >> 1, v.videoHeight >> 1, 1, 1).data;
      return {
        hidden: v.hidden,
        currentTime: v.currentTime,
        currentSrc: v.currentSrc,
        paused: v.paused,
        centre: Array.from(centre).slice(0, 3),
      };
    });
    assert.equal(state.hidden, false);
    assert.equal(state.currentSrc, original, "the video is the item's original");
    assert.ok(
      Math.abs(state.currentTime - t) <= 1 / FPS,
      `the video stands at ${state.currentTime} s, the hit's frame is at ${t} s`,
    );
    const [red = 0, green = 0, blue = 0] = state.centre;
    assert.ok(blue > 180 && red < 80 && green < 80, `the picture on show is blue: ${state.centre}`);
    assert.equal(await page.locator("#detail-image").isVisible(), false);
    assert.match((await page.textContent("#detail-score")) ?? "", /frame at 0:/);
    // Chromium asked for byte ranges and got them.
    assert.ok(ranged.includes(206), `answers to the video's requests: ${ranged}`);
    await screenshot(page, "video-hit-detail");

    await page.keyboard.press("Escape");
    await page.waitForSelector("#detail-video", { state: "hidden" });
    assert.equal(await page.$eval("#detail-video", (v) => v.getAttribute("src")), null);
    assert.deepEqual(fixture.browser.errors, []);
  });
});
