/**
 * Blue/green test fixtures: two model directories whose image embeddings differ, libraries that
 * can load another model, uploads over HTTP, and the check that every item is embedded by the
 * next model.
 */
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import type supertest from "supertest";
import { PROJECT_ROOT, type Settings } from "../../src/core/settings.ts";
import { Encoder } from "../../src/encode/encoder.ts";
import type { Embedder } from "../../src/encode/types.ts";
import { createLibrary, type LongclipLibrary } from "../../src/library/library.ts";
import { preprocessImage } from "../../src/preprocess/index.ts";
import { PostgresStore } from "../../src/store/postgres/store.ts";
import type { ItemStore } from "../../src/store/types.ts";
import { patternPng } from "./library-fixtures.ts";
import type { TestPostgres } from "./postgres.ts";

const DEMO = path.join(PROJECT_ROOT, "models", "demo");
export const NEXT_ID = "longclip-demo-renormalised-test";

/** models/demo (a copy) and models/next (the variant) under `root`. */
export function modelsUnder(root: string): { served: string; next: string } {
  const models = path.join(root, "models");
  const served = path.join(models, "demo");
  const next = path.join(models, "next");
  for (const dir of [served, next]) {
    mkdirSync(dir, { recursive: true });
    for (const file of ["config.json", "vision.onnx", "text.onnx", "vocab.txt"]) {
      copyFileSync(path.join(DEMO, file), path.join(dir, file));
    }
  }
  const config = JSON.parse(readFileSync(path.join(DEMO, "config.json"), "utf8"));
  config.model_id = NEXT_ID;
  config.image_mean = [0.5, 0.5, 0.5];
  config.image_std = [0.25, 0.25, 0.25];
  writeFileSync(path.join(next, "config.json"), JSON.stringify(config, null, 2));
  return { served, next };
}

/**
 * Errors of background work (the 2 s store checks, the reindex run). On a native Postgres the
 * Postgres test fails on any; on PGlite they are logged only: it multiplexes every connection
 * onto one backend, and under this test's concurrency an interleaved extended-protocol exchange
 * now and then loses its unnamed statement; the next check (2 s later) repeats the work. What a
 * client sees (every search answered) is asserted on both.
 */
export const backgroundErrors: string[] = [];

/** A library that can load another model (by `loadModel`, default: from its directory). */
export async function openLibrary(
  settings: Settings,
  store?: ItemStore,
  loadModel: (dir: string) => Promise<Embedder> = (dir) => Encoder.load(dir, settings),
): Promise<LongclipLibrary> {
  const encoder = await Encoder.load(settings.modelDir, settings);
  return createLibrary(settings, encoder, {
    ...(store ? { store } : {}),
    loadModel,
    onBackgroundError: (error) => {
      backgroundErrors.push(String(error));
      console.log(`background error: ${String(error)}`);
    },
  });
}

export async function pngs(from: number, count: number): Promise<Buffer[]> {
  return Promise.all(Array.from({ length: count }, (_, i) => patternPng(from + i, 96)));
}

/** Every item's live embedding equals the next model's own output for its image. */
export async function assertAllEmbeddedBy(
  store: ItemStore,
  images: Map<string, Buffer>,
  modelDir: string,
  settings: Settings,
): Promise<void> {
  const encoder = await Encoder.load(modelDir, settings);
  try {
    assert.equal(await store.countEmbeddings(encoder.modelId), await store.count());
    assert.equal(await store.count(), images.size);
    const options = {
      resolution: encoder.config.image_resolution,
      mean: encoder.config.image_mean,
      std: encoder.config.image_std,
      maxImageBytes: settings.maxImageBytes,
      maxImagePixels: settings.maxImagePixels,
    };
    for (const [id, bytes] of images) {
      const item = await store.getById(id);
      assert.ok(item, id);
      const [row] = await store.embeddingsOf(encoder.modelId, [item.label]);
      const [expected] = await encoder.embedPixels([
        (await preprocessImage(bytes, options)).pixels,
      ]);
      assert.ok(row && expected, id);
      let worst = 0;
      for (let i = 0; i < expected.length; i++)
        worst = Math.max(worst, Math.abs((row.vector[i] as number) - (expected[i] as number)));
      assert.ok(worst < 1e-5, `${id}: differs from the new model's embedding by ${worst}`);
    }
  } finally {
    await encoder.close();
  }
}

/** POST /index of uploads (multipart, as clients send files). */
export function upload(http: supertest.Agent, entries: readonly [string, Buffer][]) {
  let request = http.post("/index");
  for (const [id, bytes] of entries) request = request.attach("images", bytes, `${id}.png`);
  for (const [id] of entries) request = request.field("ids", id);
  return request;
}

/** Polls `probe` every 50 ms until it gives a value (or `ms` passed). */
export async function until<T>(what: string, probe: () => Promise<T | undefined>, ms = 60_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * A node's store on the test Postgres. On PGlite one connection a node: it serves every
 * connection from one backend, and concurrent extended-protocol exchanges on several
 * connections can lose each other's unnamed statement ("unnamed prepared statement does not
 * exist"), which a native server never does; there each node has the default pool.
 */
export function postgresNodeStore(postgres: TestPostgres, settings: Settings) {
  return PostgresStore.open({
    url: postgres.url,
    vectorType: "halfvec",
    m: settings.hnswM,
    efConstruction: settings.hnswEfConstruction,
    efSearch: settings.hnswEfSearch,
    ...(postgres.kind === "pglite" ? { poolSize: 1 } : {}),
  });
}
