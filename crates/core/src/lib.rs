//! `warrant-core`: the pure domain core of warrant.
//!
//! It owns the rules that make warrant what it is, and nothing else:
//! - [`access`]: control-plane roles of humans, role grants, sessions, who may do what;
//! - [`identity`]: non-human identities, their validation and their lifecycle
//!   (`active → suspended → retired`, retired is final);
//! - [`audit`]: the audit record model, its canonical leaf encoding and record kinds;
//! - [`merkle`]: RFC 6962 Merkle tree hashing, compact trees, inclusion proofs;
//! - [`checkpoint`]: Ed25519-signed tree heads;
//! - [`verify`]: the offline verifier of an audit chain.
//!
//! It must not do I/O: no SQL, no HTTP, no files, no clock reads, no randomness.
//! Time ([`Clock`]), identifiers and keys are passed in by the edges.

pub mod access;
pub mod audit;
pub mod checkpoint;
pub mod credentials;
pub mod governance;
pub mod identity;
pub mod merkle;
pub mod verify;

/// Milliseconds since the Unix epoch (UTC).
pub type Millis = i64;

/// The source of time. The domain never reads the system clock itself.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> Millis;
}
