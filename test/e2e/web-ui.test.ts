/**
 * The web UI in real Chromium against the real server: index generated images through the
 * page (API key prompt, batches, a failing file), live token count and cut marker, a
 * paragraph search whose grid order must equal the API's, detail view, "more like this",
 * error and empty states, a narrow screen, and no request leaving 127.0.0.1.
 * Screenshots go to artifacts/e2e/.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { before, describe, test } from "node:test";
import type { Page } from "playwright-core";
import sharp from "sharp";
import type { components } from "../../src/api/types.gen.ts";
import { sampleImage } from "../helpers/demo-model.ts";
import { SKIP_BROWSER, screenshot } from "./helpers.ts";
import { cardIds, pageFixture, waitForText } from "./page-fixture.ts";

type S = components["schemas"];

const KEY = "e2e-secret-key";

function svg(body: string): Promise<Buffer> {
  const doc = `<svg xmlns="http://www.w3.org/2000/svg" width="320" height="240">${body}</svg>`;
  return sharp(Buffer.from(doc)).png().toBuffer();
}

/** Distinct pictures made here, plus one real photograph from the reference set. */
async function makeImages(): Promise<{ name: string; mimeType: string; buffer: Buffer }[]> {
  const sunset = await svg(
    `<defs><linearGradient id="g" x1="0" y1="0" x2="0" y2="1"><stop offset="0" stop-color="#ff7a18"/><stop offset="1" stop-color="#af002d"/></linearGradient></defs><rect width="320" height="240" fill="url(#g)"/><circle cx="160" cy="170" r="50" fill="#ffd23f"/><rect y="180" width="320" height="60" fill="#2b1b17"/>`,
  );
  const ocean = await sharp(
    await svg(
      `<rect width="320" height="240" fill="#0b3d91"/><path d="M0 120 Q40 100 80 120 T160 120 T240 120 T320 120" stroke="#fff" stroke-width="6" fill="none"/><path d="M0 170 Q40 150 80 170 T160 170 T240 170 T320 170" stroke="#9fd3ff" stroke-width="6" fill="none"/>`,
    ),
  )
    .jpeg({ quality: 90 })
    .toBuffer();
  const forest = await svg(
    `<rect width="320" height="240" fill="#cfe8ff"/>${[20, 90, 160, 230]
      .map((x) => `<polygon points="${x},200 ${x + 35},60 ${x + 70},200" fill="#1e6b30"/>`)
      .join("")}<rect y="200" width="320" height="40" fill="#5b3a1a"/>`,
  );
  const checker = await sharp(
    await svg(
      Array.from({ length: 48 }, (_, i) => {
        const x = (i % 8) * 40;
        const y = Math.floor(i / 8) * 40;
        return (i + Math.floor(i / 8)) % 2
          ? `<rect x="${x}" y="${y}" width="40" height="40"/>`
          : "";
      }).join(""),
    ),
  )
    .flatten({ background: "#ffffff" })
    .webp()
    .toBuffer();
  const hopper = sampleImage("hopper.jpg");
  return [
    { name: "sunset.png", mimeType: "image/png", buffer: sunset },
    { name: "ocean.jpg", mimeType: "image/jpeg", buffer: ocean },
    { name: "forest.png", mimeType: "image/png", buffer: forest },
    { name: "checker.webp", mimeType: "image/webp", buffer: checker },
    { name: "hopper.jpg", mimeType: "image/jpeg", buffer: hopper },
    {
      name: "notes.txt",
      mimeType: "text/plain",
      buffer: Buffer.from("these are notes, not pixels\n"),
    },
    { name: "hopper-copy.jpg", mimeType: "image/jpeg", buffer: hopper },
  ];
}

const SHORT_QUERY =
  "A wide sunset over the sea: the sky fades from bright orange at the horizon to deep red " +
  "above, a round yellow sun sits low, and the dark ground in front is almost black.";

/** A paragraph well past 248 tokens, each sentence different so the cut point is unique. */
const LONG_QUERY = Array.from(
  { length: 30 },
  (_, i) =>
    `In part ${i + 1} of the scene, a ${["red", "green", "blue", "golden", "grey"][i % 5]} ` +
    `${["boat", "tree", "house", "kite", "bridge", "horse"][i % 6]} stands near ${i + 2} small stones.`,
).join(" ");

/*
 * This file is type-checked without the DOM library (the rest of the project must not see
 * it), so code that runs in the page reaches the document through these few shapes. Waits
 * are functions, not strings: the page's Content-Security-Policy forbids string eval.
 */
const js = JSON.stringify;

interface ImageSize {
  complete: boolean;
  naturalWidth: number;
  naturalHeight: number;
}

interface PageDocument {
  querySelectorAll(selector: string): ArrayLike<ImageSize>;
}

/** Every image of the page matching the selector has loaded. */
async function waitForImages(page: Page, selector: string): Promise<void> {
  await page.waitForFunction(
    (sel) =>
      Array.from(
        (globalThis as unknown as { document: PageDocument }).document.querySelectorAll(sel),
      ).every((i) => i.complete && i.naturalWidth > 0),
    selector,
    { timeout: 60_000 },
  );
}

describe("web UI in Chromium", { skip: SKIP_BROWSER, timeout: 600_000 }, () => {
  // Small batches so seven files take four requests.
  const fixture = pageFixture({ settings: { apiKey: KEY, maxBatchItems: 2 } });
  const { api, postJson } = fixture;
  let page: Page;
  let images: Awaited<ReturnType<typeof makeImages>>;
  const requested: string[] = [];

  before(async () => {
    images = await makeImages();
    page = fixture.page;
    page.on("request", (r) => requested.push(r.url()));
  });

  test("the page loads from the server with its limits and an empty library", async () => {
    const response = await page.goto(fixture.server.base);
    assert.equal(response?.status(), 200);
    assert.match(response?.headers()["content-security-policy"] ?? "", /default-src 'none'/);
    assert.equal(await page.title(), "longclip search");
    await waitForText(page, "#stats", /^0 images · model /);
    await page.fill("#query", "a cat on a sofa");
    await page.press("#query", "Control+Enter");
    await waitForText(page, "#results-status", /library is empty/);
    assert.equal(await page.textContent("#results-title"), "Results");
    await screenshot(page, "01-empty-library");
  });

  test("without the API key nothing is indexed and the server's 401 is listed", async () => {
    const before = requested.filter((u) => u.endsWith("/index")).length;
    await page.setInputFiles("#file-input", images);
    await page.waitForSelector("#key-dialog[open]");
    await page.click("#key-cancel");
    const status = await waitForText(page, "#upload-status", /^Done/);
    assert.equal(status, "Done: 7 files, 0 indexed, 0 already stored, 7 failed.");
    const body = new FormData();
    body.append("images", new Blob([images[0]?.buffer ?? Buffer.alloc(0)]), "a.png");
    const refused = await api<S["Error"]>("/index", { method: "POST", body }, 401);
    const shown = await page.$$eval("#upload-failures li", (items) =>
      items.map((li) => [
        li.querySelector(".failure-message")?.textContent,
        li.querySelector("code")?.textContent,
      ]),
    );
    assert.equal(shown.length, 7);
    for (const row of shown) assert.deepEqual(row, [refused.error.message, "unauthorized"]);
    // The first refusal stops the upload: the other three batches are not sent.
    assert.equal(requested.filter((u) => u.endsWith("/index")).length - before, 1);
    assert.equal((await api<S["Stats"]>("/stats")).items, 0);
  });

  test("files picked in the page are indexed in batches; the key prompt and failures work", async () => {
    const before = requested.filter((u) => u.endsWith("/index")).length;
    await page.setInputFiles("#file-input", images);
    // The server has an API key: the first batch gets 401 and the page asks for it.
    await page.waitForSelector("#key-dialog[open]");
    await page.fill("#key-input", KEY);
    await page.press("#key-input", "Enter");
    const status = await waitForText(page, "#upload-status", /^Done/);
    assert.equal(status, "Done: 7 files, 5 indexed, 1 already stored, 1 failed.");
    assert.equal(await page.evaluate('sessionStorage.getItem("longclip-api-key")'), KEY);
    assert.equal(await page.getAttribute("#upload-progress", "value"), "7");
    // maxBatchItems is 2: seven files in four requests, plus the first one refused (401).
    assert.equal(requested.filter((u) => u.endsWith("/index")).length - before, 5);

    const stats = await api<S["Stats"]>("/stats");
    assert.equal(stats.items, 5);
    await waitForText(page, "#stats", /^5 images/);

    // The failure shown is the server's own message for those bytes.
    const failures = await page.$$eval("#upload-failures li", (items) =>
      items.map((li) => ({
        file: li.getAttribute("data-file"),
        message: li.querySelector(".failure-message")?.textContent,
        code: li.querySelector("code")?.textContent,
      })),
    );
    const notes = images.find((i) => i.name === "notes.txt");
    assert.ok(notes);
    const body = new FormData();
    body.append("images", new Blob([notes.buffer], { type: notes.mimeType }), notes.name);
    const direct = await api<S["IndexResponse"]>("/index", {
      method: "POST",
      body,
      headers: { "x-api-key": KEY },
    });
    const expected = direct.results[0]?.error;
    assert.ok(expected, "the API also refuses notes.txt");
    assert.deepEqual(failures, [
      { file: "notes.txt", message: expected.message, code: expected.code },
    ]);
    await screenshot(page, "02-indexed-with-failure");
  });

  test("a file dropped on the drop zone is indexed", async () => {
    const bytes = await svg(
      `<rect width="320" height="240" fill="#6a1b9a"/><circle cx="100" cy="100" r="60" fill="#ffeb3b"/>`,
    );
    await page.evaluate(`{
      const data = Uint8Array.from(atob(${js(bytes.toString("base64"))}), (c) => c.charCodeAt(0));
      const transfer = new DataTransfer();
      transfer.items.add(new File([data], "dropped-moon.png", { type: "image/png" }));
      const zone = document.getElementById("drop-zone");
      zone.dispatchEvent(new DragEvent("dragover", { dataTransfer: transfer, bubbles: true }));
      zone.dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true }));
    }`);
    await waitForText(page, "#upload-status", /^Done: 1 file, 1 indexed/);
    assert.equal((await api<S["Stats"]>("/stats")).items, 6);
  });

  test("the token counter matches /tokenize and marks where a long paragraph is cut", async () => {
    await page.fill("#query", SHORT_QUERY);
    const short = await postJson<S["TokenizeResponse"]>("/tokenize", { text: SHORT_QUERY });
    assert.equal(short.truncated, false);
    await waitForText(page, "#token-count", new RegExp(`^${short.tokens} / 248 tokens$`));
    assert.equal(await page.isHidden("#cut-note"), true);

    await page.fill("#query", LONG_QUERY);
    const long = await postJson<S["TokenizeResponse"]>("/tokenize", { text: LONG_QUERY });
    assert.ok(long.tokens > 248, `the long paragraph has ${long.tokens} tokens`);
    await waitForText(page, "#token-count", new RegExp(`^${long.tokens} / 248 tokens \\(cut\\)$`));
    await page.waitForSelector("#cut-note:not([hidden])");
    const cutText = await page.textContent("[data-testid=cut-text]");
    assert.equal(cutText, LONG_QUERY.slice(long.kept_chars));

    // The marker sits after the last whole word that fits: that prefix is not cut, and one
    // more word would be.
    const kept = LONG_QUERY.slice(0, long.kept_chars);
    const nextWord = /^\s*\S+/.exec(LONG_QUERY.slice(long.kept_chars))?.[0] ?? "";
    const fits = await postJson<S["TokenizeResponse"]>("/tokenize", { text: kept });
    const over = await postJson<S["TokenizeResponse"]>("/tokenize", { text: kept + nextWord });
    assert.equal(fits.truncated, false);
    assert.equal(over.truncated, true);
    const textareaHeight = await page.$eval("#query", (t) => t.getBoundingClientRect().height);
    assert.ok(textareaHeight > 150, `the query box grew to ${textareaHeight}px`);
    await screenshot(page, "03-token-cut");
  });

  test("a paragraph search shows thumbnails in the API's order", async () => {
    await page.fill("#query", SHORT_QUERY);
    await page.selectOption("#k", "12");
    await page.press("#query", "Control+Enter");
    await waitForText(page, "#results-status", /^\d+ results? in \d+ ms/);
    const expected = await postJson<S["SearchResponse"]>("/search", { query: SHORT_QUERY, k: 12 });
    assert.equal(expected.hits.length, 6);
    assert.deepEqual(
      await cardIds(page),
      expected.hits.map((h) => h.id),
    );
    const labels = await page.$$eval("#results .card-info", (infos) =>
      infos.map((i) => [
        i.querySelector(".rank")?.textContent,
        i.querySelector(".score")?.textContent,
      ]),
    );
    assert.deepEqual(
      labels,
      expected.hits.map((h) => [`#${h.rank}`, h.score.toFixed(3)]),
    );

    // Thumbnails, never originals, and each one no larger than 256 px.
    await waitForImages(page, "#results img");
    const sizes = await page.$$eval("#results img", (imgs) =>
      imgs.map((i) => ({
        src: i.getAttribute("src") ?? "",
        w: (i as unknown as ImageSize).naturalWidth,
        h: (i as unknown as ImageSize).naturalHeight,
      })),
    );
    for (const s of sizes) {
      assert.match(s.src, /^\/items\/[^/]+\/thumbnail\?size=256$/);
      assert.ok(s.w <= 256 && s.h <= 256, `${s.src} is ${s.w}×${s.h}`);
    }
    assert.deepEqual(
      requested.filter((u) => /\/items\/[^/]+\/image$/.test(u)),
      [],
      "the grid loads no original image",
    );
    await screenshot(page, "04-results");
  });

  test("the detail view shows the full image and metadata; Escape closes it", async () => {
    const [firstId] = await cardIds(page);
    assert.ok(firstId);
    await page.focus(`#results .card[data-id="${firstId}"]`);
    await page.keyboard.press("Enter");
    await page.waitForSelector("#detail[open]");
    const item = await api<S["Item"]>(`/items/${encodeURIComponent(firstId)}`);
    await waitForText(page, "#detail-meta", new RegExp(`${item.width} × ${item.height} px`));
    await waitForImages(page, "#detail-image");
    const natural = await page.$eval("#detail-image", (i) => [
      (i as unknown as ImageSize).naturalWidth,
      (i as unknown as ImageSize).naturalHeight,
    ]);
    assert.deepEqual(natural, [item.width, item.height]);
    assert.equal(await page.textContent("#detail-title"), item.metadata.filename);
    assert.match((await page.textContent("#detail-meta")) ?? "", new RegExp(`Id${firstId}`));
    await screenshot(page, "05-detail");

    await page.keyboard.press("Escape");
    await page.waitForSelector("#detail:not([open])", { state: "attached" });
    assert.equal(
      await page.evaluate('document.activeElement?.getAttribute("data-id")'),
      firstId,
      "focus returns to the card that opened the dialog",
    );
  });

  test('"more like this" shows the API\'s image-search order', async () => {
    const ids = await cardIds(page);
    const id = ids[2];
    assert.ok(id);
    const item = await api<S["Item"]>(`/items/${encodeURIComponent(id)}`);
    await page.click(`#results .card[data-id="${id}"]`);
    await page.waitForSelector("#detail[open]");
    await page.click("#more-like-this");
    await waitForText(page, "#results-title", new RegExp(`^More like ${item.metadata.filename}$`));
    await page.waitForSelector("#detail:not([open])", { state: "attached" });

    const original = Buffer.from(
      await (
        await fetch(`${fixture.server.base}/items/${encodeURIComponent(id)}/image`)
      ).arrayBuffer(),
    );
    const body = new FormData();
    body.append("image", new Blob([original]), "query");
    const expected = await api<S["ImageSearchResponse"]>("/search/image?k=12", {
      method: "POST",
      body,
    });
    assert.equal(expected.hits[0]?.id, id, "an image is its own nearest neighbour");
    assert.deepEqual(
      await cardIds(page),
      expected.hits.map((h) => h.id),
    );
    await screenshot(page, "06-more-like-this");
  });

  test("errors show the server's message and code; an empty query is explained", async () => {
    const tooLong = "a boat ".repeat(1500);
    await page.fill("#query", tooLong);
    await page.click("#search-button");
    const shown = await waitForText(page, "#results-status", /^Search failed/);
    const expected = await postJson<S["Error"]>("/search", { query: tooLong }, 400);
    assert.equal(shown, `Search failed: ${expected.error.message} (${expected.error.code})`);
    assert.equal(expected.error.code, "query_too_long");
    await waitForText(page, "#token-count", /query_too_long/);
    assert.equal(await cardIds(page).then((ids) => ids.length), 0);
    await screenshot(page, "07-error");

    await page.fill("#query", "   ");
    await page.click("#search-button");
    await waitForText(page, "#results-status", /query is empty/);
  });

  test("on a narrow screen the page fits without sideways scrolling", async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.fill("#query", SHORT_QUERY);
    await page.press("#query", "Control+Enter");
    await waitForText(page, "#results-status", /^\d+ results? in/);
    const overflow = await page.evaluate<number>(
      "document.documentElement.scrollWidth - document.documentElement.clientWidth",
    );
    assert.ok(overflow <= 0, `the page is ${overflow}px wider than the screen`);
    await screenshot(page, "08-narrow");
  });

  test("keyboard only: tab order, search with Ctrl+Enter, visible focus", async () => {
    await page.reload();
    await waitForText(page, "#stats", /^6 images/);
    const order: string[] = [];
    const outlines: string[] = [];
    const tab = async (times: number) => {
      for (let i = 0; i < times; i++) {
        await page.keyboard.press("Tab");
        const [name, outline] = await page.evaluate<[string, string]>(`{
          const el = document.activeElement;
          const label = el.type === "file" ? document.querySelector(\`label[for="\${el.id}"]\`) : null;
          [el.id || el.getAttribute("class") || el.tagName, getComputedStyle(label ?? el).outlineStyle];
        }`);
        order.push(name);
        outlines.push(outline);
      }
    };
    await tab(3);
    await page.keyboard.type("an orange sunset over dark ground");
    await page.keyboard.press("Control+Enter");
    await waitForText(page, "#results-status", /^\d+ results? in/);
    await tab(16);
    assert.deepEqual(order, [
      "skip-link",
      "key-button",
      "query",
      "k",
      "mode",
      "search-button",
      "filter-key",
      "filter-op",
      "filter-value",
      "min-score",
      "long-chunk",
      // The three example paragraphs under the search box.
      "secondary",
      "secondary",
      "secondary",
      "file-input",
      "folder-input",
      "show-library",
      "card",
      "card",
    ]);
    // The file inputs are visually hidden: their labels (the buttons seen) show the focus.
    outlines.forEach((outline, i) => {
      assert.notEqual(outline, "none", `${order[i]} focus`);
    });
  });

  test("a picked folder is indexed with the files' paths inside it", async () => {
    const folder = mkdtempSync(path.join(os.tmpdir(), "longclip-e2e-folder-"));
    try {
      mkdirSync(path.join(folder, "trip", "day1"), { recursive: true });
      mkdirSync(path.join(folder, "trip", "day2"));
      writeFileSync(
        path.join(folder, "trip", "day1", "beach.png"),
        await svg(
          `<rect width="320" height="240" fill="#f4e1a1"/><rect y="150" width="320" height="90" fill="#1d7fc4"/>`,
        ),
      );
      writeFileSync(path.join(folder, "trip", "day2", "ocean-again.jpg"), images[1]?.buffer ?? "");
      await page.setInputFiles("#folder-input", path.join(folder, "trip"));
      const status = await waitForText(page, "#upload-status", /^Done/);
      assert.equal(status, "Done: 2 files, 1 indexed, 1 already stored, 0 failed.");
      const page1 = await api<S["ItemPage"]>("/items?limit=100");
      const names = page1.items.map((i) => i.metadata.filename);
      assert.ok(names.includes("trip/day1/beach.png"), names.join(", "));
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
  });

  test("no request left 127.0.0.1 and the page logged no errors", () => {
    assert.deepEqual(fixture.browser.external, []);
    assert.ok(requested.length > 0);
    for (const url of requested) {
      const { protocol, hostname } = new URL(url);
      assert.ok(
        hostname === "127.0.0.1" || protocol === "data:" || protocol === "blob:",
        `request to ${url}`,
      );
    }
    assert.deepEqual(fixture.browser.errors, []);
  });
});
