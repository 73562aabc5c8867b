//! `warrant-store`: the storage seam.
//!
//! All SQL in warrant lives behind the [`Store`] and [`WriteTx`] traits defined here. The
//! domain ([`warrant_core`]) and the HTTP edge never see SQL; a backend only stores and
//! loads domain values. Backends: [`sqlite`] (the embedded default) and [`postgres`] (several
//! replicas on one database); the statements they share live in one place (`sql`). Each
//! backend carries its own versioned migrations (`migrations/<backend>/`).
//!
//! INVARIANT: every write goes through a [`WriteTx`], and a change and the audit records
//! that describe it commit in the same transaction or not at all.

pub mod postgres;
mod sql;
pub mod sqlite;

use async_trait::async_trait;
use warrant_core::audit::{AuditRecord, ChainHead};
use warrant_core::checkpoint::Checkpoint;
use warrant_core::credentials::KillSwitch;
use warrant_core::identity::Identity;
use warrant_core::merkle::Hash;
use warrant_core::Millis;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unique {
    SpiffeId,
    NameEnvironment,
    Other(String),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule refused the write.
    #[error("conflict: {0:?}")]
    Conflict(Unique),
    /// The database cannot be reached or refused the operation.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Stored data cannot be decoded into domain values.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A stored version of the policy bundle (schema + policies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyVersion {
    pub version: u64,
    pub schema_text: String,
    pub policies_text: String,
    pub created_ms: Millis,
    pub actor: String,
    pub comment: String,
}

/// An API token as stored: only the SHA-256 of the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub id: String,
    pub name: String,
    pub hash: Hash,
    pub role: String,
    pub created_ms: Millis,
    pub revoked_ms: Option<Millis>,
    /// The named human the token belongs to, if any.
    pub human: Option<String>,
}

/// A governance object as stored (an AI capability, a proposal, a role, a resource, a
/// tier-policy version, a webhook delivery, ...): the body is the object's JSON (the
/// server owns its shape); the other columns are what objects are looked up by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRow {
    /// What the object is (`capability`, `proposal`, ...); `(kind, id)` is unique.
    pub kind: String,
    /// Time-sortable: id order is creation order.
    pub id: String,
    /// Kind-specific state (`pending`, `executed`, ...), for filtering.
    pub state: String,
    pub body: String,
    /// When a timer on this object fires (`None`: no timer).
    pub due_ms: Option<Millis>,
    pub created_ms: Millis,
    pub updated_ms: Millis,
}

/// Which objects to list: one kind, optionally one state, ordered by id, after a cursor.
#[derive(Debug, Clone, Default)]
pub struct ObjectFilter {
    pub kind: String,
    pub state: Option<String>,
    /// Return objects whose id sorts after this one (keyset pagination).
    pub after_id: Option<String>,
    /// At most this many; 0 means no limit.
    pub limit: u32,
}

/// A change recorded in the audit log (any record but a decision): what another replica
/// must reload to catch up. `subject` names the changed object (`identity:<id>`,
/// `policy:<version>`, `token:<id>`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRef {
    pub seq: u64,
    pub kind: String,
    pub subject: String,
}

/// Exclusive right to run one periodic job (checkpoints, timers) across every replica
/// that shares the database. Released when dropped, or by the database when the holder
/// dies (its session ends).
#[async_trait]
pub trait JobLock: Send {
    /// Checks that the lock is still held (the session that holds it is alive). An error
    /// means it is lost: stop running the job and try to acquire it again.
    async fn check(&mut self) -> Result<()>;
}

/// A public key an identity authenticates with (a JWK, as JSON text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityKeyRow {
    pub identity_id: String,
    pub kid: String,
    pub jwk: String,
    pub added_ms: Millis,
    pub revoked_ms: Option<Millis>,
}

/// A key that signs access tokens: its public JWK and its private key, wrapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenKeyRow {
    pub kid: String,
    pub alg: String,
    pub public_jwk: String,
    pub wrapped_private: Vec<u8>,
    pub created_ms: Millis,
    /// Signs no more tokens from then on.
    pub retired_ms: Option<Millis>,
    /// Leaves the JWKS then (every token it signed has expired).
    pub unpublish_ms: Option<Millis>,
}

/// An access token revoked before its expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedToken {
    pub jti: String,
    pub exp_ms: Millis,
    pub revoked_ms: Millis,
}

/// A client assertion's `jti`, recorded as used (kept until the assertion expires).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsedAssertion {
    pub client_id: String,
    pub jti: String,
    pub exp_ms: Millis,
}

#[derive(Debug, Clone, Default)]
pub struct IdentityFilter {
    pub kind: Option<String>,
    pub environment: Option<String>,
    pub state: Option<String>,
    pub owner: Option<String>,
    /// Return identities whose id sorts after this one (keyset pagination).
    pub after: Option<String>,
    pub limit: u32,
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub kind: Option<String>,
    pub actor: Option<String>,
    pub subject: Option<String>,
    pub from_ms: Option<Millis>,
    pub to_ms: Option<Millis>,
    /// Records with seq greater than or equal to this.
    pub from_seq: Option<u64>,
    /// Newest first instead of oldest first.
    pub descending: bool,
    pub limit: u32,
}

/// Read access plus the entry point to writes.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Starts a write transaction. Only one writer runs at a time.
    async fn begin_write(&self) -> Result<Box<dyn WriteTx>>;

    /// A cheap round trip to check that the database answers.
    async fn ping(&self) -> Result<()>;

    async fn get_identity(&self, id: &str) -> Result<Option<Identity>>;
    async fn list_identities(&self, filter: &IdentityFilter) -> Result<Vec<Identity>>;
    /// Every identity (to build the decision snapshot at start-up).
    async fn all_identities(&self) -> Result<Vec<Identity>>;

    async fn current_policy(&self) -> Result<Option<PolicyVersion>>;
    async fn policy_version(&self, version: u64) -> Result<Option<PolicyVersion>>;
    /// Newest first.
    async fn policy_history(&self, limit: u32) -> Result<Vec<PolicyVersion>>;

    async fn tokens(&self) -> Result<Vec<TokenRow>>;

    async fn audit_records(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>>;
    async fn audit_record(&self, seq: u64) -> Result<Option<AuditRecord>>;
    /// Leaf hashes of records `0..size`, in order (for inclusion proofs).
    async fn audit_leaf_hashes(&self, size: u64) -> Result<Vec<Hash>>;
    async fn audit_head(&self) -> Result<ChainHead>;
    async fn checkpoints(&self) -> Result<Vec<Checkpoint>>;
    async fn latest_checkpoint(&self) -> Result<Option<Checkpoint>>;

    async fn meta(&self, key: &str) -> Result<Option<String>>;

    /// The keys an identity registered (revoked ones included), oldest first.
    async fn identity_keys(&self, identity_id: &str) -> Result<Vec<IdentityKeyRow>>;
    /// Every access-token signing key, oldest first.
    async fn token_keys(&self) -> Result<Vec<TokenKeyRow>>;
    /// Revoked access tokens that have not expired at `now_ms`.
    async fn revoked_tokens(&self, now_ms: Millis) -> Result<Vec<RevokedToken>>;
    /// Kill switches, newest first; released ones only when asked for.
    async fn kill_switches(&self, include_released: bool) -> Result<Vec<KillSwitch>>;
    /// The keys of every identity (revoked ones included), by identity id, then oldest
    /// first (to copy a store).
    async fn all_identity_keys(&self) -> Result<Vec<IdentityKeyRow>>;
    /// Every stored revocation, also of tokens that expired and are not purged yet, oldest
    /// first (to copy a store; [`Store::revoked_tokens`] leaves the expired ones out).
    async fn all_revoked_tokens(&self) -> Result<Vec<RevokedToken>>;
    /// Every client assertion recorded as used and not purged yet, by client id and `jti`
    /// (to copy a store).
    async fn used_assertions(&self) -> Result<Vec<UsedAssertion>>;

    /// One governance object.
    async fn get_object(&self, kind: &str, id: &str) -> Result<Option<ObjectRow>>;
    /// Objects of one kind (and state, if given), by id ascending, after the cursor.
    async fn list_objects(&self, filter: &ObjectFilter) -> Result<Vec<ObjectRow>>;
    /// Every object of one kind, by id ascending (to load the server's state at start-up).
    async fn all_objects(&self, kind: &str) -> Result<Vec<ObjectRow>>;
    /// Every object of every kind, by kind, then id (to copy a store).
    async fn all_objects_any_kind(&self) -> Result<Vec<ObjectRow>>;
    /// Objects of any kind whose timer is due (`due_ms <= now_ms`), by `due_ms`, then
    /// kind and id; at most `limit` (0: no limit). Objects without a timer never are.
    async fn due_objects(&self, now_ms: Millis, limit: u32) -> Result<Vec<ObjectRow>>;

    /// True when several replicas may share this store (their changes must be picked up).
    fn shared(&self) -> bool;

    /// Waits for change signals from other replicas and calls `on_change` for each, and
    /// once after every (re)subscription (signals may have been missed meanwhile). Returns
    /// `Ok` at once for a store no other replica can write; returns `Err` when the
    /// subscription breaks (the caller retries).
    async fn watch_changes(&self, on_change: &(dyn Fn() + Send + Sync)) -> Result<()>;

    /// Tries to take the lock for job `name` without waiting: `None` while another
    /// replica holds it.
    async fn try_job_lock(&self, name: &str) -> Result<Option<Box<dyn JobLock>>>;
}

/// One write transaction. Dropping it without [`WriteTx::commit`] rolls everything back.
#[async_trait]
pub trait WriteTx: Send {
    /// Marks a point the transaction can return to (one level).
    async fn savepoint(&mut self) -> Result<()>;
    async fn release_savepoint(&mut self) -> Result<()>;
    async fn rollback_to_savepoint(&mut self) -> Result<()>;

    /// Reads the chain head inside this transaction (serializing appenders).
    async fn load_chain_head(&mut self) -> Result<ChainHead>;
    async fn store_chain_head(&mut self, head: &ChainHead) -> Result<()>;
    /// The changes (records other than decisions) with `seq >= from_seq`, in order.
    async fn changes_since(&mut self, from_seq: u64) -> Result<Vec<ChangeRef>>;
    /// Signals other replicas, once this transaction commits, that state changed.
    /// Nothing to do for a store no other replica can write.
    async fn notify_changed(&mut self) -> Result<()>;
    async fn append_records(&mut self, records: &[AuditRecord]) -> Result<()>;
    async fn insert_checkpoint(&mut self, cp: &Checkpoint) -> Result<()>;

    async fn get_identity(&mut self, id: &str) -> Result<Option<Identity>>;
    /// The identity with this name in this environment, retired ones included.
    async fn identity_named(&mut self, name: &str, environment: &str) -> Result<Option<Identity>>;
    async fn insert_identity(&mut self, identity: &Identity) -> Result<()>;
    async fn update_identity(&mut self, identity: &Identity) -> Result<()>;
    /// Records last-used times (only ever moves them forward).
    async fn touch_identities(&mut self, used: &[(String, Millis)]) -> Result<()>;

    /// Stores a new policy version and returns its number.
    async fn insert_policy_version(
        &mut self,
        schema_text: &str,
        policies_text: &str,
        created_ms: Millis,
        actor: &str,
        comment: &str,
    ) -> Result<u64>;

    async fn current_policy(&mut self) -> Result<Option<PolicyVersion>>;

    async fn get_token(&mut self, id: &str) -> Result<Option<TokenRow>>;
    async fn upsert_token(&mut self, token: &TokenRow) -> Result<()>;
    async fn set_meta(&mut self, key: &str, value: &str) -> Result<()>;
    /// Sets `key` to `value` unless it has a value already; returns the value in force.
    async fn init_meta(&mut self, key: &str, value: &str) -> Result<String>;

    /// Registers a public key; `Conflict` if the identity has a key with that kid.
    async fn insert_identity_key(&mut self, key: &IdentityKeyRow) -> Result<()>;
    /// Marks a key revoked; false if there is no such unrevoked key.
    async fn revoke_identity_key(
        &mut self,
        identity_id: &str,
        kid: &str,
        at: Millis,
    ) -> Result<bool>;
    /// Records a client assertion's `jti` as used; false if it was used before (a replay).
    async fn use_assertion(&mut self, client_id: &str, jti: &str, exp_ms: Millis) -> Result<bool>;
    async fn token_keys(&mut self) -> Result<Vec<TokenKeyRow>>;
    async fn insert_token_key(&mut self, key: &TokenKeyRow) -> Result<()>;
    /// Retires every signing key still signing (as of `at`), to leave the JWKS at `unpublish_ms`.
    async fn retire_token_keys(&mut self, at: Millis, unpublish_ms: Millis) -> Result<()>;
    /// Records a revocation (idempotent: a second one changes nothing); false if it was
    /// already revoked.
    async fn revoke_token(&mut self, token: &RevokedToken) -> Result<bool>;
    async fn revoked_token(&mut self, jti: &str) -> Result<Option<RevokedToken>>;
    async fn insert_kill_switch(&mut self, switch: &KillSwitch) -> Result<()>;
    async fn get_kill_switch(&mut self, id: &str) -> Result<Option<KillSwitch>>;
    /// Stores the release fields of a switch.
    async fn update_kill_switch(&mut self, switch: &KillSwitch) -> Result<()>;
    /// Deletes used assertions and revocations of tokens that expired before `before_ms`.
    async fn purge_expired(&mut self, before_ms: Millis) -> Result<u64>;

    /// One governance object, as this transaction sees it.
    async fn get_object(&mut self, kind: &str, id: &str) -> Result<Option<ObjectRow>>;
    /// Stores an object, new or changed (by `(kind, id)`); a changed one keeps its
    /// original `created_ms`. Text with a NUL character is refused (`Corrupt`): no
    /// backend stores it alike.
    async fn put_object(&mut self, row: &ObjectRow) -> Result<()>;
    /// Stores a new object; `Conflict` if one with this `(kind, id)` exists. NUL
    /// characters are refused as by [`WriteTx::put_object`].
    async fn insert_object(&mut self, row: &ObjectRow) -> Result<()>;

    async fn commit(self: Box<Self>) -> Result<()>;
}
