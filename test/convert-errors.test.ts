/**
 * What the converter refuses, and how: every case is an error with a code and a message that
 * says what to do. The pickle naming os.system must be refused before anything runs.
 */
import assert from "node:assert/strict";
import {
  createWriteStream,
  existsSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { finished } from "node:stream/promises";
import { after, before, describe, test } from "node:test";
import yazl from "yazl";
import { convertCheckpoint } from "../src/convert/export.ts";
import { openOfficialCheckpoint } from "../src/convert/official.ts";
import { checkTowers } from "../src/convert/self-check.ts";
import { runWithoutPython } from "./convert-helpers.ts";
import { runCli } from "./helpers/cli.ts";
import { DEMO_MODEL_DIR } from "./helpers/demo-model.ts";
import { HAVE_PYTHON_TORCH, SKIP_WITHOUT_PYTHON } from "./helpers/python.ts";
import { writeOfficialCheckpoint, writeTinyClipHf } from "./helpers/tiny-clip.ts";

/** A BPE merges file (the demo model's); the refusals below come before it is read. */
const DEMO_VOCAB = path.join(DEMO_MODEL_DIR, "vocab.txt");
let dir: string;
before(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), "convert-errors-"));
});
after(() => rmSync(dir, { recursive: true, force: true }));

async function writeZip(file: string, entries: Record<string, Buffer>): Promise<string> {
  const zip = new yazl.ZipFile();
  for (const [name, data] of Object.entries(entries))
    zip.addBuffer(data, name, { compress: false });
  zip.end();
  await finished(zip.outputStream.pipe(createWriteStream(file)));
  return file;
}

/** Protocol-0 pickle of `os.system(command)`: GLOBAL, MARK, STRING, TUPLE, REDUCE, STOP. */
function osSystemPickle(command: string): Buffer {
  return Buffer.from(`cos\nsystem\n(S'${command}'\ntR.`, "latin1");
}

async function rejects(promise: Promise<unknown>, code: string, message: RegExp): Promise<void> {
  await assert.rejects(promise, (error: { code?: string; message?: string }) => {
    assert.equal(error.code, code, error.message);
    assert.match(error.message ?? "", message);
    return true;
  });
}

test("a pickle naming os.system is refused and nothing runs", async () => {
  const marker = path.join(dir, "pwned");
  const file = await writeZip(path.join(dir, "evil.pt"), {
    "evil/data.pkl": osSystemPickle(`touch ${marker}`),
    "evil/version": Buffer.from("3\n"),
  });
  await rejects(
    openOfficialCheckpoint(file),
    "checkpoint_unsafe",
    /names the global os\.system, which a state dict never needs/,
  );
  const run = await runWithoutPython(exportArgs(file, "unused.txt", path.join(dir, "evil-out")));
  assert.equal(run.code, 1);
  assert.match(run.stderr, /error \[checkpoint_unsafe\]/);
  assert.equal(existsSync(marker), false, "os.system ran");
  assert.equal(existsSync(path.join(dir, "evil-out", "config.json")), false);
});

test("a TorchScript archive without Python: says how to convert it", async () => {
  const file = await writeZip(path.join(dir, "ViT-B-16.pt"), {
    "ViT-B-16/data.pkl": Buffer.from("}."),
    "ViT-B-16/constants.pkl": Buffer.from(")."),
    "ViT-B-16/code/__torch__/model.py": Buffer.from("# traced\n"),
  });
  const run = await runWithoutPython(exportArgs(file, DEMO_VOCAB, path.join(dir, "ts-out")));
  assert.equal(run.code, 1);
  assert.match(
    run.stderr,
    /error \[checkpoint_torchscript\]: .*TorchScript archive.*longclip export --python/,
  );
});

test("a zip named like TorchScript whose pickle runs code: refused, never handed to Python", async () => {
  // Before, the CLI passed a checkpoint_torchscript file on to the Python exporter by itself,
  // whose torch.load unpickled it in full (this ran `touch` where Python with torch is present).
  const marker = path.join(dir, "pwned-by-export");
  const file = await writeZip(path.join(dir, "crafted.pt"), {
    "crafted/data.pkl": osSystemPickle(`touch ${marker}`),
    "crafted/version": Buffer.from("3\n"),
    "crafted/code/__torch__/model.py": Buffer.from("# looks traced\n"),
  });
  const run = await runCli(exportArgs(file, DEMO_VOCAB, path.join(dir, "crafted-out")));
  assert.equal(run.code, 1, run.stderr);
  assert.match(run.stderr, /error \[checkpoint_torchscript\]: .*runs the TorchScript code/);
  assert.doesNotMatch(run.stderr + run.stdout, /trying the Python exporter/);
  assert.equal(existsSync(marker), false);
  // the Python exporter itself, when asked explicitly, reads plain pickles with weights_only
  if (HAVE_PYTHON_TORCH) {
    const python = await runCli(
      exportArgs(file, DEMO_VOCAB, path.join(dir, "crafted-out-python"), "--python"),
    );
    assert.equal(python.code, 1, python.stderr);
    assert.equal(existsSync(marker), false, "the Python exporter ran the pickle");
  }
});

/** `longclip export` of a checkpoint with a vocabulary into `out`, and any further flags. */
function exportArgs(checkpoint: string, vocab: string, out: string, ...flags: string[]): string[] {
  return ["export", ...flags, "--checkpoint", checkpoint, "--vocab", vocab, "--out", out];
}

/** BINUNICODE: 'X', a little-endian uint32 length, UTF-8 bytes. */
function pickleString(text: string): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32LE(Buffer.byteLength(text));
  return Buffer.concat([Buffer.from("X"), length, Buffer.from(text)]);
}

test("a training checkpoint of this project is sent to the Python exporter", async () => {
  // {"format": "longclip-training"}: PROTO 2, EMPTY_DICT, MARK, key, value, SETITEMS, STOP
  const pickle = Buffer.concat([
    Buffer.from([0x80, 0x02, 0x7d, 0x28]),
    pickleString("format"),
    pickleString("longclip-training"),
    Buffer.from("u."),
  ]);
  const file = await writeZip(path.join(dir, "step-1000.pt"), { "step-1000/data.pkl": pickle });
  await rejects(
    openOfficialCheckpoint(file),
    "checkpoint_unsupported",
    /training checkpoint .*longclip export --python/,
  );
});

test("a file that is not a zip is unreadable", async () => {
  const file = path.join(dir, "notes.pt");
  writeFileSync(file, "not a checkpoint");
  await rejects(openOfficialCheckpoint(file), "checkpoint_unreadable", /download it again/);
});

describe("damaged and mismatched copies of a Hugging Face checkpoint", () => {
  /** The tiny CLIP of helpers/tiny-clip.ts, written into the test directory for editing. */
  function hfCopy(name: string): string {
    const copy = path.join(dir, name);
    writeTinyClipHf(copy);
    return copy;
  }

  test("a truncated model.safetensors is unreadable", async () => {
    const copy = hfCopy("hf-truncated");
    const file = path.join(copy, "model.safetensors");
    const bytes = readFileSync(file);
    writeFileSync(file, bytes.subarray(0, bytes.length - 1000));
    await rejects(
      convertCheckpoint({ checkpoint: copy, out: path.join(dir, "o1") }),
      "checkpoint_unreadable",
      /does not fit its shape or the file/,
    );
  });

  test("an unknown tensor is refused and named", async () => {
    const copy = hfCopy("hf-unknown");
    const file = path.join(copy, "model.safetensors");
    const bytes = readFileSync(file);
    const headerLength = Number(bytes.readBigUInt64LE(0));
    const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString("utf8"));
    const data = bytes.subarray(8 + headerLength);
    header["text_model.adapter.weight"] = {
      dtype: "F32",
      shape: [1],
      data_offsets: [data.length, data.length + 4],
    };
    const json = Buffer.from(JSON.stringify(header));
    const length = Buffer.alloc(8);
    length.writeBigUInt64LE(BigInt(json.length));
    writeFileSync(file, Buffer.concat([length, json, data, Buffer.alloc(4)]));
    await rejects(
      convertCheckpoint({ checkpoint: copy, out: path.join(dir, "o2") }),
      "checkpoint_unsupported",
      /entries this converter does not know: text_model\.adapter\.weight/,
    );
  });

  test("a config.json whose sizes disagree with the tensors is refused", async () => {
    const copy = hfCopy("hf-shape");
    const configFile = path.join(copy, "config.json");
    const config = JSON.parse(readFileSync(configFile, "utf8"));
    config.projection_dim = 32;
    writeFileSync(configFile, JSON.stringify(config));
    await rejects(
      convertCheckpoint({ checkpoint: copy, out: path.join(dir, "o3") }),
      "checkpoint_unsupported",
      /_projection\.weight has shape \[64, 128\], but the model.s other sizes imply \[32, 128\]/,
    );
  });
});

describe("damaged and mismatched .pt checkpoints", { skip: SKIP_WITHOUT_PYTHON }, () => {
  /** Official-format checkpoints written by the training package (random tiny weights). */
  const checkpoint = (name: "longclip" | "other") => {
    const file = path.join(dir, `${name}-tiny.pt`);
    if (!existsSync(file)) writeOfficialCheckpoint(file, "longclip", name === "longclip" ? 1 : 2);
    return file;
  };

  test("a truncated .pt is unreadable", async () => {
    const bytes = readFileSync(checkpoint("longclip"));
    const file = path.join(dir, "truncated.pt");
    writeFileSync(file, bytes.subarray(0, Math.floor(bytes.length / 2)));
    await rejects(openOfficialCheckpoint(file), "checkpoint_unreadable", /truncated or corrupted/);
  });

  test("a .pt without --vocab asks for the merges file", async () => {
    const out = path.join(dir, "o4");
    await rejects(
      convertCheckpoint({ checkpoint: checkpoint("longclip"), out }),
      "tokenizer_invalid",
      /pass --vocab bpe_simple_vocab_16e6\.txt\.gz/,
    );
  });

  test("the self-check fails when the towers are not those of the weights", async () => {
    const out = path.join(dir, "o5");
    await convertCheckpoint({
      checkpoint: checkpoint("longclip"),
      vocab: DEMO_VOCAB,
      out,
      verify: false,
    });
    // Weights of the same shapes, drawn from another seed.
    const other = await openOfficialCheckpoint(checkpoint("other"));
    try {
      await rejects(
        checkTowers(other, out),
        "export_check_failed",
        /differ from the TypeScript forward/,
      );
    } finally {
      other.close();
    }
  });
});
