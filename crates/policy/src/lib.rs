//! warrant's policy decision point: the only crate that knows Cedar.
//!
//! It owns the Cedar schema (a built-in fragment for the principal side, combined with
//! the user's schema), policy compilation and strict validation with positioned
//! diagnostics, building a registered identity into Cedar entities, and decisions. It
//! also owns tier policies ([`TierPolicies`]): Cedar permits, validated against the
//! fixed [`TIER_SCHEMA`], that assign a governance tier to an AI change proposal.
//!
//! It does no I/O, no SQL and no HTTP: texts and facts come in, values go out. Callers
//! own storage, the registry and the wire. No other crate imports `cedar-policy`, so
//! Cedar types never appear in this crate's public API.
//!
//! A decision is a value that defaults to deny. A malformed request is an error the
//! caller reports; it never becomes an allow, and a policy that fails to evaluate is
//! skipped and listed, as in Cedar.
//!
//! ```
//! use warrant_policy::{build_principal, decide, DecisionInput, PolicyBundle, PrincipalFacts};
//!
//! let schema = r#"
//!     namespace App {
//!       entity Document;
//!       action read appliesTo { principal: [Warrant::Identity], resource: [Document] };
//!     }
//! "#;
//! let policies = r#"
//!     @id("analysts-read") @reason("analysts read documents")
//!     permit(principal in Warrant::Role::"analyst", action == App::Action::"read", resource);
//! "#;
//! let bundle = PolicyBundle::compile(schema, policies)?;
//! let agent = build_principal(&PrincipalFacts {
//!     id: "agent-7".into(),
//!     name: "triage-bot".into(),
//!     kind: "agent".into(),
//!     environment: "prod".into(),
//!     owner: "alice".into(),
//!     spiffe_id: "spiffe://example.org/prod/triage-bot".into(),
//!     roles: vec!["analyst".into()],
//!     entitlements: vec![],
//! })?;
//! let input = DecisionInput {
//!     action: r#"App::Action::"read""#,
//!     resource: r#"App::Document::"q3-report""#,
//!     context: None,
//!     entities: None,
//! };
//! let decision = decide(&bundle, &agent, &input)?;
//! assert!(decision.allowed);
//! assert_eq!(decision.summary(), "allowed by policy `analysts-read`: analysts read documents");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod bundle;
mod context_types;
mod decision;
mod diagnostics;
mod fast;
mod principal;
mod tier;

pub use bundle::{check_syntax, PolicyBundle, BUILTIN_SCHEMA};
pub use decision::{
    decide, decide_between, Decision, DecisionInput, DeterminingPolicy, Effect, EvaluationError,
    RequestError,
};
pub use diagnostics::{Diagnostic, PolicyErrors, SourceKind, SNIPPET_MAX_CHARS};
pub use principal::{build_principal, EntityError, PrincipalEntities, PrincipalFacts};
pub use tier::{
    TierInput, TierMatch, TierOutcome, TierPolicies, DEFAULT_TIER_POLICIES, TIER_SCHEMA,
};
