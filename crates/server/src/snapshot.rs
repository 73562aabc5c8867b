//! The immutable decision snapshot: policies + principals + API tokens.
//!
//! Decisions read the current snapshot through an `ArcSwap` load (no lock) and never
//! touch the database. Only the writer builds new snapshots, after the change that caused
//! them has committed, and swaps them in atomically. Principals live in a persistent hash
//! map (`imbl`), so changing one identity costs O(log n) and a snapshot clone is O(1):
//! the cost of a decision does not grow with the number of identities.

use crate::credentials::SigningKeys;
use crate::governance::state::Gov;
use crate::ops::Effect;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use warrant_core::credentials::KillSwitch;
use warrant_core::governance::Role;
use warrant_core::identity::{Identity, IdentityState};
use warrant_core::merkle::Hash;
use warrant_core::Millis;
use warrant_policy::{PolicyBundle, PrincipalEntities, PrincipalFacts};

/// One registered identity as the decision path sees it.
pub struct PrincipalEntry {
    pub identity: Identity,
    /// Pre-built Cedar entities; `None` for identities that may not act (not active).
    pub entities: Option<PrincipalEntities>,
    /// Last time this identity was the principal of a decision (flushed to the store
    /// periodically, off the decision path). Shared across snapshot versions.
    pub last_used: Arc<LastUsed>,
}

#[derive(Debug, Default)]
pub struct LastUsed {
    pub used: AtomicI64,
    pub flushed: AtomicI64,
}

impl LastUsed {
    /// The time to flush, if it moved since the last flush.
    pub fn pending(&self) -> Option<Millis> {
        let used = self.used.load(Ordering::Relaxed);
        (used > self.flushed.load(Ordering::Relaxed)).then_some(used)
    }
}

impl PrincipalEntry {
    /// Builds the entry; `roles` gives the entitlements the identity holds through roles.
    pub fn build(
        identity: Identity,
        last_used: Option<Arc<LastUsed>>,
        roles: &imbl::HashMap<String, Arc<Role>>,
    ) -> Self {
        let entities = if identity.state == IdentityState::Active {
            match warrant_policy::build_principal(&facts(&identity, roles)) {
                Ok(e) => Some(e),
                Err(e) => {
                    // Fail closed: an identity whose entities cannot be built is denied.
                    tracing::error!(identity = %identity.id, error = %e, "cannot build principal entities");
                    None
                }
            }
        } else {
            None
        };
        let last_used = last_used.unwrap_or_else(|| {
            let t = identity.last_used_ms.unwrap_or(0);
            Arc::new(LastUsed {
                used: AtomicI64::new(t),
                flushed: AtomicI64::new(t),
            })
        });
        PrincipalEntry {
            identity,
            entities,
            last_used,
        }
    }

    /// The effective last-used time (in memory, possibly newer than the store's).
    pub fn last_used_ms(&self) -> Option<Millis> {
        let t = self.last_used.used.load(Ordering::Relaxed);
        (t > 0).then_some(t)
    }

    pub fn touch(&self, now: Millis) {
        self.last_used.used.fetch_max(now, Ordering::Relaxed);
    }
}

/// The facts Cedar sees: the identity with its effective entitlements (its own and those
/// of the roles it holds).
pub fn facts(i: &Identity, roles: &imbl::HashMap<String, Arc<Role>>) -> PrincipalFacts {
    let mut entitlements = i.entitlements.clone();
    for r in &i.roles {
        if let Some(role) = roles.get(r) {
            entitlements.extend(role.entitlements.iter().cloned());
        }
    }
    entitlements.sort();
    entitlements.dedup();
    PrincipalFacts {
        id: i.id.clone(),
        name: i.name.clone(),
        kind: i.kind.as_str().to_owned(),
        environment: i.environment.clone(),
        owner: i.owner.clone(),
        spiffe_id: i.spiffe_id.clone(),
        roles: i.roles.clone(),
        entitlements,
    }
}

#[derive(Debug, Clone)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub role: String,
    /// The named human the token belongs to (`None`: the bootstrap admin token).
    pub human: Option<String>,
}

#[derive(Clone)]
pub struct Snapshot {
    pub policy: Arc<PolicyBundle>,
    pub policy_version: u64,
    pub principals: imbl::HashMap<String, Arc<PrincipalEntry>>,
    pub by_spiffe: imbl::HashMap<String, String>,
    /// SHA-256 of the token secret → token. Revoked tokens are not present.
    pub tokens: Arc<HashMap<Hash, TokenInfo>>,
    /// Engaged kill switches (released ones are dropped). Few: a linear scan per decision.
    pub kill_switches: Arc<Vec<KillSwitch>>,
    /// Access tokens revoked before their expiry: jti → expiry (ms).
    pub revoked: Arc<HashMap<String, Millis>>,
    /// The keys that sign and verify access tokens.
    pub signing: Arc<SigningKeys>,
    /// Entitlement model, capabilities, tier policies, aggregates.
    pub gov: Gov,
}

impl Snapshot {
    pub fn new(policy: Arc<PolicyBundle>, policy_version: u64) -> Self {
        Snapshot {
            policy,
            policy_version,
            principals: imbl::HashMap::new(),
            by_spiffe: imbl::HashMap::new(),
            tokens: Arc::new(HashMap::new()),
            kill_switches: Arc::new(Vec::new()),
            revoked: Arc::new(HashMap::new()),
            signing: Arc::new(SigningKeys::default()),
            gov: Gov::default(),
        }
    }

    /// The engaged kill switch that stops `identity`, if any.
    pub fn kill_switch_for(&self, identity: &Identity) -> Option<&KillSwitch> {
        warrant_core::credentials::stopped_by(self.kill_switches.iter(), identity)
    }

    /// Applies an engaged or released switch.
    pub fn put_kill_switch(&mut self, switch: KillSwitch) {
        let mut all: Vec<KillSwitch> = self
            .kill_switches
            .iter()
            .filter(|s| s.id != switch.id)
            .cloned()
            .collect();
        if switch.engaged() {
            all.push(switch);
        }
        self.kill_switches = Arc::new(all);
    }

    /// Resolves a principal reference: an identity id or its SPIFFE URI.
    pub fn principal(&self, reference: &str) -> Option<&Arc<PrincipalEntry>> {
        if reference.starts_with("spiffe://") {
            self.by_spiffe
                .get(reference)
                .and_then(|id| self.principals.get(id))
        } else {
            self.principals.get(reference)
        }
    }

    /// Inserts or replaces an identity, keeping its last-used counter (moved forward to
    /// the stored time, which another replica may have flushed).
    pub fn upsert_identity(&mut self, identity: Identity) {
        let last_used = self.principals.get(&identity.id).map(|e| {
            if let Some(t) = identity.last_used_ms {
                e.last_used.used.fetch_max(t, Ordering::Relaxed);
                e.last_used.flushed.fetch_max(t, Ordering::Relaxed);
            }
            e.last_used.clone()
        });
        self.by_spiffe
            .insert(identity.spiffe_id.clone(), identity.id.clone());
        let id = identity.id.clone();
        // The role index holds identities that can still hold access: not retired ones.
        let indexed = |i: &Identity| {
            if i.state == IdentityState::Retired {
                Vec::new()
            } else {
                i.roles.clone()
            }
        };
        let before: Vec<String> = self
            .principals
            .get(&id)
            .map(|e| indexed(&e.identity))
            .unwrap_or_default();
        let after = indexed(&identity);
        for r in before.iter().filter(|r| !after.contains(r)) {
            if let Some(mut m) = self.gov.role_members.get(r).cloned() {
                m.remove(&id);
                if m.is_empty() {
                    self.gov.role_members.remove(r);
                } else {
                    self.gov.role_members.insert(r.clone(), m);
                }
            }
        }
        for r in after.iter().filter(|r| !before.contains(r)) {
            let mut m = self.gov.role_members.get(r).cloned().unwrap_or_default();
            m.insert(id.clone());
            self.gov.role_members.insert(r.clone(), m);
        }
        let entry = PrincipalEntry::build(identity, last_used, &self.gov.roles);
        self.principals.insert(id, Arc::new(entry));
    }

    /// Puts (or, with `None`, deletes) a role and rebuilds the entities of its members,
    /// whose effective entitlements change with it.
    pub fn put_role(&mut self, name: &str, role: Option<Role>) {
        match role {
            Some(r) => {
                self.gov.roles.insert(name.to_owned(), Arc::new(r));
            }
            None => {
                self.gov.roles.remove(name);
            }
        }
        let members: Vec<String> = self
            .gov
            .role_members
            .get(name)
            .map(|m| m.iter().cloned().collect())
            .unwrap_or_default();
        for id in members {
            if let Some(e) = self.principals.get(&id).cloned() {
                let rebuilt = PrincipalEntry::build(
                    e.identity.clone(),
                    Some(e.last_used.clone()),
                    &self.gov.roles,
                );
                self.principals.insert(id, Arc::new(rebuilt));
            }
        }
    }

    /// Applies one committed (or, in the writer's working copy, just applied) effect.
    pub fn apply(&mut self, effect: Effect, now: Millis) {
        match effect {
            Effect::Identity(identity) => self.upsert_identity(*identity),
            Effect::Policy { version, bundle } => {
                self.policy = bundle;
                self.policy_version = version;
            }
            Effect::KillSwitch(switch) => self.put_kill_switch(switch),
            Effect::Revoked { jti, exp_ms } => {
                let mut revoked: HashMap<String, Millis> = self
                    .revoked
                    .iter()
                    .filter(|(_, exp)| **exp > now)
                    .map(|(j, e)| (j.clone(), *e))
                    .collect();
                revoked.insert(jti, exp_ms);
                self.revoked = Arc::new(revoked);
            }
            Effect::SigningKeys(keys) => self.signing = keys,
            Effect::Token(row) => {
                let mut tokens = (*self.tokens).clone();
                tokens.retain(|_, t| t.id != row.id);
                if row.revoked_ms.is_none() {
                    tokens.insert(
                        row.hash,
                        TokenInfo {
                            id: row.id.clone(),
                            name: row.name.clone(),
                            role: row.role.clone(),
                            human: row.human.clone(),
                        },
                    );
                }
                self.tokens = Arc::new(tokens);
            }
            Effect::Role { name, role } => self.put_role(&name, role),
            Effect::Resource { id, resource } => match resource {
                Some(r) => {
                    self.gov.resources.insert(id.to_lowercase(), Arc::new(r));
                }
                None => {
                    self.gov.resources.remove(&id.to_lowercase());
                }
            },
            Effect::Trust { identity, trusted } => {
                if trusted.is_empty() {
                    self.gov.trust.remove(&identity);
                } else {
                    self.gov.trust.insert(identity, Arc::new(trusted));
                }
            }
            Effect::Auth { identity, require } => {
                self.gov.auth.insert(identity, require);
            }
            Effect::Capability(c) => {
                self.gov.capabilities.insert(c.id.clone(), Arc::from(c));
            }
            Effect::TierPolicy(t) => self.gov.set_tier_policy(&t),
            Effect::Human(h) => {
                self.gov
                    .humans
                    .insert(warrant_core::access::Human::key(&h.name), Arc::new(*h));
            }
            Effect::Session(x) => self.gov.put_session(*x, now),
            Effect::Proposal(p) => {
                let t = self.gov.thresholds.clone();
                self.gov.aggregates.observe(&p, now, &t);
            }
        }
    }
}
