//! Changes warrant makes to its own state, each with the audit record that describes it.
//!
//! An op reads what it needs through the write transaction, lets the domain core decide
//! (validation, lifecycle rules), writes the result and returns the record draft plus the
//! effect on the decision snapshot. No SQL here: only [`WriteTx`] calls.

use crate::credentials::{KeyWrap, SigningKeys};
use crate::governance::state::TierPolicyRow;
use crate::writer::WriteError;
use serde_json::json;
use std::sync::Arc;
use warrant_core::audit::{RecordDraft, RecordKind};
use warrant_core::credentials::KillSwitch;
use warrant_core::governance::{AuthRequirement, Capability, Proposal, Resource, Role};
use warrant_core::identity::{Identity, IdentityError, IdentityPatch, NewIdentity, Transition};
use warrant_core::Millis;
use warrant_policy::PolicyBundle;
use warrant_store::{
    ChangeRef, IdentityKeyRow, RevokedToken, StoreError, TokenKeyRow, TokenRow, Unique, WriteTx,
};

pub struct Ctx<'a> {
    pub now: Millis,
    pub trust_domain: &'a str,
    /// Unwraps stored token signing keys (to publish them to the snapshot).
    pub key_wrap: &'a KeyWrap,
    /// The state as of this op: the snapshot with every earlier change of the batch
    /// (and those caught up from other replicas) applied.
    pub snap: &'a crate::snapshot::Snapshot,
    pub gov: &'a crate::governance::GovConfig,
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
    EngageKillSwitch {
        actor: String,
        switch: KillSwitch,
    },
    ReleaseKillSwitch {
        actor: String,
        id: String,
        reason: String,
    },
    AddIdentityKey {
        actor: String,
        key: IdentityKeyRow,
    },
    RevokeIdentityKey {
        actor: String,
        identity_id: String,
        kid: String,
    },
    /// An access token was issued: consumes the client assertion's `jti` (a replay is
    /// refused with `Conflict`) and records the issuance.
    IssueCredential {
        client_id: String,
        /// The client assertion's `jti` and expiry, when one authenticated the client.
        assertion: Option<(String, Millis)>,
        subject: String,
        payload: serde_json::Value,
    },
    /// A token request from an authenticated client was refused (also consumes the
    /// assertion, so it cannot be replayed).
    RefuseCredential {
        client_id: String,
        assertion: Option<(String, Millis)>,
        payload: serde_json::Value,
    },
    RevokeCredential {
        actor: String,
        revoked: RevokedToken,
        subject: Option<String>,
    },
    /// A new access-token signing key takes over; the ones before sign no more and leave
    /// the JWKS at `unpublish_ms`. With `only_if_none`, nothing happens when a signing key
    /// exists already (replicas starting together).
    RotateSigningKey {
        actor: String,
        key: TokenKeyRow,
        unpublish_ms: Millis,
        only_if_none: bool,
    },
    /// Deletes used assertions and revocations that expired before `before_ms`.
    PurgeExpired {
        before_ms: Millis,
    },
    /// A server life-cycle event record.
    System {
        payload: serde_json::Value,
    },
    /// Tiered change governance (capabilities, proposals, the entitlement model).
    Gov(Box<crate::governance::ops::GovOp>),
}

/// What the snapshot must learn once the batch has committed.
pub enum Effect {
    Identity(Box<Identity>),
    Policy {
        version: u64,
        bundle: Arc<PolicyBundle>,
    },
    Token(TokenRow),
    KillSwitch(KillSwitch),
    Revoked {
        jti: String,
        exp_ms: Millis,
    },
    SigningKeys(Arc<SigningKeys>),
    Role {
        name: String,
        role: Option<Role>,
    },
    Resource {
        id: String,
        resource: Option<Resource>,
    },
    Trust {
        identity: String,
        trusted: Vec<String>,
    },
    Auth {
        identity: String,
        require: AuthRequirement,
    },
    Capability(Box<Capability>),
    TierPolicy(Box<TierPolicyRow>),
    /// A proposal's new state (for the aggregates).
    Proposal(Box<Proposal>),
    Human(Box<warrant_core::access::Human>),
    Session(Box<warrant_core::access::Session>),
}

/// What the caller gets back.
#[derive(Debug, Clone)]
pub enum Outcome {
    None,
    Identity(Box<Identity>),
    PolicyVersion(u64),
    /// The op found nothing to do (see `PutToken::unless_active`).
    Unchanged,
    KillSwitch(Box<KillSwitch>),
    Proposal(Box<Proposal>),
    Capability(Box<Capability>),
}

pub struct Applied {
    pub drafts: Vec<RecordDraft>,
    pub effects: Vec<Effect>,
    pub outcome: Outcome,
}

pub(crate) fn store_err(e: StoreError) -> WriteError {
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

fn kill_switch_applied(kind: RecordKind, actor: &str, switch: KillSwitch) -> Applied {
    let payload = json!({
        "id": switch.id,
        "target": { "kind": switch.target.kind(), "value": switch.target.value() },
        "reason": if kind == RecordKind::KillSwitchEngaged { Some(&switch.reason) } else { switch.release_reason.as_ref() },
        "engaged_by": switch.engaged_by,
    });
    Applied {
        drafts: vec![draft(
            kind,
            actor,
            format!("killswitch:{}", switch.id),
            payload,
        )],
        effects: vec![Effect::KillSwitch(switch.clone())],
        outcome: Outcome::KillSwitch(Box::new(switch)),
    }
}

async fn consume_assertion(
    tx: &mut dyn WriteTx,
    client_id: &str,
    assertion: Option<&(String, Millis)>,
) -> Result<(), WriteError> {
    if let Some((jti, exp_ms)) = assertion {
        if !tx
            .use_assertion(client_id, jti, *exp_ms)
            .await
            .map_err(store_err)?
        {
            return Err(WriteError::Conflict(
                "the client assertion was used before (its jti is accepted once)".into(),
            ));
        }
    }
    Ok(())
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

pub(crate) fn draft(
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
        effects: vec![Effect::Identity(Box::new(identity.clone()))],
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
                effects: vec![Effect::Policy { version, bundle }],
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
                        effects: vec![],
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
            let payload = json!({ "token_id": token.id, "name": token.name, "role": token.role, "human": token.human, "note": note });
            Ok(Applied {
                drafts: vec![draft(kind, &actor, format!("token:{}", token.id), payload)],
                effects: vec![Effect::Token(token)],
                outcome: Outcome::None,
            })
        }
        Op::Touch(used) => {
            tx.touch_identities(&used).await.map_err(store_err)?;
            Ok(Applied {
                drafts: vec![],
                effects: vec![],
                outcome: Outcome::None,
            })
        }
        Op::EngageKillSwitch { actor, switch } => {
            tx.insert_kill_switch(&switch).await.map_err(|e| match e {
                StoreError::Conflict(_) => {
                    WriteError::Conflict(format!("kill switch `{}` exists already", switch.id))
                }
                e => store_err(e),
            })?;
            Ok(kill_switch_applied(
                RecordKind::KillSwitchEngaged,
                &actor,
                switch,
            ))
        }
        Op::ReleaseKillSwitch { actor, id, reason } => {
            let mut switch = tx
                .get_kill_switch(&id)
                .await
                .map_err(store_err)?
                .ok_or_else(|| WriteError::NotFound(format!("no kill switch `{id}`")))?;
            if !switch.engaged() {
                return Err(WriteError::Conflict(format!(
                    "kill switch `{id}` was released already"
                )));
            }
            switch.released_ms = Some(ctx.now);
            switch.released_by = Some(actor.clone());
            switch.release_reason = Some(reason);
            tx.update_kill_switch(&switch).await.map_err(store_err)?;
            Ok(kill_switch_applied(
                RecordKind::KillSwitchReleased,
                &actor,
                switch,
            ))
        }
        Op::AddIdentityKey { actor, key } => {
            let identity = load(tx, &key.identity_id).await?;
            if identity.state == warrant_core::identity::IdentityState::Retired {
                return Err(WriteError::Conflict(format!(
                    "identity `{}` is retired",
                    identity.id
                )));
            }
            tx.insert_identity_key(&key).await.map_err(|e| match e {
                StoreError::Conflict(_) => WriteError::Conflict(format!(
                    "identity `{}` has a key `{}` already (kids are never reused)",
                    key.identity_id, key.kid
                )),
                e => store_err(e),
            })?;
            // The public key only (it is public); never anything private.
            let payload = json!({ "kid": key.kid, "jwk": serde_json::from_str::<serde_json::Value>(&key.jwk).unwrap_or_default() });
            Ok(Applied {
                drafts: vec![draft(
                    RecordKind::IdentityKeyAdded,
                    &actor,
                    format!("identity-key:{}/{}", key.identity_id, key.kid),
                    payload,
                )],
                effects: vec![],
                outcome: Outcome::None,
            })
        }
        Op::RevokeIdentityKey {
            actor,
            identity_id,
            kid,
        } => {
            if !tx
                .revoke_identity_key(&identity_id, &kid, ctx.now)
                .await
                .map_err(store_err)?
            {
                return Err(WriteError::NotFound(format!(
                    "identity `{identity_id}` has no unrevoked key `{kid}`"
                )));
            }
            Ok(Applied {
                drafts: vec![draft(
                    RecordKind::IdentityKeyRevoked,
                    &actor,
                    format!("identity-key:{identity_id}/{kid}"),
                    json!({ "kid": kid }),
                )],
                effects: vec![],
                outcome: Outcome::None,
            })
        }
        Op::IssueCredential {
            client_id,
            assertion,
            subject,
            payload,
        } => {
            consume_assertion(tx, &client_id, assertion.as_ref()).await?;
            Ok(Applied {
                drafts: vec![draft(
                    RecordKind::CredentialIssued,
                    &format!("client:{client_id}"),
                    subject,
                    payload,
                )],
                effects: vec![],
                outcome: Outcome::None,
            })
        }
        Op::RefuseCredential {
            client_id,
            assertion,
            payload,
        } => {
            consume_assertion(tx, &client_id, assertion.as_ref()).await?;
            Ok(Applied {
                drafts: vec![draft(
                    RecordKind::CredentialRefused,
                    &format!("client:{client_id}"),
                    format!("identity:{client_id}"),
                    payload,
                )],
                effects: vec![],
                outcome: Outcome::None,
            })
        }
        Op::RevokeCredential {
            actor,
            revoked,
            subject,
        } => {
            let fresh = tx.revoke_token(&revoked).await.map_err(store_err)?;
            if !fresh {
                // Revoking twice is not an error (RFC 7009 §2.2) and not a change.
                return Ok(Applied {
                    drafts: vec![],
                    effects: vec![],
                    outcome: Outcome::Unchanged,
                });
            }
            Ok(Applied {
                drafts: vec![draft(
                    RecordKind::CredentialRevoked,
                    &actor,
                    format!("access-token:{}", revoked.jti),
                    json!({ "jti": revoked.jti, "exp_ms": revoked.exp_ms, "subject": subject }),
                )],
                effects: vec![Effect::Revoked {
                    jti: revoked.jti,
                    exp_ms: revoked.exp_ms,
                }],
                outcome: Outcome::None,
            })
        }
        Op::RotateSigningKey {
            actor,
            key,
            unpublish_ms,
            only_if_none,
        } => {
            let before = tx.token_keys().await.map_err(store_err)?;
            if only_if_none && before.iter().any(|k| k.retired_ms.is_none()) {
                return Ok(Applied {
                    drafts: vec![],
                    effects: vec![],
                    outcome: Outcome::Unchanged,
                });
            }
            tx.retire_token_keys(ctx.now, unpublish_ms)
                .await
                .map_err(store_err)?;
            tx.insert_token_key(&key).await.map_err(store_err)?;
            let rows = tx.token_keys().await.map_err(store_err)?;
            let retired: Vec<&str> = before
                .iter()
                .filter(|k| k.retired_ms.is_none())
                .map(|k| k.kid.as_str())
                .collect();
            Ok(Applied {
                drafts: vec![draft(
                    RecordKind::SigningKeyRotated,
                    &actor,
                    format!("signing-key:{}", key.kid),
                    json!({ "kid": key.kid, "alg": key.alg, "retired": retired, "retired_keys_leave_jwks_ms": unpublish_ms }),
                )],
                effects: vec![Effect::SigningKeys(Arc::new(SigningKeys::from_rows(
                    &rows,
                    ctx.key_wrap,
                )))],
                outcome: Outcome::None,
            })
        }
        Op::PurgeExpired { before_ms } => {
            tx.purge_expired(before_ms).await.map_err(store_err)?;
            Ok(Applied {
                drafts: vec![],
                effects: vec![],
                outcome: Outcome::None,
            })
        }
        Op::Gov(g) => crate::governance::ops::apply(tx, *g, ctx).await,
        Op::System { payload } => Ok(Applied {
            drafts: vec![draft(
                RecordKind::System,
                "system",
                "server".into(),
                payload,
            )],
            effects: vec![],
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
    key_wrap: &KeyWrap,
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
            "killswitch" => {
                if let Some(switch) = tx.get_kill_switch(key).await.map_err(store_err)? {
                    effects.push(Effect::KillSwitch(switch));
                }
            }
            "access-token" => {
                if let Some(r) = tx.revoked_token(key).await.map_err(store_err)? {
                    effects.push(Effect::Revoked {
                        jti: r.jti,
                        exp_ms: r.exp_ms,
                    });
                }
            }
            "signing-key" if seen.insert("signing-key") => {
                let rows = tx.token_keys().await.map_err(store_err)?;
                effects.push(Effect::SigningKeys(Arc::new(SigningKeys::from_rows(
                    &rows, key_wrap,
                ))));
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
            other => {
                if let Some(e) = crate::governance::ops::reload_subject(tx, other, key).await? {
                    effects.push(e);
                }
            }
        }
    }
    Ok(effects)
}
