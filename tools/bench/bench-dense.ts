/**
 * What the vision tower's dense output (`export --dense value|final`, `patch_embeds`) costs a
 * request that only wants `image_embeds` (ingest), with ONNX Runtime (onnxruntime-node):
 *
 *   A  the tower exported without it (`--dense none`), fetching image_embeds
 *   B  the tower with it, fetching image_embeds only (session.run(feeds, ["image_embeds"]))
 *   C  the tower with it, fetching every output (session.run(feeds): what ingest would pay if
 *      it asked for all)
 *
 * Runs alternate A, B, C with the same random batch so load on a shared machine hits all alike;
 * medians and ratios to A are printed (timings vary 2-3x between runs, ratios less).
 *
 *   npm run bench:dense -- --plain DIR --dense DIR [--batch 8] [--rounds 30] [--threads 2]
 */
import path from "node:path";
import { parseArgs } from "node:util";
import ort from "onnxruntime-node";
import { readModelConfig } from "../../src/model/read.ts";

const { values } = parseArgs({
  options: {
    plain: { type: "string" },
    dense: { type: "string" },
    batch: { type: "string", default: "8" },
    rounds: { type: "string", default: "30" },
    threads: { type: "string", default: "2" },
  },
});
if (values.plain === undefined || values.dense === undefined) {
  process.stderr.write(
    "usage: npm run bench:dense -- --plain DIR (exported with --dense none) --dense DIR (with --dense value or final) [--batch N] [--rounds N] [--threads N]\n",
  );
  process.exit(2);
}
const batch = Number(values.batch);
const rounds = Number(values.rounds);
const threads = Number(values.threads);

async function open(dir: string) {
  const config = readModelConfig(path.resolve(dir));
  const session = await ort.InferenceSession.create(
    path.join(path.resolve(dir), config.vision.file),
    { intraOpNumThreads: threads, interOpNumThreads: 1 },
  );
  return { config, session };
}

const plain = await open(values.plain);
const dense = await open(values.dense);
if (!dense.session.outputNames.includes("patch_embeds")) {
  process.stderr.write(`${values.dense} has no patch_embeds output; export it with --dense\n`);
  process.exit(2);
}
const side = plain.config.image_resolution;
const pixels = new Float32Array(batch * 3 * side * side);
for (let i = 0; i < pixels.length; i++) pixels[i] = Math.sin(0.37 * i) * 1.5;
const feeds = { pixel_values: new ort.Tensor("float32", pixels, [batch, 3, side, side]) };

type Variant = { label: string; run: () => Promise<unknown> };
const variants: Variant[] = [
  { label: "A: without dense output, image_embeds", run: () => plain.session.run(feeds) },
  {
    label: "B: with dense output, image_embeds only",
    run: () => dense.session.run(feeds, ["image_embeds"]),
  },
  { label: "C: with dense output, every output", run: () => dense.session.run(feeds) },
];
const times: number[][] = variants.map(() => []);
for (const variant of variants) await variant.run(); // warm-up
for (let round = 0; round < rounds; round++) {
  for (const [index, variant] of variants.entries()) {
    const started = process.hrtime.bigint();
    await variant.run();
    times[index]?.push(Number(process.hrtime.bigint() - started) / 1e6);
  }
}
const median = (xs: number[]) => {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
};
const base = median(times[0] as number[]);
process.stdout.write(
  `${plain.config.name}: ${side} px, batch ${batch}, ${rounds} rounds, ${threads} threads; dense kind ${
    dense.config.vision.dense?.kind ?? "(not in config.json)"
  }\n| request | median ms | ratio to A |\n| --- | ---: | ---: |\n`,
);
variants.forEach((variant, index) => {
  const m = median(times[index] as number[]);
  process.stdout.write(`| ${variant.label} | ${m.toFixed(1)} | ${(m / base).toFixed(3)} |\n`);
});
await plain.session.release();
await dense.session.release();
