/**
 * The TypeScript and the Python exporter agree: both convert official-format checkpoints
 * (a Long-CLIP one and an OpenAI-style 77-position one, random tiny weights written by the
 * training package with the demo model's vocabulary size), and ONNX Runtime runs each pair of
 * towers on the same pixels and texts; with `--dense value|final` the vision towers' patch
 * outputs agree too. Skips where no Python with torch is installed (the
 * conformance tests do not need one).
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import * as ort from "onnxruntime-node";
import { convertCheckpoint } from "../src/convert/export.ts";
import { PROJECT_ROOT } from "../src/core/settings.ts";
import type { DenseKind } from "../src/model/format.ts";
import { tokenizerFromModelDir } from "../src/tokenize/model-dir.ts";
import { relativeDifference } from "./convert-helpers.ts";
import { DEMO_MODEL_DIR, longParagraph } from "./helpers/demo-model.ts";
import { PYTHON, SKIP_WITHOUT_PYTHON } from "./helpers/python.ts";
import { TINY_CLIP, tinyClipPixels, writeOfficialCheckpoint } from "./helpers/tiny-clip.ts";

const TOLERANCE = 1e-5;
const VOCAB = path.join(DEMO_MODEL_DIR, "vocab.txt");
const TEXTS = ["", "a small red circle in the top left corner", longParagraph(8), longParagraph()];

let dir: string;

async function embeddings(modelDir: string, contextLength: number) {
  const vision = await ort.InferenceSession.create(path.join(modelDir, "vision.onnx"));
  const text = await ort.InferenceSession.create(path.join(modelDir, "text.onnx"));
  const tokenizer = tokenizerFromModelDir(DEMO_MODEL_DIR);
  const side = TINY_CLIP.imageSize;
  const out: Float32Array[] = [];
  for (const seed of [0, 1, 2]) {
    const pixels = new ort.Tensor("float32", tinyClipPixels(seed), [1, 3, side, side]);
    out.push((await vision.run({ pixel_values: pixels })).image_embeds?.data as Float32Array);
  }
  for (const sentence of TEXTS) {
    const encoded = Array.from(tokenizer.encode(sentence).ids);
    // Cut to the context as the tokenizer would, the end token kept last.
    const cut =
      encoded.length <= contextLength
        ? encoded
        : [...encoded.slice(0, contextLength - 1), encoded[encoded.length - 1] as number];
    const ids = new ort.Tensor("int64", BigInt64Array.from(cut, BigInt), [1, cut.length]);
    out.push((await text.run({ input_ids: ids })).text_embeds?.data as Float32Array);
  }
  await vision.release();
  await text.release();
  return out;
}

function pythonExport(source: string, out: string, extra: readonly string[] = []): void {
  execFileSync(
    PYTHON,
    ["-m", "training", "export", "--checkpoint", source, "--vocab", VOCAB, "--out", out]
      .concat(["--name", "m"])
      .concat(extra),
    { cwd: PROJECT_ROOT, stdio: "ignore" },
  );
}

const readConfig = (d: string) => JSON.parse(readFileSync(path.join(d, "config.json"), "utf8"));

/** Both vision outputs of a model directory for the tiny pixels of seeds 0-2. */
async function visionOutputs(modelDir: string): Promise<Float32Array[]> {
  const vision = await ort.InferenceSession.create(path.join(modelDir, "vision.onnx"));
  const side = TINY_CLIP.imageSize;
  const out: Float32Array[] = [];
  for (const seed of [0, 1, 2]) {
    const pixels = new ort.Tensor("float32", tinyClipPixels(seed), [1, 3, side, side]);
    const result = await vision.run({ pixel_values: pixels });
    out.push(result.image_embeds?.data as Float32Array, result.patch_embeds?.data as Float32Array);
  }
  await vision.release();
  return out;
}

describe("the TypeScript and Python exporters agree", { skip: SKIP_WITHOUT_PYTHON }, () => {
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), "convert-python-"));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  for (const [checkpoint, modelType, seed] of [
    ["longclip-random.pt", "longclip", 1],
    ["openai-random.pt", "clip", 2],
  ] as const) {
    test(`${checkpoint}: same config fields and embeddings within ${TOLERANCE}`, async () => {
      const source = path.join(dir, checkpoint);
      writeOfficialCheckpoint(source, modelType, seed);
      const pythonDir = path.join(dir, `python-${checkpoint}`);
      const typescriptDir = path.join(dir, `ts-${checkpoint}`);
      pythonExport(source, pythonDir);
      await convertCheckpoint({
        checkpoint: source,
        vocab: VOCAB,
        out: typescriptDir,
        name: "m",
      });
      const python = readConfig(pythonDir);
      const typescript = readConfig(typescriptDir);
      for (const key of Object.keys(python).filter(
        (k) => !["model_id", "exporter_version"].includes(k),
      )) {
        assert.deepEqual(typescript[key], python[key], `config.json ${key}`);
      }
      const context = python.context_length as number;
      const expected = await embeddings(pythonDir, context);
      const actual = await embeddings(typescriptDir, context);
      const worst = Math.max(
        ...actual.map((a, i) => relativeDifference(a, expected[i] as Float32Array)),
      );
      console.log(
        `${checkpoint}: TypeScript vs Python towers, max relative difference ${worst.toExponential(2)} over ${actual.length} embeddings`,
      );
      assert.ok(worst <= TOLERANCE, `worst ${worst}`);
    });
  }
});

describe("the TypeScript and Python exporters' dense outputs agree", {
  skip: SKIP_WITHOUT_PYTHON,
}, () => {
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), "convert-python-dense-"));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  for (const kind of ["value", "final"] as DenseKind[]) {
    test(`--dense ${kind}: vision.dense and both outputs within ${TOLERANCE}`, async () => {
      const source = path.join(dir, `longclip-${kind}.pt`);
      writeOfficialCheckpoint(source, "longclip", 3);
      const pythonDir = path.join(dir, `python-${kind}`);
      const typescriptDir = path.join(dir, `ts-${kind}`);
      pythonExport(source, pythonDir, ["--dense", kind]);
      await convertCheckpoint({
        checkpoint: source,
        vocab: VOCAB,
        out: typescriptDir,
        name: "m",
        dense: kind,
      });
      const python = readConfig(pythonDir);
      assert.equal(python.vision.dense.kind, kind);
      assert.deepEqual(readConfig(typescriptDir).vision, python.vision);
      const expected = await visionOutputs(pythonDir);
      const actual = await visionOutputs(typescriptDir);
      assert.equal(actual.length, 6);
      const worst = Math.max(
        ...actual.map((a, i) => relativeDifference(a, expected[i] as Float32Array)),
      );
      console.log(
        `--dense ${kind}: TypeScript vs Python vision tower, image_embeds and patch_embeds, max relative difference ${worst.toExponential(2)}`,
      );
      assert.ok(worst <= TOLERANCE, `worst ${worst}`);
    });
  }
});
