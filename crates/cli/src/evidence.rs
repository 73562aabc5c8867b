//! `warrant evidence export`: an auditor's evidence pack for a period, built as a client of
//! the HTTP API. Every access change of the period with who authorized it (the named human
//! or the documented exception), each record re-verified locally: leaf hash recomputed
//! with warrant-core's canonical encoding, inclusion proof checked against the latest
//! signed checkpoint, the checkpoint's Ed25519 signature checked with the public key.

use crate::ClientOpts;
use anyhow::{anyhow, Context};
use base64::Engine;
use clap::{Subcommand, ValueEnum};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use warrant_client::{encode, Client};
use warrant_core::audit::AuditRecord;
use warrant_core::checkpoint::Checkpoint;
use warrant_core::merkle::{verify_inclusion, Hash};

#[derive(Subcommand)]
pub enum Command {
    /// Evidence for auditors (SOC 2, ISO 27001, NIS2, EU AI Act).
    Evidence {
        #[command(flatten)]
        client: ClientOpts,
        #[command(subcommand)]
        cmd: EvidenceCmd,
    },
}

#[derive(Subcommand)]
pub enum EvidenceCmd {
    /// Export every access change of a period, who authorized it and its verification,
    /// as DIR/report.html, DIR/changes.csv and DIR/changes.json. Exit status: 0 when every
    /// change has a named human or documented exception and every record verifies.
    Export {
        #[arg(long, value_enum)]
        framework: Framework,
        /// Start of the period (RFC 3339).
        #[arg(long)]
        from: String,
        /// End of the period (RFC 3339).
        #[arg(long)]
        to: String,
        /// Output directory (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Pinned checkpoint public key (PEM) to compare with the server's.
        #[arg(long, value_name = "FILE")]
        public_key: Option<PathBuf>,
    },
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Framework {
    Soc2,
    Iso27001,
    Nis2,
    EuAiAct,
}

impl Framework {
    fn name(self) -> &'static str {
        match self {
            Framework::Soc2 => "SOC 2",
            Framework::Iso27001 => "ISO/IEC 27001:2022",
            Framework::Nis2 => "NIS2 Directive",
            Framework::EuAiAct => "EU AI Act",
        }
    }

    fn controls(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Framework::Soc2 => &[
                ("CC6.1", "Logical access is restricted; access changes are authorized and logged."),
                ("CC6.2", "Identities are registered and authorized before access is granted."),
                ("CC6.3", "Access is granted, modified and removed based on authorization (least privilege)."),
                ("CC8.1", "Changes are authorized, documented, approved and traceable."),
            ],
            Framework::Iso27001 => &[
                ("A.5.15", "Access control: rules for access are established and enforced."),
                ("A.5.18", "Access rights: provisioned, reviewed, modified and removed with authorization."),
                ("A.8.2", "Privileged access rights: restricted and approved by a named human."),
                ("A.8.32", "Change management: changes are subject to approval and recorded."),
            ],
            Framework::Nis2 => &[(
                "Art. 21(2)(i)",
                "Access control policies and asset management, including human resources security.",
            )],
            Framework::EuAiAct => &[(
                "Art. 14",
                "Human oversight: AI proposals are tiered, named humans approve, override or ratify.",
            )],
        }
    }
}

/// The audit record kinds that change access.
const KINDS: [&str; 15] = [
    "identity.created",
    "identity.updated",
    "identity.suspended",
    "identity.resumed",
    "identity.retired",
    "entitlements.changed",
    "policy.updated",
    "tier_policy.updated",
    "capability.changed",
    "killswitch.engaged",
    "killswitch.released",
    "token.created",
    "token.revoked",
    "proposal.ratified",
    "human.decision",
];

/// Kinds reported as changes (the last two of [`KINDS`] only support them).
fn is_change(kind: &str) -> bool {
    KINDS.iter().take(13).any(|k| *k == kind)
}

pub async fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    let Command::Evidence { client, cmd } = cmd;
    let EvidenceCmd::Export {
        framework,
        from,
        to,
        out,
        public_key,
    } = cmd;
    let c = Client::new(&client.server, client.token.clone())?;
    export(&c, framework, &from, &to, &out, public_key.as_deref()).await
}

struct Verifier {
    key: ed25519_dalek::VerifyingKey,
    key_id: String,
    pinned_ok: Option<bool>,
}

async fn verifier(c: &Client, pinned: Option<&Path>) -> anyhow::Result<Verifier> {
    let pk = c.get("/v1/audit/public-key").await?;
    let hex_key = pk["public_key_hex"]
        .as_str()
        .ok_or_else(|| anyhow!("no public key from the server"))?;
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(hex_key, &mut bytes).context("the server's public key")?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes).context("the server's public key")?;
    let pinned_ok = match pinned {
        None => None,
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            let norm = |s: &str| s.split_whitespace().collect::<String>();
            Some(norm(&text) == norm(pk["public_key_pem"].as_str().unwrap_or_default()))
        }
    };
    Ok(Verifier {
        key_id: warrant_core::checkpoint::key_id(&key),
        key,
        pinned_ok,
    })
}

fn parse_ms(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

fn hash_of(v: &Value) -> Option<Hash> {
    let mut h = [0u8; 32];
    hex::decode_to_slice(v.as_str()?, &mut h).ok()?;
    Some(h)
}

/// Recomputes the record's leaf from its fields and checks its inclusion proof and the
/// checkpoint's signature. Returns (status, detail).
async fn verify_record(c: &Client, v: &Verifier, rec: &Value) -> (String, String) {
    let seq = rec["seq"].as_u64().unwrap_or(u64::MAX);
    let payload = match &rec["payload"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let Some(ts_ms) = rec["time"].as_str().and_then(parse_ms) else {
        return ("UNVERIFIED".into(), "unreadable record time".into());
    };
    let local = AuditRecord {
        seq,
        ts_ms,
        kind: rec["kind"].as_str().unwrap_or_default().to_owned(),
        actor: rec["actor"].as_str().unwrap_or_default().to_owned(),
        subject: rec["subject"].as_str().unwrap_or_default().to_owned(),
        payload,
        leaf_hash: [0; 32],
        root: [0; 32],
    }
    .computed_leaf_hash();
    let proof = match c.proof(seq).await {
        Ok(p) => p,
        Err(e) => return ("UNVERIFIED".into(), format!("no inclusion proof: {e}")),
    };
    let cp = &proof["checkpoint"];
    let sig = base64::engine::general_purpose::STANDARD
        .decode(cp["signature"].as_str().unwrap_or_default())
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok());
    let checkpoint = sig.and_then(|sig| {
        Checkpoint::from_signed_message(
            cp["signed_message"].as_str().unwrap_or_default(),
            cp["key_id"].as_str().unwrap_or_default(),
            sig,
        )
        .ok()
    });
    let Some(checkpoint) = checkpoint else {
        return ("UNVERIFIED".into(), "unreadable checkpoint".into());
    };
    if checkpoint.key_id != v.key_id || !checkpoint.verify(&v.key) {
        return (
            "UNVERIFIED".into(),
            "checkpoint signature does not verify".into(),
        );
    }
    let path: Option<Vec<Hash>> = proof["proof"]
        .as_array()
        .map(|a| a.iter().map(hash_of).collect())
        .unwrap_or(None);
    let Some(path) = path else {
        return ("UNVERIFIED".into(), "unreadable inclusion proof".into());
    };
    if verify_inclusion(&local, seq, checkpoint.size, &path, &checkpoint.root) {
        (
            "verified".into(),
            format!(
                "leaf {} in checkpoint size {} root {}",
                hex::encode(local),
                checkpoint.size,
                hex::encode(checkpoint.root)
            ),
        )
    } else {
        (
            "TAMPERED".into(),
            format!(
                "recomputed leaf {} is not in the signed tree (size {})",
                hex::encode(local),
                checkpoint.size
            ),
        )
    }
}

async fn records(c: &Client, q: &[(&str, Option<String>)]) -> anyhow::Result<Vec<Value>> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut qq: Vec<(&str, Option<String>)> = q.to_vec();
        qq.push(("limit", Some("1000".into())));
        qq.push(("cursor", cursor.clone()));
        let page = c.audit(&qq).await?;
        all.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_u64() {
            Some(n) => cursor = Some(n.to_string()),
            None => return Ok(all),
        }
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn fmt_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// One change of the report.
async fn change_of(
    c: &Client,
    rec: &Value,
    caps: &mut BTreeMap<String, Value>,
) -> anyhow::Result<Value> {
    let actor = s(&rec["actor"]);
    let payload = &rec["payload"];
    let what = {
        let label = s(&payload["change"]);
        if label.is_empty() {
            format!("{} {}", s(&rec["kind"]), s(&rec["subject"]))
        } else {
            format!("{} {} ({label})", s(&rec["kind"]), s(&rec["subject"]))
        }
    };
    let mut row = json!({
        "seq": rec["seq"], "time": rec["time"], "kind": rec["kind"], "subject": rec["subject"],
        "actor": actor, "what": what,
    });
    let auth = &payload["authorized_by"];
    if auth["certification"].is_string() {
        // A certification campaign's rule at its deadline (unanswered items): the admin
        // who opened the campaign with that rule answers for it.
        let opened_by = s(&auth["opened_by"]);
        row["source"] = json!("certification");
        row["named_human"] = json!(opened_by.strip_prefix("human:").unwrap_or_default());
        row["exception"] = json!(format!(
            "access certification {} ({}): rule `{}` applied at the deadline to unanswered items; campaign opened by {}",
            s(&auth["name"]),
            s(&auth["certification"]),
            s(&auth["rule"]),
            if opened_by.is_empty() { "unknown" } else { &opened_by }
        ));
    } else if auth.is_object() {
        let pid = s(&auth["proposal"]);
        let tier = auth["tier"].as_u64().unwrap_or(0);
        let proposal = c
            .get(&format!("/v1/proposals/{}", encode(&pid)))
            .await
            .map(|b| b["proposal"].clone())
            .unwrap_or(Value::Null);
        let cap_id = s(&auth["capability"]);
        if !caps.contains_key(&cap_id) {
            let cap = c
                .get(&format!("/v1/capabilities/{}", encode(&cap_id)))
                .await
                .unwrap_or(Value::Null);
            caps.insert(cap_id.clone(), cap);
        }
        let cap = caps.get(&cap_id).cloned().unwrap_or(Value::Null);
        let trail = records(c, &[("subject", Some(format!("proposal:{pid}")))])
            .await
            .unwrap_or_default();
        let ratified = trail.iter().find(|r| r["kind"] == "proposal.ratified");
        let overridden = trail
            .iter()
            .find(|r| r["kind"] == "human.decision" && r["payload"]["action"] == "override");
        let approvals: Vec<Value> = auth["approvals"].as_array().cloned().unwrap_or_default();
        let decision = &auth["decision"];
        let accepted_by = s(&cap["capability"]["accepted"]["by"]);
        let accepted_at = s(&cap["accepted_at"]);
        let mut named: Vec<String> = approvals.iter().map(|a| s(&a["by"])).collect();
        if decision.is_object() {
            named.push(s(&decision["by"]));
        }
        let policies = auth["tier_policies"]
            .as_array()
            .map(|a| a.iter().map(s).collect::<Vec<_>>().join(", "))
            .unwrap_or_default();
        // An owner's revocation in an access certification: the owner is the named human.
        let certified_by = cap_id
            .strip_prefix("certification:")
            .map(|_| s(&proposal["proposer"]))
            .filter(|o| !o.is_empty());
        let (named_human, exception) = if !named.is_empty() {
            (named.join(", "), String::new())
        } else if let Some(owner) = certified_by {
            (
                owner.clone(),
                format!(
                    "access certification {}: revoked by the identity's owner {owner} (Tier {tier}, tier policy [{policies}])",
                    s(&proposal["evidence"]["campaign_name"])
                ),
            )
        } else if tier == 1 || tier == 2 {
            let mut e = format!(
                "Tier {tier} allowed by tier policy [{policies}]; capability {cap_id} accepted by {} at {}",
                if accepted_by.is_empty() { "NOBODY" } else { &accepted_by },
                accepted_at
            );
            if tier == 2 {
                match (ratified, overridden) {
                    (_, Some(o)) => e.push_str(&format!(
                        "; overridden by {} (record {})",
                        s(&o["actor"]),
                        s(&o["seq"])
                    )),
                    (Some(r), None) => e.push_str(&format!(
                        "; ratified at {} (record {})",
                        s(&r["time"]),
                        s(&r["seq"])
                    )),
                    (None, None) => e.push_str("; review window open (not yet ratified)"),
                }
            }
            let ok = !accepted_by.is_empty();
            (
                if ok {
                    accepted_by.clone()
                } else {
                    String::new()
                },
                e,
            )
        } else {
            (String::new(), String::new())
        };
        let submitted = proposal["submitted_ms"].as_i64();
        let approve_secs = match (
            submitted,
            approvals.last().and_then(|a| a["at_ms"].as_i64()),
        ) {
            (Some(a), Some(b)) if tier >= 3 => Some((b - a) as f64 / 1000.0),
            _ => None,
        };
        row["source"] = json!("executor");
        row["proposal"] = json!(pid);
        row["capability"] = json!(cap_id);
        row["capability_owner"] = cap["capability"]["owner"].clone();
        row["capability_accepted_by"] = json!(accepted_by);
        row["capability_accepted_at"] = json!(accepted_at);
        row["tier"] = json!(tier);
        row["tier_policies"] = auth["tier_policies"].clone();
        row["tier_reasons"] = proposal["tier"]["policies"].clone();
        row["approvals"] = json!(approvals
            .iter()
            .map(
                |a| json!({ "by": a["by"], "at": a["at_ms"].as_i64().map(fmt_ms),
                             "justification": a["justification"], "ticket": a["ticket"] })
            )
            .collect::<Vec<_>>());
        row["decision"] = decision.clone();
        row["ratified"] = json!(ratified.map(|r| r["seq"].clone()));
        row["overridden"] = json!(overridden.is_some());
        row["execution"] = proposal["executions"].clone();
        row["named_human"] = json!(named_human);
        row["exception"] = json!(exception);
        row["time_to_approve_secs"] = json!(approve_secs);
    } else if let Some(h) = actor.strip_prefix("human:") {
        row["source"] = json!("direct");
        row["named_human"] = json!(h);
        row["exception"] = json!("");
    } else {
        row["source"] = json!("direct");
        row["named_human"] = json!("");
        row["exception"] = json!("");
    }
    let has_named = !s(&row["named_human"]).is_empty();
    row["no_named_human"] = json!(!has_named);
    Ok(row)
}

async fn export(
    c: &Client,
    framework: Framework,
    from: &str,
    to: &str,
    out: &Path,
    pinned: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    for (name, t) in [("--from", from), ("--to", to)] {
        if parse_ms(t).is_none() {
            return Err(anyhow!("{name} must be an RFC 3339 time, got `{t}`"));
        }
    }
    let v = verifier(c, pinned).await?;
    // A checkpoint covering everything so far (may be refused to read-only tokens).
    let _ = c.checkpoint().await;
    let mut recs = Vec::new();
    for kind in KINDS.iter().filter(|k| is_change(k)) {
        recs.extend(
            records(
                c,
                &[
                    ("kind", Some((*kind).to_owned())),
                    ("from", Some(from.to_owned())),
                    ("to", Some(to.to_owned())),
                ],
            )
            .await?,
        );
    }
    recs.sort_by_key(|r| r["seq"].as_u64());
    let mut caps = BTreeMap::new();
    let mut changes = Vec::new();
    for rec in &recs {
        let mut row = change_of(c, rec, &mut caps).await?;
        let (status, detail) = verify_record(c, &v, rec).await;
        row["verification"] = json!(status);
        row["verification_detail"] = json!(detail);
        changes.push(row);
    }
    // Capabilities with overdue reviews.
    let overdue: Vec<String> = c
        .get("/v1/capabilities")
        .await
        .ok()
        .and_then(|b| {
            let items = b["items"].as_array().or(b.as_array()).cloned()?;
            Some(
                items
                    .iter()
                    .filter(|x| x["autonomy"] == "review_overdue")
                    .map(|x| s(&x["capability"]["id"]))
                    .collect(),
            )
        })
        .unwrap_or_default();
    let summary = summarize(&changes, &overdue, v.pinned_ok);
    let from_ms = parse_ms(from).unwrap_or(i64::MIN);
    let to_ms = parse_ms(to).unwrap_or(i64::MAX);
    let ai = ai_decisions(c, from_ms, to_ms).await?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let doc = json!({
        "framework": framework.name(),
        "controls": framework.controls().iter().map(|(id, t)| json!({"id": id, "text": t})).collect::<Vec<_>>(),
        "period": { "from": from, "to": to },
        "server": c.base(),
        "public_key_id": v.key_id,
        "summary": summary,
        "changes": changes,
        "ai_decisions": ai,
    });
    std::fs::write(
        out.join("changes.json"),
        serde_json::to_string_pretty(&doc)?,
    )?;
    std::fs::write(out.join("changes.csv"), csv(&changes))?;
    std::fs::write(
        out.join("report.html"),
        html(framework, from, to, &v, &summary, &changes, &ai),
    )?;
    let bad = summary["unverified"].as_u64().unwrap_or(0)
        + summary["without_named_human"].as_u64().unwrap_or(0);
    let pin_bad = v.pinned_ok == Some(false);
    println!(
        "{} changes; {} unverified; {} without a named human; report in {}",
        changes.len(),
        summary["unverified"],
        summary["without_named_human"],
        out.display()
    );
    Ok(if bad == 0 && !pin_bad {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn summarize(changes: &[Value], overdue: &[String], pinned_ok: Option<bool>) -> Value {
    let mut per_tier: BTreeMap<String, u64> = BTreeMap::new();
    let mut t3: Vec<f64> = Vec::new();
    let (mut overrides, mut ratifications, mut no_human, mut ks, mut unverified) = (0, 0, 0, 0, 0);
    for ch in changes {
        let key = match ch["tier"].as_u64() {
            Some(t) => format!("tier {t}"),
            None => "direct".into(),
        };
        *per_tier.entry(key).or_default() += 1;
        if ch["overridden"] == true {
            overrides += 1;
        }
        if !ch["ratified"].is_null() {
            ratifications += 1;
        }
        if ch["no_named_human"] == true {
            no_human += 1;
        }
        if s(&ch["kind"]).starts_with("killswitch.") {
            ks += 1;
        }
        if ch["verification"] != "verified" {
            unverified += 1;
        }
        if let Some(x) = ch["time_to_approve_secs"].as_f64() {
            t3.push(x);
        }
    }
    t3.sort_by(|a, b| a.total_cmp(b));
    let median = if t3.is_empty() {
        None
    } else if t3.len() % 2 == 1 {
        t3.get(t3.len() / 2).copied()
    } else {
        let i = t3.len() / 2;
        Some((t3.get(i - 1).copied().unwrap_or(0.0) + t3.get(i).copied().unwrap_or(0.0)) / 2.0)
    };
    json!({
        "changes": changes.len(),
        "per_tier": per_tier,
        "overrides": overrides,
        "ratifications": ratifications,
        "tier3_time_to_approve_secs": { "median": median, "max": t3.last() },
        "without_named_human": no_human,
        "killswitch_events": ks,
        "capabilities_review_overdue": overdue,
        "unverified": unverified,
        "public_key_matches_pinned": pinned_ok,
    })
}

const CSV_COLS: [&str; 14] = [
    "seq",
    "time",
    "kind",
    "subject",
    "what",
    "actor",
    "source",
    "proposal",
    "tier",
    "named_human",
    "exception",
    "approvals",
    "no_named_human",
    "verification",
];

fn cell(ch: &Value, col: &str) -> String {
    if col == "approvals" {
        return ch["approvals"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| {
                        format!(
                            "{} [{}] {}",
                            s(&x["by"]),
                            s(&x["ticket"]),
                            s(&x["justification"])
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default();
    }
    s(&ch[col])
}

fn csv(changes: &[Value]) -> String {
    let q = |x: &str| format!("\"{}\"", x.replace('"', "\"\""));
    let mut out = CSV_COLS.join(",");
    out.push('\n');
    for ch in changes {
        let row: Vec<String> = CSV_COLS.iter().map(|c| q(&cell(ch, c))).collect();
        out.push_str(&row.join(","));
        out.push('\n');
    }
    out
}

/// The executor's authority in one line (empty for direct changes).
fn authorization(ch: &Value) -> String {
    if ch["proposal"].is_null() {
        return String::new();
    }
    let mut a = format!(
        "proposal {}; capability {} (owner {}); tier policies {}",
        s(&ch["proposal"]),
        s(&ch["capability"]),
        s(&ch["capability_owner"]),
        s(&ch["tier_policies"])
    );
    let d = &ch["decision"];
    if d.is_object() {
        a.push_str(&format!(
            "; {} by {}: {}",
            s(&d["action"]),
            s(&d["by"]),
            s(&d["justification"])
        ));
    }
    if let Some(last) = ch["execution"].as_array().and_then(|e| e.last()) {
        a.push_str(&format!("; execution {}", s(&last["status"])));
    }
    a
}

fn esc(x: &str) -> String {
    x.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn html(
    framework: Framework,
    from: &str,
    to: &str,
    v: &Verifier,
    summary: &Value,
    changes: &[Value],
    ai: &Value,
) -> String {
    let mut h = String::new();
    h.push_str("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>warrant evidence</title><style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;width:100%;font-size:12px}td,th{border:1px solid #999;padding:3px;vertical-align:top}.bad{background:#fdd;color:#900;font-weight:bold}.alert{border:3px solid #c00;padding:1em;background:#fee}@media print{a{color:black}}</style></head><body>\n");
    h.push_str(&format!(
        "<h1>Access change evidence — {}</h1>\n<p>Period: {} to {}. Checkpoint key id: {}.</p>\n",
        esc(framework.name()),
        esc(from),
        esc(to),
        esc(&v.key_id)
    ));
    let bad: Vec<&Value> = changes
        .iter()
        .filter(|c| c["verification"] != "verified")
        .collect();
    if !bad.is_empty() || v.pinned_ok == Some(false) {
        h.push_str("<div class=\"alert\"><h2>TAMPERED / UNVERIFIED RECORDS</h2><ul>");
        if v.pinned_ok == Some(false) {
            h.push_str("<li>The server's public key does not match the pinned key.</li>");
        }
        for b in &bad {
            h.push_str(&format!(
                "<li>Record {} ({}): {} — {}</li>",
                esc(&s(&b["seq"])),
                esc(&s(&b["kind"])),
                esc(&s(&b["verification"])),
                esc(&s(&b["verification_detail"]))
            ));
        }
        h.push_str("</ul></div>\n");
    }
    h.push_str("<h2>Controls</h2><ul>");
    for (id, text) in framework.controls() {
        h.push_str(&format!("<li><b>{}</b>: {}</li>", esc(id), esc(text)));
    }
    h.push_str("</ul>\n<h2>Summary</h2><table>");
    let t3 = &summary["tier3_time_to_approve_secs"];
    for (k, val) in [
        ("Changes", s(&summary["changes"])),
        ("Changes per tier", s(&summary["per_tier"])),
        ("Overrides", s(&summary["overrides"])),
        ("Ratifications", s(&summary["ratifications"])),
        (
            "Tier 3 time to approve (median / max, s)",
            format!("{} / {}", s(&t3["median"]), s(&t3["max"])),
        ),
        (
            "Changes without a named human",
            s(&summary["without_named_human"]),
        ),
        ("Kill-switch events", s(&summary["killswitch_events"])),
        (
            "Capabilities with overdue reviews",
            s(&summary["capabilities_review_overdue"]),
        ),
        ("Unverified records", s(&summary["unverified"])),
    ] {
        h.push_str(&format!(
            "<tr><th>{}</th><td>{}</td></tr>",
            esc(k),
            esc(&val)
        ));
    }
    h.push_str("</table>\n<h2>Changes</h2><table><tr><th>Record</th><th>Time</th><th>What</th><th>Actor</th><th>Tier</th><th>Named human or exception</th><th>Authorization (proposal, capability owner, tier policies, decision)</th><th>Approvals (justification, ticket)</th><th>Verification</th></tr>\n");
    for ch in changes {
        let verified = ch["verification"] == "verified";
        let who = if ch["no_named_human"] == true {
            "<span class=\"bad\">NO NAMED HUMAN</span>".to_owned()
        } else {
            let mut w = esc(&s(&ch["named_human"]));
            let e = s(&ch["exception"]);
            if !e.is_empty() {
                w.push_str(&format!("<br><i>{}</i>", esc(&e)));
            }
            w
        };
        h.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td{}>{}</td></tr>\n",
            esc(&s(&ch["seq"])),
            esc(&s(&ch["time"])),
            esc(&s(&ch["what"])),
            esc(&s(&ch["actor"])),
            esc(&s(&ch["tier"])),
            who,
            esc(&authorization(ch)),
            esc(&cell(ch, "approvals")),
            if verified { "" } else { " class=\"bad\"" },
            esc(&s(&ch["verification"])),
        ));
    }
    h.push_str("</table>\n");
    ai_section(&mut h, ai);
    h.push_str("</body></html>\n");
    h
}

/// The periodic AI decision audit: every proposal an AI capability made in the period,
/// per capability, with its tier, outcome and who decided — for the owner's review.
async fn ai_decisions(c: &Client, from_ms: i64, to_ms: i64) -> anyhow::Result<Value> {
    let mut by_cap: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = warrant_client::query(&[("limit", Some("500".into())), ("cursor", cursor.clone())]);
        let page = c.get(&format!("/v1/proposals{q}")).await?;
        for item in page["items"].as_array().into_iter().flatten() {
            let p = &item["proposal"];
            let at = p["submitted_ms"].as_i64().unwrap_or(0);
            if at < from_ms || at > to_ms {
                continue;
            }
            let mut decided: Vec<String> = p["approvals"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| s(&a["by"]))
                .collect();
            if p["decision"].is_object() {
                decided.push(format!(
                    "{} ({})",
                    s(&p["decision"]["by"]),
                    s(&p["decision"]["action"])
                ));
            }
            let change = &p["change"];
            let target = [
                &change["identity"],
                &change["role"],
                &change["role"]["name"],
            ]
            .into_iter()
            .find_map(|v| v.as_str())
            .unwrap_or_default()
            .to_owned();
            // Certification revocations are owners' acts, not AI decisions.
            if s(&p["capability"]).starts_with("certification:") {
                continue;
            }
            by_cap.entry(s(&p["capability"])).or_default().push(json!({
                "proposal": p["id"], "submitted": fmt_ms(at), "kind": change["kind"],
                "target": target, "tier": p["tier"]["tier"], "state": p["state"],
                "confidence_pct": p["confidence_pct"], "decided_by": decided,
                "owner": item["owner"],
            }));
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    Ok(Value::Array(
        by_cap
            .into_iter()
            .map(|(cap, items)| {
                let mut per_tier: BTreeMap<String, u64> = BTreeMap::new();
                let mut per_state: BTreeMap<String, u64> = BTreeMap::new();
                for i in &items {
                    *per_tier.entry(s(&i["tier"])).or_default() += 1;
                    *per_state.entry(s(&i["state"])).or_default() += 1;
                }
                json!({
                    "capability": cap,
                    "owner": items.first().map(|i| i["owner"].clone()).unwrap_or(Value::Null),
                    "proposals": items.len(),
                    "per_tier": per_tier,
                    "per_state": per_state,
                    "items": items,
                })
            })
            .collect(),
    ))
}

fn ai_section(h: &mut String, ai: &Value) {
    h.push_str("<h2>AI decision audit (per capability, for the owner's review)</h2>\n");
    let caps = ai.as_array().cloned().unwrap_or_default();
    if caps.is_empty() {
        h.push_str("<p>No AI proposals in the period.</p>\n");
        return;
    }
    for cap in caps {
        h.push_str(&format!(
            "<h3>{} — owner {}</h3><p>{} proposals; per tier {}; outcomes {}</p>",
            esc(&s(&cap["capability"])),
            esc(&s(&cap["owner"])),
            esc(&s(&cap["proposals"])),
            esc(&s(&cap["per_tier"])),
            esc(&s(&cap["per_state"])),
        ));
        h.push_str("<table><tr><th>Proposal</th><th>Submitted</th><th>Change</th><th>Target</th><th>Confidence</th><th>Tier</th><th>Outcome</th><th>Decided by</th></tr>\n");
        for i in cap["items"].as_array().into_iter().flatten() {
            h.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}%</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                esc(&s(&i["proposal"])),
                esc(&s(&i["submitted"])),
                esc(&s(&i["kind"])),
                esc(&s(&i["target"])),
                esc(&s(&i["confidence_pct"])),
                esc(&s(&i["tier"])),
                esc(&s(&i["state"])),
                esc(&s(&i["decided_by"])),
            ));
        }
        h.push_str("</table>\n");
    }
}
