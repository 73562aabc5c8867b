//! Authentication: the one seam every request passes to become a [`Caller`].
//!
//! Today the only credential is an API token (`Authorization: Bearer wrt_…`) with the
//! `admin` role. Tokens are 256-bit random secrets; only their SHA-256 is stored, and the
//! lookup is against the in-memory snapshot (no database I/O per request). Human sign-in,
//! control-plane roles and agent tokens arrive in later issues behind this same seam.

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

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| {
                ApiError::unauthorized("missing `Authorization: Bearer <token>` header")
            })?;
        let value = header
            .to_str()
            .map_err(|_| ApiError::unauthorized("malformed Authorization header"))?;
        let secret = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ApiError::unauthorized("expected a bearer token"))?;
        let snap = state.snapshot.load();
        match snap.tokens.get(&hash_token(secret)) {
            Some(t) => Ok(Caller {
                token_id: t.id.clone(),
                role: t.role.clone(),
            }),
            None => Err(ApiError::unauthorized("invalid or revoked token")),
        }
    }
}
