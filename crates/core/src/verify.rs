//! The offline verifier of an audit chain.
//!
//! Records are fed in sequence order ([`ChainVerifier::push`]); the verifier recomputes every
//! leaf hash from the record's content, rebuilds the Merkle tree, compares each stored tree
//! head, and checks every signed checkpoint against the recomputed tree at its size. The
//! first problem found names the record:
//!
//! - a record whose content no longer matches its leaf hash was **edited**;
//! - a gap in sequence numbers means records were **removed**;
//! - a record whose sequence number is out of order was **reordered**;
//! - a stored tree head that differs from the recomputed one means a record at or before it
//!   was altered and its hash recomputed;
//! - a checkpoint whose root differs from the recomputed tree means records between the
//!   previous good checkpoint and this one were rewritten, hashes and all.

use crate::audit::AuditRecord;
use crate::checkpoint::Checkpoint;
use crate::merkle::{CompactTree, Hash};
use ed25519_dalek::VerifyingKey;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// Records `from..to` (exclusive) are absent.
    Missing { from: u64, to: u64 },
    /// A record appears at a position where another sequence number was expected.
    OutOfOrder { expected: u64, found: u64 },
    /// The record's content does not match its stored leaf hash.
    Edited { seq: u64 },
    /// The stored leaf hash is consistent with the content, but the stored tree head is not.
    HeadMismatch { seq: u64 },
    /// A signed checkpoint disagrees with the recomputed tree.
    CheckpointMismatch { size: u64, after: u64 },
    /// A checkpoint's signature does not verify.
    BadSignature { size: u64 },
    /// A checkpoint signed by a key the verifier was not given.
    UnknownKey { size: u64, key_id: String },
    /// A checkpoint covers more records than the log holds.
    Truncated { size: u64, records: u64 },
}

impl Finding {
    /// The first sequence number this finding concerns.
    pub fn first_bad_seq(&self) -> Option<u64> {
        match self {
            Finding::Missing { from, .. } => Some(*from),
            Finding::OutOfOrder { expected, .. } => Some(*expected),
            Finding::Edited { seq } | Finding::HeadMismatch { seq } => Some(*seq),
            Finding::CheckpointMismatch { after, .. } => Some(*after),
            Finding::Truncated { records, .. } => Some(*records),
            Finding::BadSignature { .. } | Finding::UnknownKey { .. } => None,
        }
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::Missing { from, to } if to - from == 1 => {
                write!(f, "record {from} is missing (removed)")
            }
            Finding::Missing { from, to } => {
                write!(f, "records {from} to {} are missing (removed)", to - 1)
            }
            Finding::OutOfOrder { expected, found } => write!(
                f,
                "record {expected} is out of order: found record {found} in its place (reordered)"
            ),
            Finding::Edited { seq } => write!(
                f,
                "record {seq} was edited: its content does not match its leaf hash"
            ),
            Finding::HeadMismatch { seq } => write!(
                f,
                "record {seq}: stored tree head does not match the recomputed tree (a record at or before {seq} was altered)"
            ),
            Finding::CheckpointMismatch { size, after } => write!(
                f,
                "signed checkpoint at size {size} does not match the records: records {after} to {} were rewritten",
                size.saturating_sub(1)
            ),
            Finding::BadSignature { size } => {
                write!(f, "checkpoint at size {size} has an invalid signature")
            }
            Finding::UnknownKey { size, key_id } => write!(
                f,
                "checkpoint at size {size} is signed by unknown key `{key_id}`"
            ),
            Finding::Truncated { size, records } => write!(
                f,
                "records from {records} are missing: a signed checkpoint covers {size} records but the log ends at {records}"
            ),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub records: u64,
    pub checkpoints: u64,
    pub root: Option<Hash>,
    /// Problems in the order found; the first names the first bad record.
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Streaming verifier; feed records in ascending sequence order.
pub struct ChainVerifier {
    tree: CompactTree,
    checkpoints: Vec<Checkpoint>,
    next_cp: usize,
    last_good_cp: u64,
    chain_broken: bool,
    report: Report,
}

impl ChainVerifier {
    /// `checkpoints` in any order; `keys` are the trusted checkpoint keys.
    pub fn new(mut checkpoints: Vec<Checkpoint>, keys: &[VerifyingKey]) -> Self {
        checkpoints.sort_by_key(|c| (c.size, c.ts_ms));
        let mut report = Report::default();
        for cp in &checkpoints {
            match keys
                .iter()
                .find(|k| crate::checkpoint::key_id(k) == cp.key_id)
            {
                None => report.findings.push(Finding::UnknownKey {
                    size: cp.size,
                    key_id: cp.key_id.clone(),
                }),
                Some(k) if !cp.verify(k) => report
                    .findings
                    .push(Finding::BadSignature { size: cp.size }),
                Some(_) => {}
            }
        }
        report.checkpoints = checkpoints.len() as u64;
        let mut v = ChainVerifier {
            tree: CompactTree::new(),
            checkpoints,
            next_cp: 0,
            last_good_cp: 0,
            chain_broken: false,
            report,
        };
        v.check_checkpoints_at_size();
        v
    }

    /// Records verified so far.
    pub fn size(&self) -> u64 {
        self.tree.size()
    }

    /// True once the chain is broken; later records are not checked further.
    pub fn broken(&self) -> bool {
        self.chain_broken
    }

    fn fail(&mut self, finding: Finding) {
        self.chain_broken = true;
        self.report.findings.push(finding);
    }

    fn check_checkpoints_at_size(&mut self) {
        let size = self.tree.size();
        while let Some(cp) = self.checkpoints.get(self.next_cp) {
            if cp.size != size {
                break;
            }
            let (cp_size, cp_root) = (cp.size, cp.root);
            self.next_cp += 1;
            if cp_root != self.tree.root() {
                let after = self.last_good_cp;
                self.fail(Finding::CheckpointMismatch {
                    size: cp_size,
                    after,
                });
                return;
            }
            self.last_good_cp = cp_size;
        }
    }

    pub fn push(&mut self, record: &AuditRecord) {
        if self.chain_broken {
            return;
        }
        let expected = self.tree.size();
        if record.seq != expected {
            if record.seq > expected {
                self.fail(Finding::Missing {
                    from: expected,
                    to: record.seq,
                });
            } else {
                self.fail(Finding::OutOfOrder {
                    expected,
                    found: record.seq,
                });
            }
            return;
        }
        let leaf = record.computed_leaf_hash();
        if leaf != record.leaf_hash {
            self.fail(Finding::Edited { seq: record.seq });
            return;
        }
        self.tree.push(leaf);
        if self.tree.root() != record.root {
            self.fail(Finding::HeadMismatch { seq: record.seq });
            return;
        }
        self.check_checkpoints_at_size();
    }

    /// Finishes: `head_size` is the size the store says the log has, if it keeps one.
    pub fn finish(mut self, head_size: Option<u64>) -> Report {
        let records = self.tree.size();
        if !self.chain_broken {
            let beyond = self
                .checkpoints
                .iter()
                .map(|c| c.size)
                .chain(head_size)
                .filter(|s| *s > records)
                .max();
            if let Some(size) = beyond {
                self.report
                    .findings
                    .push(Finding::Truncated { size, records });
            }
            self.report.root = Some(self.tree.root());
        }
        self.report.records = records;
        self.report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{ChainHead, RecordDraft, RecordKind};
    use ed25519_dalek::SigningKey;

    fn chain(n: u64) -> (Vec<AuditRecord>, ChainHead) {
        let mut head = ChainHead::default();
        let records = (0..n)
            .map(|i| {
                head.seal(
                    RecordDraft {
                        kind: RecordKind::Decision,
                        actor: "admin:t1".into(),
                        subject: format!("identity:{i}"),
                        payload: format!("{{\"n\":{i}}}"),
                    },
                    1_000 + i as i64,
                )
            })
            .collect();
        (records, head)
    }

    fn run(records: &[AuditRecord], cps: Vec<Checkpoint>, key: &SigningKey) -> Report {
        let mut v = ChainVerifier::new(cps, &[key.verifying_key()]);
        for r in records {
            v.push(r);
        }
        v.finish(None)
    }

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[9; 32])
    }

    fn cp_at(records: &[AuditRecord], size: usize, key: &SigningKey) -> Checkpoint {
        Checkpoint::sign("t", size as u64, records[size - 1].root, 5, key)
    }

    #[test]
    fn clean_chain_verifies() {
        let (records, head) = chain(20);
        let k = key();
        let report = run(
            &records,
            vec![cp_at(&records, 10, &k), cp_at(&records, 20, &k)],
            &k,
        );
        assert!(report.ok(), "{:?}", report.findings);
        assert_eq!(report.records, 20);
        assert_eq!(report.root, Some(head.tree.root()));
    }

    #[test]
    fn edit_is_named() {
        let (mut records, _) = chain(10);
        records[4].payload = "{\"n\":999}".into();
        let report = run(&records, vec![], &key());
        assert_eq!(report.findings, vec![Finding::Edited { seq: 4 }]);
    }

    #[test]
    fn edit_with_recomputed_leaf_is_caught_by_head() {
        let (mut records, _) = chain(10);
        records[4].payload = "{\"n\":999}".into();
        records[4].leaf_hash = records[4].computed_leaf_hash();
        let report = run(&records, vec![], &key());
        assert_eq!(report.findings, vec![Finding::HeadMismatch { seq: 4 }]);
    }

    #[test]
    fn full_rewrite_is_caught_by_checkpoint() {
        let (records, _) = chain(10);
        let k = key();
        let cps = vec![cp_at(&records, 3, &k), cp_at(&records, 8, &k)];
        // Rewrite record 5 and recompute every hash after it.
        let mut head = ChainHead::default();
        let forged: Vec<AuditRecord> = records
            .iter()
            .map(|r| {
                let payload = if r.seq == 5 {
                    "{\"n\":-1}".into()
                } else {
                    r.payload.clone()
                };
                head.seal(
                    RecordDraft {
                        kind: RecordKind::Decision,
                        actor: r.actor.clone(),
                        subject: r.subject.clone(),
                        payload,
                    },
                    r.ts_ms,
                )
            })
            .collect();
        let report = run(&forged, cps, &k);
        assert_eq!(
            report.findings,
            vec![Finding::CheckpointMismatch { size: 8, after: 3 }]
        );
        assert_eq!(report.findings[0].first_bad_seq(), Some(3));
    }

    #[test]
    fn removal_and_reorder_are_named() {
        let (records, _) = chain(10);
        let mut removed = records.clone();
        removed.remove(6);
        assert_eq!(
            run(&removed, vec![], &key()).findings,
            vec![Finding::Missing { from: 6, to: 7 }]
        );
        let mut swapped = records.clone();
        swapped.swap(2, 3);
        assert_eq!(
            run(&swapped, vec![], &key()).findings,
            vec![Finding::Missing { from: 2, to: 3 }]
        );
        // Swapping contents but keeping sequence numbers in place.
        let mut swapped = records.clone();
        let (a, b) = (swapped[2].clone(), swapped[3].clone());
        swapped[2] = AuditRecord { seq: 2, ..b };
        swapped[3] = AuditRecord { seq: 3, ..a };
        assert_eq!(
            run(&swapped, vec![], &key()).findings,
            vec![Finding::Edited { seq: 2 }]
        );
    }

    #[test]
    fn truncation_is_caught_by_checkpoint_and_head() {
        let (records, _) = chain(10);
        let k = key();
        let cps = vec![cp_at(&records, 10, &k)];
        let report = run(&records[..7], cps, &k);
        assert_eq!(
            report.findings,
            vec![Finding::Truncated {
                size: 10,
                records: 7
            }]
        );
        let mut v = ChainVerifier::new(vec![], &[]);
        for r in &records[..7] {
            v.push(r);
        }
        assert_eq!(
            v.finish(Some(10)).findings,
            vec![Finding::Truncated {
                size: 10,
                records: 7
            }]
        );
    }

    #[test]
    fn forged_or_unknown_checkpoints_are_reported() {
        let (records, _) = chain(4);
        let k = key();
        let mut cp = cp_at(&records, 4, &k);
        cp.ts_ms += 1;
        let report = run(&records, vec![cp], &k);
        assert_eq!(report.findings, vec![Finding::BadSignature { size: 4 }]);
        let other = SigningKey::from_bytes(&[1; 32]);
        let report = run(&records, vec![cp_at(&records, 4, &other)], &k);
        assert!(matches!(
            report.findings[0],
            Finding::UnknownKey { size: 4, .. }
        ));
    }
}
