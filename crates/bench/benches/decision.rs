//! What `warrant_policy::decide` costs over bare Cedar, on the same machine in the same
//! run, with identical schema, policies (same ids), entities and request:
//!
//! 1. `cedar_prebuilt_request`: `Authorizer::is_authorized` with a pre-built `Request`
//!    and the principal's pre-built `Entities` (Cedar's floor).
//! 2. `cedar_parse_request`: the same plus what any server must do per request: parse
//!    the action and resource uid texts and the context JSON into a schema-validated
//!    `Request`. The context JSON is cloned here as `decide` clones it from a borrow.
//! 3. `warrant_decide`: `decide` on the same request in wire form.
#![allow(
    clippy::expect_used,
    reason = "benchmark setup: a failure must stop the run"
)]

use std::collections::{HashMap, HashSet};
use std::hint::black_box;
use std::str::FromStr;
use std::time::Duration;

use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicyId,
    PolicySet, Request, RestrictedExpression, Schema, SchemaFragment,
};
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::{json, Value};
use warrant_policy::{
    build_principal, decide, DecisionInput, PolicyBundle, PrincipalFacts, BUILTIN_SCHEMA,
};

const SCHEMA: &str = r#"
namespace App {
  entity Folder;
  entity Document in [Folder] = {
    classification: String,
    owner_env: String,
  };
  type Ctx = {
    mfa?: Bool,
    risk: Long,
    hour: Long,
    ticket?: String,
  };
  action read, write, delete, share, list, approve appliesTo {
    principal: [Warrant::Identity],
    resource: [Document, Folder],
    context: Ctx,
  };
}
"#;

const POLICIES: &str = r#"
@id("analysts-read")
@reason("analysts read documents at low risk")
permit(principal in Warrant::Role::"analyst", action == App::Action::"read", resource)
when { context.risk < 50 };

@id("writers-need-entitlement-and-mfa")
permit(principal, action == App::Action::"write", resource)
when { principal.entitlements.contains("docs:write") && context has mfa && context.mfa };

@id("no-prod-deletes")
forbid(principal in Warrant::Environment::"prod", action == App::Action::"delete", resource);

@id("oncall-delete")
permit(principal in Warrant::Role::"oncall", action == App::Action::"delete", resource)
when { context has ticket };

@id("high-risk-block")
forbid(principal, action, resource) when { context.risk >= 90 };

@id("night-writes-blocked")
forbid(principal, action == App::Action::"write", resource)
when { context.hour < 6 && !(principal in Warrant::Role::"oncall") };

@id("list-in-prod")
permit(principal in Warrant::Environment::"prod", action == App::Action::"list", resource);

@id("share-needs-entitlement")
permit(principal, action == App::Action::"share", resource)
when { principal.entitlements.contains("docs:share") && context.risk < 30 };

@id("approvers-approve")
permit(principal in Warrant::Role::"approver", action == App::Action::"approve", resource)
when { context has mfa && context.mfa };

@id("agents-cannot-approve")
forbid(principal, action == App::Action::"approve", resource)
when { principal.kind == "agent" };

@id("staging-read")
permit(principal in Warrant::Environment::"staging", action in [App::Action::"read", App::Action::"list"], resource);

@id("trust-domain")
forbid(principal, action, resource)
unless { principal.spiffe_id like "spiffe://example.org/*" };

@id("retired-kinds")
forbid(principal, action, resource) when { principal.kind == "retired" };

@id("auditors-read")
permit(principal in Warrant::Role::"auditor", action in [App::Action::"read", App::Action::"list"], resource);

@id("owner-alice-share")
permit(principal, action == App::Action::"share", resource)
when { principal.owner == Warrant::Human::"alice" && context.risk < 60 };

@id("dev-low-risk")
permit(principal in Warrant::Environment::"dev", action, resource)
when { context.risk < 10 };
"#;

const ACTION: &str = r#"App::Action::"read""#;
const RESOURCE: &str = r#"App::Document::"q3-report""#;

fn facts() -> PrincipalFacts {
    PrincipalFacts {
        id: "agent-7".into(),
        name: "triage-bot".into(),
        kind: "agent".into(),
        environment: "prod".into(),
        owner: "alice".into(),
        spiffe_id: "spiffe://example.org/prod/triage-bot".into(),
        roles: vec!["analyst".into(), "oncall".into()],
        entitlements: vec!["docs:read".into(), "docs:write".into()],
    }
}

fn context_json() -> Value {
    json!({ "mfa": true, "risk": 20, "hour": 14 })
}

fn uid(ty: &str, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(
        EntityTypeName::from_str(ty).expect("type name"),
        EntityId::new(id),
    )
}

/// The principal's entities, built with Cedar's API exactly as `build_principal` does.
fn cedar_principal(f: &PrincipalFacts) -> (EntityUid, Entities) {
    let principal = uid("Warrant::Identity", &f.id);
    let owner = uid("Warrant::Human", &f.owner);
    let env = uid("Warrant::Environment", &f.environment);
    let roles: HashSet<EntityUid> = f.roles.iter().map(|r| uid("Warrant::Role", r)).collect();
    let s = |v: &String| RestrictedExpression::new_string(v.clone());
    let attrs = HashMap::from([
        ("name".to_owned(), s(&f.name)),
        ("kind".to_owned(), s(&f.kind)),
        ("environment".to_owned(), s(&f.environment)),
        (
            "owner".to_owned(),
            RestrictedExpression::new_entity_uid(owner.clone()),
        ),
        ("spiffe_id".to_owned(), s(&f.spiffe_id)),
        (
            "entitlements".to_owned(),
            RestrictedExpression::new_set(f.entitlements.iter().map(s)),
        ),
    ]);
    let mut parents = roles.clone();
    parents.insert(env.clone());
    let mut all = vec![
        Entity::new(principal.clone(), attrs, parents).expect("identity entity"),
        Entity::new_no_attrs(env, HashSet::new()),
        Entity::new_no_attrs(owner, HashSet::new()),
    ];
    all.extend(
        roles
            .into_iter()
            .map(|r| Entity::new_no_attrs(r, HashSet::new())),
    );
    (
        principal,
        Entities::from_entities(all, None).expect("entities"),
    )
}

/// The policy set with the same ids `PolicyBundle` assigns (`@id`).
fn cedar_policies() -> PolicySet {
    let parsed = PolicySet::from_str(POLICIES).expect("policies parse");
    let mut set = PolicySet::new();
    for p in parsed.policies() {
        let id = p.annotation("id").expect("every bench policy has an @id");
        set.add(p.new_id(PolicyId::new(id))).expect("unique ids");
    }
    set
}

fn cedar_schema() -> Schema {
    let (builtin, _) = SchemaFragment::from_cedarschema_str(BUILTIN_SCHEMA).expect("builtin");
    let (user, _) = SchemaFragment::from_cedarschema_str(SCHEMA).expect("schema");
    Schema::from_schema_fragments([builtin, user]).expect("combined schema")
}

fn parse_request(schema: &Schema, principal: &EntityUid, context: &Value) -> Request {
    let action = EntityUid::from_str(ACTION).expect("action");
    let resource = EntityUid::from_str(RESOURCE).expect("resource");
    let context =
        Context::from_json_value(context.clone(), Some((schema, &action))).expect("context");
    Request::new(principal.clone(), action, resource, context, Some(schema)).expect("request")
}

fn decision(c: &mut Criterion) {
    let schema = cedar_schema();
    let policies = cedar_policies();
    let (principal_uid, entities) = cedar_principal(&facts());
    let context = context_json();
    let request = parse_request(&schema, &principal_uid, &context);
    let authorizer = Authorizer::new();

    let bundle = PolicyBundle::compile(SCHEMA, POLICIES).expect("bundle compiles");
    let principal = build_principal(&facts()).expect("principal");
    let input = DecisionInput {
        action: ACTION,
        resource: RESOURCE,
        context: Some(&context),
        entities: None,
    };

    // The three cases must evaluate the same thing.
    let mut cedar_ids: Vec<String> = policies.policies().map(|p| p.id().to_string()).collect();
    let mut warrant_ids = bundle.policy_ids();
    cedar_ids.sort();
    warrant_ids.sort();
    assert_eq!(cedar_ids, warrant_ids, "same policy ids");
    assert_eq!(principal.uid_string(), principal_uid.to_string());
    let bare = authorizer.is_authorized(&request, &policies, &entities);
    let ours = decide(&bundle, &principal, &input).expect("valid request");
    let mut bare_reasons: Vec<String> = bare
        .diagnostics()
        .reason()
        .map(ToString::to_string)
        .collect();
    bare_reasons.sort();
    let ours_reasons: Vec<String> = ours.determining.iter().map(|d| d.id.clone()).collect();
    assert_eq!(bare.decision() == Decision::Allow, ours.allowed);
    assert!(ours.allowed, "the benchmark request is an allow");
    assert_eq!(bare_reasons, ours_reasons);
    assert_eq!(bare.diagnostics().errors().count(), 0);

    let mut group = c.benchmark_group("decision");
    group.bench_function("cedar_prebuilt_request", |b| {
        b.iter(|| {
            black_box(authorizer.is_authorized(
                black_box(&request),
                black_box(&policies),
                black_box(&entities),
            ))
        });
    });
    group.bench_function("cedar_parse_request", |b| {
        b.iter(|| {
            let request = parse_request(&schema, &principal_uid, black_box(&context));
            black_box(authorizer.is_authorized(&request, &policies, black_box(&entities)))
        });
    });
    group.bench_function("warrant_decide", |b| {
        b.iter(|| black_box(decide(&bundle, &principal, black_box(&input))));
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = decision
}
criterion_main!(benches);
