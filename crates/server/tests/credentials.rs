//! Access tokens over real HTTP against an in-process server on SQLite: introspection
//! (RFC 7662), revocation (RFC 7009), delegation by token exchange (RFC 8693) and
//! `/v1/authorize` with a token as the principal's proof.
//!
//! Parent tokens are minted in-process with `jwt::issue` and the server's own signing key
//! (issuance itself is tested black-box with the token endpoint).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::HashMap;
use warrant_core::credentials::{Actor, KillSwitch, KillTarget};
use warrant_server::api::oauth_more::token_exchange;
use warrant_server::credentials::jwt::{self, AccessClaims};
use warrant_server::ops::Op;
use warrant_server::{AppState, Config, Server};

const ADMIN: &str = "wrt_credentials_test_token_0123456789abcdefghij";
const AUD: &str = "https://docs.example";
const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const AT: &str = "urn:ietf:params:oauth:token-type:access_token";

const SCHEMA: &str = r#"namespace App {
  entity Doc;
  action read, write, admin appliesTo { principal: [Warrant::Identity], resource: [Doc] };
}"#;

const POLICIES: &str = r#"
@id("everyone-reads")
permit(principal, action == App::Action::"read", resource);
@id("everyone-writes")
permit(principal, action == App::Action::"write", resource);
@id("scopes-for-docs")
permit(principal, action == Warrant::Action::"request_scope", resource)
when { context.audience == "https://docs.example" };
@id("workers-never-write")
forbid(principal in Warrant::Role::"worker", action == Warrant::Action::"request_scope",
       resource == Warrant::Scope::"App:write");
@id("orchestrators-delegate-to-workers")
@reason("orchestrators hand work to workers")
permit(principal in Warrant::Role::"orchestrator", action == Warrant::Action::"delegate",
       resource in Warrant::Role::"worker");
"#;

struct Env {
    state: AppState,
    url: String,
    http: reqwest::Client,
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

async fn start() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_token: Some(ADMIN.into()),
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
    let env = Env {
        state,
        url,
        http: reqwest::Client::new(),
        stop: Some(stop),
        _dir: dir,
    };
    let put = env
        .call(
            "PUT",
            "/v1/policies",
            json!({ "schema": SCHEMA, "policies": POLICIES, "comment": "credentials test" }),
        )
        .await;
    assert_eq!(put.0, StatusCode::OK, "{}", put.1);
    env
}

impl Env {
    async fn call(&self, method: &str, path: &str, body: Value) -> (StatusCode, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(ADMIN);
        if !body.is_null() {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn form(
        &self,
        path: &str,
        auth: Option<&str>,
        params: &[(&str, &str)],
    ) -> (StatusCode, Value, reqwest::header::HeaderMap) {
        let mut req = self
            .http
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(encode(params));
        if let Some(a) = auth {
            req = req.bearer_auth(a);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::Null),
            headers,
        )
    }

    async fn identity(&self, name: &str, env: &str, roles: &[&str]) -> String {
        let (status, body) = self
            .call(
                "POST",
                "/v1/identities",
                json!({ "name": name, "kind": "agent", "environment": env,
                        "owner": "alice@example.com", "roles": roles }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    fn now_s(&self) -> i64 {
        self.state.clock.now_ms() / 1000
    }

    /// Claims for `id` as registered, valid for `ttl` seconds.
    fn claims(&self, id: &str, scope: &str, ttl: i64) -> AccessClaims {
        let snap = self.state.snapshot.load();
        let i = &snap.principals.get(id).unwrap().identity;
        let now = self.now_s();
        AccessClaims {
            iss: self.state.issuer.clone(),
            sub: id.to_owned(),
            aud: AUD.into(),
            exp: now + ttl,
            iat: now - 1,
            nbf: now - 1,
            jti: format!("at_test_{}_{}", id, rand_suffix()),
            client_id: id.to_owned(),
            scope: scope.into(),
            environment: i.environment.clone(),
            owner: i.owner.clone(),
            spiffe_id: i.spiffe_id.clone(),
            act: None,
        }
    }

    fn mint(&self, claims: &AccessClaims) -> String {
        jwt::issue(&self.state.snapshot.load().signing, claims).unwrap()
    }

    async fn introspect(&self, token: &str) -> Value {
        let (status, body, headers) = self
            .form("/oauth2/introspect", Some(ADMIN), &[("token", token)])
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(headers["cache-control"], "no-store");
        body
    }

    async fn exchange(&self, params: &[(&str, &str)]) -> (StatusCode, Value) {
        let form: HashMap<String, String> = params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let res = token_exchange(&self.state, &form).await;
        let status = StatusCode::from_u16(res.status().as_u16()).unwrap();
        assert_eq!(
            res.headers()
                .get("cache-control")
                .map(|v| v.to_str().unwrap()),
            Some("no-store")
        );
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    async fn delegate(
        &self,
        parent: &str,
        to: &str,
        extra: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let mut params = vec![
            ("grant_type", EXCHANGE),
            ("subject_token", parent),
            ("subject_token_type", AT),
            ("delegate", to),
        ];
        params.extend_from_slice(extra);
        self.exchange(&params).await
    }

    async fn authorize(&self, body: Value) -> (StatusCode, Value) {
        self.call("POST", "/v1/authorize", body).await
    }

    async fn audit(&self, kind: &str) -> Vec<Value> {
        let (status, body) = self
            .call(
                "GET",
                &format!("/v1/audit?kind={kind}&limit=1000"),
                Value::Null,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["items"].as_array().unwrap().clone()
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn encode(params: &[(&str, &str)]) -> String {
    fn enc(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }
    params
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn read_req(token: &str) -> Value {
    json!({ "action": "App::Action::\"read\"", "resource": "App::Doc::\"d\"",
            "token": token, "audience": AUD })
}

// ---------------------------------------------------------------- introspection

#[tokio::test]
async fn introspection_answers_active_with_the_claims_of_a_token_in_force() {
    let env = start().await;
    let bot = env.identity("bot", "prod", &[]).await;
    let claims = env.claims(&bot, "App:read App:write", 120);
    let token = env.mint(&claims);
    let got = env.introspect(&token).await;
    assert_eq!(got["active"], true, "{got}");
    assert_eq!(got["sub"], bot);
    assert_eq!(got["client_id"], bot);
    assert_eq!(got["scope"], "App:read App:write");
    assert_eq!(got["aud"], AUD);
    assert_eq!(got["iss"], env.state.issuer);
    assert_eq!(got["exp"], claims.exp);
    assert_eq!(got["iat"], claims.iat);
    assert_eq!(got["nbf"], claims.nbf);
    assert_eq!(got["jti"], claims.jti);
    assert_eq!(got["token_type"], "Bearer");
    assert_eq!(got["environment"], "prod");
    assert_eq!(got["owner"], "alice@example.com");
    assert!(got.get("act").is_none(), "{got}");

    // The caller must hold an API token.
    let (status, _, _) = env
        .form("/oauth2/introspect", None, &[("token", &token)])
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = env
        .form(
            "/oauth2/introspect",
            Some("wrt_not_a_token"),
            &[("token", &token)],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // No token: a malformed request.
    let (status, body, _) = env.form("/oauth2/introspect", Some(ADMIN), &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_request", "{body}");
    let (status, body, _) = env
        .form(
            "/oauth2/introspect",
            Some(ADMIN),
            &[("token", "a"), ("token", "b")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

/// `{"active": false}` and nothing else.
fn assert_inactive(got: &Value) {
    assert_eq!(got, &json!({ "active": false }));
}

#[tokio::test]
async fn introspection_answers_inactive_for_tokens_not_in_force() {
    let env = start().await;
    let bot = env.identity("bot", "prod", &[]).await;
    let other = env.identity("other", "prod", &[]).await;

    // Expired.
    let mut expired = env.claims(&bot, "App:read", 100);
    expired.exp = env.now_s() - 5;
    expired.iat = expired.exp - 60;
    expired.nbf = expired.iat;
    assert_inactive(&env.introspect(&env.mint(&expired)).await);

    // Wrong signature: the payload of another token under this token's signature.
    let good = env.mint(&env.claims(&bot, "App:read", 100));
    let forged = env.mint(&env.claims(&other, "App:read App:write", 100));
    let g: Vec<&str> = good.split('.').collect();
    let f: Vec<&str> = forged.split('.').collect();
    let tampered = format!("{}.{}.{}", g[0], f[1], g[2]);
    assert_eq!(env.introspect(&good).await["active"], true);
    assert_inactive(&env.introspect(&tampered).await);
    // Another issuer, garbage.
    let mut foreign = env.claims(&bot, "App:read", 100);
    foreign.iss = "https://evil.example".into();
    assert_inactive(&env.introspect(&env.mint(&foreign)).await);
    assert_inactive(&env.introspect("not.a.jwt").await);

    // Unregistered subject.
    let mut ghost = env.claims(&bot, "App:read", 100);
    ghost.sub = "idn_ghost".into();
    assert_inactive(&env.introspect(&env.mint(&ghost)).await);

    // Suspended subject (and active again once resumed).
    let token = env.mint(&env.claims(&bot, "App:read", 100));
    let (status, body) = env
        .call(
            "POST",
            &format!("/v1/identities/{bot}/suspend"),
            json!({ "reason": "test" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_inactive(&env.introspect(&token).await);
    let (status, body) = env
        .call(
            "POST",
            &format!("/v1/identities/{bot}/resume"),
            json!({ "reason": "test" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(env.introspect(&token).await["active"], true);

    // Under a kill switch.
    let other_token = env.mint(&env.claims(&other, "App:read", 100));
    env.state
        .writer
        .mutate(Op::EngageKillSwitch {
            actor: "test".into(),
            switch: KillSwitch {
                id: "ks_test".into(),
                target: KillTarget::Identity(bot.clone()),
                engaged_ms: env.state.clock.now_ms(),
                engaged_by: "test".into(),
                reason: "incident 42".into(),
                released_ms: None,
                released_by: None,
                release_reason: None,
            },
        })
        .await
        .unwrap();
    assert_inactive(&env.introspect(&token).await);
    assert_eq!(
        env.introspect(&other_token).await["active"],
        true,
        "the switch covers one identity"
    );

    // A delegated token whose earlier actor is killed is inactive too.
    let mut delegated = env.claims(&other, "App:read", 100);
    delegated.act = Some(Actor {
        sub: bot.clone(),
        act: None,
    });
    assert_inactive(&env.introspect(&env.mint(&delegated)).await);
}

// ---------------------------------------------------------------- revocation

#[tokio::test]
async fn revoked_tokens_are_inactive_and_denied_from_the_next_request_on() {
    let env = start().await;
    let bot = env.identity("bot", "prod", &[]).await;
    let claims = env.claims(&bot, "App:read", 120);
    let token = env.mint(&claims);
    let (status, body) = env.authorize(read_req(&token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["decision"], "allow", "{body}");

    let before = env.audit("credential.revoked").await.len();
    // Revocation needs an API token.
    let (status, _, _) = env.form("/oauth2/revoke", None, &[("token", &token)]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(env.introspect(&token).await["active"], true);

    let (status, body, headers) = env
        .form("/oauth2/revoke", Some(ADMIN), &[("token", &token)])
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_inactive(&env.introspect(&token).await);
    let (status, body) = env.authorize(read_req(&token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["decision"], "deny", "{body}");
    assert!(
        body["reason"].as_str().unwrap().contains("revoked"),
        "{body}"
    );

    let records = env.audit("credential.revoked").await;
    assert_eq!(records.len(), before + 1);
    let r = records
        .iter()
        .find(|r| r["payload"]["jti"] == claims.jti)
        .unwrap();
    assert_eq!(r["subject"], format!("access-token:{}", claims.jti));
    assert_eq!(r["actor"], "admin:tok_env");
    assert!(!r.to_string().contains(&token), "never the token");
    // The decision's record names the jti, never the token.
    let decisions = env.audit("decision").await;
    let d = decisions.last().unwrap();
    assert_eq!(d["payload"]["token_jti"], claims.jti, "{d}");
    assert!(!d.to_string().contains(&token));

    // Again, and garbage: 200 without a record (RFC 7009 §2.2).
    for t in [token.as_str(), "garbage", "a.b.c"] {
        let (status, body, _) = env
            .form("/oauth2/revoke", Some(ADMIN), &[("token", t)])
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let mut expired = env.claims(&bot, "App:read", 100);
    expired.exp = env.now_s() - 5;
    expired.iat = expired.exp - 60;
    expired.nbf = expired.iat;
    let (status, _, _) = env
        .form(
            "/oauth2/revoke",
            Some(ADMIN),
            &[("token", &env.mint(&expired))],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(env.audit("credential.revoked").await.len(), before + 1);
    // Another token of the same identity is unaffected.
    let fresh = env.mint(&env.claims(&bot, "App:read", 120));
    assert_eq!(env.introspect(&fresh).await["active"], true);
}

// ---------------------------------------------------------------- delegation

struct Cast {
    orch: String,
    worker: String,
    worker2: String,
    stranger: String,
    staging_worker: String,
}

async fn cast(env: &Env) -> Cast {
    Cast {
        orch: env.identity("orch", "prod", &["orchestrator"]).await,
        worker: env.identity("worker", "prod", &["worker"]).await,
        worker2: env.identity("worker2", "prod", &["worker"]).await,
        stranger: env.identity("stranger", "prod", &["reader"]).await,
        staging_worker: env.identity("stg-worker", "staging", &["worker"]).await,
    }
}

#[tokio::test]
async fn delegation_narrows_the_scope_and_extends_the_act_chain() {
    let env = start().await;
    let c = cast(&env).await;
    let parent_claims = env.claims(&c.orch, "App:read App:write App:admin", 3000);
    let parent = env.mint(&parent_claims);
    let before = env.audit("credential.issued").await.len();

    let (status, body) = env
        .delegate(&parent, &c.worker, &[("scope", "App:read")])
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["issued_token_type"], AT);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "App:read");
    let expires_in = body["expires_in"].as_i64().unwrap();
    assert!(
        (295..=300).contains(&expires_in),
        "the default lifetime when the parent lives longer: {expires_in}"
    );
    let token = body["access_token"].as_str().unwrap();
    let issued = jwt::verify(
        &env.state.snapshot.load().signing,
        token,
        env.state.clock.now_ms(),
        &env.state.issuer,
        Some(AUD),
    )
    .unwrap();
    assert_eq!(issued.sub, c.worker);
    assert_eq!(issued.client_id, c.orch);
    assert_eq!(issued.scope, "App:read");
    assert_eq!(issued.environment, "prod");
    assert_eq!(
        issued.act,
        Some(Actor {
            sub: c.orch.clone(),
            act: None
        })
    );
    let seen = env.introspect(token).await;
    assert_eq!(seen["active"], true);
    assert_eq!(seen["act"], json!({ "sub": c.orch }));
    assert_eq!(seen["sub"], c.worker);

    // The delegate uses it: within its scope allowed, outside denied.
    let (_, d) = env.authorize(read_req(token)).await;
    assert_eq!(d["decision"], "allow", "{d}");
    let mut write = read_req(token);
    write["action"] = json!("App::Action::\"write\"");
    let (_, d) = env.authorize(write).await;
    assert_eq!(d["decision"], "deny", "{d}");

    // Recorded with the parent's jti and the chain, never a token.
    let records = env.audit("credential.issued").await;
    assert_eq!(records.len(), before + 1);
    let r = records.last().unwrap();
    assert_eq!(r["payload"]["parent_jti"], parent_claims.jti, "{r}");
    assert_eq!(r["payload"]["jti"], issued.jti);
    assert_eq!(r["payload"]["act"], json!({ "sub": c.orch }));
    assert!(!r.to_string().contains(token) && !r.to_string().contains(&parent));

    // A second hop (the worker's token delegated on) chains the actors, most recent first;
    // the workers-to-workers hop needs a policy, so the delegation is refused without one.
    let (status, body) = env.delegate(token, &c.worker2, &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_grant", "{body}");

    // The delegate named by its SPIFFE ID.
    let spiffe = env
        .state
        .snapshot
        .load()
        .principals
        .get(&c.worker2)
        .unwrap()
        .identity
        .spiffe_id
        .clone();
    let (status, body) = env
        .delegate(&parent, &spiffe, &[("scope", "App:read App:admin")])
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], "App:admin App:read");
}

#[tokio::test]
async fn delegation_never_widens_and_needs_policies() {
    let env = start().await;
    let c = cast(&env).await;
    let parent_claims = env.claims(&c.orch, "App:read App:write", 3000);
    let parent = env.mint(&parent_claims);
    let refused_before = env.audit("credential.refused").await.len();

    // Widening beyond the parent.
    let (status, body) = env
        .delegate(&parent, &c.worker, &[("scope", "App:read App:admin")])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_scope", "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("App:admin"),
        "{body}"
    );
    // A scope the delegate may not hold (forbidden by `request_scope`).
    let (status, body) = env
        .delegate(&parent, &c.worker, &[("scope", "App:read App:write")])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_scope", "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("App:write"),
        "{body}"
    );
    // No policy permits delegating to a non-worker.
    let (status, body) = env
        .delegate(&parent, &c.stranger, &[("scope", "App:read")])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_grant", "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("no permit policy matched"),
        "{body}"
    );
    // Nor from a worker (the reverse direction).
    let worker_token = env.mint(&env.claims(&c.worker, "App:read", 3000));
    let (status, body) = env
        .delegate(&worker_token, &c.worker2, &[("scope", "App:read")])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_grant", "{body}");
    // Unknown delegate.
    let (status, body) = env.delegate(&parent, "idn_nobody", &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_grant", "{body}");

    // Every refusal is recorded, never with a token.
    let refused = env.audit("credential.refused").await;
    assert_eq!(refused.len(), refused_before + 5, "{refused:?}");
    assert!(refused.iter().all(|r| !r.to_string().contains(&parent)));
    assert_eq!(
        refused.last().unwrap()["payload"]["parent_jti"],
        parent_claims.jti
    );

    // A subject token that does not verify, or is revoked: invalid_grant.
    let (status, body) = env.delegate("garbage", &c.worker, &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant", "{body}");
    let (status, _, _) = env
        .form("/oauth2/revoke", Some(ADMIN), &[("token", &parent)])
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = env
        .delegate(&parent, &c.worker, &[("scope", "App:read")])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant", "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("revoked"),
        "{body}"
    );
    // Malformed requests.
    let (status, body) = env
        .exchange(&[
            ("grant_type", EXCHANGE),
            ("subject_token", "x"),
            ("delegate", "y"),
        ])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_request", "{body}");
    let fresh = env.mint(&env.claims(&c.orch, "App:read", 3000));
    let (status, body) = env
        .exchange(&[
            ("grant_type", EXCHANGE),
            ("subject_token", &fresh),
            ("subject_token_type", AT),
        ])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_request", "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("delegate"),
        "{body}"
    );
}

#[tokio::test]
async fn delegation_stays_in_one_environment() {
    let env = start().await;
    let c = cast(&env).await;
    let parent = env.mint(&env.claims(&c.orch, "App:read", 3000));
    let (status, body) = env
        .delegate(&parent, &c.staging_worker, &[("scope", "App:read")])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_grant", "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("environment"),
        "{body}"
    );
    // The same delegation inside prod is fine (the refusal was the environment).
    let (status, body) = env
        .delegate(&parent, &c.worker, &[("scope", "App:read")])
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn delegation_depth_is_bounded() {
    let env = start().await;
    let c = cast(&env).await;
    let a1 = env.identity("actor-1", "prod", &[]).await;
    let a2 = env.identity("actor-2", "prod", &[]).await;
    let a3 = env.identity("actor-3", "prod", &[]).await;
    assert_eq!(env.state.max_delegation_depth, 3);
    let chain = |subs: &[&String]| {
        subs.iter().rev().fold(None, |act, s| {
            Some(Actor {
                sub: (*s).clone(),
                act: act.map(Box::new),
            })
        })
    };
    // The parent carries a chain of 2: the new token's chain is 3, the most allowed.
    let mut two = env.claims(&c.orch, "App:read", 3000);
    two.act = chain(&[&a1, &a2]);
    let (status, body) = env.delegate(&env.mint(&two), &c.worker, &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let issued = env.introspect(body["access_token"].as_str().unwrap()).await;
    assert_eq!(
        issued["act"],
        json!({ "sub": c.orch, "act": { "sub": a1, "act": { "sub": a2 } } })
    );
    // A chain of 3 would become 4.
    let mut three = env.claims(&c.orch, "App:read", 3000);
    three.act = chain(&[&a1, &a2, &a3]);
    let (status, body) = env.delegate(&env.mint(&three), &c.worker, &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_grant", "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("at most 3"),
        "{body}"
    );
}

#[tokio::test]
async fn delegated_tokens_never_outlive_their_parent() {
    let env = start().await;
    let c = cast(&env).await;
    let parent_claims = env.claims(&c.orch, "App:read", 40);
    let (status, body) = env
        .delegate(&env.mint(&parent_claims), &c.worker, &[])
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["expires_in"].as_i64().unwrap() <= 40, "{body}");
    let seen = env.introspect(body["access_token"].as_str().unwrap()).await;
    assert_eq!(seen["exp"], parent_claims.exp, "{seen}");
    // The default lifetime (300 s) would have been longer.
    assert!(parent_claims.exp < env.now_s() + 300);
}

// ---------------------------------------------------------------- /v1/authorize with a token

#[tokio::test]
async fn authorize_with_a_token_allows_within_its_scope_only() {
    let env = start().await;
    let bot = env.identity("bot", "prod", &[]).await;
    let token = env.mint(&env.claims(&bot, "App:read", 120));
    let (status, d) = env.authorize(read_req(&token)).await;
    assert_eq!(status, StatusCode::OK, "{d}");
    assert_eq!(d["decision"], "allow", "{d}");
    assert_eq!(d["principal"]["id"], bot);
    // Named explicitly (by id or SPIFFE ID), the principal must be the token's subject.
    let spiffe = d["principal"]["spiffe_id"].as_str().unwrap().to_owned();
    for p in [bot.as_str(), spiffe.as_str()] {
        let mut req = read_req(&token);
        req["principal"] = json!(p);
        let (status, d) = env.authorize(req).await;
        assert_eq!(status, StatusCode::OK, "{d}");
        assert_eq!(d["decision"], "allow", "{d}");
    }
    // Outside the token's scope: denied, though a policy permits writes.
    let mut write = read_req(&token);
    write["action"] = json!("App::Action::\"write\"");
    let (status, d) = env.authorize(write.clone()).await;
    assert_eq!(status, StatusCode::OK, "{d}");
    assert_eq!(d["decision"], "deny", "{d}");
    assert!(d["reason"].as_str().unwrap().contains("App:write"), "{d}");
    write.as_object_mut().unwrap().remove("token");
    write.as_object_mut().unwrap().remove("audience");
    write["principal"] = json!(bot);
    let (_, d) = env.authorize(write).await;
    assert_eq!(
        d["decision"], "allow",
        "without a token, the policies decide: {d}"
    );

    // Expired, for another audience, not verifying: denied with the reason.
    let mut old = env.claims(&bot, "App:read", 100);
    old.exp = env.now_s() - 5;
    old.iat = old.exp - 60;
    old.nbf = old.iat;
    let (status, d) = env.authorize(read_req(&env.mint(&old))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(d["decision"], "deny", "{d}");
    assert!(d["reason"].as_str().unwrap().contains("expired"), "{d}");
    let mut other_aud = read_req(&token);
    other_aud["audience"] = json!("https://other.example");
    let (_, d) = env.authorize(other_aud).await;
    assert_eq!(d["decision"], "deny", "{d}");
    assert!(d["reason"].as_str().unwrap().contains("audience"), "{d}");
    let (status, d) = env.authorize(read_req("garbage")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(d["decision"], "deny", "{d}");
}

#[tokio::test]
async fn authorize_refuses_a_token_of_another_environment() {
    let env = start().await;
    let prod = env.identity("prod-bot", "production", &[]).await;
    let staging = env.identity("staging-bot", "staging", &[]).await;
    // A token claiming staging for the production identity.
    let mut claims = env.claims(&prod, "App:read", 120);
    claims.environment = "staging".into();
    let (status, d) = env.authorize(read_req(&env.mint(&claims))).await;
    assert_eq!(status, StatusCode::OK, "{d}");
    assert_eq!(d["decision"], "deny", "{d}");
    assert!(d["reason"].as_str().unwrap().contains("environment"), "{d}");
    // A staging token for a staging audience is not accepted for the production one.
    let mut st = env.claims(&staging, "App:read", 120);
    st.aud = "https://docs.staging.example".into();
    let st_token = env.mint(&st);
    let (_, d) = env.authorize(read_req(&st_token)).await;
    assert_eq!(d["decision"], "deny", "{d}");
    let mut ok = read_req(&st_token);
    ok["audience"] = json!("https://docs.staging.example");
    let (_, d) = env.authorize(ok).await;
    assert_eq!(d["decision"], "allow", "its own audience: {d}");
    // Nor is it a proof for the production principal.
    let mut req = read_req(&st_token);
    req["audience"] = json!("https://docs.staging.example");
    req["principal"] = json!(prod);
    let (status, body) = env.authorize(req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn authorize_with_a_token_rejects_a_mismatched_principal_and_bad_requests() {
    let env = start().await;
    let bot = env.identity("bot", "prod", &[]).await;
    let other = env.identity("other", "prod", &[]).await;
    let token = env.mint(&env.claims(&bot, "App:read", 120));
    let mut req = read_req(&token);
    req["principal"] = json!(other);
    let (status, body) = env.authorize(req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_request");
    assert!(
        body["message"].as_str().unwrap().contains("principal"),
        "{body}"
    );
    // `audience` is required with a token.
    let mut req = read_req(&token);
    req.as_object_mut().unwrap().remove("audience");
    let (status, body) = env.authorize(req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("audience"),
        "{body}"
    );
    // Without a token, `principal` stays required.
    let (status, body) = env
        .authorize(json!({ "action": "App::Action::\"read\"", "resource": "App::Doc::\"d\"" }))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("principal"),
        "{body}"
    );
    // Batch requests accept tokens too.
    let (status, body) = env
        .call(
            "POST",
            "/v1/authorize/batch",
            json!({ "requests": [read_req(&token), read_req("garbage")] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["results"][0]["result"]["decision"], "allow", "{body}");
    assert_eq!(body["results"][1]["result"]["decision"], "deny", "{body}");
    // A suspended subject's token is denied with the reason.
    let (status, _) = env
        .call(
            "POST",
            &format!("/v1/identities/{bot}/suspend"),
            json!({ "reason": "test" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, d) = env.authorize(read_req(&token)).await;
    assert_eq!(d["decision"], "deny", "{d}");
    assert!(d["reason"].as_str().unwrap().contains("suspended"), "{d}");
}
