-- warrant schema v1 (SQLite)

CREATE TABLE identities (
    id            TEXT PRIMARY KEY NOT NULL,
    name          TEXT NOT NULL,
    kind          TEXT NOT NULL,
    environment   TEXT NOT NULL,
    spiffe_id     TEXT NOT NULL,
    owner         TEXT NOT NULL,
    description   TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('active', 'suspended', 'retired')),
    roles         TEXT NOT NULL,  -- JSON array of strings, sorted
    entitlements  TEXT NOT NULL,  -- JSON array of strings, sorted
    created_ms    INTEGER NOT NULL,
    updated_ms    INTEGER NOT NULL,
    last_used_ms  INTEGER
);
-- Retired identities are never deleted, so these also keep their URI and name from reuse.
CREATE UNIQUE INDEX identities_spiffe_id ON identities (spiffe_id);
CREATE UNIQUE INDEX identities_name_env ON identities (name, environment);
CREATE INDEX identities_owner ON identities (owner, id);
CREATE INDEX identities_env ON identities (environment, id);

CREATE TABLE policy_versions (
    version       INTEGER PRIMARY KEY NOT NULL,
    schema_text   TEXT NOT NULL,
    policies_text TEXT NOT NULL,
    created_ms    INTEGER NOT NULL,
    actor         TEXT NOT NULL,
    comment       TEXT NOT NULL
);

CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    hash        BLOB NOT NULL UNIQUE,  -- SHA-256 of the token; the token itself is never stored
    role        TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    revoked_ms  INTEGER
);

CREATE TABLE audit_records (
    seq        INTEGER PRIMARY KEY NOT NULL,
    ts_ms      INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    actor      TEXT NOT NULL,
    subject    TEXT NOT NULL,
    payload    TEXT NOT NULL,
    leaf_hash  BLOB NOT NULL,
    root       BLOB NOT NULL
);
CREATE INDEX audit_records_kind ON audit_records (kind, seq);
CREATE INDEX audit_records_subject ON audit_records (subject, seq);

-- Append-only: the database refuses to change or remove audit records. (Someone with
-- write access to the file can drop these triggers; the Merkle tree and the signed
-- checkpoints are what detect that.)
CREATE TRIGGER audit_records_no_update BEFORE UPDATE ON audit_records
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER audit_records_no_delete BEFORE DELETE ON audit_records
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;

-- The right edge of the Merkle tree after the last record (one row).
CREATE TABLE audit_head (
    id        INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    size      INTEGER NOT NULL,
    frontier  BLOB NOT NULL  -- concatenated 32-byte hashes, largest subtree first
);
INSERT INTO audit_head (id, size, frontier) VALUES (1, 0, x'');

CREATE TABLE checkpoints (
    size       INTEGER NOT NULL,
    ts_ms      INTEGER NOT NULL,
    origin     TEXT NOT NULL,
    root       BLOB NOT NULL,
    key_id     TEXT NOT NULL,
    signature  BLOB NOT NULL,
    PRIMARY KEY (size, ts_ms)
);

CREATE TABLE meta (
    key    TEXT PRIMARY KEY NOT NULL,
    value  TEXT NOT NULL
);
