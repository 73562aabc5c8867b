//! Agent credentials over OAuth 2.0: client assertions, the token endpoint, JWKS, rotation,
//! introspection, revocation, bearer tokens at /v1/authorize.
//!
//! The real binary over HTTP. Agents are played with `jsonwebtoken` (Ed25519 and P-256
//! client assertions) and tokens are verified the way a resource service would: against
//! the JWKS, checking `typ`, `iss`, `aud` and the claims.

use super::harness::*;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::rand::SecureRandom;
use ring::signature::KeyPair;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const AUDIENCE: &str = "https://docs.example";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Readers may hold `App:read`, for the docs service, in their own environment.
const SCOPE_POLICIES: &str = r#"
@id("readers-hold-read")
@reason("readers may hold App:read for the docs service in their own environment")
permit (principal in Warrant::Role::"reader", action == Warrant::Action::"request_scope",
        resource == Warrant::Scope::"App:read")
when { context.environment == principal.environment && context.audience == "https://docs.example" };

@id("no-write-scope-for-ai")
@reason("AI tools never hold write scopes")
forbid (principal, action == Warrant::Action::"request_scope", resource == Warrant::Scope::"App:write")
when { principal.kind == "ai_tool" };
"#;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn fresh_jti() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let mut r = [0u8; 8];
    ring::rand::SystemRandom::new().fill(&mut r).unwrap();
    format!("jti-{}-{}", N.fetch_add(1, Ordering::Relaxed), b64(&r))
}

/// An agent's key pair: the private half signs assertions, `jwk` is the public half.
struct AgentKey {
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
    kid: String,
}

fn ed25519_key() -> AgentKey {
    let mut seed = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut seed).unwrap();
    let sk = ed25519_dalek::SigningKey::from_bytes(&seed);
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    let der = sk.to_pkcs8_der().unwrap();
    AgentKey {
        alg: Algorithm::EdDSA,
        encoding: EncodingKey::from_ed_der(der.as_bytes()),
        jwk: json!({"kty": "OKP", "crv": "Ed25519", "x": b64(sk.verifying_key().as_bytes())}),
        kid: String::new(),
    }
}

fn p256_key() -> AgentKey {
    use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let public = pair.public_key().as_ref();
    assert_eq!(public.len(), 65, "uncompressed point");
    AgentKey {
        alg: Algorithm::ES256,
        encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
        jwk: json!({"kty": "EC", "crv": "P-256", "x": b64(&public[1..33]), "y": b64(&public[33..65]), "kid": "p256-key-1"}),
        kid: String::new(),
    }
}

/// A server with the scope policies, one AI tool in `prod` with the `reader` role and an
/// Ed25519 key registered.
struct Setup {
    server: Server,
    http: reqwest::Client,
    id: String,
    key: AgentKey,
    endpoint: String,
}

impl Setup {
    async fn start(dir: &std::path::Path) -> Setup {
        Self::start_with(dir, Options::default(), ed25519_key()).await
    }

    async fn start_with(dir: &std::path::Path, opts: Options, key: AgentKey) -> Setup {
        let server = Server::start_with(dir, opts);
        let c = server.client();
        c.put_policy(
            Some(SCHEMA),
            &format!("{POLICIES}\n{SCOPE_POLICIES}"),
            Some("oauth"),
        )
        .await
        .expect("put policy");
        let id = create_identity(&c, "reader-bot", "prod", &["reader"]).await;
        let endpoint = format!("{}/oauth2/token", server.url);
        let mut s = Setup {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            server,
            id,
            key,
            endpoint,
        };
        let jwk = s.key.jwk.clone();
        s.key.kid = s.add_key(&jwk).await;
        s
    }

    async fn add_key(&self, jwk: &Value) -> String {
        let v = self
            .server
            .client()
            .post(
                &format!("/v1/identities/{}/keys", self.id),
                &json!({ "jwk": jwk }),
            )
            .await
            .expect("add key");
        v["kid"].as_str().unwrap().to_owned()
    }

    fn claims(&self) -> Value {
        let now = now_s();
        json!({
            "iss": self.id, "sub": self.id, "aud": self.endpoint,
            "iat": now, "exp": now + 60, "jti": fresh_jti(),
        })
    }

    fn sign(&self, claims: &Value) -> String {
        let mut h = Header::new(self.key.alg);
        h.kid = Some(self.key.kid.clone());
        jsonwebtoken::encode(&h, claims, &self.key.encoding).unwrap()
    }

    /// A valid assertion with `change` applied to its claims.
    fn assertion_with(&self, change: impl FnOnce(&mut Value)) -> String {
        let mut c = self.claims();
        change(&mut c);
        self.sign(&c)
    }

    async fn token_request(&self, assertion: &str, extra: &[(&str, &str)]) -> (u16, Value, String) {
        let mut form: Vec<(&str, &str)> = vec![
            ("grant_type", "client_credentials"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", assertion),
            ("scope", "App:read"),
            ("audience", AUDIENCE),
        ];
        for (k, v) in extra {
            form.retain(|(name, _)| name != k);
            if !v.is_empty() {
                form.push((k, v));
            }
        }
        let res = self
            .http
            .post(&self.endpoint)
            .form(&form)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let cache = res
            .headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let text = res.text().await.unwrap();
        let body: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
        (status, body, cache)
    }

    /// Asks for a token with a fresh valid assertion.
    async fn token(&self, extra: &[(&str, &str)]) -> (u16, Value) {
        let a = self.sign(&self.claims());
        let (status, body, _) = self.token_request(&a, extra).await;
        (status, body)
    }

    async fn jwks(&self) -> Value {
        self.http
            .get(format!("{}/.well-known/jwks.json", self.server.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn audit(&self, kind: &str) -> Vec<Value> {
        let v = self
            .server
            .client()
            .get(&format!("/v1/audit?kind={kind}&order=desc"))
            .await
            .unwrap();
        v["items"].as_array().unwrap().clone()
    }

    /// Expects an RFC 6749 §5.2 error with this status and code, and a description
    /// containing `needle`.
    async fn expect_refusal(&self, assertion: &str, status: u16, error: &str, needle: &str) {
        let (got, body, cache) = self.token_request(assertion, &[]).await;
        assert_eq!(got, status, "{body}");
        assert_eq!(body["error"], error, "{body}");
        let d = body["error_description"].as_str().unwrap();
        assert!(d.contains(needle), "`{needle}` not in: {d}");
        assert_eq!(cache, "no-store");
        assert!(body.get("access_token").is_none());
    }
}

/// Verifies an access token as a resource service would: the JWKS, `typ`, `iss`, `aud`.
async fn verify_as_resource_service(s: &Setup, token: &str) -> Value {
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(header.alg, Algorithm::EdDSA);
    let kid = header.kid.expect("kid");
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(s.jwks().await).unwrap();
    let jwk = jwks.find(&kid).expect("the token's kid is in the JWKS");
    let key = DecodingKey::from_jwk(jwk).unwrap();
    let mut v = Validation::new(Algorithm::EdDSA);
    v.set_issuer(&[&s.server.url]);
    v.set_audience(&[AUDIENCE]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub", "nbf"]);
    jsonwebtoken::decode::<Value>(token, &key, &v)
        .unwrap()
        .claims
}

async fn issued_token_is_verifiable_and_audited(s: &Setup) {
    let (status, body) = s.token(&[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "App:read");
    assert_eq!(
        body["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(body["expires_in"], 300);
    let token = body["access_token"].as_str().unwrap();
    let claims = verify_as_resource_service(s, token).await;
    assert_eq!(claims["sub"], s.id.as_str());
    assert_eq!(claims["client_id"], s.id.as_str());
    assert_eq!(claims["aud"], AUDIENCE);
    assert_eq!(claims["scope"], "App:read");
    assert_eq!(claims["environment"], "prod");
    assert_eq!(claims["owner"], "alice@example.com");
    assert!(claims["spiffe_id"]
        .as_str()
        .unwrap()
        .ends_with("/prod/reader-bot"));
    assert!(claims["jti"].as_str().unwrap().starts_with("at_"));
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        300
    );

    let issued = s.audit("credential.issued").await;
    let record = issued
        .iter()
        .find(|r| r["payload"]["jti"] == claims["jti"])
        .expect("credential.issued record");
    assert_eq!(record["subject"], format!("identity:{}", s.id));
    assert_eq!(record["payload"]["scope"], "App:read");
    assert_eq!(record["payload"]["aud"], AUDIENCE);
    let text = record.to_string();
    let signature = token.rsplit('.').next().unwrap();
    assert!(
        !text.contains(token) && !text.contains(signature),
        "the token itself is never recorded: {text}"
    );
}

#[tokio::test]
async fn ed25519_client_assertion_gets_a_token_that_verifies_against_the_jwks() {
    let dir = tempfile::tempdir().unwrap();
    let s = Setup::start(dir.path()).await;
    issued_token_is_verifiable_and_audited(&s).await;
    // The SPIFFE ID works as the client name too, with `resource` for the audience.
    let spiffe = s.server.client().identity(&s.id).await.unwrap()["spiffe_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let a = s.assertion_with(|c| {
        c["iss"] = json!(spiffe);
        c["sub"] = json!(spiffe);
    });
    let (status, body, _) = s
        .token_request(&a, &[("audience", ""), ("resource", AUDIENCE)])
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn p256_client_assertion_gets_a_token_that_verifies_against_the_jwks() {
    let dir = tempfile::tempdir().unwrap();
    let s = Setup::start_with(dir.path(), Options::default(), p256_key()).await;
    assert_eq!(s.key.kid, "p256-key-1");
    issued_token_is_verifiable_and_audited(&s).await;
}

#[tokio::test]
async fn assertion_with_alg_none_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = Setup::start(dir.path()).await;
    let header = b64(json!({"alg": "none", "kid": s.key.kid})
        .to_string()
        .as_bytes());
    let body = b64(s.claims().to_string().as_bytes());
    s.expect_refusal(
        &format!("{header}.{body}."),
        401,
        "invalid_client",
        "`none`",
    )
    .await;
}

#[tokio::test]
async fn assertion_hmac_signed_with_the_public_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = Setup::start(dir.path()).await;
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some(s.key.kid.clone());
    let x = s.key.jwk["x"].as_str().unwrap();
    for secret in [x.as_bytes().to_vec(), s.key.jwk.to_string().into_bytes()] {
        let forged =
            jsonwebtoken::encode(&h, &s.claims(), &EncodingKey::from_secret(&secret)).unwrap();
        s.expect_refusal(&forged, 401, "invalid_client", "`HS256`")
            .await;
    }
}

#[tokio::test]
async fn assertion_with_an_unknown_or_revoked_kid_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Setup::start(dir.path()).await;
    let kid = s.key.kid.clone();
    s.key.kid = "no-such-key".into();
    let a = s.sign(&s.claims());
    s.expect_refusal(&a, 401, "invalid_client", "no key `no-such-key`")
        .await;
    // A key of another identity does not authenticate this one.
    s.key.kid = kid.clone();
    let other = create_identity(&s.server.client(), "other-bot", "prod", &["reader"]).await;
    let a = s.assertion_with(|c| {
        c["iss"] = json!(other);
        c["sub"] = json!(other);
    });
    s.expect_refusal(&a, 401, "invalid_client", "no key").await;
    // Revoked: refused at once.
    let c = s.server.client();
    let revoked = c
        .request(
            reqwest::Method::DELETE,
            &format!("/v1/identities/{}/keys/{kid}", s.id),
            None,
        )
        .await
        .unwrap();
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    let a = s.sign(&s.claims());
    s.expect_refusal(&a, 401, "invalid_client", "unknown or revoked")
        .await;
    // Unauthenticated failures are not audit-logged.
    assert!(s.audit("credential.refused").await.is_empty());
}

#[tokio::test]
async fn expired_assertion_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = Setup::start(dir.path()).await;
    let a = s.assertion_with(|c| {
        c["iat"] = json!(now_s() - 600);
        c["exp"] = json!(now_s() - 300);
    });
    s.expect_refusal(&a, 401, "invalid_client", "expired").await;
    // Too long-lived is refused as well (at most 5 minutes).
    let a = s.assertion_with(|c| c["exp"] = json!(now_s() + 3600));
    s.expect_refusal(&a, 401, "invalid_client", "too far ahead")
        .await;
    // And no `exp` at all.
    let a = s.assertion_with(|c| {
        c.as_object_mut().unwrap().remove("exp");
    });
    s.expect_refusal(&a, 401, "invalid_client", "no `exp`")
        .await;
}

#[tokio::test]
async fn not_yet_valid_assertion_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = Setup::start(dir.path()).await;
    let a = s.assertion_with(|c| c["nbf"] = json!(now_s() + 120));
    s.expect_refusal(&a, 401, "invalid_client", "not valid yet")
        .await;
    let a = s.assertion_with(|c| c["iat"] = json!(now_s() + 120));
    s.expect_refusal(&a, 401, "invalid_client", "not valid yet")
        .await;
}

#[tokio::test]
async fn assertion_with_a_wrong_iss_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = Setup::start(dir.path()).await;
    // Unknown client.
    let a = s.assertion_with(|c| c["iss"] = json!("idn_nobody"));
    s.expect_refusal(&a, 401, "invalid_client", "unknown client")
        .await;
    // `sub` names someone else.
    let a = s.assertion_with(|c| c["sub"] = json!("idn_nobody"));
    s.expect_refusal(&a, 401, "invalid_client", "`iss` and `sub`")
        .await;
    // `client_id` disagrees with the assertion.
    let a = s.sign(&s.claims());
    let (status, body, _) = s.token_request(&a, &[("client_id", "idn_other")]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
}

#[tokio::test]
async fn assertion_with_a_wrong_aud_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = Setup::start(dir.path()).await;
    let a = s.assertion_with(|c| c["aud"] = json!("https://evil.example/oauth2/token"));
    s.expect_refusal(&a, 401, "invalid_client", "`aud`").await;
    let a = s.assertion_with(|c| c["aud"] = json!(["https://evil.example", s.endpoint]));
    let (status, body, _) = s.token_request(&a, &[]).await;
    assert_eq!(status, 200, "an audience list naming the endpoint: {body}");
}

#[tokio::test]
async fn tampered_assertion_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = Setup::start(dir.path()).await;
    let a = s.sign(&s.claims());
    let parts: Vec<&str> = a.split('.').collect();
    let mut forged = s.claims();
    forged["exp"] = json!(now_s() + 200);
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(forged.to_string().as_bytes()),
        parts[2]
    );
    s.expect_refusal(
        &tampered,
        401,
        "invalid_client",
        "signature does not verify",
    )
    .await;
}

#[tokio::test]
async fn replayed_assertion_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = Setup::start(dir.path()).await;
    let a = s.sign(&s.claims());
    let (status, body, _) = s.token_request(&a, &[]).await;
    assert_eq!(status, 200, "{body}");
    s.expect_refusal(&a, 401, "invalid_client", "replayed")
        .await;
    // A refused request consumes its assertion too.
    let a = s.sign(&s.claims());
    s.token_request(&a, &[("scope", "App:write")]).await;
    s.expect_refusal(&a, 401, "invalid_client", "replayed")
        .await;
}

async fn refused_for_standing(s: &Setup, status: u16, error: &str, needle: &str) {
    let a = s.sign(&s.claims());
    s.expect_refusal(&a, status, error, needle).await;
    let refused = s.audit("credential.refused").await;
    let r = refused.first().expect("a credential.refused record");
    assert_eq!(r["payload"]["error"], error, "{r}");
    assert!(
        r["payload"]["reason"].as_str().unwrap().contains(needle),
        "{r}"
    );
}

#[tokio::test]
async fn suspended_identity_gets_no_token() {
    let dir = tempfile::tempdir().unwrap();
    let s = Setup::start(dir.path()).await;
    s.server
        .client()
        .lifecycle(&s.id, "suspend", Some("investigating"))
        .await
        .unwrap();
    refused_for_standing(&s, 401, "invalid_client", "suspended").await;
}

#[tokio::test]
async fn retired_identity_gets_no_token() {
    let dir = tempfile::tempdir().unwrap();
    let s = Setup::start(dir.path()).await;
    s.server
        .client()
        .lifecycle(&s.id, "retire", Some("decommissioned"))
        .await
        .unwrap();
    refused_for_standing(&s, 401, "invalid_client", "retired").await;
}

#[tokio::test]
async fn identity_under_a_kill_switch_gets_no_token() {
    let dir = tempfile::tempdir().unwrap();
    let s = Setup::start(dir.path()).await;
    s.server
        .client()
        .post(
            "/v1/killswitches",
            &json!({"target": {"kind": "identity", "value": s.id}, "reason": "runaway agent"}),
        )
        .await
        .expect("engage the kill switch");
    refused_for_standing(&s, 400, "unauthorized_client", "runaway agent").await;
}

#[tokio::test]
async fn scope_not_permitted_is_invalid_scope_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let s = Setup::start(dir.path()).await;
    // Forbidden outright.
    let (status, body) = s.token(&[("scope", "App:read App:write")]).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_scope");
    let d = body["error_description"].as_str().unwrap();
    assert!(
        d.contains("`App:write`") && d.contains("AI tools never hold write scopes"),
        "{d}"
    );
    assert!(!d.contains("`App:read`"), "App:read is permitted: {d}");
    // Permitted only for the docs audience: another audience is default-denied.
    let (status, body) = s.token(&[("audience", "https://other.example")]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope"))
    );
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains("default deny"));
    let refused = s.audit("credential.refused").await;
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert_eq!(refused[0]["payload"]["aud"], "https://other.example");
    // Empty and malformed scopes, missing audience, unsupported grants, wrong media type.
    let (status, body) = s.token(&[("scope", "")]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope"))
    );
    let (status, body) = s.token(&[("scope", "a\"b")]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope"))
    );
    let (status, body) = s.token(&[("audience", "")]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let (status, body) = s.token(&[("grant_type", "password")]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    // The token-exchange grant is handed on (it needs a `subject_token`).
    let (status, body) = s
        .token(&[(
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        )])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains("subject_token"));
    let (status, body) = s
        .token(&[("client_assertion_type", ""), ("client_assertion", "")])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let res = s
        .http
        .post(&s.endpoint)
        .json(&json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
}

#[tokio::test]
async fn keys_api_refuses_private_key_material_and_bad_keys() {
    let dir = tempfile::tempdir().unwrap();
    let s = Setup::start(dir.path()).await;
    let c = s.server.client();
    let path = format!("/v1/identities/{}/keys", s.id);
    let mut private = ed25519_key().jwk;
    private["d"] = json!(b64(&[7; 32]));
    let e = c.post(&path, &json!({ "jwk": private })).await.unwrap_err();
    assert_eq!(e.status(), Some(400));
    assert!(
        e.to_string()
            .contains("private key material must never be sent"),
        "{e}"
    );
    let x = s.key.jwk["x"].clone();
    for bad in [
        json!({"kty": "RSA", "n": "AQAB", "e": "AQAB"}),
        json!({"kty": "oct", "k": "c2VjcmV0"}),
        json!({"kty": "OKP", "crv": "X25519", "x": x}),
        json!({"kty": "EC", "crv": "P-384", "x": x, "y": x}),
        json!({"kty": "OKP", "crv": "Ed25519", "x": "%%%"}),
        json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&[1; 16])}),
    ] {
        let e = c.post(&path, &json!({ "jwk": bad })).await.unwrap_err();
        assert_eq!(e.status(), Some(400), "{bad}: {e}");
    }
    // Nothing of the private key was stored or logged.
    let secret = private["d"].as_str().unwrap();
    let all = c.get("/v1/audit?limit=1000").await.unwrap().to_string();
    assert!(!all.contains(secret));
    assert!(!s.server.log_text().contains(secret));
    // Duplicate kid: 409; unknown identity: 404.
    let e = c
        .post(&path, &json!({ "jwk": s.key.jwk }))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(409), "{e}");
    let e = c
        .post(
            "/v1/identities/idn_nobody/keys",
            &json!({ "jwk": s.key.jwk }),
        )
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(404), "{e}");
    // Listing shows the public key only.
    let list = c.get(&path).await.unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["alg"], "EdDSA");
    assert_eq!(items[0]["jwk"]["x"], x);
    assert!(items[0]["jwk"].get("d").is_none());
    // The key registration is audited (public key only).
    let added = s.audit("identity.key_added").await;
    assert_eq!(added.len(), 1, "{added:?}");
    assert_eq!(added[0]["payload"]["jwk"]["x"], x);
}

#[tokio::test]
async fn jwks_and_metadata_never_expose_private_parts() {
    let dir = tempfile::tempdir().unwrap();
    let s = Setup::start(dir.path()).await;
    let c = s.server.client();
    c.post("/v1/keys/rotate", &json!({})).await.unwrap();
    let jwks = s.jwks().await;
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{jwks}");
    for k in keys {
        let members: Vec<&String> = k.as_object().unwrap().keys().collect();
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            assert!(k.get(private).is_none(), "{private} in {k}");
        }
        assert_eq!(k["kty"], "OKP", "{members:?}");
        assert_eq!(k["alg"], "EdDSA");
    }
    let signing = c.get("/v1/keys").await.unwrap();
    let text = signing.to_string();
    assert!(
        !text.contains("wrapped") && !text.contains("private"),
        "{text}"
    );
    // RFC 8414 metadata.
    let meta: Value = s
        .http
        .get(format!(
            "{}/.well-known/oauth-authorization-server",
            s.server.url
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["issuer"], s.server.url.as_str());
    assert_eq!(meta["token_endpoint"], s.endpoint.as_str());
    assert_eq!(
        meta["jwks_uri"],
        format!("{}/.well-known/jwks.json", s.server.url)
    );
    assert_eq!(
        meta["token_endpoint_auth_methods_supported"],
        json!(["private_key_jwt"])
    );
    assert_eq!(
        meta["token_endpoint_auth_signing_alg_values_supported"],
        json!(["EdDSA", "ES256"])
    );
    assert!(meta["grant_types_supported"]
        .as_array()
        .unwrap()
        .contains(&json!("client_credentials")));
}

#[tokio::test]
async fn rotation_keeps_old_tokens_verifiable_until_the_old_key_leaves_the_jwks() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("warrant.toml");
    std::fs::write(
        &config,
        "version = 1\ntoken_lifetime_secs = 4\ntoken_max_lifetime_secs = 4\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let opts = Options {
        extra_args: vec!["--config".into(), config.to_string_lossy().into_owned()],
        ..Options::default()
    };
    let s = Setup::start_with(&data, opts, ed25519_key()).await;
    let (status, body) = s.token(&[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expires_in"], 4);
    let old_token = body["access_token"].as_str().unwrap().to_owned();
    let old_kid = jsonwebtoken::decode_header(&old_token)
        .unwrap()
        .kid
        .unwrap();

    let rotated = s
        .server
        .client()
        .post("/v1/keys/rotate", &json!({}))
        .await
        .unwrap();
    let new_kid = rotated["current"].as_str().unwrap().to_owned();
    assert_ne!(new_kid, old_kid);
    let keys = s.server.client().get("/v1/keys").await.unwrap();
    let old = keys["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == old_kid.as_str())
        .unwrap()
        .clone();
    assert_eq!(old["signing"], false);
    assert_eq!(old["published"], true);
    assert!(
        old["retired_at"].is_string() && old["leaves_jwks_at"].is_string(),
        "{old}"
    );

    // The old token still verifies: its key is still published.
    let claims = verify_as_resource_service(&s, &old_token).await;
    assert_eq!(claims["sub"], s.id.as_str());
    // New tokens carry the new kid.
    let (status, body) = s.token(&[]).await;
    assert_eq!(status, 200, "{body}");
    let new_token = body["access_token"].as_str().unwrap();
    assert_eq!(
        jsonwebtoken::decode_header(new_token).unwrap().kid.unwrap(),
        new_kid
    );
    verify_as_resource_service(&s, new_token).await;

    // After its unpublish time (max lifetime 4 s + margin 4 s) the old key is gone.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let jwks = s.jwks().await;
        let kids: Vec<&str> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|k| k["kid"].as_str())
            .collect();
        assert!(kids.contains(&new_kid.as_str()));
        if !kids.contains(&old_kid.as_str()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the old key never left the JWKS: {jwks}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let keys = s.server.client().get("/v1/keys").await.unwrap();
    assert!(keys["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["kid"] == old_kid.as_str() && k["published"] == false));
}

#[tokio::test]
async fn token_lifetime_defaults_to_300_s_and_is_capped_at_the_maximum() {
    let dir = tempfile::tempdir().unwrap();
    let s = Setup::start(dir.path()).await;
    let (status, body) = s.token(&[]).await;
    assert_eq!((status, body["expires_in"].as_i64()), (200, Some(300)));
    let (status, body) = s.token(&[("expires_in", "60")]).await;
    assert_eq!((status, body["expires_in"].as_i64()), (200, Some(60)));
    let (status, body) = s.token(&[("expires_in", "100000")]).await;
    assert_eq!((status, body["expires_in"].as_i64()), (200, Some(3600)));
    let claims = verify_as_resource_service(&s, body["access_token"].as_str().unwrap()).await;
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );
    let (status, body) = s.token(&[("expires_in", "soon")]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
}

#[tokio::test]
async fn keys_cli_adds_lists_revokes_and_rotates() {
    let dir = tempfile::tempdir().unwrap();
    let s = Setup::start(dir.path()).await;
    let file = dir.path().join("agent.jwk");
    let jwk = p256_key().jwk;
    std::fs::write(&file, jwk.to_string()).unwrap();
    let file = file.to_string_lossy().into_owned();
    let o = cli(
        Some(&s.server),
        &["keys", "add", &s.id, "--jwk", &file, "-o", "json"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let added: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(added["kid"], "p256-key-1");
    let o = cli(Some(&s.server), &["keys", "list", &s.id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("p256-key-1") && stdout(&o).contains("ES256"));
    let o = cli(Some(&s.server), &["keys", "revoke", &s.id, "p256-key-1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("revoked_at"));
    let o = cli(Some(&s.server), &["keys", "revoke", &s.id, "p256-key-1"]);
    assert!(!o.status.success(), "revoking twice: {}", stdout(&o));
    let o = cli(Some(&s.server), &["keys", "rotate"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = cli(Some(&s.server), &["keys", "signing", "-o", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let list: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 2, "{list}");
    // A private key file is refused with the reason.
    let mut private = ed25519_key().jwk;
    private["d"] = json!(b64(&[9; 32]));
    let pfile = dir.path().join("private.jwk");
    std::fs::write(&pfile, private.to_string()).unwrap();
    let o = cli(
        Some(&s.server),
        &["keys", "add", &s.id, "--jwk", &pfile.to_string_lossy()],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("private key material must never be sent"),
        "{}",
        stderr(&o)
    );
}

#[tokio::test]
async fn oauth_and_key_routes_are_documented_with_form_encoded_token_requests() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let doc = server.anonymous().get("/openapi.json").await.unwrap();
    let paths = &doc["paths"];
    for (path, method) in [
        ("/v1/identities/{id}/keys", "post"),
        ("/v1/identities/{id}/keys", "get"),
        ("/v1/identities/{id}/keys/{kid}", "delete"),
        ("/v1/keys", "get"),
        ("/v1/keys/rotate", "post"),
        ("/oauth2/token", "post"),
        ("/.well-known/oauth-authorization-server", "get"),
        ("/.well-known/jwks.json", "get"),
    ] {
        let op = &paths[path][method];
        assert!(op.is_object(), "{method} {path} is not documented");
        let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
        assert_eq!(
            secured,
            path.starts_with("/v1/"),
            "{method} {path}: admin routes need the API token, OAuth routes do not"
        );
    }
    let token = &paths["/oauth2/token"]["post"];
    let content = token["requestBody"]["content"].as_object().unwrap();
    assert_eq!(
        content.keys().collect::<Vec<_>>(),
        ["application/x-www-form-urlencoded"]
    );
    for status in ["200", "400", "401", "503"] {
        assert!(token["responses"].get(status).is_some(), "{status}");
    }
}
