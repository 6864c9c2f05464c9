/** Runs the training package's Python (scripts/python) and reads its one-line JSON answer. */
import { spawn } from "node:child_process";
import path from "node:path";
import { PROJECT_ROOT } from "../../src/core/settings.ts";

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
