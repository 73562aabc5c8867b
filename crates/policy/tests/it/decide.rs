//! Decisions: allow with explanation, forbid over permit, default deny, evaluation
//! errors, malformed requests, and resource entities carried by the request.

use serde_json::{json, Value};
use warrant_policy::{
    decide, Decision, DecisionInput, Effect, PolicyBundle, PrincipalEntities, RequestError,
};

use crate::fixtures::{bundle, principal, SCHEMA};

const READ: &str = r#"App::Action::"read""#;
const WRITE: &str = r#"App::Action::"write""#;
const DELETE: &str = r#"App::Action::"delete""#;
const DOC: &str = r#"App::Document::"q3-report""#;

fn input<'a>(
    action: &'a str,
    context: Option<&'a Value>,
    entities: Option<&'a Value>,
) -> DecisionInput<'a> {
    DecisionInput {
        action,
        resource: DOC,
        context,
        entities,
    }
}

fn run(bundle: &PolicyBundle, p: &PrincipalEntities, i: DecisionInput<'_>) -> Decision {
    decide(bundle, p, &i).unwrap()
}

fn ids(d: &Decision) -> Vec<&str> {
    d.determining.iter().map(|p| p.id.as_str()).collect()
}

#[test]
fn role_member_is_allowed_with_the_determining_policy_and_its_reason() {
    let b = bundle();
    let analyst = principal("agent-1", "prod", &["analyst"], &[]);
    let ctx = json!({ "risk": 10 });
    let d = run(&b, &analyst, input(READ, Some(&ctx), None));
    assert!(d.allowed, "{d:?}");
    assert_eq!(ids(&d), ["analysts-read"]);
    assert_eq!(d.determining[0].effect, Effect::Permit);
    assert_eq!(
        d.determining[0]
            .annotations
            .get("reason")
            .map(String::as_str),
        Some("analysts may read documents at low risk")
    );
    assert_eq!(
        d.determining[0].annotations.get("id").map(String::as_str),
        Some("analysts-read")
    );
    assert_eq!(
        d.summary(),
        "allowed by policy `analysts-read`: analysts may read documents at low risk"
    );
}

#[test]
fn context_condition_is_applied() {
    let b = bundle();
    let analyst = principal("agent-1", "prod", &["analyst"], &[]);
    let ctx = json!({ "risk": 50 });
    let d = run(&b, &analyst, input(READ, Some(&ctx), None));
    assert!(!d.allowed);
    assert!(d.determining.is_empty());
}

#[test]
fn entitlement_and_optional_context_attribute() {
    let b = bundle();
    let writer = principal("agent-2", "dev", &[], &["docs:write"]);
    let reader = principal("agent-3", "dev", &[], &["docs:read"]);
    let mfa = json!({ "risk": 90, "mfa": true });
    let no_mfa = json!({ "risk": 1 });
    assert_eq!(
        ids(&run(&b, &writer, input(WRITE, Some(&mfa), None))),
        ["writers-with-entitlement"]
    );
    assert!(run(&b, &writer, input(WRITE, Some(&mfa), None)).allowed);
    assert!(!run(&b, &writer, input(WRITE, Some(&no_mfa), None)).allowed);
    assert!(!run(&b, &reader, input(WRITE, Some(&mfa), None)).allowed);
}

#[test]
fn forbid_beats_permit() {
    let b = bundle();
    let ctx = json!({ "risk": 0 });
    let prod_oncall = principal("agent-4", "prod", &["oncall"], &[]);
    let d = run(&b, &prod_oncall, input(DELETE, Some(&ctx), None));
    assert!(!d.allowed);
    assert_eq!(ids(&d), ["no-prod-deletes"]);
    assert_eq!(d.determining[0].effect, Effect::Forbid);
    assert_eq!(
        d.summary(),
        "denied by policy `no-prod-deletes`: nobody deletes from prod"
    );

    // the same role outside prod is allowed
    let dev_oncall = principal("agent-5", "dev", &["oncall"], &[]);
    let d = run(&b, &dev_oncall, input(DELETE, Some(&ctx), None));
    assert!(d.allowed);
    assert_eq!(ids(&d), ["oncall-delete"]);
}

#[test]
fn nothing_matches_means_default_deny() {
    let b = bundle();
    let nobody = principal("agent-6", "dev", &[], &[]);
    let ctx = json!({ "risk": 0 });
    let d = run(&b, &nobody, input(DELETE, Some(&ctx), None));
    assert!(!d.allowed);
    assert!(d.determining.is_empty());
    assert!(d.errors.is_empty());
    assert_eq!(d.summary(), "no permit policy matched (default deny)");
}

#[test]
fn evaluation_error_is_listed_and_never_allows() {
    // `policy4` reads the resource's attributes; without resource entities the resource
    // does not exist and the policy errors. Strict validation accepts it.
    let b = bundle();
    let nobody = principal("agent-6", "prod", &[], &[]);
    let ctx = json!({ "risk": 0 });
    let d = run(&b, &nobody, input(READ, Some(&ctx), None));
    assert!(!d.allowed);
    assert!(d.determining.is_empty());
    assert_eq!(d.errors.len(), 1, "{d:?}");
    assert_eq!(d.errors[0].policy_id, "policy4");
    assert!(d.errors[0].message.contains("q3-report"), "{d:?}");
    assert_eq!(
        d.summary(),
        "no permit policy matched (default deny); 1 policy failed to evaluate"
    );

    // an erroring policy does not hide another policy's allow
    let analyst = principal("agent-1", "prod", &["analyst"], &[]);
    let d = run(&b, &analyst, input(READ, Some(&ctx), None));
    assert!(d.allowed);
    assert_eq!(ids(&d), ["analysts-read"]);
    assert_eq!(d.errors.len(), 1);
}

#[test]
fn resource_entities_from_the_request_are_used() {
    let b = bundle();
    let nobody = principal("agent-6", "prod", &[], &[]);
    let ctx = json!({ "risk": 0 });
    let doc = |classification: &str, env: &str| {
        json!([{
            "uid": { "type": "App::Document", "id": "q3-report" },
            "attrs": { "classification": classification, "owner_env": env },
            "parents": []
        }])
    };
    let public = doc("public", "prod");
    let d = run(&b, &nobody, input(READ, Some(&ctx), Some(&public)));
    assert!(d.allowed, "{d:?}");
    assert_eq!(ids(&d), ["policy4"]);
    assert!(d.errors.is_empty());
    assert_eq!(d.summary(), "allowed by policy `policy4`");

    let secret = doc("secret", "prod");
    let d = run(&b, &nobody, input(READ, Some(&ctx), Some(&secret)));
    assert!(!d.allowed);
    assert!(d.errors.is_empty());

    // principal attributes still come from the pre-built entities
    let other_env = doc("public", "dev");
    assert!(!run(&b, &nobody, input(READ, Some(&ctx), Some(&other_env))).allowed);

    // and the pre-built entities are unchanged by a request that carried entities
    let d = run(&b, &nobody, input(READ, Some(&ctx), None));
    assert_eq!(d.errors.len(), 1);
}

fn request_error(b: &PolicyBundle, i: DecisionInput<'_>) -> RequestError {
    let p = principal("agent-1", "prod", &["analyst", "oncall"], &["docs:write"]);
    match decide(b, &p, &i) {
        Ok(d) => panic!("expected a request error, got {d:?}"),
        Err(e) => e,
    }
}

#[test]
fn context_of_the_wrong_type_is_a_request_error() {
    let b = bundle();
    let ctx = json!({ "risk": "high" });
    let e = request_error(&b, input(READ, Some(&ctx), None));
    assert!(matches!(e, RequestError::InvalidContext { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        r#"invalid context for action `App::Action::"read"`: expected `{ mfa?: Bool, risk: Long }`, got `{risk: "high"}`"#
    );

    let extra = json!({ "risk": 1, "unexpected": true });
    let e = request_error(&b, input(READ, Some(&extra), None));
    assert!(matches!(e, RequestError::InvalidContext { .. }), "{e:?}");

    let not_object = json!([1]);
    let e = request_error(&b, input(READ, Some(&not_object), None));
    assert!(matches!(e, RequestError::ContextNotObject), "{e:?}");

    // `risk` is required
    let e = request_error(&b, input(READ, None, None));
    assert!(matches!(e, RequestError::InvalidContext { .. }), "{e:?}");
}

#[test]
fn unknown_or_malformed_action_is_a_request_error() {
    let b = bundle();
    let ctx = json!({ "risk": 0 });
    let e = request_error(&b, input(r#"App::Action::"fly""#, Some(&ctx), None));
    assert!(matches!(e, RequestError::UnknownAction { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        r#"unknown action `App::Action::"fly"`: it is not declared in the schema"#
    );
    let e = request_error(&b, input("App::Action::", Some(&ctx), None));
    assert!(matches!(e, RequestError::InvalidAction { .. }), "{e:?}");

    // cedar wants uids in normalized form
    let spaced = r#"App :: Action :: "read""#;
    let e = request_error(&b, input(spaced, Some(&ctx), None));
    assert!(matches!(e, RequestError::InvalidAction { .. }), "{e:?}");
}

#[test]
fn resource_the_action_does_not_apply_to_is_a_request_error() {
    let b = bundle();
    let ctx = json!({ "risk": 0 });
    let mut i = input(READ, Some(&ctx), None);
    i.resource = r#"App::Folder::"f""#;
    let e = request_error(&b, i);
    assert!(matches!(e, RequestError::InvalidRequest { .. }), "{e:?}");
    i.resource = "not a uid";
    let e = request_error(&b, i);
    assert!(matches!(e, RequestError::InvalidResource { .. }), "{e:?}");
}

#[test]
fn invalid_or_reserved_request_entities_are_refused() {
    let b = bundle();
    let ctx = json!({ "risk": 0 });
    let wrong_type = json!([{
        "uid": { "type": "App::Document", "id": "q3-report" },
        "attrs": { "classification": 5, "owner_env": "prod" },
        "parents": []
    }]);
    let e = request_error(&b, input(READ, Some(&ctx), Some(&wrong_type)));
    assert!(matches!(e, RequestError::InvalidEntities { .. }), "{e:?}");

    let not_array = json!({});
    let e = request_error(&b, input(READ, Some(&ctx), Some(&not_array)));
    assert!(matches!(e, RequestError::EntitiesNotArray), "{e:?}");

    let role =
        json!([{ "uid": { "type": "Warrant::Role", "id": "admin" }, "attrs": {}, "parents": [] }]);
    let e = request_error(&b, input(READ, Some(&ctx), Some(&role)));
    assert!(matches!(e, RequestError::ReservedEntity { .. }), "{e:?}");

    let action =
        json!([{ "uid": { "type": "App::Action", "id": "read" }, "attrs": {}, "parents": [] }]);
    let e = request_error(&b, input(READ, Some(&ctx), Some(&action)));
    assert!(matches!(e, RequestError::ReservedEntity { .. }), "{e:?}");
}

const GROUP_SCHEMA: &str = r#"
namespace App {
  entity Document;
  type Ctx = { risk: Long };
  action mutate;
  action write, delete in [mutate] appliesTo {
    principal: [Warrant::Identity],
    resource: [Document],
    context: Ctx,
  };
}
"#;

#[test]
fn action_groups_are_honoured() {
    let policies = r#"
@id("writes")
permit(principal, action in [App::Action::"write", App::Action::"delete"], resource);
@id("risky-mutations")
forbid(principal, action in App::Action::"mutate", resource) when { context.risk > 80 };
"#;
    let b = PolicyBundle::compile(GROUP_SCHEMA, policies).unwrap();
    let p = principal("agent-1", "prod", &[], &[]);
    let risky = json!({ "risk": 90 });
    let calm = json!({ "risk": 10 });
    for _ in 0..2 {
        let d = run(&b, &p, input(WRITE, Some(&risky), None));
        assert!(!d.allowed, "{d:?}");
        assert_eq!(ids(&d), ["risky-mutations"]);
        assert!(run(&b, &p, input(DELETE, Some(&calm), None)).allowed);
    }
    let doc = json!([{ "uid": { "type": "App::Document", "id": "q3-report" }, "attrs": {}, "parents": [] }]);
    assert!(!run(&b, &p, input(WRITE, Some(&risky), Some(&doc))).allowed);

    // the same principal under another bundle (and back) gets that bundle's actions
    let other = PolicyBundle::compile(
        GROUP_SCHEMA,
        r#"permit(principal, action in App::Action::"mutate", resource);"#,
    )
    .unwrap();
    assert!(run(&other, &p, input(WRITE, Some(&risky), None)).allowed);
    assert!(!run(&b, &p, input(WRITE, Some(&risky), None)).allowed);
}

#[test]
fn empty_bundle_denies_everything() {
    let b = PolicyBundle::empty();
    assert!(b.policy_ids().is_empty());
    let p = principal("agent-1", "prod", &["analyst"], &[]);
    // no action is declared: every request names an unknown action
    let e = decide(&b, &p, &input(READ, None, None)).unwrap_err();
    assert!(matches!(e, RequestError::UnknownAction { .. }), "{e:?}");

    // a schema with actions but no policies denies with no determining policy
    let b = PolicyBundle::compile(SCHEMA, "").unwrap();
    let ctx = json!({ "risk": 0 });
    let d = decide(&b, &p, &input(READ, Some(&ctx), None)).unwrap();
    assert!(!d.allowed);
    assert!(d.determining.is_empty());
}
