//! End to end: the real binary, real HTTP, a real SQLite file. Registry, policies,
//! decisions, kill switch, audit log, restart, CLI, bootstrap token, last-used times.

use super::harness::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};
use warrant_client::{Client, ClientError};

/// Unwraps an API error into (status, code, details); panics on success or a non-API error.
fn api_err(r: Result<Value, ClientError>) -> (u16, String, Option<Value>) {
    match r {
        Err(ClientError::Api {
            status,
            code,
            details,
            ..
        }) => (status, code, details),
        Err(e) => panic!("expected an API error, got {e}"),
        Ok(v) => panic!("expected an API error, got success: {v}"),
    }
}

fn write_req(principal: &str) -> Value {
    json!({
        "principal": principal,
        "action": "App::Action::\"write\"",
        "resource": "App::Document::\"q3\"",
        "context": { "risk": 1 },
    })
}

fn seq_of(v: &Value) -> u64 {
    v["audit_seq"]
        .as_u64()
        .unwrap_or_else(|| panic!("decision without audit_seq: {v}"))
}

/// Every audit record, oldest first (paged through `GET /v1/audit`).
async fn all_records(c: &Client, kind: Option<&str>) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = c
            .audit(&[
                ("kind", kind.map(str::to_owned)),
                ("limit", Some("1000".into())),
                ("cursor", cursor.clone()),
            ])
            .await
            .expect("audit page");
        out.extend(page["items"].as_array().expect("items").iter().cloned());
        match page["next_cursor"].as_u64() {
            Some(n) => cursor = Some(n.to_string()),
            None => return out,
        }
    }
}

fn verify_offline(data_dir: &Path) -> (bool, String, String) {
    let args = verify_args(data_dir);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = cli(None, &args);
    (o.status.success(), stdout(&o), stderr(&o))
}

fn assert_verifies(data_dir: &Path) {
    let (ok, out, err) = verify_offline(data_dir);
    assert!(ok, "audit verify failed:\n{out}\n{err}");
    assert!(out.starts_with("ok: "), "unexpected verify output: {out}");
}

#[tokio::test]
async fn full_flow() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let c = server.client();

    // Registry: a reader in prod, an identity without roles, and the same name in staging.
    let reader = create_identity(&c, "summarizer", "prod", &["reader"]).await;
    let noroles = create_identity(&c, "drafter", "prod", &[]).await;
    let staging = create_identity(&c, "summarizer", "staging", &[]).await;
    let reader_v = c.identity(&reader).await.unwrap();
    let staging_v = c.identity(&staging).await.unwrap();
    assert_ne!(
        reader, staging,
        "same name in two environments must be two identities"
    );
    assert_eq!(
        reader_v["spiffe_id"],
        "spiffe://warrant.local/prod/summarizer"
    );
    assert_eq!(
        staging_v["spiffe_id"],
        "spiffe://warrant.local/staging/summarizer"
    );
    assert_eq!(reader_v["state"], "active");
    assert_eq!(reader_v["roles"], json!(["reader"]));
    assert_eq!(staging_v["roles"], json!([]));

    // Policies.
    let p = c
        .put_policy(Some(SCHEMA), POLICIES, Some("initial"))
        .await
        .expect("put policy");
    assert_eq!(p["version"], 1);
    let ids: Vec<&str> = p["policy_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for want in ["readers-read", "no-prod-writes-by-ai", "writers-write"] {
        assert!(ids.contains(&want), "{want} missing from {ids:?}");
    }

    // (seq, expected subject, expected verdict) of every decision made below.
    let mut decided: Vec<(u64, String, &str)> = Vec::new();

    // Allow.
    let d = c.authorize(&read_req(&reader, 10)).await.unwrap();
    assert_eq!(d["decision"], "allow", "{d}");
    assert_eq!(d["policy_version"], 1);
    let det = d["determining_policies"].as_array().unwrap();
    assert_eq!(det.len(), 1, "{d}");
    assert_eq!(det[0]["id"], "readers-read");
    assert_eq!(det[0]["effect"], "permit");
    assert_eq!(
        det[0]["annotations"]["reason"],
        "readers may read documents at low risk"
    );
    assert!(
        d["reason"].as_str().unwrap().contains("readers-read"),
        "{d}"
    );
    assert_eq!(d["principal"]["id"], reader.as_str());
    assert_eq!(d["principal"]["environment"], "prod");
    decided.push((seq_of(&d), format!("identity:{reader}"), "allow"));

    // The same reader at high risk: the permit's condition fails, default deny.
    let d = c.authorize(&read_req(&reader, 90)).await.unwrap();
    assert_eq!(d["decision"], "deny", "{d}");
    decided.push((seq_of(&d), format!("identity:{reader}"), "deny"));

    // Deny by default: no role.
    let d = c.authorize(&read_req(&noroles, 10)).await.unwrap();
    assert_eq!(d["decision"], "deny", "{d}");
    assert_eq!(d["determining_policies"], json!([]), "{d}");
    assert!(
        d["reason"].as_str().unwrap().contains("default deny"),
        "{d}"
    );
    decided.push((seq_of(&d), format!("identity:{noroles}"), "deny"));

    // Deny by forbid: `writers-write` permits, `no-prod-writes-by-ai` forbids in prod.
    let d = c.authorize(&write_req(&reader)).await.unwrap();
    assert_eq!(d["decision"], "deny", "{d}");
    let det = d["determining_policies"].as_array().unwrap();
    assert_eq!(det.len(), 1, "{d}");
    assert_eq!(det[0]["id"], "no-prod-writes-by-ai");
    assert_eq!(det[0]["effect"], "forbid");
    assert_eq!(
        det[0]["annotations"]["reason"],
        "AI tools never write in production"
    );
    decided.push((seq_of(&d), format!("identity:{reader}"), "deny"));

    // The staging twin may write (no forbid outside prod) but may not read (no role):
    // the environments never share privileges.
    let d = c.authorize(&write_req(&staging)).await.unwrap();
    assert_eq!(d["decision"], "allow", "{d}");
    assert_eq!(d["determining_policies"][0]["id"], "writers-write");
    decided.push((seq_of(&d), format!("identity:{staging}"), "allow"));
    let d = c.authorize(&read_req(&staging, 10)).await.unwrap();
    assert_eq!(d["decision"], "deny", "{d}");
    decided.push((seq_of(&d), format!("identity:{staging}"), "deny"));

    // Batch, with one malformed item.
    let mut malformed = read_req(&reader, 10);
    malformed["resource"] = json!("this is not an entity uid");
    let b = c
        .authorize_batch(&[
            read_req(&reader, 10),
            read_req(&noroles, 10),
            malformed,
            write_req(&reader),
            write_req(&staging),
        ])
        .await
        .expect("batch");
    let results = b["results"].as_array().unwrap();
    assert_eq!(results.len(), 5, "{b}");
    let expected = [
        Some("allow"),
        Some("deny"),
        None,
        Some("deny"),
        Some("allow"),
    ];
    let subjects = [&reader, &noroles, &reader, &reader, &staging];
    let mut batch_seqs = Vec::new();
    for (i, item) in results.iter().enumerate() {
        match expected[i] {
            Some(verdict) => {
                assert!(item["error"].is_null(), "item {i}: {item}");
                assert_eq!(item["result"]["decision"], verdict, "item {i}: {item}");
                let seq = seq_of(&item["result"]);
                batch_seqs.push(seq);
                decided.push((seq, format!("identity:{}", subjects[i]), verdict));
            }
            None => {
                assert!(item["result"].is_null(), "item {i}: {item}");
                assert_eq!(
                    item["error"]["error"], "invalid_request",
                    "item {i}: {item}"
                );
                assert!(
                    item["error"]["message"]
                        .as_str()
                        .unwrap()
                        .contains("resource"),
                    "item {i}: {item}"
                );
            }
        }
    }
    assert!(
        batch_seqs.windows(2).all(|w| w[0] < w[1]),
        "batch seqs not increasing: {batch_seqs:?}"
    );

    // Principal by SPIFFE ID.
    let d = c
        .authorize(&read_req("spiffe://warrant.local/prod/summarizer", 10))
        .await
        .unwrap();
    assert_eq!(d["decision"], "allow", "{d}");
    assert_eq!(d["principal"]["id"], reader.as_str());
    decided.push((seq_of(&d), format!("identity:{reader}"), "allow"));

    // Unknown principals (by id and by SPIFFE ID) are denied before any policy.
    for unknown in [
        "idn_00000000000000000000000000000000",
        "spiffe://warrant.local/prod/nobody",
    ] {
        let d = c.authorize(&read_req(unknown, 10)).await.unwrap();
        assert_eq!(d["decision"], "deny", "{d}");
        assert!(d["principal"].is_null(), "{d}");
        assert!(
            d["reason"].as_str().unwrap().contains("unknown"),
            "reason should mention unknown: {d}"
        );
        decided.push((seq_of(&d), format!("principal:{unknown}"), "deny"));
    }

    // Kill switch: suspend → denied on the very next request.
    let v = c
        .lifecycle(&reader, "suspend", Some("incident 42"))
        .await
        .unwrap();
    assert_eq!(v["state"], "suspended");
    let d = c.authorize(&read_req(&reader, 10)).await.unwrap();
    assert_eq!(d["decision"], "deny", "{d}");
    assert!(d["reason"].as_str().unwrap().contains("suspended"), "{d}");
    assert_eq!(d["determining_policies"], json!([]));
    decided.push((seq_of(&d), format!("identity:{reader}"), "deny"));
    // ...also by SPIFFE ID and in a batch.
    let b = c
        .authorize_batch(&[read_req("spiffe://warrant.local/prod/summarizer", 10)])
        .await
        .unwrap();
    assert_eq!(b["results"][0]["result"]["decision"], "deny", "{b}");
    decided.push((
        seq_of(&b["results"][0]["result"]),
        format!("identity:{reader}"),
        "deny",
    ));
    // Suspending twice is a conflict.
    let (status, code, _) = api_err(c.lifecycle(&reader, "suspend", None).await);
    assert_eq!((status, code.as_str()), (409, "conflict"));

    // Resume → allowed again.
    let v = c.lifecycle(&reader, "resume", None).await.unwrap();
    assert_eq!(v["state"], "active");
    let d = c.authorize(&read_req(&reader, 10)).await.unwrap();
    assert_eq!(d["decision"], "allow", "{d}");
    decided.push((seq_of(&d), format!("identity:{reader}"), "allow"));

    // Retire → denied for good.
    let v = c
        .lifecycle(&reader, "retire", Some("decommissioned"))
        .await
        .unwrap();
    assert_eq!(v["state"], "retired");
    let d = c.authorize(&read_req(&reader, 10)).await.unwrap();
    assert_eq!(d["decision"], "deny", "{d}");
    assert!(d["reason"].as_str().unwrap().contains("retired"), "{d}");
    decided.push((seq_of(&d), format!("identity:{reader}"), "deny"));
    let (status, code, _) = api_err(c.lifecycle(&reader, "resume", None).await);
    assert_eq!((status, code.as_str()), (409, "conflict"));
    let (status, code, _) = api_err(c.lifecycle(&reader, "suspend", None).await);
    assert_eq!((status, code.as_str()), (409, "conflict"));
    let (status, code, _) = api_err(
        c.update_identity(&reader, &json!({ "roles": ["reader", "admin"] }))
            .await,
    );
    assert_eq!((status, code.as_str()), (409, "conflict"));
    // Its name (and URI) in that environment are never reused...
    let (status, code, _) = api_err(
        c.create_identity(&json!({
            "name": "summarizer", "kind": "ai_tool", "environment": "prod",
            "owner": "bob@example.com", "roles": ["reader"],
        }))
        .await,
    );
    assert_eq!((status, code.as_str()), (409, "conflict"));
    let (status, code, _) = api_err(
        c.create_identity(&json!({
            "name": "summarizer-2", "kind": "ai_tool", "environment": "prod",
            "owner": "bob@example.com", "spiffe_id": "spiffe://warrant.local/prod/summarizer",
        }))
        .await,
    );
    assert_eq!((status, code.as_str()), (409, "conflict"));
    // ...and the retired identity is still there, still retired, and still denied.
    assert_eq!(c.identity(&reader).await.unwrap()["state"], "retired");
    let d = c
        .authorize(&read_req("spiffe://warrant.local/prod/summarizer", 10))
        .await
        .unwrap();
    assert_eq!(d["decision"], "deny", "{d}");
    decided.push((seq_of(&d), format!("identity:{reader}"), "deny"));

    // No sequence number was handed out twice.
    let mut seqs: Vec<u64> = decided.iter().map(|d| d.0).collect();
    seqs.sort_unstable();
    let n = seqs.len();
    seqs.dedup();
    assert_eq!(seqs.len(), n, "an audit seq was acknowledged twice");

    // The log verifies offline (while the server runs).
    assert_verifies(dir.path());

    // The audit list shows every decision with the right actor and subject.
    let records = all_records(&c, Some("decision")).await;
    let by_seq: HashMap<u64, &Value> = records
        .iter()
        .map(|r| (r["seq"].as_u64().unwrap(), r))
        .collect();
    assert_eq!(
        records.len(),
        decided.len(),
        "decision records vs decisions"
    );
    for (seq, subject, verdict) in &decided {
        let r = by_seq
            .get(seq)
            .unwrap_or_else(|| panic!("decision {seq} not in the audit list"));
        assert_eq!(r["kind"], "decision", "{r}");
        assert_eq!(r["actor"], "admin:tok_env", "{r}");
        assert_eq!(r["subject"], subject.as_str(), "{r}");
        assert_eq!(r["payload"]["decision"], *verdict, "{r}");
    }
    // The subject filter finds only that identity's records.
    let page = c
        .audit(&[
            ("kind", Some("decision".into())),
            ("subject", Some(format!("identity:{staging}"))),
        ])
        .await
        .unwrap();
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{page}");
    assert!(items
        .iter()
        .all(|r| r["subject"] == format!("identity:{staging}").as_str()));
    // The lifecycle changes are in the log too, with their reasons.
    let suspended = all_records(&c, Some("identity.suspended")).await;
    assert_eq!(suspended.len(), 1);
    assert_eq!(suspended[0]["payload"]["reason"], "incident 42");
    assert_eq!(
        suspended[0]["subject"],
        format!("identity:{reader}").as_str()
    );
    assert_eq!(all_records(&c, Some("identity.retired")).await.len(), 1);
    assert_eq!(all_records(&c, Some("identity.created")).await.len(), 3);
    assert_eq!(all_records(&c, Some("policy.updated")).await.len(), 1);
    // One record per seq, no gap.
    let everything = all_records(&c, None).await;
    for (i, r) in everything.iter().enumerate() {
        assert_eq!(r["seq"].as_u64(), Some(i as u64), "{r}");
    }

    // Inclusion proof through the CLI (it makes a checkpoint when needed).
    let first = decided[0].0.to_string();
    let o = cli(Some(&server), &["audit", "proof", &first]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("inclusion verified locally: yes"),
        "{}",
        stdout(&o)
    );
    let last = decided.last().unwrap().0.to_string();
    let o = cli(Some(&server), &["audit", "proof", &last, "-o", "json"]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let proof: Value = serde_json::from_str(&stdout(&o)).expect("proof JSON");
    assert_eq!(proof["record"]["seq"].as_u64(), decided.last().map(|d| d.0));
    assert!(proof["checkpoint"]["size"].as_u64().unwrap() > decided.last().unwrap().0);
    // No such record.
    let o = cli(Some(&server), &["audit", "proof", "999999"]);
    assert!(!o.status.success());
}

#[tokio::test]
async fn restart_keeps_state_and_continues_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let c = server.client();
    let reader = create_identity(&c, "reader-a", "prod", &["reader"]).await;
    let other = create_identity(&c, "other-b", "dev", &[]).await;
    c.lifecycle(&other, "suspend", Some("paused"))
        .await
        .unwrap();
    c.put_policy(Some(SCHEMA), POLICIES, Some("v1"))
        .await
        .unwrap();
    // Version 2 tightens reading to risk < 20: risk 30 is allowed by v1, denied by v2.
    let v2 = POLICIES.replace("context.risk < 50", "context.risk < 20");
    let p2 = c.put_policy(None, &v2, Some("v2")).await.unwrap();
    assert_eq!(p2["version"], 2);

    let requests = [
        read_req(&reader, 10),
        read_req(&reader, 30),
        write_req(&reader),
        read_req(&other, 10),
        read_req("idn_unknown", 10),
    ];
    let mut before = Vec::new();
    for r in &requests {
        before.push(c.authorize(r).await.unwrap());
    }
    assert_eq!(before[0]["decision"], "allow");
    assert_eq!(before[1]["decision"], "deny", "v2 must be in force");
    let identities_before = vec![
        c.identity(&reader).await.unwrap(),
        c.identity(&other).await.unwrap(),
    ];
    let policy_before = c.policy().await.unwrap();
    let records_before = all_records(&c, None).await;
    let max_before = records_before.last().unwrap()["seq"].as_u64().unwrap();

    let log = server.stop();
    assert!(!log.contains("panicked"), "{log}");
    assert_verifies(dir.path());
    // A clean stop signs a final checkpoint covering the whole log.
    let (head, cp) = head_and_last_checkpoint(&server.data_dir).await;
    assert_eq!(head, max_before + 1);
    assert_eq!(cp, head, "no final checkpoint at shutdown");

    let server = Server::start(dir.path());
    let c = server.client();
    assert_eq!(
        vec![
            c.identity(&reader).await.unwrap(),
            c.identity(&other).await.unwrap(),
        ],
        identities_before
    );
    let policy_after = c.policy().await.unwrap();
    assert_eq!(policy_after["version"], 2);
    assert_eq!(policy_after, policy_before);
    let list = c.list_identities(&[]).await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 2);

    // The old records are exactly as they were.
    let records_after = all_records(&c, None).await;
    assert_eq!(&records_after[..records_before.len()], &records_before[..]);

    // Same decisions, new (strictly later) audit records.
    let mut last_seq = max_before;
    for (r, old) in requests.iter().zip(&before) {
        let d = c.authorize(r).await.unwrap();
        for k in [
            "decision",
            "reason",
            "determining_policies",
            "policy_version",
            "principal",
        ] {
            assert_eq!(d[k], old[k], "{k} changed across the restart for {r}");
        }
        let seq = seq_of(&d);
        assert!(
            seq > last_seq,
            "seq {seq} after {last_seq}: the log must not reset"
        );
        last_seq = seq;
        let rec = c
            .get(&format!("/v1/audit/records/{seq}"))
            .await
            .expect("record of a new decision");
        assert_eq!(rec["kind"], "decision");
    }
    // The restart itself is in the log.
    let starts = all_records(&c, Some("system")).await;
    assert!(starts.len() >= 2, "{starts:?}");
    let all = all_records(&c, None).await;
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r["seq"].as_u64(), Some(i as u64));
    }
    drop(c);
    let mut server = server;
    server.stop();
    assert_verifies(dir.path());
}

#[tokio::test]
async fn invalid_policy_is_refused_and_the_version_in_force_stays() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let c = server.client();
    let reader = create_identity(&c, "reader", "prod", &["reader"]).await;
    c.put_policy(Some(SCHEMA), POLICIES, None).await.unwrap();
    let before = c.policy().await.unwrap();
    assert_eq!(before["version"], 1);
    assert_eq!(
        c.authorize(&read_req(&reader, 10)).await.unwrap()["decision"],
        "allow"
    );

    // A syntax error on line 3 of the policies.
    let broken =
        "@id(\"a\")\npermit (principal, action, resource);\npermit (principal action, resource);\n";
    let (status, code, details) = api_err(c.put_policy(None, broken, None).await);
    assert_eq!((status, code.as_str()), (400, "invalid_policy"));
    let details = details.expect("details");
    let ds = details.as_array().expect("details array");
    assert!(!ds.is_empty());
    let d = &ds[0];
    assert_eq!(d["source"], "policies", "{details}");
    assert_eq!(d["line"], 3, "{details}");
    assert!(d["column"].as_u64().is_some_and(|c| c >= 1), "{details}");
    assert!(d["message"].as_str().is_some_and(|m| !m.is_empty()));

    // A type error against the schema (an attribute the context does not have).
    let typo = POLICIES.replace("context.risk < 50", "context.rsik < 50");
    let (status, code, details) = api_err(c.put_policy(None, &typo, None).await);
    assert_eq!((status, code.as_str()), (400, "invalid_policy"));
    let details = details.expect("details");
    let d = &details[0];
    let line = typo
        .lines()
        .position(|l| l.contains("rsik"))
        .map(|i| i as u64 + 1);
    assert_eq!(d["line"].as_u64(), line, "{details}");
    assert!(d["column"].as_u64().is_some(), "{details}");

    // An invalid schema.
    let (status, code, details) = api_err(
        c.put_policy(
            Some("namespace App { entity Doc = { x: Strin }; }"),
            POLICIES,
            None,
        )
        .await,
    );
    assert_eq!((status, code.as_str()), (400, "invalid_policy"));
    assert!(details.is_some());

    // Nothing changed.
    let after = c.policy().await.unwrap();
    assert_eq!(after, before);
    let hist = c.get("/v1/policies/versions").await.unwrap();
    assert_eq!(hist.as_array().unwrap().len(), 1, "{hist}");
    let d = c.authorize(&read_req(&reader, 10)).await.unwrap();
    assert_eq!(d["decision"], "allow", "{d}");
    assert_eq!(d["policy_version"], 1);
    assert_eq!(all_records(&c, Some("policy.updated")).await.len(), 1);
}

fn json_out(o: &std::process::Output) -> Value {
    assert!(
        o.status.success(),
        "exit {:?}\n{}\n{}",
        o.status.code(),
        stdout(o),
        stderr(o)
    );
    serde_json::from_str(&stdout(o))
        .unwrap_or_else(|e| panic!("-o json output is not JSON ({e}): {}", stdout(o)))
}

#[tokio::test]
async fn cli_commands() {
    let dir = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let schema = files.path().join("schema.cedarschema");
    let policies = files.path().join("policies.cedar");
    let bad = files.path().join("bad.cedar");
    std::fs::write(&schema, SCHEMA).unwrap();
    std::fs::write(&policies, POLICIES).unwrap();
    // A type error: `risk` is a Long.
    let bad_text = POLICIES.replace("context.risk < 50", "context.risk < \"high\"");
    std::fs::write(&bad, &bad_text).unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_owned();

    // Offline validation: no server needed.
    let o = cli(
        None,
        &["policy", "validate", &s(&policies), "--schema", &s(&schema)],
    );
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("readers-read"), "{}", stdout(&o));
    let o = cli(
        None,
        &["policy", "validate", &s(&bad), "--schema", &s(&schema)],
    );
    assert!(
        !o.status.success(),
        "invalid policy validated: {}",
        stdout(&o)
    );
    let err = stderr(&o);
    let bad_line = bad_text
        .lines()
        .position(|l| l.contains("\"high\""))
        .unwrap()
        + 1;
    let prefix = format!("{}:{bad_line}:", s(&bad));
    let pos = err
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no `{prefix}COL` in stderr:\n{err}"));
    let col: String = pos.chars().take_while(char::is_ascii_digit).collect();
    assert!(!col.is_empty(), "no column after `{prefix}`:\n{err}");
    // Syntax-only validation and a syntax error.
    std::fs::write(&bad, "permit (principal, action resource);").unwrap();
    let o = cli(None, &["policy", "validate", &s(&bad)]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(&format!("{}:1:", s(&bad))),
        "{}",
        stderr(&o)
    );

    // Agents.
    let o = cli(
        Some(&server),
        &[
            "agent",
            "create",
            "--name",
            "cli-bot",
            "--kind",
            "ai_tool",
            "--env",
            "prod",
            "--owner",
            "carol@example.com",
            "--role",
            "reader",
            "--entitlement",
            "docs:write",
            "-o",
            "json",
        ],
    );
    let created = json_out(&o);
    let id = created["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("idn_"), "{created}");
    assert_eq!(created["spiffe_id"], "spiffe://warrant.local/prod/cli-bot");
    assert_eq!(created["roles"], json!(["reader"]));
    // Table output mentions the id.
    let o = cli(
        Some(&server),
        &[
            "agent",
            "create",
            "--name",
            "cli-bot-2",
            "--kind",
            "agent",
            "--env",
            "dev",
            "--owner",
            "carol@example.com",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("cli-bot-2"), "{}", stdout(&o));
    // A duplicate is refused with a non-zero exit.
    let o = cli(
        Some(&server),
        &[
            "agent",
            "create",
            "--name",
            "cli-bot",
            "--kind",
            "ai_tool",
            "--env",
            "prod",
            "--owner",
            "carol@example.com",
        ],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("409"), "{}", stderr(&o));

    let list = json_out(&cli(Some(&server), &["agent", "list", "-o", "json"]));
    assert_eq!(list["items"].as_array().unwrap().len(), 2, "{list}");
    let list = json_out(&cli(
        Some(&server),
        &["agent", "list", "--env", "prod", "-o", "json"],
    ));
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["items"][0]["id"], id.as_str());
    let o = cli(Some(&server), &["agent", "list"]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("cli-bot"), "{}", stdout(&o));

    let shown = json_out(&cli(Some(&server), &["agent", "show", &id, "-o", "json"]));
    assert_eq!(shown["id"], id.as_str());
    assert_eq!(shown["owner"], "carol@example.com");
    let o = cli(Some(&server), &["agent", "show", &id]);
    assert!(o.status.success());
    assert!(stdout(&o).contains(&id), "{}", stdout(&o));
    let o = cli(Some(&server), &["agent", "show", "idn_nope"]);
    assert!(!o.status.success());

    // Policies through the CLI.
    let o = cli(
        Some(&server),
        &[
            "policy",
            "push",
            "--policies",
            &s(&policies),
            "--schema",
            &s(&schema),
            "--comment",
            "from the CLI",
        ],
    );
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("policy version 1"), "{}", stdout(&o));
    let shown = json_out(&cli(Some(&server), &["policy", "show", "-o", "json"]));
    assert_eq!(shown["version"], 1);
    assert_eq!(shown["comment"], "from the CLI");
    // Pushing an invalid policy fails and prints the position.
    std::fs::write(&bad, &bad_text).unwrap();
    let o = cli(Some(&server), &["policy", "push", "--policies", &s(&bad)]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(&format!("policies:{bad_line}:")),
        "{}",
        stderr(&o)
    );
    assert_eq!(server.client().policy().await.unwrap()["version"], 1);

    // Decisions: exit 0 allow, 3 deny.
    let authz = |principal: &str, action: &str, risk: i64, json: bool| {
        let ctx = format!("{{\"risk\": {risk}}}");
        let action = format!("App::Action::\"{action}\"");
        let mut args = vec![
            "authorize",
            "--principal",
            principal,
            "--action",
            &action,
            "--resource",
            "App::Document::\"q3\"",
            "--context",
            &ctx,
        ];
        if json {
            args.extend(["-o", "json"]);
        }
        cli(Some(&server), &args)
    };
    let o = authz(&id, "read", 10, false);
    assert_eq!(o.status.code(), Some(0), "{}\n{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).starts_with("ALLOW"), "{}", stdout(&o));
    assert!(stdout(&o).contains("readers-read"), "{}", stdout(&o));
    let o = authz(&id, "read", 90, false);
    assert_eq!(o.status.code(), Some(3), "{}\n{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).starts_with("DENY"), "{}", stdout(&o));
    let o = authz(&id, "write", 1, true);
    assert_eq!(o.status.code(), Some(3), "{}\n{}", stdout(&o), stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).expect("authorize -o json");
    assert_eq!(v["decision"], "deny");
    assert_eq!(v["determining_policies"][0]["id"], "no-prod-writes-by-ai");
    let o = authz("spiffe://warrant.local/prod/cli-bot", "read", 10, true);
    assert_eq!(o.status.code(), Some(0));
    let v: Value = serde_json::from_str(&stdout(&o)).expect("authorize -o json");
    assert_eq!(v["decision"], "allow");
    assert!(v["audit_seq"].as_u64().is_some());
    // Malformed: neither allow nor deny.
    let o = cli(
        Some(&server),
        &[
            "authorize",
            "--principal",
            &id,
            "--action",
            "App::Action::\"read\"",
            "--resource",
            "App::Document::\"q3\"",
            "--context",
            "not json",
        ],
    );
    assert!(!o.status.success() && o.status.code() != Some(3));

    // Kill switch through the CLI.
    let v = json_out(&cli(
        Some(&server),
        &[
            "agent", "suspend", &id, "--reason", "cli test", "-o", "json",
        ],
    ));
    assert_eq!(v["state"], "suspended");
    let o = authz(&id, "read", 10, false);
    assert_eq!(o.status.code(), Some(3), "{}", stdout(&o));
    assert!(stdout(&o).contains("suspended"), "{}", stdout(&o));
    let v = json_out(&cli(Some(&server), &["agent", "resume", &id, "-o", "json"]));
    assert_eq!(v["state"], "active");
    assert_eq!(authz(&id, "read", 10, false).status.code(), Some(0));

    // Audit tail as JSON.
    let v = json_out(&cli(
        Some(&server),
        &[
            "audit", "tail", "-n", "5", "--kind", "decision", "-o", "json",
        ],
    ));
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 5);
    assert!(items.iter().all(|r| r["kind"] == "decision"));

    // Without a token the CLI fails with a non-zero status.
    let o = std::process::Command::new(bin())
        .args(["agent", "list", "--server", &server.url])
        .env_remove("WARRANT_TOKEN")
        .env_remove("WARRANT_SERVER")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("401"), "{}", stderr(&o));
}

/// Every route under /v1 that needs a token: (method, path, body).
fn protected_routes() -> Vec<(reqwest::Method, &'static str, Option<Value>)> {
    use reqwest::Method;
    let b = Some(json!({}));
    vec![
        (Method::GET, "/v1/identities", None),
        (Method::POST, "/v1/identities", b.clone()),
        (Method::GET, "/v1/identities/idn_x", None),
        (Method::PATCH, "/v1/identities/idn_x", b.clone()),
        (Method::POST, "/v1/identities/idn_x/suspend", None),
        (Method::POST, "/v1/identities/idn_x/resume", None),
        (Method::POST, "/v1/identities/idn_x/retire", None),
        (Method::GET, "/v1/policies", None),
        (Method::PUT, "/v1/policies", b.clone()),
        (Method::POST, "/v1/policies/validate", b.clone()),
        (Method::GET, "/v1/policies/versions", None),
        (Method::GET, "/v1/policies/versions/1", None),
        (Method::POST, "/v1/authorize", b.clone()),
        (Method::POST, "/v1/authorize/batch", b.clone()),
        (Method::GET, "/v1/audit", None),
        (Method::GET, "/v1/audit/records/0", None),
        (Method::GET, "/v1/audit/proof/0", None),
        (Method::GET, "/v1/audit/checkpoints", None),
        (Method::POST, "/v1/audit/checkpoints", None),
    ]
}

async fn assert_all_refused(url: &str, token: Option<&str>) {
    let http = reqwest::Client::new();
    for (method, path, body) in protected_routes() {
        let mut req = http.request(method.clone(), format!("{url}{path}"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = &body {
            req = req.json(b);
        }
        let res = req.send().await.expect("send");
        assert_eq!(
            res.status().as_u16(),
            401,
            "{method} {path} with token {token:?}"
        );
        assert!(
            res.headers().contains_key("www-authenticate"),
            "{method} {path}: no WWW-Authenticate"
        );
        let v: Value = res.json().await.expect("JSON error body");
        assert_eq!(v["error"], "unauthorized", "{method} {path}: {v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
}

/// Reads the server's stderr (drained by the harness) until the bootstrap token shows up.
fn read_bootstrap_token(server: &mut Server) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = server.log.lock().unwrap().clone();
        if let Some(tok) = seen
            .split_whitespace()
            .find(|w| w.starts_with("wrt_") && !w.contains('='))
        {
            return tok.to_owned();
        }
        if Instant::now() > deadline {
            panic!("no bootstrap token on stderr:\n{seen}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn bootstrap_token_is_shown_once_and_works() {
    let dir = tempfile::tempdir().unwrap();
    let no_token = || Options {
        admin_token: None,
        extra_args: vec![],
    };
    let mut server = Server::start_with(dir.path(), no_token());
    let token = read_bootstrap_token(&mut server);
    assert!(token.len() > 40, "short token `{token}`");

    // The token works.
    let c = Client::new(&server.url, Some(token.clone())).unwrap();
    let id = create_identity(&c, "boot", "prod", &["reader"]).await;
    c.put_policy(Some(SCHEMA), POLICIES, None).await.unwrap();
    let d = c.authorize(&read_req(&id, 1)).await.unwrap();
    assert_eq!(d["decision"], "allow");
    let r = c
        .get(&format!("/v1/audit/records/{}", seq_of(&d)))
        .await
        .unwrap();
    assert_eq!(r["actor"], "admin:tok_bootstrap");

    // Nothing under /v1 works without a token, or with a wrong one.
    assert_all_refused(&server.url, None).await;
    assert_all_refused(
        &server.url,
        Some("wrt_wrongwrongwrongwrongwrongwrongwrongwrong"),
    )
    .await;
    assert_all_refused(&server.url, Some(ADMIN_TOKEN)).await;
    let anon = server.anonymous();
    let (status, code, _) = api_err(anon.list_identities(&[]).await);
    assert_eq!((status, code.as_str()), (401, "unauthorized"));
    // The checkpoint public key is deliberately public (verifiers pin it).
    let pk = anon.get("/v1/audit/public-key").await.unwrap();
    assert_eq!(pk["algorithm"], "Ed25519");
    server.stop();

    // A second start does not print a new token; the first one still works.
    let mut server = Server::start_with(dir.path(), no_token());
    let c = Client::new(&server.url, Some(token.clone())).unwrap();
    assert_eq!(c.identity(&id).await.unwrap()["name"], "boot");
    let records = all_records(&c, None).await;
    assert_eq!(
        all_records(&c, Some("token.created")).await.len(),
        1,
        "only one token was ever created"
    );
    // The token's secret is in no audit record.
    for r in &records {
        let text = r.to_string();
        assert!(!text.contains(&token), "token leaked into record {text}");
        assert!(
            !text.contains(&token["wrt_".len()..]),
            "token leaked: {text}"
        );
    }
    let err = server.stop();
    assert!(!err.contains("wrt_"), "token printed again:\n{err}");
    assert!(!err.contains("bootstrap admin token"), "{err}");

    // Nor anywhere in the data directory's files.
    for entry in walk(dir.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
            "token found in {}",
            entry.display()
        );
    }
    assert_verifies(dir.path());
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn env_admin_token_is_required_and_wrong_tokens_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    assert_all_refused(&server.url, None).await;
    assert_all_refused(
        &server.url,
        Some("wrt_test_admin_token_0123456789abcdefghijklmnoX"),
    )
    .await;
    // Not a bearer token at all.
    let res = reqwest::Client::new()
        .get(format!("{}/v1/identities", server.url))
        .header("Authorization", format!("Basic {ADMIN_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 401);
    // With a token set, no bootstrap token is generated.
    let err = server.stop();
    assert!(!err.contains("bootstrap admin token"), "{err}");
    // The env token's secret never reaches the log.
    let server = Server::start(dir.path());
    for r in all_records(&server.client(), None).await {
        assert!(!r.to_string().contains(ADMIN_TOKEN), "{r}");
    }
}

/// (audit head size, size of the largest checkpoint), read from the database.
async fn head_and_last_checkpoint(data_dir: &Path) -> (u64, u64) {
    // (`$1 = $1` only gives the one-parameter helper its parameter.)
    let head = db_scalar(data_dir, "SELECT size FROM audit_head WHERE $1 = $1", "")
        .await
        .unwrap();
    let cp = db_scalar(
        data_dir,
        "SELECT MAX(size) FROM checkpoints WHERE $1 = $1",
        "",
    )
    .await;
    (head as u64, cp.unwrap_or(0) as u64)
}

async fn db_last_used(data_dir: &Path, id: &str) -> Option<i64> {
    db_scalar(
        data_dir,
        "SELECT last_used_ms FROM identities WHERE id = $1",
        id,
    )
    .await
}

#[tokio::test]
async fn last_used_at_is_tracked_and_flushed() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let c = server.client();
    let used = create_identity(&c, "used", "prod", &["reader"]).await;
    let idle = create_identity(&c, "idle", "prod", &["reader"]).await;
    let flushed = create_identity(&c, "flushed", "prod", &["reader"]).await;
    c.put_policy(Some(SCHEMA), POLICIES, None).await.unwrap();
    assert!(c.identity(&used).await.unwrap()["last_used_at"].is_null());

    // The periodic flush (every 10 s) writes it to the store without a stop.
    c.authorize(&read_req(&flushed, 1)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(25);
    while db_last_used(&server.data_dir, &flushed).await.is_none() {
        assert!(
            Instant::now() < deadline,
            "last_used_ms not flushed to the store within 25 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Shown immediately after a decision, even a denied one, from memory.
    c.authorize(&write_req(&used)).await.unwrap();
    let shown = c.identity(&used).await.unwrap();
    let at = shown["last_used_at"]
        .as_str()
        .unwrap_or_else(|| panic!("last_used_at not set: {shown}"))
        .to_owned();
    assert!(at.ends_with('Z'), "{at}");
    assert!(c.identity(&idle).await.unwrap()["last_used_at"].is_null());
    // Also in the list view.
    let list = c.list_identities(&[]).await.unwrap();
    let item = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == used.as_str())
        .unwrap()
        .clone();
    assert_eq!(item["last_used_at"], at.as_str());

    // A clean stop flushes it; after a restart it is still there.
    server.stop();
    assert!(db_last_used(&server.data_dir, &used).await.is_some());
    assert!(db_last_used(&server.data_dir, &idle).await.is_none());
    let server = Server::start(dir.path());
    let c = server.client();
    assert_eq!(
        c.identity(&used).await.unwrap()["last_used_at"],
        at.as_str()
    );
    assert!(c.identity(&idle).await.unwrap()["last_used_at"].is_null());
}
