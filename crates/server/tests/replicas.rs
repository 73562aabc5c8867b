//! Two or more in-process servers (replicas) on one real PostgreSQL database: how a
//! replica's writer catches up with changes committed elsewhere. (The process-level
//! replica tests — three `warrant serve` processes, kill -9, database outage — are in
//! `crates/cli/tests/it/replicas.rs`.)
//!
//! Needs `WARRANT_TEST_PG_URL` (`bash scripts/test.sh` starts a server and sets it).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use ed25519_dalek::SigningKey;
use sqlx::Connection;
use std::sync::Arc;
use std::time::{Duration, Instant};
use warrant_core::audit::{RecordDraft, RecordKind};
use warrant_core::identity::{IdentityPatch, IdentityState, NewIdentity, Transition};
use warrant_policy::PolicyBundle;
use warrant_server::ops::{Op, Outcome};
use warrant_server::{Config, Server};
use warrant_store::postgres::PostgresStore;
use warrant_store::Store;

const SCHEMA: &str = r#"namespace App { entity Doc; action read appliesTo { principal: [Warrant::Identity], resource: [Doc] }; }"#;

async fn fresh_database() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let server = std::env::var("WARRANT_TEST_PG_URL").unwrap_or_else(|_| {
        panic!("WARRANT_TEST_PG_URL is not set: run the tests with `bash scripts/test.sh`")
    });
    let name = format!(
        "wsrv_{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    let mut admin = sqlx::PgConnection::connect(&server).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut admin)
        .await
        .unwrap();
    format!("{}/{name}", server.rsplit_once('/').unwrap().0)
}

fn key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

async fn replica(url: &str, key: SigningKey, admin_token: Option<&str>) -> anyhow::Result<Server> {
    let store: Arc<dyn Store> = Arc::new(PostgresStore::connect(url).await?);
    let config = Config {
        database: Some(url.to_owned()),
        admin_token: admin_token.map(str::to_owned),
        ..Config::default()
    };
    Server::start_with(config, store, key).await
}

const TOKEN: &str = "wrt_replica_test_token_0123456789abcdefghij";

async fn pair() -> (String, Server, Server) {
    let url = fresh_database().await;
    let a = replica(&url, key(), Some(TOKEN)).await.unwrap();
    let b = replica(&url, key(), Some(TOKEN)).await.unwrap();
    (url, a, b)
}

async fn create(s: &Server, name: &str) -> String {
    let committed = s
        .state
        .writer
        .mutate(Op::CreateIdentity {
            actor: "test".into(),
            id: format!("idn_{name}"),
            new: NewIdentity {
                name: name.into(),
                kind: "agent".into(),
                environment: "prod".into(),
                owner: "alice@example.com".into(),
                ..Default::default()
            },
        })
        .await
        .unwrap();
    match committed.outcome {
        Outcome::Identity(i) => i.id,
        other => panic!("unexpected outcome {other:?}"),
    }
}

fn state_of(s: &Server, id: &str) -> Option<IdentityState> {
    s.state
        .snapshot
        .load()
        .principals
        .get(id)
        .map(|e| e.identity.state)
}

#[tokio::test]
async fn changes_through_one_replica_are_caught_up_by_the_other() {
    let (_url, a, b) = pair().await;
    let id = create(&a, "bot").await;
    assert_eq!(state_of(&b, &id), None, "nothing reaches B before it syncs");
    b.state.writer.sync().await.unwrap();
    assert_eq!(state_of(&b, &id), Some(IdentityState::Active));

    a.state
        .writer
        .mutate(Op::Transition {
            actor: "test".into(),
            id: id.clone(),
            transition: Transition::Suspend,
            reason: None,
        })
        .await
        .unwrap();
    b.state.writer.sync().await.unwrap();
    assert_eq!(state_of(&b, &id), Some(IdentityState::Suspended));

    let bundle =
        Arc::new(PolicyBundle::compile(SCHEMA, "permit(principal, action, resource);").unwrap());
    a.state
        .writer
        .mutate(Op::PutPolicy {
            actor: "test".into(),
            bundle,
            comment: "v1".into(),
        })
        .await
        .unwrap();
    // Any batch of B catches up first, not only a sync: here, one of B's own changes.
    let other = create(&b, "other").await;
    let snap = b.state.snapshot.load();
    assert_eq!(snap.policy_version, 1);
    assert_eq!(snap.policy.policy_ids().len(), 1);
    assert!(snap.principals.contains_key(&other));
    // And A learns B's identity.
    a.state.writer.sync().await.unwrap();
    assert_eq!(state_of(&a, &other), Some(IdentityState::Active));
    assert_eq!(
        b.state.store.audit_head().await.unwrap().tree.size(),
        a.state.store.audit_head().await.unwrap().tree.size()
    );
}

/// A commit this replica's snapshot does not know about (another process wrote it, or
/// the acknowledgement of its own commit was lost) is picked up by the next batch.
#[tokio::test]
async fn a_commit_the_snapshot_missed_is_picked_up() {
    let (_url, a, _b) = pair().await;
    let id = create(&a, "bot").await;
    // Write behind the writer's back, as another replica would: the change and its
    // record in one transaction under the head lock.
    let store = &a.state.store;
    let mut tx = store.begin_write().await.unwrap();
    let mut head = tx.load_chain_head().await.unwrap();
    let before = tx.get_identity(&id).await.unwrap().unwrap();
    let after = before
        .patched(
            IdentityPatch {
                roles: Some(vec!["reader".into()]),
                ..Default::default()
            },
            before.updated_ms + 1,
        )
        .unwrap();
    tx.update_identity(&after).await.unwrap();
    let record = head.seal(
        RecordDraft {
            kind: RecordKind::IdentityUpdated,
            actor: "elsewhere".into(),
            subject: format!("identity:{id}"),
            payload: "{}".into(),
        },
        after.updated_ms,
    );
    tx.append_records(&[record]).await.unwrap();
    tx.store_chain_head(&head).await.unwrap();
    tx.commit().await.unwrap();

    let roles = |s: &Server| {
        s.state.snapshot.load().principals[&id]
            .identity
            .roles
            .clone()
    };
    assert!(roles(&a).is_empty());
    a.state.writer.sync().await.unwrap();
    assert_eq!(roles(&a), ["reader"]);
}

/// Many interleaved changes to the same identities through both replicas: once both
/// have synced, both snapshots equal the database, whatever the interleaving.
#[tokio::test]
async fn interleaved_changes_converge_to_the_database_state() {
    let (_url, a, b) = pair().await;
    let ids = [create(&a, "one").await, create(&b, "two").await];
    let mut tasks = vec![];
    for (n, server) in [a.state.clone(), b.state.clone()].into_iter().enumerate() {
        let ids = ids.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..30usize {
                let id = ids[(round + n) % 2].clone();
                let op = if (round + n) % 3 == 0 {
                    Op::UpdateIdentity {
                        actor: format!("replica{n}"),
                        id,
                        patch: IdentityPatch {
                            description: Some(format!("r{n}-{round}")),
                            ..Default::default()
                        },
                    }
                } else {
                    Op::Transition {
                        actor: format!("replica{n}"),
                        id,
                        transition: if round % 2 == 0 {
                            Transition::Suspend
                        } else {
                            Transition::Resume
                        },
                        reason: None,
                    }
                };
                // Refusals (suspending a suspended identity) are fine; failures are not.
                if let Err(e) = server.writer.mutate(op).await {
                    assert!(
                        !matches!(e, warrant_server::writer::WriteError::Unavailable(_)),
                        "{e}"
                    );
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    a.state.writer.sync().await.unwrap();
    b.state.writer.sync().await.unwrap();
    for id in &ids {
        let stored = a.state.store.get_identity(id).await.unwrap().unwrap();
        for s in [&a, &b] {
            let seen = s.state.snapshot.load().principals[id].identity.clone();
            assert_eq!(
                (seen.state, &seen.description, seen.updated_ms),
                (stored.state, &stored.description, stored.updated_ms)
            );
        }
    }
}

/// Signals carry changes to a serving replica without anyone asking it to sync.
#[tokio::test]
async fn a_serving_replica_applies_a_suspension_within_a_second() {
    let (_url, a, b) = pair().await;
    let id = create(&a, "bot").await;
    let b_state = b.state.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(b.serve(listener, async {
        let _ = stopped.await;
    }));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !b_state.snapshot.load().principals.contains_key(&id) {
        assert!(Instant::now() < deadline, "B never learned the identity");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    a.state
        .writer
        .mutate(Op::Transition {
            actor: "test".into(),
            id: id.clone(),
            transition: Transition::Suspend,
            reason: None,
        })
        .await
        .unwrap();
    let suspended = Instant::now();
    while b_state.snapshot.load().principals[&id].identity.state != IdentityState::Suspended {
        assert!(
            suspended.elapsed() < Duration::from_secs(1),
            "suspension not in force on B within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    println!("suspension reached B after {:?}", suspended.elapsed());
    stop.send(()).unwrap();
    serving.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_replica_with_another_signing_key_refuses_to_start() {
    let url = fresh_database().await;
    let _a = replica(&url, key(), Some(TOKEN)).await.unwrap();
    let err = match replica(&url, SigningKey::from_bytes(&[8; 32]), Some(TOKEN)).await {
        Ok(_) => panic!("a replica with another key started"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("same signing key"), "{err}");
}

/// Replicas bootstrapping one new database together: one admin token is generated and
/// shown, and it works on both.
#[tokio::test]
async fn replicas_bootstrapping_together_show_one_token() {
    let url = fresh_database().await;
    let (a, b, c) = tokio::join!(
        replica(&url, key(), None),
        replica(&url, key(), None),
        replica(&url, key(), None)
    );
    let servers = [a.unwrap(), b.unwrap(), c.unwrap()];
    let shown: Vec<_> = servers
        .iter()
        .filter_map(|s| s.new_admin_token.clone())
        .collect();
    assert_eq!(
        shown.len(),
        1,
        "exactly one replica shows a bootstrap token"
    );
    let hash = warrant_server::auth::hash_token(&shown[0]);
    for s in &servers {
        s.state.writer.sync().await.unwrap();
        assert!(
            s.state.snapshot.load().tokens.contains_key(&hash),
            "the shown token works on every replica"
        );
    }
}

fn read_request(principal: &str) -> warrant_server::api::authorize::AuthorizeRequest {
    warrant_server::api::authorize::AuthorizeRequest {
        principal: principal.to_owned(),
        action: r#"App::Action::"read""#.into(),
        resource: r#"App::Doc::"d""#.into(),
        context: None,
        entities: None,
    }
}

/// Replica B decided "allow" on its snapshot; before B could log it, A suspended the
/// principal (or changed the policies). B's writer sees that change under the head lock
/// and refuses to log the stale allow, so the chain never shows an allow after a change
/// the decision did not see. Asked again, B denies.
#[tokio::test]
async fn an_allow_made_before_a_change_elsewhere_is_never_logged_after_it() {
    use warrant_server::api::authorize::decide;
    use warrant_server::writer::WriteError;
    let (_url, a, b) = pair().await;
    let caller = warrant_server::auth::Enforcer(warrant_server::auth::Authed::bootstrap("t"));
    let bundle =
        Arc::new(PolicyBundle::compile(SCHEMA, "permit(principal, action, resource);").unwrap());
    a.state
        .writer
        .mutate(Op::PutPolicy {
            actor: "test".into(),
            bundle,
            comment: "allow all".into(),
        })
        .await
        .unwrap();
    let id = create(&a, "bot").await;
    let other = create(&a, "other").await;
    b.state.writer.sync().await.unwrap();

    // B decides (allow), A suspends, then B tries to log its allow.
    let (resp, draft) = decide(&b.state, &caller, &read_request(&id)).unwrap();
    assert_eq!(resp.decision, "allow");
    let (other_resp, other_draft) = decide(&b.state, &caller, &read_request(&other)).unwrap();
    assert_eq!(other_resp.decision, "allow");
    a.state
        .writer
        .mutate(Op::Transition {
            actor: "test".into(),
            id: id.clone(),
            transition: Transition::Suspend,
            reason: None,
        })
        .await
        .unwrap();
    let refused = b
        .state
        .writer
        .append_decisions(vec![draft], vec![id.clone()])
        .await;
    assert!(matches!(refused, Err(WriteError::Stale(_))), "{refused:?}");
    // The same catch-up does not touch an allow for an unchanged principal.
    b.state
        .writer
        .append_decisions(vec![other_draft], vec![other.clone()])
        .await
        .unwrap();
    let (again, _) = decide(&b.state, &caller, &read_request(&id)).unwrap();
    assert_eq!(again.decision, "deny");

    // A policy change elsewhere makes every pending allow stale.
    let (resp, draft) = decide(&b.state, &caller, &read_request(&other)).unwrap();
    assert_eq!(resp.decision, "allow");
    let bundle =
        Arc::new(PolicyBundle::compile(SCHEMA, "forbid(principal, action, resource);").unwrap());
    a.state
        .writer
        .mutate(Op::PutPolicy {
            actor: "test".into(),
            bundle,
            comment: "deny all".into(),
        })
        .await
        .unwrap();
    let refused = b
        .state
        .writer
        .append_decisions(vec![draft], vec![other.clone()])
        .await;
    assert!(matches!(refused, Err(WriteError::Stale(_))), "{refused:?}");

    // In the chain, no allow follows the suspension.
    let records = b
        .state
        .store
        .audit_records(&warrant_store::AuditFilter {
            from_seq: Some(0),
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap();
    let suspended_at = records
        .iter()
        .position(|r| r.kind == "identity.suspended")
        .unwrap();
    assert!(!records[suspended_at..].iter().any(|r| {
        r.kind == "decision"
            && r.subject == format!("identity:{id}")
            && r.payload.contains(r#""decision":"allow""#)
    }));
}

/// A governance replica: a short Tier 2 override window.
async fn gov_replica(url: &str) -> Server {
    let store: Arc<dyn Store> = Arc::new(PostgresStore::connect(url).await.unwrap());
    let config = Config {
        database: Some(url.to_owned()),
        admin_token: Some(TOKEN.into()),
        governance: warrant_server::governance::GovConfig {
            override_window_ms: 300,
            // Tier 2 needs a channel to notify the reviewer (nobody answers here).
            notify_url: Some("http://127.0.0.1:9/unwatched".into()),
            ..Default::default()
        },
        ..Config::default()
    };
    Server::start_with(config, store, key()).await.unwrap()
}

#[tokio::test]
async fn governance_state_propagates_and_a_timer_fires_once_across_replicas() {
    use warrant_core::governance::workflow::Actor;
    use warrant_core::governance::{Change, NewCapability};
    use warrant_server::governance::ops::{GovOp, Submission};
    let url = fresh_database().await;
    let a = gov_replica(&url).await;
    let b = gov_replica(&url).await;
    let gov = |s: &Server, op: GovOp| {
        let w = s.state.writer.clone();
        async move { w.mutate(Op::Gov(Box::new(op))).await }
    };
    // Through A: the AI identity, the target, the capability and its acceptance.
    let bot = a
        .state
        .writer
        .mutate(Op::CreateIdentity {
            actor: "test".into(),
            id: "idn_bot".into(),
            new: NewIdentity {
                name: "bot".into(),
                kind: "ai_tool".into(),
                environment: "prod".into(),
                owner: "alice@example.com".into(),
                ..Default::default()
            },
        })
        .await
        .unwrap();
    assert!(matches!(bot.outcome, Outcome::Identity(_)));
    a.state
        .writer
        .mutate(Op::CreateIdentity {
            actor: "test".into(),
            id: "idn_etl".into(),
            new: NewIdentity {
                name: "etl".into(),
                kind: "service_account".into(),
                environment: "prod".into(),
                owner: "bob@example.com".into(),
                entitlements: vec!["s3:logs:read".into(), "s3:raw:read".into()],
                ..Default::default()
            },
        })
        .await
        .unwrap();
    gov(
        &a,
        GovOp::PutCapability {
            actor: "admin:test".into(),
            new: NewCapability {
                id: "right-sizing".into(),
                identity: "idn_bot".into(),
                kinds: vec!["revoke_entitlement".into()],
                max_blast_radius: 5,
                owner: "alice@example.com".into(),
                review_every_days: 90,
                ..Default::default()
            },
        },
    )
    .await
    .unwrap();
    gov(
        &a,
        GovOp::AcceptCapability {
            actor: Actor::Human("alice@example.com".into()),
            id: "right-sizing".into(),
            statement: String::new(),
        },
    )
    .await
    .unwrap();

    // Through B (which must catch up on the capability and its acceptance first): a
    // Tier 2 revocation (89% confidence keeps it out of Tier 1).
    let submitted = gov(
        &b,
        GovOp::Submit(Box::new(Submission {
            id: "prp_replicas_1".into(),
            capability: "right-sizing".into(),
            proposer: "idn_bot".into(),
            change: Change::RevokeEntitlement {
                identity: "idn_etl".into(),
                entitlement: "s3:logs:read".into(),
            },
            system: "warrant".into(),
            evidence: serde_json::json!({}),
            rationale: "unused".into(),
            confidence_pct: 89,
            parent: None,
            correlation: None,
            certification: None,
        })),
    )
    .await
    .unwrap();
    let Outcome::Proposal(p) = submitted.outcome else {
        panic!("no proposal")
    };
    assert_eq!(
        (p.tier.tier, p.state.as_str()),
        (2, "in_review"),
        "{:?}",
        p.tier
    );

    // A learns the change to the entitlement store and the aggregates.
    a.state.writer.sync().await.unwrap();
    let ents = |s: &Server| {
        s.state.snapshot.load().principals["idn_etl"]
            .identity
            .entitlements
            .clone()
    };
    assert_eq!(ents(&a), ["s3:raw:read"]);
    assert_eq!(ents(&b), ["s3:raw:read"]);
    assert_eq!(a.state.snapshot.load().gov.aggregates.len(), 1);

    // Both replicas fire due timers at once (as if both held the job lock): one
    // ratification, not two.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let client = reqwest::Client::new();
    tokio::join!(
        warrant_server::governance::delivery::tick(&a.state, &client),
        warrant_server::governance::delivery::tick(&b.state, &client),
    );
    let ratified = a
        .state
        .store
        .audit_records(&warrant_store::AuditFilter {
            kind: Some("proposal.ratified".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ratified.len(), 1, "{ratified:?}");
    let row = a
        .state
        .store
        .get_object("proposal", "prp_replicas_1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((row.state.as_str(), row.due_ms), ("ratified", None));
}
