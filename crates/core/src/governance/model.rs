//! The governance domain model. These types are also the stored form (JSON bodies of
//! governance objects), so field names are stable.

use super::{invalid, GovError};
use crate::Millis;
use serde::{Deserialize, Serialize};

/// What a proposal changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    GrantEntitlement,
    RevokeEntitlement,
    CreateRole,
    DeleteRole,
    ModifyRole,
    ModifyTrust,
    ChangeAuthRequirement,
    SuspendIdentity,
    RetireIdentity,
}

impl ChangeKind {
    pub const ALL: [ChangeKind; 9] = [
        ChangeKind::GrantEntitlement,
        ChangeKind::RevokeEntitlement,
        ChangeKind::CreateRole,
        ChangeKind::DeleteRole,
        ChangeKind::ModifyRole,
        ChangeKind::ModifyTrust,
        ChangeKind::ChangeAuthRequirement,
        ChangeKind::SuspendIdentity,
        ChangeKind::RetireIdentity,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::GrantEntitlement => "grant_entitlement",
            ChangeKind::RevokeEntitlement => "revoke_entitlement",
            ChangeKind::CreateRole => "create_role",
            ChangeKind::DeleteRole => "delete_role",
            ChangeKind::ModifyRole => "modify_role",
            ChangeKind::ModifyTrust => "modify_trust",
            ChangeKind::ChangeAuthRequirement => "change_auth_requirement",
            ChangeKind::SuspendIdentity => "suspend_identity",
            ChangeKind::RetireIdentity => "retire_identity",
        }
    }

    pub fn parse(s: &str) -> Option<ChangeKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// How an identity must authenticate to get credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthRequirement {
    /// A registered key (private_key_jwt) or an mTLS certificate.
    Any,
    /// Only an mTLS client certificate bound to the SPIFFE ID.
    Mtls,
    /// Only a registered key (private_key_jwt).
    PrivateKeyJwt,
}

impl AuthRequirement {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthRequirement::Any => "any",
            AuthRequirement::Mtls => "mtls",
            AuthRequirement::PrivateKeyJwt => "private_key_jwt",
        }
    }
}

/// A role of the entitlement model: a named set of entitlements identities hold through
/// membership (`Identity::roles`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Role {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub privileged: bool,
    /// Sorted, without duplicates.
    #[serde(default)]
    pub entitlements: Vec<String>,
}

/// Data classification of a resource, in increasing sensitivity.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Classification {
    #[default]
    Unclassified,
    Public,
    Internal,
    Confidential,
    Restricted,
}

impl Classification {
    pub fn as_str(self) -> &'static str {
        match self {
            Classification::Unclassified => "unclassified",
            Classification::Public => "public",
            Classification::Internal => "internal",
            Classification::Confidential => "confidential",
            Classification::Restricted => "restricted",
        }
    }

    pub fn rank(self) -> i64 {
        self as i64
    }
}

/// A resource entitlements point at (`<resource>:<action>`): its classification and
/// whether access to it is privileged. A resource covers the resources below it
/// (`s3` covers `s3:bucket-logs`); the longest match wins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resource {
    pub id: String,
    #[serde(default)]
    pub classification: Classification,
    #[serde(default)]
    pub privileged: bool,
    #[serde(default)]
    pub description: String,
}

/// The resource an entitlement grants access to: everything before its last `:`
/// (`s3:bucket-logs:read` → `s3:bucket-logs`), or the whole entitlement without one.
pub fn resource_of(entitlement: &str) -> &str {
    entitlement
        .rsplit_once(':')
        .map(|(r, _)| r)
        .filter(|r| !r.is_empty())
        .unwrap_or(entitlement)
}

pub const MAX_NAME: usize = 200;
pub const MAX_TEXT: usize = 8000;
pub const MAX_LIST: usize = 512;

/// Entitlements and role names: printable, no whitespace, bounded.
pub fn check_token(field: &str, v: &str) -> Result<(), GovError> {
    if v.is_empty() || v.len() > MAX_NAME {
        return Err(invalid(format!(
            "{field} must be 1 to {MAX_NAME} characters"
        )));
    }
    if v.chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '"')
    {
        return Err(invalid(format!(
            "{field} `{}` must not contain spaces, quotes or control characters",
            v.escape_debug()
        )));
    }
    Ok(())
}

pub fn check_text(field: &str, v: &str, max: usize) -> Result<(), GovError> {
    if v.len() > max {
        return Err(invalid(format!("{field} must be at most {max} bytes")));
    }
    if v.contains('\0') {
        return Err(invalid(format!("{field} must not contain NUL")));
    }
    Ok(())
}

/// Sorts, dedups and checks a list of entitlements or names.
pub fn normalized_list(field: &str, mut v: Vec<String>) -> Result<Vec<String>, GovError> {
    if v.len() > MAX_LIST {
        return Err(invalid(format!(
            "{field} may hold at most {MAX_LIST} items"
        )));
    }
    for x in &v {
        check_token(field, x)?;
    }
    v.sort();
    v.dedup();
    Ok(v)
}

impl Role {
    pub fn validated(mut self) -> Result<Role, GovError> {
        check_token("role name", &self.name)?;
        check_text("description", &self.description, MAX_TEXT)?;
        self.entitlements = normalized_list("entitlements", self.entitlements)?;
        Ok(self)
    }
}

impl Resource {
    pub fn validated(self) -> Result<Resource, GovError> {
        check_token("resource id", &self.id)?;
        check_text("description", &self.description, MAX_TEXT)?;
        Ok(self)
    }
}

/// A change, as proposed. Targets are identity ids and role names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Change {
    GrantEntitlement {
        identity: String,
        entitlement: String,
    },
    RevokeEntitlement {
        identity: String,
        entitlement: String,
    },
    CreateRole {
        role: Role,
    },
    DeleteRole {
        role: String,
    },
    ModifyRole {
        role: String,
        #[serde(default)]
        add: Vec<String>,
        #[serde(default)]
        remove: Vec<String>,
        /// Marks the role privileged or not.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        privileged: Option<bool>,
    },
    /// Who the identity trusts: federated issuers or SPIFFE IDs it accepts credentials or
    /// delegation from.
    ModifyTrust {
        identity: String,
        #[serde(default)]
        add: Vec<String>,
        #[serde(default)]
        remove: Vec<String>,
    },
    ChangeAuthRequirement {
        identity: String,
        require: AuthRequirement,
    },
    SuspendIdentity {
        identity: String,
    },
    RetireIdentity {
        identity: String,
    },
    /// Only as an inverse: resumes a suspended identity.
    ResumeIdentity {
        identity: String,
    },
    /// Only as an inverse: recreates a deleted role and gives it back to its members.
    RestoreRole {
        role: Role,
        members: Vec<String>,
    },
}

impl Change {
    /// The proposable kind; `None` for inverse-only changes.
    pub fn kind(&self) -> Option<ChangeKind> {
        Some(match self {
            Change::GrantEntitlement { .. } => ChangeKind::GrantEntitlement,
            Change::RevokeEntitlement { .. } => ChangeKind::RevokeEntitlement,
            Change::CreateRole { .. } => ChangeKind::CreateRole,
            Change::DeleteRole { .. } => ChangeKind::DeleteRole,
            Change::ModifyRole { .. } => ChangeKind::ModifyRole,
            Change::ModifyTrust { .. } => ChangeKind::ModifyTrust,
            Change::ChangeAuthRequirement { .. } => ChangeKind::ChangeAuthRequirement,
            Change::SuspendIdentity { .. } => ChangeKind::SuspendIdentity,
            Change::RetireIdentity { .. } => ChangeKind::RetireIdentity,
            Change::ResumeIdentity { .. } | Change::RestoreRole { .. } => return None,
        })
    }

    /// A short label for records and listings.
    pub fn label(&self) -> &'static str {
        self.kind().map(ChangeKind::as_str).unwrap_or(match self {
            Change::ResumeIdentity { .. } => "resume_identity",
            _ => "restore_role",
        })
    }

    /// The identity this change targets directly, if any.
    pub fn target_identity(&self) -> Option<&str> {
        match self {
            Change::GrantEntitlement { identity, .. }
            | Change::RevokeEntitlement { identity, .. }
            | Change::ModifyTrust { identity, .. }
            | Change::ChangeAuthRequirement { identity, .. }
            | Change::SuspendIdentity { identity }
            | Change::RetireIdentity { identity }
            | Change::ResumeIdentity { identity } => Some(identity),
            _ => None,
        }
    }

    /// The role this change targets, if any.
    pub fn target_role(&self) -> Option<&str> {
        match self {
            Change::CreateRole { role } | Change::RestoreRole { role, .. } => Some(&role.name),
            Change::DeleteRole { role } | Change::ModifyRole { role, .. } => Some(role),
            _ => None,
        }
    }

    /// Checks the shape of the change (not whether it fits the current state) and puts
    /// lists in canonical order.
    pub fn validated(self) -> Result<Change, GovError> {
        Ok(match self {
            Change::GrantEntitlement {
                identity,
                entitlement,
            } => {
                check_token("identity", &identity)?;
                check_token("entitlement", &entitlement)?;
                Change::GrantEntitlement {
                    identity,
                    entitlement,
                }
            }
            Change::RevokeEntitlement {
                identity,
                entitlement,
            } => {
                check_token("identity", &identity)?;
                check_token("entitlement", &entitlement)?;
                Change::RevokeEntitlement {
                    identity,
                    entitlement,
                }
            }
            Change::CreateRole { role } => Change::CreateRole {
                role: role.validated()?,
            },
            Change::DeleteRole { role } => {
                check_token("role", &role)?;
                Change::DeleteRole { role }
            }
            Change::ModifyRole {
                role,
                add,
                remove,
                privileged,
            } => {
                check_token("role", &role)?;
                let add = normalized_list("add", add)?;
                let remove = normalized_list("remove", remove)?;
                if add.is_empty() && remove.is_empty() && privileged.is_none() {
                    return Err(invalid(
                        "modify_role must add or remove entitlements or set `privileged`",
                    ));
                }
                if let Some(both) = add.iter().find(|a| remove.contains(a)) {
                    return Err(invalid(format!(
                        "`{both}` is both added and removed"
                    )));
                }
                Change::ModifyRole {
                    role,
                    add,
                    remove,
                    privileged,
                }
            }
            Change::ModifyTrust {
                identity,
                add,
                remove,
            } => {
                check_token("identity", &identity)?;
                let add = normalized_list("add", add)?;
                let remove = normalized_list("remove", remove)?;
                if add.is_empty() && remove.is_empty() {
                    return Err(invalid("modify_trust must add or remove a trusted party"));
                }
                if let Some(both) = add.iter().find(|a| remove.contains(a)) {
                    return Err(invalid(format!(
                        "`{both}` is both added and removed"
                    )));
                }
                Change::ModifyTrust {
                    identity,
                    add,
                    remove,
                }
            }
            c @ (Change::ChangeAuthRequirement { .. }
            | Change::SuspendIdentity { .. }
            | Change::RetireIdentity { .. }) => {
                check_token("identity", c.target_identity().unwrap_or_default())?;
                c
            }
            Change::ResumeIdentity { .. } | Change::RestoreRole { .. } => {
                return Err(invalid(
                    "resume_identity and restore_role are inverses warrant computes; they cannot be proposed",
                ))
            }
        })
    }
}

/// Who accepted accountability for a capability.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acceptance {
    pub by: String,
    pub at_ms: Millis,
    pub statement: String,
}

/// The conditions under which a capability may propose.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conditions {
    /// Environments whose identities it may target (empty: its own identity's only).
    #[serde(default)]
    pub environments: Vec<String>,
    /// Proposals with a lower model confidence are refused.
    #[serde(default)]
    pub min_confidence_pct: u8,
    /// Free-text conditions, for the record.
    #[serde(default)]
    pub notes: String,
}

/// A declared AI capability: what an AI tool may propose, under whose accountability.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capability {
    /// A stable name chosen at declaration (`role-right-sizing`).
    pub id: String,
    pub description: String,
    /// The AI identity that acts for it (submits its proposals).
    pub identity: String,
    pub kinds: Vec<ChangeKind>,
    pub conditions: Conditions,
    /// Largest blast radius (identities whose effective access changes) of one proposal.
    pub max_blast_radius: u32,
    /// Where its changes may be executed: `warrant` (the entitlement store) and/or
    /// configured connectors.
    #[serde(default = "default_systems")]
    pub systems: Vec<String>,
    /// Webhook URL for notifications about its proposals (Slack-compatible).
    pub notify: Option<String>,
    /// The named human who reviews its Tier 2 changes (default: the owner).
    pub reviewer: Option<String>,
    /// The accountable human.
    pub owner: String,
    pub accepted: Option<Acceptance>,
    pub review_every_days: u32,
    pub last_review_ms: Option<Millis>,
    pub last_review_by: Option<String>,
    pub created_ms: Millis,
    pub created_by: String,
    pub updated_ms: Millis,
}

fn default_systems() -> Vec<String> {
    vec!["warrant".to_owned()]
}

/// How much a capability may do on its own right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Autonomy {
    /// The owner has not accepted accountability: it may not propose.
    NotAccepted,
    /// The owner's review is overdue: everything it proposes goes to Tier 3.
    ReviewOverdue,
    /// Its proposals are tiered by policy.
    Tiered,
}

impl Autonomy {
    pub fn as_str(self) -> &'static str {
        match self {
            Autonomy::NotAccepted => "not_accepted",
            Autonomy::ReviewOverdue => "review_overdue",
            Autonomy::Tiered => "tiered",
        }
    }
}

const DAY_MS: Millis = 86_400_000;

impl Capability {
    /// When the owner's next review is due (from the last review, or the acceptance).
    pub fn next_review_due_ms(&self) -> Option<Millis> {
        let from = self
            .last_review_ms
            .or(self.accepted.as_ref().map(|a| a.at_ms))?;
        Some(from.saturating_add(Millis::from(self.review_every_days).saturating_mul(DAY_MS)))
    }

    pub fn autonomy(&self, now: Millis) -> Autonomy {
        if self.accepted.is_none() {
            return Autonomy::NotAccepted;
        }
        match self.next_review_due_ms() {
            Some(due) if now > due => Autonomy::ReviewOverdue,
            _ => Autonomy::Tiered,
        }
    }

    /// The human who reviews Tier 2 changes.
    pub fn reviewer(&self) -> &str {
        self.reviewer.as_deref().unwrap_or(&self.owner)
    }
}

/// A capability as declared (before validation).
#[derive(Debug, Clone, Default)]
pub struct NewCapability {
    pub id: String,
    pub description: String,
    pub identity: String,
    pub kinds: Vec<String>,
    pub conditions: Conditions,
    pub max_blast_radius: u32,
    /// Empty: `warrant` only.
    pub systems: Vec<String>,
    pub notify: Option<String>,
    pub reviewer: Option<String>,
    pub owner: String,
    pub review_every_days: u32,
}

pub const MAX_REVIEW_DAYS: u32 = 366;

impl NewCapability {
    /// Validates a declaration. `previous` is the capability it replaces, if any: a change
    /// of owner or identity, or a wider scope (more kinds, a larger blast radius, more
    /// environments, a lower minimum confidence), needs a new acceptance.
    pub fn into_capability(
        self,
        by: &str,
        now: Millis,
        previous: Option<&Capability>,
    ) -> Result<Capability, GovError> {
        crate::identity::validate_owner(&self.owner).map_err(|e| invalid(e.to_string()))?;
        if let Some(r) = &self.reviewer {
            crate::identity::validate_owner(r).map_err(|e| invalid(format!("reviewer: {e}")))?;
        }
        if self.id.is_empty()
            || self.id.len() > 100
            || !self
                .id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            return Err(invalid(
                "capability id must be 1 to 100 lowercase letters, digits, `-` or `_`",
            ));
        }
        check_token("identity", &self.identity)?;
        check_text("description", &self.description, MAX_TEXT)?;
        check_text("conditions.notes", &self.conditions.notes, MAX_TEXT)?;
        if self.conditions.min_confidence_pct > 100 {
            return Err(invalid("conditions.min_confidence_pct must be 0 to 100"));
        }
        let environments =
            normalized_list("conditions.environments", self.conditions.environments)?;
        if self.kinds.is_empty() {
            return Err(invalid(
                "a capability must declare at least one change kind",
            ));
        }
        let mut kinds = Vec::new();
        for k in &self.kinds {
            kinds.push(ChangeKind::parse(k).ok_or_else(|| {
                invalid(format!(
                    "unknown change kind `{k}`; expected one of: {}",
                    ChangeKind::ALL.map(ChangeKind::as_str).join(", ")
                ))
            })?);
        }
        kinds.sort();
        kinds.dedup();
        if self.max_blast_radius == 0 {
            return Err(invalid("max_blast_radius must be at least 1"));
        }
        if self.review_every_days == 0 || self.review_every_days > MAX_REVIEW_DAYS {
            return Err(invalid(format!(
                "review_every_days must be 1 to {MAX_REVIEW_DAYS}"
            )));
        }
        if let Some(url) = &self.notify {
            check_webhook_url(url)?;
        }
        let systems = if self.systems.is_empty() {
            default_systems()
        } else {
            normalized_list("systems", self.systems)?
        };
        let owner = self.owner.trim().to_owned();
        // The owner accepted a scope: anything wider needs a new acceptance.
        let keep_acceptance = previous.is_some_and(|p| {
            let environments_within = if p.conditions.environments.is_empty() {
                environments.is_empty()
            } else {
                !environments.is_empty()
                    && environments
                        .iter()
                        .all(|e| p.conditions.environments.contains(e))
            };
            p.owner == owner
                && p.reviewer == self.reviewer.as_ref().map(|r| r.trim().to_owned())
                && p.identity == self.identity
                && kinds.iter().all(|k| p.kinds.contains(k))
                && self.max_blast_radius <= p.max_blast_radius
                && systems.iter().all(|x| p.systems.contains(x))
                && environments_within
                && self.conditions.min_confidence_pct >= p.conditions.min_confidence_pct
        });
        Ok(Capability {
            id: self.id,
            description: self.description,
            identity: self.identity,
            kinds,
            conditions: Conditions {
                environments,
                min_confidence_pct: self.conditions.min_confidence_pct,
                notes: self.conditions.notes,
            },
            max_blast_radius: self.max_blast_radius,
            systems,
            notify: self.notify,
            reviewer: self.reviewer.map(|r| r.trim().to_owned()),
            owner,
            accepted: previous
                .filter(|_| keep_acceptance)
                .and_then(|p| p.accepted.clone()),
            review_every_days: self.review_every_days,
            last_review_ms: previous
                .filter(|_| keep_acceptance)
                .and_then(|p| p.last_review_ms),
            last_review_by: previous
                .filter(|_| keep_acceptance)
                .and_then(|p| p.last_review_by.clone()),
            created_ms: previous.map_or(now, |p| p.created_ms),
            created_by: previous.map_or_else(|| by.to_owned(), |p| p.created_by.clone()),
            updated_ms: now,
        })
    }
}

/// A webhook URL as it may be shown and recorded: scheme and host, and a digest to tell
/// URLs apart. The path is left out: it often is the secret (Slack incoming webhooks).
pub fn redacted_webhook(url: &str) -> String {
    use sha2::{Digest, Sha256};
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let full = Sha256::digest(url.as_bytes());
    let digest = hex::encode(full.get(..6).unwrap_or_default());
    format!("{scheme}://{host}/… (sha256:{digest})")
}

impl Capability {
    /// The capability as shown and recorded: its webhook URL redacted.
    pub fn redacted(&self) -> Capability {
        let mut c = self.clone();
        c.notify = c.notify.as_deref().map(redacted_webhook);
        c
    }
}

/// Webhook targets: http(s) URLs without credentials in them.
pub fn check_webhook_url(url: &str) -> Result<(), GovError> {
    check_text("notify", url, 2000)?;
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| invalid("webhook URL must start with https:// or http://"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') || url.chars().any(char::is_whitespace) {
        return Err(invalid(
            "webhook URL must name a host and must not carry credentials or spaces",
        ));
    }
    Ok(())
}

/// Where a proposal is in its workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProposalState {
    /// Tier 3: waiting for approval; nothing has changed.
    PendingApproval,
    /// Tier 4: a recommendation a human may perform.
    Recommended,
    /// Approved (or Tier 1/2) and handed to an external connector; not yet confirmed.
    Executing,
    /// Tier 2: applied; the override window is open.
    InReview,
    /// Applied and final (Tier 1, approved Tier 3, performed Tier 4).
    Executed,
    /// Tier 2: the window ended without an override.
    Ratified,
    /// Tier 2: the reviewer overrode it; the inverse was applied.
    Overridden,
    Rejected,
    /// No decision in time.
    Expired,
    /// Execution failed; nothing of it is applied.
    Failed,
}

impl ProposalState {
    pub const ALL: [ProposalState; 10] = [
        ProposalState::PendingApproval,
        ProposalState::Recommended,
        ProposalState::Executing,
        ProposalState::InReview,
        ProposalState::Executed,
        ProposalState::Ratified,
        ProposalState::Overridden,
        ProposalState::Rejected,
        ProposalState::Expired,
        ProposalState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProposalState::PendingApproval => "pending_approval",
            ProposalState::Recommended => "recommended",
            ProposalState::Executing => "executing",
            ProposalState::InReview => "in_review",
            ProposalState::Executed => "executed",
            ProposalState::Ratified => "ratified",
            ProposalState::Overridden => "overridden",
            ProposalState::Rejected => "rejected",
            ProposalState::Expired => "expired",
            ProposalState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Still waiting for something (a human, a window, a connector).
    pub fn is_open(self) -> bool {
        matches!(
            self,
            ProposalState::PendingApproval
                | ProposalState::Recommended
                | ProposalState::Executing
                | ProposalState::InReview
        )
    }

    /// Counts towards aggregates: applied, or about to be.
    pub fn counts(self) -> bool {
        !matches!(
            self,
            ProposalState::Rejected
                | ProposalState::Expired
                | ProposalState::Failed
                | ProposalState::Overridden
        )
    }
}

/// The risk assessment warrant computed (never the proposer's own claim).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Assessment {
    /// Identities whose effective access would change (first [`SHOWN`] of them).
    pub identities: Vec<String>,
    pub identities_count: u64,
    /// Resources whose access would change (first [`SHOWN`]).
    pub resources: Vec<String>,
    pub resources_count: u64,
    pub privileged: bool,
    /// Why it counts as privileged.
    pub privileged_because: Vec<String>,
    pub reversible: bool,
    /// The change that undoes it, when one exists.
    pub inverse: Option<Change>,
    pub classification: Classification,
    /// Identities that would gain access, and their owners (they may not approve).
    pub beneficiaries: Vec<String>,
    pub targets_ai: bool,
    /// The environment of the identities reached (`*multiple*` for several, empty for
    /// none).
    pub environment: String,
    /// Every environment of the identities reached.
    #[serde(default)]
    pub environments: Vec<String>,
    /// The change makes a role privileged or not privileged any more.
    #[serde(default)]
    pub privilege_change: bool,
    pub aggregates: AggregateView,
}

/// How many items of a list an assessment keeps (the counts are exact).
pub const SHOWN: usize = 200;

/// The aggregates in force when a proposal was tiered.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AggregateView {
    /// Blast radius this capability caused within the window, before this proposal.
    pub capability: u64,
    /// Changes to the same target identity within the window, before this one.
    pub target: u64,
    pub overall: u64,
    pub chain_length: u64,
    pub chain_blast: u64,
    pub window_ms: Millis,
}

/// One tier policy that matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierReason {
    pub policy: String,
    pub tier: u8,
    pub reason: Option<String>,
}

/// The tier and everything that set it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierDecision {
    pub tier: u8,
    /// The tier policies that matched (highest first).
    pub policies: Vec<TierReason>,
    /// Tier policy version evaluated.
    pub policy_version: u64,
    /// No policy matched: the default (Tier 3) applied.
    pub defaulted: bool,
    /// Hard-floor rules that applied (each sets at least Tier 3).
    pub floor: Vec<String>,
    /// Escalations (overdue review, aggregates crossed, policy errors): at least Tier 3.
    pub escalations: Vec<String>,
}

/// A human's approval of a Tier 3 proposal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub by: String,
    pub at_ms: Millis,
    pub justification: String,
    pub ticket: String,
}

/// A human's final word other than approval (rejection, override, performing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HumanAction {
    pub by: String,
    pub at_ms: Millis,
    pub action: String,
    pub justification: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
}

/// What the executor did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionResult {
    pub at_ms: Millis,
    /// `warrant` (the entitlement store) or a connector name.
    pub system: String,
    /// `applied`, `reverted`, `failed`.
    pub status: String,
    pub detail: String,
    /// Who caused it: `system` (Tier 1/2, approved Tier 3) or `human:<name>` (Tier 4).
    pub by: String,
    #[serde(default)]
    pub attempts: u32,
}

/// An IAM change proposed by an AI capability.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub id: String,
    pub capability: String,
    /// The identity that submitted it.
    pub proposer: String,
    pub change: Change,
    /// Where it is executed: `warrant` or a connector name.
    pub system: String,
    pub evidence: serde_json::Value,
    pub rationale: String,
    pub confidence_pct: u8,
    pub parent: Option<String>,
    /// The chain it belongs to (the parent's, or its own id).
    pub correlation: String,
    pub submitted_ms: Millis,
    pub assessment: Assessment,
    pub tier: TierDecision,
    pub state: ProposalState,
    /// Approvals needed (Tier 3: 1, or 2 under the two-person rule).
    pub approvals_required: u8,
    pub approvals: Vec<Approval>,
    /// The reviewer (Tier 2) or the people asked to approve (Tier 3).
    pub notified: Vec<String>,
    /// Tier 2: end of the override window; Tier 3/4: expiry.
    pub deadline_ms: Option<Millis>,
    pub decision: Option<HumanAction>,
    pub executions: Vec<ExecutionResult>,
    /// Webhook deliveries (notifications, connector calls) queued for it.
    #[serde(default)]
    pub deliveries: Vec<String>,
    pub updated_ms: Millis,
}

impl Proposal {
    /// The kind as proposed (proposals never hold inverse-only changes).
    pub fn kind(&self) -> ChangeKind {
        self.change.kind().unwrap_or(ChangeKind::ModifyRole)
    }

    /// The identities this proposal targets for the per-target aggregate.
    pub fn targets(&self) -> Vec<String> {
        match self.change.target_identity() {
            Some(t) => vec![t.to_owned()],
            None => self.assessment.identities.clone(),
        }
    }
}
