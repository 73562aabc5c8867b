//! The OpenAPI document served at `/openapi.json` describes the API the real server
//! serves: every documented operation exists and answers a documented status with a body
//! that fits the documented schema, and every served route is documented.

// Test code: a panic is how a check fails.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::harness::*;
use base64::Engine as _;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

/// Every route `crates/server/src/api/mod.rs` serves, except `/openapi.json` itself.
/// A route added to the router must be added here, and documented.
const SERVED_ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/identities"),
    ("GET", "/v1/identities"),
    ("GET", "/v1/identities/{id}"),
    ("PATCH", "/v1/identities/{id}"),
    ("POST", "/v1/identities/{id}/suspend"),
    ("POST", "/v1/identities/{id}/resume"),
    ("POST", "/v1/identities/{id}/retire"),
    ("GET", "/v1/policies"),
    ("PUT", "/v1/policies"),
    ("POST", "/v1/policies/validate"),
    ("GET", "/v1/policies/versions"),
    ("GET", "/v1/policies/versions/{version}"),
    ("POST", "/v1/authorize"),
    ("POST", "/v1/authorize/batch"),
    ("GET", "/v1/audit"),
    ("GET", "/v1/audit/records/{seq}"),
    ("GET", "/v1/audit/proof/{seq}"),
    ("GET", "/v1/audit/checkpoints"),
    ("POST", "/v1/audit/checkpoints"),
    ("GET", "/v1/audit/public-key"),
    ("POST", "/v1/killswitches"),
    ("GET", "/v1/killswitches"),
    ("GET", "/v1/killswitches/{id}"),
    ("POST", "/v1/killswitches/{id}/release"),
    ("POST", "/v1/identities/{id}/keys"),
    ("GET", "/v1/identities/{id}/keys"),
    ("DELETE", "/v1/identities/{id}/keys/{kid}"),
    ("GET", "/v1/keys"),
    ("POST", "/v1/keys/rotate"),
    ("POST", "/oauth2/token"),
    ("POST", "/oauth2/introspect"),
    ("POST", "/oauth2/revoke"),
    ("GET", "/.well-known/oauth-authorization-server"),
    ("GET", "/.well-known/jwks.json"),
    ("GET", "/v1/capabilities"),
    ("PUT", "/v1/capabilities/{id}"),
    ("GET", "/v1/capabilities/{id}"),
    ("POST", "/v1/capabilities/{id}/accept"),
    ("POST", "/v1/capabilities/{id}/review"),
    ("GET", "/v1/roles"),
    ("PUT", "/v1/roles/{name}"),
    ("GET", "/v1/roles/{name}"),
    ("GET", "/v1/resources"),
    ("PUT", "/v1/resources/{id}"),
    ("GET", "/v1/tier-policies"),
    ("PUT", "/v1/tier-policies"),
    ("POST", "/v1/tokens"),
    ("GET", "/v1/tokens"),
    ("POST", "/v1/tokens/{id}/revoke"),
    ("POST", "/v1/proposals"),
    ("GET", "/v1/proposals"),
    ("GET", "/v1/proposals/{id}"),
    ("GET", "/v1/proposals/{id}/chain"),
    ("POST", "/v1/proposals/{id}/approve"),
    ("POST", "/v1/proposals/{id}/reject"),
    ("POST", "/v1/proposals/{id}/override"),
    ("POST", "/v1/proposals/{id}/ratify"),
    ("POST", "/v1/proposals/{id}/perform"),
    ("GET", "/v1/proposals/{id}/deliveries"),
    ("POST", "/v1/humans"),
    ("GET", "/v1/humans"),
    ("GET", "/v1/humans/{name}"),
    ("PATCH", "/v1/humans/{name}"),
    ("POST", "/v1/humans/{name}/roles/{role}/revoke"),
    ("POST", "/v1/role-grants"),
    ("GET", "/v1/role-grants"),
    ("POST", "/v1/role-grants/{id}/approve"),
    ("POST", "/v1/role-grants/{id}/reject"),
    ("GET", "/v1/me"),
    ("POST", "/v1/auth/token"),
    ("POST", "/v1/auth/password"),
    ("POST", "/v1/certifications"),
    ("GET", "/v1/certifications"),
    ("GET", "/v1/certifications/{id}"),
    ("POST", "/v1/certifications/{id}/items/{item}"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
];

/// The operations that need no API token: probes, the audit public key, the OAuth
/// discovery documents and the token endpoint (its clients authenticate with a client
/// assertion instead), and a human's password exchanges (the password is the credential). Exactly these are documented without `security`.
const PUBLIC_ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/audit/public-key"),
    ("POST", "/oauth2/token"),
    ("POST", "/v1/auth/token"),
    ("POST", "/v1/auth/password"),
    ("GET", "/.well-known/oauth-authorization-server"),
    ("GET", "/.well-known/jwks.json"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
];

const JSON_MEDIA: &str = "application/json";
const FORM_MEDIA: &str = "application/x-www-form-urlencoded";

/// The audience of the access tokens asked for here.
const AUDIENCE: &str = "https://docs.example";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Seeds of the Ed25519 keys of the identity `target`: it signs its client assertions with
/// the first; the second is registered to be revoked; the third is never registered by
/// `populate` (the sample body of `POST /v1/identities/{id}/keys`).
const AGENT_SEED: [u8; 32] = [7; 32];
const REVOKED_SEED: [u8; 32] = [8; 32];
const NEW_KEY_SEED: [u8; 32] = [9; 32];
/// Seed of the Ed25519 key of the AI identity `proposer` that submits proposals.
const PROPOSER_SEED: [u8; 32] = [10; 32];
/// The scope an access token needs to submit proposals (its audience: the issuer).
const PROPOSE_SCOPE: &str = "warrant:propose";
/// The named human owning (and accepting, reviewing, overriding for) the capabilities.
const OWNER: &str = "carol@example.com";
/// A named human approving, rejecting and performing proposals: never a beneficiary
/// (the identities `create_identity` registers are owned by alice).
const APPROVER: &str = "bob@example.com";
/// The capability `proposer` submits under (declared and accepted by `populate`).
const CAPABILITY: &str = "optimizer";
/// A capability declared but not accepted (the owner accepts it).
const CAPABILITY_TO_ACCEPT: &str = "to-accept";
/// A capability declared to be shown and declared again.
const CAPABILITY_DECLARED: &str = "declared";
/// A named human shown and changed (`GET`/`PATCH /v1/humans/{name}`).
const HUMAN: &str = "grace@example.com";
/// A named human holding `auditor`, to have it revoked.
const HUMAN_TO_REVOKE: &str = "henry@example.com";
/// A named human without a role, for whom a role is asked (`POST /v1/role-grants`).
const HUMAN_TO_GRANT: &str = "ivan@example.com";
/// A named human who replaces their password (`POST /v1/auth/password`).
const PASSWORD_CHANGER: &str = "kim@example.com";
/// A named human holding `approver`, who issues themselves tokens (`POST /v1/tokens`,
/// `POST /v1/auth/token`).
const TOKEN_HOLDER: &str = "erin@example.com";
/// A named human with two pending role grants (one approved, one rejected).
const GRANTEE: &str = "judy@example.com";
/// A role of the entitlement model defined by `populate`.
const ROLE: &str = "documented";
/// A resource of the entitlement model.
const RESOURCE: &str = "archive";

/// Readers may hold `App:read` in their own environment.
const SCOPE_POLICIES: &str = r#"
@id("readers-hold-read")
permit (principal in Warrant::Role::"reader", action == Warrant::Action::"request_scope",
        resource == Warrant::Scope::"App:read")
when { context.environment == principal.environment };

@id("agents-delegate-read")
permit (principal, action == Warrant::Action::"delegate", resource)
when { context.scope == ["App:read"] };
"#;

fn policies() -> String {
    format!("{POLICIES}\n{SCOPE_POLICIES}")
}

/// [`policies`], and AI tools may hold `warrant:propose` for warrant itself (`issuer`).
fn governance_policies(issuer: &str) -> String {
    format!(
        r#"{}
@id("ai-tools-propose")
permit (principal, action == Warrant::Action::"request_scope",
        resource == Warrant::Scope::"{PROPOSE_SCOPE}")
when {{ principal.kind == "ai_tool" && context.audience == "{issuer}" }};
"#,
        policies()
    )
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The public JWK of the Ed25519 key with this seed.
fn ed25519_jwk(seed: &[u8; 32]) -> Value {
    let sk = ed25519_dalek::SigningKey::from_bytes(seed);
    json!({"kty": "OKP", "crv": "Ed25519", "x": b64(sk.verifying_key().as_bytes())})
}

/// A fresh `private_key_jwt` client assertion of `id`, signed with the key of `seed`
/// registered as `kid`, for the token endpoint `endpoint`.
fn client_assertion(id: &str, kid: &str, seed: &[u8; 32], endpoint: &str) -> String {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let der = ed25519_dalek::SigningKey::from_bytes(seed)
        .to_pkcs8_der()
        .expect("pkcs8");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let jti = format!(
        "openapi-{}-{}-{now}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let claims = json!({
        "iss": id, "sub": id, "aud": endpoint, "iat": now, "exp": now + 60, "jti": jti,
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_ed_der(der.as_bytes()),
    )
    .expect("sign assertion")
}

/// The parameters of a `client_credentials` token request by `id` (form-encoded).
fn token_request(id: &str, kid: &str, endpoint: &str) -> Value {
    json!({
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": client_assertion(id, kid, &AGENT_SEED, endpoint),
        "scope": "App:read",
        "audience": AUDIENCE,
    })
}

/// The parameters of a `client_credentials` token request by `proposer` (key
/// [`PROPOSER_SEED`]) for `warrant:propose` on warrant itself.
fn propose_token_request(id: &str, kid: &str, endpoint: &str, issuer: &str) -> Value {
    json!({
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": client_assertion(id, kid, &PROPOSER_SEED, endpoint),
        "scope": PROPOSE_SCOPE,
        "audience": issuer,
    })
}

const HTTP_METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("http client")
}

struct Answer {
    status: u16,
    content_type: String,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
}

async fn call(
    server: &Server,
    method: &str,
    path: &str,
    token: bool,
    body: Option<&Value>,
) -> Answer {
    call_as(server, method, path, token, body, JSON_MEDIA).await
}

/// The media type an operation's request body is sent as: JSON when it documents JSON,
/// form-encoded when it documents only that.
fn request_media(operation: &Value) -> &'static str {
    let content = &operation["requestBody"]["content"];
    if content.get(JSON_MEDIA).is_some() || content.get(FORM_MEDIA).is_none() {
        JSON_MEDIA
    } else {
        FORM_MEDIA
    }
}

/// The name/value pairs of a form-encoded body given as a JSON object of strings.
fn form_pairs(body: &Value) -> Vec<(String, String)> {
    body.as_object()
        .unwrap_or_else(|| panic!("a form body is an object: {body}"))
        .iter()
        .map(|(k, v)| {
            let v = v
                .as_str()
                .unwrap_or_else(|| panic!("form parameter `{k}` is not a string: {v}"));
            (k.clone(), v.to_owned())
        })
        .collect()
}

/// Sends `body` as `media` (`application/json` or `application/x-www-form-urlencoded`),
/// with the admin token if `token`.
async fn call_as(
    server: &Server,
    method: &str,
    path: &str,
    token: bool,
    body: Option<&Value>,
    media: &str,
) -> Answer {
    let bearer = token.then_some(ADMIN_TOKEN);
    call_with(server, method, path, bearer, body, media).await
}

/// Like [`call_as`], with `bearer` (if any) as the bearer token.
async fn call_with(
    server: &Server,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&Value>,
    media: &str,
) -> Answer {
    let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).expect("method");
    let mut req = http().request(method, format!("{}{path}", server.url));
    if let Some(bearer) = bearer {
        req = req.header(AUTHORIZATION, format!("Bearer {bearer}"));
    }
    match (body, media) {
        (None, _) => {}
        (Some(b), FORM_MEDIA) => req = req.form(&form_pairs(b)),
        (Some(b), JSON_MEDIA) => {
            req = req.header(CONTENT_TYPE, JSON_MEDIA).body(b.to_string());
        }
        (Some(_), other) => panic!("cannot send a body as {other}"),
    }
    let res = req.send().await.expect("send");
    let status = res.status().as_u16();
    let content_type = res
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = res.text().await.expect("body");
    Answer {
        status,
        content_type,
        text,
    }
}

async fn document(server: &Server) -> Value {
    let a = call(server, "get", "/openapi.json", false, None).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert!(
        a.content_type.starts_with("application/json"),
        "{}",
        a.content_type
    );
    a.json()
}

/// (path template, lower-case method, operation) for every documented operation.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = vec![];
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            if HTTP_METHODS.contains(&method.as_str()) {
                out.push((path.clone(), method.clone(), op.clone()));
            }
        }
    }
    out
}

/// Follows `$ref`s into `components`.
/// Like [`resolve`], but an optional value (`oneOf: [{type: null}, X]`) resolves to X.
fn resolve_non_null<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    let schema = resolve(doc, schema);
    if let Some(alts) = schema.get("oneOf").and_then(Value::as_array) {
        let non_null: Vec<&Value> = alts.iter().filter(|a| a["type"] != "null").collect();
        if let [only] = non_null.as_slice() {
            return resolve(doc, only);
        }
    }
    schema
}

fn resolve<'a>(doc: &'a Value, mut schema: &'a Value) -> &'a Value {
    for _ in 0..32 {
        let Some(r) = schema.get("$ref").and_then(Value::as_str) else {
            return schema;
        };
        let pointer = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("external $ref {r}"));
        schema = doc
            .pointer(pointer)
            .unwrap_or_else(|| panic!("dangling $ref {r}"));
    }
    panic!("$ref loop");
}

fn type_matches(t: &str, v: &Value) -> bool {
    match t {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        other => panic!("unknown JSON schema type {other}"),
    }
}

/// Checks `value` against a (subset of) JSON Schema as utoipa emits it: `$ref`, `type`,
/// `oneOf`/`anyOf`/`allOf`, `required`, `properties` (undeclared properties are errors
/// unless `additionalProperties` allows them), `items`, `enum`, `minimum`.
fn conforms(doc: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    if let Some(branches) = schema.get("oneOf").and_then(Value::as_array) {
        let fitting = branches
            .iter()
            .filter(|b| {
                let mut e = vec![];
                conforms(doc, b, value, at, &mut e);
                e.is_empty()
            })
            .count();
        if fitting != 1 {
            errors.push(format!(
                "{at}: fits {fitting} of the oneOf branches: {value}"
            ));
        }
    }
    if let Some(branches) = schema.get("anyOf").and_then(Value::as_array) {
        let any = branches.iter().any(|b| {
            let mut e = vec![];
            conforms(doc, b, value, at, &mut e);
            e.is_empty()
        });
        if !any {
            errors.push(format!("{at}: fits none of the anyOf branches: {value}"));
        }
    }
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for b in all {
            conforms(doc, b, value, at, errors);
        }
    }
    match schema.get("type") {
        Some(Value::String(t)) if !type_matches(t, value) => {
            errors.push(format!("{at}: expected {t}, got {value}"));
            return;
        }
        Some(Value::Array(ts))
            if !ts
                .iter()
                .any(|t| type_matches(t.as_str().unwrap_or(""), value)) =>
        {
            errors.push(format!("{at}: expected one of {ts:?}, got {value}"));
            return;
        }
        _ => {}
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        if !options.contains(value) {
            errors.push(format!("{at}: {value} is not one of {options:?}"));
        }
    }
    if let (Some(min), Some(n)) = (
        schema.get("minimum").and_then(Value::as_f64),
        value.as_f64(),
    ) {
        if n < min {
            errors.push(format!("{at}: {n} is below the minimum {min}"));
        }
    }
    if let Value::Object(obj) = value {
        for req in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = req.as_str().unwrap_or_default();
            if !obj.contains_key(name) {
                errors.push(format!("{at}: required property `{name}` is missing"));
            }
        }
        let props = schema.get("properties").and_then(Value::as_object);
        let additional = schema.get("additionalProperties");
        for (k, v) in obj {
            let here = format!("{at}.{k}");
            match props.and_then(|p| p.get(k)) {
                Some(s) => conforms(doc, s, v, &here, errors),
                None => match additional {
                    Some(Value::Bool(false)) => {
                        errors.push(format!("{at}: property `{k}` is not declared"))
                    }
                    Some(s @ Value::Object(_)) => conforms(doc, s, v, &here, errors),
                    Some(Value::Bool(true)) => {}
                    _ if props.is_some() => {
                        errors.push(format!("{at}: property `{k}` is not declared"))
                    }
                    _ => {}
                },
            }
        }
    }
    if let (Value::Array(items), Some(s)) = (value, schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            conforms(doc, s, item, &format!("{at}[{i}]"), errors);
        }
    }
}

/// The documented schema of `status` (JSON content) of an operation.
fn response_schema(op: &Value, status: u16) -> Option<&Value> {
    op["responses"]
        .get(status.to_string())
        .and_then(|r| r["content"].get("application/json"))
        .and_then(|c| c.get("schema"))
}

fn op<'a>(doc: &'a Value, method: &str, path: &str) -> &'a Value {
    doc["paths"]
        .get(path)
        .and_then(|p| p.get(method))
        .unwrap_or_else(|| panic!("{} {path} is not documented", method.to_uppercase()))
}

/// Asserts a real response fits the documented schema for its status.
fn assert_fits(doc: &Value, method: &str, path: &str, status: u16, body: &Value) {
    let operation = op(doc, method, path);
    let schema = response_schema(operation, status).unwrap_or_else(|| {
        panic!(
            "{} {path}: status {status} has no documented JSON schema",
            method.to_uppercase()
        )
    });
    let mut errors = vec![];
    conforms(doc, schema, body, "$", &mut errors);
    assert!(
        errors.is_empty(),
        "{} {path} {status}: the response does not fit the documented schema:\n{}\nresponse: {body}",
        method.to_uppercase(),
        errors.join("\n")
    );
}

struct Ids {
    target: String,
    to_suspend: String,
    to_resume: String,
    to_retire: String,
    /// An engaged kill switch (covering no identity).
    kill_switch: String,
    /// The key of `target` its client assertions are signed with (seed [`AGENT_SEED`]).
    agent_kid: String,
    /// Another key of `target`, to be revoked.
    kid_to_revoke: String,
    /// The token endpoint URL as the metadata names it (the assertions' `aud`).
    token_endpoint: String,
    /// Access tokens of `target`: one to introspect, one to revoke.
    access_token: String,
    token_to_revoke: String,
    /// The OAuth issuer (the audience of access tokens for warrant itself).
    issuer: String,
    /// The AI identity acting for [`CAPABILITY`].
    proposer: String,
    /// An identity the sample proposal recommends retiring.
    recommended: String,
    /// An API token (not the test's own) to be revoked.
    api_token_to_revoke: String,
    /// The tier policies in force (the defaults), declared again as they are.
    tier_policies: String,
    /// Proposals, each in the state its operation needs: Tier 3 pending approval (two),
    /// Tier 2 in its override window, Tier 4 recommended.
    proposal_to_approve: String,
    proposal_to_reject: String,
    proposal_to_override: String,
    proposal_to_ratify: String,
    proposal_to_perform: String,
    /// Pending role grants of [`GRANTEE`]: one to approve, one to reject.
    grant_to_approve: String,
    grant_to_reject: String,
    /// An open certification campaign over the identities `create_identity` registers
    /// (owned by alice).
    campaign: String,
    /// The bearer token of the operations the admin token may not perform: (lower-case
    /// method, path template) → token. The others use [`ADMIN_TOKEN`].
    bearers: std::collections::BTreeMap<(&'static str, &'static str), String>,
}

impl Ids {
    /// The bearer token a plausible call of this operation presents.
    fn bearer(&self, method: &str, template: &str) -> &str {
        self.bearers
            .iter()
            .find(|((m, t), _)| *m == method && *t == template)
            .map_or(ADMIN_TOKEN, |(_, token)| token.as_str())
    }
}

/// Registers a public JWK for `id` and returns its kid.
async fn add_key(c: &warrant_client::Client, id: &str, jwk: &Value) -> String {
    c.post(&format!("/v1/identities/{id}/keys"), &json!({ "jwk": jwk }))
        .await
        .expect("add key")["kid"]
        .as_str()
        .expect("kid")
        .to_owned()
}

/// The server's OAuth authorization server metadata.
async fn metadata(server: &Server) -> Value {
    let m = call(
        server,
        "get",
        "/.well-known/oauth-authorization-server",
        false,
        None,
    )
    .await;
    assert_eq!(m.status, 200, "{}", m.text);
    m.json()
}

/// The token endpoint URL the server's metadata names.
async fn token_endpoint(server: &Server) -> String {
    metadata(server).await["token_endpoint"]
        .as_str()
        .expect("token_endpoint")
        .to_owned()
}

/// An access token for `id` (a `client_credentials` grant).
async fn access_token(server: &Server, id: &str, kid: &str, endpoint: &str) -> String {
    let a = call_as(
        server,
        "post",
        "/oauth2/token",
        false,
        Some(&token_request(id, kid, endpoint)),
        FORM_MEDIA,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    a.json()["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

/// Calls an operation `populate` needs to succeed (status 2xx) and returns its body.
async fn expect_ok(
    server: &Server,
    bearer: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Value {
    let a = call_with(server, method, path, Some(bearer), body, JSON_MEDIA).await;
    assert!(
        (200..300).contains(&a.status),
        "{} {path}: {} {}",
        method.to_uppercase(),
        a.status,
        a.text
    );
    a.json()
}

/// A pending role grant of `role` to [`GRANTEE`], asked for with the bootstrap token.
async fn pending_grant(server: &Server, role: &str) -> String {
    let body = json!({ "human": GRANTEE, "role": role, "justification": GRANT_WHY });
    let g = expect_ok(server, ADMIN_TOKEN, "post", "/v1/role-grants", Some(&body)).await;
    assert_eq!(g["state"], "pending", "{g}");
    g["id"].as_str().expect("grant id").to_owned()
}

/// A declaration of a capability of `proposer` owned by [`OWNER`].
fn capability_sample(proposer: &str) -> Value {
    json!({
        "description": "documented", "identity": proposer,
        "kinds": ["revoke_entitlement", "modify_trust", "retire_identity"],
        "max_blast_radius": 5, "owner": OWNER,
        // Tier 2 needs a channel to notify the reviewer (nobody answers here).
        "notify": "http://127.0.0.1:9/unwatched",
    })
}

/// A proposal under [`CAPABILITY`].
fn proposal_sample(change: Value, confidence: f64) -> Value {
    json!({
        "capability": CAPABILITY, "change": change, "evidence": { "unused_days": 60 },
        "rationale": "not used in 60 days", "confidence": confidence,
    })
}

/// Submits a proposal as `proposer` and checks the tier and state it got; returns its id.
async fn submit(server: &Server, token: &str, body: &Value, tier: u64, state: &str) -> String {
    let p = expect_ok(server, token, "post", "/v1/proposals", Some(body)).await;
    assert_eq!(p["proposal"]["tier"]["tier"], tier, "{p}");
    assert_eq!(p["proposal"]["state"], state, "{p}");
    p["proposal"]["id"]
        .as_str()
        .expect("proposal id")
        .to_owned()
}

/// A policy, identities in each lifecycle state an operation needs, a decision, a
/// checkpoint covering record 0, an engaged kill switch that covers nobody, two public
/// keys of `target` and two access tokens issued to it; for governance: API tokens of
/// named humans, an AI identity with a `warrant:propose` access token, accepted and
/// unaccepted capabilities, a role, and a proposal in each state an operation needs.
async fn populate(server: &Server) -> Ids {
    let c = server.client();
    let meta = metadata(server).await;
    let issuer = meta["issuer"].as_str().expect("issuer").to_owned();
    let endpoint = meta["token_endpoint"]
        .as_str()
        .expect("token_endpoint")
        .to_owned();
    c.put_policy(Some(SCHEMA), &governance_policies(&issuer), Some("openapi"))
        .await
        .expect("put policy");
    let target = create_identity(&c, "target", "dev", &["reader"]).await;
    let agent_kid = add_key(&c, &target, &ed25519_jwk(&AGENT_SEED)).await;
    let kid_to_revoke = add_key(&c, &target, &ed25519_jwk(&REVOKED_SEED)).await;

    // Governance: the AI tool and its access token for warrant itself.
    let proposer = create_identity(&c, "proposer", "dev", &[]).await;
    let proposer_kid = add_key(&c, &proposer, &ed25519_jwk(&PROPOSER_SEED)).await;
    let a = call_as(
        server,
        "post",
        "/oauth2/token",
        false,
        Some(&propose_token_request(
            &proposer,
            &proposer_kid,
            &endpoint,
            &issuer,
        )),
        FORM_MEDIA,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let proposer_token = a.json()["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();
    // Named humans: accounts, their roles (two-person grants approved by the first
    // admin, `ROOT_ADMIN`), their API tokens.
    let root_token = root_admin_token(&server.url).await;
    let (_, owner_token) = human_token(&server.url, OWNER, "owner").await;
    let (_, approver_token) = human_token(&server.url, APPROVER, "approver").await;
    let (api_token_to_revoke, _) = human_token(&server.url, "dave@example.com", "auditor").await;
    // erin holds `approver` and issues herself tokens.
    let (_, erin_token) = human_token(&server.url, TOKEN_HOLDER, "approver").await;
    ensure_human(&server.url, PASSWORD_CHANGER).await;
    grant_role(&server.url, HUMAN_TO_REVOKE, "auditor").await;
    ensure_human(&server.url, HUMAN).await;
    ensure_human(&server.url, HUMAN_TO_GRANT).await;
    ensure_human(&server.url, GRANTEE).await;
    let grant_to_approve = pending_grant(server, "approver").await;
    let grant_to_reject = pending_grant(server, "auditor").await;
    // alice owns the identities `create_identity` registers: she answers their
    // certification items.
    let (_, alice_token) = human_token(&server.url, "alice@example.com", "owner").await;
    // Capabilities: one accepted (proposes, is reviewed), one to accept, one to show.
    for id in [CAPABILITY, CAPABILITY_TO_ACCEPT, CAPABILITY_DECLARED] {
        let path = format!("/v1/capabilities/{id}");
        let body = capability_sample(&proposer);
        expect_ok(server, ADMIN_TOKEN, "put", &path, Some(&body)).await;
    }
    let accept = format!("/v1/capabilities/{CAPABILITY}/accept");
    let accepted = expect_ok(server, &owner_token, "post", &accept, Some(&json!({}))).await;
    assert_eq!(accepted["autonomy"], "tiered", "{accepted}");
    // The entitlement model and the tier policies in force.
    let role = json!({ "description": "documented", "entitlements": ["docs:read"] });
    let role_path = format!("/v1/roles/{ROLE}");
    expect_ok(server, ADMIN_TOKEN, "put", &role_path, Some(&role)).await;
    let tier = expect_ok(server, ADMIN_TOKEN, "get", "/v1/tier-policies", None).await;
    let tier_policies = tier["policies"].as_str().expect("policies").to_owned();
    // Proposals, each on an identity of its own (`create_identity` gives each the one
    // entitlement `docs:write`).
    let reviewed = create_identity(&c, "reviewed", "dev", &[]).await;
    let ratified = create_identity(&c, "ratified", "dev", &[]).await;
    let trusting = create_identity(&c, "trusting", "dev", &[]).await;
    let distrusting = create_identity(&c, "distrusting", "dev", &[]).await;
    let retiree = create_identity(&c, "retiree", "dev", &[]).await;
    let recommended = create_identity(&c, "recommended", "dev", &[]).await;
    // Tier 2 (`tier2-small-entitlement-change`): one reversible revocation below 90%.
    let revoke =
        json!({ "kind": "revoke_entitlement", "identity": reviewed, "entitlement": "docs:write" });
    let proposal_to_override = submit(
        server,
        &proposer_token,
        &proposal_sample(revoke, 0.85),
        2,
        "in_review",
    )
    .await;
    let revoke =
        json!({ "kind": "revoke_entitlement", "identity": ratified, "entitlement": "docs:write" });
    let proposal_to_ratify = submit(
        server,
        &proposer_token,
        &proposal_sample(revoke, 0.85),
        2,
        "in_review",
    )
    .await;
    // Tier 3 by the hard floor: trust-relationship changes.
    let trust = |identity: &str| json!({ "kind": "modify_trust", "identity": identity, "add": ["spiffe://example.org/ci"] });
    let proposal_to_approve = submit(
        server,
        &proposer_token,
        &proposal_sample(trust(&trusting), 0.9),
        3,
        "pending_approval",
    )
    .await;
    let proposal_to_reject = submit(
        server,
        &proposer_token,
        &proposal_sample(trust(&distrusting), 0.9),
        3,
        "pending_approval",
    )
    .await;
    // Tier 4 (`tier4-retire`): a recommendation a human performs.
    let retire = json!({ "kind": "retire_identity", "identity": retiree });
    let proposal_to_perform = submit(
        server,
        &proposer_token,
        &proposal_sample(retire, 0.9),
        4,
        "recommended",
    )
    .await;

    let bearers = [
        ("post", "/v1/proposals", &proposer_token),
        ("post", "/v1/capabilities/{id}/accept", &owner_token),
        ("post", "/v1/capabilities/{id}/review", &owner_token),
        ("post", "/v1/proposals/{id}/override", &owner_token),
        ("post", "/v1/proposals/{id}/ratify", &owner_token),
        ("post", "/v1/proposals/{id}/approve", &approver_token),
        ("post", "/v1/proposals/{id}/reject", &approver_token),
        ("post", "/v1/proposals/{id}/perform", &approver_token),
        ("post", "/v1/role-grants/{id}/approve", &root_token),
        ("post", "/v1/role-grants/{id}/reject", &root_token),
        ("post", "/v1/certifications/{id}/items/{item}", &alice_token),
        ("post", "/v1/tokens", &erin_token),
    ]
    .into_iter()
    .map(|(m, t, token)| ((m, t), token.clone()))
    .collect();
    let ids = Ids {
        access_token: access_token(server, &target, &agent_kid, &endpoint).await,
        token_to_revoke: access_token(server, &target, &agent_kid, &endpoint).await,
        agent_kid,
        kid_to_revoke,
        token_endpoint: endpoint,
        target,
        to_suspend: create_identity(&c, "to-suspend", "dev", &[]).await,
        to_resume: create_identity(&c, "to-resume", "dev", &[]).await,
        to_retire: create_identity(&c, "to-retire", "dev", &[]).await,
        kill_switch: c
            .post("/v1/killswitches", &kill_switch_sample())
            .await
            .expect("engage kill switch")["id"]
            .as_str()
            .expect("kill switch id")
            .to_owned(),
        issuer,
        proposer,
        recommended,
        api_token_to_revoke,
        tier_policies,
        proposal_to_approve,
        proposal_to_reject,
        proposal_to_override,
        proposal_to_ratify,
        proposal_to_perform,
        grant_to_approve,
        grant_to_reject,
        campaign: String::new(),
        bearers,
    };
    c.lifecycle(&ids.to_resume, "suspend", None)
        .await
        .expect("suspend");
    let d = c
        .authorize(&read_req(&ids.target, 1))
        .await
        .expect("authorize");
    assert_eq!(d["decision"], "allow", "{d}");
    c.checkpoint().await.expect("checkpoint");
    let mut ids = ids;
    let body = json!({ "name": "populated", "deadline": in_a_week(), "unanswered": "escalate",
                       "owner": "alice@example.com" });
    let campaign = expect_ok(
        server,
        ADMIN_TOKEN,
        "post",
        "/v1/certifications",
        Some(&body),
    )
    .await;
    ids.campaign = campaign["id"].as_str().expect("campaign id").to_owned();
    ids
}

/// RFC 3339, a week from now.
fn in_a_week() -> String {
    (time::OffsetDateTime::now_utc() + time::Duration::days(7))
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format")
}

/// A kill switch that stops nobody (no identity has this owner).
fn kill_switch_sample() -> Value {
    json!({
        "target": { "kind": "owner", "value": "nobody@example.com" },
        "reason": "openapi test",
    })
}

/// Plausible path for a documented path template.
fn concrete_path(template: &str, ids: &Ids) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').expect("unclosed path parameter") + open;
        out.push_str(&rest[..open]);
        let name = &rest[open + 1..close];
        let value = match name {
            "id" if template.starts_with("/v1/capabilities/") => {
                if template.ends_with("/accept") {
                    CAPABILITY_TO_ACCEPT.to_owned()
                } else if template.ends_with("/review") {
                    CAPABILITY.to_owned()
                } else {
                    CAPABILITY_DECLARED.to_owned()
                }
            }
            "id" if template.starts_with("/v1/proposals/") => {
                if template.ends_with("/reject") {
                    ids.proposal_to_reject.clone()
                } else if template.ends_with("/override") {
                    ids.proposal_to_override.clone()
                } else if template.ends_with("/ratify") {
                    ids.proposal_to_ratify.clone()
                } else if template.ends_with("/perform") {
                    ids.proposal_to_perform.clone()
                } else {
                    // approve, and the reads (which answer in any state).
                    ids.proposal_to_approve.clone()
                }
            }
            "id" if template.starts_with("/v1/resources/") => RESOURCE.to_owned(),
            "id" if template.starts_with("/v1/tokens/") => ids.api_token_to_revoke.clone(),
            "id" if template.starts_with("/v1/role-grants/") => {
                if template.ends_with("/reject") {
                    ids.grant_to_reject.clone()
                } else {
                    ids.grant_to_approve.clone()
                }
            }
            "name" if template.ends_with("/revoke") => HUMAN_TO_REVOKE.to_owned(),
            "id" if template.starts_with("/v1/certifications/") => ids.campaign.clone(),
            "item" => "0".to_owned(),
            "name" if template.starts_with("/v1/humans/") => HUMAN.to_owned(),
            "role" => "auditor".to_owned(),
            "name" if template.starts_with("/v1/roles/") => ROLE.to_owned(),
            "id" if template.ends_with("/suspend") => ids.to_suspend.clone(),
            "id" if template.ends_with("/resume") => ids.to_resume.clone(),
            "id" if template.ends_with("/retire") => ids.to_retire.clone(),
            "id" if template.starts_with("/v1/killswitches/") => ids.kill_switch.clone(),
            "id" => ids.target.clone(),
            "kid" => ids.kid_to_revoke.clone(),
            "version" => "1".to_owned(),
            "seq" => "0".to_owned(),
            other => panic!("no plausible value for path parameter `{other}` of {template}"),
        };
        out.push_str(&value);
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// A minimal valid request body for each documented operation that takes one (a form
/// body as an object of strings). A token request carries a fresh client assertion.
fn sample_body(method: &str, template: &str, ids: &Ids) -> Value {
    match (method, template) {
        ("post", "/v1/identities") => json!({
            "name": "documented", "kind": "workload", "environment": "staging",
            "owner": "carol@example.com",
        }),
        ("patch", "/v1/identities/{id}") => json!({ "description": "documented" }),
        ("post", "/v1/identities/{id}/suspend")
        | ("post", "/v1/identities/{id}/resume")
        | ("post", "/v1/identities/{id}/retire") => json!({ "reason": "openapi test" }),
        ("put", "/v1/policies") => json!({
            "schema": SCHEMA, "policies": governance_policies(&ids.issuer), "comment": "again",
        }),
        ("post", "/v1/policies/validate") => json!({ "policies": POLICIES }),
        ("post", "/v1/authorize") => read_req(&ids.target, 1),
        ("post", "/v1/authorize/batch") => {
            json!({ "requests": [read_req(&ids.target, 1), read_req("idn_unknown", 1)] })
        }
        ("post", "/v1/killswitches") => kill_switch_sample(),
        ("post", "/v1/killswitches/{id}/release") => json!({ "reason": "openapi test" }),
        ("post", "/v1/identities/{id}/keys") => json!({ "jwk": ed25519_jwk(&NEW_KEY_SEED) }),
        ("post", "/oauth2/token") => {
            token_request(&ids.target, &ids.agent_kid, &ids.token_endpoint)
        }
        ("post", "/oauth2/introspect") => {
            json!({ "token": ids.access_token, "token_type_hint": "access_token" })
        }
        ("post", "/oauth2/revoke") => {
            json!({ "token": ids.token_to_revoke, "token_type_hint": "access_token" })
        }
        ("put", "/v1/capabilities/{id}") => capability_sample(&ids.proposer),
        ("post", "/v1/capabilities/{id}/accept") => {
            json!({ "statement": "I answer for what this capability proposes." })
        }
        ("post", "/v1/capabilities/{id}/review") => {
            json!({ "note": "decisions reviewed, no overrides needed" })
        }
        ("put", "/v1/roles/{name}") => json!({
            "description": "documented", "privileged": false, "entitlements": ["docs:read"],
        }),
        ("put", "/v1/resources/{id}") => json!({
            "classification": "internal", "privileged": false, "description": "documented",
        }),
        ("put", "/v1/tier-policies") => {
            json!({ "policies": ids.tier_policies, "comment": "the defaults, again" })
        }
        ("post", "/v1/tokens") => {
            json!({ "name": "erin laptop", "human": TOKEN_HOLDER, "role": "approver" })
        }
        ("post", "/v1/auth/token") => json!({
            "username": TOKEN_HOLDER, "password": password_of(TOKEN_HOLDER), "role": "approver",
            "name": "erin CLI",
        }),
        ("post", "/v1/auth/password") => json!({
            "username": PASSWORD_CHANGER, "current_password": password_of(PASSWORD_CHANGER),
            "new_password": "a documented new passphrase",
        }),
        ("post", "/v1/humans") => json!({
            "name": "documented@example.com", "display_name": "Documented Human",
        }),
        ("patch", "/v1/humans/{name}") => json!({ "display_name": "Grace Documented" }),
        ("post", "/v1/humans/{name}/roles/{role}/revoke") => {
            json!({ "justification": "left the audit team" })
        }
        ("post", "/v1/role-grants") => {
            json!({ "human": HUMAN_TO_GRANT, "role": "approver", "justification": GRANT_WHY })
        }
        ("post", "/v1/role-grants/{id}/approve") | ("post", "/v1/role-grants/{id}/reject") => {
            json!({ "note": "checked with the team lead" })
        }
        ("post", "/v1/certifications") => json!({
            "name": "documented", "deadline": in_a_week(), "unanswered": "escalate",
        }),
        ("post", "/v1/certifications/{id}/items/{item}") => json!({ "decision": "confirm" }),
        // Tier 4 (`tier4-retire`): a recommendation only; nothing changes.
        ("post", "/v1/proposals") => proposal_sample(
            json!({ "kind": "retire_identity", "identity": ids.recommended }),
            0.9,
        ),
        ("post", "/v1/proposals/{id}/approve") | ("post", "/v1/proposals/{id}/perform") => json!({
            "justification": "reviewed the evidence and the change request", "ticket": "CHG-1234",
        }),
        ("post", "/v1/proposals/{id}/reject")
        | ("post", "/v1/proposals/{id}/override")
        | ("post", "/v1/proposals/{id}/ratify") => {
            json!({ "justification": "the team still needs this access for the migration" })
        }
        _ => panic!(
            "{} {template} documents a request body but this test has no sample for it",
            method.to_uppercase()
        ),
    }
}

#[tokio::test]
async fn document_is_openapi_3_1_with_bearer_security() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let doc = document(&server).await;
    let version = doc["openapi"].as_str().expect("openapi version");
    assert!(version.starts_with("3.1"), "openapi {version}");
    assert_eq!(doc["info"]["title"], "warrant");
    assert!(doc["info"]["version"]
        .as_str()
        .is_some_and(|v| !v.is_empty()));
    let bearer = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(bearer["type"], "http", "{bearer}");
    assert_eq!(
        bearer["scheme"]
            .as_str()
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("bearer"),
        "{bearer}"
    );
    // Every security requirement names a declared scheme; every $ref resolves.
    for (path, method, operation) in operations(&doc) {
        for req in operation["security"].as_array().into_iter().flatten() {
            for name in req.as_object().expect("security requirement").keys() {
                assert!(
                    doc["components"]["securitySchemes"].get(name).is_some(),
                    "{method} {path}: unknown security scheme {name}"
                );
            }
        }
    }
    fn walk(doc: &Value, v: &Value) {
        match v {
            Value::Object(o) => {
                if o.contains_key("$ref") {
                    let _ = resolve(doc, v);
                }
                o.values().for_each(|x| walk(doc, x));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(doc, x)),
            _ => {}
        }
    }
    walk(&doc, &doc);
}

#[tokio::test]
async fn every_documented_operation_is_served_and_answers_as_documented() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let ids = populate(&server).await;
    let doc = document(&server).await;
    let ops = operations(&doc);
    assert!(
        ops.len() >= SERVED_ROUTES.len(),
        "only {} operations documented",
        ops.len()
    );
    let mut failures = vec![];
    for (template, method, operation) in &ops {
        let path = concrete_path(template, &ids);
        let body = operation
            .get("requestBody")
            .map(|_| sample_body(method, template, &ids));
        let media = request_media(operation);
        let bearer = ids.bearer(method, template);
        let a = call_with(&server, method, &path, Some(bearer), body.as_ref(), media).await;
        let label = format!("{} {path} ({template})", method.to_uppercase());
        if a.status == 405 {
            failures.push(format!(
                "{label}: 405, the method is not served: {}",
                a.text
            ));
            continue;
        }
        if a.status == 404 && a.text.contains("no such endpoint") {
            failures.push(format!("{label}: 404, the route is not served: {}", a.text));
            continue;
        }
        let documented: Vec<&String> = operation["responses"]
            .as_object()
            .expect("responses")
            .keys()
            .collect();
        if !documented
            .iter()
            .any(|s| *s == &a.status.to_string() || *s == "default")
        {
            failures.push(format!(
                "{label}: status {} is not documented (documented: {documented:?}): {}",
                a.status, a.text
            ));
            continue;
        }
        if !(200..300).contains(&a.status) {
            failures.push(format!(
                "{label}: plausible request answered {}: {}",
                a.status, a.text
            ));
            continue;
        }
        let response = &operation["responses"][a.status.to_string()];
        let content = response["content"].as_object();
        if a.status == 204 && content.is_none() && a.text.is_empty() {
            // No content, documented without content.
            continue;
        }
        let media_ok =
            content.is_some_and(|c| c.keys().any(|m| a.content_type.starts_with(m.as_str())));
        if !media_ok {
            failures.push(format!(
                "{label}: content-type `{}` is not documented ({:?})",
                a.content_type,
                content.map(|c| c.keys().collect::<Vec<_>>())
            ));
            continue;
        }
        if a.content_type.starts_with("application/json") {
            let value: Value = match serde_json::from_str(&a.text) {
                Ok(v) => v,
                Err(e) => {
                    failures.push(format!("{label}: body is not JSON: {e}"));
                    continue;
                }
            };
            if let Some(schema) = response_schema(operation, a.status) {
                let mut errors = vec![];
                conforms(&doc, schema, &value, "$", &mut errors);
                for e in errors {
                    failures.push(format!("{label}: {e}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn every_served_route_is_documented() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let ids = populate(&server).await;
    let doc = document(&server).await;
    let mut missing = vec![];
    for (method, path) in SERVED_ROUTES {
        let lower = method.to_ascii_lowercase();
        if doc["paths"]
            .get(*path)
            .and_then(|p| p.get(&lower))
            .is_none()
        {
            missing.push(format!("{method} {path}"));
        }
    }
    assert!(missing.is_empty(), "served but not documented: {missing:?}");
    // The hard-coded list is honest: each route is really served.
    for (method, path) in SERVED_ROUTES {
        let concrete = concrete_path(path, &ids);
        let a = call(&server, method, &concrete, true, None).await;
        assert!(
            a.status != 405 && !(a.status == 404 && a.text.contains("no such endpoint")),
            "{method} {concrete} is not served: {} {}",
            a.status,
            a.text
        );
    }
    // And nothing is documented that is not in the list (keeps the list complete).
    let documented: Vec<String> = operations(&doc)
        .into_iter()
        .map(|(p, m, _)| format!("{} {p}", m.to_uppercase()))
        .collect();
    for d in &documented {
        assert!(
            SERVED_ROUTES.iter().any(|(m, p)| format!("{m} {p}") == *d),
            "{d} is documented but missing from SERVED_ROUTES; add it"
        );
    }
    // /openapi.json is served itself, without a token.
    let a = call(&server, "get", "/openapi.json", false, None).await;
    assert_eq!(a.status, 200);
}

#[tokio::test]
async fn main_success_responses_fit_their_documented_schemas() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let doc = document(&server).await;
    let c = server.client();

    // Policy put.
    let put = c
        .put_policy(Some(SCHEMA), POLICIES, Some("schema check"))
        .await
        .expect("put policy");
    assert_fits(&doc, "put", "/v1/policies", 200, &put);
    let cur = c.policy().await.expect("policy");
    assert_fits(&doc, "get", "/v1/policies", 200, &cur);

    // Create identity: minimal and with every optional field.
    let a = call(
        &server,
        "post",
        "/v1/identities",
        true,
        Some(&json!({"name": "minimal", "kind": "agent", "environment": "dev", "owner": "alice"})),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.text);
    let minimal = a.json();
    assert_fits(&doc, "post", "/v1/identities", 201, &minimal);
    let full = c
        .create_identity(&json!({
            "name": "full", "kind": "ai_tool", "environment": "prod", "owner": "bob@example.com",
            "description": "every field", "spiffe_id": "spiffe://example.org/prod/full",
            "roles": ["reader", "writer"], "entitlements": ["docs:write"],
        }))
        .await
        .expect("create full");
    assert_fits(&doc, "post", "/v1/identities", 201, &full);
    let reader = create_identity(&c, "reader", "dev", &["reader"]).await;

    // Authorize: an allow, a deny, an unknown principal (no `principal`).
    for (body, want) in [
        (read_req(&reader, 1), "allow"),
        (read_req(&reader, 99), "deny"),
        (read_req("idn_nobody", 1), "deny"),
    ] {
        let d = c.authorize(&body).await.expect("authorize");
        assert_eq!(d["decision"], want, "{d}");
        assert_fits(&doc, "post", "/v1/authorize", 200, &d);
    }
    let batch = c
        .authorize_batch(&[
            read_req(&reader, 1),
            json!({"principal": reader, "action": "nope", "resource": "App::Document::\"q\"", "context": {"risk": 1}}),
        ])
        .await
        .expect("batch");
    assert_fits(&doc, "post", "/v1/authorize/batch", 200, &batch);

    // List identities, with and without a next page; last_used_at set on `reader`.
    let page = c
        .list_identities(&[("limit", Some("2".into()))])
        .await
        .expect("list");
    assert!(page["next_cursor"].is_string(), "{page}");
    assert_fits(&doc, "get", "/v1/identities", 200, &page);
    let all = c.list_identities(&[]).await.expect("list all");
    assert_eq!(all["items"].as_array().map(Vec::len), Some(3), "{all}");
    assert_fits(&doc, "get", "/v1/identities", 200, &all);
    let shown = c.identity(&reader).await.expect("show");
    assert!(shown["last_used_at"].is_string(), "{shown}");
    assert_fits(&doc, "get", "/v1/identities/{id}", 200, &shown);

    // Audit list: a page with a next cursor and a full one.
    let audit = c
        .audit(&[("limit", Some("2".into()))])
        .await
        .expect("audit");
    assert!(audit["next_cursor"].is_u64(), "{audit}");
    assert_fits(&doc, "get", "/v1/audit", 200, &audit);
    let audit_all = c.audit(&[]).await.expect("audit");
    assert_fits(&doc, "get", "/v1/audit", 200, &audit_all);

    // Error bodies fit ErrorBody, including Cedar diagnostics in `details`.
    let err = call(
        &server,
        "put",
        "/v1/policies",
        true,
        Some(&json!({"policies": "permit(principal, action, resource) when { nonsense };"})),
    )
    .await;
    assert_eq!(err.status, 400, "{}", err.text);
    assert_fits(&doc, "put", "/v1/policies", 400, &err.json());
    let conflict = call(
        &server,
        "post",
        "/v1/identities",
        true,
        Some(&json!({"name": "minimal", "kind": "agent", "environment": "dev", "owner": "alice"})),
    )
    .await;
    assert_eq!(conflict.status, 409, "{}", conflict.text);
    assert_fits(&doc, "post", "/v1/identities", 409, &conflict.json());

    // Kill switches: engaged (with and without a target value), listed, shown, released;
    // releasing twice is a 409.
    let identity =
        json!({ "target": { "kind": "identity", "value": reader }, "reason": "schema check" });
    let all_ai = json!({ "target": { "kind": "all_ai" }, "reason": "schema check" });
    let mut engaged = vec![];
    for body in [&identity, &all_ai] {
        let a = call(&server, "post", "/v1/killswitches", true, Some(body)).await;
        assert_eq!(a.status, 201, "{}", a.text);
        assert_fits(&doc, "post", "/v1/killswitches", 201, &a.json());
        engaged.push(a.json()["id"].as_str().expect("id").to_owned());
    }
    let released = call(
        &server,
        "post",
        &format!("/v1/killswitches/{}/release", engaged[0]),
        true,
        Some(&json!({ "reason": "schema check done" })),
    )
    .await;
    assert_eq!(released.status, 200, "{}", released.text);
    assert_fits(
        &doc,
        "post",
        "/v1/killswitches/{id}/release",
        200,
        &released.json(),
    );
    for id in &engaged {
        let a = call(
            &server,
            "get",
            &format!("/v1/killswitches/{id}"),
            true,
            None,
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.text);
        assert_fits(&doc, "get", "/v1/killswitches/{id}", 200, &a.json());
    }
    for query in ["", "?all=true"] {
        let a = call(
            &server,
            "get",
            &format!("/v1/killswitches{query}"),
            true,
            None,
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.text);
        assert_fits(&doc, "get", "/v1/killswitches", 200, &a.json());
    }
    let again = call(
        &server,
        "post",
        &format!("/v1/killswitches/{}/release", engaged[0]),
        true,
        Some(&json!({ "reason": "schema check done" })),
    )
    .await;
    assert_eq!(again.status, 409, "{}", again.text);
    assert_fits(
        &doc,
        "post",
        "/v1/killswitches/{id}/release",
        409,
        &again.json(),
    );
    let unknown = call(&server, "get", "/v1/killswitches/ks_unknown", true, None).await;
    assert_eq!(unknown.status, 404, "{}", unknown.text);
    assert_fits(&doc, "get", "/v1/killswitches/{id}", 404, &unknown.json());
}

/// The checker used above must be able to fail.
#[tokio::test]
async fn schema_checker_detects_mismatches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let doc = document(&server).await;
    let c = server.client();
    let id = create_identity(&c, "probe", "dev", &[]).await;
    let real = c.identity(&id).await.expect("show");
    let schema = response_schema(op(&doc, "get", "/v1/identities/{id}"), 200).expect("schema");
    let check = |v: &Value| {
        let mut e = vec![];
        conforms(&doc, schema, v, "$", &mut e);
        e
    };
    assert!(check(&real).is_empty(), "{:?}", check(&real));
    let mut extra = real.clone();
    extra["undocumented"] = json!(1);
    assert!(check(&extra).iter().any(|e| e.contains("undocumented")));
    let mut missing = real.clone();
    missing.as_object_mut().expect("object").remove("owner");
    assert!(check(&missing).iter().any(|e| e.contains("owner")));
    let mut wrong = real.clone();
    wrong["roles"] = json!("reader");
    assert!(check(&wrong).iter().any(|e| e.contains("roles")));
    let mut nested = real;
    nested["roles"] = json!([1]);
    assert!(check(&nested).iter().any(|e| e.contains("roles[0]")));
}

/// What the documented request schemas say is required or allowed is what the server
/// enforces.
#[tokio::test]
async fn documented_request_bodies_match_what_the_server_accepts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let ids = populate(&server).await;
    let doc = document(&server).await;
    let mut failures = vec![];
    for (template, method, operation) in operations(&doc) {
        let Some(rb) = operation.get("requestBody") else {
            continue;
        };
        let label = format!("{} {template}", method.to_uppercase());
        let media = request_media(&operation);
        let Some(schema) = rb["content"][media].get("schema") else {
            failures.push(format!(
                "{label}: request body is documented neither as {JSON_MEDIA} nor as {FORM_MEDIA}"
            ));
            continue;
        };
        let form = media == FORM_MEDIA;
        let sample = sample_body(&method, &template, &ids);
        let mut errors = vec![];
        conforms(&doc, schema, &sample, "$", &mut errors);
        for e in errors {
            failures.push(format!(
                "{label}: valid sample does not fit the documented schema: {e}"
            ));
        }
        let mut schema = resolve_non_null(&doc, schema);
        // A body documented as one of several shapes (the token endpoint, by grant): the
        // checks below hold for the shape the sample has.
        if let Some(branches) = schema.get("oneOf").and_then(Value::as_array) {
            let fitting: Vec<&Value> = branches
                .iter()
                .filter(|b| {
                    let mut e = vec![];
                    conforms(&doc, b, &sample, "$", &mut e);
                    e.is_empty()
                })
                .collect();
            let [only] = fitting.as_slice() else {
                failures.push(format!(
                    "{label}: the sample fits {} of the oneOf shapes",
                    fitting.len()
                ));
                continue;
            };
            schema = resolve(&doc, only);
        }
        let path = concrete_path(&template, &ids);
        // A form carries only strings: every documented parameter is one.
        if form {
            for (name, p) in schema["properties"].as_object().into_iter().flatten() {
                let p = resolve(&doc, p);
                let string = match &p["type"] {
                    Value::String(t) => t == "string",
                    Value::Array(ts) => {
                        ts.contains(&json!("string"))
                            && ts.iter().all(|t| t == "string" || t == "null")
                    }
                    _ => false,
                };
                if !string {
                    failures.push(format!(
                        "{label}: form parameter `{name}` is not documented as a string: {p}"
                    ));
                }
            }
        }
        // Each documented-required property is really required.
        for req in schema["required"].as_array().into_iter().flatten() {
            let name = req.as_str().expect("name");
            let mut body = sample.clone();
            body.as_object_mut().expect("object").remove(name);
            let bearer = ids.bearer(&method, &template);
            let a = call_with(&server, &method, &path, Some(bearer), Some(&body), media).await;
            if a.status != 400 || !a.text.contains(name) {
                failures.push(format!(
                    "{label}: without required `{name}` answered {}: {}",
                    a.status, a.text
                ));
            }
        }
        if form {
            // OAuth endpoints ignore unknown form parameters (RFC 6749 §3.2, RFC 7662 §2.1,
            // RFC 7009 §2.1): the request is answered as without them, and the schema must
            // not claim otherwise.
            let mut body = sample_body(&method, &template, &ids);
            body["undeclared_property"] = json!("1");
            let a = call_as(&server, &method, &path, true, Some(&body), media).await;
            if !(200..300).contains(&a.status) {
                failures.push(format!(
                    "{label}: an unknown form parameter answered {}: {}",
                    a.status, a.text
                ));
            }
            if schema["additionalProperties"] == json!(false) {
                failures.push(format!(
                    "{label}: the server ignores unknown form parameters but the schema says `additionalProperties: false`"
                ));
            }
            continue;
        }
        // Undeclared properties are refused.
        let mut body = sample.clone();
        body["undeclared_property"] = json!(1);
        let bearer = ids.bearer(&method, &template);
        let a = call_with(
            &server,
            &method,
            &path,
            Some(bearer),
            Some(&body),
            JSON_MEDIA,
        )
        .await;
        if a.status != 400 || !a.text.contains("undeclared_property") {
            failures.push(format!(
                "{label}: an undeclared property answered {}: {}",
                a.status, a.text
            ));
        }
        if schema["additionalProperties"] != json!(false) {
            failures.push(format!(
                "{label}: the server refuses unknown properties but the schema does not say `additionalProperties: false`"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Operations that declare `security` refuse anonymous calls; the others (exactly
/// [`PUBLIC_ROUTES`]) answer them.
#[tokio::test]
async fn documented_security_matches_enforcement() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let ids = populate(&server).await;
    let doc = document(&server).await;
    if doc.get("security").is_some() {
        panic!("a global `security` requirement: {}", doc["security"]);
    }
    let mut failures = vec![];
    for (template, method, operation) in operations(&doc) {
        let secured = operation["security"]
            .as_array()
            .is_some_and(|s| !s.is_empty());
        let label = format!("{} {template}", method.to_uppercase());
        let public = PUBLIC_ROUTES
            .iter()
            .any(|(m, p)| m.eq_ignore_ascii_case(&method) && *p == template);
        if secured == public {
            failures.push(format!(
                "{label}: documented {}, but the operation is {}",
                if secured {
                    "with security"
                } else {
                    "without security"
                },
                if public {
                    "public"
                } else {
                    "meant to need an API token"
                }
            ));
        }
        let path = concrete_path(&template, &ids);
        let body = operation
            .get("requestBody")
            .map(|_| sample_body(&method, &template, &ids));
        let media = request_media(&operation);
        let a = call_as(&server, &method, &path, false, body.as_ref(), media).await;
        if secured && a.status != 401 {
            failures.push(format!(
                "{label}: secured, but anonymous call answered {}",
                a.status
            ));
        }
        if !secured && !(200..300).contains(&a.status) {
            failures.push(format!(
                "{label}: documented without security, but a plausible anonymous call answered {}: {}",
                a.status, a.text
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn secured_operations_document_401() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let doc = document(&server).await;
    let undocumented: Vec<String> = operations(&doc)
        .into_iter()
        .filter(|(_, _, op)| op["security"].as_array().is_some_and(|s| !s.is_empty()))
        .filter(|(_, _, op)| op["responses"].get("401").is_none())
        .map(|(p, m, _)| format!("{} {p}", m.to_uppercase()))
        .collect();
    assert!(
        undocumented.is_empty(),
        "no 401 documented for: {undocumented:?}"
    );
}

#[tokio::test]
async fn parameters_are_documented_where_they_are_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let doc = document(&server).await;
    let mut failures = vec![];
    for (template, method, operation) in operations(&doc) {
        let label = format!("{} {template}", method.to_uppercase());
        let params = operation["parameters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for p in &params {
            let name = p["name"].as_str().expect("name");
            let placeholder = format!("{{{name}}}");
            match p["in"].as_str() {
                Some("path") if !template.contains(&placeholder) => failures.push(format!(
                    "{label}: `{name}` is documented `in: path` but the path has no {placeholder}"
                )),
                Some("query") if p["required"] == json!(true) => failures.push(format!(
                    "{label}: query parameter `{name}` is documented as required"
                )),
                _ => {}
            }
        }
        for segment in template.split('/') {
            if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                let documented = params
                    .iter()
                    .any(|p| p["name"] == name && p["in"] == "path" && p["required"] == true);
                if !documented {
                    failures.push(format!(
                        "{label}: path parameter `{name}` is not documented"
                    ));
                }
            }
        }
    }
    // The list filters are query parameters that the server really reads.
    for (path, name) in [
        ("/v1/identities", "limit"),
        ("/v1/audit", "limit"),
        ("/v1/policies/versions", "limit"),
        ("/v1/killswitches", "all"),
    ] {
        let documented = op(&doc, "get", path)["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["name"] == name && p["in"] == "query");
        if !documented {
            failures.push(format!(
                "GET {path}: `{name}` is not documented as a query parameter"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn operation_ids_are_unique() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let doc = document(&server).await;
    let mut seen = std::collections::BTreeMap::<String, String>::new();
    let mut dups = vec![];
    for (path, method, operation) in operations(&doc) {
        let id = operation["operationId"]
            .as_str()
            .expect("operationId")
            .to_owned();
        let here = format!("{} {path}", method.to_uppercase());
        if let Some(prev) = seen.insert(id.clone(), here.clone()) {
            dups.push(format!("`{id}`: {prev} and {here}"));
        }
    }
    assert!(dups.is_empty(), "duplicate operationIds: {dups:?}");
}

#[tokio::test]
async fn optional_request_bodies_are_documented_as_optional() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let ids = populate(&server).await;
    let doc = document(&server).await;
    let mut failures = vec![];
    for (template, method, operation) in operations(&doc) {
        let Some(rb) = operation.get("requestBody") else {
            continue;
        };
        let path = concrete_path(&template, &ids);
        let a = call(&server, &method, &path, true, None).await;
        let accepts_none = (200..300).contains(&a.status);
        let documented_required = rb["required"] == json!(true);
        if accepts_none && documented_required {
            failures.push(format!(
                "{} {template}: answers {} without a body, but the body is documented as required",
                method.to_uppercase(),
                a.status
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let doc = document(&server).await;
    let h = call(&server, "get", "/healthz", false, None).await;
    assert_eq!(h.status, 200, "{}", h.text);
    assert_eq!(h.json()["status"], "ok");
    let r = call(&server, "get", "/readyz", false, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["status"], "ready");

    let c = server.client();
    c.put_policy(Some(SCHEMA), POLICIES, None)
        .await
        .expect("put policy");
    let reader = create_identity(&c, "metered", "dev", &["reader"]).await;
    let d = c.authorize(&read_req(&reader, 1)).await.expect("authorize");
    assert_eq!(d["decision"], "allow");

    let m = call(&server, "get", "/metrics", false, None).await;
    assert_eq!(m.status, 200, "{}", m.text);
    assert!(
        m.content_type.contains("openmetrics") || m.content_type.contains("text/plain"),
        "content-type {}",
        m.content_type
    );
    let documented = op(&doc, "get", "/metrics")["responses"]["200"]["content"]
        .as_object()
        .expect("metrics content")
        .keys()
        .any(|k| m.content_type.starts_with(k.as_str()));
    assert!(
        documented,
        "metrics content-type {} is not the documented one",
        m.content_type
    );
    let body = &m.text;
    let allow = body
        .lines()
        .find(|l| l.starts_with("warrant_decisions_total{") && l.contains("decision=\"allow\""))
        .unwrap_or_else(|| panic!("no warrant_decisions_total for allow:\n{body}"));
    let n: f64 = allow
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .expect("sample value");
    assert!(n >= 1.0, "{allow}");
    assert!(
        body.lines()
            .any(|l| l.starts_with("warrant_audit_append_duration_seconds_bucket{le=")),
        "no audit append histogram buckets:\n{body}"
    );
    assert!(
        body.lines()
            .any(|l| l.starts_with("warrant_audit_batch_jobs")),
        "no warrant_audit_batch_jobs:\n{body}"
    );
    if m.content_type.contains("openmetrics") {
        assert!(
            body.trim_end().ends_with("# EOF"),
            "OpenMetrics text must end with # EOF"
        );
    }
}

/// Identity keys, signing keys and the OAuth endpoints answer what their documentation
/// says, for successes and the documented errors alike.
#[tokio::test]
async fn key_and_oauth_responses_fit_their_documented_schemas() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let doc = document(&server).await;
    let c = server.client();
    c.put_policy(Some(SCHEMA), &policies(), Some("oauth schema check"))
        .await
        .expect("put policy");
    let id = create_identity(&c, "agent", "dev", &["reader"]).await;
    let keys_path = format!("/v1/identities/{id}/keys");

    // Identity keys: added without and with a kid, a duplicate, private material, an
    // unknown identity.
    let add = |path: String, jwk: Value| {
        let server = &server;
        async move { call(server, "post", &path, true, Some(&json!({ "jwk": jwk }))).await }
    };
    let first = add(keys_path.clone(), ed25519_jwk(&AGENT_SEED)).await;
    assert_eq!(first.status, 201, "{}", first.text);
    assert_fits(&doc, "post", "/v1/identities/{id}/keys", 201, &first.json());
    let kid = first.json()["kid"].as_str().expect("kid").to_owned();
    let mut named = ed25519_jwk(&REVOKED_SEED);
    named["kid"] = json!("second");
    let second = add(keys_path.clone(), named).await;
    assert_eq!(second.status, 201, "{}", second.text);
    assert_fits(
        &doc,
        "post",
        "/v1/identities/{id}/keys",
        201,
        &second.json(),
    );
    assert_eq!(second.json()["kid"], "second", "{}", second.text);
    let dup = add(keys_path.clone(), ed25519_jwk(&AGENT_SEED)).await;
    assert_eq!(dup.status, 409, "{}", dup.text);
    assert_fits(&doc, "post", "/v1/identities/{id}/keys", 409, &dup.json());
    let mut private = ed25519_jwk(&NEW_KEY_SEED);
    private["d"] = json!(b64(&NEW_KEY_SEED));
    let refused = add(keys_path.clone(), private).await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert_fits(
        &doc,
        "post",
        "/v1/identities/{id}/keys",
        400,
        &refused.json(),
    );
    let nobody = add(
        "/v1/identities/idn_unknown/keys".to_owned(),
        ed25519_jwk(&NEW_KEY_SEED),
    )
    .await;
    assert_eq!(nobody.status, 404, "{}", nobody.text);
    assert_fits(
        &doc,
        "post",
        "/v1/identities/{id}/keys",
        404,
        &nobody.json(),
    );

    // Revoked (twice: the second time there is no unrevoked key), listed with it.
    let revoked = call(
        &server,
        "delete",
        &format!("{keys_path}/second"),
        true,
        None,
    )
    .await;
    assert_eq!(revoked.status, 200, "{}", revoked.text);
    assert!(revoked.json()["revoked_at"].is_string(), "{}", revoked.text);
    assert_fits(
        &doc,
        "delete",
        "/v1/identities/{id}/keys/{kid}",
        200,
        &revoked.json(),
    );
    for path in [
        format!("{keys_path}/second"),
        format!("{keys_path}/unknown"),
    ] {
        let a = call(&server, "delete", &path, true, None).await;
        assert_eq!(a.status, 404, "DELETE {path}: {}", a.text);
        assert_fits(
            &doc,
            "delete",
            "/v1/identities/{id}/keys/{kid}",
            404,
            &a.json(),
        );
    }
    let list = call(&server, "get", &keys_path, true, None).await;
    assert_eq!(list.status, 200, "{}", list.text);
    assert_eq!(
        list.json()["items"].as_array().map(Vec::len),
        Some(2),
        "{}",
        list.text
    );
    assert_fits(&doc, "get", "/v1/identities/{id}/keys", 200, &list.json());
    let unknown = call(
        &server,
        "get",
        "/v1/identities/idn_unknown/keys",
        true,
        None,
    )
    .await;
    assert_eq!(unknown.status, 404, "{}", unknown.text);
    assert_fits(
        &doc,
        "get",
        "/v1/identities/{id}/keys",
        404,
        &unknown.json(),
    );

    // Signing keys, before and after a rotation (a retired key is still published).
    let before = call(&server, "get", "/v1/keys", true, None).await;
    assert_eq!(before.status, 200, "{}", before.text);
    assert_fits(&doc, "get", "/v1/keys", 200, &before.json());
    let rotated = call(&server, "post", "/v1/keys/rotate", true, None).await;
    assert_eq!(rotated.status, 201, "{}", rotated.text);
    assert_fits(&doc, "post", "/v1/keys/rotate", 201, &rotated.json());
    let after = call(&server, "get", "/v1/keys", true, None).await;
    assert_eq!(after.status, 200, "{}", after.text);
    let after = after.json();
    assert!(
        after["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|k| k["retired_at"].is_string() && k["leaves_jwks_at"].is_string()),
        "{after}"
    );
    assert_fits(&doc, "get", "/v1/keys", 200, &after);

    // Discovery, anonymously.
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/jwks.json",
    ] {
        let a = call(&server, "get", path, false, None).await;
        assert_eq!(a.status, 200, "{}", a.text);
        assert_fits(&doc, "get", path, 200, &a.json());
    }
    let endpoint = token_endpoint(&server).await;

    // Token endpoint: a token, and each documented error status.
    let token_call = |form: Value| {
        let server = &server;
        async move {
            call_as(
                server,
                "post",
                "/oauth2/token",
                false,
                Some(&form),
                FORM_MEDIA,
            )
            .await
        }
    };
    let issued = token_call(token_request(&id, &kid, &endpoint)).await;
    assert_eq!(issued.status, 200, "{}", issued.text);
    assert_fits(&doc, "post", "/oauth2/token", 200, &issued.json());
    let token = issued.json()["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();
    let mut write = token_request(&id, &kid, &endpoint);
    write["scope"] = json!("App:write");
    let mut grant = token_request(&id, &kid, &endpoint);
    grant["grant_type"] = json!("password");
    let mut revoked_key = token_request(&id, "second", &endpoint);
    revoked_key["client_assertion"] =
        json!(client_assertion(&id, "second", &REVOKED_SEED, &endpoint));
    let replayed = token_request(&id, &kid, &endpoint);
    assert_eq!(token_call(replayed.clone()).await.status, 200);
    for (form, status, error) in [
        (write, 400, "invalid_scope"),
        (grant, 400, "unsupported_grant_type"),
        (revoked_key, 401, "invalid_client"),
        (replayed, 401, "invalid_client"),
    ] {
        let a = token_call(form).await;
        assert_eq!(a.status, status, "{}", a.text);
        assert_eq!(a.json()["error"], error, "{}", a.text);
        assert_fits(&doc, "post", "/oauth2/token", status, &a.json());
    }
    let json_body = call(
        &server,
        "post",
        "/oauth2/token",
        false,
        Some(&token_request(&id, &kid, &endpoint)),
    )
    .await;
    assert_eq!(json_body.status, 400, "{}", json_body.text);
    assert_fits(&doc, "post", "/oauth2/token", 400, &json_body.json());

    // Token exchange (RFC 8693): delegated to another reader, whose token names the chain.
    let delegate = create_identity(&c, "delegate", "dev", &["reader"]).await;
    let exchanged = token_call(json!({
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token": token,
        "subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "delegate": delegate,
    }))
    .await;
    assert_eq!(exchanged.status, 200, "{}", exchanged.text);
    assert_fits(&doc, "post", "/oauth2/token", 200, &exchanged.json());
    let delegated = exchanged.json()["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();
    let a = call_as(
        &server,
        "post",
        "/oauth2/introspect",
        true,
        Some(&json!({ "token": delegated })),
        FORM_MEDIA,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json()["act"]["sub"], json!(id), "{}", a.text);
    assert_fits(&doc, "post", "/oauth2/introspect", 200, &a.json());
    let refused = token_call(json!({
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token": "not-a-token",
        "subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "delegate": delegate,
    }))
    .await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert_eq!(refused.json()["error"], "invalid_grant", "{}", refused.text);
    assert_fits(&doc, "post", "/oauth2/token", 400, &refused.json());

    // The token at /v1/authorize (the optional `token` and `audience`).
    let d = call(
        &server,
        "post",
        "/v1/authorize",
        true,
        Some(&json!({
            "token": token, "audience": AUDIENCE, "action": "App::Action::\"read\"",
            "resource": "App::Document::\"q3\"", "context": { "risk": 1 },
        })),
    )
    .await;
    assert_eq!(d.status, 200, "{}", d.text);
    assert_eq!(d.json()["decision"], "allow", "{}", d.text);
    assert_fits(&doc, "post", "/v1/authorize", 200, &d.json());

    // Introspection and revocation.
    let form = json!({ "token": token });
    let introspect = |body: Option<Value>, token: bool, media: &'static str| {
        let server = &server;
        async move {
            call_as(
                server,
                "post",
                "/oauth2/introspect",
                token,
                body.as_ref(),
                media,
            )
            .await
        }
    };
    let active = introspect(Some(form.clone()), true, FORM_MEDIA).await;
    assert_eq!(active.status, 200, "{}", active.text);
    assert_eq!(active.json()["active"], true, "{}", active.text);
    assert_eq!(active.json()["sub"], json!(id), "{}", active.text);
    assert_fits(&doc, "post", "/oauth2/introspect", 200, &active.json());
    let r = call_as(
        &server,
        "post",
        "/oauth2/revoke",
        true,
        Some(&form),
        FORM_MEDIA,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json(), json!({}), "{}", r.text);
    assert_fits(&doc, "post", "/oauth2/revoke", 200, &r.json());
    let inactive = introspect(Some(form.clone()), true, FORM_MEDIA).await;
    assert_eq!(inactive.status, 200, "{}", inactive.text);
    assert_eq!(
        inactive.json(),
        json!({ "active": false }),
        "{}",
        inactive.text
    );
    assert_fits(&doc, "post", "/oauth2/introspect", 200, &inactive.json());
    for path in ["/oauth2/introspect", "/oauth2/revoke"] {
        let cases = [
            (
                Some(json!({ "token_type_hint": "access_token" })),
                true,
                FORM_MEDIA,
                400,
            ),
            (Some(form.clone()), true, JSON_MEDIA, 415),
            (Some(form.clone()), false, FORM_MEDIA, 401),
        ];
        for (body, with_token, media, status) in cases {
            let a = call_as(&server, "post", path, with_token, body.as_ref(), media).await;
            assert_eq!(a.status, status, "POST {path}: {}", a.text);
            assert_fits(&doc, "post", path, status, &a.json());
        }
    }
}
