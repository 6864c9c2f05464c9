/**
 * The resampler and the whole preprocessing against Pillow itself, run through
 * /usr/bin/python3 on images generated here (test/fixtures/pil_preprocess.py).
 */
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import sharp from "sharp";
import { PROJECT_ROOT } from "../src/core/settings.ts";
import {
  centerCropOffset,
  preprocessImage,
  resizeBicubic,
  resizedSize,
} from "../src/preprocess/index.ts";
import { bilevelPng } from "./fixtures/bilevel-png.ts";
import { CLIP_224 } from "./helpers/preprocess-options.ts";

const PYTHON = "/usr/bin/python3";
const SCRIPT = path.join(PROJECT_ROOT, "test", "fixtures", "pil_preprocess.py");
const havePil = spawnSync(PYTHON, ["-c", "import PIL, numpy"], { stdio: "ignore" }).status === 0;
const SKIP_WITHOUT_PIL: string | false = havePil
  ? false
  : `skipped: ${PYTHON} with Pillow and numpy is needed as the reference`;

const OPTIONS = CLIP_224;

/** Deterministic pseudo-random bytes mixed with gradients: edges and smooth areas both. */
function testPattern(width: number, height: number, channels: number, seed: number): Uint8Array {
  const data = new Uint8Array(width * height * channels);
  let state = seed;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < channels; c++) {
        state = (Math.imul(state, 1103515245) + 12345) >>> 0;
        const noisy = (state >>> 16) % 5 === 0;
        const smooth = ((x * (c + 1) * 255) / width + (y * 128) / height) % 256;
        data[(y * width + x) * channels + c] = noisy ? (state >>> 8) & 255 : smooth;
      }
    }
  }
  return data;
}

interface ResizeCase {
  mode: "L" | "RGB";
  size: [number, number];
  outSize: [number, number];
}

const RESIZE_CASES: ResizeCase[] = [
  { mode: "RGB", size: [640, 480], outSize: [298, 224] },
  { mode: "RGB", size: [1999, 1001], outSize: [447, 224] },
  { mode: "RGB", size: [20, 30], outSize: [224, 336] },
  { mode: "RGB", size: [900, 180], outSize: [1120, 224] },
  { mode: "RGB", size: [224, 500], outSize: [224, 123] },
  { mode: "RGB", size: [301, 224], outSize: [224, 224] },
  { mode: "L", size: [333, 251], outSize: [297, 224] },
  { mode: "L", size: [7, 5], outSize: [31, 17] },
];

/** Encoded inputs for the full pipeline, each made here with sharp. */
async function pipelineInputs(): Promise<{ name: string; bytes: Buffer }[]> {
  const rgb = (w: number, h: number, seed: number) =>
    sharp(Buffer.from(testPattern(w, h, 3, seed)), { raw: { width: w, height: h, channels: 3 } });
  // RGBA with fully transparent pixels that still carry colour, and partial alpha.
  const rgba = (w: number, h: number, seed: number) => {
    const data = testPattern(w, h, 4, seed);
    for (let i = 3; i < data.length; i += 12) data[i] = 0;
    return sharp(Buffer.from(data), { raw: { width: w, height: h, channels: 4 } });
  };
  const grey = sharp(Buffer.from(testPattern(250, 167, 1, 3)), {
    raw: { width: 250, height: 167, channels: 1 },
  });
  const greyAlpha = sharp(Buffer.from(testPattern(60, 45, 2, 5)), {
    raw: { width: 60, height: 45, channels: 2 },
  });
  return [
    { name: "rgb-299x224.png", bytes: await rgb(299, 224, 1).png().toBuffer() },
    { name: "rgb-251x167.png", bytes: await rgb(251, 167, 2).png().toBuffer() },
    { name: "rgb-180x700.png", bytes: await rgb(180, 700, 4).png().toBuffer() },
    { name: "rgb-1x1.png", bytes: await rgb(1, 1, 14).png().toBuffer() },
    { name: "rgb-800x3.png", bytes: await rgb(800, 3, 15).png().toBuffer() },
    { name: "rgb-1200x900.jpg", bytes: await rgb(1200, 900, 6).jpeg({ quality: 85 }).toBuffer() },
    { name: "rgba-97x131.png", bytes: await rgba(97, 131, 7).png().toBuffer() },
    // Already at the target size: Pillow skips the resize and its premultiply round trip.
    { name: "rgba-224x300.png", bytes: await rgba(224, 300, 8).png().toBuffer() },
    { name: "grey-250x167.png", bytes: await grey.png().toBuffer() },
    // Pillow resizes palette ("P") and bilevel ("1") images with nearest neighbour.
    { name: "palette-97x61.png", bytes: await rgb(97, 61, 9).png({ colours: 16 }).toBuffer() },
    { name: "palette-503x401.png", bytes: await rgb(503, 401, 10).png({ colours: 64 }).toBuffer() },
    {
      name: "palette-2-300x211.png",
      bytes: await rgb(300, 211, 11).png({ colours: 2 }).toBuffer(),
    },
    { name: "frame-333x250.gif", bytes: await rgb(333, 250, 12).gif().toBuffer() },
    { name: "frame-50x70.gif", bytes: await rgb(50, 70, 13).gif().toBuffer() },
    { name: "bilevel-259x190.png", bytes: bilevelPng(259, 190, (x, y) => (x * y) % 7 < 3) },
    { name: "grey-alpha-60x45.png", bytes: await greyAlpha.png().toBuffer() },
  ];
}

let work = "";
let result: { sizes: [number, number][]; offsets: number[] };
let inputs: { name: string; bytes: Buffer }[] = [];
const SIZES: [number, number][] = [
  [640, 480],
  [480, 640],
  [251, 167],
  [250, 167],
  [20, 30],
  [900, 180],
  [1999, 1001],
  [333, 251],
  [224, 224],
  [225, 224],
];
const LENGTHS = Array.from({ length: 60 }, (_, i) => 224 + i);

before(async () => {
  if (!havePil) return;
  work = mkdtempSync(path.join(tmpdir(), "preprocess-pil-"));
  inputs = await pipelineInputs();
  const job = {
    resolution: OPTIONS.resolution,
    mean: OPTIONS.mean,
    std: OPTIONS.std,
    sizes: SIZES,
    lengths: LENGTHS,
    resize: RESIZE_CASES.map((c, i) => {
      const channels = c.mode === "L" ? 1 : 3;
      const input = path.join(work, `resize-${i}.raw`);
      writeFileSync(input, testPattern(c.size[0], c.size[1], channels, 100 + i));
      return { in: input, mode: c.mode, size: c.size, out_size: c.outSize, out: `${input}.out` };
    }),
    pipeline: inputs.map((input) => {
      const file = path.join(work, input.name);
      writeFileSync(file, input.bytes);
      return { in: file, out: `${file}.f32` };
    }),
  };
  writeFileSync(path.join(work, "job.json"), JSON.stringify(job));
  result = JSON.parse(
    execFileSync(PYTHON, [SCRIPT, path.join(work, "job.json")], { encoding: "utf8" }),
  );
});

after(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

test("resampler equals Pillow's BICUBIC resize byte for byte", { skip: SKIP_WITHOUT_PIL }, () => {
  RESIZE_CASES.forEach((c, i) => {
    const channels = c.mode === "L" ? 1 : 3;
    const input = path.join(work, `resize-${i}.raw`);
    const src = { data: readFileSync(input), width: c.size[0], height: c.size[1], channels };
    const expected = readFileSync(`${input}.out`);
    const out = resizeBicubic(src, c.outSize[0], c.outSize[1]);
    let max = 0;
    for (let j = 0; j < expected.length; j++) {
      max = Math.max(max, Math.abs((expected[j] as number) - (out.data[j] as number)));
    }
    assert.equal(out.data.length, expected.length);
    assert.equal(max, 0, `${c.mode} ${c.size} → ${c.outSize}: max abs difference ${max}`);
  });
});

test("a resized window equals the same window of the full resize", {
  skip: SKIP_WITHOUT_PIL,
}, () => {
  const c = RESIZE_CASES[1] as ResizeCase;
  const input = path.join(work, "resize-1.raw");
  const src = { data: readFileSync(input), width: c.size[0], height: c.size[1], channels: 3 };
  const full = readFileSync(`${input}.out`);
  const window = { left: 111, top: 0, width: 224, height: 224 };
  const out = resizeBicubic(src, c.outSize[0], c.outSize[1], window);
  for (let y = 0; y < window.height; y++) {
    const from = ((window.top + y) * c.outSize[0] + window.left) * 3;
    assert.deepEqual(
      out.data.subarray(y * 224 * 3, (y + 1) * 224 * 3),
      new Uint8Array(full.subarray(from, from + 224 * 3)),
    );
  }
});

test("resize size and crop offsets follow torchvision (Python int() and round())", {
  skip: SKIP_WITHOUT_PIL,
}, () => {
  assert.deepEqual(
    SIZES.map(([w, h]) => {
      const s = resizedSize(w, h, OPTIONS.resolution);
      return [s.width, s.height];
    }),
    result.sizes,
  );
  assert.deepEqual(
    LENGTHS.map((n) => centerCropOffset(n, OPTIONS.resolution)),
    result.offsets,
  );
});

test("whole preprocessing equals the official pipeline run with Pillow", {
  skip: SKIP_WITHOUT_PIL,
}, async () => {
  const differing: string[] = [];
  for (const input of inputs) {
    const expectedBytes = readFileSync(path.join(work, `${input.name}.f32`));
    const expected = new Float32Array(
      expectedBytes.buffer,
      expectedBytes.byteOffset,
      expectedBytes.byteLength / 4,
    );
    const { pixels } = await preprocessImage(input.bytes, OPTIONS);
    assert.equal(pixels.length, expected.length);
    let max = 0;
    for (let i = 0; i < expected.length; i++) {
      max = Math.max(max, Math.abs((expected[i] as number) - (pixels[i] as number)));
    }
    if (max !== 0) differing.push(`${input.name}: max abs difference ${max}`);
  }
  assert.deepEqual(differing, []);
});
