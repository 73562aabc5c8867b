//! Offline commands: `policy validate` and `audit verify` need no server.
//!
//! `audit verify` reads the log straight from the store, a data directory's SQLite file or
//! a PostgreSQL database (`--database`); both go through [`verify_store`], which
//! `migrate-store` also uses to check its copy.

use anyhow::{anyhow, bail, Context};
use ed25519_dalek::VerifyingKey;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use warrant_core::checkpoint::Checkpoint;
use warrant_core::verify::{ChainVerifier, Report};
use warrant_server::config::redact_url;
use warrant_store::postgres::PostgresStore;
use warrant_store::sqlite::SqliteStore;
use warrant_store::{AuditFilter, Store};

pub fn validate(file: &Path, schema: Option<&Path>) -> anyhow::Result<ExitCode> {
    let policies = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read `{}`", file.display()))?;
    let result = match schema {
        Some(s) => {
            let schema = std::fs::read_to_string(s)
                .with_context(|| format!("cannot read `{}`", s.display()))?;
            warrant_policy::PolicyBundle::compile(&schema, &policies).map(|b| b.policy_ids())
        }
        None => warrant_policy::check_syntax(&policies),
    };
    match result {
        Ok(ids) => {
            println!(
                "ok: {} polic{} valid{}: {}",
                ids.len(),
                if ids.len() == 1 { "y" } else { "ies" },
                if schema.is_some() {
                    " against the schema"
                } else {
                    " (syntax only; pass --schema to type-check)"
                },
                ids.join(", ")
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            for d in &e.diagnostics {
                let file_name = match d.source {
                    warrant_policy::SourceKind::Schema => schema.unwrap_or(file),
                    warrant_policy::SourceKind::Policies => file,
                };
                match (d.line, d.column) {
                    (Some(l), Some(c)) => {
                        eprintln!("{}:{l}:{c}: error: {}", file_name.display(), d.message)
                    }
                    _ => eprintln!("{}: error: {}", file_name.display(), d.message),
                }
                if let Some(p) = &d.policy_id {
                    eprintln!("  in policy `{p}`");
                }
                if let Some(sn) = &d.snippet {
                    eprintln!("  | {sn}");
                }
                if let Some(h) = &d.help {
                    eprintln!("  help: {h}");
                }
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Records read per round trip when streaming the log.
pub const CHUNK: u32 = 5000;

/// The meta key naming the log (checkpoint origin `warrant/<log_id>`).
pub const LOG_ID_KEY: &str = "log_id";

/// `audit verify --data-dir`: the embedded SQLite database of a data directory, checked
/// against `public_key` or else the key in the data directory.
pub async fn verify(
    data_dir: &Path,
    public_key: Option<&Path>,
    kept: &[Checkpoint],
) -> anyhow::Result<ExitCode> {
    let db = data_dir.join("warrant.db");
    let store = SqliteStore::open_read_only(&db)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let key_path = match public_key {
        Some(p) => p.to_owned(),
        None => {
            let p = warrant_server::keys::public_key_path(&data_dir.join("keys"));
            eprintln!(
                "note: checking checkpoint signatures with the key in the data directory ({}); pass --public-key with a copy kept elsewhere for independent assurance",
                p.display()
            );
            p
        }
    };
    let report = match warrant_server::keys::read_public_key(&key_path) {
        Ok(key) => verify_store(&store, &[key], kept).await,
        Err(e) => Err(e),
    };
    store.close().await;
    Ok(print_report(&report?))
}

/// `audit verify --database`: a PostgreSQL database. Nothing in the database can vouch
/// for the checkpoint key, so the pinned public key is required.
pub async fn verify_database(
    url: &str,
    public_key: Option<&Path>,
    kept: &[Checkpoint],
) -> anyhow::Result<ExitCode> {
    let shown = shown_url(url);
    let Some(key_path) = public_key else {
        bail!(
            "--public-key is required with --database: pass the copy of the data directory's `keys/{}` that you keep apart from the database (a key read from the database it vouches for would prove nothing)",
            warrant_server::keys::PUBLIC_KEY_FILE
        );
    };
    let key = warrant_server::keys::read_public_key(key_path)?;
    let store = connect_postgres(url, Open::ReadOnly).await?;
    let report = async {
        // Every warrant server names its log on first start: without a name this is not
        // (yet) a warrant database, and "0 records verified" would mislead.
        let log_id = store
            .meta(LOG_ID_KEY)
            .await
            .map_err(|e| anyhow!("cannot read `{shown}`: {}", scrub(&e.to_string(), url)))?;
        if log_id.is_none() {
            bail!("`{shown}` holds no warrant audit log (no log id): is it the right database?");
        }
        verify_store(&store, &[key], kept)
            .await
            .map_err(|e| anyhow!("{}", scrub(&format!("{e:#}"), url)))
    }
    .await;
    store.close().await;
    Ok(print_report(&report?))
}

/// How an offline tool opens a PostgreSQL database.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Open {
    /// An existing warrant database, read-only sessions, no migrations (verify).
    ReadOnly,
    /// Run the migrations first (the target of a migration).
    Migrate,
}

/// Opens a PostgreSQL store for the offline tools, with errors that name the database
/// without its password.
pub async fn connect_postgres(url: &str, open: Open) -> anyhow::Result<PostgresStore> {
    let shown = shown_url(url);
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        bail!(
            "{shown} is not a PostgreSQL URL: expected postgres://user:password@host:port/database"
        );
    }
    let store = match open {
        Open::ReadOnly => PostgresStore::connect_read_only(url).await,
        Open::Migrate => PostgresStore::connect(url).await,
    };
    store.map_err(|e| anyhow!("cannot open {shown}: {}", scrub(&e.to_string(), url)))
}

/// A database URL as it may be shown: quoted, password masked. A value that is not a
/// URL at all is not echoed (it might be a bare password or connection string).
pub fn shown_url(url: &str) -> String {
    if url.contains("://") {
        format!("`{}`", redact_url(url))
    } else {
        "the database value".to_owned()
    }
}

/// Removes the URL's password (as written and percent-decoded) from an error message.
pub fn scrub(message: &str, url: &str) -> String {
    let Some(password) = password_of(url) else {
        return message.to_owned();
    };
    let mut out = message.replace(password, "***");
    let decoded = percent_decode(password);
    if !decoded.is_empty() {
        out = out.replace(&decoded, "***");
    }
    out
}

/// The password in `scheme://user:password@host/...`, if any (userinfo ends at the last
/// `@` before the first `/`, as in `redact_url`).
fn password_of(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split('/').next().unwrap_or_default();
    let (userinfo, _) = authority.rsplit_once('@')?;
    let (_, password) = userinfo.split_once(':')?;
    (!password.is_empty()).then_some(password)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A progress bar over `len` audit records (drawn on stderr, hidden when it is not a
/// terminal).
pub fn records_bar(len: u64, verb: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{verb} {{bar:40}} {{pos}}/{{len}} records ({{per_sec}}, eta {{eta}})"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Reads signed checkpoints kept outside the log: files written by `warrant audit
/// checkpoints --out` (a JSON array as served by `GET /v1/audit/checkpoints`) or single
/// checkpoints (`warrant audit checkpoint -o json`). Each is
/// rebuilt from its signed text, so only what the signature covers is believed.
pub fn read_kept_checkpoints(paths: &[PathBuf]) -> anyhow::Result<Vec<Checkpoint>> {
    use base64::Engine as _;
    let mut kept = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read `{}`", path.display()))?;
        let not_checkpoints = || {
            anyhow!(
                "`{}` is not a JSON array of checkpoints (as written by `warrant audit checkpoints --out`) or one checkpoint (`warrant audit checkpoint -o json`)",
                path.display()
            )
        };
        let items = match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(serde_json::Value::Array(items)) => items,
            Ok(one) if one.get("signed_message").is_some() => vec![one],
            _ => return Err(not_checkpoints()),
        };
        for (n, item) in items.iter().enumerate() {
            let field = |name: &str| {
                item.get(name)
                    .and_then(|v| v.as_str())
                    .ok_or_else(|| anyhow!("`{}`: checkpoint {n} has no `{name}`", path.display()))
            };
            let signature: [u8; 64] = base64::engine::general_purpose::STANDARD
                .decode(field("signature")?)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| {
                    anyhow!(
                        "`{}`: checkpoint {n}: `signature` is not a base64 Ed25519 signature",
                        path.display()
                    )
                })?;
            let cp = Checkpoint::from_signed_message(
                field("signed_message")?,
                field("key_id")?,
                signature,
            )
            .map_err(|e| anyhow!("`{}`: checkpoint {n}: {e}", path.display()))?;
            kept.push(cp);
        }
    }
    Ok(kept)
}

/// Verifies the audit chain in `store`: streams every record, in chunks, through a
/// [`ChainVerifier`] holding the stored checkpoints, the checkpoints `kept` outside the
/// log, and the trusted `keys`, and checks the log against the size its head claims. A
/// kept checkpoint the log no longer matches (rewritten, truncated, restored from an
/// older backup) is a finding even when the log's own checkpoints were replaced. The one
/// verification `audit verify` (both backends) and `migrate-store` run.
pub async fn verify_store(
    store: &dyn Store,
    keys: &[VerifyingKey],
    kept: &[Checkpoint],
) -> anyhow::Result<Report> {
    let head = store.audit_head().await.map_err(|e| anyhow!("{e}"))?;
    let mut checkpoints = store.checkpoints().await.map_err(|e| anyhow!("{e}"))?;
    for cp in kept {
        if !checkpoints.contains(cp) {
            checkpoints.push(cp.clone());
        }
    }
    let mut verifier = ChainVerifier::new(checkpoints, keys);

    let bar = records_bar(head.tree.size(), "verifying");
    let mut next: u64 = 0;
    let mut first = true;
    loop {
        let chunk = store
            .audit_records(&AuditFilter {
                from_seq: Some(next),
                limit: CHUNK,
                ..Default::default()
            })
            .await
            .map_err(|e| anyhow!("cannot read records from {next}: {e}"))?;
        // A chunk must start where the last ended; the verifier names any gap.
        if first && chunk.is_empty() {
            break;
        }
        first = false;
        let Some(last) = chunk.last().map(|r| r.seq) else {
            break;
        };
        for r in &chunk {
            verifier.push(r);
        }
        bar.set_position(verifier.size());
        if verifier.broken() || chunk.len() < CHUNK as usize {
            break;
        }
        next = last + 1;
    }
    bar.finish_and_clear();
    Ok(verifier.finish(Some(head.tree.size())))
}

/// Prints a verification report (`ok: ...`, or `FAILED: first bad record: N` and every
/// finding); SUCCESS when the chain verified.
pub fn print_report(report: &Report) -> ExitCode {
    if report.ok() {
        println!(
            "ok: {} records and {} signed checkpoints verified; root {}",
            report.records,
            report.checkpoints,
            report.root.map(hex::encode).unwrap_or_default()
        );
        ExitCode::SUCCESS
    } else {
        let first = report.findings.first();
        if let Some(seq) = first.and_then(|f| f.first_bad_seq()) {
            println!("FAILED: first bad record: {seq}");
        } else {
            println!("FAILED");
        }
        for f in &report.findings {
            println!("  - {f}");
        }
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_scrubbed_from_messages() {
        let url = "postgres://warrant:p%40ss@db:5432/w";
        assert_eq!(password_of(url), Some("p%40ss"));
        assert_eq!(
            scrub("auth failed for p%40ss and p@ss", url),
            "auth failed for *** and ***"
        );
        assert_eq!(password_of("postgres://warrant@db/w"), None);
        assert_eq!(password_of("postgres://db/w"), None);
        assert_eq!(scrub("unchanged", "postgres://db/w"), "unchanged");
        assert_eq!(shown_url("user:secret@host/db"), "the database value");
        assert_eq!(shown_url("mysql://u:secret@h/d"), "`mysql://u:***@h/d`");
    }
}
