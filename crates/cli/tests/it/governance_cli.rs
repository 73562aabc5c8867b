//! The governance CLI: `warrant capability|proposal|approve|reject|override|token|role|resource|tier-policy`.
//!
//! The real binary against a real server over HTTP. The AI tool gets its access token
//! from warrant's token endpoint (`private_key_jwt`, scope `warrant:propose`, audience the
//! server's issuer URL), the way an agent would.

use super::harness::*;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SecureRandom;
use serde_json::{json, Value};
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

/// Runs the CLI against `server` with `token` as WARRANT_TOKEN.
fn cli_as(server: &Server, token: &str, args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env("WARRANT_SERVER", &server.url)
        .env("WARRANT_TOKEN", token)
        .output()
        .expect("run warrant")
}

/// Runs the CLI as the admin and insists it succeeds; returns its standard output.
fn ok(server: &Server, args: &[&str]) -> String {
    let o = cli(Some(server), args);
    assert!(o.status.success(), "{args:?}: {}{}", stdout(&o), stderr(&o));
    stdout(&o)
}

fn ok_as(server: &Server, token: &str, args: &[&str]) -> String {
    let o = cli_as(server, token, args);
    assert!(o.status.success(), "{args:?}: {}{}", stdout(&o), stderr(&o));
    stdout(&o)
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Makes `human` (account created if missing) hold `role` with the CLI, the real way: a
/// grant asked for with the bootstrap token (`grant request`), approved by [`ROOT_ADMIN`]
/// (`grant approve`), who is made the first admin first.
fn grant_role_cli(server: &Server, human: &str, role: &str) {
    let (_, root) = root_admin_cli(server);
    ensure_human_cli(server, human);
    if holds_cli(server, human, role) {
        return;
    }
    let g = json_of(&ok(
        server,
        &[
            "grant",
            "request",
            "--human",
            human,
            "--role",
            role,
            "--justification",
            GRANT_WHY,
            "-o",
            "json",
        ],
    ));
    assert_eq!(g["state"], "pending", "{g}");
    let id = g["id"].as_str().unwrap();
    let g = json_of(&ok_as(
        server,
        &root,
        &["grant", "approve", id, "-o", "json"],
    ));
    assert_eq!(g["state"], "approved", "{g}");
}

/// `human create --password-stdin` (a one-time password) unless the account exists, then
/// `password`: the human replaces it with [`password_of`].
fn ensure_human_cli(server: &Server, human: &str) {
    let one_time = one_time_password(human);
    let o = cli_with_input(
        server,
        Some(ADMIN_TOKEN),
        &["human", "create", human, "--password-stdin"],
        &format!("{one_time}\n"),
    );
    if !o.status.success() {
        assert!(stderr(&o).contains("exists already"), "{}", stderr(&o));
        return;
    }
    let o = cli_with_input(
        server,
        None,
        &["password", human],
        &format!("{one_time}\n{}\n", password_of(human)),
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

fn holds_cli(server: &Server, human: &str, role: &str) -> bool {
    let v = json_of(&ok(server, &["human", "show", human, "-o", "json"]));
    v["roles"].as_array().unwrap().contains(&json!(role))
}

/// `login`: a token `human` gets for themselves with their password; (id, secret).
fn login_cli(server: &Server, human: &str, role: &str) -> (String, String) {
    let o = cli_with_input(
        server,
        None,
        &["login", human, "--role", role, "-o", "json"],
        &format!("{}\n", password_of(human)),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("shown once"),
        "no warning to store the secret: {}",
        stderr(&o)
    );
    let v = json_of(&stdout(&o));
    (
        v["id"].as_str().unwrap().to_owned(),
        v["token"].as_str().unwrap().to_owned(),
    )
}

/// A token of [`ROOT_ADMIN`], made the first admin with the bootstrap token if needed.
fn root_admin_cli(server: &Server) -> (String, String) {
    ensure_human_cli(server, ROOT_ADMIN);
    if !holds_cli(server, ROOT_ADMIN, "admin") {
        let g = json_of(&ok(
            server,
            &[
                "grant",
                "request",
                "--human",
                ROOT_ADMIN,
                "--role",
                "admin",
                "--justification",
                GRANT_WHY,
                "-o",
                "json",
            ],
        ));
        assert_eq!(g["bootstrap"], true, "{g}");
    }
    login_cli(server, ROOT_ADMIN, "admin")
}

/// A token of the named `human` holding `role` (granted first with [`grant_role_cli`]),
/// from `login`; returns (id, secret).
fn human_token(server: &Server, human: &str, role: &str) -> (String, String) {
    grant_role_cli(server, human, role);
    login_cli(server, human, role)
}

async fn identity(c: &warrant_client::Client, name: &str, kind: &str, owner: &str) -> String {
    let v = c
        .create_identity(&json!({
            "name": name, "kind": kind, "environment": "prod", "owner": owner,
        }))
        .await
        .expect("create identity");
    v["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capabilities_are_applied_from_a_file_and_accepted_by_their_owner() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let ai = identity(
        &server.client(),
        "access-optimizer",
        "ai_tool",
        "alice@example.com",
    )
    .await;

    let file = dir.path().join("capabilities.toml");
    std::fs::write(
        &file,
        format!(
            r#"# AI capabilities
[[capability]]
id = "right-sizing"
identity = "{ai}"
kinds = ["revoke_entitlement", "grant_entitlement"]
max_blast_radius = 5
owner = "alice@example.com"
review_every_days = 30
description = "removes unused entitlements"
[capability.conditions]
environments = ["prod"]
min_confidence_pct = 80

[[capability]]
id = "teleporter"
identity = "{ai}"
kinds = ["teleport_identity"]
max_blast_radius = 1
owner = "alice@example.com"

[[capability]]
id = "role-cleanup"
identity = "{ai}"
kinds = ["modify_role"]
max_blast_radius = 3
owner = "alice@example.com"
reviewer = "carol@example.com"
conditions = {{ notes = "only roles unused for 90 days" }}
"#
        ),
    )
    .unwrap();
    let o = cli(
        Some(&server),
        &["capability", "apply", "-f", file.to_str().unwrap()],
    );
    let (out, err) = (stdout(&o), stderr(&o));
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(
        err.contains("capability `teleporter`")
            && err.contains("unknown change kind `teleport_identity`"),
        "{err}"
    );
    assert!(out.contains("applied capability `right-sizing`"), "{out}");
    assert!(out.contains("applied capability `role-cleanup`"), "{out}");
    assert!(
        out.contains("2 of 3 capabilities applied; failed: `teleporter`"),
        "{out}"
    );

    // A JSON file: an array.
    let jfile = dir.path().join("more.json");
    std::fs::write(
        &jfile,
        json!([{ "id": "suspender", "identity": ai, "kinds": ["suspend_identity"],
                 "max_blast_radius": 1, "owner": "bob@example.com" }])
        .to_string(),
    )
    .unwrap();
    let out = ok(
        &server,
        &["capability", "apply", "-f", jfile.to_str().unwrap()],
    );
    assert!(out.contains("1 of 1 capabilities applied"), "{out}");

    let list = ok(&server, &["capability", "list"]);
    for want in ["right-sizing", "role-cleanup", "suspender", "not_accepted"] {
        assert!(list.contains(want), "{want} missing: {list}");
    }
    assert!(!list.contains("teleporter"), "{list}");
    let v = json_of(&ok(&server, &["capability", "list", "-o", "json"]));
    let caps = v["items"].as_array().unwrap();
    assert_eq!(caps.len(), 3);
    assert!(caps.iter().all(|c| c["autonomy"] == "not_accepted"), "{v}");
    let right_sizing = caps
        .iter()
        .find(|c| c["capability"]["id"] == "right-sizing")
        .unwrap();
    assert_eq!(
        right_sizing["capability"]["conditions"],
        json!({ "environments": ["prod"], "min_confidence_pct": 80, "notes": "" }),
        "{v}"
    );

    // The bootstrap admin token names no person: it cannot accept, and says why.
    let o = cli(Some(&server), &["capability", "accept", "right-sizing"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("named human") && stderr(&o).contains("403"),
        "{}",
        stderr(&o)
    );

    // The owner accepts with a token of her own.
    let (_, alice) = human_token(&server, "alice@example.com", "owner");
    let out = ok_as(
        &server,
        &alice,
        &[
            "capability",
            "accept",
            "right-sizing",
            "--statement",
            "I am accountable for right-sizing in prod",
        ],
    );
    assert!(out.contains("tiered"), "{out}");
    // Another human may not accept alice's capability.
    let (_, bob) = human_token(&server, "bob@example.com", "owner");
    let o = cli_as(&server, &bob, &["capability", "accept", "role-cleanup"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("403"), "{}", stderr(&o));

    let list = ok(&server, &["capability", "list"]);
    let row = list
        .lines()
        .find(|l| l.contains("right-sizing"))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(row.contains("tiered"), "{row}");
    assert!(row.contains("alice@example.com at"), "{row}");
    let row = list.lines().find(|l| l.contains("role-cleanup")).unwrap();
    assert!(
        row.contains("not_accepted") && row.contains(" no "),
        "{row}"
    );

    let out = ok_as(
        &server,
        &alice,
        &[
            "capability",
            "review",
            "right-sizing",
            "--note",
            "looked at the last 30 days",
        ],
    );
    assert!(out.contains("by alice@example.com"), "{out}");
    let v = json_of(&ok(
        &server,
        &["capability", "show", "right-sizing", "-o", "json"],
    ));
    assert_eq!(v["autonomy"], "tiered");
    assert!(v["last_review_at"].is_string(), "{v}");
    let show = ok(&server, &["capability", "show", "right-sizing"]);
    assert!(show.contains("removes unused entitlements"), "{show}");
    assert!(show.contains("80%"), "{show}");

    // Declaring from the command line; a larger blast radius needs a new acceptance.
    let out = ok(
        &server,
        &[
            "capability",
            "declare",
            "right-sizing",
            "--identity",
            &ai,
            "--kinds",
            "revoke_entitlement,grant_entitlement",
            "--max-blast-radius",
            "50",
            "--owner",
            "alice@example.com",
            "--environments",
            "prod,staging",
            "--min-confidence",
            "0.9",
        ],
    );
    assert!(out.contains("not_accepted"), "{out}");
    assert!(
        out.contains("90%") && out.contains("prod, staging"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_roles_resources_and_tier_policies() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());

    let out = ok(
        &server,
        &[
            "role",
            "put",
            "reader",
            "--entitlements",
            "docs:read,docs:list",
            "--description",
            "reads documents",
        ],
    );
    assert!(out.contains("docs:list"), "{out}");
    ok(
        &server,
        &[
            "role",
            "put",
            "dba",
            "--entitlements",
            "db:admin",
            "--privileged",
        ],
    );
    let list = ok(&server, &["role", "list"]);
    let row = list.lines().find(|l| l.contains("reader")).unwrap();
    assert!(
        row.contains("docs:list, docs:read") && row.contains(" no "),
        "{row}"
    );
    let row = list.lines().find(|l| l.contains("dba")).unwrap();
    assert!(row.contains("yes"), "{row}");

    ok(
        &server,
        &[
            "resource",
            "put",
            "db:customers",
            "--classification",
            "restricted",
        ],
    );
    let list = ok(&server, &["resource", "list"]);
    assert!(
        list.contains("db:customers") && list.contains("restricted"),
        "{list}"
    );
    let o = cli(
        Some(&server),
        &["resource", "put", "x", "--classification", "secret"],
    );
    assert_eq!(o.status.code(), Some(2), "a clap error: {}", stderr(&o));

    let show = ok(&server, &["tier-policy", "show"]);
    assert!(
        show.contains("version 0") && show.contains("tier1-small-revocation"),
        "{show}"
    );
    let bad = dir.path().join("tiers.cedar");
    std::fs::write(
        &bad,
        "@id(\"t1\")\n@tier(\"1\")\npermit (principal, action == Tier::Action::\"assign\", resource)\nwhen { context.no_such_field };\n",
    )
    .unwrap();
    let o = cli(
        Some(&server),
        &["tier-policy", "put", bad.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("{}:4:", bad.display())),
        "no line:col diagnostic naming the file: {err}"
    );
    assert!(
        err.contains("do not validate") && err.contains("400"),
        "{err}"
    );
    std::fs::write(
        &bad,
        "@id(\"t1\")\n@tier(\"1\")\npermit (principal, action == Tier::Action::\"assign\", resource)\nwhen { context.kind == \"revoke_entitlement\" };\n",
    )
    .unwrap();
    let out = ok(
        &server,
        &[
            "tier-policy",
            "put",
            bad.to_str().unwrap(),
            "--comment",
            "only t1",
        ],
    );
    assert!(out.contains("version 1 in force: t1"), "{out}");

    // A named human's token: listed, refused admin work (the 403 reaches the user),
    // then revoked and refused outright.
    let (id, dave) = human_token(&server, "dave@example.com", "auditor");
    let list = ok(&server, &["token", "list"]);
    let row = list.lines().find(|l| l.contains(&id)).unwrap();
    assert!(
        row.contains("dave@example.com") && row.contains("auditor"),
        "{row}"
    );
    ok_as(&server, &dave, &["capability", "list"]);
    let o = cli_as(&server, &dave, &["role", "put", "x"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("needs the `admin` role") && stderr(&o).contains("403"),
        "{}",
        stderr(&o)
    );
    let out = ok(&server, &["token", "revoke", &id]);
    assert!(out.contains("revoked"), "{out}");
    let o = cli_as(&server, &dave, &["capability", "list"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("401"), "{}", stderr(&o));
    let o = cli(Some(&server), &["token", "revoke", &id]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("revoked already"), "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approving_needs_a_ticket_and_an_existing_proposal() {
    let o = cli(
        None,
        &[
            "approve",
            "prp_x",
            "--justification",
            "a long enough business justification",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "a clap error");
    assert!(stderr(&o).contains("--ticket"), "{}", stderr(&o));

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (_, carol) = human_token(&server, "carol@example.com", "approver");
    let o = cli_as(
        &server,
        &carol,
        &[
            "approve",
            "prp_nope",
            "--justification",
            "a long enough business justification",
            "--ticket",
            "CHG-1",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("proposal `prp_nope` not found") && stderr(&o).contains("404"),
        "{}",
        stderr(&o)
    );
}

// --- an AI tool's access token, the way an agent gets one -----------------------------

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Registers an Ed25519 key for `id` and asks the token endpoint for an access token to
/// warrant's own API with scope `warrant:propose`.
async fn propose_token(server: &Server, id: &str) -> String {
    let mut seed = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut seed).unwrap();
    let sk = ed25519_dalek::SigningKey::from_bytes(&seed);
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    let der = sk.to_pkcs8_der().unwrap();
    let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64(sk.verifying_key().as_bytes())});
    let v = server
        .client()
        .post(&format!("/v1/identities/{id}/keys"), &json!({ "jwk": jwk }))
        .await
        .expect("add key");
    let kid = v["kid"].as_str().unwrap().to_owned();
    let endpoint = format!("{}/oauth2/token", server.url);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut jti = [0u8; 12];
    ring::rand::SystemRandom::new().fill(&mut jti).unwrap();
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid);
    let assertion = jsonwebtoken::encode(
        &header,
        &json!({ "iss": id, "sub": id, "aud": endpoint, "iat": now, "exp": now + 60, "jti": b64(&jti) }),
        &EncodingKey::from_ed_der(der.as_bytes()),
    )
    .unwrap();
    let res = reqwest::Client::new()
        .post(&endpoint)
        .form(&[
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion.as_str()),
            ("scope", "warrant:propose"),
            // The issuer URL: `--listen 127.0.0.1:<port>` without `--issuer`.
            ("audience", server.url.as_str()),
        ])
        .send()
        .await
        .unwrap();
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert!(status.is_success(), "token endpoint: {status} {body}");
    body["access_token"].as_str().unwrap().to_owned()
}

fn proposal_id(out: &str) -> String {
    out.split(|c: char| c.is_whitespace() || c == ':')
        .find(|w| w.starts_with("prp_"))
        .unwrap_or_else(|| panic!("no proposal id in {out}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tier3_proposal_is_submitted_approved_executed_and_chained() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let c = server.client();
    // AI tools may hold `warrant:propose` for warrant's own API.
    let propose = format!(
        r#"
@id("ai-may-propose")
permit (principal, action == Warrant::Action::"request_scope", resource == Warrant::Scope::"warrant:propose")
when {{ principal.kind == "ai_tool" && context.audience == "{}" }};
"#,
        server.url
    );
    c.put_policy(
        Some(SCHEMA),
        &format!("{POLICIES}\n{propose}"),
        Some("propose"),
    )
    .await
    .expect("put policy");
    let ai = identity(&c, "dba-helper", "ai_tool", "alice@example.com").await;
    let svc = identity(&c, "etl", "service_account", "bob@example.com").await;

    // Restricted data: the default tier policies leave a grant on it at Tier 3.
    ok(
        &server,
        &[
            "resource",
            "put",
            "db:customers",
            "--classification",
            "restricted",
        ],
    );
    ok(
        &server,
        &[
            "capability",
            "declare",
            "dba-access",
            "--identity",
            &ai,
            "--kinds",
            "grant_entitlement,modify_trust",
            "--max-blast-radius",
            "3",
            "--owner",
            "alice@example.com",
            "--environments",
            "prod",
            "--min-confidence",
            "0.5",
        ],
    );
    let (_, alice) = human_token(&server, "alice@example.com", "owner");
    ok_as(&server, &alice, &["capability", "accept", "dba-access"]);
    let (_, carol) = human_token(&server, "carol@example.com", "approver");
    let agent = propose_token(&server, &ai).await;

    let evidence = dir.path().join("evidence.json");
    std::fs::write(&evidence, r#"{"ticket_queue": "support", "requests": 14}"#).unwrap();
    let change =
        json!({ "kind": "grant_entitlement", "identity": svc, "entitlement": "db:customers:read" })
            .to_string();
    let out = ok_as(
        &server,
        &agent,
        &[
            "proposal",
            "submit",
            "--capability",
            "dba-access",
            "--change",
            &change,
            "--evidence",
            &format!("@{}", evidence.display()),
            "--rationale",
            "the ETL job reads customer records for support exports",
            "--confidence",
            "0.9",
        ],
    );
    assert!(out.contains("tier 3, pending_approval"), "{out}");
    assert!(out.contains("no tier policy matched"), "{out}");
    assert!(out.contains("deadline:"), "{out}");
    let id = proposal_id(&out);

    let list = ok(
        &server,
        &["proposal", "list", "--state", "pending_approval"],
    );
    assert!(list.contains(&id), "{list}");
    let v = json_of(&ok(
        &server,
        &[
            "proposal",
            "list",
            "--capability",
            "dba-access",
            "-o",
            "json",
        ],
    ));
    assert_eq!(v["items"].as_array().unwrap().len(), 1, "{v}");

    // The AI tool may not approve; the message says why.
    let decide = [
        "approve",
        id.as_str(),
        "--justification",
        "support exports need customer read access",
        "--ticket",
        "CHG-1234",
    ];
    let o = cli_as(&server, &agent, &decide);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("may not approve") && stderr(&o).contains("403"),
        "{}",
        stderr(&o)
    );
    // A named approver does: the change is executed at once.
    let out = ok_as(&server, &carol, &decide);
    assert!(out.contains("executed"), "{out}");
    assert!(out.contains("carol@example.com"), "{out}");

    let show = ok(&server, &["proposal", "show", &id]);
    for want in [
        "executed",
        "grant `db:customers:read`",
        "dba-access (owner alice@example.com)",
        "the ETL job reads customer records",
        "90%",
        "restricted",
        &format!("1 identity: {svc}"),
        "no tier policy matched",
        "carol@example.com",
        "CHG-1234",
        "applied",
    ] {
        assert!(show.contains(want), "{want} missing from:\n{show}");
    }
    let v = json_of(&ok(&server, &["agent", "show", &svc, "-o", "json"]));
    assert_eq!(v["entitlements"], json!(["db:customers:read"]), "{v}");

    // A second step in the same chain: a trust change (the floor keeps it at Tier 3),
    // rejected.
    let trust =
        json!({ "kind": "modify_trust", "identity": svc, "add": ["spiffe://partner.example/etl"] })
            .to_string();
    let out = ok_as(
        &server,
        &agent,
        &[
            "proposal",
            "submit",
            "--capability",
            "dba-access",
            "--change",
            &trust,
            "--rationale",
            "the partner's ETL delegates to ours",
            "--confidence",
            "0.8",
            "--parent",
            &id,
        ],
    );
    assert!(out.contains("floor: trust-relationship change"), "{out}");
    let second = proposal_id(&out);
    let out = ok_as(
        &server,
        &carol,
        &[
            "reject",
            &second,
            "--justification",
            "no partner agreement on file for this",
        ],
    );
    assert!(out.contains("rejected"), "{out}");

    let chain = ok(&server, &["proposal", "chain", &second]);
    for want in [
        id.as_str(),
        second.as_str(),
        "grant_entitlement",
        "modify_trust",
        "rejected",
        "carol@example.com",
        "2 step(s)",
        "total blast radius (applied or under way): 1 identities",
    ] {
        assert!(chain.contains(want), "{want} missing from:\n{chain}");
    }
    let v = json_of(&ok(&server, &["proposal", "chain", &id, "-o", "json"]));
    assert_eq!(v["steps"].as_array().unwrap().len(), 2, "{v}");
    ok(&server, &["proposal", "deliveries", &id]);
    let v = json_of(&ok(
        &server,
        &["proposal", "list", "--limit", "1", "-o", "json"],
    ));
    assert_eq!(v["items"].as_array().unwrap().len(), 1, "{v}");
    assert!(v["next_cursor"].is_string(), "{v}");
}
