//! Human sign-in against the real binary: OpenID Connect single sign-on (authorization
//! code + PKCE S256) with a real, standards-compliant provider (`tests/oidc-provider`,
//! node-oidc-provider, spawned per test on a free loopback port), and local argon2id
//! passwords, sessions, cookie flags and anti-CSRF checks of the console.
//!
//! The session cookies are `Secure`, which an HTTP client's cookie store won't send over
//! plain http: [`Browser`] keeps cookies itself (like a browser on http://127.0.0.1, which
//! accepts `Secure` cookies on loopback), follows no redirects, and each hop is inspected.
//!
//! Needs Node.js and `npm ci` in `tests/oidc-provider` (`bash scripts/browser-deps.sh`).

use crate::harness::{self, api, api_ok, Options, Server, ADMIN_TOKEN};
use reqwest::Url;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CLIENT_ID: &str = "warrant-test";
const CLIENT_SECRET: &str = "oidc-it-client-secret-3f9c2a7b51d04e8e";
/// Every test user's password at the provider.
const IDP_PASSWORD: &str = "correct horse battery staple";
const CALLBACK_PATH: &str = "/ui/auth/oidc/callback";
const CALLBACK_SUBJECT: &str = "request:GET /ui/auth/oidc/callback";

// ---------------------------------------------------------------------------------------
// The provider process.

/// A running `tests/oidc-provider/provider.mjs`. Killed on drop (also when a test panics).
struct Provider {
    child: Option<Child>,
    /// Where it listens: `http://127.0.0.1:PORT`.
    base: String,
    /// The issuer it presents (discovery, `iss` parameter, ID tokens).
    issuer: String,
    log: Arc<Mutex<String>>,
}

fn provider_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/oidc-provider/provider.mjs")
}

/// A port for a provider, outside the kernel's ephemeral range (32768–60999), so that a
/// server or client started meanwhile by another test cannot be given it.
fn provider_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    loop {
        // RandomState is seeded randomly per instance: a cheap random number.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        let port = 20_000 + (h.finish() % 10_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl Provider {
    /// Starts the provider on `port` with one client whose redirect URI is `redirect_uri`;
    /// `issuer` overrides the issuer it presents (default `http://127.0.0.1:PORT`).
    fn start(port: u16, issuer: Option<&str>, redirect_uri: &str) -> Provider {
        let script = provider_script();
        assert!(
            script
                .parent()
                .is_some_and(|d| d.join("node_modules/oidc-provider").is_dir()),
            "tests/oidc-provider has no node_modules: run `bash scripts/browser-deps.sh` \
             (or `npm ci` in tests/oidc-provider)"
        );
        let mut cmd = Command::new("node");
        cmd.arg(&script)
            .args(["--port", &port.to_string()])
            .args(["--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET])
            .args(["--redirect-uri", redirect_uri])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(i) = issuer {
            cmd.args(["--issuer", i]);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn node (Node.js >= 20.12 is needed): {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        if let Some(mut err) = child.stderr.take() {
            let sink = log.clone();
            std::thread::spawn(move || {
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
        let (tx, rx) = std::sync::mpsc::channel();
        if let Some(out) = child.stdout.take() {
            std::thread::spawn(move || {
                let mut lines = BufReader::new(out).lines();
                if let Some(Ok(line)) = lines.next() {
                    let _ = tx.send(line);
                }
                // Keep draining so the child never blocks on a full pipe.
                for _ in lines {}
            });
        }
        let mut p = Provider {
            child: Some(child),
            base: format!("http://127.0.0.1:{port}"),
            issuer: String::new(),
            log,
        };
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => {
                let issuer = line
                    .strip_prefix("oidc-provider ready ")
                    .unwrap_or_else(|| panic!("unexpected provider line {line:?}\n{}", p.log()));
                p.issuer = issuer.to_owned();
            }
            Err(_) => panic!("the OIDC provider did not become ready:\n{}", p.log()),
        }
        let want = issuer.map_or_else(|| p.base.clone(), str::to_owned);
        assert_eq!(p.issuer, want, "the provider's issuer");
        p
    }

    fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------
// warrant + provider.

struct Sso {
    // Field order is drop order: the provider and the server are killed before the temp
    // directory goes.
    provider: Provider,
    server: Server,
    _dir: tempfile::TempDir,
}

/// A config file with `[sign_in]` (and `[sign_in.oidc]` naming `oidc_issuer`).
fn write_config(dir: &Path, session_ttl: Option<u64>, oidc_issuer: Option<&str>) -> PathBuf {
    let mut toml = String::from("version = 1\n\n[sign_in]\n");
    if let Some(t) = session_ttl {
        toml.push_str(&format!("session_ttl_secs = {t}\n"));
    }
    if let Some(i) = oidc_issuer {
        toml.push_str(&format!(
            "\n[sign_in.oidc]\nissuer = \"{i}\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret = \"{CLIENT_SECRET}\"\n"
        ));
    }
    let path = dir.join("warrant.toml");
    std::fs::write(&path, toml).expect("write config");
    path
}

fn start_server(dir: &Path, config: &Path) -> Server {
    Server::start_with(
        &dir.join("data"),
        Options {
            extra_args: vec!["--config".into(), config.to_string_lossy().into_owned()],
            ..Options::default()
        },
    )
}

impl Sso {
    /// warrant configured with the issuer `http://127.0.0.1:PORT` of a provider on PORT
    /// that presents `provider_issuer` (default: that same URL).
    fn start(provider_issuer: Option<&str>) -> Sso {
        Self::start_on(provider_port(), provider_issuer)
    }

    fn start_on(port: u16, provider_issuer: Option<&str>) -> Sso {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = write_config(dir.path(), None, Some(&format!("http://127.0.0.1:{port}")));
        // warrant discovers the provider lazily (on the first sign-in), so it may start
        // first; the provider then learns warrant's redirect URI.
        let server = start_server(dir.path(), &config);
        let provider = Provider::start(
            port,
            provider_issuer,
            &format!("{}{CALLBACK_PATH}", server.url),
        );
        Sso {
            provider,
            server,
            _dir: dir,
        }
    }

    fn url(&self) -> &str {
        &self.server.url
    }

    /// Diagnostics for a failed assertion.
    fn logs(&self) -> String {
        format!(
            "--- provider stderr ---\n{}\n--- warrant stderr ---\n{}",
            self.provider.log(),
            self.server.log_text()
        )
    }
}

// ---------------------------------------------------------------------------------------
// A browser: a cookie jar (one per browser, like a real one on 127.0.0.1: cookies are not
// separated by port), no redirects followed.

#[derive(Debug)]
struct Hop {
    status: u16,
    /// `Location`, resolved against the request URL.
    location: Option<Url>,
    /// Raw `Set-Cookie` header values.
    set_cookies: Vec<String>,
    body: String,
}

impl Hop {
    /// The `Set-Cookie` of cookie `name`, if any.
    fn set_cookie(&self, name: &str) -> Option<&str> {
        self.set_cookies.iter().map(String::as_str).find(|c| {
            c.split(';')
                .next()
                .and_then(|kv| kv.split_once('='))
                .is_some_and(|(k, _)| k.trim() == name)
        })
    }

    fn location_str(&self) -> String {
        self.location
            .as_ref()
            .map(Url::to_string)
            .unwrap_or_default()
    }
}

/// The attributes of a `Set-Cookie` value, lowercased names: (value, attributes).
fn parse_set_cookie(raw: &str) -> (String, String, BTreeMap<String, String>) {
    let mut parts = raw.split(';');
    let (name, value) = parts
        .next()
        .and_then(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .unwrap_or_default();
    let attrs = parts
        .map(|a| {
            let (k, v) = a.split_once('=').unwrap_or((a, ""));
            (k.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    (name, value, attrs)
}

struct Browser {
    http: reqwest::Client,
    jar: BTreeMap<String, String>,
}

impl Browser {
    fn new() -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
            jar: BTreeMap::new(),
        }
    }

    fn cookie(&self, name: &str) -> Option<String> {
        self.jar.get(name).cloned()
    }

    async fn send(&mut self, req: reqwest::RequestBuilder) -> Hop {
        let mut req = req;
        if !self.jar.is_empty() {
            let header = self
                .jar
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            req = req.header(reqwest::header::COOKIE, header);
        }
        let res = req.send().await.expect("send");
        let status = res.status().as_u16();
        let location = res
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(|l| res.url().join(l).expect("Location is a URL"));
        let set_cookies: Vec<String> = res
            .headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        for raw in &set_cookies {
            let (name, value, attrs) = parse_set_cookie(raw);
            let expired = attrs.get("max-age").is_some_and(|a| a == "0")
                || attrs.get("expires").is_some_and(|e| e.contains("1970"))
                || value.is_empty();
            if expired {
                self.jar.remove(&name);
            } else {
                self.jar.insert(name, value);
            }
        }
        let body = res.text().await.unwrap_or_default();
        Hop {
            status,
            location,
            set_cookies,
            body,
        }
    }

    async fn get(&mut self, url: &str) -> Hop {
        let req = self.http.get(url);
        self.send(req).await
    }

    async fn post_form(&mut self, url: &str, form: &[(&str, &str)], origin: Option<&str>) -> Hop {
        let mut req = self.http.post(url).form(form);
        if let Some(o) = origin {
            req = req.header(reqwest::header::ORIGIN, o);
        }
        self.send(req).await
    }
}

fn query_of(url: &Url) -> BTreeMap<String, String> {
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// `url` with query parameter `name` set to `value` (`None`: removed); others kept in order.
fn with_param(url: &Url, name: &str, value: Option<&str>) -> Url {
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .filter(|(k, _)| k != name)
        .collect();
    let mut out = url.clone();
    {
        let mut q = out.query_pairs_mut();
        q.clear();
        for (k, v) in &pairs {
            q.append_pair(k, v);
        }
        if let Some(v) = value {
            q.append_pair(name, v);
        }
    }
    out
}

/// `GET /ui/auth/oidc/start?next=/ui/`: must redirect to the provider and set the sealed
/// `warrant_oidc` cookie. Returns the authorization request URL.
async fn start_sign_in(b: &mut Browser, sso: &Sso) -> Url {
    let hop = b
        .get(&format!("{}/ui/auth/oidc/start?next=/ui/", sso.url()))
        .await;
    assert_eq!(hop.status, 303, "start: {hop:?}\n{}", sso.logs());
    assert!(
        b.cookie("warrant_oidc").is_some(),
        "start sets the sealed sign-in cookie: {hop:?}"
    );
    hop.location.expect("start redirects")
}

/// Signs in at the provider as `user`, starting from an authorization request URL; returns
/// the authorization response (the redirect back to warrant: `code`, `state`, `iss`).
async fn provider_login(b: &mut Browser, sso: &Sso, authorize: &Url, user: &str) -> Url {
    let hop = b.get(authorize.as_str()).await;
    assert_eq!(hop.status, 303, "authorize: {hop:?}\n{}", sso.logs());
    let interaction = hop.location.expect("to the login page");
    assert!(
        interaction.path().starts_with("/interaction/"),
        "{interaction}"
    );
    let form = b.get(interaction.as_str()).await;
    assert_eq!(form.status, 200, "login page: {form:?}");
    assert!(form.body.contains(r#"name="password""#), "{}", form.body);
    let login_url = format!("{}{}/login", sso.provider.base, interaction.path());
    let hop = b
        .post_form(
            &login_url,
            &[("login", user), ("password", IDP_PASSWORD)],
            None,
        )
        .await;
    assert_eq!(hop.status, 303, "login: {hop:?}\n{}", sso.logs());
    let resume = hop.location.expect("to the resumed authorization");
    assert!(resume.path().starts_with("/auth/"), "{resume}");
    let hop = b.get(resume.as_str()).await;
    assert_eq!(hop.status, 303, "resume: {hop:?}\n{}", sso.logs());
    let back = hop.location.expect("the authorization response");
    assert!(
        back.as_str()
            .starts_with(&format!("{}{CALLBACK_PATH}?", sso.url())),
        "the provider redirects back to warrant: {back}\n{}",
        sso.logs()
    );
    back
}

/// A complete, successful single sign-on of `user` in browser `b`: returns the session
/// cookie value and the callback hop.
async fn sso_sign_in(b: &mut Browser, sso: &Sso, user: &str) -> (String, Hop) {
    let authorize = start_sign_in(b, sso).await;
    let back = provider_login(b, sso, &authorize, user).await;
    let hop = b.get(back.as_str()).await;
    assert_eq!(hop.status, 303, "callback: {hop:?}\n{}", sso.logs());
    assert_eq!(hop.location_str(), format!("{}/ui/", sso.url()));
    let session = b.cookie("warrant_session").expect("a session cookie");
    (session, hop)
}

/// A console page of a signed-in human: the header names them and has a sign-out form
/// (not the redirect to the sign-in page).
fn assert_signed_in(page: &Hop, name: &str, display_name: &str) {
    let who = format!(
        r#"<a class="user" href="/ui/tokens" title="{name} — your API tokens">{display_name}</a>"#
    );
    assert!(
        page.body.contains(&who) && page.body.contains(r#"action="/ui/logout""#),
        "signed in as {name}: {page:?}"
    );
}

/// The anti-CSRF token in a page's sign-out form.
fn csrf_of(page: &str) -> String {
    let marker = r#"name="_csrf" value=""#;
    let at = page.find(marker).expect("a sign-out form with _csrf") + marker.len();
    let rest = page.get(at..).unwrap_or_default();
    rest.split('"').next().unwrap_or_default().to_owned()
}

// ---------------------------------------------------------------------------------------
// Reading what warrant recorded.

async fn audit(url: &str, query: &str) -> Vec<Value> {
    let b = api_ok(
        url,
        ADMIN_TOKEN,
        "GET",
        &format!("/v1/audit?limit=1000&{query}"),
        None,
    )
    .await;
    b["items"].as_array().expect("items").clone()
}

/// The `request.refused` records of the callback.
async fn callback_refusals(url: &str) -> Vec<Value> {
    audit(url, "kind=request.refused")
        .await
        .into_iter()
        .filter(|r| r["subject"] == CALLBACK_SUBJECT)
        .collect()
}

/// Asserts a refused callback: 400 page with `reason_part`, no session cookie, the
/// sign-in cookie cleared, and a new `request.refused` record (actor `anonymous`) saying
/// why. Returns the recorded reason.
async fn assert_refused(sso: &Sso, hop: &Hop, before: usize, reason_part: &str) -> String {
    assert_eq!(hop.status, 400, "refused callback: {hop:?}\n{}", sso.logs());
    // The page shows `quoted` parts of the reason as code.
    let shown = hop.body.replace("<code>", "`").replace("</code>", "`");
    assert!(
        hop.body.contains("Sign-in refused") && shown.contains(reason_part),
        "the page says why ({reason_part}): {}",
        hop.body
    );
    assert!(
        hop.set_cookie("warrant_session").is_none(),
        "no session: {hop:?}"
    );
    let cleared = hop
        .set_cookie("warrant_oidc")
        .expect("the sign-in cookie is cleared");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    let refusals = callback_refusals(sso.url()).await;
    assert_eq!(
        refusals.len(),
        before + 1,
        "one more refusal: {refusals:#?}"
    );
    let r = refusals.last().expect("a refusal");
    assert_eq!(r["actor"], "anonymous", "{r}");
    assert_eq!(r["payload"]["method"], "GET", "{r}");
    assert_eq!(r["payload"]["path"], CALLBACK_PATH, "{r}");
    let reason = r["payload"]["reason"].as_str().expect("reason").to_owned();
    assert!(reason.contains(reason_part), "{reason}");
    // The refusal never records secrets of the flow.
    let text = r.to_string();
    assert!(!text.contains(CLIENT_SECRET), "{text}");
    reason
}

/// Sessions opened so far (`session` records with action `signed_in`).
async fn sign_ins(url: &str) -> Vec<Value> {
    audit(url, "kind=session")
        .await
        .into_iter()
        .filter(|r| r["payload"]["action"] == "signed_in")
        .collect()
}

/// JSON bodies of `gov_objects` rows of `kind`, read from the database directly.
async fn gov_bodies(data_dir: &Path, kind: &str) -> Vec<Value> {
    use sqlx::Connection;
    let sql = "SELECT body FROM gov_objects WHERE kind = $1 ORDER BY id";
    let rows: Vec<String> = match harness::database_of(data_dir) {
        Some(url) => {
            let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
            let v = sqlx::query_scalar(sql)
                .bind(kind)
                .fetch_all(&mut conn)
                .await
                .expect("query");
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
            let v = sqlx::query_scalar(sql)
                .bind(kind)
                .fetch_all(&mut conn)
                .await
                .expect("query");
            let _ = conn.close().await;
            v
        }
    };
    rows.iter()
        .map(|b| serde_json::from_str(b).expect("JSON body"))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Tests.

#[tokio::test]
async fn oidc_sign_in_with_authorization_code_and_pkce() {
    let t0 = Instant::now();
    let sso = Sso::start(None);
    let url = sso.url().to_owned();
    let issuer = sso.provider.issuer.clone();

    // The login page offers single sign-on.
    let mut alice = Browser::new();
    let login = alice.get(&format!("{url}/ui/login")).await;
    assert_eq!(login.status, 200);
    assert!(
        login.body.contains("/ui/auth/oidc/start?next=/ui/"),
        "{}",
        login.body
    );

    // --- start: the authorization request ------------------------------------------
    let hop = alice
        .get(&format!("{url}/ui/auth/oidc/start?next=/ui/"))
        .await;
    assert_eq!(hop.status, 303, "{hop:?}\n{}", sso.logs());
    let authorize = hop.location.clone().expect("to the provider");
    assert!(
        authorize
            .as_str()
            .starts_with(&format!("{}/auth?", sso.provider.base)),
        "{authorize}"
    );
    let q = query_of(&authorize);
    assert_eq!(
        q.get("response_type").map(String::as_str),
        Some("code"),
        "{q:?}"
    );
    assert_eq!(q.get("client_id").map(String::as_str), Some(CLIENT_ID));
    assert_eq!(
        q.get("redirect_uri").cloned(),
        Some(format!("{url}{CALLBACK_PATH}"))
    );
    let scopes: Vec<&str> = q["scope"].split(' ').collect();
    for s in ["openid", "profile", "email"] {
        assert!(scopes.contains(&s), "scope {s}: {scopes:?}");
    }
    assert_eq!(
        q.get("code_challenge_method").map(String::as_str),
        Some("S256")
    );
    let challenge = &q["code_challenge"];
    // base64url(SHA-256) without padding: 43 characters.
    assert_eq!(challenge.len(), 43, "{challenge}");
    let state = q["state"].clone();
    let nonce = q["nonce"].clone();
    assert!(state.len() >= 16 && nonce.len() >= 16, "{q:?}");
    assert_ne!(state, nonce);
    // The sealed sign-in cookie: HttpOnly, SameSite=Lax, Secure, short-lived, and opaque
    // (neither the state, the nonce nor the verifier readable in it).
    let raw = hop.set_cookie("warrant_oidc").expect("warrant_oidc");
    let (_, sealed, attrs) = parse_set_cookie(raw);
    for flag in ["httponly", "secure"] {
        assert!(attrs.contains_key(flag), "{flag}: {raw}");
    }
    assert_eq!(
        attrs.get("samesite").map(String::as_str),
        Some("Lax"),
        "{raw}"
    );
    assert_eq!(attrs.get("path").map(String::as_str), Some("/"), "{raw}");
    assert_eq!(
        attrs.get("max-age").map(String::as_str),
        Some("600"),
        "{raw}"
    );
    assert!(
        !sealed.contains(&state) && !sealed.contains(&nonce),
        "{raw}"
    );

    // --- the provider: login, then the authorization response ----------------------
    let back = provider_login(&mut alice, &sso, &authorize, "alice").await;
    let bq = query_of(&back);
    assert_eq!(bq.get("state"), Some(&state), "state round-trips: {back}");
    assert_eq!(bq.get("iss"), Some(&issuer), "RFC 9207 iss: {back}");
    assert!(bq.get("code").is_some_and(|c| !c.is_empty()), "{back}");

    // --- the callback: a session --------------------------------------------------
    let hop = alice.get(back.as_str()).await;
    assert_eq!(hop.status, 303, "{hop:?}\n{}", sso.logs());
    assert_eq!(hop.location_str(), format!("{url}/ui/"));
    let raw = hop.set_cookie("warrant_session").expect("session cookie");
    let (_, alice_session, attrs) = parse_set_cookie(raw);
    assert!(alice_session.len() >= 40, "{raw}");
    for flag in ["httponly", "secure"] {
        assert!(attrs.contains_key(flag), "{flag}: {raw}");
    }
    assert_eq!(
        attrs.get("samesite").map(String::as_str),
        Some("Lax"),
        "{raw}"
    );
    assert_eq!(
        attrs.get("max-age").map(String::as_str),
        Some("28800"),
        "{raw}"
    );
    let cleared = hop
        .set_cookie("warrant_oidc")
        .expect("sign-in cookie cleared");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert!(alice.cookie("warrant_oidc").is_none());

    // Signed in, with no role yet: the console greets her (name, "no role", a sign-out
    // form) and says she holds no control-plane role, showing nothing else.
    let page = alice.get(&format!("{url}/ui/")).await;
    assert_signed_in(&page, "alice@example.com", "Alice Admin");
    assert_eq!(page.status, 200, "{page:?}\n{}", sso.logs());
    assert!(
        page.body.contains("no role") && page.body.contains("hold no control-plane role"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("Approval inbox"), "{}", page.body);

    // Provisioned: named by the verified e-mail, display name from the ID token, linked,
    // no roles, no local password.
    let h = api_ok(
        &url,
        ADMIN_TOKEN,
        "GET",
        "/v1/humans/alice@example.com",
        None,
    )
    .await;
    assert_eq!(h["name"], "alice@example.com", "{h}");
    assert_eq!(h["display_name"], "Alice Admin", "{h}");
    assert_eq!(h["roles"], json!([]), "{h}");
    assert_eq!(h["local_password"], false, "{h}");
    assert_eq!(h["oidc"], format!("{issuer} alice"), "{h}");
    assert_eq!(h["disabled"], false, "{h}");

    let changes = audit(&url, "kind=human.changed&subject=human:alice@example.com").await;
    assert_eq!(changes.len(), 1, "{changes:#?}");
    let p = &changes[0];
    assert_eq!(p["actor"], "human:alice@example.com", "{p}");
    assert_eq!(p["payload"]["action"], "provisioned", "{p}");
    assert_eq!(p["payload"]["by"], "oidc", "{p}");
    assert_eq!(p["payload"]["human"]["roles"], json!([]), "{p}");
    assert_eq!(
        p["payload"]["human"]["oidc"],
        json!({ "issuer": issuer, "subject": "alice" }),
        "{p}"
    );
    let sessions = sign_ins(&url).await;
    assert_eq!(sessions.len(), 1, "{sessions:#?}");
    let s = &sessions[0];
    assert_eq!(s["actor"], "human:alice@example.com", "{s}");
    assert_eq!(s["payload"]["method"], "oidc", "{s}");
    assert!(
        s["subject"]
            .as_str()
            .is_some_and(|x| x.starts_with("session:ses_")),
        "{s}"
    );
    assert!(
        p["seq"].as_u64() < s["seq"].as_u64(),
        "provisioned, then signed in"
    );
    // Nothing of the flow's secrets reaches the log.
    let all = serde_json::to_string(&audit(&url, "").await).unwrap();
    for secret in [CLIENT_SECRET, &alice_session, &state, &nonce, challenge] {
        assert!(
            !all.contains(secret),
            "the audit log holds a secret of the flow"
        );
    }

    // A second sign-in of alice (another browser) finds her by the link: no new account
    // change, one more session.
    let mut alice2 = Browser::new();
    let (alice2_session, _) = sso_sign_in(&mut alice2, &sso, "alice").await;
    assert_ne!(alice2_session, alice_session);
    assert_eq!(
        audit(&url, "kind=human.changed&subject=human:alice@example.com")
            .await
            .len(),
        1
    );
    assert_eq!(sign_ins(&url).await.len(), 2);

    // Given a role (two-person grant: asked for with the bootstrap token, approved by
    // another admin), the same session opens the inbox on its next request.
    harness::grant_role(&url, "alice@example.com", "auditor").await;
    let page = alice.get(&format!("{url}/ui/")).await;
    assert_eq!(page.status, 200, "{page:?}");
    assert_signed_in(&page, "alice@example.com", "Alice Admin");
    assert!(
        page.body.contains(r#"<span class="badge">auditor</span>"#),
        "{}",
        page.body
    );

    // --- an admin-made local account gets linked on its first single sign-on --------
    let (st, created) = api(
        &url,
        Some(ADMIN_TOKEN),
        "POST",
        "/v1/humans",
        Some(&json!({ "name": "bob@example.com", "display_name": "Bob (made by an admin)" })),
    )
    .await;
    assert_eq!(st, 201, "{created}");
    assert_eq!(created["oidc"], Value::Null, "{created}");
    let mut bob = Browser::new();
    sso_sign_in(&mut bob, &sso, "bob").await;
    let h = api_ok(&url, ADMIN_TOKEN, "GET", "/v1/humans/bob@example.com", None).await;
    assert_eq!(h["oidc"], format!("{issuer} bob"), "{h}");
    assert_eq!(
        h["display_name"], "Bob (made by an admin)",
        "not overwritten: {h}"
    );
    assert_eq!(h["roles"], json!([]), "{h}");
    let changes = audit(&url, "kind=human.changed&subject=human:bob@example.com").await;
    let actions: Vec<&str> = changes
        .iter()
        .map(|r| r["payload"]["action"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(actions, ["created", "oidc_linked"], "{changes:#?}");
    let linked = &changes[1];
    assert_eq!(linked["actor"], "human:bob@example.com", "{linked}");
    assert_eq!(
        linked["payload"]["human"]["oidc"],
        json!({ "issuer": issuer, "subject": "bob" }),
        "{linked}"
    );
    let bob_page = bob.get(&format!("{url}/ui/")).await;
    assert_signed_in(&bob_page, "bob@example.com", "Bob (made by an admin)");
    assert_eq!(bob_page.status, 200, "no role yet: {bob_page:?}");
    assert!(bob_page.body.contains("hold no control-plane role"));
    let sessions = sign_ins(&url).await;
    assert_eq!(sessions.len(), 3);
    assert_eq!(sessions[2]["actor"], "human:bob@example.com");

    // --- sign-out ---------------------------------------------------------------------
    let csrf = csrf_of(&page.body);
    let hop = alice
        .post_form(&format!("{url}/ui/logout"), &[("_csrf", &csrf)], Some(&url))
        .await;
    assert_eq!(hop.status, 303, "{hop:?}");
    assert_eq!(hop.location_str(), format!("{url}/ui/login"));
    let cleared = hop
        .set_cookie("warrant_session")
        .expect("session cookie cleared");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    // The old cookie (a browser that kept it, or a copy) no longer opens the console.
    let mut stale = Browser::new();
    stale
        .jar
        .insert("warrant_session".into(), alice_session.clone());
    let hop = stale.get(&format!("{url}/ui/")).await;
    assert_eq!(hop.status, 303, "{hop:?}");
    assert_eq!(hop.location_str(), format!("{url}/ui/login?next=/ui/"));
    // Alice's other session, and bob's, are unaffected.
    let other = alice2.get(&format!("{url}/ui/")).await;
    assert_eq!(other.status, 200, "{other:?}");
    assert_signed_in(&other, "alice@example.com", "Alice Admin");
    let other = bob.get(&format!("{url}/ui/")).await;
    assert_signed_in(&other, "bob@example.com", "Bob (made by an admin)");
    let ended: Vec<Value> = audit(&url, "kind=session")
        .await
        .into_iter()
        .filter(|r| r["payload"]["action"] == "ended")
        .collect();
    assert_eq!(ended.len(), 1, "{ended:#?}");
    let e = &ended[0];
    assert_eq!(
        e["subject"], s["subject"],
        "alice's first session ended: {e}"
    );
    assert_eq!(e["payload"]["human"], "alice@example.com", "{e}");
    assert_eq!(e["payload"]["reason"], "signed out", "{e}");
    assert!(
        e["actor"]
            .as_str()
            .is_some_and(|a| a.contains("alice@example.com")),
        "{e}"
    );
    eprintln!(
        "oidc_sign_in_with_authorization_code_and_pkce: {:?}",
        t0.elapsed()
    );
}

#[tokio::test]
async fn oidc_wrong_state_is_refused() {
    let sso = Sso::start(None);
    let url = sso.url().to_owned();
    let mut b = Browser::new();
    let authorize = start_sign_in(&mut b, &sso).await;
    let sealed = b.cookie("warrant_oidc").expect("sign-in cookie");
    let back = provider_login(&mut b, &sso, &authorize, "carol").await;
    let state = query_of(&back)["state"].clone();
    // The right code, the right cookie, another state (a login-CSRF attempt).
    let forged = with_param(&back, "state", Some(&format!("{state}x")));
    let hop = b.get(forged.as_str()).await;
    let reason = assert_refused(
        &sso,
        &hop,
        0,
        "does not match the sign-in started in this browser",
    )
    .await;
    assert!(reason.contains("`state`"), "{reason}");
    // No state at all (with the sign-in cookie the refusal cleared put back).
    b.jar.insert("warrant_oidc".into(), sealed);
    let stateless = with_param(&back, "state", None);
    let hop = b.get(stateless.as_str()).await;
    assert_refused(&sso, &hop, 1, "carries no `state`").await;
    assert!(b.cookie("warrant_session").is_none());
    let (st, _) = api(
        &url,
        Some(ADMIN_TOKEN),
        "GET",
        "/v1/humans/carol@example.com",
        None,
    )
    .await;
    assert_eq!(st, 404, "nobody was provisioned");
    assert!(sign_ins(&url).await.is_empty());
}

#[tokio::test]
async fn oidc_wrong_nonce_is_refused() {
    let sso = Sso::start(None);
    let url = sso.url().to_owned();
    let mut b = Browser::new();
    // warrant's authorization request: its state, PKCE challenge, nonce, client, redirect.
    let ours = start_sign_in(&mut b, &sso).await;
    let q = query_of(&ours);
    let nonce = q["nonce"].clone();
    assert!(!nonce.is_empty());
    // An authorization request of our own at the provider: same client, redirect URI,
    // scopes, state and code challenge, another nonce (an ID token minted for another
    // sign-in, injected into this one).
    let mut theirs = Url::parse(&format!("{}/auth", sso.provider.base)).unwrap();
    theirs
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &q["client_id"])
        .append_pair("redirect_uri", &q["redirect_uri"])
        .append_pair("scope", &q["scope"])
        .append_pair("state", &q["state"])
        .append_pair("code_challenge", &q["code_challenge"])
        .append_pair("code_challenge_method", "S256")
        .append_pair("nonce", "an-attackers-nonce-0123456789abcdef");
    let back = provider_login(&mut b, &sso, &theirs, "dave").await;
    assert_eq!(query_of(&back)["state"], q["state"]);
    // Delivered with warrant's own cookie: state and PKCE verifier match, so the code
    // exchange succeeds; the ID token's nonce is not warrant's.
    assert!(b.cookie("warrant_oidc").is_some());
    let hop = b.get(back.as_str()).await;
    let reason = assert_refused(&sso, &hop, 0, "the ID token is not valid").await;
    assert!(reason.to_lowercase().contains("nonce"), "{reason}");
    assert!(
        !reason.contains("code exchange"),
        "the exchange itself succeeded: {reason}"
    );
    assert!(b.cookie("warrant_session").is_none());
    assert!(sign_ins(&url).await.is_empty());
    let (st, _) = api(
        &url,
        Some(ADMIN_TOKEN),
        "GET",
        "/v1/humans/dave@example.com",
        None,
    )
    .await;
    assert_eq!(st, 404, "nobody was provisioned");
    // The provider did see a successful token request (no grant error logged).
    assert!(
        !sso.provider.log().contains("grant.error"),
        "{}",
        sso.logs()
    );
}

#[tokio::test]
async fn oidc_wrong_issuer_is_refused() {
    // (a) The provider presents another issuer string for the same server: warrant is
    // configured with http://127.0.0.1:PORT, discovery there says http://localhost:PORT.
    {
        let port = provider_port();
        let other = format!("http://localhost:{port}");
        let sso = Sso::start_on(port, Some(&other));
        let url = sso.url().to_owned();
        let mut b = Browser::new();
        let hop = b.get(&format!("{url}/ui/auth/oidc/start?next=/ui/")).await;
        // Refused at the start, by discovery (OpenID Connect Discovery §4.3: the issuer in
        // the metadata must be the one asked for): no redirect, no sign-in cookie.
        assert_eq!(hop.status, 503, "{hop:?}\n{}", sso.logs());
        assert!(
            hop.body.contains("Single sign-on unavailable"),
            "{}",
            hop.body
        );
        assert!(
            hop.body.contains("could not be used") && hop.body.contains(&other),
            "the page names the mismatching issuer: {}",
            hop.body
        );
        assert!(
            hop.location.is_none() && hop.set_cookies.is_empty(),
            "{hop:?}"
        );
        assert!(b.jar.is_empty());
        // Again (nothing was cached from the failed discovery).
        let hop = b.get(&format!("{url}/ui/auth/oidc/start?next=/ui/")).await;
        assert_eq!(hop.status, 503);
        // A callback without a started sign-in gets nowhere either.
        let hop = b
            .get(&format!(
                "{url}{CALLBACK_PATH}?code=abc&state=def&iss={other}"
            ))
            .await;
        assert_refused(&sso, &hop, 0, "no sign-in in progress").await;
        assert!(
            sign_ins(&url).await.is_empty(),
            "no session was ever issued"
        );
        let humans = api_ok(&url, ADMIN_TOKEN, "GET", "/v1/humans", None).await;
        assert_eq!(humans["items"], json!([]), "{humans}");
    }

    // (b) RFC 9207: a normal flow whose authorization response names another issuer.
    let sso = Sso::start(None);
    let url = sso.url().to_owned();
    let issuer = sso.provider.issuer.clone();
    let mut b = Browser::new();
    let authorize = start_sign_in(&mut b, &sso).await;
    let sealed = b.cookie("warrant_oidc").expect("sign-in cookie");
    let back = provider_login(&mut b, &sso, &authorize, "alice").await;
    assert_eq!(query_of(&back).get("iss"), Some(&issuer));
    let mixed_up = with_param(&back, "iss", Some("https://evil.example"));
    let hop = b.get(mixed_up.as_str()).await;
    let reason = assert_refused(&sso, &hop, 0, "comes from issuer `https://evil.example`").await;
    assert!(reason.contains(&issuer), "{reason}");
    assert!(sign_ins(&url).await.is_empty());

    // The browser dropped the sign-in cookie with the refusal: the same code and state
    // with the right `iss` are refused for that reason, not by the provider.
    assert!(b.cookie("warrant_oidc").is_none());
    let hop = b.get(back.as_str()).await;
    assert_refused(&sso, &hop, 1, "no sign-in in progress").await;

    // RFC 9207 §2.4: the provider says it sends `iss`, so a response without it is
    // refused too (before the code is used).
    b.jar.insert("warrant_oidc".into(), sealed.clone());
    let hop = b.get(with_param(&back, "iss", None).as_str()).await;
    assert_refused(&sso, &hop, 2, "carries no `iss`").await;
    // Issuers compare as simple strings: a trailing slash is another issuer.
    b.jar.insert("warrant_oidc".into(), sealed.clone());
    let slashed = with_param(&back, "iss", Some(&format!("{issuer}/")));
    let hop = b.get(slashed.as_str()).await;
    assert_refused(&sso, &hop, 3, "comes from issuer").await;

    // The refusals happened before the code was used: the code is still good at the
    // provider, and the sealed cookie is stateless (valid until it expires), so a client
    // that kept it completes the sign-in with the right `iss`.
    b.jar.insert("warrant_oidc".into(), sealed.clone());
    let hop = b.get(back.as_str()).await;
    assert_eq!(hop.status, 303, "{hop:?}\n{}", sso.logs());
    assert!(b.cookie("warrant_session").is_some());
    assert_eq!(sign_ins(&url).await.len(), 1);

    // Used once, the code is gone: replaying the same response with the same cookie is
    // refused at the code exchange.
    let mut replay = Browser::new();
    replay.jar.insert("warrant_oidc".into(), sealed);
    let hop = replay.get(back.as_str()).await;
    assert_refused(&sso, &hop, 4, "the code exchange failed").await;
    assert_eq!(sign_ins(&url).await.len(), 1);
    // None of the refusals recorded the code or the state.
    let q = query_of(&back);
    let all = serde_json::to_string(&audit(&url, "").await).unwrap();
    assert!(!all.contains(&q["code"]) && !all.contains(&q["state"]));
}

#[tokio::test]
async fn oidc_tampered_or_missing_login_cookie_is_refused() {
    let sso = Sso::start(None);
    let url = sso.url().to_owned();
    let mut b = Browser::new();
    let authorize = start_sign_in(&mut b, &sso).await;
    let sealed = b.cookie("warrant_oidc").expect("sign-in cookie");
    let back = provider_login(&mut b, &sso, &authorize, "carol").await;

    // No sign-in cookie (another browser, or it expired).
    b.jar.remove("warrant_oidc");
    let hop = b.get(back.as_str()).await;
    assert_refused(&sso, &hop, 0, "no sign-in in progress").await;

    // One character changed in the middle (still valid base64url): AES-GCM refuses it.
    let mut chars: Vec<char> = sealed.chars().collect();
    let i = chars.len() / 2;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    let tampered: String = chars.into_iter().collect();
    assert_ne!(tampered, sealed);
    b.jar.insert("warrant_oidc".into(), tampered);
    let hop = b.get(back.as_str()).await;
    assert_refused(&sso, &hop, 1, "does not open").await;

    // Not base64url at all.
    b.jar.insert("warrant_oidc".into(), format!("{sealed}!*"));
    let hop = b.get(back.as_str()).await;
    assert_refused(&sso, &hop, 2, "malformed").await;

    assert!(b.cookie("warrant_session").is_none());
    assert!(sign_ins(&url).await.is_empty());

    // The real cookie with the same response works: the refusals above were the cookie's.
    b.jar.insert("warrant_oidc".into(), sealed);
    let hop = b.get(back.as_str()).await;
    assert_eq!(hop.status, 303, "{hop:?}\n{}", sso.logs());
    assert!(b.cookie("warrant_session").is_some());
    assert_eq!(sign_ins(&url).await.len(), 1);
}

#[tokio::test]
async fn local_sign_in_uses_argon2id_and_sessions_expire() {
    const TTL: u64 = 300;
    const NAME: &str = "erin@example.com";
    const PASSWORD: &str = "a local password of erin, 42";
    const NEW_PASSWORD: &str = "erin's own password, chosen at first sign-in";
    const WRONG: &str = "not erin's password at all 17";
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path(), Some(TTL), None);
    let server = start_server(dir.path(), &config);
    let url = server.url.clone();

    // --- the account and its stored hash -----------------------------------------------
    let (st, created) = api(
        &url,
        Some(ADMIN_TOKEN),
        "POST",
        "/v1/humans",
        Some(&json!({ "name": NAME, "display_name": "Erin Example", "password": PASSWORD })),
    )
    .await;
    assert_eq!(st, 201, "{created}");
    assert_eq!(created["local_password"], true, "{created}");
    let humans = gov_bodies(&server.data_dir, "human").await;
    let erin = humans
        .iter()
        .find(|h| h["name"] == NAME)
        .unwrap_or_else(|| panic!("{humans:#?}"));
    let hash = erin["password_hash"]
        .as_str()
        .expect("password_hash")
        .to_owned();
    assert!(
        hash.starts_with("$argon2id$v=19$"),
        "argon2id PHC string: {hash}"
    );
    assert!(!hash.contains(PASSWORD));
    // A role, so that the console's inbox opens for her (a human with no role is
    // signed in but may read nothing).
    harness::grant_role(&url, NAME, "auditor").await;
    // Too short a password is refused (NIST SP 800-63B length rule).
    let (st, b) = api(
        &url,
        Some(ADMIN_TOKEN),
        "POST",
        "/v1/humans",
        Some(&json!({ "name": "short@example.com", "password": "eleven char" })),
    )
    .await;
    assert_eq!(st, 400, "{b}");

    // --- wrong password ------------------------------------------------------------------
    let mut b = Browser::new();
    let hop = b
        .post_form(
            &format!("{url}/ui/login"),
            &[("username", NAME), ("password", WRONG), ("next", "/ui/")],
            Some(&url),
        )
        .await;
    assert_eq!(hop.status, 401, "{hop:?}");
    assert!(
        hop.body.contains("Wrong username or password."),
        "{}",
        hop.body
    );
    assert!(
        !hop.body.contains(WRONG),
        "the page does not echo the password"
    );
    assert!(hop.set_cookie("warrant_session").is_none(), "{hop:?}");
    let refused = audit(
        &url,
        "kind=request.refused&subject=request:POST%20/ui/login",
    )
    .await;
    assert_eq!(refused.len(), 1, "{refused:#?}");
    let r = &refused[0];
    assert_eq!(r["actor"], "anonymous", "{r}");
    assert_eq!(r["subject"], "request:POST /ui/login", "{r}");
    assert!(
        r["payload"]["reason"]
            .as_str()
            .is_some_and(|x| x.contains(NAME)),
        "{r}"
    );
    // Unknown user: the same answer.
    let hop = b
        .post_form(
            &format!("{url}/ui/login"),
            &[
                ("username", "nobody@example.com"),
                ("password", WRONG),
                ("next", "/ui/"),
            ],
            None,
        )
        .await;
    assert_eq!(hop.status, 401, "{hop:?}");
    assert!(hop.body.contains("Wrong username or password."));
    // A cross-origin sign-in form (login CSRF) is refused outright.
    let hop = b
        .post_form(
            &format!("{url}/ui/login"),
            &[("username", NAME), ("password", PASSWORD), ("next", "/ui/")],
            Some("http://evil.example"),
        )
        .await;
    assert_eq!(hop.status, 403, "{hop:?}");
    assert!(hop.set_cookie("warrant_session").is_none());

    // --- right one-time password: replace it first, then a session ------------------
    let hop = b
        .post_form(
            &format!("{url}/ui/login"),
            &[("username", NAME), ("password", PASSWORD), ("next", "/ui/")],
            Some(&url),
        )
        .await;
    assert_eq!(hop.status, 200, "{hop:?}\n{}", server.log_text());
    assert!(hop.body.contains("Choose a new password"), "{}", hop.body);
    assert!(
        hop.set_cookie("warrant_session").is_none(),
        "no session before the change"
    );
    let hop = b
        .post_form(
            &format!("{url}/ui/password"),
            &[
                ("username", NAME),
                ("current_password", PASSWORD),
                ("new_password", NEW_PASSWORD),
                ("next", "/ui/"),
            ],
            Some(&url),
        )
        .await;
    assert_eq!(hop.status, 303, "{hop:?}\n{}", server.log_text());
    assert_eq!(hop.location_str(), format!("{url}/ui/"));
    let raw = hop
        .set_cookie("warrant_session")
        .expect("session cookie")
        .to_owned();
    let (_, secret, attrs) = parse_set_cookie(&raw);
    assert_eq!(attrs.get("max-age"), Some(&TTL.to_string()), "{raw}");
    assert!(attrs.contains_key("httponly"), "{raw}");
    assert!(attrs.contains_key("secure"), "{raw}");
    assert_eq!(
        attrs.get("samesite").map(String::as_str),
        Some("Lax"),
        "{raw}"
    );
    assert_eq!(attrs.get("path").map(String::as_str), Some("/"), "{raw}");
    assert!(!attrs.contains_key("domain"), "host-only: {raw}");
    let page = b.get(&format!("{url}/ui/")).await;
    assert_eq!(page.status, 200, "{page:?}");
    assert_signed_in(&page, NAME, "Erin Example");

    // The session expires TTL after it was made: the stored session and its record.
    let sessions = gov_bodies(&server.data_dir, "session").await;
    assert_eq!(sessions.len(), 1, "{sessions:#?}");
    let s = &sessions[0];
    assert_eq!(s["human"], NAME, "{s}");
    assert_eq!(s["method"], "password", "{s}");
    let created_ms = s["created_ms"].as_i64().expect("created_ms");
    let expires_ms = s["expires_ms"].as_i64().expect("expires_ms");
    assert_eq!(expires_ms - created_ms, TTL as i64 * 1000, "{s}");
    assert!(
        !s.to_string().contains(&secret),
        "only the cookie's hash is stored: {s}"
    );
    let recs = audit(&url, "kind=session").await;
    assert_eq!(recs.len(), 1, "{recs:#?}");
    let rec = &recs[0];
    assert_eq!(
        rec["subject"],
        format!("session:{}", s["id"].as_str().unwrap_or_default())
    );
    assert_eq!(rec["actor"], format!("human:{NAME}"), "{rec}");
    assert_eq!(rec["payload"]["action"], "signed_in", "{rec}");
    assert_eq!(rec["payload"]["method"], "password", "{rec}");
    assert_eq!(
        rec["payload"]["expires_ms"].as_i64(),
        Some(expires_ms),
        "{rec}"
    );

    // --- CSRF on sign-out --------------------------------------------------------------
    let csrf = csrf_of(&page.body);
    assert!(csrf.len() >= 24, "{csrf}");
    let hop = b
        .post_form(
            &format!("{url}/ui/logout"),
            &[("_csrf", "not-the-token")],
            Some(&url),
        )
        .await;
    assert_eq!(hop.status, 403, "wrong anti-CSRF token: {hop:?}");
    assert!(hop.set_cookie("warrant_session").is_none());
    let hop = b
        .post_form(&format!("{url}/ui/logout"), &[("_csrf", "")], None)
        .await;
    assert_eq!(hop.status, 403, "empty anti-CSRF token: {hop:?}");
    let hop = b
        .post_form(
            &format!("{url}/ui/logout"),
            &[("_csrf", &csrf)],
            Some("http://evil.example"),
        )
        .await;
    assert_eq!(hop.status, 403, "foreign Origin: {hop:?}");
    assert!(hop.body.contains("cross-origin"), "{}", hop.body);
    assert!(hop.set_cookie("warrant_session").is_none());
    assert_eq!(
        b.get(&format!("{url}/ui/")).await.status,
        200,
        "the session survives refused sign-outs"
    );

    // --- what never leaks ------------------------------------------------------------------
    let everything = format!(
        "{}{}{}",
        serde_json::to_string(&audit(&url, "").await).unwrap(),
        api_ok(&url, ADMIN_TOKEN, "GET", "/v1/humans", None).await,
        api_ok(
            &url,
            ADMIN_TOKEN,
            "GET",
            &format!("/v1/humans/{NAME}"),
            None
        )
        .await,
    );
    for secret in [
        PASSWORD,
        NEW_PASSWORD,
        WRONG,
        hash.as_str(),
        "$argon2",
        "password_hash",
        &secret,
    ] {
        assert!(
            !everything.contains(secret),
            "`{secret}` appears in the audit log or the humans API"
        );
    }

    // A proper sign-out (same origin, right token) ends the session.
    let hop = b
        .post_form(&format!("{url}/ui/logout"), &[("_csrf", &csrf)], Some(&url))
        .await;
    assert_eq!(hop.status, 303, "{hop:?}");
    let mut stale = Browser::new();
    stale.jar.insert("warrant_session".into(), secret);
    let hop = stale.get(&format!("{url}/ui/")).await;
    assert_eq!(hop.status, 303);
    assert_eq!(hop.location_str(), format!("{url}/ui/login?next=/ui/"));
}
