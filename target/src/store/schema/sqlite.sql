-- Schema v1 for SQLite. Timestamps are RFC 3339 text written by the API (one
-- format, so text comparison orders them); foreign keys restrict deletes.
CREATE TABLE IF NOT EXISTS users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    role          TEXT    NOT NULL CHECK (role IN ('admin', 'user')),
    created_at    TEXT    NOT NULL
);
CREATE TABLE IF NOT EXISTS categories (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL UNIQUE,
    description TEXT,
    created_at  TEXT    NOT NULL
);
CREATE TABLE IF NOT EXISTS tasks (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    title       TEXT    NOT NULL,
    description TEXT,
    status      TEXT    NOT NULL CHECK (status IN ('todo', 'in_progress', 'done')),
    priority    INTEGER NOT NULL,
    due_date    TEXT,
    user_id     INTEGER NOT NULL REFERENCES users (id),
    category_id INTEGER REFERENCES categories (id),
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_status_idx ON tasks (status);
CREATE INDEX IF NOT EXISTS tasks_user_idx ON tasks (user_id);
CREATE INDEX IF NOT EXISTS tasks_category_idx ON tasks (category_id);
CREATE INDEX IF NOT EXISTS tasks_due_date_idx ON tasks (due_date);
CREATE INDEX IF NOT EXISTS tasks_created_at_idx ON tasks (created_at);
CREATE TABLE IF NOT EXISTS idempotency_keys (
    principal   TEXT    NOT NULL,
    route       TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    fingerprint TEXT    NOT NULL,
    status      INTEGER NOT NULL,
    body        TEXT    NOT NULL,
    created_at  TEXT    NOT NULL,
    PRIMARY KEY (principal, route, key)
);
-- Expired keys (see StoreOptions::idempotency_ttl) are pruned by created_at,
-- indexed by migration 2 in migrate.rs.
