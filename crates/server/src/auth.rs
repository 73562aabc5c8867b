//! Authentication and control-plane authorization: the one seam every API request
//! passes to become a [`Principal`] (via [`Authed`]).
//!
//! Credentials:
//! - API tokens (`wrt_…`): 256-bit random secrets, only their SHA-256 stored, looked up in
//!   the in-memory snapshot. The bootstrap token names no person; every other token
//!   belongs to a named human and acts with its one role *while the human holds it*
//!   (roles are read from the snapshot on each request).
//! - Access tokens (RFC 9068 JWTs from warrant's own token endpoint, audience = the
//!   issuer URL): an identity (agent, AI tool) acting on warrant itself — only to submit
//!   and read its own proposals. It never holds a control-plane role.
//! - Console sessions (`crate::humans`) become the same [`Authed`] for the UI's calls.
//!
//! Permissions are `warrant_core::access::check`; extractors ([`Caller`], [`Enforcer`],
//! [`ReaderAll`], [`AuditReader`]; owner-narrowed reads: `api::governance::reader`) and [`Authed::require`] apply it, and
//! every refusal of an authenticated party is audited (`request.refused`).

use crate::error::ApiError;
use crate::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use warrant_core::access::{self, CpRole, Human, Perm, Principal, Who};
use warrant_core::merkle::Hash;

pub const TOKEN_PREFIX: &str = "wrt_";

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

/// Unauthenticated refusals (failed sign-ins) are recorded up to
/// [`ANONYMOUS_PER_WINDOW`] per 10 s per replica, so a flood of guesses cannot flood the
/// audit log (they are still refused, throttled per user name and logged).
pub const ANONYMOUS_PER_WINDOW: u32 = 50;

fn anonymous_budget(now: warrant_core::Millis) -> bool {
    use std::sync::Mutex;
    static WINDOW: Mutex<(warrant_core::Millis, u32)> = Mutex::new((0, 0));
    let mut w = WINDOW.lock().unwrap_or_else(|e| e.into_inner());
    if now - w.0 >= 10_000 {
        *w = (now, 0);
    }
    w.1 += 1;
    w.1 <= ANONYMOUS_PER_WINDOW
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
    if actor == "anonymous" && !anonymous_budget(state.clock.now_ms()) {
        tracing::warn!(
            path = parts_path,
            "anonymous refusals beyond the audit budget; not recorded"
        );
        return;
    }
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

/// The control-plane principal behind an API token: the bootstrap token (no person), or
/// a named human acting with the token's role, if they still hold it.
pub fn token_principal(
    snap: &crate::snapshot::Snapshot,
    t: &crate::snapshot::TokenInfo,
) -> Principal {
    match &t.human {
        None => Principal {
            who: Who::Bootstrap,
            roles: [CpRole::Admin].into_iter().collect(),
        },
        Some(h) => {
            let human = snap.gov.humans.get(&Human::key(h));
            let held = CpRole::parse(&t.role)
                .ok()
                .filter(|r| human.is_some_and(|x| x.holds(*r)));
            Principal {
                who: Who::Human(human.map_or_else(|| h.clone(), |x| x.name.clone())),
                roles: held.into_iter().collect(),
            }
        }
    }
}

fn principal_of(presented: Presented, state: &AppState) -> Authed {
    match presented {
        Presented::Token(t) => Authed {
            principal: token_principal(&state.snapshot.load(), &t),
            via: t.id.clone(),
            token_role: Some(t.role.clone()),
            scope: vec![],
            delegated: false,
        },
        Presented::Identity(claims) => Authed {
            principal: Principal {
                who: Who::Identity {
                    id: claims.sub.clone(),
                    ai: is_ai(state, &claims.sub),
                },
                roles: Default::default(),
            },
            via: claims.jti.clone(),
            token_role: None,
            scope: claims.scope.split(' ').map(str::to_owned).collect(),
            delegated: claims.act.is_some(),
        },
    }
}

/// An authenticated request: who, and through what.
#[derive(Debug, Clone)]
pub struct Authed {
    pub principal: Principal,
    /// The API token id, session id or access token jti (never a secret).
    pub via: String,
    /// The API token's role (`None` for sessions and access tokens).
    pub token_role: Option<String>,
    /// The access token's scope (empty otherwise).
    pub scope: Vec<String>,
    /// The access token was obtained by delegation.
    pub delegated: bool,
}

impl Authed {
    /// The audit actor string.
    pub fn actor(&self) -> String {
        self.principal.audit(&self.via)
    }

    /// The workflow's view of who acts.
    pub fn workflow_actor(&self) -> warrant_core::governance::workflow::Actor {
        use warrant_core::governance::workflow::Actor;
        match &self.principal.who {
            Who::Bootstrap => Actor::Unnamed(self.via.clone()),
            Who::Human(h) => Actor::Human(h.clone()),
            Who::Identity { id, ai } => Actor::Identity {
                id: id.clone(),
                ai: *ai,
            },
        }
    }

    /// Checks `perm`; a refusal is audited (who, what, why) and answered 403.
    pub async fn require(
        &self,
        state: &AppState,
        perm: Perm,
        method: &str,
        path: &str,
    ) -> Result<(), ApiError> {
        match access::check(&self.principal, perm) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.refuse(state, method, path, &e.to_string()).await),
        }
    }

    /// Audits a refusal and returns the 403 to answer.
    pub async fn refuse(
        &self,
        state: &AppState,
        method: &str,
        path: &str,
        reason: &str,
    ) -> ApiError {
        audit_refusal(state, &self.actor(), path, method, reason).await;
        ApiError::forbidden(reason.to_owned())
    }
}

/// Authenticates the request's bearer credential.
pub fn authenticate(parts: &Parts, state: &AppState) -> Result<Authed, ApiError> {
    Ok(principal_of(presented(parts, state)?, state))
}

/// Extractors that admit the callers holding one permission (refusals audited).
macro_rules! perm_extractor {
    ($(#[$doc:meta])* $name:ident, $perm:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name(pub Authed);

        impl $name {
            pub fn actor(&self) -> String {
                self.0.actor()
            }
            pub fn principal(&self) -> &Principal {
                &self.0.principal
            }
        }

        impl FromRequestParts<AppState> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
                let authed = authenticate(parts, state)?;
                authed
                    .require(state, $perm, parts.method.as_str(), parts.uri.path())
                    .await?;
                Ok($name(authed))
            }
        }
    };
}

perm_extractor!(
    /// Callers that may change warrant's configuration: the bootstrap token and named
    /// humans holding `admin`.
    Caller,
    Perm::Configure
);
perm_extractor!(
    /// Policy enforcement points: decisions, introspection, revocation (admin).
    Enforcer,
    Perm::Enforce
);
perm_extractor!(
    /// Readers of the audit log (admin, auditor, the bootstrap token).
    AuditReader,
    Perm::ReadAudit
);

impl Caller {
    pub fn token_id(&self) -> &str {
        &self.0.via
    }
}

impl Authed {
    /// The bootstrap token's principal (in-process callers: benchmarks, tests).
    pub fn bootstrap(token_id: &str) -> Authed {
        Authed {
            principal: Principal {
                who: Who::Bootstrap,
                roles: [CpRole::Admin].into_iter().collect(),
            },
            via: token_id.to_owned(),
            token_role: Some("admin".into()),
            scope: vec![],
            delegated: false,
        }
    }
}

/// Readers of configuration that owners do not see (policies, keys, kill switches, the
/// entitlement model): admin, approver, auditor, the bootstrap token.
#[derive(Debug, Clone)]
pub struct ReaderAll(pub Authed);

impl FromRequestParts<AppState> for ReaderAll {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let authed = authenticate(parts, state)?;
        let (method, path) = (parts.method.as_str(), parts.uri.path());
        authed.require(state, Perm::Read, method, path).await?;
        if authed.principal.owner_only(Perm::Read) {
            return Err(authed
                .refuse(
                    state,
                    method,
                    path,
                    "the `owner` role sees its own identities, capabilities and proposals only",
                )
                .await);
        }
        Ok(ReaderAll(authed))
    }
}

/// Anyone authenticated, and who they are for the governance workflow.
#[derive(Debug, Clone)]
pub struct Acting {
    pub actor: warrant_core::governance::workflow::Actor,
    pub authed: Authed,
    /// The access token's scope (empty for API tokens).
    pub scope: Vec<String>,
    /// The access token was obtained by delegation (it carries an `act` chain).
    pub delegated: bool,
}

impl Acting {
    pub fn principal(&self) -> &Principal {
        &self.authed.principal
    }

    pub fn is_identity(&self) -> bool {
        matches!(self.authed.principal.who, Who::Identity { .. })
    }
}

impl From<Authed> for Acting {
    fn from(authed: Authed) -> Acting {
        Acting {
            actor: authed.workflow_actor(),
            scope: authed.scope.clone(),
            delegated: authed.delegated,
            authed,
        }
    }
}

impl FromRequestParts<AppState> for Acting {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Ok(authenticate(parts, state)?.into())
    }
}
