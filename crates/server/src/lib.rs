//! `warrant-server`: the HTTP edge and the server's moving parts.
//!
//! It owns: the axum router and handlers ([`api`]), request authentication ([`auth`]),
//! error mapping ([`error`]), the group-commit writer ([`writer`]) and the changes it
//! applies ([`ops`]), the lock-free decision snapshot ([`snapshot`]), metrics, config and
//! the periodic jobs (checkpoints, last-used flush).
//!
//! It must not hold domain rules (those are in `warrant-core`), Cedar details (in
//! `warrant-policy`) or SQL (in `warrant-store`).

pub mod api;
pub mod auth;
pub mod config;
pub mod credentials;
pub mod error;
pub mod extract;
pub mod governance;
pub mod humans;
pub mod keys;
pub mod metrics;
pub mod ops;
pub mod snapshot;
pub mod ui;
pub mod writer;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use ed25519_dalek::{SigningKey, VerifyingKey};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use warrant_core::{Clock, Millis};
use warrant_policy::PolicyBundle;
use warrant_store::postgres::PostgresStore;
use warrant_store::sqlite::SqliteStore;
use warrant_store::{Store, TokenRow};

pub use config::Config;

/// Wall-clock time.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> Millis {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
    }
}

pub struct Inner {
    pub store: Arc<dyn Store>,
    pub snapshot: Arc<ArcSwap<snapshot::Snapshot>>,
    pub writer: writer::Writer,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<metrics::Metrics>,
    pub public_key: VerifyingKey,
    pub origin: String,
    pub max_body_bytes: usize,
    /// Wraps new token signing keys for storage (`warrant keys rotate`).
    pub key_wrap: Arc<credentials::KeyWrap>,
    /// OAuth issuer URL (no trailing slash).
    pub issuer: String,
    pub token_lifetimes: warrant_core::credentials::Lifetimes,
    pub max_delegation_depth: usize,
    /// Whether agents may authenticate with an mTLS client certificate
    /// (`tls_client_auth`: a TLS listener with a client CA).
    pub tls_client_auth: bool,
    /// Tiered change governance settings.
    pub gov: Arc<governance::GovConfig>,
    /// Human sign-in settings.
    pub sign_in: Arc<humans::SignInConfig>,
    /// The single sign-on provider's discovered metadata.
    pub oidc: humans::oidc::Provider,
    /// Failed password sign-ins per user name.
    pub sign_in_throttle: humans::Throttle,
}

pub type AppState = Arc<Inner>;

/// A started server (before it accepts connections).
pub struct Server {
    pub state: AppState,
    pub config: Config,
    /// A bootstrap admin token generated on this start, to be shown once.
    pub new_admin_token: Option<String>,
    writer_task: tokio::task::JoinHandle<()>,
    /// The TLS listener's configuration; `None`: plain HTTP.
    tls: Option<Arc<rustls::ServerConfig>>,
}

/// How long a TLS handshake may take before the connection is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open TLS connections may take to finish after the shutdown signal.
const TLS_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

const LOG_ID_KEY: &str = "log_id";
/// The key id of the key that signs this log's checkpoints: every replica must hold it.
const SIGNING_KEY_ID_KEY: &str = "checkpoint_key_id";
/// The job lock of the periodic jobs that must run on one replica at a time.
const JOBS_LOCK: &str = "periodic-jobs";
/// The job lock of governance timers and webhook deliveries.
const GOVERNANCE_LOCK: &str = "governance-jobs";
const BOOTSTRAP_TOKEN_ID: &str = "tok_bootstrap";
const ENV_TOKEN_ID: &str = "tok_env";

impl Server {
    /// Opens the data directory and the store (SQLite there, or the configured
    /// PostgreSQL database), loads state and starts the writer.
    pub async fn start(config: Config) -> anyhow::Result<Server> {
        keys::create_private_dir(&config.data_dir)?;
        let key = keys::load_or_create(&config.keys_dir())?;
        let store: Arc<dyn Store> = match &config.database {
            Some(url) => Arc::new(
                PostgresStore::connect(url)
                    .await
                    .with_context(|| format!("cannot open `{}`", config.store_description()))?,
            ),
            None => Arc::new(
                SqliteStore::open(&config.db_path(), config.durability)
                    .await
                    .with_context(|| format!("cannot open `{}`", config.db_path().display()))?,
            ),
        };
        Self::start_with(config, store, key).await
    }

    pub async fn start_with(
        config: Config,
        store: Arc<dyn Store>,
        key: SigningKey,
    ) -> anyhow::Result<Server> {
        // Refuse a broken TLS configuration before anything else happens.
        let tls = config
            .tls
            .as_ref()
            .map(credentials::tls::server_config)
            .transpose()?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let metrics = Arc::new(metrics::Metrics::new());

        // The chain size before anything is loaded: every change from here on is reloaded
        // by the writer's first batch (another replica may write meanwhile).
        let synced_size = store.audit_head().await?.tree.size();

        // Policies in force: the newest stored version. If it no longer compiles (say,
        // after a Cedar upgrade), fail closed: deny everything until a valid one is put.
        let (bundle, version) = match store.current_policy().await? {
            None => (PolicyBundle::empty(), 0),
            Some(v) => match PolicyBundle::compile(&v.schema_text, &v.policies_text) {
                Ok(b) => (b, v.version),
                Err(e) => {
                    tracing::error!(version = v.version, error = %e, "stored policy no longer compiles; denying everything until a valid policy is put");
                    (PolicyBundle::empty(), v.version)
                }
            },
        };
        let mut snap = snapshot::Snapshot::new(Arc::new(bundle), version);
        // Roles first: an identity's entities include the entitlements of its roles.
        snap.gov =
            governance::state::Gov::load(&*store, clock.now_ms(), &config.governance.thresholds)
                .await?;
        for identity in store.all_identities().await? {
            snap.upsert_identity(identity);
        }
        let stored_tokens = store.tokens().await?;
        let mut tokens = std::collections::HashMap::new();
        for t in &stored_tokens {
            if t.revoked_ms.is_none() {
                tokens.insert(
                    t.hash,
                    snapshot::TokenInfo {
                        id: t.id.clone(),
                        name: t.name.clone(),
                        role: t.role.clone(),
                        human: t.human.clone(),
                    },
                );
            }
        }
        snap.tokens = Arc::new(tokens);
        let key_wrap = Arc::new(credentials::KeyWrap::derive(&key)?);
        let now = clock.now_ms();
        snap.kill_switches = Arc::new(store.kill_switches(false).await?);
        snap.revoked = Arc::new(
            store
                .revoked_tokens(now)
                .await?
                .into_iter()
                .map(|r| (r.jti, r.exp_ms))
                .collect(),
        );
        snap.signing = Arc::new(credentials::SigningKeys::from_rows(
            &store.token_keys().await?,
            &key_wrap,
        ));
        metrics.identities.set(snap.principals.len() as i64);
        let snapshot = Arc::new(ArcSwap::from_pointee(snap));

        // Before the writer starts: the only write outside it. The first replica to start
        // on a database names the log and its signing key; the others must agree.
        let public_key = key.verifying_key();
        let key_id = warrant_core::checkpoint::key_id(&public_key);
        let (log_id, stored_key_id) = {
            let mut tx = store.begin_write().await?;
            let log_id = tx
                .init_meta(LOG_ID_KEY, &uuid::Uuid::new_v4().to_string())
                .await?;
            let stored_key_id = tx.init_meta(SIGNING_KEY_ID_KEY, &key_id).await?;
            tx.commit().await?;
            (log_id, stored_key_id)
        };
        if stored_key_id != key_id {
            anyhow::bail!(
                "this database's checkpoints are signed with key {stored_key_id}, but this replica's key ({}) is {key_id}: every replica must use the same signing key (copy the keys directory of the first replica)",
                keys::public_key_path(&config.keys_dir()).display()
            );
        }
        let origin = format!("warrant/{log_id}");

        let (writer, writer_task) = writer::Writer::spawn(
            store.clone(),
            snapshot.clone(),
            clock.clone(),
            Arc::new(key),
            metrics.clone(),
            writer::WriterConfig {
                max_batch: config.max_batch,
                origin: origin.clone(),
                trust_domain: config.trust_domain.clone(),
                synced_size,
                key_wrap: key_wrap.clone(),
                gov: Arc::new(config.governance.clone()),
            },
        );

        let now = clock.now_ms();
        let mut new_admin_token = None;
        if let Some(secret) = &config.admin_token {
            let hash = auth::hash_token(secret);
            let current = stored_tokens.iter().find(|t| t.id == ENV_TOKEN_ID);
            if current.map(|t| (t.hash, t.revoked_ms)) != Some((hash, None)) {
                writer
                    .mutate(ops::Op::PutToken {
                        actor: "system".into(),
                        token: TokenRow {
                            id: ENV_TOKEN_ID.into(),
                            name: "admin token from WARRANT_ADMIN_TOKEN".into(),
                            hash,
                            role: "admin".into(),
                            created_ms: now,
                            revoked_ms: None,
                            human: None,
                        },
                        note: "set from WARRANT_ADMIN_TOKEN",
                        unless_active: false,
                    })
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot store admin token: {e}"))?;
            }
        } else if !stored_tokens
            .iter()
            .any(|t| t.revoked_ms.is_none() && t.role == "admin")
        {
            let secret = auth::generate_token();
            let stored = writer
                .mutate(ops::Op::PutToken {
                    actor: "system".into(),
                    token: TokenRow {
                        id: BOOTSTRAP_TOKEN_ID.into(),
                        name: "bootstrap admin token".into(),
                        hash: auth::hash_token(&secret),
                        role: "admin".into(),
                        created_ms: now,
                        revoked_ms: None,
                        human: None,
                    },
                    note: "generated on first start; shown once",
                    unless_active: true,
                })
                .await
                .map_err(|e| anyhow::anyhow!("cannot store bootstrap token: {e}"))?;
            // Another replica starting on the same new database may have been first.
            if !matches!(stored.outcome, ops::Outcome::Unchanged) {
                new_admin_token = Some(secret);
            }
        }
        // The first replica to start on a database creates the token signing key.
        writer
            .mutate(ops::Op::RotateSigningKey {
                actor: "system".into(),
                key: credentials::keys::generate(&key_wrap, now)?,
                unpublish_ms: now,
                only_if_none: true,
            })
            .await
            .map_err(|e| anyhow::anyhow!("cannot create the token signing key: {e}"))?;
        writer
            .mutate(ops::Op::System {
                payload: serde_json::json!({
                    "event": "started",
                    "version": env!("CARGO_PKG_VERSION"),
                    "listen": config.listen.to_string(),
                    "store": if config.database.is_some() { "postgres" } else { "sqlite" },
                    // PostgreSQL's durability is the database's own (synchronous_commit).
                    "durability": if config.database.is_some() {
                        "database".to_owned()
                    } else {
                        format!("{:?}", config.durability).to_lowercase()
                    },
                    "policy_version": version,
                }),
            })
            .await
            .map_err(|e| anyhow::anyhow!("cannot write the audit log: {e}"))?;

        let state = Arc::new(Inner {
            store,
            snapshot,
            writer,
            clock,
            metrics,
            public_key,
            origin,
            max_body_bytes: config.max_body_bytes,
            key_wrap,
            issuer: config.issuer.clone(),
            token_lifetimes: config.token_lifetimes,
            max_delegation_depth: config.max_delegation_depth,
            tls_client_auth: config.tls.as_ref().is_some_and(|t| t.client_ca.is_some()),
            gov: Arc::new(config.governance.clone()),
            sign_in: Arc::new(config.sign_in.clone()),
            oidc: Default::default(),
            sign_in_throttle: Default::default(),
        });
        Ok(Server {
            state,
            config,
            new_admin_token,
            writer_task,
            tls,
        })
    }

    pub fn router(&self) -> axum::Router {
        api::router(self.state.clone())
    }

    /// Serves until `shutdown` resolves; then flushes last-used times and signs a final checkpoint.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let jobs = spawn_jobs(self.state.clone(), &self.config);
        let app = self.router();
        match self.tls.clone() {
            None => axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
                .context("server error")?,
            Some(tls) => serve_tls(listener, app, tls, shutdown).await,
        }
        jobs.abort();
        flush_or_warn(&self.state).await;
        if let Err(e) = checkpoint_if_needed(&self.state).await {
            tracing::warn!(error = %e, "final checkpoint failed");
        }
        drop(self.state);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.writer_task).await;
        Ok(())
    }
}

/// The TLS accept loop: each connection's handshake and HTTP (1.1 or 2) run in a task of
/// their own, so a failed or slow handshake never stalls accepting. Requests carry the
/// connection's verified client certificate as a [`credentials::TlsPeer`] extension. On
/// the shutdown signal it stops accepting and lets open connections finish (bounded).
async fn serve_tls(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::service::TowerToHyperService;
    use tower::ServiceExt as _;

    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, remote) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment, go on.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let stream =
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        tracing::debug!(%remote, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%remote, "TLS handshake timed out");
                        return;
                    }
                };
            let peer = credentials::TlsPeer::of(stream.get_ref().1);
            let service = tower::service_fn(move |mut req: axum::http::Request<_>| {
                if let Some(peer) = &peer {
                    req.extensions_mut().insert(peer.clone());
                }
                app.clone().oneshot(req)
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(
                TokioIo::new(stream),
                TowerToHyperService::new(service),
            );
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%remote, error = %e, "TLS connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(TLS_DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("open TLS connections did not finish in time; closing them");
    }
}

/// Signs a checkpoint when records were appended since the last one.
pub async fn checkpoint_if_needed(state: &AppState) -> Result<bool, writer::WriteError> {
    let unavailable = |e: warrant_store::StoreError| writer::WriteError::Unavailable(e.to_string());
    let head = state.store.audit_head().await.map_err(unavailable)?;
    let latest = state.store.latest_checkpoint().await.map_err(unavailable)?;
    if head.tree.size() == 0 || latest.is_some_and(|c| c.size >= head.tree.size()) {
        return Ok(false);
    }
    state.writer.checkpoint().await?;
    Ok(true)
}

/// Writes last-used times that moved since the last flush, in writer jobs of
/// [`TOUCH_CHUNK`] identities. Returns how many identities were written and the longest
/// single job (the most a waiting decision was held up).
pub async fn flush_last_used(
    state: &AppState,
) -> Result<(usize, std::time::Duration), writer::WriteError> {
    let snap = state.snapshot.load();
    let pending: Vec<_> = snap
        .principals
        .values()
        .filter_map(|e| e.last_used.pending().map(|t| (e.clone(), t)))
        .collect();
    let mut longest = std::time::Duration::ZERO;
    // Small writer jobs, so decisions waiting for their audit append are never held up
    // for long behind a large flush (100,000 identities would be seconds in one job).
    for chunk in pending.chunks(TOUCH_CHUNK) {
        let used = chunk
            .iter()
            .map(|(e, t)| (e.identity.id.clone(), *t))
            .collect();
        let started = std::time::Instant::now();
        state.writer.mutate(ops::Op::Touch(used)).await?;
        longest = longest.max(started.elapsed());
        for (e, t) in chunk {
            e.last_used.flushed.fetch_max(*t, Ordering::Relaxed);
        }
    }
    Ok((pending.len(), longest))
}

async fn flush_or_warn(state: &AppState) {
    if let Err(e) = flush_last_used(state).await {
        tracing::warn!(error = %e, "cannot record last-used times");
    }
}

/// Identities per last-used writer job.
pub const TOUCH_CHUNK: usize = 256;

fn spawn_jobs(state: AppState, config: &Config) -> tokio::task::JoinHandle<()> {
    let cp_every = config.checkpoint_interval;
    let flush_every = config.last_used_flush;
    let sync_every = config.sync_interval;
    let watcher = state
        .store
        .shared()
        .then(|| spawn_change_watcher(state.clone()));
    let gov_tick = config.governance_tick;
    tokio::spawn(async move {
        let _watcher = AbortOnDrop(watcher);
        let _governance = AbortOnDrop(Some(spawn_governance_jobs(state.clone(), gov_tick)));
        let mut cp = tokio::time::interval(cp_every);
        let mut flush = tokio::time::interval(flush_every);
        let mut sync = tokio::time::interval(sync_every);
        for t in [&mut cp, &mut flush, &mut sync] {
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        let shared = state.store.shared();
        let mut jobs_lock: Option<Box<dyn warrant_store::JobLock>> = None;
        loop {
            tokio::select! {
                _ = cp.tick() => {
                    if hold_jobs_lock(&state, &mut jobs_lock).await {
                        if let Err(e) = checkpoint_if_needed(&state).await {
                            tracing::warn!(error = %e, "periodic checkpoint failed");
                        }
                        purge_expired(&state).await;
                    }
                }
                // Every replica flushes the last-used times it saw (they only move forward).
                _ = flush.tick() => flush_or_warn(&state).await,
                // The safety net under change signals: catch up even if one was missed.
                _ = sync.tick(), if shared => state.writer.request_sync(),
            }
        }
    })
}

/// The governance job: fires due timers (Tier 2 ratification, Tier 3/4 expiry) and sends
/// due webhook deliveries, on one replica at a time (its own job lock, so a slow webhook
/// never delays checkpoints).
fn spawn_governance_jobs(state: AppState, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let client = match reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the webhook client; governance timers and deliveries are not running");
                return;
            }
        };
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut lock: Option<Box<dyn warrant_store::JobLock>> = None;
        loop {
            tick.tick().await;
            if hold_lock(&state, &mut lock, GOVERNANCE_LOCK).await {
                governance::delivery::tick(&state, &client).await;
            }
        }
    })
}

/// Forgets used client assertions and revocations of tokens that expired over an hour ago
/// (a replayed assertion or a revoked token is refused by its expiry by then anyway).
async fn purge_expired(state: &AppState) {
    let before_ms = state.clock.now_ms().saturating_sub(3_600_000);
    if let Err(e) = state
        .writer
        .mutate(ops::Op::PurgeExpired { before_ms })
        .await
    {
        tracing::warn!(error = %e, "cannot purge expired assertions and revocations");
    }
}

/// Makes sure this replica holds the periodic-jobs lock if it can: checks a held lock is
/// still alive, else tries to take it. True while held.
async fn hold_jobs_lock(
    state: &AppState,
    lock: &mut Option<Box<dyn warrant_store::JobLock>>,
) -> bool {
    let held = hold_lock(state, lock, JOBS_LOCK).await;
    state.metrics.job_leader.set(i64::from(held));
    held
}

/// Holds the named job lock if it can (see [`hold_jobs_lock`]).
async fn hold_lock(
    state: &AppState,
    lock: &mut Option<Box<dyn warrant_store::JobLock>>,
    name: &str,
) -> bool {
    if let Some(held) = lock {
        if let Err(e) = held.check().await {
            tracing::warn!(error = %e, "lost the periodic-jobs lock");
            *lock = None;
        }
    }
    if lock.is_none() {
        match state.store.try_job_lock(name).await {
            Ok(Some(l)) => {
                if state.store.shared() {
                    tracing::info!(lock = name, "this replica now runs these periodic jobs");
                }
                *lock = Some(l);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot take the periodic-jobs lock"),
        }
    }
    lock.is_some()
}

/// Listens for change signals from other replicas (resubscribing after a failure) and
/// queues a catch-up in the writer for each.
fn spawn_change_watcher(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let writer = state.writer.clone();
        let on_change = move || writer.request_sync();
        loop {
            match state.store.watch_changes(&on_change).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "change subscription failed; retrying in 1s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    })
}

struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(h) = &self.0 {
            h.abort();
        }
    }
}
