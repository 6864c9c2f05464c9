/**
 * The optional native JPEG decoder (src/preprocess/jpeg-native): preprocessing with it gives
 * the same bytes as sharp alone (nativeJpeg "off"), in exact and fast mode, for JPEGs of every
 * kind sharp can write; the images it must not decode go to sharp; bad JPEGs fail as before.
 * Skips when the addon is not built (npm run build:native).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { test } from "node:test";
import sharp, { type Sharp } from "sharp";
import { AppError } from "../src/core/errors.ts";
import { decodeForModel, jpegShrinkOnLoad, resizedSize } from "../src/preprocess/index.ts";
import {
  fastResize,
  NATIVE_JPEG_PATH,
  type NativeJpegDecoder,
  nativeJpegCounts,
  nativeJpegDecoder,
  nativeResizeApplies,
  REGION_ROWS,
  resizesAsSharp,
  sameAsSharp,
} from "../src/preprocess/jpeg-native.ts";
import type { PreprocessOptions } from "../src/preprocess/types.ts";
import { photoLikePixels } from "../tools/bench/photos.ts";
import { CLIP_224 } from "./helpers/preprocess-options.ts";

const decoder = await nativeJpegDecoder("on");
const skip =
  decoder === undefined
    ? `the native JPEG decoder is not built (${NATIVE_JPEG_PATH}): npm run build:native`
    : false;

/** A photo-like image; large ones are upscaled from a smaller one (generating takes long). */
async function photo(width: number, height: number, seed: number): Promise<Sharp> {
  const scale = Math.max(1, Math.ceil(Math.max(width, height) / 1200));
  const [w, h] = [Math.ceil(width / scale), Math.ceil(height / scale)];
  const raw = await photoLikePixels(w, h, seed);
  const image = sharp(raw, { raw: { width: w, height: h, channels: 3 } });
  if (scale === 1) return image;
  const upscaled = await image.resize(width, height, { fit: "fill" }).raw().toBuffer();
  return sharp(upscaled, { raw: { width, height, channels: 3 } });
}

/** JPEGs the native decoder takes: sampling, greyscale, progressive, odd and large sizes. */
async function plainJpegs(): Promise<[string, Buffer][]> {
  return [
    ["4:2:0 640×480", await (await photo(640, 480, 1)).jpeg({ quality: 90 }).toBuffer()],
    [
      "4:4:4 640×480",
      await (await photo(640, 480, 2)).jpeg({ quality: 95, chromaSubsampling: "4:4:4" }).toBuffer(),
    ],
    ["4:2:0 1001×667", await (await photo(1001, 667, 3)).jpeg({ quality: 80 }).toBuffer()],
    [
      "progressive 4:4:4 667×1001",
      await (await photo(667, 1001, 4))
        .jpeg({ progressive: true, chromaSubsampling: "4:4:4" })
        .toBuffer(),
    ],
    [
      "greyscale 1333×900",
      await (await photo(1333, 900, 5)).toColourspace("b-w").jpeg().toBuffer(),
    ],
    ["greyscale 300×200", await (await photo(300, 200, 6)).toColourspace("b-w").jpeg().toBuffer()],
    // Shrink-on-load by 4 with a height libjpeg rounds up (1799 / 4 = 449.75).
    ["4:2:0 1800×1799", await (await photo(1800, 1799, 7)).jpeg().toBuffer()],
    // By 8, both sides rounded (4001 / 8, 3003 / 8).
    [
      "progressive 4001×3003",
      await (await photo(4001, 3003, 8)).jpeg({ progressive: true }).toBuffer(),
    ],
    ["4:2:0 4032×3024", await (await photo(4032, 3024, 9)).jpeg({ quality: 85 }).toBuffer()],
    ["4:2:0 1600×1200", await (await photo(1600, 1200, 10)).jpeg({ quality: 85 }).toBuffer()],
    [
      "4:2:0 225×900 (fast, no shrink-on-load)",
      await (await photo(225, 900, 11)).jpeg().toBuffer(),
    ],
  ];
}

const MODES: PreprocessOptions[] = [
  { ...CLIP_224, mode: "exact" },
  { ...CLIP_224, mode: "fast" },
];

/** decodeForModel with the native decoder, and whether it decoded the image. */
async function decodeNative(bytes: Buffer, options: PreprocessOptions) {
  const before = nativeJpegCounts();
  const image = await decodeForModel(bytes, { ...options, nativeJpeg: "on" });
  const after = nativeJpegCounts();
  return {
    image,
    native: after.native - before.native,
    declined: after.declined - before.declined,
    resized: after.resized - before.resized,
  };
}

test("native decoding gives sharp's bytes in exact and fast mode", { skip }, async () => {
  for (const [name, bytes] of await plainJpegs()) {
    for (const options of MODES) {
      const label = `${name}, ${options.mode}`;
      const reference = await decodeForModel(bytes, { ...options, nativeJpeg: "off" });
      const { image, native, declined, resized } = await decodeNative(bytes, options);
      assert.equal(native, 1, `${label}: the native decoder did not decode it`);
      assert.equal(declined, 0, label);
      // Fast mode resizes (natively) images larger than the model's input.
      const fast = options.mode === "fast" && Math.min(image.sourceWidth, image.sourceHeight) > 224;
      assert.equal(resized, fast ? 1 : 0, `${label}: native resize`);
      assert.deepEqual(
        [image.width, image.height, image.channels, image.sourceWidth, image.sourceHeight],
        [
          reference.width,
          reference.height,
          reference.channels,
          reference.sourceWidth,
          reference.sourceHeight,
        ],
        label,
      );
      assert.ok(
        Buffer.from(image.data).equals(Buffer.from(reference.data)),
        `${label}: pixels differ`,
      );
    }
  }
});

const PYTHON = "/usr/bin/python3";
const havePil = spawnSync(PYTHON, ["-c", "import PIL"], { stdio: "ignore" }).status === 0;

/**
 * JPEGs sharp cannot write, from another encoder (Pillow's libjpeg): 4:2:2 chroma, optimised
 * Huffman tables, progressive 4:2:2. Its image is a seeded noise-and-gradient pattern.
 */
function pillowJpegs(): [string, Buffer][] {
  const script = `
import io, random, sys
from PIL import Image
random.seed(3)
w, h = 1283, 961
image = Image.frombytes("RGB", (w, h), bytes(
    (x * 255 // w + random.randrange(40)) % 256 if c == 0 else
    (y * 255 // h + random.randrange(40)) % 256 if c == 1 else random.randrange(256)
    for y in range(h) for x in range(w) for c in range(3)))
for options in ({"subsampling": 1, "quality": 88}, {"subsampling": 1, "optimize": True},
                {"subsampling": 1, "progressive": True, "quality": 75}):
    out = io.BytesIO()
    image.save(out, "JPEG", **options)
    sys.stdout.buffer.write(len(out.getvalue()).to_bytes(4, "big") + out.getvalue())
`;
  const run = spawnSync(PYTHON, ["-c", script], { maxBuffer: 64 << 20 });
  assert.equal(run.status, 0, String(run.stderr));
  const names = ["Pillow 4:2:2", "Pillow 4:2:2, optimised tables", "Pillow progressive 4:2:2"];
  const jpegs: [string, Buffer][] = [];
  for (let offset = 0; offset < run.stdout.length; ) {
    const length = run.stdout.readUInt32BE(offset);
    jpegs.push([names[jpegs.length] ?? "?", run.stdout.subarray(offset + 4, offset + 4 + length)]);
    offset += 4 + length;
  }
  assert.equal(jpegs.length, names.length);
  return jpegs;
}

test("JPEGs from another encoder (Pillow): sharp's bytes too", {
  skip: skip || (havePil ? false : `skipped: ${PYTHON} with Pillow writes these JPEGs`),
}, async () => {
  for (const [name, bytes] of pillowJpegs()) {
    for (const options of MODES) {
      const label = `${name}, ${options.mode}`;
      const reference = await decodeForModel(bytes, { ...options, nativeJpeg: "off" });
      const { image, native } = await decodeNative(bytes, options);
      assert.equal(native, 1, `${label}: the native decoder did not decode it`);
      assert.ok(
        Buffer.from(image.data).equals(Buffer.from(reference.data)),
        `${label}: pixels differ`,
      );
    }
  }
});

test("jpegShrinkOnLoad picks sharp's factor", () => {
  const factor = (width: number, height: number) => {
    const size = resizedSize(width, height, 224);
    return jpegShrinkOnLoad(width / size.width, height / size.height);
  };
  // Below 2 none; 2 ≤ shrink < 3 → 2 is lowered to 1 (its integer part equals the factor).
  assert.equal(factor(400, 300), 1);
  assert.equal(factor(600, 448), 1);
  assert.equal(factor(1024, 768), 2);
  assert.equal(factor(1600, 1200), 4);
  assert.equal(factor(1800, 1799), 4);
  assert.equal(factor(4032, 3024), 8);
});

test("JPEGs sharp rotates or colour-manages go to sharp", { skip }, async () => {
  const base = await photo(800, 600, 12);
  const cases: [string, Buffer][] = [
    ["EXIF orientation 6", await base.clone().withMetadata({ orientation: 6 }).jpeg().toBuffer()],
    ["ICC profile (P3)", await base.clone().withIccProfile("p3").jpeg().toBuffer()],
    ["CMYK", await base.clone().toColourspace("cmyk").jpeg().toBuffer()],
  ];
  for (const [name, bytes] of cases) {
    for (const options of MODES) {
      const label = `${name}, ${options.mode}`;
      const reference = await decodeForModel(bytes, { ...options, nativeJpeg: "off" });
      const { image, native, declined } = await decodeNative(bytes, options);
      assert.equal(native + declined, 0, `${label}: offered to the native decoder`);
      assert.ok(Buffer.from(image.data).equals(Buffer.from(reference.data)), label);
    }
  }
});

test("nativeJpeg off leaves every JPEG to sharp", { skip }, async () => {
  const bytes = await (await photo(640, 480, 13)).jpeg().toBuffer();
  const before = nativeJpegCounts();
  await decodeForModel(bytes, { ...CLIP_224, nativeJpeg: "off" });
  assert.deepEqual(nativeJpegCounts(), before);
});

async function errorOf(promise: Promise<unknown>): Promise<AppError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof AppError, String(error));
    return error;
  }
  assert.fail("no error");
}

test("truncated JPEGs fail as with sharp alone: image_corrupt", { skip }, async () => {
  const bytes = await (await photo(1600, 1200, 14)).jpeg({ quality: 90 }).toBuffer();
  const truncated = bytes.subarray(0, Math.floor(bytes.length * 0.6));
  for (const options of MODES) {
    const expected = await errorOf(decodeForModel(truncated, { ...options, nativeJpeg: "off" }));
    const before = nativeJpegCounts();
    const error = await errorOf(decodeForModel(truncated, { ...options, nativeJpeg: "on" }));
    assert.equal(
      nativeJpegCounts().declined - before.declined,
      1,
      `${options.mode}: decoded natively`,
    );
    assert.equal(error.code, "image_corrupt", options.mode);
    assert.deepEqual(
      [error.code, error.message, error.status],
      [expected.code, expected.message, expected.status],
      options.mode,
    );
  }
});

test("corrupt scan data: sharp's pixels, as without the native decoder", { skip }, async () => {
  // sharp's failOn "error" accepts data libjpeg only warns about (it fills in the rest); the
  // native decoder declines on any warning and sharp decodes the image as it would alone.
  // Zeroed bytes are valid entropy codes: both decoders make the same garbage of them.
  const bytes = await (await photo(800, 600, 17)).jpeg({ quality: 90 }).toBuffer();
  const middle = Math.floor(bytes.length / 2);
  const endMarker = Buffer.from(bytes);
  endMarker[middle] = 0xff;
  endMarker[middle + 1] = 0xd9;
  for (const [name, bad, declines] of [
    ["end-of-image marker mid-scan", endMarker, 1],
    ["zeroed scan data", Buffer.from(bytes).fill(0, middle, middle + 64), 0],
  ] as const) {
    for (const options of MODES) {
      const label = `${name}, ${options.mode}`;
      const reference = await decodeForModel(bad, { ...options, nativeJpeg: "off" });
      const { image, native, declined } = await decodeNative(bad, options);
      assert.deepEqual([native, declined], [1 - declines, declines], label);
      assert.ok(Buffer.from(image.data).equals(Buffer.from(reference.data)), label);
    }
  }
});

/** What preprocessing gives: the pixels, or the error's code and message. */
async function outcome(bytes: Buffer, options: PreprocessOptions): Promise<string | Buffer> {
  try {
    return Buffer.from((await decodeForModel(bytes, options)).data);
  } catch (error) {
    assert.ok(error instanceof AppError, String(error));
    return `${error.code}: ${error.message}`;
  }
}

test("mutated JPEGs: the same pixels or the same error as sharp alone", { skip }, async () => {
  const sources = [
    await (await photo(480, 320, 18)).jpeg({ quality: 85 }).toBuffer(),
    await (await photo(480, 320, 19)).jpeg({ progressive: true }).toBuffer(),
    await (await photo(480, 320, 20)).toColourspace("b-w").jpeg().toBuffer(),
  ];
  let state = 12345;
  const random = (n: number) => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return state % n;
  };
  let failures = 0;
  for (let round = 0; round < 60; round++) {
    const source = sources[round % sources.length] as Buffer;
    const bytes = Buffer.from(source);
    // One random byte anywhere (header or scan: most make libjpeg lose its way and fail), or
    // a run of zeros in the scan (valid codes: decodes to wrong pixels), or a cut.
    const kind = random(3);
    if (kind === 0) bytes[random(bytes.length)] = random(256);
    const middle = Math.floor(bytes.length / 2);
    if (kind === 1) bytes.fill(0, middle + random(1000), middle + 1000);
    const mutated = kind === 2 ? bytes.subarray(0, random(bytes.length)) : bytes;
    const options = { ...(MODES[round % 2] as PreprocessOptions) };
    const expected = await outcome(mutated, { ...options, nativeJpeg: "off" });
    const actual = await outcome(mutated, { ...options, nativeJpeg: "on" });
    if (typeof expected === "string") failures++;
    assert.deepEqual(actual, expected, `round ${round}`);
  }
  console.log(`${failures} of 60 mutated JPEGs fail to decode, identically with and without`);
  assert.ok(failures > 0 && failures < 60, "both outcomes are covered");
});

test("the load-time check refuses a decoder whose bytes differ from sharp's", {
  skip,
}, async () => {
  const native = decoder;
  assert.ok(native !== undefined);
  assert.equal(await sameAsSharp(native), true);
  // One value off, at full size or only when scaled: what another libjpeg would give.
  for (const scale of [1, 4]) {
    const skewed: NativeJpegDecoder = {
      resize: native.resize,
      decode: async (bytes: Buffer, denom: 1 | 2 | 4 | 8, maxPixels: number) => {
        const image = await native.decode(bytes, denom, maxPixels);
        if (denom === scale) {
          const middle = image.data.length >> 1;
          image.data[middle] = (image.data[middle] as number) ^ 16;
        }
        return image;
      },
    };
    assert.equal(await sameAsSharp(skewed), false, `one value off at scale 1/${scale}`);
  }
});

test("the addon rejects bad input with a code and checks its arguments", { skip }, async () => {
  const native = decoder;
  assert.ok(native !== undefined);
  const bytes = await (await photo(64, 48, 15)).jpeg().toBuffer();
  const rejection = async (input: Buffer, maxPixels = 1e9) => {
    try {
      await native.decode(input, 1, maxPixels);
    } catch (error) {
      return (error as { code?: string }).code;
    }
    return "decoded";
  };
  assert.equal(await rejection(bytes), "decoded");
  assert.equal(await rejection(bytes.subarray(0, bytes.length - 40)), "corrupt");
  assert.equal(await rejection(Buffer.from("not a jpeg at all")), "corrupt");
  assert.equal(await rejection(Buffer.alloc(0)), "corrupt");
  assert.equal(await rejection(bytes, 64 * 48 - 1), "unsupported");
  const cmyk = await (await photo(64, 48, 16)).toColourspace("cmyk").jpeg().toBuffer();
  assert.equal(await rejection(cmyk), "unsupported");
  // A header claiming 30000×30000 (2.7 GB of RGB): past the largest buffer the addon hands
  // out, so it declines (sharp and the pixel limit decide) without decoding anything.
  const huge = Buffer.from(bytes);
  const frame = huge.indexOf(Buffer.from([0xff, 0xc0]));
  assert.ok(frame > 0, "baseline frame header");
  huge.writeUInt16BE(30000, frame + 5);
  huge.writeUInt16BE(30000, frame + 7);
  assert.equal(await rejection(huge, 1e10), "unsupported");
  assert.throws(() => native.decode(bytes, 3 as 1, 1e9), TypeError);
  assert.throws(
    () => (native.decode as (...args: unknown[]) => unknown)("bytes", 1, 1e9),
    TypeError,
  );
  const scaled = await native.decode(bytes, 8, 1e9);
  assert.deepEqual([scaled.width, scaled.height, scaled.data.length], [8, 6, 8 * 6 * 3]);
});

/** Seeded noise (any rounding difference shows) or a smooth pattern (values between). */
function pixels(width: number, height: number, smooth: boolean, seed: number): Buffer {
  const data = Buffer.alloc(width * height * 3);
  let state = seed >>> 0;
  for (let i = 0; i < data.length; i++) {
    if (smooth) {
      const p = Math.trunc(i / 3);
      const [x, y] = [p % width, Math.trunc(p / width)];
      data[i] = 128 + 120 * Math.sin(x * 0.05 + (i % 3)) * Math.cos(y * 0.07);
    } else {
      state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
      data[i] = state >>> 24;
    }
  }
  return data;
}

function sharpResize(data: Buffer, width: number, height: number, w: number, h: number) {
  return sharp(data, { raw: { width, height, channels: 3 } })
    .resize(fastResize(w, h))
    .raw()
    .toBuffer();
}

/**
 * Size changes (width, height → out width, out height) the native resize must match: those of
 * the fast path (shrink-on-load outputs of common photos, both orientations), sides kept,
 * tiny images, factors from just above 1 to just below 4, seeded random sizes, and sizes whose
 * sample positions fall exactly half-way between libvips' 64ths of a pixel with a factor that
 * is not a binary fraction (so floating-point rounding decides, as in libvips' regions).
 */
function resizeMatrix(): [number, number, number, number][] {
  const cases: [number, number, number, number][] = [
    [400, 300, 298, 224],
    [300, 400, 224, 298],
    [504, 378, 298, 224],
    [378, 504, 224, 298],
    [1008, 756, 298, 224],
    [500, 375, 298, 224],
    [225, 230, 224, 229],
    [250, 1000, 224, 896],
    [299, 224, 298, 224],
    [400, 300, 400, 299],
    [1, 1, 1, 1],
    [2, 2, 1, 1],
    [3, 2, 1, 1],
    [5, 7, 3, 4],
    [5, 5, 4, 4],
    [7, 7, 4, 4],
    [895, 671, 224, 168],
    [251, 37, 192, 30],
    [41, 251, 33, 192],
  ];
  let state = 7;
  const random = (n: number) => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    return state % n;
  };
  const side = (out: number) =>
    Math.min(4 * out - 1, Math.max(out, Math.round(out * (1 + random(3000) / 1000))));
  for (let i = 0; i < 40; i++) {
    const [w, h] = [1 + random(200), 1 + random(200)];
    cases.push([side(w), side(h), w, h]);
  }
  const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));
  const halfway: [number, number][] = [];
  for (let out = 20; out <= 300; out++) {
    for (let size = out + 1; size < 4 * out; size++) {
      const q = out / gcd(size, out);
      if (q % 64 === 0 && q % 128 !== 0 && q !== 64) halfway.push([size, out]);
    }
  }
  for (let i = 0; i < 16; i++) {
    const [a, b] = halfway[random(halfway.length)] ?? [1, 1];
    const [c, d] = halfway[random(halfway.length)] ?? [1, 1];
    cases.push([a, c, b, d]);
  }
  return cases;
}

test("the native resize gives sharp's bytes on raw pixels", { skip }, async () => {
  const native = decoder;
  assert.ok(native !== undefined);
  let compared = 0;
  for (const [width, height, w, h] of resizeMatrix()) {
    for (const smooth of [false, true]) {
      const label = `${width}×${height} → ${w}×${h}${smooth ? " smooth" : ""}`;
      const data = pixels(width, height, smooth, width * 31 + height);
      const expected = await sharpResize(data, width, height, w, h);
      const actual = native.resize(data, width, height, w, h, REGION_ROWS.raw);
      assert.ok(actual.equals(expected), `${label}: bytes differ`);
      compared++;
    }
  }
  console.log(`${compared} resizes byte-identical to sharp's`);
});

test("the native resize declines what it does not reproduce", { skip }, async () => {
  const native = decoder;
  assert.ok(native !== undefined);
  const data = pixels(64, 48, false, 1);
  // Reductions by 4 or more (libvips box-shrinks first) and enlargements.
  for (const [w, h] of [
    [16, 24],
    [32, 12],
    [65, 48],
  ] as const) {
    assert.throws(() => native.resize(data, 64, 48, w, h, REGION_ROWS.raw), RangeError);
  }
  assert.throws(() => native.resize(data, 64, 47, 32, 32, REGION_ROWS.raw), RangeError);
  assert.throws(() => native.resize(data, 64, 48, 0, 32, REGION_ROWS.raw), TypeError);
  // decode then returns the image unresized, for sharp to resize.
  const jpeg = await sharp(data, { raw: { width: 64, height: 48, channels: 3 } })
    .jpeg()
    .toBuffer();
  const unresized = await native.decode(jpeg, 1, 1e9, 16, 12);
  assert.deepEqual([unresized.width, unresized.height], [64, 48]);
  const resized = await native.decode(jpeg, 1, 1e9, 17, 13);
  assert.deepEqual([resized.width, resized.height], [17, 13]);
  assert.throws(
    () => (native.decode as (...args: unknown[]) => unknown)(jpeg, 1, 1e9, 17),
    TypeError,
  );
});

test("nativeResizeApplies agrees with the addon around its 4× limit", { skip }, () => {
  const native = decoder;
  assert.ok(native !== undefined);
  // A mismatch would not change bytes (the fast path falls back to sharp) but would waste a
  // decode or skip the native path: the TypeScript rule must be the C one.
  for (let out = 1; out <= 40; out++) {
    for (const size of [out - 1, out, out + 1, 4 * out - 1, 4 * out, 4 * out + 1]) {
      if (size < 1) continue;
      const data = pixels(size, 2, false, out);
      let resized: boolean;
      try {
        native.resize(data, size, 2, out, 2, REGION_ROWS.raw);
        resized = true;
      } catch {
        resized = false;
      }
      assert.equal(resized, nativeResizeApplies(size, 2, out, 2), `${size} → ${out}`);
    }
  }
});

test("decode-and-resize gives the bytes of sharp's resize of the JPEG", { skip }, async () => {
  const native = decoder;
  assert.ok(native !== undefined);
  // Sharp resizes a JPEG's rows in blocks of 10 (its line cache), raw pixels in blocks of 16:
  // 164×590 and 598×1180 round differently between the two, whatever the kind of JPEG.
  for (const [width, height, w, h, kind] of [
    [164, 590, 33, 192, "baseline"],
    [164, 590, 33, 192, "progressive"],
    [164, 590, 33, 192, "greyscale"],
    [598, 1180, 192, 384, "baseline"],
    [590, 164, 192, 33, "baseline"],
    [1600, 1200, 298, 224, "baseline"],
    [1200, 1600, 224, 298, "progressive"],
    [700, 500, 300, 200, "baseline"],
    [333, 250, 224, 168, "greyscale"],
  ] as const) {
    const image = sharp(pixels(width, height, false, width), {
      raw: { width, height, channels: 3 },
    });
    if (kind === "greyscale") image.toColourspace("b-w");
    const jpeg = await image.jpeg({ quality: 90, progressive: kind === "progressive" }).toBuffer();
    const scale = jpegShrinkOnLoad(width / w, height / h);
    const actual = await native.decode(jpeg, scale, 1e9, w, h);
    const expected = await sharp(jpeg)
      .resize(fastResize(w, h))
      .toColourspace("srgb")
      .raw({ depth: "uchar" })
      .toBuffer();
    const label = `${kind} ${width}×${height} → ${w}×${h}`;
    assert.deepEqual([actual.width, actual.height], [w, h], label);
    assert.ok(actual.data.equals(expected), `${label}: bytes differ`);
  }
});

test("fast mode: portrait JPEGs whose resize rounds on sharp's JPEG regions", {
  skip,
}, async () => {
  // 723×1446 decodes at 1/2 to 361×723; 723 → 448 rows puts sample positions half-way
  // between libvips' 64ths. Resizing the decoded pixels with sharp (as raw pixels) gives
  // other bytes than sharp resizing the JPEG; the native resize gives sharp's.
  for (const [width, height] of [
    [723, 1446],
    [725, 1450],
  ] as const) {
    const bytes = await sharp(pixels(width, height, false, 5), {
      raw: { width, height, channels: 3 },
    })
      .jpeg({ quality: 90 })
      .toBuffer();
    const options: PreprocessOptions = { ...CLIP_224, mode: "fast" };
    const reference = await decodeForModel(bytes, { ...options, nativeJpeg: "off" });
    const { image, resized } = await decodeNative(bytes, options);
    assert.equal(resized, 1, "the addon resized it");
    assert.deepEqual([image.width, image.height], [224, 448]);
    assert.ok(
      Buffer.from(image.data).equals(Buffer.from(reference.data)),
      `${width}×${height}: pixels differ`,
    );
  }
});

test("the load-time check refuses a resize whose bytes differ from sharp's", {
  skip,
}, async () => {
  const native = decoder;
  assert.ok(native !== undefined);
  assert.equal(await resizesAsSharp(native), true);
  const flip = (data: Buffer) => {
    const middle = data.length >> 1;
    data[middle] = (data[middle] as number) ^ 1;
    return data;
  };
  const decodeSkewed = {
    resize: native.resize,
    decode: async (...args: Parameters<typeof native.decode>) => {
      const image = await native.decode(...args);
      if (args[3] !== undefined) flip(image.data);
      return image;
    },
  };
  assert.equal(await resizesAsSharp(decodeSkewed), false, "decode-and-resize one off");
  const resizeSkewed = {
    decode: native.decode,
    resize: (...args: Parameters<typeof native.resize>) => flip(native.resize(...args)),
  };
  assert.equal(await resizesAsSharp(resizeSkewed), false, "resize one off");
});

test("fast mode: a reduction the native resize does not reproduce goes to sharp whole", {
  skip,
}, async () => {
  // At a 16-pixel input, 600×520 shrinks on load by 8 to 75×65, which leaves a reduction by
  // 65 / 16 > 4: libvips box-shrinks first there, which the addon does not reproduce. Sharp
  // then decodes and resizes the JPEG itself; decoding here and resizing the pixels in sharp
  // could round sample positions differently (REGION_ROWS).
  const [width, height] = [600, 520];
  const bytes = await sharp(pixels(width, height, false, 9), {
    raw: { width, height, channels: 3 },
  })
    .jpeg({ quality: 90 })
    .toBuffer();
  const options: PreprocessOptions = { ...CLIP_224, resolution: 16, mode: "fast" };
  const reference = await decodeForModel(bytes, { ...options, nativeJpeg: "off" });
  const { image, native, declined } = await decodeNative(bytes, options);
  assert.deepEqual([native, declined], [0, 0], "not offered to the native decoder");
  assert.deepEqual([image.width, image.height], [reference.width, reference.height]);
  assert.ok(Buffer.from(image.data).equals(Buffer.from(reference.data)), "pixels differ");
});
