/**
 * The fast path's decode-and-resize step of a JPEG, two ways, alternating round by round in one
 * process on the same photo-like 1600×1200 JPEGs: the native decode at 1/4 then sharp's cubic
 * resize of the raw pixels (the fast path before the addon resized), and the addon's decode
 * and resize in one job. Beside them, the whole fast preprocess as it is now (decodeForModel +
 * toModelInput). Prints CPU ms per image (all threads, libvips' and libuv's included) per round
 * and their medians, after checking that both ways give the same bytes.
 *
 *   npx tsx tools/bench/bench-native-resize.ts [--rounds 6] [--reps 20]
 */

import { parseArgs } from "node:util";
import sharp from "sharp";
import { DEFAULT_SETTINGS } from "../../src/core/settings.ts";
import { CLIP_IMAGE_MEAN, CLIP_IMAGE_STD } from "../../src/model/format.ts";
import {
  decodeForModel,
  jpegShrinkOnLoad,
  resizedSize,
  toModelInput,
} from "../../src/preprocess/index.ts";
import { fastResize, nativeJpegResizer } from "../../src/preprocess/jpeg-native.ts";
import type { PreprocessOptions } from "../../src/preprocess/types.ts";
import { loadAverage, processCpuMs } from "./context.ts";
import { photoLikePixels } from "./photos.ts";
import { median } from "./stats.ts";

const { values } = parseArgs({
  options: { rounds: { type: "string", default: "6" }, reps: { type: "string", default: "20" } },
});
const rounds = Number(values.rounds);
const reps = Number(values.reps);

const decoder = await nativeJpegResizer("on");
if (decoder === undefined) {
  console.error(
    "the native JPEG decoder is not built, or its resize failed its load-time check: npm run build:native",
  );
  process.exit(1);
}
const [width, height] = [1600, 1200];
const jpegs: Buffer[] = [];
for (let seed = 0; seed < 4; seed++) {
  const raw = await photoLikePixels(width, height, seed);
  jpegs.push(
    await sharp(raw, { raw: { width, height, channels: 3 } })
      .jpeg({ quality: 90 })
      .toBuffer(),
  );
}
const size = resizedSize(width, height, 224);
const scale = jpegShrinkOnLoad(width / size.width, height / size.height);
const maxPixels = DEFAULT_SETTINGS.maxImagePixels;
const options: PreprocessOptions = {
  resolution: 224,
  mean: CLIP_IMAGE_MEAN,
  std: CLIP_IMAGE_STD,
  maxImageBytes: DEFAULT_SETTINGS.maxImageBytes,
  maxImagePixels: maxPixels,
  mode: "fast",
  nativeJpeg: "on",
};

async function sharpResize(bytes: Buffer): Promise<Buffer> {
  const image = await decoder?.decode(bytes, scale, maxPixels);
  if (image === undefined) throw new Error("no decoder");
  return sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } })
    .resize(fastResize(size.width, size.height))
    .toColourspace("srgb")
    .raw({ depth: "uchar" })
    .toBuffer();
}

async function nativeResize(bytes: Buffer): Promise<Buffer> {
  const image = await decoder?.decode(bytes, scale, maxPixels, size.width, size.height);
  if (image?.width !== size.width || image.height !== size.height) {
    throw new Error("the addon did not resize (its load-time check failed?)");
  }
  return image.data;
}

async function wholeFastPath(bytes: Buffer): Promise<void> {
  toModelInput(await decodeForModel(bytes, options), options);
}

const ways: [string, (bytes: Buffer) => Promise<unknown>][] = [
  ["native decode + sharp resize (before)", sharpResize],
  ["native decode + native resize", nativeResize],
  ["whole fast preprocess, now", wholeFastPath],
];
// Both ways against what defines fast mode's bytes: sharp resizing the JPEG itself.
for (const bytes of jpegs) {
  const reference = await sharp(bytes)
    .resize(fastResize(size.width, size.height))
    .toColourspace("srgb")
    .raw({ depth: "uchar" })
    .toBuffer();
  if (
    !(await sharpResize(bytes)).equals(reference) ||
    !(await nativeResize(bytes)).equals(reference)
  ) {
    throw new Error("a way gives other bytes than sharp resizing the JPEG");
  }
}
const perImage = new Map<string, number[]>(ways.map(([name]) => [name, []]));
console.log(`load average ${loadAverage().join(" ")}; ${rounds} rounds of ${reps} × 4 JPEGs`);
for (let round = 0; round < rounds; round++) {
  for (const [name, run] of ways) {
    const start = processCpuMs();
    for (let r = 0; r < reps; r++) for (const bytes of jpegs) await run(bytes);
    perImage.get(name)?.push((processCpuMs() - start) / (reps * jpegs.length));
  }
}
for (const [name, values] of perImage) {
  const rounded = values.map((value) => value.toFixed(2)).join(" ");
  console.log(`${name}: median ${median(values).toFixed(2)} CPU ms/image (rounds: ${rounded})`);
}
console.log(`load average ${loadAverage().join(" ")}`);
