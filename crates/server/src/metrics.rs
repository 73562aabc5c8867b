//! Prometheus metrics (OpenMetrics text at `/metrics`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TierLabels {
    pub tier: u8,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    pub purpose: &'static str,
    pub result: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub proposals: Family<TierLabels, Counter>,
    pub deliveries: Family<DeliveryLabels, Counter>,
    pub decisions: Family<DecisionLabels, Counter>,
    pub decision_seconds: Histogram,
    pub audit_append_seconds: Histogram,
    pub audit_batch_jobs: Histogram,
    pub audit_records: Counter,
    pub audit_failures: Counter,
    pub identities: Gauge,
    pub synced_changes: Counter,
    pub job_leader: Gauge,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("warrant");
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "decisions",
            "Authorization decisions by result",
            decisions.clone(),
        );
        // 1µs .. ~1s
        let decision_seconds = Histogram::new(exponential_buckets(1e-6, 2.0, 21));
        registry.register(
            "decision_duration_seconds",
            "Time to evaluate a decision (policy evaluation only, before the audit append)",
            decision_seconds.clone(),
        );
        // 10µs .. ~10s
        let audit_append_seconds = Histogram::new(exponential_buckets(1e-5, 2.0, 21));
        registry.register(
            "audit_append_duration_seconds",
            "Time to write and commit one batch of audit records (group commit)",
            audit_append_seconds.clone(),
        );
        let audit_batch_jobs = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        registry.register(
            "audit_batch_jobs",
            "Requests committed together in one group commit",
            audit_batch_jobs.clone(),
        );
        let audit_records = Counter::default();
        registry.register(
            "audit_records",
            "Audit records appended",
            audit_records.clone(),
        );
        let audit_failures = Counter::default();
        registry.register(
            "audit_write_failures",
            "Group commits that failed (their requests were refused)",
            audit_failures.clone(),
        );
        let identities = Gauge::default();
        registry.register(
            "identities",
            "Registered identities in the decision snapshot",
            identities.clone(),
        );
        let synced_changes = Counter::default();
        registry.register(
            "replica_synced_changes",
            "Changes made through other replicas and applied to this replica's snapshot",
            synced_changes.clone(),
        );
        let job_leader = Gauge::default();
        registry.register(
            "job_leader",
            "1 while this replica holds the lock to run periodic jobs (checkpoints), else 0",
            job_leader.clone(),
        );
        let proposals = Family::<TierLabels, Counter>::default();
        registry.register(
            "proposals",
            "Change proposals submitted through this replica, by assigned tier",
            proposals.clone(),
        );
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        registry.register(
            "webhook_deliveries",
            "Webhook delivery attempts (notifications, connector calls) by purpose and result",
            deliveries.clone(),
        );
        Metrics {
            registry,
            proposals,
            deliveries,
            synced_changes,
            job_leader,
            decisions,
            decision_seconds,
            audit_append_seconds,
            audit_batch_jobs,
            audit_records,
            audit_failures,
            identities,
        }
    }

    pub fn observe_batch(&self, jobs: usize, records: usize, took: Duration) {
        self.audit_batch_jobs.observe(jobs as f64);
        self.audit_append_seconds.observe(took.as_secs_f64());
        self.audit_records.inc_by(records as u64);
    }

    pub fn observe_decision(&self, allowed: bool, took: Duration) {
        self.decisions
            .get_or_create(&DecisionLabels {
                decision: if allowed { "allow" } else { "deny" },
            })
            .inc();
        self.decision_seconds.observe(took.as_secs_f64());
    }

    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
