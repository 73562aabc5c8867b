//! The writer ops of tiered change governance. Each runs inside the writer's transaction
//! under the audit-head lock, on the working snapshot (every earlier change of the batch
//! and of other replicas applied), so tiering, aggregates and execution see one
//! consistent state on every replica.

use super::delivery::{self, Purpose};
use super::executor::{execute, gov_err};
use super::state::{self, kind, object_row, proposal_row, TierPolicyRow};
use crate::ops::{draft, store_err, Applied, Ctx, Effect, Outcome};
use crate::writer::WriteError;
use serde_json::json;
use warrant_core::audit::{RecordDraft, RecordKind};
use warrant_core::governance::aggregate::crossed;
use warrant_core::governance::assess::{assess, check_capability, Graph};
use warrant_core::governance::tiering::{decide, floor_for};
use warrant_core::governance::workflow::{self, Actor, Approved, TimerOutcome};
use warrant_core::governance::*;
use warrant_core::identity::IdentityState;
use warrant_store::{StoreError, Unique, WriteTx};

/// A proposal as submitted by an AI identity (already shape-checked by the API).
#[derive(Debug, Clone)]
pub struct Submission {
    pub id: String,
    pub capability: String,
    pub proposer: String,
    pub change: Change,
    pub system: String,
    pub evidence: serde_json::Value,
    pub rationale: String,
    pub confidence_pct: u8,
    pub parent: Option<String>,
    pub correlation: Option<String>,
    /// Set when the change is an owner's revocation in an access certification (not an
    /// AI's proposal): tiered and run by the same workflow, recorded as a human's act.
    pub certification: Option<CertOrigin>,
}

/// Where a certification revocation comes from.
#[derive(Debug, Clone)]
pub struct CertOrigin {
    pub campaign: warrant_core::governance::certification::Campaign,
    pub item: u32,
    pub owner: String,
    pub environment: String,
}

/// The capability a stored proposal is governed under: a declared AI capability, or the
/// owner's certification capability (rebuilt from the campaign).
async fn proposal_capability(
    tx: &mut dyn WriteTx,
    ctx: &Ctx<'_>,
    p: &Proposal,
) -> Result<Capability, WriteError> {
    use warrant_core::governance::certification;
    let Some(campaign_id) = p.capability.strip_prefix(certification::PREFIX) else {
        return capability(ctx, &p.capability).cloned();
    };
    let row = tx
        .get_object(kind::CAMPAIGN, campaign_id)
        .await
        .map_err(store_err)?
        .ok_or_else(|| WriteError::NotFound(format!("campaign `{campaign_id}` not found")))?;
    let c: certification::Campaign = decoded(&row)?;
    // The owner answers for the identity only while it is theirs.
    if let Some(t) = p.change.target_identity() {
        let owner = ctx.snap.principals.get(t).map(|e| e.identity.owner.clone());
        if !owner
            .as_deref()
            .is_some_and(|o| o.eq_ignore_ascii_case(&p.proposer))
        {
            return Err(WriteError::Forbidden(format!(
                "identity `{t}` is no longer owned by `{}`, who revoked this in certification `{}`; its owner now decides",
                p.proposer, c.name
            )));
        }
    }
    let env = p
        .evidence
        .get("environment")
        .and_then(|e| e.as_str())
        .unwrap_or_default();
    Ok(certification::capability(&c, &p.proposer, env))
}

/// The result of one delivery attempt.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub ok: bool,
    pub status: Option<u16>,
    pub error: Option<String>,
}

pub enum GovOp {
    PutCapability {
        actor: String,
        new: NewCapability,
    },
    AcceptCapability {
        actor: Actor,
        id: String,
        statement: String,
    },
    ReviewCapability {
        actor: Actor,
        id: String,
        note: String,
    },
    PutRole {
        actor: String,
        role: Role,
    },
    PutResource {
        actor: String,
        resource: Resource,
    },
    PutTierPolicy {
        actor: String,
        text: String,
        comment: String,
    },
    Submit(Box<Submission>),
    Approve {
        actor: Actor,
        id: String,
        justification: String,
        ticket: String,
    },
    Reject {
        actor: Actor,
        id: String,
        justification: String,
    },
    Override {
        actor: Actor,
        id: String,
        justification: String,
    },
    /// The reviewer ratifies a Tier 2 change before its window ends.
    Ratify {
        actor: Actor,
        id: String,
        justification: String,
    },
    Perform {
        actor: Actor,
        id: String,
        justification: String,
        ticket: String,
    },
    /// A proposal's deadline passed: ratify (Tier 2) or expire (Tier 3/4), if still due.
    Timer {
        id: String,
    },
    /// Humans, role grants, sessions.
    Human(Box<super::humans::HumanOp>),
    /// Access certification campaigns.
    Cert(Box<super::certify::CertOp>),
    /// A webhook delivery attempt ended.
    DeliveryDone {
        id: String,
        attempt: Attempt,
    },
}

fn rec(kind: RecordKind, actor: &str, proposal: &str, payload: serde_json::Value) -> RecordDraft {
    draft(kind, actor, format!("proposal:{proposal}"), payload)
}

/// A stored object that does not decode (corrupt, or written by a newer version) refuses
/// the one op that needs it, never the whole batch.
fn decoded<T: serde::de::DeserializeOwned>(
    row: &warrant_store::ObjectRow,
) -> Result<T, WriteError> {
    state::body(row).ok_or_else(|| {
        WriteError::Conflict(format!(
            "stored {} `{}` does not decode (written by another version, or damaged)",
            row.kind, row.id
        ))
    })
}

/// Takes an undecodable object out of the timer queue (it would fire forever) and raises
/// an alert for a human to look at.
async fn quarantine(
    tx: &mut dyn WriteTx,
    mut row: warrant_store::ObjectRow,
    now: warrant_core::Millis,
) -> Result<Applied, WriteError> {
    row.due_ms = None;
    row.state = "undecodable".into();
    row.updated_ms = now;
    tx.put_object(&row).await.map_err(store_err)?;
    Ok(Applied {
        drafts: vec![draft(
            RecordKind::GovernanceAlert,
            "system",
            format!("{}:{}", row.kind, row.id),
            json!({ "alert": "undecodable", "kind": row.kind, "id": row.id, "action": "the stored object does not decode; its timer was stopped; inspect it" }),
        )],
        effects: vec![],
        outcome: Outcome::None,
    })
}

pub async fn load_proposal(tx: &mut dyn WriteTx, id: &str) -> Result<Proposal, WriteError> {
    let row = tx
        .get_object(kind::PROPOSAL, id)
        .await
        .map_err(store_err)?
        .ok_or_else(|| WriteError::NotFound(format!("proposal `{id}` not found")))?;
    decoded(&row)
}

fn capability<'s>(ctx: &'s Ctx<'_>, id: &str) -> Result<&'s Capability, WriteError> {
    ctx.snap
        .gov
        .capabilities
        .get(id)
        .map(|c| &**c)
        .ok_or_else(|| WriteError::NotFound(format!("capability `{id}` is not declared")))
}

/// Before a human authorizes a stored proposal: the graph may have changed since it was
/// assessed (a role gained members, a resource was reclassified). A change that now
/// reaches more than what was assessed and tiered is refused (propose it again), and
/// whoever would now gain access may not approve it either.
fn recheck(p: &mut Proposal, ctx: &Ctx<'_>) -> Result<(), WriteError> {
    if p.system != "warrant"
        || !matches!(
            p.state,
            ProposalState::PendingApproval | ProposalState::Recommended
        )
    {
        return Ok(());
    }
    // A change that no longer fits at all fails at execution, with the reason.
    let Ok(fresh) = assess(ctx.snap, &p.change) else {
        return Ok(());
    };
    let was = &p.assessment;
    if fresh.identities_count > was.identities_count
        || (fresh.privileged && !was.privileged)
        || fresh.classification > was.classification
        || fresh
            .environments
            .iter()
            .any(|e| !was.environments.contains(e))
    {
        return Err(WriteError::Conflict(format!(
            "the change now reaches more than when it was assessed ({} identities, privileged: {}, {} data, environments {:?}; assessed: {}, {}, {}, {:?}); reject it so that it is proposed and tiered again",
            fresh.identities_count,
            fresh.privileged,
            fresh.classification.as_str(),
            fresh.environments,
            was.identities_count,
            was.privileged,
            was.classification.as_str(),
            was.environments,
        )));
    }
    for b in fresh.beneficiaries {
        if !p.assessment.beneficiaries.contains(&b) {
            p.assessment.beneficiaries.push(b);
        }
    }
    Ok(())
}

/// Who authorized a proposal's execution, for the records of the objects it changes:
/// the proposal, its tier and why, and the named humans (approvers, or whoever performed
/// or overrode it) with justification and ticket.
fn authority(p: &Proposal) -> serde_json::Value {
    json!({
        "proposal": p.id,
        "capability": p.capability,
        "proposer": p.proposer,
        "tier": p.tier.tier,
        "tier_policies": p.tier.policies.iter().map(|m| &m.policy).collect::<Vec<_>>(),
        "approvals": p.approvals,
        "decision": p.decision,
    })
}

/// A summary of a proposal for its records.
fn summary(p: &Proposal) -> serde_json::Value {
    json!({
        "capability": p.capability,
        "proposer": p.proposer,
        "kind": p.kind().as_str(),
        "change": p.change,
        "system": p.system,
        "tier": p.tier.tier,
        "state": p.state.as_str(),
        "correlation": p.correlation,
    })
}

pub async fn apply(tx: &mut dyn WriteTx, op: GovOp, ctx: &Ctx<'_>) -> Result<Applied, WriteError> {
    match op {
        GovOp::PutCapability { actor, new } => put_capability(tx, ctx, &actor, new).await,
        GovOp::Human(op) => super::humans::apply(tx, *op, ctx).await,
        GovOp::Cert(op) => super::certify::apply(tx, *op, ctx).await,
        GovOp::AcceptCapability {
            actor,
            id,
            statement,
        } => {
            let mut cap = capability(ctx, &id)?.clone();
            let human = actor
                .human("accept accountability for a capability")
                .map_err(gov_err)?;
            if !human.eq_ignore_ascii_case(&cap.owner) {
                return Err(WriteError::Forbidden(format!(
                    "only the capability's owner `{}` can accept accountability for it",
                    cap.owner
                )));
            }
            let statement = if statement.trim().is_empty() {
                format!(
                    "I, {human}, accept accountability for AI capability `{}` acting as identity `{}`: it may propose {} affecting at most {} identities per proposal; I will review its decisions every {} days.",
                    cap.id,
                    cap.identity,
                    cap.kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", "),
                    cap.max_blast_radius,
                    cap.review_every_days
                )
            } else {
                check_text("statement", statement.trim(), MAX_TEXT).map_err(gov_err)?;
                statement.trim().to_owned()
            };
            cap.accepted = Some(Acceptance {
                by: human.to_owned(),
                at_ms: ctx.now,
                statement: statement.clone(),
            });
            cap.updated_ms = ctx.now;
            capability_applied(
                tx,
                ctx,
                cap,
                RecordKind::HumanDecision,
                &actor.audit(),
                json!({ "action": "accept_accountability", "statement": statement }),
            )
            .await
        }
        GovOp::ReviewCapability { actor, id, note } => {
            let mut cap = capability(ctx, &id)?.clone();
            let human = actor.human("review a capability").map_err(gov_err)?;
            if !human.eq_ignore_ascii_case(&cap.owner) {
                return Err(WriteError::Forbidden(format!(
                    "only the capability's owner `{}` can record its review",
                    cap.owner
                )));
            }
            if cap.accepted.is_none() {
                return Err(WriteError::Conflict(format!(
                    "capability `{id}` has not been accepted yet; accept accountability first"
                )));
            }
            check_text("note", &note, MAX_TEXT).map_err(gov_err)?;
            let was = cap.autonomy(ctx.now);
            cap.last_review_ms = Some(ctx.now);
            cap.last_review_by = Some(human.to_owned());
            cap.updated_ms = ctx.now;
            let next_due = cap.next_review_due_ms();
            capability_applied(
                tx,
                ctx,
                cap,
                RecordKind::HumanDecision,
                &actor.audit(),
                json!({ "action": "review", "note": note, "autonomy_before": was.as_str(), "next_review_due_ms": next_due }),
            )
            .await
        }
        GovOp::PutRole { actor, role } => {
            let role = role.validated().map_err(gov_err)?;
            let row = object_row(kind::ROLE, &role.name, "active", &role, ctx.now);
            tx.put_object(&row).await.map_err(store_err)?;
            Ok(Applied {
                drafts: vec![draft(
                    RecordKind::EntitlementModelChanged,
                    &actor,
                    format!("role:{}", role.name),
                    json!({ "role": role, "direct": true }),
                )],
                effects: vec![Effect::Role {
                    name: role.name.clone(),
                    role: Some(role),
                }],
                outcome: Outcome::None,
            })
        }
        GovOp::PutResource { actor, resource } => {
            let resource = resource.validated().map_err(gov_err)?;
            if let Some(other) = ctx.snap.gov.resources.get(&resource.id.to_lowercase()) {
                if other.id != resource.id {
                    return Err(WriteError::Conflict(format!(
                        "resource `{}` exists already (resources match without case)",
                        other.id
                    )));
                }
            }
            let row = object_row(kind::RESOURCE, &resource.id, "active", &resource, ctx.now);
            tx.put_object(&row).await.map_err(store_err)?;
            Ok(Applied {
                drafts: vec![draft(
                    RecordKind::EntitlementModelChanged,
                    &actor,
                    format!("resource:{}", resource.id),
                    json!({ "resource": resource, "direct": true }),
                )],
                effects: vec![Effect::Resource {
                    id: resource.id.clone(),
                    resource: Some(resource),
                }],
                outcome: Outcome::None,
            })
        }
        GovOp::PutTierPolicy {
            actor,
            text,
            comment,
        } => {
            let version = ctx.snap.gov.tier_version + 1;
            let row = TierPolicyRow {
                version,
                text,
                comment,
                by: actor.clone(),
                at_ms: ctx.now,
            };
            let obj = object_row(
                kind::TIER_POLICY,
                &state::tier_policy_id(version),
                "active",
                &row,
                ctx.now,
            );
            match tx.insert_object(&obj).await {
                Ok(()) => {}
                Err(StoreError::Conflict(Unique::Other(_))) => {
                    return Err(WriteError::Conflict(
                        "the tier policies changed meanwhile; try again".into(),
                    ))
                }
                Err(e) => return Err(store_err(e)),
            }
            use sha2::{Digest, Sha256};
            let ids = warrant_policy::TierPolicies::compile(&row.text)
                .map(|p| p.policy_ids())
                .unwrap_or_default();
            Ok(Applied {
                drafts: vec![draft(
                    RecordKind::TierPolicyUpdated,
                    &actor,
                    format!("tier-policy:{version}"),
                    json!({
                        "version": version,
                        "policy_ids": ids,
                        "policies_sha256": hex::encode(Sha256::digest(&row.text)),
                        "comment": row.comment,
                    }),
                )],
                effects: vec![Effect::TierPolicy(Box::new(row))],
                outcome: Outcome::PolicyVersion(version),
            })
        }
        GovOp::Submit(s) => submit(tx, ctx, *s).await,
        GovOp::Approve {
            actor,
            id,
            justification,
            ticket,
        } => {
            let mut p = load_proposal(tx, &id).await?;
            recheck(&mut p, ctx)?;
            let approved = workflow::approve(
                &mut p,
                &actor,
                &justification,
                &ticket,
                |t| ctx.gov.check_ticket(t),
                ctx.now,
                &ctx.gov.rules,
            )
            .map_err(gov_err)?;
            let last = p.approvals.last().cloned();
            let mut drafts = vec![rec(
                RecordKind::HumanDecision,
                &actor.audit(),
                &p.id,
                json!({
                    "action": "approve",
                    "justification": last.as_ref().map(|a| &a.justification),
                    "ticket": last.as_ref().map(|a| &a.ticket),
                    "approvals": p.approvals.len(),
                    "approvals_required": p.approvals_required.max(1),
                    "proposal": summary(&p),
                }),
            )];
            let mut effects = Vec::new();
            if approved == Approved::Execute {
                run_change(
                    tx,
                    ctx,
                    &mut p,
                    "system",
                    Purpose::Apply,
                    &mut drafts,
                    &mut effects,
                )
                .await?;
                if p.state == ProposalState::PendingApproval {
                    p.state = ProposalState::Executed;
                }
            }
            finish(tx, p, drafts, effects).await
        }
        GovOp::Reject {
            actor,
            id,
            justification,
        } => {
            let mut p = load_proposal(tx, &id).await?;
            workflow::reject(&mut p, &actor, &justification, ctx.now, &ctx.gov.rules)
                .map_err(gov_err)?;
            let drafts = vec![rec(
                RecordKind::HumanDecision,
                &actor.audit(),
                &p.id,
                json!({ "action": "reject", "justification": p.decision.as_ref().map(|d| &d.justification), "proposal": summary(&p) }),
            )];
            finish(tx, p, drafts, vec![]).await
        }
        GovOp::Override {
            actor,
            id,
            justification,
        } => {
            let mut p = load_proposal(tx, &id).await?;
            let cap = proposal_capability(tx, ctx, &p).await?;
            // A suspension's inverse resumes the identity: if it changed again since (an
            // admin acted on it), resuming could undo that too; a human decides instead.
            // (Entitlement and role inverses touch only what the change touched.)
            if let (true, Change::SuspendIdentity { identity }) = (p.system == "warrant", &p.change)
            {
                let applied_at = p.executions.first().map_or(p.submitted_ms, |e| e.at_ms);
                if let Some(e) = ctx.snap.principals.get(identity) {
                    if e.identity.updated_ms > applied_at {
                        return Err(WriteError::Conflict(format!(
                            "identity `{identity}` changed again after it was suspended; resuming it could undo that, so resume it by hand"
                        )));
                    }
                }
            }
            let inverse = workflow::override_change(
                &mut p,
                &cap,
                &actor,
                &justification,
                ctx.now,
                &ctx.gov.rules,
            )
            .map_err(gov_err)?;
            let mut drafts = vec![rec(
                RecordKind::HumanDecision,
                &actor.audit(),
                &p.id,
                json!({ "action": "override", "justification": p.decision.as_ref().map(|d| &d.justification), "inverse": inverse, "proposal": summary(&p) }),
            )];
            let mut effects = Vec::new();
            if p.system == "warrant" {
                let ex = execute(
                    tx,
                    ctx.snap,
                    &inverse,
                    &actor.audit(),
                    &authority(&p),
                    ctx.now,
                )
                .await?;
                record_execution(
                    &mut p,
                    ctx,
                    "reverted",
                    &format!("{} object(s) restored", ex.changed),
                    &actor.audit(),
                    &mut drafts,
                );
                drafts.extend(ex.drafts);
                effects.extend(ex.effects);
            } else if let Some(pending) = pending_apply(tx, &p).await? {
                // The change has not reached the external system yet: cancel its
                // delivery instead of sending a revert that could overtake it.
                cancel_delivery(tx, pending, ctx.now).await?;
                record_execution(
                    &mut p,
                    ctx,
                    "cancelled",
                    "the change had not reached the external system; its delivery was cancelled",
                    &actor.audit(),
                    &mut drafts,
                );
            } else {
                queue_connector(tx, ctx, &mut p, Purpose::Revert, &inverse, &mut drafts).await?;
            }
            finish(tx, p, drafts, effects).await
        }
        GovOp::Ratify {
            actor,
            id,
            justification,
        } => {
            let mut p = load_proposal(tx, &id).await?;
            let cap = proposal_capability(tx, ctx, &p).await?;
            workflow::ratify(
                &mut p,
                &cap,
                &actor,
                &justification,
                ctx.now,
                &ctx.gov.rules,
            )
            .map_err(gov_err)?;
            let notifications = delivery_summaries(tx, &p).await?;
            let drafts = vec![
                rec(
                    RecordKind::HumanDecision,
                    &actor.audit(),
                    &p.id,
                    json!({ "action": "ratify", "justification": p.decision.as_ref().map(|d| &d.justification), "proposal": summary(&p) }),
                ),
                rec(
                    RecordKind::ProposalRatified,
                    &actor.audit(),
                    &p.id,
                    json!({
                        "reviewer": p.notified,
                        "notifications": notifications,
                        "window_ends_ms": p.deadline_ms,
                        "reviewer_acted": true,
                        "ratified_by": p.decision.as_ref().map(|d| &d.by),
                        "outcome": "the reviewer ratified the change before its override window ended",
                        "proposal": summary(&p),
                    }),
                ),
            ];
            finish(tx, p, drafts, vec![]).await
        }
        GovOp::Perform {
            actor,
            id,
            justification,
            ticket,
        } => {
            let mut p = load_proposal(tx, &id).await?;
            recheck(&mut p, ctx)?;
            let human = workflow::perform(
                &mut p,
                &actor,
                &justification,
                &ticket,
                |t| ctx.gov.check_ticket(t),
                ctx.now,
                &ctx.gov.rules,
            )
            .map_err(gov_err)?;
            let by = format!("human:{human}");
            let mut drafts = vec![rec(
                RecordKind::HumanDecision,
                &by,
                &p.id,
                json!({ "action": "perform", "justification": justification.trim(), "ticket": ticket.trim(), "proposal": summary(&p) }),
            )];
            let mut effects = Vec::new();
            if p.system == "warrant" {
                // The human performs the change through warrant and owns the record.
                let ex = execute(
                    tx,
                    ctx.snap,
                    &p.change.clone(),
                    &by,
                    &authority(&p),
                    ctx.now,
                )
                .await?;
                record_execution(
                    &mut p,
                    ctx,
                    "applied",
                    &format!("performed by {human}; {} object(s) changed", ex.changed),
                    &by,
                    &mut drafts,
                );
                drafts.extend(ex.drafts);
                effects.extend(ex.effects);
            } else {
                let detail = format!(
                    "{human} performed the change in `{}` and recorded it",
                    p.system
                );
                record_execution(&mut p, ctx, "performed_by_human", &detail, &by, &mut drafts);
            }
            p.state = ProposalState::Executed;
            finish(tx, p, drafts, effects).await
        }
        GovOp::Timer { id } => {
            let row = tx
                .get_object(kind::PROPOSAL, &id)
                .await
                .map_err(store_err)?
                .ok_or_else(|| WriteError::NotFound(format!("proposal `{id}` not found")))?;
            let Some(mut p) = state::body::<Proposal>(&row) else {
                return quarantine(tx, row, ctx.now).await;
            };
            let Some(outcome) = workflow::timer(&p, ctx.now) else {
                return Ok(Applied {
                    drafts: vec![],
                    effects: vec![],
                    outcome: Outcome::Unchanged,
                });
            };
            let drafts = match outcome {
                TimerOutcome::Ratify => {
                    p.state = ProposalState::Ratified;
                    let notifications = delivery_summaries(tx, &p).await?;
                    let notified_at = notifications
                        .iter()
                        .filter(|n| n["purpose"] == "notify")
                        .filter_map(|n| n["delivered_ms"].as_i64())
                        .min();
                    let via = if notifications.iter().any(|n| n["purpose"] == "notify") {
                        "webhook"
                    } else {
                        "none: no webhook configured (the change was listed for review only)"
                    };
                    vec![draft(
                        RecordKind::ProposalRatified,
                        "system",
                        format!("proposal:{}", p.id),
                        json!({
                            "reviewer": p.notified,
                            "notified_via": via,
                            "notified_at_ms": notified_at,
                            "notifications": notifications,
                            "window_ended_ms": p.deadline_ms,
                            "reviewer_acted": false,
                            "outcome": "the override window lapsed without an override; the change stands",
                            "proposal": summary(&p),
                        }),
                    )]
                }
                TimerOutcome::Expire => {
                    let was = p.state;
                    p.state = ProposalState::Expired;
                    vec![draft(
                        RecordKind::ProposalExpired,
                        "system",
                        format!("proposal:{}", p.id),
                        json!({
                            "was": was.as_str(),
                            "approvals": p.approvals.len(),
                            "approvals_required": p.approvals_required,
                            "deadline_ms": p.deadline_ms,
                            "outcome": "no decision before the deadline; nothing was changed",
                            "proposal": summary(&p),
                        }),
                    )]
                }
            };
            p.updated_ms = ctx.now;
            finish(tx, p, drafts, vec![]).await
        }
        GovOp::DeliveryDone { id, attempt } => delivery_done(tx, ctx, &id, attempt).await,
    }
}

async fn capability_applied(
    tx: &mut dyn WriteTx,
    ctx: &Ctx<'_>,
    cap: Capability,
    kind_: RecordKind,
    actor: &str,
    mut payload: serde_json::Value,
) -> Result<Applied, WriteError> {
    let row = object_row(
        kind::CAPABILITY,
        &cap.id,
        cap.autonomy(ctx.now).as_str(),
        &cap,
        ctx.now,
    );
    tx.put_object(&row).await.map_err(store_err)?;
    if let Some(o) = payload.as_object_mut() {
        o.insert("capability".into(), json!(cap.redacted()));
    }
    Ok(Applied {
        drafts: vec![draft(
            kind_,
            actor,
            format!("capability:{}", cap.id),
            payload,
        )],
        effects: vec![Effect::Capability(Box::new(cap.clone()))],
        outcome: Outcome::Capability(Box::new(cap)),
    })
}

async fn put_capability(
    tx: &mut dyn WriteTx,
    ctx: &Ctx<'_>,
    actor: &str,
    new: NewCapability,
) -> Result<Applied, WriteError> {
    let previous = ctx.snap.gov.capabilities.get(&new.id).cloned();
    let identity = ctx.snap.principals.get(&new.identity).ok_or_else(|| {
        WriteError::Invalid(format!(
            "identity `{}` (the identity acting for the capability) is not registered",
            new.identity
        ))
    })?;
    if identity.identity.state == IdentityState::Retired {
        return Err(WriteError::Invalid(format!(
            "identity `{}` is retired",
            new.identity
        )));
    }
    if !identity.identity.kind.is_ai() {
        return Err(WriteError::Invalid(format!(
            "identity `{}` is a {}; an AI capability acts through an agent or AI-tool identity",
            new.identity,
            identity.identity.kind.as_str()
        )));
    }
    let cap = new
        .into_capability(actor, ctx.now, previous.as_deref())
        .map_err(gov_err)?;
    let kept = previous.is_some() && cap.accepted.is_some();
    capability_applied(
        tx,
        ctx,
        cap,
        RecordKind::CapabilityChanged,
        actor,
        json!({ "action": if previous.is_some() { "updated" } else { "declared" }, "acceptance_kept": kept }),
    )
    .await
}

/// The capability and identity of an AI's submission, after the capability's checks.
fn ai_submitter(
    ctx: &Ctx<'_>,
    s: &Submission,
) -> Result<(Capability, warrant_core::identity::Identity), WriteError> {
    let snap = ctx.snap;
    let now = ctx.now;
    let cap = capability(ctx, &s.capability)?.clone();
    if cap.identity != s.proposer {
        return Err(WriteError::Forbidden(format!(
            "identity `{}` does not act for capability `{}`",
            s.proposer, cap.id
        )));
    }
    let autonomy = cap.autonomy(now);
    if autonomy == Autonomy::NotAccepted {
        return Err(WriteError::Forbidden(format!(
            "capability `{}` cannot propose: its owner `{}` has not accepted accountability for it",
            cap.id, cap.owner
        )));
    }
    let proposer = snap
        .principals
        .get(&s.proposer)
        .map(|e| e.identity.clone())
        .ok_or_else(|| {
            WriteError::Forbidden(format!("identity `{}` is not registered", s.proposer))
        })?;
    if !cap.systems.contains(&s.system) {
        return Err(WriteError::Forbidden(format!(
            "capability `{}` may not execute in `{}`; it declared: {}",
            cap.id,
            s.system,
            cap.systems.join(", ")
        )));
    }
    if s.system != "warrant" && !ctx.gov.connectors.contains_key(&s.system) {
        return Err(WriteError::Invalid(format!(
            "system `{}` has no connector configured; known: warrant{}",
            s.system,
            ctx.gov
                .connectors
                .keys()
                .map(|k| format!(", {k}"))
                .collect::<String>()
        )));
    }
    Ok((cap, proposer))
}

pub(crate) async fn submit(
    tx: &mut dyn WriteTx,
    ctx: &Ctx<'_>,
    s: Submission,
) -> Result<Applied, WriteError> {
    let snap = ctx.snap;
    let now = ctx.now;
    let (cap, proposer) = match &s.certification {
        Some(o) => {
            let target = s
                .change
                .target_identity()
                .and_then(|t| snap.principals.get(t))
                .map(|e| e.identity.clone())
                .ok_or_else(|| WriteError::Conflict("the certified identity is gone".into()))?;
            let cap = warrant_core::governance::certification::capability(
                &o.campaign,
                &o.owner,
                &o.environment,
            );
            // The tiering needs a proposing identity: the certification itself, owned by
            // the answering owner, in the identity's environment (never an AI).
            let proposer = warrant_core::identity::Identity {
                id: s.proposer.clone(),
                name: cap.id.clone(),
                kind: warrant_core::identity::IdentityKind::ServiceAccount,
                owner: o.owner.clone(),
                ..target
            };
            (cap, proposer)
        }
        None => ai_submitter(ctx, &s)?,
    };
    let correlation = match &s.parent {
        Some(parent) => {
            let parent_p = load_proposal(tx, parent).await.map_err(|e| match e {
                WriteError::NotFound(m) => WriteError::Invalid(format!("parent: {m}")),
                e => e,
            })?;
            if let Some(c) = &s.correlation {
                if *c != parent_p.correlation {
                    return Err(WriteError::Invalid(format!(
                        "correlation `{c}` differs from the parent's chain `{}`",
                        parent_p.correlation
                    )));
                }
            }
            parent_p.correlation
        }
        None => s.correlation.clone().unwrap_or_else(|| s.id.clone()),
    };
    let kind_ = s
        .change
        .kind()
        .ok_or_else(|| WriteError::Invalid("this change cannot be proposed".into()))?;
    let Tiered {
        assessment,
        tier,
        approvals_required,
        alerts,
    } = assess_and_tier(
        snap,
        ctx.gov,
        &cap,
        &proposer,
        &s.id,
        &s.change,
        s.confidence_pct,
        &correlation,
        now,
    )
    .map_err(gov_err)?;
    let (state, deadline, notified) = match tier.tier {
        1 => (ProposalState::Executed, None, vec![]),
        2 => (
            ProposalState::InReview,
            Some(now + ctx.gov.override_window_ms),
            vec![cap.reviewer().to_owned()],
        ),
        3 => (
            ProposalState::PendingApproval,
            Some(now + ctx.gov.approval_expiry_ms),
            vec![cap.owner.clone()],
        ),
        _ => (
            ProposalState::Recommended,
            Some(now + ctx.gov.recommendation_expiry_ms),
            vec![cap.owner.clone()],
        ),
    };
    let s_cert = s.certification.clone();
    let mut p = Proposal {
        id: s.id.clone(),
        capability: cap.id.clone(),
        proposer: s.proposer.clone(),
        change: s.change,
        system: s.system,
        evidence: s.evidence,
        rationale: s.rationale,
        confidence_pct: s.confidence_pct,
        parent: s.parent,
        correlation,
        submitted_ms: now,
        assessment,
        tier,
        state,
        approvals_required,
        approvals: vec![],
        notified,
        deadline_ms: deadline,
        decision: None,
        executions: vec![],
        deliveries: vec![],
        updated_ms: now,
    };
    let (first_kind, first_actor) = match &s_cert {
        Some(_) => (RecordKind::Certification, format!("human:{}", p.proposer)),
        None => (
            RecordKind::AiRecommendation,
            format!("identity:{}", p.proposer),
        ),
    };
    let mut drafts = vec![rec(
        first_kind,
        &first_actor,
        &p.id,
        json!({
            "capability": p.capability,
            "owner": cap.owner,
            "kind": kind_.as_str(),
            "change": p.change,
            "system": p.system,
            "rationale": p.rationale,
            "confidence_pct": p.confidence_pct,
            "evidence": p.evidence,
            "parent": p.parent,
            "correlation": p.correlation,
            "assessment": p.assessment,
            "tier": p.tier,
            "state": p.state.as_str(),
            "deadline_ms": p.deadline_ms,
        }),
    )];
    if !alerts.is_empty() {
        drafts.push(rec(
            RecordKind::GovernanceAlert,
            "system",
            &p.id,
            json!({
                "capability": p.capability,
                "correlation": p.correlation,
                "crossed": alerts,
                "aggregates": p.assessment.aggregates,
                "escalated_to_tier": p.tier.tier,
            }),
        ));
    }
    let mut effects = Vec::new();
    if matches!(p.tier.tier, 1 | 2) {
        run_change(
            tx,
            ctx,
            &mut p,
            "system",
            Purpose::Apply,
            &mut drafts,
            &mut effects,
        )
        .await?;
    }
    if matches!(
        p.state,
        ProposalState::InReview | ProposalState::PendingApproval | ProposalState::Recommended
    ) {
        notify(tx, ctx, &mut p, &cap).await?;
    }
    if matches!(p.state, ProposalState::Failed) {
        // Nothing was applied; the proposal is kept, marked failed.
    }
    let mut chain: state::ChainRow = match tx
        .get_object(kind::CHAIN, &p.correlation)
        .await
        .map_err(store_err)?
    {
        Some(r) => decoded(&r)?,
        None => state::ChainRow {
            correlation: p.correlation.clone(),
            proposals: vec![],
        },
    };
    chain.proposals.push(p.id.clone());
    let mut chain_row = object_row(kind::CHAIN, &p.correlation, "active", &chain, now);
    chain_row.created_ms = p.submitted_ms;
    tx.put_object(&chain_row).await.map_err(store_err)?;
    let row = proposal_row(&p);
    tx.insert_object(&row).await.map_err(|e| match e {
        StoreError::Conflict(_) => {
            WriteError::Conflict(format!("proposal `{}` exists already", p.id))
        }
        e => store_err(e),
    })?;
    effects.push(Effect::Proposal(Box::new(p.clone())));
    Ok(Applied {
        drafts,
        effects,
        outcome: Outcome::Proposal(Box::new(p)),
    })
}

/// What warrant concluded about a proposal before anything is written.
#[derive(Debug, Clone)]
pub struct Tiered {
    pub assessment: Assessment,
    pub tier: TierDecision,
    /// Tier 3: approvals needed (2 under the two-person rule); else 0.
    pub approvals_required: u8,
    /// Aggregates this proposal pushes over their thresholds.
    pub alerts: Vec<String>,
}

/// Assesses a change (blast radius, privilege, reversibility, classification from the
/// entitlement graph), checks it against the capability's declaration, takes the
/// aggregates into account and assigns the tier (tier policies, floor, escalations).
/// Pure: reads the snapshot only. The cost grows with the change (and the members of a
/// role it touches), not with the registry.
#[allow(clippy::too_many_arguments)]
pub fn assess_and_tier(
    snap: &crate::snapshot::Snapshot,
    gov: &super::GovConfig,
    cap: &Capability,
    proposer: &warrant_core::identity::Identity,
    proposal_id: &str,
    change: &Change,
    confidence_pct: u8,
    correlation: &str,
    now: warrant_core::Millis,
) -> Result<Tiered, GovError> {
    // A role change reaches every member: refuse one beyond the declared blast radius
    // before walking a role of (say) 100,000 members inside the writer.
    let reaches_members = match change {
        Change::DeleteRole { .. } => true,
        Change::ModifyRole { add, remove, .. } => !add.is_empty() || !remove.is_empty(),
        _ => false,
    };
    if let (true, Some(role)) = (reaches_members, change.target_role()) {
        let members = snap.role_member_count(role);
        if members > cap.max_blast_radius as usize {
            return Err(GovError::Forbidden(format!(
                "the change would alter the access of {members} identities; capability `{}` declared a maximum blast radius of {}",
                cap.id, cap.max_blast_radius
            )));
        }
    }
    let mut assessment = assess(snap, change)?;
    check_capability(cap, proposer, change, &assessment, confidence_pct)?;
    let kind_ = change
        .kind()
        .ok_or_else(|| GovError::Invalid("this change cannot be proposed".into()))?;
    let targets: Vec<String> = match change.target_identity() {
        Some(t) => vec![t.to_owned()],
        None => assessment.identities.clone(),
    };
    let thresholds = &snap.gov.thresholds;
    let view = snap
        .gov
        .aggregates
        .view(&cap.id, &targets, correlation, thresholds);
    assessment.aggregates = view.clone();
    let alerts = crossed(&view, assessment.identities_count, &cap.id, thresholds);
    let mut escalations = alerts.clone();
    if cap.autonomy(now) == Autonomy::ReviewOverdue {
        escalations.push(format!(
            "capability review overdue (was due at {} ms): autonomy suspended until the owner `{}` records a review",
            cap.next_review_due_ms().unwrap_or_default(),
            cap.owner
        ));
    }
    let long = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let input = warrant_policy::TierInput {
        proposal_id,
        capability: &cap.id,
        proposer: &proposer.id,
        kind: kind_.as_str(),
        environment: &assessment.environment,
        blast_identities: long(assessment.identities_count),
        blast_resources: long(assessment.resources_count),
        privileged: assessment.privileged,
        reversible: assessment.reversible,
        classification: assessment.classification.as_str(),
        classification_rank: assessment.classification.rank(),
        confidence_pct: i64::from(confidence_pct),
        targets_ai: assessment.targets_ai,
        aggregate_capability: long(view.capability),
        aggregate_target: long(view.target),
        aggregate_overall: long(view.overall),
        chain_length: long(view.chain_length),
    };
    let outcome = snap.gov.tier.evaluate(&input);
    let floor = floor_for(kind_, &assessment, &gov.floor, &proposer.id);
    let reasons: Vec<TierReason> = outcome
        .matches
        .iter()
        .map(|m| TierReason {
            policy: m.policy_id.clone(),
            tier: m.tier,
            reason: m.reason.clone(),
        })
        .collect();
    let tier = decide(
        reasons,
        outcome.errors,
        snap.gov.tier_version,
        floor,
        escalations,
    );
    let mut tier = tier;
    if tier.tier == 2 && cap.notify.is_none() && gov.notify_url.is_none() {
        // Tier 2 promises a notified reviewer; with nowhere to notify, fail closed.
        tier.escalations.push(
            "no notification channel (capability `notify` or `[governance] notify_url`): the reviewer of a Tier 2 change could not be notified".into(),
        );
        tier.tier = 3;
    }
    let approvals_required = if tier.tier == 3 {
        outcome
            .matches
            .iter()
            .filter_map(|m| m.approvals)
            .max()
            .unwrap_or(1)
    } else {
        0
    };
    Ok(Tiered {
        assessment,
        tier,
        approvals_required,
        alerts,
    })
}

/// Applies the proposal's change: in warrant's store at once, or through its connector.
/// A change that no longer fits the state marks the proposal failed (nothing applied).
async fn run_change(
    tx: &mut dyn WriteTx,
    ctx: &Ctx<'_>,
    p: &mut Proposal,
    by: &str,
    purpose: Purpose,
    drafts: &mut Vec<RecordDraft>,
    effects: &mut Vec<Effect>,
) -> Result<(), WriteError> {
    if p.system != "warrant" {
        let change = p.change.clone();
        if p.state != ProposalState::InReview {
            p.state = ProposalState::Executing;
        }
        return queue_connector(tx, ctx, p, purpose, &change, drafts).await;
    }
    match execute(tx, ctx.snap, &p.change.clone(), by, &authority(p), ctx.now).await {
        Ok(ex) => {
            record_execution(
                p,
                ctx,
                "applied",
                &format!("{} object(s) changed", ex.changed),
                by,
                drafts,
            );
            drafts.extend(ex.drafts);
            effects.extend(ex.effects);
            Ok(())
        }
        Err(WriteError::Conflict(m) | WriteError::NotFound(m)) => {
            p.state = ProposalState::Failed;
            p.deadline_ms = None;
            record_execution(p, ctx, "failed", &format!("not applied: {m}"), by, drafts);
            Ok(())
        }
        Err(e) => Err(e),
    }
}

fn record_execution(
    p: &mut Proposal,
    ctx: &Ctx<'_>,
    status: &str,
    detail: &str,
    by: &str,
    drafts: &mut Vec<RecordDraft>,
) {
    record_execution_after(p, ctx, status, detail, by, 1, drafts);
}

/// Records an execution result that took `attempts` attempts (connector calls).
fn record_execution_after(
    p: &mut Proposal,
    ctx: &Ctx<'_>,
    status: &str,
    detail: &str,
    by: &str,
    attempts: u32,
    drafts: &mut Vec<RecordDraft>,
) {
    let result = ExecutionResult {
        at_ms: ctx.now,
        system: p.system.clone(),
        status: status.into(),
        detail: detail.into(),
        by: by.into(),
        attempts,
    };
    drafts.push(rec(
        RecordKind::Execution,
        by,
        &p.id,
        json!({ "result": result, "proposal": summary(p) }),
    ));
    p.executions.push(result);
    p.updated_ms = ctx.now;
}

async fn queue_connector(
    tx: &mut dyn WriteTx,
    ctx: &Ctx<'_>,
    p: &mut Proposal,
    purpose: Purpose,
    change: &Change,
    drafts: &mut Vec<RecordDraft>,
) -> Result<(), WriteError> {
    let connector = ctx.gov.connectors.get(&p.system).ok_or_else(|| {
        WriteError::Invalid(format!("system `{}` has no connector configured", p.system))
    })?;
    let payload = delivery::connector_payload(p, purpose, change);
    let id = delivery::queue(
        tx,
        purpose,
        &p.id,
        &connector.url,
        Some(&connector.name),
        payload,
        ctx.now,
    )
    .await?;
    drafts.push(rec(
        RecordKind::Execution,
        "system",
        &p.id,
        json!({ "result": { "status": "dispatched", "system": p.system, "delivery": id, "purpose": purpose.as_str() }, "proposal": summary(p) }),
    ));
    p.deliveries.push(id);
    Ok(())
}

async fn notify(
    tx: &mut dyn WriteTx,
    ctx: &Ctx<'_>,
    p: &mut Proposal,
    cap: &Capability,
) -> Result<(), WriteError> {
    let Some(url) = cap.notify.as_ref().or(ctx.gov.notify_url.as_ref()) else {
        return Ok(());
    };
    let payload = delivery::slack_payload(p, cap);
    let id = delivery::queue(tx, Purpose::Notify, &p.id, url, None, payload, ctx.now).await?;
    p.deliveries.push(id);
    Ok(())
}

/// The proposal's connector delivery that applies it, if still waiting to be delivered.
async fn pending_apply(
    tx: &mut dyn WriteTx,
    p: &Proposal,
) -> Result<Option<delivery::Delivery>, WriteError> {
    for id in &p.deliveries {
        if let Some(row) = tx.get_object(kind::DELIVERY, id).await.map_err(store_err)? {
            if let Some(d) = state::body::<delivery::Delivery>(&row) {
                if d.purpose == Purpose::Apply && d.status == "pending" {
                    return Ok(Some(d));
                }
            }
        }
    }
    Ok(None)
}

async fn cancel_delivery(
    tx: &mut dyn WriteTx,
    mut d: delivery::Delivery,
    now: warrant_core::Millis,
) -> Result<(), WriteError> {
    d.status = "cancelled".into();
    d.done_ms = Some(now);
    let mut row = object_row(kind::DELIVERY, &d.id, &d.status, &d, now);
    row.created_ms = d.created_ms;
    tx.put_object(&row).await.map_err(store_err)
}

async fn delivery_summaries(
    tx: &mut dyn WriteTx,
    p: &Proposal,
) -> Result<Vec<serde_json::Value>, WriteError> {
    let mut out = Vec::new();
    for id in &p.deliveries {
        if let Some(row) = tx.get_object(kind::DELIVERY, id).await.map_err(store_err)? {
            if let Some(d) = state::body::<delivery::Delivery>(&row) {
                out.push(json!({
                    "delivery": d.id,
                    "purpose": d.purpose.as_str(),
                    "status": d.status,
                    "attempts": d.attempts,
                    "delivered_ms": d.done_ms.filter(|_| d.status == "delivered"),
                }));
            }
        }
    }
    Ok(out)
}

async fn finish(
    tx: &mut dyn WriteTx,
    p: Proposal,
    drafts: Vec<RecordDraft>,
    mut effects: Vec<Effect>,
) -> Result<Applied, WriteError> {
    tx.put_object(&proposal_row(&p)).await.map_err(store_err)?;
    effects.push(Effect::Proposal(Box::new(p.clone())));
    Ok(Applied {
        drafts,
        effects,
        outcome: Outcome::Proposal(Box::new(p)),
    })
}

async fn delivery_done(
    tx: &mut dyn WriteTx,
    ctx: &Ctx<'_>,
    id: &str,
    attempt: Attempt,
) -> Result<Applied, WriteError> {
    let Some(row) = tx.get_object(kind::DELIVERY, id).await.map_err(store_err)? else {
        return Err(WriteError::NotFound(format!("delivery `{id}` not found")));
    };
    let Some(mut d) = state::body::<delivery::Delivery>(&row) else {
        return quarantine(tx, row, ctx.now).await;
    };
    if d.status == "cancelled" && d.purpose == Purpose::Apply && attempt.ok {
        // Sent before the override cancelled it, and applied: revert it now.
        let mut p = load_proposal(tx, &d.proposal).await?;
        let mut drafts = vec![rec(
            RecordKind::GovernanceAlert,
            "system",
            &p.id,
            json!({ "alert": "applied_after_override", "delivery": d.id, "action": "the connector applied the change although it was overridden; its inverse is being sent" }),
        )];
        if let Some(inverse) = p.assessment.inverse.clone() {
            queue_connector(tx, ctx, &mut p, Purpose::Revert, &inverse, &mut drafts).await?;
        }
        return finish(tx, p, drafts, vec![]).await.map(|mut a| {
            a.outcome = Outcome::None;
            a
        });
    }
    if d.status != "pending" {
        return Ok(Applied {
            drafts: vec![],
            effects: vec![],
            outcome: Outcome::Unchanged,
        });
    }
    d.attempts += 1;
    d.history.push(delivery::AttemptRecord {
        at_ms: ctx.now,
        status: attempt.status,
        error: attempt.error.clone(),
    });
    if d.history.len() > 20 {
        d.history.remove(0);
    }
    d.last_error = attempt.error.clone();
    let give_up = !attempt.ok && d.attempts >= ctx.gov.max_attempts;
    let mut drafts = Vec::new();
    let mut effects = Vec::new();
    let mut due = None;
    if attempt.ok {
        d.status = "delivered".into();
        d.done_ms = Some(ctx.now);
    } else if give_up {
        d.status = "failed".into();
        d.done_ms = Some(ctx.now);
    } else {
        due = Some(ctx.now + ctx.gov.backoff_ms(d.attempts));
    }
    let done = attempt.ok || give_up;
    if done {
        drafts.push(rec(
            RecordKind::NotificationDelivery,
            "system",
            &d.proposal,
            json!({
                "delivery": d.id,
                "purpose": d.purpose.as_str(),
                "connector": d.connector,
                "status": d.status,
                "attempts": d.attempts,
                "last_error": d.last_error,
            }),
        ));
        if matches!(d.purpose, Purpose::Apply | Purpose::Revert) {
            let mut p = load_proposal(tx, &d.proposal).await?;
            let status = match (d.purpose, attempt.ok) {
                (Purpose::Apply, true) => "applied",
                (Purpose::Revert, true) => "reverted",
                _ => "failed",
            };
            let detail = if attempt.ok {
                format!(
                    "confirmed by connector `{}` after {} attempt(s)",
                    d.connector.clone().unwrap_or_default(),
                    d.attempts
                )
            } else {
                format!(
                    "connector `{}` gave up after {} attempt(s): {}",
                    d.connector.clone().unwrap_or_default(),
                    d.attempts,
                    d.last_error.clone().unwrap_or_default()
                )
            };
            // The final state first, so the execution record carries it.
            let mut alert = None;
            let mut revert_now = None;
            match (d.purpose, attempt.ok, p.state) {
                (Purpose::Apply, true, ProposalState::Executing) => {
                    p.state = ProposalState::Executed
                }
                (Purpose::Apply, true, ProposalState::Overridden) => {
                    // Overridden while the apply was being retried: revert it now.
                    revert_now = p.assessment.inverse.clone();
                    alert = Some(rec(
                        RecordKind::GovernanceAlert,
                        "system",
                        &p.id,
                        json!({ "alert": "applied_after_override", "delivery": d.id, "action": "the connector applied the change after it was overridden; its inverse is being sent" }),
                    ));
                }
                // Overridden and never applied: nothing to do, it stays overridden.
                (Purpose::Apply, false, ProposalState::Overridden) => {}
                (Purpose::Apply, false, _) => {
                    // The external system did not apply it; warrant applied nothing of it.
                    p.state = ProposalState::Failed;
                    p.deadline_ms = None;
                }
                (Purpose::Revert, false, _) => {
                    alert = Some(rec(
                        RecordKind::GovernanceAlert,
                        "system",
                        &p.id,
                        json!({ "alert": "revert_failed", "detail": detail, "action": "the override could not be applied in the external system; a human must revert it there" }),
                    ));
                }
                _ => {}
            }
            record_execution_after(
                &mut p,
                ctx,
                status,
                &detail,
                "system",
                d.attempts,
                &mut drafts,
            );
            if let Some(inverse) = revert_now {
                queue_connector(tx, ctx, &mut p, Purpose::Revert, &inverse, &mut drafts).await?;
            }
            drafts.extend(alert);
            let pr = proposal_row(&p);
            tx.put_object(&pr).await.map_err(store_err)?;
            effects.push(Effect::Proposal(Box::new(p)));
        }
    }
    let mut row = object_row(kind::DELIVERY, &d.id, &d.status, &d, ctx.now);
    row.due_ms = due;
    row.created_ms = d.created_ms;
    tx.put_object(&row).await.map_err(store_err)?;
    Ok(Applied {
        drafts,
        effects,
        outcome: Outcome::None,
    })
}

/// Reloads one governance object named by a record's subject (catching up with another
/// replica). Unknown subjects are not governance objects.
pub async fn reload_subject(
    tx: &mut dyn WriteTx,
    what: &str,
    key: &str,
) -> Result<Option<Effect>, WriteError> {
    let (k, id) = match what {
        "capability" => (kind::CAPABILITY, key.to_owned()),
        "proposal" => (kind::PROPOSAL, key.to_owned()),
        "role" => (kind::ROLE, key.to_owned()),
        "resource" => (kind::RESOURCE, key.to_owned()),
        "trust" => (kind::TRUST, key.to_owned()),
        "auth" => (kind::AUTH, key.to_owned()),
        "human" => (kind::HUMAN, key.to_owned()),
        "session" => (kind::SESSION, key.to_owned()),
        "tier-policy" => (
            kind::TIER_POLICY,
            state::tier_policy_id(key.parse().unwrap_or(0)),
        ),
        _ => return Ok(None),
    };
    let Some(r) = tx.get_object(k, &id).await.map_err(store_err)? else {
        return Ok(None);
    };
    let deleted = r.state == state::DELETED;
    Ok(match what {
        "capability" => state::body::<Capability>(&r).map(|c| Effect::Capability(Box::new(c))),
        "human" => {
            state::body::<warrant_core::access::Human>(&r).map(|h| Effect::Human(Box::new(h)))
        }
        "session" => {
            state::body::<warrant_core::access::Session>(&r).map(|x| Effect::Session(Box::new(x)))
        }
        "proposal" => state::body::<Proposal>(&r).map(|p| Effect::Proposal(Box::new(p))),
        "role" => Some(Effect::Role {
            name: key.to_owned(),
            role: if deleted {
                None
            } else {
                state::body::<Role>(&r)
            },
        }),
        "resource" => Some(Effect::Resource {
            id: key.to_owned(),
            resource: if deleted {
                None
            } else {
                state::body::<Resource>(&r)
            },
        }),
        "trust" => state::body::<state::TrustRow>(&r).map(|t| Effect::Trust {
            identity: t.identity,
            trusted: t.trusted,
        }),
        "auth" => state::body::<state::AuthRow>(&r).map(|a| Effect::Auth {
            identity: a.identity,
            require: a.require,
        }),
        _ => Some(Effect::TierPolicy(Box::new(state::tier_policy_or_none(&r)))),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::snapshot::Snapshot;
    use std::sync::Arc;
    use warrant_core::identity::{Identity, NewIdentity};
    use warrant_policy::PolicyBundle;

    const DAY: i64 = 86_400_000;
    const NOW: i64 = 1_000 * DAY;

    fn identity(id: &str, kind: &str, owner: &str, ents: &[&str], roles: &[&str]) -> Identity {
        NewIdentity {
            name: id.replace('_', "-"),
            kind: kind.into(),
            environment: "prod".into(),
            owner: owner.into(),
            entitlements: ents.iter().map(|e| (*e).to_owned()).collect(),
            roles: roles.iter().map(|e| (*e).to_owned()).collect(),
            ..Default::default()
        }
        .into_identity(id.into(), "warrant.local", 0)
        .unwrap()
    }

    fn snapshot() -> Snapshot {
        let mut s = Snapshot::new(Arc::new(PolicyBundle::empty()), 0);
        s.put_role(
            "ops",
            Some(Role {
                name: "ops".into(),
                description: String::new(),
                privileged: true,
                entitlements: vec!["iam:admin".into()],
            }),
        );
        s.upsert_identity(identity("idn_bot", "ai_tool", "alice", &[], &[]));
        s.upsert_identity(identity(
            "idn_etl",
            "service_account",
            "bob",
            &["s3:logs:read"],
            &["ops"],
        ));
        s
    }

    fn capability(accepted_days_ago: i64, every_days: u32) -> Capability {
        let mut c = NewCapability {
            id: "right-sizing".into(),
            identity: "idn_bot".into(),
            kinds: vec!["revoke_entitlement".into(), "modify_role".into()],
            max_blast_radius: 5,
            owner: "alice".into(),
            review_every_days: every_days,
            ..Default::default()
        }
        .into_capability("admin", 0, None)
        .unwrap();
        c.accepted = Some(Acceptance {
            by: "alice".into(),
            at_ms: NOW - accepted_days_ago * DAY,
            statement: "ok".into(),
        });
        c
    }

    fn tier_of(snap: &Snapshot, cap: &Capability, change: Change, confidence: u8) -> Tiered {
        let bot = snap.principals["idn_bot"].identity.clone();
        assess_and_tier(
            snap,
            &super::super::GovConfig::default(),
            cap,
            &bot,
            "prp_1",
            &change,
            confidence,
            "prp_1",
            NOW,
        )
        .unwrap()
    }

    fn revoke() -> Change {
        Change::RevokeEntitlement {
            identity: "idn_etl".into(),
            entitlement: "s3:logs:read".into(),
        }
    }

    #[test]
    fn a_small_revocation_is_tier_1_until_the_review_is_overdue() {
        let snap = snapshot();
        let t = tier_of(&snap, &capability(10, 90), revoke(), 95);
        assert_eq!(t.tier.tier, 1, "{:?}", t.tier);
        assert!(t.tier.escalations.is_empty());
        let t = tier_of(&snap, &capability(91, 90), revoke(), 95);
        assert_eq!(t.tier.tier, 3, "{:?}", t.tier);
        assert!(
            t.tier.escalations[0].contains("review overdue"),
            "{:?}",
            t.tier
        );
        // The policy that matched is still shown.
        assert_eq!(t.tier.policies[0].policy, "tier1-small-revocation");
    }

    #[test]
    fn tier_2_without_a_notification_channel_is_escalated() {
        let mut snap = snapshot();
        // One entitlement on confidential data: Tier 2 by the default policies.
        snap.gov.resources.insert(
            "s3:logs".into(),
            Arc::new(Resource {
                id: "s3:logs".into(),
                classification: Classification::Confidential,
                privileged: false,
                description: String::new(),
            }),
        );
        let mut cap = capability(1, 90);
        let t = tier_of(&snap, &cap, revoke(), 95);
        assert_eq!(t.tier.tier, 3, "{:?}", t.tier);
        assert!(
            t.tier
                .escalations
                .iter()
                .any(|e| e.contains("no notification channel")),
            "{:?}",
            t.tier
        );
        cap.notify = Some("https://hooks.example/x".into());
        let t = tier_of(&snap, &cap, revoke(), 95);
        assert_eq!(t.tier.tier, 2, "{:?}", t.tier);
    }

    #[test]
    fn a_privileged_role_change_needs_two_approvers() {
        let snap = snapshot();
        let t = tier_of(
            &snap,
            &capability(1, 90),
            Change::ModifyRole {
                role: "ops".into(),
                add: vec!["iam:audit".into()],
                remove: vec![],
                privileged: None,
            },
            99,
        );
        assert_eq!((t.tier.tier, t.approvals_required), (3, 2), "{:?}", t.tier);
        assert!(t.assessment.privileged);
        assert_eq!(t.assessment.identities, ["idn_etl"]);
    }

    #[test]
    fn crossing_an_aggregate_escalates_with_the_reason() {
        let mut snap = snapshot();
        let cap = capability(1, 90);
        // Five earlier changes to the same target within the window (threshold 5).
        for i in 0..5 {
            let mut t = tier_of(&snap, &cap, revoke(), 95);
            t.assessment.identities_count = 1;
            let p = Proposal {
                id: format!("prp_old_{i}"),
                capability: cap.id.clone(),
                proposer: "idn_bot".into(),
                change: revoke(),
                system: "warrant".into(),
                evidence: serde_json::json!({}),
                rationale: "x".into(),
                confidence_pct: 95,
                parent: None,
                correlation: format!("prp_old_{i}"),
                submitted_ms: NOW - 1_000,
                assessment: t.assessment,
                tier: t.tier,
                state: ProposalState::Executed,
                approvals_required: 0,
                approvals: vec![],
                notified: vec![],
                deadline_ms: None,
                decision: None,
                executions: vec![],
                deliveries: vec![],
                updated_ms: NOW - 1_000,
            };
            let th = snap.gov.thresholds.clone();
            snap.gov.aggregates.observe(&p, NOW, &th);
        }
        let t = tier_of(&snap, &cap, revoke(), 95);
        assert_eq!(t.tier.tier, 3, "{:?}", t.tier);
        assert_eq!(t.alerts.len(), 1, "{:?}", t.alerts);
        assert!(t.alerts[0].contains("change #6"), "{:?}", t.alerts);
        assert_eq!(t.assessment.aggregates.target, 5);
    }

    #[test]
    fn outside_the_declaration_is_refused() {
        let snap = snapshot();
        let bot = snap.principals["idn_bot"].identity.clone();
        let err = assess_and_tier(
            &snap,
            &super::super::GovConfig::default(),
            &capability(1, 90),
            &bot,
            "prp_1",
            &Change::SuspendIdentity {
                identity: "idn_etl".into(),
            },
            99,
            "prp_1",
            NOW,
        )
        .unwrap_err();
        assert!(
            matches!(err, GovError::Forbidden(ref m) if m.contains("may not propose suspend_identity")),
            "{err:?}"
        );
    }
}
