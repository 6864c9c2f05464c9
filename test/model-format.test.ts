/**
 * The model directory format (docs/model-format.md): config.json read against its schema
 * (src/model/model-format.schema.json), written by the one writer, and the schema, the
 * TypeScript type, the docs and the demo model in step.
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { AppError } from "../src/core/errors.ts";
import { PROJECT_ROOT } from "../src/core/settings.ts";
import { CLIP_IMAGE_MEAN, CLIP_IMAGE_STD, type ModelConfig } from "../src/model/format.ts";
import schema from "../src/model/model-format.schema.json" with { type: "json" };
import { checkModelConfig, readModelConfig, readTokenizerConfig } from "../src/model/read.ts";
import { writeModelConfig } from "../src/model/write.ts";

const VALID = {
  format: "longclip-onnx",
  format_version: 1,
  model_id: "longclip-tiny-3f2a9c1e5b7d",
  name: "longclip-tiny",
  model_type: "longclip",
  embed_dim: 64,
  image_resolution: 224,
  image_mean: [...CLIP_IMAGE_MEAN],
  image_std: [...CLIP_IMAGE_STD],
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
    () => readModelConfig(dir),
    (error: unknown) => {
      assert.ok(error instanceof AppError, String(error));
      assert.equal(error.code, code);
      assert.match(error.message, pattern);
      assert.match(error.message, /training export/, "the message says how to get a model");
      return true;
    },
  );
}

describe("readModelConfig", () => {
  test("reads a valid config; a tower without a precision (older exports) is fp32", () => {
    const config = readModelConfig(modelDir(VALID));
    assert.deepEqual(config, {
      ...VALID,
      vision: { ...VALID.vision, precision: "fp32" },
      text: { ...VALID.text, precision: "fp32" },
    });
    const check = { min_cosine: 0.99, embedding: Array.from({ length: 64 }, (_, i) => i / 64) };
    const fp16 = { ...VALID, vision: { ...VALID.vision, precision: "fp16", check } };
    assert.deepEqual(readModelConfig(modelDir(fp16)).vision, fp16.vision);
  });

  test("reads the vision tower's dense output when there is one (export --dense)", () => {
    const dense = { output: "patch_embeds", kind: "value", grid: [14, 14] };
    const withDense = { ...VALID, vision: { ...VALID.vision, dense } };
    assert.deepEqual(readModelConfig(modelDir(withDense)).vision, {
      ...VALID.vision,
      precision: "fp32",
      dense,
    });
    assert.equal(readModelConfig(modelDir(VALID)).vision.dense, undefined);
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
      /"vision\.dense\.kind" must be one of value, final, not "mean"/,
    ],
    [
      "a dense output without its grid",
      { vision: { ...VALID.vision, dense: { output: "patch_embeds", kind: "final" } } },
      /"vision\.dense\.grid" is missing; it must be \[rows, columns\]/,
    ],
    [
      "a dense grid of three numbers",
      { vision: { ...VALID.vision, dense: { output: "p", kind: "final", grid: [7, 7, 1] } } },
      /"vision\.dense\.grid" must be \[rows, columns\], two integers ≥ 1/,
    ],
    [
      "a dense output without a name",
      { vision: { ...VALID.vision, dense: { kind: "value", grid: [7, 7] } } },
      /"vision\.dense\.output" is missing/,
    ],
    [
      "a dense output on the text tower",
      { text: { ...VALID.text, dense: { output: "p", kind: "value", grid: [7, 7] } } },
      /"text\.dense" is not allowed/,
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

describe("readTokenizerConfig", () => {
  const tokenizerOnly = {
    context_length: 77,
    vocab_size: 49408,
    start_token_id: 49406,
    end_token_id: 49407,
    tokenizer: VALID.tokenizer,
  };

  test("reads the tokenizer's fields of a config.json that has only those", () => {
    assert.deepEqual(readTokenizerConfig(modelDir(tokenizerOnly)), tokenizerOnly);
  });

  test("its fields are checked as the whole config's are", () => {
    assert.throws(
      () => readTokenizerConfig(modelDir({ ...tokenizerOnly, context_length: "77" })),
      (error: unknown) =>
        error instanceof AppError &&
        error.code === "model_invalid" &&
        /"context_length" must be an integer ≥ 2, not "77"/.test(error.message),
    );
    assert.throws(
      () => readTokenizerConfig(modelDir({ ...tokenizerOnly, tokenizer: undefined })),
      /"tokenizer" is missing; it must be an object/,
    );
    assert.throws(() => readTokenizerConfig(path.join(root, "nope")), /does not exist/);
  });
});

describe("writeModelConfig", () => {
  const full: ModelConfig = {
    ...VALID,
    format: "longclip-onnx",
    model_type: "longclip",
    image_mean: [...CLIP_IMAGE_MEAN],
    image_std: [...CLIP_IMAGE_STD],
    tokenizer: { file: "bpe.txt.gz", type: "clip-bpe", num_merges: 48894 },
    vision: { ...VALID.vision, precision: "fp32" },
    text: { ...VALID.text, precision: "fp32" },
  };

  test("what it writes reads back the same", async () => {
    const dir = modelDir(undefined);
    await writeModelConfig(dir, full);
    assert.deepEqual(readModelConfig(dir), full);
    assert.ok(readFileSync(path.join(dir, "config.json"), "utf8").endsWith("}\n"));
  });

  test("it refuses a config the reader would refuse, and writes nothing", async () => {
    const dir = modelDir(undefined);
    await assert.rejects(
      writeModelConfig(dir, { ...full, embed_dim: 0 }),
      (error: unknown) => error instanceof AppError && error.code === "model_invalid",
    );
    await assert.rejects(
      writeModelConfig(dir, { ...full, vision: { ...full.vision, file: "absent.onnx" } }),
      /absent\.onnx, which is missing/,
    );
    assert.ok(!existsSync(path.join(dir, "config.json")));
  });
});

describe("the schema, the type, the docs and the demo model agree", () => {
  /** Property names a schema node lists, through `allOf` and `$ref`. */
  function propertiesOf(node: Record<string, unknown>): string[] {
    const defs = schema.$defs as Record<string, Record<string, unknown>>;
    const ref = node.$ref as string | undefined;
    if (ref !== undefined) return propertiesOf(defs[ref.replace("#/$defs/", "")] ?? {});
    const own = Object.keys((node.properties as object | undefined) ?? {});
    const parts = ((node.allOf as Record<string, unknown>[] | undefined) ?? []).flatMap(
      propertiesOf,
    );
    return [...new Set([...own, ...parts])].sort();
  }

  test("every field of ModelConfig is in the schema, and every schema field in ModelConfig", () => {
    const check = { min_cosine: 0.99, embedding: [0] };
    // A config with every optional field set: its keys are the type's.
    const config: Required<ModelConfig> = {
      ...(VALID as unknown as ModelConfig),
      vision: {
        ...VALID.vision,
        precision: "int8",
        check,
        dense: { output: "patch_embeds", kind: "value", grid: [7, 7] },
      },
    };
    const keys = (value: object) => Object.keys(value).sort();
    assert.deepEqual(keys(config), propertiesOf(schema));
    assert.deepEqual(keys(config.vision), propertiesOf(schema.$defs.tower));
    assert.deepEqual(
      keys(config.tokenizer),
      propertiesOf(schema.$defs.tokenizerFields.properties.tokenizer),
    );
    assert.deepEqual(keys(check), propertiesOf(schema.$defs.tower.properties.check));
    assert.deepEqual(
      keys(config.vision.dense ?? {}),
      propertiesOf(schema.$defs.tower.properties.dense),
    );
  });

  test("docs/model-format.md's example config.json is valid", () => {
    const docs = readFileSync(path.join(PROJECT_ROOT, "docs", "model-format.md"), "utf8");
    const example = /`config.json`:\n\n```json\n([\s\S]*?)\n```/.exec(docs)?.[1];
    assert.ok(example, "the example was found");
    const raw = JSON.parse(example.replace('"<sha256 of the checkpoint file exported>"', '"ab"'));
    const dir = modelDir(undefined, [raw.tokenizer.file, raw.vision.file, raw.text.file]);
    assert.equal(checkModelConfig(dir, raw).model_id, raw.model_id);
  });

  test("the demo model's config.json is valid", () => {
    const config = readModelConfig(path.join(PROJECT_ROOT, "models", "demo"));
    assert.equal(config.format, "longclip-onnx");
    assert.deepEqual(config.image_mean, [...CLIP_IMAGE_MEAN]);
  });
});
