/**
 * The TypeScript and the Python exporter agree: both convert longclip-tiny.pt and
 * openai-tiny.pt, and ONNX Runtime runs each pair of towers on the reference pixels and texts.
 * Skips where no Python with torch is installed (the conformance tests do not need one).
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
import { relativeDifference } from "./convert-helpers.ts";
import { PYTHON, SKIP_WITHOUT_PYTHON } from "./helpers/python.ts";
import {
  CLIP_VOCAB,
  loadReference,
  loadReferencePixels,
  SKIP_WITHOUT_SHARED,
  TINY_DIR,
} from "./helpers/reference.ts";

const SKIP = SKIP_WITHOUT_SHARED || SKIP_WITHOUT_PYTHON;
const TOLERANCE = 1e-5;

let dir: string;

async function embeddings(modelDir: string, contextLength: number) {
  const reference = loadReference();
  const vision = await ort.InferenceSession.create(path.join(modelDir, "vision.onnx"));
  const text = await ort.InferenceSession.create(path.join(modelDir, "text.onnx"));
  const out: Float32Array[] = [];
  for (const image of reference.images) {
    const pixels = new ort.Tensor("float32", loadReferencePixels(image), [1, ...image.shape]);
    out.push((await vision.run({ pixel_values: pixels })).image_embeds?.data as Float32Array);
  }
  for (const ref of reference.texts.filter((t) => t.ids_248.length <= contextLength)) {
    const ids = new ort.Tensor("int64", BigInt64Array.from(ref.ids_248, BigInt), [
      1,
      ref.ids_248.length,
    ]);
    out.push((await text.run({ input_ids: ids })).text_embeds?.data as Float32Array);
  }
  await vision.release();
  await text.release();
  return out;
}

describe("the TypeScript and Python exporters agree", { skip: SKIP }, () => {
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), "convert-python-"));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  for (const checkpoint of ["longclip-tiny.pt", "openai-tiny.pt"]) {
    test(`${checkpoint}: same config fields and embeddings within ${TOLERANCE}`, async () => {
      const source = path.join(TINY_DIR, checkpoint);
      const pythonDir = path.join(dir, `python-${checkpoint}`);
      const typescriptDir = path.join(dir, `ts-${checkpoint}`);
      execFileSync(
        PYTHON,
        [
          "-m",
          "training",
          "export",
          "--checkpoint",
          source,
          "--vocab",
          CLIP_VOCAB,
          "--out",
          pythonDir,
          "--name",
          "m",
        ],
        { cwd: PROJECT_ROOT, stdio: "ignore" },
      );
      await convertCheckpoint({
        checkpoint: source,
        vocab: CLIP_VOCAB,
        out: typescriptDir,
        name: "m",
      });
      const read = (d: string) => JSON.parse(readFileSync(path.join(d, "config.json"), "utf8"));
      const python = read(pythonDir);
      const typescript = read(typescriptDir);
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
