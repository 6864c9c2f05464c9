/**
 * The Postgres schema, in its own Postgres schema `longclip`, versioned: each migration moves
 * the database one version forward in one transaction, under an advisory lock, so nodes that
 * start together migrate once. A node refuses a database whose version is newer than it knows.
 */
import type pg from "pg";
import { AppError } from "../../errors.ts";

const MIGRATIONS: readonly string[] = [
  // 1: items with their embedding (one model at a time), originals, reindex staging, jobs.
  `
  CREATE EXTENSION IF NOT EXISTS vector;
  CREATE TABLE longclip.meta (
    key text PRIMARY KEY,
    value text NOT NULL
  );
  CREATE TABLE longclip.items (
    label bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id text NOT NULL UNIQUE,
    sha256 text NOT NULL UNIQUE,
    metadata jsonb NOT NULL DEFAULT '{}',
    content_type text NOT NULL,
    width integer NOT NULL,
    height integer NOT NULL,
    bytes bigint NOT NULL,
    source text NOT NULL CHECK (source IN ('upload', 'path')),
    path text,
    created_at timestamptz NOT NULL DEFAULT now(),
    model_id text,
    embedding vector,
    CHECK ((model_id IS NULL) = (embedding IS NULL))
  );
  CREATE INDEX items_metadata ON longclip.items USING gin (metadata jsonb_path_ops);
  CREATE TABLE longclip.originals (
    sha256 text PRIMARY KEY,
    bytes bytea NOT NULL
  );
  CREATE TABLE longclip.embeddings_staging (
    label bigint PRIMARY KEY REFERENCES longclip.items (label) ON DELETE CASCADE,
    model_id text NOT NULL,
    embedding vector NOT NULL
  );
  CREATE TABLE longclip.jobs (
    id text PRIMARY KEY,
    metadata jsonb NOT NULL DEFAULT '{}',
    created_at bigint NOT NULL,
    started_at bigint,
    cancelled_at bigint
  );
  CREATE TABLE longclip.job_items (
    job_id text NOT NULL REFERENCES longclip.jobs (id) ON DELETE CASCADE,
    seq integer NOT NULL,
    path text NOT NULL,
    state text NOT NULL DEFAULT 'pending'
      CHECK (state IN ('pending', 'claimed', 'indexed', 'duplicate', 'failed', 'cancelled')),
    worker text,
    lease_until bigint,
    attempts integer NOT NULL DEFAULT 0,
    done_at bigint,
    item_id text,
    error_code text,
    error_message text,
    PRIMARY KEY (job_id, seq)
  );
  CREATE INDEX job_items_open ON longclip.job_items (state, lease_until)
    WHERE state IN ('pending', 'claimed');
  `,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

/** Any constant: the key of the advisory lock that serialises migrations across nodes. */
const MIGRATION_LOCK = 7_248_077;

export async function migrate(client: pg.PoolClient): Promise<void> {
  await client.query("BEGIN");
  try {
    await client.query("SELECT pg_advisory_xact_lock($1)", [MIGRATION_LOCK]);
    await client.query("CREATE SCHEMA IF NOT EXISTS longclip");
    await client.query(
      "CREATE TABLE IF NOT EXISTS longclip.schema_version (version integer NOT NULL)",
    );
    const row = await client.query<{ version: number }>(
      "SELECT version FROM longclip.schema_version",
    );
    const current = row.rows[0]?.version ?? 0;
    if (current > SCHEMA_VERSION) {
      throw new AppError(
        "schema_too_new",
        `The database's longclip schema is version ${current}, newer than this build knows (${SCHEMA_VERSION}); upgrade longclip on this node before starting it.`,
      );
    }
    for (let version = current; version < SCHEMA_VERSION; version++) {
      await client.query(MIGRATIONS[version] as string);
    }
    if (row.rows.length === 0) {
      await client.query("INSERT INTO longclip.schema_version (version) VALUES ($1)", [
        SCHEMA_VERSION,
      ]);
    } else if (current < SCHEMA_VERSION) {
      await client.query("UPDATE longclip.schema_version SET version = $1", [SCHEMA_VERSION]);
    }
    await client.query("COMMIT");
  } catch (error) {
    await client.query("ROLLBACK").catch(() => {});
    throw error;
  }
}
