//! Agent credentials at the edge: the keys that sign access tokens and how they are kept.
//!
//! It owns: wrapping of token signing keys for storage ([`KeyWrap`]: AES-256-GCM under a
//! key derived with HKDF-SHA256 from the checkpoint signing key every replica holds, so the
//! database alone never reveals a private key), and the snapshot's view of the signing
//! keys ([`SigningKeys`]: the key that signs now, and every key whose tokens may still be
//! valid, for the JWKS and for verification). The rules (scopes, lifetimes, delegation,
//! kill switches) are in `warrant_core::credentials`.

pub mod assertion;
pub mod jwt;
pub mod keys;
pub mod tls;

pub use keys::{KeyWrap, SigningKeys};
pub use tls::TlsPeer;
