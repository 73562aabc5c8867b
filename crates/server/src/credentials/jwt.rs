//! Access tokens: JWTs per RFC 9068 (`typ: at+jwt`), signed with the current signing key
//! (EdDSA), verified against the published keys, and checked against the snapshot's
//! standing of their subject (revoked? kill switch? identity still active?).
//!
//! Verification is strict by construction: only `EdDSA` is accepted (so `alg: none` and an
//! HMAC "signed" with a public key are refused before any key is looked at), the header
//! must carry `typ: at+jwt` and a `kid` of a published key, and `iss`, `aud`, `exp`, `nbf`
//! are checked against warrant's own clock.

use super::keys::SigningKeys;
use crate::snapshot::Snapshot;
use jsonwebtoken::{Algorithm, Validation};
use serde::{Deserialize, Serialize};
use warrant_core::credentials::Actor;
use warrant_core::Millis;

/// The JOSE `typ` of access tokens (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// The claims of a warrant access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    /// The identity the token was issued to (its id).
    pub sub: String,
    /// The resource (audience) the token is for.
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    pub client_id: String,
    /// Space-delimited scope (RFC 6749 §3.3).
    pub scope: String,
    pub environment: String,
    pub owner: String,
    pub spiffe_id: String,
    /// The delegation chain (RFC 8693 §4.1), most recent actor first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Actor>,
}

impl AccessClaims {
    pub fn exp_ms(&self) -> Millis {
        self.exp.saturating_mul(1000)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no signing key is available: tokens cannot be issued")]
    NoSigningKey,
    #[error("cannot sign the token: {0}")]
    Signing(String),
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("algorithm `{0}` is not accepted (only EdDSA)")]
    Algorithm(String),
    #[error("the token's `typ` is not `at+jwt`")]
    WrongType,
    #[error("unknown or unpublished signing key `{0}`")]
    UnknownKey(String),
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued by someone else")]
    WrongIssuer,
    #[error("the token is for another audience")]
    WrongAudience,
    #[error("the token was revoked")]
    Revoked,
    #[error("{0}")]
    Inactive(String),
}

/// A fresh access-token id (`jti`): 128 random bits.
pub fn new_jti() -> String {
    format!("at_{}", uuid::Uuid::new_v4().simple())
}

/// Signs `claims` with the current signing key.
pub fn issue(keys: &SigningKeys, claims: &AccessClaims) -> Result<String, TokenError> {
    use ed25519_dalek::Signer as _;
    let key = keys.current.as_ref().ok_or(TokenError::NoSigningKey)?;
    // JWS compact serialization (RFC 7515 §7.1) with the pre-encoded header and the
    // pre-parsed key; verified by `jsonwebtoken` like any other token (see the tests).
    let payload = serde_json::to_vec(claims).map_err(|e| TokenError::Signing(e.to_string()))?;
    let mut token = String::with_capacity(key.header_b64.len() + payload.len() * 4 / 3 + 90);
    token.push_str(&key.header_b64);
    token.push('.');
    token.push_str(&super::keys::base64url(&payload));
    let signature = key.signer.sign(token.as_bytes());
    token.push('.');
    token.push_str(&super::keys::base64url(&signature.to_bytes()));
    Ok(token)
}

/// Checks a token's form, signature, issuer, audience (when given) and validity period at
/// `now_ms`. It does not look at revocation or the subject's standing: see [`standing`].
pub fn verify(
    keys: &SigningKeys,
    token: &str,
    now_ms: Millis,
    issuer: &str,
    audience: Option<&str>,
) -> Result<AccessClaims, TokenError> {
    let header =
        jsonwebtoken::decode_header(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
    if header.alg != Algorithm::EdDSA {
        return Err(TokenError::Algorithm(format!("{:?}", header.alg)));
    }
    if header.typ.as_deref() != Some(ACCESS_TOKEN_TYP)
        && header.typ.as_deref() != Some("application/at+jwt")
    {
        return Err(TokenError::WrongType);
    }
    let kid = header
        .kid
        .ok_or_else(|| TokenError::Malformed("no `kid` in the header".into()))?;
    let key = keys
        .verifier(&kid, now_ms)
        .ok_or(TokenError::UnknownKey(kid))?;
    let mut validation = Validation::new(Algorithm::EdDSA);
    // Time is checked below against warrant's clock, not the library's.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud", "nbf"]);
    validation.set_issuer(&[issuer]);
    match audience {
        Some(aud) => validation.set_audience(&[aud]),
        None => validation.validate_aud = false,
    }
    let data = jsonwebtoken::decode::<AccessClaims>(token, &key.decoding, &validation).map_err(
        |e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => TokenError::BadSignature,
            jsonwebtoken::errors::ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
            jsonwebtoken::errors::ErrorKind::InvalidAudience => TokenError::WrongAudience,
            _ => TokenError::Malformed(e.to_string()),
        },
    )?;
    let claims = data.claims;
    let now_s = now_ms.div_euclid(1000);
    if claims.exp <= now_s {
        return Err(TokenError::Expired);
    }
    if claims.nbf > now_s {
        return Err(TokenError::NotYetValid);
    }
    Ok(claims)
}

/// Whether a verified token is still honoured: not revoked, and its subject and every
/// actor of its delegation chain registered, active and not stopped by a kill switch.
pub fn standing(snapshot: &Snapshot, claims: &AccessClaims) -> Result<(), TokenError> {
    if snapshot.revoked.contains_key(&claims.jti) {
        return Err(TokenError::Revoked);
    }
    let mut parties = vec![claims.sub.as_str()];
    if let Some(act) = &claims.act {
        parties.extend(act.subjects());
    }
    for id in parties {
        let entry = snapshot
            .principals
            .get(id)
            .ok_or_else(|| TokenError::Inactive(format!("identity `{id}` is not registered")))?;
        entry
            .identity
            .may_act()
            .map_err(|why| TokenError::Inactive(format!("identity `{id}`: {why}")))?;
        if let Some(ks) = snapshot.kill_switch_for(&entry.identity) {
            return Err(TokenError::Inactive(
                crate::api::authorize::kill_switch_reason(ks),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::keys::{generate, KeyWrap};
    use ed25519_dalek::SigningKey;
    use jsonwebtoken::Header;

    fn keys() -> (SigningKeys, KeyWrap) {
        let wrap = KeyWrap::derive(&SigningKey::from_bytes(&[9; 32])).unwrap();
        let row = generate(&wrap, 0).unwrap();
        (SigningKeys::from_rows(&[row], &wrap), wrap)
    }

    fn claims(exp: i64) -> AccessClaims {
        AccessClaims {
            iss: "https://warrant.example".into(),
            sub: "idn_1".into(),
            aud: "https://docs.example".into(),
            exp,
            iat: 100,
            nbf: 100,
            jti: "at_1".into(),
            client_id: "idn_1".into(),
            scope: "App:read".into(),
            environment: "prod".into(),
            owner: "alice@example.com".into(),
            spiffe_id: "spiffe://td/prod/bot".into(),
            act: None,
        }
    }

    #[test]
    fn issued_tokens_verify_and_everything_else_is_refused() {
        let (k, _) = keys();
        let iss = "https://warrant.example";
        let aud = Some("https://docs.example");
        let t = issue(&k, &claims(400)).unwrap();
        assert_eq!(verify(&k, &t, 200_000, iss, aud).unwrap(), claims(400));
        assert_eq!(verify(&k, &t, 400_000, iss, aud), Err(TokenError::Expired));
        assert_eq!(
            verify(&k, &t, 99_000, iss, aud),
            Err(TokenError::NotYetValid)
        );
        assert_eq!(
            verify(&k, &t, 200_000, "https://evil.example", aud),
            Err(TokenError::WrongIssuer)
        );
        assert_eq!(
            verify(&k, &t, 200_000, iss, Some("https://other.example")),
            Err(TokenError::WrongAudience)
        );
        // Tampered payload: same header and signature, another subject.
        let parts: Vec<&str> = t.split('.').collect();
        let mut forged = claims(400);
        forged.sub = "idn_admin".into();
        let body = crate::credentials::keys::base64url(&serde_json::to_vec(&forged).unwrap());
        let tampered = format!("{}.{}.{}", parts[0], body, parts[2]);
        assert_eq!(
            verify(&k, &tampered, 200_000, iss, aud),
            Err(TokenError::BadSignature)
        );
        // Keys of another deployment do not verify it.
        let (other, _) = keys();
        assert!(matches!(
            verify(&other, &t, 200_000, iss, aud),
            Err(TokenError::UnknownKey(_))
        ));
    }

    #[test]
    fn alg_none_and_hmac_with_the_public_key_are_refused() {
        let (k, _) = keys();
        let iss = "https://warrant.example";
        let body = crate::credentials::keys::base64url(&serde_json::to_vec(&claims(400)).unwrap());
        let kid = k.current.as_ref().unwrap().kid.clone();
        let none_header = crate::credentials::keys::base64url(
            serde_json::json!({"alg": "none", "typ": "at+jwt", "kid": kid})
                .to_string()
                .as_bytes(),
        );
        let none = format!("{none_header}.{body}.");
        assert!(verify(&k, &none, 200_000, iss, None).is_err());
        // HS256 "signed" with the public key bytes (the classic key-confusion attack).
        let public = k.published.get(&kid).unwrap().jwk["x"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some(ACCESS_TOKEN_TYP.into());
        header.kid = Some(kid);
        let hs = jsonwebtoken::encode(
            &header,
            &claims(400),
            &jsonwebtoken::EncodingKey::from_secret(public.as_bytes()),
        )
        .unwrap();
        assert_eq!(
            verify(&k, &hs, 200_000, iss, None),
            Err(TokenError::Algorithm("HS256".into()))
        );
        // A JWT without `typ: at+jwt` (an ID token, say) is not an access token.
        let key = k.current.as_ref().unwrap();
        let mut plain = Header::new(Algorithm::EdDSA);
        plain.kid = Some(key.kid.clone());
        let t = jsonwebtoken::encode(&plain, &claims(400), &key.encoding).unwrap();
        assert_eq!(
            verify(&k, &t, 200_000, iss, None),
            Err(TokenError::WrongType)
        );
    }
}
