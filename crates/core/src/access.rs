//! Control-plane access: the humans who operate warrant, the roles they hold, how a role
//! is granted (never by one person alone), sign-in sessions, and which role may do what.
//!
//! Four control-plane roles, held by named humans only (never by an identity, AI or not):
//! - `admin` configures warrant (identities, policies, capabilities, the entitlement
//!   model, tier policies, keys, humans) and engages kill switches;
//! - `approver` decides: approves or rejects Tier 3 proposals, performs Tier 4
//!   recommendations, overrides or ratifies Tier 2 changes;
//! - `auditor` reads everything, the audit log included, and changes nothing;
//! - `owner` sees and acts on the identities and capabilities they own: accepts and
//!   reviews their capabilities, engages their identities' kill switches, answers access
//!   certifications, overrides or ratifies Tier 2 changes of their capabilities.
//!
//! Granting a role is a two-person act: an admin (or the bootstrap token) requests it, a
//! *different* named admin who is not the grantee approves it. The only exception is the
//! very first admin, granted with the bootstrap token while no named human holds `admin`.
//!
//! [`check`] is the one table of which role may do what ([`Perm`]); object-level checks
//! (an owner's own objects) are [`Principal::owns`] plus the handler's lookup.

use crate::Millis;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// A control-plane role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CpRole {
    Admin,
    Approver,
    Auditor,
    Owner,
}

impl CpRole {
    pub const ALL: [CpRole; 4] = [
        CpRole::Admin,
        CpRole::Approver,
        CpRole::Auditor,
        CpRole::Owner,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CpRole::Admin => "admin",
            CpRole::Approver => "approver",
            CpRole::Auditor => "auditor",
            CpRole::Owner => "owner",
        }
    }

    pub fn parse(s: &str) -> Result<CpRole, AccessError> {
        CpRole::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                AccessError::Invalid(format!(
                    "`{s}` is not a control-plane role; expected one of: admin, approver, auditor, owner"
                ))
            })
    }
}

/// Why an access rule refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
}

/// How a human's sign-in is linked to an OpenID Connect provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OidcLink {
    pub issuer: String,
    pub subject: String,
}

/// A human who operates warrant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Human {
    /// The unique name (user name or e-mail), compared without case; the name every
    /// record, approval and ownership uses.
    pub name: String,
    pub display_name: String,
    #[serde(default)]
    pub roles: BTreeSet<CpRole>,
    /// argon2id PHC string of a local password; `None`: no local sign-in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<OidcLink>,
    #[serde(default)]
    pub disabled: bool,
    /// The local password was set by an admin (a one-time setup password): the human must
    /// replace it before signing in with it or getting a token.
    #[serde(default)]
    pub password_must_change: bool,
    /// Who set the password this account's local password descends from, when that was
    /// an admin (the audit actor): replacing a one-time password keeps it, since whoever
    /// set it could have replaced it. That person may not approve a role for this human.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_set_by: Option<String>,
    pub created_ms: Millis,
    pub updated_ms: Millis,
}

impl Human {
    /// The key humans are stored and looked up under (names are ASCII: see
    /// [`validate_name`], so this agrees with every `eq_ignore_ascii_case` comparison).
    pub fn key(name: &str) -> String {
        name.trim().to_ascii_lowercase()
    }

    pub fn holds(&self, role: CpRole) -> bool {
        !self.disabled && self.roles.contains(&role)
    }
}

/// Checks a human's name: the same rules as an identity's owner (it is what owners name),
/// ASCII only, so that names compare the same way everywhere (no look-alike letters such
/// as the Kelvin sign folding into `k`), at most 254 bytes (an e-mail address).
pub fn validate_name(name: &str) -> Result<String, AccessError> {
    let n = crate::identity::validate_owner(name)
        .map_err(|e| AccessError::Invalid(format!("`name`: {e}")))?;
    if !n.is_ascii() || n.len() > 254 {
        return Err(AccessError::Invalid(
            "`name`: a human's name is ASCII (a user name or e-mail address), at most 254 bytes"
                .into(),
        ));
    }
    Ok(n)
}

/// States of a role grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantState {
    Pending,
    Approved,
    Rejected,
    Expired,
}

impl GrantState {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantState::Pending => "pending",
            GrantState::Approved => "approved",
            GrantState::Rejected => "rejected",
            GrantState::Expired => "expired",
        }
    }
}

/// A request to give a human a control-plane role, and its decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleGrant {
    pub id: String,
    pub human: String,
    pub role: CpRole,
    /// The audit actor who asked (`human:alice`, `admin:<token>`).
    pub requested_by: String,
    /// The named human who asked (`None`: the bootstrap token).
    pub requester: Option<String>,
    pub justification: String,
    pub state: GrantState,
    pub requested_ms: Millis,
    pub expires_ms: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_ms: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Granted with the bootstrap token while no named human held `admin`.
    #[serde(default)]
    pub bootstrap: bool,
}

/// Whether `approver` may decide `grant` (approve or reject).
pub fn may_decide_grant(
    grant: &RoleGrant,
    approver: &str,
    approver_is_admin: bool,
    now: Millis,
) -> Result<(), AccessError> {
    if grant.state != GrantState::Pending {
        return Err(AccessError::Conflict(format!(
            "role grant `{}` is {} already",
            grant.id,
            grant.state.as_str()
        )));
    }
    if now >= grant.expires_ms {
        return Err(AccessError::Conflict(format!(
            "role grant `{}` expired; request it again",
            grant.id
        )));
    }
    if !approver_is_admin {
        return Err(AccessError::Forbidden(
            "only a named human holding the `admin` role may decide a role grant".into(),
        ));
    }
    if approver.eq_ignore_ascii_case(&grant.human) {
        return Err(AccessError::Forbidden(format!(
            "`{approver}` may not decide a role grant to themselves"
        )));
    }
    if grant
        .requester
        .as_deref()
        .is_some_and(|r| r.eq_ignore_ascii_case(approver))
    {
        return Err(AccessError::Forbidden(format!(
            "`{approver}` requested this grant; another admin must approve it (two-person rule)"
        )));
    }
    Ok(())
}

/// How a session was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignInMethod {
    Password,
    Oidc,
}

impl SignInMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            SignInMethod::Password => "password",
            SignInMethod::Oidc => "oidc",
        }
    }
}

/// A signed-in browser session. Only the SHA-256 of its cookie secret is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Public id (`ses_…`), safe to show and record.
    pub id: String,
    /// Hex SHA-256 of the cookie secret.
    pub hash: String,
    pub human: String,
    /// The anti-CSRF token every state-changing form and request must carry.
    pub csrf: String,
    pub method: SignInMethod,
    pub created_ms: Millis,
    pub expires_ms: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_ms: Option<Millis>,
}

impl Session {
    pub fn live(&self, now: Millis) -> bool {
        self.ended_ms.is_none() && now < self.expires_ms
    }
}

/// Who is asking, as far as control-plane permissions go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    /// The bootstrap admin token (names no person).
    Bootstrap,
    /// A named human, with the roles they hold now (for a token: the token's role, if the
    /// human still holds it).
    Human(String),
    /// A registered identity (agent, AI tool, service) with an access token.
    Identity { id: String, ai: bool },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub who: Who,
    pub roles: BTreeSet<CpRole>,
}

/// What an endpoint needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Perm {
    /// Change warrant's configuration: identities, policies, capabilities, the entitlement
    /// model, tier policies, keys, checkpoints, humans and their tokens.
    Configure,
    /// Ask for decisions, introspect or revoke access tokens (policy enforcement points).
    Enforce,
    /// Read the configuration (identities, policies, capabilities, proposals, roles...).
    /// Owners read their own identities, capabilities and proposals only.
    Read,
    /// Read the audit log, proofs, checkpoints and evidence.
    ReadAudit,
    /// Approve or reject a Tier 3 proposal, perform a Tier 4 recommendation.
    Decide,
    /// Override or ratify a Tier 2 change (the workflow also requires the capability's
    /// reviewer or owner).
    Review,
    /// Accept or review an owned capability, answer certifications (own objects only).
    OwnerAct,
    /// Engage a kill switch (owners: on their own identities only).
    KillSwitch,
    /// Decide a role grant.
    DecideGrant,
}

impl Perm {
    pub fn describe(self) -> &'static str {
        match self {
            Perm::Configure => "change warrant's configuration",
            Perm::Enforce => "ask for decisions or manage access tokens",
            Perm::Read => "read warrant's configuration",
            Perm::ReadAudit => "read the audit log",
            Perm::Decide => "approve, reject or perform proposals",
            Perm::Review => "override or ratify Tier 2 changes",
            Perm::OwnerAct => "act as an owner",
            Perm::KillSwitch => "engage a kill switch",
            Perm::DecideGrant => "decide a role grant",
        }
    }

    /// The roles that may, before object-level checks.
    pub fn roles(self) -> &'static [CpRole] {
        use CpRole::*;
        match self {
            Perm::Configure | Perm::Enforce => &[Admin],
            Perm::Read => &[Admin, Approver, Auditor, Owner],
            Perm::ReadAudit => &[Admin, Auditor],
            Perm::Decide => &[Approver],
            Perm::Review => &[Approver, Owner],
            Perm::OwnerAct => &[Owner],
            Perm::KillSwitch => &[Admin, Owner],
            Perm::DecideGrant => &[Admin],
        }
    }

    /// Whether the bootstrap token may (it is the installation's root: everything an
    /// admin does, never a named human's decision).
    fn bootstrap(self) -> bool {
        matches!(
            self,
            Perm::Configure | Perm::Enforce | Perm::Read | Perm::ReadAudit | Perm::KillSwitch
        )
    }
}

impl Principal {
    pub fn human(&self) -> Option<&str> {
        match &self.who {
            Who::Human(h) => Some(h),
            _ => None,
        }
    }

    pub fn holds(&self, role: CpRole) -> bool {
        self.roles.contains(&role)
    }

    /// Whether this principal's only claim to `perm` is the `owner` role (the caller must
    /// then restrict to the owner's own objects).
    pub fn owner_only(&self, perm: Perm) -> bool {
        matches!(self.who, Who::Human(_))
            && self.holds(CpRole::Owner)
            && !perm
                .roles()
                .iter()
                .any(|r| *r != CpRole::Owner && self.holds(*r))
    }

    /// Whether `owner` (an identity's or capability's owner) names this human.
    pub fn owns(&self, owner: &str) -> bool {
        self.human().is_some_and(|h| h.eq_ignore_ascii_case(owner))
    }

    /// The audit actor string.
    pub fn audit(&self, token_or_session: &str) -> String {
        match &self.who {
            Who::Bootstrap => format!("admin:{token_or_session}"),
            Who::Human(h) => format!("human:{h}"),
            Who::Identity { id, .. } => format!("identity:{id}"),
        }
    }
}

/// The one table: may `p` do what `perm` guards? The error says why not, for the caller
/// and the audit record.
pub fn check(p: &Principal, perm: Perm) -> Result<(), AccessError> {
    match &p.who {
        Who::Identity { id, ai } => Err(AccessError::Forbidden(format!(
            "{} `{id}` may not {}: control-plane roles are held by named humans only{}",
            if *ai { "AI identity" } else { "identity" },
            perm.describe(),
            if *ai {
                "; AI tools submit proposals (POST /v1/proposals)"
            } else {
                ""
            }
        ))),
        Who::Bootstrap if perm.bootstrap() => Ok(()),
        Who::Bootstrap => Err(AccessError::Forbidden(format!(
            "the bootstrap token names no person and may not {}; use a named human's token or sign in",
            perm.describe()
        ))),
        Who::Human(h) => {
            if perm.roles().iter().any(|r| p.holds(*r)) {
                Ok(())
            } else {
                let held: Vec<&str> = p.roles.iter().map(|r| r.as_str()).collect();
                Err(AccessError::Forbidden(format!(
                    "`{h}` may not {}: it needs the {} role{}; {} holds {}",
                    perm.describe(),
                    perm.roles()
                        .iter()
                        .map(|r| format!("`{}`", r.as_str()))
                        .collect::<Vec<_>>()
                        .join(" or "),
                    if perm.roles().len() > 1 { "s" } else { "" },
                    h,
                    if held.is_empty() {
                        "none".to_owned()
                    } else {
                        held.join(", ")
                    }
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn human(name: &str, roles: &[CpRole]) -> Principal {
        Principal {
            who: Who::Human(name.into()),
            roles: roles.iter().copied().collect(),
        }
    }

    #[test]
    fn identities_never_pass() {
        let p = Principal {
            who: Who::Identity {
                id: "a".into(),
                ai: true,
            },
            roles: CpRole::ALL.into_iter().collect(),
        };
        for perm in [Perm::Configure, Perm::Read, Perm::Decide, Perm::OwnerAct] {
            assert!(check(&p, perm).is_err());
        }
    }

    #[test]
    fn roles_map_to_perms() {
        let auditor = human("carol", &[CpRole::Auditor]);
        assert!(check(&auditor, Perm::ReadAudit).is_ok());
        assert!(check(&auditor, Perm::Decide).is_err());
        assert!(check(&auditor, Perm::Configure).is_err());
        let approver = human("bob", &[CpRole::Approver]);
        assert!(check(&approver, Perm::Decide).is_ok());
        assert!(check(&approver, Perm::ReadAudit).is_err());
        let admin = human("alice", &[CpRole::Admin]);
        assert!(check(&admin, Perm::Decide).is_err(), "separation of duties");
        let owner = human("dave", &[CpRole::Owner]);
        assert!(owner.owner_only(Perm::Read));
        assert!(!human("x", &[CpRole::Owner, CpRole::Auditor]).owner_only(Perm::Read));
        let boot = Principal {
            who: Who::Bootstrap,
            roles: [CpRole::Admin].into_iter().collect(),
        };
        assert!(check(&boot, Perm::Configure).is_ok());
        assert!(check(&boot, Perm::Decide).is_err());
        assert!(check(&boot, Perm::DecideGrant).is_err());
    }

    #[test]
    fn grants_need_a_second_admin() {
        let g = RoleGrant {
            id: "g".into(),
            human: "bob".into(),
            role: CpRole::Admin,
            requested_by: "human:alice".into(),
            requester: Some("alice".into()),
            justification: "j".into(),
            state: GrantState::Pending,
            requested_ms: 0,
            expires_ms: 100,
            decided_by: None,
            decided_ms: None,
            note: None,
            bootstrap: false,
        };
        assert!(may_decide_grant(&g, "Alice", true, 1).is_err());
        assert!(may_decide_grant(&g, "BOB", true, 1).is_err());
        assert!(may_decide_grant(&g, "erin", false, 1).is_err());
        assert!(may_decide_grant(&g, "erin", true, 100).is_err());
        assert!(may_decide_grant(&g, "erin", true, 1).is_ok());
    }
}
