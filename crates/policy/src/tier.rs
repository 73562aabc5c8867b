//! Tier policies as code: Cedar `permit` policies that assign a governance tier (1..4)
//! to an AI capability's IAM change proposal.
//!
//! Every policy is a `permit` with a `@tier("1" | "2" | "3" | "4")` annotation, and
//! optionally `@id("...")` (its id, else cedar's `policy0`, `policy1`, ...) and
//! `@reason("...")`. The policies are validated in strict mode against the fixed
//! [`TIER_SCHEMA`]. Evaluating a proposal reports the permits it satisfies
//! ([`TierOutcome::matches`]) and the policies that failed to evaluate; the caller picks
//! the highest matching tier (Tier 3 when none matches, and fails closed to Tier 3 or
//! higher when a policy errored) and applies its hard floor.
//!
//! ```
//! use warrant_policy::{TierInput, TierPolicies};
//!
//! let policies = TierPolicies::builtin();
//! let input = TierInput {
//!     proposal_id: "p-1",
//!     capability: "cap-7",
//!     proposer: "agent-7",
//!     kind: "retire_identity",
//!     environment: "prod",
//!     blast_identities: 1,
//!     confidence_pct: 95,
//!     ..TierInput::default()
//! };
//! let outcome = policies.evaluate(&input);
//! assert_eq!(outcome.highest(), Some(4));
//! assert_eq!(outcome.matches[0].policy_id, "tier4-retire");
//! ```

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use cedar_policy::{
    AuthorizationError, Authorizer, Context, Entities, EntityId, EntityTypeName, EntityUid,
    PolicyId, PolicySet, Request, RestrictedExpression, Schema, SchemaFragment, Validator,
};

use crate::bundle::{parse_policies, validation_diagnostics, Parsed};
use crate::decision::Effect;
use crate::diagnostics::{from_miette, position, Diagnostic, PolicyErrors, SourceKind};

/// The fixed Cedar schema of tier policies (users cannot extend it).
///
/// Each proposal is one request: principal `Tier::Capability::"<capability>"`, action
/// `Tier::Action::"assign"`, resource `Tier::Proposal::"<proposal id>"`, and the facts
/// of [`TierInput`] as the context.
pub const TIER_SCHEMA: &str = r#"// The built-in schema of warrant's tier policies; it cannot be extended.
namespace Tier {
  // The AI capability proposing the change: Tier::Capability::"<capability id>".
  entity Capability;
  // The proposal being assessed: Tier::Proposal::"<proposal id>".
  entity Proposal;
  // Which tier does this proposal get? Every satisfied permit names one in @tier.
  action "assign" appliesTo {
    principal: [Capability],
    resource: [Proposal],
    context: {
      // grant_entitlement | revoke_entitlement | create_role | delete_role |
      // modify_role | modify_trust | change_auth_requirement | suspend_identity |
      // retire_identity
      kind: String,
      environment: String,
      // The proposing identity's id.
      proposer: String,
      // The capability's id (the principal's id).
      capability: String,
      // Identities whose effective access would change.
      blast_identities: Long,
      blast_resources: Long,
      privileged: Bool,
      reversible: Bool,
      // unclassified | public | internal | confidential | restricted
      classification: String,
      // 0..4, in the order above.
      classification_rank: Long,
      // The model's confidence, 0..100.
      confidence_pct: Long,
      // A target identity is an AI identity.
      targets_ai: Bool,
      // Blast radius this capability already caused in the sliding window.
      aggregate_capability: Long,
      // Changes to the same target identity in the window.
      aggregate_target: Long,
      aggregate_overall: Long,
      // Proposals before this one in its correlation chain.
      chain_length: Long,
    }
  };
}
"#;

/// The tier policies warrant ships as the default.
pub const DEFAULT_TIER_POLICIES: &str = r#"// warrant's default tier policies.
//
// Every permit that matches a proposal names a tier in @tier; the proposal gets the
// highest matching tier, Tier 3 when none matches, and never less than the hard floor.
// So a lower tier's case must not also match a higher tier's policy (see `unless`).

@id("tier1-small-revocation")
@tier("1")
@reason("revokes one non-privileged, reversible entitlement on internal or lower data, proposed with high confidence")
permit (principal, action == Tier::Action::"assign", resource)
when {
  context.kind == "revoke_entitlement" &&
  context.blast_identities <= 1 &&
  !context.privileged &&
  context.reversible &&
  context.classification_rank <= 2 &&
  context.confidence_pct >= 90
};

@id("tier2-small-entitlement-change")
@tier("2")
@reason("a reversible, non-privileged entitlement or role change affecting at most 5 identities, on data below restricted")
permit (principal, action == Tier::Action::"assign", resource)
when {
  (context.kind == "grant_entitlement" ||
   context.kind == "revoke_entitlement" ||
   context.kind == "modify_role") &&
  context.blast_identities <= 5 &&
  !context.privileged &&
  context.reversible &&
  context.classification_rank <= 3
}
// The highest matching tier wins: leave the Tier 1 case to Tier 1.
unless {
  context.kind == "revoke_entitlement" &&
  context.blast_identities <= 1 &&
  context.classification_rank <= 2 &&
  context.confidence_pct >= 90
};

@id("tier2-suspend-one")
@tier("2")
@reason("suspends one non-privileged identity; a suspension is undone by resuming it")
permit (principal, action == Tier::Action::"assign", resource)
when {
  context.kind == "suspend_identity" &&
  context.blast_identities <= 1 &&
  !context.privileged
};

@id("tier3-two-person-privileged")
@tier("3")
@approvals("2")
@reason("a privileged change needs two named approvers (two-person rule)")
permit (principal, action == Tier::Action::"assign", resource)
when { context.privileged };

@id("tier4-retire")
@tier("4")
@reason("retiring an identity is irreversible: the AI recommends, a human performs it")
permit (principal, action == Tier::Action::"assign", resource)
when { context.kind == "retire_identity" };

@id("tier4-low-confidence")
@tier("4")
@reason("the model's confidence is below 50%: a recommendation only")
permit (principal, action == Tier::Action::"assign", resource)
when { context.confidence_pct < 50 };
"#;

/// The annotation naming a policy's tier.
const TIER_ANNOTATION: &str = "tier";
/// The annotation explaining a policy.
const REASON_ANNOTATION: &str = "reason";
/// The annotation requiring more than one approver (two-person rule).
const APPROVALS_ANNOTATION: &str = "approvals";
/// The lowest and highest tier.
const TIERS: std::ops::RangeInclusive<u8> = 1..=4;

/// The facts of one proposal, the context of its tier request (see [`TIER_SCHEMA`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct TierInput<'a> {
    /// Becomes the resource `Tier::Proposal::"<proposal_id>"`.
    pub proposal_id: &'a str,
    /// Becomes the principal `Tier::Capability::"<capability>"` and `context.capability`.
    pub capability: &'a str,
    pub proposer: &'a str,
    pub kind: &'a str,
    pub environment: &'a str,
    pub blast_identities: i64,
    pub blast_resources: i64,
    pub privileged: bool,
    pub reversible: bool,
    pub classification: &'a str,
    pub classification_rank: i64,
    pub confidence_pct: i64,
    pub targets_ai: bool,
    pub aggregate_capability: i64,
    pub aggregate_target: i64,
    pub aggregate_overall: i64,
    pub chain_length: i64,
}

/// A tier policy a proposal satisfied.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TierMatch {
    pub policy_id: String,
    /// 1..=4.
    pub tier: u8,
    /// The policy's `@reason` annotation.
    pub reason: Option<String>,
    /// The policy's `@approvals("2")` annotation: how many distinct humans must approve
    /// (the two-person rule). Only meaningful for Tier 3.
    pub approvals: Option<u8>,
}

/// What the tier policies say about one proposal. Only matches are reported: the
/// caller chooses the tier (highest match, Tier 3 when none, then its floor).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TierOutcome {
    /// Sorted by tier, highest first, then by policy id.
    pub matches: Vec<TierMatch>,
    /// `<policy id>: <message>` for each policy that failed to evaluate (it is not in
    /// `matches`), or one `request: <message>` entry when the request could not be
    /// built. The caller fails closed when this is not empty.
    pub errors: Vec<String>,
}

impl TierOutcome {
    /// The highest matching tier, `None` when no policy matched.
    pub fn highest(&self) -> Option<u8> {
        self.matches.iter().map(|m| m.tier).max()
    }
}

/// What evaluation needs to know about one policy, computed at compile time.
#[derive(Debug)]
struct TierMeta {
    tier: u8,
    reason: Option<String>,
    approvals: Option<u8>,
}

struct Inner {
    policies: PolicySet,
    meta: HashMap<PolicyId, TierMeta>,
    ids: Vec<String>,
    text: String,
    authorizer: Authorizer,
    entities: Entities,
    /// `None` only in the fallback of [`TierPolicies::builtin`], which has no policies.
    uids: Option<Uids>,
}

/// A compiled, validated set of tier policies. Immutable; `Clone` shares it (an `Arc`).
#[derive(Clone)]
pub struct TierPolicies {
    inner: Arc<Inner>,
}

impl fmt::Debug for TierPolicies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TierPolicies")
            .field("policy_ids", &self.inner.ids)
            .finish_non_exhaustive()
    }
}

/// The uids every tier request uses.
struct Uids {
    /// `Tier::Action::"assign"`.
    action: EntityUid,
    capability_type: EntityTypeName,
    proposal_type: EntityTypeName,
}

fn uids() -> Result<Uids, String> {
    let ty = |s: &str| EntityTypeName::from_str(s).map_err(|e| e.to_string());
    Ok(Uids {
        action: EntityUid::from_str(r#"Tier::Action::"assign""#).map_err(|e| e.to_string())?,
        capability_type: ty("Tier::Capability")?,
        proposal_type: ty("Tier::Proposal")?,
    })
}

/// The parsed [`TIER_SCHEMA`], built once.
fn tier_schema() -> Result<&'static Schema, Diagnostic> {
    static SCHEMA: OnceLock<Result<Schema, Diagnostic>> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            SchemaFragment::from_cedarschema_str(TIER_SCHEMA)
                .map_err(|e| from_miette(&e, SourceKind::Schema, None, None))
                .and_then(|(fragment, _warnings)| {
                    Schema::from_schema_fragments([fragment])
                        .map_err(|e| from_miette(&e, SourceKind::Schema, None, None))
                })
                .map_err(|mut d| {
                    d.message = format!("built-in tier schema: {}", d.message);
                    d
                })
        })
        .as_ref()
        .map_err(Clone::clone)
}

impl TierPolicies {
    /// Compiles a tier policies text against [`TIER_SCHEMA`] (strict validation).
    ///
    /// Ids come from `@id` (else cedar's `policy<n>`). Every policy must be a `permit`
    /// with `@tier("1")`..`@tier("4")`; templates, `forbid` policies, a missing or bad
    /// `@tier`, empty or duplicate ids and validation errors are positioned
    /// diagnostics, all returned together. An empty text compiles to no policies.
    pub fn compile(text: &str) -> Result<TierPolicies, PolicyErrors> {
        let parsed = parse_policies(text)?;
        let mut diagnostics = Vec::new();
        let mut meta = HashMap::with_capacity(parsed.meta.len());
        for (id, m) in &parsed.meta {
            match tier_meta(id, m, &parsed, text) {
                Ok(t) => {
                    meta.insert(id.clone(), t);
                }
                Err(d) => diagnostics.push(d),
            }
        }
        let schema = tier_schema().map_err(PolicyErrors::one)?;
        let validator = Validator::new(schema.clone());
        diagnostics.extend(validation_diagnostics(&validator, &parsed, text));
        if !diagnostics.is_empty() {
            // In source order; diagnostics without a position last.
            diagnostics.sort_by_key(|d| (d.line.is_none(), d.line, d.column));
            return Err(PolicyErrors { diagnostics });
        }
        let uids = uids().map_err(|message| {
            PolicyErrors::one(Diagnostic {
                source: SourceKind::Schema,
                message: format!("built-in tier schema: {message}"),
                help: None,
                policy_id: None,
                line: None,
                column: None,
                snippet: None,
            })
        })?;
        Ok(TierPolicies {
            inner: Arc::new(Inner {
                policies: parsed.set,
                meta,
                ids: parsed.ids,
                text: text.to_owned(),
                authorizer: Authorizer::new(),
                entities: Entities::empty(),
                uids: Some(uids),
            }),
        })
    }

    /// [`DEFAULT_TIER_POLICIES`], compiled once and shared.
    pub fn builtin() -> TierPolicies {
        static BUILTIN: OnceLock<TierPolicies> = OnceLock::new();
        BUILTIN
            .get_or_init(|| match Self::compile(DEFAULT_TIER_POLICIES) {
                Ok(policies) => policies,
                // INVARIANT: unreachable, the default policies are tested to compile.
                // Without them nothing matches, and every proposal is Tier 3 (a human
                // decides) unless the caller's floor says more.
                Err(_) => Self::empty(),
            })
            .clone()
    }

    /// No policies: nothing matches. Only the fallback of `builtin`.
    fn empty() -> TierPolicies {
        TierPolicies {
            inner: Arc::new(Inner {
                policies: PolicySet::new(),
                meta: HashMap::new(),
                ids: Vec::new(),
                text: String::new(),
                authorizer: Authorizer::new(),
                entities: Entities::empty(),
                uids: uids().ok(),
            }),
        }
    }

    /// The policies text, as given.
    pub fn text(&self) -> &str {
        &self.inner.text
    }

    /// The policy ids, in source order.
    pub fn policy_ids(&self) -> Vec<String> {
        self.inner.ids.clone()
    }

    /// Evaluates the tier policies for one proposal: one Cedar request, no entities
    /// beyond the request's uids. Never panics; a policy that errors is skipped (as in
    /// Cedar) and listed in `errors`.
    pub fn evaluate(&self, input: &TierInput<'_>) -> TierOutcome {
        let inner = &*self.inner;
        if inner.ids.is_empty() {
            return TierOutcome::default();
        }
        let request = match inner.request(input) {
            Ok(request) => request,
            Err(message) => {
                return TierOutcome {
                    matches: Vec::new(),
                    errors: vec![format!("request: {message}")],
                }
            }
        };
        let response = inner
            .authorizer
            .is_authorized(&request, &inner.policies, &inner.entities);
        let diagnostics = response.diagnostics();
        let mut matches: Vec<TierMatch> = diagnostics
            .reason()
            .filter_map(|id| {
                // INVARIANT: every policy of the set has its tier (both are built at
                // compile time); one without could not be reported and is dropped,
                // which the caller's default (Tier 3) covers.
                let meta = inner.meta.get(id)?;
                Some(TierMatch {
                    policy_id: id.to_string(),
                    tier: meta.tier,
                    reason: meta.reason.clone(),
                    approvals: meta.approvals,
                })
            })
            .collect();
        matches.sort_by(|a, b| {
            b.tier
                .cmp(&a.tier)
                .then_with(|| a.policy_id.cmp(&b.policy_id))
        });
        let mut errors: Vec<String> = diagnostics
            .errors()
            .map(|e| match e {
                AuthorizationError::PolicyEvaluationError(e) => {
                    format!("{}: {}", e.policy_id(), e.inner())
                }
            })
            .collect();
        errors.sort();
        TierOutcome { matches, errors }
    }
}

impl Inner {
    fn request(&self, input: &TierInput<'_>) -> Result<Request, String> {
        let uids = self
            .uids
            .as_ref()
            .ok_or("the built-in tier uids are unavailable")?;
        let principal = EntityUid::from_type_name_and_id(
            uids.capability_type.clone(),
            EntityId::new(input.capability),
        );
        let resource = EntityUid::from_type_name_and_id(
            uids.proposal_type.clone(),
            EntityId::new(input.proposal_id),
        );
        let context = tier_context(input)?;
        // INVARIANT: the context is built from typed fields with exactly the attributes
        // and types of the schema's context record, and the uids have the schema's
        // types, so cedar's request validation would accept it (unit test); skipping
        // it saves its cost on every proposal.
        Request::new(principal, uids.action.clone(), resource, context, None)
            .map_err(|e| e.to_string())
    }
}

/// The request context for `input`: every attribute of the schema's context record.
fn tier_context(input: &TierInput<'_>) -> Result<Context, String> {
    let s = |v: &str| RestrictedExpression::new_string(v.to_owned());
    let l = RestrictedExpression::new_long;
    let b = RestrictedExpression::new_bool;
    let pairs = [
        ("kind", s(input.kind)),
        ("environment", s(input.environment)),
        ("proposer", s(input.proposer)),
        ("capability", s(input.capability)),
        ("blast_identities", l(input.blast_identities)),
        ("blast_resources", l(input.blast_resources)),
        ("privileged", b(input.privileged)),
        ("reversible", b(input.reversible)),
        ("classification", s(input.classification)),
        ("classification_rank", l(input.classification_rank)),
        ("confidence_pct", l(input.confidence_pct)),
        ("targets_ai", b(input.targets_ai)),
        ("aggregate_capability", l(input.aggregate_capability)),
        ("aggregate_target", l(input.aggregate_target)),
        ("aggregate_overall", l(input.aggregate_overall)),
        ("chain_length", l(input.chain_length)),
    ];
    Context::from_pairs(pairs.map(|(k, v)| (k.to_owned(), v))).map_err(|e| e.to_string())
}

/// The tier and reason of one parsed policy, or why it is not a tier policy.
fn tier_meta(
    id: &PolicyId,
    meta: &crate::bundle::PolicyMeta,
    parsed: &Parsed,
    text: &str,
) -> Result<TierMeta, Diagnostic> {
    let start = parsed.starts.get(meta.index).copied();
    let (tier_at, effect_at) = start.map_or((None, None), |s| locate(text, s));
    let diagnostic = |at: Option<usize>, message: String, help: &str| {
        let pos = at.or(start).and_then(|o| position(text, o));
        Diagnostic {
            source: SourceKind::Policies,
            message,
            help: Some(help.to_owned()),
            policy_id: Some(id.to_string()),
            line: pos.as_ref().map(|p| p.line),
            column: pos.as_ref().map(|p| p.column),
            snippet: pos.map(|p| p.snippet),
        }
    };
    if meta.effect == Effect::Forbid {
        return Err(diagnostic(
            effect_at,
            format!(
                "policy `{id}` is a `forbid` policy: tier policies may only `permit` \
                 (a proposal gets the highest tier whose permit matches, so `forbid` has no meaning)"
            ),
            "to keep proposals out of a tier, narrow that tier's permit with `when`/`unless`, \
             or permit a higher tier for them",
        ));
    }
    let tier = match meta.annotations.get(TIER_ANNOTATION) {
        None => {
            return Err(diagnostic(
                effect_at,
                format!("policy `{id}` has no `@tier` annotation: every tier policy must name its tier"),
                "annotate the policy with the tier it assigns, e.g. `@tier(\"2\")`: \"1\", \"2\", \"3\" or \"4\"",
            ))
        }
        Some(value) => match value.parse::<u8>() {
            Ok(tier) if TIERS.contains(&tier) && value.len() == 1 => tier,
            _ => {
                return Err(diagnostic(
                    tier_at,
                    format!(
                        "policy `{id}` has `@tier({value:?})`: the tier must be \"1\", \"2\", \"3\" or \"4\""
                    ),
                    "Tier 1 is the least oversight, Tier 4 the most",
                ))
            }
        },
    };
    let approvals = match meta.annotations.get(APPROVALS_ANNOTATION) {
        None => None,
        Some(v) => match v.as_str() {
            "1" => Some(1),
            "2" => Some(2),
            _ => {
                return Err(diagnostic(
                    effect_at,
                    format!("policy `{id}` has `@approvals({v:?})`: it must be \"1\" or \"2\""),
                    "`@approvals(\"2\")` requires two distinct named humans to approve (two-person rule)",
                ))
            }
        },
    };
    Ok(TierMeta {
        tier,
        reason: meta.annotations.get(REASON_ANNOTATION).cloned(),
        approvals,
    })
}

/// Scans the annotations that begin the statement at byte `start` of `text`: the
/// offsets of its `@tier` annotation (if any) and of its effect keyword. Only used to
/// position diagnostics; `None` where the scan does not get there.
fn locate(text: &str, start: usize) -> (Option<usize>, Option<usize>) {
    let bytes = text.as_bytes();
    let mut i = start;
    let mut tier = None;
    loop {
        i = skip_trivia(bytes, i);
        if bytes.get(i) != Some(&b'@') {
            return (tier, (i < bytes.len()).then_some(i));
        }
        let at = i;
        i = skip_trivia(bytes, i + 1);
        let name = i;
        while bytes
            .get(i)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
        {
            i += 1;
        }
        if tier.is_none() && text.get(name..i) == Some(TIER_ANNOTATION) {
            tier = Some(at);
        }
        i = skip_trivia(bytes, i);
        if bytes.get(i) == Some(&b'(') {
            i += 1;
            loop {
                match bytes.get(i) {
                    None => return (tier, None),
                    Some(b')') => {
                        i += 1;
                        break;
                    }
                    Some(b'"') => {
                        i += 1;
                        loop {
                            match bytes.get(i) {
                                None => return (tier, None),
                                Some(b'\\') => i += 2,
                                Some(b'"') => {
                                    i += 1;
                                    break;
                                }
                                Some(_) => i += 1,
                            }
                        }
                    }
                    Some(_) => i += 1,
                }
            }
        }
    }
}

/// The first byte at or after `i` that is neither whitespace nor in a `//` comment.
fn skip_trivia(bytes: &[u8], mut i: usize) -> usize {
    loop {
        match bytes.get(i) {
            Some(c) if c.is_ascii_whitespace() => i += 1,
            Some(b'/') if bytes.get(i + 1) == Some(&b'/') => {
                while bytes.get(i).is_some_and(|c| *c != b'\n') {
                    i += 1;
                }
            }
            _ => return i,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_and_builtin_compile() {
        assert!(tier_schema().is_ok());
        assert!(uids().is_ok());
        let compiled = TierPolicies::compile(DEFAULT_TIER_POLICIES).unwrap();
        assert_eq!(compiled.policy_ids().len(), 6);
        assert_eq!(TierPolicies::builtin().policy_ids(), compiled.policy_ids());
        assert_eq!(TierPolicies::builtin().text(), DEFAULT_TIER_POLICIES);
    }

    #[test]
    fn the_unvalidated_request_is_what_cedars_validation_accepts() {
        let schema = tier_schema().unwrap();
        let policies = TierPolicies::builtin();
        let inner = &*policies.inner;
        for input in [
            TierInput::default(),
            TierInput {
                proposal_id: "p \"1\"",
                capability: "cap/é",
                proposer: "agent-7",
                kind: "grant_entitlement",
                environment: "prod",
                blast_identities: i64::MAX,
                blast_resources: i64::MIN,
                privileged: true,
                reversible: true,
                classification: "restricted",
                classification_rank: 4,
                confidence_pct: 100,
                targets_ai: true,
                aggregate_capability: 3,
                aggregate_target: 2,
                aggregate_overall: 1,
                chain_length: 9,
            },
        ] {
            let request = inner.request(&input).unwrap();
            let validated = Request::new(
                request.principal().unwrap().clone(),
                request.action().unwrap().clone(),
                request.resource().unwrap().clone(),
                tier_context(&input).unwrap(),
                Some(schema),
            );
            assert!(validated.is_ok(), "{validated:?}");
        }
    }

    #[test]
    fn empty_fallback_matches_nothing() {
        let empty = TierPolicies::empty();
        assert!(empty.policy_ids().is_empty());
        assert_eq!(
            empty.evaluate(&TierInput::default()),
            TierOutcome::default()
        );
    }

    #[test]
    fn locate_finds_tier_and_effect() {
        let text = "// c\n@id(\"a)@tier\\\"\") // @tier\n @ tier (\"2\")\n@reason(\"x\")\npermit(principal, action, resource);";
        let (tier, effect) = locate(text, text.find('@').unwrap());
        assert!(text[tier.unwrap()..].starts_with("@ tier"));
        assert!(text[effect.unwrap()..].starts_with("permit"));
    }

    #[test]
    fn shared_across_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<TierPolicies>();
    }
}

#[cfg(test)]
mod approvals_tests {
    use super::*;

    #[test]
    fn approvals_annotation_is_reported_and_checked() {
        let p = TierPolicies::builtin();
        let out = p.evaluate(&TierInput {
            kind: "modify_role",
            privileged: true,
            confidence_pct: 95,
            ..TierInput::default()
        });
        let two = out
            .matches
            .iter()
            .find(|m| m.policy_id == "tier3-two-person-privileged")
            .expect("privileged matches the two-person policy");
        assert_eq!((two.tier, two.approvals), (3, Some(2)));
        let Err(bad) = TierPolicies::compile(
            "@tier(\"3\") @approvals(\"3\") permit(principal, action, resource);",
        ) else {
            panic!("three approvers are refused")
        };
        assert!(bad.to_string().contains("@approvals"), "{bad}");
    }
}
