//! The audit record model.
//!
//! Every decision and every change becomes one [`AuditRecord`]. A record's leaf bytes
//! ([`leaf_bytes`]) are a length-prefixed binary encoding of all its fields, including its
//! sequence number, so editing, removing or reordering records changes the Merkle tree
//! ([`crate::merkle`]). The payload is stored as the exact JSON text that was hashed, so
//! verification never depends on how a JSON library orders keys.

use crate::merkle::{leaf_hash, Hash};
use crate::Millis;

/// Domain separation tag of leaf encoding version 1.
pub const LEAF_TAG_V1: &[u8] = b"warrant/audit/v1\0";

/// Kinds of audit record. AI recommendations and human decisions are distinct kinds:
/// an auditor can always tell which records were a model's and which a person's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// A runtime authorization decision.
    Decision,
    IdentityCreated,
    IdentityUpdated,
    IdentitySuspended,
    IdentityResumed,
    IdentityRetired,
    PolicyUpdated,
    TokenCreated,
    TokenRevoked,
    /// A proposal or recommendation made by an AI identity.
    AiRecommendation,
    /// A decision taken by a named human (approval, rejection, override).
    HumanDecision,
    /// A change applied by the executor.
    Execution,
    /// Server life-cycle events (start-up, configuration).
    System,
    /// An access token was issued (like a decision, it changes no state).
    CredentialIssued,
    /// A token request from an authenticated client was refused (a decision too).
    CredentialRefused,
    /// An access token was revoked before its expiry.
    CredentialRevoked,
    /// A public key an identity authenticates with was registered.
    IdentityKeyAdded,
    IdentityKeyRevoked,
    /// A new access-token signing key took over.
    SigningKeyRotated,
    KillSwitchEngaged,
    KillSwitchReleased,
    /// An AI capability was declared or changed (owner acceptance and reviews are
    /// `human.decision` records).
    CapabilityChanged,
    /// Roles or resources of the entitlement model were changed directly by a human.
    EntitlementModelChanged,
    /// The tier policies were replaced.
    TierPolicyUpdated,
    /// A Tier 2 change's override window ended; the change stands.
    ProposalRatified,
    /// A Tier 3/4 proposal's time to decide ran out.
    ProposalExpired,
    /// An aggregate (compounding changes) crossed its threshold.
    GovernanceAlert,
    /// A governed request was refused (who tried what, and why).
    RequestRefused,
    /// A notification's delivery ended (delivered or given up).
    NotificationDelivery,
    /// A human account was created or changed (roles granted or revoked included).
    HumanChanged,
    /// A control-plane role grant was requested, approved or rejected.
    RoleGrant,
    /// A human signed in or out (or a session expired / was ended).
    Session,
    /// An access certification campaign or one of its answers.
    Certification,
}

impl RecordKind {
    /// Kinds that record a decision rather than a change of state: replicas need not
    /// reload anything for them (see the store's change journal).
    pub const DECISIONS: [RecordKind; 3] = [
        RecordKind::Decision,
        RecordKind::CredentialIssued,
        RecordKind::CredentialRefused,
    ];
}

impl RecordKind {
    pub const ALL: [RecordKind; 33] = [
        RecordKind::Decision,
        RecordKind::IdentityCreated,
        RecordKind::IdentityUpdated,
        RecordKind::IdentitySuspended,
        RecordKind::IdentityResumed,
        RecordKind::IdentityRetired,
        RecordKind::PolicyUpdated,
        RecordKind::TokenCreated,
        RecordKind::TokenRevoked,
        RecordKind::AiRecommendation,
        RecordKind::HumanDecision,
        RecordKind::Execution,
        RecordKind::System,
        RecordKind::CredentialIssued,
        RecordKind::CredentialRefused,
        RecordKind::CredentialRevoked,
        RecordKind::IdentityKeyAdded,
        RecordKind::IdentityKeyRevoked,
        RecordKind::SigningKeyRotated,
        RecordKind::KillSwitchEngaged,
        RecordKind::KillSwitchReleased,
        RecordKind::CapabilityChanged,
        RecordKind::EntitlementModelChanged,
        RecordKind::TierPolicyUpdated,
        RecordKind::ProposalRatified,
        RecordKind::ProposalExpired,
        RecordKind::GovernanceAlert,
        RecordKind::RequestRefused,
        RecordKind::NotificationDelivery,
        RecordKind::HumanChanged,
        RecordKind::RoleGrant,
        RecordKind::Session,
        RecordKind::Certification,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Decision => "decision",
            RecordKind::IdentityCreated => "identity.created",
            RecordKind::IdentityUpdated => "identity.updated",
            RecordKind::IdentitySuspended => "identity.suspended",
            RecordKind::IdentityResumed => "identity.resumed",
            RecordKind::IdentityRetired => "identity.retired",
            RecordKind::PolicyUpdated => "policy.updated",
            RecordKind::TokenCreated => "token.created",
            RecordKind::TokenRevoked => "token.revoked",
            RecordKind::AiRecommendation => "ai.recommendation",
            RecordKind::HumanDecision => "human.decision",
            RecordKind::Execution => "execution",
            RecordKind::System => "system",
            RecordKind::CredentialIssued => "credential.issued",
            RecordKind::CredentialRefused => "credential.refused",
            RecordKind::CredentialRevoked => "credential.revoked",
            RecordKind::IdentityKeyAdded => "identity.key_added",
            RecordKind::IdentityKeyRevoked => "identity.key_revoked",
            RecordKind::SigningKeyRotated => "signing_key.rotated",
            RecordKind::KillSwitchEngaged => "killswitch.engaged",
            RecordKind::KillSwitchReleased => "killswitch.released",
            RecordKind::CapabilityChanged => "capability.changed",
            RecordKind::EntitlementModelChanged => "entitlements.changed",
            RecordKind::TierPolicyUpdated => "tier_policy.updated",
            RecordKind::ProposalRatified => "proposal.ratified",
            RecordKind::ProposalExpired => "proposal.expired",
            RecordKind::GovernanceAlert => "governance.alert",
            RecordKind::RequestRefused => "request.refused",
            RecordKind::NotificationDelivery => "notification.delivery",
            RecordKind::HumanChanged => "human.changed",
            RecordKind::RoleGrant => "role_grant",
            RecordKind::Session => "session",
            RecordKind::Certification => "certification",
        }
    }

    pub fn parse(s: &str) -> Option<RecordKind> {
        RecordKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for RecordKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a caller asks to append; the writer assigns sequence number, time and hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordDraft {
    pub kind: RecordKind,
    /// Who acted: `admin:<token id>`, `identity:<id>`, `human:<user>`, `system`.
    pub actor: String,
    /// What it was about: `identity:<id>`, `policy:<version>`, `token:<id>`, ...
    pub subject: String,
    /// JSON text of the payload (an object).
    pub payload: String,
}

/// A record as stored. `kind` is kept as text: the verifier must check records of kinds
/// this build does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub seq: u64,
    pub ts_ms: Millis,
    pub kind: String,
    pub actor: String,
    pub subject: String,
    pub payload: String,
    /// RFC 6962 leaf hash of [`leaf_bytes`].
    pub leaf_hash: Hash,
    /// Tree head over records `0..=seq`.
    pub root: Hash,
}

impl AuditRecord {
    /// The leaf hash recomputed from the content (not the stored one).
    pub fn computed_leaf_hash(&self) -> Hash {
        leaf_hash(&leaf_bytes(
            self.seq,
            self.ts_ms,
            &self.kind,
            &self.actor,
            &self.subject,
            &self.payload,
        ))
    }
}

fn put_field(out: &mut Vec<u8>, field: &str) {
    out.extend_from_slice(&(field.len() as u64).to_be_bytes());
    out.extend_from_slice(field.as_bytes());
}

/// The canonical bytes of a record: tag, seq, time, then each text field length-prefixed.
pub fn leaf_bytes(
    seq: u64,
    ts_ms: Millis,
    kind: &str,
    actor: &str,
    subject: &str,
    payload: &str,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        LEAF_TAG_V1.len() + 16 + 32 + kind.len() + actor.len() + subject.len() + payload.len(),
    );
    out.extend_from_slice(LEAF_TAG_V1);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&ts_ms.to_be_bytes());
    put_field(&mut out, kind);
    put_field(&mut out, actor);
    put_field(&mut out, subject);
    put_field(&mut out, payload);
    out
}

/// The append-side state of the chain: the compact tree over all records so far.
/// The writer loads it inside the write transaction, seals drafts, and stores it back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainHead {
    pub tree: crate::merkle::CompactTree,
}

impl ChainHead {
    pub fn next_seq(&self) -> u64 {
        self.tree.size()
    }

    /// Seals a draft into the next record and advances the head.
    ///
    /// Control characters in the actor, subject and payload (a principal reference taken
    /// verbatim from a request, say) are replaced by `\u{…}` escapes first: every backend
    /// stores the same text (PostgreSQL refuses NUL in text), and a record never carries a
    /// raw terminal escape or line break into logs and reports.
    pub fn seal(&mut self, mut draft: RecordDraft, ts_ms: Millis) -> AuditRecord {
        for text in [&mut draft.actor, &mut draft.subject, &mut draft.payload] {
            if text.chars().any(char::is_control) {
                *text = escape_controls(text);
            }
        }
        let seq = self.tree.size();
        let kind = draft.kind.as_str().to_owned();
        let leaf = leaf_hash(&leaf_bytes(
            seq,
            ts_ms,
            &kind,
            &draft.actor,
            &draft.subject,
            &draft.payload,
        ));
        self.tree.push(leaf);
        AuditRecord {
            seq,
            ts_ms,
            kind,
            actor: draft.actor,
            subject: draft.subject,
            payload: draft.payload,
            leaf_hash: leaf,
            root: self.tree.root(),
        }
    }
}

/// `text` with every control character as a `\u{…}` escape (the backslash itself is
/// left alone: the escape is for display and storage, not meant to be reversed).
fn escape_controls(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_before_hashing() {
        let mut head = ChainHead::default();
        let draft = RecordDraft {
            kind: RecordKind::Decision,
            actor: "admin:t".into(),
            subject: "identity:bot\0\x1b[31m".into(),
            payload: "{\"a\":\"line\nbreak\"}".into(),
        };
        let r = head.seal(draft, 1);
        assert_eq!(r.subject, "identity:bot\\u{0}\\u{1b}[31m");
        assert_eq!(r.payload, "{\"a\":\"line\\u{a}break\"}");
        assert!(!r
            .subject
            .chars()
            .chain(r.payload.chars())
            .any(char::is_control));
        // What is stored is what is hashed.
        assert_eq!(
            r.leaf_hash,
            leaf_hash(&leaf_bytes(
                r.seq, r.ts_ms, &r.kind, &r.actor, &r.subject, &r.payload
            ))
        );
    }

    #[test]
    fn kinds_round_trip() {
        for k in RecordKind::ALL {
            assert_eq!(RecordKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(RecordKind::parse("nope"), None);
    }

    #[test]
    fn leaf_encoding_is_unambiguous() {
        // Moving a byte from one field to the next must change the encoding.
        let a = leaf_bytes(1, 2, "ab", "c", "", "{}");
        let b = leaf_bytes(1, 2, "a", "bc", "", "{}");
        assert_ne!(a, b);
        assert_ne!(
            leaf_bytes(1, 2, "k", "a", "s", "{}"),
            leaf_bytes(2, 2, "k", "a", "s", "{}")
        );
    }

    #[test]
    fn seal_links_records_into_the_tree() {
        let mut head = ChainHead::default();
        let d = |p: &str| RecordDraft {
            kind: RecordKind::Decision,
            actor: "system".into(),
            subject: "x".into(),
            payload: p.into(),
        };
        let r0 = head.seal(d("{}"), 10);
        let r1 = head.seal(d("{\"a\":1}"), 11);
        assert_eq!((r0.seq, r1.seq), (0, 1));
        assert_eq!(r0.root, r0.leaf_hash);
        assert_eq!(
            r1.root,
            crate::merkle::node_hash(&r0.leaf_hash, &r1.leaf_hash)
        );
        assert_eq!(r1.computed_leaf_hash(), r1.leaf_hash);
        assert_eq!(head.next_seq(), 2);
    }
}
