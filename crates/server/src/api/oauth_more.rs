//! Token introspection (RFC 7662), revocation (RFC 7009) and delegation by token exchange
//! (RFC 8693).
//!
//! - `POST /oauth2/introspect` (form `token`, optional `token_type_hint`): a resource
//!   service, authenticated with a warrant API token like every `/v1` caller, asks whether
//!   an access token is in force. Anything that does not verify, has expired, was revoked,
//!   or whose subject or any actor of its delegation chain is unregistered, not active or
//!   stopped by a kill switch is `{"active": false}` and nothing more.
//! - `POST /oauth2/revoke` (form `token`): revokes an unexpired access token that verifies
//!   (`credential.revoked` in the audit log); from the next request on it is inactive for
//!   introspection and denied by `/v1/authorize`. Anything else is answered 200 as well
//!   (RFC 7009 §2.2), without a record.
//! - [`token_exchange`] — called by the token endpoint (`/oauth2/token`) for
//!   `grant_type=urn:ietf:params:oauth:grant-type:token-exchange` — lets an agent hand part
//!   of its token's scope to another agent. Parameters (form):
//!   - `subject_token`: the delegator's access token;
//!     `subject_token_type=urn:ietf:params:oauth:token-type:access_token`;
//!   - `delegate` (warrant's own parameter: RFC 8693 has no standard one naming the party
//!     a token is requested for): the delegate's identity id or SPIFFE ID;
//!   - optional `scope` (default: the whole scope of the subject token), `audience`
//!     (default: the subject token's), `requested_token_type` (only access tokens).
//!
//!   The delegate must be registered, active, not stopped by a kill switch, and in the
//!   delegator's environment; Cedar must permit `Warrant::Action::"delegate"` from the
//!   delegator (the subject token's `sub`) to the delegate with context
//!   `{scope: [requested scope tokens], depth: <chain length of the new token>}`, and
//!   `Warrant::Action::"request_scope"` for the delegate for every requested scope token
//!   (context `{environment, audience}`); the scope only narrows, the chain is at most
//!   `max_delegation_depth` links long, and the new token never outlives its parent. The
//!   new token's `sub` is the delegate, its `client_id` the delegator, and its `act` the
//!   chain `{sub: delegator, act: <the parent's act>}`. Issuance is recorded as
//!   `credential.issued` (with the parent's `jti`, never a token), refusals after the
//!   subject token verified as `credential.refused`.

use crate::api::oauth::{no_store, OAuthError, OAuthErrorBody};
use crate::auth::Enforcer;
use crate::credentials::jwt::{self, AccessClaims};
use crate::error::ApiError;
use crate::ops::Op;
use crate::snapshot::{PrincipalEntry, Snapshot};
use crate::AppState;
use axum::extract::{FromRequest, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use utoipa::{OpenApi, ToSchema};
use warrant_core::credentials::{Actor, Scope};
use warrant_store::RevokedToken;

#[derive(OpenApi)]
#[openapi(
    paths(introspect, revoke),
    components(schemas(
        IntrospectRequest,
        IntrospectionResponse,
        RevokeRequest,
        RevokeResponse,
        TokenExchangeRequest,
        TokenExchangeResponse,
        OAuthErrorBody
    )),
    tags((name = "oauth", description = "OAuth 2.0 for agents: tokens, introspection, revocation, delegation"))
)]
pub struct Doc;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/oauth2/introspect", post(introspect))
        .route("/oauth2/revoke", post(revoke))
}

/// RFC 8693 grant type of token exchange.
pub const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 8693 token type of access tokens.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// The longest token looked at.
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// The longest `audience` or `delegate`.
const MAX_NAME_BYTES: usize = 2048;

/// `POST /oauth2/introspect` form (`application/x-www-form-urlencoded`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct IntrospectRequest {
    /// The access token to look at.
    pub token: String,
    /// `access_token` (the only kind warrant issues); other hints are ignored.
    pub token_type_hint: Option<String>,
}

/// RFC 7662 §2.2. Only `active` when the token is not in force.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct IntrospectionResponse {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The identity that requested the token (the delegator, for a delegated token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The identity the token was issued to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// `Bearer`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spiffe_id: Option<String>,
    /// The delegation chain (RFC 8693 §4.1): `{sub, act?}`, most recent actor first.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub act: Option<Actor>,
}

/// `POST /oauth2/revoke` form (`application/x-www-form-urlencoded`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RevokeRequest {
    /// The access token to revoke.
    pub token: String,
    /// `access_token`; other hints are ignored.
    pub token_type_hint: Option<String>,
}

/// Always empty (RFC 7009 §2.2: the answer is the same whether or not there was anything
/// to revoke).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RevokeResponse {}

/// Token exchange (RFC 8693) at `POST /oauth2/token`, form-encoded: delegation of (part
/// of) an access token's scope to another identity.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenExchangeRequest {
    /// `urn:ietf:params:oauth:grant-type:token-exchange`.
    pub grant_type: String,
    /// The delegator's access token.
    pub subject_token: String,
    /// `urn:ietf:params:oauth:token-type:access_token`.
    pub subject_token_type: String,
    /// warrant's parameter (RFC 8693 has no standard one): the identity id or SPIFFE ID of
    /// the delegate, who receives the new token. It must be active, not stopped by a kill
    /// switch, in the delegator's environment, and the delegation must be permitted by a
    /// `Warrant::Action::"delegate"` policy.
    pub delegate: String,
    /// Space-delimited; at most the subject token's scope (default: all of it), each token
    /// permitted for the delegate by `Warrant::Action::"request_scope"`.
    pub scope: Option<String>,
    /// The resource service the new token is for (default: the subject token's).
    pub audience: Option<String>,
    /// `urn:ietf:params:oauth:token-type:access_token` (the only one issued).
    pub requested_token_type: Option<String>,
}

/// RFC 8693 §2.2.1.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenExchangeResponse {
    pub access_token: String,
    /// `urn:ietf:params:oauth:token-type:access_token`.
    pub issued_token_type: String,
    /// `Bearer`.
    pub token_type: String,
    /// Seconds; never beyond the subject token's expiry.
    pub expires_in: i64,
    pub scope: String,
}

/// An OAuth error answer (the token endpoint's error type, so both answer alike).
pub fn oauth_error(
    status: StatusCode,
    error: &'static str,
    description: impl Into<String>,
) -> Response {
    OAuthError::new(status, error, description).into_response()
}

/// An OAuth error not yet answered (a token-exchange refusal is recorded first).
type Refusal = OAuthError;

fn invalid_request(description: impl Into<String>) -> Refusal {
    refusal("invalid_request", description)
}

/// A failed write (or internal error) as an OAuth answer.
fn failure(e: ApiError) -> Refusal {
    let error = match e.status {
        StatusCode::SERVICE_UNAVAILABLE => "temporarily_unavailable",
        s if s.is_client_error() => "invalid_request",
        _ => "server_error",
    };
    Refusal {
        status: e.status,
        error,
        description: e.message,
    }
}

/// A form-encoded body (`application/x-www-form-urlencoded`); a parameter given twice is
/// refused (RFC 6749 §3.1), and so is every malformed body, with an OAuth error.
pub struct OAuthForm(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequest<S> for OAuthForm {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        match axum::Form::<Vec<(String, String)>>::from_request(req, state).await {
            Ok(axum::Form(pairs)) => {
                let mut map = HashMap::with_capacity(pairs.len());
                for (k, v) in pairs {
                    if map.contains_key(&k) {
                        return Err(invalid_request(format!(
                            "parameter `{k}` is given more than once"
                        ))
                        .into_response());
                    }
                    map.insert(k, v);
                }
                Ok(OAuthForm(map))
            }
            Err(rej) => {
                let status = match rej.status() {
                    s @ (StatusCode::UNSUPPORTED_MEDIA_TYPE | StatusCode::PAYLOAD_TOO_LARGE) => s,
                    _ => StatusCode::BAD_REQUEST,
                };
                let text = if status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
                    "expected `Content-Type: application/x-www-form-urlencoded`".to_owned()
                } else {
                    format!("malformed form body: {}", rej.body_text())
                };
                Err(oauth_error(status, "invalid_request", text))
            }
        }
    }
}

/// A required, non-empty, bounded parameter.
fn required<'a>(
    form: &'a HashMap<String, String>,
    name: &str,
    max: usize,
) -> Result<&'a str, Refusal> {
    match form.get(name).map(String::as_str) {
        None | Some("") => Err(invalid_request(format!("`{name}` is required"))),
        Some(v) if v.len() > max => Err(invalid_request(format!(
            "`{name}` is longer than {max} bytes"
        ))),
        Some(v) => Ok(v),
    }
}

/// An optional parameter; empty counts as absent (RFC 6749 §3.1).
fn optional<'a>(
    form: &'a HashMap<String, String>,
    name: &str,
    max: usize,
) -> Result<Option<&'a str>, Refusal> {
    match form.get(name).map(String::as_str) {
        None | Some("") => Ok(None),
        Some(v) if v.len() > max => Err(invalid_request(format!(
            "`{name}` is longer than {max} bytes"
        ))),
        Some(v) => Ok(Some(v)),
    }
}

/// The token's claims when it verifies and is in force (any audience).
fn in_force(state: &AppState, snap: &Snapshot, token: &str) -> Option<AccessClaims> {
    if token.len() > MAX_TOKEN_BYTES {
        return None;
    }
    let claims = jwt::verify(
        &snap.signing,
        token,
        state.clock.now_ms(),
        &state.issuer,
        None,
    )
    .ok()?;
    jwt::standing(snap, &claims).ok()?;
    Some(claims)
}

/// Is this access token in force, and what does it say?
#[utoipa::path(post, operation_id = "introspect_token", path = "/oauth2/introspect", tag = "oauth",
    request_body(content = IntrospectRequest, content_type = "application/x-www-form-urlencoded"),
    security(("bearer" = [])),
    responses((status = 403, description = "refused for this caller (audited)", body = crate::error::ErrorBody), (status = 200, description = "`{\"active\": false}` for any token not in force", body = IntrospectionResponse),
              (status = 400, description = "no `token`, or a malformed body", body = OAuthErrorBody),
              (status = 401, description = "missing or invalid API token", body = crate::error::ErrorBody),
              (status = 415, body = OAuthErrorBody)))]
pub async fn introspect(
    State(state): State<AppState>,
    _caller: Enforcer,
    OAuthForm(form): OAuthForm,
) -> Response {
    let token = match form.get("token").map(String::as_str) {
        None | Some("") => return invalid_request("`token` is required").into_response(),
        Some(t) => t,
    };
    let snap = state.snapshot.load();
    let body = match in_force(&state, &snap, token) {
        None => IntrospectionResponse::default(),
        Some(c) => IntrospectionResponse {
            active: true,
            scope: Some(c.scope),
            client_id: Some(c.client_id),
            sub: Some(c.sub),
            aud: Some(c.aud),
            iss: Some(c.iss),
            exp: Some(c.exp),
            iat: Some(c.iat),
            nbf: Some(c.nbf),
            jti: Some(c.jti),
            token_type: Some("Bearer".to_owned()),
            environment: Some(c.environment),
            owner: Some(c.owner),
            spiffe_id: Some(c.spiffe_id),
            act: c.act,
        },
    };
    no_store(Json(body).into_response())
}

/// Revoke an access token: from the next request on it is inactive everywhere.
#[utoipa::path(post, operation_id = "revoke_token", path = "/oauth2/revoke", tag = "oauth",
    request_body(content = RevokeRequest, content_type = "application/x-www-form-urlencoded"),
    security(("bearer" = [])),
    responses((status = 403, description = "refused for this caller (audited)", body = crate::error::ErrorBody), (status = 200, description = "revoked, or nothing to revoke (RFC 7009 §2.2)", body = RevokeResponse),
              (status = 400, description = "no `token`, or a malformed body", body = OAuthErrorBody),
              (status = 401, description = "missing or invalid API token", body = crate::error::ErrorBody),
              (status = 415, body = OAuthErrorBody),
              (status = 503, description = "the revocation could not be recorded; it was not applied", body = OAuthErrorBody)))]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Enforcer,
    OAuthForm(form): OAuthForm,
) -> Response {
    let token = match form.get("token").map(String::as_str) {
        None | Some("") => return invalid_request("`token` is required").into_response(),
        Some(t) => t,
    };
    let now = state.clock.now_ms();
    let verified = (token.len() <= MAX_TOKEN_BYTES)
        .then(|| {
            let snap = state.snapshot.load();
            jwt::verify(&snap.signing, token, now, &state.issuer, None).ok()
        })
        .flatten();
    if let Some(c) = verified {
        let op = Op::RevokeCredential {
            actor: caller.actor(),
            revoked: RevokedToken {
                jti: c.jti.clone(),
                exp_ms: c.exp_ms(),
                revoked_ms: now,
            },
            subject: Some(c.sub.clone()),
        };
        if let Err(e) = state.writer.mutate(op).await {
            return failure(e.into()).into_response();
        }
    }
    no_store(Json(RevokeResponse {}).into_response())
}

fn refusal(error: &'static str, description: impl Into<String>) -> Refusal {
    Refusal {
        status: StatusCode::BAD_REQUEST,
        error,
        description: description.into(),
    }
}

/// RFC 8693 token exchange: delegation of (part of) the subject token's scope to the
/// identity named by `delegate`. The full answer: the new token, or an OAuth error, with
/// `Cache-Control: no-store`. See the module documentation for the rules.
pub async fn token_exchange(state: &AppState, form: &HashMap<String, String>) -> Response {
    match exchange(state, form).await {
        Ok(r) => r,
        Err(r) => r.into_response(),
    }
}

async fn exchange(state: &AppState, form: &HashMap<String, String>) -> Result<Response, Refusal> {
    if let Some(g) = form.get("grant_type") {
        if g != TOKEN_EXCHANGE_GRANT {
            return Err(refusal(
                "unsupported_grant_type",
                format!("expected `{TOKEN_EXCHANGE_GRANT}`"),
            ));
        }
    }
    let subject_token = required(form, "subject_token", MAX_TOKEN_BYTES)?;
    let subject_type = required(form, "subject_token_type", MAX_NAME_BYTES)?;
    if subject_type != ACCESS_TOKEN_TYPE {
        return Err(invalid_request(format!(
            "`subject_token_type` must be `{ACCESS_TOKEN_TYPE}` (a warrant access token)"
        )));
    }
    if let Some(t) = optional(form, "requested_token_type", MAX_NAME_BYTES)? {
        if t != ACCESS_TOKEN_TYPE {
            return Err(invalid_request(format!(
                "`requested_token_type`: only `{ACCESS_TOKEN_TYPE}` is issued"
            )));
        }
    }
    if optional(form, "actor_token", MAX_TOKEN_BYTES)?.is_some()
        || optional(form, "actor_token_type", MAX_NAME_BYTES)?.is_some()
    {
        return Err(invalid_request(
            "`actor_token` is not supported: name the delegate with `delegate` (identity id or SPIFFE ID)",
        ));
    }
    if optional(form, "resource", MAX_NAME_BYTES)?.is_some() {
        return Err(refusal(
            "invalid_target",
            "`resource` is not supported: name the resource service with `audience`",
        ));
    }
    let delegate_ref = required(form, "delegate", MAX_NAME_BYTES)?;
    let requested = match optional(form, "scope", 64 * 1024)? {
        None => None,
        Some(s) => Some(Scope::parse(s).map_err(|e| refusal("invalid_scope", e.to_string()))?),
    };
    let audience = optional(form, "audience", MAX_NAME_BYTES)?;

    let snap = state.snapshot.load_full();
    let now = state.clock.now_ms();
    let parent = jwt::verify(&snap.signing, subject_token, now, &state.issuer, None)
        .map_err(|e| refusal("invalid_grant", format!("`subject_token`: {e}")))?;
    if let Err(e) = jwt::standing(&snap, &parent) {
        return Err(refusal("invalid_grant", format!("`subject_token`: {e}")));
    }
    let audience = audience.unwrap_or(&parent.aud).to_owned();
    let wanted = requested.unwrap_or_else(|| Scope::parse(&parent.scope).unwrap_or_default());
    match delegation(state, &snap, &parent, delegate_ref, &wanted, &audience, now) {
        Ok(issued) => {
            let (response, payload, delegate_id) = issued;
            state
                .writer
                .mutate(Op::IssueCredential {
                    client_id: parent.sub.clone(),
                    assertion: None,
                    subject: format!("access-token:{}", payload.jti),
                    payload: json!({
                        "grant_type": TOKEN_EXCHANGE_GRANT,
                        "jti": payload.jti,
                        "parent_jti": parent.jti,
                        "sub": delegate_id,
                        "client_id": parent.sub,
                        "aud": payload.aud,
                        "scope": payload.scope,
                        "exp": payload.exp,
                        "act": payload.act,
                    }),
                })
                .await
                .map_err(|e| failure(e.into()))?;
            Ok(no_store(Json(response).into_response()))
        }
        Err(r) => {
            state
                .writer
                .mutate(Op::RefuseCredential {
                    client_id: parent.sub.clone(),
                    assertion: None,
                    payload: json!({
                        "grant_type": TOKEN_EXCHANGE_GRANT,
                        "error": r.error,
                        "reason": r.description,
                        "delegate": delegate_ref,
                        "scope": wanted.to_string(),
                        "audience": audience,
                        "parent_jti": parent.jti,
                    }),
                })
                .await
                .map_err(|e| failure(e.into()))?;
            Err(r)
        }
    }
}

/// The rules of delegation, against one snapshot (no I/O): the new token and its claims,
/// or why not.
fn delegation(
    state: &AppState,
    snap: &Arc<Snapshot>,
    parent: &AccessClaims,
    delegate_ref: &str,
    wanted: &Scope,
    audience: &str,
    now: warrant_core::Millis,
) -> Result<(TokenExchangeResponse, AccessClaims, String), Refusal> {
    let delegator: &Arc<PrincipalEntry> = snap.principals.get(&parent.sub).ok_or_else(|| {
        refusal(
            "invalid_grant",
            format!("identity `{}` is not registered", parent.sub),
        )
    })?;
    let delegate = snap.principal(delegate_ref).ok_or_else(|| {
        refusal(
            "invalid_grant",
            format!("unknown delegate `{delegate_ref}`"),
        )
    })?;
    let delegate_id = delegate.identity.id.as_str();
    if delegate_id == parent.sub {
        return Err(refusal(
            "invalid_grant",
            "the delegate is the subject token's own identity",
        ));
    }
    if parent
        .act
        .as_ref()
        .is_some_and(|a| a.subjects().contains(&delegate_id))
    {
        return Err(refusal(
            "invalid_grant",
            format!("`{delegate_id}` is in the delegation chain already (no cycles)"),
        ));
    }
    if let Err(why) = delegate.identity.may_act() {
        return Err(refusal(
            "invalid_grant",
            format!("delegate `{delegate_id}`: {why}"),
        ));
    }
    if let Some(ks) = snap.kill_switch_for(&delegate.identity) {
        return Err(refusal(
            "invalid_grant",
            format!(
                "delegate `{delegate_id}`: {}",
                crate::api::authorize::kill_switch_reason(ks)
            ),
        ));
    }
    if delegate.identity.environment != delegator.identity.environment
        || delegate.identity.environment != parent.environment
    {
        return Err(refusal(
            "invalid_grant",
            format!(
                "delegation crosses environments: the delegator is in `{}`, the delegate `{delegate_id}` in `{}`",
                delegator.identity.environment, delegate.identity.environment
            ),
        ));
    }
    if wanted.is_empty() {
        return Err(refusal(
            "invalid_scope",
            "nothing to delegate: the scope is empty",
        ));
    }
    let parent_scope = Scope::parse(&parent.scope).unwrap_or_default();
    let widening = wanted.missing_from(&parent_scope);
    if !widening.is_empty() {
        return Err(refusal(
            "invalid_scope",
            format!(
                "delegation may only narrow: the subject token does not carry {}",
                widening.join(", ")
            ),
        ));
    }
    let depth = 1 + parent.act.as_ref().map_or(0, Actor::depth);
    if depth > state.max_delegation_depth {
        return Err(refusal(
            "invalid_grant",
            format!(
                "the delegation chain would be {depth} links long; at most {}",
                state.max_delegation_depth
            ),
        ));
    }
    let (Some(from), Some(to)) = (&delegator.entities, &delegate.entities) else {
        return Err(refusal(
            "invalid_grant",
            "principal entities unavailable (fail closed)",
        ));
    };
    let tokens: Vec<&str> = wanted.tokens().collect();
    let ctx = json!({ "scope": tokens, "depth": depth });
    let decision = warrant_policy::decide_between(
        &snap.policy,
        from,
        to,
        r#"Warrant::Action::"delegate""#,
        Some(&ctx),
    )
    .map_err(|e| {
        refusal(
            "invalid_grant",
            format!("cannot decide the delegation: {e}"),
        )
    })?;
    if !decision.allowed {
        return Err(refusal(
            "invalid_grant",
            format!("delegation refused: {}", decision.summary()),
        ));
    }
    // What the delegate may hold, asked per requested scope token.
    let scope_ctx = json!({ "environment": delegate.identity.environment, "audience": audience });
    let mut permitted = Vec::new();
    for t in wanted.tokens() {
        let resource = format!(r#"Warrant::Scope::"{t}""#);
        let d = warrant_policy::decide(
            &snap.policy,
            to,
            &warrant_policy::DecisionInput {
                action: r#"Warrant::Action::"request_scope""#,
                resource: &resource,
                context: Some(&scope_ctx),
                entities: None,
            },
        )
        .map_err(|e| refusal("invalid_scope", format!("cannot decide scope `{t}`: {e}")))?;
        if d.allowed {
            permitted.push(t);
        }
    }
    let allowed =
        Scope::parse(&permitted.join(" ")).map_err(|e| refusal("invalid_scope", e.to_string()))?;
    let (scope, act) = warrant_core::credentials::delegate(
        &parent.sub,
        &parent_scope,
        parent.act.as_ref(),
        Some(wanted),
        &allowed,
        state.max_delegation_depth,
    )
    .map_err(|e| {
        let msg = e.to_string();
        let code = if msg.contains("links long") {
            "invalid_grant"
        } else {
            "invalid_scope"
        };
        refusal(code, msg)
    })?;
    let exp_ms = state
        .token_lifetimes
        .expiry(now, None, Some(parent.exp_ms()))
        .map_err(|e| refusal("invalid_grant", e.to_string()))?;
    let now_s = now.div_euclid(1000);
    let exp = exp_ms.div_euclid(1000);
    if exp <= now_s {
        return Err(refusal("invalid_grant", "the subject token expires now"));
    }
    let claims = AccessClaims {
        iss: state.issuer.clone(),
        sub: delegate_id.to_owned(),
        aud: audience.to_owned(),
        exp,
        iat: now_s,
        nbf: now_s,
        jti: jwt::new_jti(),
        client_id: parent.sub.clone(),
        scope: scope.to_string(),
        environment: delegate.identity.environment.clone(),
        owner: delegate.identity.owner.clone(),
        spiffe_id: delegate.identity.spiffe_id.clone(),
        act: Some(act),
    };
    let access_token = jwt::issue(&snap.signing, &claims).map_err(|e| Refusal {
        status: StatusCode::SERVICE_UNAVAILABLE,
        error: "temporarily_unavailable",
        description: e.to_string(),
    })?;
    let response = TokenExchangeResponse {
        access_token,
        issued_token_type: ACCESS_TOKEN_TYPE.to_owned(),
        token_type: "Bearer".to_owned(),
        expires_in: exp - now_s,
        scope: claims.scope.clone(),
    };
    Ok((response, claims, delegate_id.to_owned()))
}
