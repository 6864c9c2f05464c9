/**
 * int8 towers: the Encoder loads a model directory `python3 -m training quantize` made from the
 * reference model, and its embeddings stay close to the fp32 model's and the reference outputs.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { DEFAULT_SETTINGS, PROJECT_ROOT } from "../src/config.ts";
import { loadModelConfig } from "../src/encode/config.ts";
import { Encoder } from "../src/encode/encoder.ts";
import { AppError } from "../src/errors.ts";
import { cosine } from "../src/vector-index/exact.ts";
import {
  loadReference,
  loadReferencePixels,
  SKIP_WITHOUT_SHARED,
  tinyModelDir,
} from "./helpers/reference.ts";

/** The cosine to fp32 that training/quantize.py (MIN_COSINE) requires of an int8 tower. */
const MIN_COSINE = 0.99;
const quiet = { logger: { info() {}, warn() {} } };

describe("int8 model made from the reference model", { skip: SKIP_WITHOUT_SHARED }, () => {
  const settings = { ...DEFAULT_SETTINGS, threads: 2, imageBatchSize: 4, queryCacheSize: 0 };
  let root: string;
  let fp32: Encoder;
  let int8: Encoder;

  before(async () => {
    root = mkdtempSync(path.join(tmpdir(), "int8-"));
    const source = tinyModelDir();
    execFileSync(
      path.join(PROJECT_ROOT, "scripts", "python"),
      [
        "-m",
        "training",
        "quantize",
        "--model-dir",
        source,
        "--out",
        root,
        "--towers",
        "vision,text",
      ],
      { cwd: PROJECT_ROOT, stdio: ["ignore", "ignore", "inherit"] },
    );
    fp32 = await Encoder.load(source, settings, quiet);
    int8 = await Encoder.load(root, settings, quiet);
  });
  after(async () => {
    await Promise.all([fp32?.close(), int8?.close()]);
    if (root) rmSync(root, { recursive: true, force: true });
  });

  test("config.json says both towers are int8 and the model id is its own", () => {
    const raw = JSON.parse(readFileSync(path.join(root, "config.json"), "utf8"));
    assert.equal(raw.vision.precision, "int8");
    assert.equal(raw.text.precision, "int8");
    assert.notEqual(int8.modelId, fp32.modelId);
    assert.match(int8.modelId, /^longclip-tiny-[0-9a-f]{12}$/);
  });

  test("image embeddings: cosine to fp32 and to the reference outputs above the threshold", async () => {
    const images = loadReference().images;
    const pixels = images.map(loadReferencePixels);
    const a = await fp32.embedPixels(pixels);
    const b = await int8.embedPixels(pixels);
    images.forEach((image, i) => {
      const q = b[i] as Float32Array;
      const toFp32 = cosine(a[i] as Float32Array, q);
      const toReference = cosine(Float32Array.from(image.embedding), q);
      assert.ok(toFp32 >= MIN_COSINE, `${image.file}: cosine to fp32 ${toFp32}`);
      assert.ok(toReference >= MIN_COSINE, `${image.file}: cosine to reference ${toReference}`);
      assert.ok(toFp32 < 1, `${image.file}: the int8 tower is not the fp32 one`);
    });
  });

  test("text embeddings: cosine to fp32 and to the reference outputs above the threshold", async () => {
    const texts = loadReference().texts;
    const a = await fp32.embedTexts(texts.map((t) => t.text));
    const b = await int8.embedTexts(texts.map((t) => t.text));
    texts.forEach((text, i) => {
      const q = (b[i] as { embedding: Float32Array }).embedding;
      const toFp32 = cosine((a[i] as { embedding: Float32Array }).embedding, q);
      const toReference = cosine(Float32Array.from(text.embedding), q);
      assert.ok(toFp32 >= MIN_COSINE, `text ${i}: cosine to fp32 ${toFp32}`);
      assert.ok(toReference >= MIN_COSINE, `text ${i}: cosine to reference ${toReference}`);
    });
  });
});

describe("tower precision in config.json", { skip: SKIP_WITHOUT_SHARED }, () => {
  test("an unknown precision is model_invalid and names the allowed ones", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "int8-config-"));
    try {
      cpSync(tinyModelDir(), dir, { recursive: true });
      const configPath = path.join(dir, "config.json");
      const raw = JSON.parse(readFileSync(configPath, "utf8"));
      assert.equal(loadModelConfig(dir).model_id, raw.model_id);
      raw.vision.precision = "fp16";
      writeFileSync(configPath, JSON.stringify(raw));
      assert.throws(
        () => loadModelConfig(dir),
        (error: unknown) =>
          error instanceof AppError &&
          error.code === "model_invalid" &&
          /"vision\.precision" must be one of fp32, int8/.test(error.message),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
