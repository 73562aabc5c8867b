//! Malformed, unauthenticated and conflicting input against every endpoint of the real
//! server: every answer is a 4xx with the `{error, message}` JSON body, never a 5xx, and
//! nothing stored is lost or corrupted by the attempts.

// Test code: a panic is how a check fails.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::harness::*;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const WRONG_TOKEN: &str = "wrt_this_is_not_the_admin_token_0123456789abcdefghij";
/// Just over the default 1 MiB body limit.
const OVERSIZE: usize = 1024 * 1024 + 64 * 1024;

#[derive(Clone)]
enum Auth {
    Admin,
    Missing,
    /// `Authorization: <raw bytes>`.
    Raw(Vec<u8>),
}

#[derive(Clone)]
enum Body {
    Empty,
    Json(Value),
    /// Bytes with an optional `Content-Type`.
    Raw(Option<&'static str>, Vec<u8>),
}

type Check = Box<dyn Fn(&Value) -> Result<(), String>>;

struct Case {
    name: String,
    method: Method,
    path: String,
    auth: Auth,
    body: Body,
    status: u16,
    code: &'static str,
    msg: String,
    check: Option<Check>,
}

fn case(name: impl Into<String>, method: Method, path: impl Into<String>) -> Case {
    Case {
        name: name.into(),
        method,
        path: path.into(),
        auth: Auth::Admin,
        body: Body::Empty,
        status: 0,
        code: "",
        msg: String::new(),
        check: None,
    }
}

impl Case {
    fn json(mut self, v: Value) -> Self {
        self.body = Body::Json(v);
        self
    }
    fn raw(mut self, content_type: Option<&'static str>, bytes: impl Into<Vec<u8>>) -> Self {
        self.body = Body::Raw(content_type, bytes.into());
        self
    }
    fn auth(mut self, a: Auth) -> Self {
        self.auth = a;
        self
    }
    fn expect(mut self, status: u16, code: &'static str, msg: impl Into<String>) -> Self {
        self.status = status;
        self.code = code;
        self.msg = msg.into();
        self
    }
    fn check(mut self, f: impl Fn(&Value) -> Result<(), String> + 'static) -> Self {
        self.check = Some(Box::new(f));
        self
    }
}

struct Answer {
    status: u16,
    content_type: String,
    www_authenticate: Option<String>,
    text: String,
}

/// One connection per request: the server drops a connection after answering early (401,
/// 413) without reading the whole body, which would make the *next* pooled request fail
/// (see `early_answers_to_large_bodies_keep_or_close_the_connection_cleanly`).
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("http client")
}

async fn send(
    http: &reqwest::Client,
    base: &str,
    method: Method,
    path: &str,
    auth: &Auth,
    body: &Body,
) -> Result<Answer, String> {
    let mut req = http.request(method, format!("{base}{path}"));
    match auth {
        Auth::Admin => req = req.header(AUTHORIZATION, format!("Bearer {ADMIN_TOKEN}")),
        Auth::Missing => {}
        Auth::Raw(bytes) => {
            let v = HeaderValue::from_bytes(bytes).map_err(|e| format!("bad test header: {e}"))?;
            req = req.header(AUTHORIZATION, v);
        }
    }
    match body {
        Body::Empty => {}
        Body::Json(v) => {
            req = req
                .header(CONTENT_TYPE, "application/json")
                .body(serde_json::to_vec(v).expect("serialize"));
        }
        Body::Raw(ct, bytes) => {
            if let Some(ct) = ct {
                req = req.header(CONTENT_TYPE, *ct);
            }
            req = req.body(bytes.clone());
        }
    }
    let res = req
        .send()
        .await
        .map_err(|e| format!("transport error: {e:?}"))?;
    let status = res.status().as_u16();
    let header = |name| {
        res.headers()
            .get(name)
            .map(|v: &HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let content_type = header(CONTENT_TYPE).unwrap_or_default();
    let www_authenticate = header(WWW_AUTHENTICATE);
    let text = res.text().await.map_err(|e| format!("reading body: {e}"))?;
    Ok(Answer {
        status,
        content_type,
        www_authenticate,
        text,
    })
}

/// The error contract every failed request must honour; returns the parsed body.
fn error_shape(a: &Answer) -> Result<Value, String> {
    if a.status >= 500 {
        return Err(format!("server error {}: {}", a.status, a.text));
    }
    if !a.content_type.starts_with("application/json") {
        return Err(format!(
            "content-type `{}` is not JSON (body: {})",
            a.content_type,
            clip(&a.text)
        ));
    }
    let v: Value = serde_json::from_str(&a.text)
        .map_err(|e| format!("body is not JSON ({e}): {}", clip(&a.text)))?;
    let ok = v.is_object()
        && v["error"].as_str().is_some_and(|s| !s.is_empty())
        && v["message"].as_str().is_some_and(|s| !s.is_empty());
    if !ok {
        return Err(format!(
            "body lacks string `error`/`message`: {}",
            clip(&a.text)
        ));
    }
    if a.status == 401
        && !a
            .www_authenticate
            .as_deref()
            .is_some_and(|h| h.starts_with("Bearer"))
    {
        return Err(format!(
            "401 without `WWW-Authenticate: Bearer …` (got {:?})",
            a.www_authenticate
        ));
    }
    Ok(v)
}

fn clip(s: &str) -> String {
    let mut out: String = s.chars().take(300).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

/// Runs the cases, returning one line per failure.
async fn run_cases(server: &Server, cases: &[Case]) -> Vec<String> {
    let http = http();
    let mut failures = vec![];
    for c in cases {
        let label = format!("[{}] {} {}", c.name, c.method, clip(&c.path));
        let a = match send(
            &http,
            &server.url,
            c.method.clone(),
            &c.path,
            &c.auth,
            &c.body,
        )
        .await
        {
            Ok(a) => a,
            Err(e) => {
                failures.push(format!("{label}: {e}"));
                continue;
            }
        };
        if a.status != c.status {
            failures.push(format!(
                "{label}: status {} (want {}): {}",
                a.status,
                c.status,
                clip(&a.text)
            ));
            continue;
        }
        let v = match error_shape(&a) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{label}: {e}"));
                continue;
            }
        };
        if v["error"] != c.code {
            failures.push(format!(
                "{label}: error code {} (want `{}`): {}",
                v["error"],
                c.code,
                clip(&a.text)
            ));
            continue;
        }
        let message = v["message"].as_str().unwrap_or_default();
        if !message.contains(&c.msg) {
            failures.push(format!(
                "{label}: message {message:?} does not contain {:?}",
                c.msg
            ));
            continue;
        }
        if let Some(check) = &c.check {
            if let Err(e) = check(&v) {
                failures.push(format!("{label}: {e}: {}", clip(&a.text)));
            }
        }
    }
    failures
}

/// Cedar diagnostics in `details` carry a 1-based line and column.
fn has_line_and_column(source: &'static str) -> impl Fn(&Value) -> Result<(), String> {
    move |v: &Value| {
        let d = v["details"]
            .as_array()
            .filter(|d| !d.is_empty())
            .ok_or("`details` is not a non-empty array")?;
        let good = d.iter().any(|x| {
            x["source"] == source
                && x["line"].as_u64().is_some_and(|n| n >= 1)
                && x["column"].as_u64().is_some_and(|n| n >= 1)
        });
        if good {
            Ok(())
        } else {
            Err(format!(
                "no `{source}` diagnostic with line and column >= 1"
            ))
        }
    }
}

/// An authorize request whose context nests 300 arrays deep.
fn deep_context(principal: &str) -> String {
    format!(
        r#"{{"principal":"{principal}","action":"App::Action::\"read\"","resource":"App::Document::\"q3\"","context":{{"risk":{}1{}}}}}"#,
        "[".repeat(300),
        "]".repeat(300)
    )
}

fn big(field: &str) -> Value {
    json!({ field: "a".repeat(OVERSIZE) })
}

fn ident(name: &str) -> Value {
    json!({ "name": name, "kind": "agent", "environment": "dev", "owner": "alice@example.com" })
}

fn with(mut v: Value, key: &str, val: Value) -> Value {
    v[key] = val;
    v
}

fn without(mut v: Value, key: &str) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove(key);
    }
    v
}

struct Fixture {
    /// Active, dev, role `reader`: would be allowed to read at low risk.
    keeper: String,
    keeper_spiffe: String,
    suspended: String,
    retired: String,
    /// The newest audit record, not yet covered by a checkpoint.
    uncheckpointed_seq: u64,
}

async fn setup(server: &Server) -> Fixture {
    let c = server.client();
    c.put_policy(Some(SCHEMA), POLICIES, Some("bad-input baseline"))
        .await
        .expect("put policy");
    let keeper = create_identity(&c, "keeper", "dev", &["reader"]).await;
    let suspended = create_identity(&c, "sleeper", "dev", &["reader"]).await;
    let retired = create_identity(&c, "gone", "prod", &[]).await;
    c.lifecycle(&suspended, "suspend", Some("setup"))
        .await
        .expect("suspend");
    c.lifecycle(&retired, "retire", Some("setup"))
        .await
        .expect("retire");
    c.checkpoint().await.expect("checkpoint");
    let k = c
        .update_identity(&keeper, &json!({ "description": "the control identity" }))
        .await
        .expect("patch keeper");
    let newest = c
        .audit(&[("order", Some("desc".into())), ("limit", Some("1".into()))])
        .await
        .expect("audit");
    Fixture {
        keeper_spiffe: k["spiffe_id"].as_str().expect("spiffe").to_owned(),
        keeper,
        suspended,
        retired,
        uncheckpointed_seq: newest["items"][0]["seq"].as_u64().expect("seq"),
    }
}

/// A request each secured endpoint would accept from the admin.
fn valid_requests(f: &Fixture) -> Vec<(Method, String, Option<Value>)> {
    let k = &f.keeper;
    vec![
        (Method::GET, "/v1/identities".into(), None),
        (
            Method::POST,
            "/v1/identities".into(),
            Some(
                json!({"name": "sneaky", "kind": "agent", "environment": "dev",
                        "owner": "mallory@example.com", "roles": ["reader"]}),
            ),
        ),
        (Method::GET, format!("/v1/identities/{k}"), None),
        (
            Method::PATCH,
            format!("/v1/identities/{k}"),
            Some(json!({"owner": "mallory@example.com"})),
        ),
        (
            Method::POST,
            format!("/v1/identities/{k}/suspend"),
            Some(json!({"reason": "x"})),
        ),
        (
            Method::POST,
            format!("/v1/identities/{}/resume", f.suspended),
            Some(json!({"reason": "x"})),
        ),
        (
            Method::POST,
            format!("/v1/identities/{k}/retire"),
            Some(json!({"reason": "x"})),
        ),
        (Method::GET, "/v1/policies".into(), None),
        (
            Method::PUT,
            "/v1/policies".into(),
            Some(json!({"policies": "permit (principal, action, resource);"})),
        ),
        (
            Method::POST,
            "/v1/policies/validate".into(),
            Some(json!({"policies": POLICIES})),
        ),
        (Method::GET, "/v1/policies/versions".into(), None),
        (Method::GET, "/v1/policies/versions/1".into(), None),
        (Method::POST, "/v1/authorize".into(), Some(read_req(k, 1))),
        (
            Method::POST,
            "/v1/authorize/batch".into(),
            Some(json!({"requests": [read_req(k, 1)]})),
        ),
        (Method::GET, "/v1/audit".into(), None),
        (Method::GET, "/v1/audit/records/0".into(), None),
        (Method::GET, "/v1/audit/proof/0".into(), None),
        (Method::GET, "/v1/audit/checkpoints".into(), None),
        (Method::POST, "/v1/audit/checkpoints".into(), None),
    ]
}

fn auth_cases(f: &Fixture) -> Vec<Case> {
    let mut cases = vec![];
    let variants: Vec<(&str, Auth, &str)> = vec![
        ("no token", Auth::Missing, "missing `Authorization"),
        (
            "wrong token",
            Auth::Raw(format!("Bearer {WRONG_TOKEN}").into_bytes()),
            "invalid or revoked token",
        ),
        (
            "admin token plus a character",
            Auth::Raw(format!("Bearer {ADMIN_TOKEN}x").into_bytes()),
            "invalid or revoked token",
        ),
        (
            "basic auth",
            Auth::Raw(b"Basic YWRtaW46YWRtaW4=".to_vec()),
            "expected a bearer token",
        ),
        (
            "token without scheme",
            Auth::Raw(ADMIN_TOKEN.as_bytes().to_vec()),
            "expected a bearer token",
        ),
        (
            "non-ASCII header",
            Auth::Raw(b"Bearer \xff\xfe".to_vec()),
            "malformed Authorization header",
        ),
    ];
    for (method, path, body) in valid_requests(f) {
        for (what, auth, msg) in &variants {
            let mut c = case(*what, method.clone(), path.clone())
                .auth(auth.clone())
                .expect(401, "unauthorized", *msg);
            if let Some(b) = &body {
                c = c.json(b.clone());
            }
            cases.push(c);
        }
    }
    // Authentication comes before anything about the body.
    cases.push(
        case("no token, invalid JSON", Method::POST, "/v1/identities")
            .auth(Auth::Missing)
            .raw(Some("application/json"), "{bad")
            .expect(401, "unauthorized", "Authorization"),
    );
    cases.push(
        case("no token, wrong content type", Method::PUT, "/v1/policies")
            .auth(Auth::Missing)
            .raw(Some("text/plain"), "permit(principal, action, resource);")
            .expect(401, "unauthorized", "Authorization"),
    );
    cases.push(
        case("wrong token, oversized body", Method::POST, "/v1/authorize")
            .auth(Auth::Raw(format!("Bearer {WRONG_TOKEN}").into_bytes()))
            .json(big("principal"))
            .expect(401, "unauthorized", "invalid or revoked token"),
    );
    cases
}

/// Body-level failures shared by every endpoint that takes a JSON body.
fn body_cases(name: &str, method: Method, path: &str, unknown_ok: Value) -> Vec<Case> {
    let p = || path.to_owned();
    let m = || method.clone();
    let valid_text = unknown_ok.to_string();
    // Invalid bytes inside the first string value (after all keys before it parsed fine).
    let at = valid_text.find("\":\"").expect("a string value") + 3;
    let mut invalid_utf8 = valid_text.as_bytes()[..at].to_vec();
    invalid_utf8.extend_from_slice(b"\xff\xfe");
    invalid_utf8.extend_from_slice(&valid_text.as_bytes()[at..]);
    let lone_surrogate = format!("{}\\ud800{}", &valid_text[..at], &valid_text[at..]);
    vec![
        case(format!("{name}: invalid JSON"), m(), p())
            .raw(Some("application/json"), "{bad")
            .expect(400, "invalid_json", "not valid JSON"),
        case(format!("{name}: truncated JSON"), m(), p())
            .raw(
                Some("application/json"),
                valid_text[..valid_text.len() - 1].to_owned(),
            )
            .expect(400, "invalid_json", "EOF"),
        case(format!("{name}: trailing garbage"), m(), p())
            .raw(Some("application/json"), format!("{valid_text} {{}}"))
            .expect(400, "invalid_json", "trailing characters"),
        case(format!("{name}: invalid UTF-8 in a string"), m(), p())
            .raw(Some("application/json"), invalid_utf8)
            .expect(400, "invalid_json", "not valid JSON"),
        case(format!("{name}: lone surrogate escape"), m(), p())
            .raw(Some("application/json"), lone_surrogate)
            .expect(400, "invalid_json", "not valid JSON"),
        case(format!("{name}: empty body"), m(), p())
            .raw(Some("application/json"), "")
            .expect(400, "invalid_json", "not valid JSON"),
        case(format!("{name}: JSON null"), m(), p())
            .raw(Some("application/json"), "null")
            .expect(400, "invalid_request", "invalid request body"),
        case(format!("{name}: JSON array"), m(), p())
            .raw(Some("application/json"), "[]")
            .expect(400, "invalid_request", "invalid request body"),
        case(format!("{name}: JSON string"), m(), p())
            .raw(Some("application/json"), "\"x\"")
            .expect(400, "invalid_request", "invalid request body"),
        case(format!("{name}: text/plain"), m(), p())
            .raw(Some("text/plain"), serde_json::to_vec(&unknown_ok).unwrap())
            .expect(415, "unsupported_media_type", "application/json"),
        case(format!("{name}: form content type"), m(), p())
            .raw(Some("application/x-www-form-urlencoded"), "a=b")
            .expect(415, "unsupported_media_type", "application/json"),
        case(format!("{name}: no content type"), m(), p())
            .raw(None, serde_json::to_vec(&unknown_ok).unwrap())
            .expect(415, "unsupported_media_type", "application/json"),
        case(format!("{name}: unknown field"), m(), p())
            .json(with(unknown_ok.clone(), "sneaky_field", json!(true)))
            .expect(400, "invalid_request", "sneaky_field"),
        case(format!("{name}: oversized body"), m(), p())
            .json(with(unknown_ok, "padding", json!("a".repeat(OVERSIZE))))
            .expect(413, "payload_too_large", "too large"),
    ]
}

fn identity_cases(f: &Fixture) -> Vec<Case> {
    let post = |name: &str, body: Value| case(name, Method::POST, "/v1/identities").json(body);
    let bad = |name: &str, field: &str, val: Value, msg: &str| {
        post(name, with(ident("fresh"), field, val)).expect(400, "invalid_request", msg)
    };
    let mut cases = body_cases(
        "create identity",
        Method::POST,
        "/v1/identities",
        ident("fresh"),
    );
    cases.extend([
        post("missing owner", without(ident("fresh"), "owner")).expect(
            400,
            "invalid_request",
            "owner",
        ),
        post("missing name", without(ident("fresh"), "name")).expect(
            400,
            "invalid_request",
            "name",
        ),
        post("missing kind", without(ident("fresh"), "kind")).expect(
            400,
            "invalid_request",
            "kind",
        ),
        post(
            "missing environment",
            without(ident("fresh"), "environment"),
        )
        .expect(400, "invalid_request", "environment"),
        post("empty object", json!({})).expect(400, "invalid_request", "missing field"),
        bad("owner null", "owner", json!(null), "owner"),
        bad("name is a number", "name", json!(5), "name"),
        bad("kind is a bool", "kind", json!(true), "kind"),
        bad("roles is a string", "roles", json!("reader"), "roles"),
        bad("roles holds numbers", "roles", json!([1, 2]), "roles"),
        bad(
            "entitlements is an object",
            "entitlements",
            json!({}),
            "entitlements",
        ),
        bad(
            "description is an array",
            "description",
            json!([]),
            "description",
        ),
        bad("empty owner", "owner", json!(""), "owner"),
        bad("whitespace owner", "owner", json!("  \t "), "owner"),
        bad("owner with a space", "owner", json!("alice smith"), "owner"),
        bad("owner with a quote", "owner", json!("al\"ice"), "owner"),
        bad("owner with NUL", "owner", json!("alice\u{0}"), "owner"),
        bad("owner too long", "owner", json!("a".repeat(255)), "owner"),
        bad("empty name", "name", json!(""), "name"),
        bad("upper-case name", "name", json!("Fresh"), "name"),
        bad("name with a space", "name", json!("fresh bot"), "name"),
        bad("name with a slash", "name", json!("a/b"), "name"),
        bad("name starting with a dash", "name", json!("-fresh"), "name"),
        bad("non-ASCII name", "name", json!("frésh"), "name"),
        bad("name too long", "name", json!("a".repeat(64)), "name"),
        bad("unknown kind", "kind", json!("robot"), "kind"),
        bad("kind in capitals", "kind", json!("AGENT"), "kind"),
        bad("empty kind", "kind", json!(""), "kind"),
        bad(
            "upper-case environment",
            "environment",
            json!("PROD"),
            "environment",
        ),
        bad("empty environment", "environment", json!(""), "environment"),
        bad(
            "environment with a slash",
            "environment",
            json!("dev/x"),
            "environment",
        ),
        bad(
            "environment too long",
            "environment",
            json!("e".repeat(33)),
            "environment",
        ),
        bad(
            "spiffe_id not spiffe",
            "spiffe_id",
            json!("https://x/y"),
            "spiffe_id",
        ),
        bad(
            "spiffe_id without path",
            "spiffe_id",
            json!("spiffe://example.org"),
            "spiffe_id",
        ),
        bad(
            "spiffe_id empty trust domain",
            "spiffe_id",
            json!("spiffe:///dev/x"),
            "spiffe_id",
        ),
        bad(
            "spiffe_id upper-case trust domain",
            "spiffe_id",
            json!("spiffe://EXAMPLE.org/x"),
            "spiffe_id",
        ),
        bad(
            "spiffe_id empty segment",
            "spiffe_id",
            json!("spiffe://example.org/a//b"),
            "spiffe_id",
        ),
        bad(
            "spiffe_id dot-dot segment",
            "spiffe_id",
            json!("spiffe://example.org/a/../b"),
            "spiffe_id",
        ),
        bad(
            "spiffe_id with a query",
            "spiffe_id",
            json!("spiffe://example.org/a?b=c"),
            "spiffe_id",
        ),
        bad("spiffe_id empty", "spiffe_id", json!(""), "spiffe_id"),
        bad(
            "description with a control character",
            "description",
            json!("bell\u{7}"),
            "description",
        ),
        bad(
            "description too long",
            "description",
            json!("d".repeat(2001)),
            "description",
        ),
        bad("role with a space", "roles", json!(["read er"]), "roles"),
        bad("empty role", "roles", json!([""]), "roles"),
        bad(
            "too many roles",
            "roles",
            json!((0..65).map(|i| format!("r{i}")).collect::<Vec<_>>()),
            "roles",
        ),
        bad(
            "entitlement with a quote",
            "entitlements",
            json!(["docs:\"write"]),
            "entitlements",
        ),
        bad(
            "entitlement with a backslash",
            "entitlements",
            json!(["docs\\write"]),
            "entitlements",
        ),
        bad(
            "entitlement too long",
            "entitlements",
            json!(["e".repeat(257)]),
            "entitlements",
        ),
        post(
            "duplicate SPIFFE ID",
            with(ident("other-name"), "spiffe_id", json!(f.keeper_spiffe)),
        )
        .expect(409, "conflict", "already taken"),
        post("duplicate name and environment", ident("keeper")).expect(
            409,
            "conflict",
            "already exists",
        ),
        post(
            "name of a retired identity",
            with(ident("gone"), "environment", json!("prod")),
        )
        .expect(409, "conflict", "already exists"),
    ]);
    // Listing and showing.
    let get = |name: &str, path: String| case(name, Method::GET, path);
    for (q, msg) in [
        ("limit=0", "`limit`"),
        ("limit=501", "`limit`"),
        ("limit=-1", "limit"),
        ("limit=abc", "limit"),
        ("limit=4294967296", "limit"),
        ("kind=robot", "`kind`"),
        ("state=zombie", "`state`"),
        ("state=ACTIVE", "`state`"),
        ("bogus=1", "bogus"),
        ("limit=1&limit=2", "limit"),
    ] {
        cases.push(
            get(&format!("list ?{q}"), format!("/v1/identities?{q}")).expect(
                400,
                "invalid_request",
                msg,
            ),
        );
    }
    cases.extend([
        get("unknown identity", "/v1/identities/idn_doesnotexist".into()).expect(
            404,
            "not_found",
            "idn_doesnotexist",
        ),
        get("identity id with NUL", "/v1/identities/%00".into()).expect(
            404,
            "not_found",
            "no identity",
        ),
        get(
            "identity id that is invalid UTF-8",
            "/v1/identities/%FF".into(),
        )
        .expect(400, "invalid_request", "path parameter"),
    ]);
    cases
}

fn patch_cases(f: &Fixture) -> Vec<Case> {
    let path = format!("/v1/identities/{}", f.keeper);
    let patch = |name: &str, body: Value| case(name, Method::PATCH, path.clone()).json(body);
    let mut cases = body_cases("patch", Method::PATCH, &path, json!({"description": "x"}));
    cases.extend([
        patch("empty patch", json!({})).expect(400, "invalid_request", "nothing to update"),
        patch("only nulls", json!({"owner": null, "roles": null})).expect(
            400,
            "invalid_request",
            "nothing to update",
        ),
        patch("name is immutable", json!({"name": "renamed"})).expect(
            400,
            "invalid_request",
            "name",
        ),
        patch("environment is immutable", json!({"environment": "prod"})).expect(
            400,
            "invalid_request",
            "environment",
        ),
        patch("state is not patchable", json!({"state": "active"})).expect(
            400,
            "invalid_request",
            "state",
        ),
        patch("empty owner", json!({"owner": ""})).expect(400, "invalid_request", "owner"),
        patch("whitespace owner", json!({"owner": "   "})).expect(400, "invalid_request", "owner"),
        patch("owner is a number", json!({"owner": 7})).expect(400, "invalid_request", "owner"),
        patch("roles is a string", json!({"roles": "reader"})).expect(
            400,
            "invalid_request",
            "roles",
        ),
        patch("empty entitlement", json!({"entitlements": [""]})).expect(
            400,
            "invalid_request",
            "entitlements",
        ),
        patch("description with NUL", json!({"description": "a\u{0}b"})).expect(
            400,
            "invalid_request",
            "description",
        ),
        case("unknown identity", Method::PATCH, "/v1/identities/idn_nope")
            .json(json!({"owner": "bob"}))
            .expect(404, "not_found", "idn_nope"),
        case(
            "retired identity",
            Method::PATCH,
            format!("/v1/identities/{}", f.retired),
        )
        .json(json!({"owner": "bob"}))
        .expect(409, "conflict", "retired"),
    ]);
    cases
}

fn lifecycle_cases(f: &Fixture) -> Vec<Case> {
    let at = |id: &str, action: &str| format!("/v1/identities/{id}/{action}");
    let post = |name: &str, path: String| case(name, Method::POST, path);
    let mut cases = vec![
        post("resume an active identity", at(&f.keeper, "resume")).expect(
            409,
            "conflict",
            "cannot resume an identity that is active",
        ),
        post("suspend a suspended identity", at(&f.suspended, "suspend")).expect(
            409,
            "conflict",
            "cannot suspend an identity that is suspended",
        ),
        post("suspend a retired identity", at(&f.retired, "suspend"))
            .expect(409, "conflict", "retired"),
        post("resume a retired identity", at(&f.retired, "resume"))
            .expect(409, "conflict", "retired"),
        post("retire a retired identity", at(&f.retired, "retire"))
            .expect(409, "conflict", "retired"),
    ];
    for action in ["suspend", "resume", "retire"] {
        let p = at(&f.keeper, action);
        cases.extend([
            post(
                &format!("{action} unknown identity"),
                at("idn_nope", action),
            )
            .expect(404, "not_found", "idn_nope"),
            post(&format!("{action}: reason is a number"), p.clone())
                .json(json!({"reason": 5}))
                .expect(400, "invalid_request", "invalid request body"),
            post(&format!("{action}: unknown field"), p.clone())
                .json(json!({"reason": "x", "sneaky_field": 1}))
                .expect(400, "invalid_request", "sneaky_field"),
            post(&format!("{action}: invalid JSON"), p.clone())
                .raw(Some("application/json"), "{bad")
                .expect(400, "invalid_json", "not valid JSON"),
            post(&format!("{action}: JSON array"), p.clone())
                .raw(Some("application/json"), "[1]")
                .expect(400, "invalid_request", "invalid request body"),
            post(&format!("{action}: reason too long"), p.clone())
                .json(json!({"reason": "r".repeat(2001)}))
                .expect(400, "invalid_request", "`reason`"),
            post(&format!("{action}: oversized body"), p.clone())
                .json(big("reason"))
                .expect(413, "payload_too_large", "length limit"),
        ]);
    }
    cases
}

fn policy_cases() -> Vec<Case> {
    let put = |name: &str, body: Value| case(name, Method::PUT, "/v1/policies").json(body);
    let valid = json!({"schema": SCHEMA, "policies": POLICIES});
    let mut cases = body_cases("put policy", Method::PUT, "/v1/policies", valid.clone());
    cases.extend(body_cases(
        "validate policy",
        Method::POST,
        "/v1/policies/validate",
        valid.clone(),
    ));
    let syntax = "permit (principal, action, resource)\n  when { context.risk <<< 5 };";
    let type_error =
        "permit (principal, action == App::Action::\"read\", resource)\nwhen { context.risk < \"high\" };";
    cases.extend([
        put("invalid Cedar syntax", json!({"schema": SCHEMA, "policies": syntax}))
            .expect(400, "invalid_policy", "version in force is unchanged")
            .check(has_line_and_column("policies")),
        put("invalid Cedar syntax, schema in force", json!({"policies": syntax}))
            .expect(400, "invalid_policy", "policies")
            .check(has_line_and_column("policies")),
        put("type error against the schema", json!({"schema": SCHEMA, "policies": type_error}))
            .expect(400, "invalid_policy", "Long")
            .check(has_line_and_column("policies")),
        put(
            "unknown attribute",
            json!({"policies": "permit (principal, action, resource) when { principal.nosuch == 1 };"}),
        )
        .expect(400, "invalid_policy", "nosuch")
        .check(has_line_and_column("policies")),
        put(
            "undeclared action",
            json!({"policies": "permit (principal, action == App::Action::\"delete\", resource);"}),
        )
        .expect(400, "invalid_policy", "delete"),
        put(
            "duplicate policy ids",
            json!({"policies": "@id(\"x\") permit (principal, action, resource);\n@id(\"x\") forbid (principal, action, resource);"}),
        )
        .expect(400, "invalid_policy", "duplicate"),
        put("invalid schema", json!({"schema": "namespace App { entity }", "policies": "permit (principal, action, resource);"}))
            .expect(400, "invalid_policy", "schema")
            .check(has_line_and_column("schema")),
        put("schema is invalid JSON schema", json!({"schema": "{\"App\": 5}", "policies": ""}))
            .expect(400, "invalid_policy", "schema"),
        put("schema redefines the built-in namespace", json!({"schema": "namespace Warrant { entity Identity; }", "policies": ""}))
            .expect(400, "invalid_policy", "schema"),
        put("missing policies", json!({"schema": SCHEMA}))
            .expect(400, "invalid_request", "policies"),
        put("policies is a number", json!({"policies": 5}))
            .expect(400, "invalid_request", "policies"),
        put("policies is null", json!({"policies": null}))
            .expect(400, "invalid_request", "policies"),
        put("schema is an object", json!({"schema": {}, "policies": ""}))
            .expect(400, "invalid_request", "schema"),
        put("misspelt field", json!({"polices": POLICIES}))
            .expect(400, "invalid_request", "polices"),
        put("comment too long", json!({"policies": POLICIES, "comment": "c".repeat(2001)}))
            .expect(400, "invalid_request", "`comment`"),
        case("validate: policies missing", Method::POST, "/v1/policies/validate")
            .json(json!({"schema": SCHEMA}))
            .expect(400, "invalid_request", "policies"),
    ]);
    let get = |name: &str, path: &str| case(name, Method::GET, path);
    for (q, msg) in [
        ("limit=0", "`limit`"),
        ("limit=201", "`limit`"),
        ("limit=-3", "limit"),
        ("limit=x", "limit"),
        ("bogus=1", "bogus"),
    ] {
        cases.push(
            get(
                &format!("history ?{q}"),
                &format!("/v1/policies/versions?{q}"),
            )
            .expect(400, "invalid_request", msg),
        );
    }
    cases.extend([
        get("version is not a number", "/v1/policies/versions/latest").expect(
            400,
            "invalid_request",
            "path parameter",
        ),
        get("negative version", "/v1/policies/versions/-1").expect(
            400,
            "invalid_request",
            "path parameter",
        ),
        get("fractional version", "/v1/policies/versions/1.5").expect(
            400,
            "invalid_request",
            "path parameter",
        ),
        get(
            "version beyond u64",
            "/v1/policies/versions/18446744073709551616",
        )
        .expect(400, "invalid_request", "path parameter"),
        get("version 0 was never put", "/v1/policies/versions/0").expect(
            404,
            "not_found",
            "no policy version 0",
        ),
        get("unknown version", "/v1/policies/versions/999").expect(
            404,
            "not_found",
            "no policy version 999",
        ),
    ]);
    cases
}

fn authorize_cases(f: &Fixture) -> Vec<Case> {
    let k = f.keeper.as_str();
    // Every request below would be allowed if it were well-formed (keeper is a reader, risk 1).
    let ok = read_req(k, 1);
    let auth = |name: &str, body: Value| case(name, Method::POST, "/v1/authorize").json(body);
    let mut cases = body_cases("authorize", Method::POST, "/v1/authorize", ok.clone());
    cases.extend([
        auth("missing principal", without(ok.clone(), "principal"))
            .expect(400, "invalid_request", "principal"),
        auth("missing action", without(ok.clone(), "action"))
            .expect(400, "invalid_request", "action"),
        auth("missing resource", without(ok.clone(), "resource"))
            .expect(400, "invalid_request", "resource"),
        auth("principal is a number", with(ok.clone(), "principal", json!(1)))
            .expect(400, "invalid_request", "principal"),
        // Longer than any SPIFFE ID, and incompressible: it would not fit PostgreSQL's
        // index on the record subject, so it must be refused before the audit append.
        auth(
            "principal longer than a SPIFFE ID",
            with(
                ok.clone(),
                "principal",
                json!((0..3000u32)
                    .map(|i| char::from(b'a' + ((i * 7919 + i / 26) % 26) as u8))
                    .collect::<String>()),
            ),
        )
        .expect(400, "invalid_request", "at most 2048"),
        auth("action without namespace", with(ok.clone(), "action", json!("read")))
            .expect(400, "invalid_request", "invalid action"),
        auth("action uid unterminated", with(ok.clone(), "action", json!("App::Action::\"read")))
            .expect(400, "invalid_request", "invalid action"),
        auth("action is an entity type", with(ok.clone(), "action", json!("App::Document::\"read\"")))
            .expect(400, "invalid_request", "action"),
        auth("unknown action", with(ok.clone(), "action", json!("App::Action::\"delete\"")))
            .expect(400, "invalid_request", "unknown action"),
        auth("empty action", with(ok.clone(), "action", json!("")))
            .expect(400, "invalid_request", "action"),
        auth("malformed resource", with(ok.clone(), "resource", json!("q3")))
            .expect(400, "invalid_request", "invalid resource"),
        auth("undeclared resource type", with(ok.clone(), "resource", json!("App::Folder::\"q3\"")))
            .expect(400, "invalid_request", "App::Folder"),
        auth("context of the wrong type", with(ok.clone(), "context", json!({"risk": "low"})))
            .expect(400, "invalid_request", "context"),
        auth("context is an array", with(ok.clone(), "context", json!([1])))
            .expect(400, "invalid_request", "context must be a JSON object"),
        auth("context is a string", with(ok.clone(), "context", json!("risk=1")))
            .expect(400, "invalid_request", "context"),
        auth("context missing a required attribute", with(ok.clone(), "context", json!({})))
            .expect(400, "invalid_request", "context"),
        auth("context without the attribute", without(ok.clone(), "context"))
            .expect(400, "invalid_request", "context"),
        auth("context with an undeclared attribute", with(ok.clone(), "context", json!({"risk": 1, "admin": true})))
            .expect(400, "invalid_request", "admin"),
        auth("context Long overflows", with(ok.clone(), "context", json!({"risk": u64::MAX})))
            .expect(400, "invalid_request", "context"),
        auth("context float", with(ok.clone(), "context", json!({"risk": 0.5})))
            .expect(400, "invalid_request", "context"),
        case("context number out of range", Method::POST, "/v1/authorize")
            .raw(
                Some("application/json"),
                format!(
                    r#"{{"principal":"{k}","action":"App::Action::\"read\"","resource":"App::Document::\"q3\"","context":{{"risk":1e400}}}}"#
                ),
            )
            .expect(400, "invalid_json", "number out of range"),
        case("context nested too deep", Method::POST, "/v1/authorize")
            .raw(Some("application/json"), deep_context(k))
            .expect(400, "invalid_json", "recursion limit"),
        case("batch item context nested too deep", Method::POST, "/v1/authorize/batch")
            .raw(Some("application/json"), format!("{{\"requests\":[{}]}}", deep_context(k)))
            .expect(400, "invalid_json", "recursion limit"),
        auth("entities is an object", with(ok.clone(), "entities", json!({})))
            .expect(400, "invalid_request", "entities must be a JSON array"),
        auth("entity that does not fit the schema", with(ok.clone(), "entities", json!([
            {"uid": {"type": "App::Document", "id": "q3"}, "attrs": {"classification": 5}, "parents": []}
        ])))
            .expect(400, "invalid_request", "entities"),
        auth("entity claiming a registry role", with(ok.clone(), "entities", json!([
            {"uid": {"type": "Warrant::Role", "id": "reader"}, "attrs": {}, "parents": []}
        ])))
            .expect(400, "invalid_request", "Warrant"),
        auth("entity replacing the principal", with(ok.clone(), "entities", json!([
            {"uid": {"type": "Warrant::Identity", "id": k}, "attrs": {}, "parents": [{"type": "Warrant::Role", "id": "reader"}]}
        ])))
            .expect(400, "invalid_request", "entit"),
        auth("entity list holding a number", with(ok.clone(), "entities", json!([5])))
            .expect(400, "invalid_request", "entities"),
    ]);
    // Batches.
    let batch =
        |name: &str, body: Value| case(name, Method::POST, "/v1/authorize/batch").json(body);
    let mut cases_b = body_cases(
        "batch",
        Method::POST,
        "/v1/authorize/batch",
        json!({"requests": [ok.clone()]}),
    );
    cases_b.extend([
        batch("batch of 0", json!({"requests": []})).expect(400, "invalid_request", "got 0"),
        batch("batch of 101", json!({"requests": vec![ok.clone(); 101]})).expect(
            400,
            "invalid_request",
            "got 101",
        ),
        batch("batch without requests", json!({})).expect(400, "invalid_request", "requests"),
        batch("requests is an object", json!({"requests": {}})).expect(
            400,
            "invalid_request",
            "requests",
        ),
        batch(
            "request missing its action",
            json!({"requests": [without(ok.clone(), "action")]}),
        )
        .expect(400, "invalid_request", "action"),
        batch(
            "request with an unknown field",
            json!({"requests": [with(ok.clone(), "sneaky_field", json!(1))]}),
        )
        .expect(400, "invalid_request", "sneaky_field"),
    ]);
    cases.extend(cases_b);
    cases
}

fn audit_cases(f: &Fixture) -> Vec<Case> {
    let get = |name: &str, path: String| case(name, Method::GET, path);
    let mut cases = vec![];
    for (q, msg) in [
        ("limit=0", "`limit`"),
        ("limit=1001", "`limit`"),
        ("limit=many", "limit"),
        ("kind=bogus", "`kind`"),
        ("order=sideways", "`order`"),
        ("order=DESC", "`order`"),
        ("from=yesterday", "`from`"),
        ("from=2026-01-31", "`from`"),
        ("from=2026-01-31T12:00:00", "`from`"),
        ("to=2026-13-01T00:00:00Z", "`to`"),
        ("to=1700000000", "`to`"),
        ("cursor=abc", "cursor"),
        ("cursor=-1", "cursor"),
        ("bogus=1", "bogus"),
    ] {
        cases.push(
            get(&format!("audit ?{q}"), format!("/v1/audit?{q}")).expect(
                400,
                "invalid_request",
                msg,
            ),
        );
    }
    for what in ["records", "proof"] {
        cases.extend([
            get(
                &format!("{what}: seq not numeric"),
                format!("/v1/audit/{what}/abc"),
            )
            .expect(400, "invalid_request", "path parameter"),
            get(
                &format!("{what}: negative seq"),
                format!("/v1/audit/{what}/-1"),
            )
            .expect(400, "invalid_request", "path parameter"),
            get(
                &format!("{what}: fractional seq"),
                format!("/v1/audit/{what}/0.5"),
            )
            .expect(400, "invalid_request", "path parameter"),
            get(
                &format!("{what}: seq beyond u64"),
                format!("/v1/audit/{what}/18446744073709551616"),
            )
            .expect(400, "invalid_request", "path parameter"),
            get(
                &format!("{what}: unknown seq"),
                format!("/v1/audit/{what}/999999"),
            )
            .expect(404, "not_found", "no audit record 999999"),
        ]);
    }
    cases.push(
        get(
            "proof before a checkpoint covers the record",
            format!("/v1/audit/proof/{}", f.uncheckpointed_seq),
        )
        .expect(409, "not_checkpointed", "checkpoint"),
    );
    cases
}

fn routing_cases(f: &Fixture) -> Vec<Case> {
    let k = &f.keeper;
    let mut cases = vec![];
    for (path, auth) in [
        ("/nope", Auth::Admin),
        ("/nope", Auth::Missing),
        ("/v1", Auth::Admin),
        ("/v1/identity", Auth::Admin),
        ("/v2/identities", Auth::Admin),
        ("/v1/policies/versions/1/extra", Auth::Admin),
        ("/V1/IDENTITIES", Auth::Admin),
        ("/v1/identities/", Auth::Admin),
        ("/v1/audit/records/", Auth::Admin),
    ] {
        cases.push(case("unknown route", Method::GET, path).auth(auth).expect(
            404,
            "not_found",
            "no such endpoint",
        ));
    }
    cases.push(
        case(
            "unknown route under an identity",
            Method::POST,
            format!("/v1/identities/{k}/delete"),
        )
        .json(json!({}))
        .expect(404, "not_found", "no such endpoint"),
    );
    for (method, path, auth) in [
        (Method::DELETE, format!("/v1/identities/{k}"), Auth::Admin),
        (Method::DELETE, format!("/v1/identities/{k}"), Auth::Missing),
        (Method::PUT, format!("/v1/identities/{k}"), Auth::Admin),
        (Method::DELETE, "/v1/identities".into(), Auth::Admin),
        (
            Method::GET,
            format!("/v1/identities/{k}/suspend"),
            Auth::Admin,
        ),
        (Method::POST, "/v1/policies".into(), Auth::Admin),
        (Method::DELETE, "/v1/policies".into(), Auth::Admin),
        (Method::GET, "/v1/policies/validate".into(), Auth::Admin),
        (Method::POST, "/v1/policies/versions".into(), Auth::Admin),
        (Method::GET, "/v1/authorize".into(), Auth::Admin),
        (Method::PUT, "/v1/authorize/batch".into(), Auth::Admin),
        (Method::POST, "/v1/audit".into(), Auth::Admin),
        (Method::DELETE, "/v1/audit/records/0".into(), Auth::Admin),
        (Method::PATCH, "/v1/audit/checkpoints".into(), Auth::Admin),
        (Method::POST, "/healthz".into(), Auth::Missing),
        (Method::POST, "/openapi.json".into(), Auth::Missing),
        (Method::POST, "/v1/audit/public-key".into(), Auth::Missing),
        (Method::PUT, "/readyz".into(), Auth::Missing),
        (Method::DELETE, "/metrics".into(), Auth::Admin),
    ] {
        cases.push(case("wrong method", method, path).auth(auth).expect(
            405,
            "method_not_allowed",
            "method not allowed",
        ));
    }
    cases
}

async fn snapshot(server: &Server) -> (Value, Value, Vec<Value>) {
    let c = server.client();
    let identities = c
        .list_identities(&[("limit", Some("500".into()))])
        .await
        .expect("list identities");
    let policy = c.policy().await.expect("policy");
    let audit = c
        .audit(&[("limit", Some("1000".into()))])
        .await
        .expect("audit");
    let records = audit["items"].as_array().expect("items").clone();
    (identities, policy, records)
}

#[tokio::test]
async fn every_endpoint_refuses_bad_input_with_a_json_error_and_keeps_state() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start_with(
        dir.path(),
        Options {
            extra_args: vec!["--checkpoint-interval".into(), "3600".into()],
            ..Options::default()
        },
    );
    let f = setup(&server).await;
    let (identities_before, policy_before, records_before) = snapshot(&server).await;
    assert_eq!(identities_before["items"].as_array().map(Vec::len), Some(3));
    assert_eq!(policy_before["version"], 1);

    let mut cases = auth_cases(&f);
    cases.extend(identity_cases(&f));
    cases.extend(patch_cases(&f));
    cases.extend(lifecycle_cases(&f));
    cases.extend(policy_cases());
    cases.extend(authorize_cases(&f));
    cases.extend(audit_cases(&f));
    cases.extend(routing_cases(&f));
    assert!(cases.len() > 300, "the table shrank: {} cases", cases.len());
    let failures = run_cases(&server, &cases).await;
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    // A malformed item of a batch is an error item, never a decision (and never an allow).
    let c = server.client();
    let v = c
        .authorize_batch(&[
            with(
                read_req(&f.keeper, 1),
                "action",
                json!("App::Action::\"delete\""),
            ),
            with(read_req(&f.keeper, 1), "context", json!({"risk": "low"})),
            with(read_req(&f.keeper, 1), "resource", json!("nope")),
        ])
        .await
        .expect("batch with malformed items");
    let results = v["results"].as_array().expect("results");
    assert_eq!(results.len(), 3, "{v}");
    for r in results {
        assert!(r["result"].is_null(), "malformed item was decided: {r}");
        assert_eq!(r["error"]["error"], "invalid_request", "{r}");
        assert!(
            r["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{r}"
        );
    }
    assert!(!v.to_string().contains("\"allow\""), "{v}");

    // Nothing stored was lost or changed by the refused requests.
    let (identities_after, policy_after, records_after) = snapshot(&server).await;
    assert_eq!(identities_after, identities_before, "identities changed");
    assert_eq!(policy_after, policy_before, "policy in force changed");
    assert!(
        records_after.len() >= records_before.len(),
        "audit records lost"
    );
    assert_eq!(
        &records_after[..records_before.len()],
        &records_before[..],
        "audit records changed"
    );
    for id in [&f.keeper, &f.suspended, &f.retired] {
        let one = c.identity(id).await.expect("show");
        let listed = identities_before["items"]
            .as_array()
            .and_then(|items| items.iter().find(|i| i["id"] == *id))
            .expect("listed");
        assert_eq!(&one, listed, "identity {id} changed");
    }

    let stderr_log = server.stop();
    assert!(
        !stderr_log.contains("panicked"),
        "server panicked:\n{stderr_log}"
    );
    let args = verify_args(dir.path());
    let out = cli(None, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        out.status.success(),
        "audit verify failed after the bad-input table:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    eprintln!(
        "bad-input table: {} cases in {:?}",
        cases.len(),
        started.elapsed()
    );
}

/// Sequence and version numbers are u64 on the wire; values above i64::MAX must be an
/// ordinary "not found"/"bad request", not an internal error.
#[tokio::test]
async fn huge_sequence_and_version_numbers_are_not_internal_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let http = http();
    let mut failures = vec![];
    for path in [
        "/v1/audit/records/9223372036854775808",
        "/v1/audit/records/18446744073709551615",
        "/v1/audit/proof/9223372036854775808",
        "/v1/policies/versions/9223372036854775808",
        "/v1/audit?cursor=9223372036854775808",
        "/v1/audit?cursor=18446744073709551615&order=desc",
    ] {
        let a = send(
            &http,
            &server.url,
            Method::GET,
            path,
            &Auth::Admin,
            &Body::Empty,
        )
        .await
        .expect("send");
        let fine = if path.contains("cursor") {
            a.status == 200 || a.status == 400
        } else {
            a.status == 404 || a.status == 400
        };
        if !fine {
            failures.push(format!("GET {path}: {} {}", a.status, a.text));
        } else if a.status >= 400 {
            if let Err(e) = error_shape(&a) {
                failures.push(format!("GET {path}: {e}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Lifecycle bodies are optional, but a body that is sent must be declared as JSON, as on
/// every other endpoint.
#[tokio::test]
async fn lifecycle_bodies_with_the_wrong_content_type_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let c = server.client();
    let id = create_identity(&c, "ctype", "dev", &[]).await;
    let cases: Vec<Case> = ["suspend", "retire"]
        .into_iter()
        .map(|action| {
            case(
                format!("{action} with text/plain"),
                Method::POST,
                format!("/v1/identities/{id}/{action}"),
            )
            .raw(Some("text/plain"), r#"{"reason":"x"}"#)
            .expect(415, "unsupported_media_type", "application/json")
        })
        .collect();
    let failures = run_cases(&server, &cases).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // An empty body without a content type stays accepted.
    let a = send(
        &http(),
        &server.url,
        Method::POST,
        &format!("/v1/identities/{id}/suspend"),
        &Auth::Admin,
        &Body::Empty,
    )
    .await
    .expect("send");
    assert_eq!(a.status, 200, "{}", a.text);
}

/// Limits are documented as characters; non-ASCII text within them must be accepted.
#[tokio::test]
async fn text_limits_count_characters_not_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let c = server.client();
    let text = "é".repeat(1500); // 1500 characters, 3000 bytes
    let mut failures = vec![];
    if let Err(e) = c.put_policy(Some(SCHEMA), POLICIES, Some(&text)).await {
        failures.push(format!("policy comment: {e}"));
    }
    let v = c
        .create_identity(&with(ident("unicode"), "description", json!(text)))
        .await;
    if let Err(e) = &v {
        failures.push(format!("identity description: {e}"));
    }
    let id = create_identity(&c, "unicode2", "dev", &[]).await;
    if let Err(e) = c.lifecycle(&id, "suspend", Some(&text)).await {
        failures.push(format!("suspend reason: {e}"));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A server that answers before reading the whole body (a 401 for a bad token, a 413 for
/// an oversized body) and then closes the connection must say `Connection: close`;
/// otherwise a keep-alive client reuses the connection and its next request fails.
#[test]
fn early_answers_to_large_bodies_keep_or_close_the_connection_cleanly() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let body = format!("{{\"principal\":\"{}\"}}", "a".repeat(OVERSIZE));
    let mut failures = vec![];
    for (what, method, path, token) in [
        ("wrong token", "POST", "/v1/authorize", WRONG_TOKEN),
        ("oversized body", "POST", "/v1/authorize", ADMIN_TOKEN),
        ("unknown route", "POST", "/v1/nope", ADMIN_TOKEN),
        ("wrong method", "PUT", "/v1/authorize", ADMIN_TOKEN),
    ] {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .expect("headers");
        // The client sends its whole request, as a keep-alive client does.
        let sent = s.write_all(body.as_bytes()).is_ok();
        let mut buf = vec![0u8; 8192];
        let n = s.read(&mut buf).unwrap_or(0);
        let head = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
        if !head.starts_with("http/1.1 4") {
            failures.push(format!("{what}: unexpected answer {head:?}"));
            continue;
        }
        if head.contains("connection: close") {
            continue; // announced: fine
        }
        std::thread::sleep(Duration::from_millis(200));
        let reused = sent
            && s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                .is_ok()
            && {
                let n = s.read(&mut buf).unwrap_or(0);
                String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200")
            };
        if !reused {
            failures.push(format!(
                "{what}: connection dropped after {:?} without `Connection: close`",
                head.lines().next().unwrap_or_default()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------
// Property-style fuzz: random-ish JSON bodies never produce a 5xx or a non-JSON answer.

/// xorshift64*: deterministic, no crates.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// JSON string literal (already quoted/escaped) with odd content.
fn fuzz_string(rng: &mut Rng) -> String {
    const PIECES: &[&str] = &[
        "a",
        "reader",
        "dev",
        "prod",
        "agent",
        "ai_tool",
        "alice@example.com",
        " ",
        "\\u0000",
        "\\n",
        "\\t",
        "\\\"",
        "\\\\",
        "é",
        "日本",
        "😀",
        "\\ud83d\\ude00",
        "\\u202e",
        "\\uffff",
        "spiffe://warrant.local/dev/",
        "App::Action::",
        "App::Document::",
        "Warrant::Role::",
        "\\\"read\\\"",
        "idn_",
        "%00",
        "../",
        "'; DROP TABLE identities; --",
        "{{",
        "}",
        "\\u0007",
    ];
    let mut s = String::from("\"");
    let n = match rng.below(10) {
        0 => 0,
        1 => 200 + rng.below(3000),
        _ => 1 + rng.below(8),
    };
    for _ in 0..n {
        s.push_str(rng.pick(PIECES));
    }
    s.push('"');
    s
}

fn fuzz_number(rng: &mut Rng) -> String {
    const NUMS: &[&str] = &[
        "0",
        "-0",
        "1",
        "-1",
        "49",
        "50",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775808",
        "-9223372036854775809",
        "18446744073709551615",
        "18446744073709551616",
        "123456789012345678901234567890",
        "1e400",
        "-1e400",
        "1.5",
        "1e-400",
        "0.000000000000000000001",
        "2E3",
    ];
    rng.pick(NUMS).to_string()
}

fn fuzz_value(rng: &mut Rng, depth: usize) -> String {
    let leaf = depth == 0 || rng.chance(45);
    if leaf {
        return match rng.below(6) {
            0 => "null".into(),
            1 => if rng.chance(50) { "true" } else { "false" }.into(),
            2 | 3 => fuzz_string(rng),
            _ => fuzz_number(rng),
        };
    }
    if rng.chance(3) {
        // Very deep nesting, past serde_json's recursion limit.
        let d = 100 + rng.below(100);
        return format!("{}1{}", "[".repeat(d), "]".repeat(d));
    }
    let n = rng.below(5);
    if rng.chance(50) {
        let items: Vec<String> = (0..n).map(|_| fuzz_value(rng, depth - 1)).collect();
        format!("[{}]", items.join(","))
    } else {
        let items: Vec<String> = (0..n)
            .map(|_| format!("{}:{}", fuzz_string(rng), fuzz_value(rng, depth - 1)))
            .collect();
        format!("{{{}}}", items.join(","))
    }
}

/// An object with the endpoint's own field names (so that deeper validation is reached),
/// each value either plausible or random.
fn fuzz_body(rng: &mut Rng, fields: &[(&str, &[&str])]) -> String {
    if rng.chance(10) {
        return fuzz_value(rng, 4);
    }
    let mut parts = vec![];
    for (field, plausible) in fields {
        if rng.chance(5) {
            continue; // missing field
        }
        let value = if !plausible.is_empty() && rng.chance(80) {
            rng.pick(plausible).to_string()
        } else {
            fuzz_value(rng, 3)
        };
        parts.push(format!("\"{field}\":{value}"));
    }
    if rng.chance(10) {
        parts.push(format!("{}:{}", fuzz_string(rng), fuzz_value(rng, 2)));
    }
    if rng.chance(5) && !parts.is_empty() {
        // Duplicate key.
        let first = parts[0].clone();
        parts.push(first);
    }
    let mut body = format!("{{{}}}", parts.join(","));
    if rng.chance(5) {
        // Truncate: syntax error.
        let cut = rng.below(body.len().max(1));
        while !body.is_char_boundary(cut.min(body.len())) {
            body.pop();
        }
        body.truncate(cut.min(body.len()));
    }
    body
}

#[tokio::test]
async fn random_json_bodies_never_cause_a_server_error() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(dir.path());
    let c = server.client();
    c.put_policy(Some(SCHEMA), POLICIES, None)
        .await
        .expect("put policy");
    let target = create_identity(&c, "fuzz-target", "dev", &["reader"]).await;
    let principal = format!("\"{target}\"");
    let principal_spiffe = "\"spiffe://warrant.local/dev/fuzz-target\"".to_owned();

    let identity_fields: Vec<(&str, &[&str])> = vec![
        (
            "name",
            &["\"fz\"", "\"fz-1\"", "\"fz.2\"", "\"fuzz-target\"", "\"\""],
        ),
        (
            "kind",
            &[
                "\"agent\"",
                "\"ai_tool\"",
                "\"workload\"",
                "\"service_account\"",
                "\"robot\"",
            ],
        ),
        (
            "environment",
            &["\"dev\"", "\"prod\"", "\"staging\"", "\"\""],
        ),
        (
            "owner",
            &["\"alice@example.com\"", "\"bob\"", "\"\"", "\" \""],
        ),
        ("description", &["\"a bot\"", "null"]),
        (
            "spiffe_id",
            &[
                "\"spiffe://warrant.local/dev/fz\"",
                "\"spiffe://x.y/a/b\"",
                "null",
            ],
        ),
        ("roles", &["[\"reader\"]", "[]", "null"]),
        ("entitlements", &["[\"docs:write\"]", "[]"]),
    ];
    let patch_fields: Vec<(&str, &[&str])> = vec![
        ("owner", &["\"carol@example.com\"", "null"]),
        ("description", &["\"changed\"", "null"]),
        (
            "roles",
            &["[\"reader\"]", "[\"writer\",\"reader\"]", "null"],
        ),
        ("entitlements", &["[]", "[\"docs:write\"]"]),
    ];
    let schema_lit = serde_json::to_string(SCHEMA).unwrap();
    let policies_lit = serde_json::to_string(POLICIES).unwrap();
    let policy_fields: Vec<(&str, Vec<String>)> = vec![
        (
            "schema",
            vec![schema_lit.clone(), "null".into(), "\"{}\"".into()],
        ),
        ("policies", vec![policies_lit.clone()]),
        ("comment", vec!["\"fuzz\"".into()]),
    ];
    let action_lits = [
        "\"App::Action::\\\"read\\\"\"",
        "\"App::Action::\\\"write\\\"\"",
    ];
    let resource_lits = ["\"App::Document::\\\"q3\\\"\""];
    let context_lits = ["{\"risk\":1}", "{\"risk\":99}", "null"];
    let principals = [
        principal.as_str(),
        principal_spiffe.as_str(),
        "\"idn_nope\"",
    ];

    let mut rng = Rng(0x5eed_1234_abcd_0042);
    let http = http();
    let mut failures = vec![];
    let mut statuses = std::collections::BTreeMap::<(usize, u16), usize>::new();
    let per_endpoint = 60;
    for round in 0..per_endpoint * 4 {
        let (method, path, body) = match round % 4 {
            0 => (
                Method::POST,
                "/v1/identities".to_owned(),
                fuzz_body(&mut rng, &identity_fields),
            ),
            1 => (
                Method::PATCH,
                format!("/v1/identities/{target}"),
                fuzz_body(&mut rng, &patch_fields),
            ),
            2 => {
                let policy_text = fuzz_policy(&mut rng);
                let lit = serde_json::to_string(&policy_text).unwrap();
                let plausible: Vec<(&str, Vec<&str>)> = policy_fields
                    .iter()
                    .map(|(f, v)| {
                        let mut v: Vec<&str> = v.iter().map(String::as_str).collect();
                        if *f == "policies" {
                            v = vec![
                                lit.as_str(),
                                lit.as_str(),
                                lit.as_str(),
                                policies_lit.as_str(),
                            ];
                        }
                        (*f, v)
                    })
                    .collect();
                let fields: Vec<(&str, &[&str])> =
                    plausible.iter().map(|(f, v)| (*f, v.as_slice())).collect();
                (
                    Method::PUT,
                    "/v1/policies".to_owned(),
                    fuzz_body(&mut rng, &fields),
                )
            }
            _ => {
                let fields: Vec<(&str, &[&str])> = vec![
                    ("principal", &principals),
                    ("action", &action_lits),
                    ("resource", &resource_lits),
                    ("context", &context_lits),
                    ("entities", &["[]", "null"]),
                ];
                (
                    Method::POST,
                    "/v1/authorize".to_owned(),
                    fuzz_body(&mut rng, &fields),
                )
            }
        };
        let a = match send(
            &http,
            &server.url,
            method.clone(),
            &path,
            &Auth::Admin,
            &Body::Raw(Some("application/json"), body.clone().into_bytes()),
        )
        .await
        {
            Ok(a) => a,
            Err(e) => {
                failures.push(format!("{method} {path} {}: {e}", clip(&body)));
                continue;
            }
        };
        *statuses.entry((round % 4, a.status)).or_default() += 1;
        let verdict = if a.status >= 400 {
            error_shape(&a).map(|_| ())
        } else if !a.content_type.starts_with("application/json") {
            Err(format!("content-type `{}`", a.content_type))
        } else {
            serde_json::from_str::<Value>(&a.text)
                .map(|_| ())
                .map_err(|e| format!("success body is not JSON: {e}"))
        };
        if let Err(e) = verdict {
            failures.push(format!(
                "{method} {path} {} -> {}: {e}",
                clip(&body),
                a.status
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} fuzz failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The fuzz must reach past JSON parsing on every endpoint, not only bounce off it.
    for endpoint in 0..4 {
        let count = |ok: fn(u16) -> bool| {
            statuses
                .iter()
                .filter(|((e, s), _)| *e == endpoint && ok(*s))
                .map(|(_, n)| n)
                .sum::<usize>()
        };
        assert!(
            count(|s| s < 300) > 0,
            "endpoint {endpoint} never succeeded: {statuses:?}"
        );
        assert!(
            count(|s| s == 400) > 0,
            "endpoint {endpoint} never refused: {statuses:?}"
        );
    }

    let log = server.stop();
    assert!(!log.contains("panicked"), "server panicked:\n{log}");
    let args = verify_args(dir.path());
    let out = cli(None, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        out.status.success(),
        "audit verify failed after the fuzz:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    eprintln!("fuzz: {statuses:?} in {:?}", started.elapsed());
}

/// Cedar-ish text: fragments of real syntax, shuffled.
fn fuzz_policy(rng: &mut Rng) -> String {
    const PIECES: &[&str] = &[
        "permit",
        "forbid",
        "(",
        ")",
        "principal",
        "action",
        "resource",
        ",",
        ";",
        " == ",
        " in ",
        "App::Action::\"read\"",
        "App::Action::\"write\"",
        "App::Document::\"q3\"",
        "Warrant::Role::\"reader\"",
        "when {",
        "unless {",
        "}",
        "context.risk < 50",
        "context.risk",
        "principal.kind == \"ai_tool\"",
        "principal.entitlements.contains(\"x\")",
        "@id(\"p\")",
        "@reason(\"😀\")",
        " && ",
        " || ",
        "!",
        "if true then 1 else 2",
        "9223372036854775807 + 1",
        "\"\\u{0}\"",
        "[",
        "]",
        "{",
        "like \"*\"",
        "ip(\"10.0.0.0/8\")",
        "decimal(\"1.0\")",
        "/*",
        "*/",
        "//",
        "\n",
    ];
    if rng.chance(30) {
        // A well-formed policy with a random condition.
        let cond: Vec<&str> = (0..rng.below(4)).map(|_| rng.pick(PIECES)).collect();
        return format!(
            "permit (principal, action == App::Action::\"read\", resource) when {{ {} }};",
            if cond.is_empty() {
                "true".to_owned()
            } else {
                cond.join(" ")
            }
        );
    }
    let n = rng.below(30);
    (0..n)
        .map(|_| rng.pick(PIECES))
        .collect::<Vec<_>>()
        .join(" ")
}
