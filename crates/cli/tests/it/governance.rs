//! Tiered change governance end to end against the real binary (see issue 5).
//!
//! AI tools propose with real access tokens (an Ed25519 workload key registered for the
//! AI identity, `private_key_jwt` at the token endpoint, scope `warrant:propose`, audience
//! = the server's issuer, permitted by the Cedar access policy); named humans decide with
//! API tokens issued to them. Webhooks (notifications, connector calls) go to a tiny HTTP
//! receiver in the test process. Every server runs from a config file with a fixed issuer
//! and a `[governance]` table (short windows, `tick_ms = 100`), on SQLite or, unchanged,
//! on PostgreSQL (`WARRANT_IT_BACKEND=postgres`).

use super::harness::*;
use base64::Engine as _;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The issuer of every server here (fixed, so it survives restarts on new ports).
const ISSUER: &str = "https://warrant.it.example";

/// A resource service's schema: reading buckets.
const DATA_SCHEMA: &str = r#"
namespace Data {
  entity Bucket;
  action read appliesTo {
    principal: [Warrant::Identity],
    resource: [Bucket],
    context: {}
  };
}
"#;

/// AI tools may hold `warrant:propose` for warrant itself; bucket-a is read by holders of
/// the `s3:bucket-a:read` entitlement.
const ACCESS_POLICIES: &str = r#"
@id("ai-tools-may-propose")
@reason("AI tools may ask warrant for tokens to submit proposals")
permit (principal, action == Warrant::Action::"request_scope", resource == Warrant::Scope::"warrant:propose")
when { principal.kind == "ai_tool" && context.audience == "https://warrant.it.example" };

@id("bucket-a-readers")
@reason("holders of s3:bucket-a:read may read bucket-a")
permit (principal, action == Data::Action::"read", resource == Data::Bucket::"bucket-a")
when { principal.entitlements.contains("s3:bucket-a:read") };
"#;

const JUSTIFICATION: &str =
    "Quarterly access reconciliation: unused for 60 days, confirmed with the data team";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap_or_else(|e| panic!("not base64url ({e}): {s}"))
}

// ---------------------------------------------------------------------------------------
// A webhook receiver: raw HTTP/1.1 over a tokio listener.

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    /// Lowercased names.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// The status it was answered with.
    answered: u16,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

struct Hook {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Hook {
    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived.
    async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "the receiver got {} of {n} requests: {got:?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A receiver answering its n-th request with `script[n]`, and `then` after the script.
async fn hook(script: Vec<u16>, then: u16) -> Hook {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got: Arc<Mutex<Vec<Received>>> = Arc::default();
    let sink = got.clone();
    let next = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let (sink, next, script) = (sink.clone(), next.clone(), script.clone());
            tokio::spawn(async move {
                let Some((headers, body)) = read_request(&mut sock).await else {
                    return;
                };
                let n = next.fetch_add(1, Ordering::SeqCst);
                let status = script.get(n).copied().unwrap_or(then);
                sink.lock().unwrap().push(Received {
                    headers,
                    body,
                    answered: status,
                });
                let reply = format!(
                    "HTTP/1.1 {status} Scripted\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = sock.write_all(reply.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    Hook { url, got }
}

async fn read_request(
    sock: &mut tokio::net::TcpStream,
) -> Option<(Vec<(String, String)>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(chunk.get(..n)?);
    };
    let head = String::from_utf8_lossy(buf.get(..end)?).into_owned();
    let headers: Vec<(String, String)> = head
        .split("\r\n")
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf.get(end + 4..)?.to_vec();
    while body.len() < len {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(chunk.get(..n)?);
    }
    body.truncate(len);
    Some((headers, body))
}

/// Verifies a `Warrant-Signature` (detached JWS, `header..signature`) over `body` with the
/// server's JWKS, as a receiver would. Returns the JWS header.
fn verify_signature(jwks: &Value, signature: &str, body: &[u8]) -> Value {
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};
    let (header_b64, sig_b64) = signature
        .split_once("..")
        .unwrap_or_else(|| panic!("not a detached JWS: {signature}"));
    let header: Value = serde_json::from_slice(&unb64(header_b64)).unwrap();
    assert_eq!(header["alg"], "EdDSA", "{header}");
    let kid = header["kid"].as_str().expect("kid in the JWS header");
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
        .unwrap_or_else(|| panic!("kid `{kid}` is not in the JWKS: {jwks}"));
    assert_eq!(
        (jwk["kty"].as_str(), jwk["crv"].as_str()),
        (Some("OKP"), Some("Ed25519"))
    );
    let x: [u8; 32] = unb64(jwk["x"].as_str().unwrap()).try_into().unwrap();
    let key = VerifyingKey::from_bytes(&x).unwrap();
    let sig = Signature::from_slice(&unb64(sig_b64)).unwrap();
    let input = format!("{header_b64}.{}", b64(body));
    key.verify(input.as_bytes(), &sig)
        .unwrap_or_else(|e| panic!("the signature does not verify: {e}"));
    // And it covers the body: one changed byte fails.
    let mut tampered = body.to_vec();
    tampered.push(b' ');
    let input = format!("{header_b64}.{}", b64(&tampered));
    assert!(key.verify(input.as_bytes(), &sig).is_err());
    header
}

// ---------------------------------------------------------------------------------------
// A server from a config file, and the parties acting on it.

struct Env {
    server: Server,
    config: PathBuf,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// An AI identity with a registered workload key and an access token for warrant.
struct Agent {
    id: String,
    token: String,
}

impl Env {
    /// Starts a server whose config file carries `governance` (lines of the `[governance]`
    /// table, sub-tables last) and installs the access policies.
    async fn start(governance: &str) -> Env {
        // Tier 2 needs somewhere to notify the reviewer (else it is escalated to Tier 3):
        // tests that do not watch notifications get a default that nobody answers.
        let default_notify = if governance.contains("notify_url") {
            ""
        } else {
            "notify_url = \"http://127.0.0.1:9/warrant-it-unwatched\"\n"
        };
        let governance = format!("{default_notify}{governance}");
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("warrant.toml");
        std::fs::write(
            &config,
            format!(
                "version = 1\nissuer = \"{ISSUER}\"\n\n[governance]\ntick_ms = 100\n{governance}\n"
            ),
        )
        .unwrap();
        let server = Server::start_with(
            dir.path(),
            Options {
                extra_args: vec!["--config".into(), config.to_string_lossy().into_owned()],
                ..Options::default()
            },
        );
        let env = Env {
            server,
            config,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            _dir: dir,
        };
        env.admin(
            "PUT",
            "/v1/policies",
            json!({ "schema": DATA_SCHEMA, "policies": ACCESS_POLICIES, "comment": "governance it" }),
        )
        .await;
        env
    }

    /// Stops the server (SIGKILL when `kill`, else SIGTERM) and starts it again on the same
    /// data directory and config file.
    fn restart(&mut self, kill: bool) {
        if kill {
            self.server.kill();
        } else {
            self.server.stop();
        }
        let dir = self.server.data_dir.clone();
        self.server = Server::start_with(
            &dir,
            Options {
                extra_args: vec![
                    "--config".into(),
                    self.config.to_string_lossy().into_owned(),
                ],
                ..Options::default()
            },
        );
    }

    async fn call(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.server.url))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn admin(&self, method: &str, path: &str, body: Value) -> Value {
        let body = (!body.is_null()).then_some(body);
        let (s, b) = self.call(ADMIN_TOKEN, method, path, body).await;
        assert!((200..300).contains(&s), "{method} {path}: {s} {b}");
        b
    }

    async fn get(&self, path: &str) -> Value {
        self.admin("GET", path, Value::Null).await
    }

    /// An API token for a named human holding `role` (granted first: see
    /// [`human_token`]).
    async fn human(&self, human: &str, role: &str) -> String {
        human_token(&self.server.url, human, role).await.1
    }

    async fn identity(
        &self,
        name: &str,
        kind: &str,
        owner: &str,
        roles: &[&str],
        entitlements: &[&str],
    ) -> String {
        let b = self
            .admin(
                "POST",
                "/v1/identities",
                json!({ "name": name, "kind": kind, "environment": "prod", "owner": owner,
                        "roles": roles, "entitlements": entitlements }),
            )
            .await;
        b["id"].as_str().unwrap().to_owned()
    }

    /// Registers an AI tool, gives it an Ed25519 key and gets it an access token for warrant
    /// (`private_key_jwt`, scope `warrant:propose`, audience = the issuer).
    async fn agent(&self, name: &str, owner: &str) -> Agent {
        let id = self.identity(name, "ai_tool", owner, &[], &[]).await;
        let token = propose_token(&self.server.url, &id, ISSUER).await;
        Agent { id, token }
    }

    async fn declare(&self, id: &str, body: Value) -> Value {
        self.admin("PUT", &format!("/v1/capabilities/{id}"), body)
            .await
    }

    async fn accept(&self, capability: &str, owner_token: &str) {
        let (s, b) = self
            .call(
                owner_token,
                "POST",
                &format!("/v1/capabilities/{capability}/accept"),
                Some(json!({})),
            )
            .await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["autonomy"], "tiered", "{b}");
    }

    /// Submits a proposal; returns the status and the body.
    async fn propose(&self, agent: &Agent, body: Value) -> (u16, Value) {
        self.call(&agent.token, "POST", "/v1/proposals", Some(body))
            .await
    }

    /// Submits a proposal that must be accepted; returns the proposal.
    async fn proposed(&self, agent: &Agent, body: Value) -> Value {
        let (s, b) = self.propose(agent, body).await;
        assert_eq!(s, 201, "{b}");
        b["proposal"].clone()
    }

    async fn proposal(&self, id: &str) -> Value {
        self.get(&format!("/v1/proposals/{id}")).await["proposal"].clone()
    }

    async fn wait_state(&self, id: &str, state: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let p = self.proposal(id).await;
            if p["state"] == state {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "proposal {id} did not become {state}: {p}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Audit records matching the query, oldest first.
    async fn audit(&self, query: &[(&str, &str)]) -> Vec<Value> {
        let mut q: Vec<(&str, &str)> = query.to_vec();
        q.push(("limit", "1000"));
        let res = self
            .http
            .get(format!("{}/v1/audit", self.server.url))
            .bearer_auth(ADMIN_TOKEN)
            .query(&q)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 200);
        let b: Value = res.json().await.unwrap();
        b["items"].as_array().unwrap().clone()
    }

    async fn records_of(&self, subject: &str) -> Vec<Value> {
        self.audit(&[("subject", subject)]).await
    }

    /// The `request.refused` record of `actor` for `method path`; fails when there is none.
    async fn refusal(&self, actor: &str, method: &str, path: &str) -> Value {
        let all = self
            .audit(&[("kind", "request.refused"), ("actor", actor)])
            .await;
        all.iter()
            .find(|r| r["payload"]["path"] == path && r["payload"]["method"] == method)
            .cloned()
            .unwrap_or_else(|| {
                panic!("no request.refused record of {actor} for {method} {path}: {all:?}")
            })
    }

    async fn direct(&self, identity: &str) -> (Vec<String>, Vec<String>) {
        let b = self.get(&format!("/v1/identities/{identity}")).await;
        (
            serde_json::from_value(b["entitlements"].clone()).unwrap(),
            serde_json::from_value(b["roles"].clone()).unwrap(),
        )
    }

    async fn reads_bucket_a(&self, identity: &str) -> String {
        let b = self
            .admin(
                "POST",
                "/v1/authorize",
                json!({ "principal": identity, "action": "Data::Action::\"read\"",
                        "resource": "Data::Bucket::\"bucket-a\"", "context": {} }),
            )
            .await;
        b["decision"].as_str().unwrap().to_owned()
    }

    async fn jwks(&self) -> Value {
        self.http
            .get(format!("{}/.well-known/jwks.json", self.server.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

fn revoke(capability: &str, identity: &str, entitlement: &str, confidence: f64) -> Value {
    json!({
        "capability": capability,
        "change": { "kind": "revoke_entitlement", "identity": identity, "entitlement": entitlement },
        "evidence": { "unused_days": 60, "source": "cloudtrail" },
        "rationale": format!("{entitlement} has not been used in 60 days"),
        "confidence": confidence,
    })
}

fn grant(capability: &str, identity: &str, entitlement: &str) -> Value {
    json!({
        "capability": capability,
        "change": { "kind": "grant_entitlement", "identity": identity, "entitlement": entitlement },
        "evidence": { "requests_denied": 14 },
        "rationale": format!("{identity} needs {entitlement} for the new pipeline"),
        "confidence": 0.9,
    })
}

fn with(mut body: Value, key: &str, v: Value) -> Value {
    body[key] = v;
    body
}

fn id_of(p: &Value) -> String {
    p["id"].as_str().unwrap().to_owned()
}

fn kinds(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| r["kind"].as_str().unwrap().to_owned())
        .collect()
}

fn record<'a>(records: &'a [Value], kind: &str) -> &'a Value {
    records
        .iter()
        .find(|r| r["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} record in {:?}", kinds(records)))
}

/// The common world of the refusal tests: an optimizer (AI tool, owned by alice, reviewed
/// by rita) whose capability alice accepted; a service account of bob's holding
/// `s3:bucket-a:read`; `s3:vault` restricted (a grant on it is Tier 3: no policy matches).
struct World {
    env: Env,
    optimizer: Agent,
    svc: String,
    alice: String,
    bob: String,
    carol: String,
}

async fn world(governance: &str) -> World {
    let env = Env::start(governance).await;
    let optimizer = env.agent("access-optimizer", "alice@example.com").await;
    let svc = env
        .identity(
            "data-eng-etl",
            "service_account",
            "bob@example.com",
            &[],
            &["s3:bucket-a:read"],
        )
        .await;
    env.admin(
        "PUT",
        "/v1/resources/s3:vault",
        json!({ "classification": "restricted" }),
    )
    .await;
    env.declare(
        "optimizer",
        json!({ "identity": optimizer.id, "owner": "alice@example.com", "reviewer": "rita@example.com",
                "kinds": ["grant_entitlement", "revoke_entitlement", "modify_role"],
                "max_blast_radius": 5 }),
    )
    .await;
    let alice = env.human("alice@example.com", "owner").await;
    let bob = env.human("bob@example.com", "owner").await;
    let carol = env.human("carol@example.com", "approver").await;
    env.accept("optimizer", &alice).await;
    World {
        env,
        optimizer,
        svc,
        alice,
        bob,
        carol,
    }
}

impl World {
    /// A Tier 3 grant of `s3:vault:read` to the service account.
    async fn tier3_grant(&self) -> Value {
        let p = self
            .env
            .proposed(
                &self.optimizer,
                grant("optimizer", &self.svc, "s3:vault:read"),
            )
            .await;
        assert_eq!(p["tier"]["tier"], 3, "{p}");
        assert_eq!(p["state"], "pending_approval", "{p}");
        p
    }

    async fn approve(&self, token: &str, id: &str, body: Value) -> (u16, Value) {
        self.env
            .call(
                token,
                "POST",
                &format!("/v1/proposals/{id}/approve"),
                Some(body),
            )
            .await
    }
}

fn decision(justification: &str, ticket: &str) -> Value {
    json!({ "justification": justification, "ticket": ticket })
}

// ---------------------------------------------------------------------------------------
// 1. The quarterly reconciliation.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarterly_reconciliation_is_approved_by_a_named_human_and_traced_by_one_query() {
    let inbox = hook(vec![], 200).await;
    let mut env = Env::start(&format!("notify_url = \"{}\"", inbox.url)).await;
    let optimizer = env.agent("access-optimizer", "alice@example.com").await;
    let svc = env
        .identity(
            "data-eng-etl",
            "service_account",
            "bob@example.com",
            &[],
            &["s3:bucket-a:read", "s3:bucket-b:read", "s3:logs:read"],
        )
        .await;
    for (resource, classification) in [("s3:bucket-a", "confidential"), ("s3:bucket-b", "internal")]
    {
        env.admin(
            "PUT",
            &format!("/v1/resources/{resource}"),
            json!({ "classification": classification, "description": "data engineering" }),
        )
        .await;
    }
    // The organisation's tier policies: the defaults, plus Tier 3 for confidential data.
    let policies = format!(
        "{}\n@id(\"tier3-confidential-data\")\n@tier(\"3\")\n@reason(\"changes to access on confidential or restricted data need an approver\")\npermit (principal, action == Tier::Action::\"assign\", resource)\nwhen {{ context.classification_rank >= 3 }};\n",
        warrant_policy::DEFAULT_TIER_POLICIES
    );
    let tp = env
        .admin(
            "PUT",
            "/v1/tier-policies",
            json!({ "policies": policies, "comment": "confidential data needs approval" }),
        )
        .await;
    assert_eq!(tp["version"], 1);
    assert!(tp["policy_ids"]
        .as_array()
        .unwrap()
        .contains(&json!("tier3-confidential-data")));
    env.declare(
        "right-sizing",
        json!({ "identity": optimizer.id, "owner": "alice@example.com",
                "description": "removes unused access", "kinds": ["revoke_entitlement"],
                "max_blast_radius": 5, "review_every_days": 90 }),
    )
    .await;
    let alice = env.human("alice@example.com", "owner").await;
    env.accept("right-sizing", &alice).await;
    assert_eq!(env.reads_bucket_a(&svc).await, "allow");

    let p = env
        .proposed(
            &optimizer,
            revoke("right-sizing", &svc, "s3:bucket-a:read", 0.93),
        )
        .await;
    let pid = id_of(&p);
    // warrant's own assessment and the policy that set the tier.
    assert_eq!(p["tier"]["tier"], 3, "{p}");
    assert_eq!(p["tier"]["policy_version"], 1);
    assert_eq!(
        p["tier"]["policies"][0]["policy"],
        "tier3-confidential-data"
    );
    assert_eq!(p["tier"]["defaulted"], false);
    assert_eq!(p["assessment"]["classification"], "confidential");
    assert_eq!(p["assessment"]["identities"], json!([svc]));
    assert_eq!(p["assessment"]["reversible"], true);
    assert_eq!(p["evidence"]["unused_days"], 60);
    assert_eq!(p["state"], "pending_approval");
    assert_eq!(p["notified"], json!(["alice@example.com"]));
    // Nothing changes before the approval.
    assert!(env
        .direct(&svc)
        .await
        .0
        .contains(&"s3:bucket-a:read".to_owned()));
    assert_eq!(env.reads_bucket_a(&svc).await, "allow");

    // The owner is notified (Slack-compatible, signed).
    let got = inbox.wait_for(1).await;
    let note = got[0].json();
    assert!(note["text"].as_str().unwrap().contains("Tier 3"), "{note}");
    assert_eq!(note["warrant"]["proposal"], pid.as_str());
    assert_eq!(note["warrant"]["tier"], 3);
    assert_eq!(note["warrant"]["notified"], json!(["alice@example.com"]));
    assert!(note["blocks"].is_array());
    verify_signature(
        &env.jwks().await,
        got[0].header("warrant-signature").unwrap(),
        &got[0].body,
    );

    // The owner approves with a justification and a change ticket: deciding proposals is
    // the `approver` role's, so she holds it too and decides with an approver token.
    let alice_approver = env.human("alice@example.com", "approver").await;
    let (s, b) = env
        .call(
            &alice_approver,
            "POST",
            &format!("/v1/proposals/{pid}/approve"),
            Some(decision(JUSTIFICATION, "CHG-1234")),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["proposal"]["state"], "executed", "{b}");
    assert_eq!(b["proposal"]["approvals"][0]["by"], "alice@example.com");
    let (direct, _) = env.direct(&svc).await;
    assert_eq!(direct, ["s3:bucket-b:read", "s3:logs:read"]);
    assert_eq!(env.reads_bucket_a(&svc).await, "deny");

    // "Three weeks later": the server has been restarted since; the log still answers.
    env.restart(false);
    let on_identity = env.records_of(&format!("identity:{svc}")).await;
    let change = on_identity
        .iter()
        .find(|r| {
            r["kind"] == "identity.updated"
                && r["payload"]["authorized_by"]["proposal"] == pid.as_str()
        })
        .unwrap_or_else(|| panic!("the identity's record names the proposal: {on_identity:?}"));
    assert_eq!(change["payload"]["change"], "revoke_entitlement");
    // One query on the identity answers "who approved this?": the named human, the
    // justification and the ticket are on the change record itself.
    let authorized = &change["payload"]["authorized_by"];
    assert_eq!(
        authorized["approvals"][0]["by"], "alice@example.com",
        "{change}"
    );
    assert_eq!(authorized["approvals"][0]["justification"], JUSTIFICATION);
    assert_eq!(authorized["approvals"][0]["ticket"], "CHG-1234");
    assert_eq!(authorized["tier"], 3);
    assert!(!change["payload"]["identity"]["entitlements"]
        .as_array()
        .unwrap()
        .contains(&json!("s3:bucket-a:read")));
    // One query on the proposal: the AI's recommendation, the human decision (who, why,
    // which ticket) and the execution.
    let trail = env.records_of(&format!("proposal:{pid}")).await;
    let k = kinds(&trail);
    for want in [
        "ai.recommendation",
        "human.decision",
        "execution",
        "notification.delivery",
    ] {
        assert!(k.iter().any(|x| x == want), "{want} missing: {k:?}");
    }
    let rec = record(&trail, "ai.recommendation");
    assert_eq!(rec["actor"], format!("identity:{}", optimizer.id));
    assert_eq!(rec["payload"]["evidence"]["unused_days"], 60);
    assert_eq!(rec["payload"]["tier"]["tier"], 3);
    let human = record(&trail, "human.decision");
    assert_eq!(human["actor"], "human:alice@example.com");
    assert_eq!(human["payload"]["action"], "approve");
    assert_eq!(human["payload"]["justification"], JUSTIFICATION);
    assert_eq!(human["payload"]["ticket"], "CHG-1234");
    let exec = record(&trail, "execution");
    assert_eq!(exec["payload"]["result"]["status"], "applied");
    assert!(human["seq"].as_u64() < exec["seq"].as_u64());
    assert!(exec["seq"].as_u64() <= change["seq"].as_u64());
    // The decision path agrees after the restart, and the log verifies offline.
    assert_eq!(env.reads_bucket_a(&svc).await, "deny");
    env.server.stop();
    let out = cli(
        None,
        &verify_args(&env.server.data_dir)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
}

// ---------------------------------------------------------------------------------------
// 2. A compounding migration chain.

#[tokio::test]
async fn compounding_chain_is_escalated_when_it_crosses_its_thresholds() {
    let env =
        Env::start("chain_max_blast = 3\nchain_max_length = 4\naggregate_target_max = 100").await;
    let migrator = env.agent("migration-planner", "alice@example.com").await;
    env.admin(
        "PUT",
        "/v1/roles/etl-readers",
        json!({ "entitlements": ["s3:bucket-c:read"] }),
    )
    .await;
    let svc = env
        .identity(
            "data-eng-etl",
            "service_account",
            "bob@example.com",
            &["etl-readers"],
            &["s3:bucket-a:read", "s3:bucket-b:read"],
        )
        .await;
    env.declare(
        "migration",
        json!({ "identity": migrator.id, "owner": "alice@example.com",
                "kinds": ["grant_entitlement", "revoke_entitlement", "modify_role", "modify_trust"],
                "max_blast_radius": 5 }),
    )
    .await;
    let alice = env.human("alice@example.com", "owner").await;
    env.accept("migration", &alice).await;

    // Each step alone is small and Tier 1/2 by policy.
    let s1 = env
        .proposed(
            &migrator,
            with(
                revoke("migration", &svc, "s3:bucket-a:read", 0.95),
                "correlation",
                json!("q3-migration"),
            ),
        )
        .await;
    assert_eq!(
        (s1["tier"]["tier"].clone(), s1["state"].clone()),
        (json!(1), json!("executed")),
        "{s1}"
    );
    assert_eq!(s1["correlation"], "q3-migration");
    let s2 = env
        .proposed(
            &migrator,
            with(
                grant("migration", &svc, "s3:bucket-x:read"),
                "parent",
                json!(id_of(&s1)),
            ),
        )
        .await;
    assert_eq!(
        (s2["tier"]["tier"].clone(), s2["state"].clone()),
        (json!(2), json!("in_review")),
        "{s2}"
    );
    assert_eq!(
        s2["correlation"], "q3-migration",
        "a child joins its parent's chain"
    );
    let s3 = env
        .proposed(
            &migrator,
            json!({ "capability": "migration", "correlation": "q3-migration",
                    "change": { "kind": "modify_role", "role": "etl-readers", "add": ["s3:bucket-y:read"] },
                    "rationale": "move the readers to the new bucket", "confidence": 0.9 }),
        )
        .await;
    assert_eq!(
        (s3["tier"]["tier"].clone(), s3["state"].clone()),
        (json!(2), json!("in_review")),
        "{s3}"
    );
    assert_eq!(s3["assessment"]["aggregates"]["chain_length"], 2);
    assert_eq!(s3["assessment"]["aggregates"]["chain_blast"], 2);
    for s in [&s1, &s2, &s3] {
        assert!(
            s["tier"]["escalations"].as_array().unwrap().is_empty(),
            "{s}"
        );
    }

    // The fourth would bring the chain's blast radius to 4 (threshold 3): Tier 3, although
    // the policy alone says Tier 1.
    let s4 = env
        .proposed(
            &migrator,
            with(
                with(
                    revoke("migration", &svc, "s3:bucket-b:read", 0.95),
                    "parent",
                    json!(id_of(&s3)),
                ),
                "correlation",
                json!("q3-migration"),
            ),
        )
        .await;
    assert_eq!(s4["tier"]["tier"], 3, "{s4}");
    assert_eq!(s4["state"], "pending_approval");
    assert_eq!(
        s4["tier"]["policies"][0]["policy"],
        "tier1-small-revocation"
    );
    let esc = s4["tier"]["escalations"].to_string();
    assert!(
        esc.contains(
            "aggregate: the correlation chain would reach a blast radius of 4 (threshold 3)"
        ),
        "{esc}"
    );
    // Nothing of it is applied.
    assert!(env
        .direct(&svc)
        .await
        .0
        .contains(&"s3:bucket-b:read".to_owned()));

    // And the next one too (both thresholds now).
    let s5 = env
        .proposed(
            &migrator,
            with(
                grant("migration", &svc, "s3:bucket-z:read"),
                "parent",
                json!(id_of(&s4)),
            ),
        )
        .await;
    assert_eq!(
        (s5["tier"]["tier"].clone(), s5["state"].clone()),
        (json!(3), json!("pending_approval")),
        "{s5}"
    );
    let esc = s5["tier"]["escalations"].to_string();
    assert!(
        esc.contains("would reach a blast radius of 5 (threshold 3)"),
        "{esc}"
    );
    assert!(esc.contains("would reach 5 steps (threshold 4)"), "{esc}");
    assert!(!env
        .direct(&svc)
        .await
        .0
        .contains(&"s3:bucket-z:read".to_owned()));

    // Alerts are recorded for the escalated steps.
    for s in [&s4, &s5] {
        let recs = env.records_of(&format!("proposal:{}", id_of(s))).await;
        let alert = record(&recs, "governance.alert");
        assert_eq!(alert["actor"], "system");
        assert_eq!(alert["payload"]["correlation"], "q3-migration");
        assert_eq!(alert["payload"]["escalated_to_tier"], 3);
        assert!(
            alert["payload"]["crossed"]
                .to_string()
                .contains("correlation chain"),
            "{alert}"
        );
    }
    for s in [&s1, &s2, &s3] {
        let recs = env.records_of(&format!("proposal:{}", id_of(s))).await;
        assert!(!kinds(&recs).contains(&"governance.alert".to_owned()));
    }

    // The chain, from any of its steps.
    let chain = env
        .get(&format!("/v1/proposals/{}/chain", id_of(&s2)))
        .await;
    assert_eq!(chain["correlation"], "q3-migration");
    let steps = chain["steps"].as_array().unwrap();
    let got: Vec<(String, String, u64, String)> = steps
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_owned(),
                s["kind"].as_str().unwrap().to_owned(),
                s["tier"].as_u64().unwrap(),
                s["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want: Vec<(String, String, u64, String)> = [
        (&s1, "revoke_entitlement", 1, "executed"),
        (&s2, "grant_entitlement", 2, "in_review"),
        (&s3, "modify_role", 2, "in_review"),
        (&s4, "revoke_entitlement", 3, "pending_approval"),
        (&s5, "grant_entitlement", 3, "pending_approval"),
    ]
    .into_iter()
    .map(|(s, k, t, st)| (id_of(s), k.to_owned(), t, st.to_owned()))
    .collect();
    assert_eq!(got, want);
    assert!(
        steps[3]["because"]
            .to_string()
            .contains("correlation chain"),
        "{chain}"
    );
    assert_eq!(chain["total_blast_identities"], 5);
    let same = env
        .get(&format!("/v1/proposals/{}/chain", id_of(&s5)))
        .await;
    assert_eq!(same["steps"], chain["steps"]);
}

// ---------------------------------------------------------------------------------------
// 3. Refused, and audited.

#[tokio::test]
async fn ai_identities_unnamed_tokens_and_auditors_cannot_approve() {
    let w = world("").await;
    let p = w.tier3_grant().await;
    let pid = id_of(&p);
    let path = format!("/v1/proposals/{pid}/approve");
    // The proposing AI identity itself.
    let (s, b) = w
        .approve(
            &w.optimizer.token,
            &pid,
            decision(JUSTIFICATION, "CHG-1234"),
        )
        .await;
    assert_eq!(s, 403, "{b}");
    assert!(
        b["message"]
            .as_str()
            .unwrap()
            .contains("only a named human"),
        "{b}"
    );
    let r = w
        .env
        .refusal(&format!("identity:{}", w.optimizer.id), "POST", &path)
        .await;
    assert!(
        r["payload"]["reason"]
            .as_str()
            .unwrap()
            .contains("AI identity"),
        "{r}"
    );
    // Another AI tool.
    let other = w.env.agent("cost-bot", "dave@example.com").await;
    let (s, b) = w
        .approve(&other.token, &pid, decision(JUSTIFICATION, "CHG-1234"))
        .await;
    assert_eq!(s, 403, "{b}");
    w.env
        .refusal(&format!("identity:{}", other.id), "POST", &path)
        .await;
    // The bootstrap admin token names no person.
    let (s, b) = w
        .approve(ADMIN_TOKEN, &pid, decision(JUSTIFICATION, "CHG-1234"))
        .await;
    assert_eq!(s, 403, "{b}");
    let refusals = w.env.audit(&[("kind", "request.refused")]).await;
    assert!(
        refusals
            .iter()
            .any(|r| r["actor"].as_str().unwrap().starts_with("admin:")
                && r["payload"]["path"] == path.as_str()),
        "{refusals:?}"
    );
    // An auditor reads; a named auditor does not decide either.
    let audrey = w.env.human("audrey@example.com", "auditor").await;
    let (s, b) = w
        .approve(&audrey, &pid, decision(JUSTIFICATION, "CHG-1234"))
        .await;
    assert_eq!(s, 403, "{b}");
    w.env
        .refusal("human:audrey@example.com", "POST", &path)
        .await;
    // Nothing happened.
    let p = w.env.proposal(&pid).await;
    assert_eq!(p["state"], "pending_approval");
    assert!(p["approvals"].as_array().unwrap().is_empty());
    assert!(!w
        .env
        .direct(&w.svc)
        .await
        .0
        .contains(&"s3:vault:read".to_owned()));
}

#[tokio::test]
async fn the_requester_and_a_beneficiarys_owner_cannot_approve() {
    let w = world("").await;
    let p = w.tier3_grant().await;
    let pid = id_of(&p);
    let path = format!("/v1/proposals/{pid}/approve");
    let beneficiaries = p["assessment"]["beneficiaries"].as_array().unwrap();
    assert!(beneficiaries.contains(&json!(w.svc)), "{p}");
    assert!(beneficiaries.contains(&json!("bob@example.com")), "{p}");
    // The requesting identity's access token.
    let (s, b) = w
        .approve(
            &w.optimizer.token,
            &pid,
            decision(JUSTIFICATION, "CHG-1234"),
        )
        .await;
    assert_eq!(s, 403, "{b}");
    w.env
        .refusal(&format!("identity:{}", w.optimizer.id), "POST", &path)
        .await;
    // No human token can name the requesting identity: humans and identities never share
    // a name, so neither the account nor a token for it can be made.
    let url = &w.env.server.url;
    let (s, b) = api(
        url,
        Some(ADMIN_TOKEN),
        "POST",
        "/v1/humans",
        Some(&json!({ "name": w.optimizer.id })),
    )
    .await;
    assert_eq!(s, 409, "{b}");
    assert!(b["message"].as_str().unwrap().contains("identity"), "{b}");
    let (s, b) = api(
        url,
        None,
        "POST",
        "/v1/auth/token",
        Some(
            &json!({ "username": w.optimizer.id, "password": "any password at all",
                      "role": "approver", "name": "impostor" }),
        ),
    )
    .await;
    assert_eq!(s, 401, "{b}");
    // bob owns the identity that would gain access. As an owner he does not decide
    // proposals at all; as an approver, not this one.
    let (s, b) = w
        .approve(&w.bob, &pid, decision(JUSTIFICATION, "CHG-1234"))
        .await;
    assert_eq!(s, 403, "{b}");
    assert!(
        b["message"].as_str().unwrap().contains("`approver` role"),
        "{b}"
    );
    let bob = w.env.human("bob@example.com", "approver").await;
    let (s, b) = w
        .approve(&bob, &pid, decision(JUSTIFICATION, "CHG-1234"))
        .await;
    assert_eq!(s, 403, "{b}");
    assert!(b["message"].as_str().unwrap().contains("benefits"), "{b}");
    let r = w.env.refusal("human:bob@example.com", "POST", &path).await;
    assert!(
        r["payload"]["reason"]
            .as_str()
            .unwrap()
            .contains("bob@example.com"),
        "{r}"
    );
    let p = w.env.proposal(&pid).await;
    assert_eq!(p["state"], "pending_approval");
    assert!(p["approvals"].as_array().unwrap().is_empty());
    assert!(!w
        .env
        .direct(&w.svc)
        .await
        .0
        .contains(&"s3:vault:read".to_owned()));
    // A named human who is no party may.
    let (s, b) = w
        .approve(&w.carol, &pid, decision(JUSTIFICATION, "CHG-1234"))
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["proposal"]["state"], "executed");
    assert!(w
        .env
        .direct(&w.svc)
        .await
        .0
        .contains(&"s3:vault:read".to_owned()));
}

/// Approvals a named human cannot make: (body, what, whether the body is well-formed JSON
/// for the endpoint, so the workflow itself refuses it).
fn bad_approvals() -> Vec<(Value, &'static str, bool)> {
    vec![
        (
            json!({ "ticket": "CHG-1234" }),
            "missing justification",
            false,
        ),
        (decision("", "CHG-1234"), "empty justification", true),
        (
            decision("looks fine", "CHG-1234"),
            "short justification",
            true,
        ),
        (
            decision("                              ", "CHG-1234"),
            "blank justification",
            true,
        ),
        (
            json!({ "justification": JUSTIFICATION }),
            "missing ticket",
            false,
        ),
        (decision(JUSTIFICATION, ""), "empty ticket", true),
        (
            decision(JUSTIFICATION, "chg-1234"),
            "lowercase ticket",
            true,
        ),
        (
            decision(JUSTIFICATION, "CHG 1234"),
            "ticket with a space",
            true,
        ),
        (
            decision(JUSTIFICATION, "CHG-1234; DROP"),
            "ticket with trailing text",
            true,
        ),
    ]
}

#[tokio::test]
async fn approval_needs_a_justification_and_a_well_formed_ticket() {
    let w = world("").await;
    let pid = id_of(&w.tier3_grant().await);
    for (body, what, _) in bad_approvals() {
        let (s, b) = w.approve(&w.carol, &pid, body).await;
        assert_eq!(s, 400, "{what}: {b}");
    }
    let p = w.env.proposal(&pid).await;
    assert_eq!(p["state"], "pending_approval");
    assert!(p["approvals"].as_array().unwrap().is_empty());
    assert!(!w
        .env
        .direct(&w.svc)
        .await
        .0
        .contains(&"s3:vault:read".to_owned()));
    let recs = w.env.records_of(&format!("proposal:{pid}")).await;
    assert!(
        !kinds(&recs).contains(&"human.decision".to_owned()),
        "{recs:?}"
    );
    // With both it is accepted.
    let (s, b) = w
        .approve(&w.carol, &pid, decision(JUSTIFICATION, "CHG-1234"))
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["proposal"]["approvals"][0]["ticket"], "CHG-1234");
}

#[tokio::test]
async fn refused_approvals_without_justification_or_ticket_are_audited() {
    let w = world("").await;
    let pid = id_of(&w.tier3_grant().await);
    let path = format!("/v1/proposals/{pid}/approve");
    let mut expected = 0;
    for (body, what, reaches_workflow) in bad_approvals() {
        let (s, b) = w.approve(&w.carol, &pid, body).await;
        assert_eq!(s, 400, "{what}: {b}");
        expected += usize::from(reaches_workflow);
    }
    let refusals = w
        .env
        .audit(&[
            ("kind", "request.refused"),
            ("actor", "human:carol@example.com"),
        ])
        .await;
    let here = refusals
        .iter()
        .filter(|r| r["payload"]["path"] == path.as_str())
        .count();
    assert_eq!(here, expected, "refused approvals of carol: {refusals:?}");
}

#[tokio::test]
async fn a_tier3_proposal_is_not_executed_without_approval() {
    let w = world("").await;
    let pid = id_of(&w.tier3_grant().await);
    let before = w.env.direct(&w.svc).await;
    // Not in a state to be performed or overridden (409); an owner does not perform
    // proposals at all (403: that is the `approver` role's).
    let perform = decision(JUSTIFICATION, "CHG-1234");
    let over = json!({ "justification": JUSTIFICATION });
    for (action, body, token, status) in [
        ("perform", &perform, &w.carol, 409),
        ("perform", &perform, &w.alice, 403),
        ("override", &over, &w.alice, 409),
        ("override", &over, &w.carol, 409),
    ] {
        let (s, b) = w
            .env
            .call(
                token,
                "POST",
                &format!("/v1/proposals/{pid}/{action}"),
                Some(body.clone()),
            )
            .await;
        assert_eq!(s, status, "{action}: {b}");
    }
    // The proposing AI cannot push it through either.
    for (action, body) in [
        ("perform", decision(JUSTIFICATION, "CHG-1234")),
        ("override", json!({ "justification": JUSTIFICATION })),
        ("approve", decision(JUSTIFICATION, "CHG-1234")),
    ] {
        let path = format!("/v1/proposals/{pid}/{action}");
        let (s, b) = w
            .env
            .call(&w.optimizer.token, "POST", &path, Some(body))
            .await;
        assert_eq!(s, 403, "{action}: {b}");
        w.env
            .refusal(&format!("identity:{}", w.optimizer.id), "POST", &path)
            .await;
    }
    let p = w.env.proposal(&pid).await;
    assert_eq!(p["state"], "pending_approval");
    assert!(p["executions"].as_array().unwrap().is_empty(), "{p}");
    assert_eq!(w.env.direct(&w.svc).await, before);
    let recs = w.env.records_of(&format!("proposal:{pid}")).await;
    assert!(!kinds(&recs).contains(&"execution".to_owned()), "{recs:?}");
}

#[tokio::test]
async fn refused_attempts_to_execute_a_tier3_proposal_are_audited() {
    let w = world("").await;
    let pid = id_of(&w.tier3_grant().await);
    // Performing is the approver's (carol), overriding the owner's (alice).
    for (action, body, token, who) in [
        (
            "perform",
            decision(JUSTIFICATION, "CHG-1234"),
            &w.carol,
            "carol@example.com",
        ),
        (
            "override",
            json!({ "justification": JUSTIFICATION }),
            &w.alice,
            "alice@example.com",
        ),
    ] {
        let path = format!("/v1/proposals/{pid}/{action}");
        let (s, b) = w.env.call(token, "POST", &path, Some(body)).await;
        assert_eq!(s, 409, "{action}: {b}");
        let r = w.env.refusal(&format!("human:{who}"), "POST", &path).await;
        assert!(
            r["payload"]["reason"]
                .as_str()
                .unwrap()
                .contains("pending_approval"),
            "{r}"
        );
    }
}

#[tokio::test]
async fn an_ai_identity_cannot_change_policies_capabilities_or_its_entitlements_directly() {
    let w = world("").await;
    let me = &w.optimizer;
    let actor = format!("identity:{}", me.id);
    let attempts = [
        (
            "PUT",
            "/v1/tier-policies".to_owned(),
            json!({ "policies": "@tier(\"1\")\npermit (principal, action, resource);" }),
        ),
        (
            "PUT",
            "/v1/capabilities/optimizer".to_owned(),
            json!({ "identity": me.id, "owner": "alice@example.com",
                    "kinds": ["grant_entitlement", "revoke_entitlement", "modify_role", "delete_role"],
                    "max_blast_radius": 500 }),
        ),
        (
            "PATCH",
            format!("/v1/identities/{}", me.id),
            json!({ "entitlements": ["iam:admin"] }),
        ),
        (
            "PUT",
            "/v1/policies".to_owned(),
            json!({ "schema": DATA_SCHEMA, "policies": "permit (principal, action, resource);" }),
        ),
        (
            "PUT",
            "/v1/roles/admins".to_owned(),
            json!({ "entitlements": ["iam:admin"] }),
        ),
        (
            "POST",
            "/v1/tokens".to_owned(),
            json!({ "name": "mine", "human": "alice@example.com", "role": "admin" }),
        ),
    ];
    for (method, path, body) in &attempts {
        let (s, b) = w
            .env
            .call(&me.token, method, path, Some(body.clone()))
            .await;
        assert_eq!(s, 403, "{method} {path}: {b}");
        let r = w.env.refusal(&actor, method, path).await;
        let reason = r["payload"]["reason"].as_str().unwrap();
        assert!(
            reason.contains("AI identity")
                || (*path == "/v1/tokens" && reason.contains("identities issue none")),
            "{r}"
        );
    }
    // Nothing changed.
    let tp = w.env.get("/v1/tier-policies").await;
    assert_eq!(tp["version"], 0);
    let cap = w.env.get("/v1/capabilities/optimizer").await;
    assert_eq!(cap["capability"]["max_blast_radius"], 5);
    assert_eq!(cap["autonomy"], "tiered");
    assert_eq!(w.env.direct(&me.id).await, (vec![], vec![]));
    // Nor can it accept or review its own capability.
    for action in ["accept", "review"] {
        let path = format!("/v1/capabilities/optimizer/{action}");
        let (s, b) = w.env.call(&me.token, "POST", &path, Some(json!({}))).await;
        assert_eq!(s, 403, "{action}: {b}");
    }
}

#[tokio::test]
async fn a_capability_whose_owner_never_accepted_cannot_propose() {
    let env = Env::start("").await;
    let bot = env.agent("fresh-bot", "erin@example.com").await;
    let svc = env
        .identity(
            "etl",
            "service_account",
            "bob@example.com",
            &[],
            &["s3:bucket-a:read"],
        )
        .await;
    env.declare(
        "fresh",
        json!({ "identity": bot.id, "owner": "erin@example.com",
                "kinds": ["revoke_entitlement"], "max_blast_radius": 1 }),
    )
    .await;
    let cap = env.get("/v1/capabilities/fresh").await;
    assert_eq!(cap["autonomy"], "not_accepted");
    let (s, b) = env
        .propose(&bot, revoke("fresh", &svc, "s3:bucket-a:read", 0.99))
        .await;
    assert_eq!(s, 403, "{b}");
    assert!(
        b["message"].as_str().unwrap().contains("has not accepted"),
        "{b}"
    );
    let r = env
        .refusal(&format!("identity:{}", bot.id), "POST", "/v1/proposals")
        .await;
    assert!(
        r["payload"]["reason"]
            .as_str()
            .unwrap()
            .contains("erin@example.com"),
        "{r}"
    );
    // Someone other than the owner cannot accept for her.
    let mallory = env.human("mallory@example.com", "admin").await;
    let (s, b) = env
        .call(
            &mallory,
            "POST",
            "/v1/capabilities/fresh/accept",
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 403, "{b}");
    env.refusal(
        "human:mallory@example.com",
        "POST",
        "/v1/capabilities/fresh/accept",
    )
    .await;
    // Nothing was proposed or changed.
    let list = env.get("/v1/proposals").await;
    assert!(list["items"].as_array().unwrap().is_empty(), "{list}");
    assert_eq!(env.direct(&svc).await.0, ["s3:bucket-a:read"]);
}

#[tokio::test]
async fn approval_after_expiry_is_refused() {
    let w = world("approval_expiry_secs = 1").await;
    let pid = id_of(&w.tier3_grant().await);
    let p = w
        .env
        .wait_state(&pid, "expired", Duration::from_secs(15))
        .await;
    assert!(p["approvals"].as_array().unwrap().is_empty());
    let (s, b) = w
        .approve(&w.carol, &pid, decision(JUSTIFICATION, "CHG-1234"))
        .await;
    assert_eq!(s, 409, "{b}");
    assert_eq!(w.env.proposal(&pid).await["state"], "expired");
    assert!(!w
        .env
        .direct(&w.svc)
        .await
        .0
        .contains(&"s3:vault:read".to_owned()));
    let recs = w.env.records_of(&format!("proposal:{pid}")).await;
    let expired = record(&recs, "proposal.expired");
    assert_eq!(expired["actor"], "system");
    assert_eq!(expired["payload"]["was"], "pending_approval");
    assert!(!kinds(&recs).contains(&"execution".to_owned()));
    assert!(!kinds(&recs).contains(&"human.decision".to_owned()));
}

#[tokio::test]
async fn override_after_the_window_is_refused() {
    let w = world("override_window_secs = 1").await;
    // Tier 2: a small grant on unclassified data.
    let p = w
        .env
        .proposed(&w.optimizer, grant("optimizer", &w.svc, "s3:bucket-q:read"))
        .await;
    assert_eq!(
        (p["tier"]["tier"].clone(), p["state"].clone()),
        (json!(2), json!("in_review")),
        "{p}"
    );
    let pid = id_of(&p);
    w.env
        .wait_state(&pid, "ratified", Duration::from_secs(15))
        .await;
    let rita = w.env.human("rita@example.com", "owner").await;
    let (s, b) = w
        .env
        .call(
            &rita,
            "POST",
            &format!("/v1/proposals/{pid}/override"),
            Some(json!({ "justification": JUSTIFICATION })),
        )
        .await;
    assert_eq!(s, 409, "{b}");
    let p = w.env.proposal(&pid).await;
    assert_eq!(p["state"], "ratified");
    assert!(p["decision"].is_null(), "{p}");
    assert!(w
        .env
        .direct(&w.svc)
        .await
        .0
        .contains(&"s3:bucket-q:read".to_owned()));
    let recs = w.env.records_of(&format!("proposal:{pid}")).await;
    record(&recs, "proposal.ratified");
    assert!(!kinds(&recs).contains(&"human.decision".to_owned()));
}

// ---------------------------------------------------------------------------------------
// 4. Tier 2: override windows and ratification, across a restart.

/// A world for Tier 2: a role `etl-readers` held by two service accounts, the optimizer
/// reviewed by rita and notifying `inbox`.
struct Tier2 {
    env: Env,
    optimizer: Agent,
    svc: String,
    svc2: String,
}

async fn tier2_world(governance: &str, inbox: &Hook) -> Tier2 {
    let env = Env::start(governance).await;
    let optimizer = env.agent("access-optimizer", "alice@example.com").await;
    env.admin(
        "PUT",
        "/v1/roles/etl-readers",
        json!({ "description": "ETL readers", "entitlements": ["s3:bucket-b:read", "s3:logs:read"] }),
    )
    .await;
    let svc = env
        .identity(
            "data-eng-etl",
            "service_account",
            "bob@example.com",
            &["etl-readers"],
            &["s3:bucket-a:read", "s3:raw:read"],
        )
        .await;
    let svc2 = env
        .identity(
            "data-eng-backfill",
            "service_account",
            "bob@example.com",
            &["etl-readers"],
            &[],
        )
        .await;
    env.admin(
        "PUT",
        "/v1/resources/s3:raw",
        json!({ "classification": "confidential" }),
    )
    .await;
    env.declare(
        "optimizer",
        json!({ "identity": optimizer.id, "owner": "alice@example.com", "reviewer": "rita@example.com",
                "notify": inbox.url,
                "kinds": ["grant_entitlement", "revoke_entitlement", "modify_role"],
                "max_blast_radius": 5 }),
    )
    .await;
    let alice = env.human("alice@example.com", "owner").await;
    env.accept("optimizer", &alice).await;
    Tier2 {
        env,
        optimizer,
        svc,
        svc2,
    }
}

fn modify_readers() -> Value {
    json!({ "capability": "optimizer",
            "change": { "kind": "modify_role", "role": "etl-readers",
                        "add": ["s3:bucket-c:read"], "remove": ["s3:bucket-b:read"] },
            "evidence": { "unused_days": 60 },
            "rationale": "bucket-b was migrated to bucket-c", "confidence": 0.9 })
}

async fn override_ok(env: &Env, token: &str, pid: &str, by: &str) {
    let (s, b) = env
        .call(
            token,
            "POST",
            &format!("/v1/proposals/{pid}/override"),
            Some(json!({ "justification": "bucket-b is still read by the nightly backfill job" })),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["proposal"]["state"], "overridden", "{b}");
    assert_eq!(b["proposal"]["decision"]["by"], by);
    let recs = env.records_of(&format!("proposal:{pid}")).await;
    let human = recs
        .iter()
        .find(|r| r["kind"] == "human.decision" && r["payload"]["action"] == "override")
        .unwrap_or_else(|| panic!("no override record: {recs:?}"));
    assert_eq!(human["actor"], format!("human:{by}"));
    let reverted = recs
        .iter()
        .find(|r| r["kind"] == "execution" && r["payload"]["result"]["status"] == "reverted")
        .unwrap_or_else(|| panic!("no revert record: {recs:?}"));
    assert!(human["seq"].as_u64() < reverted["seq"].as_u64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tier2_override_reverts_exactly_and_a_lapsed_window_is_ratified() {
    let inbox = hook(vec![], 200).await;
    let t = tier2_world("override_window_secs = 4", &inbox).await;
    let env = &t.env;
    let rita = env.human("rita@example.com", "approver").await;
    let role_before = env.get("/v1/roles/etl-readers").await;
    let svc_before = env.direct(&t.svc).await;
    let svc2_before = env.direct(&t.svc2).await;

    // Two Tier 2 changes, applied at once.
    let p1 = env.proposed(&t.optimizer, modify_readers()).await;
    assert_eq!(
        (p1["tier"]["tier"].clone(), p1["state"].clone()),
        (json!(2), json!("in_review")),
        "{p1}"
    );
    assert_eq!(p1["assessment"]["identities_count"], 2);
    let p2 = env
        .proposed(&t.optimizer, grant("optimizer", &t.svc, "s3:bucket-d:read"))
        .await;
    assert_eq!(
        (p2["tier"]["tier"].clone(), p2["state"].clone()),
        (json!(2), json!("in_review")),
        "{p2}"
    );
    // A third one that will be left alone (confidential data: Tier 2, not Tier 1).
    let p3 = env
        .proposed(
            &t.optimizer,
            revoke("optimizer", &t.svc, "s3:raw:read", 0.95),
        )
        .await;
    assert_eq!(
        (p3["tier"]["tier"].clone(), p3["state"].clone()),
        (json!(2), json!("in_review")),
        "{p3}"
    );
    for p in [&p1, &p2, &p3] {
        assert_eq!(p["notified"], json!(["rita@example.com"]));
    }
    let role_during = env.get("/v1/roles/etl-readers").await;
    assert_eq!(
        role_during["role"]["entitlements"],
        json!(["s3:bucket-c:read", "s3:logs:read"])
    );
    assert_eq!(
        env.direct(&t.svc).await.0,
        ["s3:bucket-a:read", "s3:bucket-d:read"]
    );
    // The reviewer is notified of each.
    let got = inbox.wait_for(3).await;
    for r in &got {
        let note = r.json();
        assert!(note["text"].as_str().unwrap().contains("Tier 2"), "{note}");
        assert_eq!(note["warrant"]["notified"], json!(["rita@example.com"]));
    }

    // Somebody who is neither reviewer nor owner cannot override.
    let carol = env.human("carol@example.com", "approver").await;
    let (s, b) = env
        .call(
            &carol,
            "POST",
            &format!("/v1/proposals/{}/override", id_of(&p1)),
            Some(json!({ "justification": JUSTIFICATION })),
        )
        .await;
    assert_eq!(s, 403, "{b}");
    env.refusal(
        "human:carol@example.com",
        "POST",
        &format!("/v1/proposals/{}/override", id_of(&p1)),
    )
    .await;

    // The reviewer overrides the first two within the window: back to the exact state.
    override_ok(env, &rita, &id_of(&p1), "rita@example.com").await;
    override_ok(env, &rita, &id_of(&p2), "rita@example.com").await;
    assert_eq!(env.get("/v1/roles/etl-readers").await, role_before);
    let svc_after = env.direct(&t.svc).await;
    assert_eq!(svc_after.1, svc_before.1);
    assert_eq!(
        svc_after.0,
        ["s3:bucket-a:read"],
        "bucket-d is revoked again; raw stays revoked by the third change"
    );
    assert_eq!(env.direct(&t.svc2).await, svc2_before);

    // The third is ratified when the window ends, naming the reviewer.
    let p3 = env
        .wait_state(&id_of(&p3), "ratified", Duration::from_secs(20))
        .await;
    assert!(p3["decision"].is_null());
    let recs = env.records_of(&format!("proposal:{}", id_of(&p3))).await;
    let ratified = record(&recs, "proposal.ratified");
    assert_eq!(ratified["actor"], "system");
    assert_eq!(ratified["payload"]["reviewer"], json!(["rita@example.com"]));
    assert_eq!(ratified["payload"]["reviewer_acted"], false);
    let notes = ratified["payload"]["notifications"].as_array().unwrap();
    assert_eq!(notes.len(), 1, "{ratified}");
    assert_eq!(notes[0]["status"], "delivered");
    assert!(!env
        .direct(&t.svc)
        .await
        .0
        .contains(&"s3:raw:read".to_owned()));
    // The overridden ones stay overridden (never ratified).
    for p in [&p1, &p2] {
        assert_eq!(env.proposal(&id_of(p)).await["state"], "overridden");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tier2_override_and_ratification_survive_a_restart_mid_window() {
    let inbox = hook(vec![], 200).await;
    let window = Duration::from_secs(8);
    let mut t = tier2_world("override_window_secs = 8", &inbox).await;
    let rita = t.env.human("rita@example.com", "approver").await;
    let role_before = t.env.get("/v1/roles/etl-readers").await;
    let svc_before = t.env.direct(&t.svc).await;

    let submitted = Instant::now();
    let p1 = t
        .env
        .proposed(&t.optimizer, grant("optimizer", &t.svc, "s3:bucket-d:read"))
        .await;
    let p2 = t.env.proposed(&t.optimizer, modify_readers()).await;
    for p in [&p1, &p2] {
        assert_eq!(
            (p["tier"]["tier"].clone(), p["state"].clone()),
            (json!(2), json!("in_review")),
            "{p}"
        );
    }
    inbox.wait_for(2).await;

    // Crash in the middle of the window, start again on the same data.
    t.env.restart(true);
    assert!(
        submitted.elapsed() < window,
        "the restart took the whole window"
    );
    for p in [&p1, &p2] {
        let now = t.env.proposal(&id_of(p)).await;
        assert_eq!(now["state"], "in_review", "{now}");
    }
    // (a) The override still works before the window ends.
    override_ok(&t.env, &rita, &id_of(&p1), "rita@example.com").await;
    assert!(
        submitted.elapsed() < window,
        "the override came after the window"
    );
    assert_eq!(t.env.direct(&t.svc).await, svc_before);
    // (b) The restarted server ratifies the other when the window ends.
    let p2 = t
        .env
        .wait_state(&id_of(&p2), "ratified", Duration::from_secs(25))
        .await;
    assert!(submitted.elapsed() >= window);
    let recs = t.env.records_of(&format!("proposal:{}", id_of(&p2))).await;
    let ratified = record(&recs, "proposal.ratified");
    assert_eq!(ratified["payload"]["reviewer"], json!(["rita@example.com"]));
    assert_eq!(ratified["payload"]["reviewer_acted"], false);
    assert_eq!(
        t.env.get("/v1/roles/etl-readers").await["role"]["entitlements"],
        json!(["s3:bucket-c:read", "s3:logs:read"])
    );
    assert_ne!(t.env.get("/v1/roles/etl-readers").await, role_before);
    // Ratified once: one record.
    assert_eq!(
        kinds(&recs)
            .iter()
            .filter(|k| *k == "proposal.ratified")
            .count(),
        1
    );
    // And the overridden one was not ratified by the restarted server either.
    let p1 = t.env.proposal(&id_of(&p1)).await;
    assert_eq!(p1["state"], "overridden");
    let recs = t.env.records_of(&format!("proposal:{}", id_of(&p1))).await;
    assert!(!kinds(&recs).contains(&"proposal.ratified".to_owned()));
}

// ---------------------------------------------------------------------------------------
// 5. The capability's declared scope.

#[tokio::test]
async fn proposals_outside_the_capabilitys_kinds_or_blast_radius_are_refused() {
    let env = Env::start("").await;
    let bot = env.agent("role-cleaner", "alice@example.com").await;
    env.admin(
        "PUT",
        "/v1/roles/analysts",
        json!({ "entitlements": ["warehouse:sales:read"] }),
    )
    .await;
    let mut members = Vec::new();
    for n in 0..3 {
        members.push(
            env.identity(
                &format!("analyst-{n}"),
                "service_account",
                "bob@example.com",
                &["analysts"],
                &["s3:bucket-a:read"],
            )
            .await,
        );
    }
    env.declare(
        "cleaner",
        json!({ "identity": bot.id, "owner": "alice@example.com",
                "kinds": ["delete_role", "revoke_entitlement"], "max_blast_radius": 2 }),
    )
    .await;
    let alice = env.human("alice@example.com", "owner").await;
    env.accept("cleaner", &alice).await;
    let actor = format!("identity:{}", bot.id);

    // A kind it did not declare.
    let (s, b) = env
        .propose(&bot, grant("cleaner", &members[0], "s3:bucket-z:read"))
        .await;
    assert_eq!(s, 403, "{b}");
    assert!(
        b["message"]
            .as_str()
            .unwrap()
            .contains("may not propose grant_entitlement"),
        "{b}"
    );
    // A role with more members than its blast radius allows.
    let (s, b) = env
        .propose(
            &bot,
            json!({ "capability": "cleaner", "change": { "kind": "delete_role", "role": "analysts" },
                    "rationale": "role looks unused", "confidence": 0.97 }),
        )
        .await;
    assert_eq!(s, 403, "{b}");
    assert!(
        b["message"]
            .as_str()
            .unwrap()
            .contains("maximum blast radius of 2"),
        "{b}"
    );
    let refusals = env
        .audit(&[("kind", "request.refused"), ("actor", &actor)])
        .await;
    let reasons: Vec<&str> = refusals
        .iter()
        .filter(|r| r["payload"]["path"] == "/v1/proposals")
        .map(|r| r["payload"]["reason"].as_str().unwrap())
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("grant_entitlement")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("blast radius")),
        "{reasons:?}"
    );
    // Nothing changed, nothing was stored.
    let role = env.get("/v1/roles/analysts").await;
    assert_eq!(role["members"].as_array().unwrap().len(), 3);
    for m in &members {
        assert_eq!(
            env.direct(m).await,
            (
                vec!["s3:bucket-a:read".to_owned()],
                vec!["analysts".to_owned()]
            )
        );
    }
    assert!(env.get("/v1/proposals").await["items"]
        .as_array()
        .unwrap()
        .is_empty());
    // Within its scope it may.
    let p = env
        .proposed(
            &bot,
            revoke("cleaner", &members[0], "s3:bucket-a:read", 0.95),
        )
        .await;
    assert_eq!(p["state"], "executed", "{p}");
}

// ---------------------------------------------------------------------------------------
// 6. Signed-webhook connectors.

async fn connector_world(governance: &str) -> (Env, Agent, String) {
    let env = Env::start(governance).await;
    let bot = env.agent("idp-optimizer", "alice@example.com").await;
    let svc = env
        .identity(
            "data-eng-etl",
            "service_account",
            "bob@example.com",
            &[],
            &["idp:group-finance:member", "s3:bucket-a:read"],
        )
        .await;
    env.declare(
        "idp-hygiene",
        json!({ "identity": bot.id, "owner": "alice@example.com",
                "kinds": ["revoke_entitlement"], "max_blast_radius": 1,
                "systems": ["warrant", "idp"] }),
    )
    .await;
    let alice = env.human("alice@example.com", "owner").await;
    env.accept("idp-hygiene", &alice).await;
    (env, bot, svc)
}

/// A Tier 1 revocation executed by the `idp` connector, whose receiver answers 500 twice,
/// then 200.
struct Flaky {
    env: Env,
    idp: Hook,
    pid: String,
    svc: String,
    before: (Vec<String>, Vec<String>),
}

async fn flaky_connector() -> Flaky {
    let idp = hook(vec![500, 500], 200).await;
    let (env, bot, svc) = connector_world(&format!(
        "retry_base_ms = 50\nmax_attempts = 5\n\n[governance.connectors.idp]\nurl = \"{}\"",
        idp.url
    ))
    .await;
    let before = env.direct(&svc).await;
    let p = env
        .proposed(
            &bot,
            with(
                revoke("idp-hygiene", &svc, "idp:group-finance:member", 0.95),
                "system",
                json!("idp"),
            ),
        )
        .await;
    assert_eq!(p["tier"]["tier"], 1, "{p}");
    assert_eq!(p["system"], "idp");
    assert_eq!(p["state"], "executing", "{p}");
    Flaky {
        pid: id_of(&p),
        env,
        idp,
        svc,
        before,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connector_calls_are_signed_retried_and_confirmed() {
    let Flaky {
        env,
        idp,
        pid,
        svc,
        before,
    } = flaky_connector().await;
    let p = env
        .wait_state(&pid, "executed", Duration::from_secs(20))
        .await;
    let got = idp.received();
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(
        got.iter().map(|r| r.answered).collect::<Vec<_>>(),
        [500, 500, 200]
    );
    let applied = p["executions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["status"] == "applied")
        .unwrap_or_else(|| panic!("no applied execution: {p}"));
    assert_eq!(applied["attempts"], 3);
    assert_eq!(applied["system"], "idp");

    // Every attempt: the same idempotency key (the delivery id), signed over the body.
    let deliveries = env.get(&format!("/v1/proposals/{pid}/deliveries")).await;
    let items = deliveries["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{deliveries}");
    assert_eq!(items[0]["purpose"], "apply");
    assert_eq!(items[0]["connector"], "idp");
    assert_eq!(items[0]["status"], "delivered");
    assert_eq!(items[0]["attempts"], 3);
    let delivery = items[0]["id"].as_str().unwrap();
    let jwks = env.jwks().await;
    for r in &got {
        assert_eq!(r.header("idempotency-key"), Some(delivery));
        assert_eq!(r.header("warrant-proposal"), Some(pid.as_str()));
        assert_eq!(r.header("warrant-delivery-purpose"), Some("apply"));
        let sig = r.header("warrant-signature").expect("Warrant-Signature");
        let header = verify_signature(&jwks, sig, &r.body);
        assert!(header["kid"].is_string());
        let body = r.json();
        assert_eq!(body["type"], "warrant.change.apply");
        assert_eq!(body["proposal"], pid.as_str());
        assert_eq!(body["system"], "idp");
        assert_eq!(body["change"]["kind"], "revoke_entitlement");
        assert_eq!(body["change"]["entitlement"], "idp:group-finance:member");
    }

    // The audit trail: dispatched, delivered after 3 attempts, applied.
    let recs = env.records_of(&format!("proposal:{pid}")).await;
    let applied = recs
        .iter()
        .find(|r| r["kind"] == "execution" && r["payload"]["result"]["status"] == "applied")
        .unwrap_or_else(|| panic!("no applied execution record: {recs:?}"));
    assert!(applied["payload"]["result"]["detail"]
        .as_str()
        .unwrap()
        .contains("3 attempt"));
    let delivered = record(&recs, "notification.delivery");
    assert_eq!(delivered["payload"]["status"], "delivered");
    assert_eq!(delivered["payload"]["attempts"], 3);
    // warrant's own store is not the system of record for this change.
    assert_eq!(env.direct(&svc).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connector_execution_records_count_the_attempts() {
    let f = flaky_connector().await;
    let p = f
        .env
        .wait_state(&f.pid, "executed", Duration::from_secs(20))
        .await;
    assert_eq!(
        p["executions"].as_array().unwrap().last().unwrap()["attempts"],
        3
    );
    let recs = f.env.records_of(&format!("proposal:{}", f.pid)).await;
    let applied = recs
        .iter()
        .find(|r| r["kind"] == "execution" && r["payload"]["result"]["status"] == "applied")
        .unwrap_or_else(|| panic!("no applied execution record: {recs:?}"));
    assert_eq!(applied["payload"]["result"]["attempts"], 3, "{applied}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_that_keeps_failing_fails_the_proposal() {
    let idp = hook(vec![], 500).await;
    let (env, bot, svc) = connector_world(&format!(
        "retry_base_ms = 50\nmax_attempts = 3\n\n[governance.connectors.idp]\nurl = \"{}\"",
        idp.url
    ))
    .await;
    let before = env.direct(&svc).await;
    let pid = id_of(
        &env.proposed(
            &bot,
            with(
                revoke("idp-hygiene", &svc, "idp:group-finance:member", 0.95),
                "system",
                json!("idp"),
            ),
        )
        .await,
    );
    let p = env
        .wait_state(&pid, "failed", Duration::from_secs(20))
        .await;
    // Exactly max_attempts calls, then given up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(idp.received().len(), 3);
    let failed = p["executions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["status"] == "failed")
        .unwrap_or_else(|| panic!("no failed execution: {p}"));
    assert_eq!(failed["attempts"], 3);
    let deliveries = env.get(&format!("/v1/proposals/{pid}/deliveries")).await;
    let items = deliveries["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{deliveries}");
    assert_eq!(items[0]["status"], "failed");
    assert_eq!(items[0]["attempts"], 3);
    assert!(
        items[0]["last_error"].as_str().unwrap().contains("500"),
        "{deliveries}"
    );
    assert!(items[0]["done_at"].is_string());
    // warrant applied nothing of it.
    assert_eq!(env.direct(&svc).await, before);
    let recs = env.records_of(&format!("proposal:{pid}")).await;
    let gave_up = record(&recs, "notification.delivery");
    assert_eq!(gave_up["payload"]["status"], "failed");
    assert!(recs
        .iter()
        .any(|r| r["kind"] == "execution" && r["payload"]["result"]["status"] == "failed"));
    assert!(!recs
        .iter()
        .any(|r| r["kind"] == "execution" && r["payload"]["result"]["status"] == "applied"));
    let on_identity = env.records_of(&format!("identity:{svc}")).await;
    assert_eq!(kinds(&on_identity), ["identity.created"]);
}
