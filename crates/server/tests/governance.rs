//! Tiered change governance over real HTTP against an in-process server on SQLite:
//! capabilities, proposals through the four tiers, approvals, overrides, timers and
//! webhook deliveries (to a real local HTTP receiver).
//!
//! Access tokens of AI identities are minted in-process with `jwt::issue` and the
//! server's signing key (issuance itself is tested black-box with the token endpoint).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use reqwest::StatusCode;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use warrant_server::credentials::jwt::{self, AccessClaims};
use warrant_server::governance::GovConfig;
use warrant_server::{AppState, Config, Server};

const ADMIN: &str = "wrt_governance_test_token_0123456789abcdefghij";
/// The named human approving the role grants of the tests (the first admin).
const ROOT_ADMIN: &str = "root-admin@warrant.test";
const GRANT_WHY: &str = "integration test: the scenario needs this role";

fn password_of(human: &str) -> String {
    format!("integration-test password of {human}")
}

pub struct Env {
    pub state: AppState,
    pub url: String,
    pub http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

pub async fn start(gov: GovConfig) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_token: Some(ADMIN.into()),
        governance: gov,
        governance_tick: Duration::from_millis(100),
        ..Config::default()
    };
    let server = Server::start(config).await.unwrap();
    let state = server.state.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.serve(listener, async {
        let _ = stopped.await;
    }));
    Env {
        state,
        url,
        http: reqwest::Client::new(),
        stop: Some(stop),
        _dir: dir,
    }
}

impl Env {
    pub async fn call_as(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(token);
        if !body.is_null() {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn admin(&self, method: &str, path: &str, body: Value) -> Value {
        let (s, b) = self.call_as(ADMIN, method, path, body).await;
        assert!(s.is_success(), "{method} {path}: {s} {b}");
        b
    }

    pub async fn identity(
        &self,
        name: &str,
        kind: &str,
        owner: &str,
        entitlements: &[&str],
    ) -> String {
        let b = self
            .admin(
                "POST",
                "/v1/identities",
                json!({ "name": name, "kind": kind, "environment": "prod",
                        "owner": owner, "entitlements": entitlements }),
            )
            .await;
        b["id"].as_str().unwrap().to_owned()
    }

    /// Creates the account of `human` unless it exists: a one-time password, which the
    /// human replaces with [`password_of`].
    async fn account(&self, human: &str) {
        let one_time = format!("one-time password of {human}");
        let (s, b) = self
            .call_as(
                ADMIN,
                "POST",
                "/v1/humans",
                json!({ "name": human, "password": one_time }),
            )
            .await;
        assert!(
            s == StatusCode::CREATED || s == StatusCode::CONFLICT,
            "{human}: {s} {b}"
        );
        if s == StatusCode::CREATED {
            let (s, b) = self
                .anonymous(
                    "/v1/auth/password",
                    json!({ "username": human, "current_password": one_time,
                            "new_password": password_of(human) }),
                )
                .await;
            assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
        }
    }

    async fn anonymous(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let res = self
            .http
            .post(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn holds(&self, human: &str, role: &str) -> bool {
        let b = self
            .admin("GET", &format!("/v1/humans/{human}"), Value::Null)
            .await;
        b["roles"].as_array().unwrap().contains(&json!(role))
    }

    /// A token `human` gets for themselves with their password.
    async fn token(&self, human: &str, role: &str) -> String {
        let (s, b) = self
            .anonymous(
                "/v1/auth/token",
                json!({ "username": human, "password": password_of(human), "role": role,
                        "name": format!("{human} cli") }),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        b["token"].as_str().unwrap().to_owned()
    }

    /// An API token of the named `human` holding `role`, granted the real way first: the
    /// account, a grant asked for with the bootstrap token and approved by a second named
    /// admin ([`ROOT_ADMIN`], itself the first admin, granted with the bootstrap token);
    /// the human gets the token for themselves with their password.
    pub async fn human(&self, human: &str, role: &str) -> String {
        self.account(ROOT_ADMIN).await;
        if !self.holds(ROOT_ADMIN, "admin").await {
            let g = self
                .admin(
                    "POST",
                    "/v1/role-grants",
                    json!({ "human": ROOT_ADMIN, "role": "admin", "justification": GRANT_WHY }),
                )
                .await;
            assert_eq!(g["state"], "approved", "{g}");
        }
        self.account(human).await;
        if !self.holds(human, role).await {
            let g = self
                .admin(
                    "POST",
                    "/v1/role-grants",
                    json!({ "human": human, "role": role, "justification": GRANT_WHY }),
                )
                .await;
            let root = self.token(ROOT_ADMIN, "admin").await;
            let path = format!("/v1/role-grants/{}/approve", g["id"].as_str().unwrap());
            let (s, b) = self.call_as(&root, "POST", &path, json!({})).await;
            assert_eq!(s, StatusCode::OK, "{b}");
        }
        self.token(human, role).await
    }

    /// An access token for `id` on warrant's own API.
    pub fn agent_token(&self, id: &str, scope: &str) -> String {
        let snap = self.state.snapshot.load();
        let i = &snap.principals.get(id).unwrap().identity;
        let now = self.state.clock.now_ms() / 1000;
        let claims = AccessClaims {
            iss: self.state.issuer.clone(),
            sub: id.to_owned(),
            aud: self.state.issuer.clone(),
            exp: now + 300,
            iat: now - 1,
            nbf: now - 1,
            jti: format!("at_gov_{}", uuid::Uuid::new_v4().simple()),
            client_id: id.to_owned(),
            scope: scope.into(),
            environment: i.environment.clone(),
            owner: i.owner.clone(),
            spiffe_id: i.spiffe_id.clone(),
            act: None,
        };
        jwt::issue(&snap.signing, &claims).unwrap()
    }

    pub async fn entitlements(&self, id: &str) -> Vec<String> {
        let b = self
            .admin("GET", &format!("/v1/identities/{id}"), Value::Null)
            .await;
        serde_json::from_value(b["entitlements"].clone()).unwrap()
    }

    pub async fn audit_kinds(&self, subject: &str) -> Vec<String> {
        let b = self
            .admin(
                "GET",
                &format!("/v1/audit?subject={subject}&limit=1000"),
                Value::Null,
            )
            .await;
        b["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["kind"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// A webhook receiver on loopback that records what it got and answers `status`.
pub struct Receiver {
    pub url: String,
    pub got: Arc<Mutex<Vec<(axum::http::HeaderMap, Value)>>>,
}

pub async fn receiver(status: u16) -> Receiver {
    let got: Arc<Mutex<Vec<(axum::http::HeaderMap, Value)>>> = Arc::default();
    let g = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let g = g.clone();
                async move {
                    g.lock().unwrap().push((
                        headers,
                        serde_json::from_slice(&body).unwrap_or(Value::Null),
                    ));
                    axum::http::StatusCode::from_u16(status).unwrap()
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver { url, got }
}

async fn wait_for<F: Fn(&Value) -> bool>(env: &Env, path: &str, what: &str, f: F) -> Value {
    for _ in 0..100 {
        let b = env.admin("GET", path, Value::Null).await;
        if f(&b) {
            return b;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what} at {path}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_is_tiered_notified_ratified_and_traced() {
    let hook = receiver(200).await;
    let env = start(GovConfig {
        override_window_ms: 1_500,
        ..GovConfig::default()
    })
    .await;
    let optimizer = env
        .identity("access-optimizer", "ai_tool", "alice@example.com", &[])
        .await;
    let svc = env
        .identity(
            "data-eng-etl",
            "service_account",
            "bob@example.com",
            &["s3:logs:read", "s3:raw:read"],
        )
        .await;
    let alice = env.human("alice@example.com", "owner").await;
    env.admin(
        "PUT",
        "/v1/resources/s3:raw",
        json!({ "classification": "confidential" }),
    )
    .await;
    env.admin(
        "PUT",
        "/v1/capabilities/right-sizing",
        json!({ "identity": optimizer, "kinds": ["revoke_entitlement"], "max_blast_radius": 5,
                "owner": "alice@example.com", "notify": hook.url, "review_every_days": 90 }),
    )
    .await;
    let agent = env.agent_token(&optimizer, "warrant:propose");
    let proposal = |ent: &str| {
        json!({ "capability": "right-sizing",
                "change": { "kind": "revoke_entitlement", "identity": svc, "entitlement": ent },
                "evidence": { "unused_days": 60 }, "rationale": "not used in 60 days", "confidence": 0.95 })
    };

    // Not accepted yet: refused, and the refusal is audited.
    let (s, b) = env
        .call_as(&agent, "POST", "/v1/proposals", proposal("s3:logs:read"))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert!(
        b["message"].as_str().unwrap().contains("has not accepted"),
        "{b}"
    );

    let (s, b) = env
        .call_as(
            &alice,
            "POST",
            "/v1/capabilities/right-sizing/accept",
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["autonomy"], "tiered");

    // Tier 1: unclassified, one identity, high confidence → applied at once.
    let (s, b) = env
        .call_as(&agent, "POST", "/v1/proposals", proposal("s3:logs:read"))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["proposal"]["tier"]["tier"], 1, "{b}");
    assert_eq!(b["proposal"]["state"], "executed");
    assert_eq!(env.entitlements(&svc).await, ["s3:raw:read"]);

    // Tier 2: confidential data → applied, reviewer notified, ratified when the window ends.
    let (s, b) = env
        .call_as(&agent, "POST", "/v1/proposals", proposal("s3:raw:read"))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["proposal"]["tier"]["tier"], 2, "{b}");
    assert_eq!(b["proposal"]["state"], "in_review");
    assert!(env.entitlements(&svc).await.is_empty());
    let id = b["proposal"]["id"].as_str().unwrap().to_owned();
    let done = wait_for(&env, &format!("/v1/proposals/{id}"), "ratification", |b| {
        b["proposal"]["state"] == "ratified"
    })
    .await;
    assert_eq!(done["proposal"]["state"], "ratified");
    let kinds = env.audit_kinds(&format!("proposal:{id}")).await;
    for k in [
        "ai.recommendation",
        "execution",
        "proposal.ratified",
        "notification.delivery",
    ] {
        assert!(kinds.iter().any(|x| x == k), "{k} missing from {kinds:?}");
    }
    let got = hook.got.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].1["text"].as_str().unwrap().contains("Tier 2"));
    assert!(got[0].0.contains_key("warrant-signature"));
    assert!(got[0].0.contains_key("idempotency-key"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reviewer_can_ratify_a_tier_2_change_before_its_window_ends() {
    let hook = receiver(200).await;
    let env = start(GovConfig::default()).await;
    let optimizer = env
        .identity("access-optimizer", "ai_tool", "alice@example.com", &[])
        .await;
    let svc = env
        .identity(
            "etl",
            "service_account",
            "bob@example.com",
            &["s3:logs:read"],
        )
        .await;
    let alice = env.human("alice@example.com", "owner").await;
    let carol = env.human("carol@example.com", "approver").await;
    env.admin(
        "PUT",
        "/v1/capabilities/right-sizing",
        json!({ "identity": optimizer, "kinds": ["revoke_entitlement"], "max_blast_radius": 5,
                "owner": "alice@example.com", "notify": hook.url }),
    )
    .await;
    let (s, _) = env
        .call_as(
            &alice,
            "POST",
            "/v1/capabilities/right-sizing/accept",
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let agent = env.agent_token(&optimizer, "warrant:propose");
    let (s, b) = env
        .call_as(
            &agent,
            "POST",
            "/v1/proposals",
            json!({ "capability": "right-sizing",
                    "change": { "kind": "revoke_entitlement", "identity": svc, "entitlement": "s3:logs:read" },
                    "rationale": "unused", "confidence": 0.8 }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["proposal"]["state"], "in_review", "{b}");
    let id = b["proposal"]["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/proposals/{id}/ratify");
    let why = json!({ "justification": "checked: the job that used it was decommissioned" });
    // Neither the AI nor another human may ratify.
    let (s, _) = env.call_as(&agent, "POST", &path, why.clone()).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, b) = env.call_as(&carol, "POST", &path, why.clone()).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    // The owner (the reviewer by default) does: it stands, and the record says so.
    let (s, b) = env.call_as(&alice, "POST", &path, why.clone()).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["proposal"]["state"], "ratified");
    assert_eq!(b["proposal"]["decision"]["by"], "alice@example.com");
    let records = env
        .admin(
            "GET",
            &format!("/v1/audit?subject=proposal:{id}&kind=proposal.ratified"),
            Value::Null,
        )
        .await;
    let r = &records["items"][0];
    assert_eq!(r["actor"], "human:alice@example.com", "{records}");
    assert_eq!(r["payload"]["reviewer_acted"], true);
    // Once ratified it can no longer be overridden, and the timer leaves it alone.
    let (s, _) = env
        .call_as(&alice, "POST", &format!("/v1/proposals/{id}/override"), why)
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(env.entitlements(&svc).await.is_empty());
}
