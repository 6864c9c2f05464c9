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
