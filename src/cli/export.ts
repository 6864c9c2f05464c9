/**
 * `longclip export ...`: the training package's exporter (`python3 -m training export`), run
 * with the Python that has torch (scripts/python: $LONGCLIP_PYTHON, Debian's python3, or the
 * first python3 on PATH). Every argument is passed through; `longclip export --help` shows them.
 */
import { spawn } from "node:child_process";
import path from "node:path";
import type { Command } from "commander";
import { PROJECT_ROOT } from "../config.ts";

export function exportCommand(args: readonly string[]): { command: string; args: string[] } {
  return {
    command: path.join(PROJECT_ROOT, "scripts", "python"),
    args: ["-m", "training", "export", ...args],
  };
}

export function register(program: Command): void {
  program
    .command("export")
    .description(
      "Export a Long-CLIP or OpenAI CLIP checkpoint to a model directory (runs `python3 -m training export`)",
    )
    .helpOption(false)
    .allowUnknownOption()
    .allowExcessArguments()
    .argument("[args...]", "passed to `python3 -m training export` (try --help)")
    .action(async (args: string[]) => {
      const { command, args: argv } = exportCommand(args);
      const child = spawn(command, argv, { cwd: PROJECT_ROOT, stdio: "inherit" });
      const code = await new Promise<number>((resolve) => {
        child.on("error", (error) => {
          process.stderr.write(`error: could not run ${command}: ${error.message}\n`);
          resolve(127);
        });
        child.on("exit", (status, signal) => resolve(status ?? (signal ? 1 : 0)));
      });
      process.exitCode = code;
    });
}
