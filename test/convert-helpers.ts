/**
 * Helpers of the converter tests: the CLI run with no Python reachable, relative differences,
 * and fp16 rounding (the cast the official Long-CLIP code applies to OpenAI weights).
 */
import { mkdirSync, mkdtempSync, symlinkSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { type CliRun, runCli } from "./helpers/cli.ts";

let nodeOnlyPath: string | undefined;

/** A PATH holding only `node`, so no python3 can be found. */
function pathWithoutPython(): string {
  if (!nodeOnlyPath) {
    nodeOnlyPath = path.join(mkdtempSync(path.join(os.tmpdir(), "no-python-")), "bin");
    mkdirSync(nodeOnlyPath);
    symlinkSync(process.execPath, path.join(nodeOnlyPath, "node"));
  }
  return nodeOnlyPath;
}

/**
 * `longclip ARGS` with python3 absent from PATH and LONGCLIP_PYTHON pointing at a missing file,
 * so any attempt to run the Python exporter fails instead of silently succeeding.
 */
export function runWithoutPython(
  args: readonly string[],
  env: NodeJS.ProcessEnv = {},
): Promise<CliRun> {
  return runCli(args, "", {
    PATH: pathWithoutPython(),
    LONGCLIP_PYTHON: "/nonexistent/python3",
    ...env,
  });
}

/** max_i |a_i - b_i| / max_i |b_i| */
export function relativeDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`lengths differ: ${a.length} vs ${b.length}`);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < b.length; i++) {
    diff = Math.max(diff, Math.abs((a[i] as number) - (b[i] as number)));
    scale = Math.max(scale, Math.abs(b[i] as number));
  }
  return diff / scale;
}

/** The nearest fp16 value (ties to even), as PyTorch's `.half()` rounds. */
export function roundToHalf(value: number): number {
  if (value === 0 || !Number.isFinite(value)) return value;
  const exponent = Math.max(Math.floor(Math.log2(Math.abs(value))), -14);
  const quantum = 2 ** (exponent - 10);
  const scaled = value / quantum;
  const floor = Math.floor(scaled);
  const rest = scaled - floor;
  const rounded = rest > 0.5 || (rest === 0.5 && floor % 2 !== 0) ? floor + 1 : floor;
  return rounded * quantum;
}

/** Worst relative difference of a model directory's text.onnx on the reference texts (≤ its context). */
export async function worstReferenceText(
  modelDir: string,
  texts: readonly { ids_248: number[]; embedding: number[] }[],
): Promise<number> {
  const { InferenceSession, Tensor } = await import("onnxruntime-node");
  const session = await InferenceSession.create(path.join(modelDir, "text.onnx"));
  let worst = 0;
  for (const text of texts) {
    const ids = new Tensor("int64", BigInt64Array.from(text.ids_248, BigInt), [
      1,
      text.ids_248.length,
    ]);
    const out = (await session.run({ input_ids: ids })).text_embeds?.data as Float32Array;
    worst = Math.max(worst, relativeDifference(out, text.embedding));
  }
  await session.release();
  return worst;
}
