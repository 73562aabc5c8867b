//! Shared pieces: fixtures (the test suite's schema and policies), in-process servers,
//! statistics, `/proc` and `/metrics` readers, formatting.

use anyhow::{anyhow, Context as _};
use hdrhistogram::Histogram;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use warrant_core::identity::NewIdentity;
use warrant_policy::PolicyBundle;
use warrant_server::auth::Enforcer;
use warrant_server::ops::Op;
use warrant_server::{AppState, Config, Server};
use warrant_store::sqlite::Durability;

/// Admin token given to every server the benchmarks start (in-process and release).
pub const ADMIN_TOKEN: &str = "wrt_bench_admin_token_0123456789abcdefghijklmnop";

/// Same schema as the integration tests (`crates/cli/tests/it/harness.rs`).
pub const SCHEMA: &str = r#"
namespace App {
  entity Document = { classification: String };
  action read, write appliesTo {
    principal: [Warrant::Identity],
    resource: [Document],
    context: { risk: Long }
  };
}
"#;

/// Same policies as the integration tests.
pub const POLICIES: &str = r#"
@id("readers-read")
@reason("readers may read documents at low risk")
permit (principal in Warrant::Role::"reader", action == App::Action::"read", resource)
when { context.risk < 50 };

@id("no-prod-writes-by-ai")
@reason("AI tools never write in production")
forbid (principal in Warrant::Environment::"prod", action == App::Action::"write", resource)
when { principal.kind == "ai_tool" };

@id("writers-write")
permit (principal, action == App::Action::"write", resource)
when { principal.entitlements.contains("docs:write") };
"#;

pub const ACTION: &str = r#"App::Action::"read""#;
pub const RESOURCE: &str = r#"App::Document::"q3""#;

/// The JSON body of one decision request (an allow by `readers-read`).
pub fn read_request(principal: &str, risk: i64) -> serde_json::Value {
    serde_json::json!({
        "principal": principal,
        "action": ACTION,
        "resource": RESOURCE,
        "context": { "risk": risk },
    })
}

/// The identity registered for benchmark number `i` (same shape as the tests').
pub fn new_identity(i: usize) -> NewIdentity {
    NewIdentity {
        name: format!("agent-{i}"),
        kind: "ai_tool".into(),
        environment: "prod".into(),
        owner: "alice@example.com".into(),
        description: None,
        spiffe_id: None,
        roles: vec!["reader".into()],
        entitlements: vec!["docs:write".into()],
    }
}

/// The caller as the server sees the admin token.
pub fn admin_caller() -> Enforcer {
    Enforcer(warrant_server::auth::Authed::bootstrap("tok_env"))
}

/// Small deterministic PRNG (xorshift64*), so runs pick the same principals.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % (n.max(1) as u64)) as usize
    }
}

// ---------- in-process servers ----------

/// Starts the real server in-process (no listener) on `data_dir`.
pub async fn start_inproc(data_dir: &Path, durability: Durability) -> anyhow::Result<Server> {
    let config = Config {
        data_dir: data_dir.to_owned(),
        durability,
        admin_token: Some(ADMIN_TOKEN.to_owned()),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..Config::default()
    };
    Server::start(config).await
}

/// Stops an in-process server the way `warrant serve` does on SIGTERM: flushes last-used
/// times, signs a final checkpoint and waits for the writer to finish.
pub async fn stop_inproc(server: Server) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    server.serve(listener, async {}).await
}

/// Puts the benchmark policies through the writer (as `PUT /v1/policies` does).
pub async fn put_policy(state: &AppState) -> anyhow::Result<()> {
    put_policies(state, POLICIES).await
}

/// Puts `policies` (against [`SCHEMA`]) through the writer.
pub async fn put_policies(state: &AppState, policies: &str) -> anyhow::Result<()> {
    let bundle = PolicyBundle::compile(SCHEMA, policies)
        .map_err(|e| anyhow!("benchmark policies do not compile: {e:?}"))?;
    state
        .writer
        .mutate(Op::PutPolicy {
            actor: "admin:tok_env".into(),
            bundle: Arc::new(bundle),
            comment: "benchmark".into(),
        })
        .await
        .map_err(|e| anyhow!("put policy: {e}"))?;
    Ok(())
}

/// Registers identities `from..to` through the writer's ops (as `POST /v1/identities`
/// does, one job per identity) from `concurrency` tasks. Returns their ids in order.
pub async fn create_identities(
    state: &AppState,
    from: usize,
    to: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<String>> {
    create_identities_with(state, from, to, concurrency, new_identity).await
}

/// [`create_identities`] with identity number `i` registered as `make(i)`.
pub async fn create_identities_with(
    state: &AppState,
    from: usize,
    to: usize,
    concurrency: usize,
    make: fn(usize) -> NewIdentity,
) -> anyhow::Result<Vec<String>> {
    let ids: Arc<Vec<String>> = Arc::new((from..to).map(|i| format!("idn_bench{i:08}")).collect());
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let state = state.clone();
        let ids = ids.clone();
        let next = next.clone();
        tasks.spawn(async move {
            loop {
                let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(id) = ids.get(k) else {
                    return Ok::<(), anyhow::Error>(());
                };
                state
                    .writer
                    .mutate(Op::CreateIdentity {
                        actor: "admin:tok_env".into(),
                        id: id.clone(),
                        new: make(from + k),
                    })
                    .await
                    .map_err(|e| anyhow!("create identity {id}: {e}"))?;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Arc::try_unwrap(ids).map_err(|_| anyhow!("identity list still shared"))
}

// ---------- statistics ----------

/// A latency histogram in nanoseconds (1 ns .. 100 s, 3 significant digits).
pub fn histogram() -> Histogram<u64> {
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("constant bounds are valid")
}

pub fn record(h: &mut Histogram<u64>, d: Duration) {
    let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1);
    h.saturating_record(ns);
}

/// Median of a sample (sorted copy).
pub fn median(v: &[f64]) -> f64 {
    percentile(v, 50.0)
}

pub fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * (s.len() - 1) as f64).round() as usize;
    s.get(rank.min(s.len() - 1)).copied().unwrap_or(f64::NAN)
}

// ---------- formatting ----------

/// Nanoseconds as a short human string.
pub fn fmt_ns(ns: f64) -> String {
    if !ns.is_finite() {
        "n/a".into()
    } else if ns < 1_000.0 {
        format!("{ns:.0} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.2} µs", ns / 1e3)
    } else if ns < 1_000_000_000.0 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

pub fn fmt_rate(per_sec: f64) -> String {
    if per_sec >= 100.0 {
        format!("{:.0}/s", per_sec)
    } else {
        format!("{per_sec:.1}/s")
    }
}

pub fn fmt_ratio(r: f64) -> String {
    if r.is_finite() {
        format!("{r:.2}×")
    } else {
        "n/a".into()
    }
}

pub fn fmt_mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

// ---------- /proc and /metrics ----------

/// `VmRSS` and `VmHWM` of a process in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| anyhow!("no {name} in /proc/{pid}/status"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// The value of an unlabelled sample in Prometheus/OpenMetrics text.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?;
        let value = rest.strip_prefix(' ')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// Sum and count of the group-commit batch-size histogram (jobs per commit), and the
/// sum and count of the commit-duration histogram.
#[derive(Debug, Clone, Copy, Default)]
pub struct BatchStats {
    pub jobs_sum: f64,
    pub commits: f64,
    pub append_seconds_sum: f64,
}

impl BatchStats {
    pub fn parse(text: &str) -> BatchStats {
        BatchStats {
            jobs_sum: metric(text, "warrant_audit_batch_jobs_sum").unwrap_or(0.0),
            commits: metric(text, "warrant_audit_batch_jobs_count").unwrap_or(0.0),
            append_seconds_sum: metric(text, "warrant_audit_append_duration_seconds_sum")
                .unwrap_or(0.0),
        }
    }

    /// The stats of what happened between `before` and `self`.
    pub fn since(&self, before: &BatchStats) -> BatchStats {
        BatchStats {
            jobs_sum: self.jobs_sum - before.jobs_sum,
            commits: self.commits - before.commits,
            append_seconds_sum: self.append_seconds_sum - before.append_seconds_sum,
        }
    }

    /// Both intervals together.
    pub fn plus(&self, o: &BatchStats) -> BatchStats {
        BatchStats {
            jobs_sum: self.jobs_sum + o.jobs_sum,
            commits: self.commits + o.commits,
            append_seconds_sum: self.append_seconds_sum + o.append_seconds_sum,
        }
    }

    pub fn mean_jobs(&self) -> f64 {
        if self.commits > 0.0 {
            self.jobs_sum / self.commits
        } else {
            f64::NAN
        }
    }

    pub fn mean_commit_ns(&self) -> f64 {
        if self.commits > 0.0 {
            self.append_seconds_sum / self.commits * 1e9
        } else {
            f64::NAN
        }
    }
}

/// Machine facts for the report.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|r| r.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|r| r.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map(|kib| format!("{:.1} GiB", kib as f64 / 1024.0 / 1024.0))
        .unwrap_or_else(|| "unknown".into());
    format!("{cpus} CPUs ({model}), {mem} RAM")
}

/// CPU time (user + system) a process has used so far, in seconds (`/proc/<pid>/stat`).
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    parse_stat(&stat).map(|(_, secs)| secs)
}

/// (parent pid, CPU seconds) from the text of `/proc/<pid>/stat`.
fn parse_stat(stat: &str) -> Option<(u32, f64)> {
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3, ppid 4, utime 14, stime 15 (1-based).
    let ppid: u32 = fields.get(1)?.parse().ok()?;
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on Linux.
    Some((ppid, (utime + stime) / 100.0))
}

/// CPU time used so far by a process and its live children (a PostgreSQL postmaster
/// and its backends), in seconds.
pub fn tree_cpu_seconds(root: u32) -> Option<f64> {
    let mut total = cpu_seconds(Some(root))?;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if let Some((ppid, secs)) = parse_stat(&stat) {
            if ppid == root && pid != root {
                total += secs;
            }
        }
    }
    Some(total)
}

/// The 1-minute load average (how busy the machine was, including other users).
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}
