//! What an access token costs over the bare signature it carries, on the same machine in
//! the same run:
//!
//! 1. `bare_ed25519_sign`: `ed25519_dalek::SigningKey::sign` of a message as long as a
//!    token's signing input (the baseline of issuance).
//! 2. `issue_access_token`: `credentials::jwt::issue` — claims to JSON, base64url, header,
//!    Ed25519 signature with the current signing key (what the token endpoint does per
//!    token, before its audit record).
//! 3. `bare_ed25519_verify`: `VerifyingKey::verify` of that signature (the baseline of
//!    verification).
//! 4. `verify_access_token`: `credentials::jwt::verify` — header checks, key lookup,
//!    signature, claims, issuer/audience/time (what a resource service or `/v1/authorize`
//!    with a token does; the example resource service uses the same checks).
//!
//! Goal (issue 4): issuance ≥ 0.5× the rate of bare signing, i.e. (2) ≤ 2 × (1).
#![allow(
    clippy::expect_used,
    reason = "benchmark setup: a failure must stop the run"
)]

use criterion::{criterion_group, criterion_main, Criterion};
use ed25519_dalek::{Signer, SigningKey, Verifier};
use std::hint::black_box;
use std::time::Duration;
use warrant_server::credentials::jwt::{self, AccessClaims};
use warrant_server::credentials::keys::{generate, KeyWrap};
use warrant_server::credentials::SigningKeys;

fn claims() -> AccessClaims {
    AccessClaims {
        iss: "https://warrant.example.com".into(),
        sub: "idn_0190a2b3c4d5e6f708192a3b4c5d6e7f".into(),
        aud: "https://docs.example.com".into(),
        exp: 1_900_000_300,
        iat: 1_900_000_000,
        nbf: 1_900_000_000,
        jti: "at_5b0c3d1e2f4a6b7c8d9e0f1a2b3c4d5e".into(),
        client_id: "idn_0190a2b3c4d5e6f708192a3b4c5d6e7f".into(),
        scope: "App:read App:list".into(),
        environment: "prod".into(),
        owner: "alice@example.com".into(),
        spiffe_id: "spiffe://warrant.local/prod/invoice-agent".into(),
        act: None,
    }
}

fn bench(c: &mut Criterion) {
    let wrap = KeyWrap::derive(&SigningKey::from_bytes(&[7; 32])).expect("key wrap");
    let row = generate(&wrap, 0).expect("signing key");
    let keys = SigningKeys::from_rows(&[row], &wrap);
    let claims = claims();
    let token = jwt::issue(&keys, &claims).expect("issue");
    let signing_input_len = token.rfind('.').expect("three parts");
    let message = vec![b'x'; signing_input_len];
    let bare = SigningKey::from_bytes(&[3; 32]);
    let signature = bare.sign(&message);
    let public = bare.verifying_key();
    let now_ms = 1_900_000_100_000;

    let mut g = c.benchmark_group("credentials");
    g.measurement_time(Duration::from_secs(4));
    g.bench_function("bare_ed25519_sign", |b| {
        b.iter(|| black_box(bare.sign(black_box(&message))))
    });
    g.bench_function("issue_access_token", |b| {
        b.iter(|| black_box(jwt::issue(&keys, black_box(&claims)).expect("issue")))
    });
    g.bench_function("bare_ed25519_verify", |b| {
        b.iter(|| black_box(public.verify(black_box(&message), &signature).is_ok()))
    });
    g.bench_function("verify_access_token", |b| {
        b.iter(|| {
            black_box(
                jwt::verify(
                    &keys,
                    black_box(&token),
                    now_ms,
                    "https://warrant.example.com",
                    Some("https://docs.example.com"),
                )
                .expect("verify"),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
