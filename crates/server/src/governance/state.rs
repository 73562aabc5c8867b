//! The governance part of the decision snapshot: the entitlement model (roles, resources,
//! trust, authentication requirements), the declared capabilities, the tier policies in
//! force and the compounding-change aggregates.
//!
//! Persistent maps throughout, so the writer's working copy of the snapshot is O(1) to
//! clone and each change costs O(log n). Proposals themselves are not here (they are read
//! from the store when shown or decided); only their effect on the aggregates is.

use crate::snapshot::Snapshot;
use std::sync::Arc;
use warrant_core::access::{Human, Session};
use warrant_core::governance::aggregate::{Aggregates, Thresholds};
use warrant_core::governance::assess::Graph;
use warrant_core::governance::{
    AuthRequirement, Capability, Proposal, ProposalState, Resource, Role,
};
use warrant_core::identity::Identity;
use warrant_core::Millis;
use warrant_policy::TierPolicies;
use warrant_store::{ObjectFilter, ObjectRow, Store, StoreError};

/// Kinds of governance objects in the store.
pub mod kind {
    pub const CAPABILITY: &str = "capability";
    pub const PROPOSAL: &str = "proposal";
    pub const ROLE: &str = "role";
    pub const RESOURCE: &str = "resource";
    pub const TRUST: &str = "trust";
    pub const AUTH: &str = "auth";
    pub const TIER_POLICY: &str = "tier_policy";
    pub const DELIVERY: &str = "delivery";
    /// A correlation chain: the ids of its proposals in order (id: the correlation id).
    pub const CHAIN: &str = "chain";
    /// A human operator of warrant (id: the lower-cased name).
    pub const HUMAN: &str = "human";
    /// A request to grant a human a control-plane role.
    pub const ROLE_GRANT: &str = "role_grant";
    /// A signed-in browser session (id: the public session id; state `live`/`ended`).
    pub const SESSION: &str = "session";
    /// An access certification campaign.
    pub const CAMPAIGN: &str = "campaign";
    /// A one-time fact (id: its name), e.g. that the first admin was bootstrapped.
    pub const MARKER: &str = "marker";
}

/// The state of a live session's row.
pub const SESSION_LIVE: &str = "live";

/// The state of a role or resource row that was deleted (kept for history).
pub const DELETED: &str = "deleted";

/// The proposals of one correlation chain, in submission order.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChainRow {
    pub correlation: String,
    pub proposals: Vec<String>,
}

/// Trust of one identity, as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TrustRow {
    pub identity: String,
    pub trusted: Vec<String>,
}

/// Authentication requirement of one identity, as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuthRow {
    pub identity: String,
    pub require: AuthRequirement,
}

/// One version of the tier policies, as stored (id: the version, zero-padded).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TierPolicyRow {
    pub version: u64,
    pub text: String,
    pub comment: String,
    pub by: String,
    pub at_ms: Millis,
}

/// A stored tier-policy version; one that does not decode becomes an empty policy set
/// (fail closed: every proposal Tier 3 or above), keeping its version number.
pub fn tier_policy_or_none(row: &ObjectRow) -> TierPolicyRow {
    decode::<TierPolicyRow>(row).unwrap_or_else(|| TierPolicyRow {
        version: row.id.parse().unwrap_or(0),
        text: String::new(),
        comment: "undecodable stored version: no tier policy applies".into(),
        by: "system".into(),
        at_ms: row.updated_ms,
    })
}

pub fn tier_policy_id(version: u64) -> String {
    format!("{version:012}")
}

#[derive(Clone)]
pub struct Gov {
    pub roles: imbl::HashMap<String, Arc<Role>>,
    /// Role name → identities listing it that are not retired (kept in step with the
    /// principals).
    pub role_members: imbl::HashMap<String, imbl::HashSet<String>>,
    /// Keyed by the lower-cased id.
    pub resources: imbl::HashMap<String, Arc<Resource>>,
    pub trust: imbl::HashMap<String, Arc<Vec<String>>>,
    pub auth: imbl::HashMap<String, AuthRequirement>,
    pub capabilities: imbl::HashMap<String, Arc<Capability>>,
    pub tier: TierPolicies,
    /// 0: the built-in default policies.
    pub tier_version: u64,
    pub aggregates: Aggregates,
    pub thresholds: Arc<Thresholds>,
    /// Humans who operate warrant, by lower-cased name.
    pub humans: imbl::HashMap<String, Arc<Human>>,
    /// Live sessions by the hex SHA-256 of their cookie secret.
    pub sessions: imbl::HashMap<String, Arc<Session>>,
}

impl Default for Gov {
    fn default() -> Self {
        Gov {
            roles: Default::default(),
            role_members: Default::default(),
            resources: Default::default(),
            trust: Default::default(),
            auth: Default::default(),
            capabilities: Default::default(),
            tier: TierPolicies::builtin(),
            tier_version: 0,
            aggregates: Aggregates::default(),
            thresholds: Arc::new(Thresholds::default()),
            humans: Default::default(),
            sessions: Default::default(),
        }
    }
}

fn decode<T: serde::de::DeserializeOwned>(row: &ObjectRow) -> Option<T> {
    match serde_json::from_str(&row.body) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::error!(kind = %row.kind, id = %row.id, error = %e, "stored governance object does not decode; ignoring it");
            None
        }
    }
}

/// Decodes a stored object's body.
pub fn body<T: serde::de::DeserializeOwned>(row: &ObjectRow) -> Option<T> {
    decode(row)
}

/// A proposal as stored.
pub fn proposal_row(p: &Proposal) -> ObjectRow {
    // Only states a timer acts on carry a due time (an `executing` proposal waits for its
    // connector, not for the clock).
    let timed = matches!(
        p.state,
        ProposalState::InReview | ProposalState::PendingApproval | ProposalState::Recommended
    );
    ObjectRow {
        kind: kind::PROPOSAL.into(),
        id: p.id.clone(),
        state: p.state.as_str().into(),
        body: serde_json::to_string(p).unwrap_or_default(),
        // Timers: the end of the override window, or the expiry.
        due_ms: if timed { p.deadline_ms } else { None },
        created_ms: p.submitted_ms,
        updated_ms: p.updated_ms,
    }
}

pub fn object_row<T: serde::Serialize>(
    kind: &str,
    id: &str,
    state: &str,
    value: &T,
    now: Millis,
) -> ObjectRow {
    ObjectRow {
        kind: kind.into(),
        id: id.into(),
        state: state.into(),
        body: serde_json::to_string(value).unwrap_or_default(),
        due_ms: None,
        created_ms: now,
        updated_ms: now,
    }
}

impl Gov {
    /// Loads everything but the role index (built with the principals).
    pub async fn load(
        store: &dyn Store,
        now: Millis,
        thresholds: &Thresholds,
    ) -> Result<Gov, StoreError> {
        let mut g = Gov {
            thresholds: Arc::new(thresholds.clone()),
            ..Gov::default()
        };
        for row in store.all_objects(kind::ROLE).await? {
            if row.state != DELETED {
                if let Some(r) = decode::<Role>(&row) {
                    g.roles.insert(r.name.clone(), Arc::new(r));
                }
            }
        }
        for row in store.all_objects(kind::RESOURCE).await? {
            if row.state != DELETED {
                if let Some(r) = decode::<Resource>(&row) {
                    g.resources.insert(r.id.to_lowercase(), Arc::new(r));
                }
            }
        }
        for row in store.all_objects(kind::TRUST).await? {
            if let Some(t) = decode::<TrustRow>(&row) {
                g.trust.insert(t.identity, Arc::new(t.trusted));
            }
        }
        for row in store.all_objects(kind::AUTH).await? {
            if let Some(a) = decode::<AuthRow>(&row) {
                g.auth.insert(a.identity, a.require);
            }
        }
        for row in store.all_objects(kind::CAPABILITY).await? {
            if let Some(c) = decode::<Capability>(&row) {
                g.capabilities.insert(c.id.clone(), Arc::new(c));
            }
        }
        for row in store.all_objects(kind::HUMAN).await? {
            if let Some(h) = decode::<Human>(&row) {
                g.humans.insert(Human::key(&h.name), Arc::new(h));
            }
        }
        let live = store
            .list_objects(&ObjectFilter {
                kind: kind::SESSION.into(),
                state: Some(SESSION_LIVE.into()),
                after_id: None,
                limit: 0,
            })
            .await?;
        for row in live {
            if let Some(x) = decode::<Session>(&row) {
                g.put_session(x, now);
            }
        }
        if let Some(row) = store.all_objects(kind::TIER_POLICY).await?.last() {
            g.set_tier_policy(&tier_policy_or_none(row));
        }
        // Only the proposals inside the windows: ids are `prp_` + a UUIDv7, whose first
        // 12 hex digits are the submission time, so id order is time order.
        let cutoff = now - thresholds.window_ms.max(thresholds.chain_window_ms);
        let recent = store
            .list_objects(&ObjectFilter {
                kind: kind::PROPOSAL.into(),
                state: None,
                after_id: Some(format!("prp_{:012x}", cutoff.max(0))),
                limit: 0,
            })
            .await?;
        for row in recent {
            if row.created_ms > cutoff {
                if let Some(p) = decode::<Proposal>(&row) {
                    g.aggregates.observe(&p, now, thresholds);
                }
            }
        }
        Ok(g)
    }

    /// Keeps a session if it is live, drops it otherwise.
    pub fn put_session(&mut self, x: Session, now: Millis) {
        if x.live(now) {
            self.sessions.insert(x.hash.clone(), Arc::new(x));
        } else {
            self.sessions.remove(&x.hash);
        }
    }

    /// Puts a stored tier-policy version in force. One that no longer compiles fails
    /// closed: no policy matches, so every proposal is Tier 3 (or the floor's).
    pub fn set_tier_policy(&mut self, t: &TierPolicyRow) {
        self.tier_version = t.version;
        self.tier = match TierPolicies::compile(&t.text) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(version = t.version, error = %e, "stored tier policies do not compile; every proposal goes to Tier 3 until valid ones are put");
                TierPolicies::compile("").unwrap_or_else(|_| TierPolicies::builtin())
            }
        };
    }
}

impl Graph for Snapshot {
    fn identity(&self, id: &str) -> Option<&Identity> {
        self.principals.get(id).map(|e| &e.identity)
    }

    fn role(&self, name: &str) -> Option<&Role> {
        self.gov.roles.get(name).map(|r| &**r)
    }

    fn role_members(&self, name: &str) -> Vec<String> {
        self.gov
            .role_members
            .get(name)
            .map(|s| {
                let mut v: Vec<String> = s.iter().cloned().collect();
                v.sort();
                v
            })
            .unwrap_or_default()
    }

    fn role_member_count(&self, name: &str) -> usize {
        self.gov.role_members.get(name).map_or(0, |m| m.len())
    }

    /// Resources match without case (`S3:Prod` is `s3:prod`): a differently-cased
    /// entitlement must not escape its classification.
    fn resource(&self, id: &str) -> Option<&Resource> {
        self.gov.resources.get(&id.to_lowercase()).map(|r| &**r)
    }

    fn trust(&self, identity: &str) -> Vec<String> {
        self.gov
            .trust
            .get(identity)
            .map(|t| (**t).clone())
            .unwrap_or_default()
    }

    fn auth_requirement(&self, identity: &str) -> AuthRequirement {
        self.gov
            .auth
            .get(identity)
            .copied()
            .unwrap_or(AuthRequirement::Any)
    }
}
