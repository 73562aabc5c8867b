//! Who may do what to a proposal, and when. Each function checks and returns the next
//! state of the proposal; the caller stores it with its audit record.
//!
//! INVARIANT: only named humans approve, reject, override or perform; never an AI
//! identity, never the requesting identity, never a beneficiary of the change.

use super::model::*;
use super::GovError;
use crate::Millis;

/// Who is acting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A named human (an API token bound to a person).
    Human(String),
    /// An API token not bound to a person (the bootstrap admin token).
    Unnamed(String),
    /// A registered identity (an agent or AI tool, authenticated by an access token).
    Identity { id: String, ai: bool },
}

impl Actor {
    /// The audit actor string.
    pub fn audit(&self) -> String {
        match self {
            Actor::Human(h) => format!("human:{h}"),
            Actor::Unnamed(t) => format!("admin:{t}"),
            Actor::Identity { id, .. } => format!("identity:{id}"),
        }
    }

    /// The named human, or why this actor cannot decide.
    pub fn human(&self, what: &str) -> Result<&str, GovError> {
        match self {
            Actor::Human(h) => Ok(h),
            Actor::Identity { ai: true, id } => Err(GovError::Forbidden(format!(
                "AI identity `{id}` may not {what}: only a named human can"
            ))),
            Actor::Identity { id, .. } => Err(GovError::Forbidden(format!(
                "identity `{id}` may not {what}: only a named human can"
            ))),
            Actor::Unnamed(_) => Err(GovError::Forbidden(format!(
                "to {what}, use an API token issued to a named human (this token names no person)"
            ))),
        }
    }
}

/// Rules for approvals (configuration).
#[derive(Debug, Clone)]
pub struct ApprovalRules {
    pub min_justification: usize,
}

impl Default for ApprovalRules {
    fn default() -> Self {
        ApprovalRules {
            min_justification: 20,
        }
    }
}

fn not_party(p: &Proposal, human: &str, what: &str) -> Result<(), GovError> {
    if human.eq_ignore_ascii_case(&p.proposer) {
        return Err(GovError::Forbidden(format!(
            "the requesting identity may not {what} its own proposal"
        )));
    }
    // Names compare without case: `Bob@Example.com` is bob.
    if p.assessment
        .beneficiaries
        .iter()
        .any(|b| b.eq_ignore_ascii_case(human))
    {
        return Err(GovError::Forbidden(format!(
            "`{human}` benefits from this change (or owns an identity that does) and may not {what} it"
        )));
    }
    Ok(())
}

fn justification(j: &str, rules: &ApprovalRules) -> Result<String, GovError> {
    let j = j.trim();
    if j.chars().count() < rules.min_justification {
        return Err(GovError::Invalid(format!(
            "a business justification of at least {} characters is required",
            rules.min_justification
        )));
    }
    check_text("justification", j, MAX_TEXT)?;
    Ok(j.to_owned())
}

/// A change-ticket reference: required, and valid by the configured check.
fn ticket_ref(ticket: &str, check: impl Fn(&str) -> Result<(), String>) -> Result<&str, GovError> {
    let ticket = ticket.trim();
    if ticket.is_empty() {
        return Err(GovError::Invalid(
            "a change-ticket reference is required".into(),
        ));
    }
    check(ticket).map_err(GovError::Invalid)?;
    Ok(ticket)
}

fn open_until(p: &Proposal, now: Millis, what: &str) -> Result<(), GovError> {
    if let Some(d) = p.deadline_ms {
        if now >= d {
            return Err(GovError::Conflict(format!(
                "proposal `{}` expired; it can no longer be {what}",
                p.id
            )));
        }
    }
    Ok(())
}

/// What an approval leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Approved {
    /// Enough approvals: execute now.
    Execute,
    /// The two-person rule wants another approver.
    NeedsMore { have: usize, required: usize },
}

/// A named human approves a Tier 3 proposal. `ticket_check` validates the change ticket
/// against the configured pattern.
pub fn approve(
    p: &mut Proposal,
    actor: &Actor,
    justification_text: &str,
    ticket: &str,
    ticket_check: impl Fn(&str) -> Result<(), String>,
    now: Millis,
    rules: &ApprovalRules,
) -> Result<Approved, GovError> {
    let human = actor.human("approve proposals")?;
    if p.state != ProposalState::PendingApproval {
        return Err(GovError::Conflict(format!(
            "proposal `{}` is {}; only proposals pending approval (Tier 3) can be approved",
            p.id,
            p.state.as_str()
        )));
    }
    open_until(p, now, "approved")?;
    not_party(p, human, "approve")?;
    if p.approvals.iter().any(|a| a.by.eq_ignore_ascii_case(human)) {
        return Err(GovError::Conflict(format!(
            "`{human}` approved this proposal already; the two-person rule needs another person"
        )));
    }
    let justification = justification(justification_text, rules)?;
    let ticket = ticket_ref(ticket, ticket_check)?;
    p.approvals.push(Approval {
        by: human.to_owned(),
        at_ms: now,
        justification,
        ticket: ticket.to_owned(),
    });
    p.updated_ms = now;
    let required = usize::from(p.approvals_required.max(1));
    Ok(if p.approvals.len() >= required {
        Approved::Execute
    } else {
        Approved::NeedsMore {
            have: p.approvals.len(),
            required,
        }
    })
}

/// A named human rejects a Tier 3 request or dismisses a Tier 4 recommendation.
pub fn reject(
    p: &mut Proposal,
    actor: &Actor,
    justification_text: &str,
    now: Millis,
    rules: &ApprovalRules,
) -> Result<(), GovError> {
    let human = actor.human("reject proposals")?;
    if !matches!(
        p.state,
        ProposalState::PendingApproval | ProposalState::Recommended
    ) {
        return Err(GovError::Conflict(format!(
            "proposal `{}` is {}; only pending requests and recommendations can be rejected",
            p.id,
            p.state.as_str()
        )));
    }
    open_until(p, now, "rejected")?;
    let justification = justification(justification_text, rules)?;
    p.state = ProposalState::Rejected;
    p.decision = Some(HumanAction {
        by: human.to_owned(),
        at_ms: now,
        action: "reject".into(),
        justification,
        ticket: None,
    });
    p.updated_ms = now;
    Ok(())
}

/// The named reviewer (or the capability owner) overrides a Tier 2 change within its
/// window. Returns the inverse the executor must apply.
pub fn override_change(
    p: &mut Proposal,
    cap: &Capability,
    actor: &Actor,
    justification_text: &str,
    now: Millis,
    rules: &ApprovalRules,
) -> Result<Change, GovError> {
    let human = actor.human("override changes")?;
    if p.state != ProposalState::InReview {
        return Err(GovError::Conflict(format!(
            "proposal `{}` is {}; only Tier 2 changes in their override window can be overridden",
            p.id,
            p.state.as_str()
        )));
    }
    if p.deadline_ms.is_some_and(|d| now >= d) {
        return Err(GovError::Conflict(format!(
            "the override window of proposal `{}` has ended; the change was ratified (propose its inverse instead)",
            p.id
        )));
    }
    reviewer_or_owner(p, cap, human, "override")?;
    let inverse = p.assessment.inverse.clone().ok_or_else(|| {
        GovError::Conflict("this change has no inverse and cannot be reverted".into())
    })?;
    let justification = justification(justification_text, rules)?;
    p.state = ProposalState::Overridden;
    p.decision = Some(HumanAction {
        by: human.to_owned(),
        at_ms: now,
        action: "override".into(),
        justification,
        ticket: None,
    });
    p.updated_ms = now;
    Ok(inverse)
}

fn reviewer_or_owner(
    p: &Proposal,
    cap: &Capability,
    human: &str,
    what: &str,
) -> Result<(), GovError> {
    let is = |who: &str| who.eq_ignore_ascii_case(human);
    if !is(cap.reviewer()) && !is(&cap.owner) && !p.notified.iter().any(|n| is(n)) {
        return Err(GovError::Forbidden(format!(
            "only the named reviewer (`{}`) or the capability owner (`{}`) may {what} this change",
            cap.reviewer(),
            cap.owner
        )));
    }
    Ok(())
}

/// The named reviewer (or the owner) ratifies a Tier 2 change before its window ends:
/// they looked and it stands (the ratification record says they acted).
pub fn ratify(
    p: &mut Proposal,
    cap: &Capability,
    actor: &Actor,
    justification_text: &str,
    now: Millis,
    rules: &ApprovalRules,
) -> Result<(), GovError> {
    let human = actor.human("ratify changes")?;
    if p.state != ProposalState::InReview {
        return Err(GovError::Conflict(format!(
            "proposal `{}` is {}; only Tier 2 changes in their override window can be ratified",
            p.id,
            p.state.as_str()
        )));
    }
    if p.deadline_ms.is_some_and(|d| now >= d) {
        return Err(GovError::Conflict(format!(
            "the override window of proposal `{}` has ended; it is ratified by the lapse of the window",
            p.id
        )));
    }
    reviewer_or_owner(p, cap, human, "ratify")?;
    let justification = justification(justification_text, rules)?;
    p.state = ProposalState::Ratified;
    p.decision = Some(HumanAction {
        by: human.to_owned(),
        at_ms: now,
        action: "ratify".into(),
        justification,
        ticket: None,
    });
    p.updated_ms = now;
    Ok(())
}

/// A human performs a Tier 4 recommendation (and owns the change).
pub fn perform(
    p: &mut Proposal,
    actor: &Actor,
    justification_text: &str,
    ticket: &str,
    ticket_check: impl Fn(&str) -> Result<(), String>,
    now: Millis,
    rules: &ApprovalRules,
) -> Result<String, GovError> {
    let human = actor.human("perform recommendations")?.to_owned();
    if p.state != ProposalState::Recommended {
        return Err(GovError::Conflict(format!(
            "proposal `{}` is {}; only Tier 4 recommendations are performed by a human",
            p.id,
            p.state.as_str()
        )));
    }
    open_until(p, now, "performed")?;
    not_party(p, &human, "perform")?;
    let justification = justification(justification_text, rules)?;
    let ticket = ticket_ref(ticket, ticket_check)?;
    p.decision = Some(HumanAction {
        by: human.clone(),
        at_ms: now,
        action: "perform".into(),
        justification,
        ticket: Some(ticket.to_owned()),
    });
    p.updated_ms = now;
    Ok(human)
}

/// What a timer does to a proposal whose deadline passed; `None` if nothing (already
/// decided, or not yet due).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerOutcome {
    Ratify,
    Expire,
}

pub fn timer(p: &Proposal, now: Millis) -> Option<TimerOutcome> {
    let due = p.deadline_ms.is_some_and(|d| now >= d);
    match p.state {
        ProposalState::InReview if due => Some(TimerOutcome::Ratify),
        ProposalState::PendingApproval | ProposalState::Recommended if due => {
            Some(TimerOutcome::Expire)
        }
        _ => None,
    }
}
