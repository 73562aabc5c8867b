//! The final tier: the highest tier any tier policy matched (none: Tier 3), raised by the
//! hard floor and by escalations. No policy can lower a tier below the floor.

use super::model::*;

/// Configuration of the hard floor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Floor {
    /// Changes that alter more identities than this are at least Tier 3.
    pub max_blast_radius: u64,
}

impl Default for Floor {
    fn default() -> Self {
        Floor {
            max_blast_radius: 10,
        }
    }
}

/// The tier a proposal gets when nothing matched, and the least a floor rule sets.
pub const DEFAULT_TIER: u8 = 3;

/// Floor rules that apply to a change; each means at least Tier 3.
pub fn floor_rules(kind: ChangeKind, a: &Assessment, floor: &Floor) -> Vec<String> {
    let mut out = Vec::new();
    match kind {
        ChangeKind::CreateRole | ChangeKind::DeleteRole if a.privileged => out.push(format!(
            "floor: {} of a privileged role ({})",
            if kind == ChangeKind::CreateRole {
                "creation"
            } else {
                "deletion"
            },
            a.privileged_because.join("; ")
        )),
        ChangeKind::ModifyTrust => out.push("floor: trust-relationship change".into()),
        ChangeKind::ChangeAuthRequirement => {
            out.push("floor: authentication-requirement change".into())
        }
        _ => {}
    }
    if a.identities_count > floor.max_blast_radius {
        out.push(format!(
            "floor: blast radius {} exceeds the configured maximum of {} identities",
            a.identities_count, floor.max_blast_radius
        ));
    }
    out
}

/// Every floor rule for a proposal: [`floor_rules`], plus the rules that need to know who
/// proposes: a change that makes a role privileged (or not), an irreversible change, and
/// a change from which the proposing identity itself would gain access.
pub fn floor_for(kind: ChangeKind, a: &Assessment, floor: &Floor, proposer: &str) -> Vec<String> {
    let mut out = floor_rules(kind, a, floor);
    if a.privilege_change {
        out.push("floor: change of a role's privileged flag".into());
    }
    if !a.reversible {
        out.push("floor: irreversible change (no inverse to revert it)".into());
    }
    if a.beneficiaries.iter().any(|b| b == proposer) {
        out.push("floor: the proposing identity would gain access itself".into());
    }
    out
}

/// Combines policy matches, floor and escalations into the tier decision.
/// `policy_errors` (a tier policy that failed to evaluate) escalate: fail closed.
pub fn decide(
    mut policies: Vec<TierReason>,
    policy_errors: Vec<String>,
    policy_version: u64,
    floor: Vec<String>,
    mut escalations: Vec<String>,
) -> TierDecision {
    policies.sort_by(|a, b| b.tier.cmp(&a.tier).then_with(|| a.policy.cmp(&b.policy)));
    escalations.extend(
        policy_errors
            .into_iter()
            .map(|e| format!("tier policy failed to evaluate: {e}")),
    );
    let defaulted = policies.is_empty();
    let by_policy = policies.first().map_or(DEFAULT_TIER, |p| p.tier);
    let tier = if floor.is_empty() && escalations.is_empty() {
        by_policy
    } else {
        by_policy.max(DEFAULT_TIER)
    };
    TierDecision {
        tier,
        policies,
        policy_version,
        defaulted,
        floor,
        escalations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(policy: &str, tier: u8) -> TierReason {
        TierReason {
            policy: policy.into(),
            tier,
            reason: None,
        }
    }

    #[test]
    fn highest_match_wins_and_nothing_means_three() {
        assert_eq!(
            decide(vec![m("a", 1), m("b", 2)], vec![], 1, vec![], vec![]).tier,
            2
        );
        let d = decide(vec![], vec![], 1, vec![], vec![]);
        assert_eq!((d.tier, d.defaulted), (3, true));
        assert_eq!(decide(vec![m("x", 4)], vec![], 1, vec![], vec![]).tier, 4);
    }

    #[test]
    fn floor_and_escalations_never_lower_and_always_raise_to_three() {
        let d = decide(vec![m("a", 1)], vec![], 1, vec!["floor: x".into()], vec![]);
        assert_eq!(d.tier, 3);
        let d = decide(vec![m("a", 4)], vec![], 1, vec!["floor: x".into()], vec![]);
        assert_eq!(d.tier, 4);
        let d = decide(
            vec![m("a", 1)],
            vec!["p: overflow".into()],
            1,
            vec![],
            vec![],
        );
        assert_eq!(d.tier, 3);
        assert!(d.escalations[0].contains("overflow"));
    }

    #[test]
    fn floor_rules_apply() {
        let mut a = Assessment {
            privileged: true,
            privileged_because: vec!["role `admin` is privileged".into()],
            ..Default::default()
        };
        let f = Floor::default();
        assert_eq!(floor_rules(ChangeKind::CreateRole, &a, &f).len(), 1);
        assert_eq!(floor_rules(ChangeKind::DeleteRole, &a, &f).len(), 1);
        assert!(floor_rules(ChangeKind::ModifyRole, &a, &f).is_empty());
        a.privileged = false;
        assert!(floor_rules(ChangeKind::CreateRole, &a, &f).is_empty());
        assert_eq!(floor_rules(ChangeKind::ModifyTrust, &a, &f).len(), 1);
        assert_eq!(
            floor_rules(ChangeKind::ChangeAuthRequirement, &a, &f).len(),
            1
        );
        a.identities_count = 11;
        assert_eq!(floor_rules(ChangeKind::GrantEntitlement, &a, &f).len(), 1);
        a.identities_count = 10;
        assert!(floor_rules(ChangeKind::GrantEntitlement, &a, &f).is_empty());
    }
}
