//! Durability: nothing acknowledged is lost to `kill -9`, and when the audit log cannot be
//! written the server fails closed (503, never an allow) and recovers afterwards.

use super::harness::*;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use warrant_client::{Client, ClientError};

#[derive(Default)]
struct Acked {
    /// (audit_seq, principal id) of every acknowledged decision.
    decisions: Vec<(u64, String)>,
    /// (id, name) of every acknowledged identity creation.
    identities: Vec<(String, String)>,
    /// Errors that were not connection failures (there must be none).
    unexpected: Vec<String>,
}

/// Writes as fast as it can until the server goes away; returns what was acknowledged.
async fn writer(c: Client, principal: String, round: usize, task: usize) -> Acked {
    let mut acked = Acked::default();
    for i in 0.. {
        if i % 4 == 3 {
            let name = format!("w{round}-{task}-{i}");
            let r = c
                .create_identity(&json!({
                    "name": name, "kind": "agent", "environment": "load",
                    "owner": "load@example.com",
                }))
                .await;
            match r {
                Ok(v) => match v["id"].as_str() {
                    Some(id) => acked.identities.push((id.to_owned(), name)),
                    None => acked.unexpected.push(format!("create without id: {v}")),
                },
                Err(ClientError::Connect { .. }) => break,
                Err(e) => {
                    acked.unexpected.push(format!("create: {e}"));
                    break;
                }
            }
        } else {
            match c.authorize(&read_req(&principal, 1)).await {
                Ok(v) => {
                    if v["decision"] != "allow" {
                        acked.unexpected.push(format!("not an allow: {v}"));
                    }
                    match v["audit_seq"].as_u64() {
                        Some(seq) => acked.decisions.push((seq, principal.clone())),
                        None => acked.unexpected.push(format!("no audit_seq: {v}")),
                    }
                }
                Err(ClientError::Connect { .. }) => break,
                // A response cut off by the kill is not an acknowledgement.
                Err(ClientError::Decode(_)) => break,
                Err(e) => {
                    acked.unexpected.push(format!("authorize: {e}"));
                    break;
                }
            }
        }
    }
    acked
}

/// Every audit record, by seq (paged through `GET /v1/audit`).
async fn records_by_seq(c: &Client) -> HashMap<u64, Value> {
    let mut out = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = c
            .audit(&[("limit", Some("1000".into())), ("cursor", cursor.clone())])
            .await
            .expect("audit page");
        for r in page["items"].as_array().unwrap() {
            out.insert(r["seq"].as_u64().unwrap(), r.clone());
        }
        match page["next_cursor"].as_u64() {
            Some(n) => cursor = Some(n.to_string()),
            None => return out,
        }
    }
}

async fn all_identity_ids(c: &Client) -> HashMap<String, Value> {
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

/// Reads the server's stderr continuously. The harness pipes it and reads it only at
/// `stop()`; a server that logs more than a pipe buffer (64 KiB; one ERROR line per refused
/// request) would block on the write and hang.
fn drain_stderr(server: &mut Server) -> Arc<Mutex<String>> {
    // The harness drains the server's stderr continuously.
    server.log.clone()
}

fn verify_offline(dir: &Path) -> (bool, String) {
    let o = cli(
        None,
        &["audit", "verify", "--data-dir", dir.to_str().unwrap()],
    );
    (
        o.status.success(),
        format!("{}\n{}", stdout(&o), stderr(&o)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_loses_no_acknowledged_write() {
    kill_loop(&[], 5).await;
}

/// `normal` durability skips the fsync per commit: it still survives a process crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_loses_no_acknowledged_write_with_normal_durability() {
    kill_loop(&["--durability", "normal"], 3).await;
}

async fn kill_loop(args: &[&str], rounds: usize) {
    const WRITERS: usize = 8;
    let opts = || Options {
        extra_args: args.iter().map(|a| (*a).to_owned()).collect(),
        ..Options::default()
    };
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mut all = Acked::default();
    let mut principal = String::new();

    for round in 0..rounds {
        let mut server = Server::start_with(dir.path(), opts());
        let _log = drain_stderr(&mut server);
        let c = server.client();
        if round == 0 {
            principal = create_identity(&c, "load-reader", "prod", &["reader"]).await;
            c.put_policy(Some(SCHEMA), POLICIES, None).await.unwrap();
        }
        let tasks: Vec<_> = (0..WRITERS)
            .map(|t| tokio::spawn(writer(server.client(), principal.clone(), round, t)))
            .collect();
        // Let them write for 300 to 700 ms, then pull the plug mid-flight.
        let ms = 300 + (round as u64 * 97) % 400;
        tokio::time::sleep(Duration::from_millis(ms)).await;
        server.kill();
        let mut round_decisions = 0;
        for t in tasks {
            let a = tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .expect("writers must stop once the server is gone")
                .expect("writer task");
            round_decisions += a.decisions.len();
            all.decisions.extend(a.decisions);
            all.identities.extend(a.identities);
            all.unexpected.extend(a.unexpected);
        }
        assert!(
            round_decisions > 0,
            "round {round}: nothing was acknowledged in {ms} ms"
        );
    }
    assert!(all.unexpected.is_empty(), "{:#?}", all.unexpected);
    assert!(
        !all.identities.is_empty(),
        "no identity creation was acknowledged"
    );

    // The crashed data directory verifies offline as it is (no server to recover it).
    let (ok, out) = verify_offline(dir.path());
    assert!(ok, "audit verify after kill -9 failed:\n{out}");

    // No seq was acknowledged twice.
    let mut seen = HashSet::new();
    for (seq, _) in &all.decisions {
        assert!(seen.insert(*seq), "audit seq {seq} acknowledged twice");
    }

    let mut server = Server::start_with(dir.path(), opts());
    let _log = drain_stderr(&mut server);
    let c = server.client();
    let records = records_by_seq(&c).await;
    let max = records.keys().copied().max().unwrap();
    assert_eq!(records.len() as u64, max + 1, "the log has gaps");
    for (seq, principal) in &all.decisions {
        let r = records
            .get(seq)
            .unwrap_or_else(|| panic!("acknowledged decision {seq} lost"));
        assert_eq!(r["kind"], "decision", "{r}");
        assert_eq!(r["payload"]["principal_id"], principal.as_str(), "{r}");
        assert_eq!(r["payload"]["decision"], "allow", "{r}");
    }
    let identities = all_identity_ids(&c).await;
    for (id, name) in &all.identities {
        let i = identities
            .get(id)
            .unwrap_or_else(|| panic!("acknowledged identity {id} ({name}) lost"));
        assert_eq!(i["name"], name.as_str());
    }
    // And each one has its `identity.created` record.
    let created: HashSet<String> = records
        .values()
        .filter(|r| r["kind"] == "identity.created")
        .map(|r| r["subject"].as_str().unwrap().to_owned())
        .collect();
    for (id, _) in &all.identities {
        assert!(created.contains(&format!("identity:{id}")), "{id}");
    }
    // Still decides.
    let d = c.authorize(&read_req(&principal, 1)).await.unwrap();
    assert_eq!(d["decision"], "allow");
    assert!(d["audit_seq"].as_u64().unwrap() > max);
    server.stop();
    let (ok, out) = verify_offline(dir.path());
    assert!(ok, "audit verify failed:\n{out}");
    eprintln!(
        "kill -9 loop {args:?}: {} decisions and {} identities acknowledged, {} records, {:?}",
        all.decisions.len(),
        all.identities.len(),
        max + 1,
        started.elapsed()
    );
}

fn expect_unavailable(r: Result<Value, ClientError>, what: &str) {
    match r {
        Err(ClientError::Api { status, code, .. }) => {
            assert_eq!(
                (status, code.as_str()),
                (503, "unavailable"),
                "{what}: expected 503 unavailable"
            );
        }
        Err(e) => panic!("{what}: expected 503, got {e}"),
        Ok(v) => panic!("{what}: expected 503, got a success: {v}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audit_write_failure_fails_closed_and_recovers() {
    use sqlx::sqlite::SqliteConnectOptions;
    use sqlx::{ConnectOptions, Connection};

    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let log = drain_stderr(&mut server);
    let c = server.client();
    let reader = create_identity(&c, "locked-reader", "prod", &["reader"]).await;
    c.put_policy(Some(SCHEMA), POLICIES, None).await.unwrap();
    let d = c.authorize(&read_req(&reader, 1)).await.unwrap();
    assert_eq!(d["decision"], "allow");
    let seq_before = d["audit_seq"].as_u64().unwrap();

    // Hold the database's write lock from outside the server.
    let mut lock = SqliteConnectOptions::new()
        .filename(server.db_path())
        .busy_timeout(Duration::from_secs(10))
        .connect()
        .await
        .expect("open db");
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut lock)
        .await
        .expect("take the write lock");
    let locked_at = Instant::now();

    // Writes and decisions are refused (503), never allowed, while it cannot write.
    let http = reqwest::Client::new();
    let res = http
        .post(format!("{}/v1/authorize", server.url))
        .bearer_auth(ADMIN_TOKEN)
        .json(&read_req(&reader, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 503);
    let body: Value = res.json().await.expect("JSON error body");
    assert_eq!(body["error"], "unavailable", "{body}");
    assert!(body.get("decision").is_none(), "{body}");

    let one = read_req(&reader, 1);
    let two = [read_req(&reader, 1), read_req(&reader, 2)];
    let looser = POLICIES.replace("< 50", "< 60");
    let refused = json!({
        "name": "refused", "kind": "agent", "environment": "lockedenv",
        "owner": "x@example.com",
    });
    let (a, b, p, s, cr) = tokio::join!(
        c.authorize(&one),
        c.authorize_batch(&two),
        c.put_policy(None, &looser, None),
        c.lifecycle(&reader, "suspend", Some("should not apply")),
        c.create_identity(&refused),
    );
    expect_unavailable(a, "authorize");
    expect_unavailable(b, "batch");
    expect_unavailable(p, "put policy");
    expect_unavailable(s, "suspend");
    expect_unavailable(cr, "create identity");
    eprintln!("refusals took {:?}", locked_at.elapsed());
    // The operator is told why.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !log.lock().unwrap().contains("action refused") {
        assert!(Instant::now() < deadline, "no refusal in the server log");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Reads keep working meanwhile.
    assert_eq!(c.identity(&reader).await.unwrap()["state"], "active");

    sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
    lock.close().await.unwrap();

    // Recovered: decisions are allowed and audited again, nothing refused was applied.
    let d = c
        .authorize(&read_req(&reader, 1))
        .await
        .expect("decision after recovery");
    assert_eq!(d["decision"], "allow", "{d}");
    let seq_after = d["audit_seq"].as_u64().unwrap();
    assert_eq!(
        seq_after,
        seq_before + 1,
        "refused requests must leave no audit record"
    );
    let list = c
        .list_identities(&[("environment", Some("lockedenv".into()))])
        .await
        .unwrap();
    assert_eq!(list["items"], json!([]), "a refused creation was applied");
    assert_eq!(c.identity(&reader).await.unwrap()["state"], "active");
    assert_eq!(c.policy().await.unwrap()["version"], 1);
    let page = c
        .audit(&[("order", Some("desc".into())), ("limit", Some("1".into()))])
        .await
        .unwrap();
    assert_eq!(page["items"][0]["seq"].as_u64(), Some(seq_after));
    // Writes work again too.
    c.create_identity(&json!({
        "name": "refused", "kind": "agent", "environment": "lockedenv",
        "owner": "x@example.com",
    }))
    .await
    .expect("create after recovery");
    c.checkpoint().await.expect("checkpoint after recovery");

    server.stop();
    let (ok, out) = verify_offline(dir.path());
    assert!(ok, "audit verify failed:\n{out}");
}

/// While requests are in flight when the lock is taken, none of them gets an allow
/// without a durable audit record: every acknowledged seq is in the log afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_allow_without_a_record_under_lock_contention() {
    use sqlx::sqlite::SqliteConnectOptions;
    use sqlx::{ConnectOptions, Connection};

    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let log = drain_stderr(&mut server);
    let c = server.client();
    let reader = create_identity(&c, "contended", "prod", &["reader"]).await;
    c.put_policy(Some(SCHEMA), POLICIES, None).await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let c = server.client();
            let reader = reader.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let (mut ok, mut refused, mut unexpected) = (Vec::new(), 0usize, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    match c.authorize(&read_req(&reader, 1)).await {
                        Ok(v) => ok.push(v["audit_seq"].as_u64().unwrap()),
                        Err(ClientError::Api { status: 503, .. }) => refused += 1,
                        Err(e) => {
                            unexpected.push(format!("after {:?}: {e:?}", t.elapsed()));
                            break;
                        }
                    }
                }
                (ok, refused, unexpected)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut lock = SqliteConnectOptions::new()
        .filename(server.db_path())
        .busy_timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut lock)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
    lock.close().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut acked, mut refused, mut unexpected) = (Vec::new(), 0, Vec::new());
    for t in tasks {
        let (ok, r, u) = t.await.unwrap();
        acked.extend(ok);
        refused += r;
        unexpected.extend(u);
    }
    if !unexpected.is_empty() {
        server.stop();
        let log = log.lock().unwrap();
        panic!("unexpected errors: {unexpected:#?}\nserver log:\n{log}");
    }
    assert!(refused > 0, "the lock caused no refusal");
    let records = records_by_seq(&c).await;
    let mut seen = HashSet::new();
    for seq in &acked {
        assert!(seen.insert(*seq), "seq {seq} acknowledged twice");
        let r = records
            .get(seq)
            .unwrap_or_else(|| panic!("acknowledged decision {seq} not in the log"));
        assert_eq!(r["kind"], "decision");
    }
    let decisions = records.values().filter(|r| r["kind"] == "decision").count();
    assert_eq!(
        decisions,
        acked.len(),
        "decision records vs acknowledged decisions"
    );
    server.stop();
    let (ok, out) = verify_offline(dir.path());
    assert!(ok, "audit verify failed:\n{out}");
}

/// A decision refused with 503 never happened (it has no audit record), so it must not
/// make the identity look used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_decision_does_not_mark_the_identity_used() {
    use sqlx::sqlite::SqliteConnectOptions;
    use sqlx::{ConnectOptions, Connection};

    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let _log = drain_stderr(&mut server);
    let c = server.client();
    let unused = create_identity(&c, "never-decided", "prod", &["reader"]).await;
    c.put_policy(Some(SCHEMA), POLICIES, None).await.unwrap();

    let mut lock = SqliteConnectOptions::new()
        .filename(server.db_path())
        .busy_timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut lock)
        .await
        .unwrap();
    expect_unavailable(c.authorize(&read_req(&unused, 1)).await, "authorize");
    sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
    lock.close().await.unwrap();

    let decisions = c.audit(&[("kind", Some("decision".into()))]).await.unwrap();
    assert_eq!(
        decisions["items"],
        json!([]),
        "a refused decision was audited"
    );
    let v = c.identity(&unused).await.unwrap();
    assert!(
        v["last_used_at"].is_null(),
        "last_used_at set by a refused (503, unaudited) decision: {v}"
    );
}

/// The offline verifier may run against a live server's data directory while it writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verify_while_the_server_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let _log = drain_stderr(&mut server);
    let c = server.client();
    let reader = create_identity(&c, "live", "prod", &["reader"]).await;
    c.put_policy(Some(SCHEMA), POLICIES, None).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..4)
        .map(|i| {
            let c = server.client();
            let reader = reader.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    c.authorize(&read_req(&reader, 1)).await.expect("decision");
                    n += 1;
                    if n.is_multiple_of(50) && i == 0 {
                        c.checkpoint().await.expect("checkpoint");
                    }
                }
                n
            })
        })
        .collect();
    let dir_path = dir.path().to_owned();
    for _ in 0..5 {
        let d = dir_path.clone();
        let (ok, out) = tokio::task::spawn_blocking(move || verify_offline(&d))
            .await
            .unwrap();
        assert!(ok, "verify of a live log failed:\n{out}");
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    assert!(total > 0);
    server.stop();
    let (ok, out) = verify_offline(dir.path());
    assert!(ok, "{out}");
}
