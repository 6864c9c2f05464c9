/**
 * int8 and fp16 towers: the Encoder loads model directories `python3 -m training quantize`
 * made from a tiny CLIP the tests make (helpers/tiny-clip.ts); their embeddings stay close to
 * the fp32 model's (and, made from the reference checkpoint in ../shared, to the official
 * outputs), and the check a converted tower gets when it is opened (tower-check.ts) uses the
 * same input as the Python side and refuses a tower that misses its reference.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { AppError } from "../src/core/errors.ts";
import { DEFAULT_SETTINGS, PROJECT_ROOT } from "../src/core/settings.ts";
import { Encoder } from "../src/encode/encoder.ts";
import { deviceCheckInput } from "../src/encode/tower-check.ts";
import { openTowers } from "../src/encode/towers.ts";
import { readModelConfig } from "../src/model/read.ts";
import { cosine } from "../src/vector-index/exact.ts";
import { SKIP_WITHOUT_PYTHON } from "./helpers/python.ts";
import {
  loadReference,
  loadReferencePixels,
  SKIP_WITHOUT_SHARED,
  tinyModelDir,
} from "./helpers/reference.ts";
import { tinyClipModelDir, tinyClipPixels } from "./helpers/tiny-clip.ts";

/** The cosine to fp32 that training/export/quantize.py (MIN_COSINE) requires of a converted tower. */
const MIN_COSINE = 0.99;
const quiet = { logger: { info() {}, warn() {} } };
const settings = { ...DEFAULT_SETTINGS, threads: 2, imageBatchSize: 4, queryCacheSize: 0 };

const TEXTS = [
  "",
  "a photo of a cat",
  "A large black triangle dominates the left side of the picture. ".repeat(8),
];

/** `python3 -m training quantize --precision P` of a model directory, both towers. */
function quantize(modelDir: string, precision: "int8" | "fp16", out: string): void {
  execFileSync(
    path.join(PROJECT_ROOT, "scripts", "python"),
    [
      "-m",
      "training",
      "quantize",
      "--precision",
      precision,
      "--model-dir",
      modelDir,
      "--out",
      out,
      "--towers",
      "vision,text",
    ],
    { cwd: PROJECT_ROOT, stdio: ["ignore", "ignore", "inherit"] },
  );
}

for (const precision of ["int8", "fp16"] as const) {
  describe(`${precision} model made by training quantize`, { skip: SKIP_WITHOUT_PYTHON }, () => {
    let root: string;
    let modelDir: string;
    let fp32: Encoder;
    let converted: Encoder;
    const logged: string[] = [];

    before(async () => {
      modelDir = await tinyClipModelDir();
      root = mkdtempSync(path.join(tmpdir(), `${precision}-`));
      quantize(modelDir, precision, root);
      fp32 = await Encoder.load(modelDir, settings, quiet);
      converted = await Encoder.load(root, settings, {
        logger: { info: (m) => logged.push(m), warn: (m) => logged.push(m) },
      });
    });
    after(async () => {
      await Promise.all([fp32?.close(), converted?.close()]);
      if (root) rmSync(root, { recursive: true, force: true });
    });

    test(`config.json says both towers are ${precision} and the model id is its own`, () => {
      const raw = JSON.parse(readFileSync(path.join(root, "config.json"), "utf8"));
      assert.equal(raw.vision.precision, precision);
      assert.equal(raw.text.precision, precision);
      assert.notEqual(converted.modelId, fp32.modelId);
      assert.match(converted.modelId, new RegExp(`^${fp32.config.name}-[0-9a-f]{12}$`));
    });

    test("opening checked each tower against its fp32 reference (and said fp16 is for CUDA)", () => {
      for (const tower of ["vision", "text"]) {
        const line = logged.find((m) => m.startsWith(`${precision} ${tower} tower checked on cpu`));
        assert.ok(line, logged.join("\n"));
        const value = Number(/cosine ([0-9.]+)/.exec(line)?.[1]);
        assert.ok(value >= MIN_COSINE && value <= 1.000001, line);
      }
      const warned = logged.filter((m) => m.includes("meant for --device cuda"));
      assert.equal(warned.length, precision === "fp16" ? 2 : 0);
    });

    test("image embeddings: cosine to fp32 above the threshold", async () => {
      const pixels = [0, 1, 2, 3].map(tinyClipPixels);
      const a = await fp32.embedPixels(pixels);
      const b = await converted.embedPixels(pixels);
      pixels.forEach((_, i) => {
        const toFp32 = cosine(a[i] as Float32Array, b[i] as Float32Array);
        assert.ok(toFp32 >= MIN_COSINE, `image ${i}: cosine to fp32 ${toFp32}`);
        assert.ok(toFp32 < 1, `image ${i}: the ${precision} tower is not the fp32 one`);
      });
    });

    test("text embeddings: cosine to fp32 above the threshold", async () => {
      const a = await fp32.embedTexts(TEXTS);
      const b = await converted.embedTexts(TEXTS);
      TEXTS.forEach((_, i) => {
        const toFp32 = cosine(
          (a[i] as { embedding: Float32Array }).embedding,
          (b[i] as { embedding: Float32Array }).embedding,
        );
        assert.ok(toFp32 >= MIN_COSINE, `text ${i}: cosine to fp32 ${toFp32}`);
      });
    });
  });

  describe(`${precision} model of the reference checkpoint against the official outputs`, {
    skip: SKIP_WITHOUT_SHARED || SKIP_WITHOUT_PYTHON,
  }, () => {
    let root: string;
    let converted: Encoder;

    before(async () => {
      root = mkdtempSync(path.join(tmpdir(), `${precision}-reference-`));
      quantize(tinyModelDir(), precision, root);
      converted = await Encoder.load(root, settings, quiet);
    });
    after(async () => {
      await converted?.close();
      if (root) rmSync(root, { recursive: true, force: true });
    });

    test("image and text embeddings: cosine to the official outputs above the threshold", async () => {
      const { images, texts } = loadReference();
      const embedded = await converted.embedPixels(images.map(loadReferencePixels));
      images.forEach((image, i) => {
        const value = cosine(Float32Array.from(image.embedding), embedded[i] as Float32Array);
        assert.ok(value >= MIN_COSINE, `${image.file}: cosine to reference ${value}`);
      });
      const textEmbedded = await converted.embedTexts(texts.map((t) => t.text));
      texts.forEach((text, i) => {
        const q = (textEmbedded[i] as { embedding: Float32Array }).embedding;
        const value = cosine(Float32Array.from(text.embedding), q);
        assert.ok(value >= MIN_COSINE, `text ${i}: cosine to reference ${value}`);
      });
    });
  });
}

describe("the check of a converted tower on opening", { skip: SKIP_WITHOUT_PYTHON }, () => {
  let root: string;
  let modelDir: string;
  before(async () => {
    modelDir = await tinyClipModelDir();
    root = mkdtempSync(path.join(tmpdir(), "tower-check-"));
    quantize(modelDir, "fp16", path.join(root, "fp16"));
  });
  after(() => {
    if (root) rmSync(root, { recursive: true, force: true });
  });

  test("the input is Python's: the fp32 towers reproduce the recorded embeddings", async () => {
    const config = readModelConfig(path.join(root, "fp16"));
    const towers = await openTowers(
      {
        device: "cpu",
        towers: {
          vision: { ...config.vision, path: path.join(modelDir, "vision.onnx"), threads: 2 },
          text: { ...config.text, path: path.join(modelDir, "text.onnx"), threads: 2 },
        },
      },
      quiet.logger,
    );
    try {
      for (const tower of ["vision", "text"] as const) {
        const output = await towers.run(tower, deviceCheckInput(tower, config));
        const expected = config[tower].check?.embedding as number[];
        const scale = Math.max(...expected.map(Math.abs));
        const worst = Math.max(
          ...expected.map((v, i) => Math.abs(v - ((output.data as Float32Array)[i] as number))),
        );
        // Same fp32 file, same runtime: only the two sin() implementations may differ.
        assert.ok(worst / scale < 1e-4, `${tower}: max relative difference ${worst / scale}`);
      }
    } finally {
      await towers.close();
    }
  });

  test("a tower that misses its reference is refused with model_invalid", async () => {
    const dir = path.join(root, "fp16");
    const configPath = path.join(dir, "config.json");
    const raw = JSON.parse(readFileSync(configPath, "utf8"));
    raw.text.check.embedding = raw.text.check.embedding.map((v: number) => -v);
    writeFileSync(configPath, JSON.stringify(raw));
    await assert.rejects(
      Encoder.load(dir, settings, quiet),
      (error: unknown) =>
        error instanceof AppError &&
        error.code === "model_invalid" &&
        /fp16 text tower .* gives cosine -1\.0000 to its fp32 reference on cpu/.test(error.message),
    );
  });
});

describe("tower precision in config.json", () => {
  test("an unknown precision is model_invalid and names the allowed ones", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "int8-config-"));
    try {
      cpSync(await tinyClipModelDir(), dir, { recursive: true });
      const configPath = path.join(dir, "config.json");
      const raw = JSON.parse(readFileSync(configPath, "utf8"));
      assert.equal(readModelConfig(dir).model_id, raw.model_id);
      raw.vision.precision = "bf16";
      writeFileSync(configPath, JSON.stringify(raw));
      assert.throws(
        () => readModelConfig(dir),
        (error: unknown) =>
          error instanceof AppError &&
          error.code === "model_invalid" &&
          /"vision\.precision" must be one of fp32, int8, fp16/.test(error.message),
      );
      raw.vision.precision = "fp16";
      raw.vision.check = { min_cosine: 0.99, embedding: [1, 2, 3] };
      writeFileSync(configPath, JSON.stringify(raw));
      assert.throws(
        () => readModelConfig(dir),
        (error: unknown) =>
          error instanceof AppError &&
          /"vision\.check\.embedding" must be \d+ finite numbers/.test(error.message),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
