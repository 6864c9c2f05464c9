/** Opens the store the settings name: Postgres for a database URL, else SQLite in dataDir. */
import { AppError } from "../core/errors.ts";
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
  const readUrls = (settings.databaseReadUrl ?? "")
    .split(",")
    .map((url) => url.trim())
    .filter((url) => url !== "");
  if (settings.databaseUrl !== undefined) {
    return PostgresStore.open({
      url: settings.databaseUrl,
      readUrls,
      readMaxLagMs: settings.databaseReadMaxLagMs,
      ...parameters,
      vectorType: settings.pgVectorType,
      buildMemoryMb: settings.pgBuildMemoryMb,
      buildWorkers: settings.pgBuildWorkers,
    });
  }
  if (readUrls.length > 0) {
    throw new AppError(
      "invalid_setting",
      "--database-read-url (LONGCLIP_DATABASE_READ_URL) names replicas of a PostgreSQL primary: give the primary with --database-url too.",
    );
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
