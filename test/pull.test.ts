/**
 * `longclip pull` against a hub served from 127.0.0.1 (LONGCLIP_HUB_URL), with no Python
 * reachable: a Hugging Face CLIPModel repository (the tiny CLIP the tests make) becomes the
 * model a local conversion of the same files gives; an interrupted download resumes with a
 * Range request; a checksum mismatch and unknown names fail with their codes. With ../shared,
 * the reference files served the same way (a repository, a registry name, a .pt URL) become
 * models that reproduce the official outputs. Nothing here touches the internet.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { gunzipSync } from "node:zlib";
import { DEFAULT_SETTINGS } from "../src/core/settings.ts";
import { Encoder } from "../src/encode/encoder.ts";
import { relativeDifference, runWithoutPython, worstReferenceText } from "./convert-helpers.ts";
import { type FakeHub, startFakeHub } from "./helpers/fake-hub.ts";
import {
  CLIP_VOCAB,
  loadReference,
  loadReferencePixels,
  REFERENCE_DIR,
  SKIP_WITHOUT_SHARED,
  TINY_DIR,
} from "./helpers/reference.ts";
import { tinyClipModelDir, tinyClipPixels, writeTinyClipHf } from "./helpers/tiny-clip.ts";

let hub: FakeHub;
let dir: string;

function sha256(data: Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

/** Serves a Hugging Face CLIPModel directory as repository `repo`. */
function addHfRepo(
  repo: string,
  source: string,
  options: { breakAfter?: number; wrongSha?: boolean } = {},
): void {
  for (const name of readdirSync(source)) {
    const data = readFileSync(path.join(source, name));
    const lfs = name === "model.safetensors";
    hub.files.set(`/${repo}/resolve/main/${name}`, {
      data,
      ...(lfs ? { linkedSha: options.wrongSha ? sha256(Buffer.from("other")) : sha256(data) } : {}),
      ...(lfs && options.breakAfter ? { breakAfter: options.breakAfter } : {}),
    });
  }
}

function pull(args: readonly string[], cache = path.join(dir, "cache")) {
  return runWithoutPython(["pull", ...args], { LONGCLIP_HUB_URL: hub.url, LONGCLIP_CACHE: cache });
}

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), "pull-"));
  hub = await startFakeHub();
  // The tiny CLIP of helpers/tiny-clip.ts, as tinyClipModelDir converts it.
  const tiny = path.join(dir, "tiny-clip-hf");
  writeTinyClipHf(tiny);
  addHfRepo("test-org/tiny-clip", tiny);
  addHfRepo("test-org/flaky", tiny, { breakAfter: 100_000 });
  addHfRepo("test-org/tampered", tiny, { wrongSha: true });
});
after(async () => {
  await hub?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** `longclip pull REPO --out OUT` of a Hugging Face CLIPModel: downloaded, checked, converted. */
async function pullConverted(repo: string, out: string): Promise<void> {
  const run = await pull([repo, "--out", out]);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, /model\.safetensors: \d+ bytes, sha256 checked against the hub value/);
  assert.match(run.stdout, /checked against the TypeScript forward/);
  assert.match(run.stdout, /serve it with: longclip serve --model/);
}

describe("longclip pull from a local hub", () => {
  test("a Hugging Face CLIPModel repository: checked download, conversion, the local export's outputs", async () => {
    const out = path.join(dir, "models", "tiny-clip");
    await pullConverted("test-org/tiny-clip", out);
    const settings = { ...DEFAULT_SETTINGS, device: "cpu" as const, threads: 2 };
    const pulled = await Encoder.load(out, settings);
    const local = await Encoder.load(await tinyClipModelDir(), settings);
    try {
      const texts = ["", "a small red circle", "a large blue square ".repeat(30)];
      const [a, b] = await Promise.all([pulled.embedTexts(texts), local.embedTexts(texts)]);
      assert.deepEqual(a, b);
      const pixels = [0, 1].map(tinyClipPixels);
      assert.deepEqual(await pulled.embedPixels(pixels), await local.embedPixels(pixels));
    } finally {
      await Promise.all([pulled.close(), local.close()]);
    }
  });

  test("an interrupted download fails with download_failed, and the next pull resumes it", async () => {
    const out = path.join(dir, "models", "flaky");
    const cache = path.join(dir, "cache-flaky");
    const first = await pull(["test-org/flaky", "--out", out], cache);
    assert.equal(first.code, 1);
    assert.match(
      first.stderr,
      /error \[download_failed\]: .*model\.safetensors.*resumes where it stopped/,
    );
    assert.ok(existsSync(path.join(cache, "test-org", "flaky", "model.safetensors.partial")));
    assert.equal(existsSync(path.join(out, "config.json")), false);
    const second = await pull(["test-org/flaky", "--out", out], cache);
    assert.equal(second.code, 0, second.stderr);
    assert.match(
      second.stdout,
      /model\.safetensors: \d+ bytes, resumed at 100000 bytes, sha256 checked/,
    );
    assert.ok(
      hub.ranges.includes("/test-org/flaky/resolve/main/model.safetensors bytes=100000-"),
      hub.ranges.join("; "),
    );
    assert.ok(existsSync(path.join(out, "config.json")));
  });

  test("a file whose sha256 is not the hub's is deleted and reported as download_corrupt", async () => {
    const cache = path.join(dir, "cache-tampered");
    const run = await pull(
      ["test-org/tampered", "--out", path.join(dir, "models", "tampered")],
      cache,
    );
    assert.equal(run.code, 1);
    assert.match(
      run.stderr,
      /error \[download_corrupt\]: .*sha256 [0-9a-f]{64}, expected [0-9a-f]{64}/,
    );
    assert.equal(
      existsSync(path.join(cache, "test-org", "tampered", "model.safetensors.partial")),
      false,
    );
  });

  test("unknown names and missing repositories say what to pass", async () => {
    const unknown = await pull(["no-such-model", "--out", path.join(dir, "x")]);
    assert.equal(unknown.code, 1);
    assert.match(
      unknown.stderr,
      /error \[model_unknown\]: unknown model "no-such-model": pass one of longclip-b, longclip-l/,
    );
    const missing = await pull(["test-org/missing", "--out", path.join(dir, "y")]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /error \[download_failed\]: .*HTTP 404 \(not found/);
  });
});

describe("longclip pull of the reference files (official outputs)", {
  skip: SKIP_WITHOUT_SHARED,
}, () => {
  before(() => {
    addHfRepo("test-org/longclip-tiny-hf", path.join(REFERENCE_DIR, "longclip-tiny-hf"));
    // the registry's longclip-b, served with the tiny reference checkpoint and CLIP's merges
    hub.files.set("/BeichenZhang/LongCLIP-B/resolve/main/longclip-B.pt", {
      data: readFileSync(path.join(TINY_DIR, "longclip-tiny.pt")),
    });
    hub.files.set("/files/longclip-tiny.pt", {
      data: readFileSync(path.join(TINY_DIR, "longclip-tiny.pt")),
    });
    hub.files.set("/openai/clip-vit-base-patch16/resolve/main/merges.txt", {
      data: gunzipSync(readFileSync(CLIP_VOCAB)),
    });
  });

  test("a Hugging Face CLIPModel repository: checked download, conversion, the official outputs", async () => {
    const out = path.join(dir, "models", "tiny-hf");
    await pullConverted("test-org/longclip-tiny-hf", out);
    const reference = loadReference();
    const encoder = await Encoder.load(out, { ...DEFAULT_SETTINGS, device: "cpu", threads: 2 });
    try {
      const raw = await encoder.rawText(reference.texts.map((t) => Int32Array.from(t.ids_248)));
      const text = Math.max(
        ...reference.texts.map((t, i) => relativeDifference(raw[i] as Float32Array, t.embedding)),
      );
      const images = reference.images.map(loadReferencePixels);
      const batch = new Float32Array(images.length * (images[0]?.length ?? 0));
      for (const [i, p] of images.entries()) batch.set(p, i * p.length);
      const vision = await encoder.rawVision(batch, images.length);
      const image = Math.max(
        ...reference.images.map((r, i) =>
          relativeDifference(vision[i] as Float32Array, r.embedding),
        ),
      );
      console.log(
        `pulled longclip-tiny-hf: max relative difference text ${text.toExponential(2)}, image ${image.toExponential(2)}`,
      );
      assert.ok(text <= 1e-5 && image <= 1e-4, `text ${text}, image ${image}`);
    } finally {
      await encoder.close();
    }
  });

  test("a registry name: longclip-b's .pt and CLIP merges from their repositories", async () => {
    const out = path.join(dir, "models", "longclip-b");
    const run = await pull(["longclip-b", "--out", out]);
    assert.equal(run.code, 0, run.stderr);
    const config = JSON.parse(readFileSync(path.join(out, "config.json"), "utf8"));
    assert.equal(config.name, "longclip-b");
    assert.equal(config.tokenizer.file, "merges.txt");
    assert.equal(config.tokenizer.num_merges, 48894);
    const worst = await worstReferenceText(out, loadReference().texts);
    console.log(
      `pulled longclip-b (served with longclip-tiny.pt): max relative difference text ${worst.toExponential(2)}`,
    );
    assert.ok(worst <= 1e-5, `text ${worst}`);
  });

  test("the URL of a .pt file, with --vocab; without it, the error says to pass one", async () => {
    const url = `${hub.url}/files/longclip-tiny.pt`;
    const out = path.join(dir, "models", "from-url");
    const noVocab = await pull([url, "--out", out]);
    assert.equal(noVocab.code, 1);
    assert.match(
      noVocab.stderr,
      /error \[tokenizer_invalid\]: a \.pt URL carries no tokenizer: pass --vocab/,
    );
    const run = await pull([url, "--vocab", CLIP_VOCAB, "--out", out]);
    assert.equal(run.code, 0, run.stderr);
    const worst = await worstReferenceText(out, loadReference().texts);
    assert.ok(worst <= 1e-5, `text ${worst}`);
  });
});
