//! `warrant-bench http`: `/v1/authorize` throughput and latency against the real release
//! server on loopback, every decision durably audit-logged, with same-run baselines:
//! `GET /healthz` (the HTTP stack alone) and bare SQLite commit rates (what group commit buys).

use crate::load::{self, LoadOpts, LoadResult, ServerProc, Target};
use crate::sqlite_base;
use crate::util::{self, fmt_ns, fmt_rate, fmt_ratio, BatchStats};
use anyhow::bail;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Opts {
    pub warrant_bin: PathBuf,
    pub connections: Vec<usize>,
    pub duration: Duration,
    pub identities: usize,
    pub durabilities: Vec<String>,
    pub max_requests: u64,
    pub sqlite_duration: Duration,
}

pub struct Row {
    pub endpoint: &'static str,
    pub durability: String,
    pub connections: usize,
    pub result: LoadResult,
    pub batch: Option<BatchStats>,
    pub rss_kib: Option<u64>,
}

#[derive(Default)]
pub struct Outcome {
    pub rows: Vec<Row>,
    pub markdown: String,
    pub errors: u64,
}

impl Outcome {
    pub fn find(&self, endpoint: &str, durability: &str, c: usize) -> Option<&Row> {
        self.rows.iter().find(|r| {
            r.endpoint == endpoint
                && (r.durability == durability || endpoint == "healthz")
                && r.connections == c
        })
    }
}

fn durability_label(d: &str) -> &'static str {
    match d {
        "full" => "full (fsync per group commit: survives power loss)",
        "normal" => "normal (no fsync per commit: survives a process crash, not power loss)",
        _ => "?",
    }
}

pub async fn run(base: &Path, opts: &Opts) -> anyhow::Result<Outcome> {
    if !opts.warrant_bin.exists() {
        bail!(
            "no warrant binary at `{}` (build it: cargo build --release -p warrant)",
            opts.warrant_bin.display()
        );
    }
    let mut out = Outcome::default();
    let lopts = |c: usize, d: Duration, pid: u32| LoadOpts {
        connections: c,
        duration: d,
        max_requests: opts.max_requests,
        server_pid: Some(pid),
    };
    // One server per durability mode, all started up front; the runs alternate between
    // them so that drift on a shared machine hits every mode alike.
    let dir = tempfile::tempdir_in(base)?;
    let mut servers = Vec::new();
    for durability in &opts.durabilities {
        let data = dir.path().join(format!("data-{durability}"));
        let srv = ServerProc::start(&opts.warrant_bin, &data, durability).await?;
        let ids = load::register(&srv, opts.identities, 16).await?;
        let bodies = load::authorize_bodies(&ids)?;
        // Warm-up (connections, allocator, page cache).
        let _ = load::run(
            srv.addr,
            Target::Authorize(bodies.clone()),
            lopts(16, Duration::from_secs(2), srv.pid),
        )
        .await?;
        servers.push((durability.clone(), srv, bodies));
    }
    for &c in &opts.connections {
        for (durability, srv, bodies) in &servers {
            let before = BatchStats::parse(&srv.metrics().await?);
            let result = load::run(
                srv.addr,
                Target::Authorize(bodies.clone()),
                lopts(c, opts.duration, srv.pid),
            )
            .await?;
            let after = BatchStats::parse(&srv.metrics().await?);
            eprintln!(
                "  authorize durability={durability} c={c}: {:.0} req/s p50 {} p99 {} errors {}",
                result.throughput(),
                fmt_ns(result.p(0.5)),
                fmt_ns(result.p(0.99)),
                result.errors
            );
            out.errors += result.errors;
            out.rows.push(Row {
                endpoint: "authorize",
                durability: durability.clone(),
                connections: c,
                result,
                batch: Some(after.since(&before)),
                rss_kib: srv.rss_kib().ok().map(|r| r.0),
            });
        }
        if let Some((_, srv, _)) = servers.first() {
            let result =
                load::run(srv.addr, Target::Healthz, lopts(c, opts.duration, srv.pid)).await?;
            eprintln!(
                "  healthz c={c}: {:.0} req/s p50 {} p99 {}",
                result.throughput(),
                fmt_ns(result.p(0.5)),
                fmt_ns(result.p(0.99))
            );
            out.errors += result.errors;
            out.rows.push(Row {
                endpoint: "healthz",
                durability: "-".into(),
                connections: c,
                result,
                batch: None,
                rss_kib: None,
            });
        }
    }
    for (_, srv, _) in servers {
        srv.stop().await?;
    }

    // Bare SQLite durability baseline, batched at the mean group size seen under load.
    let batch = out
        .rows
        .iter()
        .filter(|r| r.endpoint == "authorize" && r.durability == "full")
        .filter_map(|r| r.batch.map(|b| b.mean_jobs()))
        .fold(f64::NAN, f64::max);
    let batch = if batch.is_finite() {
        batch.round().max(2.0) as usize
    } else {
        32
    };
    let rates = sqlite_base::commit_rates(dir.path(), batch, opts.sqlite_duration).await?;

    let mut md = String::new();
    md.push_str(&format!(
        "Release server on 127.0.0.1, {} registered identities, principals picked at random; \
         each connection is a keep-alive HTTP/1.1 connection sending requests back to back for {} s. \
         The load client runs on the same 2 cores as the server. Every `/v1/authorize` answer is checked: \
         HTTP 200 with a `decision` field (all are `allow`). Latency is per request, client side.\n\n",
        opts.identities,
        opts.duration.as_secs_f64()
    ));
    md.push_str("| endpoint | durability | conns | req/s | p50 | p99 | p99.9 | max | errors | mean group commit (requests/commit) | mean commit time | server RSS | CPU cores used: server / load client |\n");
    md.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in &out.rows {
        let (batch, commit) = match r.batch {
            Some(b) => (format!("{:.1}", b.mean_jobs()), fmt_ns(b.mean_commit_ns())),
            None => ("-".into(), "-".into()),
        };
        let errors = if r.result.statuses.is_empty() {
            r.result.errors.to_string()
        } else {
            format!("{} {:?}", r.result.errors, r.result.statuses)
        };
        md.push_str(&format!(
            "| `{}` | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            if r.endpoint == "authorize" {
                "POST /v1/authorize"
            } else {
                "GET /healthz"
            },
            r.durability,
            r.connections,
            r.result.throughput(),
            fmt_ns(r.result.p(0.5)),
            fmt_ns(r.result.p(0.99)),
            fmt_ns(r.result.p(0.999)),
            fmt_ns(r.result.max()),
            errors,
            batch,
            commit,
            r.rss_kib.map(util::fmt_mib).unwrap_or_else(|| "-".into()),
            match (r.result.server_cores, r.result.client_cores) {
                (Some(s), Some(c)) => format!("{s:.2} / {c:.2}"),
                _ => "-".into(),
            },
        ));
    }
    if let Some(e) = out.rows.iter().find_map(|r| r.result.first_error.clone()) {
        md.push_str(&format!(
            "\nFirst error seen: `{}`\n",
            e.chars().take(300).collect::<String>()
        ));
    }
    md.push_str("\nDurability modes: ");
    md.push_str(
        &opts
            .durabilities
            .iter()
            .map(|d| format!("`{d}` = {}", durability_label(d)))
            .collect::<Vec<_>>()
            .join("; "),
    );
    md.push_str(".\n\nRatios (same run):\n\n| connections | authorize(full) req/s ÷ healthz req/s | authorize(full) p50 ÷ healthz p50 | authorize(normal) req/s ÷ authorize(full) req/s |\n|---:|---:|---:|---:|\n");
    for &c in &opts.connections {
        let full = out.find("authorize", "full", c);
        let normal = out.find("authorize", "normal", c);
        let health = out.find("healthz", "-", c);
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => fmt_ratio(a / b),
            _ => "n/a".into(),
        };
        md.push_str(&format!(
            "| {c} | {} | {} | {} |\n",
            ratio(
                full.map(|r| r.result.throughput()),
                health.map(|r| r.result.throughput())
            ),
            ratio(
                full.map(|r| r.result.p(0.5)),
                health.map(|r| r.result.p(0.5))
            ),
            ratio(
                normal.map(|r| r.result.throughput()),
                full.map(|r| r.result.throughput())
            ),
        ));
    }
    md.push_str(&format!(
        "\nBare SQLite durability baseline (sqlx, WAL, the audit table's columns and indexes, one connection, {} s each; \
         batched at the largest mean group-commit size seen above under `full`):\n\n| case | commits/s | rows/s |\n|---|---:|---:|\n",
        opts.sqlite_duration.as_secs_f64()
    ));
    for r in &rates {
        md.push_str(&format!(
            "| {} | {} | {} |\n",
            r.label,
            fmt_rate(r.commits_per_sec()),
            fmt_rate(r.rows_per_sec())
        ));
    }
    if let (Some(single), Some(batched)) = (rates.first(), rates.get(1)) {
        md.push_str(&format!(
            "\nGroup commit buys {} more durable rows/s than one fsync'd commit per row on this disk.\n",
            fmt_ratio(batched.rows_per_sec() / single.rows_per_sec())
        ));
        let best = out
            .rows
            .iter()
            .filter(|r| r.endpoint == "authorize" && r.durability == "full")
            .map(|r| r.result.throughput())
            .fold(f64::NAN, f64::max);
        if best.is_finite() {
            md.push_str(&format!(
                "Best durable (`full`) `/v1/authorize` rate above ÷ bare single-row fsync'd commits/s: {}.\n",
                fmt_ratio(best / single.rows_per_sec())
            ));
        }
        out.markdown = md;
    } else {
        out.markdown = md;
    }
    Ok(out)
}
