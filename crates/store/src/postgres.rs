//! The PostgreSQL backend (sqlx), for several `warrant serve` replicas on one database.
//!
//! - One audit chain across replicas: every write transaction begins with
//!   [`WriteTx::load_chain_head`], which locks the single `audit_head` row
//!   (`SELECT … FOR UPDATE`). A writer on another replica waits there until the holder
//!   commits or rolls back, then reads the head that commit left, so appends form one chain
//!   with no forks and no gaps. Within a replica the group-commit writer keeps batching
//!   (one transaction, one lock, one commit per batch).
//! - Policy version numbers are `MAX + 1` under a table lock, so they stay gapless and
//!   unique even for a writer that did not take the head lock first.
//! - Migrations (`migrations/postgres/`) run at [`PostgresStore::connect`] under sqlx's
//!   advisory lock: replicas starting together migrate once.
//! - Change signals: a write transaction that changed state runs `pg_notify` (delivered
//!   at commit); every replica LISTENs and catches up (see `Store::watch_changes`).
//! - Periodic jobs run on one replica: `pg_try_advisory_lock` on a session of its own
//!   (`Store::try_job_lock`); the lock moves when that session ends.
//! - Bounded waits server-side: statement, lock and idle-in-transaction timeouts, so a
//!   replica that vanished mid-transaction cannot hold the head lock for long.
//! - Fail fast: connecting and acquiring a connection give up after a few seconds with
//!   [`StoreError::Unavailable`] instead of hanging while the database is down; the pools
//!   reconnect by themselves when it returns.
//!
//! The statements it shares with the SQLite backend are in [`crate::sql`].
//!
//! [`WriteTx::load_chain_head`]: crate::WriteTx::load_chain_head

use crate::sql::{db_error, head_from_row, impl_store, impl_write_tx, Rows};
use crate::{Result, StoreError};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Postgres};
use std::str::FromStr;
use std::time::Duration;
use warrant_core::audit::{AuditRecord, ChainHead};
use warrant_core::checkpoint::Checkpoint;
use warrant_core::identity::Identity;
use warrant_core::merkle::Hash;
use warrant_core::Millis;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// How long opening a connection (TCP, TLS, authentication) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request waits for a pooled connection (including reconnecting) before it
/// fails with `Unavailable`.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// The same for the writer's one connection: nobody else competes for it, so a long wait
/// only means the database is unreachable, and every waiting decision waits with it.
const WRITER_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);
/// Read connections per replica.
const READ_CONNECTIONS: u32 = 8;

/// The channel on which replicas signal committed changes to each other.
const CHANGES_CHANNEL: &str = "warrant_changes";
/// Advisory lock namespace of warrant's periodic jobs (`'warr'`); the job name gives the
/// second key.
const JOB_LOCK_CLASS: i32 = 0x7761_7272;
/// Server-side bounds on one statement and on a transaction left idle (a replica that
/// vanished while holding the audit head lock must not stall the others for longer).
/// TCP keepalives let the server notice a replica host that vanished (and end its
/// session, releasing its locks) in about 25 s instead of the system default of hours.
const SESSION_OPTIONS: [(&str, &str); 6] = [
    ("statement_timeout", "15s"),
    ("idle_in_transaction_session_timeout", "15s"),
    ("lock_timeout", "15s"),
    ("tcp_keepalives_idle", "10"),
    ("tcp_keepalives_interval", "5"),
    ("tcp_keepalives_count", "3"),
];
/// How long checking a job lock may take before it counts as lost.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

pub struct PostgresStore {
    pool: PgPool,
    writer: PgPool,
    /// One connection for LISTEN.
    listener: PgPool,
    opts: PgConnectOptions,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:password@host:port/database?…`), runs the
    /// migrations, and opens a read pool and a one-connection writer pool.
    pub async fn connect(url: &str) -> Result<Self> {
        let opts = connect_options(url)?;
        // One connection up front: a clear error now (refused, authentication, unknown
        // database) rather than a pool timeout later; it also runs the migrations.
        let mut conn = first_connection(&opts).await?;
        // A migration may take long on a large database (building an index): no
        // statement or lock timeout for it.
        let migrated = match sqlx::raw_sql("SET statement_timeout = 0; SET lock_timeout = 0")
            .execute(&mut conn)
            .await
        {
            Ok(_) => MIGRATOR
                .run(&mut conn)
                .await
                .map_err(|e| StoreError::Unavailable(format!("migration failed: {e}"))),
            Err(e) => Err(db_error(e)),
        };
        let _ = conn.close().await;
        migrated?;
        Ok(Self::pools(opts))
    }

    /// Opens an existing warrant database for reading only (offline tools): no
    /// migrations, every session read-only, and a clear error when the database holds no
    /// warrant schema. Write transactions fail.
    pub async fn connect_read_only(url: &str) -> Result<Self> {
        let opts = connect_options(url)?.options([("default_transaction_read_only", "on")]);
        let mut conn = first_connection(&opts).await?;
        let found: bool = sqlx::query_scalar("SELECT to_regclass('audit_head') IS NOT NULL")
            .fetch_one(&mut conn)
            .await
            .map_err(db_error)?;
        let _ = conn.close().await;
        if !found {
            return Err(StoreError::Unavailable(
                "the database holds no warrant schema (no audit log)".into(),
            ));
        }
        Ok(Self::pools(opts))
    }

    fn pools(opts: PgConnectOptions) -> Self {
        let pools = PgPoolOptions::new()
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .min_connections(0);
        PostgresStore {
            // The writer's connection is in use batch after batch: checking it with a
            // round trip before every batch costs more than a failed batch after an
            // outage (sqlx still checks it when it is released). Checked when it sat idle.
            writer: pools
                .clone()
                .acquire_timeout(WRITER_ACQUIRE_TIMEOUT)
                .max_connections(1)
                .test_before_acquire(false)
                .before_acquire(|conn, meta| {
                    Box::pin(async move {
                        if meta.idle_for > Duration::from_secs(1) {
                            conn.ping().await?;
                        }
                        Ok(true)
                    })
                })
                .connect_lazy_with(opts.clone()),
            listener: pools
                .clone()
                .max_connections(1)
                .connect_lazy_with(opts.clone()),
            pool: pools
                .max_connections(READ_CONNECTIONS)
                .connect_lazy_with(opts.clone()),
            opts,
        }
    }
}

fn connect_options(url: &str) -> Result<PgConnectOptions> {
    Ok(PgConnectOptions::from_str(url)
        .map_err(|e| StoreError::Unavailable(format!("invalid PostgreSQL URL: {e}")))?
        .application_name("warrant")
        .options(SESSION_OPTIONS))
}

async fn first_connection(opts: &PgConnectOptions) -> Result<PgConnection> {
    tokio::time::timeout(CONNECT_TIMEOUT, opts.connect())
        .await
        .map_err(|_| {
            StoreError::Unavailable(format!(
                "cannot connect to PostgreSQL: no answer within {CONNECT_TIMEOUT:?}"
            ))
        })?
        .map_err(|e| StoreError::Unavailable(format!("cannot connect to PostgreSQL: {e}")))
}

impl_store!(PostgresStore, Postgres, PgTx, {
    fn shared(&self) -> bool {
        true
    }

    /// LISTEN on one dedicated connection. A lost connection is re-established by the
    /// listener and reported as a signal (notifications may have been missed meanwhile).
    async fn watch_changes(&self, on_change: &(dyn Fn() + Send + Sync)) -> Result<()> {
        let mut listener =
            tokio::time::timeout(CONNECT_TIMEOUT, PgListener::connect_with(&self.listener))
                .await
                .map_err(|_| {
                    StoreError::Unavailable("cannot subscribe to changes: timed out".into())
                })?
                .map_err(db_error)?;
        listener.listen(CHANGES_CHANNEL).await.map_err(db_error)?;
        on_change();
        loop {
            match listener.try_recv().await.map_err(db_error)? {
                Some(_) => on_change(),
                None => {
                    tracing::warn!("change subscription lost its connection; resubscribed");
                    on_change();
                }
            }
        }
    }

    /// `pg_try_advisory_lock` on a connection of its own, held for as long as the lock:
    /// if this replica dies, its session ends and the database releases the lock.
    async fn try_job_lock(&self, name: &str) -> Result<Option<Box<dyn crate::JobLock>>> {
        let mut conn = tokio::time::timeout(CONNECT_TIMEOUT, self.opts.connect())
            .await
            .map_err(|_| StoreError::Unavailable("cannot connect to PostgreSQL: timed out".into()))?
            .map_err(db_error)?;
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
            .bind(JOB_LOCK_CLASS)
            .bind(job_key(name))
            .fetch_one(&mut conn)
            .await
            .map_err(db_error)?;
        if got {
            Ok(Some(Box::new(PgJobLock { conn })))
        } else {
            let _ = conn.close().await;
            Ok(None)
        }
    }
});

/// The second advisory-lock key of a job: a stable hash of its name (FNV-1a, 32 bits).
fn job_key(name: &str) -> i32 {
    let hash = name.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    i32::from_ne_bytes(hash.to_ne_bytes())
}

struct PgJobLock {
    conn: PgConnection,
}

#[async_trait::async_trait]
impl crate::JobLock for PgJobLock {
    async fn check(&mut self) -> Result<()> {
        tokio::time::timeout(
            CHECK_TIMEOUT,
            sqlx::query("SELECT 1").execute(&mut self.conn),
        )
        .await
        .map_err(|_| StoreError::Unavailable("job lock connection does not answer".into()))?
        .map_err(db_error)?;
        Ok(())
    }
}

impl_write_tx!(PgTx, Postgres, {
    /// Delivered to every listening replica when (and only if) this transaction commits.
    async fn notify_changed(&mut self) -> Result<()> {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(CHANGES_CHANNEL)
            .execute(&mut *self.tx)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    /// Locks the head row until this transaction ends: writers on every replica that
    /// share the database take turns here.
    async fn load_chain_head(&mut self) -> Result<ChainHead> {
        let row = sqlx::query("SELECT size, frontier FROM audit_head WHERE id = 1 FOR UPDATE")
            .fetch_one(&mut *self.tx)
            .await
            .map_err(db_error)?;
        head_from_row(&row)
    }

    /// One statement for the whole batch (arrays unnested server-side).
    async fn append_records(&mut self, records: &[AuditRecord]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let seqs = records
            .iter()
            .map(|r| crate::sql::i64_from(r.seq))
            .collect::<Result<Vec<i64>>>()?;
        sqlx::query(
            "INSERT INTO audit_records (seq, ts_ms, kind, actor, subject, payload, leaf_hash, root)
             SELECT * FROM unnest($1::BIGINT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[], $7::BYTEA[], $8::BYTEA[])",
        )
        .bind(seqs)
        .bind(records.iter().map(|r| r.ts_ms).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.actor.as_str()).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.subject.as_str()).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.payload.as_str()).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.leaf_hash).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.root).collect::<Vec<_>>())
        .execute(&mut *self.tx)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    /// One statement for all identities; an id listed twice keeps its latest time.
    async fn touch_identities(&mut self, used: &[(String, Millis)]) -> Result<()> {
        if used.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "UPDATE identities AS i SET last_used_ms = u.ts
             FROM (SELECT id, MAX(ts) AS ts FROM unnest($1::TEXT[], $2::BIGINT[]) AS t (id, ts) GROUP BY id) AS u
             WHERE i.id = u.id AND (i.last_used_ms IS NULL OR i.last_used_ms < u.ts)",
        )
        .bind(used.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>())
        .bind(used.iter().map(|(_, ts)| *ts).collect::<Vec<_>>())
        .execute(&mut *self.tx)
        .await
        .map_err(db_error)?;
        Ok(())
    }
});

impl PgTx {
    /// Locks the table (to the end of the transaction; plain reads go on), so `MAX + 1`
    /// is safe against a concurrent writer: it waits, then sees that writer's row.
    async fn lock_policy_versions(&mut self) -> Result<()> {
        self.exec("LOCK TABLE policy_versions IN EXCLUSIVE MODE")
            .await
    }
}
