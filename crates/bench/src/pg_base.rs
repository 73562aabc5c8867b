//! PostgreSQL for the benchmarks: a server to run against (a given URL, or a throw-away
//! one started with `scripts/pg-test-server.sh` and always stopped again), scratch
//! databases created per measurement and dropped afterwards, and the bare-insert baseline:
//! the audit table (same columns and indexes as the store's migration) written with sqlx,
//! the driver the store uses, and nothing else (no chain head, no hashing, no channel).

use anyhow::{anyhow, bail, Context as _};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};
use warrant_core::audit::AuditRecord;

const TABLE: &str = "
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
";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A throw-away server this process started (and must stop).
struct Started {
    script: PathBuf,
    dir: PathBuf,
    stopped: bool,
}

impl Started {
    fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let status = Command::new("bash")
            .arg(&self.script)
            .arg("stop")
            .env("WARRANT_PG_DIR", &self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status();
        match status {
            Ok(s) if s.success() => eprintln!("  stopped the throw-away PostgreSQL server"),
            other => eprintln!(
                "  warning: stopping the throw-away PostgreSQL server in {} failed ({other:?}); run: WARRANT_PG_DIR={} bash {} stop",
                self.dir.display(),
                self.dir.display(),
                self.script.display()
            ),
        }
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The PostgreSQL server the benchmark runs against.
pub struct PgServer {
    /// URL of the server's maintenance database (scratch databases are created from it).
    pub url: String,
    /// `started` when this process started it, `given` otherwise.
    pub origin: &'static str,
    /// `SELECT version()`.
    pub version: String,
    started: Option<Started>,
    /// Scratch databases created so far (dropped by [`PgServer::cleanup`]).
    databases: Vec<String>,
    prefix: String,
}

/// `scripts/pg-test-server.sh`, looked for above this binary (`target/release/..`) and in
/// the current directory.
fn find_script() -> Option<PathBuf> {
    const REL: &str = "scripts/pg-test-server.sh";
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        candidates.extend(exe.ancestors().skip(1).map(|d| d.join(REL)));
    }
    if let Ok(cwd) = std::env::current_dir() {
        candidates.push(cwd.join(REL));
    }
    candidates.into_iter().find(|p| p.is_file())
}

/// `url` with its database (path) replaced by `db`, query parameters kept.
pub fn url_with_database(url: &str, db: &str) -> anyhow::Result<String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| anyhow!("not a PostgreSQL URL (postgres://…)"))?;
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let authority = before_query.split('/').next().unwrap_or(before_query);
    let mut out = format!("{scheme}://{authority}/{db}");
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Ok(out)
}

async fn connect(url: &str) -> anyhow::Result<PgConnection> {
    let opts = PgConnectOptions::from_str(url).context("invalid PostgreSQL URL")?;
    tokio::time::timeout(CONNECT_TIMEOUT, opts.connect())
        .await
        .map_err(|_| anyhow!("no answer within {CONNECT_TIMEOUT:?}"))?
        .context("cannot connect")
}

impl PgServer {
    /// The server at `url` if given, else a throw-away one started with
    /// `scripts/pg-test-server.sh` (stopped again by [`PgServer::cleanup`] or on drop).
    pub async fn obtain(url: Option<&str>) -> anyhow::Result<PgServer> {
        let prefix = format!("warrant_bench_{}", std::process::id());
        let (url, started) = match url {
            Some(u) => (u.to_owned(), None),
            None => {
                let script = find_script().ok_or_else(|| {
                    anyhow!("no --pg-url given and scripts/pg-test-server.sh not found (run from the repository root)")
                })?;
                let dir = std::env::temp_dir().join(format!(
                    "warrant-bench-pg-{}-{}",
                    std::process::id(),
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_millis())
                        .unwrap_or(0)
                ));
                eprintln!(
                    "  starting a throw-away PostgreSQL server ({} start, in {})",
                    script.display(),
                    dir.display()
                );
                // From here on the guard stops it, whatever happens.
                let started = Started {
                    script: script.clone(),
                    dir: dir.clone(),
                    stopped: false,
                };
                let out = Command::new("bash")
                    .arg(&script)
                    .arg("start")
                    .env("WARRANT_PG_DIR", &dir)
                    .stdin(Stdio::null())
                    .stderr(Stdio::inherit())
                    .output()
                    .context("cannot run scripts/pg-test-server.sh")?;
                if !out.status.success() {
                    bail!("scripts/pg-test-server.sh start failed ({})", out.status);
                }
                let text = String::from_utf8_lossy(&out.stdout);
                let url = text
                    .lines()
                    .map(str::trim)
                    .rfind(|l| l.starts_with("postgres://") || l.starts_with("postgresql://"))
                    .ok_or_else(|| anyhow!("scripts/pg-test-server.sh printed no URL"))?
                    .to_owned();
                (url, Some(started))
            }
        };
        let mut conn = connect(&url).await.context("PostgreSQL does not answer")?;
        let version: String = sqlx::query_scalar("SELECT version()")
            .fetch_one(&mut conn)
            .await?;
        let _ = conn.close().await;
        Ok(PgServer {
            url,
            origin: if started.is_some() {
                "started"
            } else {
                "given"
            },
            version,
            started,
            databases: Vec::new(),
            prefix,
        })
    }

    /// Creates a fresh scratch database `<prefix>_<name>` (dropped first if it exists) and
    /// returns its URL.
    pub async fn create_database(&mut self, name: &str) -> anyhow::Result<String> {
        let db = format!("{}_{name}", self.prefix);
        let mut conn = connect(&self.url).await?;
        sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"))
            .execute(&mut conn)
            .await?;
        sqlx::raw_sql(&format!("CREATE DATABASE \"{db}\""))
            .execute(&mut conn)
            .await
            .with_context(|| format!("cannot create database {db} (the role needs CREATEDB)"))?;
        let _ = conn.close().await;
        if !self.databases.contains(&db) {
            self.databases.push(db.clone());
        }
        url_with_database(&self.url, &db)
    }

    /// Drops a scratch database made by [`PgServer::create_database`].
    pub async fn drop_database(&mut self, name: &str) -> anyhow::Result<()> {
        let db = format!("{}_{name}", self.prefix);
        let mut conn = connect(&self.url).await?;
        sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"))
            .execute(&mut conn)
            .await?;
        let _ = conn.close().await;
        self.databases.retain(|d| d != &db);
        Ok(())
    }

    /// The postmaster's pid, when this process started the server (for CPU accounting).
    pub fn postmaster_pid(&self) -> Option<u32> {
        let s = self.started.as_ref()?;
        std::fs::read_to_string(s.dir.join("data").join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// CPU seconds used so far by the PostgreSQL server (postmaster and backends), when
    /// this process started it.
    pub fn cpu_seconds(&self) -> Option<f64> {
        crate::util::tree_cpu_seconds(self.postmaster_pid()?)
    }

    /// Drops the scratch databases left and stops the server if this process started it.
    pub async fn cleanup(mut self) {
        if self.started.is_none() {
            for db in std::mem::take(&mut self.databases) {
                let name = db
                    .strip_prefix(&format!("{}_", self.prefix))
                    .unwrap_or(&db)
                    .to_owned();
                if let Err(e) = self.drop_database(&name).await {
                    eprintln!("  warning: cannot drop database {db}: {e:#}");
                }
            }
        }
        if let Some(mut s) = self.started.take() {
            s.stop();
        }
    }
}

/// A connection to a fresh database with the bare audit table.
pub async fn open_bare(url: &str) -> anyhow::Result<PgConnection> {
    let mut conn = connect(url).await?;
    sqlx::raw_sql(TABLE).execute(&mut conn).await?;
    Ok(conn)
}

/// Inserts `records` in transactions of `batch` rows, one multi-row statement per
/// transaction (the store's own statement shape: arrays unnested server-side).
/// Returns (rows written, commits, elapsed).
pub async fn insert_records(
    conn: &mut PgConnection,
    records: &[AuditRecord],
    batch: usize,
) -> anyhow::Result<(u64, u64, Duration)> {
    let started = Instant::now();
    let (mut rows, mut commits) = (0u64, 0u64);
    for tx_rows in records.chunks(batch.max(1)) {
        let mut tx = conn.begin().await?;
        sqlx::query(
            "INSERT INTO audit_records (seq, ts_ms, kind, actor, subject, payload, leaf_hash, root)
             SELECT * FROM unnest($1::BIGINT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[], $7::BYTEA[], $8::BYTEA[])",
        )
        .bind(tx_rows.iter().map(|r| r.seq as i64).collect::<Vec<_>>())
        .bind(tx_rows.iter().map(|r| r.ts_ms).collect::<Vec<_>>())
        .bind(tx_rows.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>())
        .bind(tx_rows.iter().map(|r| r.actor.as_str()).collect::<Vec<_>>())
        .bind(tx_rows.iter().map(|r| r.subject.as_str()).collect::<Vec<_>>())
        .bind(tx_rows.iter().map(|r| r.payload.as_str()).collect::<Vec<_>>())
        .bind(tx_rows.iter().map(|r| &r.leaf_hash[..]).collect::<Vec<_>>())
        .bind(tx_rows.iter().map(|r| &r.root[..]).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        rows += tx_rows.len() as u64;
        commits += 1;
    }
    Ok((rows, commits, started.elapsed()))
}

/// Median and p99 of one `SELECT 1` round trip on one connection to `url`, in ns.
pub async fn round_trip_ns(url: &str, n: usize) -> anyhow::Result<(f64, f64)> {
    let mut conn = connect(url).await?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        sqlx::query("SELECT 1").execute(&mut conn).await?;
        v.push(t.elapsed().as_nanos() as f64);
    }
    let _ = conn.close().await;
    Ok((
        crate::util::percentile(&v, 50.0),
        crate::util::percentile(&v, 99.0),
    ))
}
