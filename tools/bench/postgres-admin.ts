/** What both test servers (native and PGlite) do to a fresh one and to reset one. */
import pg from "pg";

/** Runs `work` on one new connection to `url`, closed afterwards. */
export async function withClient<T>(
  url: string,
  work: (client: pg.Client) => Promise<T>,
): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/** Creates pgvector's extension, as an administrator does before the product's first start. */
export async function createVectorExtension(url: string): Promise<void> {
  await withClient(url, (client) => client.query("CREATE EXTENSION IF NOT EXISTS vector"));
}

/** Drops the product's schema, for a fresh store. */
export async function dropProductSchema(url: string): Promise<void> {
  await withClient(url, (client) => client.query("DROP SCHEMA IF EXISTS longclip CASCADE"));
}
