/**
 * Where the shared reference material is, and a model directory exported from the
 * reference checkpoint (made once with the training package, cached under artifacts/).
 */
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { PROJECT_ROOT } from "../../src/core/settings.ts";

export const SHARED_DIR = path.resolve(
  process.env.LONGCLIP_SHARED ?? path.join(PROJECT_ROOT, "..", "shared"),
);
export const REFERENCE_DIR = path.join(SHARED_DIR, "reference");
export const TINY_DIR = path.join(REFERENCE_DIR, "longclip-tiny");
export const CLIP_VOCAB = path.join(REFERENCE_DIR, "clip-bpe", "bpe_simple_vocab_16e6.txt.gz");

const haveShared = existsSync(path.join(TINY_DIR, "reference.json"));

/**
 * Pass as `{ skip: SKIP_WITHOUT_SHARED }` to tests that compare with the official code's
 * outputs (../shared/reference); every other test runs without it (helpers/demo-model.ts,
 * helpers/tiny-clip.ts).
 */
export const SKIP_WITHOUT_SHARED: string | false = haveShared
  ? false
  : `skipped: compares with the official Long-CLIP outputs, not found at ${REFERENCE_DIR} (place the shared/ folder beside the checkout or set LONGCLIP_SHARED)`;

export interface ReferenceText {
  text: string;
  ids: number[];
  ids_248: number[];
  embedding: number[];
}

export interface ReferenceImage {
  file: string;
  pixels: string;
  shape: [number, number, number];
  embedding: number[];
}

export interface Reference {
  config: {
    image_resolution: number;
    embed_dim: number;
    context_length: number;
    mean: number[];
    std: number[];
  };
  texts: ReferenceText[];
  images: ReferenceImage[];
}

export function loadReference(): Reference {
  return JSON.parse(readFileSync(path.join(TINY_DIR, "reference.json"), "utf8")) as Reference;
}

export function loadReferencePixels(image: ReferenceImage): Float32Array {
  const buffer = readFileSync(path.join(TINY_DIR, image.pixels));
  return new Float32Array(buffer.buffer, buffer.byteOffset, buffer.byteLength / 4).slice();
}

/** Exports longclip-tiny.pt to artifacts/test-models/longclip-tiny once and returns the directory. */
export function tinyModelDir(): string {
  const out = path.join(PROJECT_ROOT, "artifacts", "test-models", "longclip-tiny");
  if (!existsSync(path.join(out, "config.json"))) {
    execFileSync(
      path.join(PROJECT_ROOT, "scripts", "python"),
      [
        "-m",
        "training",
        "export",
        "--checkpoint",
        path.join(TINY_DIR, "longclip-tiny.pt"),
        "--vocab",
        CLIP_VOCAB,
        "--out",
        out,
      ],
      { cwd: PROJECT_ROOT, stdio: ["ignore", "inherit", "inherit"] },
    );
  }
  return out;
}
