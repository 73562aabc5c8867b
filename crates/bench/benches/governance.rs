//! Tiered change governance: what assessing and tiering a proposal costs, how the
//! blast-radius computation grows with a role's members, and what the sliding-window
//! aggregates cost as the window fills. Same machine, same run, ratios against baselines.
//!
//! The snapshot is the server's own (`warrant_server::snapshot::Snapshot`, built with
//! `upsert_identity` / `put_role` as the writer does, so the role-member index is the
//! real one), with the default tier policies and a few classified resources.
//!
//! 1. `submit_pre_write/*`: the work `GovOp::Submit` does before it writes anything —
//!    the capability and proposer lookups and the server's `assess_and_tier`: `assess`
//!    (from the graph), `check_capability`, the aggregates `view` and `crossed`, the tier
//!    policies (one Cedar request), the floor and `decide` — for a
//!    `revoke_entitlement` of one identity (Tier 1), target drawn uniformly from a
//!    registry of 100 and of 100,000 identities (should be flat), and on the large
//!    registry from a hot set of 100 targets.
//!    Baselines: `TierPolicies::evaluate` alone on the same input, and a bare
//!    `warrant_policy::decide` (what `/v1/authorize` evaluates) for scale.
//! 2. `blast_radius/{delete_role,modify_role}/<members>`: `assess` of a change to a role
//!    with 10 .. 100,000 members in the 100,000-identity registry (should be linear in
//!    the members; criterion's throughput is per member).
//! 3. `aggregates/*`: `Aggregates::view` + `observe` (what one submitted proposal costs
//!    the aggregates) on a clone of aggregates holding 10,000 and 1,000,000 proposals in
//!    the window (persistent maps: should be ~log n). With the default 30-day chain window
//!    every proposal without a parent is a chain of its own; `observe` then scans every
//!    chain for expiry, which is measured separately with 1,000 .. 16,000 chains.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "benchmark setup: a failure must stop the run"
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use serde_json::json;
use warrant_core::governance::aggregate::{Aggregates, Thresholds};
use warrant_core::governance::assess::assess;
use warrant_core::governance::{
    Acceptance, Assessment, Capability, Change, Classification, NewCapability, Proposal,
    ProposalState, Resource, Role, TierDecision,
};
use warrant_core::identity::{Identity, IdentityKind, IdentityState};
use warrant_policy::{build_principal, DecisionInput, PolicyBundle, TierInput, TierPolicies};
use warrant_server::governance::ops::assess_and_tier;
use warrant_server::governance::GovConfig;
use warrant_server::snapshot::{facts, Snapshot};

const SCHEMA: &str = r#"
namespace App {
  entity Document = { classification: String };
  action read, write appliesTo {
    principal: [Warrant::Identity],
    resource: [Document],
    context: { risk: Long }
  };
}
"#;

const POLICIES: &str = r#"
@id("readers-read")
permit (principal in Warrant::Role::"reader", action == App::Action::"read", resource)
when { context.risk < 50 };

@id("no-prod-writes-by-ai")
forbid (principal in Warrant::Environment::"prod", action == App::Action::"write", resource)
when { principal.kind == "ai_tool" };

@id("writers-write")
permit (principal, action == App::Action::"write", resource)
when { principal.entitlements.contains("docs:write") };
"#;

const AI: &str = "idn_optimizer";
const CAPABILITY: &str = "right-sizing";
/// Role sizes of the blast-radius benchmark (roles `members-<n>`).
const ROLE_SIZES: [usize; 5] = [10, 100, 1_000, 10_000, 100_000];

fn role_name(n: usize) -> String {
    format!("members-{n}")
}

fn id_of(i: usize) -> String {
    format!("idn_{i:08}")
}

fn target(i: usize, roles: Vec<String>) -> Identity {
    Identity {
        id: id_of(i),
        name: format!("svc-{i}"),
        kind: IdentityKind::ServiceAccount,
        environment: "prod".into(),
        spiffe_id: format!("spiffe://warrant.local/prod/svc-{i}"),
        owner: "bob@example.com".into(),
        description: String::new(),
        state: IdentityState::Active,
        roles,
        // Sorted: `docs` is internal (Tier 1 when revoked), `hr` restricted (Tier 3).
        entitlements: vec![
            "docs:write".into(),
            "hr:payroll:read".into(),
            "s3:logs:read".into(),
        ],
        created_ms: 0,
        updated_ms: 0,
        last_used_ms: None,
    }
}

/// A snapshot with `n` identities (each in `reader` and in every `members-<k>` role with
/// k > its index), the AI identity, classified resources and an accepted capability.
fn snapshot(n: usize) -> Snapshot {
    let bundle = PolicyBundle::compile(SCHEMA, POLICIES).expect("bench policies compile");
    let mut s = Snapshot::new(Arc::new(bundle), 1);
    for (id, classification, privileged) in [
        ("docs", Classification::Internal, false),
        ("hr", Classification::Restricted, false),
        ("s3", Classification::Confidential, false),
        ("s3:logs", Classification::Internal, false),
        ("reports", Classification::Internal, false),
        ("iam", Classification::Restricted, true),
    ] {
        s.gov.resources.insert(
            id.into(),
            Arc::new(Resource {
                id: id.into(),
                classification,
                privileged,
                description: String::new(),
            }),
        );
    }
    s.put_role(
        "reader",
        Some(Role {
            name: "reader".into(),
            description: String::new(),
            privileged: false,
            entitlements: vec!["docs:read".into()],
        }),
    );
    for k in ROLE_SIZES.iter().filter(|k| **k <= n) {
        s.put_role(
            &role_name(*k),
            Some(Role {
                name: role_name(*k),
                description: String::new(),
                privileged: false,
                entitlements: vec![format!("reports:r{k}:read")],
            }),
        );
    }
    s.upsert_identity(Identity {
        id: AI.into(),
        name: "access-optimizer".into(),
        kind: IdentityKind::AiTool,
        environment: "prod".into(),
        spiffe_id: "spiffe://warrant.local/prod/access-optimizer".into(),
        owner: "alice@example.com".into(),
        description: String::new(),
        state: IdentityState::Active,
        roles: vec![],
        entitlements: vec![],
        created_ms: 0,
        updated_ms: 0,
        last_used_ms: None,
    });
    for i in 0..n {
        let mut roles: Vec<String> = ROLE_SIZES
            .iter()
            .filter(|k| i < **k && **k <= n)
            .map(|k| role_name(*k))
            .collect();
        roles.push("reader".into());
        roles.sort();
        s.upsert_identity(target(i, roles));
    }
    let cap = capability();
    s.gov.capabilities.insert(cap.id.clone(), Arc::new(cap));
    assert_eq!(s.principals.len(), n + 1);
    s
}

fn capability() -> Capability {
    // Through the domain's own constructor (validation, defaults), then accepted.
    let mut cap = NewCapability {
        id: CAPABILITY.into(),
        identity: AI.into(),
        kinds: vec![
            "revoke_entitlement".into(),
            "delete_role".into(),
            "modify_role".into(),
        ],
        max_blast_radius: 1_000_000,
        owner: "alice@example.com".into(),
        review_every_days: 366,
        ..NewCapability::default()
    }
    .into_capability("admin:bench", 0, None)
    .expect("capability");
    cap.accepted = Some(Acceptance {
        by: "alice@example.com".into(),
        at_ms: 0,
        statement: String::new(),
    });
    cap.last_review_ms = Some(now_ms());
    cap
}

fn now_ms() -> i64 {
    1_800_000_000_000
}

/// What `GovOp::Submit` computes before it writes: the server's own
/// `assess_and_tier` (assess, check_capability, aggregates view, tier policies, floor,
/// decide) after the capability and proposer lookups `submit` makes.
fn pre_write(
    snap: &Snapshot,
    proposal_id: &str,
    change: &Change,
    confidence_pct: u8,
    gov: &GovConfig,
) -> (Assessment, TierDecision) {
    let cap = snap.gov.capabilities.get(CAPABILITY).expect("capability");
    let proposer = &snap
        .principals
        .get(&cap.identity)
        .expect("proposer")
        .identity;
    let t = assess_and_tier(
        snap,
        gov,
        cap,
        proposer,
        proposal_id,
        change,
        confidence_pct,
        proposal_id,
        now_ms(),
    )
    .expect("assess and tier");
    (t.assessment, t.tier)
}

fn revoke(i: usize) -> Change {
    Change::RevokeEntitlement {
        identity: id_of(i),
        entitlement: "docs:write".into(),
    }
}

/// xorshift64*: the same targets every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) % n as u64) as usize
    }
}

/// Changes to targets drawn uniformly from `n` identities, pre-built (the API parses the
/// change before the writer sees it).
fn revokes(n: usize, count: usize) -> Vec<Change> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    (0..count).map(|_| revoke(rng.below(n))).collect()
}

fn submit(c: &mut Criterion, small: &Snapshot, large: &Snapshot) {
    let gov = GovConfig::default();
    // Sanity: a small revocation is Tier 1, on both registries.
    for s in [small, large] {
        let (a, t) = pre_write(s, "prp_check", &revoke(7), 95, &gov);
        assert_eq!((a.identities_count, t.tier), (1, 1), "{t:?}");
        let hr = Change::RevokeEntitlement {
            identity: id_of(7),
            entitlement: "hr:payroll:read".into(),
        };
        assert_eq!(pre_write(s, "prp_check", &hr, 95, &gov).1.tier, 3);
    }
    let (assessment, _) = pre_write(large, "prp_check", &revoke(7), 95, &gov);
    let input = TierInput {
        proposal_id: "prp_check",
        capability: CAPABILITY,
        proposer: AI,
        kind: "revoke_entitlement",
        environment: &assessment.environment,
        blast_identities: 1,
        blast_resources: 1,
        privileged: false,
        reversible: true,
        classification: assessment.classification.as_str(),
        classification_rank: assessment.classification.rank(),
        confidence_pct: 95,
        targets_ai: false,
        ..TierInput::default()
    };
    let tiers = TierPolicies::builtin();
    assert_eq!(tiers.evaluate(&input).highest(), Some(1));
    let principal = build_principal(&facts(
        &large.principals.get(&id_of(7)).unwrap().identity,
        &large.gov.roles,
    ))
    .expect("principal");
    let context = json!({ "risk": 10 });
    let request = DecisionInput {
        action: r#"App::Action::"read""#,
        resource: r#"App::Document::"q3""#,
        context: Some(&context),
        entities: None,
    };
    assert!(
        warrant_policy::decide(&large.policy, &principal, &request)
            .unwrap()
            .allowed
    );

    let mut g = c.benchmark_group("submit_pre_write");
    for (n, snap) in [(100usize, small), (100_000, large)] {
        let changes = revokes(n, 4096);
        let mut k = 0usize;
        g.bench_function(BenchmarkId::new("revoke_entitlement", n), |b| {
            b.iter(|| {
                k = (k + 1) % changes.len();
                black_box(pre_write(
                    snap,
                    "prp_0190a1b2c3d4e5f6",
                    black_box(&changes[k]),
                    95,
                    &gov,
                ))
            })
        });
        let mut k = 0usize;
        g.bench_function(BenchmarkId::new("assess_only", n), |b| {
            b.iter(|| {
                k = (k + 1) % changes.len();
                black_box(assess(snap, black_box(&changes[k])))
            })
        });
    }
    // The large registry with targets from a hot set of 100 identities: separates the
    // registry's size (map depth) from the cold cache lines of a random target.
    let hot = revokes(100, 4096);
    let mut k = 0usize;
    g.bench_function("revoke_entitlement_hot_set_of_100/100000", |b| {
        b.iter(|| {
            k = (k + 1) % hot.len();
            black_box(pre_write(
                large,
                "prp_0190a1b2c3d4e5f6",
                black_box(&hot[k]),
                95,
                &gov,
            ))
        })
    });
    g.bench_function("baseline_tier_policies_evaluate", |b| {
        b.iter(|| black_box(tiers.evaluate(black_box(&input))))
    });
    g.bench_function("baseline_policy_decide", |b| {
        b.iter(|| {
            black_box(warrant_policy::decide(
                &large.policy,
                &principal,
                black_box(&request),
            ))
        })
    });
    g.finish();
}

fn blast_radius(c: &mut Criterion, large: &Snapshot) {
    let mut g = c.benchmark_group("blast_radius");
    g.sample_size(10);
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    for n in ROLE_SIZES {
        let role = role_name(n);
        let delete = Change::DeleteRole { role: role.clone() };
        let modify = Change::ModifyRole {
            role: role.clone(),
            add: vec!["reports:extra:read".into()],
            remove: vec![],
            privileged: None,
        };
        for change in [&delete, &modify] {
            let a = assess(large, change).expect("assess");
            assert_eq!(a.identities_count, n as u64);
        }
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("delete_role", n), &delete, |b, ch| {
            b.iter(|| black_box(assess(large, black_box(ch))))
        });
        g.bench_with_input(BenchmarkId::new("modify_role", n), &modify, |b, ch| {
            b.iter(|| black_box(assess(large, black_box(ch))))
        });
        g.bench_with_input(BenchmarkId::new("role_members_index", n), &role, |b, r| {
            use warrant_core::governance::assess::Graph;
            b.iter(|| black_box(large.role_members(black_box(r))))
        });
    }
    g.finish();
}

/// A proposal as the writer observes it after `submit` (Tier 1, executed).
fn proposal(i: usize, submitted_ms: i64) -> Proposal {
    let id = format!("prp_{i:012}");
    Proposal {
        id: id.clone(),
        capability: CAPABILITY.into(),
        proposer: AI.into(),
        change: revoke(i % 100_000),
        system: "warrant".into(),
        evidence: json!({}),
        rationale: "unused for 90 days".into(),
        confidence_pct: 95,
        parent: None,
        correlation: id,
        submitted_ms,
        assessment: Assessment {
            identities: vec![id_of(i % 100_000)],
            identities_count: 1,
            resources: vec!["docs".into()],
            resources_count: 1,
            reversible: true,
            ..Assessment::default()
        },
        tier: TierDecision {
            tier: 1,
            policies: vec![],
            policy_version: 0,
            defaulted: false,
            floor: vec![],
            escalations: vec![],
        },
        state: ProposalState::Executed,
        approvals_required: 0,
        approvals: vec![],
        notified: vec![],
        deadline_ms: None,
        decision: None,
        executions: vec![],
        deliveries: vec![],
        updated_ms: submitted_ms,
    }
}

/// Aggregates holding `n` proposals submitted 1 ms apart, the last at `now_ms() - 1`.
fn filled(n: usize, t: &Thresholds) -> Aggregates {
    let mut a = Aggregates::default();
    let start = now_ms() - n as i64;
    for i in 0..n {
        let at = start + i as i64;
        a.observe(&proposal(i, at), at, t);
    }
    assert_eq!(a.len(), n);
    a
}

/// `view` + `observe` of one new proposal on a clone of `n` proposals' aggregates: the
/// writer's first change of a batch (its working snapshot is a fresh clone, so every
/// persistent-map node on the path is copied).
fn after_clone(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    n: usize,
    t: &Thresholds,
) {
    let base = filled(n, t);
    let mut next = n;
    g.bench_function(BenchmarkId::new(name, n), |b| {
        b.iter_batched(
            || {
                next += 1;
                (base.clone(), proposal(next, now_ms()))
            },
            |(mut a, p)| {
                let targets = p.targets();
                let v = a.view(&p.capability, &targets, &p.correlation, t);
                a.observe(&p, now_ms(), t);
                (a, v)
            },
            BatchSize::SmallInput,
        )
    });
}

/// `view` + `observe` in place at a steady state: the window holds `n` proposals 1 ms
/// apart, so each new one enters as the oldest leaves (no chains kept).
fn steady(g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>, n: usize) {
    let t = Thresholds {
        window_ms: n as i64,
        chain_window_ms: 1,
        ..Thresholds::default()
    };
    let mut a = filled(n, &t);
    let start = now_ms() - n as i64;
    // The first new proposal comes 1 ms after the last one in the window.
    let mut k = n - 1;
    g.bench_function(BenchmarkId::new("view_observe_in_place_steady", n), |b| {
        b.iter_batched(
            || {
                k += 1;
                let at = start + k as i64;
                (proposal(k, at), at)
            },
            |(p, at)| {
                let targets = p.targets();
                let v = a.view(&p.capability, &targets, &p.correlation, &t);
                a.observe(&p, at, &t);
                v
            },
            BatchSize::SmallInput,
        )
    });
    assert_eq!(a.len(), n);
}

fn aggregates(c: &mut Criterion) {
    // Window aggregates only: chains are kept for 1 ms, so at most one is tracked.
    let no_chains = Thresholds {
        chain_window_ms: 1,
        ..Thresholds::default()
    };
    let defaults = Thresholds::default();
    let mut g = c.benchmark_group("aggregates");
    g.sample_size(30);
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    for n in [10_000usize, 1_000_000] {
        steady(&mut g, n);
        after_clone(&mut g, "view_observe_after_clone", n, &no_chains);
    }
    // Default 30-day chain window: every proposal without a parent is a chain of its own.
    for n in [1_000usize, 4_000, 16_000] {
        after_clone(
            &mut g,
            "view_observe_after_clone_one_chain_each",
            n,
            &defaults,
        );
    }
    g.finish();
}

fn governance(c: &mut Criterion) {
    let small = snapshot(100);
    let t = std::time::Instant::now();
    let large = snapshot(100_000);
    eprintln!(
        "built the 100,000-identity snapshot in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    submit(c, &small, &large);
    blast_radius(c, &large);
    drop(small);
    drop(large);
    aggregates(c);
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = governance
}
criterion_main!(benches);
