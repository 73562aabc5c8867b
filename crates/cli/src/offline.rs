//! Offline commands: `policy validate` and `audit verify` need no server.

use anyhow::{anyhow, Context};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::Path;
use std::process::ExitCode;
use warrant_core::verify::ChainVerifier;
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

const CHUNK: u32 = 5000;

pub async fn verify(data_dir: &Path, public_key: Option<&Path>) -> anyhow::Result<ExitCode> {
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
    let key = warrant_server::keys::read_public_key(&key_path)?;
    let head = store.audit_head().await.map_err(|e| anyhow!("{e}"))?;
    let checkpoints = store.checkpoints().await.map_err(|e| anyhow!("{e}"))?;
    let mut verifier = ChainVerifier::new(checkpoints, &[key]);

    let bar = ProgressBar::new(head.tree.size());
    bar.set_style(
        ProgressStyle::with_template(
            "verifying {bar:40} {pos}/{len} records ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
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
    let report = verifier.finish(Some(head.tree.size()));
    store.close().await;
    if report.ok() {
        println!(
            "ok: {} records and {} signed checkpoints verified; root {}",
            report.records,
            report.checkpoints,
            report.root.map(hex::encode).unwrap_or_default()
        );
        Ok(ExitCode::SUCCESS)
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
        Ok(ExitCode::FAILURE)
    }
}
