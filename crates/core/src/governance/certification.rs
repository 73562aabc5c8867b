//! Access certification campaigns: each owner confirms or revokes each entitlement of
//! their identities by a deadline. A revocation is a change like any other and goes
//! through the tiered workflow (the edge submits it); items nobody answered by the
//! deadline follow the campaign's rule — escalate to the admins, or suspend the identity —
//! and the outcome is recorded on the item.

use super::{Acceptance, Capability, ChangeKind, Conditions, GovError};
use crate::identity::{Identity, IdentityState};
use crate::Millis;
use serde::{Deserialize, Serialize};

/// The capability id prefix of proposals that come from a certification answer.
pub const PREFIX: &str = "certification:";

/// What happens to an item nobody answered by the deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unanswered {
    /// Raise an alert for the admins; the access stays.
    Escalate,
    /// Suspend the identity (its tokens and decisions stop) until a human resumes it.
    Suspend,
}

impl Unanswered {
    pub fn parse(s: &str) -> Result<Unanswered, GovError> {
        match s {
            "escalate" => Ok(Unanswered::Escalate),
            "suspend" => Ok(Unanswered::Suspend),
            other => Err(GovError::Invalid(format!(
                "`unanswered` must be `escalate` or `suspend`, got `{other}`"
            ))),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Unanswered::Escalate => "escalate",
            Unanswered::Suspend => "suspend",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertDecision {
    Confirm,
    Revoke,
}

impl CertDecision {
    pub fn parse(s: &str) -> Result<CertDecision, GovError> {
        match s {
            "confirm" => Ok(CertDecision::Confirm),
            "revoke" => Ok(CertDecision::Revoke),
            other => Err(GovError::Invalid(format!(
                "`decision` must be `confirm` or `revoke`, got `{other}`"
            ))),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            CertDecision::Confirm => "confirm",
            CertDecision::Revoke => "revoke",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertAnswer {
    pub decision: CertDecision,
    pub by: String,
    pub at_ms: Millis,
    pub note: String,
    /// The proposal a revocation became.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposal: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertItem {
    pub id: u32,
    pub identity: String,
    pub identity_name: String,
    pub environment: String,
    pub owner: String,
    pub entitlement: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<CertAnswer>,
    /// What the deadline did to an unanswered item (`escalated`, `suspended`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Campaign {
    pub id: String,
    pub name: String,
    pub created_by: String,
    pub created_ms: Millis,
    pub deadline_ms: Millis,
    pub unanswered: Unanswered,
    pub closed_ms: Option<Millis>,
    pub items: Vec<CertItem>,
}

impl Campaign {
    pub fn open(&self) -> bool {
        self.closed_ms.is_none()
    }

    /// Items nobody answered.
    pub fn pending(&self) -> impl Iterator<Item = &CertItem> {
        self.items.iter().filter(|i| i.answer.is_none())
    }
}

/// One item per direct entitlement of every identity that is not retired (optionally of
/// one owner / one environment), in a stable order.
pub fn items_for<'a>(
    identities: impl Iterator<Item = &'a Identity>,
    owner: Option<&str>,
    environment: Option<&str>,
) -> Vec<CertItem> {
    let mut ids: Vec<&Identity> = identities
        .filter(|i| i.state != IdentityState::Retired)
        .filter(|i| owner.is_none_or(|o| i.owner.eq_ignore_ascii_case(o)))
        .filter(|i| environment.is_none_or(|e| i.environment == e))
        .collect();
    ids.sort_by(|a, b| a.owner.cmp(&b.owner).then(a.id.cmp(&b.id)));
    let mut out = Vec::new();
    for i in ids {
        for e in &i.entitlements {
            out.push(CertItem {
                id: u32::try_from(out.len()).unwrap_or(u32::MAX),
                identity: i.id.clone(),
                identity_name: i.name.clone(),
                environment: i.environment.clone(),
                owner: i.owner.clone(),
                entitlement: e.clone(),
                answer: None,
                outcome: None,
            });
        }
    }
    out
}

/// Records `human`'s answer on an item: only its owner, only once, only before the
/// deadline of an open campaign.
pub fn answer(
    c: &mut Campaign,
    item: u32,
    human: &str,
    decision: CertDecision,
    note: &str,
    now: Millis,
) -> Result<(), GovError> {
    if !c.open() || now >= c.deadline_ms {
        return Err(GovError::Conflict(format!(
            "campaign `{}` is closed (deadline passed); unanswered items followed its `{}` rule",
            c.id,
            c.unanswered.as_str()
        )));
    }
    if note.chars().count() > 2000 {
        return Err(GovError::Invalid(
            "`note` is at most 2000 characters".into(),
        ));
    }
    let it = c
        .items
        .iter_mut()
        .find(|i| i.id == item)
        .ok_or_else(|| GovError::NotFound(format!("campaign `{}` has no item {item}", c.id)))?;
    if !it.owner.eq_ignore_ascii_case(human) {
        return Err(GovError::Forbidden(format!(
            "item {item} belongs to `{}`'s identity; only its owner certifies it",
            it.owner
        )));
    }
    if let Some(a) = &it.answer {
        return Err(GovError::Conflict(format!(
            "item {item} was answered already ({} by {})",
            a.decision.as_str(),
            a.by
        )));
    }
    if decision == CertDecision::Revoke && note.trim().is_empty() {
        return Err(GovError::Invalid(
            "a revocation needs a `note` saying why".into(),
        ));
    }
    it.answer = Some(CertAnswer {
        decision,
        by: human.to_owned(),
        at_ms: now,
        note: note.trim().to_owned(),
        proposal: None,
    });
    Ok(())
}

/// The capability a certification revocation is tiered and reviewed under: the owner's
/// own accountable act (accepted by answering), revocations only, one identity, in the
/// identity's environment, reviewed by the owner.
pub fn capability(campaign: &Campaign, owner: &str, environment: &str) -> Capability {
    Capability {
        id: format!("{PREFIX}{}", campaign.id),
        description: format!("access certification `{}`", campaign.name),
        identity: String::new(),
        kinds: vec![ChangeKind::RevokeEntitlement],
        conditions: Conditions {
            environments: vec![environment.to_owned()],
            min_confidence_pct: 0,
            notes: String::new(),
        },
        max_blast_radius: 1,
        systems: vec!["warrant".to_owned()],
        notify: None,
        reviewer: Some(owner.to_owned()),
        owner: owner.to_owned(),
        accepted: Some(Acceptance {
            by: owner.to_owned(),
            at_ms: campaign.created_ms,
            statement: "certification answer by the identity's owner".into(),
        }),
        review_every_days: 3650,
        last_review_ms: Some(campaign.created_ms),
        last_review_by: Some(owner.to_owned()),
        created_ms: campaign.created_ms,
        created_by: campaign.created_by.clone(),
        updated_ms: campaign.created_ms,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn campaign(items: Vec<CertItem>) -> Campaign {
        Campaign {
            id: "c1".into(),
            name: "q4".into(),
            created_by: "human:alice".into(),
            created_ms: 0,
            deadline_ms: 100,
            unanswered: Unanswered::Suspend,
            closed_ms: None,
            items,
        }
    }

    fn item(id: u32, owner: &str) -> CertItem {
        CertItem {
            id,
            identity: format!("idn_{id}"),
            identity_name: "bot".into(),
            environment: "prod".into(),
            owner: owner.into(),
            entitlement: "s3:read".into(),
            answer: None,
            outcome: None,
        }
    }

    #[test]
    fn only_the_owner_answers_once_before_the_deadline() {
        let mut c = campaign(vec![item(0, "dave"), item(1, "erin")]);
        assert!(matches!(
            answer(&mut c, 1, "dave", CertDecision::Confirm, "", 1),
            Err(GovError::Forbidden(_))
        ));
        assert!(matches!(
            answer(&mut c, 0, "dave", CertDecision::Revoke, " ", 1),
            Err(GovError::Invalid(_))
        ));
        answer(&mut c, 0, "DAVE", CertDecision::Confirm, "", 1).unwrap();
        assert!(matches!(
            answer(&mut c, 0, "dave", CertDecision::Revoke, "x", 2),
            Err(GovError::Conflict(_))
        ));
        assert!(matches!(
            answer(&mut c, 1, "erin", CertDecision::Confirm, "", 100),
            Err(GovError::Conflict(_))
        ));
        assert!(matches!(
            answer(&mut c, 9, "erin", CertDecision::Confirm, "", 1),
            Err(GovError::NotFound(_))
        ));
        assert_eq!(c.pending().count(), 1);
    }

    #[test]
    fn unanswered_rule_parses() {
        assert_eq!(Unanswered::parse("suspend").unwrap(), Unanswered::Suspend);
        assert!(Unanswered::parse("ignore").is_err());
        assert!(CertDecision::parse("maybe").is_err());
    }
}
