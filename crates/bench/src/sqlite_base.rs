//! Bare SQLite baselines: the audit table (same columns and indexes as the store's
//! migration) written with sqlx, the driver the store uses, and nothing else: no chain
//! head, no hashing, no channel, no savepoints.

use anyhow::Context as _;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Sqlite};
use std::path::Path;
use std::time::{Duration, Instant};
use warrant_core::audit::{AuditRecord, ChainHead, RecordDraft, RecordKind};

const TABLE: &str = "
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
";

/// Same multi-row INSERT chunking as the store.
const INSERT_CHUNK: usize = 512;

pub async fn open(path: &Path, full: bool) -> anyhow::Result<SqlitePool> {
    let opts = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(if full {
            SqliteSynchronous::Full
        } else {
            SqliteSynchronous::Normal
        });
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await
        .with_context(|| format!("cannot open {}", path.display()))?;
    sqlx::raw_sql(TABLE).execute(&pool).await?;
    Ok(pool)
}

/// A decision-shaped audit draft (same fields as the server's decision payload).
pub fn decision_draft(i: u64) -> RecordDraft {
    let id = format!("idn_bench{:08}", i % 100_000);
    let payload = serde_json::json!({
        "principal": id,
        "principal_id": id,
        "action": crate::util::ACTION,
        "resource": crate::util::RESOURCE,
        "decision": "allow",
        "reason": "allowed by policy `readers-read`: readers may read documents at low risk",
        "policies": ["readers-read"],
        "errors": 0,
        "policy_version": 1,
        "context": { "risk": i % 50 },
    });
    RecordDraft {
        kind: RecordKind::Decision,
        actor: "admin:tok_env".into(),
        subject: format!("identity:{id}"),
        payload: payload.to_string(),
    }
}

/// `n` sealed decision records (real leaf hashes and roots).
pub fn sealed_records(n: u64) -> Vec<AuditRecord> {
    let mut head = ChainHead::default();
    (0..n)
        .map(|i| head.seal(decision_draft(i), 1_700_000_000_000 + i as i64))
        .collect()
}

/// Inserts `records` in transactions of `batch` rows until all are written or the
/// deadline passes. Returns (rows written, commits, elapsed).
pub async fn insert_records(
    pool: &SqlitePool,
    records: &[AuditRecord],
    batch: usize,
    deadline: Option<Instant>,
) -> anyhow::Result<(u64, u64, Duration)> {
    let started = Instant::now();
    let (mut rows, mut commits) = (0u64, 0u64);
    for tx_rows in records.chunks(batch.max(1)) {
        if deadline.is_some_and(|d| Instant::now() > d) {
            break;
        }
        let mut tx = pool.begin().await?;
        for chunk in tx_rows.chunks(INSERT_CHUNK) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO audit_records (seq, ts_ms, kind, actor, subject, payload, leaf_hash, root) ",
            );
            q.push_values(chunk, |mut b, r| {
                b.push_bind(r.seq as i64)
                    .push_bind(r.ts_ms)
                    .push_bind(r.kind.as_str())
                    .push_bind(r.actor.as_str())
                    .push_bind(r.subject.as_str())
                    .push_bind(r.payload.as_str())
                    .push_bind(&r.leaf_hash[..])
                    .push_bind(&r.root[..]);
            });
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        rows += tx_rows.len() as u64;
        commits += 1;
    }
    Ok((rows, commits, started.elapsed()))
}

pub struct CommitRate {
    pub label: String,
    pub rows: u64,
    pub commits: u64,
    pub elapsed: Duration,
}

impl CommitRate {
    pub fn rows_per_sec(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64()
    }
    pub fn commits_per_sec(&self) -> f64 {
        self.commits as f64 / self.elapsed.as_secs_f64()
    }
}

/// Durable commit rate of bare SQLite: single-row commits vs `batch`-row commits.
pub async fn commit_rates(
    dir: &Path,
    batch: usize,
    duration: Duration,
) -> anyhow::Result<Vec<CommitRate>> {
    let max_rows = 400_000u64;
    let records = sealed_records(max_rows);
    let mut out = Vec::new();
    let cases = [
        ("synchronous=FULL, 1 row per commit", true, 1usize),
        ("synchronous=FULL, batched", true, batch),
        ("synchronous=NORMAL, 1 row per commit", false, 1),
    ];
    for (i, (label, full, b)) in cases.into_iter().enumerate() {
        let path = dir.join(format!("bare-commits-{i}.db"));
        let pool = open(&path, full).await?;
        let (rows, commits, elapsed) =
            insert_records(&pool, &records, b, Some(Instant::now() + duration)).await?;
        pool.close().await;
        let label = if b > 1 {
            format!("{label} ({b} rows per commit)")
        } else {
            label.to_owned()
        };
        out.push(CommitRate {
            label,
            rows,
            commits,
            elapsed,
        });
    }
    Ok(out)
}

/// Median and p99 of one `SELECT 1` round trip through sqlx (its SQLite worker thread) on
/// the pool's connection, in ns.
pub async fn round_trip_ns(pool: &SqlitePool, n: usize) -> anyhow::Result<(f64, f64)> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        sqlx::query("SELECT 1").execute(pool).await?;
        v.push(t.elapsed().as_nanos() as f64);
    }
    Ok((
        crate::util::percentile(&v, 50.0),
        crate::util::percentile(&v, 99.0),
    ))
}
