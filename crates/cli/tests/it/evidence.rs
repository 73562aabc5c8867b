//! `warrant evidence export`: a governed period (Tier 1, Tier 2 overridden, Tier 3
//! approved, a direct admin change) exported for an auditor; then one record tampered in
//! the SQLite file and the export names it and fails. The setup helpers are copied from
//! `governance.rs`.

use super::harness::*;
use serde_json::{json, Value};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};
use std::path::{Path, PathBuf};
use std::time::Duration;

const ISSUER: &str = "https://warrant.it.example";
const ACCESS_POLICIES: &str = r#"
@id("ai-tools-may-propose")
@reason("AI tools may ask warrant for tokens to submit proposals")
permit (principal, action == Warrant::Action::"request_scope", resource == Warrant::Scope::"warrant:propose")
when { principal.kind == "ai_tool" && context.audience == "https://warrant.it.example" };
"#;
const JUSTIFICATION: &str = "Vault access for the quarterly close, confirmed with finance";

struct Env {
    server: Server,
    config: PathBuf,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

struct Agent {
    id: String,
    token: String,
}

impl Env {
    async fn start() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("warrant.toml");
        std::fs::write(
            &config,
            format!(
                "version = 1\nissuer = \"{ISSUER}\"\n\n[governance]\ntick_ms = 100\nnotify_url = \"http://127.0.0.1:9/warrant-it-unwatched\"\n"
            ),
        )
        .unwrap();
        let server = Server::start_with(
            dir.path(),
            Options {
                extra_args: vec!["--config".into(), config.to_string_lossy().into_owned()],
                ..Options::default()
            },
        );
        let env = Env {
            server,
            config,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            _dir: dir,
        };
        env.admin(
            "PUT",
            "/v1/policies",
            json!({ "policies": ACCESS_POLICIES, "comment": "evidence it" }),
        )
        .await;
        env
    }

    fn restart(&mut self) {
        self.server.stop();
        let dir = self.server.data_dir.clone();
        self.server = Server::start_with(
            &dir,
            Options {
                extra_args: vec![
                    "--config".into(),
                    self.config.to_string_lossy().into_owned(),
                ],
                ..Options::default()
            },
        );
    }

    async fn call(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.server.url))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn admin(&self, method: &str, path: &str, body: Value) -> Value {
        let body = (!body.is_null()).then_some(body);
        let (s, b) = self.call(ADMIN_TOKEN, method, path, body).await;
        assert!((200..300).contains(&s), "{method} {path}: {s} {b}");
        b
    }

    /// An API token for a named human holding `role` (granted first: see
    /// [`human_token`]).
    async fn human(&self, human: &str, role: &str) -> String {
        human_token(&self.server.url, human, role).await.1
    }

    async fn identity(&self, name: &str, kind: &str, owner: &str, ents: &[&str]) -> String {
        let b = self
            .admin(
                "POST",
                "/v1/identities",
                json!({ "name": name, "kind": kind, "environment": "prod", "owner": owner,
                        "entitlements": ents }),
            )
            .await;
        b["id"].as_str().unwrap().to_owned()
    }

    async fn agent(&self, name: &str, owner: &str) -> Agent {
        let id = self.identity(name, "ai_tool", owner, &[]).await;
        let token = propose_token(&self.server.url, &id, ISSUER).await;
        Agent { id, token }
    }

    async fn proposed(&self, agent: &Agent, body: Value) -> Value {
        let (s, b) = self
            .call(&agent.token, "POST", "/v1/proposals", Some(body))
            .await;
        assert_eq!(s, 201, "{b}");
        b["proposal"].clone()
    }

    async fn proposal(&self, id: &str) -> Value {
        self.admin("GET", &format!("/v1/proposals/{id}"), Value::Null)
            .await["proposal"]
            .clone()
    }

    /// Runs `warrant evidence export` into `out`: (exit code, changes.json, report.html).
    fn export(&self, from: &str, out: &Path, pinned: &[&str]) -> (Option<i32>, Value, String) {
        self.export_period(from, "2100-01-01T00:00:00Z", out, pinned)
    }

    fn export_period(
        &self,
        from: &str,
        to: &str,
        out: &Path,
        pinned: &[&str],
    ) -> (Option<i32>, Value, String) {
        let o = cli(
            Some(&self.server),
            &[
                "evidence",
                "export",
                "--framework",
                "soc2",
                "--from",
                from,
                "--to",
                to,
                "--out",
                out.to_str().unwrap(),
            ]
            .into_iter()
            .chain(pinned.iter().copied())
            .collect::<Vec<_>>(),
        );
        let json = std::fs::read_to_string(out.join("changes.json"))
            .unwrap_or_else(|e| panic!("no changes.json ({e}): {}{}", stdout(&o), stderr(&o)));
        assert!(out.join("changes.csv").exists());
        let html = std::fs::read_to_string(out.join("report.html")).unwrap();
        (o.status.code(), serde_json::from_str(&json).unwrap(), html)
    }
}

fn proposal_body(kind: &str, identity: &str, entitlement: &str, confidence: f64) -> Value {
    json!({
        "capability": "optimizer",
        "change": { "kind": kind, "identity": identity, "entitlement": entitlement },
        "evidence": { "unused_days": 60 },
        "rationale": format!("{kind} {entitlement}"),
        "confidence": confidence,
    })
}

fn change_of<'a>(doc: &'a Value, pid: &str) -> &'a Value {
    doc["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["proposal"] == pid)
        .unwrap_or_else(|| panic!("no change of {pid} in {doc:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_export_names_the_humans_and_flags_tampering() {
    let mut env = Env::start().await;
    let from = "2000-01-01T00:00:00Z";
    let optimizer = env.agent("access-optimizer", "alice@example.com").await;
    let svc = env
        .identity(
            "data-eng-etl",
            "service_account",
            "bob@example.com",
            &["s3:bucket-a:read", "s3:raw:read"],
        )
        .await;
    env.admin(
        "PUT",
        "/v1/resources/s3:raw",
        json!({ "classification": "confidential" }),
    )
    .await;
    env.admin(
        "PUT",
        "/v1/resources/s3:vault",
        json!({ "classification": "restricted" }),
    )
    .await;
    env.admin(
        "PUT",
        "/v1/capabilities/optimizer",
        json!({ "identity": optimizer.id, "owner": "alice@example.com", "reviewer": "rita@example.com",
                "kinds": ["grant_entitlement", "revoke_entitlement"], "max_blast_radius": 5 }),
    )
    .await;
    let alice = env.human("alice@example.com", "owner").await;
    let rita = env.human("rita@example.com", "approver").await;
    let carol = env.human("carol@example.com", "approver").await;
    let (s, b) = env
        .call(
            &alice,
            "POST",
            "/v1/capabilities/optimizer/accept",
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 200, "{b}");

    // The governed period: only AI-proposed changes, each with a named human or a
    // documented exception.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let governed_from = now_rfc3339();
    // Tier 1: applied at once under the tier policy and alice's acceptance.
    let p1 = env
        .proposed(
            &optimizer,
            proposal_body("revoke_entitlement", &svc, "s3:bucket-a:read", 0.95),
        )
        .await;
    assert_eq!(p1["tier"]["tier"], 1, "{p1}");
    let pid1 = p1["id"].as_str().unwrap().to_owned();
    // Tier 2: applied, then overridden by the reviewer.
    let p2 = env
        .proposed(
            &optimizer,
            proposal_body("revoke_entitlement", &svc, "s3:raw:read", 0.95),
        )
        .await;
    assert_eq!(p2["tier"]["tier"], 2, "{p2}");
    let pid2 = p2["id"].as_str().unwrap().to_owned();
    let (s, b) = env
        .call(
            &rita,
            "POST",
            &format!("/v1/proposals/{pid2}/override"),
            Some(json!({ "justification": "raw is still read by the backfill" })),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    // Tier 3: approved by carol with a justification and a ticket.
    let p3 = env
        .proposed(
            &optimizer,
            proposal_body("grant_entitlement", &svc, "s3:vault:read", 0.9),
        )
        .await;
    assert_eq!(p3["tier"]["tier"], 3, "{p3}");
    let pid3 = p3["id"].as_str().unwrap().to_owned();
    let (s, b) = env
        .call(
            &carol,
            "POST",
            &format!("/v1/proposals/{pid3}/approve"),
            Some(json!({ "justification": JUSTIFICATION, "ticket": "CHG-4242" })),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    for _ in 0..100 {
        if env.proposal(&pid1).await["state"] == "executed"
            && env.proposal(&pid3).await["state"] == "executed"
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let governed_to = now_rfc3339();
    tokio::time::sleep(Duration::from_millis(20)).await;
    // A direct change by the bootstrap admin token (names no person).
    env.admin("POST", &format!("/v1/identities/{svc}/suspend"), json!({}))
        .await;

    // The governed period alone: every change has a named human or a documented
    // exception, everything verifies, so the export succeeds.
    let clean = tempfile::tempdir().unwrap();
    let (code, doc, _) = env.export_period(&governed_from, &governed_to, clean.path(), &[]);
    assert_eq!(code, Some(0), "{doc}");
    assert!(!doc["changes"].as_array().unwrap().is_empty(), "{doc}");
    for c in doc["changes"].as_array().unwrap() {
        assert_eq!(c["verification"], "verified", "{c}");
    }
    // The AI decision audit: the capability's three proposals, their tiers and outcomes.
    let ai = doc["ai_decisions"].as_array().unwrap();
    assert_eq!(ai.len(), 1, "{ai:?}");
    assert_eq!(ai[0]["capability"], "optimizer");
    assert_eq!(ai[0]["owner"], "alice@example.com");
    assert_eq!(ai[0]["proposals"], 3);
    assert_eq!(ai[0]["per_tier"], json!({ "1": 1, "2": 1, "3": 1 }));
    assert_eq!(
        ai[0]["per_state"],
        json!({ "executed": 2, "overridden": 1 })
    );
    let decided: Vec<Value> = ai[0]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["decided_by"].clone())
        .collect();
    assert!(
        decided.contains(&json!(["carol@example.com"])),
        "{decided:?}"
    );
    assert!(
        decided.contains(&json!(["rita@example.com (override)"])),
        "{decided:?}"
    );

    let out = tempfile::tempdir().unwrap();
    let key = env.server.data_dir.join("keys/audit-signing-key.pub.pem");
    let key = key.to_str().unwrap().to_owned();
    let (code, doc, html) = env.export(from, out.path(), &["--public-key", &key]);
    assert_eq!(doc["summary"]["public_key_matches_pinned"], true);
    let changes = doc["changes"].as_array().unwrap();
    for c in changes {
        assert_eq!(c["verification"], "verified", "{c:#}");
    }
    let c1 = change_of(&doc, &pid1);
    assert_eq!(c1["tier"], 1);
    assert_eq!(c1["named_human"], "alice@example.com", "{c1:#}");
    assert!(c1["exception"].as_str().unwrap().contains("Tier 1"));
    let c2 = change_of(&doc, &pid2);
    assert_eq!(c2["tier"], 2);
    // The change itself stands on the tier policy and alice's acceptance, and names the
    // override; the revert names rita.
    assert_eq!(c2["named_human"], "alice@example.com", "{c2:#}");
    assert!(
        c2["exception"]
            .as_str()
            .unwrap()
            .contains("overridden by human:rita@example.com"),
        "{c2:#}"
    );
    assert!(changes
        .iter()
        .any(|c| c["proposal"] == pid2.as_str() && c["named_human"] == "rita@example.com"));
    let c3 = change_of(&doc, &pid3);
    assert_eq!(c3["approvals"][0]["by"], "carol@example.com", "{c3:#}");
    assert_eq!(c3["approvals"][0]["ticket"], "CHG-4242");
    assert_eq!(c3["named_human"], "carol@example.com");
    let direct = changes
        .iter()
        .find(|c| c["kind"] == "identity.suspended")
        .unwrap_or_else(|| panic!("no suspension in {doc:#}"));
    assert_eq!(direct["no_named_human"], true);
    assert!(direct["actor"].as_str().unwrap().starts_with("admin:"));
    assert!(html.contains("carol@example.com"));
    assert!(html.contains(JUSTIFICATION));
    assert!(html.contains("CHG-4242"));
    assert!(html.contains("CC8.1"));
    assert!(!html.contains("TAMPERED"));
    // The bootstrap admin's changes name no person: not a clean bill.
    assert_eq!(code, Some(1));
    assert!(doc["summary"]["without_named_human"].as_u64().unwrap() >= 1);
    assert_eq!(doc["summary"]["unverified"], 0);

    // Tamper with the Tier 3 change record (its stored leaf hash left as it was).
    let seq3 = c3["seq"].as_u64().unwrap();
    env.server.stop();
    {
        let mut conn = SqliteConnectOptions::new()
            .filename(env.server.data_dir.join("warrant.db"))
            .connect()
            .await
            .unwrap();
        for t in ["audit_records_no_update", "audit_records_no_delete"] {
            sqlx::query(&format!("DROP TRIGGER {t}"))
                .execute(&mut conn)
                .await
                .unwrap();
        }
        let r = sqlx::query(
            "UPDATE audit_records SET payload = replace(payload, 'CHG-4242', 'CHG-0001') WHERE seq = ?",
        )
        .bind(seq3 as i64)
        .execute(&mut conn)
        .await
        .unwrap();
        assert_eq!(r.rows_affected(), 1);
        conn.close().await.unwrap();
    }
    env.restart();
    let out2 = tempfile::tempdir().unwrap();
    let (code, doc, html) = env.export(from, out2.path(), &[]);
    assert_eq!(code, Some(1));
    let c3 = change_of(&doc, &pid3);
    assert_eq!(c3["verification"], "TAMPERED", "{c3:#}");
    assert_eq!(doc["summary"]["unverified"], 1, "{:#}", doc["summary"]);
    let alert = html.find("TAMPERED").unwrap();
    assert!(alert < html.find("<h2>Changes</h2>").unwrap());
    let csv = std::fs::read_to_string(out2.path().join("changes.csv")).unwrap();
    assert!(csv.contains("TAMPERED"));
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}
