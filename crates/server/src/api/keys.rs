//! Keys: the public keys identities authenticate with, and the keys that sign access
//! tokens (admin API token required).
//!
//! - `POST /v1/identities/{id}/keys` registers a public JWK (Ed25519 or P-256) an agent signs
//!   its client assertions with (`private_key_jwt`, see [`crate::api::oauth`]). Private key
//!   material is refused (400) and never stored or logged; without a `kid`, the RFC 7638
//!   thumbprint is the `kid`; a `kid` is never reused for the identity (409).
//!   `GET` lists them; `DELETE /v1/identities/{id}/keys/{kid}` revokes one at once (its
//!   assertions are refused from then on).
//! - `GET /v1/keys` lists the access-token signing keys: which signs now, when each was
//!   retired and when it leaves the JWKS. Never any private part.
//! - `POST /v1/keys/rotate` makes a new signing key sign from now on. The keys before it
//!   stay in the JWKS (so their tokens still verify) until every token they signed has
//!   expired: the longest token lifetime from now, plus a margin for clock skew (60 s, or
//!   the longest lifetime when that is shorter).

use super::fmt_ms;
use crate::auth::{Caller, ReaderAll};
use crate::credentials::assertion::{self, JwkError};
use crate::credentials::keys;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::ops::Op;
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};
use warrant_core::Millis;
use warrant_store::{IdentityKeyRow, TokenKeyRow};

/// Longest margin kept, past the longest token lifetime, before a retired signing key
/// leaves the JWKS (clock skew of resource services).
pub const UNPUBLISH_MARGIN_MS: Millis = 60_000;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddKeyRequest {
    /// The public JWK: `{"kty":"OKP","crv":"Ed25519","x":…}` or
    /// `{"kty":"EC","crv":"P-256","x":…,"y":…}`; optional `kid` (default: the RFC 7638
    /// thumbprint), `alg` (`EdDSA` / `ES256`), `use` (`sig`). Never a private key.
    #[schema(value_type = Object)]
    pub jwk: serde_json::Value,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct IdentityKeyView {
    pub identity_id: String,
    pub kid: String,
    /// `EdDSA` or `ES256`.
    pub alg: String,
    /// The public JWK as stored (normalized).
    #[schema(value_type = Object)]
    pub jwk: serde_json::Value,
    pub added_at: String,
    /// When it was revoked (absent while it is usable).
    pub revoked_at: Option<String>,
}

impl IdentityKeyView {
    fn new(row: &IdentityKeyRow) -> Self {
        let jwk: serde_json::Value = serde_json::from_str(&row.jwk).unwrap_or_default();
        IdentityKeyView {
            identity_id: row.identity_id.clone(),
            kid: row.kid.clone(),
            alg: jwk
                .get("alg")
                .and_then(|a| a.as_str())
                .unwrap_or_default()
                .to_owned(),
            jwk,
            added_at: fmt_ms(row.added_ms),
            revoked_at: row.revoked_ms.map(fmt_ms),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct IdentityKeyList {
    /// Oldest first, revoked ones included.
    pub items: Vec<IdentityKeyView>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SigningKeyView {
    pub kid: String,
    /// `EdDSA`.
    pub alg: String,
    pub created_at: String,
    /// Signs no more tokens since then (absent: the key that signs now).
    pub retired_at: Option<String>,
    /// Leaves the JWKS then (its tokens have all expired).
    pub leaves_jwks_at: Option<String>,
    /// Signs new tokens now.
    pub signing: bool,
    /// Listed in the JWKS now.
    pub published: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SigningKeyList {
    /// The kid that signs new tokens (absent when none can: tokens are refused).
    pub current: Option<String>,
    /// Oldest first.
    pub items: Vec<SigningKeyView>,
}

async fn identity_exists(state: &AppState, id: &str) -> Result<(), ApiError> {
    state
        .store
        .get_identity(id)
        .await?
        .map(|_| ())
        .ok_or_else(|| ApiError::not_found(format!("no identity `{id}`")))
}

async fn identity_key(state: &AppState, id: &str, kid: &str) -> Result<IdentityKeyView, ApiError> {
    state
        .store
        .identity_keys(id)
        .await?
        .iter()
        .find(|k| k.kid == kid)
        .map(IdentityKeyView::new)
        .ok_or_else(|| ApiError::internal(format!("key `{kid}` of `{id}` vanished")))
}

/// Register a public key an identity authenticates with (`private_key_jwt`).
#[utoipa::path(post, operation_id = "add_identity_key", path = "/v1/identities/{id}/keys", tag = "keys",
    request_body = AddKeyRequest,
    params(("id" = String, Path, description = "identity id")),
    security(("bearer" = [])),
    responses((status = 403, description = "refused for this caller (audited)", body = crate::error::ErrorBody), (status = 201, body = IdentityKeyView),
              (status = 400, description = "not an Ed25519 or P-256 public JWK, or private key material was sent", body = crate::error::ErrorBody),
              (status = 401, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
              (status = 409, description = "the identity has a key with this kid already, or is retired", body = crate::error::ErrorBody),
              (status = 503, body = crate::error::ErrorBody)))]
pub async fn add(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<AddKeyRequest>,
) -> Result<(StatusCode, Json<IdentityKeyView>), ApiError> {
    // Private key material is refused here, before anything is stored or logged.
    let key = assertion::parse_public_jwk(&body.jwk)
        .map_err(|e: JwkError| ApiError::bad_request(e.to_string()))?;
    identity_exists(&state, &id).await?;
    state
        .writer
        .mutate(Op::AddIdentityKey {
            actor: caller.actor(),
            key: IdentityKeyRow {
                identity_id: id.clone(),
                kid: key.kid.clone(),
                jwk: key.jwk.to_string(),
                added_ms: state.clock.now_ms(),
                revoked_ms: None,
            },
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(identity_key(&state, &id, &key.kid).await?),
    ))
}

/// List an identity's public keys (revoked ones included).
#[utoipa::path(get, operation_id = "list_identity_keys", path = "/v1/identities/{id}/keys", tag = "keys",
    params(("id" = String, Path, description = "identity id")),
    security(("bearer" = [])),
    responses((status = 403, description = "refused for this caller (audited)", body = crate::error::ErrorBody), (status = 200, body = IdentityKeyList), (status = 401, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    _caller: ReaderAll,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<IdentityKeyList>, ApiError> {
    identity_exists(&state, &id).await?;
    let rows = state.store.identity_keys(&id).await?;
    Ok(Json(IdentityKeyList {
        items: rows.iter().map(IdentityKeyView::new).collect(),
    }))
}

/// Revoke one of an identity's public keys; assertions it signs are refused from now on.
#[utoipa::path(delete, operation_id = "revoke_identity_key", path = "/v1/identities/{id}/keys/{kid}", tag = "keys",
    params(("id" = String, Path, description = "identity id"), ("kid" = String, Path, description = "key id")),
    security(("bearer" = [])),
    responses((status = 403, description = "refused for this caller (audited)", body = crate::error::ErrorBody), (status = 200, description = "the revoked key", body = IdentityKeyView),
              (status = 401, body = crate::error::ErrorBody),
              (status = 404, description = "no such identity, or no unrevoked key with this kid", body = crate::error::ErrorBody),
              (status = 503, body = crate::error::ErrorBody)))]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, kid)): ApiPath<(String, String)>,
) -> Result<Json<IdentityKeyView>, ApiError> {
    identity_exists(&state, &id).await?;
    state
        .writer
        .mutate(Op::RevokeIdentityKey {
            actor: caller.actor(),
            identity_id: id.clone(),
            kid: kid.clone(),
        })
        .await?;
    Ok(Json(identity_key(&state, &id, &kid).await?))
}

fn signing_view(row: &TokenKeyRow, current: Option<&str>, now: Millis) -> SigningKeyView {
    SigningKeyView {
        kid: row.kid.clone(),
        alg: row.alg.clone(),
        created_at: fmt_ms(row.created_ms),
        retired_at: row.retired_ms.map(fmt_ms),
        leaves_jwks_at: row.unpublish_ms.map(fmt_ms),
        signing: current == Some(row.kid.as_str()),
        published: row.unpublish_ms.is_none_or(|t| t > now),
    }
}

async fn signing_keys(state: &AppState) -> Result<SigningKeyList, ApiError> {
    let rows = state.store.token_keys().await?;
    let snap = state.snapshot.load();
    let current = snap.signing.current.as_ref().map(|k| k.kid.clone());
    let now = state.clock.now_ms();
    Ok(SigningKeyList {
        items: rows
            .iter()
            .map(|r| signing_view(r, current.as_deref(), now))
            .collect(),
        current,
    })
}

/// List the access-token signing keys (public facts only).
#[utoipa::path(get, operation_id = "list_signing_keys", path = "/v1/keys", tag = "keys",
    security(("bearer" = [])),
    responses((status = 403, description = "refused for this caller (audited)", body = crate::error::ErrorBody), (status = 200, body = SigningKeyList), (status = 401, body = crate::error::ErrorBody),
              (status = 503, body = crate::error::ErrorBody)))]
pub async fn signing(
    State(state): State<AppState>,
    _caller: ReaderAll,
) -> Result<Json<SigningKeyList>, ApiError> {
    Ok(Json(signing_keys(&state).await?))
}

/// When keys retired at `now` leave the JWKS: after the longest token lifetime, plus a
/// margin for clock skew (at most [`UNPUBLISH_MARGIN_MS`], at most the lifetime itself).
pub fn unpublish_at(now: Millis, max_lifetime_secs: u64) -> Millis {
    let lifetime = i64::try_from(max_lifetime_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    now.saturating_add(lifetime)
        .saturating_add(lifetime.min(UNPUBLISH_MARGIN_MS))
}

/// Rotate the access-token signing key.
///
/// A new key signs from now on; the previous keys stay in the JWKS until their tokens have
/// all expired (see `leaves_jwks_at`).
#[utoipa::path(post, operation_id = "rotate_signing_key", path = "/v1/keys/rotate", tag = "keys",
    security(("bearer" = [])),
    responses((status = 403, description = "refused for this caller (audited)", body = crate::error::ErrorBody), (status = 201, description = "the signing keys after the rotation", body = SigningKeyList),
              (status = 401, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)))]
pub async fn rotate(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<(StatusCode, Json<SigningKeyList>), ApiError> {
    let now = state.clock.now_ms();
    let key = keys::generate(&state.key_wrap, now).map_err(ApiError::internal)?;
    state
        .writer
        .mutate(Op::RotateSigningKey {
            actor: caller.actor(),
            key,
            unpublish_ms: unpublish_at(now, state.token_lifetimes.max_secs),
            only_if_none: false,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(signing_keys(&state).await?)))
}

#[derive(OpenApi)]
#[openapi(
    paths(add, list, revoke, signing, rotate),
    components(schemas(AddKeyRequest, IdentityKeyView, IdentityKeyList, SigningKeyView, SigningKeyList)),
    tags((name = "keys", description = "Identity public keys and access-token signing keys"))
)]
pub struct Doc;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/identities/{id}/keys", post(add).get(list))
        .route("/v1/identities/{id}/keys/{kid}", delete(revoke))
        .route("/v1/keys", get(signing))
        .route("/v1/keys/rotate", post(rotate))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retired_keys_outlive_the_longest_token_plus_a_margin() {
        assert_eq!(unpublish_at(1_000, 3600), 1_000 + 3_600_000 + 60_000);
        assert_eq!(unpublish_at(1_000, 2), 1_000 + 2_000 + 2_000);
    }
}
