//! The humans who operate warrant: `warrant human|grant|whoami|login|password`. Accounts
//! are created without roles (with a one-time password the human replaces: `warrant
//! password`); a control-plane role (admin, approver, auditor, owner) is asked for with
//! `grant request` and takes effect when a second named admin — neither the requester nor
//! the grantee — approves it (`grant approve`). The very first admin, asked for with the
//! bootstrap token while no named human holds `admin`, is granted at once. A human gets
//! API tokens for themselves only: `warrant login` (password) or the console.

use crate::output::{self, s, table};
use crate::ClientOpts;
use anyhow::{bail, Context};
use clap::Subcommand;
use serde_json::{json, Value};
use std::process::ExitCode;
use warrant_client::{encode, query, Client};

const ROLES: [&str; 4] = ["admin", "approver", "auditor", "owner"];

#[derive(Subcommand)]
pub enum Command {
    /// Accounts of the humans who operate warrant, and their control-plane roles.
    Human {
        #[command(flatten)]
        client: ClientOpts,
        #[command(subcommand)]
        cmd: HumanCmd,
    },
    /// Two-person role grants: one admin asks, a second named admin approves.
    Grant {
        #[command(flatten)]
        client: ClientOpts,
        #[command(subcommand)]
        cmd: GrantCmd,
    },
    /// Access certification campaigns: owners confirm or revoke each entitlement of their
    /// identities by a deadline; revocations run through the tiered workflow.
    Certification {
        #[command(flatten)]
        client: ClientOpts,
        #[command(subcommand)]
        cmd: CertCmd,
    },
    /// Who the credential (WARRANT_TOKEN) belongs to, and the roles in effect.
    Whoami {
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Get an API token for yourself with your local password (read from standard input,
    /// its first line): it acts with one role you hold. The secret is shown once.
    Login {
        #[command(flatten)]
        client: ClientOpts,
        /// Your user name.
        username: String,
        /// The one role the token acts with.
        #[arg(long, value_parser = ROLES)]
        role: String,
        /// A label [default: "<username> CLI (<role>)"].
        #[arg(long)]
        name: Option<String>,
    },
    /// Replace your local password (a one-time password set by an admin must be replaced
    /// before use). Reads two lines from standard input: the current password, then the
    /// new one (at least 12 characters). Ends your console sessions.
    Password {
        #[command(flatten)]
        client: ClientOpts,
        /// Your user name.
        username: String,
    },
}

#[derive(Subcommand)]
pub enum HumanCmd {
    /// Create an account (no roles: ask for them with `warrant grant request`).
    Create {
        /// Unique name: a user name or e-mail address, compared without case.
        name: String,
        /// The name shown in the console [default: NAME].
        #[arg(long)]
        display_name: Option<String>,
        /// Read a one-time local password (at least 12 characters) from standard input (its
        /// first line); the human replaces it with `warrant password` before using it.
        /// Without it the human signs in with single sign-on only.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List accounts with their roles.
    List,
    /// Show one account.
    Show { name: String },
    /// Disable an account: its tokens stop working and its sessions end at once.
    Disable { name: String },
    /// Enable a disabled account again.
    Enable { name: String },
    /// Take a control-plane role away (one admin suffices; effective at once).
    RevokeRole {
        name: String,
        #[arg(long, value_parser = ROLES)]
        role: String,
        /// Why (recorded in the audit log).
        #[arg(long)]
        justification: String,
    },
}

#[derive(Subcommand)]
pub enum GrantCmd {
    /// Ask for a human to be given a control-plane role.
    Request {
        /// The human who is to hold the role.
        #[arg(long, value_name = "NAME")]
        human: String,
        #[arg(long, value_parser = ROLES)]
        role: String,
        /// Why (10 to 2000 characters; recorded in the audit log).
        #[arg(long)]
        justification: String,
    },
    /// List role grants, newest first.
    List {
        #[arg(long, value_parser = ["pending", "approved", "rejected"])]
        state: Option<String>,
    },
    /// Approve a pending role grant (a named admin who neither asked for it nor gets it).
    Approve {
        /// Role grant id (`grt_…`).
        id: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Reject a pending role grant.
    Reject {
        /// Role grant id (`grt_…`).
        id: String,
        #[arg(long)]
        note: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum CertCmd {
    /// Open a campaign (admin): one item per direct entitlement of every identity that is
    /// not retired (optionally one owner's or one environment's).
    Create {
        #[arg(long)]
        name: String,
        /// RFC 3339 (`2026-12-31T17:00:00Z`): answers are accepted until then.
        #[arg(long)]
        deadline: String,
        /// What happens to items nobody answered by the deadline.
        #[arg(long, value_parser = ["escalate", "suspend"])]
        unanswered: String,
        #[arg(long)]
        owner: Option<String>,
        #[arg(long)]
        environment: Option<String>,
    },
    /// Campaigns, newest first (an owner sees their own items only).
    List,
    /// One campaign with its items.
    Show { id: String },
    /// Confirm or revoke one item (its identity's owner). A revocation needs a note.
    Answer {
        id: String,
        item: u32,
        #[arg(long, value_parser = ["confirm", "revoke"])]
        decision: String,
        #[arg(long, default_value = "")]
        note: String,
    },
}

pub async fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Certification { client, cmd } => certification(&client, cmd).await,
        Command::Human { client, cmd } => human(&client, cmd).await,
        Command::Grant { client, cmd } => grant(&client, cmd).await,
        Command::Whoami { client } => whoami(&client).await,
        Command::Login {
            client,
            username,
            role,
            name,
        } => login(&client, &username, &role, name).await,
        Command::Password { client, username } => password(&client, &username).await,
    }
}

fn client(o: &ClientOpts) -> anyhow::Result<Client> {
    o.client()
}

use crate::output::items;

fn roles_text(v: &Value) -> String {
    match v.as_array() {
        Some(a) if a.is_empty() => "none".to_owned(),
        _ => s(v),
    }
}

fn human_rows(list: &[Value]) -> String {
    if list.is_empty() {
        return "no humans".to_owned();
    }
    table(
        &["name", "display name", "roles", "sign-in", "disabled"],
        list.iter()
            .map(|h| {
                let mut sign_in = vec![];
                if h["local_password"].as_bool() == Some(true) {
                    sign_in.push("password".to_owned());
                }
                if let Some(o) = h["oidc"].as_str() {
                    sign_in.push(format!("sso ({o})"));
                }
                vec![
                    s(&h["name"]),
                    s(&h["display_name"]),
                    roles_text(&h["roles"]),
                    if sign_in.is_empty() {
                        "tokens only".to_owned()
                    } else {
                        sign_in.join(", ")
                    },
                    if h["disabled"].as_bool() == Some(true) {
                        "yes"
                    } else {
                        "no"
                    }
                    .to_owned(),
                ]
            })
            .collect(),
    )
}

fn human_fields(v: &Value) -> String {
    let mut v = v.clone();
    v["roles"] = json!(roles_text(&v["roles"]));
    output::fields(
        &v,
        &[
            "name",
            "display_name",
            "roles",
            "local_password",
            "oidc",
            "disabled",
            "created_at",
            "updated_at",
        ],
    )
}

/// The next line of standard input, without its line ending: `what` (a password).
fn read_secret(what: &str) -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .with_context(|| format!("cannot read the {what} from standard input"))?;
    let p = line.trim_end_matches(['\r', '\n']).to_owned();
    if p.is_empty() {
        bail!("standard input holds no {what}");
    }
    Ok(p)
}

fn read_password() -> anyhow::Result<String> {
    read_secret("password")
}

async fn human(o: &ClientOpts, cmd: HumanCmd) -> anyhow::Result<ExitCode> {
    let c = client(o)?;
    let path = |name: &str| format!("/v1/humans/{}", encode(name));
    let v = match cmd {
        HumanCmd::Create {
            name,
            display_name,
            password_stdin,
        } => {
            let mut body = json!({ "name": name });
            if let Some(d) = display_name {
                body["display_name"] = json!(d);
            }
            if password_stdin {
                body["password"] = json!(read_password()?);
            }
            let v = c.post("/v1/humans", &body).await?;
            output::print(o.output, &v, |v| {
                format!(
                    "human {} created (no roles; ask for one with `warrant grant request --human {} --role …`)",
                    s(&v["name"]),
                    s(&v["name"])
                )
            });
            return Ok(ExitCode::SUCCESS);
        }
        HumanCmd::List => {
            let v = c.get("/v1/humans").await?;
            output::print(o.output, &v, |v| human_rows(items(v)));
            return Ok(ExitCode::SUCCESS);
        }
        HumanCmd::Show { name } => c.get(&path(&name)).await?,
        HumanCmd::Disable { name } => c.patch(&path(&name), &json!({ "disabled": true })).await?,
        HumanCmd::Enable { name } => c.patch(&path(&name), &json!({ "disabled": false })).await?,
        HumanCmd::RevokeRole {
            name,
            role,
            justification,
        } => {
            c.post(
                &format!("{}/roles/{}/revoke", path(&name), encode(&role)),
                &json!({ "justification": justification }),
            )
            .await?
        }
    };
    output::print(o.output, &v, human_fields);
    Ok(ExitCode::SUCCESS)
}

fn grant_rows(list: &[Value]) -> String {
    if list.is_empty() {
        return "no role grants".to_owned();
    }
    table(
        &[
            "id",
            "human",
            "role",
            "state",
            "requested by",
            "requested",
            "decided by",
            "justification",
        ],
        list.iter()
            .map(|g| {
                [
                    "id",
                    "human",
                    "role",
                    "state",
                    "requested_by",
                    "requested_at",
                    "decided_by",
                    "justification",
                ]
                .iter()
                .map(|k| s(&g[*k]))
                .collect()
            })
            .collect(),
    )
}

/// One line about a grant: what it is and what happens next.
fn grant_text(g: &Value) -> String {
    let what = format!(
        "role grant {}: `{}` for {}",
        s(&g["id"]),
        s(&g["role"]),
        s(&g["human"])
    );
    match g["state"].as_str() {
        Some("pending") => format!(
            "{what} is pending until {}: a second named admin (neither the requester nor {}) approves it with `warrant grant approve {}`",
            s(&g["expires_at"]),
            s(&g["human"]),
            s(&g["id"])
        ),
        Some("approved") if g["bootstrap"].as_bool() == Some(true) => {
            format!("{what} approved: the first admin, granted with the bootstrap token")
        }
        Some(state) => {
            let note = g["note"]
                .as_str()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default();
            format!("{what} {state} by {}{note}", s(&g["decided_by"]))
        }
        None => what,
    }
}

async fn grant(o: &ClientOpts, cmd: GrantCmd) -> anyhow::Result<ExitCode> {
    let c = client(o)?;
    let v = match cmd {
        GrantCmd::Request {
            human,
            role,
            justification,
        } => {
            c.post(
                "/v1/role-grants",
                &json!({ "human": human, "role": role, "justification": justification }),
            )
            .await?
        }
        GrantCmd::List { state } => {
            let v = c
                .get(&format!("/v1/role-grants{}", query(&[("state", state)])))
                .await?;
            output::print(o.output, &v, |v| grant_rows(items(v)));
            return Ok(ExitCode::SUCCESS);
        }
        GrantCmd::Approve { id, note } => {
            c.post(
                &format!("/v1/role-grants/{}/approve", encode(&id)),
                &json!({ "note": note.unwrap_or_default() }),
            )
            .await?
        }
        GrantCmd::Reject { id, note } => {
            c.post(
                &format!("/v1/role-grants/{}/reject", encode(&id)),
                &json!({ "note": note.unwrap_or_default() }),
            )
            .await?
        }
    };
    output::print(o.output, &v, grant_text);
    Ok(ExitCode::SUCCESS)
}

async fn login(
    o: &ClientOpts,
    username: &str,
    role: &str,
    name: Option<String>,
) -> anyhow::Result<ExitCode> {
    let password = read_password()?;
    let name = name.unwrap_or_else(|| format!("{username} CLI ({role})"));
    // The password is the credential: no bearer token is sent.
    let c = Client::new(&o.server, None)?;
    let v = c
        .post(
            "/v1/auth/token",
            &json!({ "username": username, "password": password, "role": role, "name": name }),
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
        "warning: store this secret now (e.g. export WARRANT_TOKEN from a password manager): \
         it is shown once; warrant keeps only its hash."
    );
    Ok(ExitCode::SUCCESS)
}

async fn password(o: &ClientOpts, username: &str) -> anyhow::Result<ExitCode> {
    let current = read_secret("current password")?;
    let new = read_secret("new password")?;
    let c = Client::new(&o.server, None)?;
    c.post(
        "/v1/auth/password",
        &json!({ "username": username, "current_password": current, "new_password": new }),
    )
    .await?;
    output::print(
        o.output,
        &json!({ "username": username, "changed": true }),
        |_| format!("password of {username} changed"),
    );
    Ok(ExitCode::SUCCESS)
}

async fn whoami(o: &ClientOpts) -> anyhow::Result<ExitCode> {
    let v = client(o)?.get("/v1/me").await?;
    output::print(o.output, &v, |v| {
        let who = match v["kind"].as_str() {
            Some("bootstrap") => format!("the bootstrap admin token ({})", s(&v["name"])),
            Some("identity") => format!("identity {}", s(&v["name"])),
            _ => s(&v["name"]),
        };
        format!("{who}\nroles: {}", roles_text(&v["roles"]))
    });
    Ok(ExitCode::SUCCESS)
}

fn campaign_text(c: &Value) -> String {
    let mut out = format!(
        "campaign {} `{}`: {} (deadline {}, unanswered items: {}), {} of {} items unanswered\n",
        s(&c["id"]),
        s(&c["name"]),
        s(&c["state"]),
        s(&c["deadline"]),
        s(&c["unanswered"]),
        s(&c["pending_items"]),
        s(&c["total_items"]),
    );
    let rows: Vec<Vec<String>> = items(c)
        .iter()
        .map(|i| {
            let answer = if i["answer"].is_object() {
                let p = i["answer"]["proposal"]
                    .as_str()
                    .map(|p| format!(" → {p}"))
                    .unwrap_or_default();
                format!(
                    "{} by {}{p}",
                    s(&i["answer"]["decision"]),
                    s(&i["answer"]["by"])
                )
            } else {
                i["outcome"].as_str().unwrap_or("pending").to_owned()
            };
            vec![
                s(&i["id"]),
                format!("{} ({})", s(&i["identity_name"]), s(&i["environment"])),
                s(&i["owner"]),
                s(&i["entitlement"]),
                answer,
            ]
        })
        .collect();
    out.push_str(&table(
        &["item", "identity", "owner", "entitlement", "answer"],
        rows,
    ));
    out
}

async fn certification(o: &ClientOpts, cmd: CertCmd) -> anyhow::Result<ExitCode> {
    let c = client(o)?;
    let v = match cmd {
        CertCmd::Create {
            name,
            deadline,
            unanswered,
            owner,
            environment,
        } => {
            let mut body = json!({ "name": name, "deadline": deadline, "unanswered": unanswered });
            if let Some(x) = owner {
                body["owner"] = json!(x);
            }
            if let Some(x) = environment {
                body["environment"] = json!(x);
            }
            c.post("/v1/certifications", &body).await?
        }
        CertCmd::List => {
            let v = c.get("/v1/certifications").await?;
            output::print(o.output, &v, |v| {
                let list = items(v);
                if list.is_empty() {
                    return "no campaigns".to_owned();
                }
                table(
                    &[
                        "id",
                        "name",
                        "state",
                        "deadline",
                        "unanswered rule",
                        "unanswered items",
                    ],
                    list.iter()
                        .map(|c| {
                            vec![
                                s(&c["id"]),
                                s(&c["name"]),
                                s(&c["state"]),
                                s(&c["deadline"]),
                                s(&c["unanswered"]),
                                format!("{} of {}", s(&c["pending_items"]), s(&c["total_items"])),
                            ]
                        })
                        .collect(),
                )
            });
            return Ok(ExitCode::SUCCESS);
        }
        CertCmd::Show { id } => {
            c.get(&format!("/v1/certifications/{}", encode(&id)))
                .await?
        }
        CertCmd::Answer {
            id,
            item,
            decision,
            note,
        } => {
            c.post(
                &format!("/v1/certifications/{}/items/{item}", encode(&id)),
                &json!({ "decision": decision, "note": note }),
            )
            .await?
        }
    };
    output::print(o.output, &v, campaign_text);
    Ok(ExitCode::SUCCESS)
}
