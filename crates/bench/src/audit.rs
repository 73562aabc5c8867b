//! `warrant-bench audit`: durable audit append throughput through the real group-commit
//! writer (SQLite, `Durability::Full`) vs bare SQLite inserts of the same rows, and the
//! verification rate vs plain SHA-256 over the same leaf bytes.

use crate::sqlite_base;
use crate::util::{self, fmt_ns, fmt_rate, fmt_ratio, BatchStats};
use anyhow::{anyhow, bail};
use arc_swap::ArcSwap;
use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use warrant_core::audit::{leaf_bytes, AuditRecord};
use warrant_core::verify::ChainVerifier;
use warrant_policy::PolicyBundle;
use warrant_server::metrics::Metrics;
use warrant_server::snapshot::Snapshot;
use warrant_server::writer::{Writer, WriterConfig};
use warrant_server::SystemClock;
use warrant_store::sqlite::{Durability, SqliteStore};
use warrant_store::{AuditFilter, Store};

#[derive(Debug, Clone, Copy)]
pub struct Opts {
    pub records: u64,
    pub tasks: usize,
    /// Repetitions of each measurement (medians are reported).
    pub reps: usize,
}

#[derive(Default)]
pub struct Outcome {
    pub append_per_sec: f64,
    pub bare_insert_per_sec: f64,
    pub mean_batch: f64,
    pub offline_verify_per_sec: f64,
    pub memory_verify_per_sec: f64,
    pub sha_per_sec: f64,
    pub markdown: String,
}

/// Same chunk size as `warrant audit verify`.
const CHUNK: u32 = 5000;

pub(crate) struct AppendRun {
    pub per_sec: f64,
    pub batch: BatchStats,
    pub hist: hdrhistogram::Histogram<u64>,
}

/// Appends `records` decision records through a fresh writer into a new SQLite database
/// at `db` (`Durability::Full`), then signs a checkpoint and stops the writer.
async fn append(db: &Path, opts: Opts, key: &SigningKey) -> anyhow::Result<AppendRun> {
    let sqlite = Arc::new(SqliteStore::open(db, Durability::Full).await?);
    let run = append_to(sqlite.clone(), opts, key).await;
    sqlite.close().await;
    run
}

/// Appends `records` decision records through a fresh writer (`Writer::spawn`, as
/// `Server::start` does) into `store`, from `opts.tasks` concurrent tasks, one record per
/// `Writer::append`; then signs a checkpoint and stops the writer. The store must be empty.
pub(crate) async fn append_to(
    store: Arc<dyn Store>,
    opts: Opts,
    key: &SigningKey,
) -> anyhow::Result<AppendRun> {
    let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot::new(
        Arc::new(PolicyBundle::empty()),
        0,
    )));
    let metrics = Arc::new(Metrics::new());
    let synced_size = store.audit_head().await?.tree.size();
    let (writer, writer_task) = Writer::spawn(
        store.clone(),
        snapshot,
        Arc::new(SystemClock),
        Arc::new(key.clone()),
        metrics.clone(),
        WriterConfig {
            max_batch: warrant_server::Config::default().max_batch,
            origin: "warrant/bench".into(),
            trust_domain: "warrant.local".into(),
            synced_size,
            key_wrap: Arc::new(warrant_server::credentials::KeyWrap::derive(key)?),
            gov: Arc::new(warrant_server::governance::GovConfig::default()),
        },
    );

    // Each task appends its share, one decision record per append (as `/v1/authorize` does).
    let tasks = opts.tasks.max(1);
    let gate = Arc::new(tokio::sync::Barrier::new(tasks + 1));
    let mut set = tokio::task::JoinSet::new();
    for t in 0..tasks as u64 {
        let writer = writer.clone();
        let gate = gate.clone();
        let drafts: Vec<_> = (0..opts.records)
            .filter(|i| i % tasks as u64 == t)
            .map(sqlite_base::decision_draft)
            .collect();
        set.spawn(async move {
            let mut hist = util::histogram();
            gate.wait().await;
            for d in drafts {
                let t0 = Instant::now();
                writer
                    .append(vec![d])
                    .await
                    .map_err(|e| anyhow!("append: {e}"))?;
                util::record(&mut hist, t0.elapsed());
            }
            Ok::<_, anyhow::Error>(hist)
        });
    }
    gate.wait().await;
    let started = Instant::now();
    let mut hist = util::histogram();
    while let Some(r) = set.join_next().await {
        hist.add(&r??)?;
    }
    let elapsed = started.elapsed();
    let batch = BatchStats::parse(&metrics.encode()?);
    writer
        .checkpoint()
        .await
        .map_err(|e| anyhow!("checkpoint: {e}"))?;
    drop(writer);
    let _ = tokio::time::timeout(Duration::from_secs(30), writer_task).await;
    Ok(AppendRun {
        per_sec: opts.records as f64 / elapsed.as_secs_f64(),
        batch,
        hist,
    })
}

/// Reads every record back through the store, in chunks as the verifier does.
async fn read_all(db: &Path, expected: u64) -> anyhow::Result<Vec<AuditRecord>> {
    let ro = SqliteStore::open_read_only(db).await?;
    let all = read_all_from(&ro, expected).await;
    ro.close().await;
    all
}

/// Reads every record back through `store`, in chunks as the verifier does, and checks
/// that there are `expected` of them.
pub(crate) async fn read_all_from(
    store: &dyn Store,
    expected: u64,
) -> anyhow::Result<Vec<AuditRecord>> {
    let mut all: Vec<AuditRecord> = Vec::with_capacity(expected as usize);
    let mut next = 0u64;
    loop {
        let chunk = store
            .audit_records(&AuditFilter {
                from_seq: Some(next),
                limit: CHUNK,
                ..Default::default()
            })
            .await?;
        let Some(last) = chunk.last().map(|r| r.seq) else {
            break;
        };
        let n = chunk.len();
        all.extend(chunk);
        if n < CHUNK as usize {
            break;
        }
        next = last + 1;
    }
    if all.len() as u64 != expected {
        bail!("read back {} records, appended {expected}", all.len());
    }
    Ok(all)
}

/// The offline verification as `warrant audit verify` does it (store → `ChainVerifier`).
async fn offline_verify(db: &Path, key: &SigningKey, expected: u64) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let ro = SqliteStore::open_read_only(db).await?;
    let head = ro.audit_head().await?;
    let checkpoints = ro.checkpoints().await?;
    let mut verifier = ChainVerifier::new(checkpoints, &[key.verifying_key()]);
    let mut next = 0u64;
    loop {
        let chunk = ro
            .audit_records(&AuditFilter {
                from_seq: Some(next),
                limit: CHUNK,
                ..Default::default()
            })
            .await?;
        let Some(last) = chunk.last().map(|r| r.seq) else {
            break;
        };
        for r in &chunk {
            verifier.push(r);
        }
        if verifier.broken() || chunk.len() < CHUNK as usize {
            break;
        }
        next = last + 1;
    }
    let report = verifier.finish(Some(head.tree.size()));
    ro.close().await;
    let took = t.elapsed();
    if !report.ok() || report.records != expected || report.checkpoints == 0 {
        bail!("verification failed: {:?}", report.findings);
    }
    Ok(took)
}

pub(crate) fn spread(v: &[f64]) -> String {
    format!(
        "{} (runs: {})",
        fmt_rate(util::median(v)),
        v.iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

pub async fn run(base: &Path, opts: Opts) -> anyhow::Result<Outcome> {
    let dir = tempfile::tempdir_in(base)?;
    let key = SigningKey::from_bytes(&[7; 32]);
    let reps = opts.reps.max(1);

    // Append through the writer, then the same rows through bare SQLite, `reps` times.
    let (mut w_rates, mut b_rates, mut batches) = (Vec::new(), Vec::new(), Vec::new());
    let mut last: Option<(AppendRun, std::path::PathBuf, usize, u64)> = None;
    for rep in 0..reps {
        let db = dir.path().join(format!("warrant-{rep}.db"));
        let run = append(&db, opts, &key).await?;
        let rows = read_all(&db, opts.records).await?;
        let bare_batch = run.batch.mean_jobs().round().max(1.0) as usize;
        let bare_db = dir.path().join(format!("bare-{rep}.db"));
        let pool = sqlite_base::open(&bare_db, true).await?;
        let (n, commits, bare_elapsed) =
            sqlite_base::insert_records(&pool, &rows, bare_batch, None).await?;
        pool.close().await;
        let _ = std::fs::remove_file(&bare_db);
        let bare = n as f64 / bare_elapsed.as_secs_f64();
        eprintln!(
            "  run {rep}: writer {:.0} records/s (mean batch {:.1}), bare SQLite {bare:.0} rows/s",
            run.per_sec,
            run.batch.mean_jobs()
        );
        w_rates.push(run.per_sec);
        b_rates.push(bare);
        batches.push(run.batch.mean_jobs());
        last = Some((run, db, bare_batch, commits));
    }
    let (run, db, bare_batch, commits) = last.ok_or_else(|| anyhow!("no run"))?;

    // Verification rates, interleaved `reps` times: offline, in memory, plain SHA-256.
    let all = read_all(&db, opts.records).await?;
    let leaves: Vec<Vec<u8>> = all
        .iter()
        .map(|r| leaf_bytes(r.seq, r.ts_ms, &r.kind, &r.actor, &r.subject, &r.payload))
        .collect();
    let leaf_total: usize = leaves.iter().map(Vec::len).sum();
    let n = opts.records as f64;
    let (mut off, mut mem, mut sha, mut read) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..reps {
        let t = Instant::now();
        let back = read_all(&db, opts.records).await?;
        read.push(n / t.elapsed().as_secs_f64());
        drop(back);

        off.push(n / offline_verify(&db, &key, opts.records).await?.as_secs_f64());

        let t = Instant::now();
        let mut verifier = ChainVerifier::new(vec![], &[]);
        for r in &all {
            verifier.push(r);
        }
        let report = black_box(verifier.finish(None));
        mem.push(n / t.elapsed().as_secs_f64());
        if !report.ok() {
            bail!("in-memory verification failed: {:?}", report.findings);
        }

        let t = Instant::now();
        for l in &leaves {
            black_box(Sha256::digest(black_box(l)));
        }
        sha.push(n / t.elapsed().as_secs_f64());
    }

    let med = util::median;
    let out = Outcome {
        append_per_sec: med(&w_rates),
        bare_insert_per_sec: med(&b_rates),
        mean_batch: med(&batches),
        offline_verify_per_sec: med(&off),
        memory_verify_per_sec: med(&mem),
        sha_per_sec: med(&sha),
        markdown: String::new(),
    };
    let mut md = String::new();
    md.push_str(&format!(
        "{} decision-sized records (mean leaf {} bytes) appended one per `Writer::append` from {} concurrent tasks \
         through the real group-commit writer into SQLite with `Durability::Full` (fsync per commit), into a fresh database. \
         The bare baseline then inserts the very same rows (read back) with sqlx in transactions of the writer's mean group size \
         (last run: {} transactions of {} rows), synchronous=FULL, WAL, same columns and indexes, one connection, \
         no chain head, no hashing. {reps} runs each, alternating; medians (each run's value in parentheses). \
         Verification: the last run's log (with a signed checkpoint), same {reps}× interleaving.\n\n",
        opts.records,
        leaf_total / all.len().max(1),
        opts.tasks.max(1),
        commits,
        bare_batch
    ));
    md.push_str(
        "| measure | warrant | baseline | warrant ÷ baseline (rate) |\n|---|---:|---:|---:|\n",
    );
    md.push_str(&format!(
        "| durable append, records/s | {} | {} bare SQLite insert | {} |\n",
        spread(&w_rates),
        spread(&b_rates),
        fmt_ratio(out.append_per_sec / out.bare_insert_per_sec)
    ));
    md.push_str(&format!(
        "| offline verify (read store + `ChainVerifier`, as `warrant audit verify`), records/s | {} | {} plain SHA-256 of the leaf bytes | {} |\n",
        spread(&off),
        spread(&sha),
        fmt_ratio(out.offline_verify_per_sec / out.sha_per_sec)
    ));
    md.push_str(&format!(
        "| in-memory `ChainVerifier` only, records/s | {} | {} plain SHA-256 of the leaf bytes | {} |\n",
        spread(&mem),
        spread(&sha),
        fmt_ratio(out.memory_verify_per_sec / out.sha_per_sec)
    ));
    md.push_str(&format!(
        "| reading the records back through the store only, records/s | {} | | |\n",
        spread(&read),
    ));
    md.push_str(&format!(
        "\nWriter (last run): mean group commit {:.1} records, {} commits, mean commit {}; per-append latency p50 {}, p99 {}, max {}.\n",
        run.batch.mean_jobs(),
        run.batch.commits,
        fmt_ns(run.batch.mean_commit_ns()),
        fmt_ns(run.hist.value_at_quantile(0.5) as f64),
        fmt_ns(run.hist.value_at_quantile(0.99) as f64),
        fmt_ns(run.hist.max() as f64),
    ));
    Ok(Outcome {
        markdown: md,
        ..out
    })
}
