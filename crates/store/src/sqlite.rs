//! The embedded SQLite backend (sqlx, WAL journal).
//!
//! Durability: with [`Durability::Full`] every commit fsyncs the WAL, so an acknowledged
//! write survives power loss; [`Durability::Normal`] fsyncs only at WAL checkpoints, so it
//! survives a crash of the process (`kill -9`) but not of the machine.

use crate::{
    AuditFilter, IdentityFilter, PolicyVersion, Result, Store, StoreError, TokenRow, Unique,
    WriteTx,
};
use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, Transaction};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;
use warrant_core::audit::{AuditRecord, ChainHead};
use warrant_core::checkpoint::Checkpoint;
use warrant_core::identity::{Identity, IdentityKind, IdentityState};
use warrant_core::merkle::{CompactTree, Hash};
use warrant_core::Millis;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync on every commit: survives power loss.
    Full,
    /// fsync at WAL checkpoints only: survives a process crash, not a machine crash.
    Normal,
}

pub struct SqliteStore {
    pool: SqlitePool,
    writer: SqlitePool,
}

fn unavailable(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        if db.is_unique_violation() {
            let msg = db.message();
            return StoreError::Conflict(if msg.contains("spiffe_id") {
                Unique::SpiffeId
            } else if msg.contains("identities.name") || msg.contains("environment") {
                Unique::NameEnvironment
            } else {
                Unique::Other(msg.to_owned())
            });
        }
    }
    StoreError::Unavailable(e.to_string())
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

fn hash_from(bytes: &[u8], what: &str) -> Result<Hash> {
    bytes
        .try_into()
        .map_err(|_| corrupt(format!("{what} is not 32 bytes")))
}

fn u64_from(v: i64, what: &str) -> Result<u64> {
    u64::try_from(v).map_err(|_| corrupt(format!("{what} is negative")))
}

fn i64_from(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| corrupt("value out of range"))
}

fn identity_from_row(row: &SqliteRow) -> Result<Identity> {
    let get = |c: &str| -> Result<String> { row.try_get::<String, _>(c).map_err(unavailable) };
    let kind = get("kind")?;
    let state = get("state")?;
    let list = |c: &str| -> Result<Vec<String>> {
        serde_json::from_str(&get(c)?).map_err(|e| corrupt(format!("{c}: {e}")))
    };
    Ok(Identity {
        id: get("id")?,
        name: get("name")?,
        kind: IdentityKind::parse(&kind).ok_or_else(|| corrupt(format!("kind `{kind}`")))?,
        environment: get("environment")?,
        spiffe_id: get("spiffe_id")?,
        owner: get("owner")?,
        description: get("description")?,
        state: IdentityState::parse(&state).ok_or_else(|| corrupt(format!("state `{state}`")))?,
        roles: list("roles")?,
        entitlements: list("entitlements")?,
        created_ms: row.try_get("created_ms").map_err(unavailable)?,
        updated_ms: row.try_get("updated_ms").map_err(unavailable)?,
        last_used_ms: row.try_get("last_used_ms").map_err(unavailable)?,
    })
}

fn record_from_row(row: &SqliteRow) -> Result<AuditRecord> {
    let leaf: Vec<u8> = row.try_get("leaf_hash").map_err(unavailable)?;
    let root: Vec<u8> = row.try_get("root").map_err(unavailable)?;
    Ok(AuditRecord {
        seq: u64_from(row.try_get("seq").map_err(unavailable)?, "seq")?,
        ts_ms: row.try_get("ts_ms").map_err(unavailable)?,
        kind: row.try_get("kind").map_err(unavailable)?,
        actor: row.try_get("actor").map_err(unavailable)?,
        subject: row.try_get("subject").map_err(unavailable)?,
        payload: row.try_get("payload").map_err(unavailable)?,
        leaf_hash: hash_from(&leaf, "leaf hash")?,
        root: hash_from(&root, "root")?,
    })
}

fn checkpoint_from_row(row: &SqliteRow) -> Result<Checkpoint> {
    let root: Vec<u8> = row.try_get("root").map_err(unavailable)?;
    let sig: Vec<u8> = row.try_get("signature").map_err(unavailable)?;
    Ok(Checkpoint {
        origin: row.try_get("origin").map_err(unavailable)?,
        size: u64_from(row.try_get("size").map_err(unavailable)?, "size")?,
        root: hash_from(&root, "checkpoint root")?,
        ts_ms: row.try_get("ts_ms").map_err(unavailable)?,
        key_id: row.try_get("key_id").map_err(unavailable)?,
        signature: sig
            .as_slice()
            .try_into()
            .map_err(|_| corrupt("signature is not 64 bytes"))?,
    })
}

fn policy_from_row(row: &SqliteRow) -> Result<PolicyVersion> {
    Ok(PolicyVersion {
        version: u64_from(row.try_get("version").map_err(unavailable)?, "version")?,
        schema_text: row.try_get("schema_text").map_err(unavailable)?,
        policies_text: row.try_get("policies_text").map_err(unavailable)?,
        created_ms: row.try_get("created_ms").map_err(unavailable)?,
        actor: row.try_get("actor").map_err(unavailable)?,
        comment: row.try_get("comment").map_err(unavailable)?,
    })
}

fn head_from_parts(size: i64, frontier: &[u8]) -> Result<ChainHead> {
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

/// Decoding query results into domain values, with storage errors mapped once.
trait Decode<T> {
    type Out;
    fn decode_with(self, decode: fn(&SqliteRow) -> Result<T>) -> Result<Self::Out>;
}

impl<T> Decode<T> for std::result::Result<Option<SqliteRow>, sqlx::Error> {
    type Out = Option<T>;
    fn decode_with(self, decode: fn(&SqliteRow) -> Result<T>) -> Result<Option<T>> {
        self.map_err(unavailable)?.as_ref().map(decode).transpose()
    }
}

impl<T> Decode<T> for std::result::Result<Vec<SqliteRow>, sqlx::Error> {
    type Out = Vec<T>;
    fn decode_with(self, decode: fn(&SqliteRow) -> Result<T>) -> Result<Vec<T>> {
        self.map_err(unavailable)?.iter().map(decode).collect()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and runs migrations.
    pub async fn open(path: &Path, durability: Durability) -> Result<Self> {
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match durability {
                Durability::Full => SqliteSynchronous::Full,
                Durability::Normal => SqliteSynchronous::Normal,
            })
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(opts.clone())
            .await
            .map_err(unavailable)?;
        MIGRATOR
            .run(&writer)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migration failed: {e}")))?;
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts.read_only(true))
            .await
            .map_err(unavailable)?;
        Ok(SqliteStore { pool, writer })
    }

    /// Opens an existing database read-only, without migrating (for offline tools).
    pub async fn open_read_only(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(StoreError::Unavailable(format!(
                "no database at `{}`",
                path.display()
            )));
        }
        let opts = SqliteConnectOptions::from_str("sqlite://")
            .map_err(unavailable)?
            .filename(path)
            .read_only(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(opts)
            .await
            .map_err(unavailable)?;
        Ok(SqliteStore {
            writer: pool.clone(),
            pool,
        })
    }

    pub async fn close(&self) {
        self.pool.close().await;
        self.writer.close().await;
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn begin_write(&self) -> Result<Box<dyn WriteTx>> {
        let tx = self.writer.begin().await.map_err(unavailable)?;
        Ok(Box::new(SqliteTx { tx }))
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn get_identity(&self, id: &str) -> Result<Option<Identity>> {
        sqlx::query("SELECT * FROM identities WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .decode_with(identity_from_row)
    }

    async fn list_identities(&self, f: &IdentityFilter) -> Result<Vec<Identity>> {
        let mut q = QueryBuilder::<Sqlite>::new("SELECT * FROM identities WHERE 1=1");
        if let Some(v) = &f.kind {
            q.push(" AND kind = ").push_bind(v.clone());
        }
        if let Some(v) = &f.environment {
            q.push(" AND environment = ").push_bind(v.clone());
        }
        if let Some(v) = &f.state {
            q.push(" AND state = ").push_bind(v.clone());
        }
        if let Some(v) = &f.owner {
            q.push(" AND owner = ").push_bind(v.clone());
        }
        if let Some(v) = &f.after {
            q.push(" AND id > ").push_bind(v.clone());
        }
        q.push(" ORDER BY id LIMIT ").push_bind(i64::from(f.limit));
        q.build()
            .fetch_all(&self.pool)
            .await
            .decode_with(identity_from_row)
    }

    async fn all_identities(&self) -> Result<Vec<Identity>> {
        sqlx::query("SELECT * FROM identities ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .decode_with(identity_from_row)
    }

    async fn current_policy(&self) -> Result<Option<PolicyVersion>> {
        sqlx::query("SELECT * FROM policy_versions ORDER BY version DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await
            .decode_with(policy_from_row)
    }

    async fn policy_version(&self, version: u64) -> Result<Option<PolicyVersion>> {
        let Ok(version) = i64::try_from(version) else {
            return Ok(None);
        };
        sqlx::query("SELECT * FROM policy_versions WHERE version = ?")
            .bind(version)
            .fetch_optional(&self.pool)
            .await
            .decode_with(policy_from_row)
    }

    async fn policy_history(&self, limit: u32) -> Result<Vec<PolicyVersion>> {
        sqlx::query("SELECT * FROM policy_versions ORDER BY version DESC LIMIT ?")
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .decode_with(policy_from_row)
    }

    async fn tokens(&self) -> Result<Vec<TokenRow>> {
        sqlx::query("SELECT * FROM api_tokens ORDER BY created_ms")
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?
            .iter()
            .map(|row| {
                let hash: Vec<u8> = row.try_get("hash").map_err(unavailable)?;
                Ok(TokenRow {
                    id: row.try_get("id").map_err(unavailable)?,
                    name: row.try_get("name").map_err(unavailable)?,
                    hash: hash_from(&hash, "token hash")?,
                    role: row.try_get("role").map_err(unavailable)?,
                    created_ms: row.try_get("created_ms").map_err(unavailable)?,
                    revoked_ms: row.try_get("revoked_ms").map_err(unavailable)?,
                })
            })
            .collect()
    }

    async fn audit_records(&self, f: &AuditFilter) -> Result<Vec<AuditRecord>> {
        let mut q = QueryBuilder::<Sqlite>::new("SELECT * FROM audit_records WHERE 1=1");
        if let Some(v) = &f.kind {
            q.push(" AND kind = ").push_bind(v.clone());
        }
        if let Some(v) = &f.actor {
            q.push(" AND actor = ").push_bind(v.clone());
        }
        if let Some(v) = &f.subject {
            q.push(" AND subject = ").push_bind(v.clone());
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
            if f.descending {
                q.push(" AND seq <= ").push_bind(v);
            } else {
                q.push(" AND seq >= ").push_bind(v);
            }
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
            .decode_with(record_from_row)
    }

    async fn audit_record(&self, seq: u64) -> Result<Option<AuditRecord>> {
        let Ok(seq) = i64::try_from(seq) else {
            return Ok(None);
        };
        sqlx::query("SELECT * FROM audit_records WHERE seq = ?")
            .bind(seq)
            .fetch_optional(&self.pool)
            .await
            .decode_with(record_from_row)
    }

    async fn audit_leaf_hashes(&self, size: u64) -> Result<Vec<Hash>> {
        let rows =
            sqlx::query("SELECT seq, leaf_hash FROM audit_records WHERE seq < ? ORDER BY seq")
                .bind(i64_from(size)?)
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable)?;
        let mut out = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let seq: i64 = row.try_get("seq").map_err(unavailable)?;
            if u64_from(seq, "seq")? != i as u64 {
                return Err(corrupt(format!("audit record {i} is missing")));
            }
            let leaf: Vec<u8> = row.try_get("leaf_hash").map_err(unavailable)?;
            out.push(hash_from(&leaf, "leaf hash")?);
        }
        if out.len() as u64 != size {
            return Err(corrupt(format!(
                "audit log holds {} records, expected {size}",
                out.len()
            )));
        }
        Ok(out)
    }

    async fn audit_head(&self) -> Result<ChainHead> {
        let row = sqlx::query("SELECT size, frontier FROM audit_head WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .map_err(unavailable)?;
        let frontier: Vec<u8> = row.try_get("frontier").map_err(unavailable)?;
        head_from_parts(row.try_get("size").map_err(unavailable)?, &frontier)
    }

    async fn checkpoints(&self) -> Result<Vec<Checkpoint>> {
        sqlx::query("SELECT * FROM checkpoints ORDER BY size, ts_ms")
            .fetch_all(&self.pool)
            .await
            .decode_with(checkpoint_from_row)
    }

    async fn latest_checkpoint(&self) -> Result<Option<Checkpoint>> {
        sqlx::query("SELECT * FROM checkpoints ORDER BY size DESC, ts_ms DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await
            .decode_with(checkpoint_from_row)
    }

    async fn meta(&self, key: &str) -> Result<Option<String>> {
        sqlx::query_scalar("SELECT value FROM meta WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)
    }
}

struct SqliteTx {
    tx: Transaction<'static, Sqlite>,
}

impl SqliteTx {
    async fn exec(&mut self, sql: &str) -> Result<()> {
        sqlx::query(sql)
            .execute(&mut *self.tx)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

/// Rows per multi-row INSERT (8 columns each, well under SQLite's bound-parameter limit).
const INSERT_CHUNK: usize = 512;

#[async_trait]
impl WriteTx for SqliteTx {
    async fn savepoint(&mut self) -> Result<()> {
        self.exec("SAVEPOINT op").await
    }

    async fn release_savepoint(&mut self) -> Result<()> {
        self.exec("RELEASE SAVEPOINT op").await
    }

    async fn rollback_to_savepoint(&mut self) -> Result<()> {
        self.exec("ROLLBACK TO SAVEPOINT op").await?;
        self.exec("RELEASE SAVEPOINT op").await
    }

    async fn load_chain_head(&mut self) -> Result<ChainHead> {
        let row = sqlx::query("SELECT size, frontier FROM audit_head WHERE id = 1")
            .fetch_one(&mut *self.tx)
            .await
            .map_err(unavailable)?;
        let frontier: Vec<u8> = row.try_get("frontier").map_err(unavailable)?;
        head_from_parts(row.try_get("size").map_err(unavailable)?, &frontier)
    }

    async fn store_chain_head(&mut self, head: &ChainHead) -> Result<()> {
        let frontier: Vec<u8> = head.tree.frontier().concat();
        sqlx::query("UPDATE audit_head SET size = ?, frontier = ? WHERE id = 1")
            .bind(i64_from(head.tree.size())?)
            .bind(frontier)
            .execute(&mut *self.tx)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn append_records(&mut self, records: &[AuditRecord]) -> Result<()> {
        for chunk in records.chunks(INSERT_CHUNK) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO audit_records (seq, ts_ms, kind, actor, subject, payload, leaf_hash, root) ",
            );
            let mut bad = None;
            q.push_values(chunk, |mut b, r| {
                let seq = i64::try_from(r.seq).unwrap_or_else(|_| {
                    bad = Some(r.seq);
                    -1
                });
                b.push_bind(seq)
                    .push_bind(r.ts_ms)
                    .push_bind(r.kind.as_str())
                    .push_bind(r.actor.as_str())
                    .push_bind(r.subject.as_str())
                    .push_bind(r.payload.as_str())
                    .push_bind(&r.leaf_hash[..])
                    .push_bind(&r.root[..]);
            });
            if let Some(seq) = bad {
                return Err(corrupt(format!("sequence number {seq} out of range")));
            }
            q.build()
                .execute(&mut *self.tx)
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    async fn insert_checkpoint(&mut self, cp: &Checkpoint) -> Result<()> {
        sqlx::query(
            "INSERT OR IGNORE INTO checkpoints (size, ts_ms, origin, root, key_id, signature) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(i64_from(cp.size)?)
        .bind(cp.ts_ms)
        .bind(&cp.origin)
        .bind(&cp.root[..])
        .bind(&cp.key_id)
        .bind(&cp.signature[..])
        .execute(&mut *self.tx)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn get_identity(&mut self, id: &str) -> Result<Option<Identity>> {
        sqlx::query("SELECT * FROM identities WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *self.tx)
            .await
            .decode_with(identity_from_row)
    }

    async fn insert_identity(&mut self, i: &Identity) -> Result<()> {
        let roles = serde_json::to_string(&i.roles).map_err(corrupt)?;
        let ents = serde_json::to_string(&i.entitlements).map_err(corrupt)?;
        sqlx::query(
            "INSERT INTO identities (id, name, kind, environment, spiffe_id, owner, description, state, roles, entitlements, created_ms, updated_ms, last_used_ms)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        .map_err(unavailable)?;
        Ok(())
    }

    async fn update_identity(&mut self, i: &Identity) -> Result<()> {
        let roles = serde_json::to_string(&i.roles).map_err(corrupt)?;
        let ents = serde_json::to_string(&i.entitlements).map_err(corrupt)?;
        sqlx::query(
            "UPDATE identities SET owner = ?, description = ?, state = ?, roles = ?, entitlements = ?, updated_ms = ? WHERE id = ?",
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
        .map_err(unavailable)?;
        Ok(())
    }

    async fn touch_identities(&mut self, used: &[(String, Millis)]) -> Result<()> {
        for (id, ts) in used {
            sqlx::query(
                "UPDATE identities SET last_used_ms = ? WHERE id = ? AND (last_used_ms IS NULL OR last_used_ms < ?)",
            )
            .bind(ts)
            .bind(id)
            .bind(ts)
            .execute(&mut *self.tx)
            .await
            .map_err(unavailable)?;
        }
        Ok(())
    }

    async fn insert_policy_version(
        &mut self,
        schema_text: &str,
        policies_text: &str,
        created_ms: Millis,
        actor: &str,
        comment: &str,
    ) -> Result<u64> {
        let v: i64 = sqlx::query_scalar(
            "INSERT INTO policy_versions (version, schema_text, policies_text, created_ms, actor, comment)
             VALUES ((SELECT COALESCE(MAX(version), 0) + 1 FROM policy_versions), ?, ?, ?, ?, ?) RETURNING version",
        )
        .bind(schema_text)
        .bind(policies_text)
        .bind(created_ms)
        .bind(actor)
        .bind(comment)
        .fetch_one(&mut *self.tx)
        .await
        .map_err(unavailable)?;
        u64_from(v, "version")
    }

    async fn upsert_token(&mut self, t: &TokenRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO api_tokens (id, name, hash, role, created_ms, revoked_ms) VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, hash = excluded.hash, role = excluded.role, revoked_ms = excluded.revoked_ms",
        )
        .bind(&t.id)
        .bind(&t.name)
        .bind(&t.hash[..])
        .bind(&t.role)
        .bind(t.created_ms)
        .bind(t.revoked_ms)
        .execute(&mut *self.tx)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn set_meta(&mut self, key: &str, value: &str) -> Result<()> {
        sqlx::query("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
            .bind(key)
            .bind(value)
            .execute(&mut *self.tx)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        self.tx.commit().await.map_err(unavailable)
    }
}
