//! Dispatch of every subcommand.

use crate::output::{self, fields, identity_rows, record_rows, s, table, IDENTITY_FIELDS};
use crate::{AgentCmd, AuditCmd, AuthorizeArgs, Cli, ClientOpts, Command, PolicyCmd, ServeArgs};
use anyhow::{anyhow, Context};
use serde_json::{json, Value};
use std::process::ExitCode;
use warrant_client::{Client, ClientError};

fn client(o: &ClientOpts) -> anyhow::Result<Client> {
    o.client()
}

fn list_arg(v: Option<String>) -> Option<Vec<String>> {
    v.map(|s| {
        s.split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(str::to_owned)
            .collect()
    })
}

/// Prints API errors with their details (e.g. Cedar diagnostics).
fn api_error(e: ClientError) -> anyhow::Error {
    if let ClientError::Api {
        details: Some(Value::Array(ds)),
        ..
    } = &e
    {
        for d in ds {
            let pos = match (d["line"].as_u64(), d["column"].as_u64()) {
                (Some(l), Some(c)) => format!("{}:{l}:{c}", s(&d["source"])),
                _ => s(&d["source"]),
            };
            eprintln!("{pos}: {}", s(&d["message"]));
        }
    }
    anyhow!(e)
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Agent { client: o, cmd } => agent(&o, cmd).await.map_err(api_error_any),
        Command::Policy {
            cmd: PolicyCmd::Validate { file, schema },
            ..
        } => crate::offline::validate(&file, schema.as_deref()),
        Command::Policy { client: o, cmd } => policy(&o, cmd).await.map_err(api_error_any),
        Command::Audit {
            cmd:
                AuditCmd::Verify {
                    data_dir,
                    database,
                    public_key,
                    checkpoints,
                },
            ..
        } => {
            let kept = crate::offline::read_kept_checkpoints(&checkpoints)?;
            match database {
                Some(url) => {
                    crate::offline::verify_database(&url, public_key.as_deref(), &kept).await
                }
                None => crate::offline::verify(&data_dir, public_key.as_deref(), &kept).await,
            }
        }
        Command::MigrateStore { from_data_dir, to } => {
            crate::migrate::migrate_store(&from_data_dir, &to).await
        }
        Command::Killswitch { client: o, cmd } => {
            crate::killswitch::run(&o, cmd).await.map_err(api_error_any)
        }
        Command::Keys { client: o, cmd } => crate::credentials::run(&o, cmd)
            .await
            .map_err(api_error_any),
        Command::Authorize { client: o, args } => authorize(&o, args).await.map_err(api_error_any),
        Command::Audit { client: o, cmd } => audit(&o, cmd).await.map_err(api_error_any),
    }
}

fn api_error_any(e: anyhow::Error) -> anyhow::Error {
    match e.downcast::<ClientError>() {
        Ok(ce) => api_error(ce),
        Err(e) => e,
    }
}

async fn serve(a: ServeArgs) -> anyhow::Result<ExitCode> {
    use tracing_subscriber::EnvFilter;
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = warrant_server::Config::load(
        a.config.as_deref(),
        warrant_server::config::Overrides {
            listen: a.listen,
            data_dir: a.data_dir,
            database: a.database,
            issuer: a.issuer,
            trust_domain: a.trust_domain,
            durability: a.durability,
            checkpoint_interval_secs: a.checkpoint_interval,
            tls_cert: a.tls_cert,
            tls_key: a.tls_key,
            tls_client_ca: a.tls_client_ca,
            admin_token: std::env::var("WARRANT_ADMIN_TOKEN")
                .ok()
                .filter(|t| !t.is_empty()),
        },
    )?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let server = warrant_server::Server::start(config).await?;
    if let Some(token) = &server.new_admin_token {
        eprintln!(
            "\n  warrant: bootstrap admin token (shown once; only its hash is stored):\n\n    {token}\n\n  export WARRANT_TOKEN={token}\n"
        );
    }
    tracing::info!(
        address = %format!("{scheme}://{addr}"),
        data_dir = %server.config.data_dir.display(),
        store = %server.config.store_description(),
        "warrant listening"
    );
    println!("warrant listening on {scheme}://{addr}");
    server.serve(listener, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn agent(o: &ClientOpts, cmd: AgentCmd) -> anyhow::Result<ExitCode> {
    let c = client(o)?;
    let show = |v: &Value| output::print(o.output, v, |v| fields(v, IDENTITY_FIELDS));
    match cmd {
        AgentCmd::Create {
            name,
            kind,
            environment,
            owner,
            description,
            spiffe_id,
            roles,
            entitlements,
        } => {
            let v = c
                .create_identity(&json!({
                    "name": name, "kind": kind, "environment": environment, "owner": owner,
                    "description": description, "spiffe_id": spiffe_id,
                    "roles": roles, "entitlements": entitlements,
                }))
                .await?;
            show(&v);
        }
        AgentCmd::List {
            kind,
            environment,
            state,
            owner,
            limit,
            cursor,
            all,
        } => {
            let mut cursor = cursor;
            let mut items = Vec::new();
            let mut next;
            loop {
                let page = c
                    .list_identities(&[
                        ("kind", kind.clone()),
                        ("environment", environment.clone()),
                        ("state", state.clone()),
                        ("owner", owner.clone()),
                        ("limit", Some(limit.to_string())),
                        ("cursor", cursor.clone()),
                    ])
                    .await?;
                items.extend(page["items"].as_array().cloned().unwrap_or_default());
                next = page["next_cursor"].as_str().map(str::to_owned);
                if !all || next.is_none() {
                    break;
                }
                cursor = next.clone();
            }
            let v = json!({ "items": items, "next_cursor": next });
            output::print(o.output, &v, |v| {
                let mut t = identity_rows(v["items"].as_array().map(Vec::as_slice).unwrap_or(&[]));
                if let Some(n) = v["next_cursor"].as_str() {
                    t.push_str(&format!("\nmore: --cursor {n}"));
                }
                t
            });
        }
        AgentCmd::Show { id } => show(&c.identity(&id).await?),
        AgentCmd::Update {
            id,
            owner,
            description,
            roles,
            entitlements,
        } => {
            let mut body = serde_json::Map::new();
            if let Some(v) = owner {
                body.insert("owner".into(), json!(v));
            }
            if let Some(v) = description {
                body.insert("description".into(), json!(v));
            }
            if let Some(v) = list_arg(roles) {
                body.insert("roles".into(), json!(v));
            }
            if let Some(v) = list_arg(entitlements) {
                body.insert("entitlements".into(), json!(v));
            }
            show(&c.update_identity(&id, &Value::Object(body)).await?);
        }
        AgentCmd::Suspend { id, reason } => {
            show(&c.lifecycle(&id, "suspend", reason.as_deref()).await?)
        }
        AgentCmd::Resume { id, reason } => {
            show(&c.lifecycle(&id, "resume", reason.as_deref()).await?)
        }
        AgentCmd::Retire { id, reason } => {
            show(&c.lifecycle(&id, "retire", reason.as_deref()).await?)
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn read(path: &std::path::Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read `{}`", path.display()))
}

async fn policy(o: &ClientOpts, cmd: PolicyCmd) -> anyhow::Result<ExitCode> {
    let c = client(o)?;
    match cmd {
        PolicyCmd::Validate { .. } => return Err(anyhow!("`policy validate` runs offline")),
        PolicyCmd::Push {
            policies,
            schema,
            comment,
        } => {
            let schema = schema.as_deref().map(read).transpose()?;
            let v = c
                .put_policy(schema.as_deref(), &read(&policies)?, comment.as_deref())
                .await?;
            output::print(o.output, &v, |v| {
                format!(
                    "policy version {} in force: {}",
                    s(&v["version"]),
                    s(&v["policy_ids"])
                )
            });
        }
        PolicyCmd::Show { version } => {
            let v = match version {
                Some(n) => c.get(&format!("/v1/policies/versions/{n}")).await?,
                None => c.policy().await?,
            };
            output::print(o.output, &v, |v| {
                format!(
                    "# version {} ({} by {})\n# schema\n{}\n# policies\n{}",
                    s(&v["version"]),
                    s(&v["created_at"]),
                    s(&v["actor"]),
                    v["schema"].as_str().unwrap_or(""),
                    v["policies"].as_str().unwrap_or("")
                )
            });
        }
        PolicyCmd::History { limit } => {
            let v = c
                .get(&format!("/v1/policies/versions?limit={limit}"))
                .await?;
            output::print(o.output, &v, |v| {
                table(
                    &["version", "created", "actor", "comment"],
                    v.as_array()
                        .map(Vec::as_slice)
                        .unwrap_or(&[])
                        .iter()
                        .map(|p| {
                            ["version", "created_at", "actor", "comment"]
                                .iter()
                                .map(|k| s(&p[*k]))
                                .collect()
                        })
                        .collect(),
                )
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn authorize(o: &ClientOpts, a: AuthorizeArgs) -> anyhow::Result<ExitCode> {
    let c = client(o)?;
    let context: Option<Value> = a
        .context
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .context("--context must be a JSON object")?;
    let entities: Option<Value> = match &a.entities {
        Some(p) => {
            Some(serde_json::from_str(&read(p)?).context("--entities must be a JSON array")?)
        }
        None => None,
    };
    let v = c
        .authorize(&json!({
            "principal": a.principal, "action": a.action, "resource": a.resource,
            "context": context, "entities": entities,
        }))
        .await?;
    output::print(o.output, &v, |v| {
        let mut out = format!("{}: {}", s(&v["decision"]).to_uppercase(), s(&v["reason"]));
        for p in v["determining_policies"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            out.push_str(&format!("\n  {} {}", s(&p["effect"]), s(&p["id"])));
            if let Some(r) = p["annotations"]["reason"].as_str() {
                out.push_str(&format!(" — {r}"));
            }
        }
        for e in v["errors"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
            out.push_str(&format!(
                "\n  error in {}: {}",
                s(&e["policy_id"]),
                s(&e["message"])
            ));
        }
        out.push_str(&format!(
            "\n  policy version {}, audit record {}",
            s(&v["policy_version"]),
            s(&v["audit_seq"])
        ));
        out
    });
    Ok(if v["decision"] == "allow" {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

async fn audit(o: &ClientOpts, cmd: AuditCmd) -> anyhow::Result<ExitCode> {
    let c = client(o)?;
    match cmd {
        AuditCmd::Verify { .. } => return Err(anyhow!("`audit verify` runs offline")),
        AuditCmd::Tail {
            lines,
            kind,
            subject,
            follow,
        } => {
            let page = c
                .audit(&[
                    ("kind", kind.clone()),
                    ("subject", subject.clone()),
                    ("order", Some("desc".into())),
                    ("limit", Some(lines.to_string())),
                ])
                .await?;
            let mut items = page["items"].as_array().cloned().unwrap_or_default();
            items.reverse();
            let mut next = items
                .last()
                .and_then(|r| r["seq"].as_u64())
                .map_or(0, |s| s + 1);
            let v = json!({ "items": items });
            output::print(o.output, &v, |v| {
                record_rows(v["items"].as_array().map(Vec::as_slice).unwrap_or(&[]))
            });
            // With --follow, poll until interrupted.
            if follow {
                loop {
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    let page = c
                        .audit(&[
                            ("kind", kind.clone()),
                            ("subject", subject.clone()),
                            ("cursor", Some(next.to_string())),
                            ("limit", Some("1000".into())),
                        ])
                        .await?;
                    let items = page["items"].as_array().cloned().unwrap_or_default();
                    if let Some(last) = items.last().and_then(|r| r["seq"].as_u64()) {
                        next = last + 1;
                        let v = json!({ "items": items });
                        output::print(o.output, &v, |v| {
                            record_rows(v["items"].as_array().map(Vec::as_slice).unwrap_or(&[]))
                        });
                    }
                }
            }
        }
        AuditCmd::Proof { seq } => {
            let v = c.proof(seq).await?;
            let ok = check_proof(&v);
            output::print(o.output, &v, |v| {
                let cp = &v["checkpoint"];
                let mut out = format!(
                    "record {} ({}) leaf {}\ncheckpoint: size {} root {}\n  signed by key {} at {}\n  signature {}\naudit path ({} hashes):",
                    s(&v["record"]["seq"]),
                    s(&v["record"]["kind"]),
                    s(&v["record"]["leaf_hash"]),
                    s(&cp["size"]),
                    s(&cp["root"]),
                    s(&cp["key_id"]),
                    s(&cp["time"]),
                    s(&cp["signature"]),
                    v["proof"].as_array().map_or(0, Vec::len)
                );
                for h in v["proof"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
                    out.push_str(&format!("\n  {}", s(h)));
                }
                out.push_str(&format!(
                    "\ninclusion verified locally: {}",
                    if ok { "yes" } else { "NO" }
                ));
                out
            });
            if !ok {
                return Ok(ExitCode::FAILURE);
            }
        }
        AuditCmd::Checkpoint => {
            let v = c.checkpoint().await?;
            output::print(o.output, &v, |v| {
                fields(
                    v,
                    &["size", "root", "time", "key_id", "origin", "signature"],
                )
            });
        }
        AuditCmd::Checkpoints { out } => {
            let v = c.get("/v1/audit/checkpoints").await?;
            let count = v.as_array().map_or(0, Vec::len);
            let text = serde_json::to_string_pretty(&v)? + "\n";
            match out {
                None => print!("{text}"),
                Some(path) => {
                    write_replacing(&path, &text)?;
                    eprintln!("{count} signed checkpoints written to {}", path.display());
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes `text` to `path` through a temporary file in the same directory and a rename, so
/// a reader never sees half a file.
fn write_replacing(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("`{}` is not a file path", path.display()))?;
    let tmp = path.with_file_name(format!(".{}.tmp", name.to_string_lossy()));
    std::fs::write(&tmp, text).with_context(|| format!("cannot write `{}`", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write `{}`", path.display()))
}

/// Recomputes the root from the leaf and the audit path.
fn check_proof(v: &Value) -> bool {
    let h = |x: &Value| -> Option<[u8; 32]> { hex::decode(x.as_str()?).ok()?.try_into().ok() };
    let (Some(leaf), Some(root)) = (h(&v["record"]["leaf_hash"]), h(&v["checkpoint"]["root"]))
    else {
        return false;
    };
    let Some(path) = v["proof"]
        .as_array()
        .and_then(|a| a.iter().map(h).collect::<Option<Vec<_>>>())
    else {
        return false;
    };
    let (Some(seq), Some(size)) = (
        v["record"]["seq"].as_u64(),
        v["checkpoint"]["size"].as_u64(),
    ) else {
        return false;
    };
    warrant_core::merkle::verify_inclusion(&leaf, seq, size, &path, &root)
}
