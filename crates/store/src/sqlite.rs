//! The embedded SQLite backend (sqlx, WAL journal).
//!
//! Durability: with [`Durability::Full`] every commit fsyncs the WAL, so an acknowledged
//! write survives power loss; [`Durability::Normal`] fsyncs only at WAL checkpoints, so it
//! survives a crash of the process (`kill -9`) but not of the machine.
//!
//! The statements it shares with the PostgreSQL backend are in [`crate::sql`].

use crate::sql::{corrupt, db_error, head_from_row, impl_store, impl_write_tx, Rows, SELECT_HEAD};
use crate::{Result, StoreError};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Sqlite};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;
use warrant_core::audit::{AuditRecord, ChainHead};
use warrant_core::checkpoint::Checkpoint;
use warrant_core::identity::Identity;
use warrant_core::merkle::Hash;
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
            .map_err(db_error)?;
        MIGRATOR
            .run(&writer)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migration failed: {e}")))?;
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts.read_only(true))
            .await
            .map_err(db_error)?;
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
            .map_err(db_error)?
            .filename(path)
            .read_only(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(opts)
            .await
            .map_err(db_error)?;
        Ok(SqliteStore {
            writer: pool.clone(),
            pool,
        })
    }

    /// The schema versions (migrations) applied to this database, ascending. Only reads:
    /// for a database opened with [`SqliteStore::open_read_only`], which is not migrated.
    pub async fn applied_schema_versions(&self) -> Result<Vec<i64>> {
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)
    }

    /// The schema versions this build migrates a database to, ascending.
    pub fn schema_versions() -> Vec<i64> {
        MIGRATOR
            .iter()
            .filter(|m| !m.migration_type.is_down_migration())
            .map(|m| m.version)
            .collect()
    }
}

impl_store!(SqliteStore, Sqlite, SqliteTx, {
    /// One process owns the data directory.
    fn shared(&self) -> bool {
        false
    }

    async fn watch_changes(&self, _on_change: &(dyn Fn() + Send + Sync)) -> Result<()> {
        Ok(())
    }

    /// The only replica: always the one that runs the jobs.
    async fn try_job_lock(&self, _name: &str) -> Result<Option<Box<dyn crate::JobLock>>> {
        Ok(Some(Box::new(SoleReplica)))
    }
});

struct SoleReplica;

#[async_trait::async_trait]
impl crate::JobLock for SoleReplica {
    async fn check(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Rows per multi-row INSERT (8 columns each, well under SQLite's bound-parameter limit).
const INSERT_CHUNK: usize = 512;

impl_write_tx!(SqliteTx, Sqlite, {
    async fn notify_changed(&mut self) -> Result<()> {
        Ok(())
    }

    /// There is one writer connection, and SQLite has one writer at a time anyway.
    async fn load_chain_head(&mut self) -> Result<ChainHead> {
        let row = sqlx::query(SELECT_HEAD)
            .fetch_one(&mut *self.tx)
            .await
            .map_err(db_error)?;
        head_from_row(&row)
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
            q.build().execute(&mut *self.tx).await.map_err(db_error)?;
        }
        Ok(())
    }

    /// One statement for all identities (a JSON array joined with `json_each`); an id
    /// listed twice keeps its latest time.
    async fn touch_identities(&mut self, used: &[(String, Millis)]) -> Result<()> {
        if used.is_empty() {
            return Ok(());
        }
        let rows = serde_json::to_string(used).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        sqlx::query(
            "UPDATE identities SET last_used_ms = u.ts
             FROM (SELECT json_extract(value, '$[0]') AS id, MAX(json_extract(value, '$[1]')) AS ts
                   FROM json_each($1) GROUP BY 1) AS u
             WHERE identities.id = u.id AND (identities.last_used_ms IS NULL OR identities.last_used_ms < u.ts)",
        )
        .bind(rows)
        .execute(&mut *self.tx)
        .await
        .map_err(db_error)?;
        Ok(())
    }
});

impl SqliteTx {
    /// SQLite runs one write transaction at a time: nothing more to lock.
    async fn lock_policy_versions(&mut self) -> Result<()> {
        Ok(())
    }
}
