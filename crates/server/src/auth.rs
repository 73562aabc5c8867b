//! Authentication: the one seam every request passes to become a [`Caller`].
//!
//! Two kinds of bearer credential reach the API:
//! - API tokens (`wrt_…`): 256-bit random secrets, only their SHA-256 stored, looked up in
//!   the in-memory snapshot. A token may be bound to a named human (`human`) and carries a
//!   control-plane role (`admin`, `approver`, `owner`).
//! - Access tokens (RFC 9068 JWTs from warrant's own token endpoint, audience = the
//!   issuer URL): an agent or AI tool acting on warrant itself — today only to submit
//!   proposals (scope `warrant:propose`).
//!
//! Extractors: [`Caller`] admits admin API tokens only (every administrative endpoint);
//! [`Acting`] admits any API token or access token and says who acts ([`Actor`]) for the
//! governance workflow, whose rules refuse AI identities and unnamed tokens where a human
//! must decide. An access token presented where only humans are admitted is refused (403)
//! and the attempt is audited (`request.refused`).

use crate::error::ApiError;
use crate::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use warrant_core::merkle::Hash;

pub const TOKEN_PREFIX: &str = "wrt_";

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub token_id: String,
    pub role: String,
}

impl Caller {
    /// The audit actor string.
    pub fn actor(&self) -> String {
        format!("{}:{}", self.role, self.token_id)
    }
}

pub fn hash_token(secret: &str) -> Hash {
    Sha256::digest(secret.as_bytes()).into()
}

/// A new random API token secret.
pub fn generate_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// The API audience of access tokens presented to warrant itself.
pub fn api_audience(state: &AppState) -> &str {
    &state.issuer
}

/// The scope an access token needs to submit proposals.
pub const PROPOSE_SCOPE: &str = "warrant:propose";

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let header = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing `Authorization: Bearer <token>` header"))?;
    let value = header
        .to_str()
        .map_err(|_| ApiError::unauthorized("malformed Authorization header"))?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::unauthorized("expected a bearer token"))
}

/// Who presented the request's bearer credential.
enum Presented {
    Token(crate::snapshot::TokenInfo),
    Identity(crate::credentials::jwt::AccessClaims),
}

/// Whether a registered identity is an AI identity (agent or AI tool).
fn is_ai(state: &AppState, id: &str) -> bool {
    state
        .snapshot
        .load()
        .principals
        .get(id)
        .is_some_and(|e| e.identity.kind.is_ai())
}

fn looks_like_jwt(s: &str) -> bool {
    !s.starts_with(TOKEN_PREFIX) && s.split('.').count() == 3
}

fn presented(parts: &Parts, state: &AppState) -> Result<Presented, ApiError> {
    let secret = bearer(parts)?;
    let snap = state.snapshot.load();
    if looks_like_jwt(secret) {
        let claims = crate::credentials::jwt::verify(
            &snap.signing,
            secret,
            state.clock.now_ms(),
            &state.issuer,
            Some(api_audience(state)),
        )
        .map_err(|e| ApiError::unauthorized(format!("access token refused: {e}")))?;
        crate::credentials::jwt::standing(&snap, &claims)
            .map_err(|e| ApiError::unauthorized(format!("access token refused: {e}")))?;
        return Ok(Presented::Identity(claims));
    }
    match snap.tokens.get(&hash_token(secret)) {
        Some(t) => Ok(Presented::Token(t.clone())),
        None => Err(ApiError::unauthorized("invalid or revoked token")),
    }
}

/// Records a refused request by an authenticated party (best effort: the refusal stands
/// whether or not the record could be written).
pub async fn audit_refusal(
    state: &AppState,
    actor: &str,
    parts_path: &str,
    method: &str,
    reason: &str,
) {
    let draft = warrant_core::audit::RecordDraft {
        kind: warrant_core::audit::RecordKind::RequestRefused,
        actor: actor.to_owned(),
        subject: format!("request:{method} {parts_path}"),
        payload: serde_json::json!({ "method": method, "path": parts_path, "reason": reason })
            .to_string(),
    };
    if let Err(e) = state.writer.append(vec![draft]).await {
        tracing::warn!(error = %e, "cannot record a refused request");
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match presented(parts, state)? {
            Presented::Token(t) if t.role == "admin" => Ok(Caller {
                token_id: t.id.clone(),
                role: t.role.clone(),
            }),
            Presented::Token(t) => {
                let reason = format!(
                    "this endpoint needs the admin role; token `{}` has the `{}` role",
                    t.id, t.role
                );
                let actor = match &t.human {
                    Some(h) => format!("human:{h}"),
                    None => format!("{}:{}", t.role, t.id),
                };
                audit_refusal(
                    state,
                    &actor,
                    parts.uri.path(),
                    parts.method.as_str(),
                    &reason,
                )
                .await;
                Err(ApiError::forbidden(reason))
            }
            Presented::Identity(claims) => {
                let ai = is_ai(state, &claims.sub);
                let reason = format!(
                    "{} `{}` may not change warrant's configuration, policies, capabilities or entitlements directly; AI tools submit proposals (POST /v1/proposals)",
                    if ai { "AI identity" } else { "identity" },
                    claims.sub
                );
                audit_refusal(
                    state,
                    &format!("identity:{}", claims.sub),
                    parts.uri.path(),
                    parts.method.as_str(),
                    &reason,
                )
                .await;
                Err(ApiError::forbidden(reason))
            }
        }
    }
}

/// Anyone authenticated, and who they are for the governance workflow.
#[derive(Debug, Clone)]
pub struct Acting {
    pub actor: warrant_core::governance::workflow::Actor,
    /// The API token's role; `None` for an access token.
    pub role: Option<String>,
    /// The access token's scope (empty for API tokens).
    pub scope: Vec<String>,
    /// The access token was obtained by delegation (it carries an `act` chain).
    pub delegated: bool,
}

impl Acting {
    pub fn is_admin(&self) -> bool {
        self.role.as_deref() == Some("admin")
    }
}

impl FromRequestParts<AppState> for Acting {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        use warrant_core::governance::workflow::Actor;
        Ok(match presented(parts, state)? {
            Presented::Token(t) => Acting {
                actor: match t.human {
                    Some(h) => Actor::Human(h),
                    None => Actor::Unnamed(t.id),
                },
                role: Some(t.role),
                scope: vec![],
                delegated: false,
            },
            Presented::Identity(claims) => {
                let ai = is_ai(state, &claims.sub);
                Acting {
                    actor: Actor::Identity {
                        id: claims.sub.clone(),
                        ai,
                    },
                    role: None,
                    scope: claims.scope.split(' ').map(str::to_owned).collect(),
                    delegated: claims.act.is_some(),
                }
            }
        })
    }
}
