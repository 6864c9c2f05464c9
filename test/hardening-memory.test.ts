/**
 * The memory flood of issue 15, against `longclip serve` as a child process with default
 * limits: small PNGs that decode to ~50 Mpx each (7060×7060, about 150 MB decoded), sent at
 * once to `POST /search/image` (no key needed) and as `POST /index` batches. Before decoding
 * was admitted by pixels in flight, 32 such searches took the server to 4.9 GB. Now its peak
 * RSS (VmHWM) must stay under the documented ceiling and every request gets a 2xx or 4xx.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { bombPng, multipart, type Part, tempDir } from "./api-helpers.ts";
import { demoModelWithoutGallery } from "./helpers/demo-model.ts";
import { startServe, stopProcess } from "./helpers/longclip-process.ts";

/** The documented ceiling with default settings (README, "Memory"). */
const CEILING_BYTES = 1.5 * 1024 ** 3;

function statusKb(pid: number, field: "VmHWM" | "VmRSS"): number {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, "utf8");
  } catch {
    return 0; // the process is gone
  }
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status);
  return Number(match?.[1] ?? Number.NaN);
}

async function post(url: string, parts: Part[]): Promise<{ status: number; body: unknown }> {
  const form = multipart(parts);
  const res = await fetch(url, { method: "POST", headers: form.headers, body: form.payload });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // left as text for the failure message
  }
  return { status: res.status, body };
}

const SKIP = process.platform !== "linux" ? "reads /proc (Linux)" : false;

describe("hardening: decompression-bomb flood", { skip: SKIP }, () => {
  test("32 image searches and 4 batches of 8 at ~50 Mpx keep RSS under the ceiling", async (t) => {
    const server = await startServe([
      "--model",
      demoModelWithoutGallery(),
      "--data",
      tempDir("longclip-flood-"),
    ]);
    const pid = server.child.pid as number;
    try {
      const startKb = statusKb(pid, "VmHWM");
      // Distinct sizes, so no two files share a content hash (no duplicate short cuts).
      const bomb = (i: number) => bombPng(7060, 7060, { rgb: true, tag: `bomb-${i}` });
      const searches = Array.from({ length: 32 }, (_, i) =>
        post(`${server.url}/search/image?k=3`, [
          { name: "image", value: bomb(i), filename: `q${i}.png`, contentType: "image/png" },
        ]),
      );
      // Under the query pixel limit: these are decoded too.
      const smallerSearches = Array.from({ length: 8 }, (_, i) =>
        post(`${server.url}/search/image?k=3`, [
          {
            name: "image",
            value: bombPng(4800, 4800, { rgb: true, tag: `query-${i}` }),
            filename: `s${i}.png`,
          },
        ]),
      );
      const batches = Array.from({ length: 4 }, (_, b) =>
        post(
          `${server.url}/index`,
          Array.from({ length: 8 }, (_, i) => ({
            name: "images",
            value: bomb(100 + b * 8 + i),
            filename: `i${b}-${i}.png`,
            contentType: "image/png",
          })),
        ),
      );
      let peakRssKb = 0;
      const sampler = setInterval(() => {
        peakRssKb = Math.max(peakRssKb, statusKb(pid, "VmRSS"));
      }, 100);
      const settled = await Promise.allSettled([...searches, ...smallerSearches, ...batches]);
      clearInterval(sampler);
      const alive = server.child.exitCode === null && server.child.signalCode === null;
      const hwmKb = alive ? statusKb(pid, "VmHWM") : peakRssKb;
      const answers = settled.map((s) =>
        s.status === "fulfilled"
          ? s.value
          : { status: 0, body: String(s.reason?.cause ?? s.reason) },
      );
      const tally = new Map<number, number>();
      for (const a of answers) tally.set(a.status, (tally.get(a.status) ?? 0) + 1);
      const indexed = answers
        .slice(40)
        .flatMap((a) => (a.body as { results?: { status: string }[] }).results ?? [])
        .filter((r) => r.status === "indexed").length;
      t.diagnostic(
        `VmHWM ${(startKb / 1024).toFixed(0)} MB at start, ${(hwmKb / 1024).toFixed(0)} MB after the flood (sampled VmRSS peak ${(peakRssKb / 1024).toFixed(0)} MB); ceiling ${CEILING_BYTES / 1024 ** 2} MB; statuses ${JSON.stringify(Object.fromEntries(tally))} (0: no answer); ${indexed}/32 indexed; server ${alive ? "alive" : `exited (${server.child.exitCode ?? server.child.signalCode})`}`,
      );
      assert.ok(alive, `the server died:\n${server.stderr().slice(-2000)}`);
      for (const [i, answer] of answers.entries()) {
        assert.ok(
          answer.status >= 200 && answer.status < 500,
          `request ${i}: ${answer.status} ${JSON.stringify(answer.body).slice(0, 300)}`,
        );
      }
      assert.ok(hwmKb * 1024 < CEILING_BYTES, `peak RSS ${hwmKb} kB is over the ceiling`);
      assert.equal(indexed, 32, "every ~50 Mpx image in the batches is indexed, one at a time");
      const stats = (await (await fetch(`${server.url}/stats`)).json()) as { items: number };
      assert.equal(stats.items, 32);
    } finally {
      await stopProcess(server);
    }
  });
});
