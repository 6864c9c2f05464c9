/** config.json validation of a model directory (docs/model-format.md). */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { AppError } from "../src/core/errors.ts";
import { loadModelConfig } from "../src/encode/config.ts";

const VALID = {
  format: "longclip-onnx",
  format_version: 1,
  model_id: "longclip-tiny-3f2a9c1e5b7d",
  name: "longclip-tiny",
  model_type: "longclip",
  embed_dim: 64,
  image_resolution: 224,
  image_mean: [0.48145466, 0.4578275, 0.40821073],
  image_std: [0.26862954, 0.26130258, 0.27577711],
  context_length: 248,
  vocab_size: 49408,
  start_token_id: 49406,
  end_token_id: 49407,
  tokenizer: { file: "bpe.txt.gz", type: "clip-bpe", num_merges: 48894 },
  vision: { file: "vision.onnx", input: "pixel_values", output: "image_embeds" },
  text: { file: "text.onnx", input: "input_ids", output: "text_embeds" },
  source_sha256: "ab",
  exporter_version: "0.1.0",
};

let root: string;
let counter = 0;

before(() => {
  root = mkdtempSync(path.join(tmpdir(), "encode-config-"));
});
after(() => rmSync(root, { recursive: true, force: true }));

/** A model directory with the three named files (empty: only their presence is checked here). */
function modelDir(config: unknown, files = ["bpe.txt.gz", "vision.onnx", "text.onnx"]): string {
  const dir = path.join(root, `m${counter++}`);
  mkdirSync(dir);
  for (const f of files) writeFileSync(path.join(dir, f), "");
  if (config !== undefined) {
    writeFileSync(
      path.join(dir, "config.json"),
      typeof config === "string" ? config : JSON.stringify(config),
    );
  }
  return dir;
}

function expectError(dir: string, code: string, pattern: RegExp): void {
  assert.throws(
    () => loadModelConfig(dir),
    (error: unknown) => {
      assert.ok(error instanceof AppError, String(error));
      assert.equal(error.code, code);
      assert.match(error.message, pattern);
      assert.match(error.message, /training export/, "the message says how to get a model");
      return true;
    },
  );
}

describe("loadModelConfig", () => {
  test("reads a valid config; a tower without a precision (older exports) is fp32", () => {
    const config = loadModelConfig(modelDir(VALID));
    assert.deepEqual(config, {
      ...VALID,
      vision: { ...VALID.vision, precision: "fp32" },
      text: { ...VALID.text, precision: "fp32" },
    });
    const check = { min_cosine: 0.99, embedding: Array.from({ length: 64 }, (_, i) => i / 64) };
    const fp16 = { ...VALID, vision: { ...VALID.vision, precision: "fp16", check } };
    assert.deepEqual(loadModelConfig(modelDir(fp16)).vision, fp16.vision);
  });

  test("reads the vision tower's dense output when there is one (export --dense)", () => {
    const dense = { output: "patch_embeds", kind: "value", grid: [14, 14] };
    const withDense = { ...VALID, vision: { ...VALID.vision, dense } };
    assert.deepEqual(loadModelConfig(modelDir(withDense)).vision, {
      ...VALID.vision,
      precision: "fp32",
      dense,
    });
    assert.equal(loadModelConfig(modelDir(VALID)).vision.dense, undefined);
  });

  test("missing directory and missing config.json are model_not_found", () => {
    expectError(path.join(root, "nope"), "model_not_found", /does not exist/);
    expectError(modelDir(undefined), "model_not_found", /No config\.json/);
  });

  test("broken JSON is model_invalid", () => {
    expectError(modelDir("{not json"), "model_invalid", /not valid JSON/);
  });

  const cases: [string, Record<string, unknown>, RegExp][] = [
    [
      "a check with a min_cosine above 1",
      { vision: { ...VALID.vision, check: { min_cosine: 1.5, embedding: [] } } },
      /"vision\.check\.min_cosine" must be a number in \(0, 1\]/,
    ],
    [
      "a dense output of an unknown kind",
      {
        vision: { ...VALID.vision, dense: { output: "patch_embeds", kind: "mean", grid: [7, 7] } },
      },
      /"vision\.dense\.kind" must be one of value, final/,
    ],
    [
      "a dense output without its grid",
      { vision: { ...VALID.vision, dense: { output: "patch_embeds", kind: "final" } } },
      /"vision\.dense\.grid" must be \[rows, columns\]/,
    ],
    [
      "a dense output without a name",
      { vision: { ...VALID.vision, dense: { kind: "value", grid: [7, 7] } } },
      /"vision\.dense\.output"/,
    ],
    ["wrong format", { format: "onnx" }, /"format"/],
    ["unsupported version", { format_version: 2 }, /format_version/],
    ["missing embed_dim", { embed_dim: undefined }, /"embed_dim"/],
    ["fractional resolution", { image_resolution: 22.5 }, /"image_resolution"/],
    ["short mean", { image_mean: [0.5, 0.5] }, /"image_mean"/],
    ["zero std", { image_std: [0.2, 0, 0.2] }, /"image_std"/],
    ["unknown model type", { model_type: "siglip" }, /"model_type"/],
    ["end id outside the vocabulary", { end_token_id: 50000 }, /end_token_id/],
    ["missing vision output", { vision: { file: "vision.onnx", input: "x" } }, /vision\.output/],
    ["path outside the directory", { text: { ...VALID.text, file: "../text.onnx" } }, /text\.file/],
    ["missing text file", { text: { ...VALID.text, file: "other.onnx" } }, /other\.onnx.*missing/],
    [
      "unknown tokenizer type",
      { tokenizer: { ...VALID.tokenizer, type: "wordpiece" } },
      /tokenizer\.type/,
    ],
    ["no merge count", { tokenizer: { file: "bpe.txt.gz", type: "clip-bpe" } }, /num_merges/],
  ];
  for (const [name, change, pattern] of cases) {
    test(`${name} is model_invalid`, () => {
      expectError(modelDir({ ...VALID, ...change }), "model_invalid", pattern);
    });
  }
});
