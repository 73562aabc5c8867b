//! Tier policies: the shipped defaults at their boundaries, compile diagnostics, and
//! evaluation errors.

use warrant_policy::{
    Diagnostic, PolicyErrors, SourceKind, TierInput, TierMatch, TierOutcome, TierPolicies,
    DEFAULT_TIER_POLICIES, TIER_SCHEMA,
};

/// A proposal that matches `tier1-small-revocation` and `tier2-small-entitlement-change`
/// exactly at their boundaries.
fn revocation() -> TierInput<'static> {
    TierInput {
        proposal_id: "prop-1",
        capability: "cap-triage",
        proposer: "agent-7",
        kind: "revoke_entitlement",
        environment: "prod",
        blast_identities: 1,
        blast_resources: 3,
        privileged: false,
        reversible: true,
        classification: "internal",
        classification_rank: 2,
        confidence_pct: 90,
        targets_ai: false,
        aggregate_capability: 0,
        aggregate_target: 0,
        aggregate_overall: 0,
        chain_length: 0,
    }
}

fn ids(outcome: &TierOutcome) -> Vec<&str> {
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    outcome
        .matches
        .iter()
        .map(|m| m.policy_id.as_str())
        .collect()
}

/// The default policies a proposal matches, other than the two-person rule for
/// privileged changes (checked on its own in `privileged_changes_need_two_approvers`).
fn matched(input: &TierInput<'_>) -> Vec<String> {
    ids(&TierPolicies::builtin().evaluate(input))
        .into_iter()
        .filter(|id| *id != "tier3-two-person-privileged")
        .map(str::to_owned)
        .collect()
}

#[test]
fn privileged_changes_need_two_approvers() {
    let out = TierPolicies::builtin().evaluate(&TierInput {
        kind: "grant_entitlement",
        privileged: true,
        confidence_pct: 99,
        ..TierInput::default()
    });
    assert_eq!(ids(&out), ["tier3-two-person-privileged"]);
    assert_eq!(out.matches[0].approvals, Some(2));
    let out = TierPolicies::builtin().evaluate(&TierInput {
        kind: "grant_entitlement",
        privileged: false,
        confidence_pct: 99,
        ..TierInput::default()
    });
    assert!(!ids(&out).contains(&"tier3-two-person-privileged"));
}

fn errors(text: &str) -> PolicyErrors {
    match TierPolicies::compile(text) {
        Ok(p) => panic!("expected errors, compiled {:?}", p.policy_ids()),
        Err(e) => e,
    }
}

fn only(errs: &PolicyErrors) -> &Diagnostic {
    assert_eq!(errs.diagnostics.len(), 1, "{errs}");
    &errs.diagnostics[0]
}

#[test]
fn builtin_compiles_with_its_ids() {
    let builtin = TierPolicies::builtin();
    assert_eq!(
        builtin.policy_ids(),
        [
            "tier1-small-revocation",
            "tier2-small-entitlement-change",
            "tier2-suspend-one",
            "tier3-two-person-privileged",
            "tier4-retire",
            "tier4-low-confidence",
        ]
    );
    assert_eq!(builtin.text(), DEFAULT_TIER_POLICIES);
    assert!(TIER_SCHEMA.contains("namespace Tier"));
}

#[test]
fn tier1_small_revocation_boundaries() {
    let t1 = "tier1-small-revocation";
    let base = revocation();
    let outcome = TierPolicies::builtin().evaluate(&base);
    // The Tier 1 case matches Tier 1 only (the Tier 2 policy leaves it alone): the
    // highest matching tier wins, so a broader Tier 2 match would swallow it.
    assert_eq!(
        outcome.matches,
        [TierMatch {
            policy_id: t1.into(),
            tier: 1,
            reason: Some("revokes one non-privileged, reversible entitlement on internal or lower data, proposed with high confidence".into()),
            approvals: None,
        }]
    );
    assert_eq!(outcome.highest(), Some(1));
    for (what, input) in [
        (
            "two identities",
            TierInput {
                blast_identities: 2,
                ..base
            },
        ),
        (
            "privileged",
            TierInput {
                privileged: true,
                ..base
            },
        ),
        (
            "irreversible",
            TierInput {
                reversible: false,
                ..base
            },
        ),
        (
            "confidential",
            TierInput {
                classification_rank: 3,
                ..base
            },
        ),
        (
            "89% confident",
            TierInput {
                confidence_pct: 89,
                ..base
            },
        ),
        (
            "a grant",
            TierInput {
                kind: "grant_entitlement",
                ..base
            },
        ),
    ] {
        assert!(!matched(&input).contains(&t1.to_owned()), "{what}");
    }
    for (what, input) in [
        (
            "no identity",
            TierInput {
                blast_identities: 0,
                ..base
            },
        ),
        (
            "public",
            TierInput {
                classification_rank: 1,
                ..base
            },
        ),
        (
            "fully confident",
            TierInput {
                confidence_pct: 100,
                ..base
            },
        ),
    ] {
        assert!(matched(&input).contains(&t1.to_owned()), "{what}");
    }
}

#[test]
fn tier2_small_entitlement_change_boundaries() {
    let t2 = "tier2-small-entitlement-change";
    let base = TierInput {
        kind: "grant_entitlement",
        blast_identities: 5,
        classification_rank: 3,
        confidence_pct: 60,
        ..revocation()
    };
    assert_eq!(matched(&base), [t2]);
    for kind in ["revoke_entitlement", "modify_role"] {
        assert_eq!(matched(&TierInput { kind, ..base }), [t2], "{kind}");
    }
    for (what, input) in [
        (
            "six identities",
            TierInput {
                blast_identities: 6,
                ..base
            },
        ),
        (
            "privileged",
            TierInput {
                privileged: true,
                ..base
            },
        ),
        (
            "irreversible",
            TierInput {
                reversible: false,
                ..base
            },
        ),
        (
            "restricted",
            TierInput {
                classification_rank: 4,
                ..base
            },
        ),
        (
            "create_role",
            TierInput {
                kind: "create_role",
                ..base
            },
        ),
        (
            "modify_trust",
            TierInput {
                kind: "modify_trust",
                ..base
            },
        ),
    ] {
        assert!(matched(&input).is_empty(), "{what}: {:?}", matched(&input));
    }
}

#[test]
fn tier2_suspend_one_boundaries() {
    let base = TierInput {
        kind: "suspend_identity",
        blast_identities: 1,
        reversible: false,
        classification_rank: 4,
        confidence_pct: 50,
        ..revocation()
    };
    assert_eq!(matched(&base), ["tier2-suspend-one"]);
    assert!(matched(&TierInput {
        blast_identities: 2,
        ..base
    })
    .is_empty());
    assert!(matched(&TierInput {
        privileged: true,
        ..base
    })
    .is_empty());
}

#[test]
fn tier4_policies_and_the_highest_of_several() {
    let retire = TierInput {
        kind: "retire_identity",
        ..revocation()
    };
    assert_eq!(matched(&retire), ["tier4-retire"]);

    let unsure = TierInput {
        confidence_pct: 49,
        ..revocation()
    };
    let outcome = TierPolicies::builtin().evaluate(&unsure);
    assert_eq!(
        ids(&outcome),
        ["tier4-low-confidence", "tier2-small-entitlement-change"]
    );
    assert_eq!(outcome.highest(), Some(4));
    assert_eq!(
        matched(&TierInput {
            confidence_pct: 50,
            ..revocation()
        }),
        ["tier2-small-entitlement-change"]
    );

    // Several tier-4 matches are ordered by id after the tier.
    let both = TierInput {
        kind: "retire_identity",
        confidence_pct: 10,
        ..revocation()
    };
    assert_eq!(matched(&both), ["tier4-low-confidence", "tier4-retire"]);
}

#[test]
fn unmatched_proposals_match_nothing() {
    for kind in [
        "create_role",
        "delete_role",
        "modify_trust",
        "change_auth_requirement",
    ] {
        assert!(
            matched(&TierInput {
                kind,
                ..revocation()
            })
            .is_empty(),
            "{kind}"
        );
    }
    // All-zero facts: no confidence at all is a recommendation only.
    assert_eq!(matched(&TierInput::default()), ["tier4-low-confidence"]);
}

#[test]
fn empty_text_compiles_to_no_policies() {
    for text in ["", "  // nothing yet\n"] {
        let policies = TierPolicies::compile(text).unwrap();
        assert!(policies.policy_ids().is_empty());
        let outcome = policies.evaluate(&TierInput {
            kind: "retire_identity",
            ..revocation()
        });
        assert_eq!(outcome, TierOutcome::default());
        assert_eq!(outcome.highest(), None);
    }
}

#[test]
fn default_ids_and_context_attributes() {
    let text = r#"@tier("3") permit(principal, action, resource) when { context.targets_ai };
@tier("1") @reason("same env") permit(principal == Tier::Capability::"cap-triage", action, resource == Tier::Proposal::"prop-1")
  when { context.environment == "prod" && context.capability == "cap-triage" && context.proposer == "agent-7" };"#;
    let policies = TierPolicies::compile(text).unwrap();
    assert_eq!(policies.policy_ids(), ["policy0", "policy1"]);
    let outcome = policies.evaluate(&TierInput {
        targets_ai: true,
        ..revocation()
    });
    assert_eq!(
        outcome.matches,
        [
            TierMatch {
                policy_id: "policy0".into(),
                tier: 3,
                reason: None,
                approvals: None,
            },
            TierMatch {
                policy_id: "policy1".into(),
                tier: 1,
                reason: Some("same env".into()),
                approvals: None,
            },
        ]
    );
    let other = policies.evaluate(&TierInput {
        capability: "cap-other",
        ..revocation()
    });
    assert!(other.matches.is_empty());
}

#[test]
fn missing_tier_is_a_diagnostic_at_the_effect() {
    let text = "@id(\"t1\")\n@tier(\"1\")\npermit(principal, action, resource);\n\n@id(\"untiered\")\n@reason(\"x\")\npermit(principal, action, resource);\n";
    let errs = errors(text);
    let d = only(&errs);
    assert_eq!(d.source, SourceKind::Policies);
    assert_eq!(d.policy_id.as_deref(), Some("untiered"));
    assert!(d.message.contains("no `@tier` annotation"), "{d}");
    assert!(d.help.as_deref().unwrap().contains("@tier(\"2\")"), "{d:?}");
    assert_eq!((d.line, d.column), (Some(7), Some(1)), "{d:?}");
    assert_eq!(
        d.snippet.as_deref(),
        Some("permit(principal, action, resource);")
    );
}

#[test]
fn bad_tier_values_are_diagnostics_at_the_annotation() {
    for value in ["5", "x", "0", "01", " 1", ""] {
        let text = format!("@id(\"p\") @tier(\"{value}\")\npermit(principal, action, resource);");
        let errs = errors(&text);
        let d = only(&errs);
        assert_eq!(d.policy_id.as_deref(), Some("p"));
        assert!(
            d.message.contains(&format!(
                "has `@tier({value:?})`: the tier must be \"1\", \"2\", \"3\" or \"4\""
            )),
            "{d}"
        );
        assert_eq!((d.line, d.column), (Some(1), Some(10)), "{value}: {d:?}");
    }
}

#[test]
fn forbid_is_refused() {
    let text = "@tier(\"4\")\nforbid(principal, action, resource) when { context.privileged };";
    let errs = errors(text);
    let d = only(&errs);
    assert_eq!(d.policy_id.as_deref(), Some("policy0"));
    assert!(d.message.contains("is a `forbid` policy"), "{d}");
    assert!(d.message.contains("may only `permit`"), "{d}");
    assert_eq!((d.line, d.column), (Some(2), Some(1)), "{d:?}");
}

#[test]
fn schema_errors_are_positioned() {
    let text = "@id(\"nope\") @tier(\"2\")\npermit(principal, action, resource)\n  when { context.nope > 1 };";
    let errs = errors(text);
    let d = only(&errs);
    assert_eq!(d.policy_id.as_deref(), Some("nope"));
    assert!(d.message.contains("nope"), "{d}");
    assert_eq!(d.line, Some(3), "{d:?}");
    assert!(d.to_string().starts_with("policies:3:"), "{d}");

    // Types are checked too: a string is not compared with a number.
    let errs =
        errors("@tier(\"2\") permit(principal, action, resource) when { context.kind > 1 };");
    assert_eq!(errs.diagnostics.len(), 1, "{errs}");
    // And the entity types are the schema's.
    let errs =
        errors("@tier(\"2\") permit(principal == Warrant::Identity::\"x\", action, resource);");
    assert!(!errs.diagnostics.is_empty());
}

#[test]
fn every_problem_is_reported_in_source_order() {
    let text = r#"@id("a") permit(principal, action, resource);
@id("b") @tier("9") permit(principal, action, resource);
@id("c") @tier("2") permit(principal, action, resource) when { context.nope };
@id("a") @tier("2") permit(principal, action, resource);
"#;
    let errs = errors(text);
    // A duplicate id is found while parsing, before anything else is checked.
    assert_eq!(errs.diagnostics.len(), 1, "{errs}");
    assert!(errs.diagnostics[0]
        .message
        .contains("duplicate policy id `a`"));

    let text = r#"@id("a") permit(principal, action, resource);
@id("b") @tier("9") permit(principal, action, resource);
@id("c") @tier("2") permit(principal, action, resource) when { context.nope };
"#;
    let errs = errors(text);
    let lines: Vec<_> = errs.diagnostics.iter().map(|d| d.line).collect();
    assert_eq!(lines, [Some(1), Some(2), Some(3)], "{errs}");
}

#[test]
fn syntax_errors_and_templates_are_diagnostics() {
    let errs = errors("@tier(\"1\") permit(principal, action, resource) when { context.kind == };");
    assert!(errs.diagnostics[0].line.is_some(), "{errs}");
    let errs = errors("@tier(\"1\") permit(principal == ?principal, action, resource);");
    assert!(errs.diagnostics[0]
        .message
        .contains("templates are not supported"));
}

#[test]
fn runtime_errors_are_listed_not_matched() {
    let text = r#"@id("overflow") @tier("1")
permit(principal, action, resource) when { context.blast_identities * 9223372036854775807 > 0 };
@id("fine") @tier("2")
permit(principal, action, resource);
"#;
    let policies = TierPolicies::compile(text).unwrap();
    let outcome = policies.evaluate(&TierInput {
        blast_identities: 2,
        ..revocation()
    });
    assert_eq!(outcome.highest(), Some(2));
    assert_eq!(outcome.matches.len(), 1);
    assert_eq!(outcome.errors.len(), 1, "{:?}", outcome.errors);
    assert!(
        outcome.errors[0].starts_with("overflow: "),
        "{:?}",
        outcome.errors
    );
    assert!(
        outcome.errors[0].contains("overflow"),
        "{:?}",
        outcome.errors
    );

    // Without the overflow, the same policy matches.
    let outcome = policies.evaluate(&TierInput {
        blast_identities: 1,
        ..revocation()
    });
    assert!(outcome.errors.is_empty());
    assert_eq!(outcome.highest(), Some(2));
    assert_eq!(ids(&outcome), ["fine", "overflow"]);
}

#[test]
fn odd_ids_never_panic() {
    let input = TierInput {
        proposal_id: "",
        capability: "\"\\\u{0}é",
        kind: "retire_identity",
        ..revocation()
    };
    assert_eq!(matched(&input), ["tier4-retire"]);
}
