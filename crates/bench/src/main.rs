//! `warrant-bench`: load, durability and scale benchmarks for warrant.
//!
//! Every result is reported as a ratio against a baseline measured in the same run on the
//! same machine: absolute times drift between machines and runs, ratios much less.
//! Build in release mode first: `cargo build --release -p warrant -p warrant-bench`.
//! Loads are bounded in count and time and use loopback addresses only.

mod audit;
mod decide;
mod http;
mod load;
mod pg;
mod pg_base;
mod proposals;
mod scale;
mod sqlite_base;
mod tokens;
mod util;

use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use util::{fmt_mib, fmt_ns, fmt_rate, fmt_ratio};

#[derive(Parser)]
#[command(
    name = "warrant-bench",
    about = "warrant benchmarks (ratios against same-run baselines)"
)]
struct Cli {
    /// Where temporary data directories go (must be a real disk for durability numbers).
    #[arg(long, global = true)]
    work_dir: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// In-process server decision path vs bare Cedar `is_authorized`.
    Decide(DecideArgs),
    /// HTTP `/v1/authorize` load against the release server (full and normal durability).
    Http(HttpArgs),
    /// Durable audit append rate vs bare SQLite; verify rate vs plain SHA-256.
    Audit(AuditArgs),
    /// Decision latency and memory with a large registry vs a small one.
    Scale(ScaleArgs),
    /// PostgreSQL vs SQLite (HTTP decisions, audit append) and propagation across replicas.
    Pg(PgArgs),
    /// The token endpoint over HTTP vs bare Ed25519 signing.
    Tokens(TokensArgs),
    /// AI change proposals over HTTP (assessed, tiered, executed or stored) with a large
    /// registry, vs `/v1/authorize` on the same server.
    Proposals(ProposalsArgs),
    /// Everything above with moderate defaults; prints a markdown report (`pg` only when
    /// a PostgreSQL server is given or can be started).
    All(AllArgs),
}

#[derive(Args, Clone)]
struct TokensArgs {
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    tasks: usize,
    /// Tokens to request (each with its own client assertion).
    #[arg(long, default_value_t = 20_000)]
    tokens: usize,
}

#[derive(Args, Clone)]
struct ProposalsArgs {
    #[command(flatten)]
    bin: BinArg,
    /// Registered identities (targets of the proposals).
    #[arg(long, default_value_t = 100_000)]
    identities: usize,
    /// Concurrent clients (connections), one run each per tier.
    #[arg(long, value_delimiter = ',', default_value = "16,64")]
    connections: Vec<usize>,
    /// Seconds per load run.
    #[arg(long, default_value_t = 8)]
    duration: u64,
    /// Upper bound on proposals per run.
    #[arg(long, default_value_t = 50_000)]
    max_per_run: usize,
    /// Server durability (`full` fsyncs every group commit).
    #[arg(long, default_value = "full")]
    durability: String,
    /// Sets `governance.chain_window_secs` in the server's config [default: the server's].
    #[arg(long)]
    chain_window_secs: Option<u64>,
}

#[derive(Args, Clone)]
struct DecideArgs {
    /// Timed samples per variant.
    #[arg(long, default_value_t = 300)]
    rounds: usize,
    /// Decisions per sample.
    #[arg(long, default_value_t = 500)]
    batch: usize,
}

#[derive(Args, Clone)]
struct BinArg {
    /// The release `warrant` binary [default: next to this binary].
    #[arg(long)]
    warrant_bin: Option<PathBuf>,
}

impl BinArg {
    fn path(&self) -> PathBuf {
        self.warrant_bin.clone().unwrap_or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|p| p.parent().map(|d| d.join("warrant")))
                .filter(|p| p.exists())
                .unwrap_or_else(|| PathBuf::from("target/release/warrant"))
        })
    }
}

#[derive(Args, Clone)]
struct HttpArgs {
    #[command(flatten)]
    bin: BinArg,
    /// Concurrent keep-alive connections, one run each.
    #[arg(long, value_delimiter = ',', default_value = "16,64")]
    connections: Vec<usize>,
    /// Seconds per load run.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Registered identities (principals picked at random).
    #[arg(long, default_value_t = 100)]
    identities: usize,
    /// Server durability modes to run, in order.
    #[arg(long, value_delimiter = ',', default_value = "full,normal")]
    durability: Vec<String>,
    /// Upper bound on requests per run.
    #[arg(long, default_value_t = 5_000_000)]
    max_requests: u64,
    /// Seconds per bare-SQLite commit-rate case.
    #[arg(long, default_value_t = 3)]
    sqlite_duration: u64,
}

#[derive(Args, Clone)]
struct AuditArgs {
    /// Records to append.
    #[arg(long, default_value_t = 200_000)]
    records: u64,
    /// Concurrent appending tasks.
    #[arg(long, default_value_t = 256)]
    tasks: usize,
    /// Repetitions of each measurement (medians are reported).
    #[arg(long, default_value_t = 3)]
    reps: usize,
}

#[derive(Args, Clone)]
struct ScaleArgs {
    #[command(flatten)]
    bin: BinArg,
    #[arg(long, default_value_t = 100)]
    small: usize,
    #[arg(long, default_value_t = 100_000)]
    large: usize,
    /// Timed in-process decisions per registry size.
    #[arg(long, default_value_t = 200_000)]
    ops: usize,
    /// Connections of the short HTTP load runs.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Seconds per short HTTP load run.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    #[arg(long, default_value_t = 5_000_000)]
    max_requests: u64,
    /// Skip the release-server part.
    #[arg(long)]
    no_http: bool,
}

#[derive(Args, Clone)]
struct PgArgs {
    #[command(flatten)]
    bin: BinArg,
    #[command(flatten)]
    pg: PgUrlArg,
    /// Concurrent keep-alive connections of the HTTP comparison, one run each.
    #[arg(long, value_delimiter = ',', default_value = "16,64")]
    connections: Vec<usize>,
    /// Seconds per HTTP load run.
    #[arg(long, default_value_t = 5)]
    duration: u64,
    /// HTTP load runs per store and connection count (alternating, merged).
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Registered identities of the HTTP comparison.
    #[arg(long, default_value_t = 100)]
    identities: usize,
    /// Upper bound on requests per HTTP run.
    #[arg(long, default_value_t = 5_000_000)]
    max_requests: u64,
    /// Audit records appended per store and run.
    #[arg(long, default_value_t = 100_000)]
    records: u64,
    /// Concurrent appending tasks.
    #[arg(long, default_value_t = 256)]
    tasks: usize,
    /// Runs of the audit comparison (medians are reported).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Changes pushed through replica A in the propagation test.
    #[arg(long, default_value_t = 100)]
    changes: usize,
    /// Skip the HTTP comparison.
    #[arg(long)]
    no_http: bool,
    /// Skip the audit append comparison.
    #[arg(long)]
    no_audit: bool,
    /// Skip the propagation test.
    #[arg(long)]
    no_replicas: bool,
}

#[derive(Args, Clone)]
struct PgUrlArg {
    /// PostgreSQL server to use, e.g. postgres://postgres@127.0.0.1:5432/postgres; its role
    /// must be allowed to create databases (scratch `warrant_bench_<pid>_*` databases are
    /// created and dropped). [default: a throw-away server started with
    /// scripts/pg-test-server.sh and stopped at the end]
    #[arg(long, env = "WARRANT_BENCH_PG_URL", hide_env_values = true)]
    pg_url: Option<String>,
}

#[derive(Args, Clone)]
struct AllArgs {
    #[command(flatten)]
    pg: PgUrlArg,
    #[command(flatten)]
    bin: BinArg,
    /// Also write the markdown report to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Seconds per HTTP load run.
    #[arg(long, default_value_t = 10)]
    duration: u64,
}

fn http_opts(a: &HttpArgs) -> http::Opts {
    http::Opts {
        warrant_bin: a.bin.path(),
        connections: a.connections.clone(),
        duration: Duration::from_secs(a.duration),
        identities: a.identities,
        durabilities: a.durability.clone(),
        max_requests: a.max_requests,
        sqlite_duration: Duration::from_secs(a.sqlite_duration),
    }
}

fn scale_opts(a: &ScaleArgs) -> scale::Opts {
    scale::Opts {
        small: a.small,
        large: a.large,
        ops: a.ops,
        warrant_bin: (!a.no_http).then(|| a.bin.path()),
        connections: a.connections,
        http_duration: Duration::from_secs(a.duration),
        max_requests: a.max_requests,
    }
}

fn pg_opts(a: &PgArgs) -> pg::Opts {
    pg::Opts {
        warrant_bin: a.bin.path(),
        connections: a.connections.clone(),
        duration: Duration::from_secs(a.duration),
        rounds: a.rounds,
        identities: a.identities,
        max_requests: a.max_requests,
        records: a.records,
        tasks: a.tasks,
        reps: a.reps,
        changes: a.changes,
        http: !a.no_http,
        audit: !a.no_audit,
        replicas: !a.no_replicas,
    }
}

fn header() -> String {
    format!(
        "Machine: {}. Build: release. 1-minute load average at start: {} (the machine may be shared). \
         Every ratio compares two measurements taken in this same run.\n",
        util::machine(),
        util::loadavg()
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // On Ctrl-C the running benchmark is dropped, which stops every server it started
    // (child processes and a throw-away PostgreSQL).
    tokio::select! {
        r = run(cli) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let base = cli.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&base)?;
    let head = header();
    match cli.cmd {
        Cmd::Decide(a) => {
            let o = decide::run(
                &base,
                decide::Opts {
                    rounds: a.rounds,
                    batch: a.batch,
                },
            )
            .await?;
            println!("{head}\n## decide\n\n{}", o.markdown);
        }
        Cmd::Http(a) => {
            let o = http::run(&base, &http_opts(&a)).await?;
            println!("{head}\n## http\n\n{}", o.markdown);
        }
        Cmd::Audit(a) => {
            let o = audit::run(
                &base,
                audit::Opts {
                    records: a.records,
                    tasks: a.tasks,
                    reps: a.reps,
                },
            )
            .await?;
            println!("{head}\n## audit\n\n{}", o.markdown);
        }
        Cmd::Scale(a) => {
            let o = scale::run(&base, &scale_opts(&a)).await?;
            println!("{head}\n## scale\n\n{}", o.markdown);
        }
        Cmd::Pg(a) => {
            let o = pg::run(&base, &pg_opts(&a), a.pg.pg_url.as_deref()).await?;
            println!("{head}\n## pg\n\n{}", o.markdown);
        }
        Cmd::Tokens(a) => {
            let o = tokens::run(
                &base,
                &tokens::Opts {
                    tasks: a.tasks,
                    tokens: a.tokens,
                },
            )
            .await?;
            println!("{head}\n## tokens\n\n{}", o.markdown);
        }
        Cmd::Proposals(a) => {
            let o = proposals::run(
                &base,
                &proposals::Opts {
                    warrant_bin: a.bin.path(),
                    identities: a.identities,
                    connections: a.connections.clone(),
                    duration: Duration::from_secs(a.duration),
                    max_per_run: a.max_per_run,
                    durability: a.durability.clone(),
                    chain_window_secs: a.chain_window_secs,
                },
            )
            .await?;
            println!("{head}\n## proposals\n\n{}", o.markdown);
            if o.errors > 0 {
                anyhow::bail!("{} requests failed", o.errors);
            }
        }
        Cmd::All(a) => all(&base, a).await?,
    }
    Ok(())
}

async fn all(base: &Path, a: AllArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let head = header();
    eprintln!("[1/5] decide");
    let d = decide::run(
        base,
        decide::Opts {
            rounds: 300,
            batch: 500,
        },
    )
    .await?;
    eprintln!("[2/5] http");
    let h = http::run(
        base,
        &http_opts(&HttpArgs {
            bin: a.bin.clone(),
            connections: vec![16, 64],
            duration: a.duration,
            identities: 100,
            durability: vec!["full".into(), "normal".into()],
            max_requests: 5_000_000,
            sqlite_duration: 3,
        }),
    )
    .await?;
    eprintln!("[3/5] audit");
    let au = audit::run(
        base,
        audit::Opts {
            records: 200_000,
            tasks: 256,
            reps: 3,
        },
    )
    .await?;
    eprintln!("[4/5] scale");
    let s = scale::run(
        base,
        &scale_opts(&ScaleArgs {
            bin: a.bin.clone(),
            small: 100,
            large: 100_000,
            ops: 200_000,
            connections: 16,
            duration: a.duration,
            max_requests: 5_000_000,
            no_http: false,
        }),
    )
    .await?;

    eprintln!("[5/5] pg");
    let p = match pg_base::PgServer::obtain(a.pg.pg_url.as_deref()).await {
        Ok(mut server) => {
            let opts = pg_opts(&PgArgs {
                bin: a.bin.clone(),
                pg: a.pg.clone(),
                connections: vec![16, 64],
                duration: a.duration.min(5),
                rounds: 2,
                identities: 100,
                max_requests: 5_000_000,
                records: 100_000,
                tasks: 256,
                reps: 3,
                changes: 100,
                no_http: false,
                no_audit: false,
                no_replicas: false,
            });
            let r = pg::run_on(base, &opts, &mut server).await;
            server.cleanup().await;
            Some(r?)
        }
        Err(e) => {
            eprintln!("  skipped: no PostgreSQL ({e:#})");
            None
        }
    };
    let pg_skipped = p.is_none();

    let verdict = |ok: bool| if ok { "met" } else { "**missed**" };
    let mut md = String::new();
    md.push_str(&head);
    md.push_str(&format!(
        "Total run time: {:.0} s; 1-minute load average at the end: {}.\n\n## Summary\n\n",
        started.elapsed().as_secs_f64(),
        util::loadavg()
    ));
    md.push_str(
        "| benchmark | warrant | same-run baseline | ratio | goal |\n|---|---:|---:|---:|---|\n",
    );
    let server_ratio = d.server_ns / d.bare_ns;
    md.push_str(&format!(
        "| in-process decision (`decide`, median) | {} | {} bare Cedar `is_authorized` | {} | ≤ 1.2×: {} |\n",
        fmt_ns(d.server_ns),
        fmt_ns(d.bare_ns),
        fmt_ratio(server_ratio),
        verdict(server_ratio <= 1.2)
    ));
    md.push_str(&format!(
        "| `warrant_policy::decide` alone (median) | {} | {} bare Cedar `is_authorized` | {} | (context) |\n",
        fmt_ns(d.policy_ns),
        fmt_ns(d.bare_ns),
        fmt_ratio(d.policy_ns / d.bare_ns)
    ));
    md.push_str(&format!(
        "| in-process decision vs Cedar incl. request parsing | {} | {} | {} | (context) |\n",
        fmt_ns(d.server_ns),
        fmt_ns(d.parse_ns),
        fmt_ratio(d.server_ns / d.parse_ns)
    ));
    for c in [16usize, 64] {
        if let (Some(f), Some(hz)) = (h.find("authorize", "full", c), h.find("healthz", "-", c)) {
            md.push_str(&format!(
                "| HTTP `/v1/authorize`, durable (full), {c} conns: req/s | {:.0} | {:.0} `GET /healthz` | {} | (reported) |\n",
                f.result.throughput(),
                hz.result.throughput(),
                fmt_ratio(f.result.throughput() / hz.result.throughput())
            ));
            md.push_str(&format!(
                "| HTTP `/v1/authorize`, durable (full), {c} conns: p50 / p99 | {} / {} | {} / {} `GET /healthz` | {} / {} | (reported) |\n",
                fmt_ns(f.result.p(0.5)),
                fmt_ns(f.result.p(0.99)),
                fmt_ns(hz.result.p(0.5)),
                fmt_ns(hz.result.p(0.99)),
                fmt_ratio(f.result.p(0.5) / hz.result.p(0.5)),
                fmt_ratio(f.result.p(0.99) / hz.result.p(0.99)),
            ));
        }
        if let (Some(f), Some(n)) = (
            h.find("authorize", "full", c),
            h.find("authorize", "normal", c),
        ) {
            md.push_str(&format!(
                "| HTTP `/v1/authorize`, normal vs full durability, {c} conns: req/s | {:.0} normal | {:.0} full | {} | (reported) |\n",
                n.result.throughput(),
                f.result.throughput(),
                fmt_ratio(n.result.throughput() / f.result.throughput())
            ));
        }
    }
    md.push_str(&format!(
        "| HTTP load errors (all runs) | {} | 0 | | 0 |\n",
        h.errors + s.errors + p.as_ref().map_or(0, |p| p.errors)
    ));
    md.push_str(&format!(
        "| durable audit append (writer, 256 tasks) | {} | {} bare SQLite insert, same rows, batches of {:.0} | {} | (reported) |\n",
        fmt_rate(au.append_per_sec),
        fmt_rate(au.bare_insert_per_sec),
        au.mean_batch,
        fmt_ratio(au.append_per_sec / au.bare_insert_per_sec)
    ));
    md.push_str(&format!(
        "| audit verify, offline (store → verifier) | {} | {} plain SHA-256 of leaf bytes | {} | (reported) |\n",
        fmt_rate(au.offline_verify_per_sec),
        fmt_rate(au.sha_per_sec),
        fmt_ratio(au.offline_verify_per_sec / au.sha_per_sec)
    ));
    md.push_str(&format!(
        "| audit verify, in-memory `ChainVerifier` | {} | {} plain SHA-256 of leaf bytes | {} | (reported) |\n",
        fmt_rate(au.memory_verify_per_sec),
        fmt_rate(au.sha_per_sec),
        fmt_ratio(au.memory_verify_per_sec / au.sha_per_sec)
    ));
    md.push_str(&format!(
        "| in-process decision, 100k vs 100 identities, hot set of 100 principals: p50 / p99 | | | {} / {} | ≤ 1.2×: {} / {} |\n",
        fmt_ratio(s.inproc_hot_p50_ratio),
        fmt_ratio(s.inproc_hot_p99_ratio),
        verdict(s.inproc_hot_p50_ratio <= 1.2),
        verdict(s.inproc_hot_p99_ratio <= 1.2)
    ));
    md.push_str(&format!(
        "| in-process decision, 100k vs 100 identities, principals uniform over the registry: p50 / p99 | | | {} / {} | ≤ 1.2×: {} / {} |\n",
        fmt_ratio(s.inproc_p50_ratio),
        fmt_ratio(s.inproc_p99_ratio),
        verdict(s.inproc_p50_ratio <= 1.2),
        verdict(s.inproc_p99_ratio <= 1.2)
    ));
    if let (Some(p50), Some(p99)) = (s.http_p50_ratio, s.http_p99_ratio) {
        md.push_str(&format!(
            "| HTTP decision, 100k vs 100 identities (uniform): p50 / p99 | | | {} / {} | ≤ 1.2×: {} / {} |\n",
            fmt_ratio(p50),
            fmt_ratio(p99),
            verdict(p50 <= 1.2),
            verdict(p99 <= 1.2)
        ));
    }
    if let (Some(small), Some(large)) = (s.rss_small_kib, s.rss_large_kib) {
        md.push_str(&format!(
            "| server VmRSS after load, 100k vs 100 identities | {} | {} | {} | (reported) |\n",
            fmt_mib(large),
            fmt_mib(small),
            fmt_ratio(large as f64 / small as f64)
        ));
    }
    if let Some(t) = s.startup_large {
        md.push_str(&format!(
            "| start-up with 100k identities (in-process `Server::start`) | {} | | | (reported) |\n",
            fmt_ns(t.as_nanos() as f64)
        ));
    }
    if let Some(p) = &p {
        md.push_str(&p.summary_rows);
    }
    md.push_str("\n## decide\n\n");
    md.push_str(&d.markdown);
    md.push_str("\n## http\n\n");
    md.push_str(&h.markdown);
    md.push_str("\n## audit\n\n");
    md.push_str(&au.markdown);
    md.push_str("\n## scale\n\n");
    md.push_str(&s.markdown);
    md.push_str("\n## pg\n\n");
    match &p {
        Some(p) => md.push_str(&p.markdown),
        None => md.push_str(
            "Skipped: no PostgreSQL server was given (`--pg-url`) and none could be started with scripts/pg-test-server.sh.\n",
        ),
    }
    if pg_skipped {
        eprintln!("note: the PostgreSQL part (`pg`) was skipped");
    }
    println!("{md}");
    if let Some(p) = a.out {
        std::fs::write(&p, &md)?;
        eprintln!("report written to {}", p.display());
    }
    Ok(())
}
