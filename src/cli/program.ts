/** The `longclip` command: every command module registered on one commander program. */
import { readFileSync } from "node:fs";
import path from "node:path";
import { Command } from "commander";
import { PROJECT_ROOT } from "../core/settings.ts";
import { register as registerDuplicates } from "./duplicates.ts";
import { register as registerEmbed } from "./embed.ts";
import { register as registerExport } from "./export.ts";
import { register as registerIndex } from "./index-cmd.ts";
import { register as registerJobs } from "./jobs.ts";
import { register as registerMigrate } from "./migrate.ts";
import { register as registerPull } from "./pull.ts";
import { register as registerServe } from "./serve.ts";
import { register as registerTokenize } from "./tokenize.ts";
import { helpPointer, setRunningCommand, USAGE_EXIT } from "./usage.ts";

const { version } = JSON.parse(readFileSync(path.join(PROJECT_ROOT, "package.json"), "utf8")) as {
  version: string;
};

/** The whole command line, without parsing anything (the docs test reads its commands and flags). */
export function buildProgram(): Command {
  const program = new Command("longclip")
    .description("Long-text image retrieval with Long-CLIP: embed, index, search and serve")
    .version(version, "-V, --version", "print the version")
    // commander ends with 1 after its own errors: a usage error is 2 here, as in every command.
    .exitOverride((error) => process.exit(error.exitCode === 0 ? 0 : USAGE_EXIT))
    .showHelpAfterError(helpPointer(undefined))
    .hook("preAction", (_program, command) => setRunningCommand(command.name()));

  registerDuplicates(program);
  registerEmbed(program);
  registerExport(program);
  registerIndex(program);
  registerJobs(program);
  registerMigrate(program);
  registerPull(program);
  registerServe(program);
  registerTokenize(program);

  // The error of an unknown flag or a bad value points to the command's own help, not the
  // whole help, which would scroll the error away.
  for (const command of program.commands) command.showHelpAfterError(helpPointer(command.name()));
  return program;
}
