//! Writer ops of access certification campaigns: create, answer (a revocation becomes a
//! proposal run by the tiered workflow, recorded as the owner's act), and the deadline
//! (unanswered items escalate or suspend, per the campaign's rule). Rules:
//! `warrant_core::governance::certification`.

use super::executor::{execute, gov_err};
use super::ops::{submit, CertOrigin, Submission};
use super::state::{kind, object_row};
use crate::ops::{draft, store_err, Applied, Ctx, Outcome};
use crate::writer::WriteError;
use serde_json::json;
use warrant_core::audit::RecordKind;
use warrant_core::governance::certification::{self, Campaign, CertDecision, Unanswered};
use warrant_core::governance::workflow::Actor;
use warrant_core::governance::Change;
use warrant_core::identity::IdentityState;
use warrant_store::WriteTx;

#[derive(Debug, Clone)]
pub enum CertOp {
    Create {
        actor: String,
        campaign: Box<Campaign>,
    },
    Answer {
        actor: Actor,
        campaign: String,
        item: u32,
        decision: CertDecision,
        note: String,
    },
    /// The campaign's deadline passed (the governance job).
    Deadline { id: String },
}

pub const OPEN: &str = "open";
pub const CLOSED: &str = "closed";

fn row(c: &Campaign, now: i64) -> warrant_store::ObjectRow {
    let mut r = object_row(
        kind::CAMPAIGN,
        &c.id,
        if c.open() { OPEN } else { CLOSED },
        c,
        now,
    );
    r.created_ms = c.created_ms;
    r.due_ms = c.open().then_some(c.deadline_ms);
    r
}

async fn load(tx: &mut dyn WriteTx, id: &str) -> Result<Campaign, WriteError> {
    let r = tx
        .get_object(kind::CAMPAIGN, id)
        .await
        .map_err(store_err)?
        .ok_or_else(|| WriteError::NotFound(format!("campaign `{id}` not found")))?;
    super::state::body(&r)
        .ok_or_else(|| WriteError::Conflict(format!("stored campaign `{id}` does not decode")))
}

fn counts(c: &Campaign) -> serde_json::Value {
    let by = |d: CertDecision| {
        c.items
            .iter()
            .filter(|i| i.answer.as_ref().is_some_and(|a| a.decision == d))
            .count()
    };
    json!({
        "items": c.items.len(),
        "confirmed": by(CertDecision::Confirm),
        "revoked": by(CertDecision::Revoke),
        "unanswered": c.pending().count(),
    })
}

/// Why an item no longer stands: its identity is gone, retired, or owned by someone else.
fn void_reason(ctx: &Ctx<'_>, it: &certification::CertItem) -> Option<String> {
    match ctx.snap.principals.get(&it.identity) {
        None => Some("the identity no longer exists".into()),
        Some(e) if e.identity.state == IdentityState::Retired => {
            Some("the identity was retired".into())
        }
        Some(e) if !e.identity.owner.eq_ignore_ascii_case(&it.owner) => Some(format!(
            "the identity's owner changed since the campaign started (now `{}`)",
            e.identity.owner
        )),
        Some(_) => None,
    }
}

pub async fn apply(tx: &mut dyn WriteTx, op: CertOp, ctx: &Ctx<'_>) -> Result<Applied, WriteError> {
    match op {
        CertOp::Create { actor, campaign } => {
            let r = row(&campaign, ctx.now);
            tx.insert_object(&r).await.map_err(store_err)?;
            Ok(Applied {
                drafts: vec![draft(
                    RecordKind::Certification,
                    &actor,
                    format!("campaign:{}", campaign.id),
                    json!({ "action": "created", "name": campaign.name, "deadline_ms": campaign.deadline_ms,
                            "unanswered": campaign.unanswered.as_str(), "counts": counts(&campaign),
                            "owners": campaign.items.iter().map(|i| i.owner.as_str()).collect::<std::collections::BTreeSet<_>>() }),
                )],
                effects: vec![],
                outcome: Outcome::None,
            })
        }
        CertOp::Answer {
            actor,
            campaign,
            item,
            decision,
            note,
        } => {
            let human = actor.human("certify access").map_err(gov_err)?.to_owned();
            let mut c = load(tx, &campaign).await?;
            // The item stands only while its identity still has that owner: after a
            // transfer, the former owner no longer answers for it.
            if let Some(it) = c.items.iter().find(|i| i.id == item) {
                if let Some(why) = void_reason(ctx, it) {
                    return Err(WriteError::Conflict(format!("item {item} is void: {why}")));
                }
            }
            certification::answer(&mut c, item, &human, decision, &note, ctx.now)
                .map_err(gov_err)?;
            let it = c
                .items
                .iter()
                .find(|i| i.id == item)
                .cloned()
                .ok_or_else(|| WriteError::NotFound(format!("no item {item}")))?;
            let mut drafts = vec![draft(
                RecordKind::Certification,
                &actor.audit(),
                format!("campaign:{}", c.id),
                json!({ "action": "answered", "item": item, "identity": it.identity, "entitlement": it.entitlement,
                        "decision": decision.as_str(), "note": note.trim() }),
            )];
            let mut effects = vec![];
            if decision == CertDecision::Revoke {
                // Still held? (It may have gone since the campaign started.)
                let held = ctx
                    .snap
                    .principals
                    .get(&it.identity)
                    .is_some_and(|e| e.identity.entitlements.contains(&it.entitlement));
                if held {
                    let id = format!("prp_{}", uuid::Uuid::now_v7().simple());
                    let applied = submit(
                        tx,
                        ctx,
                        Submission {
                            id: id.clone(),
                            capability: format!("{}{}", certification::PREFIX, c.id),
                            proposer: it.owner.clone(),
                            change: Change::RevokeEntitlement {
                                identity: it.identity.clone(),
                                entitlement: it.entitlement.clone(),
                            },
                            system: "warrant".into(),
                            evidence: json!({ "campaign": c.id, "campaign_name": c.name, "item": item,
                                              "owner": it.owner, "environment": it.environment }),
                            rationale: format!("access certification `{}`: the owner revoked it: {}", c.name, note.trim()),
                            confidence_pct: 100,
                            parent: None,
                            correlation: None,
                            certification: Some(CertOrigin {
                                campaign: c.clone(),
                                item,
                                owner: human.clone(),
                                environment: it.environment.clone(),
                            }),
                        },
                    )
                    .await?;
                    drafts.extend(applied.drafts);
                    effects.extend(applied.effects);
                    if let Some(a) = c
                        .items
                        .iter_mut()
                        .find(|i| i.id == item)
                        .and_then(|i| i.answer.as_mut())
                    {
                        a.proposal = Some(id);
                    }
                }
            }
            tx.put_object(&row(&c, ctx.now)).await.map_err(store_err)?;
            Ok(Applied {
                drafts,
                effects,
                outcome: Outcome::None,
            })
        }
        CertOp::Deadline { id } => {
            let mut c = load(tx, &id).await?;
            if !c.open() || ctx.now < c.deadline_ms {
                return Ok(Applied {
                    drafts: vec![],
                    effects: vec![],
                    outcome: Outcome::Unchanged,
                });
            }
            let mut drafts = vec![];
            let mut effects = vec![];
            // Items whose identity changed hands or is gone, or whose entitlement is no
            // longer held, are void: the rule does not apply to them.
            let mut void = std::collections::HashMap::new();
            for i in c.pending() {
                let held = ctx
                    .snap
                    .principals
                    .get(&i.identity)
                    .is_some_and(|e| e.identity.entitlements.contains(&i.entitlement));
                let why = void_reason(ctx, i)
                    .or_else(|| (!held).then(|| "the entitlement is no longer held".to_owned()));
                if let Some(why) = why {
                    void.insert(i.id, format!("void: {why}"));
                }
            }
            let pending: Vec<(u32, String, String)> = c
                .pending()
                .filter(|i| !void.contains_key(&i.id))
                .map(|i| (i.id, i.identity.clone(), i.entitlement.clone()))
                .collect();
            let authority = json!({ "certification": c.id, "name": c.name, "rule": c.unanswered.as_str(),
                                    "opened_by": c.created_by,
                                    "reason": "entitlements left unanswered at the certification deadline" });
            let mut outcome_of = std::collections::HashMap::new();
            if c.unanswered == Unanswered::Suspend {
                let mut identities: Vec<&String> = pending.iter().map(|(_, i, _)| i).collect();
                identities.sort();
                identities.dedup();
                for identity in identities {
                    let active = ctx
                        .snap
                        .principals
                        .get(identity)
                        .is_some_and(|e| e.identity.state == IdentityState::Active);
                    let outcome = if active {
                        let ex = execute(
                            tx,
                            ctx.snap,
                            &Change::SuspendIdentity {
                                identity: identity.clone(),
                            },
                            "system",
                            &authority,
                            ctx.now,
                        )
                        .await?;
                        drafts.extend(ex.drafts);
                        effects.extend(ex.effects);
                        "suspended"
                    } else {
                        "not suspended: the identity was not active"
                    };
                    outcome_of.insert(identity.clone(), outcome);
                }
            }
            for it in c.items.iter_mut().filter(|i| i.answer.is_none()) {
                if let Some(v) = void.get(&it.id) {
                    it.outcome = Some(v.clone());
                    continue;
                }
                it.outcome = Some(match c.unanswered {
                    Unanswered::Escalate => "escalated".to_owned(),
                    Unanswered::Suspend => outcome_of
                        .get(&it.identity)
                        .copied()
                        .unwrap_or("suspended")
                        .to_owned(),
                });
            }
            c.closed_ms = Some(ctx.now);
            tx.put_object(&row(&c, ctx.now)).await.map_err(store_err)?;
            if !pending.is_empty() {
                drafts.push(draft(
                    RecordKind::GovernanceAlert,
                    "system",
                    format!("campaign:{}", c.id),
                    json!({ "alert": "certification_unanswered", "rule": c.unanswered.as_str(),
                            "action": match c.unanswered { Unanswered::Escalate => "escalated to the admins: decide these entitlements", Unanswered::Suspend => "identities with unanswered entitlements were suspended" },
                            "items": c.items.iter().filter(|i| i.answer.is_none()).map(|i| json!({
                                "item": i.id, "identity": i.identity, "owner": i.owner, "entitlement": i.entitlement, "outcome": i.outcome })).collect::<Vec<_>>() }),
                ));
            }
            drafts.push(draft(
                RecordKind::Certification,
                "system",
                format!("campaign:{}", c.id),
                json!({ "action": "closed", "counts": counts(&c) }),
            ));
            Ok(Applied {
                drafts,
                effects,
                outcome: Outcome::None,
            })
        }
    }
}
