//! Signed checkpoints: an Ed25519 signature over a tree head (size, root, time).
//!
//! The signed message is plain text so that anyone can check it with any Ed25519 tool:
//!
//! ```text
//! warrant-audit-checkpoint/v1
//! origin <origin>
//! size <tree size>
//! root <hex root>
//! time <unix ms>
//! ```

use crate::merkle::Hash;
use crate::Millis;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    pub ts_ms: Millis,
    /// [`key_id`] of the signing key.
    pub key_id: String,
    pub signature: [u8; 64],
}

/// A short, stable name for a public key: the first 8 bytes of SHA-256 over it, in hex.
pub fn key_id(key: &VerifyingKey) -> String {
    let digest = Sha256::digest(key.as_bytes());
    hex::encode(digest.get(..8).unwrap_or_default())
}

pub fn signed_message(origin: &str, size: u64, root: &Hash, ts_ms: Millis) -> String {
    format!(
        "warrant-audit-checkpoint/v1\norigin {origin}\nsize {size}\nroot {}\ntime {ts_ms}\n",
        hex::encode(root)
    )
}

/// Why a checkpoint kept outside the log cannot be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a warrant checkpoint: {0}")]
pub struct ParseError(pub String);

impl Checkpoint {
    /// Rebuilds a checkpoint from its signed text (as exported next to its signature):
    /// every field comes from the text the signature covers, so an exported copy cannot
    /// say one thing in its signed text and another in unsigned fields. The signature is
    /// not checked here (that needs the trusted key: see [`Checkpoint::verify`]).
    pub fn from_signed_message(
        message: &str,
        key_id: &str,
        signature: [u8; 64],
    ) -> Result<Self, ParseError> {
        let bad = |what: &str| ParseError(what.to_owned());
        let mut lines = message.split('\n');
        if lines.next() != Some("warrant-audit-checkpoint/v1") {
            return Err(bad("the first line is not `warrant-audit-checkpoint/v1`"));
        }
        let mut field = |name: &str| {
            lines
                .next()
                .and_then(|l| l.strip_prefix(name))
                .and_then(|l| l.strip_prefix(' '))
                .map(str::to_owned)
                .ok_or_else(|| bad(&format!("missing `{name}` line")))
        };
        let origin = field("origin")?;
        let size = field("size")?
            .parse::<u64>()
            .map_err(|_| bad("`size` is not a number"))?;
        let root_hex = field("root")?;
        let ts_ms = field("time")?
            .parse::<Millis>()
            .map_err(|_| bad("`time` is not a number"))?;
        let mut root = [0u8; 32];
        hex::decode_to_slice(&root_hex, &mut root)
            .map_err(|_| bad("`root` is not 32 hex bytes"))?;
        let cp = Checkpoint {
            origin,
            size,
            root,
            ts_ms,
            key_id: key_id.to_owned(),
            signature,
        };
        // Byte for byte what would be signed: no trailing text, no alternative spellings.
        if cp.message() != message {
            return Err(bad("the text is not in canonical form"));
        }
        Ok(cp)
    }

    pub fn sign(origin: &str, size: u64, root: Hash, ts_ms: Millis, key: &SigningKey) -> Self {
        let msg = signed_message(origin, size, &root, ts_ms);
        Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            ts_ms,
            key_id: key_id(&key.verifying_key()),
            signature: key.sign(msg.as_bytes()).to_bytes(),
        }
    }

    pub fn message(&self) -> String {
        signed_message(&self.origin, self.size, &self.root, self.ts_ms)
    }

    /// True when the signature is valid for this key and the key id matches.
    pub fn verify(&self, key: &VerifyingKey) -> bool {
        key_id(key) == self.key_id
            && key
                .verify(
                    self.message().as_bytes(),
                    &Signature::from_bytes(&self.signature),
                )
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_text_round_trips_and_nothing_else_parses() {
        let key = SigningKey::from_bytes(&[5; 32]);
        let cp = Checkpoint::sign("warrant/x", 42, [7; 32], 1_700_000_000_000, &key);
        let back =
            Checkpoint::from_signed_message(&cp.message(), &cp.key_id, cp.signature).unwrap();
        assert_eq!(back, cp);
        assert!(back.verify(&key.verifying_key()));
        let msg = cp.message();
        for bad in [
            msg.replace("/v1", "/v2"),
            msg.replace("size 42", "size 4x"),
            msg.replace("size 42", "size  42"),
            msg.replace(&hex::encode([7u8; 32]), "07"),
            format!("{msg}extra\n"),
            msg.trim_end().to_owned(),
            String::new(),
        ] {
            assert!(
                Checkpoint::from_signed_message(&bad, &cp.key_id, cp.signature).is_err(),
                "{bad:?}"
            );
        }
        // A changed size parses, but the signature no longer holds.
        let forged = Checkpoint::from_signed_message(
            &msg.replace("size 42", "size 43"),
            &cp.key_id,
            cp.signature,
        )
        .unwrap();
        assert!(!forged.verify(&key.verifying_key()));
    }

    #[test]
    fn sign_and_verify() {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let other = SigningKey::generate(&mut rand::rngs::OsRng);
        let cp = Checkpoint::sign("warrant:test", 5, [7; 32], 1000, &key);
        assert!(cp.verify(&key.verifying_key()));
        assert!(!cp.verify(&other.verifying_key()));
        let mut bad = cp.clone();
        bad.size = 6;
        assert!(!bad.verify(&key.verifying_key()));
        let mut bad = cp.clone();
        bad.root[0] ^= 1;
        assert!(!bad.verify(&key.verifying_key()));
    }
}
