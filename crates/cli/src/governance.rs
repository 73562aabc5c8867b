//! The governance workflow's clients: `warrant capability|proposal|approve|reject|override|
//! token|role|resource|tier-policy`. AI tools propose IAM changes under declared
//! capabilities; warrant tiers them; named humans approve, reject, override or perform.

use crate::output::{self, s, table};
use crate::ClientOpts;
use anyhow::{anyhow, Context};
use clap::Subcommand;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use warrant_client::{encode, query, Client, ClientError};

#[derive(Subcommand)]
pub enum Command {
    /// AI capabilities: what an AI tool may propose, under whose accountability.
    Capability {
        #[command(flatten)]
        client: ClientOpts,
        #[command(subcommand)]
        cmd: CapabilityCmd,
    },
    /// IAM change proposals of AI tools and their tiered workflow.
    Proposal {
        #[command(flatten)]
        client: ClientOpts,
        #[command(subcommand)]
        cmd: ProposalCmd,
    },
    /// Approve a Tier 3 proposal (a named human; never the requester or a beneficiary).
    Approve {
        #[command(flatten)]
        client: ClientOpts,
        /// Proposal id (`prp_…`).
        id: String,
        /// The business justification (recorded in the audit log).
        #[arg(long)]
        justification: String,
        /// The change-ticket reference (e.g. CHG-1234).
        #[arg(long)]
        ticket: String,
    },
    /// Reject a Tier 3 request or a Tier 4 recommendation.
    Reject {
        #[command(flatten)]
        client: ClientOpts,
        /// Proposal id (`prp_…`).
        id: String,
        /// Why (recorded in the audit log).
        #[arg(long)]
        justification: String,
    },
    /// Override a Tier 2 change within its review window: its inverse is applied at once.
    Override {
        #[command(flatten)]
        client: ClientOpts,
        /// Proposal id (`prp_…`).
        id: String,
        /// Why (recorded in the audit log).
        #[arg(long)]
        justification: String,
    },
    /// Ratify a Tier 2 change before its override window ends (as its named reviewer or
    /// the capability owner): it stands, and the record says the reviewer acted.
    Ratify {
        #[command(flatten)]
        client: ClientOpts,
        /// Proposal id (`prp_…`).
        id: String,
        /// What was checked (recorded in the audit log).
        #[arg(long)]
        justification: String,
    },
    /// API tokens of named humans (approvers, owners, auditors, admins).
    Token {
        #[command(flatten)]
        client: ClientOpts,
        #[command(subcommand)]
        cmd: TokenCmd,
    },
    /// Roles of the entitlement model.
    Role {
        #[command(flatten)]
        client: ClientOpts,
        #[command(subcommand)]
        cmd: RoleCmd,
    },
    /// Resources of the entitlement model: data classification and privilege.
    Resource {
        #[command(flatten)]
        client: ClientOpts,
        #[command(subcommand)]
        cmd: ResourceCmd,
    },
    /// The tier policies (Cedar) that assign a tier to each proposal.
    TierPolicy {
        #[command(flatten)]
        client: ClientOpts,
        #[command(subcommand)]
        cmd: TierPolicyCmd,
    },
}

#[derive(Subcommand)]
// Parsed once per process: the size of one variant does not matter.
#[allow(clippy::large_enum_variant)]
pub enum CapabilityCmd {
    /// Declare (or replace) a capability. A new owner, identity or kind, or a larger blast
    /// radius, needs the owner's acceptance again.
    Declare {
        /// Capability id (lowercase letters, digits, `-`, `_`).
        id: String,
        /// The AI identity (agent or AI tool) that acts for it.
        #[arg(long, value_name = "ID")]
        identity: String,
        /// Change kinds it may propose (comma-separated): grant_entitlement,
        /// revoke_entitlement, create_role, delete_role, modify_role, modify_trust,
        /// change_auth_requirement, suspend_identity, retire_identity.
        #[arg(long, value_delimiter = ',', required = true)]
        kinds: Vec<String>,
        /// Largest number of identities one proposal may affect.
        #[arg(long, value_name = "N")]
        max_blast_radius: u32,
        /// Where its changes may execute (comma-separated): `warrant` and/or configured
        /// connectors [default: warrant].
        #[arg(long, value_delimiter = ',', value_name = "SYSTEMS")]
        systems: Vec<String>,
        /// The accountable human (must accept before the capability can propose).
        #[arg(long, value_name = "EMAIL")]
        owner: String,
        /// Who reviews its Tier 2 changes [default: the owner].
        #[arg(long, value_name = "EMAIL")]
        reviewer: Option<String>,
        /// Webhook (Slack-compatible) for notifications about its proposals.
        #[arg(long, value_name = "URL")]
        notify: Option<String>,
        /// Days between the owner's reviews of its decisions [default: 90].
        #[arg(long, value_name = "N")]
        review_every_days: Option<u32>,
        /// Environments whose identities it may target (comma-separated) [default: its
        /// identity's].
        #[arg(long, value_delimiter = ',', value_name = "ENVS")]
        environments: Vec<String>,
        /// Proposals with a lower model confidence (0.0 to 1.0) are refused.
        #[arg(long, value_parser = unit_interval, value_name = "0.0-1.0")]
        min_confidence: Option<f64>,
        /// Free-text conditions, for the record.
        #[arg(long)]
        notes: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// Declare every capability in a file: TOML (`[[capability]]` tables) or JSON (an
    /// array), by extension; each entry has `id` and the fields of the declaration
    /// (identity, kinds, max_blast_radius, owner, reviewer, notify, review_every_days,
    /// description, conditions = { environments, min_confidence_pct, notes }).
    /// Every entry is tried; exit status 1 when any failed.
    Apply {
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: PathBuf,
    },
    /// List capabilities with owner, acceptance, reviews and autonomy.
    List,
    /// Show one capability.
    Show { id: String },
    /// Accept accountability for a capability you own (until then it cannot propose).
    Accept {
        id: String,
        /// Your statement of accountability [default: a standard one naming the scope].
        #[arg(long)]
        statement: Option<String>,
    },
    /// Record your review of a capability's decisions (restores an overdue one's autonomy).
    Review {
        id: String,
        /// What you reviewed and concluded.
        #[arg(long)]
        note: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum ProposalCmd {
    /// Submit a proposal as the capability's AI identity (WARRANT_TOKEN: its access token
    /// with scope `warrant:propose`, audience warrant's issuer URL).
    Submit {
        /// The capability the proposal is made under.
        #[arg(long, value_name = "ID")]
        capability: String,
        /// The change as JSON, or @FILE: {"kind": "revoke_entitlement", "identity": "idn_…",
        /// "entitlement": "s3:logs:read"}
        #[arg(long, value_name = "JSON|@FILE")]
        change: String,
        /// Where to execute: `warrant` or a configured connector [default: warrant].
        #[arg(long, value_name = "NAME")]
        system: Option<String>,
        /// What the tool saw: a JSON object, or @FILE.
        #[arg(long, value_name = "JSON|@FILE")]
        evidence: Option<String>,
        #[arg(long)]
        rationale: String,
        /// The model's confidence, 0.0 to 1.0.
        #[arg(long, value_parser = unit_interval, value_name = "0.0-1.0")]
        confidence: f64,
        /// The proposal this one follows from (joins its chain).
        #[arg(long, value_name = "ID")]
        parent: Option<String>,
        /// A correlation id linking related proposals into one chain.
        #[arg(long, value_name = "ID")]
        correlation: Option<String>,
    },
    /// List proposals, oldest first.
    List {
        /// pending_approval, recommended, executing, in_review, executed, ratified,
        /// overridden, rejected, expired or failed.
        #[arg(long)]
        state: Option<String>,
        #[arg(long, value_name = "ID")]
        capability: Option<String>,
        /// At most this many (pages are followed).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
    },
    /// Show a proposal: change, assessment, tier and why, state, approvals, executions.
    Show { id: String },
    /// Show the chain of related proposals a proposal belongs to.
    Chain { id: String },
    /// Delivery status of a proposal's notifications and connector calls.
    Deliveries { id: String },
    /// Perform a Tier 4 recommendation yourself (you own the change record).
    Perform {
        id: String,
        #[arg(long)]
        justification: String,
        /// The change-ticket reference.
        #[arg(long)]
        ticket: String,
    },
}

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Issue an API token to a named human (the secret is shown once).
    Create {
        /// The human the token belongs to (user name or e-mail).
        #[arg(long, value_name = "EMAIL")]
        human: String,
        #[arg(long, value_parser = ["admin", "approver", "owner", "auditor"])]
        role: String,
        /// A label [default: "<human> (<role>)"].
        #[arg(long)]
        name: Option<String>,
    },
    /// List API tokens (never their secrets).
    List,
    /// Revoke an API token at once.
    Revoke {
        /// Token id (`tok_…`).
        id: String,
    },
}

#[derive(Subcommand)]
pub enum RoleCmd {
    /// Define or replace a role.
    Put {
        name: String,
        /// Its entitlements (comma-separated).
        #[arg(long, value_delimiter = ',')]
        entitlements: Vec<String>,
        /// Holding the role is privileged access.
        #[arg(long)]
        privileged: bool,
        #[arg(long)]
        description: Option<String>,
    },
    /// List roles with their members.
    List,
    /// Show one role.
    Show { name: String },
}

#[derive(Subcommand)]
pub enum ResourceCmd {
    /// Declare a resource's classification (covers the resources below it: `s3` covers
    /// `s3:bucket-logs`).
    Put {
        id: String,
        #[arg(long, value_parser = ["unclassified", "public", "internal", "confidential", "restricted"])]
        classification: String,
        /// Access to it is privileged.
        #[arg(long)]
        privileged: bool,
        #[arg(long)]
        description: Option<String>,
    },
    /// List declared resources.
    List,
}

#[derive(Subcommand)]
pub enum TierPolicyCmd {
    /// Show the tier policies in force (version 0: the built-in defaults).
    Show,
    /// Replace the tier policies with a file of Cedar `permit` policies, each annotated
    /// `@tier("1".."4")`.
    Put {
        file: PathBuf,
        #[arg(long)]
        comment: Option<String>,
    },
}

fn unit_interval(v: &str) -> Result<f64, String> {
    let x: f64 = v
        .trim()
        .parse()
        .map_err(|_| format!("`{v}` is not a number"))?;
    if (0.0..=1.0).contains(&x) {
        Ok(x)
    } else {
        Err("must be between 0.0 and 1.0".to_owned())
    }
}

fn percent(x: f64) -> u8 {
    (x * 100.0).round().clamp(0.0, 100.0) as u8
}

fn non_empty(v: Vec<String>) -> Vec<String> {
    v.into_iter()
        .map(|x| x.trim().to_owned())
        .filter(|x| !x.is_empty())
        .collect()
}

use crate::output::items;

fn yes_no(v: &Value) -> String {
    if v.as_bool() == Some(true) {
        "yes"
    } else {
        "no"
    }
    .to_owned()
}

/// RFC 3339 of a Unix time in milliseconds.
fn fmt_ms(v: &Value) -> String {
    let Some(ms) = v.as_i64() else {
        return "-".to_owned();
    };
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// `2d 3h`, `4h 10m`, `5m 2s`.
fn duration_text(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else {
        format!("{m}m {s}s")
    }
}

/// A `--change`/`--evidence` argument: JSON text, or `@FILE` holding it.
fn json_arg(flag: &str, v: &str) -> anyhow::Result<Value> {
    let text = match v.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("{flag}: cannot read `{path}`"))?,
        None => v.to_owned(),
    };
    serde_json::from_str(&text).with_context(|| format!("{flag} is not valid JSON"))
}

/// Prints diagnostics an API error carries (e.g. Cedar's), `<source>:<line>:<col>: …`.
fn print_diagnostics(e: &ClientError, source: Option<&str>) -> bool {
    let ClientError::Api {
        details: Some(Value::Array(ds)),
        ..
    } = e
    else {
        return false;
    };
    for d in ds {
        let src = source.map_or_else(|| s(&d["source"]), str::to_owned);
        let pos = match (d["line"].as_u64(), d["column"].as_u64()) {
            (Some(l), Some(c)) => format!("{src}:{l}:{c}"),
            _ => src,
        };
        eprintln!("{pos}: {}", s(&d["message"]));
        if let Some(snippet) = d["snippet"].as_str() {
            eprintln!("    | {snippet}");
        }
        if let Some(help) = d["help"].as_str() {
            eprintln!("    = help: {help}");
        }
    }
    !ds.is_empty()
}

pub async fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    let r = match cmd {
        Command::Capability { client, cmd } => capability(&client, cmd).await,
        Command::Proposal { client, cmd } => proposal(&client, cmd).await,
        Command::Approve {
            client,
            id,
            justification,
            ticket,
        } => {
            decide(
                &client,
                &id,
                "approve",
                json!({ "justification": justification, "ticket": ticket }),
            )
            .await
        }
        Command::Reject {
            client,
            id,
            justification,
        } => justified(&client, &id, "reject", &justification).await,
        Command::Override {
            client,
            id,
            justification,
        } => justified(&client, &id, "override", &justification).await,
        Command::Ratify {
            client,
            id,
            justification,
        } => justified(&client, &id, "ratify", &justification).await,
        Command::Token { client, cmd } => token(&client, cmd).await,
        Command::Role { client, cmd } => role(&client, cmd).await,
        Command::Resource { client, cmd } => resource(&client, cmd).await,
        Command::TierPolicy { client, cmd } => tier_policy(&client, cmd).await,
    };
    r.inspect_err(|e| {
        if let Some(ce) = e.downcast_ref::<ClientError>() {
            print_diagnostics(ce, None);
        }
    })
}

/// A decision that carries only a justification (reject, override, ratify).
async fn justified(
    o: &ClientOpts,
    id: &str,
    action: &str,
    justification: &str,
) -> anyhow::Result<ExitCode> {
    decide(o, id, action, json!({ "justification": justification })).await
}

fn client(o: &ClientOpts) -> anyhow::Result<Client> {
    o.client()
}

// ---------------------------------------------------------------------------------------
// capability

async fn capability(o: &ClientOpts, cmd: CapabilityCmd) -> anyhow::Result<ExitCode> {
    let c = client(o)?;
    match cmd {
        CapabilityCmd::Declare {
            id,
            identity,
            kinds,
            max_blast_radius,
            systems,
            owner,
            reviewer,
            notify,
            review_every_days,
            environments,
            min_confidence,
            notes,
            description,
        } => {
            let mut conditions = Map::new();
            let environments = non_empty(environments);
            if !environments.is_empty() {
                conditions.insert("environments".into(), json!(environments));
            }
            if let Some(m) = min_confidence {
                conditions.insert("min_confidence_pct".into(), json!(percent(m)));
            }
            if let Some(n) = notes {
                conditions.insert("notes".into(), json!(n));
            }
            let mut body = json!({
                "identity": identity, "kinds": non_empty(kinds),
                "max_blast_radius": max_blast_radius, "systems": non_empty(systems),
                "owner": owner, "reviewer": reviewer, "notify": notify,
                "review_every_days": review_every_days,
                "conditions": Value::Object(conditions),
            });
            if let Some(d) = description {
                body["description"] = json!(d);
            }
            let v = c
                .put(&format!("/v1/capabilities/{}", encode(&id)), &body)
                .await?;
            output::print(o.output, &v, capability_fields);
        }
        CapabilityCmd::Apply { file } => return apply(o, &c, &file).await,
        CapabilityCmd::List => {
            let v = c.get("/v1/capabilities").await?;
            output::print(o.output, &v, capability_rows);
        }
        CapabilityCmd::Show { id } => {
            let v = c.get(&format!("/v1/capabilities/{}", encode(&id))).await?;
            output::print(o.output, &v, capability_fields);
        }
        CapabilityCmd::Accept { id, statement } => {
            let v = c
                .post(
                    &format!("/v1/capabilities/{}/accept", encode(&id)),
                    &json!({ "statement": statement.unwrap_or_default() }),
                )
                .await?;
            output::print(o.output, &v, capability_fields);
        }
        CapabilityCmd::Review { id, note } => {
            let v = c
                .post(
                    &format!("/v1/capabilities/{}/review", encode(&id)),
                    &json!({ "note": note.unwrap_or_default() }),
                )
                .await?;
            output::print(o.output, &v, capability_fields);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn accepted_text(v: &Value) -> String {
    let a = &v["capability"]["accepted"];
    if a.is_object() {
        format!("{} at {}", s(&a["by"]), s(&v["accepted_at"]))
    } else {
        "no".to_owned()
    }
}

fn capability_rows(v: &Value) -> String {
    let items = items(v);
    if items.is_empty() {
        return "no capabilities declared".to_owned();
    }
    table(
        &[
            "id",
            "identity",
            "owner",
            "accepted",
            "last review",
            "next due",
            "autonomy",
            "kinds",
        ],
        items
            .iter()
            .map(|i| {
                let cap = &i["capability"];
                vec![
                    s(&cap["id"]),
                    s(&cap["identity"]),
                    s(&cap["owner"]),
                    accepted_text(i),
                    s(&i["last_review_at"]),
                    s(&i["next_review_due"]),
                    s(&i["autonomy"]),
                    s(&cap["kinds"]),
                ]
            })
            .collect(),
    )
}

fn capability_fields(v: &Value) -> String {
    let cap = &v["capability"];
    let cond = &cap["conditions"];
    let envs = match cond["environments"].as_array() {
        Some(a) if !a.is_empty() => s(&cond["environments"]),
        _ => "(its identity's)".to_owned(),
    };
    let last_review = match cap["last_review_by"].as_str() {
        Some(by) => format!("{} by {by}", s(&v["last_review_at"])),
        None => "-".to_owned(),
    };
    let rows = vec![
        ("id", s(&cap["id"])),
        ("description", s(&cap["description"])),
        ("identity", s(&cap["identity"])),
        ("kinds", s(&cap["kinds"])),
        ("environments", envs),
        (
            "min confidence",
            format!("{}%", cond["min_confidence_pct"].as_u64().unwrap_or(0)),
        ),
        ("notes", s(&cond["notes"])),
        ("max blast radius", s(&cap["max_blast_radius"])),
        ("systems", s(&cap["systems"])),
        ("owner", s(&cap["owner"])),
        (
            "reviewer",
            cap["reviewer"]
                .as_str()
                .map_or_else(|| format!("{} (owner)", s(&cap["owner"])), str::to_owned),
        ),
        ("notify", s(&cap["notify"])),
        ("accepted", accepted_text(v)),
        ("statement", s(&cap["accepted"]["statement"])),
        (
            "review every",
            format!("{} days", s(&cap["review_every_days"])),
        ),
        ("last review", last_review),
        ("next review due", s(&v["next_review_due"])),
        ("autonomy", s(&v["autonomy"])),
        (
            "created",
            format!(
                "{} by {}",
                fmt_ms(&cap["created_ms"]),
                s(&cap["created_by"])
            ),
        ),
        ("updated", fmt_ms(&cap["updated_ms"])),
    ];
    table(
        &["field", "value"],
        rows.into_iter()
            .map(|(k, v)| vec![k.to_owned(), v])
            .collect(),
    )
}

/// The entries of a capability file, each `(label, id, PUT body)` or why it is unusable.
type Entry = Result<(String, Value), String>;

fn read_capability_file(path: &Path) -> anyhow::Result<Vec<(String, Entry)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let list: Vec<Value> = match ext.as_deref() {
        Some("toml") => {
            let doc: serde_json::Map<String, Value> =
                toml::from_str(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
            if let Some(k) = doc.keys().find(|k| *k != "capability") {
                return Err(anyhow!(
                    "{}: unexpected top-level key `{k}`; expected only [[capability]] tables",
                    path.display()
                ));
            }
            match doc.get("capability") {
                Some(Value::Array(a)) => a.clone(),
                None => vec![],
                Some(_) => {
                    return Err(anyhow!(
                        "{}: `capability` must be an array of tables ([[capability]])",
                        path.display()
                    ))
                }
            }
        }
        Some("json") => {
            let v: Value = serde_json::from_str(&text)
                .with_context(|| format!("`{}` is not valid JSON", path.display()))?;
            match v {
                Value::Array(a) => a,
                Value::Object(mut m) => match m.remove("capability") {
                    Some(Value::Array(a)) => a,
                    _ => {
                        return Err(anyhow!(
                            "{}: expected an array of capabilities",
                            path.display()
                        ))
                    }
                },
                _ => {
                    return Err(anyhow!(
                        "{}: expected an array of capabilities",
                        path.display()
                    ))
                }
            }
        }
        _ => {
            return Err(anyhow!(
                "`{}`: the file name must end in .toml or .json",
                path.display()
            ))
        }
    };
    Ok(list
        .into_iter()
        .enumerate()
        .map(|(n, entry)| {
            let label = format!("entry {}", n + 1);
            let Value::Object(mut body) = entry else {
                return (label, Err("must be a table/object".to_owned()));
            };
            match body.remove("id") {
                Some(Value::String(id)) if !id.is_empty() => {
                    (format!("`{id}`"), Ok((id, Value::Object(body))))
                }
                Some(_) => (label, Err("`id` must be a non-empty string".to_owned())),
                None => (label, Err("`id` is required".to_owned())),
            }
        })
        .collect())
}

async fn apply(o: &ClientOpts, c: &Client, file: &Path) -> anyhow::Result<ExitCode> {
    let entries = read_capability_file(file)?;
    if entries.is_empty() {
        return Err(anyhow!("`{}` declares no capabilities", file.display()));
    }
    let mut results = Vec::new();
    let mut failed = Vec::new();
    for (label, entry) in entries {
        let outcome = match entry {
            Ok((id, body)) => c
                .put(&format!("/v1/capabilities/{}", encode(&id)), &body)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(v) => {
                if o.output == crate::Output::Table {
                    println!(
                        "applied capability {} ({}; autonomy {})",
                        label,
                        s(&v["capability"]["identity"]),
                        s(&v["autonomy"])
                    );
                }
                results.push(
                    json!({ "capability": label.trim_matches('`'), "ok": true, "result": v }),
                );
            }
            Err(e) => {
                eprintln!("error: capability {label}: {e}");
                results.push(
                    json!({ "capability": label.trim_matches('`'), "ok": false, "error": e }),
                );
                failed.push(label);
            }
        }
    }
    let total = results.len();
    match o.output {
        crate::Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&Value::Array(results)).unwrap_or_default()
        ),
        crate::Output::Table => println!(
            "{} of {total} capabilities applied{}",
            total - failed.len(),
            if failed.is_empty() {
                String::new()
            } else {
                format!("; failed: {}", failed.join(", "))
            }
        ),
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

// ---------------------------------------------------------------------------------------
// proposals

async fn proposal(o: &ClientOpts, cmd: ProposalCmd) -> anyhow::Result<ExitCode> {
    let c = client(o)?;
    match cmd {
        ProposalCmd::Submit {
            capability,
            change,
            system,
            evidence,
            rationale,
            confidence,
            parent,
            correlation,
        } => {
            let change = json_arg("--change", &change)?;
            let evidence = evidence
                .as_deref()
                .map(|e| json_arg("--evidence", e))
                .transpose()?;
            let v = c
                .post(
                    "/v1/proposals",
                    &json!({
                        "capability": capability, "change": change, "system": system,
                        "evidence": evidence, "rationale": rationale, "confidence": confidence,
                        "parent": parent, "correlation": correlation,
                    }),
                )
                .await?;
            output::print(o.output, &v, submitted_text);
        }
        ProposalCmd::List {
            state,
            capability,
            limit,
        } => {
            let mut list = Vec::new();
            let mut cursor: Option<String> = None;
            let mut next;
            loop {
                let want = (limit as usize).saturating_sub(list.len()).min(500);
                let page = c
                    .get(&format!(
                        "/v1/proposals{}",
                        query(&[
                            ("state", state.clone()),
                            ("capability", capability.clone()),
                            ("cursor", cursor.clone()),
                            ("limit", Some(want.to_string())),
                        ])
                    ))
                    .await?;
                list.extend(items(&page).iter().cloned());
                next = page["next_cursor"].as_str().map(str::to_owned);
                if next.is_none() || list.len() >= limit as usize {
                    break;
                }
                cursor = next.clone();
            }
            let v = json!({ "items": list, "next_cursor": next });
            output::print(o.output, &v, proposal_rows);
        }
        ProposalCmd::Show { id } => {
            let v = c.get(&format!("/v1/proposals/{}", encode(&id))).await?;
            output::print(o.output, &v, proposal_text);
        }
        ProposalCmd::Chain { id } => {
            let v = c
                .get(&format!("/v1/proposals/{}/chain", encode(&id)))
                .await?;
            output::print(o.output, &v, chain_text);
        }
        ProposalCmd::Deliveries { id } => {
            let v = c
                .get(&format!("/v1/proposals/{}/deliveries", encode(&id)))
                .await?;
            output::print(o.output, &v, deliveries_text);
        }
        ProposalCmd::Perform {
            id,
            justification,
            ticket,
        } => {
            return decide(
                o,
                &id,
                "perform",
                json!({ "justification": justification, "ticket": ticket }),
            )
            .await
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn decide(o: &ClientOpts, id: &str, action: &str, body: Value) -> anyhow::Result<ExitCode> {
    let c = client(o)?;
    let v = c
        .post(&format!("/v1/proposals/{}/{action}", encode(id)), &body)
        .await?;
    output::print(o.output, &v, decided_text);
    Ok(ExitCode::SUCCESS)
}

/// What a change does, in words.
fn change_text(ch: &Value) -> String {
    let list = |v: &Value| -> String {
        v.as_array()
            .map(|a| a.iter().map(s).collect::<Vec<_>>().join(", "))
            .unwrap_or_default()
    };
    let plus_minus = |ch: &Value| -> String {
        let mut parts = Vec::new();
        if ch["add"].as_array().is_some_and(|a| !a.is_empty()) {
            parts.push(format!("add {}", list(&ch["add"])));
        }
        if ch["remove"].as_array().is_some_and(|a| !a.is_empty()) {
            parts.push(format!("remove {}", list(&ch["remove"])));
        }
        parts.join("; ")
    };
    match ch["kind"].as_str() {
        Some("grant_entitlement") => format!(
            "grant `{}` to {}",
            s(&ch["entitlement"]),
            s(&ch["identity"])
        ),
        Some("revoke_entitlement") => format!(
            "revoke `{}` from {}",
            s(&ch["entitlement"]),
            s(&ch["identity"])
        ),
        Some("create_role") => format!(
            "create role `{}`{} with {}",
            s(&ch["role"]["name"]),
            if ch["role"]["privileged"].as_bool() == Some(true) {
                " (privileged)"
            } else {
                ""
            },
            match list(&ch["role"]["entitlements"]) {
                e if e.is_empty() => "no entitlements".to_owned(),
                e => e,
            }
        ),
        Some("delete_role") => format!("delete role `{}`", s(&ch["role"])),
        Some("modify_role") => {
            let mut t = format!("modify role `{}`: {}", s(&ch["role"]), plus_minus(ch));
            if let Some(p) = ch["privileged"].as_bool() {
                t.push_str(if p {
                    "; mark privileged"
                } else {
                    "; mark not privileged"
                });
            }
            t
        }
        Some("modify_trust") => format!(
            "modify the trust of {}: {}",
            s(&ch["identity"]),
            plus_minus(ch)
        ),
        Some("change_auth_requirement") => format!(
            "require `{}` authentication of {}",
            s(&ch["require"]),
            s(&ch["identity"])
        ),
        Some("suspend_identity") => format!("suspend {}", s(&ch["identity"])),
        Some("retire_identity") => format!("retire {}", s(&ch["identity"])),
        Some("resume_identity") => format!("resume {}", s(&ch["identity"])),
        Some("restore_role") => format!("restore role `{}`", s(&ch["role"]["name"])),
        _ => ch.to_string(),
    }
}

/// Why a proposal got its tier: matching policies, the default, the floor, escalations.
fn why_lines(tier: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for p in tier["policies"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        let mut line = format!("policy `{}` → tier {}", s(&p["policy"]), s(&p["tier"]));
        if let Some(r) = p["reason"].as_str() {
            line.push_str(&format!(": {r}"));
        }
        out.push(line);
    }
    if tier["defaulted"].as_bool() == Some(true) {
        out.push("no tier policy matched: default tier 3".to_owned());
    }
    for f in tier["floor"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        out.push(s(f));
    }
    for e in tier["escalations"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        out.push(format!("escalation: {}", s(e)));
    }
    out
}

fn deadline_text(v: &Value) -> Option<String> {
    let d = v["deadline"].as_str()?;
    Some(match v["time_left_ms"].as_i64() {
        Some(ms) => format!("{d} ({} left)", duration_text(ms)),
        None => d.to_owned(),
    })
}

/// What happens next, by state.
fn next_step(p: &Value) -> Option<String> {
    let id = s(&p["id"]);
    Some(match p["state"].as_str()? {
        "pending_approval" => format!(
            "waiting for {} approval(s) by named humans: warrant approve {id} --justification … --ticket …",
            p["approvals_required"].as_u64().unwrap_or(1).max(1)
        ),
        "recommended" => format!(
            "a recommendation: a human may perform it (warrant proposal perform {id} --justification … --ticket …) or reject it"
        ),
        "in_review" => format!(
            "applied; the reviewer may override it until the window ends (warrant override {id} --justification …)"
        ),
        "executing" => "handed to the connector; waiting for confirmation".to_owned(),
        _ => return None,
    })
}

fn submitted_text(v: &Value) -> String {
    let p = &v["proposal"];
    let mut out = format!(
        "proposal {}: tier {}, {}\n  change: {}",
        s(&p["id"]),
        s(&p["tier"]["tier"]),
        s(&p["state"]),
        change_text(&p["change"])
    );
    let why = why_lines(&p["tier"]);
    for (n, line) in why.iter().enumerate() {
        out.push_str(&format!(
            "\n  {} {line}",
            if n == 0 { "why:" } else { "    " }
        ));
    }
    if let Some(d) = deadline_text(v) {
        out.push_str(&format!("\n  deadline: {d}"));
    }
    if let Some(n) = next_step(p) {
        out.push_str(&format!("\n  next: {n}"));
    }
    out
}

fn approvals_lines(p: &Value) -> Vec<String> {
    p["approvals"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .map(|a| {
            format!(
                "{} at {} [{}]: {}",
                s(&a["by"]),
                fmt_ms(&a["at_ms"]),
                s(&a["ticket"]),
                s(&a["justification"])
            )
        })
        .collect()
}

fn decision_line(d: &Value) -> Option<String> {
    if !d.is_object() {
        return None;
    }
    let ticket = d["ticket"]
        .as_str()
        .map(|t| format!(" [{t}]"))
        .unwrap_or_default();
    Some(format!(
        "{} by {} at {}{ticket}: {}",
        s(&d["action"]),
        s(&d["by"]),
        fmt_ms(&d["at_ms"]),
        s(&d["justification"])
    ))
}

fn execution_lines(p: &Value) -> Vec<String> {
    p["executions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .map(|x| {
            format!(
                "{} {} on {} by {}: {}",
                fmt_ms(&x["at_ms"]),
                s(&x["status"]),
                s(&x["system"]),
                s(&x["by"]),
                s(&x["detail"])
            )
        })
        .collect()
}

fn decided_text(v: &Value) -> String {
    let p = &v["proposal"];
    let mut out = format!(
        "proposal {}: {} (tier {})\n  change: {}",
        s(&p["id"]),
        s(&p["state"]),
        s(&p["tier"]["tier"]),
        change_text(&p["change"])
    );
    let approvals = approvals_lines(p);
    if !approvals.is_empty() || p["state"] == "pending_approval" {
        out.push_str(&format!(
            "\n  approvals: {} of {}",
            approvals.len(),
            p["approvals_required"].as_u64().unwrap_or(1).max(1)
        ));
        for a in approvals {
            out.push_str(&format!("\n    {a}"));
        }
    }
    if let Some(d) = decision_line(&p["decision"]) {
        out.push_str(&format!("\n  decision: {d}"));
    }
    for x in execution_lines(p) {
        out.push_str(&format!("\n  execution: {x}"));
    }
    if let Some(n) = next_step(p) {
        out.push_str(&format!("\n  next: {n}"));
    }
    out
}

/// `3 identities: a, b, c`, `250 identities: a, …, (50 more)` (the server keeps the first
/// 200 of a list and the exact count).
fn count_and_first(items: &Value, count: &Value, one: &str, many: &str) -> String {
    let n = count.as_u64().unwrap_or(0);
    let shown = items.as_array().map_or(0, Vec::len) as u64;
    let noun = if n == 1 { one } else { many };
    let first = s(items);
    if n == 0 {
        format!("0 {many}")
    } else if shown < n {
        format!("{n} {noun}: {first}, … ({} more)", n - shown)
    } else {
        format!("{n} {noun}: {first}")
    }
}

fn proposal_text(v: &Value) -> String {
    let p = &v["proposal"];
    let a = &p["assessment"];
    let t = &p["tier"];
    let mut out = String::new();
    let mut line = |k: &str, val: String| out.push_str(&format!("{k:<16}{val}\n"));
    line("proposal", s(&p["id"]));
    line("change", change_text(&p["change"]));
    line("system", s(&p["system"]));
    line(
        "capability",
        format!(
            "{} (owner {}), proposed by {}",
            s(&p["capability"]),
            s(&v["owner"]),
            s(&p["proposer"])
        ),
    );
    line("submitted", s(&v["submitted_at"]));
    line("rationale", s(&p["rationale"]));
    line("confidence", format!("{}%", s(&p["confidence_pct"])));
    if !p["evidence"].as_object().is_some_and(Map::is_empty) {
        line("evidence", p["evidence"].to_string());
    }
    line(
        "chain",
        match p["parent"].as_str() {
            Some(parent) => format!("{} (after {parent})", s(&p["correlation"])),
            None => s(&p["correlation"]),
        },
    );
    out.push_str("assessment\n");
    let mut line = |k: &str, val: String| out.push_str(&format!("  {k:<16}{val}\n"));
    line(
        "blast radius",
        count_and_first(
            &a["identities"],
            &a["identities_count"],
            "identity",
            "identities",
        ),
    );
    line(
        "resources",
        count_and_first(
            &a["resources"],
            &a["resources_count"],
            "resource",
            "resources",
        ),
    );
    line(
        "privileged",
        if a["privileged"].as_bool() == Some(true) {
            format!("yes: {}", s(&a["privileged_because"]))
        } else {
            "no".to_owned()
        },
    );
    line(
        "reversible",
        if a["reversible"].as_bool() == Some(true) {
            match a["inverse"].is_object() {
                true => format!("yes (undo: {})", change_text(&a["inverse"])),
                false => "yes".to_owned(),
            }
        } else {
            "no".to_owned()
        },
    );
    line("classification", s(&a["classification"]));
    line("environment", s(&a["environment"]));
    line("targets AI", yes_no(&a["targets_ai"]));
    if a["beneficiaries"].as_array().is_some_and(|b| !b.is_empty()) {
        line("beneficiaries", s(&a["beneficiaries"]));
    }
    let g = &a["aggregates"];
    line(
        "aggregates",
        format!(
            "capability blast {}, same target {}, overall {}, chain {} step(s) / blast {}{}",
            s(&g["capability"]),
            s(&g["target"]),
            s(&g["overall"]),
            s(&g["chain_length"]),
            s(&g["chain_blast"]),
            g["window_ms"]
                .as_i64()
                .map(|w| format!(" (window {})", duration_text(w)))
                .unwrap_or_default()
        ),
    );
    out.push_str(&format!(
        "tier {}{} (tier policies version {})\n",
        s(&t["tier"]),
        match p["approvals_required"].as_u64() {
            Some(n) if n > 1 => format!(", {n} approvals required"),
            _ => String::new(),
        },
        s(&t["policy_version"])
    ));
    for w in why_lines(t) {
        out.push_str(&format!("  {w}\n"));
    }
    out.push_str(&format!("state           {}\n", s(&p["state"])));
    if let Some(d) = deadline_text(v) {
        out.push_str(&format!("  deadline      {d}\n"));
    }
    if p["notified"].as_array().is_some_and(|n| !n.is_empty()) {
        out.push_str(&format!("  notified      {}\n", s(&p["notified"])));
    }
    let approvals = approvals_lines(p);
    if !approvals.is_empty() || p["state"] == "pending_approval" {
        out.push_str(&format!(
            "approvals       {} of {}\n",
            approvals.len(),
            p["approvals_required"].as_u64().unwrap_or(1).max(1)
        ));
        for a in approvals {
            out.push_str(&format!("  {a}\n"));
        }
    }
    if let Some(d) = decision_line(&p["decision"]) {
        out.push_str(&format!("decision        {d}\n"));
    }
    let executions = execution_lines(p);
    if !executions.is_empty() {
        out.push_str("executions\n");
        for x in executions {
            out.push_str(&format!("  {x}\n"));
        }
    }
    if let Some(n) = next_step(p) {
        out.push_str(&format!("next            {n}\n"));
    }
    out.trim_end().to_owned()
}

fn target_text(ch: &Value) -> String {
    ch["identity"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| ch["role"].as_str().map(|r| format!("role {r}")))
        .or_else(|| ch["role"]["name"].as_str().map(|r| format!("role {r}")))
        .unwrap_or_else(|| "-".to_owned())
}

fn proposal_rows(v: &Value) -> String {
    let list = items(v);
    if list.is_empty() {
        return "no proposals".to_owned();
    }
    let mut t = table(
        &[
            "id",
            "capability",
            "kind",
            "target",
            "tier",
            "state",
            "blast",
            "submitted",
            "deadline",
        ],
        list.iter()
            .map(|i| {
                let p = &i["proposal"];
                vec![
                    s(&p["id"]),
                    s(&p["capability"]),
                    s(&p["change"]["kind"]),
                    target_text(&p["change"]),
                    s(&p["tier"]["tier"]),
                    s(&p["state"]),
                    s(&p["assessment"]["identities_count"]),
                    s(&i["submitted_at"]),
                    match i["time_left_ms"].as_i64() {
                        Some(ms) => format!("{} left", duration_text(ms)),
                        None => s(&i["deadline"]),
                    },
                ]
            })
            .collect(),
    );
    if v["next_cursor"].is_string() {
        t.push_str("\n(more: raise --limit)");
    }
    t
}

fn chain_text(v: &Value) -> String {
    let steps = v["steps"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let mut out = format!("chain {}: {} step(s)\n", s(&v["correlation"]), steps.len());
    out.push_str(&table(
        &[
            "id",
            "kind",
            "capability",
            "tier",
            "state",
            "blast",
            "decided by",
            "submitted",
        ],
        steps
            .iter()
            .map(|st| {
                vec![
                    s(&st["id"]),
                    s(&st["kind"]),
                    s(&st["capability"]),
                    s(&st["tier"]),
                    s(&st["state"]),
                    s(&st["blast_identities"]),
                    match st["decided_by"].as_array() {
                        Some(a) if !a.is_empty() => s(&st["decided_by"]),
                        _ => "-".to_owned(),
                    },
                    s(&st["submitted_at"]),
                ]
            })
            .collect(),
    ));
    out.push_str(&format!(
        "\ntotal blast radius (applied or under way): {} identities",
        s(&v["total_blast_identities"])
    ));
    out
}

fn deliveries_text(v: &Value) -> String {
    let list = items(v);
    if list.is_empty() {
        return "no deliveries".to_owned();
    }
    table(
        &[
            "id",
            "purpose",
            "connector",
            "status",
            "attempts",
            "last error",
            "created",
            "done",
        ],
        list.iter()
            .map(|d| {
                [
                    "id",
                    "purpose",
                    "connector",
                    "status",
                    "attempts",
                    "last_error",
                    "created_at",
                    "done_at",
                ]
                .iter()
                .map(|k| s(&d[*k]))
                .collect()
            })
            .collect(),
    )
}

// ---------------------------------------------------------------------------------------
// tokens, roles, resources, tier policies

async fn token(o: &ClientOpts, cmd: TokenCmd) -> anyhow::Result<ExitCode> {
    let c = client(o)?;
    match cmd {
        TokenCmd::Create { human, role, name } => {
            let name = name.unwrap_or_else(|| format!("{human} ({role})"));
            let v = c
                .post(
                    "/v1/tokens",
                    &json!({ "human": human, "role": role, "name": name }),
                )
                .await?;
            output::print(o.output, &v, |v| {
                format!(
                    "token {} for {} (role {}):\n\n    {}\n",
                    s(&v["id"]),
                    s(&v["human"]),
                    s(&v["role"]),
                    s(&v["token"])
                )
            });
            eprintln!(
                "warning: store this secret now (e.g. in a password manager): it is shown once; \
                 warrant keeps only its hash. Hand it to {} over a private channel.",
                s(&v["human"])
            );
        }
        TokenCmd::List => {
            let v = c.get("/v1/tokens").await?;
            output::print(o.output, &v, |v| {
                let list = items(v);
                if list.is_empty() {
                    return "no tokens".to_owned();
                }
                table(
                    &["id", "name", "human", "role", "created", "revoked"],
                    list.iter()
                        .map(|t| {
                            ["id", "name", "human", "role", "created_at", "revoked_at"]
                                .iter()
                                .map(|k| s(&t[*k]))
                                .collect()
                        })
                        .collect(),
                )
            });
        }
        TokenCmd::Revoke { id } => {
            let v = c
                .post(&format!("/v1/tokens/{}/revoke", encode(&id)), &json!({}))
                .await?;
            output::print(o.output, &v, |v| {
                format!(
                    "token {} ({}, {}) revoked at {}",
                    s(&v["id"]),
                    s(&v["human"]),
                    s(&v["role"]),
                    s(&v["revoked_at"])
                )
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn role_rows(list: &[Value]) -> String {
    if list.is_empty() {
        return "no roles".to_owned();
    }
    table(
        &[
            "name",
            "privileged",
            "entitlements",
            "members",
            "description",
        ],
        list.iter()
            .map(|r| {
                vec![
                    s(&r["role"]["name"]),
                    yes_no(&r["role"]["privileged"]),
                    s(&r["role"]["entitlements"]),
                    s(&r["members"]),
                    s(&r["role"]["description"]),
                ]
            })
            .collect(),
    )
}

async fn role(o: &ClientOpts, cmd: RoleCmd) -> anyhow::Result<ExitCode> {
    let c = client(o)?;
    match cmd {
        RoleCmd::Put {
            name,
            entitlements,
            privileged,
            description,
        } => {
            let v = c
                .put(
                    &format!("/v1/roles/{}", encode(&name)),
                    &json!({
                        "entitlements": non_empty(entitlements), "privileged": privileged,
                        "description": description.unwrap_or_default(),
                    }),
                )
                .await?;
            output::print(o.output, &v, |v| role_rows(std::slice::from_ref(v)));
        }
        RoleCmd::List => {
            let v = c.get("/v1/roles").await?;
            output::print(o.output, &v, |v| role_rows(items(v)));
        }
        RoleCmd::Show { name } => {
            let v = c.get(&format!("/v1/roles/{}", encode(&name))).await?;
            output::print(o.output, &v, |v| role_rows(std::slice::from_ref(v)));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn resource_rows(list: &[Value]) -> String {
    if list.is_empty() {
        return "no resources declared".to_owned();
    }
    table(
        &["id", "classification", "privileged", "description"],
        list.iter()
            .map(|r| {
                vec![
                    s(&r["id"]),
                    s(&r["classification"]),
                    yes_no(&r["privileged"]),
                    s(&r["description"]),
                ]
            })
            .collect(),
    )
}

async fn resource(o: &ClientOpts, cmd: ResourceCmd) -> anyhow::Result<ExitCode> {
    let c = client(o)?;
    match cmd {
        ResourceCmd::Put {
            id,
            classification,
            privileged,
            description,
        } => {
            let v = c
                .put(
                    &format!("/v1/resources/{}", encode(&id)),
                    &json!({
                        "classification": classification, "privileged": privileged,
                        "description": description.unwrap_or_default(),
                    }),
                )
                .await?;
            output::print(o.output, &v, |v| resource_rows(std::slice::from_ref(v)));
        }
        ResourceCmd::List => {
            let v = c.get("/v1/resources").await?;
            output::print(o.output, &v, |v| resource_rows(items(v)));
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn tier_policy(o: &ClientOpts, cmd: TierPolicyCmd) -> anyhow::Result<ExitCode> {
    let c = client(o)?;
    match cmd {
        TierPolicyCmd::Show => {
            let v = c.get("/v1/tier-policies").await?;
            output::print(o.output, &v, |v| {
                format!(
                    "# tier policies version {}{}\n# policies: {}\n{}",
                    s(&v["version"]),
                    if v["version"].as_u64() == Some(0) {
                        " (the built-in defaults)"
                    } else {
                        ""
                    },
                    s(&v["policy_ids"]),
                    v["policies"].as_str().unwrap_or("").trim_end()
                )
            });
        }
        TierPolicyCmd::Put { file, comment } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read `{}`", file.display()))?;
            let r = c
                .put(
                    "/v1/tier-policies",
                    &json!({ "policies": text, "comment": comment.unwrap_or_default() }),
                )
                .await;
            let v = match r {
                Ok(v) => v,
                Err(e) => {
                    // Diagnostics name the file, so editors can jump to them.
                    if print_diagnostics(&e, Some(&file.display().to_string())) {
                        let msg = match &e {
                            ClientError::Api {
                                message, status, ..
                            } => format!("{message} (HTTP {status})"),
                            other => other.to_string(),
                        };
                        return Err(anyhow!(msg));
                    }
                    return Err(e.into());
                }
            };
            output::print(o.output, &v, |v| {
                format!(
                    "tier policies version {} in force: {}",
                    s(&v["version"]),
                    s(&v["policy_ids"])
                )
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        crate::TopLevel::command().debug_assert();
    }

    #[test]
    fn words_for_changes_and_durations() {
        assert_eq!(
            change_text(
                &json!({"kind": "grant_entitlement", "identity": "idn_1", "entitlement": "db:x:read"})
            ),
            "grant `db:x:read` to idn_1"
        );
        assert_eq!(
            change_text(
                &json!({"kind": "modify_trust", "identity": "idn_1", "add": ["a"], "remove": []})
            ),
            "modify the trust of idn_1: add a"
        );
        assert_eq!(duration_text(90_061_000), "1d 1h");
        assert_eq!(duration_text(3_660_000), "1h 1m");
        assert_eq!(duration_text(-5), "0m 0s");
        assert_eq!(percent(0.8), 80);
        assert!(unit_interval("1.5").is_err());
    }
}
