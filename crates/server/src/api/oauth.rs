//! OAuth 2.0 for agents: warrant as the authorization server that issues short-lived,
//! scoped access tokens to registered identities.
//!
//! Endpoints (no API token: the client authenticates itself with a signed assertion):
//! - `GET /.well-known/oauth-authorization-server`: RFC 8414 metadata.
//! - `GET /.well-known/jwks.json`: the public keys that verify access tokens (RFC 7517).
//!   A retired key stays listed until every token it signed has expired; a resource
//!   service that meets an unknown `kid` fetches the set again.
//! - `POST /oauth2/token` (`application/x-www-form-urlencoded`): the token-exchange grant
//!   (RFC 8693 delegation) is handed to `oauth_more::token_exchange`; here, the
//!   `client_credentials` grant (RFC 6749 §4.4), the client authenticated with `private_key_jwt`
//!   (RFC 7523: `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`
//!   and a `client_assertion` signed with a key registered through `/v1/identities/{id}/keys`;
//!   the checks are in [`crate::credentials::assertion`]) or, on a TLS listener with a
//!   client CA and without an assertion, with `tls_client_auth` (RFC 8705 §2.1: the
//!   verified client certificate's SPIFFE ID URI SAN names the identity, see
//!   [`crate::credentials::tls`]). `audience` (or the RFC 8707 alias
//!   `resource`) names the one resource service the token is for; `scope` the actions asked
//!   for. Errors are RFC 6749 §5.2 `{error, error_description}`; every answer says
//!   `Cache-Control: no-store`.
//!
//! What a token request must pass, in order: well-formed parameters (`invalid_request`,
//! `invalid_scope` for a malformed scope; nothing is logged); client authentication
//! (`invalid_client`, 401; not audit-logged, so unauthenticated callers cannot flood the
//! log); the identity's standing — suspended or retired (`invalid_client`) or stopped by a
//! kill switch (`unauthorized_client`) — and then each scope token, which must be permitted
//! by the Cedar action `Warrant::Action::"request_scope"` on `Warrant::Scope::"<token>"` with
//! context `{environment: <the identity's environment>, audience}` (`invalid_scope`, naming
//! the token and the decision's reason). Refusals of an authenticated client are recorded
//! (`credential.refused`); an issued token is recorded (`credential.issued`: its `jti`,
//! scope, audience, expiry and how the client authenticated (`auth`), never the token).
//! Either record consumes the assertion's `jti` (if any), once across every replica: a
//! replayed assertion is `invalid_client`.
//!
//! Environment isolation: a token carries its identity's `environment` and exactly one
//! audience (`aud`). A resource service must check `aud` is itself (and `iss`, `exp`, the
//! signature against the JWKS); `/v1/authorize` with a bearer token checks both the audience
//! and the environment.

use crate::credentials::assertion::{self, AssertionError, Expected};
use crate::credentials::jwt::{self, AccessClaims};
use crate::credentials::TlsPeer;
use crate::ops::Op;
use crate::snapshot::{PrincipalEntry, Snapshot};
use crate::writer::WriteError;
use crate::AppState;
use axum::extract::rejection::FormRejection;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use utoipa::{OpenApi, ToSchema};
use warrant_core::credentials::Scope;
use warrant_core::identity::Identity;
use warrant_core::Millis;
use warrant_policy::DecisionInput;

pub const GRANT_CLIENT_CREDENTIALS: &str = "client_credentials";
pub const GRANT_TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// `issued_token_type` of an access token (RFC 8693 §3).
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// The Cedar action deciding which scope tokens an identity may hold.
pub const REQUEST_SCOPE_ACTION: &str = r#"Warrant::Action::"request_scope""#;
/// Longest audience (resource) accepted.
pub const MAX_AUDIENCE_CHARS: usize = 512;

/// The token endpoint URL of an issuer.
pub fn token_endpoint(issuer: &str) -> String {
    format!("{issuer}/oauth2/token")
}

/// An OAuth error response (RFC 6749 §5.2).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OAuthErrorBody {
    /// `invalid_request`, `invalid_client`, `invalid_grant`, `unauthorized_client`,
    /// `unsupported_grant_type`, `invalid_scope` or `temporarily_unavailable`.
    pub error: String,
    /// Human-readable explanation.
    pub error_description: String,
}

/// An OAuth error: its status, RFC 6749 code and description.
#[derive(Debug)]
pub struct OAuthError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
}

impl OAuthError {
    pub fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        OAuthError {
            status,
            error,
            description: description.into(),
        }
    }
    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", d)
    }
    pub fn invalid_client(d: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", d)
    }
    pub fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", d)
    }
    pub fn unauthorized_client(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "unauthorized_client", d)
    }
    pub fn unsupported_grant_type(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "unsupported_grant_type", d)
    }
    pub fn invalid_scope(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_scope", d)
    }
    pub fn unavailable(d: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            d,
        )
    }

    /// A writer failure while recording an issuance or a refusal.
    pub fn from_write(e: WriteError) -> Self {
        match e {
            // The only conflict of these ops: the assertion's jti was consumed already.
            WriteError::Conflict(_) => Self::invalid_client("client assertion replayed"),
            WriteError::Invalid(m) | WriteError::NotFound(m) | WriteError::Forbidden(m) => {
                Self::invalid_request(m)
            }
            WriteError::Stale(m) => Self::unavailable(m),
            WriteError::Unavailable(m) => {
                tracing::error!(error = %m, "audit/storage write failed; token refused");
                Self::unavailable("the audit log could not be written; no token was issued")
            }
        }
    }
}

/// `Cache-Control: no-store` and `Pragma: no-cache` (RFC 6749 §5.1).
pub fn no_store(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    res
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        no_store(
            (
                self.status,
                Json(OAuthErrorBody {
                    error: self.error.to_owned(),
                    error_description: self.description,
                }),
            )
                .into_response(),
        )
    }
}

/// The parameters of a token request (form-encoded). Documentation only: the endpoint
/// reads the form as name/value pairs (unknown parameters are ignored, RFC 6749 §3.2;
/// a repeated parameter is `invalid_request`).
#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenRequest {
    /// `client_credentials` (or the token-exchange grant).
    pub grant_type: String,
    /// `urn:ietf:params:oauth:client-assertion-type:jwt-bearer`.
    pub client_assertion_type: Option<String>,
    /// A JWT signed (EdDSA or ES256) with a key registered for the identity: `iss` = `sub`
    /// = the identity id (or SPIFFE ID), `aud` = the token endpoint URL, `exp` at most
    /// 5 minutes ahead, a fresh `jti`, header `kid` = the key's id.
    pub client_assertion: Option<String>,
    /// The identity id or SPIFFE ID (optional; must match the assertion).
    pub client_id: Option<String>,
    /// Space-delimited scope tokens `Namespace:action`, e.g. `App:read App:write`.
    pub scope: Option<String>,
    /// The resource service the token is for (becomes `aud`). Required (or `resource`).
    pub audience: Option<String>,
    /// RFC 8707 alias of `audience`.
    pub resource: Option<String>,
    /// Requested lifetime in seconds (capped by the configured maximum).
    pub expires_in: Option<String>,
}

/// The form of a token request, by grant.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum TokenRequestForm {
    ClientCredentials(TokenRequest),
    TokenExchange(crate::api::oauth_more::TokenExchangeRequest),
}

/// A successful token response (RFC 6749 §5.1).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    /// A JWT (`typ: at+jwt`, RFC 9068) signed with EdDSA; verify it against the JWKS.
    pub access_token: String,
    /// `Bearer`.
    pub token_type: String,
    /// Seconds until it expires.
    pub expires_in: i64,
    /// The granted scope (space-delimited).
    pub scope: String,
    /// `urn:ietf:params:oauth:token-type:access_token`.
    pub issued_token_type: String,
}

/// The token request's parameters by name.
pub struct TokenParams(BTreeMap<String, String>);

impl TokenParams {
    /// Reads the form; a parameter sent twice is `invalid_request` (RFC 6749 §3.2).
    pub fn from_form(
        form: Result<Form<Vec<(String, String)>>, FormRejection>,
    ) -> Result<TokenParams, OAuthError> {
        let Form(pairs) = form.map_err(|e| {
            OAuthError::invalid_request(match e {
                FormRejection::InvalidFormContentType(_) => {
                    "expected `Content-Type: application/x-www-form-urlencoded`".to_owned()
                }
                other => format!("unreadable form: {}", other.body_text()),
            })
        })?;
        let mut map = BTreeMap::new();
        for (name, value) in pairs {
            if map.contains_key(&name) {
                return Err(OAuthError::invalid_request(format!(
                    "parameter `{name}` is repeated"
                )));
            }
            map.insert(name, value);
        }
        Ok(TokenParams(map))
    }

    /// A parameter's value; an empty value counts as absent (RFC 6749 §3.1).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// Every parameter (for grants implemented elsewhere).
    pub fn to_hash_map(&self) -> std::collections::HashMap<String, String> {
        self.0.clone().into_iter().collect()
    }

    pub fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::invalid_request(format!("`{name}` is required")))
    }
}

/// How a client authenticated at the token endpoint.
pub const AUTH_PRIVATE_KEY_JWT: &str = "private_key_jwt";
/// RFC 8705 §2.1: an mTLS client certificate from the configured client CA.
pub const AUTH_TLS_CLIENT: &str = "tls_client_auth";

/// A client that proved possession of one of its identity's keys (a signed assertion) or
/// of a client certificate naming its SPIFFE ID.
pub struct AuthenticatedClient {
    pub entry: Arc<PrincipalEntry>,
    /// The assertion's `jti` and expiry (consumed by the record of the outcome); `None`
    /// for a client certificate.
    pub assertion: Option<(String, Millis)>,
    /// The identity key that signed the assertion (`None` for a client certificate).
    pub kid: Option<String>,
    /// [`AUTH_PRIVATE_KEY_JWT`] or [`AUTH_TLS_CLIENT`].
    pub method: &'static str,
}

impl AuthenticatedClient {
    pub fn identity(&self) -> &Identity {
        &self.entry.identity
    }
}

fn assertion_failed(e: AssertionError) -> OAuthError {
    tracing::debug!(error = %e, "client assertion refused");
    OAuthError::invalid_client(e.to_string())
}

/// Authenticates the client with `private_key_jwt` (RFC 7523). Failures are not
/// audit-logged (the caller is unauthenticated); the identity's standing is not judged
/// here (see [`standing_refusal`]).
pub async fn authenticate_client(
    state: &AppState,
    params: &TokenParams,
) -> Result<AuthenticatedClient, OAuthError> {
    match params.get("client_assertion_type") {
        Some(assertion::ASSERTION_TYPE) => {}
        Some(other) => {
            return Err(OAuthError::invalid_client(format!(
                "client_assertion_type `{other}` is not supported (use `{}`)",
                assertion::ASSERTION_TYPE
            )))
        }
        None => {
            let mtls = if state.tls_client_auth {
                ", or connect with a client certificate naming your SPIFFE ID (tls_client_auth)"
            } else {
                ""
            };
            return Err(OAuthError::invalid_client(format!(
                "client authentication required: send `client_assertion_type={}` and a `client_assertion` (private_key_jwt){mtls}",
                assertion::ASSERTION_TYPE
            )));
        }
    }
    let token = params.get("client_assertion").ok_or_else(|| {
        OAuthError::invalid_client("`client_assertion` is required (private_key_jwt)")
    })?;
    let peeked = assertion::peek(token).map_err(assertion_failed)?;
    if let Some(client_id) = params.get("client_id") {
        if client_id != peeked.iss {
            return Err(OAuthError::invalid_client(
                "`client_id` does not match the client assertion's `iss`",
            ));
        }
    }
    let entry = state
        .snapshot
        .load()
        .principal(&peeked.iss)
        .cloned()
        .ok_or_else(|| OAuthError::invalid_client("unknown client"))?;
    let keys = state
        .store
        .identity_keys(&entry.identity.id)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "cannot read identity keys");
            OAuthError::unavailable("storage is unavailable")
        })?;
    let key = keys
        .iter()
        .find(|k| k.kid == peeked.kid && k.revoked_ms.is_none())
        .ok_or_else(|| {
            OAuthError::invalid_client(format!(
                "the client has no key `{}` (unknown or revoked)",
                peeked.kid
            ))
        })?;
    let stored: serde_json::Value = serde_json::from_str(&key.jwk).map_err(|e| {
        tracing::error!(error = %e, kid = %key.kid, "stored identity key is not JSON");
        OAuthError::invalid_client(format!("key `{}` is not usable", key.kid))
    })?;
    let issuer = state.issuer.as_str();
    let endpoint = token_endpoint(issuer);
    let verified = assertion::verify(
        token,
        &peeked,
        &stored,
        &Expected {
            client_names: [
                entry.identity.id.as_str(),
                entry.identity.spiffe_id.as_str(),
            ],
            token_endpoint: &endpoint,
            issuer,
            now_ms: state.clock.now_ms(),
        },
    )
    .map_err(assertion_failed)?;
    Ok(AuthenticatedClient {
        entry,
        assertion: Some((verified.jti, verified.exp_ms)),
        kid: Some(peeked.kid),
        method: AUTH_PRIVATE_KEY_JWT,
    })
}

/// Authenticates the client by its verified mTLS client certificate (RFC 8705 §2.1
/// `tls_client_auth`): the certificate's one SPIFFE ID (URI SAN) must be the SPIFFE ID of
/// a registered identity, and `client_id`, when given, must name that identity. The
/// certificate chain was verified against the configured client CA in the handshake.
/// Failures are not audit-logged.
pub fn authenticate_tls_client(
    state: &AppState,
    params: &TokenParams,
    peer: &TlsPeer,
) -> Result<AuthenticatedClient, OAuthError> {
    let spiffe_id = match peer.spiffe_ids.as_slice() {
        [one] => one,
        [] => {
            return Err(OAuthError::invalid_client(
                "the client certificate has no SPIFFE ID (a `spiffe://` URI SAN)",
            ))
        }
        _ => {
            return Err(OAuthError::invalid_client(
                "the client certificate has several SPIFFE IDs; an X.509-SVID has exactly one",
            ))
        }
    };
    let entry = state
        .snapshot
        .load()
        .principal(spiffe_id)
        .cloned()
        .filter(|e| e.identity.spiffe_id == *spiffe_id)
        .ok_or_else(|| {
            tracing::debug!(%spiffe_id, "client certificate names no registered identity");
            OAuthError::invalid_client(
                "unknown client: no registered identity has the client certificate's SPIFFE ID",
            )
        })?;
    if let Some(client_id) = params.get("client_id") {
        if client_id != entry.identity.id && client_id != entry.identity.spiffe_id {
            return Err(OAuthError::invalid_client(
                "`client_id` does not name the identity of the client certificate",
            ));
        }
    }
    Ok(AuthenticatedClient {
        entry,
        assertion: None,
        kid: None,
        method: AUTH_TLS_CLIENT,
    })
}

/// Why an authenticated client may not get a token at all: suspended or retired
/// (`invalid_client`), or stopped by a kill switch (`unauthorized_client`).
pub fn standing_refusal(snap: &Snapshot, identity: &Identity) -> Option<OAuthError> {
    if let Err(why) = identity.may_act() {
        let why = why.replace("principal", "client");
        return Some(OAuthError::invalid_client(why));
    }
    snap.kill_switch_for(identity)
        .map(|ks| OAuthError::unauthorized_client(crate::api::authorize::kill_switch_reason(ks)))
}

/// Records the refusal of an authenticated client (consuming its assertion) and returns
/// the error to answer: `refusal`, or the replay / storage error of recording it.
pub async fn refuse(
    state: &AppState,
    client: &AuthenticatedClient,
    refusal: OAuthError,
    mut payload: serde_json::Value,
) -> OAuthError {
    if let Some(o) = payload.as_object_mut() {
        o.insert("error".into(), json!(refusal.error));
        o.insert("reason".into(), json!(refusal.description));
        o.insert("auth".into(), json!(client.method));
        if let Some(kid) = &client.kid {
            o.insert("client_assertion_kid".into(), json!(kid));
        }
    }
    match state
        .writer
        .mutate(Op::RefuseCredential {
            client_id: client.identity().id.clone(),
            assertion: client.assertion.clone(),
            payload,
        })
        .await
    {
        Ok(_) => refusal,
        Err(e) => OAuthError::from_write(e),
    }
}

/// The scope tokens `Warrant::Action::"request_scope"` does not permit, each with the
/// decision's reason (empty: all permitted).
pub fn refused_scope(
    snap: &Snapshot,
    entry: &PrincipalEntry,
    scope: &Scope,
    audience: &str,
) -> Vec<(String, String)> {
    let Some(entities) = &entry.entities else {
        return vec![(
            scope.to_string(),
            "principal entities unavailable (fail closed)".into(),
        )];
    };
    let context = json!({ "environment": entry.identity.environment, "audience": audience });
    let mut refused = vec![];
    for token in scope.tokens() {
        // Scope tokens never contain `"` or `\` (RFC 6749 §3.3), so they quote as is.
        let resource = format!(r#"Warrant::Scope::"{token}""#);
        let input = DecisionInput {
            action: REQUEST_SCOPE_ACTION,
            resource: &resource,
            context: Some(&context),
            entities: None,
        };
        match warrant_policy::decide(&snap.policy, entities, &input) {
            Ok(d) if d.allowed => {}
            Ok(d) => refused.push((token.to_owned(), d.summary())),
            Err(e) => refused.push((token.to_owned(), format!("cannot decide: {e}"))),
        }
    }
    refused
}

/// The audience of a token request: `audience` or its RFC 8707 alias `resource`.
pub fn audience(params: &TokenParams) -> Result<String, OAuthError> {
    let aud = match (params.get("audience"), params.get("resource")) {
        (Some(a), Some(r)) if a != r => {
            return Err(OAuthError::invalid_request(
                "`audience` and `resource` name different services; a token is for one",
            ))
        }
        (Some(a), _) | (None, Some(a)) => a,
        (None, None) => {
            return Err(OAuthError::invalid_request(
                "`audience` (or `resource`) is required: the resource service the token is for",
            ))
        }
    };
    if aud.chars().count() > MAX_AUDIENCE_CHARS
        || aud.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(OAuthError::invalid_request(format!(
            "`audience` must be at most {MAX_AUDIENCE_CHARS} characters without spaces"
        )));
    }
    Ok(aud.to_owned())
}

/// The requested lifetime (`expires_in`, seconds), if any.
pub fn requested_lifetime(params: &TokenParams) -> Result<Option<u64>, OAuthError> {
    params
        .get("expires_in")
        .map(|v| {
            v.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                OAuthError::invalid_request("`expires_in` must be a positive number of seconds")
            })
        })
        .transpose()
}

/// The identity's authentication requirement (set through a governed
/// `change_auth_requirement` proposal) refuses this way of authenticating.
fn auth_requirement_refusal(
    snap: &crate::snapshot::Snapshot,
    identity: &Identity,
    method: &str,
) -> Option<OAuthError> {
    use warrant_core::governance::assess::Graph;
    use warrant_core::governance::AuthRequirement;
    let required = snap.auth_requirement(&identity.id);
    let ok = match required {
        AuthRequirement::Any => true,
        AuthRequirement::Mtls => method == AUTH_TLS_CLIENT,
        AuthRequirement::PrivateKeyJwt => method == AUTH_PRIVATE_KEY_JWT,
    };
    (!ok).then(|| {
        OAuthError::invalid_client(format!(
            "identity `{}` must authenticate with {} (its authentication requirement); `{method}` is not accepted",
            identity.id,
            match required {
                AuthRequirement::Mtls => AUTH_TLS_CLIENT,
                _ => AUTH_PRIVATE_KEY_JWT,
            }
        ))
    })
}

/// The `client_credentials` grant.
async fn client_credentials(
    state: &AppState,
    params: &TokenParams,
    peer: Option<&TlsPeer>,
) -> Result<Response, OAuthError> {
    let audience = audience(params)?;
    let lifetime = requested_lifetime(params)?;
    let scope_text = params.get("scope").unwrap_or_default();
    let scope = Scope::parse(scope_text).map_err(|e| OAuthError::invalid_scope(e.to_string()))?;
    if scope.is_empty() {
        return Err(OAuthError::invalid_scope(
            "`scope` is required: name the actions the token is for, e.g. `App:read`",
        ));
    }
    // A client assertion, when sent, is how the client authenticates (even over mTLS);
    // otherwise a verified client certificate, if any.
    let has_assertion =
        params.get("client_assertion_type").is_some() || params.get("client_assertion").is_some();
    let client = match peer {
        Some(peer) if !has_assertion => authenticate_tls_client(state, params, peer)?,
        _ => authenticate_client(state, params).await?,
    };
    let snap = state.snapshot.load_full();
    // Judge the identity as the snapshot has it now (it may have changed since lookup).
    let entry = snap
        .principals
        .get(&client.identity().id)
        .cloned()
        .unwrap_or_else(|| client.entry.clone());
    let identity = &entry.identity;
    let request = json!({
        "grant_type": GRANT_CLIENT_CREDENTIALS,
        "scope": scope.to_string(),
        "aud": audience,
    });
    if let Some(refusal) = standing_refusal(&snap, identity) {
        return Err(refuse(state, &client, refusal, request).await);
    }
    if let Some(refusal) = auth_requirement_refusal(&snap, identity, client.method) {
        return Err(refuse(state, &client, refusal, request).await);
    }
    let refused = refused_scope(&snap, &entry, &scope, &audience);
    if !refused.is_empty() {
        let text = refused
            .iter()
            .map(|(t, why)| format!("scope `{t}` is not permitted: {why}"))
            .collect::<Vec<_>>()
            .join("; ");
        return Err(refuse(state, &client, OAuthError::invalid_scope(text), request).await);
    }
    let now = state.clock.now_ms();
    let exp_ms = state
        .token_lifetimes
        .expiry(now, lifetime, None)
        .map_err(|e| OAuthError::invalid_request(e.to_string()))?;
    let now_s = now.div_euclid(1000);
    let claims = AccessClaims {
        iss: state.issuer.clone(),
        sub: identity.id.clone(),
        aud: audience.clone(),
        exp: exp_ms.div_euclid(1000),
        iat: now_s,
        nbf: now_s,
        jti: jwt::new_jti(),
        client_id: identity.id.clone(),
        scope: scope.to_string(),
        environment: identity.environment.clone(),
        owner: identity.owner.clone(),
        spiffe_id: identity.spiffe_id.clone(),
        act: None,
    };
    let token = jwt::issue(&snap.signing, &claims).map_err(|e| {
        tracing::error!(error = %e, "cannot issue an access token");
        OAuthError::unavailable(e.to_string())
    })?;
    let signing_kid = snap.signing.current.as_ref().map(|k| k.kid.clone());
    state
        .writer
        .mutate(Op::IssueCredential {
            client_id: identity.id.clone(),
            assertion: client.assertion.clone(),
            subject: format!("identity:{}", identity.id),
            // Never the token itself.
            payload: json!({
                "grant_type": GRANT_CLIENT_CREDENTIALS,
                "jti": claims.jti,
                "scope": claims.scope,
                "aud": claims.aud,
                "environment": claims.environment,
                "iat": claims.iat,
                "exp": claims.exp,
                "signing_kid": signing_kid,
                "auth": client.method,
                "client_assertion_kid": client.kid,
            }),
        })
        .await
        .map_err(OAuthError::from_write)?;
    entry.touch(now);
    Ok(no_store(
        Json(TokenResponse {
            access_token: token,
            token_type: "Bearer".into(),
            expires_in: claims.exp.saturating_sub(now_s),
            scope: claims.scope,
            issued_token_type: ACCESS_TOKEN_TYPE.into(),
        })
        .into_response(),
    ))
}

/// Request an access token.
///
/// The `client_credentials` grant with `private_key_jwt` client authentication (RFC 6749
/// §4.4, RFC 7523) or, on a TLS listener with a client CA, `tls_client_auth` (RFC 8705: a
/// client certificate whose SPIFFE ID URI SAN is the identity's), and delegation by token exchange (RFC 8693, see `oauth_more`). The
/// body is form-encoded; errors follow RFC 6749 §5.2.
#[utoipa::path(post, operation_id = "oauth_token", path = "/oauth2/token", tag = "oauth",
    request_body(content = TokenRequestForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "the access token (Cache-Control: no-store)", body = TokenResponse),
              (status = 400, description = "invalid_request, invalid_scope, unauthorized_client, unsupported_grant_type, invalid_grant", body = OAuthErrorBody),
              (status = 401, description = "invalid_client: client authentication failed, the assertion was replayed, or the identity is suspended or retired", body = OAuthErrorBody),
              (status = 503, description = "temporarily_unavailable: the issuance could not be recorded (no token was issued)", body = OAuthErrorBody)))]
pub async fn token(
    State(state): State<AppState>,
    peer: Option<Extension<TlsPeer>>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response, OAuthError> {
    let params = TokenParams::from_form(form)?;
    // A client certificate counts only where client certificates are configured.
    let peer = peer.filter(|_| state.tls_client_auth);
    match params.require("grant_type")? {
        GRANT_CLIENT_CREDENTIALS => {
            client_credentials(&state, &params, peer.as_ref().map(|Extension(p)| p)).await
        }
        GRANT_TOKEN_EXCHANGE => {
            Ok(crate::api::oauth_more::token_exchange(&state, &params.to_hash_map()).await)
        }
        other => Err(OAuthError::unsupported_grant_type(format!(
            "grant_type `{other}` is not supported (use `{GRANT_CLIENT_CREDENTIALS}` or `{GRANT_TOKEN_EXCHANGE}`)"
        ))),
    }
}

/// Authorization server metadata (RFC 8414).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ServerMetadata {
    pub issuer: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    pub introspection_endpoint: String,
    pub revocation_endpoint: String,
    pub grant_types_supported: Vec<String>,
    pub token_endpoint_auth_methods_supported: Vec<String>,
    pub token_endpoint_auth_signing_alg_values_supported: Vec<String>,
}

/// OAuth authorization server metadata (RFC 8414).
#[utoipa::path(get, operation_id = "oauth_metadata", path = "/.well-known/oauth-authorization-server", tag = "oauth",
    responses((status = 200, body = ServerMetadata)))]
pub async fn metadata(State(state): State<AppState>) -> Json<ServerMetadata> {
    let iss = &state.issuer;
    Json(ServerMetadata {
        issuer: iss.clone(),
        token_endpoint: token_endpoint(iss),
        jwks_uri: format!("{iss}/.well-known/jwks.json"),
        introspection_endpoint: format!("{iss}/oauth2/introspect"),
        revocation_endpoint: format!("{iss}/oauth2/revoke"),
        grant_types_supported: vec![GRANT_CLIENT_CREDENTIALS.into(), GRANT_TOKEN_EXCHANGE.into()],
        token_endpoint_auth_methods_supported: if state.tls_client_auth {
            vec![AUTH_PRIVATE_KEY_JWT.into(), AUTH_TLS_CLIENT.into()]
        } else {
            vec![AUTH_PRIVATE_KEY_JWT.into()]
        },
        token_endpoint_auth_signing_alg_values_supported: vec!["EdDSA".into(), "ES256".into()],
    })
}

/// A JSON Web Key Set (RFC 7517 §5).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Jwks {
    /// Public keys only (`kty: OKP`, `crv: Ed25519`, `x`, `kid`, `alg: EdDSA`, `use: sig`).
    #[schema(value_type = Vec<Object>)]
    pub keys: Vec<serde_json::Value>,
}

/// The public keys that verify access tokens.
///
/// Keys retired by a rotation stay listed until every token they signed has expired.
#[utoipa::path(get, operation_id = "oauth_jwks", path = "/.well-known/jwks.json", tag = "oauth",
    responses((status = 200, body = Jwks)))]
pub async fn jwks(State(state): State<AppState>) -> Response {
    let set = state.snapshot.load().signing.jwks(state.clock.now_ms());
    let mut res = Json(set).into_response();
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    res
}

#[derive(OpenApi)]
#[openapi(
    paths(token, metadata, jwks),
    components(schemas(TokenRequestForm, TokenRequest, TokenResponse, OAuthErrorBody, ServerMetadata, Jwks)),
    // The same tag as `oauth_more` (tags merge only when identical).
    tags((name = "oauth", description = "OAuth 2.0 for agents: tokens, introspection, revocation, delegation"))
)]
pub struct Doc;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/oauth2/token", post(token))
        .route("/.well-known/oauth-authorization-server", get(metadata))
        .route("/.well-known/jwks.json", get(jwks))
}
