/**
 * SQLite schema, versioned with `PRAGMA user_version`. Each migration runs in one
 * transaction and moves the database exactly one version forward.
 */
import type Database from "better-sqlite3";

const MIGRATIONS: readonly string[] = [
  // 1: items, their embeddings (one per item, tagged with the model that made it), meta.
  `
  CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
  );
  CREATE TABLE items (
    id TEXT PRIMARY KEY,
    label INTEGER NOT NULL UNIQUE,
    sha256 TEXT NOT NULL UNIQUE,
    metadata TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metadata)),
    content_type TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    source TEXT NOT NULL CHECK (source IN ('upload', 'path')),
    path TEXT,
    created_at TEXT NOT NULL
  );
  CREATE TABLE embeddings (
    label INTEGER PRIMARY KEY REFERENCES items(label) ON DELETE CASCADE,
    model_id TEXT NOT NULL,
    vector BLOB NOT NULL
  );
  CREATE TABLE embeddings_staging (
    label INTEGER PRIMARY KEY REFERENCES items(label) ON DELETE CASCADE,
    model_id TEXT NOT NULL,
    vector BLOB NOT NULL
  );
  `,
  // 2: jobs (bulk indexing by path), each a list of job items that a worker leases in chunks.
  `
  CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    metadata TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    cancelled_at INTEGER
  );
  CREATE TABLE job_items (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    path TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending'
      CHECK (state IN ('pending', 'claimed', 'indexed', 'duplicate', 'failed', 'cancelled')),
    worker TEXT,
    lease_until INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    done_at INTEGER,
    item_id TEXT,
    error_code TEXT,
    error_message TEXT,
    PRIMARY KEY (job_id, seq)
  );
  CREATE INDEX job_items_open ON job_items (state, lease_until);
  `,
  // 3: full-text search over metadata (keyword and hybrid search). One row per item and
  // top-level field holding a string (or an array of strings, joined), so which fields are
  // searched is chosen at query time (--text-fields) without re-indexing. FTS5 reads the
  // bodies from item_text (external content); triggers keep both in step with items, and the
  // items already stored are indexed here (backfill).
  `
  CREATE TABLE item_text (
    id INTEGER PRIMARY KEY,
    label INTEGER NOT NULL REFERENCES items(label) ON DELETE CASCADE,
    field TEXT NOT NULL,
    body TEXT NOT NULL
  );
  CREATE INDEX item_text_label ON item_text (label);
  CREATE VIRTUAL TABLE item_text_fts USING fts5(
    body, content='item_text', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2'
  );
  CREATE TRIGGER item_text_added AFTER INSERT ON item_text BEGIN
    INSERT INTO item_text_fts (rowid, body) VALUES (new.id, new.body);
  END;
  CREATE TRIGGER item_text_removed AFTER DELETE ON item_text BEGIN
    INSERT INTO item_text_fts (item_text_fts, rowid, body) VALUES ('delete', old.id, old.body);
  END;
  CREATE VIEW item_text_source (label, field, body) AS
    SELECT items.label, field.key,
      CASE field.type WHEN 'text' THEN field.value ELSE
        (SELECT group_concat(element.value, ' ') FROM json_each(field.value) AS element
         WHERE element.type = 'text') END
    FROM items, json_each(items.metadata) AS field
    WHERE field.type IN ('text', 'array');
  CREATE TRIGGER items_text_added AFTER INSERT ON items BEGIN
    INSERT INTO item_text (label, field, body)
      SELECT label, field, body FROM item_text_source
      WHERE label = new.label AND body IS NOT NULL AND body != '';
  END;
  CREATE TRIGGER items_text_changed AFTER UPDATE OF metadata ON items BEGIN
    DELETE FROM item_text WHERE label = new.label;
    INSERT INTO item_text (label, field, body)
      SELECT label, field, body FROM item_text_source
      WHERE label = new.label AND body IS NOT NULL AND body != '';
  END;
  INSERT INTO item_text (label, field, body)
    SELECT label, field, body FROM item_text_source WHERE body IS NOT NULL AND body != '';
  `,
  // 4: items with many vectors (store/parts.ts): an item's parts (regions, frames), each with
  // its locator and embedding. A part's vector is in the HNSW index under `vector_label`, taken
  // from the items' label sequence (an item's parts follow its own label), so no label is
  // shared, none is reused, and the index can be rebuilt from this table alone.
  `
  CREATE TABLE item_parts (
    vector_label INTEGER PRIMARY KEY,
    item INTEGER NOT NULL REFERENCES items(label) ON DELETE CASCADE,
    part INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('region', 'frame')),
    box_x REAL,
    box_y REAL,
    box_width REAL,
    box_height REAL,
    t REAL,
    model_id TEXT NOT NULL,
    vector BLOB NOT NULL,
    UNIQUE (item, part)
  );
  CREATE TABLE item_parts_staging (
    item INTEGER NOT NULL,
    part INTEGER NOT NULL,
    model_id TEXT NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (item, part),
    FOREIGN KEY (item, part) REFERENCES item_parts(item, part) ON DELETE CASCADE
  );
  `,
  // 5: a reindex may give an item new parts (regions under another --regions setting): a
  // staged part carries its locator when it is new, and belongs to its item, not to a stored
  // part (the table is rebuilt, its rows kept: SQLite cannot change a foreign key in place).
  `
  CREATE TABLE item_parts_staging_5 (
    item INTEGER NOT NULL REFERENCES items(label) ON DELETE CASCADE,
    part INTEGER NOT NULL,
    model_id TEXT NOT NULL,
    vector BLOB NOT NULL,
    kind TEXT CHECK (kind IN ('region', 'frame')),
    box_x REAL,
    box_y REAL,
    box_width REAL,
    box_height REAL,
    t REAL,
    PRIMARY KEY (item, part)
  );
  INSERT INTO item_parts_staging_5 (item, part, model_id, vector)
    SELECT item, part, model_id, vector FROM item_parts_staging;
  DROP TABLE item_parts_staging;
  ALTER TABLE item_parts_staging_5 RENAME TO item_parts_staging;
  `,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

/** Applies the migrations the database has not seen; refuses a database from a newer build. */
export function migrate(db: Database.Database): void {
  const current = db.pragma("user_version", { simple: true }) as number;
  if (current > SCHEMA_VERSION) {
    throw new Error(
      `database schema version ${current} is newer than this build supports (${SCHEMA_VERSION}); upgrade longclip`,
    );
  }
  for (let version = current; version < SCHEMA_VERSION; version++) {
    const sql = MIGRATIONS[version] as string;
    db.transaction(() => {
      db.exec(sql);
      db.pragma(`user_version = ${version + 1}`);
    })();
  }
}
