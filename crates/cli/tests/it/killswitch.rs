//! Kill switch: engage and release through the API and CLI; decisions and tokens stop at once.

use super::harness::*;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use warrant_client::{Client, ClientError};

/// The tests here start servers and some measure delays: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The bound on a change made through one replica being in force on another.
const PROPAGATION: Duration = Duration::from_secs(1);

/// One identity of each kind, spread over owners and environments, all readers:
///
/// | name | kind            | env  | owner             |
/// |------|-----------------|------|-------------------|
/// | bot  | agent           | dev  | alice@example.com |
/// | tool | ai_tool         | prod | bob@example.com   |
/// | svc  | service_account | dev  | bob@example.com   |
/// | wl   | workload        | prod | carol@example.com |
struct Fleet {
    bot: String,
    tool: String,
    svc: String,
    wl: String,
}

impl Fleet {
    fn all(&self) -> [(&'static str, &str); 4] {
        [
            ("bot", &self.bot),
            ("tool", &self.tool),
            ("svc", &self.svc),
            ("wl", &self.wl),
        ]
    }
}

async fn register(c: &Client, name: &str, kind: &str, env: &str, owner: &str) -> String {
    let v = c
        .create_identity(&json!({
            "name": name, "kind": kind, "environment": env, "owner": owner,
            "roles": ["reader"],
        }))
        .await
        .expect("create identity");
    v["id"].as_str().expect("id").to_owned()
}

async fn fleet(c: &Client) -> Fleet {
    c.put_policy(Some(SCHEMA), POLICIES, Some("killswitch"))
        .await
        .expect("put policy");
    Fleet {
        bot: register(c, "bot", "agent", "dev", "alice@example.com").await,
        tool: register(c, "tool", "ai_tool", "prod", "bob@example.com").await,
        svc: register(c, "svc", "service_account", "dev", "bob@example.com").await,
        wl: register(c, "wl", "workload", "prod", "carol@example.com").await,
    }
}

async fn decide(c: &Client, principal: &str) -> Value {
    c.authorize(&read_req(principal, 1))
        .await
        .unwrap_or_else(|e| panic!("authorize {principal} on {}: {e}", c.base()))
}

fn decision(v: &Value) -> &str {
    v["decision"]
        .as_str()
        .unwrap_or_else(|| panic!("no decision in {v}"))
}

async fn engage(c: &Client, kind: &str, value: Option<&str>, reason: &str) -> Value {
    let mut target = json!({ "kind": kind });
    if let Some(v) = value {
        target["value"] = json!(v);
    }
    c.post(
        "/v1/killswitches",
        &json!({ "target": target, "reason": reason }),
    )
    .await
    .unwrap_or_else(|e| panic!("engage {kind} {value:?}: {e}"))
}

async fn release(c: &Client, id: &str, reason: &str) -> Result<Value, ClientError> {
    c.post(
        &format!("/v1/killswitches/{id}/release"),
        &json!({ "reason": reason }),
    )
    .await
}

fn id_of(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {v}"))
        .to_owned()
}

/// Unwraps a JSON API error into (status, code, message); panics on success or on an
/// answer that is not a JSON error body.
fn api_err(r: Result<Value, ClientError>) -> (u16, String, String) {
    match r {
        Err(ClientError::Api {
            status,
            code,
            message,
            ..
        }) => {
            // The client reports `error` when the body had no `error` field (not JSON).
            assert_ne!(code, "error", "{status}: not a JSON error body: {message}");
            (status, code, message)
        }
        Err(e) => panic!("expected an API error, got {e}"),
        Ok(v) => panic!("expected an API error, got success: {v}"),
    }
}

async fn records(c: &Client, kind: &str) -> Vec<Value> {
    let page = c
        .audit(&[
            ("kind", Some(kind.to_owned())),
            ("limit", Some("500".into())),
        ])
        .await
        .expect("audit");
    page["items"].as_array().expect("items").clone()
}

async fn switches(c: &Client, all: bool) -> Vec<Value> {
    let v = c
        .get(&format!("/v1/killswitches?all={all}"))
        .await
        .expect("list kill switches");
    v["items"].as_array().expect("items").clone()
}

/// Asserts that exactly the `covered` members of the fleet are denied by switch `ks`
/// (with its reason), and the others are allowed.
async fn assert_covered(c: &Client, f: &Fleet, ks: &Value, covered: &[&str]) {
    let id = id_of(ks);
    let reason = ks["reason"].as_str().expect("reason");
    for (name, principal) in f.all() {
        let d = decide(c, principal).await;
        if covered.contains(&name) {
            assert_eq!(decision(&d), "deny", "{name} is covered by {ks}: {d}");
            let why = d["reason"].as_str().expect("reason");
            assert!(
                why.starts_with(&format!("stopped by kill switch `{id}`")) && why.ends_with(reason),
                "{name}: denial reason {why:?} does not name {id} and {reason:?}"
            );
        } else {
            assert_eq!(decision(&d), "allow", "{name} is not covered by {ks}: {d}");
        }
    }
}

fn assert_rfc3339(v: &Value, at: &str) {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("{at}: not a string: {v}"));
    assert!(
        s.len() >= 20 && s.as_bytes()[10] == b'T' && (s.ends_with('Z') || s.contains('+')),
        "{at}: not an RFC 3339 time: {s}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_target_kind_stops_exactly_what_it_covers_and_release_restores() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let c = server.client();
    let f = fleet(&c).await;
    assert_covered(&c, &f, &json!({"id": "-", "reason": "-"}), &[]).await;

    let cases: [(&str, Option<&str>, &[&str]); 4] = [
        ("identity", Some(&f.bot), &["bot"]),
        ("owner", Some("bob@example.com"), &["tool", "svc"]),
        ("environment", Some("prod"), &["tool", "wl"]),
        // AI automation is the kinds agent and ai_tool, not service accounts or workloads.
        ("all_ai", None, &["bot", "tool"]),
    ];
    let mut engaged_ids = vec![];
    for (kind, value, covered) in cases {
        let reason = format!("incident 4711: stop {kind}");
        let ks = engage(&c, kind, value, &reason).await;
        let id = id_of(&ks);
        assert!(
            id.strip_prefix("ks_")
                .is_some_and(|h| !h.is_empty() && h.chars().all(|ch| ch.is_ascii_hexdigit())),
            "id {id}"
        );
        assert_eq!(ks["state"], "engaged", "{ks}");
        assert_eq!(ks["target"]["kind"], kind, "{ks}");
        assert_eq!(ks["target"]["value"].as_str(), value, "{ks}");
        assert_eq!(ks["reason"], reason.as_str(), "{ks}");
        assert!(
            ks["engaged_by"]
                .as_str()
                .is_some_and(|a| a.starts_with("admin:")),
            "{ks}"
        );
        assert_rfc3339(&ks["engaged_at"], "engaged_at");
        assert!(ks["released_at"].is_null(), "{ks}");
        assert_eq!(c.get(&format!("/v1/killswitches/{id}")).await.unwrap(), ks);
        assert_eq!(switches(&c, false).await, vec![ks.clone()]);

        assert_covered(&c, &f, &ks, covered).await;

        let released = release(&c, &id, &format!("incident 4711 over ({kind})"))
            .await
            .expect("release");
        assert_eq!(released["state"], "released", "{released}");
        assert_eq!(released["id"], id.as_str());
        assert_eq!(released["reason"], reason.as_str());
        assert_rfc3339(&released["released_at"], "released_at");
        assert!(
            released["released_by"]
                .as_str()
                .is_some_and(|a| a.starts_with("admin:")),
            "{released}"
        );
        assert_eq!(
            released["release_reason"],
            format!("incident 4711 over ({kind})").as_str()
        );
        assert_covered(&c, &f, &released, &[]).await;
        assert!(switches(&c, false).await.is_empty());
        engaged_ids.push((id, kind, value.map(str::to_owned)));
    }

    // Two switches at once: an identity covered by both stays stopped until both are
    // released; the denial names one of them.
    let a = engage(&c, "owner", Some("alice@example.com"), "first of two").await;
    let b = engage(&c, "environment", Some("dev"), "second of two").await;
    assert_eq!(decision(&decide(&c, &f.bot).await), "deny");
    assert_eq!(decision(&decide(&c, &f.svc).await), "deny");
    assert_eq!(decision(&decide(&c, &f.tool).await), "allow");
    release(&c, &id_of(&a), "one released").await.unwrap();
    assert_covered(&c, &f, &b, &["bot", "svc"]).await;
    release(&c, &id_of(&b), "both released").await.unwrap();
    assert_covered(&c, &f, &b, &[]).await;
    assert_eq!(switches(&c, true).await.len(), 6);

    // Every engage and release is an audit record naming the actor, the target and the
    // reason.
    let engaged = records(&c, "killswitch.engaged").await;
    let released = records(&c, "killswitch.released").await;
    assert_eq!(engaged.len(), 6, "{engaged:?}");
    assert_eq!(released.len(), 6, "{released:?}");
    for (id, kind, value) in &engaged_ids {
        let subject = format!("killswitch:{id}");
        let e = engaged
            .iter()
            .find(|r| r["subject"] == subject.as_str())
            .unwrap_or_else(|| panic!("no killswitch.engaged record for {id}: {engaged:?}"));
        assert!(
            e["actor"].as_str().is_some_and(|a| a.starts_with("admin:")),
            "{e}"
        );
        assert_eq!(e["payload"]["target"]["kind"], *kind, "{e}");
        assert_eq!(
            e["payload"]["target"]["value"].as_str(),
            value.as_deref(),
            "{e}"
        );
        assert_eq!(
            e["payload"]["reason"],
            format!("incident 4711: stop {kind}").as_str(),
            "{e}"
        );
        let r = released
            .iter()
            .find(|r| r["subject"] == subject.as_str())
            .unwrap_or_else(|| panic!("no killswitch.released record for {id}: {released:?}"));
        assert!(
            r["actor"].as_str().is_some_and(|a| a.starts_with("admin:")),
            "{r}"
        );
        assert_eq!(
            r["payload"]["reason"],
            format!("incident 4711 over ({kind})").as_str(),
            "{r}"
        );
        assert!(r["seq"].as_u64() > e["seq"].as_u64());
    }
    let args = verify_args(dir.path());
    let o = cli(None, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
}

/// One decision of the stream: when it was sent, when it was answered, the verdict.
struct Sample {
    sent: Instant,
    answered: Instant,
    decision: String,
    reason: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn engage_during_a_stream_denies_the_first_request_after_the_answer() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let c = server.client();
    let f = fleet(&c).await;
    assert_eq!(decision(&decide(&c, &f.tool).await), "allow");

    // Two streams of back-to-back decisions for a covered principal, each on its own
    // connection.
    let stop = Arc::new(AtomicBool::new(false));
    let mut streams = vec![];
    for _ in 0..2 {
        let c = server.client();
        let principal = f.tool.clone();
        let stop = stop.clone();
        streams.push(tokio::spawn(async move {
            let mut out = vec![];
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let d = decide(&c, &principal).await;
                out.push(Sample {
                    sent,
                    answered: Instant::now(),
                    decision: decision(&d).to_owned(),
                    reason: d["reason"].as_str().unwrap_or_default().to_owned(),
                });
            }
            out
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let engage_sent = Instant::now();
    let ks = engage(&c, "all_ai", None, "runaway agents, stop everything").await;
    let engage_answered = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut samples = vec![];
    for s in streams {
        samples.extend(s.await.expect("stream task"));
    }
    let id = id_of(&ks);

    let before: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.answered < engage_sent)
        .collect();
    let during: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.answered >= engage_sent && s.sent <= engage_answered)
        .collect();
    let after: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.sent > engage_answered)
        .collect();
    let allowed_before = before.iter().filter(|s| s.decision == "allow").count();
    let late_allows: Vec<String> = after
        .iter()
        .filter(|s| s.decision != "deny" || !s.reason.contains(&id))
        .map(|s| {
            format!(
                "{} sent {:?} after the engage answer: {}",
                s.decision,
                s.sent - engage_answered,
                s.reason
            )
        })
        .collect();
    eprintln!(
        "stream: {} decisions; {} answered before the engage request ({allowed_before} allow), \
         {} in flight during it ({} deny), {} sent after its answer (all must be deny); \
         engage took {:?}",
        samples.len(),
        before.len(),
        during.len(),
        during.iter().filter(|s| s.decision == "deny").count(),
        after.len(),
        engage_answered - engage_sent,
    );
    assert!(allowed_before > 0, "no allow before the engage");
    assert_eq!(allowed_before, before.len(), "a deny before the engage");
    assert!(
        !after.is_empty(),
        "no decision was sent after the engage answer"
    );
    assert!(late_allows.is_empty(), "{}", late_allows.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_is_refused_with_a_json_error_and_stores_nothing() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let c = server.client();
    let f = fleet(&c).await;

    let bad: Vec<(Value, u16, &str)> = vec![
        (json!({ "target": { "kind": "all_ai" } }), 400, "reason"),
        (
            json!({ "target": { "kind": "all_ai" }, "reason": "" }),
            400,
            "reason",
        ),
        (
            json!({ "target": { "kind": "all_ai" }, "reason": "no" }),
            400,
            "reason",
        ),
        (
            json!({ "target": { "kind": "all_ai" }, "reason": "    " }),
            400,
            "reason",
        ),
        (
            json!({ "target": { "kind": "all_ai" }, "reason": "x".repeat(2001) }),
            400,
            "reason",
        ),
        (json!({ "reason": "no target given" }), 400, "target"),
        (
            json!({ "target": { "kind": "everything" }, "reason": "unknown kind" }),
            400,
            "everything",
        ),
        (
            json!({ "target": { "kind": "all_ai", "value": "prod" }, "reason": "value with all_ai" }),
            400,
            "all_ai",
        ),
        (
            json!({ "target": { "kind": "owner" }, "reason": "owner without value" }),
            400,
            "owner",
        ),
        (
            json!({ "target": { "kind": "environment", "value": " " }, "reason": "blank env" }),
            400,
            "environment",
        ),
        (
            json!({ "target": { "kind": "identity", "value": "idn_nobody" }, "reason": "no such identity" }),
            404,
            "idn_nobody",
        ),
        (
            json!({ "target": { "kind": "all_ai" }, "reason": "extra field", "force": true }),
            400,
            "force",
        ),
        (
            json!({ "target": { "kind": "all_ai", "scope": "x" }, "reason": "extra nested field" }),
            400,
            "scope",
        ),
        (
            json!({ "target": "all_ai", "reason": "target not an object" }),
            400,
            "target",
        ),
        (
            json!({ "target": { "kind": "identity", "value": f.bot }, "reason": 42 }),
            400,
            "reason",
        ),
    ];
    for (body, status, mentions) in &bad {
        let (got, code, message) = api_err(c.post("/v1/killswitches", body).await);
        assert_eq!(got, *status, "{body}: {code} {message}");
        assert!(
            message.contains(mentions),
            "{body}: the message does not mention `{mentions}`: {message}"
        );
        eprintln!("{status} {code}: {message}");
    }

    // No token: 401 on every endpoint, JSON error.
    let anon = server.anonymous();
    let no_token = [
        anon.post(
            "/v1/killswitches",
            &json!({ "target": { "kind": "all_ai" }, "reason": "anonymous caller" }),
        )
        .await,
        anon.get("/v1/killswitches").await,
        anon.get("/v1/killswitches/ks_00").await,
        anon.post(
            "/v1/killswitches/ks_00/release",
            &json!({ "reason": "anonymous caller" }),
        )
        .await,
    ];
    for r in no_token {
        let (status, code, _) = api_err(r);
        assert_eq!((status, code.as_str()), (401, "unauthorized"));
    }
    let bad_token = Client::new(&server.url, Some("wrt_not_a_token".into())).unwrap();
    let (status, _, _) = api_err(
        bad_token
            .post(
                "/v1/killswitches",
                &json!({ "target": { "kind": "all_ai" }, "reason": "wrong token" }),
            )
            .await,
    );
    assert_eq!(status, 401);

    // Nothing was stored and nothing is stopped.
    assert!(switches(&c, true).await.is_empty());
    assert!(records(&c, "killswitch.engaged").await.is_empty());
    assert_covered(&c, &f, &json!({"id": "-", "reason": "-"}), &[]).await;

    // Release: unknown 404, bad reason 400 (still engaged), twice 409.
    let (status, _, message) = api_err(release(&c, "ks_unknown", "nothing to release").await);
    assert_eq!(status, 404, "{message}");
    assert!(message.contains("ks_unknown"), "{message}");
    let (status, _, _) = api_err(c.get("/v1/killswitches/ks_unknown").await);
    assert_eq!(status, 404);
    let ks = engage(&c, "identity", Some(&f.bot), "bot misbehaves").await;
    let id = id_of(&ks);
    for body in [
        json!({}),
        json!({ "reason": "x" }),
        json!({ "reason": "fine reason", "extra": 1 }),
    ] {
        let (status, _, message) = api_err(
            c.post(&format!("/v1/killswitches/{id}/release"), &body)
                .await,
        );
        assert_eq!(status, 400, "{body}: {message}");
    }
    assert_covered(&c, &f, &ks, &["bot"]).await;
    release(&c, &id, "bot fixed").await.expect("release");
    let (status, code, message) = api_err(release(&c, &id, "bot fixed again").await);
    assert_eq!((status, code.as_str()), (409, "conflict"), "{message}");
    eprintln!("409 {code}: {message}");
    assert_eq!(records(&c, "killswitch.engaged").await.len(), 1);
    assert_eq!(records(&c, "killswitch.released").await.len(), 1);
    let shown = c.get(&format!("/v1/killswitches/{id}")).await.unwrap();
    assert_eq!(shown["release_reason"], "bot fixed", "{shown}");

    // Bad list query.
    let (status, _, _) = api_err(c.get("/v1/killswitches?all=maybe").await);
    assert_eq!(status, 400);
    let (status, _, _) = api_err(c.get("/v1/killswitches?every=true").await);
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn engaged_switch_survives_a_restart() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(dir.path());
    let c = server.client();
    let f = fleet(&c).await;
    let stays = engage(&c, "environment", Some("prod"), "prod freeze for the audit").await;
    let gone = engage(&c, "identity", Some(&f.bot), "bot paused briefly").await;
    release(&c, &id_of(&gone), "bot back").await.unwrap();
    assert_covered(&c, &f, &stays, &["tool", "wl"]).await;
    server.stop();

    let server = Server::start(dir.path());
    let c = server.client();
    assert_covered(&c, &f, &stays, &["tool", "wl"]).await;
    assert_eq!(switches(&c, false).await, vec![stays.clone()]);
    assert_eq!(switches(&c, true).await.len(), 2);
    release(&c, &id_of(&stays), "audit done").await.unwrap();
    assert_covered(&c, &f, &stays, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cli_engages_lists_shows_and_releases() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let c = server.client();
    let f = fleet(&c).await;
    let s = Some(&server);

    // Exactly one target is required.
    let o = cli(s, &["killswitch", "engage", "--reason", "no target"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = cli(
        s,
        &[
            "killswitch",
            "engage",
            "--all-ai",
            "--owner",
            "bob@example.com",
            "--reason",
            "two targets",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = cli(s, &["killswitch", "engage", "--all-ai"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    // The server's refusal is shown.
    let o = cli(s, &["killswitch", "engage", "--all-ai", "--reason", "x"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("reason"), "{}", stderr(&o));
    let o = cli(
        s,
        &[
            "killswitch",
            "engage",
            "--identity",
            "idn_nobody",
            "--reason",
            "ghost",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("idn_nobody"), "{}", stderr(&o));

    let o = cli(
        s,
        &[
            "killswitch",
            "engage",
            "--owner",
            "bob@example.com",
            "--reason",
            "bob left",
            "-o",
            "json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let ks: Value = serde_json::from_str(&stdout(&o)).expect("json");
    let id = id_of(&ks);
    assert_eq!(
        ks["target"],
        json!({ "kind": "owner", "value": "bob@example.com" })
    );
    assert_covered(&c, &f, &ks, &["tool", "svc"]).await;

    let o = cli(
        s,
        &[
            "killswitch",
            "engage",
            "--env",
            "dev",
            "--reason",
            "dev frozen",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let table = stdout(&o);
    eprintln!("{table}");
    assert!(
        table.contains("environment dev") && table.contains("dev frozen"),
        "{table}"
    );
    let o = cli(
        s,
        &[
            "killswitch",
            "engage",
            "--identity",
            &f.wl,
            "--reason",
            "wl stuck",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = cli(
        s,
        &["killswitch", "engage", "--all-ai", "--reason", "all AI off"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("all AI automation"), "{}", stdout(&o));

    let o = cli(s, &["killswitch", "list"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = stdout(&o);
    eprintln!("{table}");
    assert!(
        table.contains(&id) && table.contains("owner bob@example.com"),
        "{table}"
    );
    assert!(table.contains(&format!("identity {}", f.wl)), "{table}");

    let o = cli(s, &["killswitch", "show", &id, "-o", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let shown: Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(shown, ks);
    let o = cli(s, &["killswitch", "show", "ks_missing"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("ks_missing"), "{}", stderr(&o));

    let o = cli(
        s,
        &["killswitch", "release", &id, "--reason", "bob is back"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let table = stdout(&o);
    eprintln!("{table}");
    assert!(
        table.contains("released") && table.contains("bob is back"),
        "{table}"
    );
    let o = cli(
        s,
        &["killswitch", "release", &id, "--reason", "bob is back"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("released already"), "{}", stderr(&o));
    let o = cli(s, &["killswitch", "release", &id]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "--reason is required: {}",
        stderr(&o)
    );

    let o = cli(s, &["killswitch", "list", "-o", "json"]);
    let engaged: Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(
        engaged["items"].as_array().map(Vec::len),
        Some(3),
        "{engaged}"
    );
    let o = cli(s, &["killswitch", "list", "--all", "-o", "json"]);
    let all: Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(all["items"].as_array().map(Vec::len), Some(4), "{all}");
    let o = cli(s, &["killswitch", "list", "--all"]);
    let table = stdout(&o);
    eprintln!("{table}");
    assert!(table.contains("released") && table.contains(&id), "{table}");
    for ks in engaged["items"].as_array().unwrap() {
        let o = cli(
            s,
            &[
                "killswitch",
                "release",
                ks["id"].as_str().unwrap(),
                "--reason",
                "all clear",
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let o = cli(s, &["killswitch", "list"]);
    assert!(
        stdout(&o).contains("no kill switch engaged"),
        "{}",
        stdout(&o)
    );
    assert_covered(&c, &f, &ks, &[]).await;
}

/// Copies the signing key of one replica's data directory into another's.
fn copy_keys(from: &Path, to: &Path) {
    let dst = to.join("keys");
    std::fs::create_dir_all(&dst).expect("create keys dir");
    for entry in std::fs::read_dir(from.join("keys")).expect("read keys dir") {
        let entry = entry.expect("keys dir entry");
        std::fs::copy(entry.path(), dst.join(entry.file_name())).expect("copy key file");
    }
}

/// Decides on `c` in a tight loop until the verdict is `want`; returns how long that took
/// since `since`.
async fn until(c: &Client, principal: &str, want: &str, since: Instant) -> Duration {
    loop {
        if decision(&decide(c, principal).await) == want {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < PROPAGATION * 10,
            "{}: still no `{want}` for {principal} after {:?}",
            c.base(),
            since.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn engaged_on_one_replica_is_in_force_on_another_within_a_second() {
    let _serial = SERIAL.lock().await;
    let url = super::pg::fresh_database().await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let opts = || Options {
        extra_args: vec!["--database".to_owned(), url.clone()],
        ..Options::default()
    };
    let a = Server::start_with(dir_a.path(), opts());
    copy_keys(dir_a.path(), dir_b.path());
    let b = Server::start_with(dir_b.path(), opts());
    let (ca, cb) = (a.client(), b.client());
    let f = fleet(&ca).await;
    until(&cb, &f.bot, "allow", Instant::now()).await;

    let mut engage_delays = vec![];
    let mut release_delays = vec![];
    for (round, (kind, value)) in [
        ("identity", Some(f.bot.as_str())),
        ("owner", Some("alice@example.com")),
        ("environment", Some("dev")),
        ("all_ai", None),
    ]
    .into_iter()
    .enumerate()
    {
        let ks = engage(&ca, kind, value, &format!("round {round}: stop {kind}")).await;
        let answered = Instant::now();
        // Through A itself: in force at once.
        assert_eq!(decision(&decide(&ca, &f.bot).await), "deny");
        let took = until(&cb, &f.bot, "deny", answered).await;
        let d = decide(&cb, &f.bot).await;
        assert!(
            d["reason"]
                .as_str()
                .is_some_and(|r| r.contains(&id_of(&ks))),
            "{d}"
        );
        engage_delays.push(took);
        // B sees the switch too, and releases it.
        let on_b = cb
            .get(&format!("/v1/killswitches/{}", id_of(&ks)))
            .await
            .unwrap();
        assert_eq!(on_b, ks);
        release(&cb, &id_of(&ks), &format!("round {round} over"))
            .await
            .unwrap();
        let answered = Instant::now();
        assert_eq!(decision(&decide(&cb, &f.bot).await), "allow");
        release_delays.push(until(&ca, &f.bot, "allow", answered).await);
    }
    eprintln!(
        "kill switch propagation A→B (engage): {engage_delays:?}; B→A (release): {release_delays:?}"
    );
    for d in engage_delays.iter().chain(&release_delays) {
        assert!(
            *d < PROPAGATION,
            "propagation took {d:?} (bound {PROPAGATION:?})"
        );
    }
    // The audit log holds each engage and release once, on either replica.
    assert_eq!(records(&cb, "killswitch.engaged").await.len(), 4);
    assert_eq!(records(&ca, "killswitch.released").await.len(), 4);
    drop((a, b));
}
