/**
 * The models bench:perf measures: random-init checkpoints of the real sizes, saved once, then
 * exported to ONNX, so ONNX Runtime and PyTorch run the very same weights.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { DEFAULT_SETTINGS, PROJECT_ROOT } from "../../src/core/settings.ts";
import { type BenchContext, sizeTag } from "./context.ts";
import { runPython } from "./python.ts";

const SHARED_VOCAB = path.resolve(
  PROJECT_ROOT,
  "..",
  "shared",
  "reference",
  "clip-bpe",
  "bpe_simple_vocab_16e6.txt.gz",
);

export interface BenchModel {
  size: string;
  dir: string;
  checkpoint: string;
}

/**
 * A BPE merges file: CLIP's from ../shared when present, else the demo model's, else a small
 * vocabulary learnt from a generated corpus (the tokenizer does not change the speed).
 */
export async function benchVocab(ctx: BenchContext): Promise<string> {
  if (existsSync(SHARED_VOCAB)) return SHARED_VOCAB;
  const demoConfig = path.join(DEFAULT_SETTINGS.modelDir, "config.json");
  if (existsSync(demoConfig)) {
    const config = JSON.parse(readFileSync(demoConfig, "utf8")) as {
      tokenizer?: { file?: string };
    };
    const file = config.tokenizer?.file;
    if (file !== undefined && existsSync(path.join(DEFAULT_SETTINGS.modelDir, file))) {
      return path.join(DEFAULT_SETTINGS.modelDir, file);
    }
  }
  const out = path.join(ctx.workDir, "vocab", "bench-vocab.txt");
  if (existsSync(out)) return out;
  mkdirSync(path.dirname(out), { recursive: true });
  const corpus = path.join(path.dirname(out), "corpus.txt");
  const words = ["a", "red", "car", "parked", "next", "to", "the", "old", "stone", "house"];
  const lines: string[] = [];
  for (let i = 0; i < 2000; i++) {
    lines.push(
      Array.from({ length: 12 }, (_, j) => words[(i * 7 + j * 3) % words.length]).join(" "),
    );
  }
  writeFileSync(corpus, `${lines.join("\n")}\n`);
  ctx.log(`no CLIP vocabulary found: building a small one at ${out}`);
  await runPython(["-m", "training", "vocab", "--corpus", corpus, "--merges", "200", "--out", out]);
  return out;
}

/** Creates (once) the checkpoint and model directory of `size` under ctx.modelsDir. */
export async function ensureModel(ctx: BenchContext, size: string): Promise<BenchModel> {
  const root = path.join(ctx.modelsDir, sizeTag(size));
  const checkpoint = path.join(root, "random.pt");
  const dir = path.join(root, "model");
  if (existsSync(path.join(dir, "config.json")) && existsSync(checkpoint)) {
    return { size, dir, checkpoint };
  }
  const vocab = await benchVocab(ctx);
  ctx.log(`creating the random-init ${size} checkpoint and its ONNX export in ${root}`);
  await runPython([
    "-m",
    "training.bench_torch",
    "checkpoint",
    "--size",
    size,
    "--vocab",
    vocab,
    "--out",
    checkpoint,
  ]);
  await runPython([
    "-m",
    "training",
    "export",
    "--checkpoint",
    checkpoint,
    "--vocab",
    vocab,
    "--out",
    dir,
    "--name",
    `perf-${sizeTag(size)}`,
    "--threads",
    String(ctx.threads),
  ]);
  return { size, dir, checkpoint };
}

/**
 * A copy of the bench model with both towers in `precision`, made by `python3 -m training
 * quantize` beside the model's directory (its cosine check against fp32 included).
 */
export async function convertedCopy(
  ctx: BenchContext,
  model: BenchModel,
  precision: "int8" | "fp16",
): Promise<{ dir: string; result: { converted: { vision: number }; bytes: { vision: number } } }> {
  const dir = path.join(path.dirname(model.dir), precision);
  ctx.log(`${precision}: python3 -m training quantize ${model.size} (vision and text towers)`);
  // quantize keeps an existing config.json only when its checks passed, so start afresh.
  if (existsSync(dir)) rmSync(dir, { recursive: true });
  const result = (await runPython([
    "-m",
    "training",
    "quantize",
    "--precision",
    precision,
    "--model-dir",
    model.dir,
    "--out",
    dir,
    "--towers",
    "vision,text",
    "--threads",
    String(ctx.threads),
    "--json",
  ])) as { converted: { vision: number }; bytes: { vision: number } };
  return { dir, result };
}
