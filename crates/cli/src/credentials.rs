//! `warrant keys …`: the public keys identities authenticate with (`private_key_jwt`), and
//! the keys that sign access tokens.

use crate::output::{self, s, table};
use crate::ClientOpts;
use anyhow::Context;
use clap::Subcommand;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::ExitCode;
use warrant_client::{encode, Client};

#[derive(Subcommand)]
pub enum Cmd {
    /// Register a public key (JWK: Ed25519 or P-256) an identity signs its client
    /// assertions with. Never pass a private key: it is refused.
    Add {
        /// Identity id (`idn_…`).
        identity: String,
        /// File holding the public JWK (JSON). Without a `kid`, its RFC 7638 thumbprint is
        /// the kid.
        #[arg(long, value_name = "FILE")]
        jwk: PathBuf,
    },
    /// List an identity's public keys (revoked ones included).
    List {
        /// Identity id (`idn_…`).
        identity: String,
    },
    /// Revoke one of an identity's public keys at once.
    Revoke {
        /// Identity id (`idn_…`).
        identity: String,
        /// Key id.
        kid: String,
    },
    /// Rotate the access-token signing key: a new key signs from now on; the old ones stay
    /// in the JWKS until their tokens have expired.
    Rotate,
    /// List the access-token signing keys.
    Signing,
}

const KEY_FIELDS: &[&str] = &["identity_id", "kid", "alg", "added_at", "revoked_at", "jwk"];

fn identity_key(v: &Value) -> String {
    output::fields(v, KEY_FIELDS)
}

fn identity_keys(v: &Value) -> String {
    let items = v["items"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if items.is_empty() {
        return "no keys".to_owned();
    }
    table(
        &["kid", "alg", "added", "revoked"],
        items
            .iter()
            .map(|k| {
                vec![
                    s(&k["kid"]),
                    s(&k["alg"]),
                    s(&k["added_at"]),
                    s(&k["revoked_at"]),
                ]
            })
            .collect(),
    )
}

fn signing_keys(v: &Value) -> String {
    let items = v["items"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if items.is_empty() {
        return "no signing keys".to_owned();
    }
    let yes = |b: &Value| {
        if b.as_bool() == Some(true) {
            "yes"
        } else {
            "no"
        }
        .to_owned()
    };
    table(
        &[
            "kid",
            "alg",
            "created",
            "retired",
            "leaves JWKS",
            "signing",
            "published",
        ],
        items
            .iter()
            .map(|k| {
                vec![
                    s(&k["kid"]),
                    s(&k["alg"]),
                    s(&k["created_at"]),
                    s(&k["retired_at"]),
                    s(&k["leaves_jwks_at"]),
                    yes(&k["signing"]),
                    yes(&k["published"]),
                ]
            })
            .collect(),
    )
}

fn read_jwk(path: &PathBuf) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("`{}` is not a JSON JWK", path.display()))
}

pub async fn run(o: &ClientOpts, cmd: Cmd) -> anyhow::Result<ExitCode> {
    let c = Client::new(&o.server, o.token.clone())?;
    match cmd {
        Cmd::Add { identity, jwk } => {
            let jwk = read_jwk(&jwk)?;
            let v = c
                .post(
                    &format!("/v1/identities/{}/keys", encode(&identity)),
                    &json!({ "jwk": jwk }),
                )
                .await?;
            output::print(o.output, &v, identity_key);
        }
        Cmd::List { identity } => {
            let v = c
                .get(&format!("/v1/identities/{}/keys", encode(&identity)))
                .await?;
            output::print(o.output, &v, identity_keys);
        }
        Cmd::Revoke { identity, kid } => {
            let v = c
                .request(
                    "DELETE".parse()?,
                    &format!("/v1/identities/{}/keys/{}", encode(&identity), encode(&kid)),
                    None,
                )
                .await?;
            output::print(o.output, &v, identity_key);
        }
        Cmd::Rotate => {
            let v = c.post("/v1/keys/rotate", &json!({})).await?;
            output::print(o.output, &v, signing_keys);
        }
        Cmd::Signing => {
            let v = c.get("/v1/keys").await?;
            output::print(o.output, &v, signing_keys);
        }
    }
    Ok(ExitCode::SUCCESS)
}
