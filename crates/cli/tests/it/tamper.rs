//! Tampering with a stopped server's SQLite file directly (as someone with write access
//! to the data directory would) must be caught by `warrant audit verify`, which must name
//! the first bad record. Each case works on its own data directory.

use super::harness::*;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection, Row};
use std::path::Path;
use warrant_core::audit::{leaf_bytes, AuditRecord};
use warrant_core::merkle::{leaf_hash, CompactTree, Hash};

/// Builds a log of more than 40 records with a checkpoint early on and one at the end,
/// then stops the server cleanly. Returns the number of records.
async fn build_log(dir: &Path) -> u64 {
    let mut server = Server::start(dir);
    let c = server.client();
    let a = create_identity(&c, "tamper-a", "prod", &["reader"]).await;
    let b = create_identity(&c, "tamper-b", "prod", &[]).await;
    c.checkpoint().await.expect("early checkpoint");
    c.put_policy(Some(SCHEMA), POLICIES, Some("tamper test"))
        .await
        .expect("policy");
    for i in 0..8 {
        create_identity(&c, &format!("filler-{i}"), "dev", &[]).await;
    }
    for i in 0..30 {
        let p = if i % 3 == 0 { &b } else { &a };
        c.authorize(&read_req(p, i)).await.expect("decision");
    }
    let cp = c.checkpoint().await.expect("checkpoint");
    let size = cp["size"].as_u64().unwrap();
    assert!(size >= 40, "log too short: {size}");
    let err = server.stop();
    assert!(!err.contains("panicked"), "{err}");
    size
}

fn db(dir: &Path) -> std::path::PathBuf {
    dir.join("warrant.db")
}

/// Opens the database read-write and drops the append-only triggers, as a tamperer would.
async fn open_tamper(dir: &Path) -> SqliteConnection {
    let mut conn = SqliteConnectOptions::new()
        .filename(db(dir))
        .connect()
        .await
        .expect("open db");
    for t in ["audit_records_no_update", "audit_records_no_delete"] {
        sqlx::query(&format!("DROP TRIGGER {t}"))
            .execute(&mut conn)
            .await
            .expect("drop trigger");
    }
    conn
}

async fn exec(conn: &mut SqliteConnection, sql: &str) {
    sqlx::query(sql)
        .execute(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Runs the offline verifier: (exit code, stdout, stderr).
fn verify(dir: &Path, extra: &[&str]) -> (Option<i32>, String, String) {
    let d = dir.to_str().unwrap();
    let mut args = vec!["audit", "verify", "--data-dir", d];
    args.extend_from_slice(extra);
    let o = cli(None, &args);
    (o.status.code(), stdout(&o), stderr(&o))
}

fn assert_fails_naming(dir: &Path, seq: u64, finding: &str) {
    let (code, out, err) = verify(dir, &[]);
    assert_ne!(code, Some(0), "tampering not detected:\n{out}\n{err}");
    assert!(code.is_some(), "verifier crashed:\n{out}\n{err}");
    assert!(
        out.contains(&format!("first bad record: {seq}\n")),
        "expected `first bad record: {seq}` in:\n{out}\n{err}"
    );
    assert!(
        out.contains(finding),
        "expected `{finding}` in:\n{out}\n{err}"
    );
}

async fn records(conn: &mut SqliteConnection) -> Vec<AuditRecord> {
    sqlx::query("SELECT * FROM audit_records ORDER BY seq")
        .fetch_all(&mut *conn)
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let leaf: Vec<u8> = r.get("leaf_hash");
            let root: Vec<u8> = r.get("root");
            AuditRecord {
                seq: r.get::<i64, _>("seq") as u64,
                ts_ms: r.get("ts_ms"),
                kind: r.get("kind"),
                actor: r.get("actor"),
                subject: r.get("subject"),
                payload: r.get("payload"),
                leaf_hash: leaf.try_into().unwrap(),
                root: root.try_into().unwrap(),
            }
        })
        .collect()
}

async fn checkpoint_sizes(conn: &mut SqliteConnection) -> Vec<u64> {
    sqlx::query("SELECT size FROM checkpoints ORDER BY size")
        .fetch_all(&mut *conn)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<i64, _>(0) as u64)
        .collect()
}

/// Rewrites `audit_head` to the compact tree over `leaves` (a tamperer covering tracks).
async fn store_head(conn: &mut SqliteConnection, leaves: &[Hash]) {
    let mut tree = CompactTree::new();
    for l in leaves {
        tree.push(*l);
    }
    sqlx::query("UPDATE audit_head SET size = ?, frontier = ? WHERE id = 1")
        .bind(tree.size() as i64)
        .bind(tree.frontier().concat())
        .execute(&mut *conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn untouched_log_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let n = build_log(dir.path()).await;
    let (code, out, err) = verify(dir.path(), &[]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.starts_with(&format!("ok: {n} records")), "{out}");
    // With the key pinned explicitly too.
    let key = dir.path().join("keys/audit-signing-key.pub.pem");
    let (code, out, err) = verify(dir.path(), &["--public-key", key.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    // Dropping the triggers alone changes nothing in the log.
    let conn = open_tamper(dir.path()).await;
    conn.close().await.unwrap();
    let (code, out, err) = verify(dir.path(), &[]);
    assert_eq!(code, Some(0), "{out}\n{err}");
}

#[tokio::test]
async fn triggers_refuse_changes_to_audit_records() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path()).await;
    let mut conn = SqliteConnectOptions::new()
        .filename(db(dir.path()))
        .connect()
        .await
        .unwrap();
    for sql in [
        "UPDATE audit_records SET payload = '{}' WHERE seq = 3",
        "DELETE FROM audit_records WHERE seq = 3",
    ] {
        let e = sqlx::query(sql)
            .execute(&mut conn)
            .await
            .expect_err("append-only trigger must refuse");
        assert!(e.to_string().contains("append-only"), "{e}");
    }
    conn.close().await.unwrap();
    let (code, out, _) = verify(dir.path(), &[]);
    assert_eq!(code, Some(0), "{out}");
}

#[tokio::test]
async fn edited_record_is_named() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path()).await;
    let mut conn = open_tamper(dir.path()).await;
    exec(
        &mut conn,
        r#"UPDATE audit_records SET payload = '{"decision":"allow"}' WHERE seq = 17"#,
    )
    .await;
    conn.close().await.unwrap();
    assert_fails_naming(dir.path(), 17, "record 17 was edited");
}

#[tokio::test]
async fn edited_actor_is_named() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path()).await;
    let mut conn = open_tamper(dir.path()).await;
    exec(
        &mut conn,
        "UPDATE audit_records SET actor = 'human:nobody' WHERE seq = 30",
    )
    .await;
    conn.close().await.unwrap();
    assert_fails_naming(dir.path(), 30, "record 30 was edited");
}

#[tokio::test]
async fn deleted_record_is_named() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path()).await;
    let mut conn = open_tamper(dir.path()).await;
    exec(&mut conn, "DELETE FROM audit_records WHERE seq = 12").await;
    conn.close().await.unwrap();
    assert_fails_naming(dir.path(), 12, "record 12 is missing");
}

#[tokio::test]
async fn swapped_contents_are_named() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path()).await;
    let mut conn = open_tamper(dir.path()).await;
    // Swap every column but seq between records 20 and 21.
    exec(
        &mut conn,
        "CREATE TEMP TABLE s AS SELECT * FROM audit_records WHERE seq IN (20, 21)",
    )
    .await;
    exec(
        &mut conn,
        "UPDATE audit_records SET
            ts_ms = (SELECT ts_ms FROM s WHERE s.seq = 41 - audit_records.seq),
            kind = (SELECT kind FROM s WHERE s.seq = 41 - audit_records.seq),
            actor = (SELECT actor FROM s WHERE s.seq = 41 - audit_records.seq),
            subject = (SELECT subject FROM s WHERE s.seq = 41 - audit_records.seq),
            payload = (SELECT payload FROM s WHERE s.seq = 41 - audit_records.seq),
            leaf_hash = (SELECT leaf_hash FROM s WHERE s.seq = 41 - audit_records.seq),
            root = (SELECT root FROM s WHERE s.seq = 41 - audit_records.seq)
         WHERE seq IN (20, 21)",
    )
    .await;
    let rs = records(&mut conn).await;
    assert_ne!(
        rs[20].payload, rs[21].payload,
        "the swap must change something"
    );
    conn.close().await.unwrap();
    assert_fails_naming(dir.path(), 20, "record 20");
}

#[tokio::test]
async fn swapped_sequence_numbers_are_named() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path()).await;
    let mut conn = open_tamper(dir.path()).await;
    exec(
        &mut conn,
        "UPDATE audit_records SET seq = -1 WHERE seq = 20",
    )
    .await;
    exec(
        &mut conn,
        "UPDATE audit_records SET seq = 20 WHERE seq = 21",
    )
    .await;
    exec(
        &mut conn,
        "UPDATE audit_records SET seq = 21 WHERE seq = -1",
    )
    .await;
    conn.close().await.unwrap();
    assert_fails_naming(dir.path(), 20, "record 20");
}

#[tokio::test]
async fn truncated_tail_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let n = build_log(dir.path()).await;
    let mut conn = open_tamper(dir.path()).await;
    exec(
        &mut conn,
        &format!("DELETE FROM audit_records WHERE seq >= {}", n - 3),
    )
    .await;
    conn.close().await.unwrap();
    // The head still says n: caught by the head and the checkpoint.
    assert_fails_naming(
        dir.path(),
        n - 3,
        &format!("records from {} are missing", n - 3),
    );
}

#[tokio::test]
async fn truncated_tail_with_reset_head_is_caught_by_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let n = build_log(dir.path()).await;
    let mut conn = open_tamper(dir.path()).await;
    exec(
        &mut conn,
        &format!("DELETE FROM audit_records WHERE seq >= {}", n - 3),
    )
    .await;
    let leaves: Vec<Hash> = records(&mut conn)
        .await
        .iter()
        .map(|r| r.leaf_hash)
        .collect();
    assert_eq!(leaves.len() as u64, n - 3);
    store_head(&mut conn, &leaves).await;
    conn.close().await.unwrap();
    assert_fails_naming(
        dir.path(),
        n - 3,
        &format!(
            "a signed checkpoint covers {n} records but the log ends at {}",
            n - 3
        ),
    );
}

#[tokio::test]
async fn rewrite_with_recomputed_hashes_is_caught_by_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let n = build_log(dir.path()).await;
    let mut conn = open_tamper(dir.path()).await;
    let rs = records(&mut conn).await;
    assert_eq!(rs.len() as u64, n);
    // Rewrite record 5 and recompute its leaf hash, every later tree head and the
    // audit head: every hash is consistent again, only the signed checkpoints know.
    let mut tree = CompactTree::new();
    let mut leaves = Vec::new();
    for r in &rs {
        let payload = if r.seq == 5 {
            r#"{"rewritten":true}"#.to_owned()
        } else {
            r.payload.clone()
        };
        let leaf = leaf_hash(&leaf_bytes(
            r.seq, r.ts_ms, &r.kind, &r.actor, &r.subject, &payload,
        ));
        tree.push(leaf);
        leaves.push(leaf);
        if r.seq >= 5 {
            sqlx::query(
                "UPDATE audit_records SET payload = ?, leaf_hash = ?, root = ? WHERE seq = ?",
            )
            .bind(&payload)
            .bind(&leaf[..])
            .bind(&tree.root()[..])
            .bind(r.seq as i64)
            .execute(&mut conn)
            .await
            .unwrap();
        }
    }
    store_head(&mut conn, &leaves).await;
    let sizes = checkpoint_sizes(&mut conn).await;
    conn.close().await.unwrap();
    // The last checkpoint not covering record 5 stays good; the first one covering it fails.
    let good = sizes.iter().copied().filter(|s| *s <= 5).max().unwrap_or(0);
    let bad = sizes
        .iter()
        .copied()
        .find(|s| *s > 5)
        .expect("a covering checkpoint");
    assert!(good > 0, "expected an early checkpoint: {sizes:?}");
    assert_fails_naming(
        dir.path(),
        good,
        &format!(
            "signed checkpoint at size {bad} does not match the records: records {good} to {} were rewritten",
            bad - 1
        ),
    );
}

#[tokio::test]
async fn forged_checkpoint_signature_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path()).await;
    let mut conn = open_tamper(dir.path()).await;
    exec(&mut conn, "UPDATE checkpoints SET signature = zeroblob(64)").await;
    conn.close().await.unwrap();
    let (code, out, err) = verify(dir.path(), &[]);
    assert_ne!(code, Some(0), "{out}\n{err}");
    assert!(code.is_some());
    assert!(out.contains("invalid signature"), "{out}\n{err}");
}

#[tokio::test]
async fn forged_checkpoint_root_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let n = build_log(dir.path()).await;
    let mut conn = open_tamper(dir.path()).await;
    // A checkpoint root that matches no tree (signature no longer verifies either).
    exec(
        &mut conn,
        &format!("UPDATE checkpoints SET root = zeroblob(32) WHERE size = {n}"),
    )
    .await;
    conn.close().await.unwrap();
    let (code, out, err) = verify(dir.path(), &[]);
    assert_ne!(code, Some(0), "{out}\n{err}");
    assert!(
        out.contains(&format!("checkpoint at size {n}")),
        "{out}\n{err}"
    );
}

#[tokio::test]
async fn checkpoint_signed_by_another_key_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path()).await;
    // Another server's key.
    let other = tempfile::tempdir().unwrap();
    let mut s = Server::start(other.path());
    s.stop();
    let key = other.path().join("keys/audit-signing-key.pub.pem");
    assert!(key.exists());
    let (code, out, err) = verify(dir.path(), &["--public-key", key.to_str().unwrap()]);
    assert_ne!(code, Some(0), "{out}\n{err}");
    assert!(code.is_some());
    assert!(out.contains("unknown key"), "{out}\n{err}");
    // A key file that is not a key at all.
    let junk = other.path().join("junk.pem");
    std::fs::write(&junk, "not a key").unwrap();
    let (code, _, err) = verify(dir.path(), &["--public-key", junk.to_str().unwrap()]);
    assert_ne!(code, Some(0));
    assert!(err.contains("not an Ed25519 public key"), "{err}");
}

#[tokio::test]
async fn verify_of_a_missing_data_dir_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir");
    let (code, out, err) = verify(&missing, &[]);
    assert_ne!(code, Some(0), "{out}\n{err}");
    assert!(code.is_some());
    assert!(err.contains("no database at"), "{err}");
    assert!(err.contains("no-such-dir"), "{err}");
    assert!(
        !missing.exists(),
        "verify must not create the data directory"
    );
}

/// Copies a stopped server's data directory (a file-level backup).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// An older backup put back in place is a consistent log of its own (verify passes on
/// it alone), and so is a log whose tail was cut and whose own checkpoints were dropped;
/// the checkpoints exported with `audit checkpoints --out` and kept elsewhere catch both.
#[tokio::test]
async fn checkpoints_kept_outside_catch_a_restored_or_cut_log() {
    let dir = tempfile::tempdir().unwrap();
    let n = build_log(dir.path()).await;
    let backup = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), backup.path());

    // More happens after the backup; its checkpoints are exported and kept elsewhere.
    let mut server = Server::start(dir.path());
    let c = server.client();
    for i in 0..5 {
        create_identity(&c, &format!("after-backup-{i}"), "dev", &[]).await;
    }
    c.checkpoint().await.expect("checkpoint");
    let kept = tempfile::tempdir().unwrap();
    let kept_file = kept.path().join("checkpoints.json");
    let o = cli(
        Some(&server),
        &["audit", "checkpoints", "--out", kept_file.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let exported: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&kept_file).unwrap()).unwrap();
    let latest = exported.as_array().unwrap().last().unwrap()["size"]
        .as_u64()
        .unwrap();
    assert!(latest > n, "the export holds the newest checkpoint");
    server.stop();
    let k = kept_file.to_str().unwrap();

    // The live log matches what was kept.
    let (code, out, err) = verify(dir.path(), &["--checkpoints", k]);
    assert_eq!(code, Some(0), "{out}\n{err}");

    // The restored backup verifies alone, but not against the kept checkpoints.
    let (code, out, err) = verify(backup.path(), &[]);
    assert_eq!(
        code,
        Some(0),
        "the backup is consistent on its own:\n{out}\n{err}"
    );
    let (code, out, _) = verify(backup.path(), &["--checkpoints", k]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!(
            "a signed checkpoint covers {latest} records but the log ends at {n}"
        )),
        "{out}"
    );

    // Cut the tail and drop every checkpoint that would tell: consistent alone again.
    let mut conn = open_tamper(dir.path()).await;
    exec(
        &mut conn,
        &format!("DELETE FROM audit_records WHERE seq >= {n}"),
    )
    .await;
    exec(
        &mut conn,
        &format!("DELETE FROM checkpoints WHERE size > {n}"),
    )
    .await;
    let leaves: Vec<Hash> = records(&mut conn)
        .await
        .iter()
        .map(|r| r.leaf_hash)
        .collect();
    store_head(&mut conn, &leaves).await;
    conn.close().await.unwrap();
    let (code, out, err) = verify(dir.path(), &[]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let (code, out, _) = verify(dir.path(), &["--checkpoints", k]);
    assert_eq!(
        code,
        Some(1),
        "the kept checkpoints must catch the cut:\n{out}"
    );

    // A kept checkpoint whose signed text was altered is refused, not believed.
    let forged = std::fs::read_to_string(&kept_file)
        .unwrap()
        .replacen("\\nsize ", "\\nsize 9", 1);
    let forged_file = kept.path().join("forged.json");
    std::fs::write(&forged_file, forged).unwrap();
    let (code, out, _) = verify(
        backup.path(),
        &["--checkpoints", forged_file.to_str().unwrap()],
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("signature"), "{out}");

    // Not a checkpoint file: a clear error, no panic.
    std::fs::write(kept.path().join("junk.json"), "{\"not\": \"a list\"}").unwrap();
    let (code, out, err) = verify(
        backup.path(),
        &[
            "--checkpoints",
            kept.path().join("junk.json").to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert!(err.contains("not a JSON array of checkpoints"), "{err}");
    // A single checkpoint (`audit checkpoint -o json`) is read too.
    let one = exported.as_array().unwrap().last().unwrap().to_string();
    std::fs::write(kept.path().join("one.json"), one).unwrap();
    let (code, out, _) = verify(
        backup.path(),
        &[
            "--checkpoints",
            kept.path().join("one.json").to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(&format!("covers {latest} records")), "{out}");
    assert!(!err.contains("panicked"), "{err}");
}
