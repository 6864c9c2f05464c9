/** `longclip embed` as a child process: JSON lines in, one JSON line per input out, in order. */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { DEFAULT_SETTINGS, PROJECT_ROOT } from "../src/core/settings.ts";
import { Encoder } from "../src/encode/encoder.ts";
import { cudaUnavailableReason } from "../src/encode/session.ts";
import { runCli } from "./helpers/cli.ts";
import { DEMO_MODEL_DIR, sampleImage } from "./helpers/demo-model.ts";

const IMAGES = mkdtempSync(path.join(tmpdir(), "longclip-embed-cli-"));
writeFileSync(path.join(IMAGES, "hopper.jpg"), sampleImage("hopper.jpg"));
after(() => rmSync(IMAGES, { recursive: true, force: true }));

const THREADS = { LONGCLIP_THREADS: "2" };

const lines = (text: string): unknown[] =>
  text
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));

function errorCode(line: Record<string, unknown> | undefined): unknown {
  return (line?.error as { code?: unknown } | undefined)?.code;
}

describe("longclip embed", () => {
  test("a missing model directory exits 1 and says how to get a model", async () => {
    const run = await runCli(
      ["embed", "--model", path.join(PROJECT_ROOT, "no-such-model")],
      "",
      THREADS,
    );
    assert.equal(run.code, 1);
    assert.match(run.stderr, /model_not_found/);
    assert.match(run.stderr, /training export/);
    assert.equal(run.stdout, "");
  });

  test("a bad flag value exits 2", async () => {
    const run = await runCli(["embed", "--device", "tpu"], "", THREADS);
    assert.equal(run.code, 2);
    assert.match(run.stderr, /cpu, cuda or auto/);
  });

  test("texts, images and bad lines come back in input order", async () => {
    const model = DEMO_MODEL_DIR;
    const image = path.join(IMAGES, "hopper.jpg");
    const input = [
      JSON.stringify({ text: "a photo of a cat on a sofa" }),
      JSON.stringify({ image }),
      "not json",
      "",
      JSON.stringify({ image: path.join(IMAGES, "missing.png") }),
      // One token of the demo vocabulary: with start and end, 302.
      JSON.stringify({ text: "circle ".repeat(300) }),
      JSON.stringify({ text: "x", image }),
      JSON.stringify({ image: IMAGES }),
    ].join("\n");
    const run = await runCli(
      ["embed", "--model", model, "--image-batch-size", "2", "--text-batch-size", "2"],
      input,
      THREADS,
    );
    assert.equal(run.code, 0, run.stderr);
    const out = lines(run.stdout) as Record<string, unknown>[];
    assert.equal(out.length, 7, "one line per non-empty input line");
    const [text, img, bad, missing, long, both, directory] = out;

    const encoder = await Encoder.load(model, { ...DEFAULT_SETTINGS, threads: 2 });
    try {
      const [expected] = await encoder.embedTexts(["a photo of a cat on a sofa"]);
      assert.deepEqual(text?.embedding, Array.from(expected?.embedding ?? []));
      assert.equal(text?.tokens, expected?.tokens);
      assert.equal(text?.truncated, false);
    } finally {
      await encoder.close();
    }
    assert.equal((img?.embedding as number[] | undefined)?.length, 64);
    assert.equal(typeof img?.width, "number");
    assert.equal(typeof img?.height, "number");
    assert.equal(errorCode(bad), "bad_input");
    assert.equal(errorCode(missing), "image_not_found");
    assert.equal(long?.truncated, true);
    assert.equal(long?.tokens, 302);
    assert.equal(errorCode(both), "bad_input");
    assert.equal(errorCode(directory), "image_not_found");
    assert.match(String((directory?.error as { message?: string })?.message), /not a regular file/);
  });

  test("long input without a terminal logs plain progress lines", async () => {
    const input = Array.from({ length: 70 }, (_, i) =>
      JSON.stringify({ text: `caption ${i}` }),
    ).join("\n");
    const run = await runCli(["embed", "--model", DEMO_MODEL_DIR], input, THREADS);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(lines(run.stdout).length, 70);
    assert.match(run.stderr, /embed: 64\/70 lines/);
    assert.match(run.stderr, /embed: 70\/70 lines/);
    assert.match(run.stderr, /70 texts and 0 images on cpu/);
  });

  test("--device cuda is a clear error on this host", {
    skip: cudaUnavailableReason() === undefined ? "this host has the CUDA build" : false,
  }, async () => {
    const run = await runCli(["embed", "--model", DEMO_MODEL_DIR, "--device", "cuda"], "", THREADS);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /cuda_unavailable/);
    assert.match(run.stderr, /--device cpu/);
  });
});
