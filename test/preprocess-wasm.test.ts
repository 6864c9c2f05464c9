/**
 * The WebAssembly SIMD passes of the resampler against the JavaScript ones (which
 * test/preprocess-pil.test.ts checks against Pillow, as it does the default SIMD path), and
 * the committed module against its source.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, test } from "node:test";
import { generate, MODULE_FILE, WAT_FILE } from "../scripts/gen-wasm.ts";
import { type RawImage, resizeBicubic, setResampleEngine } from "../src/preprocess/resample.ts";

after(() => setResampleEngine("simd"));

/** Noise with smooth stretches and saturated runs, so clipping at 0 and 255 is exercised. */
function image(width: number, height: number, channels: number, seed: number): RawImage {
  const data = new Uint8Array(width * height * channels);
  let state = seed;
  for (let i = 0; i < data.length; i++) {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    const r = state >>> 24;
    data[i] = r < 40 ? 0 : r > 215 ? 255 : (i * 37) & 255;
  }
  return { data, width, height, channels };
}

const CASES: [number, number, number, number, number][] = [
  // width, height, channels, out width, out height
  [1600, 1200, 3, 298, 224],
  [1201, 803, 4, 335, 224],
  [333, 251, 1, 297, 224],
  [97, 131, 2, 224, 302],
  [20, 30, 3, 224, 336],
  [900, 180, 3, 1120, 224],
  [5, 3, 4, 17, 9],
];

test("SIMD and JavaScript resamplers give the same bytes (1-4 channels, shrink and enlarge)", () => {
  CASES.forEach(([w, h, c, ow, oh], i) => {
    const src = image(w, h, c, 11 + i);
    const windows = [
      { left: 0, top: 0, width: ow, height: oh },
      { left: Math.floor(ow / 3), top: Math.floor(oh / 4), width: Math.ceil(ow / 2), height: 1 },
    ];
    for (const window of windows) {
      setResampleEngine("js");
      const js = resizeBicubic(src, ow, oh, window);
      setResampleEngine("simd");
      const simd = resizeBicubic(src, ow, oh, window);
      assert.equal(simd.width, js.width);
      assert.equal(simd.height, js.height);
      assert.ok(
        Buffer.from(simd.data).equals(Buffer.from(js.data)),
        `case ${i} ${JSON.stringify(window)}`,
      );
    }
  });
});

test("resample-wasm.ts is the assembled resample.wat (run npm run gen:wasm after editing)", async () => {
  const expected = await generate(readFileSync(WAT_FILE, "utf8"));
  assert.equal(readFileSync(MODULE_FILE, "utf8"), expected);
});
