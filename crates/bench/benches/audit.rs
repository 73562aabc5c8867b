//! What sealing one audit record into the Merkle chain costs over one plain SHA-256 of
//! the same bytes, on the same machine in the same run:
//!
//! 1. `sha256_leaf_bytes`: `Sha256::digest` of a decision record's leaf bytes (pre-encoded).
//! 2. `leaf_hash`: encoding the leaf bytes plus the RFC 6962 leaf hash (what the verifier
//!    recomputes per record).
//! 3. `compact_tree_push_root`: appending a leaf hash to the compact tree and computing
//!    the new root (one node hash per merge, one per remaining frontier entry).
//! 4. `chain_head_seal`: `ChainHead::seal`, all of the above plus building the record
//!    (what the writer does per record). The draft clone is outside the timing.
//!
//! The tree starts at one million records, so the root costs what it costs in a log of
//! that size (one node hash per set bit of the size).
#![allow(
    clippy::expect_used,
    reason = "benchmark setup: a failure must stop the run"
)]

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use sha2::{Digest, Sha256};
use std::hint::black_box;
use std::time::Duration;
use warrant_core::audit::{leaf_bytes, ChainHead, RecordDraft, RecordKind};
use warrant_core::merkle::{leaf_hash, CompactTree, Hash};

fn draft() -> RecordDraft {
    let id = "idn_0190a2b3c4d5e6f708192a3b4c5d6e7f";
    let payload = serde_json::json!({
        "principal": id,
        "principal_id": id,
        "action": "App::Action::\"read\"",
        "resource": "App::Document::\"q3\"",
        "decision": "allow",
        "reason": "allowed by policy `readers-read`: readers may read documents at low risk",
        "policies": ["readers-read"],
        "errors": 0,
        "policy_version": 1,
        "context": { "risk": 10 },
    });
    RecordDraft {
        kind: RecordKind::Decision,
        actor: "admin:tok_env".into(),
        subject: format!("identity:{id}"),
        payload: payload.to_string(),
    }
}

/// A head as after one million records (frontier hashes are arbitrary but well-formed).
fn head_at(size: u64) -> ChainHead {
    let frontier: Vec<Hash> = (0..size.count_ones())
        .map(|i| leaf_hash(&i.to_be_bytes()))
        .collect();
    ChainHead {
        tree: CompactTree::from_parts(size, frontier).expect("frontier matches size"),
    }
}

fn seal(c: &mut Criterion) {
    let d = draft();
    let ts = 1_700_000_000_000i64;
    let seq = 1_000_000u64;
    let bytes = leaf_bytes(seq, ts, d.kind.as_str(), &d.actor, &d.subject, &d.payload);
    let mut group = c.benchmark_group("audit_seal");
    group.bench_function("sha256_leaf_bytes", |b| {
        b.iter(|| black_box(Sha256::digest(black_box(&bytes))));
    });
    group.bench_function("leaf_hash", |b| {
        b.iter(|| {
            black_box(leaf_hash(&leaf_bytes(
                seq,
                ts,
                d.kind.as_str(),
                black_box(&d.actor),
                black_box(&d.subject),
                black_box(&d.payload),
            )))
        });
    });
    let leaf = leaf_hash(&bytes);
    let mut tree = head_at(seq).tree;
    group.bench_function("compact_tree_push_root", |b| {
        b.iter(|| {
            tree.push(black_box(leaf));
            black_box(tree.root())
        });
    });
    let mut head = head_at(seq);
    group.bench_function("chain_head_seal", |b| {
        b.iter_batched(
            || d.clone(),
            |draft| black_box(head.seal(draft, ts)),
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = seal
}
criterion_main!(benches);
