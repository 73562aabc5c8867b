//! Boots real `warrant serve` processes on ephemeral loopback ports with temp data dirs.

#![allow(dead_code)]

use serde_json::{json, Value};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use warrant_client::Client;

pub const ADMIN_TOKEN: &str = "wrt_test_admin_token_0123456789abcdefghijklmnop";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_warrant")
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A running server. Killed (SIGKILL) on drop unless stopped.
pub struct Server {
    pub child: Option<Child>,
    /// Everything the server wrote to stderr so far (drained continuously, so a chatty
    /// server never blocks on a full pipe).
    pub log: Arc<Mutex<String>>,
    pub port: u16,
    pub data_dir: PathBuf,
    pub url: String,
}

pub struct Options {
    pub admin_token: Option<String>,
    pub extra_args: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            admin_token: Some(ADMIN_TOKEN.to_owned()),
            extra_args: vec![],
        }
    }
}

impl Server {
    pub fn start(data_dir: &Path) -> Server {
        Self::start_with(data_dir, Options::default())
    }

    pub fn start_with(data_dir: &Path, opts: Options) -> Server {
        let server = Self::spawn_with(data_dir, opts);
        server.wait_ready();
        server
    }

    /// Starts `warrant serve` like [`Server::start_with`] but does not wait until it is
    /// ready (for a server that is expected to refuse to start: see [`Server::wait_exit`]).
    pub fn spawn_with(data_dir: &Path, opts: Options) -> Server {
        let port = free_port();
        let mut cmd = Command::new(bin());
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(backend_args(data_dir, &opts.extra_args))
            .args(&opts.extra_args)
            .env_remove("WARRANT_DATABASE")
            .env_remove("WARRANT_ADMIN_TOKEN")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(t) = &opts.admin_token {
            cmd.env("WARRANT_ADMIN_TOKEN", t);
        }
        let mut child = cmd.spawn().expect("spawn warrant serve");
        let log = Arc::new(Mutex::new(String::new()));
        if let Some(mut err) = child.stderr.take() {
            let sink = log.clone();
            std::thread::spawn(move || {
                use std::io::Read;
                let mut buf = [0u8; 8192];
                while let Ok(n) = err.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if let (Ok(mut l), Some(chunk)) = (sink.lock(), buf.get(..n)) {
                        l.push_str(&String::from_utf8_lossy(chunk));
                    }
                }
            });
        }
        Server {
            child: Some(child),
            log,
            port,
            data_dir: data_dir.to_owned(),
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Waits up to `timeout` for the process to exit by itself; returns its exit status,
    /// or `None` when it is still running then (it is left running).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.child.as_mut()?;
            match child.try_wait() {
                Ok(Some(status)) => {
                    self.child = None;
                    // Give the drain thread a moment to read the last lines.
                    std::thread::sleep(Duration::from_millis(100));
                    return Some(status);
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                _ => return None,
            }
        }
    }

    /// What the server wrote to stderr so far.
    pub fn log_text(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(resp) = probe::ready(&format!("{}/readyz", self.url)) {
                if resp {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server on port {} did not become ready", self.port);
    }

    pub fn client(&self) -> Client {
        Client::new(&self.url, Some(ADMIN_TOKEN.to_owned())).expect("client")
    }

    pub fn anonymous(&self) -> Client {
        Client::new(&self.url, None).expect("client")
    }

    /// SIGKILL, no cleanup.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit; returns the captured stderr.
    pub fn stop(&mut self) -> String {
        let mut out = String::new();
        // (stderr is collected by the drain thread into `log`)
        if let Some(mut c) = self.child.take() {
            let pid = c.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                match c.try_wait() {
                    Ok(Some(_)) => break,
                    _ if Instant::now() > deadline => {
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                    _ => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
        // Give the drain thread a moment to read the last lines.
        std::thread::sleep(Duration::from_millis(50));
        if let Ok(l) = self.log.lock() {
            out.push_str(&l);
        }
        out
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("warrant.db")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The backend servers started here run on. By default the embedded SQLite database in
/// their data directory; with `WARRANT_IT_BACKEND=postgres` (set by `scripts/test.sh` for a
/// second pass over the backend-neutral modules: `e2e`, `bad_input`, `openapi`, `killswitch`, `oauth`) each data
/// directory gets a PostgreSQL database of its own on the suite's server, kept across
/// restarts of that data directory. (Modules that edit the SQLite file itself — `tamper`,
/// `durability` — only run on SQLite.)
pub fn on_postgres() -> bool {
    std::env::var("WARRANT_IT_BACKEND").is_ok_and(|b| b == "postgres")
}

const DATABASE_MARKER: &str = ".it-database-url";

/// The PostgreSQL database of a data directory in the PostgreSQL pass (created on first use).
pub fn database_of(data_dir: &Path) -> Option<String> {
    if !on_postgres() {
        return None;
    }
    let marker = data_dir.join(DATABASE_MARKER);
    if let Ok(url) = std::fs::read_to_string(&marker) {
        return Some(url);
    }
    // The tests call this from inside their own runtime: create the database on a
    // thread with a runtime of its own.
    let url = std::thread::spawn(|| {
        tokio::runtime::Runtime::new()
            .expect("runtime")
            .block_on(super::pg::fresh_database())
    })
    .join()
    .expect("create a database");
    std::fs::create_dir_all(data_dir).expect("data dir");
    std::fs::write(&marker, &url).expect("write database marker");
    Some(url)
}

fn backend_args(data_dir: &Path, extra_args: &[String]) -> Vec<String> {
    if extra_args.iter().any(|a| a == "--database") {
        return vec![];
    }
    match database_of(data_dir) {
        Some(url) => vec!["--database".into(), url],
        None => vec![],
    }
}

/// `audit verify` arguments for a data directory's log, on either backend.
pub fn verify_args(data_dir: &Path) -> Vec<String> {
    match database_of(data_dir) {
        Some(url) => vec![
            "audit".into(),
            "verify".into(),
            "--database".into(),
            url,
            "--public-key".into(),
            data_dir
                .join("keys/audit-signing-key.pub.pem")
                .to_string_lossy()
                .into_owned(),
        ],
        None => vec![
            "audit".into(),
            "verify".into(),
            "--data-dir".into(),
            data_dir.to_string_lossy().into_owned(),
        ],
    }
}

/// One integer from the data directory's database (SQLite file or PostgreSQL), read
/// directly, bypassing the server. `sql` uses `$1` for its one text parameter.
pub async fn db_scalar(data_dir: &Path, sql: &str, param: &str) -> Option<i64> {
    use sqlx::Connection;
    match database_of(data_dir) {
        Some(url) => {
            let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
            let v = sqlx::query_scalar::<_, Option<i64>>(sql)
                .bind(param)
                .fetch_one(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            let _ = conn.close().await;
            v
        }
        None => {
            use sqlx::ConnectOptions;
            let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(data_dir.join("warrant.db"))
                .read_only(true)
                .connect()
                .await
                .expect("open db");
            let v = sqlx::query_scalar::<_, Option<i64>>(sql)
                .bind(param)
                .fetch_one(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            let _ = conn.close().await;
            v
        }
    }
}

/// Tiny blocking readiness probe (plain TCP, no async runtime needed).
mod probe {
    pub fn ready(url: &str) -> std::io::Result<bool> {
        use std::io::{Read, Write};
        let rest = url.trim_start_matches("http://");
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let mut s = std::net::TcpStream::connect(host)?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(2)))?;
        write!(
            s,
            "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )?;
        let mut buf = String::new();
        s.read_to_string(&mut buf)?;
        Ok(buf.starts_with("HTTP/1.1 200"))
    }
}

/// Runs the CLI with the given args (server/token set for `server`), returns its output.
pub fn cli(server: Option<&Server>, args: &[&str]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .env_remove("WARRANT_TOKEN")
        .env_remove("WARRANT_SERVER");
    if let Some(s) = server {
        cmd.env("WARRANT_SERVER", &s.url)
            .env("WARRANT_TOKEN", ADMIN_TOKEN);
    }
    cmd.output().expect("run warrant")
}

/// Runs the CLI against `server` with `token` (if any) as WARRANT_TOKEN and `input` on its
/// standard input (passwords), returns its output.
pub fn cli_with_input(server: &Server, token: Option<&str>, args: &[&str], input: &str) -> Output {
    use std::io::Write;
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .env_remove("WARRANT_TOKEN")
        .env("WARRANT_SERVER", &server.url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(t) = token {
        cmd.env("WARRANT_TOKEN", t);
    }
    let mut child = cmd.spawn().expect("run warrant");
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes()).expect("write stdin");
    }
    child.wait_with_output().expect("wait for warrant")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

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

/// Registers an identity and returns its id.
pub async fn create_identity(c: &Client, name: &str, env: &str, roles: &[&str]) -> String {
    let v = c
        .create_identity(&json!({
            "name": name, "kind": "ai_tool", "environment": env,
            "owner": "alice@example.com", "roles": roles,
            "entitlements": ["docs:write"],
        }))
        .await
        .expect("create identity");
    v["id"].as_str().expect("id").to_owned()
}

pub fn read_req(principal: &str, risk: i64) -> Value {
    json!({
        "principal": principal,
        "action": "App::Action::\"read\"",
        "resource": "App::Document::\"q3\"",
        "context": { "risk": risk },
    })
}

// ---------------------------------------------------------------------------------------
// Named humans and their control-plane roles, given the real way: an account with a
// one-time password the human replaces, a role grant asked for with the bootstrap token
// and approved by a second named admin, and an API token the human gets for themselves
// with their password (`POST /v1/auth/token`, what `warrant login` does).

/// The named human who approves the role grants the tests ask for: the installation's
/// first admin (granted at once with the bootstrap token while no named human holds
/// `admin`). No test acts as this human otherwise.
pub const ROOT_ADMIN: &str = "root-admin@warrant.test";

/// The justification of the role grants the tests ask for.
pub const GRANT_WHY: &str = "integration test: the scenario needs this role";

/// One API call with an optional bearer credential: (status, body as JSON, or the body's
/// text as a JSON string when it is not JSON).
pub async fn api(
    url: &str,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = reqwest::Client::new().request(method, format!("{url}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let res = req.send().await.expect("send");
    let status = res.status().as_u16();
    let text = res.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// [`api`] that must succeed (2xx); returns the body.
pub async fn api_ok(
    url: &str,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Value {
    let (s, b) = api(url, Some(token), method, path, body).await;
    assert!((200..300).contains(&s), "{method} {path}: {s} {b}");
    b
}

/// The one-time password the helpers create accounts with.
pub fn one_time_password(human: &str) -> String {
    format!("one-time password of {human}")
}

/// The password of every human the helpers created (their one-time one, replaced).
pub fn password_of(human: &str) -> String {
    format!("integration-test password of {human}")
}

/// Creates the account of `human` (no roles) unless it exists: with a one-time password
/// (set by the bootstrap token), which the human replaces by [`password_of`].
pub async fn ensure_human(url: &str, human: &str) {
    let (s, b) = api(
        url,
        Some(ADMIN_TOKEN),
        "POST",
        "/v1/humans",
        Some(&json!({ "name": human, "password": one_time_password(human) })),
    )
    .await;
    assert!(
        s == 201 || (s == 409 && b.to_string().contains("exists already")),
        "create human {human}: {s} {b}"
    );
    if s == 201 {
        let body = json!({ "username": human, "current_password": one_time_password(human),
                           "new_password": password_of(human) });
        let (s, b) = api(url, None, "POST", "/v1/auth/password", Some(&body)).await;
        assert_eq!(s, 204, "{human} replaces the one-time password: {b}");
    }
}

/// The control-plane roles `human` holds now.
pub async fn roles_of(url: &str, human: &str) -> Vec<String> {
    let b = api_ok(
        url,
        ADMIN_TOKEN,
        "GET",
        &format!("/v1/humans/{human}"),
        None,
    )
    .await;
    serde_json::from_value(b["roles"].clone()).expect("roles")
}

/// An API token `human` gets for themselves with their password ([`password_of`]) to act
/// with `role`: (id, secret).
pub async fn issue_token(url: &str, human: &str, role: &str) -> (String, String) {
    let body = json!({ "username": human, "password": password_of(human), "role": role,
                       "name": format!("{human} ({role})") });
    let (s, b) = api(url, None, "POST", "/v1/auth/token", Some(&body)).await;
    assert_eq!(s, 201, "token of {human} ({role}): {b}");
    assert!(
        b["human"]
            .as_str()
            .is_some_and(|h| h.eq_ignore_ascii_case(human)),
        "{b}"
    );
    (
        b["id"].as_str().expect("token id").to_owned(),
        b["token"].as_str().expect("token secret").to_owned(),
    )
}

/// A token of [`ROOT_ADMIN`], who is made the first admin (bootstrap grant) if needed.
pub async fn root_admin_token(url: &str) -> String {
    ensure_human(url, ROOT_ADMIN).await;
    if !roles_of(url, ROOT_ADMIN).await.iter().any(|r| r == "admin") {
        let g = api_ok(
            url,
            ADMIN_TOKEN,
            "POST",
            "/v1/role-grants",
            Some(&json!({ "human": ROOT_ADMIN, "role": "admin", "justification": GRANT_WHY })),
        )
        .await;
        assert_eq!(
            (&g["state"], &g["bootstrap"]),
            (&json!("approved"), &json!(true)),
            "the root admin must be the first admin: {g}"
        );
    }
    issue_token(url, ROOT_ADMIN, "admin").await.1
}

/// Gives `human` (created if missing) the control-plane `role` unless they hold it: asked
/// for with the bootstrap token, approved by [`ROOT_ADMIN`].
pub async fn grant_role(url: &str, human: &str, role: &str) {
    let root = root_admin_token(url).await;
    ensure_human(url, human).await;
    if roles_of(url, human).await.iter().any(|r| r == role) {
        return;
    }
    let g = api_ok(
        url,
        ADMIN_TOKEN,
        "POST",
        "/v1/role-grants",
        Some(&json!({ "human": human, "role": role, "justification": GRANT_WHY })),
    )
    .await;
    assert_eq!(g["state"], "pending", "{g}");
    let id = g["id"].as_str().expect("grant id");
    let g = api_ok(
        url,
        &root,
        "POST",
        &format!("/v1/role-grants/{id}/approve"),
        Some(&json!({})),
    )
    .await;
    assert_eq!(g["state"], "approved", "{g}");
}

/// An API token of the named `human` holding `role` (granted first if needed): (id, secret).
pub async fn human_token(url: &str, human: &str, role: &str) -> (String, String) {
    grant_role(url, human, role).await;
    issue_token(url, human, role).await
}

/// Registers a fresh Ed25519 workload key for identity `id` (with the bootstrap token) and
/// gets it an access token for warrant itself: `private_key_jwt` (RFC 7523), scope
/// `warrant:propose`, audience = `issuer` (the server's issuer URL).
pub async fn propose_token(url: &str, id: &str, issuer: &str) -> String {
    use base64::Engine as _;
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    use ring::rand::SecureRandom;
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let rng = ring::rand::SystemRandom::new();
    let mut seed = [0u8; 32];
    rng.fill(&mut seed).expect("randomness");
    let sk = ed25519_dalek::SigningKey::from_bytes(&seed);
    let jwk = json!({ "kty": "OKP", "crv": "Ed25519", "x": b64(sk.verifying_key().as_bytes()) });
    let added = api_ok(
        url,
        ADMIN_TOKEN,
        "POST",
        &format!("/v1/identities/{id}/keys"),
        Some(&json!({ "jwk": jwk })),
    )
    .await;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some(added["kid"].as_str().expect("kid").to_owned());
    let mut jti = [0u8; 12];
    rng.fill(&mut jti).expect("randomness");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let claims = json!({
        "iss": id, "sub": id, "aud": format!("{issuer}/oauth2/token"),
        "iat": now, "exp": now + 60, "jti": b64(&jti),
    });
    let der = sk.to_pkcs8_der().expect("pkcs8");
    let assertion = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_ed_der(der.as_bytes()),
    )
    .expect("assertion");
    let res = reqwest::Client::new()
        .post(format!("{url}/oauth2/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion.as_str()),
            ("scope", "warrant:propose"),
            ("audience", issuer),
        ])
        .send()
        .await
        .expect("token request");
    let status = res.status().as_u16();
    let body: Value = res.json().await.expect("token response");
    assert_eq!(status, 200, "token for {id}: {body}");
    assert_eq!(body["scope"], "warrant:propose", "{body}");
    body["access_token"]
        .as_str()
        .expect("access token")
        .to_owned()
}
