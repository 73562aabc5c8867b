//! `warrant-bench tokens`: the token endpoint over HTTP against bare Ed25519 signing on the
//! same machine in the same run.
//!
//! A release-profile server runs in-process on a loopback listener (SQLite, durability
//! full). One agent identity with a registered Ed25519 key and a policy permitting its
//! scope. Client assertions (RFC 7523, one unique `jti` each) are signed before the clock
//! starts, so the timed loop is only `POST /oauth2/token` and checking the answer: per
//! token the server verifies the assertion (one Ed25519 verification), decides the scope
//! with Cedar, signs the access token (one Ed25519 signature) and durably appends the
//! `credential.issued` record with the assertion's `jti` (group commit), then answers.
//!
//! Baselines: bare `ed25519_dalek` signatures per second on one thread, and signature plus
//! verification per second (the two public-key operations a token costs the server).

use crate::util::{fmt_rate, histogram, record, ADMIN_TOKEN, SCHEMA};
use anyhow::{anyhow, Context as _};
use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::{Signer, SigningKey, Verifier};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use warrant_core::identity::NewIdentity;
use warrant_policy::PolicyBundle;
use warrant_server::ops::{Op, Outcome as OpOutcome};
use warrant_server::{Config, Server};
use warrant_store::IdentityKeyRow;

pub struct Opts {
    pub tasks: usize,
    pub tokens: usize,
}

pub struct Outcome {
    pub markdown: String,
}

const AUDIENCE: &str = "https://docs.example.com";

pub async fn run(base: &Path, o: &Opts) -> anyhow::Result<Outcome> {
    let dir = tempfile::tempdir_in(base)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let issuer = format!("http://{addr}");
    let server = Server::start(Config {
        data_dir: dir.path().to_owned(),
        admin_token: Some(ADMIN_TOKEN.to_owned()),
        listen: addr,
        issuer: issuer.clone(),
        ..Config::default()
    })
    .await?;
    let state = server.state.clone();
    let policies = r#"
permit (principal, action == Warrant::Action::"request_scope", resource == Warrant::Scope::"App:read")
when { context.audience == "https://docs.example.com" };
"#;
    let bundle = PolicyBundle::compile(SCHEMA, policies)
        .map_err(|e| anyhow!("benchmark policies do not compile: {e:?}"))?;
    state
        .writer
        .mutate(Op::PutPolicy {
            actor: "admin:bench".into(),
            bundle: Arc::new(bundle),
            comment: "token benchmark".into(),
        })
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let created = state
        .writer
        .mutate(Op::CreateIdentity {
            actor: "admin:bench".into(),
            id: "idn_tokenbench".into(),
            new: NewIdentity {
                name: "token-bench-agent".into(),
                kind: "agent".into(),
                environment: "prod".into(),
                owner: "alice@example.com".into(),
                ..Default::default()
            },
        })
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let id = match created.outcome {
        OpOutcome::Identity(i) => i.id,
        _ => return Err(anyhow!("no identity created")),
    };
    let agent_key = SigningKey::from_bytes(&[42; 32]);
    let x = warrant_server::credentials::keys::base64url(agent_key.verifying_key().as_bytes());
    state
        .writer
        .mutate(Op::AddIdentityKey {
            actor: "admin:bench".into(),
            key: IdentityKeyRow {
                identity_id: id.clone(),
                kid: "bench-key".into(),
                jwk:
                    serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "bench-key"})
                        .to_string(),
                added_ms: 0,
                revoked_ms: None,
            },
        })
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let router = server.router();
    let serving = tokio::spawn(async move { axum::serve(listener, router).await });

    // Client assertions, signed up front.
    let der = agent_key.to_pkcs8_der().map_err(|e| anyhow!("{e}"))?;
    let encoding = jsonwebtoken::EncodingKey::from_ed_der(der.as_bytes());
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some("bench-key".into());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let token_endpoint = format!("{issuer}/oauth2/token");
    let mut assertions = Vec::with_capacity(o.tokens);
    for n in 0..o.tokens {
        let claims = serde_json::json!({
            "iss": id, "sub": id, "aud": token_endpoint,
            "exp": now + 240, "iat": now, "jti": format!("bench-{n}"),
        });
        assertions.push(jsonwebtoken::encode(&header, &claims, &encoding)?);
    }

    let http = reqwest::Client::builder().build()?;
    let queue = Arc::new(std::sync::Mutex::new(assertions));
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..o.tasks.max(1) {
        let (http, queue, url) = (http.clone(), queue.clone(), token_endpoint.clone());
        set.spawn(async move {
            let mut h = histogram();
            let mut errors = 0u64;
            loop {
                let next = queue.lock().ok().and_then(|mut q| q.pop());
                let Some(assertion) = next else { break };
                let t = Instant::now();
                let resp = http
                    .post(&url)
                    .form(&[
                        ("grant_type", "client_credentials"),
                        (
                            "client_assertion_type",
                            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                        ),
                        ("client_assertion", assertion.as_str()),
                        ("scope", "App:read"),
                        ("audience", AUDIENCE),
                    ])
                    .send()
                    .await;
                let ok = match resp {
                    Ok(r) if r.status().is_success() => r
                        .json::<serde_json::Value>()
                        .await
                        .map(|v| v.get("access_token").is_some())
                        .unwrap_or(false),
                    _ => false,
                };
                record(&mut h, t.elapsed());
                if !ok {
                    errors += 1;
                }
            }
            (h, errors)
        });
    }
    let mut all = histogram();
    let mut errors = 0;
    while let Some(r) = set.join_next().await {
        let (h, e) = r.context("client task")?;
        all.add(h).map_err(|e| anyhow!("{e}"))?;
        errors += e;
    }
    let elapsed = started.elapsed();
    serving.abort();
    let issued_per_s = o.tokens as f64 / elapsed.as_secs_f64();

    // Baselines, same process, one thread.
    let message = vec![b'x'; 600];
    let sign_rate = rate(Duration::from_secs(2), || {
        std::hint::black_box(agent_key.sign(&message));
    });
    let sig = agent_key.sign(&message);
    let public = agent_key.verifying_key();
    let both_rate = rate(Duration::from_secs(2), || {
        let s = agent_key.sign(&message);
        std::hint::black_box(public.verify(&message, &s).is_ok());
        std::hint::black_box(&sig);
    });
    let p = |q: f64| Duration::from_nanos(all.value_at_quantile(q)).as_secs_f64() * 1000.0;
    let markdown = format!(
        "| measure | value | ratio |\n|---|---:|---:|\n\
| `POST /oauth2/token` ({} tasks, {} tokens, {errors} errors) | {} tokens, p50 {:.2} ms, p99 {:.2} ms | |\n\
| bare Ed25519 signatures, one thread | {} | tokens ÷ signatures **{:.2}×** |\n\
| bare Ed25519 sign + verify, one thread | {} | tokens ÷ (sign + verify) **{:.2}×** |\n",
        o.tasks,
        o.tokens,
        fmt_rate(issued_per_s),
        p(0.5),
        p(0.99),
        fmt_rate(sign_rate),
        issued_per_s / sign_rate,
        fmt_rate(both_rate),
        issued_per_s / both_rate,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    server.serve(listener, async {}).await?;
    if errors > 0 {
        return Err(anyhow!("{errors} token requests failed\n{markdown}"));
    }
    Ok(Outcome { markdown })
}

fn rate(for_at_least: Duration, mut f: impl FnMut()) -> f64 {
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < for_at_least {
        for _ in 0..100 {
            f();
        }
        n += 100;
    }
    n as f64 / started.elapsed().as_secs_f64()
}
