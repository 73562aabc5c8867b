//! `warrant-bench proposals`: AI change proposals submitted over HTTP to the release
//! server with a registry of 100,000 identities, against `/v1/authorize` on the same
//! server in the same run.
//!
//! Set-up: the identities are registered in-process through the writer's
//! `CreateIdentity` op (the fastest bulk path, as `scale` does; durability `normal` while
//! loading), then the release server is started on that data directory with
//! `--durability full` (default) and a config file that raises the compounding-change
//! thresholds (with the defaults, a capability's 51st change within 24 h escalates to
//! Tier 3). Everything else goes through the public API as a real deployment would:
//! resources classified (`PUT /v1/resources`), a human owner's API token
//! (`POST /v1/tokens`), the capability declared (`PUT /v1/capabilities`) and accepted by
//! that human (`POST /v1/capabilities/{id}/accept`), a workload key registered for the AI
//! identity (`POST /v1/identities/{id}/keys`), and one access token per client connection
//! minted at `/oauth2/token` with an Ed25519 `private_key_jwt` client assertion (scope
//! `warrant:propose`, audience = the issuer).
//!
//! Load: per concurrency level, one keep-alive HTTP/1.1 connection per task sends
//! `POST /v1/proposals` back to back, each for a different target identity: Tier 1
//! (revoking an `internal` entitlement with confidence 0.95: assessed, tiered, executed
//! at once, the identity rewritten) and Tier 3 (revoking a `restricted` one: assessed,
//! tiered and stored pending approval). Every answer is checked (201, the expected tier
//! and state). Baseline: `POST /v1/authorize` (admin API token, principals uniform over
//! the registry) against the same server, in the same run, right before.

use crate::load::{self, LoadOpts, ServerProc, Target};
use crate::util::{self, fmt_ns, fmt_ratio, BatchStats, ADMIN_TOKEN};
use anyhow::{anyhow, bail, Context as _};
use bytes::Bytes;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::SigningKey;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use warrant_core::identity::NewIdentity;
use warrant_server::ops::Op;
use warrant_store::sqlite::Durability;

#[derive(Debug, Clone)]
pub struct Opts {
    pub warrant_bin: PathBuf,
    pub identities: usize,
    pub connections: Vec<usize>,
    pub duration: Duration,
    /// Upper bound on proposals per run (each needs its own target identity).
    pub max_per_run: usize,
    pub durability: String,
    /// `governance.chain_window_secs` in the server's config (default: the server's, 30 days).
    pub chain_window_secs: Option<u64>,
}

pub struct Outcome {
    pub markdown: String,
    pub errors: u64,
}

const AI_ID: &str = "idn_access_optimizer";
const CAPABILITY: &str = "right-sizing";
const OWNER: &str = "alice@example.com";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The bench policies plus the one that lets AI tools hold `warrant:propose` for warrant's
/// own API.
const PROPOSE_POLICY: &str = r#"
@id("ai-tools-propose")
@reason("AI tools may submit proposals to warrant")
permit (principal, action == Warrant::Action::"request_scope", resource == Warrant::Scope::"warrant:propose")
when { principal.kind == "ai_tool" };
"#;

/// Thresholds high enough that the aggregates never escalate during the run (the other
/// governance settings are the defaults).
const CONFIG: &str = r#"version = 1

[governance]
aggregate_capability_max = 1000000000
aggregate_target_max = 1000000000
aggregate_overall_max = 1000000000
"#;

/// Target identity `i`: a service account holding an `internal` entitlement (`docs`) and
/// a `restricted` one (`hr`), and the `reader` role of the `/v1/authorize` baseline.
fn target(i: usize) -> NewIdentity {
    NewIdentity {
        name: format!("svc-{i}"),
        kind: "service_account".into(),
        environment: "prod".into(),
        owner: "bob@example.com".into(),
        description: None,
        spiffe_id: None,
        roles: vec!["reader".into()],
        entitlements: vec!["docs:write".into(), "hr:payroll:read".into()],
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tier {
    One,
    Three,
}

impl Tier {
    fn entitlement(self) -> &'static str {
        match self {
            Tier::One => "docs:write",
            Tier::Three => "hr:payroll:read",
        }
    }
    /// What the answer must contain.
    fn expect(self) -> [&'static [u8]; 2] {
        match self {
            Tier::One => [br#""tier":{"tier":1,"#, br#""state":"executed""#],
            Tier::Three => [br#""tier":{"tier":3,"#, br#""state":"pending_approval""#],
        }
    }
    fn label(self) -> &'static str {
        match self {
            Tier::One => "Tier 1 (executed at once)",
            Tier::Three => "Tier 3 (stored, pending approval)",
        }
    }
}

struct RunResult {
    ok: u64,
    errors: u64,
    statuses: Vec<(u16, u64)>,
    first_error: Option<String>,
    elapsed: Duration,
    hist: Histogram<u64>,
    /// Completed proposals per second of the run.
    per_second: Vec<u64>,
    server_cores: Option<f64>,
    client_cores: Option<f64>,
    batch: BatchStats,
}

impl RunResult {
    fn throughput(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
    fn p(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Submits proposals for `targets` (one each, in order) from `tokens.len()` connections
/// until the duration passed or the targets ran out.
async fn propose(
    srv: &ServerProc,
    tokens: &[String],
    targets: Arc<Vec<String>>,
    tier: Tier,
    duration: Duration,
) -> anyhow::Result<RunResult> {
    let addr = srv.addr;
    let host = addr.to_string();
    let next = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Barrier::new(tokens.len() + 1));
    let epoch = Arc::new(std::sync::OnceLock::<Instant>::new());
    let mut tasks = tokio::task::JoinSet::new();
    for token in tokens {
        let mut sender = load::connect(addr).await?;
        let (next, gate, targets, host, epoch) = (
            next.clone(),
            gate.clone(),
            targets.clone(),
            host.clone(),
            epoch.clone(),
        );
        let auth = format!("Bearer {token}");
        tasks.spawn(async move {
            let mut hist = util::histogram();
            let mut per_second: Vec<u64> = Vec::new();
            let (mut ok, mut errors) = (0u64, 0u64);
            let mut statuses: Vec<(u16, u64)> = Vec::new();
            let mut first_error: Option<String> = None;
            gate.wait().await;
            let start = *epoch.get_or_init(Instant::now);
            let deadline = start + duration;
            while Instant::now() < deadline {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(id) = targets.get(k) else { break };
                let body = json!({
                    "capability": CAPABILITY,
                    "change": { "kind": "revoke_entitlement", "identity": id, "entitlement": tier.entitlement() },
                    "evidence": { "unused_days": 90, "source": "access logs" },
                    "rationale": "not used in the last 90 days",
                    "confidence": 0.95,
                });
                let req = hyper::Request::builder()
                    .method(hyper::Method::POST)
                    .uri("/v1/proposals")
                    .header(hyper::header::HOST, &host)
                    .header(hyper::header::AUTHORIZATION, &auth)
                    .header(hyper::header::CONTENT_TYPE, "application/json")
                    .body(Full::new(Bytes::from(serde_json::to_vec(&body)?)))?;
                let t0 = Instant::now();
                let result = async {
                    sender.ready().await?;
                    let resp = sender.send_request(req).await?;
                    let status = resp.status().as_u16();
                    let body = resp.into_body().collect().await?.to_bytes();
                    Ok::<_, hyper::Error>((status, body))
                }
                .await;
                let took = t0.elapsed();
                match result {
                    Ok((201, body)) if tier.expect().iter().all(|n| contains(&body, n)) => {
                        ok += 1;
                        util::record(&mut hist, took);
                        let sec = start.elapsed().as_secs() as usize;
                        if per_second.len() <= sec {
                            per_second.resize(sec + 1, 0);
                        }
                        if let Some(c) = per_second.get_mut(sec) {
                            *c += 1;
                        }
                    }
                    Ok((status, body)) => {
                        errors += 1;
                        match statuses.iter_mut().find(|(s, _)| *s == status) {
                            Some((_, n)) => *n += 1,
                            None => statuses.push((status, 1)),
                        }
                        first_error.get_or_insert_with(|| {
                            format!(
                                "HTTP {status}: {}",
                                String::from_utf8_lossy(&body)
                                    .chars()
                                    .take(400)
                                    .collect::<String>()
                            )
                        });
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| format!("transport: {e}"));
                        sender = load::connect(addr).await?;
                    }
                }
            }
            Ok::<_, anyhow::Error>((ok, errors, statuses, first_error, hist, per_second))
        });
    }
    let before = BatchStats::parse(&srv.metrics().await?);
    let cpu0 = (util::cpu_seconds(Some(srv.pid)), util::cpu_seconds(None));
    gate.wait().await;
    let started = Instant::now();
    let mut out = RunResult {
        ok: 0,
        errors: 0,
        statuses: Vec::new(),
        first_error: None,
        elapsed: Duration::ZERO,
        hist: util::histogram(),
        per_second: Vec::new(),
        server_cores: None,
        client_cores: None,
        batch: BatchStats::default(),
    };
    while let Some(r) = tasks.join_next().await {
        let (ok, errors, statuses, first_error, hist, per_second) = r??;
        out.ok += ok;
        out.errors += errors;
        for (s, n) in statuses {
            match out.statuses.iter_mut().find(|(x, _)| *x == s) {
                Some((_, m)) => *m += n,
                None => out.statuses.push((s, n)),
            }
        }
        if out.first_error.is_none() {
            out.first_error = first_error;
        }
        out.hist.add(&hist)?;
        if out.per_second.len() < per_second.len() {
            out.per_second.resize(per_second.len(), 0);
        }
        for (a, b) in out.per_second.iter_mut().zip(per_second) {
            *a += b;
        }
    }
    out.elapsed = started.elapsed();
    let secs = out.elapsed.as_secs_f64();
    let cores = |a: Option<f64>, b: Option<f64>| Some((b? - a?) / secs);
    out.server_cores = cores(cpu0.0, util::cpu_seconds(Some(srv.pid)));
    out.client_cores = cores(cpu0.1, util::cpu_seconds(None));
    out.batch = BatchStats::parse(&srv.metrics().await?).since(&before);
    Ok(out)
}

/// The human-facing API client (admin token unless `token` is given).
struct Api {
    http: reqwest::Client,
    url: String,
}

impl Api {
    async fn call(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Value,
    ) -> anyhow::Result<Value> {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let res = self
            .http
            .request(method.clone(), format!("{}{path}", self.url))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await?;
        let status = res.status();
        let text = res.text().await?;
        if !status.is_success() {
            bail!("{method} {path}: HTTP {status}: {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// One access token per client, through the token endpoint (client assertions signed with
/// the workload key). Returns the tokens and the time it took.
async fn mint(
    api: &Api,
    key: &SigningKey,
    kid: &str,
    n: usize,
) -> anyhow::Result<(Vec<String>, Duration)> {
    let der = key.to_pkcs8_der().map_err(|e| anyhow!("{e}"))?;
    let encoding = jsonwebtoken::EncodingKey::from_ed_der(der.as_bytes());
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some(kid.to_owned());
    let endpoint = format!("{}/oauth2/token", api.url);
    let t = Instant::now();
    let mut tokens = Vec::with_capacity(n);
    for _ in 0..n {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        let claims = json!({
            "iss": AI_ID, "sub": AI_ID, "aud": endpoint,
            "iat": now, "exp": now + 60,
            "jti": format!("bench-{}", uuid_like()),
        });
        let assertion = jsonwebtoken::encode(&header, &claims, &encoding)?;
        let res = api
            .http
            .post(&endpoint)
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", assertion.as_str()),
                ("scope", "warrant:propose"),
                ("audience", api.url.as_str()),
            ])
            .send()
            .await?;
        let status = res.status();
        let v: Value = res.json().await.unwrap_or(Value::Null);
        let token = v["access_token"]
            .as_str()
            .ok_or_else(|| anyhow!("token endpoint: HTTP {status}: {v}"))?;
        tokens.push(token.to_owned());
    }
    Ok((tokens, t.elapsed()))
}

fn uuid_like() -> String {
    use std::sync::atomic::AtomicU64;
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{t:x}-{}", N.fetch_add(1, Ordering::Relaxed))
}

pub async fn run(base: &Path, o: &Opts) -> anyhow::Result<Outcome> {
    if !o.warrant_bin.exists() {
        bail!(
            "no warrant binary at `{}` (build it: cargo build --release -p warrant)",
            o.warrant_bin.display()
        );
    }
    let dir = tempfile::tempdir_in(base)?;
    let data = dir.path().join("data");

    // --- the registry, in-process ---
    let t = Instant::now();
    let inproc = util::start_inproc(&data, Durability::Normal).await?;
    util::put_policies(
        &inproc.state,
        &format!("{}\n{PROPOSE_POLICY}", util::POLICIES),
    )
    .await?;
    inproc
        .state
        .writer
        .mutate(Op::CreateIdentity {
            actor: "admin:tok_env".into(),
            id: AI_ID.into(),
            new: NewIdentity {
                name: "access-optimizer".into(),
                kind: "ai_tool".into(),
                environment: "prod".into(),
                owner: OWNER.into(),
                ..Default::default()
            },
        })
        .await
        .map_err(|e| anyhow!("create the AI identity: {e}"))?;
    let ids = util::create_identities_with(&inproc.state, 0, o.identities, 512, target).await?;
    util::stop_inproc(inproc).await?;
    let registered = t.elapsed();
    eprintln!(
        "  registered {} identities in-process in {:.1} s",
        o.identities,
        registered.as_secs_f64()
    );

    // --- the release server, configured through its API ---
    let config = dir.path().join("warrant.toml");
    let mut config_text = CONFIG.to_owned();
    if let Some(s) = o.chain_window_secs {
        config_text.push_str(&format!("chain_window_secs = {s}\n"));
    }
    std::fs::write(&config, &config_text)?;
    let srv =
        ServerProc::start_full(&o.warrant_bin, &data, &o.durability, None, Some(&config)).await?;
    eprintln!(
        "  release server ready in {:.2} s ({} identities)",
        srv.ready_after.as_secs_f64(),
        o.identities + 1
    );
    let api = Api {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?,
        url: srv.url.clone(),
    };
    for (id, class) in [("docs", "internal"), ("hr", "restricted")] {
        api.call(
            ADMIN_TOKEN,
            "PUT",
            &format!("/v1/resources/{id}"),
            json!({ "classification": class }),
        )
        .await?;
    }
    let human = api
        .call(
            ADMIN_TOKEN,
            "POST",
            "/v1/tokens",
            json!({ "name": "alice laptop", "human": OWNER, "role": "owner" }),
        )
        .await?;
    let alice = human["token"]
        .as_str()
        .ok_or_else(|| anyhow!("no token in {human}"))?
        .to_owned();
    api.call(
        ADMIN_TOKEN,
        "PUT",
        &format!("/v1/capabilities/{CAPABILITY}"),
        json!({ "identity": AI_ID, "kinds": ["revoke_entitlement"], "max_blast_radius": 5,
                "owner": OWNER, "review_every_days": 90,
                "description": "revokes entitlements unused for 90 days" }),
    )
    .await?;
    let accepted = api
        .call(
            &alice,
            "POST",
            &format!("/v1/capabilities/{CAPABILITY}/accept"),
            json!({}),
        )
        .await?;
    if accepted["autonomy"] != "tiered" {
        bail!("capability not accepted: {accepted}");
    }
    let key = SigningKey::from_bytes(&[7; 32]);
    let x = warrant_server::credentials::keys::base64url(key.verifying_key().as_bytes());
    let added = api
        .call(
            ADMIN_TOKEN,
            "POST",
            &format!("/v1/identities/{AI_ID}/keys"),
            json!({ "jwk": { "kty": "OKP", "crv": "Ed25519", "x": x } }),
        )
        .await?;
    let kid = added["kid"]
        .as_str()
        .ok_or_else(|| anyhow!("no kid in {added}"))?
        .to_owned();

    // --- runs ---
    let bodies = load::authorize_bodies(&ids)?;
    // Warm-up: connections, allocator, page cache.
    let _ = load::run(
        srv.addr,
        Target::Authorize(bodies.clone()),
        LoadOpts {
            connections: 16,
            duration: Duration::from_secs(2),
            max_requests: 5_000_000,
            server_pid: Some(srv.pid),
        },
    )
    .await?;
    let runs_per_tier = o.connections.len().max(1);
    // Each run gets its own slice of target identities (a Tier 1 revocation can run once).
    let slice = (o.identities / runs_per_tier).min(o.max_per_run);
    let mut md_rows = String::new();
    let mut timeline = String::new();
    let mut ratios = String::new();
    let mut errors = 0u64;
    let mut mint_note = String::new();
    let mut summary = String::new();
    let mut submitted = 0u64;
    for (r, &c) in o.connections.iter().enumerate() {
        let before = BatchStats::parse(&srv.metrics().await?);
        let auth = load::run(
            srv.addr,
            Target::Authorize(bodies.clone()),
            LoadOpts {
                connections: c,
                duration: o.duration,
                max_requests: 5_000_000,
                server_pid: Some(srv.pid),
            },
        )
        .await?;
        let auth_batch = BatchStats::parse(&srv.metrics().await?).since(&before);
        errors += auth.errors;
        eprintln!(
            "  authorize c={c}: {:.0} req/s p50 {} p99 {} errors {}",
            auth.throughput(),
            fmt_ns(auth.p(0.5)),
            fmt_ns(auth.p(0.99)),
            auth.errors
        );
        md_rows.push_str(&format!(
            "| `POST /v1/authorize` (baseline) | {c} | {} | {:.0} | {} | {} | {} | {} | {:.1} | {} | {} |\n",
            auth.ok,
            auth.throughput(),
            fmt_ns(auth.p(0.5)),
            fmt_ns(auth.p(0.99)),
            fmt_ns(auth.max()),
            auth.errors,
            auth_batch.mean_jobs(),
            fmt_ns(auth_batch.mean_commit_ns()),
            match (auth.server_cores, auth.client_cores) {
                (Some(s), Some(k)) => format!("{s:.2} / {k:.2}"),
                _ => "-".into(),
            },
        ));
        for tier in [Tier::One, Tier::Three] {
            let (tokens, took) = mint(&api, &key, &kid, c).await?;
            if mint_note.is_empty() {
                mint_note = format!(
                    "{c} access tokens minted at `/oauth2/token` (private_key_jwt) in {} ({} per token, one after another).",
                    fmt_ns(took.as_nanos() as f64),
                    fmt_ns(took.as_nanos() as f64 / c as f64)
                );
            }
            let from = r * slice;
            let targets: Arc<Vec<String>> =
                Arc::new(ids.get(from..from + slice).unwrap_or_default().to_vec());
            let before_run = submitted;
            let res = propose(&srv, &tokens, targets, tier, o.duration).await?;
            submitted += res.ok;
            errors += res.errors;
            eprintln!(
                "  proposals {} c={c}: {:.0}/s p50 {} p99 {} errors {} {:?}",
                tier.label(),
                res.throughput(),
                fmt_ns(res.p(0.5)),
                fmt_ns(res.p(0.99)),
                res.errors,
                res.first_error
            );
            md_rows.push_str(&format!(
                "| `POST /v1/proposals`, {} | {c} | {} | {:.0} | {} | {} | {} | {} | {:.1} | {} | {} |\n",
                tier.label(),
                res.ok,
                res.throughput(),
                fmt_ns(res.p(0.5)),
                fmt_ns(res.p(0.99)),
                fmt_ns(res.hist.max() as f64),
                if res.statuses.is_empty() {
                    res.errors.to_string()
                } else {
                    format!("{} {:?}", res.errors, res.statuses)
                },
                res.batch.mean_jobs(),
                fmt_ns(res.batch.mean_commit_ns()),
                match (res.server_cores, res.client_cores) {
                    (Some(s), Some(k)) => format!("{s:.2} / {k:.2}"),
                    _ => "-".into(),
                },
            ));
            ratios.push_str(&format!(
                "| {} | {c} | {} | {} / {} |\n",
                tier.label(),
                fmt_ratio(res.throughput() / auth.throughput()),
                fmt_ratio(res.p(0.5) / auth.p(0.5)),
                fmt_ratio(res.p(0.99) / auth.p(0.99)),
            ));
            summary.push_str(&format!(
                "proposals {} at {c} connections: {:.0}/s = {} of /v1/authorize ({:.0} req/s)\n",
                tier.label(),
                res.throughput(),
                fmt_ratio(res.throughput() / auth.throughput()),
                auth.throughput()
            ));
            timeline.push_str(&format!(
                "| {} | {c} | {before_run} | {} |\n",
                tier.label(),
                res.per_second
                    .iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            if let Some(e) = &res.first_error {
                md_rows.push_str(&format!(
                    "| first error: `{}` | | | | | | | | | | |\n",
                    e.replace('|', "\\|").replace('\n', " ")
                ));
            }
        }
    }
    let (rss, hwm) = srv.rss_kib().unwrap_or((0, 0));
    let ready = srv.ready_after;
    srv.stop().await.context("stopping the server")?;
    // Start-up reloads the aggregates from every proposal in the windows.
    let again =
        ServerProc::start_full(&o.warrant_bin, &data, &o.durability, None, Some(&config)).await?;
    let ready_again = again.ready_after;
    again
        .stop()
        .await
        .context("stopping the restarted server")?;
    eprintln!(
        "  restart with {submitted} proposals stored: ready in {:.2} s",
        ready_again.as_secs_f64()
    );

    let mut md = String::new();
    md.push_str(&format!(
        "Release server (`warrant serve --durability {}`) on 127.0.0.1 with {} identities (+1 AI identity; registered in-process in {:.1} s, \
         server ready in {:.2} s). Capability `{CAPABILITY}` declared over the API, accepted by its owner's API token; {mint_note} \
         Each run: {} s or at most {slice} proposals, one keep-alive HTTP/1.1 connection per client, one access token each, \
         a different target identity per proposal. Aggregate thresholds raised in the config file so that no proposal escalates. \
         Load client on the same 2 cores as the server.\n\n",
        o.durability,
        o.identities,
        registered.as_secs_f64(),
        ready.as_secs_f64(),
        o.duration.as_secs_f64(),
    ));
    md.push_str("| request | conns | answered | per second | p50 | p99 | max | errors | mean group commit (jobs) | mean commit time | CPU cores: server / client |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    md.push_str(&md_rows);
    md.push_str("\nRatios against `/v1/authorize` on the same server, same connection count, run just before:\n\n| proposals | conns | per second ÷ authorize req/s | p50 / p99 ÷ authorize |\n|---|---:|---:|---:|\n");
    md.push_str(&ratios);
    md.push_str("\nProposals completed in each second of the run:\n\n| proposals | conns | proposals already in the windows at the start | per second, 1 s buckets |\n|---|---:|---:|---|\n");
    md.push_str(&timeline);
    md.push_str(&format!(
        "\nServer VmRSS at the end {} (VmHWM {}). Restarted on the same data directory afterwards \
         ({submitted} proposals stored, all within the aggregate windows): ready in {} (vs {} before any proposal).\n",
        util::fmt_mib(rss),
        util::fmt_mib(hwm),
        fmt_ns(ready_again.as_nanos() as f64),
        fmt_ns(ready.as_nanos() as f64),
    ));
    md.push_str(&format!(
        "\nConfig file of the server:\n\n```toml\n{config_text}```\n"
    ));
    eprintln!("{summary}");
    Ok(Outcome {
        markdown: md,
        errors,
    })
}
