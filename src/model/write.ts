/**
 * Writes a model directory's config.json: checked as ./read.ts reads it (the schema, the files
 * present), so what is written is what the engine loads. Call it last, after the towers and the
 * tokenizer file are in place: a directory with a config.json is a complete model.
 */
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { CONFIG_FILE, type ModelConfig } from "./format.ts";
import { checkModelConfig } from "./read.ts";

export async function writeModelConfig(dir: string, config: ModelConfig): Promise<ModelConfig> {
  const checked = checkModelConfig(path.resolve(dir), config);
  await writeFile(path.join(dir, CONFIG_FILE), `${JSON.stringify(config, null, 2)}\n`);
  return checked;
}
