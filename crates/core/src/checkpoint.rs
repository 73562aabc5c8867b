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

impl Checkpoint {
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
