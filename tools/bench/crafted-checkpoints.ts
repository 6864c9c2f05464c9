/**
 * Crafted checkpoints whose sizes lie (issue 24, finding 5), written in a few seconds and a few
 * MB of disk each: zip bombs (a deflated entry that inflates to a gigabyte), state dicts of
 * stride-0 views, storages far larger than their tensors, absurd architectures in a Hugging
 * Face config.json, a gzip-bombed merges file, a pickle of millions of objects. The converter
 * must refuse each before it allocates what the file claims; `npm run bench:costs -- --sections
 * weights` measures the peak memory of `longclip export` on each, test/convert-sizes.test.ts
 * checks the refusals.
 */

import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { crc32, deflateRawSync, constants as zlib } from "node:zlib";
import { type ClipSpec, canonicalShapes } from "../../src/convert/clip-spec.ts";
import { PROJECT_ROOT } from "../../src/core/settings.ts";

// ---------------------------------------------------------------- zip

/** A zip entry: stored bytes, or a deflated run of `inflatedBytes` zero bytes. */
export type ZipEntry = { name: string; data: Buffer } | { name: string; zeros: number };

/** Raw deflate of 1 MiB of zeros, ending in a full flush so that copies can follow each other. */
let zeroSegment: Buffer | undefined;
const MIB = 1024 * 1024;

function deflatedZeros(bytes: number): { data: Buffer; crc: number } {
  zeroSegment ??= deflateRawSync(Buffer.alloc(MIB), { finishFlush: zlib.Z_FULL_FLUSH });
  if (bytes % MIB !== 0) throw new Error("zero runs are whole MiB");
  const parts: Buffer[] = [];
  let crc = 0;
  const zeros = Buffer.alloc(MIB);
  for (let i = 0; i < bytes / MIB; i++) {
    parts.push(zeroSegment);
    crc = crc32(zeros, crc);
  }
  parts.push(Buffer.from([0x03, 0x00])); // a final, empty fixed-Huffman block
  return { data: Buffer.concat(parts), crc };
}

/** A zip file (no zip64): local headers and data, then the central directory. */
export function writeZip(file: string, entries: readonly ZipEntry[]): void {
  const locals: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const entry of entries) {
    const name = Buffer.from(entry.name, "utf8");
    const stored = "data" in entry;
    const { data, crc } = stored
      ? { data: entry.data, crc: crc32(entry.data) }
      : deflatedZeros(entry.zeros);
    const size = stored ? entry.data.length : entry.zeros;
    const method = stored ? 0 : 8;
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(0x0800, 6); // UTF-8 names
    local.writeUInt16LE(method, 8);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(data.length, 18);
    local.writeUInt32LE(size, 22);
    local.writeUInt16LE(name.length, 26);
    const header = Buffer.alloc(46);
    header.writeUInt32LE(0x02014b50, 0);
    header.writeUInt16LE(20, 4);
    header.writeUInt16LE(20, 6);
    header.writeUInt16LE(0x0800, 8);
    header.writeUInt16LE(method, 10);
    header.writeUInt32LE(crc, 16);
    header.writeUInt32LE(data.length, 20);
    header.writeUInt32LE(size, 24);
    header.writeUInt16LE(name.length, 28);
    header.writeUInt32LE(offset, 42);
    locals.push(local, name, data);
    central.push(header, name);
    offset += 30 + name.length + data.length;
  }
  const directory = Buffer.concat(central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(directory.length, 12);
  end.writeUInt32LE(offset, 16);
  writeFileSync(file, Buffer.concat([...locals, directory, end]));
}

// ---------------------------------------------------------------- pickle

/** Opcodes of pickle protocol 2 that a torch.save state dict uses. */
const OP = {
  PROTO: 0x80,
  GLOBAL: 0x63,
  MARK: 0x28,
  TUPLE: 0x74,
  EMPTY_TUPLE: 0x29,
  REDUCE: 0x52,
  BINUNICODE: 0x58,
  BININT: 0x4a,
  LONG1: 0x8a,
  NEWFALSE: 0x89,
  BINPERSID: 0x51,
  SETITEMS: 0x75,
  EMPTY_LIST: 0x5d,
  APPEND: 0x61,
  STOP: 0x2e,
};

class PickleWriter {
  private readonly parts: Buffer[] = [Buffer.from([OP.PROTO, 2])];
  op(...codes: number[]) {
    this.parts.push(Buffer.from(codes));
  }
  global(module: string, name: string) {
    this.parts.push(Buffer.from([OP.GLOBAL]), Buffer.from(`${module}\n${name}\n`, "latin1"));
  }
  text(value: string) {
    const bytes = Buffer.from(value, "utf8");
    const length = Buffer.alloc(4);
    length.writeUInt32LE(bytes.length);
    this.parts.push(Buffer.from([OP.BINUNICODE]), length, bytes);
  }
  int(value: number) {
    if (value >= -(2 ** 31) && value < 2 ** 31) {
      const bytes = Buffer.alloc(5);
      bytes[0] = OP.BININT;
      bytes.writeInt32LE(value, 1);
      this.parts.push(bytes);
      return;
    }
    // Wider integers as Python writes them: LONG1, 8 bytes of two's complement.
    const bytes = Buffer.alloc(10);
    bytes[0] = OP.LONG1;
    bytes[1] = 8;
    bytes.writeBigInt64LE(BigInt(value), 2);
    this.parts.push(bytes);
  }
  tuple(values: readonly number[]) {
    this.op(OP.MARK);
    for (const value of values) this.int(value);
    this.op(OP.TUPLE);
  }
  orderedDict() {
    this.global("collections", "OrderedDict");
    this.op(OP.EMPTY_TUPLE, OP.REDUCE);
  }
  done(): Buffer {
    this.op(OP.STOP);
    return Buffer.concat(this.parts);
  }
}

/** A tensor of a state dict: a view of storage `key` (float32, `numel` elements). */
export interface PickledView {
  key: string;
  numel: number;
  offset?: number;
  shape: readonly number[];
  strides: readonly number[];
}

/** The data.pkl of a state dict of float32 tensor views, as torch.save writes it. */
export function stateDictPickle(tensors: ReadonlyMap<string, PickledView>): Buffer {
  const p = new PickleWriter();
  p.orderedDict();
  p.op(OP.MARK);
  for (const [name, view] of tensors) {
    p.text(name);
    p.global("torch._utils", "_rebuild_tensor_v2");
    p.op(OP.MARK);
    p.op(OP.MARK);
    p.text("storage");
    p.global("torch", "FloatStorage");
    p.text(view.key);
    p.text("cpu");
    p.int(view.numel);
    p.op(OP.TUPLE, OP.BINPERSID);
    p.int(view.offset ?? 0);
    p.tuple(view.shape);
    p.tuple(view.strides);
    p.op(OP.NEWFALSE);
    p.orderedDict();
    p.op(OP.TUPLE, OP.REDUCE);
  }
  p.op(OP.SETITEMS);
  return p.done();
}

/** A pickle of one list holding `count` empty lists: millions of objects from a few MB. */
export function manyObjectsPickle(count: number): Buffer {
  const p = new PickleWriter();
  p.op(OP.EMPTY_LIST);
  for (let i = 0; i < count; i++) p.op(OP.EMPTY_LIST, OP.APPEND);
  return p.done();
}

// ---------------------------------------------------------------- the crafted set

/** A ViT-B/16 Long-CLIP's sizes: what the stride-0 state dict pretends to be. */
export const LONGCLIP_B: ClipSpec = {
  modelType: "longclip",
  embedDim: 512,
  imageResolution: 224,
  patchSize: 16,
  visionWidth: 768,
  visionLayers: 12,
  visionHeads: 12,
  textWidth: 512,
  textLayers: 12,
  textHeads: 8,
  contextLength: 248,
  vocabSize: 49408,
  activation: "quick_gelu",
  visionLayerNormEps: 1e-5,
  textLayerNormEps: 1e-5,
};

/** Every parameter of an official Long-CLIP state dict, as a stride-0 view of one element. */
export function strideZeroStateDict(spec: ClipSpec = LONGCLIP_B): Map<string, PickledView> {
  const tensors = new Map<string, PickledView>();
  const view = (shape: readonly number[]) => ({
    key: "0",
    numel: 1,
    shape,
    strides: shape.map(() => 0),
  });
  for (const [name, shape] of canonicalShapes(spec)) {
    if (name === "text_positions") continue;
    tensors.set(name, view(shape));
  }
  tensors.set("positional_embedding", view([spec.contextLength, spec.textWidth]));
  tensors.set("positional_embedding_res", view([spec.contextLength, spec.textWidth]));
  tensors.set("logit_scale", view([]));
  return tensors;
}

/** A small Long-CLIP (width 64, one layer per tower) with CLIP's vocabulary, all weights 0. */
export const TINY_ZEROS: ClipSpec = {
  ...LONGCLIP_B,
  embedDim: 64,
  imageResolution: 32,
  visionWidth: 64,
  visionLayers: 1,
  visionHeads: 1,
  textWidth: 64,
  textLayers: 1,
  textHeads: 1,
};

/** The tensor views of a well-formed state dict of `spec`: each tensor its own storage. */
export function stateDictViews(spec: ClipSpec): Map<string, PickledView> {
  const shapes = new Map(canonicalShapes(spec));
  shapes.delete("text_positions");
  shapes.set("positional_embedding", [spec.contextLength, spec.textWidth]);
  shapes.set("positional_embedding_res", [spec.contextLength, spec.textWidth]);
  const views = new Map<string, PickledView>();
  for (const [name, shape] of shapes) {
    const numel = shape.reduce((a, b) => a * b, 1);
    const strides = shape.map((_, axis) => shape.slice(axis + 1).reduce((a, b) => a * b, 1));
    views.set(name, { key: String(views.size), numel, shape, strides });
  }
  return views;
}

/** The zip entries of a state dict of `views`, each storage filled with `value`. */
export function stateDictEntries(views: ReadonlyMap<string, PickledView>, value = 0): ZipEntry[] {
  const storages = new Map<string, number>();
  for (const view of views.values()) {
    storages.set(view.key, Math.max(storages.get(view.key) ?? 0, view.numel));
  }
  const data = [...storages].map(([key, numel]) => ({
    name: `archive/data/${key}`,
    data: Buffer.from(new Float32Array(numel).fill(value).buffer),
  }));
  return [{ name: "archive/data.pkl", data: stateDictPickle(views) }, ...data];
}

/** A well-formed state dict of `spec`, each tensor its own storage filled with `value`. */
export function filledStateDict(spec: ClipSpec, value = 0): ZipEntry[] {
  return stateDictEntries(stateDictViews(spec), value);
}

/** A CLIP merges file of the right length (the converter counts its lines only for a .pt). */
export function mergesFile(file: string, merges = 48894): string {
  const lines = ["#version: 0.2"];
  for (let i = 0; i < merges; i++) lines.push(`m${i} x`);
  writeFileSync(file, `${lines.join("\n")}\n`);
  return file;
}

export interface CraftedCheckpoint {
  name: string;
  /** What `longclip export --checkpoint` gets. */
  checkpoint: string;
  vocab: string;
  /** The refusal the converter must answer with. */
  code: string;
}

/** Writes the crafted set into `dir`. */
export function writeCraftedCheckpoints(dir: string): CraftedCheckpoint[] {
  mkdirSync(dir, { recursive: true });
  const vocab = mergesFile(path.join(dir, "merges.txt"));
  const out: CraftedCheckpoint[] = [];
  const add = (name: string, checkpoint: string, code: string, merges = vocab) =>
    out.push({ name, checkpoint, vocab: merges, code });

  // 1. data.pkl: 1 GiB of zeros deflated to about 1 MB.
  const pickleBomb = path.join(dir, "pickle-bomb.pt");
  writeZip(pickleBomb, [{ name: "archive/data.pkl", zeros: 1024 * MIB }]);
  add("zip bomb: data.pkl inflates 1 MB to 1 GiB", pickleBomb, "checkpoint_too_large");

  // 2. Storages: 64 entries of 16 MiB zeros, 1 GiB in all from about 1 MB.
  const storages = new Map<string, PickledView>();
  const entries: ZipEntry[] = [];
  for (let i = 0; i < 64; i++) {
    const numel = (16 * MIB) / 4;
    storages.set(`w${i}`, { key: `${i}`, numel, shape: [numel], strides: [1] });
    entries.push({ name: `archive/data/${i}`, zeros: 16 * MIB });
  }
  const storageBomb = path.join(dir, "storage-bomb.pt");
  writeZip(storageBomb, [
    { name: "archive/data.pkl", data: stateDictPickle(storages) },
    ...entries,
  ]);
  add("zip bomb: 64 storages inflate 1 MB to 1 GiB", storageBomb, "checkpoint_too_large");

  // 3. The stride-0 state dict: a ViT-B/16 Long-CLIP from one stored float.
  const strideZero = path.join(dir, "stride-zero.pt");
  writeZip(strideZero, [
    { name: "archive/data.pkl", data: stateDictPickle(strideZeroStateDict()) },
    { name: "archive/data/0", data: Buffer.alloc(4) },
  ]);
  add("stride-0 views: a ViT-B/16 from one stored float", strideZero, "checkpoint_unsupported");

  // 4. One 4-element tensor on a 64 MiB storage.
  const slack = path.join(dir, "storage-slack.pt");
  writeZip(slack, [
    {
      name: "archive/data.pkl",
      data: stateDictPickle(
        new Map([["visual.proj", { key: "0", numel: (64 * MIB) / 4, shape: [4], strides: [1] }]]),
      ),
    },
    { name: "archive/data/0", data: Buffer.alloc(64 * MIB) },
  ]);
  add("a 4-element tensor on a 64 MiB storage", slack, "checkpoint_too_large");

  // 5. A pickle of 2 million objects within the pickle size limit.
  const objects = path.join(dir, "many-objects.pt");
  writeZip(objects, [{ name: "archive/data.pkl", data: manyObjectsPickle(2_000_000) }]);
  add("data.pkl of 2 million objects (4 MB)", objects, "checkpoint_unsupported");

  // 6. A Hugging Face config.json with a billion layers (and a tiny safetensors file).
  const hf = path.join(dir, "hf-layers");
  mkdirSync(hf, { recursive: true });
  writeFileSync(
    path.join(hf, "config.json"),
    JSON.stringify({
      projection_dim: 512,
      text_config: { num_hidden_layers: 1e9 },
      vision_config: { num_hidden_layers: 1e9 },
    }),
  );
  const header = Buffer.from("{}");
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(header.length));
  writeFileSync(path.join(hf, "model.safetensors"), Buffer.concat([length, header]));
  add("HF config.json: num_hidden_layers 1e9", hf, "checkpoint_too_large");

  // 7. A merges file that gunzips from about 1 MB to 1 GiB.
  const gzipBomb = path.join(dir, "merges-bomb.txt.gz");
  const { data, crc } = deflatedZeros(1024 * MIB);
  const gzipHeader = Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]);
  const trailer = Buffer.alloc(8);
  trailer.writeUInt32LE(crc, 0);
  trailer.writeUInt32LE((1024 * MIB) % 2 ** 32, 4);
  writeFileSync(gzipBomb, Buffer.concat([gzipHeader, data, trailer]));
  const tiny = path.join(dir, "tiny-zeros.pt");
  writeZip(tiny, filledStateDict(TINY_ZEROS));
  add("--vocab: a merges file that gunzips to 1 GiB", tiny, "checkpoint_too_large", gzipBomb);

  // 8. Well-formed, but NaN everywhere: the towers are written, then the self-check fails.
  const nan = path.join(dir, "tiny-nan.pt");
  writeZip(nan, filledStateDict(TINY_ZEROS, Number.NaN));
  add("NaN weights: towers written, then the check fails", nan, "export_check_failed");
  return out;
}

// ---------------------------------------------------------------- running the converter

export interface ExportRun {
  /** The error code `longclip export` printed (`error [code]`), if any. */
  code: string | undefined;
  exit: number | string | null;
  /** Peak resident memory of the export process; undefined when it died without saying. */
  peakRssMb: number | undefined;
  seconds: number;
  /** Bytes left under the output directory afterwards. */
  leftBytes: number;
  stderr: string;
}

/** The bytes of every file under `dir` (0 when it does not exist). */
export function treeBytes(dir: string): number {
  if (!existsSync(dir)) return 0;
  let sum = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    sum += entry.isDirectory() ? treeBytes(full) : statSync(full).size;
  }
  return sum;
}

/**
 * `longclip export` (without Python) on a crafted checkpoint into `out`, killed after
 * `timeoutMs`; its peak RSS as the process itself reports it when it exits.
 */
export async function runExport(
  crafted: CraftedCheckpoint,
  out: string,
  timeoutMs: number,
): Promise<ExportRun> {
  // Printed by the export process itself as it exits (a crash prints nothing).
  const report =
    "process.on('exit',()=>process.stderr.write('\\npeak-rss-kb '+process.resourceUsage().maxRSS+'\\n'));";
  const args = [
    path.join(PROJECT_ROOT, "bin", "longclip.js"),
    "export",
    "--checkpoint",
    crafted.checkpoint,
    "--vocab",
    crafted.vocab,
    "--out",
    out,
  ];
  const started = performance.now();
  const child = spawn(
    process.execPath,
    ["--import", `data:text/javascript,${encodeURIComponent(report)}`, ...args],
    {
      cwd: PROJECT_ROOT,
      env: { ...process.env, LONGCLIP_PYTHON: "/nonexistent/python3" },
      stdio: ["ignore", "ignore", "pipe"],
    },
  );
  let stderr = "";
  child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk;
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  const exit = await new Promise<number | string | null>((resolve) =>
    child.on("close", (code, signal) => resolve(signal ?? code)),
  );
  clearTimeout(timer);
  const rss = /peak-rss-kb (\d+)/.exec(stderr)?.[1];
  return {
    code: /error \[([a-z_]+)\]/.exec(stderr)?.[1],
    exit,
    peakRssMb: rss === undefined ? undefined : Number(rss) / 1024,
    seconds: (performance.now() - started) / 1000,
    leftBytes: treeBytes(out),
    stderr,
  };
}
