//! The entitlement graph and what a change does to it.
//!
//! Identities hold entitlements directly and through roles; an entitlement
//! `<resource>:<action>` reaches a resource, whose classification and privilege come from
//! the longest matching declared resource. [`assess`] computes the risk of a change from
//! the graph as it is (blast radius, privilege, reversibility, classification,
//! beneficiaries, the inverse); [`plan`] computes the writes that apply it.
//!
//! Cost: proportional to the change and to the members of the roles it touches, never to
//! the size of the registry.

use super::model::*;
use super::{invalid, GovError};
use crate::identity::{Identity, IdentityPatch, IdentityState, Transition};
use crate::Millis;
use std::collections::BTreeSet;

/// The tier context's `environment` when a change reaches identities in several.
pub const MULTIPLE_ENVIRONMENTS: &str = "*multiple*";

/// Read access to the entitlement graph (the server's snapshot implements it).
pub trait Graph {
    fn identity(&self, id: &str) -> Option<&Identity>;
    fn role(&self, name: &str) -> Option<&Role>;
    /// Ids of the identities that hold the role (implementations may leave retired
    /// identities out; they are skipped anyway).
    fn role_members(&self, name: &str) -> Vec<String>;
    /// How many identities `role_members` would return, without listing them.
    fn role_member_count(&self, name: &str) -> usize {
        self.role_members(name).len()
    }
    fn resource(&self, id: &str) -> Option<&Resource>;
    /// The parties an identity trusts.
    fn trust(&self, identity: &str) -> Vec<String>;
    fn auth_requirement(&self, identity: &str) -> AuthRequirement;
}

/// The declared resource covering `resource` (longest `:`-prefix match).
pub fn covering_resource<'g>(g: &'g dyn Graph, resource: &str) -> Option<&'g Resource> {
    let mut r = resource;
    loop {
        if let Some(found) = g.resource(r) {
            return Some(found);
        }
        r = r.rsplit_once(':')?.0;
    }
}

/// Everything an identity may do: its own entitlements and those of its roles.
pub fn effective_entitlements(g: &dyn Graph, identity: &Identity) -> BTreeSet<String> {
    let mut all: BTreeSet<String> = identity.entitlements.iter().cloned().collect();
    for r in &identity.roles {
        if let Some(role) = g.role(r) {
            all.extend(role.entitlements.iter().cloned());
        }
    }
    all
}

/// A write the executor makes to warrant's own entitlement store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    Identity(Box<Identity>),
    PutRole(Role),
    DeleteRole(String),
    Trust {
        identity: String,
        trusted: Vec<String>,
    },
    Auth {
        identity: String,
        require: AuthRequirement,
    },
}

struct Acc {
    privilege_change: bool,
    identities: BTreeSet<String>,
    resources: BTreeSet<String>,
    privileged_because: Vec<String>,
    classification: Classification,
    beneficiaries: BTreeSet<String>,
    targets_ai: bool,
}

impl Acc {
    fn new() -> Self {
        Acc {
            privilege_change: false,
            identities: BTreeSet::new(),
            resources: BTreeSet::new(),
            privileged_because: Vec::new(),
            classification: Classification::Unclassified,
            beneficiaries: BTreeSet::new(),
            targets_ai: false,
        }
    }

    fn identity(&mut self, i: &Identity) {
        self.identities.insert(i.id.clone());
        self.targets_ai |= i.kind.is_ai();
    }

    fn beneficiary(&mut self, i: &Identity) {
        self.beneficiaries.insert(i.id.clone());
        self.beneficiaries.insert(i.owner.clone());
    }

    fn entitlement(&mut self, g: &dyn Graph, e: &str) {
        let r = resource_of(e);
        self.resources.insert(r.to_owned());
        if let Some(res) = covering_resource(g, r) {
            self.classification = self.classification.max(res.classification);
            if res.privileged {
                self.privileged_because
                    .push(format!("resource `{}` is privileged", res.id));
            }
        }
    }

    fn role(&mut self, role: &Role) {
        if role.privileged {
            self.privileged_because
                .push(format!("role `{}` is privileged", role.name));
        }
    }

    fn finish(mut self, inverse: Option<Change>, envs: BTreeSet<String>) -> Assessment {
        let environment = match envs.len() {
            0 => String::new(),
            1 => envs.iter().next().cloned().unwrap_or_default(),
            _ => MULTIPLE_ENVIRONMENTS.to_owned(),
        };
        self.privileged_because.sort();
        self.privileged_because.dedup();
        Assessment {
            identities_count: self.identities.len() as u64,
            identities: self.identities.into_iter().take(SHOWN).collect(),
            resources_count: self.resources.len() as u64,
            resources: self.resources.into_iter().take(SHOWN).collect(),
            privileged: !self.privileged_because.is_empty(),
            privileged_because: self.privileged_because,
            reversible: inverse.is_some(),
            inverse,
            classification: self.classification,
            beneficiaries: self.beneficiaries.into_iter().collect(),
            targets_ai: self.targets_ai,
            environment,
            environments: envs.into_iter().collect(),
            privilege_change: self.privilege_change,
            aggregates: AggregateView::default(),
        }
    }
}

fn live_identity<'g>(g: &'g dyn Graph, id: &str) -> Result<&'g Identity, GovError> {
    let i = g
        .identity(id)
        .ok_or_else(|| GovError::NotFound(format!("identity `{id}` not found")))?;
    if i.state == IdentityState::Retired {
        return Err(GovError::Conflict(format!(
            "identity `{id}` is retired; retired identities cannot be changed"
        )));
    }
    Ok(i)
}

fn existing_role<'g>(g: &'g dyn Graph, name: &str) -> Result<&'g Role, GovError> {
    g.role(name)
        .ok_or_else(|| GovError::NotFound(format!("role `{name}` not found")))
}

fn members<'g>(g: &'g dyn Graph, role: &str) -> Vec<&'g Identity> {
    g.role_members(role)
        .iter()
        .filter_map(|id| g.identity(id))
        .filter(|i| i.state != IdentityState::Retired)
        .collect()
}

/// Assesses `change` against the graph as it is now. Refuses a change that does not fit
/// the current state (unknown target, nothing would change, ...).
pub fn assess(g: &dyn Graph, change: &Change) -> Result<Assessment, GovError> {
    let mut acc = Acc::new();
    let mut envs: BTreeSet<String> = BTreeSet::new();
    let inverse = match change {
        Change::GrantEntitlement {
            identity,
            entitlement,
        } => {
            let i = live_identity(g, identity)?;
            envs.insert(i.environment.clone());
            if effective_entitlements(g, i).contains(entitlement) {
                return Err(GovError::Conflict(format!(
                    "identity `{identity}` already holds `{entitlement}`"
                )));
            }
            acc.identity(i);
            acc.beneficiary(i);
            acc.entitlement(g, entitlement);
            Some(Change::RevokeEntitlement {
                identity: identity.clone(),
                entitlement: entitlement.clone(),
            })
        }
        Change::RevokeEntitlement {
            identity,
            entitlement,
        } => {
            let i = live_identity(g, identity)?;
            envs.insert(i.environment.clone());
            if !i.entitlements.contains(entitlement) {
                let via: Vec<&str> = i
                    .roles
                    .iter()
                    .filter(|r| {
                        g.role(r)
                            .is_some_and(|r| r.entitlements.contains(entitlement))
                    })
                    .map(String::as_str)
                    .collect();
                return Err(if via.is_empty() {
                    GovError::Conflict(format!(
                        "identity `{identity}` does not hold `{entitlement}`"
                    ))
                } else {
                    GovError::Conflict(format!(
                        "identity `{identity}` holds `{entitlement}` only through role(s) {}; propose modify_role instead",
                        via.join(", ")
                    ))
                });
            }
            acc.entitlement(g, entitlement);
            // Still held through a role: effective access does not change.
            let via_role = i.roles.iter().any(|r| {
                g.role(r)
                    .is_some_and(|r| r.entitlements.contains(entitlement))
            });
            if !via_role {
                acc.identity(i);
            }
            Some(Change::GrantEntitlement {
                identity: identity.clone(),
                entitlement: entitlement.clone(),
            })
        }
        Change::CreateRole { role } => {
            if g.role(&role.name).is_some() {
                return Err(GovError::Conflict(format!(
                    "role `{}` exists already",
                    role.name
                )));
            }
            acc.role(role);
            for e in &role.entitlements {
                acc.entitlement(g, e);
            }
            // A new role has no members: nobody's effective access changes yet, but
            // identities that already list the role name gain it at once.
            for m in members(g, &role.name) {
                acc.identity(m);
                acc.beneficiary(m);
                envs.insert(m.environment.clone());
            }
            Some(Change::DeleteRole {
                role: role.name.clone(),
            })
        }
        Change::DeleteRole { role } => {
            let r = existing_role(g, role)?;
            acc.role(r);
            for e in &r.entitlements {
                acc.entitlement(g, e);
            }
            let ms = members(g, role);
            for m in &ms {
                acc.identity(m);
                envs.insert(m.environment.clone());
            }
            Some(Change::RestoreRole {
                role: r.clone(),
                members: ms.iter().map(|m| m.id.clone()).collect(),
            })
        }
        Change::ModifyRole {
            role,
            add,
            remove,
            privileged,
        } => {
            let r = existing_role(g, role)?;
            acc.role(r);
            if privileged == &Some(true) {
                acc.privileged_because
                    .push(format!("role `{role}` becomes privileged"));
            }
            let add: Vec<String> = add
                .iter()
                .filter(|e| !r.entitlements.contains(e))
                .cloned()
                .collect();
            let remove: Vec<String> = remove
                .iter()
                .filter(|e| r.entitlements.contains(e))
                .cloned()
                .collect();
            let flag_changes = privileged.is_some_and(|p| p != r.privileged);
            acc.privilege_change = flag_changes;
            if add.is_empty() && remove.is_empty() && !flag_changes {
                return Err(GovError::Conflict(format!(
                    "the change would not modify role `{role}`"
                )));
            }
            for e in add.iter().chain(&remove) {
                acc.entitlement(g, e);
            }
            for m in members(g, role) {
                if !add.is_empty() || !remove.is_empty() {
                    acc.identity(m);
                }
                if !add.is_empty() {
                    acc.beneficiary(m);
                }
                envs.insert(m.environment.clone());
            }
            Some(Change::ModifyRole {
                role: role.clone(),
                add: remove,
                remove: add,
                privileged: privileged.map(|_| r.privileged),
            })
        }
        Change::ModifyTrust {
            identity,
            add,
            remove,
        } => {
            let i = live_identity(g, identity)?;
            envs.insert(i.environment.clone());
            let current = g.trust(identity);
            let add: Vec<String> = add
                .iter()
                .filter(|t| !current.contains(t))
                .cloned()
                .collect();
            let remove: Vec<String> = remove
                .iter()
                .filter(|t| current.contains(t))
                .cloned()
                .collect();
            if add.is_empty() && remove.is_empty() {
                return Err(GovError::Conflict(format!(
                    "the change would not modify the trust of `{identity}`"
                )));
            }
            acc.identity(i);
            if !add.is_empty() {
                acc.beneficiary(i);
            }
            for t in add.iter().chain(&remove) {
                acc.resources.insert(format!("trust:{t}"));
            }
            Some(Change::ModifyTrust {
                identity: identity.clone(),
                add: remove,
                remove: add,
            })
        }
        Change::ChangeAuthRequirement { identity, require } => {
            let i = live_identity(g, identity)?;
            envs.insert(i.environment.clone());
            let current = g.auth_requirement(identity);
            if current == *require {
                return Err(GovError::Conflict(format!(
                    "identity `{identity}` already requires `{}`",
                    require.as_str()
                )));
            }
            acc.identity(i);
            if *require == AuthRequirement::Any {
                // Loosening benefits the identity.
                acc.beneficiary(i);
            }
            Some(Change::ChangeAuthRequirement {
                identity: identity.clone(),
                require: current,
            })
        }
        Change::SuspendIdentity { identity } | Change::RetireIdentity { identity } => {
            let i = live_identity(g, identity)?;
            envs.insert(i.environment.clone());
            let retire = matches!(change, Change::RetireIdentity { .. });
            if !retire && i.state != IdentityState::Active {
                return Err(GovError::Conflict(format!(
                    "identity `{identity}` is not active"
                )));
            }
            acc.identity(i);
            for e in effective_entitlements(g, i) {
                acc.entitlement(g, &e);
            }
            for r in &i.roles {
                if let Some(role) = g.role(r) {
                    acc.role(role);
                }
            }
            (!retire).then(|| Change::ResumeIdentity {
                identity: identity.clone(),
            })
        }
        Change::ResumeIdentity { identity } => {
            let i = live_identity(g, identity)?;
            envs.insert(i.environment.clone());
            acc.identity(i);
            acc.beneficiary(i);
            Some(Change::SuspendIdentity {
                identity: identity.clone(),
            })
        }
        Change::RestoreRole { role, members: ms } => {
            acc.role(role);
            for id in ms {
                if let Some(m) = g.identity(id) {
                    acc.identity(m);
                    acc.beneficiary(m);
                    envs.insert(m.environment.clone());
                }
            }
            Some(Change::DeleteRole {
                role: role.name.clone(),
            })
        }
    };
    Ok(acc.finish(inverse, envs))
}

fn patched(i: &Identity, patch: IdentityPatch, now: Millis) -> Result<Mutation, GovError> {
    i.patched(patch, now)
        .map(|i| Mutation::Identity(Box::new(i)))
        .map_err(|e| GovError::Conflict(e.to_string()))
}

/// The writes that apply `change` to the graph as it is now. A part that is already in
/// place is skipped (applying twice changes nothing); a change whose target is gone or
/// retired is refused.
pub fn plan(g: &dyn Graph, change: &Change, now: Millis) -> Result<Vec<Mutation>, GovError> {
    let mut out = Vec::new();
    match change {
        Change::GrantEntitlement {
            identity,
            entitlement,
        } => {
            let i = live_identity(g, identity)?;
            if !i.entitlements.contains(entitlement) {
                let mut e = i.entitlements.clone();
                e.push(entitlement.clone());
                e.sort();
                out.push(patched(
                    i,
                    IdentityPatch {
                        entitlements: Some(e),
                        ..Default::default()
                    },
                    now,
                )?);
            }
        }
        Change::RevokeEntitlement {
            identity,
            entitlement,
        } => {
            let i = live_identity(g, identity)?;
            if i.entitlements.contains(entitlement) {
                let e = i
                    .entitlements
                    .iter()
                    .filter(|x| *x != entitlement)
                    .cloned()
                    .collect();
                out.push(patched(
                    i,
                    IdentityPatch {
                        entitlements: Some(e),
                        ..Default::default()
                    },
                    now,
                )?);
            }
        }
        Change::CreateRole { role } => {
            if g.role(&role.name).is_none() {
                out.push(Mutation::PutRole(role.clone()));
            }
        }
        Change::DeleteRole { role } => {
            if g.role(role).is_some() {
                for m in members(g, role) {
                    let roles = m.roles.iter().filter(|r| *r != role).cloned().collect();
                    out.push(patched(
                        m,
                        IdentityPatch {
                            roles: Some(roles),
                            ..Default::default()
                        },
                        now,
                    )?);
                }
                out.push(Mutation::DeleteRole(role.clone()));
            }
        }
        Change::RestoreRole { role, members: ms } => {
            match g.role(&role.name) {
                None => out.push(Mutation::PutRole(role.clone())),
                Some(current) if current == role => {}
                Some(_) => {
                    return Err(GovError::Conflict(format!(
                        "a different role named `{}` was created since it was deleted; restoring would overwrite it, so it must be reverted by hand",
                        role.name
                    )))
                }
            }
            for id in ms {
                if let Some(m) = g.identity(id) {
                    if m.state != IdentityState::Retired && !m.roles.contains(&role.name) {
                        let mut roles = m.roles.clone();
                        roles.push(role.name.clone());
                        roles.sort();
                        out.push(patched(
                            m,
                            IdentityPatch {
                                roles: Some(roles),
                                ..Default::default()
                            },
                            now,
                        )?);
                    }
                }
            }
        }
        Change::ModifyRole {
            role,
            add,
            remove,
            privileged,
        } => {
            let r = existing_role(g, role)?;
            let mut next = r.clone();
            next.entitlements.retain(|e| !remove.contains(e));
            next.entitlements.extend(add.iter().cloned());
            next.entitlements.sort();
            next.entitlements.dedup();
            if let Some(p) = privileged {
                next.privileged = *p;
            }
            if next != *r {
                out.push(Mutation::PutRole(next));
            }
        }
        Change::ModifyTrust {
            identity,
            add,
            remove,
        } => {
            live_identity(g, identity)?;
            let current = g.trust(identity);
            let mut next: Vec<String> = current
                .iter()
                .filter(|t| !remove.contains(t))
                .cloned()
                .collect();
            next.extend(add.iter().cloned());
            next.sort();
            next.dedup();
            if next != current {
                out.push(Mutation::Trust {
                    identity: identity.clone(),
                    trusted: next,
                });
            }
        }
        Change::ChangeAuthRequirement { identity, require } => {
            live_identity(g, identity)?;
            if g.auth_requirement(identity) != *require {
                out.push(Mutation::Auth {
                    identity: identity.clone(),
                    require: *require,
                });
            }
        }
        Change::SuspendIdentity { identity } => {
            let i = live_identity(g, identity)?;
            if i.state == IdentityState::Active {
                out.push(transitioned(i, Transition::Suspend, now)?);
            }
        }
        Change::ResumeIdentity { identity } => {
            let i = live_identity(g, identity)?;
            if i.state == IdentityState::Suspended {
                out.push(transitioned(i, Transition::Resume, now)?);
            }
        }
        Change::RetireIdentity { identity } => {
            let i = live_identity(g, identity)?;
            out.push(transitioned(i, Transition::Retire, now)?);
        }
    }
    Ok(out)
}

fn transitioned(i: &Identity, t: Transition, now: Millis) -> Result<Mutation, GovError> {
    i.transitioned(t, now)
        .map(|i| Mutation::Identity(Box::new(i)))
        .map_err(|e| GovError::Conflict(e.to_string()))
}

/// Checks a proposal's change against what its capability declared: kind, target
/// environment, blast radius, confidence.
pub fn check_capability(
    cap: &Capability,
    cap_identity: &Identity,
    change: &Change,
    assessment: &Assessment,
    confidence_pct: u8,
) -> Result<(), GovError> {
    let kind = change
        .kind()
        .ok_or_else(|| invalid("this change cannot be proposed"))?;
    if !cap.kinds.contains(&kind) {
        return Err(GovError::Forbidden(format!(
            "capability `{}` may not propose {}; it declared: {}",
            cap.id,
            kind.as_str(),
            cap.kinds
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if assessment.identities_count > u64::from(cap.max_blast_radius) {
        return Err(GovError::Forbidden(format!(
            "the change would alter the access of {} identities; capability `{}` declared a maximum blast radius of {}",
            assessment.identities_count, cap.id, cap.max_blast_radius
        )));
    }
    // Every environment the change reaches must be one the capability may act in.
    for env in &assessment.environments {
        let allowed = if cap.conditions.environments.is_empty() {
            *env == cap_identity.environment
        } else {
            cap.conditions.environments.contains(env)
        };
        if !allowed {
            return Err(GovError::Forbidden(format!(
                "capability `{}` may not propose changes in environment `{env}`",
                cap.id
            )));
        }
    }
    if confidence_pct < cap.conditions.min_confidence_pct {
        return Err(GovError::Forbidden(format!(
            "model confidence {confidence_pct}% is below the capability's minimum of {}%",
            cap.conditions.min_confidence_pct
        )));
    }
    Ok(())
}
