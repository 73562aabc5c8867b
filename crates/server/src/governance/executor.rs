//! The executor: applies a change to warrant's own entitlement store, inside the writer's
//! transaction, together with one audit record per object it changes (so other replicas
//! reload exactly those objects, and the decision path sees them when the batch commits).
//!
//! Recommendation and execution are separate: nothing here decides *whether* a change may
//! happen; callers reach it only from an approved, tiered or human-performed proposal.

use crate::ops::{draft, identity_json, store_err, Effect};
use crate::snapshot::Snapshot;
use crate::writer::WriteError;
use serde_json::json;
use warrant_core::audit::{RecordDraft, RecordKind};
use warrant_core::governance::assess::{plan, Mutation};
use warrant_core::governance::{Change, GovError};
use warrant_core::identity::IdentityState;
use warrant_core::Millis;
use warrant_store::WriteTx;

use super::state::{kind, object_row, AuthRow, TrustRow, DELETED};

/// What applying a change produced.
#[derive(Default)]
pub struct Executed {
    pub drafts: Vec<RecordDraft>,
    pub effects: Vec<Effect>,
    /// How many objects changed (0: everything was already in place).
    pub changed: usize,
}

pub fn gov_err(e: GovError) -> WriteError {
    match e {
        GovError::Invalid(m) => WriteError::Invalid(m),
        GovError::Forbidden(m) => WriteError::Forbidden(m),
        GovError::Conflict(m) => WriteError::Conflict(m),
        GovError::NotFound(m) => WriteError::NotFound(m),
    }
}

/// Plans `change` against `snap` and applies it. `actor` is who caused it (`system` for
/// tiered and approved changes, `human:<name>` for a performed recommendation); `via`
/// names the proposal and who authorized it (approvers, ticket, tier), so each object's
/// record answers "who approved this?" on its own.
pub async fn execute(
    tx: &mut dyn WriteTx,
    snap: &Snapshot,
    change: &Change,
    actor: &str,
    via: &serde_json::Value,
    now: Millis,
) -> Result<Executed, WriteError> {
    let mutations = plan(snap, change, now).map_err(gov_err)?;
    let mut out = Executed::default();
    for m in mutations {
        out.changed += 1;
        match m {
            Mutation::Identity(after) => {
                tx.update_identity(&after).await.map_err(store_err)?;
                let before = snap.principals.get(&after.id).map(|e| e.identity.state);
                let kind = match (before, after.state) {
                    (Some(IdentityState::Active), IdentityState::Suspended) => {
                        RecordKind::IdentitySuspended
                    }
                    (Some(IdentityState::Suspended), IdentityState::Active) => {
                        RecordKind::IdentityResumed
                    }
                    (Some(b), IdentityState::Retired) if b != IdentityState::Retired => {
                        RecordKind::IdentityRetired
                    }
                    _ => RecordKind::IdentityUpdated,
                };
                out.drafts.push(draft(
                    kind,
                    actor,
                    format!("identity:{}", after.id),
                    json!({ "identity": identity_json(&after), "authorized_by": via, "change": change.label() }),
                ));
                out.effects.push(Effect::Identity(after));
            }
            Mutation::PutRole(role) => {
                let row = object_row(kind::ROLE, &role.name, "active", &role, now);
                tx.put_object(&row).await.map_err(store_err)?;
                out.drafts.push(draft(
                    RecordKind::EntitlementModelChanged,
                    actor,
                    format!("role:{}", role.name),
                    json!({ "role": role, "authorized_by": via, "change": change.label() }),
                ));
                out.effects.push(Effect::Role {
                    name: role.name.clone(),
                    role: Some(role),
                });
            }
            Mutation::DeleteRole(name) => {
                let old = snap.gov.roles.get(&name).map(|r| (**r).clone());
                let row = object_row(kind::ROLE, &name, DELETED, &old, now);
                tx.put_object(&row).await.map_err(store_err)?;
                out.drafts.push(draft(
                    RecordKind::EntitlementModelChanged,
                    actor,
                    format!("role:{name}"),
                    json!({ "deleted_role": old, "authorized_by": via, "change": change.label() }),
                ));
                out.effects.push(Effect::Role { name, role: None });
            }
            Mutation::Trust { identity, trusted } => {
                let value = TrustRow {
                    identity: identity.clone(),
                    trusted: trusted.clone(),
                };
                let row = object_row(kind::TRUST, &identity, "active", &value, now);
                tx.put_object(&row).await.map_err(store_err)?;
                out.drafts.push(draft(
                    RecordKind::EntitlementModelChanged,
                    actor,
                    format!("trust:{identity}"),
                    json!({ "identity": identity, "trusted": trusted, "authorized_by": via, "change": change.label() }),
                ));
                out.effects.push(Effect::Trust { identity, trusted });
            }
            Mutation::Auth { identity, require } => {
                let value = AuthRow {
                    identity: identity.clone(),
                    require,
                };
                let row = object_row(kind::AUTH, &identity, "active", &value, now);
                tx.put_object(&row).await.map_err(store_err)?;
                out.drafts.push(draft(
                    RecordKind::EntitlementModelChanged,
                    actor,
                    format!("auth:{identity}"),
                    json!({ "identity": identity, "require": require, "authorized_by": via, "change": change.label() }),
                ));
                out.effects.push(Effect::Auth { identity, require });
            }
        }
    }
    Ok(out)
}
