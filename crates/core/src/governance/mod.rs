//! Tiered change governance: the rules by which AI tools *propose* IAM changes and named
//! humans authorize them.
//!
//! This module owns the domain model and its rules, without I/O:
//! - [`model`]: AI capabilities (declared, owned, accepted, reviewed), proposals and their
//!   states, changes and their inverses, roles and resources of the entitlement model;
//! - [`assess`]: the risk assessment warrant computes itself from its entitlement graph
//!   (blast radius, privilege, reversibility, data classification, beneficiaries) and
//!   what a change does to the graph (`apply`);
//! - [`tiering`]: the final tier from the tier policies' matches, the hard floor no
//!   policy can lower, and escalations (overdue review, aggregates, policy errors);
//! - [`aggregate`]: sliding-window aggregates of blast radius per capability, per target
//!   identity and overall, and correlation chains (compounding changes);
//! - [`workflow`]: who may approve, reject, override or perform what, and when;
//! - [`certification`]: access certification campaigns (owners confirm or revoke).
//!
//! INVARIANT: an AI identity never authorizes anything. Every human action names a human,
//! and every check that cannot be made refuses (fail closed).

pub mod aggregate;
pub mod assess;
pub mod certification;
pub mod model;
pub mod tiering;
pub mod workflow;

pub use model::*;

/// Why a governance request is refused. Each maps to a 4xx answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GovError {
    /// The request is malformed or names something that does not fit.
    #[error("{0}")]
    Invalid(String),
    /// The caller may not do this (AI identity, requester, beneficiary, not the owner...).
    #[error("{0}")]
    Forbidden(String),
    /// The object is not in a state that allows this (already decided, expired, window over).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
}

pub(crate) fn invalid(msg: impl Into<String>) -> GovError {
    GovError::Invalid(msg.into())
}
