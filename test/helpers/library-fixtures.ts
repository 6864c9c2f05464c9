/** Real images and a real library for the library and crash tests (no model stand-ins). */
import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import sharp from "sharp";
import { loadSettings, type Settings } from "../../src/core/settings.ts";
import { SqliteStore } from "../../src/store/sqlite/store.ts";
import { xorshift32 } from "../../tools/bench/random.ts";

/** A small PNG with a pseudo-random pattern: distinct bytes and distinct content per seed. */
export async function patternPng(seed: number, size = 48): Promise<Buffer> {
  const data = Buffer.alloc(size * size * 3);
  const next = xorshift32((seed * 2654435761) >>> 0);
  let state = 0;
  const cell = 8 + (seed % 5) * 4;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      if (x % cell === 0 && y % cell === 0) {
        state = next();
      }
      const base = Math.floor(x / cell) * 3 + Math.floor(y / cell) * 7 + (state & 0xff);
      const i = (y * size + x) * 3;
      data[i] = (base * 37) & 0xff;
      data[i + 1] = (base * 91 + seed) & 0xff;
      data[i + 2] = (base * 13 + (state >>> 8)) & 0xff;
    }
  }
  return sharp(data, { raw: { width: size, height: size, channels: 3 } })
    .png()
    .toBuffer();
}

export function tempDir(prefix: string): string {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** Settings for a test library: no environment influence, one ONNX thread, small batches. */
export function testSettings(modelDir: string, dataDir: string, extra: Partial<Settings> = {}) {
  return loadSettings(
    {
      modelDir,
      dataDir,
      threads: 1,
      imageBatchSize: 4,
      indexSaveIntervalMs: 0,
      hnswEfConstruction: 100,
      ...extra,
    },
    {},
  );
}

/** The embedded store of a data directory, with small index parameters and no save timer. */
export function openSqliteStore(dataDir: string): SqliteStore {
  return new SqliteStore({
    dataDir,
    m: 16,
    efConstruction: 64,
    efSearch: 64,
    indexSaveIntervalMs: 0,
  });
}

/**
 * Leaves a data directory as a library of another model would have: its embeddings, then the
 * store's model (the store refuses a model while another model's embeddings are stored).
 */
export async function relabelStoredModel(dataDir: string, modelId: string, dims: number) {
  const store = openSqliteStore(dataDir);
  try {
    store.db.prepare("UPDATE embeddings SET model_id = ?").run(modelId);
    await store.setModel({ modelId, dims });
  } finally {
    await store.close();
  }
}
