/**
 * The jobs panel in Chromium: a folder under the media root is indexed as a job by the
 * server's own worker, and the page follows it to the end with its counts and failures.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { patternPng } from "../helpers/library-fixtures.ts";
import { SKIP_BROWSER, screenshot } from "./helpers.ts";
import { pageFixture } from "./page-fixture.ts";

describe("jobs panel", { skip: SKIP_BROWSER }, () => {
  const media = mkdtempSync(path.join(os.tmpdir(), "longclip-e2e-media-"));
  before(async () => {
    mkdirSync(path.join(media, "trip"));
    for (let seed = 0; seed < 5; seed++) {
      writeFileSync(path.join(media, "trip", `t${seed}.png`), await patternPng(300 + seed));
    }
    writeFileSync(path.join(media, "trip", "broken.jpg"), "not a jpeg");
  });
  const fixture = pageFixture({ settings: { mediaRoot: media } });
  after(() => rmSync(media, { recursive: true, force: true }));

  test("start a job for a folder and watch it finish, failures by code", async () => {
    const { page, browser, server } = fixture;
    await page.goto(server.base);
    await page.getByLabel("Files or folders under the server's media root").fill("trip");
    await page.getByRole("button", { name: "Start job" }).click();
    await page.getByText(/Started job-/).waitFor();
    const job = page.locator("#job-list li").first();
    await job.locator(".job-state", { hasText: "done" }).waitFor({ timeout: 120_000 });
    const line = await job.locator(".job-line").textContent();
    assert.match(line ?? "", /6 of 6 files · 5 indexed · 1 failed \(unsupported_image 1\)/);
    assert.equal(await job.locator("progress").getAttribute("value"), "6");
    await screenshot(page, "jobs-done");

    await page.getByLabel("Files or folders under the server's media root").fill("../etc");
    await page.getByRole("button", { name: "Start job" }).click();
    await page.getByText(/Not started: .*path_outside_media_root/).waitFor();
    assert.deepEqual(browser.external, []);
    assert.deepEqual(browser.errors, []);
  });
});
