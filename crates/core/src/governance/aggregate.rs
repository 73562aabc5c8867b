//! Compounding changes: sliding-window aggregates of blast radius per capability, per
//! target identity and overall, and correlation chains.
//!
//! Many small automated changes can add up to a restructuring nobody approved. Every
//! proposal that is applied or on its way (not rejected, expired, failed or overridden)
//! counts for the window it was submitted in; chains count every step. When a proposal
//! would push an aggregate over its threshold, it and the next ones in that scope are
//! escalated to Tier 3 until the window moves on.
//!
//! Persistent maps (`imbl`): a copy is O(1), so the snapshot carries the aggregates and
//! the writer updates them per proposal in O(log n).

use super::model::{AggregateView, Proposal};
use crate::Millis;

/// Thresholds and windows (configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thresholds {
    pub window_ms: Millis,
    /// Blast radius one capability may cause within the window.
    pub capability_max: u64,
    /// Changes to one target identity within the window.
    pub target_max: u64,
    /// Blast radius of all capabilities within the window.
    pub overall_max: u64,
    /// Blast radius of one correlation chain (any age within `chain_window_ms`).
    pub chain_max_blast: u64,
    /// Steps of one chain.
    pub chain_max_length: u64,
    pub chain_window_ms: Millis,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            window_ms: 24 * 3_600_000,
            capability_max: 50,
            target_max: 5,
            overall_max: 200,
            chain_max_blast: 20,
            chain_max_length: 5,
            chain_window_ms: 30 * 24 * 3_600_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    capability: String,
    targets: Vec<String>,
    blast: u64,
}

#[derive(Debug, Clone, Default)]
struct Chain {
    /// Member proposal → its blast radius if it counts, else 0.
    members: imbl::HashMap<String, u64>,
    last_ms: Millis,
}

/// The aggregates as of the proposals observed.
#[derive(Debug, Clone, Default)]
pub struct Aggregates {
    /// (submitted, id) → entry, for proposals that count and are within the window.
    entries: imbl::OrdMap<(Millis, String), Entry>,
    by_id: imbl::HashMap<String, Millis>,
    by_capability: imbl::HashMap<String, u64>,
    by_target: imbl::HashMap<String, u64>,
    overall: u64,
    chains: imbl::HashMap<String, Chain>,
    /// (last activity, correlation) of every chain: expiry pops the oldest, O(log n).
    chain_ages: imbl::OrdSet<(Millis, String)>,
}

fn add(map: &mut imbl::HashMap<String, u64>, key: &str, n: u64) {
    let v = map.get(key).copied().unwrap_or(0) + n;
    map.insert(key.to_owned(), v);
}

fn sub(map: &mut imbl::HashMap<String, u64>, key: &str, n: u64) {
    match map.get(key).copied() {
        Some(v) if v > n => {
            map.insert(key.to_owned(), v - n);
        }
        _ => {
            map.remove(key);
        }
    }
}

impl Aggregates {
    fn remove_entry(&mut self, key: &(Millis, String)) {
        if let Some(e) = self.entries.remove(key) {
            self.by_id.remove(&key.1);
            sub(&mut self.by_capability, &e.capability, e.blast);
            for t in &e.targets {
                sub(&mut self.by_target, t, 1);
            }
            self.overall = self.overall.saturating_sub(e.blast);
        }
    }

    /// Takes a proposal's current state into account (new, or changed state).
    pub fn observe(&mut self, p: &Proposal, now: Millis, t: &Thresholds) {
        if let Some(at) = self.by_id.get(&p.id).copied() {
            self.remove_entry(&(at, p.id.clone()));
        }
        let blast = p.assessment.identities_count;
        if p.state.counts() && p.submitted_ms > now - t.window_ms {
            let e = Entry {
                capability: p.capability.clone(),
                targets: p.targets(),
                blast,
            };
            add(&mut self.by_capability, &e.capability, blast);
            for target in &e.targets {
                add(&mut self.by_target, target, 1);
            }
            self.overall += blast;
            self.by_id.insert(p.id.clone(), p.submitted_ms);
            self.entries.insert((p.submitted_ms, p.id.clone()), e);
        }
        if p.submitted_ms > now - t.chain_window_ms {
            let mut chain = self.chains.get(&p.correlation).cloned().unwrap_or_default();
            chain
                .members
                .insert(p.id.clone(), if p.state.counts() { blast } else { 0 });
            let before = chain.last_ms;
            chain.last_ms = chain.last_ms.max(p.submitted_ms);
            if before != chain.last_ms || !self.chains.contains_key(&p.correlation) {
                self.chain_ages.remove(&(before, p.correlation.clone()));
                self.chain_ages
                    .insert((chain.last_ms, p.correlation.clone()));
            }
            self.chains.insert(p.correlation.clone(), chain);
        }
        self.expire(now, t);
    }

    /// Drops what left the windows.
    pub fn expire(&mut self, now: Millis, t: &Thresholds) {
        while let Some(((at, id), _)) = self.entries.get_min().map(|(k, v)| (k.clone(), v)) {
            if at > now - t.window_ms {
                break;
            }
            self.remove_entry(&(at, id));
        }
        while let Some((at, correlation)) = self.chain_ages.get_min().cloned() {
            if at > now - t.chain_window_ms {
                break;
            }
            self.chain_ages.remove(&(at, correlation.clone()));
            self.chains.remove(&correlation);
        }
    }

    /// The aggregates a new proposal would be tiered against (itself not included).
    pub fn view(
        &self,
        capability: &str,
        targets: &[String],
        correlation: &str,
        t: &Thresholds,
    ) -> AggregateView {
        let chain = self.chains.get(correlation);
        AggregateView {
            capability: self.by_capability.get(capability).copied().unwrap_or(0),
            target: targets
                .iter()
                .map(|x| self.by_target.get(x).copied().unwrap_or(0))
                .max()
                .unwrap_or(0),
            overall: self.overall,
            chain_length: chain.map_or(0, |c| c.members.len() as u64),
            chain_blast: chain.map_or(0, |c| c.members.values().sum()),
            window_ms: t.window_ms,
        }
    }

    /// Proposals counted in the window (for metrics and tests).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The aggregates a proposal with blast radius `blast` would push over their thresholds,
/// each as a reason naming the scope and the figures.
pub fn crossed(view: &AggregateView, blast: u64, capability: &str, t: &Thresholds) -> Vec<String> {
    let hours = t.window_ms / 3_600_000;
    let mut out = Vec::new();
    if view.capability + blast > t.capability_max {
        out.push(format!(
            "aggregate: capability `{capability}` would reach a blast radius of {} within {hours} h (threshold {})",
            view.capability + blast,
            t.capability_max
        ));
    }
    if view.target + 1 > t.target_max {
        out.push(format!(
            "aggregate: the target would see its change #{} within {hours} h (threshold {})",
            view.target + 1,
            t.target_max
        ));
    }
    if view.overall + blast > t.overall_max {
        out.push(format!(
            "aggregate: all capabilities would reach a blast radius of {} within {hours} h (threshold {})",
            view.overall + blast,
            t.overall_max
        ));
    }
    if view.chain_blast + blast > t.chain_max_blast {
        out.push(format!(
            "aggregate: the correlation chain would reach a blast radius of {} (threshold {})",
            view.chain_blast + blast,
            t.chain_max_blast
        ));
    }
    if view.chain_length + 1 > t.chain_max_length {
        out.push(format!(
            "aggregate: the correlation chain would reach {} steps (threshold {})",
            view.chain_length + 1,
            t.chain_max_length
        ));
    }
    out
}
