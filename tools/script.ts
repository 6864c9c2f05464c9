/**
 * What the bench and eval scripts share: integer flags, parsing argv, and running `main` so
 * that its result is the exit code and an error prints its code. Outside src/, so none of it
 * ships in dist/ or the image.
 */
import { type Command, InvalidArgumentError } from "commander";
import { isAppError } from "../src/core/errors.ts";

/**
 * An error of a script's own input (a dataset, a budget): coded like an AppError, but its code
 * is not the product's and so not in the catalog of src/core/errors.ts.
 */
export class ScriptError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "ScriptError";
  }
}

/** A commander argument parser for integer flags of at least `min`. */
export function integerFlag(name: string, min = 1): (raw: string) => number {
  return (raw: string): number => {
    const value = Number(raw);
    if (!Number.isInteger(value) || value < min) {
      throw new InvalidArgumentError(`${name} must be an integer of at least ${min}.`);
    }
    return value;
  };
}

/**
 * Parses a script's `argv` with `program`. Returns undefined when the script should go on, or
 * the exit code commander ends with (0 after --help, non-zero after a usage error it printed).
 */
export function parseOrExitCode(program: Command, argv: readonly string[]): number | undefined {
  program.exitOverride();
  try {
    program.parse([...argv]);
    return undefined;
  } catch (error) {
    return (error as { exitCode?: number }).exitCode ?? 2;
  }
}

/**
 * Runs a script's `main` and makes its result the exit code; an error is printed (an AppError
 * or ScriptError as its code and message, anything else with its stack) and exits with 1.
 */
export function runScript(name: string, main: (argv: string[]) => Promise<number>): void {
  main(process.argv).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      process.stderr.write(
        isAppError(error) || error instanceof ScriptError
          ? `${name}: error ${error.code}: ${error.message}\n`
          : `${name} failed: ${(error as Error)?.stack ?? String(error)}\n`,
      );
      process.exitCode = 1;
    },
  );
}
