//! The humans CLI: `warrant human|grant|whoami|login|password` against a real server over
//! HTTP — accounts with one-time passwords their human replaces, tokens a human gets for
//! themselves only, the first admin granted with the bootstrap token, the two-person rule
//! for every other grant, and a revoked role or a disabled account stopping that human's
//! tokens at once.

use super::harness::*;
use serde_json::{json, Value};
use std::process::{Command, Output};

/// Runs the CLI against `server` with `token` as WARRANT_TOKEN.
fn cli_as(server: &Server, token: &str, args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env("WARRANT_SERVER", &server.url)
        .env("WARRANT_TOKEN", token)
        .output()
        .expect("run warrant")
}

/// Runs the CLI with `token`, insists it succeeds; returns its standard output.
fn ok_as(server: &Server, token: &str, args: &[&str]) -> String {
    let o = cli_as(server, token, args);
    assert!(o.status.success(), "{args:?}: {}{}", stdout(&o), stderr(&o));
    stdout(&o)
}

/// [`ok_as`], the output parsed as JSON (`-o json` is added).
fn json_as(server: &Server, token: &str, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.extend(["-o", "json"]);
    let out = ok_as(server, token, &args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// Runs the CLI with `token`, insists it fails with exit status 1 and that its error
/// names `status` and contains `needle`; returns the error.
fn fails_as(server: &Server, token: &str, args: &[&str], status: u16, needle: &str) -> String {
    let o = cli_as(server, token, args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{args:?}: {}{err}", stdout(&o));
    assert!(
        err.contains(&status.to_string()) && err.contains(needle),
        "{args:?}: expected {status} and `{needle}`: {err}"
    );
    err
}

/// `human create NAME --password-stdin [extra]` as `token` (a one-time password), then
/// `password`: the human replaces it with [`password_of`].
fn account(server: &Server, token: &str, name: &str, extra: &[&str]) {
    let one_time = one_time_password(name);
    let mut args = vec!["human", "create", name, "--password-stdin"];
    args.extend(extra);
    let o = cli_with_input(server, Some(token), &args, &format!("{one_time}\n"));
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains(&format!("human {name} created")),
        "{}",
        stdout(&o)
    );
    let o = cli_with_input(
        server,
        None,
        &["password", name],
        &format!("{one_time}\n{}\n", password_of(name)),
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

/// `login` with `password`.
fn login_with(server: &Server, human: &str, role: &str, password: &str) -> Output {
    cli_with_input(
        server,
        None,
        &["login", human, "--role", role, "-o", "json"],
        &format!("{password}\n"),
    )
}

/// `login`: a token `human` gets for themselves with their password.
fn token_of(server: &Server, human: &str, role: &str) -> String {
    let o = login_with(server, human, role, &password_of(human));
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!((&v["human"], &v["role"]), (&json!(human), &json!(role)));
    v["token"].as_str().unwrap().to_owned()
}

/// `login` must fail with exit status 1, naming `status` and containing `needle`.
fn login_fails(server: &Server, human: &str, role: &str, status: u16, needle: &str) {
    let o = login_with(server, human, role, &password_of(human));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{}{err}", stdout(&o));
    assert!(
        err.contains(&status.to_string()) && err.contains(needle),
        "login {human}: expected {status} and `{needle}`: {err}"
    );
}

fn request(server: &Server, token: &str, human: &str, role: &str) -> Value {
    json_as(
        server,
        token,
        &[
            "grant",
            "request",
            "--human",
            human,
            "--role",
            role,
            "--justification",
            "joins the platform on-call rotation",
        ],
    )
}

fn id(v: &Value) -> &str {
    v["id"].as_str().unwrap()
}

fn roles(server: &Server, human: &str) -> Value {
    json_as(server, ADMIN_TOKEN, &["human", "show", human])["roles"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_admin_is_bootstrapped_and_every_other_grant_needs_a_second_admin() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let me = json_as(&server, ADMIN_TOKEN, &["whoami"]);
    assert_eq!(
        (&me["kind"], &me["roles"]),
        (&json!("bootstrap"), &json!(["admin"]))
    );
    let out = ok_as(&server, ADMIN_TOKEN, &["whoami"]);
    assert!(out.contains("bootstrap admin token"), "{out}");

    // Accounts have no roles; a name is taken once (without case).
    account(
        &server,
        ADMIN_TOKEN,
        "alice@example.com",
        &["--display-name", "Alice Admin"],
    );
    fails_as(
        &server,
        ADMIN_TOKEN,
        &["human", "create", "ALICE@example.com"],
        409,
        "exists already",
    );
    let alice = json_as(
        &server,
        ADMIN_TOKEN,
        &["human", "show", "alice@example.com"],
    );
    assert_eq!(alice["display_name"], "Alice Admin");
    assert_eq!(alice["roles"], json!([]));
    assert_eq!(alice["local_password"], true);
    // No role, no token; no account or a wrong password, no token; and nobody — not the
    // bootstrap token — issues a token to someone else.
    login_fails(&server, "alice@example.com", "admin", 409, "does not hold");
    login_fails(
        &server,
        "nobody@example.com",
        "admin",
        401,
        "wrong username or password",
    );
    let o = login_with(&server, "alice@example.com", "admin", "not her password");
    assert!(stderr(&o).contains("401"), "{}", stderr(&o));
    fails_as(
        &server,
        ADMIN_TOKEN,
        &[
            "token",
            "create",
            "--human",
            "alice@example.com",
            "--role",
            "admin",
        ],
        403,
        "themselves",
    );
    // A justification is required.
    fails_as(
        &server,
        ADMIN_TOKEN,
        &[
            "grant",
            "request",
            "--human",
            "alice@example.com",
            "--role",
            "admin",
            "--justification",
            "short",
        ],
        400,
        "justification",
    );

    // The first admin: asked for with the bootstrap token while nobody holds admin, granted
    // at once.
    let out = ok_as(
        &server,
        ADMIN_TOKEN,
        &[
            "grant",
            "request",
            "--human",
            "alice@example.com",
            "--role",
            "admin",
            "--justification",
            "first administrator of this installation",
        ],
    );
    assert!(out.contains("approved: the first admin"), "{out}");
    assert_eq!(roles(&server, "alice@example.com"), json!(["admin"]));
    let alice = token_of(&server, "alice@example.com", "admin");
    let out = ok_as(&server, &alice, &["whoami"]);
    assert!(
        out.contains("alice@example.com") && out.contains("roles: admin"),
        "{out}"
    );

    // A human issues further tokens to themselves only.
    let mine = json_as(
        &server,
        &alice,
        &[
            "token",
            "create",
            "--human",
            "alice@example.com",
            "--role",
            "admin",
        ],
    );
    assert_eq!(mine["human"], "alice@example.com");
    fails_as(
        &server,
        &alice,
        &[
            "token",
            "create",
            "--human",
            "bob@example.com",
            "--role",
            "admin",
        ],
        403,
        "themselves only",
    );

    // Every other grant waits for a second named admin, even when the bootstrap token asks.
    // (Bob's one-time password comes from the bootstrap token: whoever set it could be
    // signing in as bob, so that person could not approve bob's roles.)
    account(&server, ADMIN_TOKEN, "bob@example.com", &[]);
    let g = request(&server, ADMIN_TOKEN, "bob@example.com", "admin");
    assert_eq!(
        (&g["state"], &g["bootstrap"]),
        (&json!("pending"), &json!(false))
    );
    assert_eq!(roles(&server, "bob@example.com"), json!([]));
    // The bootstrap token names no person: it never decides a grant.
    fails_as(
        &server,
        ADMIN_TOKEN,
        &["grant", "approve", id(&g)],
        403,
        "bootstrap token",
    );
    let out = ok_as(
        &server,
        &alice,
        &["grant", "approve", id(&g), "--note", "on-call lead"],
    );
    assert!(
        out.contains("approved by alice@example.com") && out.contains("on-call lead"),
        "{out}"
    );
    assert_eq!(roles(&server, "bob@example.com"), json!(["admin"]));
    let bob = token_of(&server, "bob@example.com", "admin");

    // The requester cannot approve their own request; a second admin can.
    account(&server, &alice, "carol@example.com", &[]);
    let g = request(&server, &alice, "carol@example.com", "approver");
    assert_eq!(g["state"], "pending");
    assert_eq!(g["requested_by"], "human:alice@example.com");
    fails_as(
        &server,
        &alice,
        &["grant", "approve", id(&g)],
        403,
        "two-person rule",
    );
    let pending = ok_as(&server, &alice, &["grant", "list", "--state", "pending"]);
    assert!(
        pending.contains(id(&g)) && pending.contains("carol@example.com"),
        "{pending}"
    );
    let approved = json_as(&server, &bob, &["grant", "approve", id(&g)]);
    assert_eq!(approved["decided_by"], "bob@example.com");
    assert_eq!(roles(&server, "carol@example.com"), json!(["approver"]));
    let carol = token_of(&server, "carol@example.com", "approver");
    // An approver decides proposals, not role grants.
    let g = request(&server, ADMIN_TOKEN, "carol@example.com", "auditor");
    fails_as(&server, &carol, &["grant", "approve", id(&g)], 403, "admin");
    // Nor may she request grants (configuration is an admin's).
    fails_as(
        &server,
        &carol,
        &[
            "grant",
            "request",
            "--human",
            "carol@example.com",
            "--role",
            "admin",
            "--justification",
            "I would like to be an admin",
        ],
        403,
        "admin",
    );

    // The grantee cannot approve a grant to themselves, even as an admin.
    let g = request(&server, ADMIN_TOKEN, "bob@example.com", "auditor");
    fails_as(
        &server,
        &bob,
        &["grant", "approve", id(&g)],
        403,
        "themselves",
    );
    ok_as(&server, &alice, &["grant", "approve", id(&g)]);
    assert_eq!(
        roles(&server, "bob@example.com"),
        json!(["admin", "auditor"])
    );

    // Rejected: no role, and decided once.
    account(&server, &bob, "dave@example.com", &[]);
    let g = request(&server, &bob, "dave@example.com", "owner");
    let out = ok_as(
        &server,
        &alice,
        &["grant", "reject", id(&g), "--note", "not an owner"],
    );
    assert!(out.contains("rejected by alice@example.com"), "{out}");
    assert_eq!(roles(&server, "dave@example.com"), json!([]));
    fails_as(
        &server,
        &alice,
        &["grant", "approve", id(&g)],
        409,
        "rejected already",
    );

    // The lists.
    let all = json_as(&server, &alice, &["grant", "list"]);
    let states: Vec<&str> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        ["rejected", "approved", "pending", "approved", "approved", "approved"],
        "{all}"
    );
    let table = ok_as(&server, &alice, &["grant", "list", "--state", "rejected"]);
    assert!(
        table.contains("dave@example.com") && !table.contains("carol@example.com"),
        "{table}"
    );
    let humans = ok_as(&server, &carol, &["human", "list"]);
    let row = humans
        .lines()
        .find(|l| l.contains("bob@example.com"))
        .unwrap();
    assert!(row.contains("admin, auditor"), "{row}");
    let row = humans
        .lines()
        .find(|l| l.contains("dave@example.com"))
        .unwrap();
    assert!(row.contains("none"), "{row}");

    // Every grant is in the audit log, with who asked and who decided.
    let c = server.client();
    let records = c
        .audit(&[
            ("kind", Some("role_grant".into())),
            ("limit", Some("100".into())),
        ])
        .await
        .unwrap();
    let actors: Vec<&str> = records["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["actor"].as_str().unwrap())
        .collect();
    assert!(actors.contains(&"human:bob@example.com"), "{records}");
    assert!(actors.iter().any(|a| a.starts_with("admin:")), "{records}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_role_or_a_disabled_account_stops_its_tokens_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (_, carol) = human_token(&server.url, "carol@example.com", "approver").await;
    let (_, dave) = human_token(&server.url, "dave@example.com", "auditor").await;
    let me = json_as(&server, &carol, &["whoami"]);
    assert_eq!(
        (&me["kind"], &me["name"], &me["roles"]),
        (
            &json!("human"),
            &json!("carol@example.com"),
            &json!(["approver"])
        )
    );
    ok_as(&server, &carol, &["capability", "list"]);

    // Revoked: carol's token acts with no role from the next request on.
    let v = json_as(
        &server,
        ADMIN_TOKEN,
        &[
            "human",
            "revoke-role",
            "carol@example.com",
            "--role",
            "approver",
            "--justification",
            "moved to another team",
        ],
    );
    assert_eq!(v["roles"], json!([]));
    let me = json_as(&server, &carol, &["whoami"]);
    assert_eq!(me["roles"], json!([]));
    login_fails(
        &server,
        "carol@example.com",
        "approver",
        409,
        "does not hold",
    );
    fails_as(
        &server,
        &carol,
        &["capability", "list"],
        403,
        "carol@example.com",
    );
    // Revoking what is not held is a conflict; only an admin revokes.
    fails_as(
        &server,
        ADMIN_TOKEN,
        &[
            "human",
            "revoke-role",
            "carol@example.com",
            "--role",
            "approver",
            "--justification",
            "again",
        ],
        409,
        "does not hold",
    );
    fails_as(
        &server,
        &dave,
        &[
            "human",
            "revoke-role",
            "dave@example.com",
            "--role",
            "auditor",
            "--justification",
            "self-service",
        ],
        403,
        "admin",
    );

    // Disabled: dave's token reads nothing until the account is enabled again.
    ok_as(&server, &dave, &["audit", "tail", "-n", "1"]);
    let v = json_as(
        &server,
        ADMIN_TOKEN,
        &["human", "disable", "dave@example.com"],
    );
    assert_eq!(v["disabled"], true);
    assert_eq!(v["roles"], json!(["auditor"]));
    let row = ok_as(&server, ADMIN_TOKEN, &["human", "list"])
        .lines()
        .find(|l| l.contains("dave@example.com"))
        .map(str::to_owned)
        .unwrap();
    assert!(row.contains("yes"), "{row}");
    fails_as(
        &server,
        &dave,
        &["audit", "tail", "-n", "1"],
        403,
        "dave@example.com",
    );
    fails_as(
        &server,
        &dave,
        &["capability", "list"],
        403,
        "dave@example.com",
    );
    assert_eq!(json_as(&server, &dave, &["whoami"])["roles"], json!([]));
    // A disabled human is given no role, and gets no new token.
    fails_as(
        &server,
        ADMIN_TOKEN,
        &[
            "grant",
            "request",
            "--human",
            "dave@example.com",
            "--role",
            "approver",
            "--justification",
            "covering for carol this week",
        ],
        409,
        "disabled",
    );
    login_fails(
        &server,
        "dave@example.com",
        "auditor",
        401,
        "wrong username or password",
    );
    // The refusals are audited, naming dave.
    let c = server.client();
    let refused = c
        .audit(&[
            ("kind", Some("request.refused".into())),
            ("actor", Some("human:dave@example.com".into())),
        ])
        .await
        .unwrap();
    let paths: Vec<&str> = refused["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["payload"]["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&"/v1/audit"), "{refused}");
    assert!(paths.contains(&"/v1/capabilities"), "{refused}");

    let v = json_as(
        &server,
        ADMIN_TOKEN,
        &["human", "enable", "dave@example.com"],
    );
    assert_eq!(v["disabled"], false);
    ok_as(&server, &dave, &["audit", "tail", "-n", "1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_time_passwords_are_replaced_and_accounts_are_an_admins_to_manage() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let create = |name: &str, password: &str| {
        cli_with_input(
            &server,
            Some(ADMIN_TOKEN),
            &["human", "create", name, "--password-stdin", "-o", "json"],
            &format!("{password}\n"),
        )
    };
    let o = create("erin@example.com", "short");
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("400") && stderr(&o).contains("password"),
        "{}",
        stderr(&o)
    );
    let o = create("erin@example.com", "a one-time passphrase");
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["local_password"], true);
    assert!(!stdout(&o).contains("passphrase"), "{}", stdout(&o));
    let out = ok_as(&server, ADMIN_TOKEN, &["human", "list"]);
    let row = out
        .lines()
        .find(|l| l.contains("erin@example.com"))
        .unwrap();
    assert!(row.contains("password"), "{row}");
    // The one-time password signs in nowhere until erin replaces it.
    let o = login_with(
        &server,
        "erin@example.com",
        "owner",
        "a one-time passphrase",
    );
    assert!(
        stderr(&o).contains("409") && stderr(&o).contains("one-time"),
        "{}",
        stderr(&o)
    );
    let change = |current: &str, new: &str| {
        cli_with_input(
            &server,
            None,
            &["password", "erin@example.com"],
            &format!("{current}\n{new}\n"),
        )
    };
    let o = change("not the current one", "erin's own passphrase");
    assert!(stderr(&o).contains("401"), "{}", stderr(&o));
    let o = change("a one-time passphrase", "short");
    assert!(stderr(&o).contains("400"), "{}", stderr(&o));
    let o = change("a one-time passphrase", "erin's own passphrase");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("password of erin@example.com changed"),
        "{}",
        stdout(&o)
    );
    // Now the password is hers; she holds no role yet.
    let o = login_with(
        &server,
        "erin@example.com",
        "owner",
        "erin's own passphrase",
    );
    assert!(
        stderr(&o).contains("409") && stderr(&o).contains("does not hold"),
        "{}",
        stderr(&o)
    );
    // A human and an identity never share a name.
    let idn = create_identity(&server.client(), "etl", "prod", &[]).await;
    fails_as(
        &server,
        ADMIN_TOKEN,
        &["human", "create", &idn],
        409,
        "identity",
    );
    // An owner neither creates accounts nor reads other humans'.
    let (_, frank) = human_token(&server.url, "frank@example.com", "owner").await;
    fails_as(
        &server,
        &frank,
        &["human", "create", "mallory@example.com"],
        403,
        "admin",
    );
    fails_as(
        &server,
        &frank,
        &["human", "show", "erin@example.com"],
        403,
        "owner",
    );
    let me = json_as(&server, &frank, &["human", "show", "frank@example.com"]);
    assert_eq!(me["roles"], json!(["owner"]));
    fails_as(
        &server,
        &frank,
        &["human", "disable", "frank@example.com"],
        403,
        "admin",
    );
    // Unknown accounts and grants.
    fails_as(
        &server,
        ADMIN_TOKEN,
        &["human", "show", "nobody@example.com"],
        404,
        "not found",
    );
    let root = root_admin_token(&server.url).await;
    fails_as(
        &server,
        &root,
        &["grant", "approve", "grt_nope"],
        404,
        "not found",
    );
    // Without a credential: 401.
    let o = cli(None, &["whoami", "--server", &server.url]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("401"), "{}", stderr(&o));
}
