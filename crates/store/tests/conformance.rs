//! The storage conformance suite: what every backend must do. Runs against a real SQLite
//! file; the PostgreSQL backend will run the same cases.

#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

use ed25519_dalek::SigningKey;
use warrant_core::audit::{ChainHead, RecordDraft, RecordKind};
use warrant_core::checkpoint::Checkpoint;
use warrant_core::identity::{Identity, NewIdentity, Transition};
use warrant_store::sqlite::{Durability, SqliteStore};
use warrant_store::{AuditFilter, IdentityFilter, Store, StoreError, TokenRow, Unique};

async fn open() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("w.db"), Durability::Full)
        .await
        .unwrap();
    (dir, store)
}

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

#[tokio::test]
async fn identities_round_trip_and_uniqueness() {
    let (_d, store) = open().await;
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
    let dup = identity("idn_c", "bot", "prod");
    match tx.insert_identity(&dup).await {
        Err(StoreError::Conflict(u)) => {
            assert!(matches!(u, Unique::NameEnvironment | Unique::SpiffeId))
        }
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
    tx.commit().await.unwrap();
    assert!(store.get_identity("idn_b").await.unwrap().is_some());
    assert!(store.get_identity("idn_c").await.unwrap().is_none());

    // Updates persist; retired rows stay (their name and URI are never reused).
    let retired = a.transitioned(Transition::Retire, 2000).unwrap();
    let mut tx = store.begin_write().await.unwrap();
    tx.update_identity(&retired).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.get_identity("idn_a").await.unwrap(), Some(retired));
    let mut tx = store.begin_write().await.unwrap();
    assert!(tx
        .insert_identity(&identity("idn_e", "bot", "prod"))
        .await
        .is_err());
}

#[tokio::test]
async fn list_filters_and_paginates() {
    let (_d, store) = open().await;
    let mut tx = store.begin_write().await.unwrap();
    for i in 0..25 {
        let env = if i % 2 == 0 { "prod" } else { "dev" };
        tx.insert_identity(&identity(&format!("idn_{i:03}"), &format!("bot{i}"), env))
            .await
            .unwrap();
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
    assert_eq!(store.all_identities().await.unwrap().len(), 25);
}

#[tokio::test]
async fn audit_chain_persists_and_rolls_back_with_its_transaction() {
    let (_d, store) = open().await;
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

#[tokio::test]
async fn audit_records_are_append_only_in_the_database() {
    let (dir, store) = open().await;
    let mut tx = store.begin_write().await.unwrap();
    let mut head = tx.load_chain_head().await.unwrap();
    let r = head.seal(draft(1), 5);
    tx.append_records(&[r]).await.unwrap();
    tx.store_chain_head(&head).await.unwrap();
    tx.commit().await.unwrap();
    store.close().await;
    // Direct SQL against the file: the triggers refuse UPDATE and DELETE.
    let pool =
        sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.path().join("w.db").display()))
            .await
            .unwrap();
    let upd = sqlx::query("UPDATE audit_records SET payload = '{}' WHERE seq = 0")
        .execute(&pool)
        .await;
    assert!(upd.unwrap_err().to_string().contains("append-only"));
    let del = sqlx::query("DELETE FROM audit_records")
        .execute(&pool)
        .await;
    assert!(del.unwrap_err().to_string().contains("append-only"));
}

#[tokio::test]
async fn checkpoints_policies_tokens_meta() {
    let (_d, store) = open().await;
    let key = SigningKey::from_bytes(&[3; 32]);
    let mut tx = store.begin_write().await.unwrap();
    let cp1 = Checkpoint::sign("o", 3, [1; 32], 10, &key);
    let cp2 = Checkpoint::sign("o", 9, [2; 32], 20, &key);
    tx.insert_checkpoint(&cp1).await.unwrap();
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
    assert_eq!(
        store.current_policy().await.unwrap().unwrap().policies_text,
        "p2"
    );
    assert_eq!(
        store.policy_version(1).await.unwrap().unwrap().comment,
        "first"
    );
    assert_eq!(store.policy_history(10).await.unwrap().len(), 2);
    assert_eq!(store.tokens().await.unwrap()[0].revoked_ms, Some(5));
    assert_eq!(store.meta("k").await.unwrap().as_deref(), Some("v2"));
    assert_eq!(store.meta("none").await.unwrap(), None);
}

#[tokio::test]
async fn last_used_only_moves_forward() {
    let (_d, store) = open().await;
    let mut tx = store.begin_write().await.unwrap();
    tx.insert_identity(&identity("idn_a", "bot", "prod"))
        .await
        .unwrap();
    tx.touch_identities(&[("idn_a".into(), 500)]).await.unwrap();
    tx.touch_identities(&[("idn_a".into(), 400)]).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        store
            .get_identity("idn_a")
            .await
            .unwrap()
            .unwrap()
            .last_used_ms,
        Some(500)
    );
}
