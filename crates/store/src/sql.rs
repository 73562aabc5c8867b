//! What the SQL backends share: error mapping, decoding rows into domain values, and the
//! statements that read and write the same way on SQLite and PostgreSQL.
//!
//! The shared statements are written once, with `$N` placeholders (which both sqlx drivers
//! accept), inside [`impl_store!`] and [`impl_write_tx!`]; each backend instantiates them
//! with its own pool and transaction types and adds only what really differs (row locks,
//! bulk inserts). So the two backends cannot drift apart in what they store or return.

use crate::{PolicyVersion, Result, StoreError, TokenRow, Unique};
use sqlx::{ColumnIndex, Row, Type};
use warrant_core::audit::{AuditRecord, ChainHead};
use warrant_core::checkpoint::Checkpoint;
use warrant_core::credentials::{KillSwitch, KillTarget};
use warrant_core::identity::{Identity, IdentityKind, IdentityState};
use warrant_core::merkle::{CompactTree, Hash};

/// Maps a driver error: unique violations become [`StoreError::Conflict`] (named by the
/// violated constraint: PostgreSQL reports the index name, SQLite the columns), everything
/// else (connection refused, pool timeout, I/O, ...) [`StoreError::Unavailable`].
pub(crate) fn db_error(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        if db.is_unique_violation() {
            let what = db.constraint().unwrap_or_else(|| db.message());
            return StoreError::Conflict(if what.contains("spiffe_id") {
                Unique::SpiffeId
            } else if what.contains("identities_name_env")
                || what.contains("identities.name")
                || what.contains("environment")
            {
                Unique::NameEnvironment
            } else {
                Unique::Other(what.to_owned())
            });
        }
    }
    StoreError::Unavailable(e.to_string())
}

/// Text with a NUL character matches nothing stored: PostgreSQL cannot even hold it (it
/// refuses such a parameter), so reads answer "nothing" on every backend alike instead
/// of failing.
pub(crate) fn has_nul(s: &str) -> bool {
    s.contains('\0')
}

pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

pub(crate) fn hash_from(bytes: &[u8], what: &str) -> Result<Hash> {
    bytes
        .try_into()
        .map_err(|_| corrupt(format!("{what} is not 32 bytes")))
}

pub(crate) fn u64_from(v: i64, what: &str) -> Result<u64> {
    u64::try_from(v).map_err(|_| corrupt(format!("{what} is negative")))
}

pub(crate) fn i64_from(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| corrupt("value out of range"))
}

/// Typed column access for any backend's rows, with errors mapped once.
pub(crate) trait RowExt {
    fn text(&self, col: &str) -> Result<String>;
    fn int(&self, col: &str) -> Result<i64>;
    fn opt_int(&self, col: &str) -> Result<Option<i64>>;
    fn opt_text(&self, col: &str) -> Result<Option<String>>;
    fn bytes(&self, col: &str) -> Result<Vec<u8>>;
}

impl<R> RowExt for R
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + Type<R::Database>,
{
    fn text(&self, col: &str) -> Result<String> {
        self.try_get(col).map_err(db_error)
    }
    fn int(&self, col: &str) -> Result<i64> {
        self.try_get(col).map_err(db_error)
    }
    fn opt_int(&self, col: &str) -> Result<Option<i64>> {
        self.try_get(col).map_err(db_error)
    }
    fn opt_text(&self, col: &str) -> Result<Option<String>> {
        self.try_get(col).map_err(db_error)
    }
    fn bytes(&self, col: &str) -> Result<Vec<u8>> {
        self.try_get(col).map_err(db_error)
    }
}

pub(crate) fn identity_from_row(row: &impl RowExt) -> Result<Identity> {
    let kind = row.text("kind")?;
    let state = row.text("state")?;
    let list = |c: &str| -> Result<Vec<String>> {
        serde_json::from_str(&row.text(c)?).map_err(|e| corrupt(format!("{c}: {e}")))
    };
    Ok(Identity {
        id: row.text("id")?,
        name: row.text("name")?,
        kind: IdentityKind::parse(&kind).ok_or_else(|| corrupt(format!("kind `{kind}`")))?,
        environment: row.text("environment")?,
        spiffe_id: row.text("spiffe_id")?,
        owner: row.text("owner")?,
        description: row.text("description")?,
        state: IdentityState::parse(&state).ok_or_else(|| corrupt(format!("state `{state}`")))?,
        roles: list("roles")?,
        entitlements: list("entitlements")?,
        created_ms: row.int("created_ms")?,
        updated_ms: row.int("updated_ms")?,
        last_used_ms: row.opt_int("last_used_ms")?,
    })
}

/// The JSON columns of an identity (`roles`, `entitlements`).
pub(crate) fn identity_lists(i: &Identity) -> Result<(String, String)> {
    Ok((
        serde_json::to_string(&i.roles).map_err(corrupt)?,
        serde_json::to_string(&i.entitlements).map_err(corrupt)?,
    ))
}

pub(crate) fn record_from_row(row: &impl RowExt) -> Result<AuditRecord> {
    Ok(AuditRecord {
        seq: u64_from(row.int("seq")?, "seq")?,
        ts_ms: row.int("ts_ms")?,
        kind: row.text("kind")?,
        actor: row.text("actor")?,
        subject: row.text("subject")?,
        payload: row.text("payload")?,
        leaf_hash: hash_from(&row.bytes("leaf_hash")?, "leaf hash")?,
        root: hash_from(&row.bytes("root")?, "root")?,
    })
}

pub(crate) fn checkpoint_from_row(row: &impl RowExt) -> Result<Checkpoint> {
    Ok(Checkpoint {
        origin: row.text("origin")?,
        size: u64_from(row.int("size")?, "size")?,
        root: hash_from(&row.bytes("root")?, "checkpoint root")?,
        ts_ms: row.int("ts_ms")?,
        key_id: row.text("key_id")?,
        signature: row
            .bytes("signature")?
            .as_slice()
            .try_into()
            .map_err(|_| corrupt("signature is not 64 bytes"))?,
    })
}

pub(crate) fn policy_from_row(row: &impl RowExt) -> Result<PolicyVersion> {
    Ok(PolicyVersion {
        version: u64_from(row.int("version")?, "version")?,
        schema_text: row.text("schema_text")?,
        policies_text: row.text("policies_text")?,
        created_ms: row.int("created_ms")?,
        actor: row.text("actor")?,
        comment: row.text("comment")?,
    })
}

pub(crate) fn identity_key_from_row(row: &impl RowExt) -> Result<crate::IdentityKeyRow> {
    Ok(crate::IdentityKeyRow {
        identity_id: row.text("identity_id")?,
        kid: row.text("kid")?,
        jwk: row.text("jwk")?,
        added_ms: row.int("added_ms")?,
        revoked_ms: row.opt_int("revoked_ms")?,
    })
}

pub(crate) fn token_key_from_row(row: &impl RowExt) -> Result<crate::TokenKeyRow> {
    Ok(crate::TokenKeyRow {
        kid: row.text("kid")?,
        alg: row.text("alg")?,
        public_jwk: row.text("public_jwk")?,
        wrapped_private: row.bytes("wrapped_private")?,
        created_ms: row.int("created_ms")?,
        retired_ms: row.opt_int("retired_ms")?,
        unpublish_ms: row.opt_int("unpublish_ms")?,
    })
}

pub(crate) fn revoked_from_row(row: &impl RowExt) -> Result<crate::RevokedToken> {
    Ok(crate::RevokedToken {
        jti: row.text("jti")?,
        exp_ms: row.int("exp_ms")?,
        revoked_ms: row.int("revoked_ms")?,
    })
}

pub(crate) fn used_assertion_from_row(row: &impl RowExt) -> Result<crate::UsedAssertion> {
    Ok(crate::UsedAssertion {
        client_id: row.text("client_id")?,
        jti: row.text("jti")?,
        exp_ms: row.int("exp_ms")?,
    })
}

pub(crate) fn kill_switch_from_row(row: &impl RowExt) -> Result<KillSwitch> {
    let kind = row.text("kind")?;
    let value = row.opt_text("value")?;
    let target = KillTarget::parse(&kind, value.as_deref())
        .map_err(|e| corrupt(format!("kill switch: {e}")))?;
    Ok(KillSwitch {
        id: row.text("id")?,
        target,
        engaged_ms: row.int("engaged_ms")?,
        engaged_by: row.text("engaged_by")?,
        reason: row.text("reason")?,
        released_ms: row.opt_int("released_ms")?,
        released_by: row.opt_text("released_by")?,
        release_reason: row.opt_text("release_reason")?,
    })
}

pub(crate) fn token_from_row(row: &impl RowExt) -> Result<TokenRow> {
    Ok(TokenRow {
        id: row.text("id")?,
        name: row.text("name")?,
        hash: hash_from(&row.bytes("hash")?, "token hash")?,
        role: row.text("role")?,
        created_ms: row.int("created_ms")?,
        revoked_ms: row.opt_int("revoked_ms")?,
        human: row.opt_text("human")?,
    })
}

pub(crate) fn object_from_row(row: &impl RowExt) -> Result<crate::ObjectRow> {
    Ok(crate::ObjectRow {
        kind: row.text("kind")?,
        id: row.text("id")?,
        state: row.text("state")?,
        body: row.text("body")?,
        due_ms: row.opt_int("due_ms")?,
        created_ms: row.int("created_ms")?,
        updated_ms: row.int("updated_ms")?,
    })
}

/// Refuses a governance object whose text no backend can hold alike (PostgreSQL refuses
/// NUL characters, SQLite would store them): the same error on both, before any SQL.
pub(crate) fn check_object(o: &crate::ObjectRow) -> Result<()> {
    if [&o.kind, &o.id, &o.state, &o.body]
        .into_iter()
        .any(|v| has_nul(v))
    {
        return Err(corrupt(format!(
            "object {:?}/{:?} contains a NUL character",
            o.kind, o.id
        )));
    }
    Ok(())
}

/// Stores a new governance object; [`impl_write_tx!`] binds the columns in this order.
pub(crate) const INSERT_OBJECT: &str = "INSERT INTO gov_objects (kind, id, state, body, due_ms, created_ms, updated_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)";

/// [`INSERT_OBJECT`], or an update of the object with that `(kind, id)` (its
/// `created_ms` stays).
pub(crate) const PUT_OBJECT: &str = "INSERT INTO gov_objects (kind, id, state, body, due_ms, created_ms, updated_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)
     ON CONFLICT (kind, id) DO UPDATE SET state = excluded.state, body = excluded.body, due_ms = excluded.due_ms, updated_ms = excluded.updated_ms";

pub(crate) fn change_from_row(row: &impl RowExt) -> Result<crate::ChangeRef> {
    Ok(crate::ChangeRef {
        seq: u64_from(row.int("seq")?, "seq")?,
        kind: row.text("kind")?,
        subject: row.text("subject")?,
    })
}

/// The audit head row (`size`, `frontier`): the right edge of the Merkle tree.
pub(crate) fn head_from_row(row: &impl RowExt) -> Result<ChainHead> {
    let size = row.int("size")?;
    let frontier = row.bytes("frontier")?;
    if !frontier.len().is_multiple_of(32) {
        return Err(corrupt("audit head frontier length"));
    }
    let hashes: Vec<Hash> = frontier
        .chunks_exact(32)
        .map(|c| hash_from(c, "frontier hash"))
        .collect::<Result<_>>()?;
    let tree = CompactTree::from_parts(u64_from(size, "audit head size")?, hashes)
        .ok_or_else(|| corrupt("audit head frontier does not match its size"))?;
    Ok(ChainHead { tree })
}

/// Leaf hashes from `(seq, leaf_hash)` rows in seq order; every record below `size` must be
/// there.
pub(crate) fn leaf_hashes<R: RowExt>(rows: &[R], size: u64) -> Result<Vec<Hash>> {
    let mut out = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        if u64_from(row.int("seq")?, "seq")? != i as u64 {
            return Err(corrupt(format!("audit record {i} is missing")));
        }
        out.push(hash_from(&row.bytes("leaf_hash")?, "leaf hash")?);
    }
    if out.len() as u64 != size {
        return Err(corrupt(format!(
            "audit log holds {} records, expected {size}",
            out.len()
        )));
    }
    Ok(out)
}

/// Decoding query results into domain values, with storage errors mapped once.
pub(crate) trait Rows<R, T> {
    type Out;
    fn decode_with(self, decode: fn(&R) -> Result<T>) -> Result<Self::Out>;
}

impl<R, T> Rows<R, T> for std::result::Result<Option<R>, sqlx::Error> {
    type Out = Option<T>;
    fn decode_with(self, decode: fn(&R) -> Result<T>) -> Result<Option<T>> {
        self.map_err(db_error)?.as_ref().map(decode).transpose()
    }
}

impl<R, T> Rows<R, T> for std::result::Result<Vec<R>, sqlx::Error> {
    type Out = Vec<T>;
    fn decode_with(self, decode: fn(&R) -> Result<T>) -> Result<Vec<T>> {
        self.map_err(db_error)?.iter().map(decode).collect()
    }
}

/// The audit head, read. PostgreSQL appends ` FOR UPDATE` inside write transactions.
pub(crate) const SELECT_HEAD: &str = "SELECT size, frontier FROM audit_head WHERE id = 1";

/// Implements [`crate::Store`] for a backend struct with fields `pool` (reads) and `writer`
/// (the one write connection); `$tx` is its write transaction, built as `$tx { tx }`. The
/// methods that differ between backends (`shared`, `watch_changes`, `try_job_lock`) are
/// passed in as `{ items }`.
macro_rules! impl_store {
    ($store:ty, $db:ty, $tx:ident, { $($specific:item)* }) => {
        impl $store {
            /// Closes the read and write pools (waits for connections in use).
            pub async fn close(&self) {
                self.pool.close().await;
                self.writer.close().await;
            }
        }

        #[async_trait::async_trait]
        impl $crate::Store for $store {
            $($specific)*

            async fn begin_write(&self) -> $crate::Result<Box<dyn $crate::WriteTx>> {
                let tx = self.writer.begin().await.map_err($crate::sql::db_error)?;
                Ok(Box::new($tx { tx }))
            }

            async fn ping(&self) -> $crate::Result<()> {
                sqlx::query("SELECT 1")
                    .execute(&self.pool)
                    .await
                    .map_err($crate::sql::db_error)?;
                Ok(())
            }

            async fn get_identity(&self, id: &str) -> $crate::Result<Option<Identity>> {
                if $crate::sql::has_nul(id) {
                    return Ok(None);
                }
                sqlx::query("SELECT * FROM identities WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .decode_with($crate::sql::identity_from_row)
            }

            async fn list_identities(
                &self,
                f: &$crate::IdentityFilter,
            ) -> $crate::Result<Vec<Identity>> {
                if [&f.kind, &f.environment, &f.state, &f.owner, &f.after]
                    .into_iter()
                    .flatten()
                    .any(|v| $crate::sql::has_nul(v))
                {
                    return Ok(vec![]);
                }
                let mut q = sqlx::QueryBuilder::<$db>::new("SELECT * FROM identities WHERE 1=1");
                for (column, value) in [
                    (" AND kind = ", &f.kind),
                    (" AND environment = ", &f.environment),
                    (" AND state = ", &f.state),
                    (" AND owner = ", &f.owner),
                    (" AND id > ", &f.after),
                ] {
                    if let Some(v) = value {
                        q.push(column).push_bind(v.as_str());
                    }
                }
                q.push(" ORDER BY id LIMIT ").push_bind(i64::from(f.limit));
                q.build()
                    .fetch_all(&self.pool)
                    .await
                    .decode_with($crate::sql::identity_from_row)
            }

            async fn all_identities(&self) -> $crate::Result<Vec<Identity>> {
                sqlx::query("SELECT * FROM identities ORDER BY id")
                    .fetch_all(&self.pool)
                    .await
                    .decode_with($crate::sql::identity_from_row)
            }

            async fn current_policy(&self) -> $crate::Result<Option<$crate::PolicyVersion>> {
                sqlx::query("SELECT * FROM policy_versions ORDER BY version DESC LIMIT 1")
                    .fetch_optional(&self.pool)
                    .await
                    .decode_with($crate::sql::policy_from_row)
            }

            async fn policy_version(
                &self,
                version: u64,
            ) -> $crate::Result<Option<$crate::PolicyVersion>> {
                let Ok(version) = i64::try_from(version) else {
                    return Ok(None);
                };
                sqlx::query("SELECT * FROM policy_versions WHERE version = $1")
                    .bind(version)
                    .fetch_optional(&self.pool)
                    .await
                    .decode_with($crate::sql::policy_from_row)
            }

            async fn policy_history(
                &self,
                limit: u32,
            ) -> $crate::Result<Vec<$crate::PolicyVersion>> {
                sqlx::query("SELECT * FROM policy_versions ORDER BY version DESC LIMIT $1")
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
                    .decode_with($crate::sql::policy_from_row)
            }

            async fn tokens(&self) -> $crate::Result<Vec<$crate::TokenRow>> {
                sqlx::query("SELECT * FROM api_tokens ORDER BY created_ms, id")
                    .fetch_all(&self.pool)
                    .await
                    .decode_with($crate::sql::token_from_row)
            }

            async fn audit_records(
                &self,
                f: &$crate::AuditFilter,
            ) -> $crate::Result<Vec<AuditRecord>> {
                if [&f.kind, &f.actor, &f.subject]
                    .into_iter()
                    .flatten()
                    .any(|v| $crate::sql::has_nul(v))
                {
                    return Ok(vec![]);
                }
                let mut q = sqlx::QueryBuilder::<$db>::new("SELECT * FROM audit_records WHERE 1=1");
                for (column, value) in [
                    (" AND kind = ", &f.kind),
                    (" AND actor = ", &f.actor),
                    (" AND subject = ", &f.subject),
                ] {
                    if let Some(v) = value {
                        q.push(column).push_bind(v.as_str());
                    }
                }
                if let Some(v) = f.from_ms {
                    q.push(" AND ts_ms >= ").push_bind(v);
                }
                if let Some(v) = f.to_ms {
                    q.push(" AND ts_ms < ").push_bind(v);
                }
                if let Some(v) = f.from_seq {
                    // Beyond i64 no record can exist: clamp rather than fail.
                    let v = i64::try_from(v).unwrap_or(i64::MAX);
                    q.push(if f.descending {
                        " AND seq <= "
                    } else {
                        " AND seq >= "
                    })
                    .push_bind(v);
                }
                q.push(if f.descending {
                    " ORDER BY seq DESC LIMIT "
                } else {
                    " ORDER BY seq ASC LIMIT "
                })
                .push_bind(i64::from(f.limit));
                q.build()
                    .fetch_all(&self.pool)
                    .await
                    .decode_with($crate::sql::record_from_row)
            }

            async fn audit_record(&self, seq: u64) -> $crate::Result<Option<AuditRecord>> {
                let Ok(seq) = i64::try_from(seq) else {
                    return Ok(None);
                };
                sqlx::query("SELECT * FROM audit_records WHERE seq = $1")
                    .bind(seq)
                    .fetch_optional(&self.pool)
                    .await
                    .decode_with($crate::sql::record_from_row)
            }

            async fn audit_leaf_hashes(&self, size: u64) -> $crate::Result<Vec<Hash>> {
                let rows = sqlx::query(
                    "SELECT seq, leaf_hash FROM audit_records WHERE seq < $1 ORDER BY seq",
                )
                .bind($crate::sql::i64_from(size)?)
                .fetch_all(&self.pool)
                .await
                .map_err($crate::sql::db_error)?;
                $crate::sql::leaf_hashes(&rows, size)
            }

            async fn audit_head(&self) -> $crate::Result<ChainHead> {
                let row = sqlx::query($crate::sql::SELECT_HEAD)
                    .fetch_one(&self.pool)
                    .await
                    .map_err($crate::sql::db_error)?;
                $crate::sql::head_from_row(&row)
            }

            async fn checkpoints(&self) -> $crate::Result<Vec<Checkpoint>> {
                sqlx::query("SELECT * FROM checkpoints ORDER BY size, ts_ms")
                    .fetch_all(&self.pool)
                    .await
                    .decode_with($crate::sql::checkpoint_from_row)
            }

            async fn latest_checkpoint(&self) -> $crate::Result<Option<Checkpoint>> {
                sqlx::query("SELECT * FROM checkpoints ORDER BY size DESC, ts_ms DESC LIMIT 1")
                    .fetch_optional(&self.pool)
                    .await
                    .decode_with($crate::sql::checkpoint_from_row)
            }

            async fn identity_keys(
                &self,
                identity_id: &str,
            ) -> $crate::Result<Vec<$crate::IdentityKeyRow>> {
                if $crate::sql::has_nul(identity_id) {
                    return Ok(vec![]);
                }
                sqlx::query("SELECT * FROM identity_keys WHERE identity_id = $1 ORDER BY added_ms, kid")
                    .bind(identity_id)
                    .fetch_all(&self.pool)
                    .await
                    .decode_with($crate::sql::identity_key_from_row)
            }

            async fn token_keys(&self) -> $crate::Result<Vec<$crate::TokenKeyRow>> {
                sqlx::query("SELECT * FROM token_keys ORDER BY created_ms, kid")
                    .fetch_all(&self.pool)
                    .await
                    .decode_with($crate::sql::token_key_from_row)
            }

            async fn revoked_tokens(
                &self,
                now_ms: warrant_core::Millis,
            ) -> $crate::Result<Vec<$crate::RevokedToken>> {
                sqlx::query("SELECT * FROM revoked_tokens WHERE exp_ms > $1 ORDER BY revoked_ms, jti")
                    .bind(now_ms)
                    .fetch_all(&self.pool)
                    .await
                    .decode_with($crate::sql::revoked_from_row)
            }

            async fn kill_switches(
                &self,
                include_released: bool,
            ) -> $crate::Result<Vec<warrant_core::credentials::KillSwitch>> {
                let sql = if include_released {
                    "SELECT * FROM kill_switches ORDER BY engaged_ms DESC, id DESC"
                } else {
                    "SELECT * FROM kill_switches WHERE released_ms IS NULL ORDER BY engaged_ms DESC, id DESC"
                };
                sqlx::query(sql)
                    .fetch_all(&self.pool)
                    .await
                    .decode_with($crate::sql::kill_switch_from_row)
            }

            async fn all_identity_keys(&self) -> $crate::Result<Vec<$crate::IdentityKeyRow>> {
                sqlx::query("SELECT * FROM identity_keys ORDER BY identity_id, added_ms, kid")
                    .fetch_all(&self.pool)
                    .await
                    .decode_with($crate::sql::identity_key_from_row)
            }

            async fn all_revoked_tokens(&self) -> $crate::Result<Vec<$crate::RevokedToken>> {
                sqlx::query("SELECT * FROM revoked_tokens ORDER BY revoked_ms, jti")
                    .fetch_all(&self.pool)
                    .await
                    .decode_with($crate::sql::revoked_from_row)
            }

            async fn used_assertions(&self) -> $crate::Result<Vec<$crate::UsedAssertion>> {
                sqlx::query("SELECT client_id, jti, exp_ms FROM used_assertions ORDER BY client_id, jti")
                    .fetch_all(&self.pool)
                    .await
                    .decode_with($crate::sql::used_assertion_from_row)
            }

            async fn get_object(
                &self,
                kind: &str,
                id: &str,
            ) -> $crate::Result<Option<$crate::ObjectRow>> {
                if $crate::sql::has_nul(kind) || $crate::sql::has_nul(id) {
                    return Ok(None);
                }
                sqlx::query("SELECT * FROM gov_objects WHERE kind = $1 AND id = $2")
                    .bind(kind)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .decode_with($crate::sql::object_from_row)
            }

            async fn list_objects(
                &self,
                f: &$crate::ObjectFilter,
            ) -> $crate::Result<Vec<$crate::ObjectRow>> {
                if [Some(&f.kind), f.state.as_ref(), f.after_id.as_ref()]
                    .into_iter()
                    .flatten()
                    .any(|v| $crate::sql::has_nul(v))
                {
                    return Ok(vec![]);
                }
                // Served by `gov_objects_state` with a state, by the primary key without.
                let mut q =
                    sqlx::QueryBuilder::<$db>::new("SELECT * FROM gov_objects WHERE kind = ");
                q.push_bind(f.kind.as_str());
                if let Some(v) = &f.state {
                    q.push(" AND state = ").push_bind(v.as_str());
                }
                if let Some(v) = &f.after_id {
                    q.push(" AND id > ").push_bind(v.as_str());
                }
                q.push(" ORDER BY id");
                if f.limit > 0 {
                    q.push(" LIMIT ").push_bind(i64::from(f.limit));
                }
                q.build()
                    .fetch_all(&self.pool)
                    .await
                    .decode_with($crate::sql::object_from_row)
            }

            async fn all_objects(&self, kind: &str) -> $crate::Result<Vec<$crate::ObjectRow>> {
                if $crate::sql::has_nul(kind) {
                    return Ok(vec![]);
                }
                sqlx::query("SELECT * FROM gov_objects WHERE kind = $1 ORDER BY id")
                    .bind(kind)
                    .fetch_all(&self.pool)
                    .await
                    .decode_with($crate::sql::object_from_row)
            }

            async fn all_objects_any_kind(&self) -> $crate::Result<Vec<$crate::ObjectRow>> {
                sqlx::query("SELECT * FROM gov_objects ORDER BY kind, id")
                    .fetch_all(&self.pool)
                    .await
                    .decode_with($crate::sql::object_from_row)
            }

            async fn due_objects(
                &self,
                now_ms: warrant_core::Millis,
                limit: u32,
            ) -> $crate::Result<Vec<$crate::ObjectRow>> {
                // Served by the partial index `gov_objects_due` (objects with a timer).
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "SELECT * FROM gov_objects WHERE due_ms IS NOT NULL AND due_ms <= ",
                );
                q.push_bind(now_ms);
                q.push(" ORDER BY due_ms, kind, id");
                if limit > 0 {
                    q.push(" LIMIT ").push_bind(i64::from(limit));
                }
                q.build()
                    .fetch_all(&self.pool)
                    .await
                    .decode_with($crate::sql::object_from_row)
            }

            async fn meta(&self, key: &str) -> $crate::Result<Option<String>> {
                sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
                    .bind(key)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::sql::db_error)
            }
        }
    };
}
pub(crate) use impl_store;

/// Defines a backend's write transaction `$tx` (holding a sqlx `Transaction` of `$db`) and
/// implements [`crate::WriteTx`] for it. The methods that differ between backends
/// (`load_chain_head`, `append_records`, `touch_identities`, `notify_changed`) are passed in as `{ items }`;
/// the backend also defines `async fn lock_policy_versions(&mut self) -> Result<()>`,
/// which runs before a new policy version is numbered.
macro_rules! impl_write_tx {
    ($tx:ident, $db:ty, { $($specific:item)* }) => {
        struct $tx {
            tx: sqlx::Transaction<'static, $db>,
        }

        impl $tx {
            async fn exec(&mut self, sql: &str) -> $crate::Result<()> {
                sqlx::query(sql)
                    .execute(&mut *self.tx)
                    .await
                    .map_err($crate::sql::db_error)?;
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl $crate::WriteTx for $tx {
            $($specific)*

            async fn savepoint(&mut self) -> $crate::Result<()> {
                self.exec("SAVEPOINT op").await
            }

            async fn release_savepoint(&mut self) -> $crate::Result<()> {
                self.exec("RELEASE SAVEPOINT op").await
            }

            async fn rollback_to_savepoint(&mut self) -> $crate::Result<()> {
                self.exec("ROLLBACK TO SAVEPOINT op").await?;
                self.exec("RELEASE SAVEPOINT op").await
            }

            async fn store_chain_head(&mut self, head: &ChainHead) -> $crate::Result<()> {
                let frontier: Vec<u8> = head.tree.frontier().concat();
                sqlx::query("UPDATE audit_head SET size = $1, frontier = $2 WHERE id = 1")
                    .bind($crate::sql::i64_from(head.tree.size())?)
                    .bind(frontier)
                    .execute(&mut *self.tx)
                    .await
                    .map_err($crate::sql::db_error)?;
                Ok(())
            }

            async fn insert_checkpoint(&mut self, cp: &Checkpoint) -> $crate::Result<()> {
                sqlx::query(
                    "INSERT INTO checkpoints (size, ts_ms, origin, root, key_id, signature)
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                )
                .bind($crate::sql::i64_from(cp.size)?)
                .bind(cp.ts_ms)
                .bind(&cp.origin)
                .bind(&cp.root[..])
                .bind(&cp.key_id)
                .bind(&cp.signature[..])
                .execute(&mut *self.tx)
                .await
                .map_err($crate::sql::db_error)?;
                Ok(())
            }

            async fn changes_since(
                &mut self,
                from_seq: u64,
            ) -> $crate::Result<Vec<$crate::ChangeRef>> {
                // Served by the partial index `audit_records_changes` (decisions left out).
                let rows = sqlx::query(
                    "SELECT seq, kind, subject FROM audit_records WHERE kind NOT IN ('decision', 'credential.issued', 'credential.refused') AND seq >= $1 ORDER BY seq",
                )
                .bind($crate::sql::i64_from(from_seq)?)
                .fetch_all(&mut *self.tx)
                .await
                .map_err($crate::sql::db_error)?;
                rows.iter().map($crate::sql::change_from_row).collect()
            }

            async fn current_policy(&mut self) -> $crate::Result<Option<$crate::PolicyVersion>> {
                sqlx::query("SELECT * FROM policy_versions ORDER BY version DESC LIMIT 1")
                    .fetch_optional(&mut *self.tx)
                    .await
                    .decode_with($crate::sql::policy_from_row)
            }

            async fn get_token(&mut self, id: &str) -> $crate::Result<Option<$crate::TokenRow>> {
                if $crate::sql::has_nul(id) {
                    return Ok(None);
                }
                sqlx::query("SELECT * FROM api_tokens WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *self.tx)
                    .await
                    .decode_with($crate::sql::token_from_row)
            }

            async fn init_meta(&mut self, key: &str, value: &str) -> $crate::Result<String> {
                sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
                    .bind(key)
                    .bind(value)
                    .execute(&mut *self.tx)
                    .await
                    .map_err($crate::sql::db_error)?;
                sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
                    .bind(key)
                    .fetch_one(&mut *self.tx)
                    .await
                    .map_err($crate::sql::db_error)
            }

            async fn insert_identity_key(
                &mut self,
                k: &$crate::IdentityKeyRow,
            ) -> $crate::Result<()> {
                sqlx::query(
                    "INSERT INTO identity_keys (identity_id, kid, jwk, added_ms, revoked_ms) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&k.identity_id)
                .bind(&k.kid)
                .bind(&k.jwk)
                .bind(k.added_ms)
                .bind(k.revoked_ms)
                .execute(&mut *self.tx)
                .await
                .map_err($crate::sql::db_error)?;
                Ok(())
            }

            async fn revoke_identity_key(
                &mut self,
                identity_id: &str,
                kid: &str,
                at: warrant_core::Millis,
            ) -> $crate::Result<bool> {
                if $crate::sql::has_nul(identity_id) || $crate::sql::has_nul(kid) {
                    return Ok(false);
                }
                let done = sqlx::query(
                    "UPDATE identity_keys SET revoked_ms = $1 WHERE identity_id = $2 AND kid = $3 AND revoked_ms IS NULL",
                )
                .bind(at)
                .bind(identity_id)
                .bind(kid)
                .execute(&mut *self.tx)
                .await
                .map_err($crate::sql::db_error)?;
                Ok(done.rows_affected() > 0)
            }

            async fn use_assertion(
                &mut self,
                client_id: &str,
                jti: &str,
                exp_ms: warrant_core::Millis,
            ) -> $crate::Result<bool> {
                let done = sqlx::query(
                    "INSERT INTO used_assertions (client_id, jti, exp_ms) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                )
                .bind(client_id)
                .bind(jti)
                .bind(exp_ms)
                .execute(&mut *self.tx)
                .await
                .map_err($crate::sql::db_error)?;
                Ok(done.rows_affected() > 0)
            }

            async fn token_keys(&mut self) -> $crate::Result<Vec<$crate::TokenKeyRow>> {
                sqlx::query("SELECT * FROM token_keys ORDER BY created_ms, kid")
                    .fetch_all(&mut *self.tx)
                    .await
                    .decode_with($crate::sql::token_key_from_row)
            }

            async fn insert_token_key(&mut self, k: &$crate::TokenKeyRow) -> $crate::Result<()> {
                sqlx::query(
                    "INSERT INTO token_keys (kid, alg, public_jwk, wrapped_private, created_ms, retired_ms, unpublish_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&k.kid)
                .bind(&k.alg)
                .bind(&k.public_jwk)
                .bind(&k.wrapped_private)
                .bind(k.created_ms)
                .bind(k.retired_ms)
                .bind(k.unpublish_ms)
                .execute(&mut *self.tx)
                .await
                .map_err($crate::sql::db_error)?;
                Ok(())
            }

            async fn retire_token_keys(
                &mut self,
                at: warrant_core::Millis,
                unpublish_ms: warrant_core::Millis,
            ) -> $crate::Result<()> {
                sqlx::query(
                    "UPDATE token_keys SET retired_ms = $1, unpublish_ms = $2 WHERE retired_ms IS NULL",
                )
                .bind(at)
                .bind(unpublish_ms)
                .execute(&mut *self.tx)
                .await
                .map_err($crate::sql::db_error)?;
                Ok(())
            }

            async fn revoke_token(&mut self, t: &$crate::RevokedToken) -> $crate::Result<bool> {
                let done = sqlx::query(
                    "INSERT INTO revoked_tokens (jti, exp_ms, revoked_ms) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                )
                .bind(&t.jti)
                .bind(t.exp_ms)
                .bind(t.revoked_ms)
                .execute(&mut *self.tx)
                .await
                .map_err($crate::sql::db_error)?;
                Ok(done.rows_affected() > 0)
            }

            async fn revoked_token(
                &mut self,
                jti: &str,
            ) -> $crate::Result<Option<$crate::RevokedToken>> {
                if $crate::sql::has_nul(jti) {
                    return Ok(None);
                }
                sqlx::query("SELECT * FROM revoked_tokens WHERE jti = $1")
                    .bind(jti)
                    .fetch_optional(&mut *self.tx)
                    .await
                    .decode_with($crate::sql::revoked_from_row)
            }

            async fn insert_kill_switch(
                &mut self,
                k: &warrant_core::credentials::KillSwitch,
            ) -> $crate::Result<()> {
                sqlx::query(
                    "INSERT INTO kill_switches (id, kind, value, engaged_ms, engaged_by, reason, released_ms, released_by, release_reason) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(&k.id)
                .bind(k.target.kind())
                .bind(k.target.value())
                .bind(k.engaged_ms)
                .bind(&k.engaged_by)
                .bind(&k.reason)
                .bind(k.released_ms)
                .bind(&k.released_by)
                .bind(&k.release_reason)
                .execute(&mut *self.tx)
                .await
                .map_err($crate::sql::db_error)?;
                Ok(())
            }

            async fn get_kill_switch(
                &mut self,
                id: &str,
            ) -> $crate::Result<Option<warrant_core::credentials::KillSwitch>> {
                if $crate::sql::has_nul(id) {
                    return Ok(None);
                }
                sqlx::query("SELECT * FROM kill_switches WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *self.tx)
                    .await
                    .decode_with($crate::sql::kill_switch_from_row)
            }

            async fn update_kill_switch(
                &mut self,
                k: &warrant_core::credentials::KillSwitch,
            ) -> $crate::Result<()> {
                sqlx::query(
                    "UPDATE kill_switches SET released_ms = $1, released_by = $2, release_reason = $3 WHERE id = $4",
                )
                .bind(k.released_ms)
                .bind(&k.released_by)
                .bind(&k.release_reason)
                .bind(&k.id)
                .execute(&mut *self.tx)
                .await
                .map_err($crate::sql::db_error)?;
                Ok(())
            }

            async fn purge_expired(&mut self, before_ms: warrant_core::Millis) -> $crate::Result<u64> {
                let a = sqlx::query("DELETE FROM used_assertions WHERE exp_ms < $1")
                    .bind(before_ms)
                    .execute(&mut *self.tx)
                    .await
                    .map_err($crate::sql::db_error)?;
                let b = sqlx::query("DELETE FROM revoked_tokens WHERE exp_ms < $1")
                    .bind(before_ms)
                    .execute(&mut *self.tx)
                    .await
                    .map_err($crate::sql::db_error)?;
                Ok(a.rows_affected() + b.rows_affected())
            }

            async fn get_object(
                &mut self,
                kind: &str,
                id: &str,
            ) -> $crate::Result<Option<$crate::ObjectRow>> {
                if $crate::sql::has_nul(kind) || $crate::sql::has_nul(id) {
                    return Ok(None);
                }
                sqlx::query("SELECT * FROM gov_objects WHERE kind = $1 AND id = $2")
                    .bind(kind)
                    .bind(id)
                    .fetch_optional(&mut *self.tx)
                    .await
                    .decode_with($crate::sql::object_from_row)
            }

            async fn put_object(&mut self, o: &$crate::ObjectRow) -> $crate::Result<()> {
                $crate::sql::check_object(o)?;
                sqlx::query($crate::sql::PUT_OBJECT)
                    .bind(&o.kind)
                    .bind(&o.id)
                    .bind(&o.state)
                    .bind(&o.body)
                    .bind(o.due_ms)
                    .bind(o.created_ms)
                    .bind(o.updated_ms)
                    .execute(&mut *self.tx)
                    .await
                    .map_err($crate::sql::db_error)?;
                Ok(())
            }

            async fn insert_object(&mut self, o: &$crate::ObjectRow) -> $crate::Result<()> {
                $crate::sql::check_object(o)?;
                sqlx::query($crate::sql::INSERT_OBJECT)
                    .bind(&o.kind)
                    .bind(&o.id)
                    .bind(&o.state)
                    .bind(&o.body)
                    .bind(o.due_ms)
                    .bind(o.created_ms)
                    .bind(o.updated_ms)
                    .execute(&mut *self.tx)
                    .await
                    .map_err($crate::sql::db_error)?;
                Ok(())
            }

            async fn get_identity(&mut self, id: &str) -> $crate::Result<Option<Identity>> {
                if $crate::sql::has_nul(id) {
                    return Ok(None);
                }
                sqlx::query("SELECT * FROM identities WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *self.tx)
                    .await
                    .decode_with($crate::sql::identity_from_row)
            }

            async fn identity_named(
                &mut self,
                name: &str,
                environment: &str,
            ) -> $crate::Result<Option<Identity>> {
                if $crate::sql::has_nul(name) || $crate::sql::has_nul(environment) {
                    return Ok(None);
                }
                sqlx::query("SELECT * FROM identities WHERE name = $1 AND environment = $2")
                    .bind(name)
                    .bind(environment)
                    .fetch_optional(&mut *self.tx)
                    .await
                    .decode_with($crate::sql::identity_from_row)
            }

            async fn insert_identity(&mut self, i: &Identity) -> $crate::Result<()> {
                let (roles, ents) = $crate::sql::identity_lists(i)?;
                sqlx::query(
                    "INSERT INTO identities (id, name, kind, environment, spiffe_id, owner, description, state, roles, entitlements, created_ms, updated_ms, last_used_ms)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                )
                .bind(&i.id)
                .bind(&i.name)
                .bind(i.kind.as_str())
                .bind(&i.environment)
                .bind(&i.spiffe_id)
                .bind(&i.owner)
                .bind(&i.description)
                .bind(i.state.as_str())
                .bind(roles)
                .bind(ents)
                .bind(i.created_ms)
                .bind(i.updated_ms)
                .bind(i.last_used_ms)
                .execute(&mut *self.tx)
                .await
                .map_err($crate::sql::db_error)?;
                Ok(())
            }

            async fn update_identity(&mut self, i: &Identity) -> $crate::Result<()> {
                let (roles, ents) = $crate::sql::identity_lists(i)?;
                sqlx::query(
                    "UPDATE identities SET owner = $1, description = $2, state = $3, roles = $4, entitlements = $5, updated_ms = $6 WHERE id = $7",
                )
                .bind(&i.owner)
                .bind(&i.description)
                .bind(i.state.as_str())
                .bind(roles)
                .bind(ents)
                .bind(i.updated_ms)
                .bind(&i.id)
                .execute(&mut *self.tx)
                .await
                .map_err($crate::sql::db_error)?;
                Ok(())
            }

            async fn upsert_token(&mut self, t: &$crate::TokenRow) -> $crate::Result<()> {
                sqlx::query(
                    "INSERT INTO api_tokens (id, name, hash, role, created_ms, revoked_ms, human) VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (id) DO UPDATE SET name = excluded.name, hash = excluded.hash, role = excluded.role, revoked_ms = excluded.revoked_ms, human = excluded.human",
                )
                .bind(&t.id)
                .bind(&t.name)
                .bind(&t.hash[..])
                .bind(&t.role)
                .bind(t.created_ms)
                .bind(t.revoked_ms)
                .bind(&t.human)
                .execute(&mut *self.tx)
                .await
                .map_err($crate::sql::db_error)?;
                Ok(())
            }

            async fn set_meta(&mut self, key: &str, value: &str) -> $crate::Result<()> {
                sqlx::query(
                    "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                )
                .bind(key)
                .bind(value)
                .execute(&mut *self.tx)
                .await
                .map_err($crate::sql::db_error)?;
                Ok(())
            }

            async fn insert_policy_version(
                &mut self,
                schema_text: &str,
                policies_text: &str,
                created_ms: warrant_core::Millis,
                actor: &str,
                comment: &str,
            ) -> $crate::Result<u64> {
                self.lock_policy_versions().await?;
                // One past the highest so far: no gaps (a rolled-back version leaves
                // none, unlike a sequence).
                let v: i64 = sqlx::query_scalar(
                    "INSERT INTO policy_versions (version, schema_text, policies_text, created_ms, actor, comment)
                     VALUES ((SELECT COALESCE(MAX(version), 0) + 1 FROM policy_versions), $1, $2, $3, $4, $5)
                     RETURNING version",
                )
                .bind(schema_text)
                .bind(policies_text)
                .bind(created_ms)
                .bind(actor)
                .bind(comment)
                .fetch_one(&mut *self.tx)
                .await
                .map_err($crate::sql::db_error)?;
                $crate::sql::u64_from(v, "version")
            }

            async fn commit(self: Box<Self>) -> $crate::Result<()> {
                self.tx.commit().await.map_err($crate::sql::db_error)
            }
        }
    };
}
pub(crate) use impl_write_tx;
