//! `warrant killswitch …`: engage, release, list and show kill switches.

use crate::output::{self, s, table};
use crate::ClientOpts;
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::process::ExitCode;
use warrant_client::{encode, Client};

#[derive(Subcommand)]
pub enum Cmd {
    /// Stop identities at once: every decision for them is denied until the switch is
    /// released.
    Engage {
        #[command(flatten)]
        target: Target,
        /// Why (required; recorded in the audit log and given in every denial).
        #[arg(long)]
        reason: String,
    },
    /// Release an engaged kill switch.
    Release {
        /// Kill switch id (`ks_…`).
        id: String,
        /// Why (required; recorded in the audit log).
        #[arg(long)]
        reason: String,
    },
    /// List engaged kill switches (with `--all`, released ones too).
    List {
        /// Include released switches.
        #[arg(long)]
        all: bool,
    },
    /// Show one kill switch.
    Show {
        /// Kill switch id (`ks_…`).
        id: String,
    },
}

/// What to stop: exactly one.
#[derive(Args)]
#[group(required = true, multiple = false)]
pub struct Target {
    /// One identity (by id).
    #[arg(long, value_name = "ID")]
    identity: Option<String>,
    /// Every identity this human owns.
    #[arg(long, value_name = "EMAIL")]
    owner: Option<String>,
    /// Every identity in this environment.
    #[arg(long = "env", value_name = "ENV")]
    environment: Option<String>,
    /// All AI automation (identities of kind agent and ai_tool).
    #[arg(long)]
    all_ai: bool,
}

impl Target {
    fn to_json(&self) -> Value {
        match (&self.identity, &self.owner, &self.environment) {
            (Some(v), _, _) => json!({ "kind": "identity", "value": v }),
            (_, Some(v), _) => json!({ "kind": "owner", "value": v }),
            (_, _, Some(v)) => json!({ "kind": "environment", "value": v }),
            _ => json!({ "kind": "all_ai" }),
        }
    }
}

const FIELDS: &[&str] = &[
    "id",
    "state",
    "target",
    "reason",
    "engaged_at",
    "engaged_by",
    "released_at",
    "released_by",
    "release_reason",
];

fn target_text(t: &Value) -> String {
    match t["value"].as_str() {
        Some(v) => format!("{} {v}", s(&t["kind"])),
        None => match t["kind"].as_str() {
            Some("all_ai") => "all AI automation".to_owned(),
            _ => s(&t["kind"]),
        },
    }
}

fn cell(v: &Value, key: &str) -> String {
    if key == "target" {
        target_text(&v[key])
    } else {
        s(&v[key])
    }
}

fn one(v: &Value) -> String {
    table(
        &["field", "value"],
        FIELDS
            .iter()
            .map(|k| vec![(*k).to_owned(), cell(v, k)])
            .collect(),
    )
}

fn rows(items: &[Value], all: bool) -> String {
    if items.is_empty() {
        return if all {
            "no kill switches".to_owned()
        } else {
            "no kill switch engaged".to_owned()
        };
    }
    let mut keys = vec![
        "id",
        "state",
        "target",
        "reason",
        "engaged_at",
        "engaged_by",
    ];
    if all {
        keys.extend(["released_at", "released_by"]);
    }
    let headers: Vec<&str> = keys
        .iter()
        .map(|k| match *k {
            "engaged_at" => "engaged",
            "engaged_by" => "by",
            "released_at" => "released",
            "released_by" => "released by",
            other => other,
        })
        .collect();
    table(
        &headers,
        items
            .iter()
            .map(|i| keys.iter().map(|k| cell(i, k)).collect())
            .collect(),
    )
}

pub async fn run(o: &ClientOpts, cmd: Cmd) -> anyhow::Result<ExitCode> {
    let c = Client::new(&o.server, o.token.clone())?;
    match cmd {
        Cmd::Engage { target, reason } => {
            let v = c
                .post(
                    "/v1/killswitches",
                    &json!({ "target": target.to_json(), "reason": reason }),
                )
                .await?;
            output::print(o.output, &v, one);
        }
        Cmd::Release { id, reason } => {
            let v = c
                .post(
                    &format!("/v1/killswitches/{}/release", encode(&id)),
                    &json!({ "reason": reason }),
                )
                .await?;
            output::print(o.output, &v, one);
        }
        Cmd::List { all } => {
            let v = c.get(&format!("/v1/killswitches?all={all}")).await?;
            output::print(o.output, &v, |v| {
                rows(v["items"].as_array().map(Vec::as_slice).unwrap_or(&[]), all)
            });
        }
        Cmd::Show { id } => {
            let v = c.get(&format!("/v1/killswitches/{}", encode(&id))).await?;
            output::print(o.output, &v, one);
        }
    }
    Ok(ExitCode::SUCCESS)
}
