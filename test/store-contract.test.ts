/** The storage contract (test/helpers/store-contract.ts) on both backends. */
import { rmSync } from "node:fs";
import path from "node:path";
import { after, before } from "node:test";
import { PostgresStore } from "../src/store/postgres/store.ts";
import { SqliteStore } from "../src/store/sqlite/store.ts";
import { tempDir } from "./helpers/library-fixtures.ts";
import { startPostgres, type TestPostgres } from "./helpers/postgres.ts";
import { storeContract } from "./helpers/store-contract.ts";

const PARAMETERS = { m: 16, efConstruction: 64, efSearch: 64 };
const root = tempDir("store-contract-");
after(() => rmSync(root, { recursive: true, force: true }));

let counter = 0;
let sqliteDir = "";
const openSqlite = async () =>
  new SqliteStore({ dataDir: sqliteDir, indexSaveIntervalMs: 0, ...PARAMETERS });
storeContract("SQLite + HNSW", {
  async open() {
    counter++;
    sqliteDir = path.join(root, `sqlite-${counter}`);
    return openSqlite();
  },
  reopen: openSqlite,
});

let postgres: TestPostgres | undefined;
before(async () => {
  postgres = await startPostgres();
});
after(() => postgres?.stop());
const openPostgres = () =>
  PostgresStore.open({ url: (postgres as TestPostgres).url, vectorType: "halfvec", ...PARAMETERS });
storeContract("Postgres + pgvector (PGlite over the wire)", {
  async open() {
    await postgres?.reset();
    return openPostgres();
  },
  reopen: openPostgres,
});
