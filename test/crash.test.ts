/**
 * Crash test through the product: `longclip serve` runs as a child process, the test uploads
 * batches over HTTP with two requests always in flight, and SIGKILLs the server while batches
 * are being processed. After a restart every item whose batch was answered "indexed" (or
 * "duplicate") must be there once, found by HNSW and by exact search, and the HNSW index must
 * hold exactly the stored items. Then the same again on the same data directory.
 */
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import path from "node:path";
import { after, test } from "node:test";
import { demoModelWithoutGallery } from "./helpers/demo-model.ts";
import { patternPng, tempDir } from "./helpers/library-fixtures.ts";
import { type LongclipProcess, startServe, stopProcess } from "./helpers/longclip-process.ts";

const root = tempDir("crash-test-");
after(() => rmSync(root, { recursive: true, force: true }));

/** `longclip serve` with small batches and frequent index saves, so a kill can also land in one. */
function startServer(modelDir: string, dataDir: string): Promise<LongclipProcess> {
  const flags = ["--model", modelDir, "--data", dataDir, "--image-batch-size", "3"];
  return startServe([...flags, "--index-save-interval-ms", "50"]);
}

async function upload(url: string, seeds: readonly number[]) {
  const form = new FormData();
  for (const seed of seeds) {
    form.append("images", new Blob([await patternPng(seed)], { type: "image/png" }), `${seed}.png`);
    form.append("ids", `s-${seed}`);
    form.append("metadata", JSON.stringify({ seed }));
  }
  const response = await fetch(`${url}/index`, { method: "POST", body: form });
  assert.equal(response.status, 200, await response.clone().text());
  const body = (await response.json()) as { results: { id: string; status: string }[] };
  return body.results;
}

/** Uploads batches (two in flight) until `minAcked` items are acknowledged, then SIGKILL. */
async function ingestAndKill(server: LongclipProcess, firstSeed: number, minAcked: number) {
  const acked = new Map<string, number>();
  let seed = firstSeed;
  let killed = false;
  const worker = async () => {
    while (!killed) {
      const seeds = [seed, seed + 1, seed + 2, seed + 3];
      seed += 4;
      let results: { id: string; status: string }[];
      try {
        results = await upload(server.url, seeds);
      } catch (error) {
        if (killed) return; // the connection died with the server: not acknowledged
        throw error;
      }
      results.forEach((r, i) => {
        if (r.status !== "failed") acked.set(r.id, seeds[i] as number);
      });
      if (acked.size >= minAcked && !killed) {
        // The other worker's batch is in flight right now.
        killed = true;
        server.child.kill("SIGKILL");
      }
    }
  };
  await Promise.all([worker(), worker()]);
  assert.equal(await server.exited, "SIGKILL");
  return acked;
}

async function json<T>(url: string, init?: RequestInit): Promise<T> {
  const response = await fetch(url, init);
  assert.equal(response.status, 200, `${url}: ${await response.clone().text()}`);
  return (await response.json()) as T;
}

async function verify(server: LongclipProcess, acked: Map<string, number>): Promise<number> {
  const stats = await json<{ items: number; index: { size: number } }>(`${server.url}/stats`);
  assert.equal(stats.index.size, stats.items, "HNSW holds exactly the stored items");
  assert.ok(stats.items >= acked.size, `${stats.items} stored, ${acked.size} acknowledged`);
  const hashes: string[] = [];
  let cursor: string | null = null;
  do {
    const query: string = cursor === null ? "" : `&cursor=${encodeURIComponent(cursor)}`;
    const page: { items: { sha256: string }[]; next_cursor: string | null } = await json(
      `${server.url}/items?limit=100${query}`,
    );
    hashes.push(...page.items.map((item) => item.sha256));
    cursor = page.next_cursor;
  } while (cursor !== null);
  assert.equal(hashes.length, stats.items);
  assert.equal(new Set(hashes).size, hashes.length, "no content stored twice");
  for (const [id, seed] of acked) {
    const item = await json<{ metadata: unknown }>(`${server.url}/items/${id}`);
    // The upload's file name is kept as metadata (keepUploadFilename, on by default).
    assert.deepEqual(item.metadata, { seed, filename: `${seed}.png` });
    const bytes = await patternPng(seed);
    for (const exact of [false, true]) {
      const form = new FormData();
      form.append("image", new Blob([bytes], { type: "image/png" }), "q.png");
      const { hits } = await json<{ hits: { id: string }[] }>(
        `${server.url}/search/image?k=1&exact=${exact}`,
        { method: "POST", body: form },
      );
      assert.equal(hits[0]?.id, id, `${id} found by ${exact ? "exact" : "HNSW"} search`);
    }
  }
  return stats.items;
}

test("SIGKILL of the server mid-batch: every acknowledged item survives, once, and is searchable", {
  timeout: 300_000,
}, async (t) => {
  const modelDir = demoModelWithoutGallery();
  const dataDir = path.join(root, "data");
  const acked = await ingestAndKill(await startServer(modelDir, dataDir), 1, 12);
  let server = await startServer(modelDir, dataDir);
  const afterFirst = await verify(server, acked).catch(async (error: unknown) => {
    await stopProcess(server);
    throw error;
  });
  const ackedFirst = acked.size;
  // Resume inside the covered range: re-sent images must come back as duplicates.
  const more = await ingestAndKill(server, 5, 24);
  for (const [id, seed] of more) acked.set(id, seed);
  server = await startServer(modelDir, dataDir);
  try {
    const afterSecond = await verify(server, acked);
    t.diagnostic(
      `kill 1: ${afterFirst} stored, ${ackedFirst} acknowledged; kill 2: ${afterSecond} stored, ${acked.size} acknowledged`,
    );
  } finally {
    await stopProcess(server);
  }
});
