/**
 * The Postgres schema, in its own Postgres schema `longclip`, versioned: each migration moves
 * the database one version forward in one transaction, under an advisory lock, so nodes that
 * start together migrate once. A node refuses a database whose version is newer than it knows,
 * and one whose pgvector is older than MIN_PGVECTOR_VERSION.
 */
import type pg from "pg";
import { AppError } from "../../core/errors.ts";
import { requirePgvector } from "./pgvector-version.ts";

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
  // 2: full-text search over metadata (keyword and hybrid search): one row per item and
  // top-level field holding a string (or an array of strings, joined), as an English tsvector
  // under a GIN index, so which fields are searched is chosen at query time (--text-fields). A
  // trigger indexes new items and changed metadata; the items already stored are indexed here.
  `
  CREATE TABLE longclip.item_text (
    label bigint NOT NULL REFERENCES longclip.items (label) ON DELETE CASCADE,
    field text NOT NULL,
    document tsvector NOT NULL,
    PRIMARY KEY (label, field)
  );
  CREATE INDEX item_text_document ON longclip.item_text USING gin (document);
  CREATE FUNCTION longclip.text_fields(metadata jsonb) RETURNS TABLE (field text, document tsvector)
  LANGUAGE sql IMMUTABLE AS $$
    -- Anything but letters and digits separates words, as in SQLite's unicode61 tokenizer
    -- (the Postgres parser would keep "scene-3.jpg" as one file-name token).
    SELECT entry.key, to_tsvector('english'::regconfig, regexp_replace(CASE jsonb_typeof(entry.value)
      WHEN 'string' THEN entry.value #>> '{}'
      ELSE (SELECT string_agg(element #>> '{}', ' ') FROM jsonb_array_elements(entry.value) AS element
            WHERE jsonb_typeof(element) = 'string') END, '[^[:alnum:]]+', ' ', 'g'))
    FROM jsonb_each(metadata) AS entry
    WHERE jsonb_typeof(entry.value) IN ('string', 'array')
  $$;
  CREATE FUNCTION longclip.index_item_text() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    DELETE FROM longclip.item_text WHERE label = NEW.label;
    INSERT INTO longclip.item_text (label, field, document)
      SELECT NEW.label, t.field, t.document FROM longclip.text_fields(NEW.metadata) AS t
      WHERE t.document IS NOT NULL AND t.document != ''::tsvector;
    RETURN NULL;
  END
  $$;
  CREATE TRIGGER items_text AFTER INSERT OR UPDATE OF metadata ON longclip.items
    FOR EACH ROW EXECUTE FUNCTION longclip.index_item_text();
  INSERT INTO longclip.item_text (label, field, document)
    SELECT items.label, t.field, t.document FROM longclip.items, longclip.text_fields(items.metadata) AS t
    WHERE t.document IS NOT NULL AND t.document != ''::tsvector;
  `,
  // 3: finer statistics of the metadata (1,000 sampled documents instead of 100), from which
  // the planner estimates how many items a filter matches (search.ts): a 1% filter is then
  // told from a 2% one.
  `
  ALTER TABLE longclip.items ALTER COLUMN metadata SET STATISTICS 1000;
  ANALYZE longclip.items (metadata);
  `,
  // 4: items with many vectors (store/parts.ts): an item's parts (regions, frames), each with
  // its locator and embedding, deleted with the item; the next model's embeddings of them
  // during a reindex. Their HNSW index is made beside the items' one (hnsw-index.ts).
  `
  CREATE TABLE longclip.item_parts (
    item bigint NOT NULL REFERENCES longclip.items (label) ON DELETE CASCADE,
    part integer NOT NULL,
    kind text NOT NULL CHECK (kind IN ('region', 'frame')),
    box_x double precision,
    box_y double precision,
    box_width double precision,
    box_height double precision,
    t double precision,
    model_id text NOT NULL,
    embedding vector NOT NULL,
    PRIMARY KEY (item, part)
  );
  CREATE TABLE longclip.item_parts_staging (
    item bigint NOT NULL,
    part integer NOT NULL,
    model_id text NOT NULL,
    embedding vector NOT NULL,
    PRIMARY KEY (item, part),
    FOREIGN KEY (item, part) REFERENCES longclip.item_parts (item, part) ON DELETE CASCADE
  );
  `,
  // 5: a reindex may give an item new parts (regions under another --regions setting): a
  // staged part carries its locator when it is new, and belongs to its item, not to a stored part.
  `
  ALTER TABLE longclip.item_parts_staging
    DROP CONSTRAINT item_parts_staging_item_part_fkey,
    ADD FOREIGN KEY (item) REFERENCES longclip.items (label) ON DELETE CASCADE,
    ADD COLUMN kind text CHECK (kind IN ('region', 'frame')),
    ADD COLUMN box_x double precision,
    ADD COLUMN box_y double precision,
    ADD COLUMN box_width double precision,
    ADD COLUMN box_height double precision,
    ADD COLUMN t double precision;
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
    // Refused before anything commits: a database this node cannot use safely stays as it was.
    await requirePgvector(client);
    await client.query("COMMIT");
  } catch (error) {
    await client.query("ROLLBACK").catch(() => {});
    throw error;
  }
}
