//! The group-commit writer: the only code path that writes to the store.
//!
//! Requests hand it jobs over a channel and wait for the answer. The writer takes every
//! job that is waiting (up to a bound), applies them in one database transaction, seals
//! their audit records into the Merkle chain, commits once (one fsync for the whole
//! batch), then publishes the new decision snapshot, then answers. So:
//!
//! - INVARIANT: a change and its audit record commit together or not at all; if the
//!   commit fails, every job in the batch is answered `Unavailable` and nothing is applied.
//! - INVARIANT: a caller is answered only after its records are durable and the snapshot
//!   that reflects its change is in force.
//! - Each mutating job runs inside a savepoint, so one refused job (a conflict, say) does
//!   not spoil the others in its batch.
//!
//! Replicas. Every batch begins by locking the audit head; when the chain has grown past
//! what this replica last committed or synced, another replica wrote in between, and the
//! batch first reloads every object changed since (the audit log is the change journal:
//! each non-decision record names its subject), still under the head lock, and publishes
//! those effects before its own. So changes are applied to the snapshot in chain order,
//! a stale read can never overwrite a newer state, and a commit whose answer was lost
//! (the connection dropped) is picked up again. A batch that changed state signals the
//! other replicas (`notify_changed`, delivered at commit); a signal, or the periodic
//! check, queues a `Sync` job (an empty batch) so an idle replica catches up too.
//! - INVARIANT: one publisher. Only the writer task swaps the snapshot.

use crate::metrics::Metrics;
use crate::ops::{self, Effect, Op};
use crate::snapshot::Snapshot;
use arc_swap::ArcSwap;
use ed25519_dalek::SigningKey;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};
use warrant_core::audit::{AuditRecord, RecordDraft};
use warrant_core::checkpoint::Checkpoint;
use warrant_core::Clock;
use warrant_store::{Store, WriteTx};

#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// The actor may not do this (a governance rule refused it).
    #[error("{0}")]
    Forbidden(String),
    /// The store or the audit log could not be written: fail closed.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A decision was made on state that another replica changed before it could be
    /// logged: refused, to be asked again.
    #[error("{0}")]
    Stale(String),
}

/// What a job produced once committed.
#[derive(Debug, Clone)]
pub struct Committed {
    /// Sequence numbers of this job's audit records.
    pub seqs: Vec<u64>,
    pub outcome: ops::Outcome,
}

enum Job {
    /// Records of decisions (or other records that change nothing); `allowed` names the
    /// principals these decisions allowed.
    Append {
        drafts: Vec<RecordDraft>,
        allowed: Vec<String>,
    },
    Mutate(Box<Op>),
    Checkpoint,
    /// Catch up with changes made through other replicas (nothing else).
    Sync,
}

/// The longest a batch may take (above the database's own statement and lock timeouts)
/// before its callers are answered `Unavailable`.
const BATCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

struct Pending {
    job: Job,
    reply: oneshot::Sender<Result<Committed, WriteError>>,
}

/// Handle used by request handlers.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Pending>,
    /// A `Sync` job is queued and not yet taken (so signals coalesce).
    sync_queued: Arc<std::sync::atomic::AtomicBool>,
}

pub struct WriterConfig {
    pub max_batch: usize,
    pub origin: String,
    pub trust_domain: String,
    /// Audit records that existed when the snapshot was loaded: changes from this
    /// sequence number on are reloaded by the first batch.
    pub synced_size: u64,
    /// Unwraps stored token signing keys.
    pub key_wrap: Arc<crate::credentials::KeyWrap>,
    /// Tier workflow settings.
    pub gov: Arc<crate::governance::GovConfig>,
}

impl Writer {
    pub fn spawn(
        store: Arc<dyn Store>,
        snapshot: Arc<ArcSwap<Snapshot>>,
        clock: Arc<dyn Clock>,
        key: Arc<SigningKey>,
        metrics: Arc<Metrics>,
        config: WriterConfig,
    ) -> (Writer, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel::<Pending>(config.max_batch * 8);
        let sync_queued = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let task = WriterTask {
            store,
            snapshot,
            clock,
            key,
            metrics,
            synced: config.synced_size,
            failing: false,
            config,
            sync_queued: sync_queued.clone(),
        };
        let handle = tokio::spawn(task.run(rx));
        (Writer { tx, sync_queued }, handle)
    }

    async fn submit(&self, job: Job) -> Result<Committed, WriteError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Pending { job, reply })
            .await
            .map_err(|_| WriteError::Unavailable("audit writer is not running".into()))?;
        rx.await
            .map_err(|_| WriteError::Unavailable("audit writer stopped".into()))?
    }

    /// False once the writer task has stopped (every write would be refused).
    pub fn is_running(&self) -> bool {
        !self.tx.is_closed()
    }

    /// Appends records that describe no change; returns their sequence numbers.
    pub async fn append(&self, drafts: Vec<RecordDraft>) -> Result<Vec<u64>, WriteError> {
        self.append_decisions(drafts, vec![]).await
    }

    /// Appends the records of decisions that allowed the principals `allowed` (identity
    /// ids). Refused with [`WriteError::Stale`] when, before they could be logged, another
    /// replica changed one of those principals or the policies: an allow never enters the
    /// log after a change it did not see.
    pub async fn append_decisions(
        &self,
        drafts: Vec<RecordDraft>,
        allowed: Vec<String>,
    ) -> Result<Vec<u64>, WriteError> {
        Ok(self.submit(Job::Append { drafts, allowed }).await?.seqs)
    }

    /// Applies a change together with its audit record.
    pub async fn mutate(&self, op: Op) -> Result<Committed, WriteError> {
        self.submit(Job::Mutate(Box::new(op))).await
    }

    /// Asks the writer to catch up with changes made through other replicas, without
    /// waiting. Requests coalesce while one is queued; a busy writer catches up with
    /// every batch anyway.
    pub fn request_sync(&self) {
        use std::sync::atomic::Ordering;
        if self.sync_queued.swap(true, Ordering::AcqRel) {
            return;
        }
        let (reply, _) = oneshot::channel();
        if self
            .tx
            .try_send(Pending {
                job: Job::Sync,
                reply,
            })
            .is_err()
        {
            self.sync_queued.store(false, Ordering::Release);
        }
    }

    /// Catches up with other replicas and waits until that is done.
    pub async fn sync(&self) -> Result<(), WriteError> {
        self.submit(Job::Sync).await.map(|_| ())
    }

    /// Signs and stores a checkpoint of the tree as of the end of this batch.
    pub async fn checkpoint(&self) -> Result<Committed, WriteError> {
        self.submit(Job::Checkpoint).await
    }
}

struct WriterTask {
    store: Arc<dyn Store>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    clock: Arc<dyn Clock>,
    key: Arc<SigningKey>,
    metrics: Arc<Metrics>,
    config: WriterConfig,
    /// The chain size this replica's snapshot reflects (all changes before it applied).
    synced: u64,
    sync_queued: Arc<std::sync::atomic::AtomicBool>,
    /// The last batch failed (log the first failure and the recovery, not every batch).
    failing: bool,
}

type JobResult = Result<(std::ops::Range<usize>, ops::Outcome), WriteError>;

impl WriterTask {
    async fn run(mut self, mut rx: mpsc::Receiver<Pending>) {
        let mut batch = Vec::with_capacity(self.config.max_batch);
        while rx.recv_many(&mut batch, self.config.max_batch).await > 0 {
            if batch.iter().any(|p| matches!(p.job, Job::Sync)) {
                self.sync_queued
                    .store(false, std::sync::atomic::Ordering::Release);
            }
            let (jobs, replies): (Vec<Job>, Vec<_>) =
                batch.drain(..).map(|p| (p.job, p.reply)).unzip();
            self.process(jobs, replies).await;
        }
    }

    async fn process(
        &mut self,
        jobs: Vec<Job>,
        replies: Vec<oneshot::Sender<Result<Committed, WriteError>>>,
    ) {
        let started = Instant::now();
        let count = jobs.len();
        let applied = match tokio::time::timeout(BATCH_TIMEOUT, self.apply(jobs)).await {
            Ok(r) => r,
            Err(_) => Err(WriteError::Unavailable(format!(
                "the database did not complete the write within {}s",
                BATCH_TIMEOUT.as_secs()
            ))),
        };
        match applied {
            Ok((results, records, next, size)) => {
                self.synced = size;
                if std::mem::take(&mut self.failing) {
                    tracing::warn!("writes succeed again");
                }
                if let Some(next) = next {
                    self.publish(next);
                }
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result.map(|(range, outcome)| {
                        Committed {
                            seqs: records
                                .get(range)
                                .map(|rs| rs.iter().map(|r| r.seq).collect())
                                .unwrap_or_default(),
                            outcome,
                        }
                    }));
                }
                // Batches that appended nothing (catch-up checks, last-used flushes) would
                // only skew the group-commit figures.
                if !records.is_empty() {
                    self.metrics
                        .observe_batch(count, records.len(), started.elapsed());
                }
            }
            Err(err) => {
                if std::mem::replace(&mut self.failing, true) {
                    tracing::debug!(error = %err, jobs = count, "write batch failed; refusing all its jobs");
                } else {
                    tracing::error!(error = %err, jobs = count, "write batch failed; refusing all its jobs (further failures are logged at debug level until writes succeed again)");
                }
                self.metrics.audit_failures.inc();
                for r in replies {
                    let _ = r.send(Err(err.clone()));
                }
            }
        }
    }

    /// Runs one batch in one transaction. `Err` means nothing was applied. Returns the
    /// next snapshot when anything changed: the current one with the changes caught up
    /// from other replicas and those of this batch applied in order (each op sees the
    /// ones before it in the batch).
    #[allow(clippy::type_complexity)]
    async fn apply(
        &self,
        jobs: Vec<Job>,
    ) -> Result<(Vec<JobResult>, Vec<AuditRecord>, Option<Snapshot>, u64), WriteError> {
        let unavailable = |e: warrant_store::StoreError| WriteError::Unavailable(e.to_string());
        let now = self.clock.now_ms();
        let mut results: Vec<JobResult> = Vec::with_capacity(jobs.len());
        let mut drafts: Vec<RecordDraft> = Vec::new();
        let mut want_checkpoint = false;

        let mut tx: Box<dyn WriteTx> = self.store.begin_write().await.map_err(unavailable)?;
        let mut head = tx.load_chain_head().await.map_err(unavailable)?;
        let mut caught: Vec<Effect> = Vec::new();
        if head.tree.size() > self.synced {
            // Another replica appended since: catch up first, under the head lock.
            let changes = tx.changes_since(self.synced).await.map_err(unavailable)?;
            caught = ops::reload(&mut *tx, &changes, &self.config.key_wrap).await?;
        }
        let caught_up = caught.len();
        // What changed elsewhere since the snapshot every decision of this batch was made
        // on (the catch-up is published only after this batch commits).
        let changed_ids: std::collections::HashSet<String> = caught
            .iter()
            .filter_map(|e| match e {
                Effect::Identity(i) => Some(i.id.clone()),
                _ => None,
            })
            .collect();
        // A policy change, a kill switch, a revocation or a role change elsewhere: every
        // pending allow is suspect (rare events; the client asks again).
        let policy_changed = caught.iter().any(|e| {
            matches!(
                e,
                Effect::Policy { .. }
                    | Effect::KillSwitch(_)
                    | Effect::Revoked { .. }
                    | Effect::Role { .. }
            )
        });
        let stale = |allowed: &[String]| {
            !allowed.is_empty()
                && (policy_changed || allowed.iter().any(|id| changed_ids.contains(id)))
        };
        let mut next: Option<Snapshot> = None;
        let working = |next: &mut Option<Snapshot>| {
            if next.is_none() {
                *next = Some((**self.snapshot.load()).clone());
            }
        };
        for e in caught {
            working(&mut next);
            if let Some(n) = next.as_mut() {
                n.apply(e, now);
            }
        }
        let mut changed_here = false;
        for job in jobs {
            let start = drafts.len();
            let result = match job {
                Job::Append { allowed, .. } if stale(&allowed) => {
                    Err(WriteError::Stale(
                        "the principal or the policies changed on another replica while this decision was made; ask again".into(),
                    ))
                }
                Job::Append { drafts: mut d, .. } => {
                    drafts.append(&mut d);
                    Ok(ops::Outcome::None)
                }
                Job::Checkpoint => {
                    want_checkpoint = true;
                    Ok(ops::Outcome::None)
                }
                Job::Sync => Ok(ops::Outcome::None),
                Job::Mutate(op) => {
                    working(&mut next);
                    let Some(snap) = next.as_mut() else {
                        return Err(WriteError::Unavailable("no working snapshot".into()));
                    };
                    tx.savepoint().await.map_err(unavailable)?;
                    let outcome = {
                        let ctx = ops::Ctx {
                            now,
                            trust_domain: &self.config.trust_domain,
                            key_wrap: &self.config.key_wrap,
                            snap: &*snap,
                            gov: &self.config.gov,
                        };
                        ops::apply(&mut *tx, *op, &ctx).await
                    };
                    match outcome {
                        Ok(applied) => {
                            tx.release_savepoint().await.map_err(unavailable)?;
                            drafts.extend(applied.drafts);
                            for e in applied.effects {
                                changed_here = true;
                                snap.apply(e, now);
                            }
                            Ok(applied.outcome)
                        }
                        // The store failed: the whole batch fails closed.
                        Err(e @ WriteError::Unavailable(_)) => return Err(e),
                        // A domain refusal: undo this job only.
                        Err(refused) => {
                            tx.rollback_to_savepoint().await.map_err(unavailable)?;
                            Err(refused)
                        }
                    }
                }
            };
            results.push(result.map(|o| (start..drafts.len(), o)));
        }

        let records: Vec<AuditRecord> = drafts.into_iter().map(|d| head.seal(d, now)).collect();
        if !records.is_empty() {
            tx.append_records(&records).await.map_err(unavailable)?;
            tx.store_chain_head(&head).await.map_err(unavailable)?;
        }
        if changed_here {
            tx.notify_changed().await.map_err(unavailable)?;
        }
        if want_checkpoint && head.tree.size() > 0 {
            let cp = Checkpoint::sign(
                &self.config.origin,
                head.tree.size(),
                head.tree.root(),
                now,
                &self.key,
            );
            tx.insert_checkpoint(&cp).await.map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)?;
        if caught_up > 0 {
            self.metrics.synced_changes.inc_by(caught_up as u64);
        }
        let next = next.filter(|_| caught_up > 0 || changed_here);
        Ok((results, records, next, head.tree.size()))
    }

    /// Swaps in the next snapshot (after its changes committed).
    fn publish(&self, next: Snapshot) {
        self.metrics.identities.set(next.principals.len() as i64);
        self.snapshot.store(Arc::new(next));
    }
}
