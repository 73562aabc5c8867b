//! `warrant-bench scale`: decision latency and memory with a large registry vs a small one.
//!
//! (a) in-process: two real servers (`Server::start` on temp data dirs), one with `small`
//!     and one with `large` identities registered through the writer's ops, and the
//!     in-process decision path timed for random principals, interleaved;
//! (b) the release server started on those same data dirs (it loads every identity at
//!     start-up): time to ready, VmRSS, and a short HTTP load run on each.

use crate::load::{self, LoadOpts, ServerProc, Target};
use crate::util::{self, fmt_mib, fmt_ns, fmt_rate, fmt_ratio, Rng};
use anyhow::anyhow;
use hdrhistogram::Histogram;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use warrant_server::api::authorize::{decide, AuthorizeRequest};
use warrant_server::snapshot::Snapshot;
use warrant_server::AppState;
use warrant_store::sqlite::{Durability, SqliteStore};
use warrant_store::Store;

#[derive(Debug, Clone)]
pub struct Opts {
    pub small: usize,
    pub large: usize,
    /// Timed decisions per registry size (in-process).
    pub ops: usize,
    pub warrant_bin: Option<PathBuf>,
    pub connections: usize,
    pub http_duration: Duration,
    pub max_requests: u64,
}

#[derive(Default)]
pub struct Outcome {
    pub inproc_p50_ratio: f64,
    pub inproc_p99_ratio: f64,
    pub inproc_hot_p50_ratio: f64,
    pub inproc_hot_p99_ratio: f64,
    pub http_p50_ratio: Option<f64>,
    pub http_p99_ratio: Option<f64>,
    pub rss_small_kib: Option<u64>,
    pub rss_large_kib: Option<u64>,
    pub startup_large: Option<Duration>,
    pub errors: u64,
    pub markdown: String,
}

use warrant_server::TOUCH_CHUNK;

/// Runs the server's own last-used flush; returns (identities, total time, longest job).
async fn flush_last_used(state: &AppState) -> anyhow::Result<(usize, Duration, Duration)> {
    let t = Instant::now();
    let (n, longest) = warrant_server::flush_last_used(state)
        .await
        .map_err(|e| anyhow!("touch: {e}"))?;
    Ok((n, t.elapsed(), longest))
}

fn now_ms() -> i64 {
    use warrant_core::Clock as _;
    warrant_server::SystemClock.now_ms()
}

fn q(h: &Histogram<u64>, p: f64) -> f64 {
    h.value_at_quantile(p) as f64
}

pub async fn run(base: &Path, opts: &Opts) -> anyhow::Result<Outcome> {
    let mut out = Outcome::default();
    let small_dir = tempfile::tempdir_in(base)?;
    let large_dir = tempfile::tempdir_in(base)?;

    // --- build the two registries in-process ---
    let small = util::start_inproc(small_dir.path(), Durability::Normal).await?;
    let large = util::start_inproc(large_dir.path(), Durability::Normal).await?;
    util::put_policy(&small.state).await?;
    util::put_policy(&large.state).await?;
    let small_ids = util::create_identities(&small.state, 0, opts.small, 64).await?;
    let t = Instant::now();
    let large_ids = util::create_identities(&large.state, 0, opts.large, 512).await?;
    let register_elapsed = t.elapsed();
    eprintln!(
        "  registered {} identities in-process in {:.1} s",
        opts.large,
        register_elapsed.as_secs_f64()
    );

    // --- (a) in-process decision latency, interleaved rounds ---
    let caller = util::admin_caller();
    let mut req = AuthorizeRequest {
        principal: String::new(),
        action: util::ACTION.into(),
        resource: util::RESOURCE.into(),
        context: Some(serde_json::json!({ "risk": 10 })),
        entities: None,
    };
    // 0: small registry, random of its principals; 1: large registry, random of a hot set
    // of `small` principals (isolates the registry's size); 2: large registry, random of
    // all its principals (adds the working set: every decision touches cold memory).
    let mut hists = [util::histogram(), util::histogram(), util::histogram()];
    let mut rng = Rng::new(42);
    let round = 5_000usize;
    let rounds = (opts.ops / round).max(1);
    let hot = large_ids.len().min(opts.small.max(1));
    let mut bad = 0u64;
    for r in 0..=rounds {
        for k in 0..3 {
            let which = (k + r) % 3;
            let (state, ids, span) = match which {
                0 => (&small.state, &small_ids, small_ids.len()),
                1 => (&large.state, &large_ids, hot),
                _ => (&large.state, &large_ids, large_ids.len()),
            };
            for _ in 0..round {
                let id = ids.get(rng.below(span)).cloned().unwrap_or_default();
                req.principal = id;
                let t0 = Instant::now();
                let res = black_box(decide(state, &caller, black_box(&req)));
                let took = t0.elapsed();
                match res {
                    Ok((resp, _)) if resp.decision == "allow" => {
                        // What the HTTP handler does once the record is durable (outside
                        // `decide`, and outside the timing): mark the principal used.
                        if let Some(e) = state.snapshot.load().principals.get(&req.principal) {
                            e.touch(now_ms());
                        }
                    }
                    _ => bad += 1,
                }
                // Round 0 is warm-up.
                if r > 0 {
                    if let Some(h) = hists.get_mut(which) {
                        util::record(h, took);
                    }
                }
            }
        }
    }
    if bad > 0 {
        return Err(anyhow!("{bad} in-process decisions were not allows"));
    }
    let [hs, hh, hl] = &hists;
    out.inproc_p50_ratio = q(hl, 0.5) / q(hs, 0.5);
    out.inproc_p99_ratio = q(hl, 0.99) / q(hs, 0.99);
    out.inproc_hot_p50_ratio = q(hh, 0.5) / q(hs, 0.5);
    out.inproc_hot_p99_ratio = q(hh, 0.99) / q(hs, 0.99);

    // What the periodic last-used flush costs the writer after this many distinct principals.
    let (touched_large, flush_large, chunk_large) = flush_last_used(&large.state).await?;
    let (touched_small, flush_small, chunk_small) = flush_last_used(&small.state).await?;

    util::stop_inproc(small).await?;
    util::stop_inproc(large).await?;

    // --- start-up with the large registry ---
    let db = large_dir.path().join("warrant.db");
    let t = Instant::now();
    let ro = SqliteStore::open_read_only(&db).await?;
    let identities = ro.all_identities().await?;
    let load_elapsed = t.elapsed();
    ro.close().await;
    let n_loaded = identities.len();
    let t = Instant::now();
    let mut snap = Snapshot::new(
        std::sync::Arc::new(warrant_policy::PolicyBundle::empty()),
        0,
    );
    for i in identities {
        snap.upsert_identity(i);
    }
    let snapshot_elapsed = t.elapsed();
    drop(snap);
    let t = Instant::now();
    let restarted = util::start_inproc(large_dir.path(), Durability::Normal).await?;
    let start_elapsed = t.elapsed();
    util::stop_inproc(restarted).await?;
    out.startup_large = Some(start_elapsed);

    let mut md = String::new();
    md.push_str(&format!(
        "(a) In-process: two real servers (`Server::start`), one with {} and one with {} identities \
         (registered through the writer's `CreateIdentity` op: {} identities in {:.1} s = {}). \
         `warrant_server::api::authorize::decide` timed per call for a random registered principal, \
         {} calls per variant in interleaved rounds of {round}.\n\n",
        opts.small,
        opts.large,
        opts.large,
        register_elapsed.as_secs_f64(),
        fmt_rate(opts.large as f64 / register_elapsed.as_secs_f64()),
        rounds * round
    ));
    md.push_str("| registry | principals drawn from | p50 | p90 | p99 | p99.9 |\n|---|---|---:|---:|---:|---:|\n");
    let rows3 = [
        (opts.small, format!("all {}", opts.small), hs),
        (opts.large, format!("a hot set of {hot}"), hh),
        (opts.large, format!("all {}", opts.large), hl),
    ];
    for (label, from, h) in &rows3 {
        md.push_str(&format!(
            "| {label} identities | {from} | {} | {} | {} | {} |\n",
            fmt_ns(q(h, 0.5)),
            fmt_ns(q(h, 0.9)),
            fmt_ns(q(h, 0.99)),
            fmt_ns(q(h, 0.999))
        ));
    }
    for (from, h) in [
        (format!("hot set of {hot}"), hh),
        (format!("all {}", opts.large), hl),
    ] {
        md.push_str(&format!(
            "| **ratio {} ({from}) ÷ {}** | | **{}** | {} | **{}** | {} |\n",
            opts.large,
            opts.small,
            fmt_ratio(q(h, 0.5) / q(hs, 0.5)),
            fmt_ratio(q(h, 0.9) / q(hs, 0.9)),
            fmt_ratio(q(h, 0.99) / q(hs, 0.99)),
            fmt_ratio(q(h, 0.999) / q(hs, 0.999)),
        ));
    }
    let verdict = |r: f64| if r <= 1.2 { "met" } else { "**missed**" };
    md.push_str(&format!(
        "\nGoal ≤ 1.2×: hot set p50 {}, p99 {}; uniform over all {} p50 {}, p99 {}.\n",
        verdict(out.inproc_hot_p50_ratio),
        verdict(out.inproc_hot_p99_ratio),
        opts.large,
        verdict(out.inproc_p50_ratio),
        verdict(out.inproc_p99_ratio),
    ));
    md.push_str(&format!(
        "\nStart-up with {} identities (in-process): `Server::start` {} in total. Measured separately just before it: \
         reading the identities from SQLite ({n_loaded} rows) {}, building the decision snapshot from them {}.\n",
        opts.large,
        fmt_ns(start_elapsed.as_nanos() as f64),
        fmt_ns(load_elapsed.as_nanos() as f64),
        fmt_ns(snapshot_elapsed.as_nanos() as f64),
    ));
    md.push_str(&format!(
        "\nLast-used flush (what the periodic job does every 10 s: `Op::Touch` writer jobs of {TOUCH_CHUNK} identities each, for every \
         identity used since the last flush; the HTTP handler marks a principal used after its decision is logged, emulated here \
         outside the timing): after the run above it wrote {touched_large} identities in {} in total, longest single job {} \
         (large registry), and {touched_small} in {}, longest job {} (small). While one such job runs, the group-commit writer \
         takes no other job, so decisions waiting for their audit append wait for it.\n",
        fmt_ns(flush_large.as_nanos() as f64),
        fmt_ns(chunk_large.as_nanos() as f64),
        fmt_ns(flush_small.as_nanos() as f64),
        fmt_ns(chunk_small.as_nanos() as f64),
    ));

    // --- (b) the release server on the same data dirs ---
    if let Some(bin) = opts.warrant_bin.as_ref().filter(|b| b.exists()) {
        md.push_str(&format!(
            "\n(b) Release server (`--durability full`) started on those data dirs; both running at once; load runs \
             alternate between them (2 runs of {} s each per server, merged): {} keep-alive connections, `POST /v1/authorize` with \
             principals uniform over each registry. VmRSS from /proc. The periodic last-used flush (every 10 s) runs during these runs.\n\n",
            opts.http_duration.as_secs_f64() / 2.0,
            opts.connections,
        ));
        md.push_str("| registry | start → ready | VmRSS idle | VmRSS after load | VmHWM | req/s | p50 | p99 | p99.9 | max | errors |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        // Both servers run at once; the load alternates between them in `rounds` short
        // runs each, so drift on a shared machine hits both alike.
        let mut servers = Vec::new();
        for (label, dir, ids) in [
            (opts.small, small_dir.path(), &small_ids),
            (opts.large, large_dir.path(), &large_ids),
        ] {
            let srv = ServerProc::start(bin, dir, "full").await?;
            let (idle, _) = srv.rss_kib()?;
            let bodies = load::authorize_bodies(ids)?;
            let _ = load::run(
                srv.addr,
                Target::Authorize(bodies.clone()),
                LoadOpts {
                    connections: opts.connections,
                    duration: Duration::from_secs(1),
                    max_requests: opts.max_requests,
                    server_pid: Some(srv.pid),
                },
            )
            .await?;
            servers.push((label, srv, idle, bodies, None::<load::LoadResult>));
        }
        let rounds = 2u32;
        for _ in 0..rounds {
            for (_, srv, _, bodies, acc) in servers.iter_mut() {
                let r = load::run(
                    srv.addr,
                    Target::Authorize(bodies.clone()),
                    LoadOpts {
                        connections: opts.connections,
                        duration: opts.http_duration / rounds,
                        max_requests: opts.max_requests,
                        server_pid: Some(srv.pid),
                    },
                )
                .await?;
                match acc {
                    Some(a) => a.merge(r)?,
                    None => *acc = Some(r),
                }
            }
        }
        let mut rows = Vec::new();
        for (label, srv, idle, _, acc) in servers {
            let r = acc.ok_or_else(|| anyhow!("no load run"))?;
            let (after, hwm) = srv.rss_kib()?;
            eprintln!(
                "  release server, {label} identities: ready in {:.2} s, RSS {} → {}, {:.0} req/s p50 {} p99 {} max {}",
                srv.ready_after.as_secs_f64(),
                fmt_mib(idle),
                fmt_mib(after),
                r.throughput(),
                fmt_ns(r.p(0.5)),
                fmt_ns(r.p(0.99)),
                fmt_ns(r.max())
            );
            out.errors += r.errors;
            md.push_str(&format!(
                "| {label} identities | {} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {} |\n",
                fmt_ns(srv.ready_after.as_nanos() as f64),
                fmt_mib(idle),
                fmt_mib(after),
                fmt_mib(hwm),
                r.throughput(),
                fmt_ns(r.p(0.5)),
                fmt_ns(r.p(0.99)),
                fmt_ns(r.p(0.999)),
                fmt_ns(r.max()),
                r.errors
            ));
            srv.stop().await?;
            rows.push((idle, after, r));
        }
        if let [(idle_s, after_s, rs), (idle_l, after_l, rl)] = rows.as_slice() {
            out.http_p50_ratio = Some(rl.p(0.5) / rs.p(0.5));
            out.http_p99_ratio = Some(rl.p(0.99) / rs.p(0.99));
            out.rss_small_kib = Some(*after_s);
            out.rss_large_kib = Some(*after_l);
            md.push_str(&format!(
                "| **ratio** | | {} | {} | | {} | **{}** | **{}** | {} | | |\n",
                fmt_ratio(*idle_l as f64 / *idle_s as f64),
                fmt_ratio(*after_l as f64 / *after_s as f64),
                fmt_ratio(rl.throughput() / rs.throughput()),
                fmt_ratio(rl.p(0.5) / rs.p(0.5)),
                fmt_ratio(rl.p(0.99) / rs.p(0.99)),
                fmt_ratio(rl.p(0.999) / rs.p(0.999)),
            ));
            let per = (*idle_l as f64 - *idle_s as f64) * 1024.0 / (opts.large - opts.small) as f64;
            md.push_str(&format!(
                "\nMemory per registered identity (idle RSS difference ÷ identities): about {:.0} bytes.\n",
                per
            ));
        }
    } else {
        md.push_str("\n(b) skipped: no release `warrant` binary given.\n");
    }
    out.markdown = md;
    Ok(out)
}
