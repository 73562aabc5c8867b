//! Changes warrant makes to its own state, each with the audit record that describes it.
//!
//! An op reads what it needs through the write transaction, lets the domain core decide
//! (validation, lifecycle rules), writes the result and returns the record draft plus the
//! effect on the decision snapshot. No SQL here: only [`WriteTx`] calls.

use crate::writer::WriteError;
use serde_json::json;
use std::sync::Arc;
use warrant_core::audit::{RecordDraft, RecordKind};
use warrant_core::identity::{Identity, IdentityError, IdentityPatch, NewIdentity, Transition};
use warrant_core::Millis;
use warrant_policy::PolicyBundle;
use warrant_store::{ChangeRef, StoreError, TokenRow, Unique, WriteTx};

pub struct Ctx<'a> {
    pub now: Millis,
    pub trust_domain: &'a str,
}

pub enum Op {
    CreateIdentity {
        actor: String,
        id: String,
        new: NewIdentity,
    },
    UpdateIdentity {
        actor: String,
        id: String,
        patch: IdentityPatch,
    },
    Transition {
        actor: String,
        id: String,
        transition: Transition,
        reason: Option<String>,
    },
    PutPolicy {
        actor: String,
        bundle: Arc<PolicyBundle>,
        comment: String,
    },
    PutToken {
        actor: String,
        token: TokenRow,
        note: &'static str,
        /// Leave things as they are if an unrevoked token with this id exists already
        /// (two replicas bootstrapping one new database: the first one's token stands).
        unless_active: bool,
    },
    /// Last-used times; no audit record (operational metadata, not a change of access).
    Touch(Vec<(String, Millis)>),
    /// A server life-cycle event record.
    System { payload: serde_json::Value },
}

/// What the snapshot must learn once the batch has committed.
pub enum Effect {
    Identity(Box<Identity>),
    Policy {
        version: u64,
        bundle: Arc<PolicyBundle>,
    },
    Token(TokenRow),
}

/// What the caller gets back.
#[derive(Debug, Clone)]
pub enum Outcome {
    None,
    Identity(Box<Identity>),
    PolicyVersion(u64),
    /// The op found nothing to do (see `PutToken::unless_active`).
    Unchanged,
}

pub struct Applied {
    pub drafts: Vec<RecordDraft>,
    pub effect: Option<Effect>,
    pub outcome: Outcome,
}

fn store_err(e: StoreError) -> WriteError {
    WriteError::Unavailable(e.to_string())
}

fn domain_err(e: IdentityError) -> WriteError {
    match e {
        IdentityError::Invalid { .. } => WriteError::Invalid(e.to_string()),
        IdentityError::BadTransition { .. } | IdentityError::Retired => {
            WriteError::Conflict(e.to_string())
        }
    }
}

fn name_taken(identity: &Identity) -> WriteError {
    WriteError::Conflict(format!(
        "an identity named `{}` already exists in environment `{}` (names of retired identities are never reused)",
        identity.name, identity.environment
    ))
}

pub fn identity_json(i: &Identity) -> serde_json::Value {
    json!({
        "id": i.id,
        "name": i.name,
        "kind": i.kind.as_str(),
        "environment": i.environment,
        "spiffe_id": i.spiffe_id,
        "owner": i.owner,
        "description": i.description,
        "state": i.state.as_str(),
        "roles": i.roles,
        "entitlements": i.entitlements,
    })
}

fn draft(
    kind: RecordKind,
    actor: &str,
    subject: String,
    payload: serde_json::Value,
) -> RecordDraft {
    RecordDraft {
        kind,
        actor: actor.to_owned(),
        subject,
        payload: payload.to_string(),
    }
}

async fn load(tx: &mut dyn WriteTx, id: &str) -> Result<Identity, WriteError> {
    tx.get_identity(id)
        .await
        .map_err(store_err)?
        .ok_or_else(|| WriteError::NotFound(format!("no identity `{id}`")))
}

fn identity_applied(
    kind: RecordKind,
    actor: &str,
    identity: Identity,
    extra: serde_json::Value,
) -> Applied {
    let mut payload = json!({ "identity": identity_json(&identity) });
    if let (Some(p), Some(e)) = (payload.as_object_mut(), extra.as_object()) {
        p.extend(e.clone());
    }
    Applied {
        drafts: vec![draft(
            kind,
            actor,
            format!("identity:{}", identity.id),
            payload,
        )],
        effect: Some(Effect::Identity(Box::new(identity.clone()))),
        outcome: Outcome::Identity(Box::new(identity)),
    }
}

pub async fn apply(tx: &mut dyn WriteTx, op: Op, ctx: &Ctx<'_>) -> Result<Applied, WriteError> {
    match op {
        Op::CreateIdentity { actor, id, new } => {
            let identity = new
                .into_identity(id, ctx.trust_domain, ctx.now)
                .map_err(domain_err)?;
            // Checked first, so the answer names the rule a user most likely broke, on
            // every backend (which unique index a database checks first differs).
            if tx
                .identity_named(&identity.name, &identity.environment)
                .await
                .map_err(store_err)?
                .is_some()
            {
                return Err(name_taken(&identity));
            }
            match tx.insert_identity(&identity).await {
                Ok(()) => {}
                Err(StoreError::Conflict(Unique::SpiffeId)) => {
                    return Err(WriteError::Conflict(format!(
                        "SPIFFE ID `{}` is already taken (URIs of retired identities are never reused)",
                        identity.spiffe_id
                    )))
                }
                Err(StoreError::Conflict(Unique::NameEnvironment)) => {
                    return Err(name_taken(&identity))
                }
                Err(StoreError::Conflict(Unique::Other(m))) => {
                    return Err(WriteError::Conflict(format!("identity conflicts with an existing one: {m}")))
                }
                Err(e) => return Err(store_err(e)),
            }
            Ok(identity_applied(
                RecordKind::IdentityCreated,
                &actor,
                identity,
                json!({}),
            ))
        }
        Op::UpdateIdentity { actor, id, patch } => {
            let before = load(tx, &id).await?;
            let after = before.patched(patch, ctx.now).map_err(domain_err)?;
            tx.update_identity(&after).await.map_err(store_err)?;
            let changes = json!({ "before": identity_json(&before) });
            Ok(identity_applied(
                RecordKind::IdentityUpdated,
                &actor,
                after,
                changes,
            ))
        }
        Op::Transition {
            actor,
            id,
            transition,
            reason,
        } => {
            let before = load(tx, &id).await?;
            let after = before
                .transitioned(transition, ctx.now)
                .map_err(domain_err)?;
            tx.update_identity(&after).await.map_err(store_err)?;
            let kind = match transition {
                Transition::Suspend => RecordKind::IdentitySuspended,
                Transition::Resume => RecordKind::IdentityResumed,
                Transition::Retire => RecordKind::IdentityRetired,
            };
            let extra = json!({ "from_state": before.state.as_str(), "reason": reason });
            Ok(identity_applied(kind, &actor, after, extra))
        }
        Op::PutPolicy {
            actor,
            bundle,
            comment,
        } => {
            let version = tx
                .insert_policy_version(
                    bundle.schema_text(),
                    bundle.policies_text(),
                    ctx.now,
                    &actor,
                    &comment,
                )
                .await
                .map_err(store_err)?;
            use sha2::{Digest, Sha256};
            let payload = json!({
                "version": version,
                "policy_ids": bundle.policy_ids(),
                "schema_sha256": hex::encode(Sha256::digest(bundle.schema_text())),
                "policies_sha256": hex::encode(Sha256::digest(bundle.policies_text())),
                "comment": comment,
            });
            Ok(Applied {
                drafts: vec![draft(
                    RecordKind::PolicyUpdated,
                    &actor,
                    format!("policy:{version}"),
                    payload,
                )],
                effect: Some(Effect::Policy { version, bundle }),
                outcome: Outcome::PolicyVersion(version),
            })
        }
        Op::PutToken {
            actor,
            token,
            note,
            unless_active,
        } => {
            if unless_active {
                let current = tx.get_token(&token.id).await.map_err(store_err)?;
                if current.is_some_and(|t| t.revoked_ms.is_none()) {
                    return Ok(Applied {
                        drafts: vec![],
                        effect: None,
                        outcome: Outcome::Unchanged,
                    });
                }
            }
            tx.upsert_token(&token).await.map_err(store_err)?;
            let kind = if token.revoked_ms.is_some() {
                RecordKind::TokenRevoked
            } else {
                RecordKind::TokenCreated
            };
            // Never the secret, never its hash: the id names the token.
            let payload = json!({ "token_id": token.id, "name": token.name, "role": token.role, "note": note });
            Ok(Applied {
                drafts: vec![draft(kind, &actor, format!("token:{}", token.id), payload)],
                effect: Some(Effect::Token(token)),
                outcome: Outcome::None,
            })
        }
        Op::Touch(used) => {
            tx.touch_identities(&used).await.map_err(store_err)?;
            Ok(Applied {
                drafts: vec![],
                effect: None,
                outcome: Outcome::None,
            })
        }
        Op::System { payload } => Ok(Applied {
            drafts: vec![draft(
                RecordKind::System,
                "system",
                "server".into(),
                payload,
            )],
            effect: None,
            outcome: Outcome::None,
        }),
    }
}

/// The effects of changes committed through other replicas, read back from the store in
/// this transaction: each changed object once, in its current state, in chain order. A
/// subject with no snapshot part (`server`, ...) is skipped.
pub async fn reload(
    tx: &mut dyn WriteTx,
    changes: &[ChangeRef],
) -> Result<Vec<Effect>, WriteError> {
    let mut seen = std::collections::HashSet::new();
    let mut effects = Vec::new();
    for change in changes {
        if !seen.insert(change.subject.as_str()) {
            continue;
        }
        let Some((what, key)) = change.subject.split_once(':') else {
            continue;
        };
        match what {
            "identity" => {
                if let Some(identity) = tx.get_identity(key).await.map_err(store_err)? {
                    effects.push(Effect::Identity(Box::new(identity)));
                }
            }
            "token" => {
                if let Some(token) = tx.get_token(key).await.map_err(store_err)? {
                    effects.push(Effect::Token(token));
                }
            }
            // Several policy versions in one catch-up: the newest is the one in force.
            "policy" if seen.insert("policy") => {
                if let Some(v) = tx.current_policy().await.map_err(store_err)? {
                    let bundle = match PolicyBundle::compile(&v.schema_text, &v.policies_text) {
                        Ok(b) => b,
                        Err(e) => {
                            // Fail closed, as at start-up: deny everything until a valid
                            // policy is put.
                            tracing::error!(version = v.version, error = %e, "stored policy does not compile; denying everything until a valid policy is put");
                            PolicyBundle::empty()
                        }
                    };
                    effects.push(Effect::Policy {
                        version: v.version,
                        bundle: Arc::new(bundle),
                    });
                }
            }
            _ => {}
        }
    }
    Ok(effects)
}
