//! Non-human identities: what they are, what a valid one looks like, and how they move
//! through their lifecycle.
//!
//! INVARIANT: `retired` is final. A retired identity is never reactivated, edited or
//! deleted, and its id, SPIFFE URI and (name, environment) are never given to another.

use crate::Millis;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdentityKind {
    Agent,
    AiTool,
    ServiceAccount,
    Workload,
}

impl IdentityKind {
    pub const ALL: [IdentityKind; 4] = [
        IdentityKind::Agent,
        IdentityKind::AiTool,
        IdentityKind::ServiceAccount,
        IdentityKind::Workload,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IdentityKind::Agent => "agent",
            IdentityKind::AiTool => "ai_tool",
            IdentityKind::ServiceAccount => "service_account",
            IdentityKind::Workload => "workload",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Agents and AI tools are AI identities: later issues keep them away from human roles.
    pub fn is_ai(self) -> bool {
        matches!(self, IdentityKind::Agent | IdentityKind::AiTool)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdentityState {
    Active,
    Suspended,
    Retired,
}

impl IdentityState {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityState::Active => "active",
            IdentityState::Suspended => "suspended",
            IdentityState::Retired => "retired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Active, Self::Suspended, Self::Retired]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// A lifecycle step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Suspend,
    Resume,
    Retire,
}

impl Transition {
    pub fn as_str(self) -> &'static str {
        match self {
            Transition::Suspend => "suspend",
            Transition::Resume => "resume",
            Transition::Retire => "retire",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("cannot {action} an identity that is {state}")]
    BadTransition {
        action: &'static str,
        state: &'static str,
    },
    #[error("identity is retired; retired identities cannot be changed")]
    Retired,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> IdentityError {
    IdentityError::Invalid {
        field,
        reason: reason.into(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub id: String,
    pub name: String,
    pub kind: IdentityKind,
    pub environment: String,
    pub spiffe_id: String,
    pub owner: String,
    pub description: String,
    pub state: IdentityState,
    /// Sorted, without duplicates.
    pub roles: Vec<String>,
    /// Sorted, without duplicates.
    pub entitlements: Vec<String>,
    pub created_ms: Millis,
    pub updated_ms: Millis,
    pub last_used_ms: Option<Millis>,
}

/// A request to register an identity, before validation.
#[derive(Debug, Clone, Default)]
pub struct NewIdentity {
    pub name: String,
    pub kind: String,
    pub environment: String,
    pub owner: String,
    pub description: Option<String>,
    /// Optional explicit SPIFFE URI; derived from trust domain, environment and name if absent.
    pub spiffe_id: Option<String>,
    pub roles: Vec<String>,
    pub entitlements: Vec<String>,
}

/// A change to the mutable fields of an identity. Name, kind and environment never change:
/// the same model in another environment is another identity.
#[derive(Debug, Clone, Default)]
pub struct IdentityPatch {
    pub owner: Option<String>,
    pub description: Option<String>,
    pub roles: Option<Vec<String>>,
    pub entitlements: Option<Vec<String>>,
}

impl IdentityPatch {
    pub fn is_empty(&self) -> bool {
        self.owner.is_none()
            && self.description.is_none()
            && self.roles.is_none()
            && self.entitlements.is_none()
    }
}

pub const MAX_ROLES: usize = 64;
pub const MAX_ENTITLEMENTS: usize = 512;
pub const MAX_DESCRIPTION: usize = 2000;

/// Names and environments are SPIFFE path segments: lowercase letters, digits, `.`, `-`, `_`.
fn check_segment(field: &'static str, v: &str, max: usize) -> Result<(), IdentityError> {
    if v.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if v.len() > max {
        return Err(invalid(field, format!("must be at most {max} characters")));
    }
    let ok_start = v
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let ok_chars = v
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_'));
    if !ok_start || !ok_chars {
        return Err(invalid(
            field,
            format!("`{v}` must start with a lowercase letter or digit and contain only lowercase letters, digits, `.`, `-` and `_`"),
        ));
    }
    Ok(())
}

pub fn validate_owner(owner: &str) -> Result<String, IdentityError> {
    let o = owner.trim();
    if o.is_empty() {
        return Err(invalid("owner", "a named human owner is required"));
    }
    if o.len() > 254 {
        return Err(invalid("owner", "must be at most 254 characters"));
    }
    if o.chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '"')
    {
        return Err(invalid(
            "owner",
            format!("`{o}` must be a user name or e-mail address without spaces or quotes"),
        ));
    }
    Ok(o.to_owned())
}

fn check_label(field: &'static str, v: &str, max: usize) -> Result<(), IdentityError> {
    if v.is_empty() || v.len() > max {
        return Err(invalid(
            field,
            format!("each entry must have 1 to {max} characters"),
        ));
    }
    if v.chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '\\')
    {
        return Err(invalid(
            field,
            format!("`{v}` must not contain spaces, quotes, backslashes or control characters"),
        ));
    }
    Ok(())
}

fn normalize_list(
    field: &'static str,
    items: Vec<String>,
    max_items: usize,
    max_len: usize,
) -> Result<Vec<String>, IdentityError> {
    if items.len() > max_items {
        return Err(invalid(field, format!("at most {max_items} entries")));
    }
    for i in &items {
        check_label(field, i, max_len)?;
    }
    let mut items = items;
    items.sort();
    items.dedup();
    Ok(items)
}

fn check_description(d: Option<String>) -> Result<String, IdentityError> {
    let d = d.unwrap_or_default();
    if d.chars().count() > MAX_DESCRIPTION {
        return Err(invalid(
            "description",
            format!("must be at most {MAX_DESCRIPTION} characters"),
        ));
    }
    if d.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(invalid(
            "description",
            "must not contain control characters",
        ));
    }
    Ok(d)
}

/// Validates a trust domain (the host part of a SPIFFE ID).
pub fn validate_trust_domain(td: &str) -> Result<(), IdentityError> {
    if td.is_empty()
        || td.len() > 255
        || !td
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_'))
    {
        return Err(invalid(
            "trust_domain",
            format!("`{td}` must be lowercase letters, digits, `.`, `-` and `_`"),
        ));
    }
    Ok(())
}

/// The SPIFFE ID of an identity: `spiffe://<trust-domain>/<environment>/<name>`.
pub fn derive_spiffe_id(trust_domain: &str, environment: &str, name: &str) -> String {
    format!("spiffe://{trust_domain}/{environment}/{name}")
}

/// Checks an explicit SPIFFE ID against the SPIFFE ID specification's syntax.
pub fn validate_spiffe_id(uri: &str) -> Result<(), IdentityError> {
    let rest = uri
        .strip_prefix("spiffe://")
        .ok_or_else(|| invalid("spiffe_id", format!("`{uri}` must start with `spiffe://`")))?;
    let (td, path) = rest.split_once('/').unwrap_or((rest, ""));
    validate_trust_domain(td).map_err(|_| {
        invalid(
            "spiffe_id",
            format!("`{uri}` has an invalid trust domain `{td}`"),
        )
    })?;
    if path.is_empty() {
        return Err(invalid(
            "spiffe_id",
            format!("`{uri}` must have a path naming the workload"),
        ));
    }
    if uri.len() > 2048 {
        return Err(invalid("spiffe_id", "must be at most 2048 characters"));
    }
    for seg in path.split('/') {
        let ok = !seg.is_empty()
            && seg != "."
            && seg != ".."
            && seg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        if !ok {
            return Err(invalid(
                "spiffe_id",
                format!("`{uri}` has an invalid path segment `{seg}`"),
            ));
        }
    }
    Ok(())
}

impl NewIdentity {
    /// Validates and builds the identity. `id` and `now` come from the edges.
    pub fn into_identity(
        self,
        id: String,
        trust_domain: &str,
        now: Millis,
    ) -> Result<Identity, IdentityError> {
        check_segment("name", &self.name, 63)?;
        check_segment("environment", &self.environment, 32)?;
        let kind = IdentityKind::parse(&self.kind).ok_or_else(|| {
            invalid(
                "kind",
                format!(
                    "`{}` is not one of agent, ai_tool, service_account, workload",
                    self.kind
                ),
            )
        })?;
        let owner = validate_owner(&self.owner)?;
        let description = check_description(self.description)?;
        let spiffe_id = match self.spiffe_id {
            Some(uri) => {
                validate_spiffe_id(&uri)?;
                uri
            }
            None => derive_spiffe_id(trust_domain, &self.environment, &self.name),
        };
        Ok(Identity {
            id,
            name: self.name,
            kind,
            environment: self.environment,
            spiffe_id,
            owner,
            description,
            state: IdentityState::Active,
            roles: normalize_list("roles", self.roles, MAX_ROLES, 128)?,
            entitlements: normalize_list("entitlements", self.entitlements, MAX_ENTITLEMENTS, 256)?,
            created_ms: now,
            updated_ms: now,
            last_used_ms: None,
        })
    }
}

impl Identity {
    /// Applies a patch, returning the updated identity. Retired identities cannot change.
    pub fn patched(&self, patch: IdentityPatch, now: Millis) -> Result<Identity, IdentityError> {
        if self.state == IdentityState::Retired {
            return Err(IdentityError::Retired);
        }
        let mut next = self.clone();
        if let Some(o) = patch.owner {
            next.owner = validate_owner(&o)?;
        }
        if let Some(d) = patch.description {
            next.description = check_description(Some(d))?;
        }
        if let Some(r) = patch.roles {
            next.roles = normalize_list("roles", r, MAX_ROLES, 128)?;
        }
        if let Some(e) = patch.entitlements {
            next.entitlements = normalize_list("entitlements", e, MAX_ENTITLEMENTS, 256)?;
        }
        next.updated_ms = now;
        Ok(next)
    }

    /// Applies a lifecycle step: active → suspended → active, active|suspended → retired.
    pub fn transitioned(&self, t: Transition, now: Millis) -> Result<Identity, IdentityError> {
        use IdentityState::*;
        let to = match (self.state, t) {
            (Retired, _) => return Err(IdentityError::Retired),
            (Active, Transition::Suspend) => Suspended,
            (Suspended, Transition::Resume) => Active,
            (Active | Suspended, Transition::Retire) => Retired,
            (state, t) => {
                return Err(IdentityError::BadTransition {
                    action: t.as_str(),
                    state: state.as_str(),
                })
            }
        };
        let mut next = self.clone();
        next.state = to;
        next.updated_ms = now;
        Ok(next)
    }

    /// May this identity be the principal of an allow decision at all?
    /// (Policies still decide; this only says whether they are consulted.)
    pub fn may_act(&self) -> Result<(), &'static str> {
        match self.state {
            IdentityState::Active => Ok(()),
            IdentityState::Suspended => Err("principal is suspended"),
            IdentityState::Retired => Err("principal is retired"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new() -> NewIdentity {
        NewIdentity {
            name: "access-optimizer".into(),
            kind: "ai_tool".into(),
            environment: "prod".into(),
            owner: "alice@example.com".into(),
            roles: vec!["reader".into(), "reader".into(), "analyst".into()],
            ..Default::default()
        }
    }

    #[test]
    fn builds_with_derived_spiffe_id_and_sorted_roles() {
        let i = new()
            .into_identity("idn_1".into(), "example.org", 5)
            .unwrap();
        assert_eq!(i.spiffe_id, "spiffe://example.org/prod/access-optimizer");
        assert_eq!(i.roles, vec!["analyst", "reader"]);
        assert_eq!(i.state, IdentityState::Active);
        assert_eq!(i.kind, IdentityKind::AiTool);
    }

    #[test]
    fn rejects_bad_fields() {
        let cases: Vec<(NewIdentity, &str)> = vec![
            (
                NewIdentity {
                    owner: " ".into(),
                    ..new()
                },
                "owner",
            ),
            (
                NewIdentity {
                    name: "Bad Name".into(),
                    ..new()
                },
                "name",
            ),
            (
                NewIdentity {
                    environment: "".into(),
                    ..new()
                },
                "environment",
            ),
            (
                NewIdentity {
                    kind: "robot".into(),
                    ..new()
                },
                "kind",
            ),
            (
                NewIdentity {
                    spiffe_id: Some("http://x/y".into()),
                    ..new()
                },
                "spiffe_id",
            ),
            (
                NewIdentity {
                    spiffe_id: Some("spiffe://td".into()),
                    ..new()
                },
                "spiffe_id",
            ),
            (
                NewIdentity {
                    spiffe_id: Some("spiffe://td/a/../b".into()),
                    ..new()
                },
                "spiffe_id",
            ),
            (
                NewIdentity {
                    roles: vec!["has space".into()],
                    ..new()
                },
                "roles",
            ),
        ];
        for (n, field) in cases {
            match n.into_identity("x".into(), "td", 0) {
                Err(IdentityError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("expected invalid {field}, got {other:?}"),
            }
        }
    }

    #[test]
    fn lifecycle() {
        let i = new().into_identity("idn_1".into(), "td", 0).unwrap();
        let s = i.transitioned(Transition::Suspend, 1).unwrap();
        assert_eq!(s.state, IdentityState::Suspended);
        assert!(s.may_act().is_err());
        assert!(matches!(
            s.transitioned(Transition::Suspend, 2),
            Err(IdentityError::BadTransition { .. })
        ));
        let a = s.transitioned(Transition::Resume, 2).unwrap();
        assert!(a.may_act().is_ok());
        assert!(matches!(
            a.transitioned(Transition::Resume, 3),
            Err(IdentityError::BadTransition { .. })
        ));
        let r = a.transitioned(Transition::Retire, 3).unwrap();
        assert_eq!(
            r.transitioned(Transition::Resume, 4),
            Err(IdentityError::Retired)
        );
        assert_eq!(
            r.patched(IdentityPatch::default(), 4),
            Err(IdentityError::Retired)
        );
    }
}
