//! The TLS listener and mTLS client authentication (RFC 8705 `tls_client_auth`): an agent
//! whose client certificate (issued by the configured client CA) carries its SPIFFE ID as
//! URI SAN gets an access token without a client assertion.
//!
//! The real binary over HTTPS. Certificates are made with `rcgen`: a client CA, a server
//! certificate for 127.0.0.1/localhost (signed by the same CA, which the client trusts),
//! and client certificates; calls go through `reqwest` (rustls).

use super::harness::*;
use base64::Engine as _;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const AUDIENCE: &str = "https://docs.example";

const SCOPE_POLICIES: &str = r#"
@id("readers-hold-read")
permit (principal in Warrant::Role::"reader", action == Warrant::Action::"request_scope",
        resource == Warrant::Scope::"App:read")
when { context.environment == principal.environment && context.audience == "https://docs.example" };
"#;

/// A certificate authority that signs server and client certificates.
struct Ca {
    cert: Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// A leaf certificate (PEM) and its key (PEM).
    fn issue(&self, sans: Vec<SanType>, purpose: ExtendedKeyUsagePurpose) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, "leaf");
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![purpose];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn server_cert(&self) -> (String, String) {
        self.issue(
            vec![
                SanType::IpAddress("127.0.0.1".parse().unwrap()),
                SanType::DnsName("localhost".try_into().unwrap()),
            ],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client certificate (PEM chain + key) whose URI SAN is `spiffe_id`.
    fn client_identity(&self, spiffe_id: &str) -> reqwest::Identity {
        let (cert, key) = self.issue(
            vec![SanType::URI(spiffe_id.try_into().unwrap())],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).unwrap()
    }
}

/// The PEM files of a TLS listener, written next to the data directory.
struct Files {
    ca: Ca,
    cert: PathBuf,
    key: PathBuf,
    client_ca: PathBuf,
}

fn files(dir: &Path) -> Files {
    let ca = Ca::new("warrant test workload CA");
    let (cert_pem, key_pem) = ca.server_cert();
    let cert = dir.join("server.pem");
    let key = dir.join("server-key.pem");
    let client_ca = dir.join("client-ca.pem");
    std::fs::write(&cert, cert_pem).unwrap();
    std::fs::write(&key, key_pem).unwrap();
    std::fs::write(&client_ca, ca.cert.pem()).unwrap();
    Files {
        ca,
        cert,
        key,
        client_ca,
    }
}

fn tls_args(f: &Files, client_ca: bool) -> Vec<String> {
    let mut args = vec![
        "--tls-cert".to_owned(),
        f.cert.display().to_string(),
        "--tls-key".to_owned(),
        f.key.display().to_string(),
    ];
    if client_ca {
        args.push("--tls-client-ca".into());
        args.push(f.client_ca.display().to_string());
    }
    args
}

/// An HTTPS client that trusts the test CA, optionally presenting a client certificate.
fn https(ca: &Ca, identity: Option<reqwest::Identity>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(Duration::from_secs(30))
        .add_root_certificate(reqwest::Certificate::from_pem(ca.cert.pem().as_bytes()).unwrap());
    if let Some(id) = identity {
        b = b.identity(id);
    }
    b.build().unwrap()
}

/// A TLS server with the scope policies and `reader-bot` in `prod` and in `staging`.
struct Setup {
    server: Server,
    files: Files,
    /// The identity ids in prod and staging.
    prod: String,
    staging: String,
    prod_spiffe: String,
    staging_spiffe: String,
}

/// Starts `warrant serve` with TLS and waits until `/readyz` answers over HTTPS (the
/// harness's probe speaks plain HTTP).
fn start_tls(dir: &Path, f: &Files, client_ca: bool) -> Server {
    let data = dir.join("data");
    let mut server = Server::spawn_with(
        &data,
        Options {
            extra_args: tls_args(f, client_ca),
            ..Options::default()
        },
    );
    server.url = format!("https://127.0.0.1:{}", server.port);
    let http = https(&f.ca, None);
    let rt = tokio::runtime::Handle::current();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = tokio::task::block_in_place(|| {
            rt.block_on(async {
                http.get(format!("{}/readyz", server.url))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            })
        });
        if ready {
            return server;
        }
        if let Some(status) = server.wait_exit(Duration::from_millis(100)) {
            panic!("server exited with {status}:\n{}", server.log_text());
        }
        assert!(
            Instant::now() < deadline,
            "TLS server did not become ready:\n{}",
            server.log_text()
        );
    }
}

async fn admin(s: &Server, f: &Files, method: reqwest::Method, path: &str, body: &Value) -> Value {
    let mut req = https(&f.ca, None)
        .request(method, format!("{}{path}", s.url))
        .bearer_auth(ADMIN_TOKEN);
    if !body.is_null() {
        req = req.json(body);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let v: Value = res.json().await.unwrap();
    assert!(status.is_success(), "{path}: {status} {v}");
    v
}

async fn identity(s: &Server, f: &Files, env: &str) -> (String, String) {
    let v = admin(
        s,
        f,
        reqwest::Method::POST,
        "/v1/identities",
        &json!({
            "name": "reader-bot", "kind": "ai_tool", "environment": env,
            "owner": "alice@example.com", "roles": ["reader"],
        }),
    )
    .await;
    (
        v["id"].as_str().unwrap().to_owned(),
        v["spiffe_id"].as_str().unwrap().to_owned(),
    )
}

impl Setup {
    async fn start(dir: &Path) -> Setup {
        let files = files(dir);
        let server = start_tls(dir, &files, true);
        admin(
            &server,
            &files,
            reqwest::Method::PUT,
            "/v1/policies",
            &json!({ "schema": SCHEMA, "policies": format!("{POLICIES}\n{SCOPE_POLICIES}") }),
        )
        .await;
        let (prod, prod_spiffe) = identity(&server, &files, "prod").await;
        let (staging, staging_spiffe) = identity(&server, &files, "staging").await;
        Setup {
            server,
            files,
            prod,
            staging,
            prod_spiffe,
            staging_spiffe,
        }
    }

    /// A `client_credentials` request without a client assertion, as `client`.
    async fn token(
        &self,
        client: &reqwest::Client,
        extra: &[(&str, &str)],
    ) -> reqwest::Result<(u16, Value)> {
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("scope", "App:read"),
            ("audience", AUDIENCE),
        ];
        for (k, v) in extra {
            form.retain(|(name, _)| name != k);
            form.push((k, v));
        }
        let res = client
            .post(format!("{}/oauth2/token", self.server.url))
            .form(&form)
            .send()
            .await?;
        let status = res.status().as_u16();
        let body = res.json().await?;
        Ok((status, body))
    }

    fn as_agent(&self, spiffe_id: &str) -> reqwest::Client {
        https(
            &self.files.ca,
            Some(self.files.ca.client_identity(spiffe_id)),
        )
    }

    async fn audit(&self, kind: &str) -> Vec<Value> {
        let v = admin(
            &self.server,
            &self.files,
            reqwest::Method::GET,
            &format!("/v1/audit?kind={kind}&order=desc"),
            &Value::Null,
        )
        .await;
        v["items"].as_array().unwrap().clone()
    }
}

/// The claims of a JWT (not verified: the oauth tests verify tokens against the JWKS).
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn expect_invalid_client(status: u16, body: &Value, needle: &str) {
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "invalid_client", "{body}");
    assert!(body.get("access_token").is_none(), "{body}");
    let d = body["error_description"].as_str().unwrap();
    assert!(d.contains(needle), "`{needle}` not in: {d}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_serves_the_api_and_plain_http_to_it_fails() {
    let dir = tempfile::tempdir().unwrap();
    let f = files(dir.path());
    let server = start_tls(dir.path(), &f, true);
    let http = https(&f.ca, None);
    let meta: Value = http
        .get(format!(
            "{}/.well-known/oauth-authorization-server",
            server.url
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["issuer"], server.url, "{meta}");
    assert_eq!(
        meta["token_endpoint_auth_methods_supported"],
        json!(["private_key_jwt", "tls_client_auth"]),
        "{meta}"
    );
    // Plain HTTP to the TLS port gets no answer; the listener goes on serving.
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
        .get(format!("http://127.0.0.1:{}/readyz", server.port))
        .send()
        .await;
    assert!(
        plain.as_ref().map_or(true, |r| !r.status().is_success()),
        "plain HTTP was served: {plain:?}"
    );
    let ready = http
        .get(format!("{}/readyz", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    drop(server);

    // Without a client CA no certificate is requested and the metadata says so.
    let dir = tempfile::tempdir().unwrap();
    let f = files(dir.path());
    let server = start_tls(dir.path(), &f, false);
    let meta: Value = https(&f.ca, Some(f.ca.client_identity("spiffe://x/y")))
        .get(format!(
            "{}/.well-known/oauth-authorization-server",
            server.url
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        meta["token_endpoint_auth_methods_supported"],
        json!(["private_key_jwt"]),
        "{meta}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_with_the_agents_spiffe_id_gets_a_token_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = Setup::start(dir.path()).await;
    let agent = s.as_agent(&s.prod_spiffe);
    let (status, body) = s.token(&agent, &[]).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let c = claims(body["access_token"].as_str().unwrap());
    assert_eq!(c["sub"], s.prod, "{c}");
    assert_eq!(c["client_id"], s.prod, "{c}");
    assert_eq!(c["spiffe_id"], s.prod_spiffe, "{c}");
    assert_eq!(c["environment"], "prod", "{c}");
    assert_eq!(c["aud"], AUDIENCE, "{c}");
    // `client_id` may name the identity (id or SPIFFE ID)…
    let (status, body) = s
        .token(&agent, &[("client_id", s.prod_spiffe.as_str())])
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    // …but not another one.
    let (status, body) = s
        .token(&agent, &[("client_id", s.staging.as_str())])
        .await
        .unwrap();
    expect_invalid_client(status, &body, "client_id");
    // The issuance record says how the client authenticated.
    let issued = s.audit("credential.issued").await;
    assert_eq!(issued.len(), 2, "{issued:?}");
    let p = &issued[0]["payload"];
    assert_eq!(p["auth"], "tls_client_auth", "{p}");
    assert!(p["client_assertion_kid"].is_null(), "{p}");
    assert_eq!(issued[0]["subject"], format!("identity:{}", s.prod));
    // A scope the identity may not hold is refused and recorded like any refusal.
    let (status, body) = s.token(&agent, &[("scope", "App:write")]).await.unwrap();
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope"))
    );
    let refused = s.audit("credential.refused").await;
    assert_eq!(refused[0]["payload"]["auth"], "tls_client_auth");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_from_another_ca_is_refused_in_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let s = Setup::start(dir.path()).await;
    let rogue = Ca::new("rogue CA");
    let client = https(&s.files.ca, Some(rogue.client_identity(&s.prod_spiffe)));
    let res = s.token(&client, &[]).await;
    assert!(res.is_err(), "a rogue certificate was accepted: {res:?}");
    // The failed handshake neither crashed nor stalled the listener.
    let (status, body) = s.token(&s.as_agent(&s.prod_spiffe), &[]).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(s.audit("credential.issued").await.len() == 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staging_certificate_gets_a_staging_token_only() {
    let dir = tempfile::tempdir().unwrap();
    let s = Setup::start(dir.path()).await;
    let agent = s.as_agent(&s.staging_spiffe);
    let (status, body) = s.token(&agent, &[]).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    let c = claims(&token);
    assert_eq!(c["sub"], s.staging, "{c}");
    assert_eq!(c["environment"], "staging", "{c}");
    // It cannot ask for the production identity.
    let (status, body) = s
        .token(&agent, &[("client_id", s.prod.as_str())])
        .await
        .unwrap();
    expect_invalid_client(status, &body, "client_id");
    // Its token does not speak for the production identity.
    let res = https(&s.files.ca, None)
        .post(format!("{}/v1/authorize", s.server.url))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({
            "principal": s.prod, "token": token, "audience": AUDIENCE,
            "action": "App::Action::\"read\"", "resource": "App::Document::\"q3\"",
            "context": { "risk": 1 },
        }))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap();
    assert_ne!(body["decision"], "allow", "{body}");
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("not the subject of the token"),
        "{body}"
    );
    // For its own identity it works.
    let d = admin(
        &s.server,
        &s.files,
        reqwest::Method::POST,
        "/v1/authorize",
        &json!({
            "token": token, "audience": AUDIENCE,
            "action": "App::Action::\"read\"", "resource": "App::Document::\"q3\"",
            "context": { "risk": 1 },
        }),
    )
    .await;
    assert_eq!(d["decision"], "allow", "{d}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_certificate_and_no_assertion_or_an_unregistered_spiffe_id_is_invalid_client() {
    let dir = tempfile::tempdir().unwrap();
    let s = Setup::start(dir.path()).await;
    let (status, body) = s.token(&https(&s.files.ca, None), &[]).await.unwrap();
    expect_invalid_client(status, &body, "tls_client_auth");
    let unknown = s.as_agent("spiffe://warrant.local/prod/nobody");
    let (status, body) = s.token(&unknown, &[]).await.unwrap();
    expect_invalid_client(status, &body, "unknown client");
    // A certificate of the right CA without a SPIFFE ID.
    let (cert, key) = s.files.ca.issue(
        vec![SanType::DnsName("agent.example".try_into().unwrap())],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let plain = https(
        &s.files.ca,
        Some(reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).unwrap()),
    );
    let (status, body) = s.token(&plain, &[]).await.unwrap();
    expect_invalid_client(status, &body, "SPIFFE ID");
    // Unauthenticated callers are not audit-logged.
    assert!(s.audit("credential.refused").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_refuses_a_half_or_broken_tls_config() {
    let dir = tempfile::tempdir().unwrap();
    let f = files(dir.path());
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a PEM file").unwrap();
    let cert = f.cert.display().to_string();
    let key = f.key.display().to_string();
    let ca = f.client_ca.display().to_string();
    let bad = garbage.display().to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--tls-cert", &cert], "tls_key"),
        (vec!["--tls-key", &key], "tls_cert"),
        (vec!["--tls-client-ca", &ca], "tls_client_ca"),
        (
            vec!["--tls-cert", &cert, "--tls-key", &bad],
            "invalid TLS key",
        ),
        (
            vec!["--tls-cert", &bad, "--tls-key", &key],
            "invalid TLS certificate",
        ),
        (
            vec![
                "--tls-cert",
                &cert,
                "--tls-key",
                &key,
                "--tls-client-ca",
                &bad,
            ],
            "invalid TLS client CA",
        ),
    ];
    for (i, (args, needle)) in cases.into_iter().enumerate() {
        let mut s = Server::spawn_with(
            &dir.path().join(format!("data{i}")),
            Options {
                extra_args: args.iter().map(|a| a.to_string()).collect(),
                ..Options::default()
            },
        );
        let status = s.wait_exit(Duration::from_secs(30));
        let log = s.log_text();
        let status = status.unwrap_or_else(|| panic!("{args:?}: still running:\n{log}"));
        assert!(!status.success(), "{args:?}: exited with {status}:\n{log}");
        assert!(log.contains(needle), "{args:?}: `{needle}` not in:\n{log}");
        assert!(
            !log.contains("PRIVATE KEY"),
            "{args:?}: key material logged:\n{log}"
        );
    }
}
