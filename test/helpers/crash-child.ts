/**
 * Child process of the library crash test: opens the library on a data directory and ingests
 * generated images in small batches forever, printing one JSON line per acknowledged batch
 * ({"acked": [[id, seed], ...]}) only after `index()` returned. The parent kills it with SIGKILL.
 *
 * Usage: node --import tsx test/helpers/crash-child.ts MODEL_DIR DATA_DIR FIRST_SEED
 */
import { Encoder } from "../../src/encode/encoder.ts";
import { createLibrary } from "../../src/library/index.ts";
import { patternPng, testSettings } from "./library-fixtures.ts";

const [modelDir, dataDir, firstSeed] = process.argv.slice(2);
if (modelDir === undefined || dataDir === undefined || firstSeed === undefined) {
  process.stderr.write("usage: crash-child.ts MODEL_DIR DATA_DIR FIRST_SEED\n");
  process.exit(2);
}
// Frequent index saves, so a kill can land in the middle of one too.
const settings = testSettings(modelDir, dataDir, { indexSaveIntervalMs: 50, imageBatchSize: 3 });
const library = await createLibrary(settings, await Encoder.load(modelDir, settings));
process.stdout.write(`${JSON.stringify({ ready: (await library.stats()).items })}\n`);

const BATCH = 5;
for (let seed = Number(firstSeed); ; seed += BATCH) {
  const seeds = Array.from({ length: BATCH }, (_, i) => seed + i);
  const inputs = await Promise.all(
    seeds.map(async (s) => ({ id: `c-${s}`, bytes: await patternPng(s), metadata: { seed: s } })),
  );
  const results = await library.index(inputs);
  const acked = results.flatMap((r, i) =>
    r.status === "failed" ? [] : [[r.id, seeds[i] as number] as const],
  );
  process.stdout.write(`${JSON.stringify({ acked })}\n`);
}
