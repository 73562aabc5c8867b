//! `warrant migrate-store`: copies an embedded data directory (SQLite) into an empty
//! PostgreSQL database, so that `warrant serve --database` replicas carry on the same log.
//!
//! The copy is verbatim where the audit chain depends on it: records keep their seq, leaf
//! hash and root, the head (the tree's right edge) and every signed checkpoint are copied,
//! and so are the log id (the checkpoints' origin) and the checkpoint key id. Policy
//! versions keep their numbers, identities every field, tokens their hashes. Every other
//! table is copied row for row as well: workload keys (revoked ones too), the wrapped
//! access-token signing keys (so tokens issued before keep verifying), revoked access
//! tokens, kill switches (engaged and released), used client assertions (replay
//! protection) and the governance objects.
//!
//! Safety rules:
//! - the source is opened read-only and must have this build's schema (else a table this
//!   build does not know could be left behind); the target must be empty (else nothing is
//!   written);
//! - the whole copy is one target transaction: any failure leaves the target empty;
//! - the source chain is verified while it is copied (with the data directory's public
//!   key): a source that does not verify is not copied;
//! - before committing, the source is read again: if it changed, a server is still
//!   running on it, and nothing is committed;
//! - after committing, the target is verified with the same function as
//!   `audit verify --database`, its root must equal the source's, and every copied table
//!   must hold exactly the source's rows.

use crate::offline::{self, CHUNK, LOG_ID_KEY};
use anyhow::{anyhow, bail, Context};
use ed25519_dalek::VerifyingKey;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use warrant_core::audit::ChainHead;
use warrant_core::checkpoint::Checkpoint;
use warrant_core::credentials::KillSwitch;
use warrant_core::identity::Identity;
use warrant_core::verify::ChainVerifier;
use warrant_store::postgres::PostgresStore;
use warrant_store::sqlite::SqliteStore;
use warrant_store::{
    AuditFilter, IdentityFilter, IdentityKeyRow, ObjectRow, PolicyVersion, RevokedToken, Store,
    StoreError, TokenKeyRow, TokenRow, UsedAssertion, WriteTx,
};

/// The meta key holding the id of the key that signs the checkpoints.
const KEY_ID_KEY: &str = "checkpoint_key_id";

/// `warrant migrate-store --from-data-dir DIR --to URL`.
pub async fn migrate_store(from: &Path, to: &str) -> anyhow::Result<ExitCode> {
    let source = Source::open(from).await?;
    let target = match offline::connect_postgres(to, offline::Open::Migrate).await {
        Ok(t) => t,
        Err(e) => {
            source.store.close().await;
            return Err(e);
        }
    };
    let result = migrate(&source, &target, to).await;
    source.store.close().await;
    target.close().await;
    result.map_err(|e| anyhow!("{}", offline::scrub(&format!("{e:#}"), to)))
}

/// The data directory being copied.
struct Source {
    dir: PathBuf,
    db: PathBuf,
    store: SqliteStore,
    /// The data directory's checkpoint public key.
    key: VerifyingKey,
    key_path: PathBuf,
    log_id: String,
    key_id: Option<String>,
    /// Whether `keys/` holds the private signing key the replicas will need.
    has_signing_key: bool,
}

impl Source {
    async fn open(dir: &Path) -> anyhow::Result<Source> {
        if !dir.is_dir() {
            bail!(
                "`{}` is not a directory: pass the data directory of the embedded server (its `--data-dir`)",
                dir.display()
            );
        }
        let db = dir.join("warrant.db");
        if !db.is_file() {
            bail!(
                "`{}` is not a warrant data directory: it holds no `warrant.db`",
                dir.display()
            );
        }
        let store = SqliteStore::open_read_only(&db)
            .await
            .map_err(|e| anyhow!("cannot open `{}`: {e}", db.display()))?;
        match Self::identify(dir, &db, &store).await {
            Ok((key, key_path, log_id, key_id)) => {
                let keys = dir.join("keys");
                Ok(Source {
                    dir: dir.to_owned(),
                    db,
                    store,
                    key,
                    key_path,
                    log_id,
                    key_id,
                    has_signing_key: keys.join(warrant_server::keys::SIGNING_KEY_FILE).is_file(),
                })
            }
            Err(e) => {
                store.close().await;
                Err(e)
            }
        }
    }

    /// Reads the log id and the key, and checks that `keys/` belongs to this database.
    async fn identify(
        dir: &Path,
        db: &Path,
        store: &SqliteStore,
    ) -> anyhow::Result<(VerifyingKey, PathBuf, String, Option<String>)> {
        let unreadable = |e: StoreError| {
            anyhow!(
                "cannot read `{}` (is it a warrant database?): {e}",
                db.display()
            )
        };
        check_schema(dir, db, store).await.map_err(unreadable)??;
        let log_id = store
            .meta(LOG_ID_KEY)
            .await
            .map_err(unreadable)?
            .ok_or_else(|| {
                anyhow!(
                    "`{}` holds no audit log id: no warrant server has run on this data directory",
                    db.display()
                )
            })?;
        let key_id = store.meta(KEY_ID_KEY).await.map_err(unreadable)?;
        let key_path = warrant_server::keys::public_key_path(&dir.join("keys"));
        let key = warrant_server::keys::read_public_key(&key_path)
            .context("the data directory's checkpoint public key is needed to check the copy")?;
        let actual = warrant_core::checkpoint::key_id(&key);
        if let Some(stored) = &key_id {
            if *stored != actual {
                bail!(
                    "the checkpoints of `{}` are signed with key {stored}, but `{}` is key {actual}: the keys directory belongs to another data directory",
                    db.display(),
                    key_path.display()
                );
            }
        }
        Ok((key, key_path, log_id, key_id))
    }
}

/// Refuses a source whose schema is not the one this build writes to the target: an older
/// one lacks tables the copy reads (the server upgrades it when it starts), and a newer one
/// may hold tables this build would leave behind. The inner error is the refusal.
async fn check_schema(
    dir: &Path,
    db: &Path,
    store: &SqliteStore,
) -> Result<anyhow::Result<()>, StoreError> {
    let applied = store.applied_schema_versions().await?;
    let known = SqliteStore::schema_versions();
    let newest = |v: &[i64]| v.last().copied().unwrap_or_default();
    Ok(if applied == known {
        Ok(())
    } else if applied.iter().all(|v| known.contains(v)) {
        Err(anyhow!(
            "`{}` has schema version {}, but this warrant copies version {}: start this version of `warrant serve --data-dir {}` once (it upgrades the schema), stop it, and run migrate-store again",
            db.display(),
            newest(&applied),
            newest(&known),
            dir.display()
        ))
    } else {
        Err(anyhow!(
            "`{}` has schema version {}, newer than this warrant knows ({}): run migrate-store of the warrant version that last served it",
            db.display(),
            newest(&applied),
            newest(&known)
        ))
    })
}

/// What is copied besides the records (read before the copy, again before commit to detect
/// a server still writing to the source, and from the target after commit to check the
/// copy). Each table is sorted by its key here, so both backends read alike whatever their
/// text collation.
#[derive(PartialEq)]
struct State {
    head: ChainHead,
    checkpoints: Vec<Checkpoint>,
    identities: Vec<Identity>,
    /// Oldest first.
    policies: Vec<PolicyVersion>,
    tokens: Vec<TokenRow>,
    identity_keys: Vec<IdentityKeyRow>,
    token_keys: Vec<TokenKeyRow>,
    revoked_tokens: Vec<RevokedToken>,
    kill_switches: Vec<KillSwitch>,
    used_assertions: Vec<UsedAssertion>,
    objects: Vec<ObjectRow>,
}

impl State {
    async fn read(store: &dyn Store) -> anyhow::Result<State> {
        let head = store.audit_head().await?;
        let checkpoints = store.checkpoints().await?;
        let mut identities = store.all_identities().await?;
        identities.sort_by(|a, b| a.id.cmp(&b.id));
        let mut policies = store.policy_history(u32::MAX).await?;
        policies.sort_by_key(|p| p.version);
        let mut tokens = store.tokens().await?;
        tokens.sort_by(|a, b| a.id.cmp(&b.id));
        let mut identity_keys = store.all_identity_keys().await?;
        identity_keys.sort_by(|a, b| (&a.identity_id, &a.kid).cmp(&(&b.identity_id, &b.kid)));
        let mut token_keys = store.token_keys().await?;
        token_keys.sort_by(|a, b| a.kid.cmp(&b.kid));
        let mut revoked_tokens = store.all_revoked_tokens().await?;
        revoked_tokens.sort_by(|a, b| a.jti.cmp(&b.jti));
        let mut kill_switches = store.kill_switches(true).await?;
        kill_switches.sort_by(|a, b| a.id.cmp(&b.id));
        let mut used_assertions = store.used_assertions().await?;
        used_assertions.sort_by(|a, b| (&a.client_id, &a.jti).cmp(&(&b.client_id, &b.jti)));
        let mut objects = store.all_objects_any_kind().await?;
        objects.sort_by(|a, b| (&a.kind, &a.id).cmp(&(&b.kind, &b.id)));
        Ok(State {
            head,
            checkpoints,
            identities,
            policies,
            tokens,
            identity_keys,
            token_keys,
            revoked_tokens,
            kill_switches,
            used_assertions,
            objects,
        })
    }

    /// The tables whose rows differ between `self` (the source) and `copy`, each with
    /// both row counts (the audit records and head are checked by the verifier).
    fn differences(&self, copy: &State) -> Vec<String> {
        fn table<T: PartialEq>(out: &mut Vec<String>, name: &str, source: &[T], copy: &[T]) {
            if source != copy {
                out.push(format!(
                    "{name} ({} in the source, {} in the copy{})",
                    source.len(),
                    copy.len(),
                    if source.len() == copy.len() {
                        ", with different contents"
                    } else {
                        ""
                    }
                ));
            }
        }
        let mut out = Vec::new();
        table(
            &mut out,
            "checkpoints",
            &self.checkpoints,
            &copy.checkpoints,
        );
        table(&mut out, "identities", &self.identities, &copy.identities);
        table(&mut out, "policy versions", &self.policies, &copy.policies);
        table(&mut out, "API tokens", &self.tokens, &copy.tokens);
        table(
            &mut out,
            "workload keys",
            &self.identity_keys,
            &copy.identity_keys,
        );
        table(
            &mut out,
            "token signing keys",
            &self.token_keys,
            &copy.token_keys,
        );
        table(
            &mut out,
            "revoked access tokens",
            &self.revoked_tokens,
            &copy.revoked_tokens,
        );
        table(
            &mut out,
            "kill switches",
            &self.kill_switches,
            &copy.kill_switches,
        );
        table(
            &mut out,
            "used client assertions",
            &self.used_assertions,
            &copy.used_assertions,
        );
        table(&mut out, "governance objects", &self.objects, &copy.objects);
        out
    }

    /// `N objects (kind n, ...)` for the summary.
    fn objects_summary(&self) -> String {
        let mut kinds: Vec<(&str, usize)> = Vec::new();
        for o in &self.objects {
            match kinds.last_mut() {
                Some((kind, n)) if *kind == o.kind => *n += 1,
                _ => kinds.push((&o.kind, 1)),
            }
        }
        let mut out = format!(
            "{} object{}",
            self.objects.len(),
            if self.objects.len() == 1 { "" } else { "s" }
        );
        if !kinds.is_empty() {
            let by_kind: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
            out.push_str(&format!(" ({})", by_kind.join(", ")));
        }
        out
    }
}

async fn migrate(source: &Source, target: &PostgresStore, url: &str) -> anyhow::Result<ExitCode> {
    let shown = offline::shown_url(url);
    let state = State::read(&source.store)
        .await
        .with_context(|| format!("cannot read `{}`", source.db.display()))?;
    ensure_empty(target, &shown).await?;

    // One transaction: on any error below it is dropped, i.e. rolled back.
    let mut tx = target
        .begin_write()
        .await
        .with_context(|| format!("cannot write to {shown}"))?;
    copy(source, &state, tx.as_mut(), &shown).await?;
    // A server still running on the source would have moved on meanwhile (each change
    // appends a record; checkpoints and last-used times change too).
    let again = State::read(&source.store)
        .await
        .with_context(|| format!("cannot read `{}` again", source.db.display()))?;
    if again != state {
        bail!(
            "`{}` changed while it was being copied: a server is still running on it. Stop it (and anything else that writes there) and run migrate-store again; nothing was written to {shown}",
            source.dir.display()
        );
    }
    tx.commit()
        .await
        .with_context(|| {
            format!(
                "cannot commit the copy to {shown}: normally nothing was written, but if the connection broke during the commit, check with `warrant audit verify --database` whether the copy is there before running migrate-store again"
            )
        })?;

    // The copy, as any verifier will see it.
    let report = offline::verify_store(target, &[source.key], &[])
        .await
        .with_context(|| format!("cannot verify the copy in {shown}"))?;
    let source_root = state.head.tree.root();
    let target_head = target.audit_head().await?;
    if !report.ok() {
        offline::print_report(&report);
        eprintln!(
            "error: the copy in {shown} does not verify (see above), although the source did. Do not start servers on it; drop and recreate the database before trying again"
        );
        return Ok(ExitCode::FAILURE);
    }
    if report.root != Some(source_root) || target_head != state.head {
        bail!(
            "the copy in {shown} verifies but ends at root {} ({} records) instead of the source's {} ({} records). Do not start servers on it; drop and recreate the database before trying again",
            report.root.map(hex::encode).unwrap_or_default(),
            report.records,
            hex::encode(source_root),
            state.head.tree.size()
        );
    }
    // Every other table, row for row (and the log's identity).
    let copied = State::read(target)
        .await
        .with_context(|| format!("cannot read the copy in {shown} back"))?;
    let mut differ = state.differences(&copied);
    if target.meta(LOG_ID_KEY).await?.as_deref() != Some(source.log_id.as_str()) {
        differ.push("the log id".to_owned());
    }
    if target.meta(KEY_ID_KEY).await? != source.key_id {
        differ.push("the checkpoint key id".to_owned());
    }
    if !differ.is_empty() {
        bail!(
            "the copy in {shown} verifies, but these differ from the source: {}. Do not start servers on it; drop and recreate the database before trying again",
            differ.join(", ")
        );
    }

    println!("ok: copied `{}` into {shown}", source.dir.display());
    println!("  audit records:    {} (verified)", report.records);
    println!("  checkpoints:      {}", report.checkpoints);
    println!("  identities:       {}", state.identities.len());
    println!("  policy versions:  {}", state.policies.len());
    println!("  API tokens:       {}", state.tokens.len());
    println!(
        "  workload keys:    {} ({} revoked)",
        state.identity_keys.len(),
        state
            .identity_keys
            .iter()
            .filter(|k| k.revoked_ms.is_some())
            .count()
    );
    println!(
        "  signing keys:     {} (access tokens; {} retired)",
        state.token_keys.len(),
        state
            .token_keys
            .iter()
            .filter(|k| k.retired_ms.is_some())
            .count()
    );
    println!("  revoked tokens:   {}", state.revoked_tokens.len());
    println!(
        "  kill switches:    {} ({} engaged)",
        state.kill_switches.len(),
        state
            .kill_switches
            .iter()
            .filter(|k| k.released_ms.is_none())
            .count()
    );
    println!("  used assertions:  {}", state.used_assertions.len());
    println!("  governance:       {}", state.objects_summary());
    println!("  log id:           {}", source.log_id);
    println!("  root:             {}", hex::encode(source_root));
    println!();
    println!("next steps:");
    println!(
        "  1. copy `{}` (the checkpoint signing key, which also unwraps the access-token signing keys; keep it private) into the data directory of every replica",
        source.dir.join("keys").display()
    );
    println!(
        "  2. start every replica with `warrant serve --data-dir <its data dir> --database <URL>` (or WARRANT_DATABASE)"
    );
    println!(
        "  3. keep a copy of `{}` apart from the database and check the log with `warrant audit verify --database <URL> --public-key <that copy>`",
        source.key_path.display()
    );
    println!(
        "  4. do not start a server on `{}` again: its log would fork from the database's",
        source.dir.display()
    );
    if !source.has_signing_key {
        eprintln!(
            "warning: `{}` holds no signing key ({}): replicas cannot sign checkpoints of this log, nor use the copied access-token signing keys, without it",
            source.dir.join("keys").display(),
            warrant_server::keys::SIGNING_KEY_FILE
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Refuses a target that holds anything of a warrant store (before anything is written).
async fn ensure_empty(target: &PostgresStore, shown: &str) -> anyhow::Result<()> {
    let unreadable = |e: StoreError| anyhow!("cannot read {shown}: {e}");
    let mut found = Vec::new();
    let head = target.audit_head().await.map_err(unreadable)?;
    let one = AuditFilter {
        limit: 1,
        ..Default::default()
    };
    if head.tree.size() > 0
        || !target
            .audit_records(&one)
            .await
            .map_err(unreadable)?
            .is_empty()
    {
        found.push("audit records");
    }
    let one = IdentityFilter {
        limit: 1,
        ..Default::default()
    };
    if !target
        .list_identities(&one)
        .await
        .map_err(unreadable)?
        .is_empty()
    {
        found.push("identities");
    }
    if !target
        .policy_history(1)
        .await
        .map_err(unreadable)?
        .is_empty()
    {
        found.push("policy versions");
    }
    if !target.tokens().await.map_err(unreadable)?.is_empty() {
        found.push("API tokens");
    }
    if !target
        .all_identity_keys()
        .await
        .map_err(unreadable)?
        .is_empty()
    {
        found.push("workload keys");
    }
    if !target.token_keys().await.map_err(unreadable)?.is_empty() {
        found.push("token signing keys");
    }
    if !target
        .all_revoked_tokens()
        .await
        .map_err(unreadable)?
        .is_empty()
    {
        found.push("revoked access tokens");
    }
    if !target
        .kill_switches(true)
        .await
        .map_err(unreadable)?
        .is_empty()
    {
        found.push("kill switches");
    }
    if !target
        .used_assertions()
        .await
        .map_err(unreadable)?
        .is_empty()
    {
        found.push("used client assertions");
    }
    if !target
        .all_objects_any_kind()
        .await
        .map_err(unreadable)?
        .is_empty()
    {
        found.push("governance objects");
    }
    if target
        .latest_checkpoint()
        .await
        .map_err(unreadable)?
        .is_some()
    {
        found.push("checkpoints");
    }
    if target.meta(LOG_ID_KEY).await.map_err(unreadable)?.is_some() {
        found.push("a log id");
    }
    if !found.is_empty() {
        bail!(
            "{shown} is not empty (it holds {}): migrate-store only fills an empty database. Nothing was written; create a new database and pass its URL",
            found.join(", ")
        );
    }
    Ok(())
}

/// Writes everything into `tx`, verifying the source chain as it streams by. Commits
/// nothing: the caller does, once the source is known not to have changed.
async fn copy(
    source: &Source,
    state: &State,
    tx: &mut dyn WriteTx,
    shown: &str,
) -> anyhow::Result<()> {
    let written = |e: StoreError| anyhow!("cannot write to {shown}: {e}; nothing was written");
    // Takes the head lock: a server started on the target meanwhile waits.
    let head = tx.load_chain_head().await.map_err(written)?;
    if head.tree.size() != 0 || tx.current_policy().await.map_err(written)?.is_some() {
        bail!("{shown} is no longer empty (another writer?); nothing was written");
    }

    tx.set_meta(LOG_ID_KEY, &source.log_id)
        .await
        .map_err(written)?;
    if let Some(key_id) = &source.key_id {
        tx.set_meta(KEY_ID_KEY, key_id).await.map_err(written)?;
    }

    for p in &state.policies {
        let version = tx
            .insert_policy_version(
                &p.schema_text,
                &p.policies_text,
                p.created_ms,
                &p.actor,
                &p.comment,
            )
            .await
            .map_err(written)?;
        if version != p.version {
            bail!(
                "policy version {} of the source would become version {version} in {shown} (the source's versions are not numbered 1, 2, 3, ...); nothing was written",
                p.version
            );
        }
    }
    for identity in &state.identities {
        tx.insert_identity(identity).await.map_err(|e| {
            anyhow!(
                "cannot copy identity `{}` to {shown}: {e}; nothing was written",
                identity.id
            )
        })?;
    }
    for token in &state.tokens {
        tx.upsert_token(token).await.map_err(written)?;
    }
    // Credentials: every row as it is, original times included (revoked keys, retired
    // signing keys, released switches, expired revocations not purged yet alike).
    for key in &state.identity_keys {
        tx.insert_identity_key(key).await.map_err(written)?;
    }
    for key in &state.token_keys {
        tx.insert_token_key(key).await.map_err(written)?;
    }
    for revoked in &state.revoked_tokens {
        if !tx.revoke_token(revoked).await.map_err(written)? {
            bail!(
                "revoked access token `{}` is in the source twice; nothing was written",
                revoked.jti
            );
        }
    }
    for switch in &state.kill_switches {
        tx.insert_kill_switch(switch).await.map_err(written)?;
    }
    for used in &state.used_assertions {
        if !tx
            .use_assertion(&used.client_id, &used.jti, used.exp_ms)
            .await
            .map_err(written)?
        {
            bail!(
                "used assertion `{}` of `{}` is in the source twice; nothing was written",
                used.jti,
                used.client_id
            );
        }
    }
    for object in &state.objects {
        tx.insert_object(object).await.map_err(|e| {
            anyhow!(
                "cannot copy governance object {}/{} to {shown}: {e}; nothing was written",
                object.kind,
                object.id
            )
        })?;
    }

    // The records below the head read above (a server still writing appends beyond it;
    // that is caught before commit), checked by the verifier as they go by.
    let size = state.head.tree.size();
    let mut verifier = ChainVerifier::new(state.checkpoints.clone(), &[source.key]);
    let bar = offline::records_bar(size, "copying");
    let mut next: u64 = 0;
    while next < size && !verifier.broken() {
        let mut chunk = source
            .store
            .audit_records(&AuditFilter {
                from_seq: Some(next),
                limit: CHUNK,
                ..Default::default()
            })
            .await
            .map_err(|e| anyhow!("cannot read records from {next} of the source: {e}"))?;
        chunk.retain(|r| r.seq < size);
        let Some(last) = chunk.last().map(|r| r.seq) else {
            break;
        };
        for r in &chunk {
            verifier.push(r);
        }
        if verifier.broken() {
            break;
        }
        tx.append_records(&chunk).await.map_err(written)?;
        bar.set_position(verifier.size());
        next = last + 1;
    }
    bar.finish_and_clear();
    let report = verifier.finish(Some(size));
    if !report.ok() {
        offline::print_report(&report);
        bail!(
            "the audit log in `{}` does not verify (see above), so it is not copied; nothing was written. Check it with `warrant audit verify --data-dir {}`",
            source.dir.display(),
            source.dir.display()
        );
    }
    if report.root != Some(state.head.tree.root()) {
        bail!(
            "the audit head of `{}` does not match its records; nothing was written",
            source.db.display()
        );
    }

    tx.store_chain_head(&state.head).await.map_err(written)?;
    for cp in &state.checkpoints {
        tx.insert_checkpoint(cp).await.map_err(written)?;
    }
    Ok(())
}
