/** Opens the store the settings name: Postgres for a database URL, else SQLite in dataDir. */
import { hnswShardCount, type Settings } from "../core/settings.ts";
import { PostgresStore } from "./postgres/store.ts";
import { SqliteStore } from "./sqlite/store.ts";
import type { ItemStore } from "./types.ts";

export async function openStore(
  settings: Settings,
  onBackgroundError?: (error: unknown) => void,
): Promise<ItemStore> {
  const parameters = {
    m: settings.hnswM,
    efConstruction: settings.hnswEfConstruction,
    efSearch: settings.hnswEfSearch,
  };
  if (settings.databaseUrl !== undefined) {
    return PostgresStore.open({
      url: settings.databaseUrl,
      ...parameters,
      vectorType: settings.pgVectorType,
    });
  }
  return new SqliteStore({
    dataDir: settings.dataDir,
    indexSaveIntervalMs: settings.indexSaveIntervalMs,
    hnswShards: hnswShardCount(settings.hnswShards),
    readWorkers: settings.sqliteReadWorkers,
    ...parameters,
    ...(onBackgroundError ? { onBackgroundError } : {}),
  });
}
