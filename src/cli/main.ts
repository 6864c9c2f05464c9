/** The `longclip` command line: parse the arguments, report a failure with its exit code. */
import { buildProgram } from "./program.ts";
import { reportError } from "./usage.ts";

try {
  await buildProgram().parseAsync(process.argv);
} catch (error) {
  process.exitCode = reportError(error);
}
