/** The live model as the `longclip.meta` table records it; a reindex swap rewrites it. */
import type { ModelInfo } from "../types.ts";
import type { Queryable } from "./db.ts";

export async function writeModel(client: Queryable, info: ModelInfo): Promise<void> {
  for (const [key, value] of [
    ["model_id", info.modelId],
    ["dims", String(info.dims)],
  ]) {
    await client.query(
      "INSERT INTO longclip.meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
      [key, value],
    );
  }
  // A model recorded without its directory leaves no stale one behind.
  if (info.modelDir === undefined) {
    await client.query("DELETE FROM longclip.meta WHERE key = 'model_dir'");
  } else {
    await client.query(
      "INSERT INTO longclip.meta (key, value) VALUES ('model_dir', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
      [info.modelDir],
    );
  }
}
