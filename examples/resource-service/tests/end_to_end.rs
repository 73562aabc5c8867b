//! End to end against the real `warrant` binary: an agent registers its key, gets a token
//! from `/oauth2/token` and calls the example service, which checks the token offline and
//! asks warrant online.
//!
//! The binary is `target/debug/warrant` of this workspace (`cargo build --workspace`
//! builds it); `WARRANT_BIN` overrides the path.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use base64::Engine as _;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::RngCore;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use warrant_example_resource_service::{router, AppState, Config};

const ADMIN: &str = "wrt_example_resource_service_test_0123456789abcdef";
const AUDIENCE: &str = "https://docs.example";
const OTHER_AUDIENCE: &str = "https://billing.example";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

const SCHEMA: &str = r#"namespace App {
  entity Document;
  action read, list appliesTo { principal: [Warrant::Identity], resource: [Document] };
}"#;

const POLICIES: &str = r#"
@id("agents-hold-read")
@reason("agents may hold App:read in their own environment")
permit (principal, action == Warrant::Action::"request_scope", resource == Warrant::Scope::"App:read")
when { context.environment == principal.environment };

@id("agents-hold-list")
@reason("agents may hold App:list")
permit (principal, action == Warrant::Action::"request_scope", resource == Warrant::Scope::"App:list");

@id("agents-read-documents")
@reason("agents may read documents")
permit (principal, action == App::Action::"read", resource);
"#;

fn warrant_bin() -> PathBuf {
    let bin = match std::env::var_os("WARRANT_BIN") {
        Some(p) => PathBuf::from(p),
        None => std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"))
            .join("debug/warrant"),
    };
    assert!(
        bin.is_file(),
        "the warrant binary is missing at {}: build it first (`cargo build --workspace` or \
         `cargo build -p warrant`), or point WARRANT_BIN at it",
        bin.display()
    );
    bin
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `warrant serve` process; killed on drop.
struct Warrant {
    child: Option<Child>,
    url: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Warrant {
    async fn start(http: &reqwest::Client) -> Warrant {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = dir.path().join("warrant.log");
        let child = Command::new(warrant_bin())
            .arg("serve")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .env_remove("WARRANT_DATABASE")
            .env_remove("WARRANT_ISSUER")
            .env("WARRANT_ADMIN_TOKEN", ADMIN)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let w = Warrant {
            child: Some(child),
            url: format!("http://127.0.0.1:{port}"),
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = http.get(format!("{}/readyz", w.url)).send().await;
            if matches!(&ready, Ok(r) if r.status().is_success()) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "warrant did not become ready:\n{}",
                std::fs::read_to_string(&w.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        w
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Warrant {
    fn drop(&mut self) {
        self.stop();
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The agent: its identity id and the private half of its registered key.
struct Agent {
    id: String,
    kid: String,
    key: EncodingKey,
}

struct Env {
    http: reqwest::Client,
    warrant: Warrant,
    issuer: String,
    agent: Agent,
    service: String,
}

impl Env {
    async fn admin(&self, method: reqwest::Method, path: &str, body: Value) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.warrant.url))
            .bearer_auth(ADMIN);
        if !body.is_null() {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// A token from `/oauth2/token` for `scope` and `audience` (RFC 7523 client assertion).
    async fn token(&self, scope: &str, audience: &str) -> String {
        let now = now_s();
        let mut jti = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut jti);
        let claims = json!({
            "iss": self.agent.id, "sub": self.agent.id,
            "aud": format!("{}/oauth2/token", self.issuer),
            "iat": now, "exp": now + 60, "jti": b64(&jti),
        });
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.agent.kid.clone());
        let assertion = jsonwebtoken::encode(&header, &claims, &self.agent.key).unwrap();
        let res = self
            .http
            .post(format!("{}/oauth2/token", self.warrant.url))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", assertion.as_str()),
                ("scope", scope),
                ("audience", audience),
            ])
            .send()
            .await
            .unwrap();
        let status = res.status();
        let body: Value = res.json().await.unwrap();
        assert_eq!(status, StatusCode::OK, "token request refused: {body}");
        assert_eq!(body["token_type"], "Bearer");
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// `GET /documents/{id}` at the example service: status, `WWW-Authenticate`, body.
    async fn read(&self, id: &str, token: Option<&str>) -> (StatusCode, String, Value) {
        let mut req = self.http.get(format!("{}/documents/{id}", self.service));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let challenge = res
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, challenge, res.json().await.unwrap_or(Value::Null))
    }
}

/// warrant with the policies and one agent holding a registered Ed25519 key, and the
/// example service in-process (`jwks_min_refetch` short, so a rotation is seen quickly).
async fn setup() -> Env {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let warrant = Warrant::start(&http).await;
    let meta: Value = http
        .get(format!(
            "{}/.well-known/oauth-authorization-server",
            warrant.url
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let issuer = meta["issuer"].as_str().unwrap().to_owned();

    let mut config = Config::new(&warrant.url, AUDIENCE, ADMIN);
    config.jwks_min_refetch = Duration::from_millis(500);
    config.http_timeout = Duration::from_secs(3);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let service = format!("http://{}", listener.local_addr().unwrap());
    let app = router(AppState::new(config).unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut env = Env {
        http,
        warrant,
        issuer,
        agent: Agent {
            id: String::new(),
            kid: String::new(),
            key: EncodingKey::from_secret(b"placeholder"),
        },
        service,
    };
    let (s, b) = env
        .admin(
            reqwest::Method::PUT,
            "/v1/policies",
            json!({ "schema": SCHEMA, "policies": POLICIES, "comment": "example service" }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = env
        .admin(
            reqwest::Method::POST,
            "/v1/identities",
            json!({ "name": "report-bot", "kind": "agent", "environment": "prod",
                    "owner": "alice@example.com" }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let id = b["id"].as_str().unwrap().to_owned();

    // The agent's key pair: only the public JWK goes to warrant.
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    let sk = ed25519_dalek::SigningKey::from_bytes(&seed);
    let jwk = json!({ "kty": "OKP", "crv": "Ed25519", "x": b64(sk.verifying_key().as_bytes()) });
    let (s, b) = env
        .admin(
            reqwest::Method::POST,
            &format!("/v1/identities/{id}/keys"),
            json!({ "jwk": jwk }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    env.agent = Agent {
        id,
        kid: b["kid"].as_str().unwrap().to_owned(),
        key: EncodingKey::from_ed_der(sk.to_pkcs8_der().unwrap().as_bytes()),
    };
    env
}

#[tokio::test]
async fn an_agent_reads_through_the_example_service_until_warrant_says_no() {
    let mut env = setup().await;
    let token = env.token("App:read", AUDIENCE).await;

    // Allowed: offline checks pass, warrant allows the transaction.
    let (s, _, body) = env.read("q3", Some(&token)).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["id"], "q3");
    assert_eq!(body["served_to"]["sub"], env.agent.id.as_str());
    assert_eq!(body["served_to"]["owner"], "alice@example.com");
    assert_eq!(
        body["authorization"]["determining_policies"],
        json!(["agents-read-documents"])
    );
    assert!(
        body["authorization"]["audit_seq"].as_u64().is_some(),
        "{body}"
    );

    // No token: 401 with a bare challenge (RFC 6750 §3.1).
    let (s, challenge, _) = env.read("q3", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(challenge.starts_with("Bearer realm="), "{challenge}");
    assert!(!challenge.contains("error="), "{challenge}");

    // Tampered: the payload says more than was signed.
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1])
            .unwrap(),
    )
    .unwrap();
    claims["scope"] = json!("App:read App:admin");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64(&serde_json::to_vec(&claims).unwrap()),
        parts[2]
    );
    let (s, challenge, body) = env.read("q3", Some(&forged)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        challenge.contains(r#"error="invalid_token""#) && challenge.contains("signature"),
        "{challenge}"
    );
    assert_eq!(body["error"], "invalid_token");

    // Garbage is not a token.
    let (s, challenge, _) = env.read("q3", Some("not-a-jwt")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{challenge}"
    );

    // A genuine token of the same agent, for another service.
    let elsewhere = env.token("App:read", OTHER_AUDIENCE).await;
    let (s, challenge, body) = env.read("q3", Some(&elsewhere)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        challenge.contains(r#"error="invalid_token""#) && challenge.contains("aud"),
        "{challenge}"
    );

    // A genuine token for this service without `App:read`: 403 insufficient_scope.
    let list_only = env.token("App:list", AUDIENCE).await;
    let (s, challenge, body) = env.read("q3", Some(&list_only)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"], "insufficient_scope");
    assert!(
        challenge.contains(r#"error="insufficient_scope""#)
            && challenge.contains(r#"scope="App:read""#),
        "{challenge}"
    );

    // A new signing key: the service meets an unknown kid, fetches the JWKS again.
    let (s, b) = env
        .admin(reqwest::Method::POST, "/v1/keys/rotate", Value::Null)
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let rotated = env.token("App:read", AUDIENCE).await;
    let kid = |t: &str| jsonwebtoken::decode_header(t).unwrap().kid.unwrap();
    assert_ne!(
        kid(&rotated),
        kid(&token),
        "rotation changes the signing key"
    );
    let (s, _, body) = env.read("q4", Some(&rotated)).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    // The old key is still published (its tokens have not expired): still accepted.
    let (s, _, body) = env.read("q4", Some(&token)).await;
    assert_eq!(s, StatusCode::OK, "{body}");

    // Kill switch on the agent: the same, still unexpired token is refused at once.
    let reason = "investigating unusual document reads";
    let (s, b) = env
        .admin(
            reqwest::Method::POST,
            "/v1/killswitches",
            json!({ "target": { "kind": "identity", "value": env.agent.id }, "reason": reason }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, _, body) = env.read("q3", Some(&token)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"], "access_denied");
    let why = body["error_description"].as_str().unwrap();
    assert!(
        why.contains("kill switch") && why.contains(reason),
        "{body}"
    );
    assert!(body["audit_seq"].as_u64().is_some(), "{body}");

    // warrant gone: the token still verifies offline, but nobody can decide: 503.
    env.warrant.stop();
    let (s, _, body) = env.read("q3", Some(&rotated)).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "temporarily_unavailable");
}
