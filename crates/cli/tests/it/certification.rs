//! Access certification campaigns against the real binary: owners confirm or revoke
//! their identities' entitlements by a deadline; a revocation runs through the tiered
//! workflow; unanswered items are escalated or their identities suspended at the
//! deadline, and everything is in the audit log.

use crate::harness::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

async fn identity(url: &str, name: &str, owner: &str, ents: &[&str]) -> String {
    let b = api_ok(
        url,
        ADMIN_TOKEN,
        "POST",
        "/v1/identities",
        Some(
            &json!({ "name": name, "kind": "ai_tool", "environment": "prod",
                       "owner": owner, "entitlements": ents }),
        ),
    )
    .await;
    b["id"].as_str().unwrap().to_owned()
}

fn deadline_in(secs: i64) -> String {
    let t = time::OffsetDateTime::now_utc() + time::Duration::seconds(secs);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn item_of<'a>(c: &'a Value, identity: &str, entitlement: &str) -> &'a Value {
    c["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["identity"] == identity && i["entitlement"] == entitlement)
        .unwrap_or_else(|| panic!("no item {identity} {entitlement} in {c}"))
}

async fn wait_closed(url: &str, id: &str) -> Value {
    let start = Instant::now();
    loop {
        let c = api_ok(
            url,
            ADMIN_TOKEN,
            "GET",
            &format!("/v1/certifications/{id}"),
            None,
        )
        .await;
        if c["state"] == "closed" {
            return c;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "campaign never closed: {c}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn records(url: &str, query: &str) -> Vec<Value> {
    let b = api_ok(
        url,
        ADMIN_TOKEN,
        "GET",
        &format!("/v1/audit?{query}&limit=1000"),
        None,
    )
    .await;
    b["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn owners_certify_revocations_are_tiered_and_unanswered_items_follow_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let url = server.url.clone();
    let a = identity(
        &url,
        "cert-bot-a",
        "dave@example.com",
        &["docs:read", "s3:write"],
    )
    .await;
    let b = identity(&url, "cert-bot-b", "dave@example.com", &["crm:read"]).await;
    let c = identity(&url, "cert-bot-c", "erin@example.com", &["hr:read"]).await;
    let (_, dave) = human_token(&url, "dave@example.com", "owner").await;
    let (_, erin) = human_token(&url, "erin@example.com", "owner").await;
    let (_, carol) = human_token(&url, "carol@example.com", "auditor").await;
    let root = root_admin_token(&url).await;

    // Only admins open campaigns; bad input is a 400 with the reason.
    let body = json!({ "name": "Q4 production access", "deadline": deadline_in(5), "unanswered": "suspend" });
    let (s, _) = api(&url, Some(&dave), "POST", "/v1/certifications", Some(&body)).await;
    assert_eq!(s, 403);
    for bad in [
        json!({ "name": "x", "deadline": deadline_in(-5), "unanswered": "suspend" }),
        json!({ "name": "x", "deadline": "tomorrow", "unanswered": "suspend" }),
        json!({ "name": "x", "deadline": deadline_in(60), "unanswered": "ignore" }),
        json!({ "name": "x", "deadline": deadline_in(60), "unanswered": "suspend", "owner": "nobody@example.com" }),
    ] {
        let (s, e) = api(&url, Some(&root), "POST", "/v1/certifications", Some(&bad)).await;
        assert_eq!(s, 400, "{bad}: {e}");
    }
    let camp = api_ok(&url, &root, "POST", "/v1/certifications", Some(&body)).await;
    let id = camp["id"].as_str().unwrap().to_owned();
    assert_eq!(camp["total_items"], 4, "{camp}");

    // Each owner sees their own items only.
    let mine = api_ok(
        &url,
        &dave,
        "GET",
        &format!("/v1/certifications/{id}"),
        None,
    )
    .await;
    assert_eq!(mine["items"].as_array().unwrap().len(), 3, "{mine}");
    let hers = api_ok(&url, &erin, "GET", "/v1/certifications", None).await;
    assert_eq!(
        hers["items"][0]["items"].as_array().unwrap().len(),
        1,
        "{hers}"
    );

    let item = |e: &str, ent: &str| item_of(&camp, e, ent)["id"].as_u64().unwrap();
    let answer = |who: &str, n: u64, decision: &str, note: &str| {
        let (url, who, id) = (url.clone(), who.to_owned(), id.clone());
        let body = json!({ "decision": decision, "note": note });
        async move {
            api(
                &url,
                Some(&who),
                "POST",
                &format!("/v1/certifications/{id}/items/{n}"),
                Some(&body),
            )
            .await
        }
    };
    // Not the owner, not an owner role, no note on a revocation: refused.
    let (s, _) = answer(&erin, item(&a, "s3:write"), "revoke", "not hers").await;
    assert_eq!(s, 403);
    let (s, _) = answer(&carol, item(&a, "s3:write"), "confirm", "").await;
    assert_eq!(s, 403);
    let (s, _) = answer(&dave, item(&a, "s3:write"), "revoke", "").await;
    assert_eq!(s, 400);
    let (s, _) = answer(&dave, item(&a, "s3:write"), "maybe", "").await;
    assert_eq!(s, 400);

    // Dave confirms one and revokes one: the revocation is a Tier 1 proposal, applied.
    let (s, v) = answer(
        &dave,
        item(&a, "docs:read"),
        "confirm",
        "still needed for the digest",
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = answer(
        &dave,
        item(&a, "s3:write"),
        "revoke",
        "no longer writes to S3",
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let revoked = item_of(&v, &a, "s3:write");
    let proposal = revoked["answer"]["proposal"]
        .as_str()
        .expect("a proposal")
        .to_owned();
    let p = api_ok(
        &url,
        &root,
        "GET",
        &format!("/v1/proposals/{proposal}"),
        None,
    )
    .await;
    assert_eq!(p["proposal"]["tier"]["tier"], 1, "{p}");
    assert_eq!(p["proposal"]["state"], "executed", "{p}");
    assert_eq!(p["proposal"]["proposer"], "dave@example.com");
    let ident = api_ok(&url, &root, "GET", &format!("/v1/identities/{a}"), None).await;
    assert_eq!(ident["entitlements"], json!(["docs:read"]), "{ident}");
    let (s, _) = answer(&dave, item(&a, "s3:write"), "confirm", "").await;
    assert_eq!(s, 409, "answered once only");
    // The owner's act is recorded as a human's, never as an AI recommendation.
    let recs = records(&url, "actor=human:dave@example.com").await;
    assert!(recs
        .iter()
        .any(|r| r["kind"] == "certification" && r["payload"]["decision"] == "revoke"));
    assert!(recs
        .iter()
        .any(|r| r["kind"] == "certification" && r["subject"] == format!("proposal:{proposal}")));
    assert!(!records(&url, "kind=ai.recommendation")
        .await
        .iter()
        .any(|r| r["subject"] == format!("proposal:{proposal}")));
    let refused = records(&url, "kind=request.refused").await;
    assert!(refused
        .iter()
        .any(|r| r["actor"] == "human:erin@example.com"));
    assert!(refused
        .iter()
        .any(|r| r["actor"] == "human:carol@example.com"));

    // The deadline: b (dave's unanswered crm:read) and c (erin's) are suspended; a stays.
    let closed = wait_closed(&url, &id).await;
    assert_eq!(
        item_of(&closed, &b, "crm:read")["outcome"],
        "suspended",
        "{closed}"
    );
    assert_eq!(
        item_of(&closed, &c, "hr:read")["outcome"],
        "suspended",
        "{closed}"
    );
    for (who, state) in [(&a, "active"), (&b, "suspended"), (&c, "suspended")] {
        let i = api_ok(&url, &root, "GET", &format!("/v1/identities/{who}"), None).await;
        assert_eq!(i["state"], state, "{i}");
    }
    let alerts = records(&url, "kind=governance.alert").await;
    let alert = alerts
        .iter()
        .find(|r| r["payload"]["alert"] == "certification_unanswered")
        .expect("an alert for the unanswered items");
    assert_eq!(
        alert["payload"]["items"].as_array().unwrap().len(),
        2,
        "{alert}"
    );
    let suspended = records(&url, &format!("subject=identity:{b}")).await;
    assert!(
        suspended
            .iter()
            .any(|r| r["kind"] == "identity.suspended" && r["payload"].to_string().contains(&id)),
        "the suspension names the campaign: {suspended:?}"
    );
    let (s, _) = answer(&erin, item(&c, "hr:read"), "confirm", "").await;
    assert_eq!(s, 409, "closed campaigns take no answers");

    // Escalate: nothing is suspended; the items are escalated and alerted.
    let body = json!({ "name": "erin's review", "deadline": deadline_in(3), "unanswered": "escalate",
                       "owner": "erin@example.com" });
    let camp2 = api_ok(&url, &root, "POST", "/v1/certifications", Some(&body)).await;
    let id2 = camp2["id"].as_str().unwrap();
    let closed2 = wait_closed(&url, id2).await;
    assert_eq!(
        item_of(&closed2, &c, "hr:read")["outcome"],
        "escalated",
        "{closed2}"
    );
    let i = api_ok(&url, &root, "GET", &format!("/v1/identities/{c}"), None).await;
    assert_eq!(
        i["entitlements"],
        json!(["hr:read"]),
        "escalation changes nothing"
    );

    // The auditor's evidence names a human for every certification change: the owner
    // for a revocation, the admin who opened the campaign for its deadline rule.
    api_ok(
        &url,
        ADMIN_TOKEN,
        "POST",
        "/v1/audit/checkpoints",
        Some(&json!({})),
    )
    .await;
    let out = dir.path().join("evidence");
    let o = cli(
        Some(&server),
        &[
            "evidence",
            "export",
            "--framework",
            "soc2",
            "--from",
            "2020-01-01T00:00:00Z",
            "--to",
            "2100-01-01T00:00:00Z",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    let doc: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("changes.json"))
            .unwrap_or_else(|e| panic!("{e}: {} {}", stdout(&o), stderr(&o))),
    )
    .unwrap();
    let changes = doc["changes"].as_array().unwrap();
    let revocation = changes
        .iter()
        .find(|c| c["proposal"] == proposal.as_str())
        .unwrap_or_else(|| panic!("the revocation is in the evidence: {doc}"));
    assert_eq!(
        revocation["named_human"], "dave@example.com",
        "{revocation}"
    );
    assert!(revocation["exception"]
        .as_str()
        .unwrap()
        .contains("access certification"));
    let suspension = changes
        .iter()
        .find(|c| c["source"] == "certification" && c["subject"] == format!("identity:{b}"))
        .unwrap_or_else(|| panic!("the suspension is in the evidence: {doc}"));
    assert_eq!(suspension["named_human"], ROOT_ADMIN, "{suspension}");
    assert_eq!(suspension["no_named_human"], false);
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        !html.contains(&format!("certification:{id}")) || html.contains("access certification")
    );
}

#[tokio::test]
async fn an_item_is_void_once_its_identity_changes_hands() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let url = server.url.clone();
    let a = identity(&url, "moved-bot", "dave@example.com", &["hr:read"]).await;
    let (_, dave) = human_token(&url, "dave@example.com", "owner").await;
    let root = root_admin_token(&url).await;
    let camp = api_ok(
        &url,
        &root,
        "POST",
        "/v1/certifications",
        Some(&json!({ "name": "transfer", "deadline": deadline_in(4), "unanswered": "suspend" })),
    )
    .await;
    let id = camp["id"].as_str().unwrap().to_owned();
    let n = item_of(&camp, &a, "hr:read")["id"].as_u64().unwrap();
    // The identity moves to erin: dave no longer answers for it.
    api_ok(
        &url,
        ADMIN_TOKEN,
        "PATCH",
        &format!("/v1/identities/{a}"),
        Some(&json!({ "owner": "erin@example.com" })),
    )
    .await;
    let (s, b) = api(
        &url,
        Some(&dave),
        "POST",
        &format!("/v1/certifications/{id}/items/{n}"),
        Some(&json!({ "decision": "revoke", "note": "not mine any more, but let me try" })),
    )
    .await;
    assert_eq!(s, 409, "{b}");
    assert!(
        b["message"].as_str().unwrap().contains("owner changed"),
        "{b}"
    );
    // The same through the CLI: refused with the reason, non-zero exit.
    let n_text = n.to_string();
    let o = cli_with_input(
        &server,
        Some(&dave),
        &[
            "certification",
            "answer",
            &id,
            &n_text,
            "--decision",
            "confirm",
        ],
        "",
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("owner changed"), "{}", stderr(&o));
    // At the deadline the rule does not apply to a void item: nothing is suspended.
    let closed = wait_closed(&url, &id).await;
    let o = cli(Some(&server), &["certification", "show", &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("void: the identity's owner changed"),
        "{}",
        stdout(&o)
    );
    let outcome = item_of(&closed, &a, "hr:read")["outcome"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(outcome.starts_with("void"), "{closed}");
    let i = api_ok(&url, &root, "GET", &format!("/v1/identities/{a}"), None).await;
    assert_eq!(i["state"], "active", "{i}");
    assert_eq!(i["entitlements"], json!(["hr:read"]));
}
