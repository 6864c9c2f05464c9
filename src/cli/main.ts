/** The `longclip` command line: one `register(program)` per command module. */
import { Command } from "commander";
import { register as registerDuplicates } from "./duplicates.ts";
import { register as registerEmbed } from "./embed.ts";
import { register as registerExport } from "./export.ts";
import { register as registerIndex } from "./index-cmd.ts";
import { register as registerJobs } from "./jobs.ts";
import { register as registerMigrate } from "./migrate.ts";
import { register as registerPull } from "./pull.ts";
import { register as registerServe } from "./serve.ts";
import { register as registerTokenize } from "./tokenize.ts";

const program = new Command("longclip")
  .description("Long-text image retrieval with Long-CLIP: embed, index, search and serve")
  .showHelpAfterError();

registerDuplicates(program);
registerEmbed(program);
registerExport(program);
registerIndex(program);
registerJobs(program);
registerMigrate(program);
registerPull(program);
registerServe(program);
registerTokenize(program);

await program.parseAsync(process.argv);
