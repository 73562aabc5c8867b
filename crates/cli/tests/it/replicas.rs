//! Several replicas on one PostgreSQL database: a change made through one replica is in
//! force on the others within a second; the audit log stays one gapless, verifiable chain
//! under concurrent writers on every replica and under `kill -9` of one of them; a database
//! outage fails closed (never an allow) and recovers by itself; periodic jobs run on exactly
//! one replica and move when it dies; a replica with another signing key refuses to start.

use super::harness::*;
use super::pg::fresh_database;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tempfile::TempDir;
use warrant_client::{Client, ClientError};

/// These tests run several servers each and measure delays: one at a time, so they do
/// not compete with each other for the two cores of CI.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The bound on propagating a change between replicas.
const PROPAGATION: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------------
// Replicas

fn replica_opts(url: &str, extra: &[String]) -> Options {
    let mut extra_args = vec!["--database".to_owned(), url.to_owned()];
    extra_args.extend(extra.iter().cloned());
    Options {
        extra_args,
        ..Options::default()
    }
}

/// Copies the signing key of one replica's data directory into another's.
fn copy_keys(from: &Path, to: &Path) {
    let dst = to.join("keys");
    std::fs::create_dir_all(&dst).expect("create keys dir");
    for entry in std::fs::read_dir(from.join("keys")).expect("read keys dir") {
        let entry = entry.expect("keys dir entry");
        // `fs::copy` keeps the permissions (0600 for the private key).
        std::fs::copy(entry.path(), dst.join(entry.file_name())).expect("copy key file");
    }
}

/// `n` replicas of one database, each with its own data directory holding the same key.
struct Replicas {
    url: String,
    extra: Vec<String>,
    /// Dropped (killed) before their directories.
    servers: Vec<Server>,
    dirs: Vec<TempDir>,
}

impl Replicas {
    /// Starts the first replica (it creates the signing key), copies its key to the
    /// others, then starts those together.
    fn start(url: &str, n: usize, extra: &[&str]) -> Replicas {
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        let dirs: Vec<TempDir> = (0..n).map(|_| tempfile::tempdir().unwrap()).collect();
        let mut servers = vec![Server::start_with(
            dirs[0].path(),
            replica_opts(url, &extra),
        )];
        for d in &dirs[1..] {
            copy_keys(dirs[0].path(), d.path());
        }
        std::thread::scope(|s| {
            let started: Vec<_> = dirs[1..]
                .iter()
                .map(|d| s.spawn(|| Server::start_with(d.path(), replica_opts(url, &extra))))
                .collect();
            for h in started {
                servers.push(h.join().expect("replica did not start"));
            }
        });
        Replicas {
            url: url.to_owned(),
            extra,
            servers,
            dirs,
        }
    }

    fn client(&self, i: usize) -> Client {
        self.servers[i].client()
    }

    /// Starts replica `i` again on its data directory (after a kill).
    fn restart(&mut self, i: usize) {
        self.servers[i].kill();
        self.servers[i] =
            Server::start_with(self.dirs[i].path(), replica_opts(&self.url, &self.extra));
    }

    /// The public key every replica signs checkpoints with (the first replica's).
    fn public_key(&self) -> PathBuf {
        self.dirs[0]
            .path()
            .join("keys")
            .join("audit-signing-key.pub.pem")
    }
}

// ---------------------------------------------------------------------------------------
// Helpers

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

fn decision_of(v: &Value) -> String {
    v["decision"]
        .as_str()
        .unwrap_or_else(|| panic!("no decision in {v}"))
        .to_owned()
}

async fn decide(c: &Client, principal: &str, risk: i64) -> String {
    let v = c
        .authorize(&read_req(principal, risk))
        .await
        .unwrap_or_else(|e| panic!("authorize on {}: {e}", c.base()));
    decision_of(&v)
}

/// Decides on `c` in a tight loop until the verdict is `want`; returns how long that took.
/// Panics after `limit` (which should be well above the bound asserted by the caller, so
/// a slow propagation is reported with its measured delay).
async fn until_decision(
    c: &Client,
    principal: &str,
    risk: i64,
    want: &str,
    limit: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        // While a change propagates, a replica may refuse to log an allow made on the state
        // just before it (503 "ask again", the stale-allow guard): ask again, as documented.
        match c.authorize(&read_req(principal, risk)).await {
            Ok(v) if decision_of(&v) == want => return started.elapsed(),
            Ok(_) => {}
            Err(e) if e.to_string().contains("ask again") => {}
            Err(e) => panic!("authorize on {}: {e}", c.base()),
        }
        assert!(
            started.elapsed() < limit,
            "{}: still no `{want}` for {principal} at risk {risk} after {limit:?}",
            c.base()
        );
    }
}

/// Every audit record through `c`, in the order the API lists them (ascending seq).
async fn all_records(c: &Client) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = c
            .audit(&[("limit", Some("1000".into())), ("cursor", cursor.clone())])
            .await
            .unwrap_or_else(|e| panic!("audit page from {}: {e}", c.base()));
        out.extend(page["items"].as_array().expect("items").iter().cloned());
        match page["next_cursor"].as_u64() {
            Some(n) => cursor = Some(n.to_string()),
            None => return out,
        }
    }
}

/// Reads the whole log through every client: each sees seqs 0, 1, 2, … with no gap and
/// no duplicate, and all of them the same records (same leaf hashes and tree heads) on
/// their common prefix (a replica may answer after more records were appended). Returns
/// the longest log by seq.
async fn assert_one_gapless_log(clients: &[&Client]) -> HashMap<u64, Value> {
    let mut logs = Vec::new();
    for c in clients {
        let records = all_records(c).await;
        assert!(!records.is_empty(), "{}: empty audit log", c.base());
        for (i, r) in records.iter().enumerate() {
            assert_eq!(
                r["seq"].as_u64(),
                Some(i as u64),
                "{}: the record at position {i} has seq {} (gap or duplicate)",
                c.base(),
                r["seq"]
            );
        }
        logs.push(records);
    }
    let shortest = logs.iter().map(Vec::len).min().unwrap_or(0);
    for i in 0..shortest {
        let first = &logs[0][i];
        for (log, c) in logs.iter().zip(clients).skip(1) {
            assert_eq!(
                (&log[i]["leaf_hash"], &log[i]["root"]),
                (&first["leaf_hash"], &first["root"]),
                "record {i} differs between {} and {}",
                clients[0].base(),
                c.base()
            );
        }
    }
    let longest = logs.into_iter().max_by_key(Vec::len).unwrap_or_default();
    longest
        .into_iter()
        .map(|r| (r["seq"].as_u64().unwrap(), r))
        .collect()
}

async fn all_identities(c: &Client) -> HashMap<String, Value> {
    let mut out = HashMap::new();
    let mut cursor = None;
    loop {
        let page = c
            .list_identities(&[("limit", Some("500".into())), ("cursor", cursor.clone())])
            .await
            .expect("identity page");
        for i in page["items"].as_array().unwrap() {
            out.insert(i["id"].as_str().unwrap().to_owned(), i.clone());
        }
        match page["next_cursor"].as_str() {
            Some(n) => cursor = Some(n.to_owned()),
            None => return out,
        }
    }
}

/// `warrant audit verify` against the shared database, with the replicas' public key pinned.
fn verify_chain(url: &str, public_key: &Path) {
    let o = cli(
        None,
        &[
            "audit",
            "verify",
            "--database",
            url,
            "--public-key",
            public_key.to_str().unwrap(),
        ],
    );
    assert!(
        o.status.success(),
        "audit verify --database failed:\n{}\n{}",
        stdout(&o),
        stderr(&o)
    );
    eprintln!("audit verify --database: {}", stdout(&o).trim());
}

/// The value of `warrant_job_leader` in a replica's `/metrics`; `None` when it does not
/// answer or has no such metric.
async fn job_leader(http: &reqwest::Client, base: &str) -> Option<i64> {
    let res = http
        .get(format!("{base}/metrics"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .ok()?;
    if !res.status().is_success() {
        return None;
    }
    let text = res.text().await.ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("warrant_job_leader "))
        .and_then(|v| v.trim().parse().ok())
}

async fn readyz_status(http: &reqwest::Client, base: &str) -> Option<u16> {
    http.get(format!("{base}/readyz"))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

/// Signing times (ms) of every checkpoint, oldest first, from `GET /v1/audit/checkpoints`.
async fn checkpoint_times(c: &Client) -> Vec<i64> {
    let list = c.get("/v1/audit/checkpoints").await.expect("checkpoints");
    list.as_array()
        .expect("checkpoint list")
        .iter()
        .map(|cp| {
            let msg = cp["signed_message"].as_str().expect("signed_message");
            msg.lines()
                .find_map(|l| l.strip_prefix("time "))
                .and_then(|t| t.parse().ok())
                .unwrap_or_else(|| panic!("no time in checkpoint {cp}"))
        })
        .collect()
}

fn api_status(r: &Result<Value, ClientError>) -> Option<u16> {
    r.as_ref().err().and_then(ClientError::status)
}

// ---------------------------------------------------------------------------------------
// 1. Propagation

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn changes_through_one_replica_are_in_force_on_the_others_within_a_second() {
    let _serial = SERIAL.lock().await;
    let url = fresh_database().await;
    // The periodic check (the safety net under change signals) every 10 s instead of
    // every 500 ms: propagation within a second is then the change signals' doing.
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = cfg_dir.path().join("warrant.toml");
    std::fs::write(&cfg, "version = 1\nsync_interval_ms = 10000\n").unwrap();
    let r = Replicas::start(&url, 3, &["--config", cfg.to_str().unwrap()]);
    let (a, b, c) = (r.client(0), r.client(1), r.client(2));

    // Setup through A; B decides with it.
    a.put_policy(Some(SCHEMA), POLICIES, Some("v1"))
        .await
        .unwrap();
    let reader = create_identity(&a, "reader", "prod", &["reader"]).await;
    let t = until_decision(&b, &reader, 1, "allow", Duration::from_secs(10)).await;
    eprintln!("identity + policy created through A: allowed on B after {t:?}");
    assert!(t < PROPAGATION, "creation through A reached B after {t:?}");
    assert_eq!(
        decide(&b, &reader, 90).await,
        "deny",
        "risk 90 is above the policy's bound"
    );
    let other = create_identity(&a, "other-reader", "prod", &["reader"]).await;
    until_decision(&b, &other, 1, "allow", PROPAGATION).await;

    // Writes through all three replicas.
    let mut created = Vec::new();
    for (i, cl) in [&a, &b, &c].into_iter().enumerate() {
        for k in 0..3 {
            let name = format!("w{i}-{k}");
            created.push((create_identity(cl, &name, "staging", &[]).await, name));
        }
    }
    // The same name through B and C at once: one chain, one registry, so exactly one wins.
    let dup = json!({
        "name": "dup", "kind": "agent", "environment": "staging", "owner": "x@example.com",
    });
    let (x, y) = tokio::join!(b.create_identity(&dup), c.create_identity(&dup));
    let statuses = [api_status(&x), api_status(&y)];
    assert!(
        (x.is_ok() && statuses[1] == Some(409)) || (y.is_ok() && statuses[0] == Some(409)),
        "concurrent creations of one name through two replicas: {x:?} / {y:?}"
    );
    // A write through C right after one through B on the same identity sees B's change.
    let w = &created[0].0;
    b.lifecycle(w, "suspend", Some("through B")).await.unwrap();
    let resumed = c.lifecycle(w, "resume", Some("through C")).await.unwrap();
    assert_eq!(resumed["state"], "active");
    for cl in [&a, &b, &c] {
        let all = all_identities(cl).await;
        for (id, name) in &created {
            assert_eq!(
                all.get(id).map(|i| &i["name"]),
                Some(&json!(name)),
                "{} lacks {id}",
                cl.base()
            );
        }
        assert_eq!(all.len(), created.len() + 3, "{}: {all:?}", cl.base());
    }

    // A suspension through A denies on C within a second.
    until_decision(&c, &reader, 1, "allow", PROPAGATION).await;
    a.lifecycle(&reader, "suspend", Some("incident"))
        .await
        .unwrap();
    let delay = until_decision(&c, &reader, 1, "deny", Duration::from_secs(10)).await;
    eprintln!("suspension through A: denied on C after {delay:?}");
    assert!(
        delay < PROPAGATION,
        "suspension through A reached C after {delay:?}"
    );
    // In force on A as soon as A answered, and it stays in force on C.
    assert_eq!(decide(&a, &reader, 1).await, "deny");
    for _ in 0..20 {
        assert_eq!(decide(&c, &reader, 1).await, "deny");
    }
    until_decision(&b, &reader, 1, "deny", PROPAGATION).await;

    // A policy change through B is in force on A and C within a second.
    assert_eq!(decide(&a, &other, 60).await, "deny");
    assert_eq!(decide(&c, &other, 60).await, "deny");
    let looser = POLICIES.replace("context.risk < 50", "context.risk < 70");
    assert_ne!(looser, POLICIES);
    let v = b.put_policy(None, &looser, Some("looser")).await.unwrap();
    assert_eq!(v["version"], 2, "{v}");
    let limit = Duration::from_secs(10);
    let (on_a, on_c) = tokio::join!(
        until_decision(&a, &other, 60, "allow", limit),
        until_decision(&c, &other, 60, "allow", limit),
    );
    eprintln!("policy change through B: in force on A after {on_a:?}, on C after {on_c:?}");
    assert!(on_a < PROPAGATION, "policy change reached A after {on_a:?}");
    assert!(on_c < PROPAGATION, "policy change reached C after {on_c:?}");
    assert_eq!(decide(&b, &other, 60).await, "allow");
    let http = reqwest::Client::new();
    for s in &r.servers {
        let ready: Value = http
            .get(format!("{}/readyz", s.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(ready["policy_version"], 2, "{}: {ready}", s.url);
    }

    // One chain: the same gapless log through every replica, and it verifies.
    a.checkpoint().await.unwrap();
    let records = assert_one_gapless_log(&[&a, &b, &c]).await;
    let suspended = format!("identity:{reader}");
    assert!(
        records
            .values()
            .any(|r| r["kind"] == "identity.suspended" && r["subject"] == suspended.as_str()),
        "no suspension record"
    );
    assert!(records
        .values()
        .any(|r| r["kind"] == "policy.updated" && r["payload"]["version"] == 2));
    let started = records
        .values()
        .filter(|r| r["kind"] == "system" && r["payload"]["event"] == "started")
        .count();
    assert_eq!(started, 3, "one `started` record per replica");
    verify_chain(&r.url, &r.public_key());
}

// ---------------------------------------------------------------------------------------
// 2. kill -9 of one replica under load

/// What one load task got acknowledged.
#[derive(Default)]
struct Acked {
    /// (audit seq, principal id) of acknowledged decisions.
    decisions: Vec<(u64, String)>,
    /// (id, name) of acknowledged creations.
    identities: Vec<(String, String)>,
    /// The task's own identity that it suspends and resumes: the states it was
    /// acknowledged in (in order), and the state of an attempt cut off by the kill.
    toggled: Option<String>,
    transitions: Vec<String>,
    cut_off: Option<String>,
    /// Anything but a success, or a connection failure of the killed replica.
    unexpected: Vec<String>,
}

struct LoadCtx {
    /// Clients of every replica (index = replica).
    clients: Vec<Client>,
    principal: String,
    stop: Arc<AtomicBool>,
    killed: Arc<AtomicBool>,
    /// Acknowledged operations per replica, in total and started after the kill.
    acked: Arc<Vec<AtomicUsize>>,
    acked_after_kill: Arc<Vec<AtomicUsize>>,
}

/// Creates identities, suspends/resumes its own identity and decides, through `home`
/// (suspend/resume of a task of a surviving replica alternate between both survivors),
/// until stopped or until its replica is gone.
async fn load_task(
    ctx: Arc<LoadCtx>,
    home: usize,
    task: usize,
    toggle: String,
    victim: usize,
) -> Acked {
    let mut acked = Acked {
        toggled: Some(toggle.clone()),
        ..Acked::default()
    };
    let survivors: Vec<usize> = (0..ctx.clients.len()).filter(|i| *i != victim).collect();
    let mut state = "active";
    let mut i = 0usize;
    while !ctx.stop.load(Ordering::Relaxed) {
        i += 1;
        let after_kill = ctx.killed.load(Ordering::Relaxed);
        let (via, result, what) = if i % 5 == 4 {
            let name = format!("k{home}-{task}-{i}");
            let r = ctx.clients[home]
                .create_identity(&json!({
                    "name": name, "kind": "agent", "environment": "load",
                    "owner": "load@example.com",
                }))
                .await;
            if let Ok(v) = &r {
                match v["id"].as_str() {
                    Some(id) => acked.identities.push((id.to_owned(), name)),
                    None => acked.unexpected.push(format!("create without id: {v}")),
                }
            }
            (home, r, "create")
        } else if i % 5 == 2 {
            let via = if home == victim {
                home
            } else {
                survivors[(i / 5) % survivors.len()]
            };
            let (action, next) = if state == "active" {
                ("suspend", "suspended")
            } else {
                ("resume", "active")
            };
            let r = ctx.clients[via]
                .lifecycle(&toggle, action, Some("load"))
                .await;
            match &r {
                Ok(v) if v["state"] == next => {
                    state = next;
                    acked.transitions.push(next.to_owned());
                }
                Ok(v) => acked.unexpected.push(format!("{action} answered {v}")),
                Err(_) => acked.cut_off = Some(next.to_owned()),
            }
            (via, r, action)
        } else {
            let r = ctx.clients[home]
                .authorize(&read_req(&ctx.principal, 1))
                .await;
            if let Ok(v) = &r {
                match (v["decision"].as_str(), v["audit_seq"].as_u64()) {
                    (Some("allow"), Some(seq)) => {
                        acked.decisions.push((seq, ctx.principal.clone()))
                    }
                    _ => acked.unexpected.push(format!("decision: {v}")),
                }
            }
            (home, r, "authorize")
        };
        match result {
            Ok(_) => {
                ctx.acked[via].fetch_add(1, Ordering::Relaxed);
                if after_kill {
                    ctx.acked_after_kill[via].fetch_add(1, Ordering::Relaxed);
                }
            }
            // The killed replica: its connections fail or its answers are cut off. Not an
            // acknowledgement; this task is done.
            Err(ClientError::Connect { .. } | ClientError::Decode(_)) if via == victim => break,
            Err(e) => {
                acked
                    .unexpected
                    .push(format!("{what} through replica {via}: {e}"));
                break;
            }
        }
    }
    acked
}

async fn wait_counts(
    counts: &[AtomicUsize],
    replicas: &[usize],
    at_least: usize,
    limit: Duration,
    what: &str,
) {
    let deadline = Instant::now() + limit;
    loop {
        let now: Vec<usize> = replicas
            .iter()
            .map(|i| counts[*i].load(Ordering::Relaxed))
            .collect();
        if now.iter().all(|n| *n >= at_least) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: only {now:?} acknowledged operations after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_one_replica_loses_no_acknowledged_write() {
    const TASKS_PER_REPLICA: usize = 2;
    const VICTIM: usize = 1;
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    let url = fresh_database().await;
    let mut r = Replicas::start(&url, 3, &[]);
    let a = r.client(0);
    a.put_policy(Some(SCHEMA), POLICIES, None).await.unwrap();
    let principal = create_identity(&a, "load-reader", "prod", &["reader"]).await;
    let mut toggles = Vec::new();
    for home in 0..3 {
        for t in 0..TASKS_PER_REPLICA {
            toggles.push(create_identity(&a, &format!("toggle-{home}-{t}"), "load", &[]).await);
        }
    }
    for i in 0..3 {
        until_decision(&r.client(i), &principal, 1, "allow", Duration::from_secs(5)).await;
    }

    let ctx = Arc::new(LoadCtx {
        clients: (0..3).map(|i| r.client(i)).collect(),
        principal: principal.clone(),
        stop: Arc::new(AtomicBool::new(false)),
        killed: Arc::new(AtomicBool::new(false)),
        acked: Arc::new((0..3).map(|_| AtomicUsize::new(0)).collect()),
        acked_after_kill: Arc::new((0..3).map(|_| AtomicUsize::new(0)).collect()),
    });
    let mut tasks = Vec::new();
    for home in 0..3 {
        for t in 0..TASKS_PER_REPLICA {
            let toggle = toggles[home * TASKS_PER_REPLICA + t].clone();
            tasks.push(tokio::spawn(load_task(
                ctx.clone(),
                home,
                t,
                toggle,
                VICTIM,
            )));
        }
    }
    // Everyone writes for a while, then B dies mid-flight.
    wait_counts(
        &ctx.acked,
        &[0, 1, 2],
        100,
        Duration::from_secs(20),
        "before the kill",
    )
    .await;
    r.servers[VICTIM].kill();
    ctx.killed.store(true, Ordering::Relaxed);
    let killed_at = Instant::now();
    // A and C keep serving.
    wait_counts(
        &ctx.acked_after_kill,
        &[0, 2],
        100,
        Duration::from_secs(20),
        "after the kill",
    )
    .await;
    eprintln!(
        "A and C served 100 operations each {:?} after the kill",
        killed_at.elapsed()
    );
    ctx.stop.store(true, Ordering::Relaxed);

    let mut all = Acked::default();
    let mut toggled = Vec::new();
    for t in tasks {
        let a = tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .expect("load tasks must stop")
            .expect("load task");
        all.decisions.extend(a.decisions);
        all.identities.extend(a.identities);
        all.unexpected.extend(a.unexpected);
        toggled.push((a.toggled.unwrap(), a.transitions, a.cut_off));
    }
    assert!(all.unexpected.is_empty(), "{:#?}", all.unexpected);
    let after: Vec<usize> = ctx
        .acked_after_kill
        .iter()
        .map(|n| n.load(Ordering::Relaxed))
        .collect();
    let total: Vec<usize> = ctx
        .acked
        .iter()
        .map(|n| n.load(Ordering::Relaxed))
        .collect();
    assert_eq!(
        after[VICTIM], 0,
        "the killed replica answered after the kill"
    );

    // Nothing acknowledged twice, nothing acknowledged lost; one gapless log.
    let mut seen = HashSet::new();
    for (seq, _) in &all.decisions {
        assert!(seen.insert(*seq), "audit seq {seq} acknowledged twice");
    }
    let c = r.client(2);
    let records = assert_one_gapless_log(&[&a, &c]).await;
    for (seq, principal) in &all.decisions {
        let rec = records
            .get(seq)
            .unwrap_or_else(|| panic!("acknowledged decision {seq} lost"));
        assert_eq!(rec["kind"], "decision", "{rec}");
        assert_eq!(rec["subject"], format!("identity:{principal}"), "{rec}");
        assert_eq!(rec["payload"]["principal_id"], principal.as_str(), "{rec}");
        assert_eq!(rec["payload"]["decision"], "allow", "{rec}");
    }
    let decisions_logged = records.values().filter(|r| r["kind"] == "decision").count();
    assert!(decisions_logged >= all.decisions.len());
    let identities = all_identities(&a).await;
    let created: HashSet<&str> = records
        .values()
        .filter(|r| r["kind"] == "identity.created")
        .filter_map(|r| r["subject"].as_str())
        .collect();
    for (id, name) in &all.identities {
        let i = identities
            .get(id)
            .unwrap_or_else(|| panic!("acknowledged identity {id} ({name}) lost"));
        assert_eq!(i["name"], name.as_str());
        assert!(created.contains(format!("identity:{id}").as_str()), "{id}");
    }
    // Suspensions and resumptions: the final state is the last acknowledged one (or the
    // cut-off attempt's, if that committed), and the log holds exactly those transitions.
    let mut transitions = 0;
    for (id, acked, cut_off) in &toggled {
        transitions += acked.len();
        let state = identities[id]["state"].as_str().unwrap().to_owned();
        let last = acked.last().map(String::as_str).unwrap_or("active");
        let committed_cut_off = cut_off.as_deref() == Some(state.as_str()) && state != last;
        assert!(
            state == last || committed_cut_off,
            "{id}: state {state}, acknowledged {acked:?}, cut off {cut_off:?}"
        );
        let subject = format!("identity:{id}");
        let logged = records
            .values()
            .filter(|r| {
                (r["kind"] == "identity.suspended" || r["kind"] == "identity.resumed")
                    && r["subject"] == subject.as_str()
            })
            .count();
        assert_eq!(
            logged,
            acked.len() + usize::from(committed_cut_off),
            "{id}: {acked:?} / {cut_off:?}"
        );
    }
    assert!(
        transitions > 0,
        "no suspension or resumption was acknowledged"
    );

    // The killed replica comes back and catches up.
    r.restart(VICTIM);
    let b = r.client(VICTIM);
    assert_eq!(decide(&b, &principal, 1).await, "allow");
    assert_eq!(all_identities(&b).await.len(), identities.len());
    a.checkpoint().await.unwrap();
    assert_one_gapless_log(&[&a, &b, &c]).await;
    verify_chain(&r.url, &r.public_key());
    eprintln!(
        "kill -9 of a replica: acknowledged per replica {total:?} ({after:?} after the kill): {} decisions, {} creations, {transitions} transitions, {} records, {:?}",
        all.decisions.len(),
        all.identities.len(),
        records.len(),
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------
// 3. PostgreSQL outage

/// A PostgreSQL server of this test's own (`scripts/pg-test-server.sh` with its own
/// directory), stopped and removed on drop, also when the test fails.
struct OwnPostgres {
    dir: PathBuf,
    url: String,
}

impl OwnPostgres {
    fn script(dir: &Path, command: &str) -> Output {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/pg-test-server.sh");
        Command::new("bash")
            .arg(script)
            .arg(command)
            .env("WARRANT_PG_DIR", dir)
            .output()
            .expect("run pg-test-server.sh")
    }

    fn run(&self, command: &str) -> String {
        let o = Self::script(&self.dir, command);
        assert!(
            o.status.success(),
            "pg-test-server.sh {command} failed:\n{}",
            stderr(&o)
        );
        stdout(&o).trim().to_owned()
    }

    fn start() -> OwnPostgres {
        let dir = std::env::temp_dir().join(format!(
            "warrant-pg-outage-{}-{}",
            std::process::id(),
            now_ms()
        ));
        // The guard exists before the server does: whatever happens next, it is stopped.
        let mut pg = OwnPostgres {
            dir,
            url: String::new(),
        };
        pg.url = pg.run("start");
        pg
    }

    fn halt(&self) {
        self.run("halt");
    }

    fn resume(&self) {
        let url = self.run("resume");
        assert_eq!(url, self.url, "resumed on another address");
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = Self::script(&self.dir, "stop");
    }
}

#[derive(Debug)]
enum Answer {
    Allow(u64),
    Deny,
    Created(String, String),
    Unavailable,
    Other(String),
}

/// One request of the outage load: when it was sent and answered, through which replica.
#[derive(Debug)]
struct Sample {
    replica: usize,
    sent: Instant,
    answered: Instant,
    answer: Answer,
}

fn classify(r: Result<Value, ClientError>) -> Answer {
    match r {
        Ok(v) if v.get("decision").is_some() => {
            match (v["decision"].as_str(), v["audit_seq"].as_u64()) {
                (Some("allow"), Some(seq)) => Answer::Allow(seq),
                (Some("deny"), _) => Answer::Deny,
                _ => Answer::Other(format!("decision without audit_seq: {v}")),
            }
        }
        Ok(v) => match (v["id"].as_str(), v["name"].as_str()) {
            (Some(id), Some(name)) => Answer::Created(id.to_owned(), name.to_owned()),
            _ => Answer::Other(format!("unexpected answer {v}")),
        },
        Err(ClientError::Api {
            status: 503, code, ..
        }) if code == "unavailable" => Answer::Unavailable,
        Err(e) => Answer::Other(e.to_string()),
    }
}

/// Shared by the outage load tasks.
struct OutageCtl {
    stop: AtomicBool,
    /// Set once PostgreSQL is down, cleared before it is resumed.
    outage: AtomicBool,
    /// Allows per replica.
    allows: Vec<AtomicUsize>,
    /// Refusals (503) per replica of requests sent during the outage.
    refused_in_outage: Vec<AtomicUsize>,
}

async fn outage_task(
    c: Client,
    replica: usize,
    principal: String,
    writes: bool,
    ctl: Arc<OutageCtl>,
) -> Vec<Sample> {
    let mut samples = Vec::new();
    let mut i = 0;
    while !ctl.stop.load(Ordering::Relaxed) {
        i += 1;
        let in_outage = ctl.outage.load(Ordering::Relaxed);
        let sent = Instant::now();
        let r = if writes {
            let name = format!("o{replica}-{i}");
            c.create_identity(&json!({
                "name": name, "kind": "agent", "environment": "outage", "owner": "x@example.com",
            }))
            .await
        } else {
            c.authorize(&read_req(&principal, 1)).await
        };
        let answer = classify(r);
        match answer {
            Answer::Allow(_) => ctl.allows[replica].fetch_add(1, Ordering::Relaxed),
            Answer::Unavailable if in_outage => {
                ctl.refused_in_outage[replica].fetch_add(1, Ordering::Relaxed)
            }
            _ => 0,
        };
        samples.push(Sample {
            replica,
            sent,
            answered: Instant::now(),
            answer,
        });
        if writes {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    samples
}

/// With the database down, a replica is not ready and refuses decisions and writes with
/// 503 `{error: "unavailable", message}`.
async fn expect_down(http: &reqwest::Client, s: &Server, principal: &str, limit: Duration) {
    let not_ready = async {
        let t = Instant::now();
        loop {
            let status = readyz_status(http, &s.url).await;
            if status.is_some_and(|s| s != 200) {
                return t.elapsed();
            }
            assert!(
                t.elapsed() < limit,
                "{}: /readyz still {status:?} with the database down",
                s.url
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let refused = async {
        let t = Instant::now();
        let res = http
            .post(format!("{}/v1/authorize", s.url))
            .bearer_auth(ADMIN_TOKEN)
            .json(&read_req(principal, 1))
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let body: Value = res.json().await.expect("JSON body");
        assert_eq!(
            status, 503,
            "{}: decision with the database down: {body}",
            s.url
        );
        assert_eq!(body["error"], "unavailable", "{body}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
        assert!(body.get("decision").is_none(), "{body}");
        t.elapsed()
    };
    let write = async {
        let t = Instant::now();
        let w = s
            .client()
            .create_identity(&json!({
                "name": "while-down", "kind": "agent", "environment": "outage", "owner": "x@example.com",
            }))
            .await;
        assert_eq!(
            api_status(&w),
            Some(503),
            "{}: write with the database down: {w:?}",
            s.url
        );
        t.elapsed()
    };
    let (ready, decision, write) = tokio::join!(not_ready, refused, write);
    eprintln!(
        "{} with the database down: not ready after {ready:?}, decision refused after {decision:?}, write refused after {write:?}",
        s.url
    );
}

/// Decides through `c` until one is allowed again after the database returned at `up`;
/// returns how long after `up` that was.
async fn until_recovered(c: &Client, principal: &str, up: Instant, limit: Duration) -> Duration {
    loop {
        match c.authorize(&read_req(principal, 1)).await {
            Ok(v) => {
                assert_eq!(decision_of(&v), "allow", "{v}");
                return up.elapsed();
            }
            Err(e) => assert!(
                up.elapsed() < limit,
                "{}: no allow {limit:?} after the database returned; last: {e}",
                c.base()
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn database_outage_fails_closed_and_recovers() {
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    let pg = tokio::task::spawn_blocking(OwnPostgres::start)
        .await
        .unwrap();
    let r = Replicas::start(&pg.url, 2, &[]);
    let (a, b) = (r.client(0), r.client(1));
    a.put_policy(Some(SCHEMA), POLICIES, None).await.unwrap();
    let principal = create_identity(&a, "outage-reader", "prod", &["reader"]).await;
    until_decision(&b, &principal, 1, "allow", Duration::from_secs(5)).await;
    let http = reqwest::Client::new();

    let ctl = Arc::new(OutageCtl {
        stop: AtomicBool::new(false),
        outage: AtomicBool::new(false),
        allows: (0..2).map(|_| AtomicUsize::new(0)).collect(),
        refused_in_outage: (0..2).map(|_| AtomicUsize::new(0)).collect(),
    });
    let mut tasks = Vec::new();
    for replica in 0..2 {
        for writes in [false, false, true] {
            tasks.push(tokio::spawn(outage_task(
                r.client(replica),
                replica,
                principal.clone(),
                writes,
                ctl.clone(),
            )));
        }
    }
    wait_counts(
        &ctl.allows,
        &[0, 1],
        20,
        Duration::from_secs(10),
        "before the outage",
    )
    .await;

    // PostgreSQL goes down.
    let halt_started = Instant::now();
    let pg = tokio::task::spawn_blocking(move || {
        pg.halt();
        pg
    })
    .await
    .unwrap();
    let down = Instant::now();
    ctl.outage.store(true, Ordering::Relaxed);
    eprintln!("PostgreSQL halted in {:?}", down - halt_started);

    // While it is down: not ready, decisions and writes refused with 503 {error, message}.
    let watch_ready = Arc::new(AtomicBool::new(true));
    let readiness: Vec<_> = r
        .servers
        .iter()
        .map(|s| {
            let (http, url, watch) = (http.clone(), s.url.clone(), watch_ready.clone());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while watch.load(Ordering::Relaxed) {
                    let status = readyz_status(&http, &url).await;
                    seen.push((Instant::now(), status));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                (url, seen)
            })
        })
        .collect();
    let limit = Duration::from_secs(20);
    tokio::join!(
        expect_down(&http, &r.servers[0], &principal, limit),
        expect_down(&http, &r.servers[1], &principal, limit),
    );
    wait_counts(
        &ctl.refused_in_outage,
        &[0, 1],
        1,
        limit,
        "refusals of requests sent during the outage",
    )
    .await;

    // It comes back: decisions are allowed again on both replicas, writes work.
    ctl.outage.store(false, Ordering::Relaxed);
    let resume_started = Instant::now();
    watch_ready.store(false, Ordering::Relaxed);
    let pg = tokio::task::spawn_blocking(move || {
        pg.resume();
        pg
    })
    .await
    .unwrap();
    let up = Instant::now();
    eprintln!(
        "PostgreSQL was down for {:?} (pg_ctl start took {:?})",
        resume_started - down,
        up - resume_started
    );
    let recovery = Duration::from_secs(30);
    let (t_a, t_b) = tokio::join!(
        until_recovered(&a, &principal, up, recovery),
        until_recovered(&b, &principal, up, recovery),
    );
    eprintln!(
        "decisions allowed again {t_a:?} (replica 0) and {t_b:?} (replica 1) after the database accepted connections again"
    );
    for (i, c) in [&a, &b].into_iter().enumerate() {
        c.create_identity(&json!({
            "name": format!("after-{i}"), "kind": "agent", "environment": "outage", "owner": "x@example.com",
        }))
        .await
        .unwrap_or_else(|e| panic!("{}: write after recovery: {e}", c.base()));
        assert_eq!(readyz_status(&http, c.base()).await, Some(200));
    }
    // /readyz was never 200 while the database was down (requests in flight at the
    // resume may answer 200: only those answered before count).
    for task in readiness {
        let (url, seen) = task.await.unwrap();
        let ready_while_down: Vec<_> = seen
            .iter()
            .filter(|(at, status)| *at < resume_started && *status == Some(200))
            .map(|(at, _)| *at - down)
            .collect();
        assert!(
            ready_while_down.is_empty(),
            "{url}: /readyz answered 200 with the database down, at {ready_while_down:?} into the outage"
        );
        assert!(
            seen.iter()
                .any(|(at, s)| *at < resume_started && s.is_some()),
            "{url}: /readyz never answered during the outage"
        );
    }
    let back = Instant::now();
    let before: Vec<usize> = ctl
        .allows
        .iter()
        .map(|n| n.load(Ordering::Relaxed))
        .collect();
    wait_counts(
        &ctl.allows,
        &[0, 1],
        before.iter().max().unwrap() + 20,
        Duration::from_secs(20),
        "after recovery",
    )
    .await;
    ctl.stop.store(true, Ordering::Relaxed);
    let mut samples = Vec::new();
    for t in tasks {
        samples.extend(
            tokio::time::timeout(Duration::from_secs(60), t)
                .await
                .expect("load tasks must stop")
                .expect("load task"),
        );
    }

    // No allow was answered while the database was down; every refusal was a 503.
    let mut refused_while_down = [0usize; 2];
    let mut denied = 0;
    for s in &samples {
        let while_down = s.sent >= down && s.answered <= resume_started;
        match &s.answer {
            Answer::Allow(seq) => assert!(
                !while_down,
                "replica {}: allow (seq {seq}) answered {:?} into the outage",
                s.replica,
                s.answered - down
            ),
            Answer::Unavailable if while_down => refused_while_down[s.replica] += 1,
            Answer::Unavailable => {}
            Answer::Deny => denied += 1,
            Answer::Created(..) => assert!(
                !while_down,
                "a write acknowledged while the database was down: {s:?}"
            ),
            Answer::Other(e) => panic!("replica {}: unexpected answer: {e}", s.replica),
        }
    }
    assert!(
        refused_while_down.iter().all(|n| *n > 0),
        "the load saw no refusal during the outage: {refused_while_down:?}"
    );

    // Nothing acknowledged is lost; one gapless log; the chain verifies.
    let records = assert_one_gapless_log(&[&a, &b]).await;
    let mut seen = HashSet::new();
    let identities = all_identities(&a).await;
    let mut acknowledged = 0;
    for s in &samples {
        match &s.answer {
            Answer::Allow(seq) => {
                acknowledged += 1;
                assert!(seen.insert(*seq), "seq {seq} acknowledged twice");
                let rec = records
                    .get(seq)
                    .unwrap_or_else(|| panic!("acknowledged decision {seq} lost"));
                assert_eq!(rec["kind"], "decision", "{rec}");
                assert_eq!(rec["subject"], format!("identity:{principal}"), "{rec}");
                assert_eq!(rec["payload"]["decision"], "allow", "{rec}");
            }
            Answer::Created(id, name) => {
                acknowledged += 1;
                let i = identities
                    .get(id)
                    .unwrap_or_else(|| panic!("acknowledged identity {id} lost"));
                assert_eq!(i["name"], name.as_str());
            }
            _ => {}
        }
    }
    assert!(
        !identities.values().any(|i| i["name"] == "while-down"),
        "a write refused while the database was down was applied"
    );
    a.checkpoint().await.unwrap();
    verify_chain(&pg.url, &r.public_key());
    eprintln!(
        "outage: {} requests, {acknowledged} acknowledged, refused while down {refused_while_down:?}, {denied} denied, recovered to load in {:?}, {:?} in all",
        samples.len(),
        back.elapsed(),
        started.elapsed()
    );
    drop(r);
    drop(pg);
}

// ---------------------------------------------------------------------------------------
// 4. Periodic jobs on one replica

/// Polls every replica's `warrant_job_leader` until exactly one of `live` reports 1 and
/// the others 0; returns the leader.
async fn one_leader(
    http: &reqwest::Client,
    r: &Replicas,
    live: &[usize],
    limit: Duration,
) -> usize {
    let deadline = Instant::now() + limit;
    loop {
        let mut values = Vec::new();
        for i in live {
            values.push((*i, job_leader(http, &r.servers[*i].url).await));
        }
        let leaders: Vec<usize> = values
            .iter()
            .filter(|(_, v)| *v == Some(1))
            .map(|(i, _)| *i)
            .collect();
        if leaders.len() == 1 && values.iter().all(|(_, v)| v.is_some()) {
            return leaders[0];
        }
        assert!(
            Instant::now() < deadline,
            "not exactly one job leader after {limit:?}: {values:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Watches the checkpoints for `window` (asserting the leadership stays with `leader`
/// meanwhile): about one per second, never several replicas' at once.
async fn checkpoint_rate(
    http: &reqwest::Client,
    r: &Replicas,
    c: &Client,
    leader: usize,
    live: &[usize],
    window: Duration,
) -> usize {
    let from = now_ms();
    let t = Instant::now();
    while t.elapsed() < window {
        assert_eq!(
            one_leader(http, r, live, Duration::from_secs(1)).await,
            leader,
            "the leadership moved"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let to = now_ms();
    let times: Vec<i64> = checkpoint_times(c)
        .await
        .into_iter()
        .filter(|t| (from..=to).contains(t))
        .collect();
    let secs = window.as_secs() as usize;
    assert!(
        times.len() + 1 >= secs && times.len() <= secs + 1,
        "{} checkpoints in {window:?} with a 1 s interval: {times:?}",
        times.len()
    );
    let gaps: Vec<i64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter().all(|g| *g >= 500),
        "checkpoints closer than 500 ms apart (several replicas signing?): {gaps:?}"
    );
    times.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn checkpoints_run_on_one_replica_and_move_when_it_dies() {
    let _serial = SERIAL.lock().await;
    let url = fresh_database().await;
    let mut r = Replicas::start(&url, 3, &["--checkpoint-interval", "1"]);
    let http = reqwest::Client::new();
    let a = r.client(0);
    a.put_policy(Some(SCHEMA), POLICIES, None).await.unwrap();
    let principal = create_identity(&a, "cp-reader", "prod", &["reader"]).await;

    // Records keep coming (a checkpoint is signed only when the log grew), through every
    // replica that is alive.
    let stop = Arc::new(AtomicBool::new(false));
    let dead = Arc::new(AtomicUsize::new(usize::MAX));
    let load = {
        let clients: Vec<Client> = (0..3).map(|i| r.client(i)).collect();
        let (stop, dead, principal) = (stop.clone(), dead.clone(), principal.clone());
        tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                for (i, c) in clients.iter().enumerate() {
                    if i != dead.load(Ordering::Relaxed)
                        && c.authorize(&read_req(&principal, 1)).await.is_ok()
                    {
                        n += 1;
                    }
                }
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            n
        })
    };

    let all = [0, 1, 2];
    let leader = one_leader(&http, &r, &all, Duration::from_secs(5)).await;
    let n = checkpoint_rate(&http, &r, &a, leader, &all, Duration::from_secs(4)).await;
    eprintln!("replica {leader} leads: {n} checkpoints in 4 s");

    // The leader dies: another one takes over and checkpoints continue.
    r.servers[leader].kill();
    dead.store(leader, Ordering::Relaxed);
    let killed = Instant::now();
    let killed_ms = now_ms();
    let live: Vec<usize> = all.into_iter().filter(|i| *i != leader).collect();
    let next = one_leader(&http, &r, &live, Duration::from_secs(10)).await;
    let failover = killed.elapsed();
    let survivor = r.client(next);
    let deadline = Instant::now() + Duration::from_secs(10);
    let first_cp = loop {
        if checkpoint_times(&survivor)
            .await
            .iter()
            .any(|t| *t > killed_ms)
        {
            break killed.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint within 10 s of the leader's death"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("leader {leader} killed: replica {next} leads after {failover:?}, first checkpoint after {first_cp:?}");
    assert!(
        failover < Duration::from_secs(5),
        "failover took {failover:?}"
    );
    let n = checkpoint_rate(&http, &r, &survivor, next, &live, Duration::from_secs(3)).await;
    eprintln!("replica {next} leads: {n} checkpoints in 3 s");

    stop.store(true, Ordering::Relaxed);
    let decided = load.await.unwrap();
    assert!(decided > 0);
    verify_chain(&r.url, &r.public_key());
}

// ---------------------------------------------------------------------------------------
// 5. One signing key per database

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_with_another_signing_key_refuses_to_start() {
    let _serial = SERIAL.lock().await;
    let url = fresh_database().await;
    let r = Replicas::start(&url, 1, &[]);
    let a = r.client(0);
    let key_id = a.get("/v1/audit/public-key").await.unwrap()["key_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let records_before = all_records(&a).await.len();

    // Its own data directory, so its own new key.
    let other = tempfile::tempdir().unwrap();
    let mut s = Server::spawn_with(other.path(), replica_opts(&url, &[]));
    let status = s.wait_exit(Duration::from_secs(30));
    let log = s.log_text();
    let status = status
        .unwrap_or_else(|| panic!("a replica with another signing key is still running:\n{log}"));
    assert!(!status.success(), "exited with {status}:\n{log}");
    assert!(log.contains("signing key"), "unclear refusal:\n{log}");
    assert!(
        log.contains(&key_id),
        "the refusal does not name the database's key {key_id}:\n{log}"
    );
    eprintln!("refused: {}", log.trim());
    // It wrote nothing.
    assert_eq!(
        all_records(&a).await.len(),
        records_before,
        "the refused replica wrote to the log"
    );

    // With a copy of the database's key, a new replica starts.
    let other2 = tempfile::tempdir().unwrap();
    copy_keys(r.dirs[0].path(), other2.path());
    let b = Server::start_with(other2.path(), replica_opts(&url, &[]));
    let bc = b.client();
    assert_eq!(
        bc.get("/v1/audit/public-key").await.unwrap()["key_id"],
        key_id.as_str()
    );
}
