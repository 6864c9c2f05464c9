/**
 * The pickle of a `torch.save`d state dict (`data.pkl` in the zip), read without executing
 * anything: pickleparser walks the opcodes, and every global the pickle names must be one a
 * state dict needs (an OrderedDict, a tensor rebuild, a storage type); any other name, such as
 * `os.system`, is refused before anything is built from it.
 */
import { Parser } from "pickleparser";
import { convertError } from "./errors.ts";
import type { StoredDType } from "./tensor.ts";

/** Where a tensor's elements are: a storage of the archive, and the view into it. */
export interface PickledTensor {
  readonly kind: "tensor";
  readonly storage: PickledStorage;
  /** In elements, from the start of the storage. */
  readonly offset: number;
  readonly shape: readonly number[];
  readonly strides: readonly number[];
}

/** A storage record (persistent id `('storage', type, key, location, numel)`). */
export interface PickledStorage {
  readonly kind: "storage";
  readonly dtype: StoredDType;
  /** The archive entry is `<root>/data/<key>`. */
  readonly key: string;
  readonly numel: number;
}

interface StorageType {
  readonly kind: "storage-type";
  readonly dtype: StoredDType;
}

const STORAGE_TYPES: Readonly<Record<string, StoredDType>> = {
  HalfStorage: "float16",
  BFloat16Storage: "bfloat16",
  FloatStorage: "float32",
  DoubleStorage: "float64",
  LongStorage: "int64",
  IntStorage: "int32",
};

function integer(value: unknown, what: string): number {
  const number = typeof value === "bigint" ? Number(value) : value;
  if (typeof number !== "number" || !Number.isSafeInteger(number) || number < 0) {
    throw convertError(
      "checkpoint_unreadable",
      `the pickle has ${what} ${String(value)}, which is not a size; the checkpoint is corrupted`,
    );
  }
  return number;
}

function integerList(value: unknown, what: string): number[] {
  if (!Array.isArray(value)) {
    throw convertError(
      "checkpoint_unreadable",
      `the pickle's ${what} is not a tuple; the checkpoint is corrupted`,
    );
  }
  return value.map((item) => integer(item, what));
}

/** `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])` */
function rebuildTensor(storage: unknown, offset: unknown, size: unknown, stride: unknown) {
  if ((storage as PickledStorage | undefined)?.kind !== "storage") {
    throw convertError(
      "checkpoint_unreadable",
      "a tensor in the pickle is not backed by a storage of the archive; the checkpoint is corrupted",
    );
  }
  const tensor: PickledTensor = {
    kind: "tensor",
    storage: storage as PickledStorage,
    offset: integer(offset, "a storage offset"),
    shape: integerList(size, "tensor size"),
    strides: integerList(stride, "tensor stride"),
  };
  if (tensor.shape.length !== tensor.strides.length) {
    throw convertError(
      "checkpoint_unreadable",
      "a tensor's size and stride differ in length; the checkpoint is corrupted",
    );
  }
  return tensor;
}

/** The globals a state dict needs, each built without running anything from the file. */
const ALLOWED_GLOBALS: ReadonlyMap<string, (...args: unknown[]) => unknown> = new Map<
  string,
  (...args: unknown[]) => unknown
>([
  ["collections.OrderedDict", () => new Map()],
  ["torch._utils._rebuild_tensor_v2", rebuildTensor],
  ["torch._utils._rebuild_tensor", rebuildTensor],
  // a saved nn.Parameter: (data, requires_grad, backward_hooks)
  ["torch._utils._rebuild_parameter", (data: unknown) => data],
]);

function resolveGlobal(module: string, name: string): (...args: unknown[]) => unknown {
  const qualified = `${module}.${name}`;
  const storageDType = module === "torch" ? STORAGE_TYPES[name] : undefined;
  if (storageDType) {
    // a storage type is named, not called: the persistent id holds the class itself
    const type: StorageType = { kind: "storage-type", dtype: storageDType };
    return Object.assign(() => type, type);
  }
  const allowed = ALLOWED_GLOBALS.get(qualified);
  if (!allowed) {
    throw convertError(
      "checkpoint_unsafe",
      `the checkpoint's pickle names the global ${qualified}, which a state dict never needs (in Python, loading it could run code); refusing it. Use a checkpoint that holds only tensors (torch.save(model.state_dict(), path)), or, for a training checkpoint you wrote yourself with an earlier version of this project, the Python exporter with its full unpickler, which runs code the file names (longclip export --python --trust-pickle ...)`,
      { global: qualified },
    );
  }
  return allowed;
}

function resolvePersistent(pid: unknown): PickledStorage {
  if (!Array.isArray(pid) || pid[0] !== "storage" || pid.length < 5) {
    throw convertError(
      "checkpoint_unreadable",
      `the pickle refers to ${JSON.stringify(pid)}, which is not a storage record; only torch.save zip checkpoints are read`,
    );
  }
  const [, type, key, , numel] = pid as [string, StorageType, unknown, unknown, unknown];
  if (type?.kind !== "storage-type" || typeof key !== "string") {
    throw convertError(
      "checkpoint_unreadable",
      "a storage record of the pickle has no known storage type or key; the checkpoint is corrupted",
    );
  }
  return { kind: "storage", dtype: type.dtype, key, numel: integer(numel, "a storage size") };
}

/** The pickle's top-level dictionary: tensors and any plain values (ints, strings) it holds. */
export function parseStateDictPickle(bytes: Uint8Array): Map<string, unknown> {
  const parser = new Parser({
    nameResolver: { resolve: resolveGlobal },
    persistentResolver: { resolve: resolvePersistent },
    extensionResolver: {
      resolve: (code: number) => {
        throw convertError(
          "checkpoint_unsafe",
          `the pickle uses extension code ${code}, which a state dict never does; refusing it`,
        );
      },
    },
    unpicklingTypeOfDictionary: "Map",
  });
  let result: unknown;
  try {
    result = parser.parse(bytes);
  } catch (error) {
    if ((error as { code?: string }).code?.startsWith("checkpoint_")) throw error;
    throw convertError(
      "checkpoint_unreadable",
      `cannot read the checkpoint's pickle (${(error as Error).message}); the file is truncated or corrupted, download it again`,
    );
  }
  if (!(result instanceof Map)) {
    throw convertError(
      "checkpoint_unsupported",
      "the checkpoint's pickle does not hold a dictionary of tensors (a state dict)",
    );
  }
  return result as Map<string, unknown>;
}
