-- warrant schema v1 (PostgreSQL); the same tables, columns and rules as migrations/sqlite.

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
    created_ms    BIGINT NOT NULL,
    updated_ms    BIGINT NOT NULL,
    last_used_ms  BIGINT
);
-- Retired identities are never deleted, so these also keep their URI and name from reuse.
-- The index names are what the backend reads to tell which rule refused a write.
CREATE UNIQUE INDEX identities_spiffe_id ON identities (spiffe_id);
CREATE UNIQUE INDEX identities_name_env ON identities (name, environment);
CREATE INDEX identities_owner ON identities (owner, id);
CREATE INDEX identities_env ON identities (environment, id);

CREATE TABLE policy_versions (
    version       BIGINT PRIMARY KEY NOT NULL,
    schema_text   TEXT NOT NULL,
    policies_text TEXT NOT NULL,
    created_ms    BIGINT NOT NULL,
    actor         TEXT NOT NULL,
    comment       TEXT NOT NULL
);

CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    hash        BYTEA NOT NULL UNIQUE,  -- SHA-256 of the token; the token itself is never stored
    role        TEXT NOT NULL,
    created_ms  BIGINT NOT NULL,
    revoked_ms  BIGINT
);

CREATE TABLE audit_records (
    seq        BIGINT PRIMARY KEY NOT NULL,
    ts_ms      BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    actor      TEXT NOT NULL,
    subject    TEXT NOT NULL,
    payload    TEXT NOT NULL,
    leaf_hash  BYTEA NOT NULL,
    root       BYTEA NOT NULL
);
CREATE INDEX audit_records_kind ON audit_records (kind, seq);
CREATE INDEX audit_records_subject ON audit_records (subject, seq);

-- Append-only: the database refuses to change or remove audit records. (A superuser can
-- drop these triggers; the Merkle tree and the signed checkpoints are what detect that.)
CREATE FUNCTION audit_records_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit records are append-only';
END;
$$;
CREATE TRIGGER audit_records_no_update BEFORE UPDATE ON audit_records
    FOR EACH ROW EXECUTE FUNCTION audit_records_append_only();
CREATE TRIGGER audit_records_no_delete BEFORE DELETE ON audit_records
    FOR EACH ROW EXECUTE FUNCTION audit_records_append_only();
CREATE TRIGGER audit_records_no_truncate BEFORE TRUNCATE ON audit_records
    FOR EACH STATEMENT EXECUTE FUNCTION audit_records_append_only();

-- The right edge of the Merkle tree after the last record (one row). Every write
-- transaction locks this row first (SELECT ... FOR UPDATE), so writers on all replicas
-- append one after the other and the chain never forks.
CREATE TABLE audit_head (
    id        INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    size      BIGINT NOT NULL,
    frontier  BYTEA NOT NULL  -- concatenated 32-byte hashes, largest subtree first
);
INSERT INTO audit_head (id, size, frontier) VALUES (1, 0, '\x'::bytea);

CREATE TABLE checkpoints (
    size       BIGINT NOT NULL,
    ts_ms      BIGINT NOT NULL,
    origin     TEXT NOT NULL,
    root       BYTEA NOT NULL,
    key_id     TEXT NOT NULL,
    signature  BYTEA NOT NULL,
    PRIMARY KEY (size, ts_ms)
);

CREATE TABLE meta (
    key    TEXT PRIMARY KEY NOT NULL,
    value  TEXT NOT NULL
);
