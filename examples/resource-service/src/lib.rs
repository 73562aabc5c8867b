//! An example resource service that accepts warrant access tokens.
//!
//! It shows what a resource owner has to do to put a service behind warrant, using only
//! public libraries (`jsonwebtoken`, `reqwest`, `axum`) and warrant's public HTTP API —
//! no warrant crate — exactly as a third-party service would:
//!
//! 1. **Offline, on every request** ([`Verifier`]): the bearer token is an RFC 9068 JWT
//!    (`typ: at+jwt`) signed with EdDSA by a key in warrant's JWKS (found through the RFC
//!    8414 metadata, cached by `kid`, fetched again — at most once per
//!    [`Config::jwks_min_refetch`] — when a token names a `kid` not in the cache), issued by
//!    warrant's issuer, for this service's audience, and within `nbf`..`exp`. Failures are
//!    401 with `WWW-Authenticate: Bearer error="invalid_token"` (RFC 6750 §3).
//! 2. **Offline**: the token's scope carries the action (`App:read` for
//!    `GET /documents/{id}`); otherwise 403 `insufficient_scope`.
//! 3. **Online**: `POST /v1/authorize` with the token asks warrant for the decision on this
//!    very transaction (action, resource), so a revocation, a kill switch, a suspension or a
//!    policy change applies at once although the JWT itself is still unexpired. Deny is 403
//!    with warrant's reason; when warrant cannot answer the request is refused with 503
//!    (fail closed).

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, RwLock};

/// The scope token `GET /documents/{id}` requires (it names the Cedar action
/// `App::Action::"read"`).
pub const READ_SCOPE: &str = "App:read";
/// The Cedar action asked for at `/v1/authorize`.
pub const READ_ACTION: &str = r#"App::Action::"read""#;
/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 30;
/// How long a fetched key set is used before it is fetched again (a key removed from the
/// JWKS stops being accepted within this time).
pub const JWKS_MAX_AGE: Duration = Duration::from_secs(300);

/// Shortest time between two attempts to fetch the key set while none was ever fetched.
pub const FIRST_FETCH_RETRY: Duration = Duration::from_secs(1);

/// The service's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Base URL of warrant, e.g. `http://127.0.0.1:7878` (no trailing slash needed).
    pub warrant_url: String,
    /// This service's audience: the `audience` agents ask their tokens for, and the `aud`
    /// every token must carry.
    pub audience: String,
    /// The warrant API token this service calls `/v1/authorize` with (never an agent's).
    pub warrant_token: String,
    /// The issuer warrant must announce in its metadata (RFC 8414 §3.3); `None`: take the
    /// metadata's `issuer` as it is (the warrant URL is configured, hence trusted).
    pub expected_issuer: Option<String>,
    /// Shortest time between two fetches of the JWKS (a token naming an unknown `kid`
    /// cannot make the service hammer warrant).
    pub jwks_min_refetch: Duration,
    /// Timeout of every call to warrant.
    pub http_timeout: Duration,
}

impl Config {
    /// A configuration with the default intervals.
    pub fn new(warrant_url: &str, audience: &str, warrant_token: &str) -> Config {
        Config {
            warrant_url: warrant_url.trim_end_matches('/').to_owned(),
            audience: audience.to_owned(),
            warrant_token: warrant_token.to_owned(),
            expected_issuer: None,
            jwks_min_refetch: Duration::from_secs(10),
            http_timeout: Duration::from_secs(5),
        }
    }
}

/// The claims of a warrant access token this service reads.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct AccessClaims {
    pub iss: String,
    /// The identity id of the agent.
    pub sub: String,
    pub exp: i64,
    #[serde(default)]
    pub jti: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    /// Space-delimited scope tokens.
    #[serde(default)]
    pub scope: String,
    #[serde(default)]
    pub environment: Option<String>,
    /// The named human owner of the agent.
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub spiffe_id: Option<String>,
    /// The delegation chain (RFC 8693 `act`), when the token was obtained by delegation.
    #[serde(default)]
    pub act: Option<Value>,
}

impl AccessClaims {
    pub fn has_scope(&self, wanted: &str) -> bool {
        self.scope.split(' ').any(|s| s == wanted)
    }
}

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyError {
    /// The token is not acceptable: 401 `invalid_token` with this description.
    Invalid(String),
    /// warrant's keys could not be obtained: 503 (fail closed).
    Unavailable(String),
}

#[derive(Debug, Deserialize)]
struct Metadata {
    issuer: String,
    jwks_uri: String,
}

struct KeySet {
    issuer: String,
    keys: HashMap<String, DecodingKey>,
    fetched: Instant,
}

/// Verifies access tokens against warrant's published keys (offline: no call to warrant
/// per request, only to fetch the key set now and then).
pub struct Verifier {
    http: reqwest::Client,
    config: Config,
    keys: RwLock<Option<Arc<KeySet>>>,
    /// When a fetch was last attempted; held while fetching (one fetch at a time).
    last_fetch: Mutex<Option<Instant>>,
}

impl Verifier {
    pub fn new(http: reqwest::Client, config: Config) -> Verifier {
        Verifier {
            http,
            config,
            keys: RwLock::new(None),
            last_fetch: Mutex::new(None),
        }
    }

    /// The issuer from warrant's metadata (fetching it when never fetched yet).
    pub async fn issuer(&self) -> Result<String, VerifyError> {
        if let Some(set) = self.keys.read().await.clone() {
            return Ok(set.issuer.clone());
        }
        self.refresh(None).await?;
        match self.keys.read().await.as_ref() {
            Some(set) => Ok(set.issuer.clone()),
            None => Err(VerifyError::Unavailable(
                "warrant's keys are unknown".into(),
            )),
        }
    }

    /// Verifies `token`: header (EdDSA, `typ: at+jwt`, a `kid`), signature, `iss`, `aud`,
    /// `exp`, `nbf`. The scope is the caller's business.
    pub async fn verify(&self, token: &str) -> Result<AccessClaims, VerifyError> {
        let head = jsonwebtoken::decode_header(token)
            .map_err(|_| VerifyError::Invalid("the token is not a JWT".into()))?;
        if head.alg != Algorithm::EdDSA {
            return Err(VerifyError::Invalid(format!(
                "the token must be signed with EdDSA, not {:?}",
                head.alg
            )));
        }
        // RFC 9068 §4: `at+jwt`, or its full media type.
        let typ_ok = head.typ.as_deref().is_some_and(|t| {
            t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt")
        });
        if !typ_ok {
            return Err(VerifyError::Invalid(
                "the token is not an access token (typ must be at+jwt)".into(),
            ));
        }
        let kid = head
            .kid
            .ok_or_else(|| VerifyError::Invalid("the token names no signing key (kid)".into()))?;
        let (key, issuer) = self.key(&kid).await?;

        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[issuer.as_str()]);
        validation.set_audience(&[self.config.audience.as_str()]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        let data = jsonwebtoken::decode::<AccessClaims>(token, &key, &validation)
            .map_err(|e| VerifyError::Invalid(describe(&e)))?;
        Ok(data.claims)
    }

    /// The key `kid` and the issuer, from the cache or after fetching the set again.
    async fn key(&self, kid: &str) -> Result<(DecodingKey, String), VerifyError> {
        let cached = self.keys.read().await.clone();
        if let Some(set) = &cached {
            if let Some(k) = set.keys.get(kid) {
                if set.fetched.elapsed() < JWKS_MAX_AGE {
                    return Ok((k.clone(), set.issuer.clone()));
                }
                // Old set: try to renew it, but keep serving from it when warrant is away.
                if let Err(e) = self.refresh(Some(kid)).await {
                    tracing::warn!(error = ?e, "cannot renew warrant's key set; using the cached one");
                }
            } else {
                self.refresh(Some(kid)).await?;
            }
        } else {
            self.refresh(Some(kid)).await?;
        }
        let set = self.keys.read().await.clone();
        match set.as_ref().and_then(|s| s.keys.get(kid).map(|k| (k, s))) {
            Some((k, s)) => Ok((k.clone(), s.issuer.clone())),
            None => match set.or(cached) {
                Some(_) => Err(VerifyError::Invalid(format!(
                    "the token is signed with a key warrant does not publish (kid `{kid}`)"
                ))),
                None => Err(VerifyError::Unavailable(
                    "warrant's keys are not available".into(),
                )),
            },
        }
    }

    /// Fetches the metadata and key set again, unless one was fetched (or attempted) less
    /// than `jwks_min_refetch` ago, or — when `kid` is given — another request fetched a
    /// set holding `kid` while this one waited.
    async fn refresh(&self, kid: Option<&str>) -> Result<(), VerifyError> {
        let mut last = self.last_fetch.lock().await;
        if let (Some(kid), Some(set)) = (kid, self.keys.read().await.as_ref()) {
            if set.keys.contains_key(kid) && set.fetched.elapsed() < JWKS_MAX_AGE {
                return Ok(());
            }
        }
        // Nothing cached yet (warrant was away at start): try again sooner.
        let interval = match self.keys.read().await.as_ref() {
            Some(_) => self.config.jwks_min_refetch,
            None => self.config.jwks_min_refetch.min(FIRST_FETCH_RETRY),
        };
        if let Some(at) = *last {
            if at.elapsed() < interval {
                tracing::debug!("warrant's key set was fetched moments ago; not again yet");
                return Ok(());
            }
        }
        *last = Some(Instant::now());
        let set = self.fetch().await?;
        tracing::info!(issuer = %set.issuer, keys = set.keys.len(), "fetched warrant's key set");
        *self.keys.write().await = Some(Arc::new(set));
        Ok(())
    }

    async fn fetch(&self) -> Result<KeySet, VerifyError> {
        let unavailable = |what: &str, e: &dyn std::fmt::Display| {
            tracing::warn!(error = %e, "cannot fetch {what}");
            VerifyError::Unavailable(format!("cannot fetch warrant's {what}"))
        };
        let url = format!(
            "{}/.well-known/oauth-authorization-server",
            self.config.warrant_url
        );
        let meta: Metadata = self
            .get_json(&url)
            .await
            .map_err(|e| unavailable("metadata", &e))?;
        if let Some(expected) = &self.config.expected_issuer {
            if &meta.issuer != expected {
                tracing::error!(announced = %meta.issuer, %expected, "warrant announces another issuer");
                return Err(VerifyError::Unavailable(
                    "warrant announces an unexpected issuer".into(),
                ));
            }
        }
        let jwks: Value = self
            .get_json(&meta.jwks_uri)
            .await
            .map_err(|e| unavailable("key set", &e))?;
        let mut keys = HashMap::new();
        for jwk in jwks
            .get("keys")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let field = |name: &str| jwk.get(name).and_then(Value::as_str);
            // Only Ed25519 signing keys; anything else in the set is ignored.
            let usable = field("kty") == Some("OKP")
                && field("crv") == Some("Ed25519")
                && field("alg").is_none_or(|a| a == "EdDSA")
                && field("use").is_none_or(|u| u == "sig");
            if let (true, Some(kid), Some(x)) = (usable, field("kid"), field("x")) {
                match DecodingKey::from_ed_components(x) {
                    Ok(k) => {
                        keys.insert(kid.to_owned(), k);
                    }
                    Err(e) => tracing::warn!(%kid, error = %e, "unusable key in warrant's JWKS"),
                }
            }
        }
        Ok(KeySet {
            issuer: meta.issuer,
            keys,
            fetched: Instant::now(),
        })
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> anyhow::Result<T> {
        let res = self
            .http
            .get(url)
            .timeout(self.config.http_timeout)
            .send()
            .await?
            .error_for_status()?;
        Ok(res.json().await?)
    }
}

fn describe(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::ExpiredSignature => "the token has expired".into(),
        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)".into(),
        ErrorKind::InvalidAudience => "the token is not for this service (aud)".into(),
        ErrorKind::InvalidIssuer => "the token was not issued by warrant (iss)".into(),
        ErrorKind::InvalidSignature => "the token's signature does not verify".into(),
        ErrorKind::MissingRequiredClaim(c) => format!("the token has no `{c}` claim"),
        ErrorKind::InvalidAlgorithm => "the token must be signed with EdDSA".into(),
        _ => "the token is malformed".into(),
    }
}

/// The shared state of the service.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    http: reqwest::Client,
    verifier: Verifier,
}

impl AppState {
    pub fn new(config: Config) -> anyhow::Result<AppState> {
        let http = reqwest::Client::builder()
            .timeout(config.http_timeout)
            .build()?;
        Ok(AppState {
            inner: Arc::new(Inner {
                verifier: Verifier::new(http.clone(), config.clone()),
                http,
                config,
            }),
        })
    }

    pub fn verifier(&self) -> &Verifier {
        &self.inner.verifier
    }
}

/// The service's routes: `GET /documents/{id}` and `GET /healthz`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/documents/{id}", get(get_document))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

/// An error answer: status, JSON `{error, error_description}` and, for 401 and
/// `insufficient_scope`, an RFC 6750 `WWW-Authenticate` challenge.
#[derive(Debug)]
pub struct Refusal {
    status: StatusCode,
    error: &'static str,
    description: String,
    challenge: Option<String>,
    extra: Option<Value>,
}

impl Refusal {
    /// 401 without an error code: the request carried no token (RFC 6750 §3.1).
    fn no_token(audience: &str) -> Refusal {
        Refusal {
            status: StatusCode::UNAUTHORIZED,
            error: "invalid_request",
            description: "an access token is required (Authorization: Bearer …)".into(),
            challenge: Some(format!("Bearer realm=\"{}\"", challenge_safe(audience))),
            extra: None,
        }
    }

    fn invalid_token(audience: &str, description: String) -> Refusal {
        Refusal {
            status: StatusCode::UNAUTHORIZED,
            error: "invalid_token",
            challenge: Some(format!(
                "Bearer realm=\"{}\", error=\"invalid_token\", error_description=\"{}\"",
                challenge_safe(audience),
                challenge_safe(&description)
            )),
            description,
            extra: None,
        }
    }

    fn insufficient_scope(audience: &str, scope: &str) -> Refusal {
        let description = format!("the token's scope does not include `{scope}`");
        Refusal {
            status: StatusCode::FORBIDDEN,
            error: "insufficient_scope",
            challenge: Some(format!(
                "Bearer realm=\"{}\", error=\"insufficient_scope\", error_description=\"{}\", scope=\"{}\"",
                challenge_safe(audience),
                challenge_safe(&description),
                challenge_safe(scope)
            )),
            description,
            extra: None,
        }
    }

    fn unavailable(description: &str) -> Refusal {
        Refusal {
            status: StatusCode::SERVICE_UNAVAILABLE,
            error: "temporarily_unavailable",
            description: description.to_owned(),
            challenge: None,
            extra: None,
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.error, "error_description": self.description });
        if let (Some(obj), Some(Value::Object(extra))) = (body.as_object_mut(), self.extra) {
            obj.extend(extra);
        }
        let mut res = (self.status, Json(body)).into_response();
        if let Some(c) = self.challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            res.headers_mut().insert(header::WWW_AUTHENTICATE, c);
        }
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    }
}

/// Text fit for a quoted RFC 6750 attribute (`%x20-21 / %x23-5B / %x5D-7E`): other
/// characters become `'` or `?`.
fn challenge_safe(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '"' | '`' => '\'',
            '\\' => '/',
            ' '..='~' => c,
            _ => '?',
        })
        .collect()
}

/// The bearer token of a request, if any.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Document ids are short and plain, so they quote as a Cedar entity id as they are.
fn valid_document_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// What `/v1/authorize` answers (the fields this service reads).
#[derive(Debug, Deserialize)]
struct WarrantDecision {
    decision: String,
    reason: String,
    #[serde(default)]
    determining_policies: Vec<DeterminingPolicy>,
    audit_seq: u64,
}

#[derive(Debug, Deserialize)]
struct DeterminingPolicy {
    id: String,
}

/// Asks warrant for the decision on this transaction, with the agent's token as the
/// principal's proof. `Err`: warrant could not decide (the caller refuses: fail closed).
async fn ask_warrant(
    state: &AppState,
    token: &str,
    action: &str,
    resource: &str,
) -> Result<WarrantDecision, String> {
    let config = &state.inner.config;
    let res = state
        .inner
        .http
        .post(format!("{}/v1/authorize", config.warrant_url))
        .bearer_auth(&config.warrant_token)
        .json(&json!({
            "token": token,
            "audience": config.audience,
            "action": action,
            "resource": resource,
        }))
        .send()
        .await
        .map_err(|e| format!("cannot reach warrant: {e}"))?;
    let status = res.status();
    if !status.is_success() {
        let body = res.text().await.unwrap_or_default();
        return Err(format!("warrant answered {status}: {body}"));
    }
    res.json::<WarrantDecision>()
        .await
        .map_err(|e| format!("unreadable decision from warrant: {e}"))
}

/// `GET /documents/{id}`: a dummy document, to an agent whose token carries `App:read` and
/// whom warrant allows `App::Action::"read"` on `App::Document::"{id}"` right now.
async fn get_document(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let audience = state.inner.config.audience.as_str();
    // 1. Offline: a genuine, unexpired token of warrant's, for this service.
    let token = bearer(&headers).ok_or_else(|| Refusal::no_token(audience))?;
    let claims = match state.inner.verifier.verify(token).await {
        Ok(c) => c,
        Err(VerifyError::Invalid(why)) => {
            tracing::info!(reason = %why, "token refused");
            return Err(Refusal::invalid_token(audience, why));
        }
        Err(VerifyError::Unavailable(why)) => {
            return Err(Refusal::unavailable(&format!(
                "{why}; the token cannot be checked, so access is refused"
            )))
        }
    };
    // 2. Offline: the token was issued for this kind of access.
    if !claims.has_scope(READ_SCOPE) {
        return Err(Refusal::insufficient_scope(audience, READ_SCOPE));
    }
    if !valid_document_id(&id) {
        return Err(Refusal {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_request",
            description: "a document id is 1 to 128 characters of [A-Za-z0-9._-]".into(),
            challenge: None,
            extra: None,
        });
    }
    // 3. Online: warrant decides this transaction now (revocation, kill switch,
    //    suspension and policy changes take effect at once).
    let resource = format!(r#"App::Document::"{id}""#);
    let decision = match ask_warrant(&state, token, READ_ACTION, &resource).await {
        Ok(d) => d,
        Err(why) => {
            tracing::warn!(error = %why, "warrant could not decide; refusing (fail closed)");
            return Err(Refusal::unavailable(
                "the authorization service could not decide; access is refused",
            ));
        }
    };
    if decision.decision != "allow" {
        tracing::info!(sub = %claims.sub, %resource, reason = %decision.reason, "denied by warrant");
        return Err(Refusal {
            status: StatusCode::FORBIDDEN,
            error: "access_denied",
            description: decision.reason,
            challenge: None,
            extra: Some(json!({ "audit_seq": decision.audit_seq })),
        });
    }
    let policies: Vec<&str> = decision
        .determining_policies
        .iter()
        .map(|p| p.id.as_str())
        .collect();
    Ok(Json(json!({
        "id": id,
        "title": format!("Document {id}"),
        "body": "This is a dummy document served by the warrant example resource service.",
        "served_to": {
            "sub": claims.sub,
            "owner": claims.owner,
            "environment": claims.environment,
            "jti": claims.jti,
        },
        "authorization": {
            "reason": decision.reason,
            "determining_policies": policies,
            "audit_seq": decision.audit_seq,
        },
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_is_read_case_insensitively_and_never_empty() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer abc"),
        );
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
    }

    #[test]
    fn challenge_text_stays_within_rfc6750_characters() {
        let s = challenge_safe("kid `k\"1` \\ é\n");
        assert!(s
            .chars()
            .all(|c| c == ' ' || c == '!' || ('#'..='[').contains(&c) || (']'..='~').contains(&c)));
        assert!(HeaderValue::from_str(&s).is_ok());
    }

    #[test]
    fn document_ids_are_plain() {
        assert!(valid_document_id("q3-report_v1.pdf"));
        assert!(!valid_document_id(""));
        assert!(!valid_document_id("a\"b"));
        assert!(!valid_document_id(&"x".repeat(129)));
    }

    #[test]
    fn scope_tokens_match_whole() {
        let mut c = AccessClaims {
            iss: String::new(),
            sub: String::new(),
            exp: 0,
            jti: None,
            client_id: None,
            scope: "App:readonly App:write".into(),
            environment: None,
            owner: None,
            spiffe_id: None,
            act: None,
        };
        assert!(!c.has_scope(READ_SCOPE));
        c.scope = "App:write App:read".into();
        assert!(c.has_scope(READ_SCOPE));
    }
}
