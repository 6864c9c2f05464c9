/** Runs the training package's Python (scripts/python) and reads its one-line JSON answer. */
import { spawn } from "node:child_process";
import { existsSync, rmSync } from "node:fs";
import path from "node:path";
import { PROJECT_ROOT } from "../../src/core/settings.ts";
import type { BenchContext } from "./context.ts";
import type { BenchModel } from "./models.ts";

/**
 * `scripts/python ARGS` from the repository root; stderr passes through as progress. Resolves
 * with the last stdout line parsed as JSON; rejects with the exit code and stderr tail.
 */
export function runPython(args: readonly string[]): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const child = spawn(path.join(PROJECT_ROOT, "scripts", "python"), args, {
      cwd: PROJECT_ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
      process.stderr.write(chunk);
    });
    child.on("error", reject);
    child.on("close", (code) => {
      if (code !== 0) {
        reject(
          new Error(
            `scripts/python ${args.join(" ")} exited with ${code}: ${stderr.trim().slice(-1500)}`,
          ),
        );
        return;
      }
      const last = stdout.trim().split("\n").pop() ?? "";
      try {
        resolve(last.startsWith("{") ? JSON.parse(last) : { output: stdout });
      } catch (error) {
        reject(new Error(`scripts/python ${args.join(" ")}: bad JSON (${String(error)})`));
      }
    });
  });
}

/** The version of the reference's PyTorch. */
export async function torchVersion(): Promise<string> {
  const result = (await runPython([
    "-c",
    "import json, torch; print(json.dumps({'v': torch.__version__}))",
  ])) as {
    v: string;
  };
  return result.v;
}

/**
 * A copy of the bench model with both towers in `precision`, made by `python3 -m training
 * quantize` beside the model's directory (its cosine check against fp32 included).
 */
export async function convertedCopy(
  ctx: BenchContext,
  model: BenchModel,
  precision: "int8" | "fp16",
): Promise<{ dir: string; result: { converted: { vision: number }; bytes: { vision: number } } }> {
  const dir = path.join(path.dirname(model.dir), precision);
  ctx.log(`${precision}: python3 -m training quantize ${model.size} (vision and text towers)`);
  // quantize keeps an existing config.json only when its checks passed, so start afresh.
  if (existsSync(dir)) rmSync(dir, { recursive: true });
  const result = (await runPython([
    "-m",
    "training",
    "quantize",
    "--precision",
    precision,
    "--model-dir",
    model.dir,
    "--out",
    dir,
    "--towers",
    "vision,text",
    "--threads",
    String(ctx.threads),
    "--json",
  ])) as { converted: { vision: number }; bytes: { vision: number } };
  return { dir, result };
}
