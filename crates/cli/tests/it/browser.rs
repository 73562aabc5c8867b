//! The web console end to end in a real browser: headless Chromium (Debian's
//! `/usr/bin/chromium`) driven by `playwright-core` from `tests/browser/console.spec.mjs`.
//!
//! This side starts the real `warrant` binary, seeds a realistic scenario over the API (named
//! humans with passwords and roles granted the two-person way, an AI tool proposing with a
//! `private_key_jwt` access token under a capability its owner accepted, tier policies),
//! runs the browser script with the URL, the humans' credentials and the ids in environment
//! variables, and then checks over the API that what the browser did happened and was
//! recorded in the audit log under the right named human.
//!
//! Needs Chromium and `tests/browser/node_modules` (`bash scripts/browser-deps.sh`, which
//! this test runs first: it installs only what is missing). Screenshots of every step are
//! kept in `target/browser-artifacts/`.

use super::harness::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The issuer of the server (access tokens for warrant carry it as their audience).
const ISSUER: &str = "https://warrant.browser.example";

/// AI tools may hold `warrant:propose` for warrant itself.
const ACCESS_SCHEMA: &str = r#"
namespace Data {
  entity Bucket;
  action read appliesTo {
    principal: [Warrant::Identity],
    resource: [Bucket],
    context: {}
  };
}
"#;

const ACCESS_POLICIES: &str = r#"
@id("ai-tools-may-propose")
@reason("AI tools may ask warrant for tokens to submit proposals")
permit (principal, action == Warrant::Action::"request_scope", resource == Warrant::Scope::"warrant:propose")
when { principal.kind == "ai_tool" && context.audience == "https://warrant.browser.example" };
"#;

/// The organisation's tier policy on top of warrant's defaults.
const TIER3_CONFIDENTIAL: &str = "\n@id(\"tier3-confidential-data\")\n@tier(\"3\")\n@reason(\"changes to access on confidential or restricted data need an approver\")\npermit (principal, action == Tier::Action::\"assign\", resource)\nwhen { context.classification_rank >= 3 };\n";

/// The humans of the scenario: (name, display name, password).
const ROOT: (&str, &str, &str) = (
    "root@warrant.test",
    "Root Admin",
    "root-password-never-used-in-ui",
);
const ADMIN: (&str, &str, &str) = (
    "ada@warrant.test",
    "Ada Lindqvist",
    "ada-correct-horse-battery",
);
const APPROVER: (&str, &str, &str) = ("rita@warrant.test", "Rita Okafor", "rita-staple-lantern-42");
const OWNER: (&str, &str, &str) = (
    "olivia@warrant.test",
    "Olivia Brandt",
    "olivia-river-copper-77",
);
const AUDITOR: (&str, &str, &str) = (
    "audrey@warrant.test",
    "Audrey Chen",
    "audrey-ledger-maple-19",
);

/// What the approver types in the browser (the test checks the record carries it).
const APPROVE_WHY: &str =
    "Quarterly access reconciliation: unused for 60 days, confirmed with data engineering";
const TICKET: &str = "CHG-1234";
const OVERRIDE_WHY: &str =
    "The reporting pipeline is not migrated yet; bucket-b access is premature";
const KILL_WHY: &str = "Suspicious reads from an unknown network: contain until investigated";

const GRANT_WHY: &str = "browser test: the scenario needs this control-plane role";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// The running server and a way to call it.
struct Console {
    server: Server,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Console {
    async fn start() -> Console {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("warrant.toml");
        // A short Tier 2 window (the console counts it down in minutes and seconds), a
        // notification channel nobody answers (Tier 2 needs one). Sign-in is left at its
        // defaults (`Secure` session cookies: Chromium keeps them on http://127.0.0.1).
        std::fs::write(
            &config,
            format!(
                "version = 1\nissuer = \"{ISSUER}\"\n\n[governance]\ntick_ms = 200\noverride_window_secs = 900\nnotify_url = \"http://127.0.0.1:9/warrant-browser-unwatched\"\n"
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
        Console {
            server,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            _dir: dir,
        }
    }

    fn url(&self) -> &str {
        &self.server.url
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
            .request(method, format!("{}{path}", self.url()))
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

    /// A call that must succeed (2xx).
    async fn ok(&self, token: &str, method: &str, path: &str, body: Value) -> Value {
        let body = (!body.is_null()).then_some(body);
        let (s, b) = self.call(token, method, path, body).await;
        assert!((200..300).contains(&s), "{method} {path}: {s} {b}");
        b
    }

    async fn boot(&self, method: &str, path: &str, body: Value) -> Value {
        self.ok(ADMIN_TOKEN, method, path, body).await
    }

    /// A human account with a local password: the admin sets a one-time password, the
    /// human replaces it with their own.
    async fn human(&self, (name, display, password): (&str, &str, &str)) {
        let once = format!("{password}-one-time");
        let h = self
            .boot(
                "POST",
                "/v1/humans",
                json!({ "name": name, "display_name": display, "password": once }),
            )
            .await;
        assert_eq!(h["local_password"], true, "{h}");
        let (s, b) = api(
            self.url(),
            None,
            "POST",
            "/v1/auth/password",
            Some(&json!({ "username": name, "current_password": once, "new_password": password })),
        )
        .await;
        assert_eq!(s, 204, "{b}");
    }

    /// An API token of `human` holding `role`: the human exchanges their own password.
    async fn token(&self, human: &str, role: &str) -> String {
        let password = [ROOT, ADMIN, APPROVER, OWNER, AUDITOR]
            .iter()
            .find(|h| h.0 == human)
            .map(|h| h.2)
            .expect("a human of the scenario");
        let (s, b) = api(
            self.url(),
            None,
            "POST",
            "/v1/auth/token",
            Some(
                &json!({ "username": human, "password": password, "role": role,
                          "name": format!("{human} ({role})") }),
            ),
        )
        .await;
        assert_eq!(s, 201, "{b}");
        b["token"].as_str().expect("token secret").to_owned()
    }

    /// The first admin: granted at once with the bootstrap token. Returns their token.
    async fn first_admin(&self, human: &str) -> String {
        let g = self
            .boot(
                "POST",
                "/v1/role-grants",
                json!({ "human": human, "role": "admin", "justification": GRANT_WHY }),
            )
            .await;
        assert_eq!(
            (&g["state"], &g["bootstrap"]),
            (&json!("approved"), &json!(true)),
            "{g}"
        );
        self.token(human, "admin").await
    }

    /// Gives `human` `role`: asked for with the bootstrap token, approved by a second
    /// named admin (`approver_token`).
    async fn grant(&self, human: &str, role: &str, approver_token: &str) {
        let g = self
            .boot(
                "POST",
                "/v1/role-grants",
                json!({ "human": human, "role": role, "justification": GRANT_WHY }),
            )
            .await;
        assert_eq!(g["state"], "pending", "{g}");
        let id = g["id"].as_str().unwrap();
        let g = self
            .ok(
                approver_token,
                "POST",
                &format!("/v1/role-grants/{id}/approve"),
                json!({}),
            )
            .await;
        assert_eq!(g["state"], "approved", "{g}");
    }

    async fn identity(&self, name: &str, kind: &str, owner: &str, entitlements: &[&str]) -> String {
        let b = self
            .boot(
                "POST",
                "/v1/identities",
                json!({ "name": name, "kind": kind, "environment": "prod", "owner": owner,
                        "roles": [], "entitlements": entitlements }),
            )
            .await;
        b["id"].as_str().unwrap().to_owned()
    }

    /// Registers an AI tool with an Ed25519 workload key and returns (id, an access token
    /// for warrant: `private_key_jwt`, scope `warrant:propose`, audience = the issuer).
    async fn agent(&self, name: &str, owner: &str) -> (String, String) {
        let id = self.identity(name, "ai_tool", owner, &[]).await;
        let token = propose_token(self.url(), &id, ISSUER).await;
        (id, token)
    }

    /// The AI tool submits a proposal; returns it.
    async fn propose(&self, agent_token: &str, body: Value) -> Value {
        let (s, b) = self
            .call(agent_token, "POST", "/v1/proposals", Some(body))
            .await;
        assert_eq!(s, 201, "{b}");
        b["proposal"].clone()
    }

    async fn proposal(&self, id: &str) -> Value {
        self.boot("GET", &format!("/v1/proposals/{id}"), Value::Null)
            .await["proposal"]
            .clone()
    }

    /// Audit records matching the query (oldest first).
    async fn audit(&self, query: &[(&str, &str)]) -> Vec<Value> {
        let mut q = query.to_vec();
        q.push(("limit", "1000"));
        let res = self
            .http
            .get(format!("{}/v1/audit", self.url()))
            .bearer_auth(ADMIN_TOKEN)
            .query(&q)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 200);
        let b: Value = res.json().await.unwrap();
        b["items"].as_array().unwrap().clone()
    }
}

fn change(
    capability: &str,
    kind: &str,
    identity: &str,
    entitlement: &str,
    why: &str,
    confidence: f64,
) -> Value {
    json!({
        "capability": capability,
        "change": { "kind": kind, "identity": identity, "entitlement": entitlement },
        "evidence": { "unused_days": 60, "source": "cloudtrail", "last_used": "2025-05-02" },
        "rationale": why,
        "confidence": confidence,
        "correlation": "reconciliation-q3",
    })
}

/// Runs the browser script; returns (success, stdout, stderr). Killed after `limit`.
fn run_browser(env: &[(&str, String)], limit: Duration) -> (bool, String, String) {
    let dir = workspace_root().join("tests/browser");
    let mut cmd = Command::new("node");
    cmd.arg("console.spec.mjs")
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run node (is Node.js installed?)");
    let drain = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut r) = r {
                let _ = r.read_to_string(&mut s);
            }
            s
        })
    };
    let out = drain(child.stdout.take().map(|r| Box::new(r) as _));
    let err = drain(child.stderr.take().map(|r| Box::new(r) as _));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for node") {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (out, mut err) = (out.join().unwrap(), err.join().unwrap());
    if status.is_none() {
        err.push_str(&format!(
            "\n(killed: the browser script ran longer than {limit:?})"
        ));
    }
    (status.is_some_and(|s| s.success()), out, err)
}

/// Installs Chromium and the npm packages if missing (a no-op when they are there).
fn browser_deps() {
    let root = workspace_root();
    if Path::new("/usr/bin/chromium").exists()
        && root
            .join("tests/browser/node_modules/playwright-core")
            .exists()
    {
        return;
    }
    let st = Command::new("bash")
        .arg(root.join("scripts/browser-deps.sh"))
        .current_dir(&root)
        .status()
        .expect("run scripts/browser-deps.sh");
    assert!(
        st.success(),
        "scripts/browser-deps.sh failed: install chromium and run `npm ci` in tests/browser"
    );
}

fn records_where(records: &[Value], pred: impl Fn(&Value) -> bool) -> Vec<&Value> {
    records.iter().filter(|r| pred(r)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_a_real_browser_approve_override_kill_audit() {
    let started = Instant::now();
    browser_deps();
    let c = Console::start().await;

    // Access policy: AI tools may get tokens to propose.
    c.boot(
        "PUT",
        "/v1/policies",
        json!({ "schema": ACCESS_SCHEMA, "policies": ACCESS_POLICIES, "comment": "browser test" }),
    )
    .await;
    // Tier policies: warrant's defaults, plus Tier 3 for confidential data.
    c.boot(
        "PUT",
        "/v1/tier-policies",
        json!({ "policies": format!("{}{TIER3_CONFIDENTIAL}", warrant_policy::DEFAULT_TIER_POLICIES),
                "comment": "confidential data needs an approver" }),
    )
    .await;
    for (resource, classification) in [("s3:bucket-a", "confidential"), ("s3:bucket-b", "internal")]
    {
        c.boot(
            "PUT",
            &format!("/v1/resources/{resource}"),
            json!({ "classification": classification, "description": "data engineering" }),
        )
        .await;
    }

    // The humans: a first admin (bootstrap), a second admin who signs in, the approver
    // (also the capability's named reviewer), the capability owner, an auditor.
    for h in [ROOT, ADMIN, APPROVER, OWNER, AUDITOR] {
        c.human(h).await;
    }
    let root = c.first_admin(ROOT.0).await;
    c.grant(ADMIN.0, "admin", &root).await;
    c.grant(APPROVER.0, "approver", &root).await;
    c.grant(OWNER.0, "owner", &root).await;
    c.grant(AUDITOR.0, "auditor", &root).await;
    let owner_token = c.token(OWNER.0, "owner").await;
    let admin_token = c.token(ADMIN.0, "admin").await;

    // The world: two service accounts reading the confidential bucket, an AI tool.
    let etl = c
        .identity(
            "data-eng-etl",
            "service_account",
            "bob@example.com",
            &["s3:bucket-a:read", "s3:logs:read"],
        )
        .await;
    let bi = c
        .identity(
            "bi-dashboard",
            "service_account",
            "bob@example.com",
            &["s3:bucket-a:read"],
        )
        .await;
    let (optimizer, agent) = c.agent("access-optimizer", OWNER.0).await;
    c.boot(
        "PUT",
        "/v1/capabilities/right-sizing",
        json!({ "identity": optimizer, "owner": OWNER.0, "reviewer": APPROVER.0,
                "description": "removes unused access and right-sizes grants",
                "kinds": ["grant_entitlement", "revoke_entitlement"],
                "max_blast_radius": 5, "review_every_days": 90 }),
    )
    .await;
    let (s, b) = c
        .call(
            &owner_token,
            "POST",
            "/v1/capabilities/right-sizing/accept",
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["autonomy"], "tiered", "{b}");

    // Proposals: two Tier 3 revocations on confidential data (one for the approver, one
    // the auditor will try), one Tier 2 grant on internal data.
    let t3 = c
        .propose(
            &agent,
            change(
                "right-sizing",
                "revoke_entitlement",
                &etl,
                "s3:bucket-a:read",
                "s3:bucket-a:read has not been used by data-eng-etl in 60 days",
                0.93,
            ),
        )
        .await;
    assert_eq!(
        (t3["tier"]["tier"].as_u64(), t3["state"].as_str()),
        (Some(3), Some("pending_approval")),
        "{t3}"
    );
    let t2 = c
        .propose(
            &agent,
            change(
                "right-sizing",
                "grant_entitlement",
                &etl,
                "s3:bucket-b:read",
                "data-eng-etl was denied s3:bucket-b 14 times this week by the new pipeline",
                0.88,
            ),
        )
        .await;
    assert_eq!(
        (t2["tier"]["tier"].as_u64(), t2["state"].as_str()),
        (Some(2), Some("in_review")),
        "{t2}"
    );
    let t3b = c
        .propose(
            &agent,
            change(
                "right-sizing",
                "revoke_entitlement",
                &bi,
                "s3:bucket-a:read",
                "bi-dashboard reads only the aggregated views; s3:bucket-a:read is unused",
                0.81,
            ),
        )
        .await;
    assert_eq!(t3b["state"], "pending_approval", "{t3b}");
    let (t3, t2, t3b) = (
        t3["id"].as_str().unwrap().to_owned(),
        t2["id"].as_str().unwrap().to_owned(),
        t3b["id"].as_str().unwrap().to_owned(),
    );
    let seeded = started.elapsed();

    // The browser.
    let artifacts = workspace_root().join("target/browser-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    for e in std::fs::read_dir(&artifacts).unwrap().flatten() {
        if e.path().extension().is_some_and(|x| x == "png") {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let env: Vec<(&str, String)> = vec![
        ("WARRANT_URL", c.url().to_owned()),
        ("ARTIFACTS_DIR", artifacts.to_string_lossy().into_owned()),
        ("APPROVER_USER", APPROVER.0.into()),
        ("APPROVER_DISPLAY", APPROVER.1.into()),
        ("APPROVER_PASSWORD", APPROVER.2.into()),
        ("ADMIN_USER", ADMIN.0.into()),
        ("ADMIN_DISPLAY", ADMIN.1.into()),
        ("ADMIN_PASSWORD", ADMIN.2.into()),
        ("AUDITOR_USER", AUDITOR.0.into()),
        ("AUDITOR_DISPLAY", AUDITOR.1.into()),
        ("AUDITOR_PASSWORD", AUDITOR.2.into()),
        ("ADMIN_API_TOKEN", admin_token.clone()),
        ("CAPABILITY", "right-sizing".into()),
        ("OWNER", OWNER.0.into()),
        ("TIER3_ID", t3.clone()),
        ("TIER3_OTHER_ID", t3b.clone()),
        ("TIER2_ID", t2.clone()),
        ("IDENTITY_ID", etl.clone()),
        ("IDENTITY_NAME", "data-eng-etl".into()),
        ("APPROVE_WHY", APPROVE_WHY.into()),
        ("TICKET", TICKET.into()),
        ("OVERRIDE_WHY", OVERRIDE_WHY.into()),
        ("KILL_WHY", KILL_WHY.into()),
    ];
    let browser_started = Instant::now();
    let (ok, out, err) =
        tokio::task::spawn_blocking(move || run_browser(&env, Duration::from_secs(120)))
            .await
            .unwrap();
    println!("--- browser (tests/browser/console.spec.mjs) ---\n{out}");
    if !err.trim().is_empty() {
        println!("--- browser stderr ---\n{err}");
    }
    assert!(
        ok,
        "the browser script failed (screenshots in {}):\n--- stdout ---\n{out}\n--- stderr ---\n{err}\n--- server log (tail) ---\n{}",
        artifacts.display(),
        c.server.log_text().chars().rev().take(4000).collect::<String>().chars().rev().collect::<String>()
    );
    let browser_took = browser_started.elapsed();

    // What the browser did happened...
    let p = c.proposal(&t3).await;
    assert_eq!(p["state"], "executed", "{p}");
    assert_eq!(p["approvals"][0]["by"], APPROVER.0, "{p}");
    assert_eq!(p["approvals"][0]["justification"], APPROVE_WHY, "{p}");
    assert_eq!(p["approvals"][0]["ticket"], TICKET, "{p}");
    let p = c.proposal(&t2).await;
    assert_eq!(p["state"], "overridden", "{p}");
    assert_eq!(p["decision"]["by"], APPROVER.0, "{p}");
    let i = c
        .boot("GET", &format!("/v1/identities/{etl}"), Value::Null)
        .await;
    let ents: Vec<String> = serde_json::from_value(i["entitlements"].clone()).unwrap();
    assert_eq!(
        ents,
        ["s3:logs:read"],
        "revoked by the approval, the override's grant undone: {i}"
    );
    // ...and the auditor's attempt did not.
    let p = c.proposal(&t3b).await;
    assert_eq!(p["state"], "pending_approval", "{p}");
    assert_eq!(p["approvals"], json!([]), "{p}");

    // ...and the audit log names the humans who did it.
    let rita = format!("human:{}", APPROVER.0);
    let by_rita = c.audit(&[("actor", &rita)]).await;
    let approve = records_where(&by_rita, |r| {
        r["kind"] == "human.decision" && r["subject"] == format!("proposal:{t3}")
    });
    assert_eq!(approve.len(), 1, "{by_rita:?}");
    assert_eq!(approve[0]["payload"]["action"], "approve");
    assert_eq!(approve[0]["payload"]["justification"], APPROVE_WHY);
    assert_eq!(approve[0]["payload"]["ticket"], TICKET);
    let ovr = records_where(&by_rita, |r| {
        r["kind"] == "human.decision" && r["subject"] == format!("proposal:{t2}")
    });
    assert_eq!(ovr.len(), 1, "{by_rita:?}");
    assert_eq!(ovr[0]["payload"]["action"], "override");
    assert_eq!(ovr[0]["payload"]["justification"], OVERRIDE_WHY);
    assert!(
        by_rita
            .iter()
            .any(|r| r["kind"] == "execution" && r["payload"]["result"]["status"] == "reverted"),
        "the override's revert is recorded under the approver: {by_rita:?}"
    );
    assert!(
        by_rita.iter().any(|r| r["kind"] == "session"
            && r["payload"]["action"] == "signed_in"
            && r["payload"]["method"] == "password"),
        "{by_rita:?}"
    );
    let ada = format!("human:{}", ADMIN.0);
    let kills = c
        .audit(&[("actor", &ada), ("kind", "killswitch.engaged")])
        .await;
    assert_eq!(kills.len(), 1, "{kills:?}");
    assert!(kills[0].to_string().contains(KILL_WHY), "{}", kills[0]);
    assert!(kills[0].to_string().contains(&etl), "{}", kills[0]);
    let audrey = format!("human:{}", AUDITOR.0);
    let refused = c
        .audit(&[("actor", &audrey), ("kind", "request.refused")])
        .await;
    assert!(
        refused
            .iter()
            .any(|r| r["payload"]["path"] == format!("/v1/proposals/{t3b}/approve")),
        "the auditor's approval attempt is recorded as refused: {refused:?}"
    );
    // Nobody else decided a proposal (the auditor's attempt left no decision).
    let decisions = c.audit(&[("kind", "human.decision")]).await;
    let on_proposals = records_where(&decisions, |r| {
        r["subject"]
            .as_str()
            .is_some_and(|s| s.starts_with("proposal:"))
    });
    assert_eq!(on_proposals.len(), 2, "{decisions:?}");
    assert!(
        on_proposals.iter().all(|r| r["actor"] == rita.as_str()),
        "{decisions:?}"
    );
    // The kill switch holds: the identity gets no decision.
    let d = c
        .boot(
            "POST",
            "/v1/authorize",
            json!({ "principal": etl, "action": "Data::Action::\"read\"",
                    "resource": "Data::Bucket::\"bucket-a\"", "context": {} }),
        )
        .await;
    assert_eq!(d["decision"], "deny", "{d}");

    println!(
        "browser test: seeded in {seeded:.1?}, browser script {browser_took:.1?}, total {:.1?}; screenshots in {}",
        started.elapsed(),
        artifacts.display()
    );
}
