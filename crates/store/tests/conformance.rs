//! The storage conformance suite: what every backend must do. Each case runs twice, as
//! `sqlite::<case>` against a real SQLite file and as `postgres::<case>` against a fresh
//! database of its own on a real PostgreSQL server (so cases run in parallel). The
//! `postgres_*` cases test what only a shared database has: several replicas writing to
//! one audit chain, fail-fast connection errors.
//!
//! The PostgreSQL server comes from `WARRANT_TEST_PG_URL`
//! (`postgres://postgres@127.0.0.1:PORT/postgres`); `bash scripts/test.sh` starts one and
//! sets it. Without it the PostgreSQL cases fail: they never pass silently.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use ed25519_dalek::SigningKey;
use sqlx::Connection;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use warrant_core::audit::{AuditRecord, ChainHead, RecordDraft, RecordKind};
use warrant_core::checkpoint::Checkpoint;
use warrant_core::identity::{Identity, NewIdentity, Transition};
use warrant_core::verify::ChainVerifier;
use warrant_store::postgres::PostgresStore;
use warrant_store::sqlite::{Durability, SqliteStore};
use warrant_store::{
    AuditFilter, IdentityFilter, ObjectFilter, ObjectRow, Store, StoreError, TokenRow, Unique,
};

// ---------------------------------------------------------------------------------------
// Backends

/// One store under test, plus a way around it to the same database.
struct Backend {
    store: Arc<dyn Store>,
    raw: Raw,
    _dir: Option<tempfile::TempDir>,
}

enum Raw {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Backend {
    async fn sqlite() -> Backend {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let store = SqliteStore::open(&path, Durability::Full).await.unwrap();
        Backend {
            store: Arc::new(store),
            raw: Raw::Sqlite(path),
            _dir: Some(dir),
        }
    }

    async fn postgres() -> Backend {
        let url = fresh_pg_database().await;
        let store = PostgresStore::connect(&url).await.unwrap();
        Backend {
            store: Arc::new(store),
            raw: Raw::Postgres(url),
            _dir: None,
        }
    }

    /// Runs one statement directly against the database, bypassing the store.
    async fn raw_exec(&self, sql: &str) -> Result<(), String> {
        let done = match &self.raw {
            Raw::Sqlite(path) => {
                let mut c =
                    sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                        .await
                        .unwrap();
                sqlx::query(sql).execute(&mut c).await.map(drop)
            }
            Raw::Postgres(url) => {
                let mut c = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::query(sql).execute(&mut c).await.map(drop)
            }
        };
        done.map_err(|e| e.to_string())
    }
}

/// The test server's URL, or a failure that says how to get one.
fn pg_server_url() -> String {
    match std::env::var("WARRANT_TEST_PG_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "WARRANT_TEST_PG_URL is not set, so the PostgreSQL conformance cases cannot run. \
             Run the tests with `bash scripts/test.sh` (it starts a throw-away PostgreSQL server \
             and sets the variable), or point WARRANT_TEST_PG_URL at a server where this user \
             may CREATE DATABASE (postgres://postgres@127.0.0.1:PORT/postgres)."
        ),
    }
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let rest = base.split_once("://").map_or(base, |(_, r)| r);
    let base = if rest.contains('/') {
        base.rsplit_once('/').unwrap().0
    } else {
        base
    };
    format!("{base}/{name}{query}")
}

/// Creates an empty database of its own on the test server; returns its URL.
async fn fresh_pg_database() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let server = pg_server_url();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let name = format!(
        "warrant_test_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let mut admin = sqlx::PgConnection::connect(&server)
        .await
        .unwrap_or_else(|e| {
            panic!("cannot reach the PostgreSQL test server at WARRANT_TEST_PG_URL: {e}")
        });
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut admin)
        .await
        .unwrap();
    let _ = admin.close().await;
    with_database(&server, &name)
}

/// Every case below, run against both backends.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(super::Backend::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(super::Backend::postgres().await).await;
                }
            )*
        }
    };
}

conformance!(
    identities_round_trip_and_uniqueness,
    list_filters_and_paginates,
    audit_chain_persists_and_rolls_back_with_its_transaction,
    audit_filters,
    audit_records_are_append_only_in_the_database,
    audit_leaf_hashes_refuse_a_short_log,
    checkpoints_policies_tokens_meta,
    policy_versions_have_no_gaps_after_a_rolled_back_savepoint,
    token_hash_is_unique,
    last_used_only_moves_forward,
    out_of_range_numbers_find_nothing,
    changes_since_lists_every_change_but_no_decision,
    transactions_read_their_own_writes,
    init_meta_keeps_the_first_value,
    credentials_round_trip,
    objects_round_trip_and_upsert_keeps_created,
    insert_object_refuses_an_existing_one,
    objects_list_by_kind_and_state_with_cursor,
    due_objects_in_due_order,
    objects_roll_back_with_their_transaction,
    objects_with_nul_find_nothing_and_are_refused,
    token_human_round_trip,
    whole_tables_read_every_row,
);

// ---------------------------------------------------------------------------------------
// Helpers

fn identity(id: &str, name: &str, env: &str) -> Identity {
    NewIdentity {
        name: name.into(),
        kind: "agent".into(),
        environment: env.into(),
        owner: "alice@example.com".into(),
        roles: vec!["reader".into()],
        entitlements: vec!["s3:read".into()],
        ..Default::default()
    }
    .into_identity(id.into(), "td", 1000)
    .unwrap()
}

fn draft(n: u32) -> RecordDraft {
    RecordDraft {
        kind: RecordKind::Decision,
        actor: "admin:t".into(),
        subject: format!("identity:{n}"),
        payload: format!("{{\"n\":{n}}}"),
    }
}

/// Appends `n` records in one write transaction; returns them.
async fn append(store: &dyn Store, n: u32, ts: i64) -> Vec<AuditRecord> {
    let mut tx = store.begin_write().await.unwrap();
    let mut head = tx.load_chain_head().await.unwrap();
    let records: Vec<_> = (0..n).map(|i| head.seal(draft(i), ts)).collect();
    tx.append_records(&records).await.unwrap();
    tx.store_chain_head(&head).await.unwrap();
    tx.commit().await.unwrap();
    records
}

/// Reads the whole log back and checks it is one unbroken chain ending at the head.
async fn verify_chain(store: &dyn Store) -> u64 {
    let head = store.audit_head().await.unwrap();
    let records = store
        .audit_records(&AuditFilter {
            from_seq: Some(0),
            limit: u32::MAX,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut v = ChainVerifier::new(vec![], &[]);
    for r in &records {
        v.push(r);
    }
    let report = v.finish(Some(head.tree.size()));
    assert!(report.ok(), "the chain is broken: {:?}", report.findings);
    assert_eq!(report.records, head.tree.size());
    assert_eq!(report.root, Some(head.tree.root()));
    report.records
}

// ---------------------------------------------------------------------------------------
// The cases every backend passes

async fn identities_round_trip_and_uniqueness(b: Backend) {
    let store = b.store;
    let a = identity("idn_a", "bot", "prod");
    let mut tx = store.begin_write().await.unwrap();
    tx.insert_identity(&a).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.get_identity("idn_a").await.unwrap(), Some(a.clone()));

    // Same name in another environment is another identity.
    let b = identity("idn_b", "bot", "staging");
    let mut tx = store.begin_write().await.unwrap();
    tx.insert_identity(&b).await.unwrap();
    // Same (name, env) refused; the savepoint keeps the transaction usable.
    tx.savepoint().await.unwrap();
    let mut dup = identity("idn_c", "bot", "prod");
    dup.spiffe_id = "spiffe://td/prod/other-uri".into();
    match tx.insert_identity(&dup).await {
        Err(StoreError::Conflict(u)) => assert_eq!(u, Unique::NameEnvironment),
        other => panic!("expected conflict, got {other:?}"),
    }
    tx.rollback_to_savepoint().await.unwrap();
    // Same SPIFFE ID refused.
    tx.savepoint().await.unwrap();
    let mut uri = identity("idn_d", "other", "prod");
    uri.spiffe_id = a.spiffe_id.clone();
    assert!(matches!(
        tx.insert_identity(&uri).await,
        Err(StoreError::Conflict(Unique::SpiffeId))
    ));
    tx.rollback_to_savepoint().await.unwrap();
    // The transaction goes on after a refusal, and a released savepoint keeps its work.
    tx.savepoint().await.unwrap();
    tx.insert_identity(&identity("idn_f", "fine", "prod"))
        .await
        .unwrap();
    tx.release_savepoint().await.unwrap();
    tx.commit().await.unwrap();
    assert!(store.get_identity("idn_b").await.unwrap().is_some());
    assert!(store.get_identity("idn_c").await.unwrap().is_none());
    assert!(store.get_identity("idn_d").await.unwrap().is_none());
    assert!(store.get_identity("idn_f").await.unwrap().is_some());

    // Updates persist (and are visible inside the transaction); retired rows stay (their
    // name and URI are never reused).
    let retired = a.transitioned(Transition::Retire, 2000).unwrap();
    let mut tx = store.begin_write().await.unwrap();
    tx.update_identity(&retired).await.unwrap();
    assert_eq!(
        tx.get_identity("idn_a").await.unwrap(),
        Some(retired.clone())
    );
    tx.commit().await.unwrap();
    assert_eq!(store.get_identity("idn_a").await.unwrap(), Some(retired));
    let mut tx = store.begin_write().await.unwrap();
    assert!(tx
        .insert_identity(&identity("idn_e", "bot", "prod"))
        .await
        .is_err());
}

async fn list_filters_and_paginates(b: Backend) {
    let store = b.store;
    let mut tx = store.begin_write().await.unwrap();
    for i in 0..25 {
        let env = if i % 2 == 0 { "prod" } else { "dev" };
        let mut idn = identity(&format!("idn_{i:03}"), &format!("bot{i}"), env);
        if i % 5 == 0 {
            idn.owner = "bob@example.com".into();
        }
        tx.insert_identity(&idn).await.unwrap();
    }
    tx.commit().await.unwrap();
    let mut seen = vec![];
    let mut after = None;
    loop {
        let page = store
            .list_identities(&IdentityFilter {
                environment: Some("prod".into()),
                after: after.clone(),
                limit: 5,
                ..Default::default()
            })
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(|i| i.id.clone());
        seen.extend(page.into_iter().map(|i| i.id));
    }
    assert_eq!(seen.len(), 13);
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(
        seen, sorted,
        "keyset pagination is in id order without repeats"
    );
    let bobs = store
        .list_identities(&IdentityFilter {
            owner: Some("bob@example.com".into()),
            environment: Some("prod".into()),
            kind: Some("agent".into()),
            state: Some("active".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let ids: Vec<_> = bobs.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, ["idn_000", "idn_010", "idn_020"]);
    assert_eq!(store.all_identities().await.unwrap().len(), 25);
}

async fn audit_chain_persists_and_rolls_back_with_its_transaction(b: Backend) {
    let store = b.store;
    let mut tx = store.begin_write().await.unwrap();
    let mut head = tx.load_chain_head().await.unwrap();
    assert_eq!(head.tree.size(), 0);
    let records: Vec<_> = (0..1200).map(|n| head.seal(draft(n), 5)).collect();
    tx.append_records(&records).await.unwrap();
    tx.store_chain_head(&head).await.unwrap();
    tx.commit().await.unwrap();

    assert_eq!(store.audit_head().await.unwrap(), head);
    let back = store
        .audit_records(&AuditFilter {
            from_seq: Some(0),
            limit: 5000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(back, records);
    let leaves = store.audit_leaf_hashes(1200).await.unwrap();
    assert_eq!(warrant_core::merkle::root_of(&leaves), head.tree.root());
    assert_eq!(
        store.audit_record(7).await.unwrap().as_ref(),
        records.get(7)
    );

    // A transaction dropped without commit leaves nothing behind.
    let mut tx = store.begin_write().await.unwrap();
    let mut h2: ChainHead = tx.load_chain_head().await.unwrap();
    let more: Vec<_> = (0..3).map(|n| h2.seal(draft(n), 6)).collect();
    tx.append_records(&more).await.unwrap();
    tx.store_chain_head(&h2).await.unwrap();
    drop(tx);
    assert_eq!(store.audit_head().await.unwrap().tree.size(), 1200);
    assert!(store.audit_record(1200).await.unwrap().is_none());

    // An empty batch changes nothing; the next one continues the chain.
    let mut tx = store.begin_write().await.unwrap();
    tx.append_records(&[]).await.unwrap();
    tx.commit().await.unwrap();
    append(&*store, 2, 7).await;
    assert_eq!(verify_chain(&*store).await, 1202);

    // Filters and descending order.
    let newest = store
        .audit_records(&AuditFilter {
            subject: Some("identity:5".into()),
            descending: true,
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(newest.len(), 1);
    assert_eq!(newest[0].seq, 5);
}

async fn audit_filters(b: Backend) {
    let store = b.store;
    let mut tx = store.begin_write().await.unwrap();
    let mut head = tx.load_chain_head().await.unwrap();
    let records: Vec<_> = (0..10)
        .map(|n| {
            let mut d = draft(n % 3);
            if n % 2 == 1 {
                d.kind = RecordKind::IdentityCreated;
                d.actor = "admin:u".into();
            }
            head.seal(d, 100 + i64::from(n))
        })
        .collect();
    tx.append_records(&records).await.unwrap();
    tx.store_chain_head(&head).await.unwrap();
    tx.commit().await.unwrap();

    let seqs = |f: AuditFilter| {
        let store = store.clone();
        async move {
            let f = AuditFilter {
                limit: if f.limit == 0 { 100 } else { f.limit },
                ..f
            };
            let rs = store.audit_records(&f).await.unwrap();
            rs.iter().map(|r| r.seq).collect::<Vec<_>>()
        }
    };
    let created = RecordKind::IdentityCreated.as_str().to_owned();
    assert_eq!(
        seqs(AuditFilter {
            kind: Some(created),
            ..Default::default()
        })
        .await,
        [1, 3, 5, 7, 9]
    );
    assert_eq!(
        seqs(AuditFilter {
            actor: Some("admin:t".into()),
            subject: Some("identity:0".into()),
            ..Default::default()
        })
        .await,
        [0, 6]
    );
    assert_eq!(
        seqs(AuditFilter {
            from_ms: Some(102),
            to_ms: Some(105),
            ..Default::default()
        })
        .await,
        [2, 3, 4]
    );
    assert_eq!(
        seqs(AuditFilter {
            from_seq: Some(4),
            descending: true,
            limit: 3,
            ..Default::default()
        })
        .await,
        [4, 3, 2]
    );
    assert_eq!(
        seqs(AuditFilter {
            from_seq: Some(8),
            ..Default::default()
        })
        .await,
        [8, 9]
    );
    assert_eq!(
        seqs(AuditFilter {
            from_seq: Some(u64::MAX),
            descending: true,
            limit: 2,
            ..Default::default()
        })
        .await,
        [9, 8]
    );
}

async fn audit_records_are_append_only_in_the_database(b: Backend) {
    append(&*b.store, 1, 5).await;
    // Direct SQL against the database: it refuses UPDATE and DELETE.
    let upd = b
        .raw_exec("UPDATE audit_records SET payload = '{}' WHERE seq = 0")
        .await;
    assert!(upd.unwrap_err().contains("append-only"));
    let del = b.raw_exec("DELETE FROM audit_records").await;
    assert!(del.unwrap_err().contains("append-only"));
    assert_eq!(verify_chain(&*b.store).await, 1);
}

async fn audit_leaf_hashes_refuse_a_short_log(b: Backend) {
    append(&*b.store, 3, 5).await;
    assert_eq!(b.store.audit_leaf_hashes(3).await.unwrap().len(), 3);
    assert_eq!(b.store.audit_leaf_hashes(0).await.unwrap().len(), 0);
    assert!(matches!(
        b.store.audit_leaf_hashes(4).await,
        Err(StoreError::Corrupt(_))
    ));
}

async fn checkpoints_policies_tokens_meta(b: Backend) {
    let store = b.store;
    let key = SigningKey::from_bytes(&[3; 32]);
    let mut tx = store.begin_write().await.unwrap();
    let cp1 = Checkpoint::sign("o", 3, [1; 32], 10, &key);
    let cp2 = Checkpoint::sign("o", 9, [2; 32], 20, &key);
    tx.insert_checkpoint(&cp1).await.unwrap();
    tx.insert_checkpoint(&cp2).await.unwrap();
    // The same (size, time) again is ignored, not an error.
    tx.insert_checkpoint(&cp2).await.unwrap();
    let v1 = tx
        .insert_policy_version("s1", "p1", 1, "admin:t", "first")
        .await
        .unwrap();
    let v2 = tx
        .insert_policy_version("s2", "p2", 2, "admin:t", "second")
        .await
        .unwrap();
    let token = TokenRow {
        id: "tok_1".into(),
        name: "n".into(),
        hash: [7; 32],
        role: "admin".into(),
        created_ms: 1,
        revoked_ms: None,
        human: None,
    };
    tx.upsert_token(&token).await.unwrap();
    tx.upsert_token(&TokenRow {
        revoked_ms: Some(5),
        ..token.clone()
    })
    .await
    .unwrap();
    tx.set_meta("k", "v1").await.unwrap();
    tx.set_meta("k", "v2").await.unwrap();
    tx.commit().await.unwrap();

    assert_eq!((v1, v2), (1, 2));
    assert_eq!(store.checkpoints().await.unwrap(), vec![cp1, cp2.clone()]);
    assert_eq!(store.latest_checkpoint().await.unwrap(), Some(cp2));
    let current = store.current_policy().await.unwrap().unwrap();
    assert_eq!((current.version, current.policies_text.as_str()), (2, "p2"));
    assert_eq!(
        store.policy_version(1).await.unwrap().unwrap(),
        warrant_store::PolicyVersion {
            version: 1,
            schema_text: "s1".into(),
            policies_text: "p1".into(),
            created_ms: 1,
            actor: "admin:t".into(),
            comment: "first".into(),
        }
    );
    let history: Vec<_> = store
        .policy_history(10)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.version)
        .collect();
    assert_eq!(history, [2, 1]);
    assert_eq!(store.policy_history(1).await.unwrap().len(), 1);
    assert_eq!(
        store.tokens().await.unwrap(),
        vec![TokenRow {
            revoked_ms: Some(5),
            ..token
        }]
    );
    assert_eq!(store.meta("k").await.unwrap().as_deref(), Some("v2"));
    assert_eq!(store.meta("none").await.unwrap(), None);
    store.ping().await.unwrap();
}

async fn policy_versions_have_no_gaps_after_a_rolled_back_savepoint(b: Backend) {
    let store = b.store;
    assert_eq!(store.current_policy().await.unwrap(), None);
    let mut tx = store.begin_write().await.unwrap();
    assert_eq!(
        tx.insert_policy_version("s", "p", 1, "a", "one")
            .await
            .unwrap(),
        1
    );
    tx.savepoint().await.unwrap();
    assert_eq!(
        tx.insert_policy_version("s", "p", 2, "a", "refused")
            .await
            .unwrap(),
        2
    );
    tx.rollback_to_savepoint().await.unwrap();
    assert_eq!(
        tx.insert_policy_version("s", "p", 3, "a", "two")
            .await
            .unwrap(),
        2
    );
    tx.commit().await.unwrap();
    // A whole transaction rolled back leaves no gap either.
    let mut tx = store.begin_write().await.unwrap();
    tx.insert_policy_version("s", "p", 4, "a", "dropped")
        .await
        .unwrap();
    drop(tx);
    let mut tx = store.begin_write().await.unwrap();
    assert_eq!(
        tx.insert_policy_version("s", "p", 5, "a", "three")
            .await
            .unwrap(),
        3
    );
    tx.commit().await.unwrap();
    let comments: Vec<_> = store
        .policy_history(10)
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.version, p.comment))
        .collect();
    assert_eq!(
        comments,
        [(3, "three".into()), (2, "two".into()), (1, "one".into())]
    );
}

async fn token_hash_is_unique(b: Backend) {
    let store = b.store;
    let token = |id: &str| TokenRow {
        id: id.into(),
        name: "n".into(),
        hash: [9; 32],
        role: "admin".into(),
        created_ms: 1,
        revoked_ms: None,
        human: None,
    };
    let mut tx = store.begin_write().await.unwrap();
    tx.upsert_token(&token("tok_1")).await.unwrap();
    match tx.upsert_token(&token("tok_2")).await {
        Err(StoreError::Conflict(Unique::Other(_))) => {}
        other => panic!("expected a conflict on the hash, got {other:?}"),
    }
}

async fn last_used_only_moves_forward(b: Backend) {
    let store = b.store;
    let mut tx = store.begin_write().await.unwrap();
    tx.insert_identity(&identity("idn_a", "bot", "prod"))
        .await
        .unwrap();
    tx.insert_identity(&identity("idn_b", "bot2", "prod"))
        .await
        .unwrap();
    tx.touch_identities(&[]).await.unwrap();
    tx.touch_identities(&[("idn_a".into(), 500)]).await.unwrap();
    tx.touch_identities(&[("idn_a".into(), 400)]).await.unwrap();
    // One call naming an identity twice keeps the later time; unknown ids are ignored.
    tx.touch_identities(&[
        ("idn_b".into(), 700),
        ("idn_missing".into(), 1),
        ("idn_b".into(), 600),
    ])
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let used = |id: &'static str| {
        let store = store.clone();
        async move { store.get_identity(id).await.unwrap().unwrap().last_used_ms }
    };
    assert_eq!(used("idn_a").await, Some(500));
    assert_eq!(used("idn_b").await, Some(700));
}

async fn out_of_range_numbers_find_nothing(b: Backend) {
    let store = b.store;
    append(&*store, 1, 5).await;
    assert_eq!(store.audit_record(u64::MAX).await.unwrap(), None);
    assert_eq!(store.policy_version(u64::MAX).await.unwrap(), None);
    assert_eq!(store.get_identity("").await.unwrap(), None);
    // Text no backend can hold (PostgreSQL refuses NUL) finds nothing, on both alike.
    assert_eq!(store.get_identity("idn_\0").await.unwrap(), None);
    let none = store
        .list_identities(&IdentityFilter {
            owner: Some("a\0".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(none.is_empty());
    let none = store
        .audit_records(&AuditFilter {
            subject: Some("identity:\0".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(none.is_empty());
    let mut tx = store.begin_write().await.unwrap();
    assert_eq!(tx.get_identity("\0").await.unwrap(), None);
    assert_eq!(tx.get_token("\0").await.unwrap(), None);
    // The transaction is still usable afterwards.
    tx.load_chain_head().await.unwrap();
    tx.commit().await.unwrap();
}

async fn changes_since_lists_every_change_but_no_decision(b: Backend) {
    let store = b.store;
    let kinds = [
        (RecordKind::Decision, "identity:idn_a"),
        (RecordKind::IdentityCreated, "identity:idn_a"),
        (RecordKind::Decision, "identity:idn_a"),
        (RecordKind::PolicyUpdated, "policy:1"),
        (RecordKind::TokenRevoked, "token:tok_1"),
        (RecordKind::Decision, "identity:idn_b"),
        (RecordKind::System, "server"),
        (RecordKind::CredentialIssued, "identity:idn_a"),
        (RecordKind::CredentialRefused, "identity:idn_a"),
        (RecordKind::KillSwitchEngaged, "killswitch:ks_1"),
    ];
    let mut tx = store.begin_write().await.unwrap();
    let mut head = tx.load_chain_head().await.unwrap();
    let records: Vec<_> = kinds
        .iter()
        .map(|(kind, subject)| {
            head.seal(
                RecordDraft {
                    kind: *kind,
                    actor: "admin:t".into(),
                    subject: (*subject).into(),
                    payload: "{}".into(),
                },
                7,
            )
        })
        .collect();
    tx.append_records(&records).await.unwrap();
    tx.store_chain_head(&head).await.unwrap();
    let seen = |changes: Vec<warrant_store::ChangeRef>| -> Vec<(u64, String, String)> {
        changes
            .into_iter()
            .map(|c| (c.seq, c.kind, c.subject))
            .collect()
    };
    let all = seen(tx.changes_since(0).await.unwrap());
    assert_eq!(
        all,
        [
            (1, "identity.created".into(), "identity:idn_a".into()),
            (3, "policy.updated".into(), "policy:1".into()),
            (4, "token.revoked".into(), "token:tok_1".into()),
            (6, "system".into(), "server".into()),
            (9, "killswitch.engaged".into(), "killswitch:ks_1".into()),
        ]
    );
    assert_eq!(seen(tx.changes_since(3).await.unwrap()).len(), 4);
    assert!(tx.changes_since(10).await.unwrap().is_empty());
    assert!(tx.changes_since(u64::MAX >> 1).await.unwrap().is_empty());
    // Signalling is part of the transaction and harmless where nobody listens.
    tx.notify_changed().await.unwrap();
    tx.commit().await.unwrap();
}

async fn transactions_read_their_own_writes(b: Backend) {
    let store = b.store;
    let token = TokenRow {
        id: "tok_1".into(),
        name: "ci".into(),
        hash: [3; 32],
        role: "admin".into(),
        created_ms: 1,
        revoked_ms: None,
        human: None,
    };
    let mut tx = store.begin_write().await.unwrap();
    assert_eq!(tx.current_policy().await.unwrap(), None);
    assert_eq!(tx.get_token("tok_1").await.unwrap(), None);
    tx.upsert_token(&token).await.unwrap();
    tx.insert_policy_version("s", "p1", 1, "a", "one")
        .await
        .unwrap();
    tx.insert_policy_version("s", "p2", 2, "a", "two")
        .await
        .unwrap();
    assert_eq!(tx.get_token("tok_1").await.unwrap(), Some(token.clone()));
    let current = tx.current_policy().await.unwrap().unwrap();
    assert_eq!((current.version, current.policies_text.as_str()), (2, "p2"));
    drop(tx);
    // Rolled back: nothing stayed.
    assert_eq!(store.current_policy().await.unwrap(), None);
    assert!(store.tokens().await.unwrap().is_empty());
}

async fn credentials_round_trip(b: Backend) {
    use warrant_core::credentials::{KillSwitch, KillTarget};
    use warrant_store::{IdentityKeyRow, RevokedToken, TokenKeyRow};
    let store = b.store;
    let key = IdentityKeyRow {
        identity_id: "idn_a".into(),
        kid: "k1".into(),
        jwk: r#"{"kty":"OKP","crv":"Ed25519","x":"abc"}"#.into(),
        added_ms: 10,
        revoked_ms: None,
    };
    let signing = TokenKeyRow {
        kid: "tk1".into(),
        alg: "EdDSA".into(),
        public_jwk: "{}".into(),
        wrapped_private: vec![1, 2, 3],
        created_ms: 5,
        retired_ms: None,
        unpublish_ms: None,
    };
    let switch = KillSwitch {
        id: "ks_1".into(),
        target: KillTarget::Owner("alice@example.com".into()),
        engaged_ms: 20,
        engaged_by: "admin:t".into(),
        reason: "incident 7".into(),
        released_ms: None,
        released_by: None,
        release_reason: None,
    };
    let mut tx = store.begin_write().await.unwrap();
    tx.insert_identity_key(&key).await.unwrap();
    tx.commit().await.unwrap();
    // (A failed statement ends a PostgreSQL transaction: the writer wraps each op in a
    // savepoint; here the refused insert gets a transaction of its own.)
    let mut tx = store.begin_write().await.unwrap();
    assert!(matches!(
        tx.insert_identity_key(&key).await,
        Err(StoreError::Conflict(_))
    ));
    drop(tx);
    let mut tx = store.begin_write().await.unwrap();
    assert!(tx.use_assertion("idn_a", "j1", 100).await.unwrap());
    assert!(
        !tx.use_assertion("idn_a", "j1", 100).await.unwrap(),
        "a replay is refused"
    );
    assert!(
        tx.use_assertion("idn_b", "j1", 100).await.unwrap(),
        "jti is per client"
    );
    assert!(tx.revoke_identity_key("idn_a", "k1", 30).await.unwrap());
    assert!(!tx.revoke_identity_key("idn_a", "k1", 31).await.unwrap());
    assert!(!tx.revoke_identity_key("idn_a", "nope", 31).await.unwrap());
    tx.insert_token_key(&signing).await.unwrap();
    tx.retire_token_keys(40, 400).await.unwrap();
    tx.insert_token_key(&TokenKeyRow {
        kid: "tk2".into(),
        created_ms: 40,
        ..signing.clone()
    })
    .await
    .unwrap();
    let revoked = RevokedToken {
        jti: "at1".into(),
        exp_ms: 1000,
        revoked_ms: 50,
    };
    assert!(tx.revoke_token(&revoked).await.unwrap());
    assert!(
        !tx.revoke_token(&revoked).await.unwrap(),
        "revoking twice changes nothing"
    );
    assert_eq!(
        tx.revoked_token("at1").await.unwrap(),
        Some(revoked.clone())
    );
    tx.revoke_token(&RevokedToken {
        jti: "at0".into(),
        exp_ms: 60,
        revoked_ms: 50,
    })
    .await
    .unwrap();
    tx.insert_kill_switch(&switch).await.unwrap();
    tx.insert_kill_switch(&KillSwitch {
        id: "ks_2".into(),
        target: KillTarget::AllAi,
        engaged_ms: 21,
        ..switch.clone()
    })
    .await
    .unwrap();
    let mut released = tx.get_kill_switch("ks_2").await.unwrap().unwrap();
    released.released_ms = Some(25);
    released.released_by = Some("admin:u".into());
    released.release_reason = Some("resolved".into());
    tx.update_kill_switch(&released).await.unwrap();
    assert_eq!(tx.token_keys().await.unwrap().len(), 2);
    tx.commit().await.unwrap();

    let keys = store.identity_keys("idn_a").await.unwrap();
    assert_eq!(
        keys,
        [IdentityKeyRow {
            revoked_ms: Some(30),
            ..key
        }]
    );
    assert!(store.identity_keys("idn_\0").await.unwrap().is_empty());
    let signing_keys = store.token_keys().await.unwrap();
    assert_eq!(
        signing_keys
            .iter()
            .map(|k| (k.kid.as_str(), k.retired_ms, k.unpublish_ms))
            .collect::<Vec<_>>(),
        [("tk1", Some(40), Some(400)), ("tk2", None, None)]
    );
    assert_eq!(signing_keys[0].wrapped_private, [1, 2, 3]);
    assert_eq!(
        store.revoked_tokens(100).await.unwrap(),
        std::slice::from_ref(&revoked)
    );
    assert_eq!(store.revoked_tokens(1000).await.unwrap(), []);
    assert_eq!(
        store.kill_switches(false).await.unwrap(),
        std::slice::from_ref(&switch)
    );
    assert_eq!(store.kill_switches(true).await.unwrap(), [released, switch]);

    let mut tx = store.begin_write().await.unwrap();
    // Expired before 101: the used assertions (exp 100) and the revocation of at0 (exp 60).
    assert_eq!(tx.purge_expired(101).await.unwrap(), 3);
    assert!(
        tx.use_assertion("idn_a", "j1", 200).await.unwrap(),
        "purged"
    );
    tx.commit().await.unwrap();
    assert_eq!(store.revoked_tokens(0).await.unwrap(), [revoked]);
}

async fn init_meta_keeps_the_first_value(b: Backend) {
    let store = b.store;
    let mut tx = store.begin_write().await.unwrap();
    assert_eq!(tx.init_meta("log_id", "first").await.unwrap(), "first");
    assert_eq!(tx.init_meta("log_id", "second").await.unwrap(), "first");
    tx.commit().await.unwrap();
    let mut tx = store.begin_write().await.unwrap();
    assert_eq!(tx.init_meta("log_id", "third").await.unwrap(), "first");
    tx.commit().await.unwrap();
    assert_eq!(
        store.meta("log_id").await.unwrap().as_deref(),
        Some("first")
    );
}

fn object(kind: &str, id: &str, state: &str, due_ms: Option<i64>) -> ObjectRow {
    ObjectRow {
        kind: kind.into(),
        id: id.into(),
        state: state.into(),
        body: format!(r#"{{"id":"{id}","state":"{state}"}}"#),
        due_ms,
        created_ms: 100,
        updated_ms: 100,
    }
}

/// Stores `objects` in one committed write transaction.
async fn put_objects(store: &dyn Store, objects: &[ObjectRow]) {
    let mut tx = store.begin_write().await.unwrap();
    for o in objects {
        tx.put_object(o).await.unwrap();
    }
    tx.commit().await.unwrap();
}

async fn objects_round_trip_and_upsert_keeps_created(b: Backend) {
    let store = b.store;
    let p = object("proposal", "prp_1", "pending", Some(5_000));
    assert_eq!(store.get_object("proposal", "prp_1").await.unwrap(), None);
    let mut tx = store.begin_write().await.unwrap();
    assert_eq!(tx.get_object("proposal", "prp_1").await.unwrap(), None);
    tx.put_object(&p).await.unwrap();
    // The transaction reads its own write.
    assert_eq!(
        tx.get_object("proposal", "prp_1").await.unwrap(),
        Some(p.clone())
    );
    tx.commit().await.unwrap();
    assert_eq!(
        store.get_object("proposal", "prp_1").await.unwrap(),
        Some(p.clone())
    );
    // (kind, id) is the key: the same id under another kind is another object.
    assert_eq!(store.get_object("role", "prp_1").await.unwrap(), None);

    // An update changes state, body, timer and updated_ms, and keeps created_ms.
    let changed = ObjectRow {
        state: "executed".into(),
        body: r#"{"id":"prp_1","state":"executed","by":"bob"}"#.into(),
        due_ms: None,
        created_ms: 999,
        updated_ms: 200,
        ..p.clone()
    };
    put_objects(&*store, std::slice::from_ref(&changed)).await;
    assert_eq!(
        store.get_object("proposal", "prp_1").await.unwrap(),
        Some(ObjectRow {
            created_ms: 100,
            ..changed.clone()
        })
    );
    // And a timer can be set again.
    let timed = ObjectRow {
        due_ms: Some(i64::MAX),
        updated_ms: 300,
        ..changed
    };
    put_objects(&*store, std::slice::from_ref(&timed)).await;
    let stored = store
        .get_object("proposal", "prp_1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((stored.due_ms, stored.created_ms), (Some(i64::MAX), 100));
    assert_eq!(store.all_objects("proposal").await.unwrap(), [stored]);
    assert!(store.all_objects("role").await.unwrap().is_empty());
}

async fn insert_object_refuses_an_existing_one(b: Backend) {
    let store = b.store;
    let r = object("role", "rol_1", "active", None);
    let mut tx = store.begin_write().await.unwrap();
    tx.insert_object(&r).await.unwrap();
    // A refused insert behind a savepoint leaves the transaction usable (PostgreSQL).
    tx.savepoint().await.unwrap();
    match tx
        .insert_object(&ObjectRow {
            body: "{}".into(),
            ..r.clone()
        })
        .await
    {
        Err(StoreError::Conflict(Unique::Other(_))) => {}
        other => panic!("expected a conflict on (kind, id), got {other:?}"),
    }
    tx.rollback_to_savepoint().await.unwrap();
    // The same id under another kind is no conflict.
    tx.insert_object(&object("resource", "rol_1", "active", None))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.get_object("role", "rol_1").await.unwrap(), Some(r));
    assert!(store
        .get_object("resource", "rol_1")
        .await
        .unwrap()
        .is_some());
    // Committed: a later transaction is refused too.
    let mut tx = store.begin_write().await.unwrap();
    assert!(matches!(
        tx.insert_object(&object("role", "rol_1", "x", None)).await,
        Err(StoreError::Conflict(_))
    ));
}

async fn objects_list_by_kind_and_state_with_cursor(b: Backend) {
    let store = b.store;
    // Stored out of order: listing is by id.
    put_objects(
        &*store,
        &[
            object("capability", "cap_3", "active", None),
            object("capability", "cap_1", "active", None),
            object("capability", "cap_2", "retired", None),
            object("capability", "cap_5", "active", None),
            object("capability", "cap_4", "active", None),
            object("proposal", "cap_0", "active", None),
        ],
    )
    .await;
    let ids = |rows: Vec<ObjectRow>| rows.into_iter().map(|o| o.id).collect::<Vec<_>>();
    let list = |state: Option<&str>, after: Option<&str>, limit: u32| {
        let store = store.clone();
        let filter = ObjectFilter {
            kind: "capability".into(),
            state: state.map(Into::into),
            after_id: after.map(Into::into),
            limit,
        };
        async move { ids(store.list_objects(&filter).await.unwrap()) }
    };
    // limit 0: all of them.
    assert_eq!(
        list(None, None, 0).await,
        ["cap_1", "cap_2", "cap_3", "cap_4", "cap_5"]
    );
    assert_eq!(list(None, None, 2).await, ["cap_1", "cap_2"]);
    assert_eq!(list(None, Some("cap_2"), 2).await, ["cap_3", "cap_4"]);
    assert_eq!(list(None, Some("cap_4"), 2).await, ["cap_5"]);
    assert!(list(None, Some("cap_5"), 2).await.is_empty());
    assert_eq!(
        list(Some("active"), None, 0).await,
        ["cap_1", "cap_3", "cap_4", "cap_5"]
    );
    assert_eq!(
        list(Some("active"), Some("cap_1"), 2).await,
        ["cap_3", "cap_4"]
    );
    assert_eq!(list(Some("retired"), None, 10).await, ["cap_2"]);
    assert!(list(Some("pending"), None, 10).await.is_empty());
    assert_eq!(
        ids(store.all_objects("capability").await.unwrap()),
        ["cap_1", "cap_2", "cap_3", "cap_4", "cap_5"]
    );
    assert_eq!(ids(store.all_objects("proposal").await.unwrap()), ["cap_0"]);
    let none = store
        .list_objects(&ObjectFilter {
            kind: "nothing".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(none.is_empty());
}

async fn due_objects_in_due_order(b: Backend) {
    let store = b.store;
    put_objects(
        &*store,
        &[
            object("proposal", "prp_2", "pending", Some(300)),
            object("proposal", "prp_1", "pending", Some(200)),
            object("delivery", "dlv_1", "retrying", Some(200)),
            object("delivery", "dlv_0", "retrying", Some(500)),
            object("role", "rol_1", "active", None),
            object("proposal", "prp_neg", "pending", Some(-5)),
        ],
    )
    .await;
    let due = |now: i64, limit: u32| {
        let store = store.clone();
        async move {
            store
                .due_objects(now, limit)
                .await
                .unwrap()
                .into_iter()
                .map(|o| (o.kind, o.id))
                .collect::<Vec<_>>()
        }
    };
    let pair = |k: &str, i: &str| (k.to_owned(), i.to_owned());
    assert_eq!(due(-6, 0).await, []);
    assert_eq!(due(-5, 0).await, [pair("proposal", "prp_neg")]);
    // Equal due times: by kind, then id. due_ms == now is due.
    assert_eq!(
        due(300, 0).await,
        [
            pair("proposal", "prp_neg"),
            pair("delivery", "dlv_1"),
            pair("proposal", "prp_1"),
            pair("proposal", "prp_2"),
        ]
    );
    assert_eq!(
        due(300, 2).await,
        [pair("proposal", "prp_neg"), pair("delivery", "dlv_1")]
    );
    // An object without a timer is never due, however late it is.
    let all = due(i64::MAX, 0).await;
    assert_eq!(all.len(), 5);
    assert!(!all.contains(&pair("role", "rol_1")));
    // Clearing a timer takes the object off the list.
    let mut tx = store.begin_write().await.unwrap();
    let mut p = tx.get_object("proposal", "prp_1").await.unwrap().unwrap();
    p.due_ms = None;
    p.state = "executed".into();
    tx.put_object(&p).await.unwrap();
    tx.commit().await.unwrap();
    assert!(!due(i64::MAX, 0).await.contains(&pair("proposal", "prp_1")));
}

async fn objects_roll_back_with_their_transaction(b: Backend) {
    let store = b.store;
    let kept = object("proposal", "prp_1", "pending", Some(10));
    // A savepoint rolled back discards the put (and the update) made after it.
    let mut tx = store.begin_write().await.unwrap();
    tx.put_object(&kept).await.unwrap();
    tx.savepoint().await.unwrap();
    tx.put_object(&object("proposal", "prp_2", "pending", Some(10)))
        .await
        .unwrap();
    tx.put_object(&ObjectRow {
        state: "rejected".into(),
        ..kept.clone()
    })
    .await
    .unwrap();
    tx.rollback_to_savepoint().await.unwrap();
    assert_eq!(tx.get_object("proposal", "prp_2").await.unwrap(), None);
    assert_eq!(
        tx.get_object("proposal", "prp_1").await.unwrap(),
        Some(kept.clone())
    );
    tx.commit().await.unwrap();
    assert_eq!(
        store.all_objects("proposal").await.unwrap(),
        std::slice::from_ref(&kept)
    );
    // A whole transaction dropped without commit discards its puts.
    let mut tx = store.begin_write().await.unwrap();
    tx.put_object(&object("proposal", "prp_3", "pending", None))
        .await
        .unwrap();
    tx.put_object(&ObjectRow {
        state: "executed".into(),
        ..kept.clone()
    })
    .await
    .unwrap();
    drop(tx);
    assert_eq!(store.all_objects("proposal").await.unwrap(), [kept]);
    assert_eq!(store.due_objects(10, 0).await.unwrap().len(), 1);
}

async fn objects_with_nul_find_nothing_and_are_refused(b: Backend) {
    let store = b.store;
    put_objects(&*store, &[object("role", "rol_1", "active", None)]).await;
    // Text no backend can hold finds nothing, on both alike.
    assert_eq!(store.get_object("role", "rol_\0").await.unwrap(), None);
    assert_eq!(store.get_object("role\0", "rol_1").await.unwrap(), None);
    assert!(store.all_objects("role\0").await.unwrap().is_empty());
    for filter in [
        ObjectFilter {
            kind: "role\0".into(),
            ..Default::default()
        },
        ObjectFilter {
            kind: "role".into(),
            state: Some("active\0".into()),
            ..Default::default()
        },
        ObjectFilter {
            kind: "role".into(),
            after_id: Some("\0".into()),
            ..Default::default()
        },
    ] {
        assert!(store.list_objects(&filter).await.unwrap().is_empty());
    }
    let mut tx = store.begin_write().await.unwrap();
    assert_eq!(tx.get_object("role", "\0").await.unwrap(), None);
    // Writing it is refused the same way on both, before any SQL: the transaction
    // stays usable (no savepoint needed).
    let bad = object("role", "rol_\0", "active", None);
    assert!(matches!(
        tx.put_object(&bad).await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(
        tx.insert_object(&ObjectRow {
            id: "rol_2".into(),
            body: "{\"a\":\"\0\"}".into(),
            ..bad.clone()
        })
        .await,
        Err(StoreError::Corrupt(_))
    ));
    tx.put_object(&object("role", "rol_2", "active", None))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.all_objects("role").await.unwrap().len(), 2);
}

async fn token_human_round_trip(b: Backend) {
    let store = b.store;
    let token = TokenRow {
        id: "tok_h".into(),
        name: "alice's token".into(),
        hash: [4; 32],
        role: "operator".into(),
        created_ms: 1,
        revoked_ms: None,
        human: Some("alice@example.com".into()),
    };
    let anonymous = TokenRow {
        id: "tok_n".into(),
        hash: [5; 32],
        created_ms: 2,
        human: None,
        ..token.clone()
    };
    let mut tx = store.begin_write().await.unwrap();
    tx.upsert_token(&token).await.unwrap();
    tx.upsert_token(&anonymous).await.unwrap();
    assert_eq!(tx.get_token("tok_h").await.unwrap(), Some(token.clone()));
    tx.commit().await.unwrap();
    assert_eq!(
        store.tokens().await.unwrap(),
        [token.clone(), anonymous.clone()]
    );
    // An upsert changes (or clears) the human too.
    let reassigned = TokenRow {
        human: Some("bob@example.com".into()),
        ..token.clone()
    };
    let cleared = TokenRow {
        revoked_ms: Some(9),
        human: None,
        ..token
    };
    let mut tx = store.begin_write().await.unwrap();
    tx.upsert_token(&reassigned).await.unwrap();
    assert_eq!(tx.get_token("tok_h").await.unwrap(), Some(reassigned));
    tx.upsert_token(&cleared).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.tokens().await.unwrap(), [cleared, anonymous]);
}

/// What a copy of a store reads (`migrate-store`): every row of the credential and object
/// tables, also those the filtered reads leave out (expired revocations, released kill
/// switches, revoked keys), in a stable order, and what it writes them with keeps every
/// field.
async fn whole_tables_read_every_row(b: Backend) {
    use warrant_core::credentials::{KillSwitch, KillTarget};
    use warrant_store::{IdentityKeyRow, RevokedToken, UsedAssertion};
    let store = b.store;
    assert!(store.all_identity_keys().await.unwrap().is_empty());
    assert!(store.all_revoked_tokens().await.unwrap().is_empty());
    assert!(store.used_assertions().await.unwrap().is_empty());
    assert!(store.all_objects_any_kind().await.unwrap().is_empty());

    let key = |identity: &str, kid: &str, added_ms, revoked_ms| IdentityKeyRow {
        identity_id: identity.into(),
        kid: kid.into(),
        jwk: format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{kid}"}}"#),
        added_ms,
        revoked_ms,
    };
    let keys = [
        key("idn_a", "k2", 10, None),
        key("idn_a", "k1", 20, Some(30)),
        key("idn_b", "k1", 5, None),
    ];
    let revoked = [
        RevokedToken {
            jti: "at_live".into(),
            exp_ms: 10_000,
            revoked_ms: 40,
        },
        RevokedToken {
            jti: "at_expired".into(),
            exp_ms: 60,
            revoked_ms: 50,
        },
    ];
    let used = [
        UsedAssertion {
            client_id: "idn_a".into(),
            jti: "j1".into(),
            exp_ms: 100,
        },
        UsedAssertion {
            client_id: "idn_a".into(),
            jti: "j2".into(),
            exp_ms: 5,
        },
        UsedAssertion {
            client_id: "idn_b".into(),
            jti: "j1".into(),
            exp_ms: 100,
        },
    ];
    let objects = [
        object("role", "rol_2", "active", None),
        object("capability", "cap_1", "accepted", None),
        object("proposal", "prp_1", "pending", Some(5_000)),
        object("role", "rol_1", "retired", None),
    ];
    let mut tx = store.begin_write().await.unwrap();
    // Inserted out of order: the reads order them.
    for k in keys.iter().rev() {
        tx.insert_identity_key(k).await.unwrap();
    }
    for r in &revoked {
        assert!(tx.revoke_token(r).await.unwrap());
    }
    for u in used.iter().rev() {
        assert!(tx
            .use_assertion(&u.client_id, &u.jti, u.exp_ms)
            .await
            .unwrap());
    }
    for o in &objects {
        tx.insert_object(o).await.unwrap();
    }
    let engaged = KillSwitch {
        id: "ks_1".into(),
        target: KillTarget::Identity("idn_a".into()),
        engaged_ms: 20,
        engaged_by: "admin:t".into(),
        reason: "incident 7".into(),
        released_ms: None,
        released_by: None,
        release_reason: None,
    };
    // A released switch is inserted as it is (what a copy does).
    let released = KillSwitch {
        id: "ks_2".into(),
        target: KillTarget::Environment("prod".into()),
        engaged_ms: 10,
        released_ms: Some(15),
        released_by: Some("admin:u".into()),
        release_reason: Some("resolved".into()),
        ..engaged.clone()
    };
    tx.insert_kill_switch(&engaged).await.unwrap();
    tx.insert_kill_switch(&released).await.unwrap();
    tx.commit().await.unwrap();

    assert_eq!(
        store.all_identity_keys().await.unwrap(),
        [keys[0].clone(), keys[1].clone(), keys[2].clone()]
    );
    // Oldest revocation first, the expired one included (the filtered read leaves it out).
    assert_eq!(
        store.all_revoked_tokens().await.unwrap(),
        [revoked[0].clone(), revoked[1].clone()]
    );
    assert_eq!(
        store.revoked_tokens(100).await.unwrap(),
        [revoked[0].clone()]
    );
    assert_eq!(store.used_assertions().await.unwrap(), used);
    assert_eq!(
        store.all_objects_any_kind().await.unwrap(),
        [
            objects[1].clone(),
            objects[2].clone(),
            objects[3].clone(),
            objects[0].clone()
        ]
    );
    assert_eq!(
        store.kill_switches(true).await.unwrap(),
        [engaged.clone(), released]
    );
    assert_eq!(store.kill_switches(false).await.unwrap(), [engaged]);

    // Purged rows are gone from the whole-table reads too.
    let mut tx = store.begin_write().await.unwrap();
    assert_eq!(tx.purge_expired(61).await.unwrap(), 2);
    tx.commit().await.unwrap();
    assert_eq!(
        store.all_revoked_tokens().await.unwrap(),
        [revoked[0].clone()]
    );
    assert_eq!(
        store.used_assertions().await.unwrap(),
        [used[0].clone(), used[2].clone()]
    );
}

// ---------------------------------------------------------------------------------------
// SQLite only

/// A database opened read-only (not migrated) tells which schema versions it has, so an
/// offline tool can refuse one older or newer than itself.
#[tokio::test]
async fn sqlite_reports_its_applied_schema_versions() {
    let b = Backend::sqlite().await;
    let Raw::Sqlite(path) = &b.raw else {
        unreachable!()
    };
    let known = SqliteStore::schema_versions();
    assert!(
        known.len() >= 4 && known.windows(2).all(|w| w[0] < w[1]),
        "{known:?}"
    );
    let ro = SqliteStore::open_read_only(path).await.unwrap();
    assert_eq!(ro.applied_schema_versions().await.unwrap(), known);
    b.raw_exec(
        "DELETE FROM _sqlx_migrations WHERE version = (SELECT MAX(version) FROM _sqlx_migrations)",
    )
    .await
    .unwrap();
    assert_eq!(
        ro.applied_schema_versions().await.unwrap(),
        known[..known.len() - 1]
    );
    ro.close().await;
}

/// One process owns an SQLite store: nothing to watch, and it always runs the jobs.
#[tokio::test]
async fn sqlite_is_not_shared_and_always_holds_the_job_lock() {
    let b = Backend::sqlite().await;
    assert!(!b.store.shared());
    let returned = tokio::time::timeout(Duration::from_secs(1), b.store.watch_changes(&|| {}))
        .await
        .expect("watching an SQLite store returns at once");
    returned.unwrap();
    let mut lock = b.store.try_job_lock("jobs").await.unwrap().unwrap();
    lock.check().await.unwrap();
    assert!(b.store.try_job_lock("jobs").await.unwrap().is_some());
}

// ---------------------------------------------------------------------------------------
// PostgreSQL only: several replicas on one database

/// A change signal reaches a replica that watches, when the sending transaction commits,
/// and never for one that rolls back.
#[tokio::test]
async fn postgres_change_signals_arrive_on_commit_only() {
    let url = fresh_pg_database().await;
    let watcher = Arc::new(PostgresStore::connect(&url).await.unwrap());
    let writer = PostgresStore::connect(&url).await.unwrap();
    assert!(watcher.shared());
    let signals = Arc::new(AtomicU32::new(0));
    let task = {
        let (watcher, signals) = (watcher.clone(), signals.clone());
        tokio::spawn(async move {
            let on_change = move || {
                signals.fetch_add(1, Ordering::SeqCst);
            };
            watcher.watch_changes(&on_change).await
        })
    };
    let wait_for = |n: u32| {
        let signals = signals.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(5);
            while signals.load(Ordering::SeqCst) < n {
                assert!(Instant::now() < deadline, "no signal {n} within 5 s");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    // One signal once subscribed (changes may have been missed before).
    wait_for(1).await;

    let mut tx = writer.begin_write().await.unwrap();
    tx.notify_changed().await.unwrap();
    drop(tx);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        signals.load(Ordering::SeqCst),
        1,
        "a rolled-back change signalled"
    );

    let mut tx = writer.begin_write().await.unwrap();
    tx.notify_changed().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        signals.load(Ordering::SeqCst),
        1,
        "signalled before the commit"
    );
    let committed = Instant::now();
    tx.commit().await.unwrap();
    wait_for(2).await;
    assert!(committed.elapsed() < Duration::from_secs(1));
    task.abort();
}

/// A job lock is held by one replica at a time, per job, and moves to another replica
/// once the holder's session ends (as when its process dies).
#[tokio::test]
async fn postgres_job_lock_is_exclusive_and_moves_when_its_holder_goes() {
    let url = fresh_pg_database().await;
    let a = PostgresStore::connect(&url).await.unwrap();
    let b = PostgresStore::connect(&url).await.unwrap();
    let mut held = a
        .try_job_lock("checkpoints")
        .await
        .unwrap()
        .expect("free lock");
    held.check().await.unwrap();
    assert!(b.try_job_lock("checkpoints").await.unwrap().is_none());
    assert!(
        a.try_job_lock("checkpoints").await.unwrap().is_none(),
        "not re-entrant across sessions"
    );
    let other = b.try_job_lock("timers").await.unwrap();
    assert!(other.is_some(), "another job's lock is independent");

    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut moved = None;
    while moved.is_none() {
        assert!(
            Instant::now() < deadline,
            "the lock did not move within 5 s"
        );
        moved = b.try_job_lock("checkpoints").await.unwrap();
        if moved.is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    moved.unwrap().check().await.unwrap();
}

/// A held lock whose session the database ended reports itself lost.
#[tokio::test]
async fn postgres_job_lock_reports_a_terminated_session() {
    let url = fresh_pg_database().await;
    let a = PostgresStore::connect(&url).await.unwrap();
    let mut held = a.try_job_lock("checkpoints").await.unwrap().unwrap();
    let name = url.rsplit('/').next().unwrap().to_owned();
    let mut admin = sqlx::PgConnection::connect(&pg_server_url()).await.unwrap();
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_locks l JOIN pg_stat_activity s USING (pid)
         WHERE l.locktype = 'advisory' AND s.datname = $1",
    )
    .bind(&name)
    .execute(&mut admin)
    .await
    .unwrap();
    assert!(
        held.check().await.is_err(),
        "a terminated session still counts as holding"
    );
    assert!(a.try_job_lock("checkpoints").await.unwrap().is_some());
}

/// Two replicas (two stores on one database): the second writer blocks on the audit head
/// until the first commits, then continues the chain the first left; no fork, no gap.
#[tokio::test]
async fn postgres_second_replica_waits_for_the_head_lock_then_continues_the_chain() {
    let url = fresh_pg_database().await;
    let a = PostgresStore::connect(&url).await.unwrap();
    let b = PostgresStore::connect(&url).await.unwrap();

    let mut tx_a = a.begin_write().await.unwrap();
    let mut head_a = tx_a.load_chain_head().await.unwrap();
    assert_eq!(head_a.tree.size(), 0);

    let (began, began_rx) = tokio::sync::oneshot::channel();
    let replica_b = tokio::spawn(async move {
        let mut tx = b.begin_write().await.unwrap();
        began.send(()).unwrap();
        let mut head = tx.load_chain_head().await.unwrap();
        let seen = head.tree.size();
        let records: Vec<_> = (0..3).map(|n| head.seal(draft(100 + n), 20)).collect();
        tx.append_records(&records).await.unwrap();
        tx.store_chain_head(&head).await.unwrap();
        tx.commit().await.unwrap();
        seen
    });
    began_rx.await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !replica_b.is_finished(),
        "the second replica must wait for the head lock"
    );

    let records: Vec<_> = (0..5).map(|n| head_a.seal(draft(n), 10)).collect();
    tx_a.append_records(&records).await.unwrap();
    tx_a.store_chain_head(&head_a).await.unwrap();
    tx_a.commit().await.unwrap();

    let seen_by_b = tokio::time::timeout(Duration::from_secs(10), replica_b)
        .await
        .expect("the second replica goes on once the first commits")
        .unwrap();
    assert_eq!(seen_by_b, 5, "the second replica sees the first one's head");
    assert_eq!(verify_chain(&a).await, 8);
}

/// Three replicas appending concurrently, many transactions each: one chain.
#[tokio::test]
async fn postgres_concurrent_replicas_build_one_chain() {
    let url = fresh_pg_database().await;
    let mut tasks = vec![];
    for replica in 0..3u32 {
        let store = PostgresStore::connect(&url).await.unwrap();
        tasks.push(tokio::spawn(async move {
            let mut appended = 0u64;
            for round in 0..20u32 {
                let n = 1 + (replica + round) % 4;
                append(&store, n, i64::from(round)).await;
                appended += u64::from(n);
            }
            appended
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    let store = PostgresStore::connect(&url).await.unwrap();
    assert_eq!(verify_chain(&store).await, total);
}

/// Policy numbering stays gapless and unique even for writers that skip the head lock.
#[tokio::test]
async fn postgres_concurrent_policy_versions_are_numbered_in_turn() {
    let url = fresh_pg_database().await;
    let a = PostgresStore::connect(&url).await.unwrap();
    let b = PostgresStore::connect(&url).await.unwrap();
    let mut tx_a = a.begin_write().await.unwrap();
    let v_a = tx_a
        .insert_policy_version("s", "p", 1, "a", "from a")
        .await
        .unwrap();
    let replica_b = tokio::spawn(async move {
        let mut tx = b.begin_write().await.unwrap();
        let v = tx
            .insert_policy_version("s", "p", 2, "b", "from b")
            .await
            .unwrap();
        tx.commit().await.unwrap();
        v
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!replica_b.is_finished());
    tx_a.commit().await.unwrap();
    let v_b = tokio::time::timeout(Duration::from_secs(10), replica_b)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((v_a, v_b), (1, 2));
}

/// Replicas starting together migrate the database once; connecting again is a no-op.
#[tokio::test]
async fn postgres_replicas_starting_together_migrate_once() {
    let url = fresh_pg_database().await;
    let (a, b, c) = tokio::join!(
        PostgresStore::connect(&url),
        PostgresStore::connect(&url),
        PostgresStore::connect(&url)
    );
    let (a, _b, _c) = (a.unwrap(), b.unwrap(), c.unwrap());
    append(&a, 2, 1).await;
    let again = PostgresStore::connect(&url).await.unwrap();
    assert_eq!(verify_chain(&again).await, 2);
}

/// The offline tools' read-only mode: it never creates the schema, refuses a database
/// without one, reads an existing one, and cannot write.
#[tokio::test]
async fn postgres_read_only_opens_only_an_existing_log_and_never_writes() {
    let url = fresh_pg_database().await;
    match PostgresStore::connect_read_only(&url).await {
        Err(StoreError::Unavailable(msg)) => assert!(msg.contains("no warrant schema"), "{msg}"),
        Err(other) => panic!("expected Unavailable, got {other:?}"),
        Ok(_) => panic!("opened a database without a warrant schema"),
    }
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(tables, 0, "opening read-only created tables");

    let writer = PostgresStore::connect(&url).await.unwrap();
    append(&writer, 3, 1).await;
    let reader = PostgresStore::connect_read_only(&url).await.unwrap();
    assert_eq!(verify_chain(&reader).await, 3);
    let mut tx = reader.begin_write().await.unwrap();
    let mut head = tx
        .load_chain_head()
        .await
        .unwrap_or_else(|_| ChainHead::default());
    let record = head.seal(draft(9), 2);
    let refused = tx.append_records(&[record]).await;
    assert!(refused.is_err(), "a read-only session appended a record");
    drop(tx);
    assert_eq!(verify_chain(&writer).await, 3);
}

/// PostgreSQL also refuses TRUNCATE of the audit log.
#[tokio::test]
async fn postgres_refuses_truncating_the_audit_log() {
    let b = Backend::postgres().await;
    append(&*b.store, 2, 1).await;
    let err = b.raw_exec("TRUNCATE audit_records").await.unwrap_err();
    assert!(err.contains("append-only"), "{err}");
    assert_eq!(verify_chain(&*b.store).await, 2);
}

/// Nothing listening: connecting fails at once with Unavailable, it does not hang.
#[tokio::test]
async fn postgres_connect_to_a_dead_port_fails_fast() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let started = Instant::now();
    let result = PostgresStore::connect(&format!("postgres://postgres@127.0.0.1:{port}/x")).await;
    match result {
        Err(StoreError::Unavailable(msg)) => assert!(msg.contains("connect"), "{msg}"),
        Err(other) => panic!("expected Unavailable, got {other:?}"),
        Ok(_) => panic!("connected to a dead port"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

/// While the database refuses connections, reads and writes fail with Unavailable within
/// seconds (no partial write); once it takes them again the store recovers by itself.
#[tokio::test]
async fn postgres_fails_closed_while_the_database_refuses_and_recovers() {
    let url = fresh_pg_database().await;
    let store = PostgresStore::connect(&url).await.unwrap();
    append(&store, 1, 1).await;
    let name = url.rsplit('/').next().unwrap().to_owned();
    let mut admin = sqlx::PgConnection::connect(&pg_server_url()).await.unwrap();
    let set = |allow: bool| format!("ALTER DATABASE \"{name}\" WITH ALLOW_CONNECTIONS {allow}");
    sqlx::query(&set(false)).execute(&mut admin).await.unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(&name)
        .execute(&mut admin)
        .await
        .unwrap();

    let started = Instant::now();
    assert!(matches!(
        store.ping().await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        store.audit_head().await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        store.begin_write().await.map(drop),
        Err(StoreError::Unavailable(_))
    ));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "failing took {:?}",
        started.elapsed()
    );

    sqlx::query(&set(true)).execute(&mut admin).await.unwrap();
    append(&store, 2, 2).await;
    assert_eq!(verify_chain(&store).await, 3);
}

#[test]
fn database_names_are_swapped_in_urls() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5/postgres", "d"),
        "postgres://postgres@127.0.0.1:5/d"
    );
    assert_eq!(
        with_database("postgres://u:p@h:5/postgres?sslmode=disable", "d"),
        "postgres://u:p@h:5/d?sslmode=disable"
    );
    assert_eq!(with_database("postgres://h:5", "d"), "postgres://h:5/d");
}
