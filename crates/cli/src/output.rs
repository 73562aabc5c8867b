//! Printing: tables by default, JSON with `--output json`.

use crate::Output;
use comfy_table::{presets::UTF8_BORDERS_ONLY, ContentArrangement, Table};
use serde_json::Value;

pub fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(s).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

/// The `items` array of a list response (empty if absent).
pub fn items(v: &Value) -> &[Value] {
    v["items"].as_array().map(Vec::as_slice).unwrap_or(&[])
}

pub fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(headers.to_vec());
    for r in rows {
        t.add_row(r);
    }
    t.to_string()
}

/// Key/value listing of selected fields of one object.
pub fn fields(v: &Value, keys: &[&str]) -> String {
    let rows = keys
        .iter()
        .map(|k| vec![(*k).to_owned(), s(&v[*k])])
        .collect();
    table(&["field", "value"], rows)
}

pub fn print(output: Output, v: &Value, render: impl FnOnce(&Value) -> String) {
    let text = match output {
        Output::Json => serde_json::to_string_pretty(v).unwrap_or_default(),
        Output::Table => render(v),
    };
    line(&text);
}

/// Writes one line to stdout. A closed pipe (`warrant … | head`) ends the program quietly,
/// as command-line tools do, instead of panicking.
pub fn line(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{text}").and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
    }
}

pub const IDENTITY_FIELDS: &[&str] = &[
    "id",
    "name",
    "kind",
    "environment",
    "spiffe_id",
    "owner",
    "state",
    "roles",
    "entitlements",
    "description",
    "created_at",
    "updated_at",
    "last_used_at",
];

pub fn identity_rows(items: &[Value]) -> String {
    table(
        &[
            "id",
            "name",
            "kind",
            "env",
            "owner",
            "state",
            "roles",
            "last used",
        ],
        items
            .iter()
            .map(|i| {
                [
                    "id",
                    "name",
                    "kind",
                    "environment",
                    "owner",
                    "state",
                    "roles",
                    "last_used_at",
                ]
                .iter()
                .map(|k| s(&i[*k]))
                .collect()
            })
            .collect(),
    )
}

pub fn record_rows(items: &[Value]) -> String {
    table(
        &["seq", "time", "kind", "actor", "subject", "summary"],
        items
            .iter()
            .map(|r| {
                let p = &r["payload"];
                let summary = match r["kind"].as_str() {
                    Some("decision") => format!(
                        "{} {} {} → {}",
                        s(&p["principal"]),
                        s(&p["action"]),
                        s(&p["resource"]),
                        s(&p["decision"])
                    ),
                    Some("policy.updated") => format!("version {}", s(&p["version"])),
                    Some(k) if k.starts_with("identity.") => {
                        let i = &p["identity"];
                        format!(
                            "{}@{} ({})",
                            s(&i["name"]),
                            s(&i["environment"]),
                            s(&i["state"])
                        )
                    }
                    _ => {
                        let t = p.to_string();
                        t.chars().take(60).collect()
                    }
                };
                vec![
                    s(&r["seq"]),
                    s(&r["time"]),
                    s(&r["kind"]),
                    s(&r["actor"]),
                    s(&r["subject"]),
                    summary,
                ]
            })
            .collect(),
    )
}
