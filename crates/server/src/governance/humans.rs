//! Writer ops for the humans who operate warrant: accounts, control-plane role grants
//! (two-person), and sign-in sessions. Each runs under the audit-head lock with its
//! records, like every other change; the rules themselves are `warrant_core::access`.

use super::state::{kind, object_row, SESSION_LIVE};
use crate::ops::{draft, store_err, Applied, Ctx, Effect, Outcome};
use crate::writer::WriteError;
use serde_json::json;
use warrant_core::access::{
    self, AccessError, CpRole, GrantState, Human, OidcLink, RoleGrant, Session,
};
use warrant_core::audit::RecordKind;
use warrant_core::Millis;
use warrant_store::WriteTx;

/// The marker stored when the first admin was granted with the bootstrap token.
pub const FIRST_ADMIN: &str = "first-admin";

/// How long a role grant waits for its second admin.
pub const GRANT_TTL_MS: Millis = 7 * 24 * 3600 * 1000;

#[derive(Debug, Clone)]
pub enum HumanOp {
    Create {
        actor: String,
        human: Human,
    },
    Update {
        actor: String,
        name: String,
        display_name: Option<String>,
        /// `Some(None)` removes the local password. Every password change ends the
        /// human's sessions.
        password_hash: Option<Option<String>>,
        /// With a new password: set by an admin (one-time) or by the human.
        password_must_change: bool,
        disabled: Option<bool>,
    },
    RequestGrant {
        actor: String,
        /// The named human asking (`None`: the bootstrap token).
        requester: Option<String>,
        id: String,
        human: String,
        role: CpRole,
        justification: String,
    },
    DecideGrant {
        actor: String,
        approver: String,
        id: String,
        approve: bool,
        note: String,
    },
    RevokeRole {
        actor: String,
        human: String,
        role: CpRole,
        justification: String,
    },
    /// A sign-in: the session, and for a first OpenID Connect sign-in the account it
    /// provisions or the link it adds.
    OpenSession {
        session: Session,
        provision: Option<Human>,
        link: Option<OidcLink>,
    },
    EndSession {
        actor: String,
        id: String,
        reason: String,
    },
}

fn access_err(e: AccessError) -> WriteError {
    match e {
        AccessError::Invalid(m) => WriteError::Invalid(m),
        AccessError::Forbidden(m) => WriteError::Forbidden(m),
        AccessError::Conflict(m) => WriteError::Conflict(m),
    }
}

fn human<'a>(ctx: &'a Ctx<'_>, name: &str) -> Result<&'a Human, WriteError> {
    ctx.snap
        .gov
        .humans
        .get(&Human::key(name))
        .map(|h| &**h)
        .ok_or_else(|| WriteError::NotFound(format!("human `{name}` not found")))
}

/// What a human looks like in records (never the password hash).
pub fn public(h: &Human) -> serde_json::Value {
    json!({
        "name": h.name,
        "display_name": h.display_name,
        "roles": h.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        "local_password": h.password_hash.is_some(),
        "oidc": h.oidc,
        "disabled": h.disabled,
    })
}

async fn put_human(tx: &mut dyn WriteTx, ctx: &Ctx<'_>, h: &Human) -> Result<Effect, WriteError> {
    let mut row = object_row(kind::HUMAN, &Human::key(&h.name), "active", h, ctx.now);
    row.created_ms = h.created_ms;
    tx.put_object(&row).await.map_err(store_err)?;
    Ok(Effect::Human(Box::new(h.clone())))
}

async fn put_grant(tx: &mut dyn WriteTx, ctx: &Ctx<'_>, g: &RoleGrant) -> Result<(), WriteError> {
    let mut row = object_row(kind::ROLE_GRANT, &g.id, g.state.as_str(), g, ctx.now);
    row.created_ms = g.requested_ms;
    tx.put_object(&row).await.map_err(store_err)
}

fn not_an_identity(ctx: &Ctx<'_>, name: &str) -> Result<(), WriteError> {
    let taken = ctx.snap.principals.get(name).is_some()
        || ctx
            .snap
            .principals
            .values()
            .any(|e| e.identity.spiffe_id.eq_ignore_ascii_case(name));
    if taken {
        return Err(WriteError::Conflict(format!(
            "`{name}` names a registered identity; humans and identities never share a name (control-plane roles are for humans only)"
        )));
    }
    Ok(())
}

/// Stores a new account: a valid, unused name that no identity has, and no roles.
async fn insert_new(
    tx: &mut dyn WriteTx,
    ctx: &Ctx<'_>,
    h: &mut Human,
    if_exists: &str,
) -> Result<Effect, WriteError> {
    h.name = access::validate_name(&h.name).map_err(access_err)?;
    if ctx.snap.gov.humans.contains_key(&Human::key(&h.name)) {
        return Err(WriteError::Conflict(format!(
            "human `{}` exists already{if_exists}",
            h.name
        )));
    }
    not_an_identity(ctx, &h.name)?;
    h.roles.clear();
    h.created_ms = ctx.now;
    h.updated_ms = ctx.now;
    put_human(tx, ctx, h).await
}

fn any_admin(ctx: &Ctx<'_>) -> bool {
    ctx.snap.gov.humans.values().any(|h| h.holds(CpRole::Admin))
}

pub async fn apply(
    tx: &mut dyn WriteTx,
    op: HumanOp,
    ctx: &Ctx<'_>,
) -> Result<Applied, WriteError> {
    match op {
        HumanOp::Create { actor, mut human } => {
            let effect = insert_new(tx, ctx, &mut human, "").await?;
            Ok(Applied {
                drafts: vec![draft(
                    RecordKind::HumanChanged,
                    &actor,
                    format!("human:{}", Human::key(&human.name)),
                    json!({ "action": "created", "human": public(&human) }),
                )],
                effects: vec![effect],
                outcome: Outcome::None,
            })
        }
        HumanOp::Update {
            actor,
            name,
            display_name,
            password_hash,
            password_must_change,
            disabled,
        } => {
            let mut h = human(ctx, &name)?.clone();
            let mut changed = Vec::new();
            if let Some(d) = display_name {
                h.display_name = d;
                changed.push("display_name");
            }
            let password_changed = password_hash.is_some();
            if let Some(p) = password_hash {
                let admin_set = p.is_some() && password_must_change;
                if admin_set && !h.roles.is_empty() {
                    return Err(WriteError::Forbidden(format!(
                        "`{}` holds control-plane roles: an admin may remove their local password, not set one",
                        h.name
                    )));
                }
                if admin_set {
                    h.password_set_by = Some(actor.clone());
                } else if p.is_none() {
                    h.password_set_by = None;
                }
                h.password_must_change = admin_set;
                h.password_hash = p;
                changed.push("password");
            }
            if let Some(d) = disabled {
                h.disabled = d;
                changed.push(if d { "disabled" } else { "enabled" });
            }
            h.updated_ms = ctx.now;
            let effect = put_human(tx, ctx, &h).await?;
            let mut effects = vec![effect];
            let mut drafts = vec![draft(
                RecordKind::HumanChanged,
                &actor,
                format!("human:{}", Human::key(&h.name)),
                json!({ "action": "updated", "changed": changed, "human": public(&h) }),
            )];
            // A disabled human's sessions end at once; so do they when the password changes.
            if h.disabled || password_changed {
                let why = if h.disabled {
                    "account disabled"
                } else {
                    "password changed"
                };
                end_sessions_of(tx, ctx, &h.name, &actor, why, &mut drafts, &mut effects).await?;
            }
            // ...and the human's API tokens when the password changes: whoever knew the
            // old password loses what they got with it.
            if password_changed {
                revoke_tokens_of(tx, ctx, &h.name, &actor, &mut drafts, &mut effects).await?;
            }
            Ok(Applied {
                drafts,
                effects,
                outcome: Outcome::None,
            })
        }
        HumanOp::RequestGrant {
            actor,
            requester,
            id,
            human: name,
            role,
            justification,
        } => {
            let h = human(ctx, &name)?.clone();
            if h.disabled {
                return Err(WriteError::Conflict(format!(
                    "human `{}` is disabled",
                    h.name
                )));
            }
            if h.roles.contains(&role) {
                return Err(WriteError::Conflict(format!(
                    "`{}` holds the `{}` role already",
                    h.name,
                    role.as_str()
                )));
            }
            let justification = justification.trim().to_owned();
            if justification.len() < 10 || justification.len() > 2000 {
                return Err(WriteError::Invalid(
                    "`justification` must say why, in 10 to 2000 characters".into(),
                ));
            }
            // The very first admin: granted by the installation's bootstrap token while no
            // named human has ever held `admin` (a marker records that it happened, so
            // disabling every admin does not reopen the exception). Every other grant waits
            // for a second admin.
            let bootstrap = requester.is_none()
                && role == CpRole::Admin
                && !any_admin(ctx)
                && tx
                    .get_object(kind::MARKER, FIRST_ADMIN)
                    .await
                    .map_err(store_err)?
                    .is_none();
            let mut g = RoleGrant {
                id: id.clone(),
                human: h.name.clone(),
                role,
                requested_by: actor.clone(),
                requester,
                justification,
                state: GrantState::Pending,
                requested_ms: ctx.now,
                expires_ms: ctx.now + GRANT_TTL_MS,
                decided_by: None,
                decided_ms: None,
                note: None,
                bootstrap,
            };
            let mut drafts = vec![draft(
                RecordKind::RoleGrant,
                &actor,
                format!("role_grant:{id}"),
                json!({ "action": "requested", "grant": g }),
            )];
            let mut effects = vec![];
            if bootstrap {
                g.state = GrantState::Approved;
                g.decided_by = Some(actor.clone());
                g.decided_ms = Some(ctx.now);
                g.note = Some("first admin, granted with the bootstrap token while no named human held `admin`".into());
                tx.insert_object(&object_row(
                    kind::MARKER,
                    FIRST_ADMIN,
                    "set",
                    &json!({ "human": h.name, "grant": id }),
                    ctx.now,
                ))
                .await
                .map_err(store_err)?;
                let mut h = h;
                h.roles.insert(role);
                h.updated_ms = ctx.now;
                effects.push(put_human(tx, ctx, &h).await?);
                drafts.push(draft(
                    RecordKind::HumanChanged,
                    &actor,
                    format!("human:{}", Human::key(&h.name)),
                    json!({ "action": "role_granted", "role": role.as_str(), "grant": id, "bootstrap": true, "human": public(&h) }),
                ));
            }
            put_grant(tx, ctx, &g).await?;
            Ok(Applied {
                drafts,
                effects,
                outcome: Outcome::None,
            })
        }
        HumanOp::DecideGrant {
            actor,
            approver,
            id,
            approve,
            note,
        } => {
            let row = tx
                .get_object(kind::ROLE_GRANT, &id)
                .await
                .map_err(store_err)?
                .ok_or_else(|| WriteError::NotFound(format!("role grant `{id}` not found")))?;
            let mut g: RoleGrant = super::state::body(&row).ok_or_else(|| {
                WriteError::Conflict(format!("stored role grant `{id}` does not decode"))
            })?;
            let is_admin = ctx
                .snap
                .gov
                .humans
                .get(&Human::key(&approver))
                .is_some_and(|h| h.holds(CpRole::Admin));
            access::may_decide_grant(&g, &approver, is_admin, ctx.now).map_err(access_err)?;
            if approve {
                let grantee = human(ctx, &g.human)?;
                if grantee
                    .password_set_by
                    .as_deref()
                    .is_some_and(|by| by.eq_ignore_ascii_case(&format!("human:{approver}")))
                {
                    return Err(WriteError::Forbidden(format!(
                        "`{approver}` set the password `{}` signs in with (or the one it replaced), so could be signing in as them: another admin approves",
                        g.human
                    )));
                }
            }
            let note = note.trim().to_owned();
            if note.len() > 2000 {
                return Err(WriteError::Invalid(
                    "`note` is at most 2000 characters".into(),
                ));
            }
            g.state = if approve {
                GrantState::Approved
            } else {
                GrantState::Rejected
            };
            g.decided_by = Some(approver.clone());
            g.decided_ms = Some(ctx.now);
            g.note = (!note.is_empty()).then_some(note);
            put_grant(tx, ctx, &g).await?;
            let mut drafts = vec![draft(
                RecordKind::RoleGrant,
                &actor,
                format!("role_grant:{id}"),
                json!({ "action": if approve { "approved" } else { "rejected" }, "grant": g }),
            )];
            let mut effects = vec![];
            if approve {
                let mut h = human(ctx, &g.human)?.clone();
                h.roles.insert(g.role);
                h.updated_ms = ctx.now;
                effects.push(put_human(tx, ctx, &h).await?);
                drafts.push(draft(
                    RecordKind::HumanChanged,
                    &actor,
                    format!("human:{}", Human::key(&h.name)),
                    json!({ "action": "role_granted", "role": g.role.as_str(), "grant": id,
                            "requested_by": g.requested_by, "approved_by": approver, "human": public(&h) }),
                ));
            }
            Ok(Applied {
                drafts,
                effects,
                outcome: Outcome::None,
            })
        }
        HumanOp::RevokeRole {
            actor,
            human: name,
            role,
            justification,
        } => {
            let mut h = human(ctx, &name)?.clone();
            if !h.roles.remove(&role) {
                return Err(WriteError::Conflict(format!(
                    "`{}` does not hold the `{}` role",
                    h.name,
                    role.as_str()
                )));
            }
            if justification.trim().is_empty() || justification.len() > 2000 {
                return Err(WriteError::Invalid(
                    "`justification` must say why (1 to 2000 characters)".into(),
                ));
            }
            h.updated_ms = ctx.now;
            let effect = put_human(tx, ctx, &h).await?;
            Ok(Applied {
                drafts: vec![draft(
                    RecordKind::HumanChanged,
                    &actor,
                    format!("human:{}", Human::key(&h.name)),
                    json!({ "action": "role_revoked", "role": role.as_str(), "justification": justification.trim(), "human": public(&h) }),
                )],
                effects: vec![effect],
                outcome: Outcome::None,
            })
        }
        HumanOp::OpenSession {
            session,
            provision,
            link,
        } => {
            let mut effects = vec![];
            let mut drafts = vec![];
            let actor = format!("human:{}", session.human);
            if let Some(mut h) = provision {
                effects.push(insert_new(tx, ctx, &mut h, "; an admin links it").await?);
                drafts.push(draft(
                    RecordKind::HumanChanged,
                    &actor,
                    format!("human:{}", Human::key(&h.name)),
                    json!({ "action": "provisioned", "by": "oidc", "human": public(&h) }),
                ));
            } else {
                let mut h = human(ctx, &session.human)?.clone();
                if h.disabled {
                    return Err(WriteError::Forbidden(format!(
                        "human `{}` is disabled",
                        h.name
                    )));
                }
                if let Some(l) = link {
                    h.oidc = Some(l);
                    h.updated_ms = ctx.now;
                    effects.push(put_human(tx, ctx, &h).await?);
                    drafts.push(draft(
                        RecordKind::HumanChanged,
                        &actor,
                        format!("human:{}", Human::key(&h.name)),
                        json!({ "action": "oidc_linked", "human": public(&h) }),
                    ));
                }
            }
            let mut row = object_row(kind::SESSION, &session.id, SESSION_LIVE, &session, ctx.now);
            row.due_ms = Some(session.expires_ms);
            tx.insert_object(&row).await.map_err(store_err)?;
            drafts.push(draft(
                RecordKind::Session,
                &actor,
                format!("session:{}", session.id),
                json!({ "action": "signed_in", "method": session.method.as_str(), "expires_ms": session.expires_ms }),
            ));
            effects.push(Effect::Session(Box::new(session)));
            Ok(Applied {
                drafts,
                effects,
                outcome: Outcome::None,
            })
        }
        HumanOp::EndSession { actor, id, reason } => {
            let Some(row) = tx.get_object(kind::SESSION, &id).await.map_err(store_err)? else {
                return Err(WriteError::NotFound(format!("session `{id}` not found")));
            };
            if row.state != SESSION_LIVE {
                return Ok(Applied {
                    drafts: vec![],
                    effects: vec![],
                    outcome: Outcome::Unchanged,
                });
            }
            let s: Session = super::state::body(&row).ok_or_else(|| {
                WriteError::Conflict(format!("stored session `{id}` does not decode"))
            })?;
            let mut drafts = vec![];
            let mut effects = vec![];
            end_session(tx, ctx, s, &actor, &reason, &mut drafts, &mut effects).await?;
            Ok(Applied {
                drafts,
                effects,
                outcome: Outcome::None,
            })
        }
    }
}

async fn revoke_tokens_of(
    tx: &mut dyn WriteTx,
    ctx: &Ctx<'_>,
    name: &str,
    actor: &str,
    drafts: &mut Vec<warrant_core::audit::RecordDraft>,
    effects: &mut Vec<Effect>,
) -> Result<(), WriteError> {
    let ids: Vec<String> = ctx
        .snap
        .tokens
        .values()
        .filter(|t| {
            t.human
                .as_deref()
                .is_some_and(|h| h.eq_ignore_ascii_case(name))
        })
        .map(|t| t.id.clone())
        .collect();
    for id in ids {
        let Some(mut row) = tx.get_token(&id).await.map_err(store_err)? else {
            continue;
        };
        if row.revoked_ms.is_some() {
            continue;
        }
        row.revoked_ms = Some(ctx.now);
        tx.upsert_token(&row).await.map_err(store_err)?;
        drafts.push(draft(
            RecordKind::TokenRevoked,
            actor,
            format!("token:{id}"),
            json!({ "token": id, "human": name, "reason": "the human's password changed" }),
        ));
        effects.push(Effect::Token(row));
    }
    Ok(())
}

async fn end_session(
    tx: &mut dyn WriteTx,
    ctx: &Ctx<'_>,
    mut s: Session,
    actor: &str,
    reason: &str,
    drafts: &mut Vec<warrant_core::audit::RecordDraft>,
    effects: &mut Vec<Effect>,
) -> Result<(), WriteError> {
    s.ended_ms = Some(ctx.now.min(s.expires_ms));
    let mut row = object_row(kind::SESSION, &s.id, "ended", &s, ctx.now);
    row.created_ms = s.created_ms;
    tx.put_object(&row).await.map_err(store_err)?;
    drafts.push(draft(
        RecordKind::Session,
        actor,
        format!("session:{}", s.id),
        json!({ "action": "ended", "human": s.human, "reason": reason }),
    ));
    effects.push(Effect::Session(Box::new(s)));
    Ok(())
}

async fn end_sessions_of(
    tx: &mut dyn WriteTx,
    ctx: &Ctx<'_>,
    name: &str,
    actor: &str,
    reason: &str,
    drafts: &mut Vec<warrant_core::audit::RecordDraft>,
    effects: &mut Vec<Effect>,
) -> Result<(), WriteError> {
    let mine: Vec<Session> = ctx
        .snap
        .gov
        .sessions
        .values()
        .filter(|s| s.human.eq_ignore_ascii_case(name))
        .map(|s| (**s).clone())
        .collect();
    for s in mine {
        end_session(tx, ctx, s, actor, reason, drafts, effects).await?;
    }
    Ok(())
}
