/**
 * How every command ends, as tools people know do: a usage error (an unknown flag, a bad value,
 * a missing argument) prints one line and where the help is, and exits 2; a runtime error
 * prints its line and exits 1.
 */
import { ERRORS, type ErrorSpec, isAppError } from "../core/errors.ts";
import type { Settings } from "../core/settings.ts";
import { errorMessage, settingsFromFlags } from "./settings.ts";

export const USAGE_EXIT = 2;
export const RUNTIME_EXIT = 1;

export function isUsageError(error: unknown): boolean {
  if (!isAppError(error)) return false;
  const spec: ErrorSpec = ERRORS[error.code];
  return spec.commandLine === true;
}

export function exitCodeOf(error: unknown): number {
  return isUsageError(error) ? USAGE_EXIT : RUNTIME_EXIT;
}

/** The command running now (`serve`, `search`, ...), for the pointer to its help. */
let runningCommand: string | undefined;

export function setRunningCommand(name: string | undefined): void {
  runningCommand = name;
}

/** The line after a usage error: where the command's options are described. */
export function helpPointer(command: string | undefined = runningCommand): string {
  return `Run 'longclip${command ? ` ${command}` : ""} --help' for its options.`;
}

/** Writes a command's error (plus the help pointer for a usage error); returns the exit code. */
export function reportError(
  error: unknown,
  stream: NodeJS.WritableStream = process.stderr,
): number {
  stream.write(errorMessage(error));
  if (isUsageError(error)) stream.write(`${helpPointer()}\n`);
  return exitCodeOf(error);
}

/** Settings from a command's flags; on a bad one reports it as a usage error and returns undefined. */
export function settingsOrUsageError(flags: Record<string, unknown>): Settings | undefined {
  try {
    return settingsFromFlags(flags);
  } catch (error) {
    process.exitCode = reportError(error);
    return undefined;
  }
}
