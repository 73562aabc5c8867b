-- Agent credentials (issue 4): workload keys, client-assertion replay protection,
-- access-token signing keys, revoked access tokens, kill switches.

-- Public keys an identity authenticates with (private_key_jwt, RFC 7523): one JWK each.
CREATE TABLE identity_keys (
    identity_id  TEXT NOT NULL,
    kid          TEXT NOT NULL,
    jwk          TEXT NOT NULL,          -- the public JWK (JSON); never a private key
    added_ms     BIGINT NOT NULL,
    revoked_ms   BIGINT,
    PRIMARY KEY (identity_id, kid)
);

-- A client assertion's jti is accepted once (RFC 7523 §3): the insert fails for a replay,
-- on every replica alike. Rows are removed after their assertion expired.
CREATE TABLE used_assertions (
    client_id  TEXT NOT NULL,
    jti        TEXT NOT NULL,
    exp_ms     BIGINT NOT NULL,
    PRIMARY KEY (client_id, jti)
);
CREATE INDEX used_assertions_exp ON used_assertions (exp_ms);

-- Keys that sign access tokens. The private key is stored only wrapped (AES-256-GCM under
-- a key derived from the checkpoint signing key file every replica holds), so the
-- database alone never reveals it.
CREATE TABLE token_keys (
    kid              TEXT PRIMARY KEY NOT NULL,
    alg              TEXT NOT NULL,
    public_jwk       TEXT NOT NULL,
    wrapped_private  BYTEA NOT NULL,
    created_ms       BIGINT NOT NULL,
    retired_ms       BIGINT,               -- signs no more tokens from then on
    unpublish_ms     BIGINT                -- leaves the JWKS then (every token it signed expired)
);

-- Access tokens revoked before their expiry (RFC 7009); kept until they would expire.
CREATE TABLE revoked_tokens (
    jti         TEXT PRIMARY KEY NOT NULL,
    exp_ms      BIGINT NOT NULL,
    revoked_ms  BIGINT NOT NULL
);

CREATE TABLE kill_switches (
    id              TEXT PRIMARY KEY NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('identity', 'owner', 'environment', 'all_ai')),
    value           TEXT,
    engaged_ms      BIGINT NOT NULL,
    engaged_by      TEXT NOT NULL,
    reason          TEXT NOT NULL,
    released_ms     BIGINT,
    released_by     TEXT,
    release_reason  TEXT
);

-- Token issuance and refusal are decisions, not changes: leave them out of the change
-- journal's index like `decision` (the query in `changes_since` names the same kinds).
DROP INDEX audit_records_changes;
CREATE INDEX audit_records_changes ON audit_records (seq)
    WHERE kind NOT IN ('decision', 'credential.issued', 'credential.refused');
