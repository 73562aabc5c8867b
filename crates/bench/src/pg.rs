//! `warrant-bench pg`: warrant on PostgreSQL against warrant on SQLite, in the same run on
//! the same machine, and how fast changes reach other replicas.
//!
//! 1. HTTP `/v1/authorize` load (the `http` benchmark's client) against two release
//!    servers started side by side, one on SQLite (`--durability full`), one on
//!    PostgreSQL; runs alternate between them.
//! 2. Durable audit append through the real group-commit writer into `SqliteStore` and
//!    into `PostgresStore`, each against a bare insert of the same rows in same-size
//!    transactions with sqlx (bare SQLite, bare PostgreSQL).
//! 3. Propagation: three release servers (replicas A, B, C) on one database; changes go
//!    through A; after each answer B's decision for the principal is polled until it flips,
//!    and C's `/metrics` until it reports the change synced (C gets no other traffic, so
//!    only the change signal or the periodic check can bring it there).

use crate::audit;
use crate::load::{self, LoadOpts, LoadResult, ServerProc, Target};
use crate::pg_base::{self, PgServer};
use crate::sqlite_base;
use crate::util::{self, fmt_ns, fmt_rate, fmt_ratio, BatchStats};
use anyhow::{anyhow, bail};
use ed25519_dalek::SigningKey;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use warrant_store::postgres::PostgresStore;
use warrant_store::Store;

#[derive(Debug, Clone)]
pub struct Opts {
    pub warrant_bin: PathBuf,
    pub connections: Vec<usize>,
    pub duration: Duration,
    /// Load runs per (store, connections), alternating; merged.
    pub rounds: usize,
    pub identities: usize,
    pub max_requests: u64,
    pub records: u64,
    pub tasks: usize,
    pub reps: usize,
    pub changes: usize,
    pub http: bool,
    pub audit: bool,
    pub replicas: bool,
}

#[derive(Default)]
pub struct Outcome {
    pub markdown: String,
    /// Rows for the summary table of `all` (same columns).
    pub summary_rows: String,
    pub errors: u64,
}

/// Starts (or connects to) PostgreSQL, runs, and always cleans up.
pub async fn run(base: &Path, opts: &Opts, pg_url: Option<&str>) -> anyhow::Result<Outcome> {
    check_bin(opts)?;
    let mut pg = PgServer::obtain(pg_url).await?;
    let out = run_on(base, opts, &mut pg).await;
    pg.cleanup().await;
    out
}

fn check_bin(opts: &Opts) -> anyhow::Result<()> {
    if (opts.http || opts.replicas) && !opts.warrant_bin.exists() {
        bail!(
            "no warrant binary at `{}` (build it: cargo build --release -p warrant)",
            opts.warrant_bin.display()
        );
    }
    Ok(())
}

pub async fn run_on(base: &Path, opts: &Opts, pg: &mut PgServer) -> anyhow::Result<Outcome> {
    check_bin(opts)?;
    let dir = tempfile::tempdir_in(base)?;
    let mut out = Outcome::default();
    let mut md = format!(
        "PostgreSQL: {} ({}; {}). The same machine runs PostgreSQL, the warrant servers and the load client; \
         warrant talks to PostgreSQL over TCP on 127.0.0.1. PostgreSQL commits are durable (`fsync=on`, \
         `synchronous_commit=on`), like SQLite with `--durability full`. Each measurement gets a fresh database.\n\n",
        pg.version.split(',').next().unwrap_or(&pg.version),
        if pg.origin == "started" {
            "a throw-away server started by the benchmark with scripts/pg-test-server.sh, data on the same disk as the SQLite files"
        } else {
            "the server given with --pg-url"
        },
        pg_base_note(pg),
    );
    if opts.http {
        eprintln!("  [pg 1/3] HTTP /v1/authorize: SQLite vs PostgreSQL");
        let h = http_compare(dir.path(), opts, pg).await?;
        out.errors += h.errors;
        md.push_str("### Decision throughput: SQLite vs PostgreSQL\n\n");
        md.push_str(&h.markdown);
        out.summary_rows.push_str(&h.summary_rows);
    }
    if opts.audit {
        eprintln!("  [pg 2/3] audit append: SQLite vs PostgreSQL");
        let a = audit_compare(dir.path(), opts, pg).await?;
        md.push_str("\n### Durable audit append: SQLite vs PostgreSQL\n\n");
        md.push_str(&a.markdown);
        out.summary_rows.push_str(&a.summary_rows);
    }
    if opts.replicas {
        eprintln!("  [pg 3/3] propagation across replicas");
        let p = propagation(dir.path(), opts, pg).await?;
        out.errors += p.errors;
        md.push_str("\n### Propagation of changes across replicas\n\n");
        md.push_str(&p.markdown);
        out.summary_rows.push_str(&p.summary_rows);
    }
    out.markdown = md;
    Ok(out)
}

fn pg_base_note(pg: &PgServer) -> &'static str {
    if pg.postmaster_pid().is_some() {
        "its CPU is measured from /proc (postmaster and backends)"
    } else {
        "its CPU is not measured"
    }
}

struct Section {
    markdown: String,
    summary_rows: String,
    errors: u64,
}

// ---------- 1. HTTP ----------

struct HttpTarget {
    label: &'static str,
    srv: ServerProc,
    bodies: Arc<Vec<bytes::Bytes>>,
}

struct HttpRow {
    store: &'static str,
    connections: usize,
    result: LoadResult,
    batch: BatchStats,
    pg_cores: Option<f64>,
}

async fn http_compare(dir: &Path, opts: &Opts, pg: &mut PgServer) -> anyhow::Result<Section> {
    let url = pg.create_database("http").await?;
    let mut targets = Vec::new();
    for (label, database) in [("SQLite", None), ("PostgreSQL", Some(url.as_str()))] {
        let data = dir.join(format!("http-{}", label.to_lowercase()));
        let srv = ServerProc::start_with(&opts.warrant_bin, &data, "full", database).await?;
        let ids = load::register(&srv, opts.identities, 16).await?;
        let bodies = load::authorize_bodies(&ids)?;
        targets.push(HttpTarget { label, srv, bodies });
    }
    let lopts = |c: usize, d: Duration, pid: u32| LoadOpts {
        connections: c,
        duration: d,
        max_requests: opts.max_requests,
        server_pid: Some(pid),
    };
    // Warm-up (connections, allocator, page cache, PostgreSQL's buffers).
    for t in &targets {
        let _ = load::run(
            t.srv.addr,
            Target::Authorize(t.bodies.clone()),
            lopts(16, Duration::from_secs(2), t.srv.pid),
        )
        .await?;
    }
    let mut rows: Vec<HttpRow> = Vec::new();
    for _ in 0..opts.rounds.max(1) {
        for &c in &opts.connections {
            for t in &targets {
                let before = BatchStats::parse(&t.srv.metrics().await?);
                let pg0 = pg.cpu_seconds();
                let result = load::run(
                    t.srv.addr,
                    Target::Authorize(t.bodies.clone()),
                    lopts(c, opts.duration, t.srv.pid),
                )
                .await?;
                let pg1 = pg.cpu_seconds();
                let batch = BatchStats::parse(&t.srv.metrics().await?).since(&before);
                let pg_cores = match (pg0, pg1) {
                    (Some(a), Some(b)) => Some((b - a) / result.elapsed.as_secs_f64()),
                    _ => None,
                };
                eprintln!(
                    "    authorize {} c={c}: {:.0} req/s p50 {} p99 {} errors {} (group {:.1}, commit {})",
                    t.label,
                    result.throughput(),
                    fmt_ns(result.p(0.5)),
                    fmt_ns(result.p(0.99)),
                    result.errors,
                    batch.mean_jobs(),
                    fmt_ns(batch.mean_commit_ns()),
                );
                match rows
                    .iter_mut()
                    .find(|r| r.store == t.label && r.connections == c)
                {
                    Some(row) => {
                        // Weigh the PostgreSQL CPU by run length, as `merge` does.
                        let (a, b) = (
                            row.result.elapsed.as_secs_f64(),
                            result.elapsed.as_secs_f64(),
                        );
                        row.pg_cores = match (row.pg_cores, pg_cores) {
                            (Some(x), Some(y)) => Some((x * a + y * b) / (a + b)),
                            (x, y) => x.or(y),
                        };
                        row.batch = row.batch.plus(&batch);
                        row.result.merge(result)?;
                    }
                    None => rows.push(HttpRow {
                        store: t.label,
                        connections: c,
                        result,
                        batch,
                        pg_cores,
                    }),
                }
            }
        }
    }
    for t in targets {
        t.srv.stop().await?;
    }
    pg.drop_database("http").await?;

    let errors: u64 = rows.iter().map(|r| r.result.errors).sum();
    let mut md = format!(
        "Two release servers side by side, `--durability full` on SQLite and the same binary with \
         `--database postgres://…` (one replica), each with the test suite's schema and policies and {} identities \
         registered over the API. The `http` benchmark's load client: one keep-alive HTTP/1.1 connection per task, \
         `POST /v1/authorize` back to back for {} s per run, every answer checked (HTTP 200 with a decision); \
         {} runs per store and connection count, alternating between the stores, merged. \
         Mean group commit and commit time from each server's `/metrics`.\n\n",
        opts.identities,
        opts.duration.as_secs_f64(),
        opts.rounds.max(1),
    );
    md.push_str("| store | conns | req/s | p50 | p99 | p99.9 | max | errors | mean group commit (requests/commit) | mean commit time | CPU cores used: warrant / PostgreSQL / load client |\n");
    md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in &rows {
        let errs = if r.result.statuses.is_empty() {
            r.result.errors.to_string()
        } else {
            format!("{} {:?}", r.result.errors, r.result.statuses)
        };
        let cores = |x: Option<f64>| x.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into());
        md.push_str(&format!(
            "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {:.1} | {} | {} / {} / {} |\n",
            r.store,
            r.connections,
            r.result.throughput(),
            fmt_ns(r.result.p(0.5)),
            fmt_ns(r.result.p(0.99)),
            fmt_ns(r.result.p(0.999)),
            fmt_ns(r.result.max()),
            errs,
            r.batch.mean_jobs(),
            fmt_ns(r.batch.mean_commit_ns()),
            cores(r.result.server_cores),
            if r.store == "PostgreSQL" {
                cores(r.pg_cores)
            } else {
                "-".into()
            },
            cores(r.result.client_cores),
        ));
    }
    if let Some(e) = rows.iter().find_map(|r| r.result.first_error.clone()) {
        md.push_str(&format!(
            "\nFirst error seen: `{}`\n",
            e.chars().take(300).collect::<String>()
        ));
    }
    md.push_str("\nRatios (same run):\n\n| conns | PostgreSQL ÷ SQLite req/s | p50 | p99 | commit time |\n|---:|---:|---:|---:|---:|\n");
    let mut summary = String::new();
    for &c in &opts.connections {
        let find = |s: &str| rows.iter().find(|r| r.store == s && r.connections == c);
        if let (Some(l), Some(p)) = (find("SQLite"), find("PostgreSQL")) {
            md.push_str(&format!(
                "| {c} | {} | {} | {} | {} |\n",
                fmt_ratio(p.result.throughput() / l.result.throughput()),
                fmt_ratio(p.result.p(0.5) / l.result.p(0.5)),
                fmt_ratio(p.result.p(0.99) / l.result.p(0.99)),
                fmt_ratio(p.batch.mean_commit_ns() / l.batch.mean_commit_ns()),
            ));
            summary.push_str(&format!(
                "| HTTP `/v1/authorize` on PostgreSQL vs SQLite (full), {c} conns: req/s | {:.0} | {:.0} SQLite | {} | (reported) |\n",
                p.result.throughput(),
                l.result.throughput(),
                fmt_ratio(p.result.throughput() / l.result.throughput()),
            ));
            summary.push_str(&format!(
                "| HTTP `/v1/authorize` on PostgreSQL vs SQLite (full), {c} conns: p50 / p99 | {} / {} | {} / {} SQLite | {} / {} | (reported) |\n",
                fmt_ns(p.result.p(0.5)),
                fmt_ns(p.result.p(0.99)),
                fmt_ns(l.result.p(0.5)),
                fmt_ns(l.result.p(0.99)),
                fmt_ratio(p.result.p(0.5) / l.result.p(0.5)),
                fmt_ratio(p.result.p(0.99) / l.result.p(0.99)),
            ));
        }
    }
    Ok(Section {
        markdown: md,
        summary_rows: summary,
        errors,
    })
}

// ---------- 2. audit append ----------

struct StoreRuns {
    writer: Vec<f64>,
    bare: Vec<f64>,
    batch: Vec<f64>,
    commit_ns: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    bare_batch: usize,
}

impl StoreRuns {
    fn new() -> Self {
        StoreRuns {
            writer: Vec::new(),
            bare: Vec::new(),
            batch: Vec::new(),
            commit_ns: Vec::new(),
            p50: Vec::new(),
            p99: Vec::new(),
            bare_batch: 0,
        }
    }
    fn push(&mut self, run: &audit::AppendRun, bare: f64, bare_batch: usize) {
        self.writer.push(run.per_sec);
        self.bare.push(bare);
        self.batch.push(run.batch.mean_jobs());
        self.commit_ns.push(run.batch.mean_commit_ns());
        self.p50.push(run.hist.value_at_quantile(0.5) as f64);
        self.p99.push(run.hist.value_at_quantile(0.99) as f64);
        self.bare_batch = bare_batch;
    }
}

async fn audit_compare(dir: &Path, opts: &Opts, pg: &mut PgServer) -> anyhow::Result<Section> {
    let key = SigningKey::from_bytes(&[7; 32]);
    let aopts = audit::Opts {
        records: opts.records,
        tasks: opts.tasks,
        reps: 1,
    };
    let reps = opts.reps.max(1);
    let (mut lite, mut post) = (StoreRuns::new(), StoreRuns::new());
    for rep in 0..reps {
        // SQLite: writer, then the same rows bare.
        let db = dir.join(format!("audit-{rep}.db"));
        let sqlite = Arc::new(
            warrant_store::sqlite::SqliteStore::open(&db, warrant_store::sqlite::Durability::Full)
                .await?,
        );
        let run = audit::append_to(sqlite.clone(), aopts, &key).await?;
        let rows = audit::read_all_from(&*sqlite, opts.records).await?;
        sqlite.close().await;
        drop(sqlite);
        let bare_batch = run.batch.mean_jobs().round().max(1.0) as usize;
        let bare_db = dir.join(format!("audit-bare-{rep}.db"));
        let pool = sqlite_base::open(&bare_db, true).await?;
        let (n, _, took) = sqlite_base::insert_records(&pool, &rows, bare_batch, None).await?;
        pool.close().await;
        for p in [&db, &bare_db] {
            let _ = std::fs::remove_file(p);
        }
        let bare = n as f64 / took.as_secs_f64();
        eprintln!(
            "    run {rep}: SQLite writer {:.0} records/s (mean batch {:.1}, commit {}), bare SQLite {bare:.0} rows/s",
            run.per_sec,
            run.batch.mean_jobs(),
            fmt_ns(run.batch.mean_commit_ns()),
        );
        lite.push(&run, bare, bare_batch);
        drop(rows);

        // PostgreSQL: writer into a fresh database, then the same rows bare into another.
        let url = pg.create_database("audit").await?;
        let store = Arc::new(PostgresStore::connect(&url).await?);
        let dyn_store: Arc<dyn Store> = store.clone();
        let run = audit::append_to(dyn_store, aopts, &key).await?;
        let rows = audit::read_all_from(&*store, opts.records).await?;
        store.close().await;
        drop(store);
        pg.drop_database("audit").await?;
        let bare_batch = run.batch.mean_jobs().round().max(1.0) as usize;
        let bare_url = pg.create_database("audit_bare").await?;
        let mut conn = pg_base::open_bare(&bare_url).await?;
        let (n, _, took) = pg_base::insert_records(&mut conn, &rows, bare_batch).await?;
        drop(conn);
        pg.drop_database("audit_bare").await?;
        let bare = n as f64 / took.as_secs_f64();
        eprintln!(
            "    run {rep}: PostgreSQL writer {:.0} records/s (mean batch {:.1}, commit {}), bare PostgreSQL {bare:.0} rows/s",
            run.per_sec,
            run.batch.mean_jobs(),
            fmt_ns(run.batch.mean_commit_ns()),
        );
        post.push(&run, bare, bare_batch);
    }
    // What one statement costs the writer in each backend: a round trip through sqlx.
    let rt_db = dir.join("round-trip.db");
    let pool = sqlite_base::open(&rt_db, true).await?;
    let rt_sqlite = sqlite_base::round_trip_ns(&pool, 2000).await?;
    pool.close().await;
    let _ = std::fs::remove_file(&rt_db);
    let rt_pg = pg_base::round_trip_ns(&pg.url, 2000).await?;

    let med = util::median;
    let mut md = format!(
        "{} decision-sized records appended one per `Writer::append` from {} concurrent tasks through the real \
         group-commit writer (`Writer::spawn`, as `Server::start` does) into a fresh `SqliteStore` (`Durability::Full`) \
         and into a fresh `PostgresStore` database. Each store's bare baseline then inserts the very same rows (read back) \
         with sqlx on one connection, one transaction per batch of that writer's mean group size, no chain head, no hashing: \
         SQLite with multi-row `INSERT … VALUES` (synchronous=FULL, WAL), PostgreSQL with the store's own \
         `INSERT … SELECT FROM unnest(…)` statement. Same columns and indexes. {reps} runs, alternating SQLite and PostgreSQL; \
         medians (each run's value in parentheses).\n\n",
        opts.records,
        opts.tasks.max(1),
    );
    md.push_str("| store | writer, records/s | bare insert, rows/s | writer ÷ bare | mean group commit (records) | mean commit time | per-append p50 / p99 |\n");
    md.push_str("|---|---:|---:|---:|---:|---:|---:|\n");
    for (label, r) in [("SQLite", &lite), ("PostgreSQL", &post)] {
        md.push_str(&format!(
            "| {label} | {} | {} (last run: batches of {}) | {} | {:.1} | {} | {} / {} |\n",
            audit::spread(&r.writer),
            audit::spread(&r.bare),
            r.bare_batch,
            fmt_ratio(med(&r.writer) / med(&r.bare)),
            med(&r.batch),
            fmt_ns(med(&r.commit_ns)),
            fmt_ns(med(&r.p50)),
            fmt_ns(med(&r.p99)),
        ));
    }
    md.push_str(&format!(
        "\nPostgreSQL ÷ SQLite: writer {}, bare insert {}, commit time {}.\n",
        fmt_ratio(med(&post.writer) / med(&lite.writer)),
        fmt_ratio(med(&post.bare) / med(&lite.bare)),
        fmt_ratio(med(&post.commit_ns) / med(&lite.commit_ns)),
    ));
    md.push_str(&format!(
        "\nOne statement round trip through sqlx (`SELECT 1`, one connection, 2000 times; a write batch of the \
         writer is about 6 such round trips in a row: sqlx's `ping` when the pool hands out the connection, `BEGIN`, \
         chain head `SELECT` (`FOR UPDATE` on PostgreSQL), `INSERT`, head `UPDATE`, `COMMIT`): SQLite (sqlx's worker thread) median {}, p99 {}; PostgreSQL (TCP on 127.0.0.1) \
         median {}, p99 {}.\n",
        fmt_ns(rt_sqlite.0),
        fmt_ns(rt_sqlite.1),
        fmt_ns(rt_pg.0),
        fmt_ns(rt_pg.1),
    ));
    let mut summary = format!(
        "| durable audit append (writer, {} tasks), PostgreSQL vs SQLite | {} | {} SQLite | {} | (reported) |\n",
        opts.tasks.max(1),
        fmt_rate(med(&post.writer)),
        fmt_rate(med(&lite.writer)),
        fmt_ratio(med(&post.writer) / med(&lite.writer)),
    );
    summary.push_str(&format!(
        "| durable audit append on PostgreSQL vs bare PostgreSQL insert (same rows, batches of {}) | {} | {} | {} | (reported) |\n",
        post.bare_batch,
        fmt_rate(med(&post.writer)),
        fmt_rate(med(&post.bare)),
        fmt_ratio(med(&post.writer) / med(&post.bare)),
    ));
    Ok(Section {
        markdown: md,
        summary_rows: summary,
        errors: 0,
    })
}

// ---------- 3. propagation ----------

/// Copies the first replica's signing key into another replica's data directory.
fn copy_keys(from: &Path, to: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let keys = to.join("keys");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&keys)?;
    for entry in std::fs::read_dir(from.join("keys"))? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            // Permissions are copied with the file (0600 for the private key).
            std::fs::copy(entry.path(), keys.join(entry.file_name()))?;
        }
    }
    Ok(())
}

/// `Some(true)` for allow, `Some(false)` for deny.
async fn decide(
    http: &reqwest::Client,
    srv: &ServerProc,
    body: &serde_json::Value,
) -> anyhow::Result<bool> {
    let resp = http
        .post(format!("{}/v1/authorize", srv.url))
        .bearer_auth(util::ADMIN_TOKEN)
        .json(body)
        .send()
        .await?;
    let status = resp.status();
    let v: serde_json::Value = resp.json().await?;
    match v["decision"].as_str() {
        Some("allow") => Ok(true),
        Some("deny") => Ok(false),
        _ => bail!("authorize answered {status}: {v}"),
    }
}

async fn synced_changes(http: &reqwest::Client, srv: &ServerProc) -> anyhow::Result<f64> {
    let text = http
        .get(format!("{}/metrics", srv.url))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    util::metric(&text, "warrant_replica_synced_changes_total")
        .ok_or_else(|| anyhow!("no warrant_replica_synced_changes_total in /metrics"))
}

const POLL_LIMIT: Duration = Duration::from_secs(10);

/// What polling B found.
struct Flip {
    /// From `t0` to the answer that showed the change.
    answered: Duration,
    /// From `t0` to the sending of that request (a lower bound of the delay).
    sent: Duration,
    polls: u32,
}

/// Polls B's decision until it is `want`, or `None` after [`POLL_LIMIT`].
async fn poll_decision(
    http: &reqwest::Client,
    srv: &ServerProc,
    body: &serde_json::Value,
    want: bool,
    t0: Instant,
) -> anyhow::Result<Option<Flip>> {
    let mut polls = 0;
    loop {
        let sent = t0.elapsed();
        let got = decide(http, srv, body).await?;
        polls += 1;
        let at = t0.elapsed();
        if got == want {
            return Ok(Some(Flip {
                answered: at,
                sent,
                polls,
            }));
        }
        if at > POLL_LIMIT {
            return Ok(None);
        }
    }
}

/// Polls C's synced-changes counter (every 1 ms) until it exceeds `seen`.
async fn poll_synced(
    http: &reqwest::Client,
    srv: &ServerProc,
    seen: f64,
    t0: Instant,
) -> anyhow::Result<Option<(Duration, f64)>> {
    loop {
        let now = synced_changes(http, srv).await?;
        let at = t0.elapsed();
        if now > seen {
            return Ok(Some((at, now)));
        }
        if at > POLL_LIMIT {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// `median | p90 | p99 | max` cells.
fn delay_stats(v: &[f64]) -> String {
    if v.is_empty() {
        return "- | - | - | -".into();
    }
    format!(
        "{} | {} | {} | {}",
        fmt_ns(util::percentile(v, 50.0)),
        fmt_ns(util::percentile(v, 90.0)),
        fmt_ns(util::percentile(v, 99.0)),
        fmt_ns(v.iter().copied().fold(f64::NAN, f64::max)),
    )
}

async fn propagation(dir: &Path, opts: &Opts, pg: &mut PgServer) -> anyhow::Result<Section> {
    let url = pg.create_database("replicas").await?;
    let (da, db, dc) = (
        dir.join("replica-a"),
        dir.join("replica-b"),
        dir.join("replica-c"),
    );
    let a = ServerProc::start_with(&opts.warrant_bin, &da, "full", Some(&url)).await?;
    copy_keys(&da, &db)?;
    copy_keys(&da, &dc)?;
    let b = ServerProc::start_with(&opts.warrant_bin, &db, "full", Some(&url)).await?;
    let c = ServerProc::start_with(&opts.warrant_bin, &dc, "full", Some(&url)).await?;

    // The benchmark policies and one identity, through A.
    let ids = load::register(&a, 1, 1).await?;
    let id = ids.first().ok_or_else(|| anyhow!("no identity"))?.clone();
    let body = util::read_request(&id, 1);
    let deny_policies = util::POLICIES.replace("context.risk < 50", "context.risk < 0");
    if deny_policies == util::POLICIES {
        bail!("cannot derive the denying policy variant");
    }
    let client_a = a.client()?;
    let http = reqwest::Client::new();
    let t0 = Instant::now();
    if poll_decision(&http, &b, &body, true, t0).await?.is_none() {
        bail!("replica B never saw the identity created through A");
    }
    // Let C settle, then remember its counter.
    let mut seen_c = loop {
        let before = synced_changes(&http, &c).await?;
        tokio::time::sleep(Duration::from_millis(1200)).await;
        if synced_changes(&http, &c).await? == before {
            break before;
        }
        if t0.elapsed() > POLL_LIMIT {
            bail!("replica C keeps syncing changes nobody makes");
        }
    };

    // Pairs of changes; each change flips the decision for the principal (allow → deny →
    // allow). Every fifth pair is a policy push (a variant that denies, then the original).
    let (mut b_all, mut b_sent) = (Vec::new(), Vec::new());
    let mut b_by_kind: [(&str, Vec<f64>); 2] =
        [("suspend / resume", vec![]), ("policy push", vec![])];
    let mut b_polls = Vec::new();
    let mut c_all = Vec::new();
    let mut a_latency = Vec::new();
    let (mut b_missed, mut c_missed) = (0u64, 0u64);
    // Changes B already showed on its first poll, by kind.
    let (mut first_poll_lifecycle, mut first_poll_policy) = (0u64, 0u64);
    let started = Instant::now();
    for i in 0..opts.changes {
        let pair = i / 2;
        let first = i % 2 == 0;
        let policy = pair % 5 == 4;
        let want_allow = !first;
        let sent = Instant::now();
        if policy {
            let text = if first {
                deny_policies.as_str()
            } else {
                util::POLICIES
            };
            client_a
                .put_policy(Some(util::SCHEMA), text, Some("propagation"))
                .await?;
        } else {
            client_a
                .lifecycle(&id, if first { "suspend" } else { "resume" }, None)
                .await?;
        }
        let t0 = Instant::now();
        a_latency.push((t0 - sent).as_nanos() as f64);
        let (rb, rc) = tokio::join!(
            poll_decision(&http, &b, &body, want_allow, t0),
            poll_synced(&http, &c, seen_c, t0)
        );
        let kind = usize::from(policy);
        match rb? {
            Some(Flip {
                answered,
                sent,
                polls,
            }) => {
                let ns = answered.as_nanos() as f64;
                b_all.push(ns);
                b_sent.push(sent.as_nanos() as f64);
                if let Some((_, v)) = b_by_kind.get_mut(kind) {
                    v.push(ns);
                }
                b_polls.push(f64::from(polls));
                if polls == 1 {
                    if policy {
                        first_poll_policy += 1;
                    } else {
                        first_poll_lifecycle += 1;
                    }
                }
            }
            None => b_missed += 1,
        }
        match rc? {
            Some((d, now)) => {
                c_all.push(d.as_nanos() as f64);
                seen_c = now;
            }
            None => c_missed += 1,
        }
    }
    let took = started.elapsed();
    for s in [a, b, c] {
        s.stop().await?;
    }
    pg.drop_database("replicas").await?;

    let n_policy = (0..opts.changes).filter(|i| (i / 2) % 5 == 4).count();
    let mut md = format!(
        "Three release servers (replicas A, B, C) on one PostgreSQL database, each with its own data directory \
         (B and C got a copy of A's signing key), default settings (change signal by LISTEN/NOTIFY, periodic \
         check every 500 ms). One identity, the benchmark policies. {} changes through A over real HTTP on \
         loopback, one at a time, each flipping the principal's decision: suspend / resume ({}), and policy pushes \
         ({}: a variant that denies the request, then the original). After A answered, two pollers start at once: \
         one sends the principal's `POST /v1/authorize` to B back to back until the answer shows the change \
         (the delay is taken when that answer arrives, so it includes one request); the other reads C's \
         `/metrics` every 1 ms until `warrant_replica_synced_changes_total` grows (the counter moves right \
         after C's catch-up commits, just before the new snapshot is swapped in). C serves nothing else, so only \
         the change signal (or the 500 ms check) brings changes to it; B's own decision appends also catch up \
         (every write batch locks the chain head and reloads what other replicas changed), so B also shows how \
         fast a busy replica converges. Total {:.1} s.\n\n",
        opts.changes,
        opts.changes - n_policy,
        n_policy,
        took.as_secs_f64(),
    );
    md.push_str("| measured | changes | median | p90 | p99 | max | not seen within 10 s |\n|---|---:|---:|---:|---:|---:|---:|\n");
    md.push_str(&format!(
        "| B's decision flips (all changes) | {} | {} | {b_missed} |\n",
        b_all.len(),
        delay_stats(&b_all)
    ));
    md.push_str(&format!(
        "| B: sending of the poll whose answer showed it (lower bound of the above) | {} | {} | |\n",
        b_sent.len(),
        delay_stats(&b_sent)
    ));
    for (label, v) in &b_by_kind {
        md.push_str(&format!(
            "| B's decision flips ({label}) | {} | {} | |\n",
            v.len(),
            delay_stats(v)
        ));
    }
    md.push_str(&format!(
        "| C's snapshot has the change (idle replica, `/metrics`) | {} | {} | {c_missed} |\n",
        c_all.len(),
        delay_stats(&c_all)
    ));
    md.push_str(&format!(
        "| (for scale) A's answer to the change itself | {} | {} | |\n",
        a_latency.len(),
        delay_stats(&a_latency)
    ));
    md.push_str(&format!(
        "\nPolls of B per change: mean {:.2}, max {:.0}; B's first poll already showed the change for {} of {} suspend/resume and {} of {} policy changes.\n",
        b_polls.iter().sum::<f64>() / (b_polls.len().max(1) as f64),
        b_polls.iter().copied().fold(0.0, f64::max),
        first_poll_lifecycle,
        opts.changes - n_policy,
        first_poll_policy,
        n_policy,
    ));
    let summary = format!(
        "| propagation across replicas ({} changes through A): B's decision flips, median / p90 / max | {} / {} / {} | | | (reported; not seen within 10 s: {b_missed}) |\n\
         | propagation to an idle replica C (change signal), median / p90 / max | {} / {} / {} | | | (reported; not seen within 10 s: {c_missed}) |\n",
        opts.changes,
        fmt_ns(util::percentile(&b_all, 50.0)),
        fmt_ns(util::percentile(&b_all, 90.0)),
        fmt_ns(b_all.iter().copied().fold(f64::NAN, f64::max)),
        fmt_ns(util::percentile(&c_all, 50.0)),
        fmt_ns(util::percentile(&c_all, 90.0)),
        fmt_ns(c_all.iter().copied().fold(f64::NAN, f64::max)),
    );
    Ok(Section {
        markdown: md,
        summary_rows: summary,
        errors: 0,
    })
}
