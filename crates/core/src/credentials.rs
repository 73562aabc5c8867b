//! Agent credentials: the rules, without cryptography or I/O.
//!
//! It owns: OAuth scopes (RFC 6749 §3.3) as normalized sets with subset and intersection;
//! token lifetimes (a default, a hard maximum, never beyond a parent token); the delegation
//! chain of RFC 8693's `act` claim and its depth bound; and the kill switch — what a switch
//! covers (one identity, all identities of an owner, one environment, or all AI automation)
//! and whether an identity is stopped by any engaged switch.
//!
//! Signing, JOSE encoding and key storage are at the edge (`warrant-server`); which scopes an
//! identity may request is a Cedar decision (`warrant-policy`).

use crate::identity::Identity;
use crate::Millis;
use std::collections::BTreeSet;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("invalid scope: {0}")]
    InvalidScope(String),
    #[error("invalid lifetime: {0}")]
    InvalidLifetime(String),
    #[error("delegation refused: {0}")]
    Delegation(String),
    #[error("invalid kill switch: {0}")]
    KillSwitch(String),
}

/// Most scope tokens in one scope.
pub const MAX_SCOPE_TOKENS: usize = 64;
/// Longest scope token.
pub const MAX_SCOPE_TOKEN_CHARS: usize = 128;

/// A set of scope tokens (RFC 6749 §3.3: space-delimited, case-sensitive, each made of
/// `%x21 / %x23-5B / %x5D-7E`), kept sorted and without duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Scope(BTreeSet<String>);

impl Scope {
    /// Parses a space-delimited scope. Empty text is the empty scope.
    pub fn parse(text: &str) -> Result<Scope, CredentialError> {
        let mut set = BTreeSet::new();
        for token in text.split(' ').filter(|t| !t.is_empty()) {
            if token.chars().count() > MAX_SCOPE_TOKEN_CHARS {
                return Err(CredentialError::InvalidScope(format!(
                    "scope token `{}…` is longer than {MAX_SCOPE_TOKEN_CHARS} characters",
                    token.chars().take(16).collect::<String>()
                )));
            }
            if let Some(bad) = token
                .chars()
                .find(|&c| !matches!(c, '\x21' | '\x23'..='\x5b' | '\x5d'..='\x7e'))
            {
                return Err(CredentialError::InvalidScope(format!(
                    "scope token `{}` contains {bad:?}, which RFC 6749 does not allow",
                    token.escape_debug()
                )));
            }
            set.insert(token.to_owned());
        }
        if text.contains(|c: char| c != ' ' && c.is_whitespace()) {
            return Err(CredentialError::InvalidScope(
                "scope tokens are separated by single spaces".into(),
            ));
        }
        if set.len() > MAX_SCOPE_TOKENS {
            return Err(CredentialError::InvalidScope(format!(
                "{} scope tokens; at most {MAX_SCOPE_TOKENS}",
                set.len()
            )));
        }
        Ok(Scope(set))
    }

    pub fn tokens(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn contains(&self, token: &str) -> bool {
        self.0.contains(token)
    }

    pub fn is_subset(&self, other: &Scope) -> bool {
        self.0.is_subset(&other.0)
    }

    pub fn intersection(&self, other: &Scope) -> Scope {
        Scope(self.0.intersection(&other.0).cloned().collect())
    }

    /// The tokens of `self` that `other` lacks.
    pub fn missing_from(&self, other: &Scope) -> Vec<String> {
        self.0.difference(&other.0).cloned().collect()
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for t in &self.0 {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(t)?;
            first = false;
        }
        Ok(())
    }
}

/// How long access tokens live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    /// When the request names none.
    pub default_secs: u64,
    /// Never longer, whatever is asked.
    pub max_secs: u64,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Lifetimes {
            default_secs: 300,
            max_secs: 3600,
        }
    }
}

impl Lifetimes {
    pub fn new(default_secs: u64, max_secs: u64) -> Result<Lifetimes, CredentialError> {
        if default_secs == 0 || max_secs == 0 {
            return Err(CredentialError::InvalidLifetime(
                "lifetimes must be at least 1 second".into(),
            ));
        }
        if default_secs > max_secs {
            return Err(CredentialError::InvalidLifetime(format!(
                "the default lifetime ({default_secs} s) exceeds the maximum ({max_secs} s)"
            )));
        }
        if max_secs > 24 * 3600 {
            return Err(CredentialError::InvalidLifetime(
                "the maximum lifetime is at most 24 hours (tokens are short-lived)".into(),
            ));
        }
        Ok(Lifetimes {
            default_secs,
            max_secs,
        })
    }

    /// The expiry (ms) of a token issued at `now`: the requested lifetime or the default,
    /// capped by the maximum and by the parent token's expiry. A parent already expired
    /// yields an error.
    pub fn expiry(
        &self,
        now: Millis,
        requested_secs: Option<u64>,
        parent_exp: Option<Millis>,
    ) -> Result<Millis, CredentialError> {
        let secs = requested_secs
            .unwrap_or(self.default_secs)
            .min(self.max_secs)
            .max(1);
        let secs = i64::try_from(secs).unwrap_or(i64::MAX / 1000);
        let mut exp = now.saturating_add(secs.saturating_mul(1000));
        if let Some(parent) = parent_exp {
            if parent <= now {
                return Err(CredentialError::InvalidLifetime(
                    "the parent token has expired".into(),
                ));
            }
            exp = exp.min(parent);
        }
        Ok(exp)
    }
}

/// One link of a delegation chain (RFC 8693 §4.1 `act`): who acted, and who acted before.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Actor {
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Box<Actor>>,
}

impl Actor {
    /// Links in the chain (1 for a single actor).
    pub fn depth(&self) -> usize {
        1 + self.act.as_ref().map_or(0, |a| a.depth())
    }

    /// Every actor, most recent first.
    pub fn subjects(&self) -> Vec<&str> {
        let mut out = vec![self.sub.as_str()];
        let mut next = self.act.as_deref();
        while let Some(a) = next {
            out.push(a.sub.as_str());
            next = a.act.as_deref();
        }
        out
    }
}

/// Default bound on delegation depth.
pub const DEFAULT_MAX_DELEGATION_DEPTH: usize = 3;

/// What a delegated token may carry: `delegator` (the holder of `parent_scope`, whose own
/// chain is `parent_act`) hands part of its scope to another agent. The new scope is the
/// requested one (or all the parent's), which must lie within the parent's scope and
/// within what the delegate may hold (`delegate_allowed`); the chain grows by one link and
/// may not exceed `max_depth`.
pub fn delegate(
    delegator: &str,
    parent_scope: &Scope,
    parent_act: Option<&Actor>,
    requested: Option<&Scope>,
    delegate_allowed: &Scope,
    max_depth: usize,
) -> Result<(Scope, Actor), CredentialError> {
    let wanted = requested.unwrap_or(parent_scope);
    let widening = wanted.missing_from(parent_scope);
    if !widening.is_empty() {
        return Err(CredentialError::Delegation(format!(
            "delegation may only narrow: the parent token does not carry {}",
            widening.join(", ")
        )));
    }
    let beyond = wanted.missing_from(delegate_allowed);
    if !beyond.is_empty() {
        return Err(CredentialError::Delegation(format!(
            "the delegate may not hold {}",
            beyond.join(", ")
        )));
    }
    let scope = wanted.intersection(parent_scope);
    if scope.is_empty() {
        return Err(CredentialError::Delegation(
            "nothing left to delegate: the scope is empty".into(),
        ));
    }
    let act = Actor {
        sub: delegator.to_owned(),
        act: parent_act.map(|a| Box::new(a.clone())),
    };
    if act.depth() > max_depth {
        return Err(CredentialError::Delegation(format!(
            "the delegation chain would be {} links long; at most {max_depth}",
            act.depth()
        )));
    }
    Ok((scope, act))
}

/// What a kill switch stops.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KillTarget {
    /// One identity (by id).
    Identity(String),
    /// Every identity this human owns.
    Owner(String),
    /// Every identity in this environment.
    Environment(String),
    /// Every AI identity (agents and AI tools), everywhere.
    AllAi,
}

impl KillTarget {
    /// From the API's `(kind, value)` pair.
    pub fn parse(kind: &str, value: Option<&str>) -> Result<KillTarget, CredentialError> {
        let need = |v: Option<&str>| -> Result<String, CredentialError> {
            match v.map(str::trim) {
                Some(v) if !v.is_empty() && v.len() <= 512 => Ok(v.to_owned()),
                _ => Err(CredentialError::KillSwitch(format!(
                    "a kill switch on `{kind}` needs a value (1 to 512 characters)"
                ))),
            }
        };
        match kind {
            "identity" => Ok(KillTarget::Identity(need(value)?)),
            "owner" => Ok(KillTarget::Owner(need(value)?)),
            "environment" => Ok(KillTarget::Environment(need(value)?)),
            "all_ai" => match value {
                None | Some("") => Ok(KillTarget::AllAi),
                Some(_) => Err(CredentialError::KillSwitch(
                    "an `all_ai` kill switch takes no value".into(),
                )),
            },
            other => Err(CredentialError::KillSwitch(format!(
                "`{other}` is not one of identity, owner, environment, all_ai"
            ))),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            KillTarget::Identity(_) => "identity",
            KillTarget::Owner(_) => "owner",
            KillTarget::Environment(_) => "environment",
            KillTarget::AllAi => "all_ai",
        }
    }

    pub fn value(&self) -> Option<&str> {
        match self {
            KillTarget::Identity(v) | KillTarget::Owner(v) | KillTarget::Environment(v) => Some(v),
            KillTarget::AllAi => None,
        }
    }

    pub fn covers(&self, identity: &Identity) -> bool {
        match self {
            KillTarget::Identity(id) => identity.id == *id,
            KillTarget::Owner(owner) => identity.owner == *owner,
            KillTarget::Environment(env) => identity.environment == *env,
            KillTarget::AllAi => identity.kind.is_ai(),
        }
    }
}

/// An engaged or released kill switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KillSwitch {
    pub id: String,
    pub target: KillTarget,
    pub engaged_ms: Millis,
    pub engaged_by: String,
    pub reason: String,
    pub released_ms: Option<Millis>,
    pub released_by: Option<String>,
    pub release_reason: Option<String>,
}

impl KillSwitch {
    pub fn engaged(&self) -> bool {
        self.released_ms.is_none()
    }
}

/// Minimum length of the reason for engaging or releasing a kill switch.
pub const MIN_REASON_CHARS: usize = 3;

pub fn validate_reason(reason: &str) -> Result<String, CredentialError> {
    let reason = reason.trim();
    let n = reason.chars().count();
    if !(MIN_REASON_CHARS..=2000).contains(&n) {
        return Err(CredentialError::KillSwitch(format!(
            "a reason of {MIN_REASON_CHARS} to 2000 characters is required"
        )));
    }
    Ok(reason.to_owned())
}

/// The first engaged switch of `switches` that covers `identity`, if any.
pub fn stopped_by<'a>(
    switches: impl IntoIterator<Item = &'a KillSwitch>,
    identity: &Identity,
) -> Option<&'a KillSwitch> {
    switches
        .into_iter()
        .find(|s| s.engaged() && s.target.covers(identity))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::NewIdentity;

    fn scope(s: &str) -> Scope {
        Scope::parse(s).unwrap()
    }

    #[test]
    fn scopes_parse_normalize_and_refuse_bad_tokens() {
        assert_eq!(scope("b a  a").to_string(), "a b");
        assert!(scope("").is_empty());
        for bad in ["a\"b", "a\\b", "é", "a\tb", "a\nb"] {
            assert!(Scope::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Scope::parse(&"x".repeat(129)).is_err());
        let many = (0..65)
            .map(|i| format!("s{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        assert!(Scope::parse(&many).is_err());
        assert!(scope("a").is_subset(&scope("a b")));
        assert!(!scope("a c").is_subset(&scope("a b")));
        assert_eq!(scope("a b c").intersection(&scope("b c d")), scope("b c"));
    }

    #[test]
    fn lifetimes_are_capped_by_maximum_and_parent() {
        let l = Lifetimes::new(300, 900).unwrap();
        assert_eq!(l.expiry(0, None, None).unwrap(), 300_000);
        assert_eq!(l.expiry(0, Some(10_000), None).unwrap(), 900_000);
        assert_eq!(l.expiry(0, Some(60), None).unwrap(), 60_000);
        assert_eq!(l.expiry(0, Some(600), Some(120_000)).unwrap(), 120_000);
        assert!(l.expiry(5_000, None, Some(5_000)).is_err());
        assert!(Lifetimes::new(600, 300).is_err());
        assert!(Lifetimes::new(0, 300).is_err());
        assert!(Lifetimes::new(60, 25 * 3600).is_err());
    }

    #[test]
    fn delegation_only_narrows_and_is_bounded() {
        let parent = scope("read write");
        let allowed = scope("read write admin");
        let (s, act) = delegate("idn_a", &parent, None, Some(&scope("read")), &allowed, 3).unwrap();
        assert_eq!(s, scope("read"));
        assert_eq!(act.subjects(), ["idn_a"]);
        // Widening beyond the parent.
        let err = delegate(
            "idn_a",
            &parent,
            None,
            Some(&scope("read admin")),
            &allowed,
            3,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("only narrow") && err.contains("admin"),
            "{err}"
        );
        // Beyond what the delegate may hold.
        let err = delegate("idn_a", &parent, None, None, &scope("read"), 3)
            .unwrap_err()
            .to_string();
        assert!(err.contains("may not hold write"), "{err}");
        // Depth.
        let chain = Actor {
            sub: "idn_b".into(),
            act: Some(Box::new(Actor {
                sub: "idn_c".into(),
                act: None,
            })),
        };
        let (_, act) = delegate("idn_a", &parent, Some(&chain), None, &allowed, 3).unwrap();
        assert_eq!(act.subjects(), ["idn_a", "idn_b", "idn_c"]);
        assert!(delegate("idn_a", &parent, Some(&act), None, &allowed, 3).is_err());
        assert!(delegate("idn_a", &parent, None, Some(&scope("")), &allowed, 3).is_err());
    }

    fn identity(id: &str, kind: &str, env: &str, owner: &str) -> Identity {
        NewIdentity {
            name: format!("n-{id}"),
            kind: kind.into(),
            environment: env.into(),
            owner: owner.into(),
            ..Default::default()
        }
        .into_identity(id.into(), "td", 1)
        .unwrap()
    }

    #[test]
    fn kill_switches_cover_what_they_name() {
        let bot = identity("idn_1", "agent", "prod", "alice@example.com");
        let svc = identity("idn_2", "service_account", "prod", "bob@example.com");
        let t = |k: &str, v: Option<&str>| KillTarget::parse(k, v).unwrap();
        assert!(t("identity", Some("idn_1")).covers(&bot));
        assert!(!t("identity", Some("idn_1")).covers(&svc));
        assert!(t("owner", Some("alice@example.com")).covers(&bot));
        assert!(t("environment", Some("prod")).covers(&svc));
        assert!(t("all_ai", None).covers(&bot));
        assert!(
            !t("all_ai", None).covers(&svc),
            "a service account is not AI"
        );
        assert!(KillTarget::parse("all_ai", Some("x")).is_err());
        assert!(KillTarget::parse("identity", None).is_err());
        assert!(KillTarget::parse("everything", None).is_err());
        let mut sw = KillSwitch {
            id: "ks_1".into(),
            target: t("owner", Some("alice@example.com")),
            engaged_ms: 1,
            engaged_by: "admin:t".into(),
            reason: "incident 42".into(),
            released_ms: None,
            released_by: None,
            release_reason: None,
        };
        assert!(stopped_by([&sw], &bot).is_some());
        sw.released_ms = Some(2);
        assert!(stopped_by([&sw], &bot).is_none());
        assert!(validate_reason("  ").is_err());
        assert_eq!(validate_reason(" incident 42 ").unwrap(), "incident 42");
    }
}
