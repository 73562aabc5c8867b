//! Tiered change governance, through the crate's public API: the risk assessment and the
//! plan of a change against an in-memory entitlement graph, capability declarations and
//! checks, tiering, sliding-window aggregates and the human workflow.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashMap;

use warrant_core::governance::aggregate::{crossed, Aggregates, Thresholds};
use warrant_core::governance::assess::{
    assess, check_capability, covering_resource, effective_entitlements, plan, Graph, Mutation,
};
use warrant_core::governance::tiering::{decide, floor_rules, Floor, DEFAULT_TIER};
use warrant_core::governance::workflow::{
    approve, override_change, perform, ratify, reject, timer, Actor, ApprovalRules, Approved,
    TimerOutcome,
};
use warrant_core::governance::*;
use warrant_core::identity::{Identity, IdentityState, NewIdentity};
use warrant_core::Millis;

// ---------------------------------------------------------------------------------------
// An in-memory entitlement graph
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Default, PartialEq)]
struct G {
    ids: HashMap<String, Identity>,
    roles: HashMap<String, Role>,
    resources: HashMap<String, Resource>,
    trust: HashMap<String, Vec<String>>,
    auth: HashMap<String, AuthRequirement>,
}

impl Graph for G {
    fn identity(&self, id: &str) -> Option<&Identity> {
        self.ids.get(id)
    }

    fn role(&self, name: &str) -> Option<&Role> {
        self.roles.get(name)
    }

    fn role_members(&self, name: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .ids
            .values()
            .filter(|i| i.roles.iter().any(|r| r == name))
            .map(|i| i.id.clone())
            .collect();
        v.sort();
        v
    }

    fn resource(&self, id: &str) -> Option<&Resource> {
        self.resources.get(id)
    }

    fn trust(&self, identity: &str) -> Vec<String> {
        self.trust.get(identity).cloned().unwrap_or_default()
    }

    fn auth_requirement(&self, identity: &str) -> AuthRequirement {
        self.auth
            .get(identity)
            .copied()
            .unwrap_or(AuthRequirement::Any)
    }
}

impl G {
    fn apply(&mut self, mutations: Vec<Mutation>) {
        for m in mutations {
            match m {
                Mutation::Identity(i) => {
                    self.ids.insert(i.id.clone(), *i);
                }
                Mutation::PutRole(r) => {
                    self.roles.insert(r.name.clone(), r);
                }
                Mutation::DeleteRole(n) => {
                    self.roles.remove(&n);
                }
                Mutation::Trust { identity, trusted } => {
                    self.trust.insert(identity, trusted);
                }
                Mutation::Auth { identity, require } => {
                    self.auth.insert(identity, require);
                }
            }
        }
    }

    /// Plans `change`, applies it, and checks that planning it again changes nothing.
    fn apply_idempotently(&mut self, change: &Change, now: Millis) -> Vec<Mutation> {
        let muts = plan(self, change, now).unwrap();
        assert!(!muts.is_empty(), "{change:?} planned nothing");
        self.apply(muts.clone());
        let again = plan(self, change, now + 1).unwrap();
        assert!(
            again.is_empty(),
            "applying {change:?} twice is not idempotent: {again:?}"
        );
        muts
    }

    fn with_identity(mut self, i: Identity) -> Self {
        self.ids.insert(i.id.clone(), i);
        self
    }
}

fn s(v: &str) -> String {
    v.to_owned()
}

fn sv(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| (*x).to_owned()).collect()
}

fn ident(
    id: &str,
    kind: &str,
    env: &str,
    owner: &str,
    roles: &[&str],
    entitlements: &[&str],
) -> Identity {
    NewIdentity {
        name: id.to_owned(),
        kind: kind.to_owned(),
        environment: env.to_owned(),
        owner: owner.to_owned(),
        description: None,
        spiffe_id: None,
        roles: sv(roles),
        entitlements: sv(entitlements),
    }
    .into_identity(id.to_owned(), "example.org", 1)
    .unwrap()
}

fn role(name: &str, privileged: bool, entitlements: &[&str]) -> Role {
    Role {
        name: name.to_owned(),
        description: String::new(),
        privileged,
        entitlements: sv(entitlements),
    }
}

fn resource(id: &str, classification: Classification, privileged: bool) -> Resource {
    Resource {
        id: id.to_owned(),
        classification,
        privileged,
        description: String::new(),
    }
}

/// The fixture graph.
///
/// Resources: `s3` internal, `s3:bucket-logs` restricted, `db` confidential and
/// privileged, `public` public.
/// Roles: `reader` (s3:bucket-data:read), `admin` (privileged; db:prod:write), `logs`
/// (s3:bucket-logs:read).
/// Identities: `svc-a` (prod, alice; reader; public:get), `svc-b` (prod, bob; reader,
/// admin), `bot` (ai_tool, prod, carol), `old` (retired; reader), `sus` (suspended,
/// staging, dave; reader), `pre` (prod, erin; lists the not yet existing role `future`),
/// `cap-bot` (ai_tool, prod, carol; the capability's identity).
fn graph() -> G {
    let mut g = G::default();
    for r in [
        resource("s3", Classification::Internal, false),
        resource("s3:bucket-logs", Classification::Restricted, false),
        resource("db", Classification::Confidential, true),
        resource("public", Classification::Public, false),
    ] {
        g.resources.insert(r.id.clone(), r);
    }
    for r in [
        role("reader", false, &["s3:bucket-data:read"]),
        role("admin", true, &["db:prod:write"]),
        role("logs", false, &["s3:bucket-logs:read"]),
    ] {
        g.roles.insert(r.name.clone(), r);
    }
    let mut old = ident("old", "service_account", "prod", "olga", &["reader"], &[]);
    old.state = IdentityState::Retired;
    let mut sus = ident("sus", "workload", "staging", "dave", &["reader"], &[]);
    sus.state = IdentityState::Suspended;
    for i in [
        ident(
            "svc-a",
            "service_account",
            "prod",
            "alice",
            &["reader"],
            &["public:get"],
        ),
        ident(
            "svc-b",
            "workload",
            "prod",
            "bob",
            &["reader", "admin"],
            &[],
        ),
        ident("bot", "ai_tool", "prod", "carol", &[], &[]),
        ident("pre", "service_account", "prod", "erin", &["future"], &[]),
        ident("cap-bot", "ai_tool", "prod", "carol", &[], &[]),
        old,
        sus,
    ] {
        g.ids.insert(i.id.clone(), i);
    }
    g.trust.insert(s("svc-a"), sv(&["spiffe://a"]));
    g
}

fn grant(identity: &str, entitlement: &str) -> Change {
    Change::GrantEntitlement {
        identity: s(identity),
        entitlement: s(entitlement),
    }
}

fn revoke(identity: &str, entitlement: &str) -> Change {
    Change::RevokeEntitlement {
        identity: s(identity),
        entitlement: s(entitlement),
    }
}

fn modify_role(r: &str, add: &[&str], remove: &[&str], privileged: Option<bool>) -> Change {
    Change::ModifyRole {
        role: s(r),
        add: sv(add),
        remove: sv(remove),
        privileged,
    }
}

fn modify_trust(identity: &str, add: &[&str], remove: &[&str]) -> Change {
    Change::ModifyTrust {
        identity: s(identity),
        add: sv(add),
        remove: sv(remove),
    }
}

fn assert_err<T: std::fmt::Debug>(
    r: Result<T, GovError>,
    want: ErrKind,
    contains: &[&str],
) -> GovError {
    let e = match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e,
    };
    assert!(want(&e), "unexpected error variant: {e:?}");
    let msg = e.to_string();
    for c in contains {
        assert!(msg.contains(c), "`{msg}` does not mention `{c}`");
    }
    e
}

type ErrKind = fn(&GovError) -> bool;

/// An edit to a capability declaration.
type CapEdit = Box<dyn Fn(&mut NewCapability)>;

fn is_conflict(e: &GovError) -> bool {
    matches!(e, GovError::Conflict(_))
}
fn is_not_found(e: &GovError) -> bool {
    matches!(e, GovError::NotFound(_))
}
fn is_forbidden(e: &GovError) -> bool {
    matches!(e, GovError::Forbidden(_))
}
fn is_invalid(e: &GovError) -> bool {
    matches!(e, GovError::Invalid(_))
}

// ---------------------------------------------------------------------------------------
// assess(): grants and revocations
// ---------------------------------------------------------------------------------------

#[test]
fn grant_direct_assessment() {
    let g = graph();
    let a = assess(&g, &grant("svc-a", "s3:bucket-logs:read")).unwrap();
    assert_eq!(a.identities, sv(&["svc-a"]));
    assert_eq!(a.identities_count, 1);
    assert_eq!(a.resources, sv(&["s3:bucket-logs"]));
    assert_eq!(a.resources_count, 1);
    assert_eq!(a.classification, Classification::Restricted);
    assert!(!a.privileged);
    assert!(a.privileged_because.is_empty());
    assert!(a.reversible);
    assert_eq!(a.inverse, Some(revoke("svc-a", "s3:bucket-logs:read")));
    // The identity gains access, and so does (in effect) its owner.
    assert_eq!(a.beneficiaries, sv(&["alice", "svc-a"]));
    assert!(!a.targets_ai);
    assert_eq!(a.environment, "prod");
    assert_eq!(a.aggregates, AggregateView::default());
}

#[test]
fn grant_of_something_already_held_is_refused() {
    let g = graph();
    // Directly.
    assert_err(
        assess(&g, &grant("svc-a", "public:get")),
        is_conflict,
        &["svc-a", "already holds", "public:get"],
    );
    // Through a role.
    assert_err(
        assess(&g, &grant("svc-a", "s3:bucket-data:read")),
        is_conflict,
        &["already holds"],
    );
}

#[test]
fn grant_to_an_ai_identity_targets_ai_and_privileged_resource_counts() {
    let g = graph();
    let a = assess(&g, &grant("bot", "db:prod:read")).unwrap();
    assert!(a.targets_ai);
    assert!(a.privileged);
    assert_eq!(a.privileged_because, sv(&["resource `db` is privileged"]));
    assert_eq!(a.classification, Classification::Confidential);
    assert_eq!(a.resources, sv(&["db:prod"]));
    assert_eq!(a.beneficiaries, sv(&["bot", "carol"]));
}

#[test]
fn classification_uses_the_longest_covering_resource() {
    let g = graph();
    let cls = |e: &str| assess(&g, &grant("bot", e)).unwrap().classification;
    // `s3:bucket-data` is covered by `s3` only.
    assert_eq!(cls("s3:bucket-data:read"), Classification::Internal);
    // `s3:bucket-logs` has a declaration of its own, longer than `s3`.
    assert_eq!(cls("s3:bucket-logs:read"), Classification::Restricted);
    // Deeper below `s3:bucket-logs`: still covered by it, not by `s3`.
    assert_eq!(
        cls("s3:bucket-logs:archive:read"),
        Classification::Restricted
    );
    // Nothing covers it.
    assert_eq!(cls("misc:thing:read"), Classification::Unclassified);
    // A prefix that is not at a `:` boundary does not cover.
    assert_eq!(cls("s3x:bucket:read"), Classification::Unclassified);
    assert_eq!(cls("public:get"), Classification::Public);

    assert_eq!(
        covering_resource(&g, "s3:bucket-logs:archive").map(|r| r.id.as_str()),
        Some("s3:bucket-logs")
    );
    assert_eq!(
        covering_resource(&g, "s3:bucket-data").map(|r| r.id.as_str()),
        Some("s3")
    );
    assert!(covering_resource(&g, "nothing").is_none());
}

#[test]
fn classification_is_the_maximum_over_all_resources_touched() {
    let g = graph();
    // svc-b holds s3:bucket-data:read (internal) and db:prod:write (confidential).
    let a = assess(
        &g,
        &Change::SuspendIdentity {
            identity: s("svc-b"),
        },
    )
    .unwrap();
    assert_eq!(a.classification, Classification::Confidential);
    assert_eq!(a.resources, sv(&["db:prod", "s3:bucket-data"]));
    assert_eq!(a.resources_count, 2);
    // Adding a restricted entitlement to a role lifts it to restricted.
    let a = assess(
        &g,
        &modify_role("admin", &["s3:bucket-logs:read"], &[], None),
    )
    .unwrap();
    assert_eq!(a.classification, Classification::Restricted);
}

#[test]
fn effective_entitlements_join_direct_and_role_held() {
    let g = graph();
    let e = effective_entitlements(&g, &g.ids["svc-a"]);
    assert_eq!(
        e.into_iter().collect::<Vec<_>>(),
        sv(&["public:get", "s3:bucket-data:read"])
    );
}

#[test]
fn revoke_direct_assessment() {
    let g = graph();
    let a = assess(&g, &revoke("svc-a", "public:get")).unwrap();
    assert_eq!(a.identities, sv(&["svc-a"]));
    assert_eq!(a.identities_count, 1);
    assert_eq!(a.resources, sv(&["public"]));
    assert_eq!(a.classification, Classification::Public);
    assert_eq!(a.inverse, Some(grant("svc-a", "public:get")));
    assert!(a.reversible);
    // Losing access benefits nobody.
    assert!(a.beneficiaries.is_empty());
    assert_eq!(a.environment, "prod");
}

#[test]
fn revoke_of_a_role_held_entitlement_is_refused_naming_the_role() {
    let g = graph();
    let e = assert_err(
        assess(&g, &revoke("svc-a", "s3:bucket-data:read")),
        is_conflict,
        &["reader", "modify_role"],
    );
    assert!(!e.to_string().contains("admin"));
    // Held through two roles: both are named.
    let mut g2 = graph();
    g2.roles.insert(
        s("admin"),
        role("admin", true, &["db:prod:write", "s3:bucket-data:read"]),
    );
    assert_err(
        assess(&g2, &revoke("svc-b", "s3:bucket-data:read")),
        is_conflict,
        &["admin", "reader"],
    );
    // Not held at all.
    assert_err(
        assess(&g, &revoke("svc-a", "db:prod:write")),
        is_conflict,
        &["does not hold"],
    );
}

#[test]
fn revoke_of_an_entitlement_also_held_through_a_role_changes_nobody() {
    let g = graph().with_identity(ident(
        "svc-c",
        "service_account",
        "prod",
        "carl",
        &["reader"],
        &["s3:bucket-data:read"],
    ));
    let a = assess(&g, &revoke("svc-c", "s3:bucket-data:read")).unwrap();
    assert_eq!(a.identities_count, 0);
    assert!(a.identities.is_empty());
    assert_eq!(a.resources, sv(&["s3:bucket-data"]));
    assert!(a.beneficiaries.is_empty());
    assert_eq!(a.inverse, Some(grant("svc-c", "s3:bucket-data:read")));
}

// ---------------------------------------------------------------------------------------
// assess(): roles
// ---------------------------------------------------------------------------------------

#[test]
fn create_role_without_members_changes_nobody() {
    let g = graph();
    let a = assess(
        &g,
        &Change::CreateRole {
            role: role("ops", false, &["s3:bucket-logs:read", "public:get"]),
        },
    )
    .unwrap();
    assert_eq!(a.identities_count, 0);
    assert!(a.beneficiaries.is_empty());
    assert_eq!(a.resources, sv(&["public", "s3:bucket-logs"]));
    assert_eq!(a.classification, Classification::Restricted);
    assert!(!a.privileged);
    assert_eq!(a.inverse, Some(Change::DeleteRole { role: s("ops") }));
    assert_eq!(a.environment, "");
}

#[test]
fn create_role_counts_identities_that_already_list_its_name() {
    let g = graph();
    let a = assess(
        &g,
        &Change::CreateRole {
            role: role("future", true, &["public:get"]),
        },
    )
    .unwrap();
    assert_eq!(a.identities, sv(&["pre"]));
    assert_eq!(a.identities_count, 1);
    assert_eq!(a.beneficiaries, sv(&["erin", "pre"]));
    assert_eq!(a.environment, "prod");
    assert!(a.privileged);
    assert_eq!(a.privileged_because, sv(&["role `future` is privileged"]));
}

#[test]
fn create_role_that_exists_is_refused() {
    let g = graph();
    assert_err(
        assess(
            &g,
            &Change::CreateRole {
                role: role("reader", false, &[]),
            },
        ),
        is_conflict,
        &["reader", "exists"],
    );
}

#[test]
fn delete_role_affects_all_non_retired_members_and_inverse_restores_them() {
    let g = graph();
    let a = assess(&g, &Change::DeleteRole { role: s("reader") }).unwrap();
    // `old` is retired: not counted. `sus` is suspended: counted.
    assert_eq!(a.identities, sv(&["sus", "svc-a", "svc-b"]));
    assert_eq!(a.identities_count, 3);
    assert_eq!(a.resources, sv(&["s3:bucket-data"]));
    assert!(a.beneficiaries.is_empty());
    assert!(!a.privileged);
    assert_eq!(
        a.inverse,
        Some(Change::RestoreRole {
            role: g.roles["reader"].clone(),
            members: sv(&["sus", "svc-a", "svc-b"]),
        })
    );
    assert!(a.reversible);
    assert!(!a.environment.is_empty());

    let a = assess(&g, &Change::DeleteRole { role: s("admin") }).unwrap();
    assert!(a.privileged);
    assert!(a
        .privileged_because
        .contains(&s("role `admin` is privileged")));
    assert!(a
        .privileged_because
        .contains(&s("resource `db` is privileged")));
    assert_eq!(a.identities, sv(&["svc-b"]));

    assert_err(
        assess(&g, &Change::DeleteRole { role: s("nope") }),
        is_not_found,
        &["nope"],
    );
}

#[test]
fn modify_role_counts_members_only_for_real_additions() {
    let g = graph();
    // s3:bucket-data:read is already there; `gone:x` is not there to remove.
    let a = assess(
        &g,
        &modify_role(
            "reader",
            &["s3:bucket-data:read", "s3:bucket-logs:read"],
            &["gone:x"],
            None,
        ),
    )
    .unwrap();
    assert_eq!(a.identities, sv(&["sus", "svc-a", "svc-b"]));
    assert_eq!(a.identities_count, 3);
    assert_eq!(a.resources, sv(&["s3:bucket-logs"]));
    assert_eq!(a.classification, Classification::Restricted);
    assert_eq!(
        a.beneficiaries,
        sv(&["alice", "bob", "dave", "sus", "svc-a", "svc-b"])
    );
    // The inverse undoes only what really changes.
    assert_eq!(
        a.inverse,
        Some(modify_role("reader", &[], &["s3:bucket-logs:read"], None))
    );
}

#[test]
fn modify_role_removal_benefits_nobody_and_inverse_adds_back() {
    let g = graph();
    let a = assess(&g, &modify_role("admin", &[], &["db:prod:write"], None)).unwrap();
    assert_eq!(a.identities, sv(&["svc-b"]));
    assert!(a.beneficiaries.is_empty());
    assert!(a
        .privileged_because
        .contains(&s("role `admin` is privileged")));
    assert_eq!(
        a.inverse,
        Some(modify_role("admin", &["db:prod:write"], &[], None))
    );
}

#[test]
fn modify_role_that_changes_nothing_is_refused() {
    let g = graph();
    assert_err(
        assess(
            &g,
            &modify_role("reader", &["s3:bucket-data:read"], &["gone:x"], None),
        ),
        is_conflict,
        &["would not modify", "reader"],
    );
    // Setting the flag it already has.
    assert_err(
        assess(&g, &modify_role("reader", &[], &[], Some(false))),
        is_conflict,
        &["would not modify"],
    );
    assert_err(
        assess(&g, &modify_role("admin", &[], &[], Some(true))),
        is_conflict,
        &["would not modify"],
    );
    assert_err(
        assess(&g, &modify_role("nope", &["a:b"], &[], None)),
        is_not_found,
        &["nope"],
    );
}

#[test]
fn modify_role_privilege_flag_and_its_inverse() {
    let g = graph();
    let a = assess(&g, &modify_role("reader", &[], &[], Some(true))).unwrap();
    // Marking a role privileged changes nobody's access.
    assert_eq!(a.identities_count, 0);
    assert!(a.privileged);
    assert_eq!(
        a.privileged_because,
        sv(&["role `reader` becomes privileged"])
    );
    assert_eq!(
        a.inverse,
        Some(modify_role("reader", &[], &[], Some(false)))
    );

    let a = assess(&g, &modify_role("admin", &[], &[], Some(false))).unwrap();
    assert_eq!(a.inverse, Some(modify_role("admin", &[], &[], Some(true))));

    // Inverse of a combined change swaps add/remove and restores the flag.
    let a = assess(
        &g,
        &modify_role("admin", &["public:get"], &["db:prod:write"], Some(false)),
    )
    .unwrap();
    assert_eq!(
        a.inverse,
        Some(modify_role(
            "admin",
            &["db:prod:write"],
            &["public:get"],
            Some(true)
        ))
    );
    assert_eq!(a.identities, sv(&["svc-b"]));
    assert_eq!(a.beneficiaries, sv(&["bob", "svc-b"]));
}

// ---------------------------------------------------------------------------------------
// assess(): trust, authentication, lifecycle
// ---------------------------------------------------------------------------------------

#[test]
fn modify_trust_assessment() {
    let g = graph();
    let a = assess(
        &g,
        &modify_trust("svc-a", &["spiffe://a", "spiffe://b"], &["spiffe://c"]),
    )
    .unwrap();
    assert_eq!(a.identities, sv(&["svc-a"]));
    assert_eq!(a.resources, sv(&["trust:spiffe://b"]));
    assert_eq!(a.beneficiaries, sv(&["alice", "svc-a"]));
    assert_eq!(a.inverse, Some(modify_trust("svc-a", &[], &["spiffe://b"])));

    let a = assess(&g, &modify_trust("svc-a", &[], &["spiffe://a"])).unwrap();
    assert!(a.beneficiaries.is_empty());
    assert_eq!(a.identities_count, 1);
    assert_eq!(a.inverse, Some(modify_trust("svc-a", &["spiffe://a"], &[])));

    assert_err(
        assess(&g, &modify_trust("svc-a", &["spiffe://a"], &["spiffe://z"])),
        is_conflict,
        &["would not modify the trust", "svc-a"],
    );
}

#[test]
fn change_auth_requirement_assessment() {
    let mut g = graph();
    let a = assess(
        &g,
        &Change::ChangeAuthRequirement {
            identity: s("svc-a"),
            require: AuthRequirement::Mtls,
        },
    )
    .unwrap();
    assert_eq!(a.identities, sv(&["svc-a"]));
    // Tightening benefits nobody.
    assert!(a.beneficiaries.is_empty());
    assert_eq!(
        a.inverse,
        Some(Change::ChangeAuthRequirement {
            identity: s("svc-a"),
            require: AuthRequirement::Any,
        })
    );

    // No-op.
    assert_err(
        assess(
            &g,
            &Change::ChangeAuthRequirement {
                identity: s("svc-a"),
                require: AuthRequirement::Any,
            },
        ),
        is_conflict,
        &["already requires", "any"],
    );

    // Loosening: the inverse restores the previous requirement; it benefits the identity.
    g.auth.insert(s("svc-a"), AuthRequirement::PrivateKeyJwt);
    let a = assess(
        &g,
        &Change::ChangeAuthRequirement {
            identity: s("svc-a"),
            require: AuthRequirement::Any,
        },
    )
    .unwrap();
    assert_eq!(a.beneficiaries, sv(&["alice", "svc-a"]));
    assert_eq!(
        a.inverse,
        Some(Change::ChangeAuthRequirement {
            identity: s("svc-a"),
            require: AuthRequirement::PrivateKeyJwt,
        })
    );
}

#[test]
fn suspend_assessment_and_inverse() {
    let g = graph();
    let a = assess(
        &g,
        &Change::SuspendIdentity {
            identity: s("svc-b"),
        },
    )
    .unwrap();
    assert_eq!(a.identities, sv(&["svc-b"]));
    assert!(a.beneficiaries.is_empty());
    assert!(a.privileged);
    assert_eq!(
        a.privileged_because,
        sv(&["resource `db` is privileged", "role `admin` is privileged"])
    );
    assert_eq!(
        a.inverse,
        Some(Change::ResumeIdentity {
            identity: s("svc-b")
        })
    );
    assert!(a.reversible);

    assert_err(
        assess(&g, &Change::SuspendIdentity { identity: s("sus") }),
        is_conflict,
        &["not active"],
    );
}

#[test]
fn retire_has_no_inverse() {
    let g = graph();
    for id in ["svc-a", "sus"] {
        let a = assess(&g, &Change::RetireIdentity { identity: s(id) }).unwrap();
        assert!(!a.reversible, "{id}");
        assert!(a.inverse.is_none(), "{id}");
        assert_eq!(a.identities, sv(&[id]));
    }
}

#[test]
fn retired_and_unknown_targets_are_refused() {
    let g = graph();
    let for_target = |id: &str| {
        vec![
            grant(id, "x:y"),
            revoke(id, "x:y"),
            modify_trust(id, &["spiffe://q"], &[]),
            Change::ChangeAuthRequirement {
                identity: s(id),
                require: AuthRequirement::Mtls,
            },
            Change::SuspendIdentity { identity: s(id) },
            Change::RetireIdentity { identity: s(id) },
            Change::ResumeIdentity { identity: s(id) },
        ]
    };
    for c in for_target("old") {
        assert_err(assess(&g, &c), is_conflict, &["old", "retired"]);
        assert_err(plan(&g, &c, 5), is_conflict, &["retired"]);
    }
    for c in for_target("ghost") {
        assert_err(assess(&g, &c), is_not_found, &["ghost"]);
        assert_err(plan(&g, &c, 5), is_not_found, &["ghost"]);
    }
}

#[test]
fn the_assessment_keeps_at_most_shown_items_but_exact_counts() {
    let mut g = graph();
    for n in 0..(SHOWN + 5) {
        let id = format!("m{n:04}");
        g.ids.insert(
            id.clone(),
            ident(&id, "workload", "prod", "mo", &["big"], &[]),
        );
    }
    g.roles
        .insert(s("big"), role("big", false, &["public:get"]));
    let a = assess(&g, &Change::DeleteRole { role: s("big") }).unwrap();
    assert_eq!(a.identities_count, (SHOWN + 5) as u64);
    assert_eq!(a.identities.len(), SHOWN);
    // The inverse keeps every member, not only those shown.
    match a.inverse {
        Some(Change::RestoreRole { members, .. }) => assert_eq!(members.len(), SHOWN + 5),
        other => panic!("unexpected inverse {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// plan()
// ---------------------------------------------------------------------------------------

#[test]
fn plan_grant_and_revoke_are_idempotent() {
    let mut g = graph();
    let muts = g.apply_idempotently(&grant("svc-a", "s3:bucket-logs:read"), 10);
    assert_eq!(muts.len(), 1);
    assert_eq!(
        g.ids["svc-a"].entitlements,
        sv(&["public:get", "s3:bucket-logs:read"])
    );
    assert_eq!(g.ids["svc-a"].updated_ms, 10);
    // Granted now: assessing the grant again is refused.
    assert_err(
        assess(&g, &grant("svc-a", "s3:bucket-logs:read")),
        is_conflict,
        &["already holds"],
    );

    g.apply_idempotently(&revoke("svc-a", "s3:bucket-logs:read"), 20);
    assert_eq!(g.ids["svc-a"].entitlements, sv(&["public:get"]));
}

#[test]
fn plan_roles_are_idempotent() {
    let mut g = graph();
    let ops = role("ops", true, &["public:get"]);
    g.apply_idempotently(&Change::CreateRole { role: ops.clone() }, 10);
    assert_eq!(g.roles["ops"], ops);

    g.apply_idempotently(
        &modify_role(
            "ops",
            &["s3:bucket-logs:read"],
            &["public:get"],
            Some(false),
        ),
        11,
    );
    assert_eq!(g.roles["ops"], role("ops", false, &["s3:bucket-logs:read"]));

    g.apply_idempotently(&Change::DeleteRole { role: s("ops") }, 12);
    assert!(!g.roles.contains_key("ops"));
    // Modifying a role that is gone is refused.
    assert_err(
        plan(&g, &modify_role("ops", &["a:b"], &[], None), 13),
        is_not_found,
        &["ops"],
    );
}

#[test]
fn plan_trust_auth_and_lifecycle_are_idempotent() {
    let mut g = graph();
    g.apply_idempotently(
        &modify_trust("svc-a", &["spiffe://c", "spiffe://b"], &["spiffe://a"]),
        10,
    );
    assert_eq!(g.trust["svc-a"], sv(&["spiffe://b", "spiffe://c"]));

    g.apply_idempotently(
        &Change::ChangeAuthRequirement {
            identity: s("svc-a"),
            require: AuthRequirement::Mtls,
        },
        11,
    );
    assert_eq!(g.auth["svc-a"], AuthRequirement::Mtls);

    g.apply_idempotently(
        &Change::SuspendIdentity {
            identity: s("svc-a"),
        },
        12,
    );
    assert_eq!(g.ids["svc-a"].state, IdentityState::Suspended);
    g.apply_idempotently(
        &Change::ResumeIdentity {
            identity: s("svc-a"),
        },
        13,
    );
    assert_eq!(g.ids["svc-a"].state, IdentityState::Active);
}

#[test]
fn plan_retire_applies_once_then_refuses() {
    let mut g = graph();
    let c = Change::RetireIdentity {
        identity: s("svc-a"),
    };
    let muts = plan(&g, &c, 10).unwrap();
    assert_eq!(muts.len(), 1);
    g.apply(muts);
    assert_eq!(g.ids["svc-a"].state, IdentityState::Retired);
    assert_err(plan(&g, &c, 11), is_conflict, &["retired"]);
    assert_err(assess(&g, &c), is_conflict, &["retired"]);
}

#[test]
fn delete_role_then_restore_restores_membership_exactly() {
    let original = graph();
    let mut g = original.clone();
    let delete = Change::DeleteRole { role: s("reader") };
    let inverse = assess(&g, &delete).unwrap().inverse.unwrap();

    let muts = g.apply_idempotently(&delete, 10);
    // One patch per non-retired member, then the deletion.
    assert_eq!(muts.len(), 4);
    assert_eq!(muts.last(), Some(&Mutation::DeleteRole(s("reader"))));
    assert!(!g.roles.contains_key("reader"));
    for id in ["svc-a", "svc-b", "sus"] {
        assert!(!g.ids[id].roles.contains(&s("reader")), "{id}");
    }
    assert_eq!(g.ids["svc-b"].roles, sv(&["admin"]));
    // The retired member is never changed.
    assert_eq!(g.ids["old"], original.ids["old"]);

    // The inverse is assessable and restores everything.
    let ia = assess(&g, &inverse).unwrap();
    assert_eq!(ia.identities, sv(&["sus", "svc-a", "svc-b"]));
    assert_eq!(ia.inverse, Some(delete.clone()));
    g.apply_idempotently(&inverse, 20);
    assert_eq!(g.roles, original.roles);
    for (id, i) in &original.ids {
        assert_eq!(g.ids[id].roles, i.roles, "{id}");
        assert_eq!(g.ids[id].state, i.state, "{id}");
        assert_eq!(g.ids[id].entitlements, i.entitlements, "{id}");
    }
}

#[test]
fn restore_role_refuses_to_overwrite_a_different_role_of_the_same_name() {
    let mut g = graph();
    let delete = Change::DeleteRole { role: s("reader") };
    let inverse = assess(&g, &delete).unwrap().inverse.unwrap();
    g.apply(plan(&g, &delete, 10).unwrap());
    let other = Role {
        name: s("reader"),
        description: s("someone else's"),
        privileged: false,
        entitlements: sv(&["wiki:read"]),
    };
    g.apply(vec![Mutation::PutRole(other.clone())]);
    let err = plan(&g, &inverse, 20).unwrap_err();
    assert!(
        matches!(&err, GovError::Conflict(m) if m.contains("different role")),
        "{err:?}"
    );
    assert_eq!(g.roles["reader"], other);
}

#[test]
fn restore_role_skips_members_that_were_retired_meanwhile() {
    let mut g = graph();
    let delete = Change::DeleteRole { role: s("reader") };
    let inverse = assess(&g, &delete).unwrap().inverse.unwrap();
    g.apply(plan(&g, &delete, 10).unwrap());
    g.apply(
        plan(
            &g,
            &Change::RetireIdentity {
                identity: s("svc-a"),
            },
            11,
        )
        .unwrap(),
    );
    g.apply(plan(&g, &inverse, 12).unwrap());
    assert!(g.roles.contains_key("reader"));
    assert!(!g.ids["svc-a"].roles.contains(&s("reader")));
    assert!(g.ids["svc-b"].roles.contains(&s("reader")));
}

#[test]
fn plan_of_a_change_to_a_role_that_is_gone_does_nothing() {
    let g = graph();
    assert!(plan(&g, &Change::DeleteRole { role: s("nope") }, 1)
        .unwrap()
        .is_empty());
}

// ---------------------------------------------------------------------------------------
// Capabilities
// ---------------------------------------------------------------------------------------

const DAY: Millis = 86_400_000;

fn new_cap() -> NewCapability {
    NewCapability {
        id: s("role-right-sizing"),
        description: s("trims unused entitlements"),
        identity: s("cap-bot"),
        kinds: sv(&["grant_entitlement", "revoke_entitlement"]),
        conditions: Conditions::default(),
        max_blast_radius: 2,
        systems: vec![],
        notify: Some(s("https://hooks.example.org/x?y=1")),
        reviewer: None,
        owner: s("olga"),
        review_every_days: 30,
    }
}

fn cap() -> Capability {
    new_cap().into_capability("admin", 1_000, None).unwrap()
}

fn accepted(mut c: Capability, at: Millis) -> Capability {
    c.accepted = Some(Acceptance {
        by: c.owner.clone(),
        at_ms: at,
        statement: s("I am accountable"),
    });
    c
}

#[test]
fn capability_declaration_is_normalised() {
    let mut n = new_cap();
    n.kinds = sv(&[
        "revoke_entitlement",
        "grant_entitlement",
        "revoke_entitlement",
    ]);
    n.owner = s("  olga ");
    n.reviewer = Some(s(" rita "));
    n.conditions.environments = sv(&["staging", "prod", "staging"]);
    let c = n.into_capability("admin", 1_000, None).unwrap();
    assert_eq!(
        c.kinds,
        vec![ChangeKind::GrantEntitlement, ChangeKind::RevokeEntitlement]
    );
    assert_eq!(c.owner, "olga");
    assert_eq!(c.reviewer(), "rita");
    assert_eq!(c.conditions.environments, sv(&["prod", "staging"]));
    assert_eq!((c.created_ms, c.updated_ms), (1_000, 1_000));
    assert_eq!(c.created_by, "admin");
    assert!(c.accepted.is_none());
    // Without a reviewer, the owner reviews.
    assert_eq!(cap().reviewer(), "olga");
}

#[test]
fn capability_declaration_validation() {
    let cases: Vec<(&str, CapEdit)> = vec![
        ("capability id", Box::new(|n| n.id = s("Bad Id"))),
        ("capability id", Box::new(|n| n.id = s(""))),
        ("capability id", Box::new(|n| n.id = "x".repeat(101))),
        (
            "unknown change kind `nope`",
            Box::new(|n| n.kinds = sv(&["nope"])),
        ),
        ("at least one change kind", Box::new(|n| n.kinds = vec![])),
        ("max_blast_radius", Box::new(|n| n.max_blast_radius = 0)),
        ("review_every_days", Box::new(|n| n.review_every_days = 0)),
        ("review_every_days", Box::new(|n| n.review_every_days = 367)),
        (
            "credentials",
            Box::new(|n| n.notify = Some(s("https://u:p@host/hook"))),
        ),
        (
            "credentials",
            Box::new(|n| n.notify = Some(s("https://u@host"))),
        ),
        ("https://", Box::new(|n| n.notify = Some(s("ftp://host/x")))),
        ("host", Box::new(|n| n.notify = Some(s("https:///x")))),
        ("owner", Box::new(|n| n.owner = s("   "))),
        ("reviewer", Box::new(|n| n.reviewer = Some(s("two words")))),
        (
            "min_confidence_pct",
            Box::new(|n| n.conditions.min_confidence_pct = 101),
        ),
        ("identity", Box::new(|n| n.identity = s("has space"))),
    ];
    for (want, f) in cases {
        let mut n = new_cap();
        f(&mut n);
        let r = n.into_capability("admin", 1, None);
        assert_err(r, is_invalid, &[want]);
    }
    // The bounds themselves are fine.
    for days in [1, MAX_REVIEW_DAYS] {
        let mut n = new_cap();
        n.review_every_days = days;
        assert!(n.into_capability("admin", 1, None).is_ok(), "{days}");
    }
    assert_eq!(MAX_REVIEW_DAYS, 366);
    assert!(check_webhook_url("http://host:8080/hook").is_ok());
    assert!(check_webhook_url("https://host/path@not-credentials").is_ok());
}

#[test]
fn acceptance_survives_an_unchanged_or_narrower_redeclaration() {
    let mut prev = accepted(cap(), 2_000);
    prev.last_review_ms = Some(3_000);
    prev.last_review_by = Some(s("olga"));

    let same = new_cap()
        .into_capability("other", 9_000, Some(&prev))
        .unwrap();
    assert_eq!(same.accepted, prev.accepted);
    assert_eq!(same.last_review_ms, Some(3_000));
    assert_eq!(same.last_review_by, Some(s("olga")));
    assert_eq!(same.created_ms, 1_000);
    assert_eq!(same.created_by, "admin");
    assert_eq!(same.updated_ms, 9_000);

    let mut narrower = new_cap();
    narrower.kinds = sv(&["revoke_entitlement"]);
    narrower.max_blast_radius = 1;
    narrower.owner = s(" olga ");
    narrower.description = s("something else");
    let c = narrower.into_capability("x", 9_000, Some(&prev)).unwrap();
    assert!(c.accepted.is_some());
}

#[test]
fn acceptance_is_dropped_when_the_declaration_widens_or_changes_hands() {
    let mut prev = accepted(cap(), 2_000);
    prev.last_review_ms = Some(3_000);
    prev.last_review_by = Some(s("olga"));
    let cases: Vec<(&str, CapEdit)> = vec![
        ("owner", Box::new(|n| n.owner = s("mallory"))),
        ("identity", Box::new(|n| n.identity = s("bot"))),
        ("kinds", Box::new(|n| n.kinds.push(s("delete_role")))),
        ("blast radius", Box::new(|n| n.max_blast_radius = 3)),
        (
            "environments",
            Box::new(|n| n.conditions.environments = sv(&["prod", "staging"])),
        ),
    ];
    for (what, f) in cases {
        let mut n = new_cap();
        f(&mut n);
        let c = n.into_capability("x", 9_000, Some(&prev)).unwrap();
        assert!(c.accepted.is_none(), "{what}: acceptance kept");
        assert!(c.last_review_ms.is_none(), "{what}: review kept");
        assert!(c.last_review_by.is_none(), "{what}: reviewer kept");
        assert_eq!(c.autonomy(9_001), Autonomy::NotAccepted, "{what}");
        // History is kept.
        assert_eq!(c.created_ms, 1_000);
    }
}

#[test]
fn acceptance_is_dropped_when_the_minimum_confidence_is_lowered() {
    let mut strict = new_cap();
    strict.conditions.min_confidence_pct = 80;
    let prev = accepted(strict.into_capability("admin", 1_000, None).unwrap(), 2_000);
    let mut same = new_cap();
    same.conditions.min_confidence_pct = 90;
    assert!(same
        .into_capability("x", 3_000, Some(&prev))
        .unwrap()
        .accepted
        .is_some());
    let mut looser = new_cap();
    looser.conditions.min_confidence_pct = 50;
    assert!(looser
        .into_capability("x", 3_000, Some(&prev))
        .unwrap()
        .accepted
        .is_none());
}

#[test]
fn autonomy_follows_acceptance_and_review_cadence() {
    let c = cap();
    assert_eq!(c.autonomy(1_000), Autonomy::NotAccepted);
    assert_eq!(c.next_review_due_ms(), None);

    let t0 = 10_000;
    let mut c = accepted(c, t0);
    let due = t0 + 30 * DAY;
    assert_eq!(c.next_review_due_ms(), Some(due));
    assert_eq!(c.autonomy(t0), Autonomy::Tiered);
    assert_eq!(c.autonomy(due), Autonomy::Tiered);
    assert_eq!(c.autonomy(due + 1), Autonomy::ReviewOverdue);
    assert_eq!(Autonomy::ReviewOverdue.as_str(), "review_overdue");

    // A review restarts the cadence.
    c.last_review_ms = Some(due + 5);
    c.last_review_by = Some(s("olga"));
    assert_eq!(c.autonomy(due + 6), Autonomy::Tiered);
    assert_eq!(c.next_review_due_ms(), Some(due + 5 + 30 * DAY));
    assert_eq!(c.autonomy(due + 5 + 30 * DAY + 1), Autonomy::ReviewOverdue);
}

// ---------------------------------------------------------------------------------------
// check_capability()
// ---------------------------------------------------------------------------------------

#[test]
fn check_capability_refuses_undeclared_kinds() {
    let g = graph();
    let c = accepted(cap(), 1);
    let change = Change::DeleteRole { role: s("logs") };
    let a = assess(&g, &change).unwrap();
    assert_err(
        check_capability(&c, &g.ids["cap-bot"], &change, &a, 100),
        is_forbidden,
        &[
            "role-right-sizing",
            "delete_role",
            "grant_entitlement, revoke_entitlement",
        ],
    );
    // Inverse-only changes cannot be proposed at all.
    let restore = Change::ResumeIdentity { identity: s("sus") };
    let a = assess(&g, &restore).unwrap();
    assert_err(
        check_capability(&c, &g.ids["cap-bot"], &restore, &a, 100),
        is_invalid,
        &[],
    );
}

#[test]
fn check_capability_refuses_a_larger_blast_radius() {
    let g = graph();
    let mut n = new_cap();
    n.kinds = sv(&["modify_role", "grant_entitlement"]);
    let c = n.into_capability("admin", 1, None).unwrap();
    let change = modify_role("reader", &["public:get"], &[], None);
    let mut a = assess(&g, &change).unwrap();
    // svc-a, svc-b (prod) and sus (staging): 3 > 2.
    a.environment = s("prod");
    a.environments = sv(&["prod"]);
    assert_err(
        check_capability(&c, &g.ids["cap-bot"], &change, &a, 100),
        is_forbidden,
        &["3 identities", "maximum blast radius of 2"],
    );
    a.identities_count = 2;
    assert!(check_capability(&c, &g.ids["cap-bot"], &change, &a, 100).is_ok());
}

#[test]
fn a_role_change_reaching_several_environments_needs_all_of_them() {
    let g = graph();
    let mut n = new_cap();
    n.kinds = sv(&["modify_role"]);
    n.max_blast_radius = 10;
    let c = n.into_capability("admin", 1, None).unwrap();
    let change = modify_role("reader", &["public:get"], &[], None);
    let a = assess(&g, &change).unwrap();
    assert_eq!(a.environments, sv(&["prod", "staging"]));
    assert_eq!(a.environment, "*multiple*");
    // The capability's identity is in prod; the role also reaches staging.
    assert_err(
        check_capability(&c, &g.ids["cap-bot"], &change, &a, 100),
        is_forbidden,
        &["environment `staging`"],
    );
    let mut both = new_cap();
    both.kinds = sv(&["modify_role"]);
    both.max_blast_radius = 10;
    both.conditions.environments = sv(&["prod", "staging"]);
    let c = both.into_capability("admin", 1, None).unwrap();
    assert!(check_capability(&c, &g.ids["cap-bot"], &change, &a, 100).is_ok());
}

#[test]
fn check_capability_environments() {
    let g = graph();
    let c = cap();
    let me = &g.ids["cap-bot"];
    let staging = grant("sus", "public:get");
    let a_staging = assess(&g, &staging).unwrap();
    assert_eq!(a_staging.environment, "staging");
    let prod = grant("svc-b", "public:get");
    let a_prod = assess(&g, &prod).unwrap();

    // No list: only the capability identity's own environment (prod).
    assert!(check_capability(&c, me, &prod, &a_prod, 100).is_ok());
    assert_err(
        check_capability(&c, me, &staging, &a_staging, 100),
        is_forbidden,
        &["environment `staging`"],
    );

    // An explicit list replaces it.
    let mut n = new_cap();
    n.conditions.environments = sv(&["staging"]);
    let c = n.into_capability("admin", 1, None).unwrap();
    assert!(check_capability(&c, me, &staging, &a_staging, 100).is_ok());
    assert_err(
        check_capability(&c, me, &prod, &a_prod, 100),
        is_forbidden,
        &["environment `prod`"],
    );

    // No environment (a role with no members): not restricted.
    let mut n = new_cap();
    n.kinds = sv(&["create_role"]);
    let c = n.into_capability("admin", 1, None).unwrap();
    let create = Change::CreateRole {
        role: role("x", false, &[]),
    };
    let a = assess(&g, &create).unwrap();
    assert_eq!(a.environment, "");
    assert!(check_capability(&c, me, &create, &a, 100).is_ok());
}

#[test]
fn check_capability_minimum_confidence() {
    let g = graph();
    let mut n = new_cap();
    n.conditions.min_confidence_pct = 50;
    let c = n.into_capability("admin", 1, None).unwrap();
    let change = grant("svc-a", "s3:bucket-logs:read");
    let a = assess(&g, &change).unwrap();
    assert_err(
        check_capability(&c, &g.ids["cap-bot"], &change, &a, 49),
        is_forbidden,
        &["49%", "50%"],
    );
    assert!(check_capability(&c, &g.ids["cap-bot"], &change, &a, 50).is_ok());
}

// ---------------------------------------------------------------------------------------
// Change shape
// ---------------------------------------------------------------------------------------

#[test]
fn change_validation_and_accessors() {
    assert_err(
        modify_role("r", &[], &[], None).validated(),
        is_invalid,
        &["modify_role"],
    );
    assert_err(
        modify_role("r", &["a:b"], &["a:b"], None).validated(),
        is_invalid,
        &["both added and removed"],
    );
    assert_err(
        modify_trust("i", &[], &[]).validated(),
        is_invalid,
        &["modify_trust"],
    );
    assert_err(grant("i", "has space").validated(), is_invalid, &[]);
    assert_err(
        Change::ResumeIdentity { identity: s("i") }.validated(),
        is_invalid,
        &["cannot be proposed"],
    );
    let c = modify_role("r", &["z:b", "a:b", "z:b"], &[], None)
        .validated()
        .unwrap();
    assert_eq!(c, modify_role("r", &["a:b", "z:b"], &[], None));

    assert_eq!(grant("i", "e").kind(), Some(ChangeKind::GrantEntitlement));
    assert_eq!(grant("i", "e").target_identity(), Some("i"));
    assert_eq!(Change::DeleteRole { role: s("r") }.target_role(), Some("r"));
    assert_eq!(
        Change::RestoreRole {
            role: role("r", false, &[]),
            members: vec![]
        }
        .label(),
        "restore_role"
    );
    assert_eq!(
        Change::ResumeIdentity { identity: s("i") }.label(),
        "resume_identity"
    );
    for k in ChangeKind::ALL {
        assert_eq!(ChangeKind::parse(k.as_str()), Some(k));
    }
    assert_eq!(resource_of("s3:bucket-logs:read"), "s3:bucket-logs");
    assert_eq!(resource_of("admin"), "admin");

    let json = serde_json::to_value(grant("i", "e")).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"kind": "grant_entitlement", "identity": "i", "entitlement": "e"})
    );
}

// ---------------------------------------------------------------------------------------
// Tiering
// ---------------------------------------------------------------------------------------

fn reason(policy: &str, tier: u8) -> TierReason {
    TierReason {
        policy: s(policy),
        tier,
        reason: None,
    }
}

#[test]
fn floor_rules_from_real_assessments() {
    let g = graph();
    let f = Floor::default();
    assert_eq!(f.max_blast_radius, 10);

    let a = assess(
        &g,
        &Change::CreateRole {
            role: role("root", true, &[]),
        },
    )
    .unwrap();
    let rules = floor_rules(ChangeKind::CreateRole, &a, &f);
    assert_eq!(rules.len(), 1);
    assert!(
        rules[0].contains("creation of a privileged role"),
        "{rules:?}"
    );
    assert!(rules[0].contains("role `root` is privileged"), "{rules:?}");

    let a = assess(&g, &Change::DeleteRole { role: s("admin") }).unwrap();
    let rules = floor_rules(ChangeKind::DeleteRole, &a, &f);
    assert_eq!(rules.len(), 1);
    assert!(rules[0].contains("deletion of a privileged role"));

    let a = assess(&g, &Change::DeleteRole { role: s("logs") }).unwrap();
    assert!(floor_rules(ChangeKind::DeleteRole, &a, &f).is_empty());

    let a = assess(&g, &modify_trust("svc-a", &["spiffe://b"], &[])).unwrap();
    assert_eq!(
        floor_rules(ChangeKind::ModifyTrust, &a, &f),
        vec![s("floor: trust-relationship change")]
    );
    let a = assess(
        &g,
        &Change::ChangeAuthRequirement {
            identity: s("svc-a"),
            require: AuthRequirement::Mtls,
        },
    )
    .unwrap();
    assert_eq!(
        floor_rules(ChangeKind::ChangeAuthRequirement, &a, &f).len(),
        1
    );

    // Blast radius above the floor's maximum (not at it).
    let a = assess(&g, &Change::DeleteRole { role: s("reader") }).unwrap();
    let tight = Floor {
        max_blast_radius: 2,
    };
    let rules = floor_rules(ChangeKind::DeleteRole, &a, &tight);
    assert_eq!(rules.len(), 1);
    assert!(rules[0].contains("blast radius 3"));
    assert!(rules[0].contains("maximum of 2"));
    let at = Floor {
        max_blast_radius: 3,
    };
    assert!(floor_rules(ChangeKind::DeleteRole, &a, &at).is_empty());

    // A privileged grant is no floor rule by itself.
    let a = assess(&g, &grant("bot", "db:prod:read")).unwrap();
    assert!(floor_rules(ChangeKind::GrantEntitlement, &a, &f).is_empty());
}

#[test]
fn decide_highest_policy_wins_and_default_is_three() {
    let d = decide(
        vec![reason("a", 1), reason("c", 2), reason("b", 2)],
        vec![],
        7,
        vec![],
        vec![],
    );
    assert_eq!(d.tier, 2);
    assert!(!d.defaulted);
    assert_eq!(d.policy_version, 7);
    // Highest first, then by name.
    let names: Vec<&str> = d.policies.iter().map(|p| p.policy.as_str()).collect();
    assert_eq!(names, ["b", "c", "a"]);

    let d = decide(vec![], vec![], 1, vec![], vec![]);
    assert_eq!(d.tier, DEFAULT_TIER);
    assert_eq!(DEFAULT_TIER, 3);
    assert!(d.defaulted);

    // A policy may lower the tier below the default when nothing else applies.
    assert_eq!(
        decide(vec![reason("a", 1)], vec![], 1, vec![], vec![]).tier,
        1
    );
}

#[test]
fn decide_floor_and_escalations_raise_but_never_lower() {
    for t in [1, 2] {
        let d = decide(vec![reason("a", t)], vec![], 1, vec![s("floor: x")], vec![]);
        assert_eq!(d.tier, 3, "floor over tier {t}");
        assert_eq!(d.floor, vec![s("floor: x")]);
        let d = decide(vec![reason("a", t)], vec![], 1, vec![], vec![s("overdue")]);
        assert_eq!(d.tier, 3, "escalation over tier {t}");
    }
    let d = decide(
        vec![reason("a", 4)],
        vec![],
        1,
        vec![s("floor: x")],
        vec![s("e")],
    );
    assert_eq!(d.tier, 4);
    // Floor with no policy: the default.
    let d = decide(vec![], vec![], 1, vec![s("floor: x")], vec![]);
    assert_eq!((d.tier, d.defaulted), (3, true));
}

#[test]
fn decide_policy_errors_escalate() {
    let d = decide(
        vec![reason("a", 1)],
        vec![s("p: overflow")],
        1,
        vec![],
        vec![s("review overdue")],
    );
    assert_eq!(d.tier, 3);
    assert_eq!(d.escalations.len(), 2);
    assert_eq!(d.escalations[0], "review overdue");
    assert!(d.escalations[1].contains("tier policy failed to evaluate"));
    assert!(d.escalations[1].contains("p: overflow"));
    // Errors alone (nothing matched) are still at least 3, never below.
    let d = decide(vec![], vec![s("boom")], 1, vec![], vec![]);
    assert_eq!(d.tier, 3);
}

// ---------------------------------------------------------------------------------------
// Proposals
// ---------------------------------------------------------------------------------------

fn proposal(
    id: &str,
    capability: &str,
    change: Change,
    blast: u64,
    state: ProposalState,
    submitted_ms: Millis,
    correlation: &str,
) -> Proposal {
    let identities: Vec<String> = match change.target_identity() {
        Some(t) => vec![t.to_owned()],
        None => (0..blast).map(|n| format!("member-{n}")).collect(),
    };
    Proposal {
        id: s(id),
        capability: s(capability),
        proposer: s("cap-bot"),
        change,
        system: s("warrant"),
        evidence: serde_json::json!({}),
        rationale: s("unused for 90 days"),
        confidence_pct: 90,
        parent: None,
        correlation: s(correlation),
        submitted_ms,
        assessment: Assessment {
            identities,
            identities_count: blast,
            beneficiaries: sv(&["alice", "svc-a"]),
            ..Default::default()
        },
        tier: decide(vec![], vec![], 1, vec![], vec![]),
        state,
        approvals_required: 1,
        approvals: vec![],
        notified: vec![],
        deadline_ms: Some(10_000),
        decision: None,
        executions: vec![],
        deliveries: vec![],
        updated_ms: submitted_ms,
    }
}

#[test]
fn proposal_targets() {
    let p = proposal(
        "p",
        "c",
        grant("svc-a", "x:y"),
        1,
        ProposalState::Executed,
        0,
        "p",
    );
    assert_eq!(p.targets(), sv(&["svc-a"]));
    assert_eq!(p.kind(), ChangeKind::GrantEntitlement);
    let p = proposal(
        "p",
        "c",
        modify_role("r", &["a:b"], &[], None),
        2,
        ProposalState::Executed,
        0,
        "p",
    );
    assert_eq!(p.targets(), sv(&["member-0", "member-1"]));
}

#[test]
fn proposal_state_counting() {
    for st in ProposalState::ALL {
        assert_eq!(ProposalState::parse(st.as_str()), Some(st));
    }
    for st in [
        ProposalState::Rejected,
        ProposalState::Expired,
        ProposalState::Failed,
        ProposalState::Overridden,
    ] {
        assert!(!st.counts(), "{st:?}");
        assert!(!st.is_open(), "{st:?}");
    }
    for st in [
        ProposalState::PendingApproval,
        ProposalState::Recommended,
        ProposalState::Executing,
        ProposalState::InReview,
        ProposalState::Executed,
        ProposalState::Ratified,
    ] {
        assert!(st.counts(), "{st:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Aggregates
// ---------------------------------------------------------------------------------------

fn thresholds() -> Thresholds {
    Thresholds {
        window_ms: 1_000,
        capability_max: 10,
        target_max: 2,
        overall_max: 20,
        chain_max_blast: 8,
        chain_max_length: 3,
        chain_window_ms: 5_000,
    }
}

#[test]
fn aggregates_sum_per_capability_target_overall_and_chain() {
    let t = thresholds();
    let mut agg = Aggregates::default();
    assert!(agg.is_empty());
    let p1 = proposal(
        "p1",
        "cap-a",
        grant("svc-a", "x:y"),
        1,
        ProposalState::Executed,
        100,
        "c1",
    );
    let p2 = proposal(
        "p2",
        "cap-a",
        modify_role("r", &["a:b"], &[], None),
        3,
        ProposalState::InReview,
        110,
        "c1",
    );
    let p3 = proposal(
        "p3",
        "cap-b",
        revoke("svc-a", "x:y"),
        1,
        ProposalState::PendingApproval,
        120,
        "c3",
    );
    let p4 = proposal(
        "p4",
        "cap-b",
        Change::DeleteRole { role: s("r") },
        4,
        ProposalState::Executed,
        130,
        "c3",
    );
    for p in [&p1, &p2, &p3, &p4] {
        agg.observe(p, 200, &t);
    }
    assert_eq!(agg.len(), 4);

    let v = agg.view("cap-a", &sv(&["svc-a"]), "c1", &t);
    assert_eq!(v.capability, 4);
    assert_eq!(v.target, 2);
    assert_eq!(v.overall, 9);
    assert_eq!(v.chain_length, 2);
    assert_eq!(v.chain_blast, 4);
    assert_eq!(v.window_ms, 1_000);

    let v = agg.view("cap-b", &sv(&["member-0", "nobody"]), "c3", &t);
    assert_eq!(v.capability, 5);
    // member-0 is a target of p2 and p4; the view takes the most-changed target.
    assert_eq!(v.target, 2);
    assert_eq!(v.chain_length, 2);
    assert_eq!(v.chain_blast, 5);

    let v = agg.view("cap-new", &[], "new-chain", &t);
    assert_eq!(
        (
            v.capability,
            v.target,
            v.overall,
            v.chain_length,
            v.chain_blast
        ),
        (0, 0, 9, 0, 0)
    );
}

#[test]
fn aggregates_reobserving_does_not_double_count() {
    let t = thresholds();
    let mut agg = Aggregates::default();
    let mut p = proposal(
        "p1",
        "cap-a",
        grant("svc-a", "x:y"),
        2,
        ProposalState::PendingApproval,
        100,
        "c1",
    );
    agg.observe(&p, 150, &t);
    agg.observe(&p, 160, &t);
    p.state = ProposalState::Executing;
    agg.observe(&p, 170, &t);
    p.state = ProposalState::Executed;
    agg.observe(&p, 180, &t);
    assert_eq!(agg.len(), 1);
    let v = agg.view("cap-a", &sv(&["svc-a"]), "c1", &t);
    assert_eq!(
        (
            v.capability,
            v.target,
            v.overall,
            v.chain_length,
            v.chain_blast
        ),
        (2, 1, 2, 1, 2)
    );
}

#[test]
fn aggregates_stop_counting_overridden_and_rejected() {
    let t = thresholds();
    for end in [
        ProposalState::Overridden,
        ProposalState::Rejected,
        ProposalState::Expired,
        ProposalState::Failed,
    ] {
        let mut agg = Aggregates::default();
        let keep = proposal(
            "keep",
            "cap-a",
            grant("svc-a", "a:b"),
            1,
            ProposalState::Executed,
            100,
            "c1",
        );
        let mut p = proposal(
            "p",
            "cap-a",
            grant("svc-a", "x:y"),
            3,
            ProposalState::InReview,
            110,
            "c1",
        );
        agg.observe(&keep, 150, &t);
        agg.observe(&p, 150, &t);
        let v = agg.view("cap-a", &sv(&["svc-a"]), "c1", &t);
        assert_eq!(
            (v.capability, v.target, v.overall, v.chain_blast),
            (4, 2, 4, 4)
        );
        p.state = end;
        agg.observe(&p, 160, &t);
        let v = agg.view("cap-a", &sv(&["svc-a"]), "c1", &t);
        assert_eq!(
            (v.capability, v.target, v.overall, v.chain_blast),
            (1, 1, 1, 1),
            "{end:?}"
        );
        // The step stays in the chain, with no blast radius.
        assert_eq!(v.chain_length, 2, "{end:?}");
        assert_eq!(agg.len(), 1, "{end:?}");
    }
}

#[test]
fn aggregates_window_expiry() {
    let t = thresholds();
    let mut agg = Aggregates::default();
    let p1 = proposal(
        "p1",
        "cap-a",
        grant("svc-a", "x:y"),
        2,
        ProposalState::Executed,
        100,
        "c1",
    );
    let p2 = proposal(
        "p2",
        "cap-a",
        grant("svc-b", "x:y"),
        3,
        ProposalState::Executed,
        600,
        "c1",
    );
    agg.observe(&p1, 700, &t);
    agg.observe(&p2, 700, &t);
    assert_eq!(agg.view("cap-a", &[], "c1", &t).capability, 5);

    // The window is (now - window, now]: at now = 1099, p1 (at 100) still counts.
    agg.expire(1_099, &t);
    assert_eq!(agg.len(), 2);
    agg.expire(1_100, &t);
    assert_eq!(agg.len(), 1);
    let v = agg.view("cap-a", &sv(&["svc-a", "svc-b"]), "c1", &t);
    assert_eq!((v.capability, v.overall), (3, 3));
    // svc-a's count dropped with p1; svc-b's did not.
    assert_eq!(agg.view("cap-a", &sv(&["svc-a"]), "c1", &t).target, 0);
    assert_eq!(v.target, 1);
    // The chain keeps both steps within its own (longer) window.
    assert_eq!((v.chain_length, v.chain_blast), (2, 5));

    agg.expire(1_600, &t);
    assert!(agg.is_empty());
    let v = agg.view("cap-a", &sv(&["svc-b"]), "c1", &t);
    assert_eq!((v.capability, v.target, v.overall), (0, 0, 0));
    assert_eq!(v.chain_length, 2);

    // The chain window ends after its last step.
    agg.expire(600 + 4_999, &t);
    assert_eq!(agg.view("cap-a", &[], "c1", &t).chain_length, 2);
    agg.expire(600 + 5_000, &t);
    let v = agg.view("cap-a", &[], "c1", &t);
    assert_eq!((v.chain_length, v.chain_blast), (0, 0));
}

#[test]
fn aggregates_ignore_proposals_already_outside_the_window() {
    let t = thresholds();
    let mut agg = Aggregates::default();
    let p = proposal(
        "old",
        "cap-a",
        grant("svc-a", "x:y"),
        2,
        ProposalState::Executed,
        100,
        "c1",
    );
    agg.observe(&p, 1_100, &t);
    assert!(agg.is_empty());
    assert_eq!(agg.view("cap-a", &sv(&["svc-a"]), "c1", &t).overall, 0);
    // But it is still within the chain window.
    assert_eq!(agg.view("cap-a", &[], "c1", &t).chain_length, 1);
}

#[test]
fn crossed_reports_each_threshold_with_figures() {
    let t = thresholds();
    // Right at every threshold: nothing is crossed.
    let at = AggregateView {
        capability: 8,
        target: 1,
        overall: 18,
        chain_length: 2,
        chain_blast: 6,
        window_ms: t.window_ms,
    };
    assert!(crossed(&at, 2, "cap-a", &t).is_empty());

    let over = crossed(&at, 3, "cap-a", &t);
    assert_eq!(over.len(), 3, "{over:?}");
    assert!(
        over[0].contains("capability `cap-a`")
            && over[0].contains("11")
            && over[0].contains("threshold 10")
    );
    assert!(
        over[1].contains("all capabilities")
            && over[1].contains("21")
            && over[1].contains("threshold 20")
    );
    assert!(
        over[2].contains("correlation chain")
            && over[2].contains("blast radius of 9")
            && over[2].contains("threshold 8")
    );

    let busy = AggregateView {
        target: 2,
        chain_length: 3,
        ..at
    };
    let over = crossed(&busy, 0, "cap-a", &t);
    assert_eq!(over.len(), 2, "{over:?}");
    assert!(over[0].contains("change #3") && over[0].contains("threshold 2"));
    assert!(over[1].contains("4 steps") && over[1].contains("threshold 3"));

    // Hours are shown for the window.
    let d = Thresholds::default();
    let v = AggregateView {
        capability: 50,
        ..Default::default()
    };
    let over = crossed(&v, 1, "cap-a", &d);
    assert_eq!(over.len(), 1);
    assert!(over[0].contains("within 24 h"), "{over:?}");
}

#[test]
fn aggregates_view_feeds_crossed() {
    let t = thresholds();
    let mut agg = Aggregates::default();
    for n in 0..3 {
        let p = proposal(
            &format!("p{n}"),
            "cap-a",
            grant("svc-a", &format!("x:{n}")),
            1,
            ProposalState::Executed,
            100 + n,
            "chain",
        );
        let v = agg.view("cap-a", &p.targets(), "chain", &t);
        let c = crossed(&v, 1, "cap-a", &t);
        if n < 2 {
            assert!(c.is_empty(), "step {n}: {c:?}");
        } else {
            // The third change to svc-a within the window, third step of the chain.
            assert_eq!(c.len(), 1, "{c:?}");
            assert!(c[0].contains("change #3"));
        }
        agg.observe(&p, 200, &t);
    }
    let v = agg.view("cap-a", &sv(&["svc-a"]), "chain", &t);
    assert!(crossed(&v, 1, "cap-a", &t)
        .iter()
        .any(|r| r.contains("4 steps")));
}

// ---------------------------------------------------------------------------------------
// Workflow
// ---------------------------------------------------------------------------------------

const JUST: &str = "removes an entitlement unused for 90 days";

fn rules() -> ApprovalRules {
    ApprovalRules::default()
}

fn ok_ticket(_: &str) -> Result<(), String> {
    Ok(())
}

fn pending() -> Proposal {
    proposal(
        "p1",
        "role-right-sizing",
        revoke("svc-a", "public:get"),
        1,
        ProposalState::PendingApproval,
        100,
        "p1",
    )
}

fn human(h: &str) -> Actor {
    Actor::Human(s(h))
}

#[test]
fn approve_refuses_who_may_not_approve() {
    let base = pending();
    let cases: Vec<(Actor, ErrKind, &str)> = vec![
        (
            Actor::Identity {
                id: s("bot"),
                ai: true,
            },
            is_forbidden,
            "AI identity `bot`",
        ),
        (
            Actor::Identity {
                id: s("svc-b"),
                ai: false,
            },
            is_forbidden,
            "only a named human",
        ),
        (Actor::Unnamed(s("bootstrap")), is_forbidden, "named human"),
        (human("cap-bot"), is_forbidden, "requesting identity"),
        (human("alice"), is_forbidden, "benefits"),
        (human("svc-a"), is_forbidden, "benefits"),
    ];
    for (actor, want, msg) in cases {
        let mut p = base.clone();
        let r = approve(&mut p, &actor, JUST, "CHG-1", ok_ticket, 500, &rules());
        assert_err(r, want, &[msg]);
        assert_eq!(p, base, "a refused approval changed the proposal");
    }
}

#[test]
fn approve_refuses_bad_input() {
    let base = pending();
    let mut p = base.clone();
    // Too short, even padded with spaces.
    let short = format!("  {}  ", "x".repeat(19));
    assert_err(
        approve(
            &mut p,
            &human("erin"),
            &short,
            "CHG-1",
            ok_ticket,
            500,
            &rules(),
        ),
        is_invalid,
        &["at least 20 characters"],
    );
    assert_err(
        approve(
            &mut p,
            &human("erin"),
            JUST,
            "   ",
            ok_ticket,
            500,
            &rules(),
        ),
        is_invalid,
        &["change-ticket"],
    );
    let check = |t: &str| {
        if t.starts_with("CHG-") {
            Ok(())
        } else {
            Err(format!("ticket `{t}` does not match CHG-*"))
        }
    };
    assert_err(
        approve(&mut p, &human("erin"), JUST, "JIRA-9", check, 500, &rules()),
        is_invalid,
        &["JIRA-9", "CHG-*"],
    );
    assert_eq!(p, base);
    // The checker sees the trimmed ticket.
    let r = approve(
        &mut p,
        &human("erin"),
        JUST,
        " CHG-7 ",
        check,
        500,
        &rules(),
    )
    .unwrap();
    assert_eq!(r, Approved::Execute);
    assert_eq!(p.approvals.len(), 1);
    assert_eq!(p.approvals[0].ticket, "CHG-7");
    assert_eq!(p.approvals[0].by, "erin");
    assert_eq!(p.approvals[0].at_ms, 500);
    assert_eq!(p.updated_ms, 500);
    // Exactly the minimum is enough.
    let mut p = base.clone();
    let exact = "y".repeat(20);
    assert!(approve(
        &mut p,
        &human("erin"),
        &exact,
        "CHG-1",
        ok_ticket,
        500,
        &rules()
    )
    .is_ok());
}

#[test]
fn approve_refuses_wrong_state_and_late() {
    for st in ProposalState::ALL {
        if st == ProposalState::PendingApproval {
            continue;
        }
        let mut p = pending();
        p.state = st;
        assert_err(
            approve(
                &mut p,
                &human("erin"),
                JUST,
                "CHG-1",
                ok_ticket,
                500,
                &rules(),
            ),
            is_conflict,
            &[st.as_str()],
        );
    }
    for now in [10_000, 10_001] {
        let mut p = pending();
        assert_err(
            approve(
                &mut p,
                &human("erin"),
                JUST,
                "CHG-1",
                ok_ticket,
                now,
                &rules(),
            ),
            is_conflict,
            &["expired"],
        );
    }
    let mut p = pending();
    assert!(approve(
        &mut p,
        &human("erin"),
        JUST,
        "CHG-1",
        ok_ticket,
        9_999,
        &rules()
    )
    .is_ok());
    // No deadline: no expiry.
    let mut p = pending();
    p.deadline_ms = None;
    assert!(approve(
        &mut p,
        &human("erin"),
        JUST,
        "CHG-1",
        ok_ticket,
        1 << 50,
        &rules()
    )
    .is_ok());
}

#[test]
fn two_person_rule() {
    let mut p = pending();
    p.approvals_required = 2;
    let r = approve(
        &mut p,
        &human("erin"),
        JUST,
        "CHG-1",
        ok_ticket,
        500,
        &rules(),
    )
    .unwrap();
    assert_eq!(
        r,
        Approved::NeedsMore {
            have: 1,
            required: 2
        }
    );
    assert_eq!(p.state, ProposalState::PendingApproval);
    assert_err(
        approve(
            &mut p,
            &human("erin"),
            JUST,
            "CHG-1",
            ok_ticket,
            600,
            &rules(),
        ),
        is_conflict,
        &["approved this proposal already"],
    );
    assert_eq!(p.approvals.len(), 1);
    let r = approve(
        &mut p,
        &human("frank"),
        JUST,
        "CHG-1",
        ok_ticket,
        700,
        &rules(),
    )
    .unwrap();
    assert_eq!(r, Approved::Execute);
    let by: Vec<&str> = p.approvals.iter().map(|a| a.by.as_str()).collect();
    assert_eq!(by, ["erin", "frank"]);

    // Zero required still means one approval.
    let mut p = pending();
    p.approvals_required = 0;
    let r = approve(
        &mut p,
        &human("erin"),
        JUST,
        "CHG-1",
        ok_ticket,
        500,
        &rules(),
    )
    .unwrap();
    assert_eq!(r, Approved::Execute);
}

#[test]
fn reject_rules() {
    let mut p = pending();
    reject(
        &mut p,
        &human("erin"),
        &format!("  {JUST}  "),
        500,
        &rules(),
    )
    .unwrap();
    assert_eq!(p.state, ProposalState::Rejected);
    let d = p.decision.clone().unwrap();
    assert_eq!(
        (d.by.as_str(), d.action.as_str(), d.at_ms),
        ("erin", "reject", 500)
    );
    assert_eq!(d.justification, JUST);
    assert_eq!(d.ticket, None);

    // A recommendation can be dismissed.
    let mut p = pending();
    p.state = ProposalState::Recommended;
    reject(&mut p, &human("erin"), JUST, 500, &rules()).unwrap();
    assert_eq!(p.state, ProposalState::Rejected);

    for st in [
        ProposalState::InReview,
        ProposalState::Executed,
        ProposalState::Rejected,
        ProposalState::Executing,
    ] {
        let mut p = pending();
        p.state = st;
        assert_err(
            reject(&mut p, &human("erin"), JUST, 500, &rules()),
            is_conflict,
            &[st.as_str()],
        );
    }
    let base = pending();
    let mut p = base.clone();
    assert_err(
        reject(
            &mut p,
            &Actor::Identity {
                id: s("bot"),
                ai: true,
            },
            JUST,
            500,
            &rules(),
        ),
        is_forbidden,
        &["AI identity"],
    );
    assert_err(
        reject(&mut p, &human("erin"), JUST, 10_000, &rules()),
        is_conflict,
        &["expired"],
    );
    assert_err(
        reject(&mut p, &human("erin"), "too short", 500, &rules()),
        is_invalid,
        &[],
    );
    assert_eq!(p, base);
}

fn in_review() -> (Proposal, Capability) {
    let mut p = proposal(
        "p2",
        "role-right-sizing",
        revoke("svc-a", "public:get"),
        1,
        ProposalState::InReview,
        100,
        "p2",
    );
    p.assessment.inverse = Some(grant("svc-a", "public:get"));
    p.assessment.reversible = true;
    p.notified = sv(&["nina"]);
    let mut n = new_cap();
    n.reviewer = Some(s("rita"));
    let c = accepted(n.into_capability("admin", 1, None).unwrap(), 1);
    (p, c)
}

#[test]
fn override_by_reviewer_owner_or_notified_returns_the_inverse() {
    for who in ["rita", "olga", "nina"] {
        let (mut p, c) = in_review();
        let inv = override_change(&mut p, &c, &human(who), JUST, 9_999, &rules()).unwrap();
        assert_eq!(inv, grant("svc-a", "public:get"), "{who}");
        assert_eq!(p.state, ProposalState::Overridden);
        let d = p.decision.unwrap();
        assert_eq!((d.by.as_str(), d.action.as_str()), (who, "override"));
        assert_eq!(p.updated_ms, 9_999);
    }
}

#[test]
fn the_reviewer_ratifies_within_the_window_only() {
    let (mut p, c) = in_review();
    ratify(&mut p, &c, &human("rita"), JUST, 9_999, &rules()).unwrap();
    assert_eq!(p.state, ProposalState::Ratified);
    let d = p.decision.clone().unwrap();
    assert_eq!((d.by.as_str(), d.action.as_str()), ("rita", "ratify"));
    // Ratified: neither the timer nor an override touches it any more.
    assert_eq!(timer(&p, 20_000), None);
    assert_err(
        override_change(&mut p, &c, &human("rita"), JUST, 9_999, &rules()),
        is_conflict,
        &["ratified"],
    );
    let (base, c) = in_review();
    let mut p = base.clone();
    assert_err(
        ratify(&mut p, &c, &human("mallory"), JUST, 500, &rules()),
        is_forbidden,
        &["rita"],
    );
    assert_err(
        ratify(&mut p, &c, &human("rita"), JUST, 10_000, &rules()),
        is_conflict,
        &["ended"],
    );
    assert_eq!(p, base);
}

#[test]
fn override_refusals() {
    let (base, c) = in_review();

    let mut p = base.clone();
    assert_err(
        override_change(&mut p, &c, &human("mallory"), JUST, 500, &rules()),
        is_forbidden,
        &["rita", "olga"],
    );
    assert_err(
        override_change(
            &mut p,
            &c,
            &Actor::Identity {
                id: s("cap-bot"),
                ai: true,
            },
            JUST,
            500,
            &rules(),
        ),
        is_forbidden,
        &["AI identity"],
    );
    assert_err(
        override_change(&mut p, &c, &Actor::Unnamed(s("t")), JUST, 500, &rules()),
        is_forbidden,
        &[],
    );
    // The window ends at the deadline, inclusive.
    for now in [10_000, 20_000] {
        assert_err(
            override_change(&mut p, &c, &human("rita"), JUST, now, &rules()),
            is_conflict,
            &["override window", "ended"],
        );
    }
    assert_err(
        override_change(&mut p, &c, &human("rita"), "short", 500, &rules()),
        is_invalid,
        &[],
    );
    assert_eq!(p, base);

    for st in ProposalState::ALL {
        if st == ProposalState::InReview {
            continue;
        }
        let mut p = base.clone();
        p.state = st;
        assert_err(
            override_change(&mut p, &c, &human("rita"), JUST, 500, &rules()),
            is_conflict,
            &[st.as_str()],
        );
    }

    // Irreversible.
    let mut p = base.clone();
    p.assessment.inverse = None;
    p.assessment.reversible = false;
    assert_err(
        override_change(&mut p, &c, &human("rita"), JUST, 500, &rules()),
        is_conflict,
        &["no inverse"],
    );
    assert_eq!(p.state, ProposalState::InReview);
}

#[test]
fn perform_only_recommendations() {
    let mut p = pending();
    p.state = ProposalState::Recommended;
    let base = p.clone();

    assert_err(
        perform(
            &mut p,
            &human("alice"),
            JUST,
            "CHG-1",
            ok_ticket,
            500,
            &rules(),
        ),
        is_forbidden,
        &["benefits"],
    );
    assert_err(
        perform(
            &mut p,
            &human("cap-bot"),
            JUST,
            "CHG-1",
            ok_ticket,
            500,
            &rules(),
        ),
        is_forbidden,
        &["requesting identity"],
    );
    assert_err(
        perform(
            &mut p,
            &Actor::Identity {
                id: s("bot"),
                ai: true,
            },
            JUST,
            "CHG-1",
            ok_ticket,
            500,
            &rules(),
        ),
        is_forbidden,
        &["AI identity"],
    );
    assert_err(
        perform(&mut p, &human("erin"), JUST, "", ok_ticket, 500, &rules()),
        is_invalid,
        &["change-ticket"],
    );
    assert_err(
        perform(
            &mut p,
            &human("erin"),
            JUST,
            "X",
            |_| Err(s("bad ticket")),
            500,
            &rules(),
        ),
        is_invalid,
        &["bad ticket"],
    );
    assert_err(
        perform(
            &mut p,
            &human("erin"),
            JUST,
            "CHG-1",
            ok_ticket,
            10_000,
            &rules(),
        ),
        is_conflict,
        &["expired"],
    );
    assert_eq!(p, base);

    let who = perform(
        &mut p,
        &human("erin"),
        JUST,
        " CHG-1 ",
        ok_ticket,
        500,
        &rules(),
    )
    .unwrap();
    assert_eq!(who, "erin");
    let d = p.decision.clone().unwrap();
    assert_eq!(d.action, "perform");
    assert_eq!(d.ticket.as_deref(), Some("CHG-1"));

    for st in [
        ProposalState::PendingApproval,
        ProposalState::InReview,
        ProposalState::Executed,
    ] {
        let mut p = base.clone();
        p.state = st;
        assert_err(
            perform(
                &mut p,
                &human("erin"),
                JUST,
                "CHG-1",
                ok_ticket,
                500,
                &rules(),
            ),
            is_conflict,
            &["only Tier 4"],
        );
    }
}

#[test]
fn timers() {
    let at = |st: ProposalState, now: Millis| {
        let mut p = pending();
        p.state = st;
        timer(&p, now)
    };
    assert_eq!(at(ProposalState::InReview, 9_999), None);
    assert_eq!(
        at(ProposalState::InReview, 10_000),
        Some(TimerOutcome::Ratify)
    );
    assert_eq!(
        at(ProposalState::InReview, 10_001),
        Some(TimerOutcome::Ratify)
    );
    assert_eq!(at(ProposalState::PendingApproval, 9_999), None);
    assert_eq!(
        at(ProposalState::PendingApproval, 10_000),
        Some(TimerOutcome::Expire)
    );
    assert_eq!(
        at(ProposalState::Recommended, 20_000),
        Some(TimerOutcome::Expire)
    );
    for st in [
        ProposalState::Executing,
        ProposalState::Executed,
        ProposalState::Ratified,
        ProposalState::Overridden,
        ProposalState::Rejected,
        ProposalState::Expired,
        ProposalState::Failed,
    ] {
        assert_eq!(at(st, 20_000), None, "{st:?}");
    }
    let mut p = pending();
    p.deadline_ms = None;
    assert_eq!(timer(&p, Millis::MAX), None);
}

#[test]
fn actor_audit_strings() {
    assert_eq!(human("erin").audit(), "human:erin");
    assert_eq!(Actor::Unnamed(s("boot")).audit(), "admin:boot");
    assert_eq!(
        Actor::Identity {
            id: s("bot"),
            ai: true
        }
        .audit(),
        "identity:bot"
    );
    assert_eq!(human("erin").human("x"), Ok("erin"));
}
