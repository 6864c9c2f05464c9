/**
 * A fuzz pass over the checkpoint reader (issue 24: crafted weights): random mutations of a
 * small, valid official-format `.pt` (bytes of the zip, bytes of its pickle, the tensor views it
 * describes, its entries) generated with fast-check, bounded in count. Each one must either
 * read in full or be refused with a converter code; any other error (a TypeError, a RangeError,
 * a plain Error) is a bug in the reader. test/convert-sizes.test.ts covers the hand-crafted
 * attacks (zip bombs, stride-0 views, huge configs) and their memory ceiling.
 */
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, test } from "node:test";
import fc from "fast-check";
import { canonicalShapes } from "../src/convert/clip-spec.ts";
import { openOfficialCheckpoint } from "../src/convert/official.ts";
import { isAppError } from "../src/core/errors.ts";
import {
  type PickledView,
  stateDictEntries,
  stateDictPickle,
  stateDictViews,
  TINY_ZEROS,
  writeZip,
  type ZipEntry,
} from "../tools/bench/crafted-checkpoints.ts";
import { tempDir } from "./helpers/library-fixtures.ts";
import { mutatedBytes } from "./helpers/mutate.ts";

/** A fixed seed, so a failure reproduces; LONGCLIP_FUZZ_SEED and _RUNS explore further. */
const SEED = Number(process.env.LONGCLIP_FUZZ_SEED ?? 20261207);
const RUNS = Number(process.env.LONGCLIP_FUZZ_RUNS ?? 300);

/** A valid Long-CLIP layout, small enough to write hundreds of times (a 512-token vocabulary). */
const SPEC = { ...TINY_ZEROS, vocabSize: 512 };

/** The codes a refused checkpoint may carry: each names what is wrong with the file. */
const REFUSALS = new Set([
  "checkpoint_unreadable",
  "checkpoint_unsafe",
  "checkpoint_torchscript",
  "checkpoint_too_large",
  "checkpoint_unsupported",
]);

const dir = tempDir("fuzz-checkpoints-");
mkdirSync(dir, { recursive: true });
after(() => rmSync(dir, { recursive: true, force: true }));

let written = 0;
function writeCase(write: (file: string) => void): string {
  const file = path.join(dir, `case-${written++}.pt`);
  write(file);
  return file;
}

/** Opens the checkpoint and reads every tensor; "read" or the refusal's code. */
async function readAll(file: string): Promise<string> {
  const weights = await openOfficialCheckpoint(file);
  try {
    for (const name of canonicalShapes(weights.spec).keys()) await weights.read(name);
  } finally {
    weights.close();
  }
  return "read";
}

/** What reading a case gives; throws (failing the property) on an error that is not a refusal. */
async function outcome(file: string): Promise<string> {
  try {
    return await readAll(file);
  } catch (error) {
    if (isAppError(error) && REFUSALS.has(error.code)) return error.code;
    throw new Error(`not a refusal: ${String((error as Error)?.stack ?? error)}`);
  } finally {
    rmSync(file, { force: true });
  }
}

const views = stateDictViews(SPEC);
const entries = stateDictEntries(views, 0.25);
const validZip = readFileSync(writeCase((f) => writeZip(f, entries)));

/** Integers a crafted view may carry: edges of every range a reader might compute in. */
const oddInteger = fc.oneof(
  fc.constantFrom(0, 1, -1, 2, 63, 64, 65, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 53, -(2 ** 31)),
  fc.integer({ min: -1000, max: 100_000 }),
);

/** One change to one tensor view (or to the set of views). */
const viewChange: fc.Arbitrary<{ what: string; apply: (v: Map<string, PickledView>) => void }> = fc
  .tuple(
    fc.nat(views.size - 1),
    fc.constantFrom("numel", "offset", "shape", "strides", "key", "rank", "drop", "rename"),
    oddInteger,
    fc.string({ maxLength: 12 }),
  )
  .map(([index, field, value, text]) => {
    const name = [...views.keys()][index] as string;
    return {
      what: `${name}.${field} = ${field === "rename" || field === "key" ? JSON.stringify(text) : value}`,
      apply(changed: Map<string, PickledView>) {
        const view = changed.get(name);
        if (view === undefined) return; // dropped or renamed by an earlier change
        const axis = Math.abs(value) % Math.max(1, view.shape.length);
        const at = (list: readonly number[]) => list.map((x, i) => (i === axis ? value : x));
        if (field === "numel") changed.set(name, { ...view, numel: value });
        if (field === "offset") changed.set(name, { ...view, offset: value });
        if (field === "shape") changed.set(name, { ...view, shape: at(view.shape) });
        if (field === "strides") changed.set(name, { ...view, strides: at(view.strides) });
        if (field === "key") changed.set(name, { ...view, key: text });
        if (field === "rank") changed.set(name, { ...view, shape: [...view.shape, 1] });
        if (field === "drop") changed.delete(name);
        if (field === "rename") {
          changed.delete(name);
          changed.set(text, view);
        }
      },
    };
  });

/** A whole case: what was done (for the failure message) and the file it wrote. */
interface Case {
  what: string;
  file: () => string;
}

const cases: fc.Arbitrary<Case> = fc.oneof(
  // The zip's own bytes.
  mutatedBytes(validZip).map((bytes) => ({
    what: `zip bytes (${bytes.length})`,
    file: () => writeCase((f) => writeFileSync(f, bytes)),
  })),
  // A valid zip around a damaged pickle.
  mutatedBytes((entries[0] as { data: Buffer }).data).map((pickle) => ({
    what: `data.pkl bytes (${pickle.length})`,
    file: () =>
      writeCase((f) =>
        writeZip(f, [{ name: "archive/data.pkl", data: pickle }, ...entries.slice(1)]),
      ),
  })),
  // A well-formed pickle describing views that do not fit their storages or the model.
  fc.array(viewChange, { minLength: 1, maxLength: 3 }).map((changes) => ({
    what: changes.map((c) => c.what).join("; "),
    file: () => {
      const changed = new Map(views);
      for (const change of changes) change.apply(changed);
      const pickle: ZipEntry = { name: "archive/data.pkl", data: stateDictPickle(changed) };
      return writeCase((f) => writeZip(f, [pickle, ...entries.slice(1)]));
    },
  })),
  // Entries missing, renamed, or far larger than their tensors.
  fc
    .tuple(
      fc.nat(entries.length - 1),
      fc.constantFrom("drop", "grow", "rename"),
      fc.integer({ min: 1, max: 8 }),
    )
    .map(([index, change, mib]) => ({
      what: `entry ${entries[index]?.name}: ${change}${change === "grow" ? ` to ${mib} MiB of zeros` : ""}`,
      file: () => {
        const changed: ZipEntry[] = entries.flatMap((entry, i) => {
          if (i !== index) return [entry];
          if (change === "drop") return [];
          if (change === "grow") return [{ name: entry.name, zeros: mib * 1024 * 1024 }];
          return [{ ...entry, name: `${entry.name}x` }];
        });
        return writeCase((f) => writeZip(f, changed));
      },
    })),
);

test("the valid checkpoint the fuzzing starts from reads in full", async () => {
  assert.equal(await outcome(writeCase((f) => writeZip(f, entries))), "read");
});

test("mutated checkpoints either read in full or are refused with a converter code", {
  timeout: 600_000,
}, async (t) => {
  const seen = new Map<string, number>();
  const bugs: string[] = [];
  for (const c of fc.sample(cases, { seed: SEED, numRuns: RUNS })) {
    try {
      const result = await outcome(c.file());
      seen.set(result, (seen.get(result) ?? 0) + 1);
    } catch (error) {
      bugs.push(`${c.what}: ${(error as Error).message}`);
    }
  }
  assert.deepEqual(bugs.slice(0, 5), [], `${bugs.length} of ${RUNS} cases`);
  t.diagnostic(JSON.stringify(Object.fromEntries(seen)));
  // The pass explored: most cases were refused, for more than one reason, and some still read.
  assert.ok((seen.get("read") ?? 0) > 0, "some mutations leave a readable checkpoint");
  assert.ok(seen.size >= 3, `refusals of several kinds: ${[...seen.keys()].join(", ")}`);
});
