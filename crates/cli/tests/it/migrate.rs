//! Migration of an embedded data directory to PostgreSQL, and `audit verify --database`.
//!
//! Real SQLite data directories built by a real `warrant serve`, copied by the real binary
//! into a fresh database on the test PostgreSQL server (`pg::fresh_database`), then served
//! from there by `warrant serve --database`.

use super::harness::*;
use super::pg::fresh_database;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::rand::SecureRandom;
use serde_json::{json, Value};
use sqlx::postgres::PgConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection, Row};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};
use warrant_client::Client;
use warrant_store::sqlite::{Durability, SqliteStore};
use warrant_store::{ObjectRow, Store};

const PASSWORD: &str = "Sup3rS3cretPw";

/// The second policy version: also lets auditors read.
fn policies_v2() -> String {
    format!(
        "{POLICIES}\n@id(\"auditors-read\")\npermit (principal in Warrant::Role::\"auditor\", action == App::Action::\"read\", resource);\n"
    )
}

/// What a source data directory answered before it was migrated.
struct Built {
    /// (request, answer) of decisions, answered by the source.
    decisions: Vec<(Value, Value)>,
    identities: Value,
    policy: Value,
    versions: Value,
}

/// A data directory with three identities (one suspended), two policy versions,
/// decisions and checkpoints; the server is stopped cleanly (final checkpoint).
async fn build_source(dir: &Path) -> Built {
    let mut server = Server::start(dir);
    let c = server.client();
    c.put_policy(Some(SCHEMA), POLICIES, Some("v1"))
        .await
        .expect("policy v1");
    let reader = create_identity(&c, "mig-reader", "prod", &["reader"]).await;
    let auditor = create_identity(&c, "mig-auditor", "dev", &["auditor"]).await;
    let suspended = create_identity(&c, "mig-suspended", "prod", &["reader"]).await;
    c.checkpoint().await.expect("checkpoint");
    c.put_policy(Some(SCHEMA), &policies_v2(), Some("v2"))
        .await
        .expect("policy v2");
    c.lifecycle(&suspended, "suspend", Some("incident 7"))
        .await
        .expect("suspend");
    let requests = [
        (read_req(&reader, 10), "allow"),
        (read_req(&reader, 90), "deny"),
        (read_req(&auditor, 99), "allow"),
        (read_req(&suspended, 10), "deny"),
    ];
    let mut decisions = Vec::new();
    for round in 0..3 {
        for (req, want) in &requests {
            let d = c.authorize(req).await.expect("decision");
            assert_eq!(d["decision"], *want, "round {round}: {req} -> {d}");
            decisions.push((req.clone(), d));
        }
    }
    c.checkpoint().await.expect("checkpoint");
    let built = Built {
        decisions,
        identities: identities(&c).await,
        policy: c.policy().await.expect("policy"),
        versions: c.get("/v1/policies/versions").await.expect("versions"),
    };
    let log = server.stop();
    assert!(!log.contains("panicked"), "{log}");
    built
}

/// A data directory with one identity and a few decisions (server stopped).
async fn small_source(dir: &Path) {
    let mut server = Server::start(dir);
    let c = server.client();
    c.put_policy(Some(SCHEMA), POLICIES, None)
        .await
        .expect("policy");
    let a = create_identity(&c, "small-a", "prod", &["reader"]).await;
    for risk in [1, 99, 2, 98] {
        c.authorize(&read_req(&a, risk)).await.expect("decision");
    }
    let log = server.stop();
    assert!(!log.contains("panicked"), "{log}");
}

async fn identities(c: &Client) -> Value {
    c.list_identities(&[("limit", Some("200".into()))])
        .await
        .expect("identities")["items"]
        .clone()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn public_key(dir: &Path) -> PathBuf {
    dir.join("keys").join("audit-signing-key.pub.pem")
}

fn migrate(dir: &Path, url: &str) -> Output {
    cli(
        None,
        &["migrate-store", "--from-data-dir", s(dir), "--to", url],
    )
}

fn verify_db(url: &str, key: Option<&Path>) -> Output {
    let mut args = vec!["audit", "verify", "--database", url];
    if let Some(k) = key {
        args.extend(["--public-key", s(k)]);
    }
    cli(None, &args)
}

fn verify_dir(dir: &Path) -> Output {
    cli(None, &["audit", "verify", "--data-dir", s(dir)])
}

/// Exit 0, or fails showing the output.
fn ok(o: &Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

/// Exit 1 (an error, not a crash or a usage error); returns stdout + stderr.
fn fails(o: &Output) -> String {
    let all = format!("{}{}", stdout(o), stderr(o));
    assert_eq!(o.status.code(), Some(1), "{all}");
    assert!(!all.contains("panicked"), "{all}");
    all
}

/// `(records, checkpoints, root)` of an `ok: ...` verify line.
fn verified(out: &str) -> (u64, u64, String) {
    let line = out
        .lines()
        .find(|l| l.starts_with("ok: "))
        .unwrap_or_else(|| panic!("no ok line in {out}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    (
        words[1].parse().unwrap(),
        words[4].parse().unwrap(),
        words.last().unwrap().to_string(),
    )
}

fn copy_keys(from: &Path, to: &Path) {
    let dst = to.join("keys");
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(from.join("keys")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
}

async fn pg(url: &str) -> PgConnection {
    PgConnection::connect(url).await.expect("connect to target")
}

async fn sqlite(dir: &Path) -> SqliteConnection {
    SqliteConnectOptions::new()
        .filename(dir.join("warrant.db"))
        .read_only(true)
        .connect()
        .await
        .expect("open source")
}

/// Every row of the tables that are copied, as text (each value tagged by its column):
/// comparable across SQLite and PostgreSQL once sorted.
const DUMP: [(&str, &str); 11] = [
    (
        "identities",
        "SELECT id, name, kind, environment, spiffe_id, owner, description, state, roles, entitlements, created_ms, updated_ms, last_used_ms FROM identities ORDER BY id",
    ),
    (
        "policy_versions",
        "SELECT version, schema_text, policies_text, created_ms, actor, comment FROM policy_versions ORDER BY version",
    ),
    (
        "api_tokens",
        "SELECT id, name, hash, role, created_ms, revoked_ms, human FROM api_tokens ORDER BY id",
    ),
    (
        "checkpoints",
        "SELECT size, ts_ms, origin, root, key_id, signature FROM checkpoints ORDER BY size, ts_ms",
    ),
    (
        "meta",
        "SELECT key, value FROM meta WHERE key IN ('log_id', 'checkpoint_key_id') ORDER BY key",
    ),
    (
        "identity_keys",
        "SELECT identity_id, kid, jwk, added_ms, revoked_ms FROM identity_keys",
    ),
    (
        "token_keys",
        "SELECT kid, alg, public_jwk, wrapped_private, created_ms, retired_ms, unpublish_ms FROM token_keys",
    ),
    (
        "revoked_tokens",
        "SELECT jti, exp_ms, revoked_ms FROM revoked_tokens",
    ),
    (
        "kill_switches",
        "SELECT id, kind, value, engaged_ms, engaged_by, reason, released_ms, released_by, release_reason FROM kill_switches",
    ),
    (
        "used_assertions",
        "SELECT client_id, jti, exp_ms FROM used_assertions",
    ),
    (
        "gov_objects",
        "SELECT kind, id, state, body, due_ms, created_ms, updated_ms FROM gov_objects",
    ),
];

fn cell<'r, R: Row>(row: &'r R, i: usize) -> String
where
    usize: sqlx::ColumnIndex<R>,
    Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<Vec<u8>>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
        return format!("{v:?}");
    }
    if let Ok(v) = row.try_get::<Option<String>, _>(i) {
        return format!("{v:?}");
    }
    let v: Option<Vec<u8>> = row.try_get(i).expect("int, text or bytes");
    format!("{:?}", v.map(hex_of))
}

fn hex_of(b: Vec<u8>) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

async fn dump_sqlite(dir: &Path) -> Vec<String> {
    let mut conn = sqlite(dir).await;
    let mut out = Vec::new();
    for (table, q) in DUMP {
        for row in sqlx::query(q).fetch_all(&mut conn).await.unwrap() {
            let cells: Vec<String> = (0..row.len()).map(|i| cell(&row, i)).collect();
            out.push(format!("{table}: {}", cells.join(" | ")));
        }
    }
    out.sort();
    out
}

async fn dump_pg(url: &str) -> Vec<String> {
    let mut conn = pg(url).await;
    let mut out = Vec::new();
    for (table, q) in DUMP {
        for row in sqlx::query(q).fetch_all(&mut conn).await.unwrap() {
            let cells: Vec<String> = (0..row.len()).map(|i| cell(&row, i)).collect();
            out.push(format!("{table}: {}", cells.join(" | ")));
        }
    }
    out.sort();
    out
}

/// The dumped rows of one table.
fn rows_of<'a>(dump: &'a [String], table: &str) -> Vec<&'a str> {
    let prefix = format!("{table}: ");
    dump.iter()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .collect()
}

/// Row counts of every table a migration writes (the target is "unchanged" when equal).
async fn counts(url: &str) -> Vec<i64> {
    let mut conn = pg(url).await;
    let mut out = Vec::new();
    for t in [
        "audit_records",
        "identities",
        "policy_versions",
        "api_tokens",
        "checkpoints",
        "meta",
        "identity_keys",
        "token_keys",
        "revoked_tokens",
        "kill_switches",
        "used_assertions",
        "gov_objects",
    ] {
        out.push(
            sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {t}"))
                .fetch_one(&mut conn)
                .await
                .unwrap(),
        );
    }
    out.push(
        sqlx::query_scalar("SELECT size FROM audit_head WHERE id = 1")
            .fetch_one(&mut conn)
            .await
            .unwrap(),
    );
    out
}

/// A decision answer without its audit position (which differs between servers).
fn answer(mut v: Value) -> Value {
    v.as_object_mut().unwrap().remove("audit_seq");
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn migrated_data_dir_serves_and_verifies_from_postgres() {
    let src = tempfile::tempdir().unwrap();
    let built = build_source(src.path()).await;
    let (records, checkpoints, root) = verified(&ok(&verify_dir(src.path())));
    assert!(checkpoints >= 3, "{checkpoints}");

    let url = fresh_database().await;
    let out = ok(&migrate(src.path(), &url));
    assert!(out.contains("ok: copied"), "{out}");
    for line in [
        format!("audit records:    {records} (verified)"),
        format!("checkpoints:      {checkpoints}"),
        "identities:       3".to_owned(),
        "policy versions:  2".to_owned(),
        "API tokens:       1".to_owned(),
        format!("root:             {root}"),
        "next steps:".to_owned(),
        "--database".to_owned(),
    ] {
        assert!(out.contains(&line), "`{line}` missing from:\n{out}");
    }
    // Every copied row is the source's, field for field (last-used times, token hashes,
    // checkpoint signatures, the log id and key id included).
    assert_eq!(dump_pg(&url).await, dump_sqlite(src.path()).await);

    // The copy verifies against the pinned key, to the same root.
    let key = public_key(src.path());
    let v = ok(&verify_db(&url, Some(&key)));
    assert_eq!(verified(&v), (records, checkpoints, root.clone()), "{v}");

    // A replica on the database with the copied keys serves the same state.
    let dst = tempfile::tempdir().unwrap();
    copy_keys(src.path(), dst.path());
    let mut server = Server::start_with(
        dst.path(),
        Options {
            extra_args: vec!["--database".into(), url.clone()],
            ..Default::default()
        },
    );
    let c = server.client();
    assert_eq!(identities(&c).await, built.identities);
    assert_eq!(c.policy().await.unwrap(), built.policy);
    assert_eq!(
        c.get("/v1/policies/versions").await.unwrap(),
        built.versions
    );
    assert_eq!(built.policy["version"], 2, "{}", built.policy);
    for (req, before) in &built.decisions {
        let now = c.authorize(req).await.expect("decision");
        assert!(
            now["audit_seq"].as_u64().unwrap() >= records,
            "new records continue the chain: {now}"
        );
        assert_eq!(answer(now), answer(before.clone()), "{req}");
    }
    c.checkpoint().await.expect("checkpoint on postgres");
    let log = server.stop();
    assert!(!log.contains("panicked"), "{log}");

    // The chain went on from the copied head: old and new checkpoints all verify.
    let v = ok(&verify_db(&url, Some(&key)));
    let (records2, checkpoints2, root2) = verified(&v);
    assert!(
        records2 > records + built.decisions.len() as u64,
        "{records} -> {records2}"
    );
    assert!(
        checkpoints2 > checkpoints,
        "{checkpoints} -> {checkpoints2}"
    );
    assert_ne!(root2, root);
}

#[tokio::test(flavor = "multi_thread")]
async fn refuses_a_target_that_is_not_empty() {
    let src = tempfile::tempdir().unwrap();
    small_source(src.path()).await;
    let key = public_key(src.path());

    // Already migrated once.
    let url = fresh_database().await;
    ok(&migrate(src.path(), &url));
    let before = counts(&url).await;
    let verified_before = ok(&verify_db(&url, Some(&key)));
    let out = fails(&migrate(src.path(), &url));
    assert!(out.contains("is not empty"), "{out}");
    assert!(out.contains("audit records"), "{out}");
    assert!(out.contains("Nothing was written"), "{out}");
    assert_eq!(counts(&url).await, before);
    assert_eq!(ok(&verify_db(&url, Some(&key))), verified_before);

    // A database some replica already started on (its own log, tokens, ...).
    let url = fresh_database().await;
    let other = tempfile::tempdir().unwrap();
    let mut server = Server::start_with(
        other.path(),
        Options {
            extra_args: vec!["--database".into(), url.clone()],
            ..Default::default()
        },
    );
    server.stop();
    let before = counts(&url).await;
    let out = fails(&migrate(src.path(), &url));
    assert!(out.contains("is not empty"), "{out}");
    assert_eq!(counts(&url).await, before);
    // And it is still the other replica's log.
    ok(&verify_db(&url, Some(&public_key(other.path()))));
}

#[tokio::test(flavor = "multi_thread")]
async fn refuses_a_missing_or_invalid_source() {
    let url = fresh_database().await;
    let tmp = tempfile::tempdir().unwrap();

    let missing = tmp.path().join("nope");
    let out = fails(&migrate(&missing, &url));
    assert!(out.contains("is not a directory"), "{out}");

    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = fails(&migrate(&empty, &url));
    assert!(out.contains("no `warrant.db`"), "{out}");

    let garbage = tmp.path().join("garbage");
    std::fs::create_dir(&garbage).unwrap();
    std::fs::write(
        garbage.join("warrant.db"),
        b"this is not a database file at all",
    )
    .unwrap();
    let out = fails(&migrate(&garbage, &url));
    assert!(out.contains("warrant.db"), "{out}");

    // A real data directory whose keys are gone: the copy could not be checked.
    let nokeys = tmp.path().join("nokeys");
    small_source(&nokeys).await;
    std::fs::remove_dir_all(nokeys.join("keys")).unwrap();
    let out = fails(&migrate(&nokeys, &url));
    assert!(out.contains("public key"), "{out}");

    // The keys of another data directory.
    let other = tmp.path().join("other");
    warrant_server::keys::load_or_create(&other.join("keys")).unwrap();
    copy_keys(&other, &nokeys);
    let out = fails(&migrate(&nokeys, &url));
    assert!(out.contains("belongs to another data directory"), "{out}");

    // The source is checked before the target is opened: not even tables were created.
    let mut conn = pg(&url).await;
    let table: Option<String> = sqlx::query_scalar("SELECT to_regclass('audit_records')::text")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(table, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn refuses_while_a_server_writes_to_the_source() {
    let src = tempfile::tempdir().unwrap();
    let mut server = Server::start(src.path());
    let c = server.client();
    c.put_policy(Some(SCHEMA), POLICIES, None).await.unwrap();
    let a = create_identity(&c, "busy", "prod", &["reader"]).await;
    // A stream of decisions for as long as the migration runs.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let done = done.clone();
        let c = c.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                c.authorize(&read_req(&a, 1)).await.expect("decision");
                n += 1;
            }
            n
        })
    };
    // Let the stream get going.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let url = fresh_database().await;
    let (dir, u) = (src.path().to_owned(), url.clone());
    let o = tokio::task::spawn_blocking(move || migrate(&dir, &u))
        .await
        .unwrap();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.await.unwrap();
    assert!(written > 0);
    let out = fails(&o);
    assert!(out.contains("changed while it was being copied"), "{out}");
    assert!(out.contains("server is still running"), "{out}");
    // Nothing committed: every table empty, head at 0.
    assert!(
        counts(&url).await.iter().all(|n| *n == 0),
        "{:?}",
        counts(&url).await
    );

    // Once the server is stopped, the same target takes the copy.
    server.stop();
    let out = ok(&migrate(src.path(), &url));
    assert!(out.contains("ok: copied"), "{out}");
    ok(&verify_db(&url, Some(&public_key(src.path()))));
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_database_requires_the_right_pinned_key() {
    let src = tempfile::tempdir().unwrap();
    small_source(src.path()).await;
    let url = fresh_database().await;
    ok(&migrate(src.path(), &url));

    let out = fails(&verify_db(&url, None));
    assert!(out.contains("--public-key is required"), "{out}");
    assert!(out.contains("keys/audit-signing-key.pub.pem"), "{out}");

    // Another key: every checkpoint is signed by a key it does not trust.
    let other = tempfile::tempdir().unwrap();
    warrant_server::keys::load_or_create(&other.path().join("keys")).unwrap();
    let o = verify_db(&url, Some(&public_key(other.path())));
    let out = fails(&o);
    assert!(stdout(&o).starts_with("FAILED"), "{out}");
    assert!(out.contains("checkpoint at size"), "{out}");
    assert!(out.contains("unknown key"), "{out}");

    // --database and --data-dir exclude each other (a usage error).
    let o = cli(
        None,
        &[
            "audit",
            "verify",
            "--data-dir",
            s(src.path()),
            "--database",
            &url,
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot be used with"), "{}", stderr(&o));

    // A database that holds no warrant log is not "verified", and verify creates nothing.
    let empty = fresh_database().await;
    let out = fails(&verify_db(&empty, Some(&public_key(src.path()))));
    assert!(out.contains("holds no warrant schema"), "{out}");
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_one(&mut pg(&empty).await)
    .await
    .unwrap();
    assert_eq!(
        tables, 0,
        "verify created tables in the database it checked"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_database_names_a_record_edited_in_postgres() {
    let src = tempfile::tempdir().unwrap();
    small_source(src.path()).await;
    let url = fresh_database().await;
    ok(&migrate(src.path(), &url));
    let key = public_key(src.path());
    ok(&verify_db(&url, Some(&key)));

    let mut conn = pg(&url).await;
    for q in [
        "ALTER TABLE audit_records DISABLE TRIGGER USER",
        r#"UPDATE audit_records SET payload = '{"tampered":true}' WHERE seq = 3"#,
    ] {
        sqlx::query(q).execute(&mut conn).await.unwrap();
    }
    let o = verify_db(&url, Some(&key));
    let out = fails(&o);
    assert!(
        stdout(&o).contains("FAILED: first bad record: 3\n"),
        "{out}"
    );
    assert!(out.contains("record 3 was edited"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_urls_fail_cleanly_without_echoing_the_password() {
    let src = tempfile::tempdir().unwrap();
    small_source(src.path()).await;
    let key = public_key(src.path());
    let refused = format!("postgres://warrant:{PASSWORD}@127.0.0.1:1/warrant");
    let cases = [
        (
            refused.clone(),
            "cannot open `postgres://warrant:***@127.0.0.1:1/warrant`",
        ),
        (
            format!("postgres://warrant:{PASSWORD}@127.0.0.1:notaport/warrant"),
            "cannot open",
        ),
        (
            format!("mysql://warrant:{PASSWORD}@127.0.0.1/warrant"),
            "is not a PostgreSQL URL",
        ),
        (
            format!("warrant:{PASSWORD}@127.0.0.1/warrant"),
            "is not a PostgreSQL URL",
        ),
    ];
    for (url, expected) in &cases {
        for o in [migrate(src.path(), url), verify_db(url, Some(&key))] {
            let out = fails(&o);
            assert!(
                out.contains(expected),
                "{url}: expected `{expected}` in:\n{out}"
            );
            assert!(!out.contains(PASSWORD), "password echoed:\n{out}");
        }
    }
    // From the environment (WARRANT_DATABASE), as recommended for URLs with passwords.
    for args in [
        vec!["migrate-store", "--from-data-dir", s(src.path())],
        vec!["audit", "verify", "--public-key", s(&key)],
    ] {
        let o = Command::new(bin())
            .args(&args)
            .env("WARRANT_DATABASE", &refused)
            .env_remove("WARRANT_DATA_DIR")
            .output()
            .unwrap();
        let out = fails(&o);
        assert!(
            out.contains("cannot open `postgres://warrant:***@"),
            "{out}"
        );
        assert!(!out.contains(PASSWORD), "password echoed:\n{out}");
    }
    // Nor does --help show the environment's value.
    let o = Command::new(bin())
        .args(["migrate-store", "--help"])
        .env("WARRANT_DATABASE", &refused)
        .output()
        .unwrap();
    assert!(!stdout(&o).contains(PASSWORD), "{}", stdout(&o));
}

#[tokio::test(flavor = "multi_thread")]
async fn refuses_a_source_whose_chain_does_not_verify() {
    let src = tempfile::tempdir().unwrap();
    small_source(src.path()).await;
    let mut conn = SqliteConnectOptions::new()
        .filename(src.path().join("warrant.db"))
        .connect()
        .await
        .unwrap();
    for q in [
        "DROP TRIGGER audit_records_no_update",
        r#"UPDATE audit_records SET payload = '{"tampered":true}' WHERE seq = 2"#,
    ] {
        sqlx::query(q).execute(&mut conn).await.unwrap();
    }
    conn.close().await.unwrap();

    let url = fresh_database().await;
    let o = migrate(src.path(), &url);
    let out = fails(&o);
    assert!(
        stdout(&o).contains("FAILED: first bad record: 2\n"),
        "{out}"
    );
    assert!(out.contains("does not verify"), "{out}");
    assert!(out.contains("nothing was written"), "{out}");
    assert!(
        counts(&url).await.iter().all(|n| *n == 0),
        "{:?}",
        counts(&url).await
    );
}

// ---------------------------------------------------------------------------------------
// Agent credentials, kill switches and governance objects

/// The issuer of both servers (the source's and the target's), so tokens issued before the
/// migration are for the server after it.
const ISSUER: &str = "https://warrant.migrate.test";
const AUDIENCE: &str = "https://docs.example";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Readers may hold `App:read`.
const SCOPE_POLICY: &str = r#"
@id("readers-hold-read")
permit (principal in Warrant::Role::"reader", action == Warrant::Action::"request_scope",
        resource == Warrant::Scope::"App:read");
"#;

fn with_issuer(mut extra_args: Vec<String>) -> Options {
    extra_args.extend(["--issuer".to_owned(), ISSUER.to_owned()]);
    Options {
        extra_args,
        ..Default::default()
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A fresh Ed25519 key: the private half for assertions, and the public JWK.
fn ed25519_key() -> (EncodingKey, Value) {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    let mut seed = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut seed).unwrap();
    let sk = ed25519_dalek::SigningKey::from_bytes(&seed);
    let der = sk.to_pkcs8_der().unwrap();
    (
        EncodingKey::from_ed_der(der.as_bytes()),
        json!({"kty": "OKP", "crv": "Ed25519", "x": b64(sk.verifying_key().as_bytes())}),
    )
}

/// A registered AI tool in `prod` with the `reader` role and an Ed25519 key.
struct Agent {
    id: String,
    kid: String,
    key: EncodingKey,
}

async fn register_agent(c: &Client, name: &str) -> Agent {
    let id = create_identity(c, name, "prod", &["reader"]).await;
    let (key, jwk) = ed25519_key();
    let v = c
        .post(&format!("/v1/identities/{id}/keys"), &json!({ "jwk": jwk }))
        .await
        .expect("add key");
    Agent {
        id,
        kid: v["kid"].as_str().expect("kid").to_owned(),
        key,
    }
}

impl Agent {
    /// A client assertion valid for four minutes (long enough to be replayed after the
    /// migration).
    fn assertion(&self) -> String {
        let mut jti = [0u8; 12];
        ring::rand::SystemRandom::new().fill(&mut jti).unwrap();
        let now = now_s();
        let claims = json!({
            "iss": self.id, "sub": self.id, "aud": format!("{ISSUER}/oauth2/token"),
            "iat": now, "exp": now + 240, "jti": b64(&jti),
        });
        let mut h = Header::new(Algorithm::EdDSA);
        h.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&h, &claims, &self.key).unwrap()
    }
}

/// `POST /oauth2/token` (client credentials, `App:read` for [`AUDIENCE`]).
async fn token_request(server: &Server, assertion: &str) -> (u16, Value) {
    let res = reqwest::Client::new()
        .post(format!("{}/oauth2/token", server.url))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", assertion),
            ("scope", "App:read"),
            ("audience", AUDIENCE),
        ])
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

/// A token for `a` (which must be granted).
async fn issue_token(server: &Server, a: &Agent) -> String {
    let (status, body) = token_request(server, &a.assertion()).await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

/// `POST /oauth2/{introspect,revoke}` with the admin token.
async fn oauth_form(server: &Server, endpoint: &str, token: &str) -> Value {
    let res = reqwest::Client::new()
        .post(format!("{}/oauth2/{endpoint}", server.url))
        .bearer_auth(ADMIN_TOKEN)
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200, "{endpoint}");
    res.json().await.unwrap()
}

async fn fetch_jwks(server: &Server) -> Value {
    reqwest::get(format!("{}/.well-known/jwks.json", server.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Verifies an access token as a resource service would: against the JWKS.
async fn verify_as_resource_service(server: &Server, token: &str) -> Value {
    let header = jsonwebtoken::decode_header(token).unwrap();
    let kid = header.kid.expect("kid");
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(fetch_jwks(server).await).unwrap();
    let jwk = set.find(&kid).expect("the token's kid is in the JWKS");
    let mut v = Validation::new(Algorithm::EdDSA);
    v.set_issuer(&[ISSUER]);
    v.set_audience(&[AUDIENCE]);
    jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &v)
        .unwrap()
        .claims
}

/// Governance objects, written straight into a stopped data directory's database (kinds of
/// this test's own: the rows are copied verbatim whatever their kind, and a server ignores
/// kinds it does not know).
fn gov_objects() -> Vec<ObjectRow> {
    let o = |kind: &str, id: &str, state: &str, due_ms: Option<i64>| ObjectRow {
        kind: kind.into(),
        id: id.into(),
        state: state.into(),
        body: json!({"id": id, "state": state, "note": "caf\u{e9} \"quoted\" \n line"}).to_string(),
        due_ms,
        created_ms: 1_700_000_000_000,
        updated_ms: 1_700_000_000_500,
    };
    vec![
        o("it_capability", "cap_01", "accepted", None),
        o("it_proposal", "prp_01", "pending", Some(4_102_444_800_000)),
        o("it_proposal", "prp_02", "executed", None),
        o("it_role", "rol_01", "active", None),
    ]
}

/// What a credentials source answered before it was migrated.
struct CredentialsSource {
    agent: Agent,
    stopped: Agent,
    /// Signed by the key before the rotation.
    old_token: String,
    /// Signed by the current key.
    token: String,
    revoked_token: String,
    stopped_token: String,
    /// An assertion the source consumed.
    used_assertion: String,
    current_kid: String,
    jwks: Value,
}

/// A data directory with a workload key (and a revoked one), a rotated signing key, tokens
/// (one revoked), an engaged kill switch and a released one, and governance objects.
async fn credentials_source(dir: &Path) -> CredentialsSource {
    let mut server = Server::start_with(dir, with_issuer(vec![]));
    let c = server.client();
    c.put_policy(Some(SCHEMA), &format!("{POLICIES}\n{SCOPE_POLICY}"), None)
        .await
        .expect("policy");
    let agent = register_agent(&c, "mig-agent").await;
    let stopped = register_agent(&c, "mig-stopped").await;
    // A second key of the agent, revoked.
    let (_, jwk) = ed25519_key();
    let extra = c
        .post(
            &format!("/v1/identities/{}/keys", agent.id),
            &json!({ "jwk": jwk }),
        )
        .await
        .expect("add key");
    c.request(
        reqwest::Method::DELETE,
        &format!(
            "/v1/identities/{}/keys/{}",
            agent.id,
            extra["kid"].as_str().unwrap()
        ),
        None,
    )
    .await
    .expect("revoke key");

    let old_token = issue_token(&server, &agent).await;
    let rotated = c.post("/v1/keys/rotate", &json!({})).await.expect("rotate");
    let current_kid = rotated["current"].as_str().unwrap().to_owned();
    let used_assertion = agent.assertion();
    let (status, body) = token_request(&server, &used_assertion).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    let revoked_token = issue_token(&server, &agent).await;
    oauth_form(&server, "revoke", &revoked_token).await;
    let stopped_token = issue_token(&server, &stopped).await;

    c.post(
        "/v1/killswitches",
        &json!({"target": {"kind": "identity", "value": stopped.id}, "reason": "incident 9"}),
    )
    .await
    .expect("engage");
    let released = c
        .post(
            "/v1/killswitches",
            &json!({"target": {"kind": "environment", "value": "dev"}, "reason": "drill"}),
        )
        .await
        .expect("engage");
    c.post(
        &format!(
            "/v1/killswitches/{}/release",
            released["id"].as_str().unwrap()
        ),
        &json!({"reason": "drill over"}),
    )
    .await
    .expect("release");

    // What the source says, to compare with the copy.
    for (t, active) in [
        (&old_token, true),
        (&token, true),
        (&revoked_token, false),
        (&stopped_token, false),
    ] {
        assert_eq!(oauth_form(&server, "introspect", t).await["active"], active);
    }
    let d = c.authorize(&read_req(&stopped.id, 1)).await.unwrap();
    assert_eq!(d["decision"], "deny", "{d}");
    let jwks = fetch_jwks(&server).await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2, "{jwks}");
    let log = server.stop();
    assert!(!log.contains("panicked"), "{log}");

    // Governance objects (no server running).
    let store = SqliteStore::open(&dir.join("warrant.db"), Durability::Full)
        .await
        .unwrap();
    let mut tx = store.begin_write().await.unwrap();
    for o in gov_objects() {
        tx.insert_object(&o).await.unwrap();
    }
    tx.commit().await.unwrap();
    store.close().await;

    CredentialsSource {
        agent,
        stopped,
        old_token,
        token,
        revoked_token,
        stopped_token,
        used_assertion,
        current_kid,
        jwks,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_kill_switches_and_governance_are_copied_and_in_force() {
    let src = tempfile::tempdir().unwrap();
    let before = credentials_source(src.path()).await;
    ok(&verify_dir(src.path()));
    let source = dump_sqlite(src.path()).await;
    let used = rows_of(&source, "used_assertions").len();
    assert!(used >= 4, "{used}");

    let url = fresh_database().await;
    let out = ok(&migrate(src.path(), &url));
    for line in [
        "identities:       2".to_owned(),
        "workload keys:    3 (1 revoked)".to_owned(),
        "signing keys:     2 (access tokens; 1 retired)".to_owned(),
        "revoked tokens:   1".to_owned(),
        "kill switches:    2 (1 engaged)".to_owned(),
        format!("used assertions:  {used}"),
        "governance:       4 objects (it_capability 1, it_proposal 2, it_role 1)".to_owned(),
    ] {
        assert!(out.contains(&line), "`{line}` missing from:\n{out}");
    }
    // Row for row, in every table.
    let copied = dump_pg(&url).await;
    assert_eq!(copied, source);
    for (table, n) in [
        ("identity_keys", 3),
        ("token_keys", 2),
        ("revoked_tokens", 1),
        ("kill_switches", 2),
        ("gov_objects", 4),
    ] {
        assert_eq!(rows_of(&copied, table).len(), n, "{table}: {copied:#?}");
    }

    // A replica on the database, with the copied keys (which also unwrap the signing keys).
    let dst = tempfile::tempdir().unwrap();
    copy_keys(src.path(), dst.path());
    let mut server = Server::start_with(
        dst.path(),
        with_issuer(vec!["--database".into(), url.clone()]),
    );
    let c = server.client();
    // Tokens issued before: those signed before and after the rotation still verify, the
    // revoked one and the kill-switched identity's are not in force.
    assert_eq!(fetch_jwks(&server).await, before.jwks);
    for (name, t, active) in [
        ("signed before the rotation", &before.old_token, true),
        ("signed after the rotation", &before.token, true),
        ("revoked", &before.revoked_token, false),
        ("of the stopped identity", &before.stopped_token, false),
    ] {
        let v = oauth_form(&server, "introspect", t).await;
        assert_eq!(v["active"], active, "token {name}: {v}");
        if active {
            assert_eq!(v["sub"], before.agent.id.as_str(), "{v}");
        }
    }
    for t in [&before.old_token, &before.token] {
        let claims = verify_as_resource_service(&server, t).await;
        assert_eq!(claims["sub"], before.agent.id.as_str());
    }
    // The kill switch still stops the identity; the other is allowed.
    let d = c.authorize(&read_req(&before.stopped.id, 1)).await.unwrap();
    assert_eq!(d["decision"], "deny", "{d}");
    assert!(d["reason"].as_str().unwrap().contains("kill switch"), "{d}");
    let d = c.authorize(&read_req(&before.agent.id, 1)).await.unwrap();
    assert_eq!(d["decision"], "allow", "{d}");
    let (status, body) = token_request(&server, &before.stopped.assertion()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unauthorized_client")),
        "{body}"
    );
    // An assertion the source consumed is a replay here too.
    let (status, body) = token_request(&server, &before.used_assertion).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("replayed"),
        "{body}"
    );
    // The workload key authenticates, and the current signing key goes on signing.
    let fresh = issue_token(&server, &before.agent).await;
    assert_eq!(
        jsonwebtoken::decode_header(&fresh).unwrap().kid.as_deref(),
        Some(before.current_kid.as_str())
    );
    verify_as_resource_service(&server, &fresh).await;
    let log = server.stop();
    assert!(!log.contains("panicked"), "{log}");
    // The governance objects are untouched.
    let after = dump_pg(&url).await;
    assert_eq!(
        rows_of(&after, "gov_objects"),
        rows_of(&source, "gov_objects")
    );
    ok(&verify_db(&url, Some(&public_key(src.path()))));
}

#[tokio::test(flavor = "multi_thread")]
async fn refuses_a_source_with_another_schema_version() {
    let src = tempfile::tempdir().unwrap();
    small_source(src.path()).await;
    let url = fresh_database().await;
    let exec = |sql: &'static str| {
        let db = src.path().join("warrant.db");
        async move {
            let mut conn = SqliteConnectOptions::new()
                .filename(db)
                .connect()
                .await
                .unwrap();
            sqlx::query(sql).execute(&mut conn).await.unwrap();
            conn.close().await.unwrap();
        }
    };

    // Older: the newest migration not applied (the server upgrades it when it starts).
    exec("UPDATE _sqlx_migrations SET success = 0 WHERE version = (SELECT MAX(version) FROM _sqlx_migrations)").await;
    let out = fails(&migrate(src.path(), &url));
    assert!(out.contains("has schema version"), "{out}");
    assert!(
        out.contains("start this version of `warrant serve"),
        "{out}"
    );
    // Newer: a migration this build does not know (a table it might not copy).
    exec("UPDATE _sqlx_migrations SET success = 1").await;
    exec("INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (99990101000000, 'future', 1, x'00', 0)").await;
    let out = fails(&migrate(src.path(), &url));
    assert!(out.contains("newer than this warrant knows"), "{out}");
    // Checked before the target is opened: not even tables were created.
    let table: Option<String> = sqlx::query_scalar("SELECT to_regclass('audit_records')::text")
        .fetch_one(&mut pg(&url).await)
        .await
        .unwrap();
    assert_eq!(table, None);

    exec("DELETE FROM _sqlx_migrations WHERE version = 99990101000000").await;
    ok(&migrate(src.path(), &url));
}
