//! Access-token signing keys: generation, wrapping for storage, and the set in force.

use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::SigningKey;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use std::collections::HashMap;
use std::sync::Arc;
use warrant_core::Millis;
use warrant_store::TokenKeyRow;

/// The signature algorithm of access tokens (JOSE name).
pub const ALG: &str = "EdDSA";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot unwrap signing key `{0}`: wrong wrapping key or corrupt data")]
    Unwrap(String),
    #[error("signing key `{kid}` is unusable: {message}")]
    Unusable { kid: String, message: String },
    #[error("cannot wrap a signing key: {0}")]
    Wrap(String),
}

/// Wraps and unwraps token signing keys for storage.
pub struct KeyWrap {
    key: LessSafeKey,
    rng: SystemRandom,
}

const WRAP_INFO: &[u8] = b"warrant/token-signing-key-wrap/v1";

impl KeyWrap {
    /// Derives the wrapping key from the checkpoint signing key (HKDF-SHA256; a distinct
    /// `info` keeps the two uses apart).
    pub fn derive(root: &SigningKey) -> Result<KeyWrap, KeyError> {
        let failed = || KeyError::Wrap("cannot derive the wrapping key".into());
        let salt = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, b"warrant");
        let prk = salt.extract(root.as_bytes());
        let mut bytes = [0u8; 32];
        prk.expand(&[WRAP_INFO], &AES_256_GCM)
            .and_then(|okm| okm.fill(&mut bytes))
            .map_err(|_| failed())?;
        let unbound = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| failed())?;
        Ok(KeyWrap {
            key: LessSafeKey::new(unbound),
            rng: SystemRandom::new(),
        })
    }

    /// `nonce || ciphertext || tag`, bound to `kid` (as associated data).
    pub fn wrap(&self, kid: &str, secret: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| KeyError::Wrap("no randomness".into()))?;
        let mut out = secret.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(kid.as_bytes()),
                &mut out,
            )
            .map_err(|_| KeyError::Wrap("sealing failed".into()))?;
        let mut wrapped = nonce.to_vec();
        wrapped.extend_from_slice(&out);
        Ok(wrapped)
    }

    pub fn unwrap(&self, kid: &str, wrapped: &[u8]) -> Result<Vec<u8>, KeyError> {
        let bad = || KeyError::Unwrap(kid.to_owned());
        if wrapped.len() < NONCE_LEN {
            return Err(bad());
        }
        let (nonce, sealed) = wrapped.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| bad())?;
        let mut buf = sealed.to_vec();
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(kid.as_bytes()),
                &mut buf,
            )
            .map_err(|_| bad())?;
        Ok(plain.to_vec())
    }
}

/// A newly generated signing key, ready to store.
pub fn generate(wrap: &KeyWrap, now: Millis) -> Result<TokenKeyRow, KeyError> {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let public = key.verifying_key();
    let kid = {
        use sha2::{Digest, Sha256};
        let d = Sha256::digest(public.as_bytes());
        format!("tk_{}", hex::encode(d.get(..12).unwrap_or_default()))
    };
    let der = key
        .to_pkcs8_der()
        .map_err(|e| KeyError::Wrap(e.to_string()))?;
    let jwk = serde_json::json!({
        "kty": "OKP",
        "crv": "Ed25519",
        "x": base64url(public.as_bytes()),
        "kid": kid,
        "alg": ALG,
        "use": "sig",
    });
    Ok(TokenKeyRow {
        wrapped_private: wrap.wrap(&kid, der.as_bytes())?,
        kid,
        alg: ALG.into(),
        public_jwk: jwk.to_string(),
        created_ms: now,
        retired_ms: None,
        unpublish_ms: None,
    })
}

pub fn base64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The key that signs new tokens.
pub struct ActiveKey {
    pub kid: String,
    /// The key, parsed once (signing with a PKCS#8 `EncodingKey` re-parses it, and so
    /// recomputes the public key, for every token).
    pub signer: SigningKey,
    /// The same key for `jsonwebtoken` (tests sign odd tokens with it).
    pub encoding: jsonwebtoken::EncodingKey,
    /// `base64url({"alg":"EdDSA","typ":"at+jwt","kid":…})`, the first part of every token.
    pub header_b64: String,
}

/// A key whose tokens may still be valid.
pub struct PublishedKey {
    pub kid: String,
    /// The public JWK as stored (served in the JWKS).
    pub jwk: serde_json::Value,
    pub decoding: jsonwebtoken::DecodingKey,
    /// Leaves the JWKS (and stops verifying) then.
    pub unpublish_ms: Option<Millis>,
}

/// The signing keys in force, as the decision snapshot holds them.
#[derive(Default)]
pub struct SigningKeys {
    pub current: Option<Arc<ActiveKey>>,
    pub published: HashMap<String, Arc<PublishedKey>>,
}

impl SigningKeys {
    /// Builds the set from the stored rows: the newest unretired key signs; every key not
    /// yet unpublished verifies. A row that cannot be unwrapped or decoded is left out
    /// (and logged): tokens are then refused rather than signed with a wrong key.
    pub fn from_rows(rows: &[TokenKeyRow], wrap: &KeyWrap) -> SigningKeys {
        let mut keys = SigningKeys::default();
        for row in rows {
            match published(row) {
                Ok(p) => {
                    keys.published.insert(row.kid.clone(), Arc::new(p));
                }
                Err(e) => tracing::error!(error = %e, "token signing key left out"),
            }
        }
        let signer = rows
            .iter()
            .filter(|r| r.retired_ms.is_none())
            .max_by_key(|r| r.created_ms);
        if let Some(row) = signer {
            match wrap.unwrap(&row.kid, &row.wrapped_private) {
                Ok(der) => match SigningKey::from_pkcs8_der(&der) {
                    Ok(signer) => {
                        let header = serde_json::json!({
                            "alg": ALG,
                            "typ": super::jwt::ACCESS_TOKEN_TYP,
                            "kid": row.kid,
                        });
                        keys.current = Some(Arc::new(ActiveKey {
                            kid: row.kid.clone(),
                            signer,
                            encoding: jsonwebtoken::EncodingKey::from_ed_der(&der),
                            header_b64: base64url(header.to_string().as_bytes()),
                        }))
                    }
                    Err(e) => {
                        tracing::error!(kid = %row.kid, error = %e, "signing key does not decode: tokens are refused")
                    }
                },
                Err(e) => tracing::error!(error = %e, "no token signing key: tokens are refused"),
            }
        }
        keys
    }

    /// The keys to publish at `now` (JWKS).
    pub fn jwks(&self, now: Millis) -> serde_json::Value {
        let mut keys: Vec<_> = self
            .published
            .values()
            .filter(|k| k.unpublish_ms.is_none_or(|t| t > now))
            .map(|k| k.jwk.clone())
            .collect();
        let kid = |v: &serde_json::Value| v.get("kid").and_then(|k| k.as_str()).map(str::to_owned);
        keys.sort_by_key(kid);
        serde_json::json!({ "keys": keys })
    }

    /// The key that verifies a token with header `kid`, if it is published at `now`.
    pub fn verifier(&self, kid: &str, now: Millis) -> Option<&Arc<PublishedKey>> {
        self.published
            .get(kid)
            .filter(|k| k.unpublish_ms.is_none_or(|t| t > now))
    }
}

fn published(row: &TokenKeyRow) -> Result<PublishedKey, KeyError> {
    let unusable = |message: String| KeyError::Unusable {
        kid: row.kid.clone(),
        message,
    };
    let jwk: serde_json::Value =
        serde_json::from_str(&row.public_jwk).map_err(|e| unusable(e.to_string()))?;
    let x = jwk
        .get("x")
        .and_then(|x| x.as_str())
        .ok_or_else(|| unusable("no `x` in the public JWK".into()))?;
    let decoding =
        jsonwebtoken::DecodingKey::from_ed_components(x).map_err(|e| unusable(e.to_string()))?;
    Ok(PublishedKey {
        kid: row.kid.clone(),
        jwk,
        decoding,
        unpublish_ms: row.unpublish_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_keys_open_only_with_the_same_root_and_kid() {
        let w = KeyWrap::derive(&SigningKey::from_bytes(&[1; 32])).unwrap();
        let sealed = w.wrap("tk_1", b"secret").unwrap();
        assert_eq!(w.unwrap("tk_1", &sealed).unwrap(), b"secret");
        assert!(w.unwrap("tk_2", &sealed).is_err(), "bound to the kid");
        let other = KeyWrap::derive(&SigningKey::from_bytes(&[2; 32])).unwrap();
        assert!(
            other.unwrap("tk_1", &sealed).is_err(),
            "needs the same root key"
        );
        assert!(w.unwrap("tk_1", &sealed[..10]).is_err());
        assert_ne!(
            w.wrap("tk_1", b"secret").unwrap(),
            sealed,
            "fresh nonce each time"
        );
    }

    #[test]
    fn the_newest_unretired_key_signs_and_unpublished_keys_leave_the_jwks() {
        let w = KeyWrap::derive(&SigningKey::from_bytes(&[1; 32])).unwrap();
        let mut old = generate(&w, 1).unwrap();
        let new = generate(&w, 2).unwrap();
        old.retired_ms = Some(2);
        old.unpublish_ms = Some(100);
        let keys = SigningKeys::from_rows(&[old.clone(), new.clone()], &w);
        assert_eq!(keys.current.as_ref().unwrap().kid, new.kid);
        assert_eq!(keys.jwks(50)["keys"].as_array().unwrap().len(), 2);
        assert_eq!(keys.jwks(100)["keys"].as_array().unwrap().len(), 1);
        assert!(keys.verifier(&old.kid, 99).is_some());
        assert!(keys.verifier(&old.kid, 100).is_none());
        let jwks = keys.jwks(0).to_string();
        assert!(
            !jwks.contains("\"d\""),
            "no private part in the JWKS: {jwks}"
        );
        // A key wrapped under another root cannot sign here.
        let foreign = KeyWrap::derive(&SigningKey::from_bytes(&[3; 32])).unwrap();
        let keys = SigningKeys::from_rows(&[new], &foreign);
        assert!(keys.current.is_none());
    }
}
