//! Local passwords: argon2id (RFC 9106) PHC strings, computed off the async runtime.
//! Only the hash is stored; the password is never logged or recorded.

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use std::sync::OnceLock;

pub const MIN_LEN: usize = 12;
pub const MAX_LEN: usize = 1024;

/// Checks a new password's length (NIST SP 800-63B: length, no composition rules).
pub fn acceptable(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < MIN_LEN {
        return Err(format!("a password has at least {MIN_LEN} characters"));
    }
    if password.len() > MAX_LEN {
        return Err(format!("a password has at most {MAX_LEN} bytes"));
    }
    Ok(())
}

fn hash_now(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// At most this many argon2id computations (19 MiB each) run at once; others wait up to
/// [`WAIT`], then are refused (503), so a flood of sign-ins cannot exhaust memory or CPU.
const CONCURRENT: usize = 4;
const WAIT: std::time::Duration = std::time::Duration::from_secs(3);

fn permits() -> &'static tokio::sync::Semaphore {
    static P: OnceLock<tokio::sync::Semaphore> = OnceLock::new();
    P.get_or_init(|| tokio::sync::Semaphore::new(CONCURRENT))
}

/// Too many password checks at once.
#[derive(Debug)]
pub struct Busy;

async fn permit() -> Result<tokio::sync::SemaphorePermit<'static>, Busy> {
    match tokio::time::timeout(WAIT, permits().acquire()).await {
        Ok(Ok(p)) => Ok(p),
        _ => Err(Busy),
    }
}

/// argon2id hash (default parameters: m = 19 MiB, t = 2, p = 1).
pub async fn hash(password: String) -> Result<String, String> {
    let _p = permit()
        .await
        .map_err(|_| "too many password operations at once; try again".to_owned())?;
    tokio::task::spawn_blocking(move || hash_now(&password))
        .await
        .map_err(|e| e.to_string())?
}

/// A hash to verify against when the account does not exist or has no password, so a
/// failed sign-in takes as long whatever the reason.
fn dummy() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_now("not a password of anyone").unwrap_or_default())
}

/// Verifies `password` against the stored PHC string (`None`: always false, same cost).
pub async fn verify(stored: Option<String>, password: String) -> Result<bool, Busy> {
    let _p = permit().await?;
    Ok(tokio::task::spawn_blocking(move || {
        let known = stored.is_some();
        let phc = stored.unwrap_or_else(|| dummy().to_owned());
        let ok = PasswordHash::new(&phc)
            .map(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false);
        known && ok
    })
    .await
    .unwrap_or(false))
}
