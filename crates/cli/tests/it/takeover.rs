//! Account takeover and two-person-rule bypasses a security review found, one test each:
//! nobody mints a credential that acts as someone else, a one-role token cannot mint
//! another role, an admin cannot set the password of an account that holds a role, the
//! first-admin exception cannot be reopened, and sign-in input cannot crash the server.

use crate::harness::*;
use serde_json::{json, Value};

async fn refused_by(url: &str, actor: &str) -> usize {
    let b = api_ok(
        url,
        ADMIN_TOKEN,
        "GET",
        "/v1/audit?kind=request.refused&limit=1000",
        None,
    )
    .await;
    b["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["actor"] == actor)
        .count()
}

#[tokio::test]
async fn nobody_mints_a_token_that_acts_as_someone_else() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let url = server.url.clone();
    let root = root_admin_token(&url).await;
    grant_role(&url, "bob@example.com", "approver").await;
    let (_, alice_auditor) = human_token(&url, "alice@example.com", "auditor").await;
    grant_role(&url, "alice@example.com", "admin").await;

    let as_bob = json!({ "name": "x", "human": "bob@example.com", "role": "approver" });
    // The bootstrap token, an admin, anyone: a token in another human's name is refused.
    for (token, actor) in [
        (ADMIN_TOKEN, None),
        (root.as_str(), Some(format!("human:{ROOT_ADMIN}"))),
    ] {
        let before = match &actor {
            Some(a) => refused_by(&url, a).await,
            None => 0,
        };
        let (s, b) = api(&url, Some(token), "POST", "/v1/tokens", Some(&as_bob)).await;
        assert_eq!(s, 403, "{b}");
        if let Some(a) = &actor {
            assert_eq!(refused_by(&url, a).await, before + 1, "audited");
        }
    }
    // A token limited to `auditor` cannot mint an `admin` token of its own human, even
    // though the human holds `admin`.
    let mine = json!({ "name": "x", "human": "alice@example.com", "role": "admin" });
    let (s, b) = api(
        &url,
        Some(&alice_auditor),
        "POST",
        "/v1/tokens",
        Some(&mine),
    )
    .await;
    assert_eq!(s, 403, "{b}");
    assert!(b["message"].as_str().unwrap().contains("`admin`"), "{b}");
    // ...but may issue another auditor token to itself.
    let same = json!({ "name": "y", "human": "alice@example.com", "role": "auditor" });
    let (s, b) = api(
        &url,
        Some(&alice_auditor),
        "POST",
        "/v1/tokens",
        Some(&same),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    // Nor can a token change its human's password (that needs the current one): refused
    // (403 for a non-admin credential, 400 pointing to POST /v1/auth/password for an admin).
    let (s, b) = api(
        &url,
        Some(&alice_auditor),
        "PATCH",
        "/v1/humans/alice@example.com",
        Some(&json!({ "password": "a brand new password of alice" })),
    )
    .await;
    assert_eq!(s, 403, "{b}");
    let (_, alice_admin) = issue_token(&url, "alice@example.com", "admin").await;
    let (s, b) = api(
        &url,
        Some(&alice_admin),
        "PATCH",
        "/v1/humans/alice@example.com",
        Some(&json!({ "password": "a brand new password of alice" })),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    assert!(
        b["message"].as_str().unwrap().contains("/v1/auth/password"),
        "{b}"
    );
}

#[tokio::test]
async fn an_admin_cannot_take_over_an_account_that_holds_a_role() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let url = server.url.clone();
    let root = root_admin_token(&url).await;
    grant_role(&url, "bob@example.com", "approver").await;
    let setpw = json!({ "password": "the admin's idea of bob's password" });
    for token in [ADMIN_TOKEN, root.as_str()] {
        let (s, b) = api(
            &url,
            Some(token),
            "PATCH",
            "/v1/humans/bob@example.com",
            Some(&setpw),
        )
        .await;
        assert_eq!(s, 403, "{b}");
    }
    // Bob's own password still works, the admin's never did.
    let body = |pw: &str| json!({ "username": "bob@example.com", "password": pw, "role": "approver", "name": "t" });
    let (s, _) = api(
        &url,
        None,
        "POST",
        "/v1/auth/token",
        Some(&body("the admin's idea of bob's password")),
    )
    .await;
    assert_eq!(s, 401);
    let (s, b) = api(
        &url,
        None,
        "POST",
        "/v1/auth/token",
        Some(&body(&password_of("bob@example.com"))),
    )
    .await;
    assert_eq!(s, 201, "{b}");

    // On an account without roles an admin sets a one-time password: it yields no token
    // and no session until the human replaces it.
    ensure_human(&url, "carol@example.com").await;
    let (s, b) = api(
        &url,
        Some(&root),
        "PATCH",
        "/v1/humans/carol@example.com",
        Some(&json!({ "password": "one-time password from the admin" })),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let tok = json!({ "username": "carol@example.com", "password": "one-time password from the admin", "role": "owner", "name": "t" });
    let (s, b) = api(&url, None, "POST", "/v1/auth/token", Some(&tok)).await;
    assert_eq!(s, 409, "{b}");
    assert!(
        b["message"].as_str().unwrap().contains("replace it first"),
        "{b}"
    );
}

#[tokio::test]
async fn disabling_every_admin_does_not_reopen_the_first_admin_exception() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let url = server.url.clone();
    root_admin_token(&url).await;
    let (s, b) = api(
        &url,
        Some(ADMIN_TOKEN),
        "PATCH",
        &format!("/v1/humans/{ROOT_ADMIN}"),
        Some(&json!({ "disabled": true })),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    ensure_human(&url, "mallory@example.com").await;
    let g = api_ok(
        &url,
        ADMIN_TOKEN,
        "POST",
        "/v1/role-grants",
        Some(
            &json!({ "human": "mallory@example.com", "role": "admin", "justification": GRANT_WHY }),
        ),
    )
    .await;
    assert_eq!(g["state"], "pending", "{g}");
    assert_eq!(g["bootstrap"], false, "{g}");
    let roles: Value = api_ok(
        &url,
        ADMIN_TOKEN,
        "GET",
        "/v1/humans/mallory@example.com",
        None,
    )
    .await;
    assert_eq!(roles["roles"], json!([]));
}

#[tokio::test]
async fn hostile_sign_in_input_gets_clear_answers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let url = server.url.clone();
    ensure_human(&url, "dave@example.com").await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // A huge user name is refused before any hashing or throttling state.
    let long = "a".repeat(100_000);
    let r = client
        .post(format!("{url}/ui/login"))
        .form(&[
            ("username", long.as_str()),
            ("password", "x"),
            ("next", "/ui/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let (s, b) = api(
        &url,
        None,
        "POST",
        "/v1/auth/token",
        Some(&json!({ "username": long, "password": "x", "role": "owner", "name": "t" })),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    // A `next` with control characters is not followed (no header injection, no 500).
    let r = client
        .post(format!("{url}/ui/login"))
        .form(&[
            ("username", "dave@example.com"),
            ("password", password_of("dave@example.com").as_str()),
            ("next", "/ui/\r\nSet-Cookie: x=1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(r.headers()["location"], "/ui/");
    // Non-ASCII look-alike names are refused at creation.
    let (s, b) = api(
        &url,
        Some(ADMIN_TOKEN),
        "POST",
        "/v1/humans",
        Some(&json!({ "name": "\u{212A}aren" })),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    // Five wrong passwords lock the name out (429) for a while; the right one too.
    for _ in 0..5 {
        let (s, _) = api(&url, None, "POST", "/v1/auth/token", Some(&json!({ "username": "dave@example.com", "password": "wrong", "role": "owner", "name": "t" }))).await;
        assert_eq!(s, 401);
    }
    let (s, b) = api(&url, None, "POST", "/v1/auth/token", Some(&json!({ "username": "dave@example.com", "password": password_of("dave@example.com"), "role": "owner", "name": "t" }))).await;
    assert_eq!(s, 429, "{b}");
}

#[tokio::test]
async fn whoever_set_a_password_cannot_approve_a_role_for_its_account() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let url = server.url.clone();
    let root = root_admin_token(&url).await;
    grant_role(&url, "alice@example.com", "admin").await;
    let (_, alice) = issue_token(&url, "alice@example.com", "admin").await;
    // Root sets carol's one-time password; whoever replaces it, root could have.
    api_ok(
        &url,
        ADMIN_TOKEN,
        "POST",
        "/v1/humans",
        Some(&json!({ "name": "carol@example.com" })),
    )
    .await;
    api_ok(
        &url,
        &root,
        "PATCH",
        "/v1/humans/carol@example.com",
        Some(&json!({ "password": "root's one-time password for carol" })),
    )
    .await;
    let (s, _) = api(
        &url,
        None,
        "POST",
        "/v1/auth/password",
        Some(&json!({ "username": "carol@example.com", "current_password": "root's one-time password for carol",
                       "new_password": "carol's own password, or is it" })),
    )
    .await;
    assert_eq!(s, 204);
    let g = api_ok(
        &url,
        ADMIN_TOKEN,
        "POST",
        "/v1/role-grants",
        Some(&json!({ "human": "carol@example.com", "role": "approver", "justification": GRANT_WHY })),
    )
    .await;
    let approve = format!("/v1/role-grants/{}/approve", g["id"].as_str().unwrap());
    let (s, b) = api(&url, Some(&root), "POST", &approve, Some(&json!({}))).await;
    assert_eq!(s, 403, "{b}");
    assert!(
        b["message"].as_str().unwrap().contains("set the password"),
        "{b}"
    );
    // Another admin, who never knew it, may.
    let (s, b) = api(&url, Some(&alice), "POST", &approve, Some(&json!({}))).await;
    assert_eq!(s, 200, "{b}");
}

#[tokio::test]
async fn a_password_change_revokes_the_tokens_and_humans_revoke_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let url = server.url.clone();
    grant_role(&url, "bob@example.com", "approver").await;
    let (first_id, first) = issue_token(&url, "bob@example.com", "approver").await;
    let (_, second) = issue_token(&url, "bob@example.com", "approver").await;
    // Bob revokes one of his own tokens with another.
    let (s, b) = api(
        &url,
        Some(&second),
        "POST",
        &format!("/v1/tokens/{first_id}/revoke"),
        Some(&json!({})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let (s, _) = api(&url, Some(&first), "GET", "/v1/me", None).await;
    assert_eq!(s, 401);
    // Someone else's token: refused (audited), not revealed.
    grant_role(&url, "dave@example.com", "owner").await;
    let (dave_id, _) = issue_token(&url, "dave@example.com", "owner").await;
    let (s, _) = api(
        &url,
        Some(&second),
        "POST",
        &format!("/v1/tokens/{dave_id}/revoke"),
        Some(&json!({})),
    )
    .await;
    assert_eq!(s, 403);
    // A password change ends what the old password got: the remaining token stops.
    let (s, _) = api(
        &url,
        None,
        "POST",
        "/v1/auth/password",
        Some(&json!({ "username": "bob@example.com", "current_password": password_of("bob@example.com"),
                       "new_password": "bob's brand new password 2026" })),
    )
    .await;
    assert_eq!(s, 204);
    let (s, _) = api(&url, Some(&second), "GET", "/v1/me", None).await;
    assert_eq!(s, 401, "tokens issued before the change are revoked");
}
