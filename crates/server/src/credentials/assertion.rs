//! Client authentication with `private_key_jwt` (RFC 7523 §2.2 and §3; OpenID Connect
//! Core §9): an agent proves it holds the private half of a public key registered for its
//! identity by signing a short-lived JWT (the *client assertion*) for warrant's token
//! endpoint.
//!
//! It owns two things, both free of I/O:
//! - the public keys agents register ([`parse_public_jwk`]): Ed25519 (`OKP`) and P-256
//!   (`EC`) JWKs only; any private member (`d`, …) is refused outright, so a private key
//!   sent by mistake is never stored or logged; the `kid` is the one given or the RFC 7638
//!   thumbprint; the stored form is normalized (only the members that matter);
//! - checking an assertion ([`peek`] then [`verify`]): the header's `alg` must be `EdDSA`
//!   or `ES256` (so `none`, HMAC "signed" with a public key, and RSA are refused before any
//!   key is looked at) and match the registered key's type; `iss` = `sub` = the client; `aud`
//!   names the token endpoint (or the issuer); `exp` is required, not passed, and at most
//!   [`MAX_ASSERTION_LIFETIME_SECS`] ahead; `nbf`/`iat` are not in the future (with
//!   [`SKEW_SECS`] of clock skew); `jti` is required. That a `jti` is used once is enforced
//!   by the writer (`Op::IssueCredential` consumes it across every replica).

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use warrant_core::Millis;

/// `client_assertion_type` of a JWT client assertion (RFC 7523 §2.2).
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// An assertion may expire at most this far ahead of warrant's clock.
pub const MAX_ASSERTION_LIFETIME_SECS: i64 = 300;
/// Clock skew tolerated for `nbf`, `iat` and the lifetime bound.
pub const SKEW_SECS: i64 = 30;
/// Longest `jti` accepted.
pub const MAX_JTI_CHARS: usize = 256;
/// Longest `kid` accepted.
pub const MAX_KID_CHARS: usize = 128;
/// Longest assertion accepted (bytes).
pub const MAX_ASSERTION_BYTES: usize = 8192;

/// JWK members that carry private key material (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037).
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// The signature algorithms a client key may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlg {
    /// Ed25519 (`kty: OKP`, `crv: Ed25519`).
    EdDSA,
    /// ECDSA with P-256 and SHA-256 (`kty: EC`, `crv: P-256`).
    ES256,
}

impl KeyAlg {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlg::EdDSA => "EdDSA",
            KeyAlg::ES256 => "ES256",
        }
    }

    fn parse(alg: &str) -> Option<KeyAlg> {
        match alg {
            "EdDSA" => Some(KeyAlg::EdDSA),
            "ES256" => Some(KeyAlg::ES256),
            _ => None,
        }
    }

    fn jose(self) -> Algorithm {
        match self {
            KeyAlg::EdDSA => Algorithm::EdDSA,
            KeyAlg::ES256 => Algorithm::ES256,
        }
    }

    fn key_type(self) -> &'static str {
        match self {
            KeyAlg::EdDSA => "an Ed25519",
            KeyAlg::ES256 => "a P-256",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwkError {
    #[error("private key material must never be sent: the JWK has a private member `{0}`; register the public key only (and treat this private key as exposed)")]
    Private(String),
    #[error("invalid JWK: {0}")]
    Invalid(String),
}

/// A validated public key of an identity.
#[derive(Debug, Clone, PartialEq)]
pub struct PublicJwk {
    pub kid: String,
    pub alg: KeyAlg,
    /// The normalized public JWK (`kty`, `crv`, `x`, `y`?, `kid`, `alg`, `use`).
    pub jwk: Value,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A base64url (unpadded) coordinate of exactly `len` bytes.
fn coordinate(jwk: &Value, name: &str, len: usize) -> Result<Vec<u8>, JwkError> {
    let text = jwk
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| JwkError::Invalid(format!("`{name}` (a base64url string) is required")))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| JwkError::Invalid(format!("`{name}` is not unpadded base64url")))?;
    if bytes.len() != len {
        return Err(JwkError::Invalid(format!(
            "`{name}` must encode {len} bytes, got {}",
            bytes.len()
        )));
    }
    Ok(bytes)
}

fn valid_kid(kid: &str) -> Result<(), JwkError> {
    let n = kid.chars().count();
    if n == 0 || n > MAX_KID_CHARS {
        return Err(JwkError::Invalid(format!(
            "`kid` must be 1 to {MAX_KID_CHARS} characters"
        )));
    }
    if let Some(c) = kid
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-_.:~+=".contains(*c)))
    {
        return Err(JwkError::Invalid(format!(
            "`kid` may hold letters, digits and `-_.:~+=` only; it contains {c:?}"
        )));
    }
    Ok(())
}

/// Validates a public JWK an identity registers: Ed25519 or P-256, no private members,
/// well-formed coordinates; `alg` and `use`, when given, must fit. Without a `kid`, the
/// RFC 7638 thumbprint (SHA-256, base64url) becomes the `kid`.
pub fn parse_public_jwk(jwk: &Value) -> Result<PublicJwk, JwkError> {
    let obj = jwk
        .as_object()
        .ok_or_else(|| JwkError::Invalid("a JWK is a JSON object".into()))?;
    if let Some(member) = PRIVATE_MEMBERS.iter().find(|m| obj.contains_key(**m)) {
        return Err(JwkError::Private((*member).to_owned()));
    }
    let text = |name: &str| obj.get(name).and_then(Value::as_str);
    let kty = text("kty").ok_or_else(|| JwkError::Invalid("`kty` is required".into()))?;
    let crv = text("crv");
    let (alg, thumbprint_input, mut normalized) = match (kty, crv) {
        ("OKP", Some("Ed25519")) => {
            let x = coordinate(jwk, "x", 32)?;
            let bytes: [u8; 32] = x
                .as_slice()
                .try_into()
                .map_err(|_| JwkError::Invalid("`x` must encode 32 bytes".into()))?;
            ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                .map_err(|_| JwkError::Invalid("`x` is not a valid Ed25519 public key".into()))?;
            let x = b64(&x);
            (
                KeyAlg::EdDSA,
                format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#),
                json!({ "kty": "OKP", "crv": "Ed25519", "x": x }),
            )
        }
        ("EC", Some("P-256")) => {
            let x = b64(&coordinate(jwk, "x", 32)?);
            let y = b64(&coordinate(jwk, "y", 32)?);
            (
                KeyAlg::ES256,
                format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#),
                json!({ "kty": "EC", "crv": "P-256", "x": x, "y": y }),
            )
        }
        ("OKP", other) | ("EC", other) => {
            return Err(JwkError::Invalid(format!(
                "curve {} is not supported: use Ed25519 (`kty: OKP`) or P-256 (`kty: EC`)",
                other.map_or_else(|| "(none)".to_owned(), |c| format!("`{c}`"))
            )))
        }
        (other, _) => {
            return Err(JwkError::Invalid(format!(
                "key type `{other}` is not supported: use Ed25519 (`kty: OKP`) or P-256 (`kty: EC`)"
            )))
        }
    };
    if let Some(a) = obj.get("alg") {
        if a.as_str() != Some(alg.as_str()) {
            return Err(JwkError::Invalid(format!(
                "`alg` must be `{}` for this key, got {a}",
                alg.as_str()
            )));
        }
    }
    if let Some(u) = obj.get("use") {
        if u.as_str() != Some("sig") {
            return Err(JwkError::Invalid(format!(
                "`use` must be `sig` (client keys sign assertions), got {u}"
            )));
        }
    }
    let kid = match obj.get("kid") {
        None => b64(&Sha256::digest(thumbprint_input.as_bytes())),
        Some(Value::String(k)) => {
            valid_kid(k)?;
            k.clone()
        }
        Some(other) => {
            return Err(JwkError::Invalid(format!(
                "`kid` must be a string, got {other}"
            )))
        }
    };
    if let Some(o) = normalized.as_object_mut() {
        o.insert("kid".into(), Value::String(kid.clone()));
        o.insert("alg".into(), Value::String(alg.as_str().into()));
        o.insert("use".into(), Value::String("sig".into()));
    }
    Ok(PublicJwk {
        kid,
        alg,
        jwk: normalized,
    })
}

/// Why a client assertion was not accepted. Every variant is `invalid_client`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssertionError {
    #[error("malformed client assertion: {0}")]
    Malformed(String),
    #[error("client assertion algorithm `{0}` is not accepted (EdDSA or ES256)")]
    Algorithm(String),
    #[error("key `{kid}` is {key} key: the client assertion must use `{expected}`, not `{alg}`")]
    KeyMismatch {
        kid: String,
        key: &'static str,
        alg: &'static str,
        expected: &'static str,
    },
    #[error("the client assertion's signature does not verify")]
    BadSignature,
    #[error("the client assertion's `iss` and `sub` must both be the client (its identity id or SPIFFE ID)")]
    WrongSubject,
    #[error("the client assertion's `aud` must name the token endpoint `{0}`")]
    WrongAudience(String),
    #[error("the client assertion has no `exp`")]
    NoExpiry,
    #[error("the client assertion has expired")]
    Expired,
    #[error(
        "the client assertion expires too far ahead (at most {MAX_ASSERTION_LIFETIME_SECS} s)"
    )]
    TooLong,
    #[error("the client assertion is not valid yet (`nbf` or `iat` in the future)")]
    NotYetValid,
    #[error("the client assertion needs a `jti` of 1 to {MAX_JTI_CHARS} characters")]
    NoJti,
}

/// What can be read from an assertion before its signature is checked: enough to find the
/// client and its key. Nothing here is trusted until [`verify`] succeeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peeked {
    pub alg: KeyAlg,
    pub kid: String,
    /// The claimed client (`iss`).
    pub iss: String,
}

#[derive(Deserialize)]
struct Header {
    alg: Option<Value>,
    kid: Option<Value>,
    crit: Option<Value>,
}

#[derive(Deserialize)]
struct Claims {
    iss: Option<Value>,
    sub: Option<Value>,
    aud: Option<Value>,
    exp: Option<Value>,
    nbf: Option<Value>,
    iat: Option<Value>,
    jti: Option<Value>,
}

fn segment<T: serde::de::DeserializeOwned>(part: &str, what: &str) -> Result<T, AssertionError> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| AssertionError::Malformed(format!("the {what} is not base64url")))?;
    serde_json::from_slice(&bytes)
        .map_err(|_| AssertionError::Malformed(format!("the {what} is not a JSON object")))
}

/// Reads the header (`alg`, `kid`) and the claimed client (`iss`) of an assertion, and
/// refuses any algorithm other than EdDSA and ES256.
pub fn peek(assertion: &str) -> Result<Peeked, AssertionError> {
    if assertion.len() > MAX_ASSERTION_BYTES {
        return Err(AssertionError::Malformed(format!(
            "longer than {MAX_ASSERTION_BYTES} bytes"
        )));
    }
    let mut parts = assertion.split('.');
    let (Some(h), Some(p), Some(_sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AssertionError::Malformed(
            "a JWS in compact form has three parts".into(),
        ));
    };
    let header: Header = segment(h, "header")?;
    let alg = match &header.alg {
        Some(Value::String(a)) => {
            KeyAlg::parse(a).ok_or_else(|| AssertionError::Algorithm(a.clone()))?
        }
        _ => return Err(AssertionError::Malformed("the header has no `alg`".into())),
    };
    if header.crit.is_some() {
        return Err(AssertionError::Malformed(
            "critical header extensions (`crit`) are not supported".into(),
        ));
    }
    let kid = match &header.kid {
        Some(Value::String(k)) if !k.is_empty() && k.chars().count() <= MAX_KID_CHARS => k.clone(),
        _ => {
            return Err(AssertionError::Malformed(
                "the header needs the `kid` of a key registered for the client".into(),
            ))
        }
    };
    let claims: Claims = segment(p, "payload")?;
    let iss = match &claims.iss {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(AssertionError::WrongSubject),
    };
    Ok(Peeked { alg, kid, iss })
}

/// What the token endpoint expects of an assertion.
pub struct Expected<'a> {
    /// Names the client may go by: its identity id and its SPIFFE ID.
    pub client_names: [&'a str; 2],
    /// `{issuer}/oauth2/token`.
    pub token_endpoint: &'a str,
    pub issuer: &'a str,
    pub now_ms: Millis,
}

/// An accepted assertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub jti: String,
    pub exp_ms: Millis,
}

/// The key that verifies assertions signed with a stored public JWK.
fn decoding_key(stored: &Value, kid: &str, alg: KeyAlg) -> Result<DecodingKey, AssertionError> {
    let text = |n: &str| stored.get(n).and_then(Value::as_str);
    let (key_alg, key) = match (text("kty"), text("x"), text("y")) {
        (Some("OKP"), Some(x), _) => (KeyAlg::EdDSA, DecodingKey::from_ed_components(x)),
        (Some("EC"), Some(x), Some(y)) => (KeyAlg::ES256, DecodingKey::from_ec_components(x, y)),
        _ => {
            return Err(AssertionError::Malformed(format!(
                "key `{kid}` is not usable"
            )))
        }
    };
    if key_alg != alg {
        return Err(AssertionError::KeyMismatch {
            kid: kid.to_owned(),
            key: key_alg.key_type(),
            alg: alg.as_str(),
            expected: key_alg.as_str(),
        });
    }
    key.map_err(|_| AssertionError::Malformed(format!("key `{kid}` is not usable")))
}

fn int(v: &Option<Value>, name: &str) -> Result<Option<i64>, AssertionError> {
    match v {
        None => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| {
            AssertionError::Malformed(format!("`{name}` must be an integer (seconds)"))
        }),
        Some(_) => Err(AssertionError::Malformed(format!(
            "`{name}` must be a NumericDate (integer seconds)"
        ))),
    }
}

/// Verifies the assertion's signature with the client's key (`stored`: the registered
/// public JWK named by `peeked.kid`) and checks its claims against `expected`.
pub fn verify(
    assertion: &str,
    peeked: &Peeked,
    stored: &Value,
    expected: &Expected<'_>,
) -> Result<Verified, AssertionError> {
    let key = decoding_key(stored, &peeked.kid, peeked.alg)?;
    let mut validation = Validation::new(peeked.alg.jose());
    // Every claim is checked below, against warrant's clock.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.leeway = 0;
    validation.required_spec_claims = HashSet::new();
    let claims = jsonwebtoken::decode::<Claims>(assertion, &key, &validation)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => AssertionError::BadSignature,
            jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => {
                AssertionError::Algorithm(peeked.alg.as_str().into())
            }
            _ => AssertionError::Malformed(e.to_string()),
        })?
        .claims;

    let is_client = |v: &Option<Value>| {
        v.as_ref()
            .and_then(Value::as_str)
            .is_some_and(|s| expected.client_names.contains(&s))
    };
    if !is_client(&claims.iss) || !is_client(&claims.sub) || claims.iss != claims.sub {
        return Err(AssertionError::WrongSubject);
    }
    let names_us = |a: &str| a == expected.token_endpoint || a == expected.issuer;
    let aud_ok = match &claims.aud {
        Some(Value::String(a)) => names_us(a),
        Some(Value::Array(all)) => all.iter().filter_map(Value::as_str).any(names_us),
        _ => false,
    };
    if !aud_ok {
        return Err(AssertionError::WrongAudience(
            expected.token_endpoint.to_owned(),
        ));
    }
    let now = expected.now_ms.div_euclid(1000);
    let exp = int(&claims.exp, "exp")?.ok_or(AssertionError::NoExpiry)?;
    if exp <= now {
        return Err(AssertionError::Expired);
    }
    if exp > now.saturating_add(MAX_ASSERTION_LIFETIME_SECS + SKEW_SECS) {
        return Err(AssertionError::TooLong);
    }
    for name in ["nbf", "iat"] {
        let v = if name == "nbf" {
            &claims.nbf
        } else {
            &claims.iat
        };
        if int(v, name)?.is_some_and(|t| t > now.saturating_add(SKEW_SECS)) {
            return Err(AssertionError::NotYetValid);
        }
    }
    let jti = match &claims.jti {
        Some(Value::String(j)) if !j.is_empty() && j.chars().count() <= MAX_JTI_CHARS => j.clone(),
        _ => return Err(AssertionError::NoJti),
    };
    Ok(Verified {
        jti,
        exp_ms: exp.saturating_mul(1000),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    use jsonwebtoken::{EncodingKey, Header as JwtHeader};

    const ENDPOINT: &str = "https://warrant.example/oauth2/token";
    const ISSUER: &str = "https://warrant.example";

    fn ed_key() -> (EncodingKey, Value) {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let der = sk.to_pkcs8_der().unwrap();
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64(sk.verifying_key().as_bytes())});
        (EncodingKey::from_ed_der(der.as_bytes()), jwk)
    }

    fn sign(key: &EncodingKey, kid: &str, claims: &Value) -> String {
        let mut h = JwtHeader::new(Algorithm::EdDSA);
        h.kid = Some(kid.into());
        jsonwebtoken::encode(&h, claims, key).unwrap()
    }

    fn expected(now_ms: Millis) -> Expected<'static> {
        Expected {
            client_names: ["idn_1", "spiffe://td/prod/bot"],
            token_endpoint: ENDPOINT,
            issuer: ISSUER,
            now_ms,
        }
    }

    #[test]
    fn public_keys_are_validated_and_private_ones_refused() {
        let (_, jwk) = ed_key();
        let k = parse_public_jwk(&jwk).unwrap();
        assert_eq!(k.alg, KeyAlg::EdDSA);
        assert_eq!(k.kid.len(), 43, "a SHA-256 thumbprint: {}", k.kid);
        assert_eq!(k.jwk["alg"], "EdDSA");
        let mut private = jwk.clone();
        private["d"] = json!("AAAA");
        assert!(matches!(
            parse_public_jwk(&private),
            Err(JwkError::Private(_))
        ));
        for bad in [
            json!({"kty": "RSA", "n": "AQAB", "e": "AQAB"}),
            json!({"kty": "OKP", "crv": "X25519", "x": jwk["x"]}),
            json!({"kty": "OKP", "crv": "Ed25519", "x": "not base64!"}),
            json!({"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}),
            json!({"kty": "EC", "crv": "P-384", "x": "AAAA", "y": "AAAA"}),
            json!({"kty": "EC", "crv": "P-256", "x": b64(&[1; 32])}),
            json!({"kty": "OKP", "crv": "Ed25519", "x": jwk["x"], "alg": "ES256"}),
            json!({"kty": "OKP", "crv": "Ed25519", "x": jwk["x"], "kid": "a b"}),
            json!("a string"),
        ] {
            assert!(
                matches!(parse_public_jwk(&bad), Err(JwkError::Invalid(_))),
                "{bad}"
            );
        }
        // RFC 7638 §3.1 example shape: the thumbprint is over the required members only.
        let mut with_extra = jwk.clone();
        with_extra["use"] = json!("sig");
        assert_eq!(parse_public_jwk(&with_extra).unwrap().kid, k.kid);
    }

    #[test]
    fn assertions_are_checked_claim_by_claim() {
        let (key, jwk) = ed_key();
        let stored = parse_public_jwk(&jwk).unwrap().jwk;
        let now = 1_000_000i64;
        let good = json!({"iss": "idn_1", "sub": "idn_1", "aud": ENDPOINT, "exp": now + 60, "iat": now, "jti": "j1"});
        let check = |claims: &Value| {
            let t = sign(&key, "k1", claims);
            let p = peek(&t)?;
            verify(&t, &p, &stored, &expected(now * 1000))
        };
        assert_eq!(
            check(&good).unwrap(),
            Verified {
                jti: "j1".into(),
                exp_ms: (now + 60) * 1000
            }
        );
        let with = |k: &str, v: Value| {
            let mut c = good.clone();
            c[k] = v;
            c
        };
        assert_eq!(
            check(&with("iss", json!("idn_2"))),
            Err(AssertionError::WrongSubject)
        );
        assert_eq!(
            check(&with("sub", json!("spiffe://td/prod/bot"))),
            Err(AssertionError::WrongSubject)
        );
        assert!(matches!(
            check(&with("aud", json!("https://else"))),
            Err(AssertionError::WrongAudience(_))
        ));
        assert!(check(&with("aud", json!(["x", ISSUER]))).is_ok());
        assert_eq!(
            check(&with("exp", json!(now))),
            Err(AssertionError::Expired)
        );
        assert_eq!(
            check(&with("exp", json!(now + 400))),
            Err(AssertionError::TooLong)
        );
        assert_eq!(
            check(&with("nbf", json!(now + 31))),
            Err(AssertionError::NotYetValid)
        );
        assert_eq!(
            check(&with("iat", json!(now + 31))),
            Err(AssertionError::NotYetValid)
        );
        assert!(check(&with("iat", json!(now + 29))).is_ok(), "30 s of skew");
        assert_eq!(check(&with("jti", json!(""))), Err(AssertionError::NoJti));
        let mut no_exp = good.clone();
        no_exp.as_object_mut().unwrap().remove("exp");
        assert_eq!(check(&no_exp), Err(AssertionError::NoExpiry));
    }

    #[test]
    fn unaccepted_algorithms_are_refused_before_any_key() {
        let (_, jwk) = ed_key();
        let body = b64(br#"{"iss":"idn_1"}"#);
        for alg in ["none", "HS256", "RS256", "ES384"] {
            let h = b64(format!(r#"{{"alg":"{alg}","kid":"k1"}}"#).as_bytes());
            assert_eq!(
                peek(&format!("{h}.{body}.")),
                Err(AssertionError::Algorithm(alg.into()))
            );
        }
        // An ES256 header against an Ed25519 key.
        let stored = parse_public_jwk(&jwk).unwrap().jwk;
        let h = b64(br#"{"alg":"ES256","kid":"k1"}"#);
        let t = format!("{h}.{body}.AAAA");
        let p = peek(&t).unwrap();
        assert!(matches!(
            verify(&t, &p, &stored, &expected(0)),
            Err(AssertionError::KeyMismatch { .. })
        ));
    }
}
