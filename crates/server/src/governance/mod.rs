//! Tiered change governance at the edge of the domain: the governance state in the
//! snapshot (`state`), the writer ops that submit, decide, execute and time out proposals
//! (`ops`), the executor that applies changes to warrant's entitlement store (`executor`)
//! the delivery of notifications and connector calls (`delivery`), and the humans who
//! operate warrant: accounts, two-person role grants, sessions (`humans`), and access
//! certification campaigns (`certify`).
//!
//! The rules live in `warrant_core::governance`; this module wires them to storage, the
//! audit log and the network.

pub mod certify;
pub mod delivery;
pub mod executor;
pub mod humans;
pub mod ops;
pub mod state;

use std::collections::BTreeMap;
use warrant_core::governance::aggregate::Thresholds;
use warrant_core::governance::tiering::Floor;
use warrant_core::governance::workflow::ApprovalRules;
use warrant_core::Millis;

/// An external system changes are executed in through a signed webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connector {
    pub name: String,
    pub url: String,
}

/// Governance settings (the `[governance]` table of the config file).
#[derive(Debug, Clone)]
pub struct GovConfig {
    /// Tier 2: how long the reviewer may override.
    pub override_window_ms: Millis,
    /// Tier 3: how long a request waits for approval.
    pub approval_expiry_ms: Millis,
    /// Tier 4: how long a recommendation stays open.
    pub recommendation_expiry_ms: Millis,
    pub rules: ApprovalRules,
    /// Change tickets must match this pattern.
    pub ticket_pattern: regex::Regex,
    pub floor: Floor,
    pub thresholds: Thresholds,
    /// Where notifications go when a capability names no webhook.
    pub notify_url: Option<String>,
    pub connectors: BTreeMap<String, Connector>,
    /// Attempts per delivery before it is given up.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt (capped at one hour).
    pub retry_base_ms: Millis,
}

pub const DEFAULT_TICKET_PATTERN: &str = r"^[A-Z][A-Z0-9]{1,15}-[0-9]{1,10}$";

impl Default for GovConfig {
    fn default() -> Self {
        GovConfig {
            override_window_ms: 24 * 3_600_000,
            approval_expiry_ms: 7 * 24 * 3_600_000,
            recommendation_expiry_ms: 30 * 24 * 3_600_000,
            rules: ApprovalRules::default(),
            ticket_pattern: regex::Regex::new(DEFAULT_TICKET_PATTERN)
                .unwrap_or_else(|_| unreachable_pattern()),
            floor: Floor::default(),
            thresholds: Thresholds::default(),
            notify_url: None,
            connectors: BTreeMap::new(),
            max_attempts: 8,
            retry_base_ms: 1_000,
        }
    }
}

/// Never reached: the default pattern is a constant that compiles (unit test below).
/// Should it ever fail, no ticket matches (fail closed).
#[allow(clippy::expect_used)]
fn unreachable_pattern() -> regex::Regex {
    regex::Regex::new("[^\\s\\S]").expect("a constant pattern")
}

impl GovConfig {
    /// Checks a change-ticket reference against the configured pattern.
    pub fn check_ticket(&self, ticket: &str) -> Result<(), String> {
        if self.ticket_pattern.is_match(ticket) {
            Ok(())
        } else {
            Err(format!(
                "change ticket `{}` does not match the required pattern `{}`",
                ticket.escape_debug(),
                self.ticket_pattern.as_str()
            ))
        }
    }

    /// The delay before attempt `attempt` (1-based) is retried.
    pub fn backoff_ms(&self, attempt: u32) -> Millis {
        let shift = attempt.saturating_sub(1).min(20);
        (self.retry_base_ms.saturating_mul(1 << shift)).min(3_600_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ticket_pattern_and_backoff() {
        let c = GovConfig::default();
        assert_eq!(c.ticket_pattern.as_str(), DEFAULT_TICKET_PATTERN);
        assert!(c.check_ticket("CHG-1234").is_ok());
        assert!(c.check_ticket("chg-1").is_err());
        assert!(c.check_ticket("CHG 1").is_err());
        assert_eq!(c.backoff_ms(1), 1_000);
        assert_eq!(c.backoff_ms(3), 4_000);
        assert_eq!(c.backoff_ms(40), 3_600_000);
    }
}
