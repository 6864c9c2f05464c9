/**
 * The one page fixture of the Chromium suites. Called inside a `describe`, `pageFixture()`
 * starts the real server (./helpers.ts `startServer`) and then Chromium (`launchBrowser`)
 * before the suite's tests, closes both after them, and hands the tests the page, the server's
 * JSON API, and the page helpers every suite reads the grid and the status lines with.
 *
 * Hooks run in the order they are registered: a `before` written above the call (making media
 * files, say) runs before the server starts; one written below it (indexing, opening the page)
 * runs once the server and the browser are up.
 */
import assert from "node:assert/strict";
import { after, before } from "node:test";
import type { Page } from "playwright-core";
import type { Settings } from "../../src/core/settings.ts";
import { type Browser, launchBrowser, type RunningServer, startServer } from "./helpers.ts";

export interface PageFixtureOptions {
  /** Server settings over the e2e defaults (demo model, new data directory). */
  settings?: Partial<Settings>;
  /** Index the demo model's sample gallery first, as `longclip serve` does for a new user. */
  gallery?: boolean;
  /** The browser's locale and time zone. */
  where?: { locale?: string; timezoneId?: string };
}

export interface PageFixture {
  readonly server: RunningServer;
  readonly browser: Browser;
  /** The browser's one page. */
  readonly page: Page;
  /** The server's JSON answer to a request; its status must be `status` (200 by default). */
  api<T>(url: string, init?: RequestInit, status?: number): Promise<T>;
  /** POSTs `body` as JSON; the answer's status must be `status` (200 by default). */
  postJson<T>(url: string, body: unknown, status?: number): Promise<T>;
}

function started<T>(value: T | undefined, what: string): T {
  if (value === undefined) {
    throw new Error(`${what} has not started: use the page fixture in its suite's tests and hooks`);
  }
  return value;
}

export function pageFixture(options: PageFixtureOptions = {}): PageFixture {
  let server: RunningServer | undefined;
  let browser: Browser | undefined;
  before(async () => {
    server = await startServer(options.settings, { gallery: options.gallery === true });
    browser = await launchBrowser(options.where);
  });
  after(async () => {
    await browser?.close();
    await server?.close();
  });
  const fixture: PageFixture = {
    get server() {
      return started(server, "the server");
    },
    get browser() {
      return started(browser, "Chromium");
    },
    get page() {
      return started(browser, "Chromium").page;
    },
    async api<T>(url: string, init: RequestInit = {}, status = 200): Promise<T> {
      const res = await fetch(`${fixture.server.base}${url}`, init);
      assert.equal(res.status, status, `${url}: ${res.status} ${await res.clone().text()}`);
      return (await res.json()) as T;
    },
    postJson<T>(url: string, body: unknown, status = 200): Promise<T> {
      const init = {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      };
      return fixture.api<T>(url, init, status);
    },
  };
  return fixture;
}

/*
 * The page helpers run functions in the page (sent as source: they can use nothing from this
 * module). This folder is type-checked without the DOM library, so they reach the document
 * through this one shape.
 */
interface PageGlobal {
  document: {
    querySelector(selector: string): { textContent: string | null } | null;
    querySelectorAll(selector: string): ArrayLike<unknown>;
  };
}

/** The ids of the result grid's cards, in order. */
export function cardIds(page: Page): Promise<string[]> {
  return page.$$eval("#results .card", (cards) =>
    cards.map((card) => card.getAttribute("data-id") ?? ""),
  );
}

/** Waits until the text of the element matches `pattern`; returns the text. */
export async function waitForText(page: Page, selector: string, pattern: RegExp): Promise<string> {
  await page.waitForFunction(
    ([sel, source, flags]) =>
      new RegExp(source, flags).test(
        (globalThis as unknown as PageGlobal).document.querySelector(sel)?.textContent ?? "",
      ),
    [selector, pattern.source, pattern.flags] as const,
    { timeout: 60_000 },
  );
  return (await page.textContent(selector)) ?? "";
}

/** Waits until the result grid holds `count` cards. */
export async function waitForCards(page: Page, count: number): Promise<void> {
  await page.waitForFunction(
    (n) =>
      (globalThis as unknown as PageGlobal).document.querySelectorAll("#results .card").length ===
      n,
    count,
    { timeout: 60_000 },
  );
}
