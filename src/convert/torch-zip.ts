/**
 * Reads a `torch.save` zip checkpoint (PyTorch ≥ 1.6: `<root>/data.pkl` plus one raw
 * little-endian entry `<root>/data/<key>` per storage) into lazily read tensors, with yauzl for
 * the zip and the safe pickle reader for `data.pkl`. TorchScript archives (OpenAI's own
 * `ViT-B-16.pt`) and the legacy pre-zip format are refused with what to do instead.
 */
import { existsSync, statSync } from "node:fs";
import yauzl from "yauzl";
import { convertError } from "./errors.ts";
import {
  INFLATION_ALLOWANCE,
  MAX_INFLATION,
  MAX_PICKLE_BYTES,
  MAX_STORAGE_SLACK,
  tooLarge,
} from "./limits.ts";
import {
  BYTES_PER_ELEMENT,
  elementCount,
  gatherStrided,
  type LazyTensor,
  stridedSpan,
  toFloat32,
} from "./tensor.ts";
import { type PickledTensor, parseStateDictPickle } from "./torch-pickle.ts";

export interface TorchCheckpoint {
  readonly tensors: ReadonlyMap<string, LazyTensor>;
  /** Entries that are not tensors (OpenAI's `input_resolution`, `context_length`, ...). */
  readonly values: ReadonlyMap<string, unknown>;
  close(): void;
}

function unreadable(file: string, problem: string) {
  return convertError(
    "checkpoint_unreadable",
    `cannot read ${file} as a PyTorch checkpoint: ${problem}. If it was downloaded, it may be truncated or corrupted: download it again`,
    { file },
  );
}

/** Refuses a zip whose entries inflate past what its size allows (a zip bomb). */
function checkInflation(entries: ReadonlyMap<string, yauzl.Entry>, file: string): void {
  let inflated = 0;
  for (const entry of entries.values()) inflated += entry.uncompressedSize;
  const limit = MAX_INFLATION * statSync(file).size + INFLATION_ALLOWANCE;
  if (inflated > limit) {
    throw tooLarge("the size its entries inflate to", inflated, limit, file);
  }
}

async function readEntry(zip: yauzl.ZipFile, entry: yauzl.Entry, file: string): Promise<Buffer> {
  const out = Buffer.allocUnsafe(entry.uncompressedSize);
  let filled = 0;
  try {
    const stream = await zip.openReadStreamPromise(entry);
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      if (filled + chunk.length > out.length) throw new Error("entry longer than its header says");
      chunk.copy(out, filled);
      filled += chunk.length;
    }
  } catch (error) {
    throw unreadable(file, `entry ${entry.fileName}: ${(error as Error).message}`);
  }
  if (filled !== out.length) throw unreadable(file, `entry ${entry.fileName} is short`);
  return out;
}

function lazyTensor(
  name: string,
  record: PickledTensor,
  zip: yauzl.ZipFile,
  entries: ReadonlyMap<string, yauzl.Entry>,
  root: string,
  file: string,
): LazyTensor {
  const { storage } = record;
  const entryName = `${root}/data/${storage.key}`;
  const entry = entries.get(entryName);
  const size = BYTES_PER_ELEMENT[storage.dtype];
  if (!entry) throw unreadable(file, `tensor ${name} refers to the missing entry ${entryName}`);
  if (entry.uncompressedSize < storage.numel * size) {
    throw unreadable(file, `entry ${entryName} is smaller than its storage of ${name}`);
  }
  const span = stridedSpan(record.shape, record.strides);
  if (record.offset + span > storage.numel) {
    throw unreadable(file, `tensor ${name} reaches past the end of its storage`);
  }
  // A stride of 0 (or strides that overlap) would make many elements of few stored ones.
  if (elementCount(record.shape) > span) {
    throw convertError(
      "checkpoint_unsupported",
      `${file}: tensor ${name} repeats its stored elements (${elementCount(record.shape)} elements from ${span} stored, by a stride of 0 or overlapping strides); save contiguous tensors (torch.save of tensor.contiguous())`,
      { file, tensor: name },
    );
  }
  return {
    name,
    dtype: storage.dtype,
    shape: record.shape,
    async read() {
      const bytes = await readEntry(zip, entry, file);
      const values = toFloat32(bytes.subarray(record.offset * size), storage.dtype, span);
      const out = gatherStrided(values, record.shape, record.strides);
      if (out.length !== elementCount(record.shape)) throw unreadable(file, `tensor ${name}`);
      return out;
    },
  };
}

async function listEntries(zip: yauzl.ZipFile, file: string): Promise<Map<string, yauzl.Entry>> {
  const entries = new Map<string, yauzl.Entry>();
  try {
    for await (const entry of zip.eachEntry()) entries.set(entry.fileName, entry);
  } catch (error) {
    throw unreadable(file, (error as Error).message);
  }
  return entries;
}

/**
 * Refuses a storage entry larger than MAX_STORAGE_SLACK times what the tensors on it reach:
 * reading a tensor reads its whole storage, so a small view of a huge entry would cost the
 * entry's size in memory for nothing.
 */
function checkStorageSizes(
  dict: ReadonlyMap<unknown, unknown>,
  entries: ReadonlyMap<string, yauzl.Entry>,
  root: string,
  file: string,
): void {
  const reached = new Map<string, number>();
  for (const value of dict.values()) {
    const record = value as PickledTensor | undefined;
    if (record?.kind !== "tensor") continue;
    const bytes =
      (record.offset + stridedSpan(record.shape, record.strides)) *
      BYTES_PER_ELEMENT[record.storage.dtype];
    reached.set(record.storage.key, Math.max(reached.get(record.storage.key) ?? 0, bytes));
  }
  for (const [key, bytes] of reached) {
    const entry = entries.get(`${root}/data/${key}`);
    if (entry !== undefined && entry.uncompressedSize > bytes * MAX_STORAGE_SLACK + 64) {
      throw convertError(
        "checkpoint_too_large",
        `${file}: storage ${key} holds ${entry.uncompressedSize} bytes, but its tensors use only ${bytes}; reading them would read it all. A CLIP checkpoint never needs that: the file is corrupted or crafted (save contiguous tensors: torch.save of tensor.contiguous())`,
        { file, storage: key, bytes: entry.uncompressedSize, used: bytes },
      );
    }
  }
}

/** Opens a `torch.save` zip checkpoint; call `close()` when done reading its tensors. */
export async function openTorchCheckpoint(file: string): Promise<TorchCheckpoint> {
  if (!existsSync(file)) {
    throw convertError("checkpoint_not_found", `checkpoint not found: ${file}`, { file });
  }
  let zip: yauzl.ZipFile;
  try {
    zip = await yauzl.openPromise(file, { lazyEntries: true, autoClose: false });
  } catch (error) {
    throw unreadable(
      file,
      `${(error as Error).message} (a torch.save zip file was expected; checkpoints saved by PyTorch older than 1.6 must be re-saved with a newer PyTorch)`,
    );
  }
  try {
    const entries = await listEntries(zip, file);
    checkInflation(entries, file);
    const names = [...entries.keys()];
    if (names.some((name) => name.endsWith("/constants.pkl") || name.includes("/code/"))) {
      throw convertError(
        "checkpoint_torchscript",
        `${file} is a TorchScript archive (like OpenAI's ViT-B-16.pt), which only PyTorch can read, and reading it runs the TorchScript code inside it; nothing was run. Use a plain state dict (torch.save(model.state_dict(), path)), or, only if you trust where the file comes from, convert it with the Python exporter, which runs that code: longclip export --python --checkpoint ${file} --vocab bpe_simple_vocab_16e6.txt.gz --out DIR (needs torch)`,
        { file },
      );
    }
    const pickleName = names.find((name) => /^[^/]+\/data\.pkl$/.test(name));
    if (!pickleName) throw unreadable(file, "the zip holds no <name>/data.pkl");
    const root = pickleName.slice(0, -"/data.pkl".length);
    const pickleEntry = entries.get(pickleName) as yauzl.Entry;
    if (pickleEntry.uncompressedSize > MAX_PICKLE_BYTES) {
      throw tooLarge(`${pickleName}`, pickleEntry.uncompressedSize, MAX_PICKLE_BYTES, file);
    }
    const dict = parseStateDictPickle(await readEntry(zip, pickleEntry, file));
    checkStorageSizes(dict, entries, root, file);
    const tensors = new Map<string, LazyTensor>();
    const values = new Map<string, unknown>();
    for (const [key, value] of dict) {
      if (typeof key !== "string") throw unreadable(file, "the state dict has a non-text key");
      if ((value as PickledTensor | undefined)?.kind === "tensor") {
        tensors.set(key, lazyTensor(key, value as PickledTensor, zip, entries, root, file));
      } else {
        values.set(key, value);
      }
    }
    return { tensors, values, close: () => zip.close() };
  } catch (error) {
    zip.close();
    throw error;
  }
}
