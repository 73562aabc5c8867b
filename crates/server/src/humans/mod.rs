//! Human sign-in at the edge: local passwords (`password`), OpenID Connect single sign-on
//! (`oidc`), and browser sessions (this module): an opaque random cookie whose SHA-256 is
//! stored and replicated through the writer like every change, looked up in the snapshot
//! on each request (no I/O), with a per-session anti-CSRF token, a fixed lifetime and
//! sign-out. A session's roles are the human's roles *now* (a revoked role or a disabled
//! account takes effect on the next request).

pub mod oidc;
pub mod password;

use crate::auth::{hash_token, Authed};
use crate::error::ApiError;
use crate::governance::humans::HumanOp;
use crate::governance::ops::GovOp;
use crate::ops::Op;
use crate::AppState;
use axum::http::{HeaderMap, HeaderValue};
use base64::Engine;
use rand::RngCore;
use std::sync::Arc;
use warrant_core::access::{Human, OidcLink, Principal, Session, SignInMethod, Who};
use warrant_core::Millis;

pub const SESSION_COOKIE: &str = "warrant_session";

/// Sign-in settings (the `[sign_in]` table of the config file).
#[derive(Debug, Clone)]
pub struct SignInConfig {
    /// How long a session lasts from sign-in (absolute; 8 hours by default).
    pub session_ttl_ms: Millis,
    /// Mark cookies `Secure` (default true; browsers accept them on http://localhost and
    /// http://127.0.0.1; set false only for plain HTTP on another host, never in production).
    pub secure_cookies: bool,
    pub oidc: Option<oidc::OidcConfig>,
}

impl Default for SignInConfig {
    fn default() -> Self {
        SignInConfig {
            session_ttl_ms: 8 * 3600 * 1000,
            secure_cookies: true,
            oidc: None,
        }
    }
}

pub(crate) fn random_b64(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A session cookie (`HttpOnly`, `SameSite=Lax`, `Path=/`, `Secure` unless configured off).
pub fn cookie(state: &AppState, name: &str, value: &str, max_age_s: i64) -> HeaderValue {
    let secure = if state.sign_in.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_s}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("invalid=1; Max-Age=0"))
}

pub fn clear_cookie(state: &AppState, name: &str) -> HeaderValue {
    cookie(state, name, "", 0)
}

/// The value of cookie `name` in the request.
pub fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Opens a session for `human` (through the writer: recorded, replicated). Returns the
/// cookie secret (to set) and the session.
pub async fn open(
    state: &AppState,
    human: &str,
    method: SignInMethod,
    provision: Option<Human>,
    link: Option<OidcLink>,
) -> Result<(String, Session), ApiError> {
    let secret = random_b64(32);
    let now = state.clock.now_ms();
    let session = Session {
        id: format!("ses_{}", uuid::Uuid::now_v7().simple()),
        hash: hex::encode(hash_token(&secret)),
        human: human.to_owned(),
        csrf: random_b64(24),
        method,
        created_ms: now,
        expires_ms: now + state.sign_in.session_ttl_ms,
        ended_ms: None,
    };
    state
        .writer
        .mutate(Op::Gov(Box::new(GovOp::Human(Box::new(
            HumanOp::OpenSession {
                session: session.clone(),
                provision,
                link,
            },
        )))))
        .await?;
    Ok((secret, session))
}

/// Ends a session (sign-out, or expiry by the governance job).
pub async fn end(state: &AppState, actor: &str, id: &str, reason: &str) -> Result<(), ApiError> {
    state
        .writer
        .mutate(Op::Gov(Box::new(GovOp::Human(Box::new(
            HumanOp::EndSession {
                actor: actor.to_owned(),
                id: id.to_owned(),
                reason: reason.to_owned(),
            },
        )))))
        .await?;
    Ok(())
}

/// The live session the request's cookie names, and who it acts as (snapshot lookup).
pub fn current(state: &AppState, headers: &HeaderMap) -> Option<(Arc<Session>, Authed)> {
    let secret = cookie_value(headers, SESSION_COOKIE)?;
    let snap = state.snapshot.load();
    let s = snap
        .gov
        .sessions
        .get(&hex::encode(hash_token(secret)))?
        .clone();
    if !s.live(state.clock.now_ms()) {
        return None;
    }
    let human = snap.gov.humans.get(&Human::key(&s.human))?;
    if human.disabled {
        return None;
    }
    let authed = Authed {
        principal: Principal {
            who: Who::Human(human.name.clone()),
            roles: human.roles.clone(),
        },
        via: s.id.clone(),
        token_role: None,
        scope: vec![],
        delegated: false,
    };
    Some((s, authed))
}

/// Slows password guessing: after [`Throttle::MAX_FAILURES`] failed sign-ins for one user
/// name within [`Throttle::WINDOW_MS`], further attempts for it are refused until the
/// window ends (per replica, in memory; every failure is also audited).
#[derive(Default)]
pub struct Throttle {
    failures: std::sync::Mutex<std::collections::HashMap<String, (u32, Millis)>>,
}

impl Throttle {
    pub const MAX_FAILURES: u32 = 5;
    pub const WINDOW_MS: Millis = 15 * 60 * 1000;
    const MAX_KEYS: usize = 100_000;

    /// Counts an attempt for `user` *before* its password is checked (so that guesses
    /// sent at once cannot all pass while the first ones are being verified); `Err(seconds)`
    /// while `user` is locked out. A success forgets the count ([`Throttle::succeeded`]).
    pub fn attempt(&self, user: &str, now: Millis) -> Result<(), i64> {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= Self::MAX_KEYS {
            map.retain(|_, (_, since)| now - *since < Self::WINDOW_MS);
        }
        let e = map.entry(user.to_ascii_lowercase()).or_insert((0, now));
        if now - e.1 >= Self::WINDOW_MS {
            *e = (0, now);
        }
        if e.0 >= Self::MAX_FAILURES {
            return Err((Self::WINDOW_MS - (now - e.1)) / 1000 + 1);
        }
        e.0 += 1;
        Ok(())
    }

    pub fn succeeded(&self, user: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&user.to_ascii_lowercase());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_locks_a_user_after_repeated_failures_then_lets_go() {
        let t = Throttle::default();
        for i in 0..Throttle::MAX_FAILURES {
            assert!(t.attempt("Alice", i64::from(i)).is_ok());
        }
        assert!(
            t.attempt("ALICE", 10).is_err(),
            "the sixth attempt in the window"
        );
        assert!(t.attempt("bob", 10).is_ok());
        assert!(
            t.attempt("alice", Throttle::WINDOW_MS + 1).is_ok(),
            "a new window"
        );
        t.succeeded("alice");
        for i in 0..Throttle::MAX_FAILURES {
            assert!(
                t.attempt("alice", 20 + i64::from(i)).is_ok(),
                "a success resets"
            );
        }
    }
}

/// Why a password check refused.
#[derive(Debug)]
pub enum PasswordRefusal {
    /// User name too long or empty (400).
    Malformed,
    /// Too many failures for this user name: retry after this many seconds (429).
    Throttled(i64),
    /// Too many password checks at once (503).
    Busy,
    /// Unknown user, disabled account, no local password or wrong password (401).
    Wrong,
}

impl PasswordRefusal {
    pub fn into_api(self) -> ApiError {
        use axum::http::StatusCode;
        match self {
            PasswordRefusal::Malformed => {
                ApiError::bad_request("`username` must be 1 to 254 characters")
            }
            PasswordRefusal::Throttled(s) => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_attempts",
                format!("too many failed sign-ins for this user; try again in {s} seconds"),
            ),
            PasswordRefusal::Busy => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "too many sign-ins at once; try again",
            ),
            PasswordRefusal::Wrong => ApiError::unauthorized("wrong username or password"),
        }
    }
}

/// Checks a local password (throttled per user name, bounded concurrency, same cost for
/// unknown users); every refusal is audited as `anonymous` (never the password).
pub async fn check_password(
    state: &AppState,
    path: &str,
    username: &str,
    password: String,
) -> Result<Arc<Human>, PasswordRefusal> {
    let username = username.trim();
    if username.is_empty() || username.len() > 254 {
        return Err(PasswordRefusal::Malformed);
    }
    let now = state.clock.now_ms();
    let shown: String = username.chars().take(100).collect();
    if let Err(secs) = state.sign_in_throttle.attempt(username, now) {
        crate::auth::audit_refusal(
            state,
            "anonymous",
            path,
            "POST",
            &format!("sign-in refused for `{shown}`: too many failed attempts"),
        )
        .await;
        return Err(PasswordRefusal::Throttled(secs));
    }
    let human = state
        .snapshot
        .load()
        .gov
        .humans
        .get(&Human::key(username))
        .cloned();
    let stored = human
        .as_ref()
        .filter(|h| !h.disabled)
        .and_then(|h| h.password_hash.clone());
    let ok = password::verify(stored, password)
        .await
        .map_err(|_| PasswordRefusal::Busy)?;
    match human.filter(|_| ok) {
        Some(h) => {
            state.sign_in_throttle.succeeded(username);
            Ok(h)
        }
        None => {
            crate::auth::audit_refusal(
                state,
                "anonymous",
                path,
                "POST",
                &format!("sign-in refused for `{shown}`: unknown user, disabled account or wrong password"),
            )
            .await;
            Err(PasswordRefusal::Wrong)
        }
    }
}

/// A human replaces their own local password, proving who they are with the current one
/// (throttled and audited like a sign-in). Ends their sessions. Returns their name.
pub async fn change_own_password(
    state: &AppState,
    path: &str,
    username: &str,
    current: String,
    new: String,
) -> Result<String, ApiError> {
    password::acceptable(&new).map_err(|e| ApiError::bad_request(format!("new password: {e}")))?;
    if new == current {
        return Err(ApiError::bad_request(
            "the new password must differ from the current one",
        ));
    }
    let h = check_password(state, path, username, current)
        .await
        .map_err(PasswordRefusal::into_api)?;
    let hash = password::hash(new)
        .await
        .map_err(|e| ApiError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, "busy", e))?;
    let actor = format!("human:{}", h.name);
    state
        .writer
        .mutate(Op::Gov(Box::new(GovOp::Human(Box::new(HumanOp::Update {
            actor,
            name: h.name.clone(),
            display_name: None,
            password_hash: Some(Some(hash)),
            password_must_change: false,
            disabled: None,
        })))))
        .await?;
    Ok(h.name.clone())
}
