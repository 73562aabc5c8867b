//! The built-in actions of the `Warrant` namespace: `request_scope` (which scopes an
//! identity may hold in a token) and `delegate` (AI-to-AI trust contracts).

use serde_json::json;
use warrant_policy::{build_principal, decide, decide_between, DecisionInput, PolicyBundle};

use crate::fixtures::{facts, SCHEMA};

const POLICIES: &str = r#"
@id("prod-readers-read")
permit(principal in Warrant::Role::"reader", action == Warrant::Action::"request_scope",
       resource == Warrant::Scope::"App:read")
when { context.environment == principal.environment && context.audience == "https://docs.example" };

@id("orchestrator-delegates-reads")
permit(principal in Warrant::Role::"orchestrator", action == Warrant::Action::"delegate",
       resource in Warrant::Role::"worker")
when { context.depth <= 2 && context.scope.containsAll(["App:read"]) && ["App:read"].containsAll(context.scope) };
"#;

fn bundle() -> PolicyBundle {
    PolicyBundle::compile(SCHEMA, POLICIES).unwrap()
}

#[test]
fn request_scope_is_decided_per_scope_token_with_environment_and_audience() {
    let b = bundle();
    let reader = build_principal(&facts("agent-1", "prod", &["reader"], &[])).unwrap();
    let ask = |scope: &str, audience: &str| {
        let ctx = json!({ "environment": "prod", "audience": audience });
        let resource = format!(r#"Warrant::Scope::"{scope}""#);
        decide(
            &b,
            &reader,
            &DecisionInput {
                action: r#"Warrant::Action::"request_scope""#,
                resource: &resource,
                context: Some(&ctx),
                entities: None,
            },
        )
        .unwrap()
    };
    assert!(ask("App:read", "https://docs.example").allowed);
    assert!(!ask("App:write", "https://docs.example").allowed);
    assert!(!ask("App:read", "https://other.example").allowed);
    // The context is typed by the built-in schema.
    let bad = json!({ "environment": "prod" });
    assert!(decide(
        &b,
        &reader,
        &DecisionInput {
            action: r#"Warrant::Action::"request_scope""#,
            resource: r#"Warrant::Scope::"App:read""#,
            context: Some(&bad),
            entities: None,
        },
    )
    .is_err());
}

#[test]
fn delegate_is_decided_between_two_identities() {
    let b = bundle();
    let orchestrator = build_principal(&facts("orch", "prod", &["orchestrator"], &[])).unwrap();
    let worker = build_principal(&facts("worker-1", "prod", &["worker"], &[])).unwrap();
    let stranger = build_principal(&facts("other-1", "prod", &["reader"], &[])).unwrap();
    let ask = |to: &warrant_policy::PrincipalEntities, scope: &[&str], depth: i64| {
        let ctx = json!({ "scope": scope, "depth": depth });
        decide_between(
            &b,
            &orchestrator,
            to,
            r#"Warrant::Action::"delegate""#,
            Some(&ctx),
        )
        .unwrap()
    };
    assert!(ask(&worker, &["App:read"], 1).allowed);
    assert!(!ask(&worker, &["App:read", "App:write"], 1).allowed);
    assert!(!ask(&worker, &["App:read"], 3).allowed);
    assert!(!ask(&stranger, &["App:read"], 1).allowed, "only to workers");
    // The reverse direction is not permitted.
    let d = decide_between(
        &b,
        &worker,
        &orchestrator,
        r#"Warrant::Action::"delegate""#,
        Some(&json!({ "scope": ["App:read"], "depth": 1 })),
    )
    .unwrap();
    assert!(!d.allowed);
}
