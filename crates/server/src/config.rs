//! Server configuration: a versioned TOML file, then environment, then flags; validated
//! once into [`Config`].

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use warrant_store::sqlite::Durability;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";
pub const DEFAULT_DATA_DIR: &str = "warrant-data";

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// Local state: the SQLite database (unless `database` is set) and the signing keys.
    pub data_dir: PathBuf,
    /// A PostgreSQL URL (`postgres://…`) shared by every replica; `None` for the embedded
    /// SQLite database in `data_dir`. May carry a password: never log it (see
    /// [`redact_url`]).
    pub database: Option<String>,
    pub trust_domain: String,
    pub durability: Durability,
    pub checkpoint_interval: Duration,
    pub max_body_bytes: usize,
    pub max_batch: usize,
    pub last_used_flush: Duration,
    /// How often a replica checks for changes made through other replicas even without a
    /// change signal (the safety net under LISTEN/NOTIFY). Only used with PostgreSQL.
    pub sync_interval: Duration,
    /// From `WARRANT_ADMIN_TOKEN`; never logged.
    pub admin_token: Option<String>,
    /// The OAuth issuer (`iss` of access tokens, the base of the token endpoint URL that
    /// client assertions name as audience). Default `http://<listen>`.
    pub issuer: String,
    /// Access-token lifetimes: default and hard maximum.
    pub token_lifetimes: warrant_core::credentials::Lifetimes,
    /// Longest delegation chain (token exchange).
    pub max_delegation_depth: usize,
    /// Serve with TLS (and optionally request client certificates); `None`: plain HTTP.
    pub tls: Option<TlsFiles>,
    /// Tiered change governance: windows, expiries, approval rules, floor, aggregates,
    /// notifications and connectors.
    pub governance: crate::governance::GovConfig,
    /// Human sign-in: sessions and single sign-on.
    pub sign_in: crate::humans::SignInConfig,
    /// How often the governance job fires due timers and sends due deliveries.
    pub governance_tick: Duration,
}

/// The PEM files of the TLS listener. Paths only: the files are read (and checked) when
/// the server starts; the key's content is never logged.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The server certificate chain (leaf first).
    pub cert: PathBuf,
    /// The server certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The CA certificate(s) that issue workload client certificates (mTLS,
    /// `tls_client_auth`); `None`: no client certificate is requested.
    pub client_ca: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: DEFAULT_LISTEN
                .parse()
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 7878))),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            database: None,
            trust_domain: "warrant.local".into(),
            durability: Durability::Full,
            checkpoint_interval: Duration::from_secs(60),
            max_body_bytes: 1024 * 1024,
            max_batch: 1024,
            last_used_flush: Duration::from_secs(10),
            sync_interval: Duration::from_millis(500),
            admin_token: None,
            issuer: format!("http://{DEFAULT_LISTEN}"),
            token_lifetimes: warrant_core::credentials::Lifetimes::default(),
            max_delegation_depth: warrant_core::credentials::DEFAULT_MAX_DELEGATION_DEPTH,
            tls: None,
            governance: crate::governance::GovConfig::default(),
            sign_in: crate::humans::SignInConfig::default(),
            governance_tick: Duration::from_millis(500),
        }
    }
}

/// The config file (`warrant.toml`). Unknown keys are refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Config format version; must be 1.
    pub version: u32,
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    /// `postgres://user:password@host:port/database` for several replicas on one database.
    pub database: Option<String>,
    pub trust_domain: Option<String>,
    /// `full` (fsync every commit) or `normal` (survives process crash, not power loss).
    pub durability: Option<String>,
    pub checkpoint_interval_secs: Option<u64>,
    pub max_body_bytes: Option<usize>,
    /// Milliseconds between change checks of a PostgreSQL replica (100..=10000).
    pub sync_interval_ms: Option<u64>,
    /// OAuth issuer URL (`https://warrant.example.com`); default `http://<listen>`.
    pub issuer: Option<String>,
    /// Default access-token lifetime in seconds (300).
    pub token_lifetime_secs: Option<u64>,
    /// Hard maximum access-token lifetime in seconds (3600; at most 86400).
    pub token_max_lifetime_secs: Option<u64>,
    /// Longest delegation chain of a token exchange (3).
    pub max_delegation_depth: Option<usize>,
    /// PEM file: the server certificate chain; with `tls_key`, serve HTTPS.
    pub tls_cert: Option<PathBuf>,
    /// PEM file: the server certificate's private key.
    pub tls_key: Option<PathBuf>,
    /// PEM file: the CA(s) issuing workload client certificates (mTLS client auth).
    pub tls_client_ca: Option<PathBuf>,
    /// Tiered change governance.
    pub governance: Option<FileGovernance>,
    /// Human sign-in (sessions, single sign-on).
    pub sign_in: Option<FileSignIn>,
}

/// `[sign_in]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSignIn {
    /// Session lifetime in seconds (28800; 300 to 604800).
    pub session_ttl_secs: Option<u64>,
    /// Mark session cookies `Secure` (true).
    pub secure_cookies: Option<bool>,
    pub oidc: Option<FileOidc>,
}

/// `[sign_in.oidc]`: an OpenID Connect provider.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileOidc {
    pub issuer: String,
    pub client_id: String,
    /// Prefer the `WARRANT_OIDC_CLIENT_SECRET` environment variable.
    pub client_secret: Option<String>,
    /// Default `<issuer of warrant>/ui/auth/oidc/callback`.
    pub redirect_uri: Option<String>,
    /// Default `["profile", "email"]` (besides `openid`).
    pub scopes: Option<Vec<String>>,
    /// Button label (`Sign in with single sign-on`).
    pub label: Option<String>,
    /// Create accounts (with no roles) on first sign-in (true).
    pub auto_provision: Option<bool>,
}

fn sign_in(
    fs: FileSignIn,
    warrant_issuer: &str,
    env_secret: Option<String>,
) -> Result<crate::humans::SignInConfig, ConfigError> {
    let mut s = crate::humans::SignInConfig::default();
    if let Some(t) = fs.session_ttl_secs {
        if !(300..=604_800).contains(&t) {
            return Err(invalid("sign_in.session_ttl_secs", "must be 300 to 604800"));
        }
        s.session_ttl_ms = t as i64 * 1000;
    }
    if let Some(b) = fs.secure_cookies {
        s.secure_cookies = b;
    }
    if let Some(o) = fs.oidc {
        let url = |field: &'static str, v: &str| -> Result<(), ConfigError> {
            if v.starts_with("https://")
                || v.starts_with("http://127.0.0.1")
                || v.starts_with("http://localhost")
            {
                Ok(())
            } else {
                Err(invalid(
                    field,
                    "must be an https:// URL (plain http only on loopback)",
                ))
            }
        };
        url("sign_in.oidc.issuer", &o.issuer)?;
        if o.client_id.trim().is_empty() {
            return Err(invalid("sign_in.oidc.client_id", "must not be empty"));
        }
        let client_secret = env_secret
            .or(o.client_secret)
            .filter(|x| !x.is_empty())
            .ok_or_else(|| {
                invalid(
                    "sign_in.oidc.client_secret",
                    "is needed (set WARRANT_OIDC_CLIENT_SECRET)",
                )
            })?;
        let redirect_uri = o.redirect_uri.unwrap_or_else(|| {
            format!(
                "{}/ui/auth/oidc/callback",
                warrant_issuer.trim_end_matches('/')
            )
        });
        url("sign_in.oidc.redirect_uri", &redirect_uri)?;
        s.oidc = Some(crate::humans::oidc::OidcConfig {
            issuer: o.issuer,
            client_id: o.client_id,
            client_secret,
            redirect_uri,
            scopes: o
                .scopes
                .unwrap_or_else(|| vec!["profile".into(), "email".into()]),
            label: o
                .label
                .unwrap_or_else(|| "Sign in with single sign-on".into()),
            auto_provision: o.auto_provision.unwrap_or(true),
        });
    }
    Ok(s)
}

/// The `[governance]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileGovernance {
    /// Tier 2 override window in seconds (86400).
    pub override_window_secs: Option<u64>,
    /// Tier 3 approval expiry in seconds (604800).
    pub approval_expiry_secs: Option<u64>,
    /// Tier 4 recommendation expiry in seconds (2592000).
    pub recommendation_expiry_secs: Option<u64>,
    /// Shortest business justification, in characters (20).
    pub min_justification: Option<usize>,
    /// Regular expression change tickets must match (`^[A-Z][A-Z0-9]{1,15}-[0-9]{1,10}$`).
    pub ticket_pattern: Option<String>,
    /// Changes altering more identities than this are at least Tier 3 (10).
    pub floor_max_blast_radius: Option<u64>,
    /// Sliding window of the aggregates, in seconds (86400).
    pub aggregate_window_secs: Option<u64>,
    pub aggregate_capability_max: Option<u64>,
    pub aggregate_target_max: Option<u64>,
    pub aggregate_overall_max: Option<u64>,
    pub chain_max_blast: Option<u64>,
    pub chain_max_length: Option<u64>,
    /// How long a correlation chain is remembered, in seconds (30 days).
    pub chain_window_secs: Option<u64>,
    /// Default webhook for notifications (Slack-compatible) when a capability names none.
    pub notify_url: Option<String>,
    /// Delivery attempts before giving up (8).
    pub max_attempts: Option<u32>,
    /// First retry delay in milliseconds, doubled per attempt (1000).
    pub retry_base_ms: Option<u64>,
    /// Milliseconds between runs of the governance job (500).
    pub tick_ms: Option<u64>,
    /// External systems: `[governance.connectors.<name>] url = "https://…"`.
    #[serde(default)]
    pub connectors: std::collections::BTreeMap<String, FileConnector>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConnector {
    pub url: String,
}

fn governance(fg: FileGovernance) -> Result<crate::governance::GovConfig, ConfigError> {
    let mut g = crate::governance::GovConfig::default();
    let secs =
        |field: &'static str, v: Option<u64>, max: u64| -> Result<Option<i64>, ConfigError> {
            match v {
                None => Ok(None),
                Some(0) => Err(invalid(field, "must be at least 1")),
                Some(s) if s > max => Err(invalid(field, format!("must be at most {max}"))),
                Some(s) => Ok(Some(s as i64 * 1000)),
            }
        };
    const YEAR: u64 = 366 * 86_400;
    if let Some(ms) = secs(
        "governance.override_window_secs",
        fg.override_window_secs,
        YEAR,
    )? {
        g.override_window_ms = ms;
    }
    if let Some(ms) = secs(
        "governance.approval_expiry_secs",
        fg.approval_expiry_secs,
        YEAR,
    )? {
        g.approval_expiry_ms = ms;
    }
    if let Some(ms) = secs(
        "governance.recommendation_expiry_secs",
        fg.recommendation_expiry_secs,
        YEAR,
    )? {
        g.recommendation_expiry_ms = ms;
    }
    if let Some(ms) = secs(
        "governance.aggregate_window_secs",
        fg.aggregate_window_secs,
        YEAR,
    )? {
        g.thresholds.window_ms = ms;
    }
    if let Some(ms) = secs("governance.chain_window_secs", fg.chain_window_secs, YEAR)? {
        g.thresholds.chain_window_ms = ms;
    }
    if let Some(n) = fg.min_justification {
        if !(1..=2000).contains(&n) {
            return Err(invalid("governance.min_justification", "must be 1 to 2000"));
        }
        g.rules.min_justification = n;
    }
    if let Some(p) = fg.ticket_pattern {
        g.ticket_pattern = regex::Regex::new(&p).map_err(|e| {
            invalid(
                "governance.ticket_pattern",
                format!("not a valid regular expression: {e}"),
            )
        })?;
    }
    let positive = |field: &'static str, v: Option<u64>| -> Result<Option<u64>, ConfigError> {
        match v {
            Some(0) => Err(invalid(field, "must be at least 1")),
            v => Ok(v),
        }
    };
    if let Some(n) = positive(
        "governance.floor_max_blast_radius",
        fg.floor_max_blast_radius,
    )? {
        g.floor.max_blast_radius = n;
    }
    if let Some(n) = positive(
        "governance.aggregate_capability_max",
        fg.aggregate_capability_max,
    )? {
        g.thresholds.capability_max = n;
    }
    if let Some(n) = positive("governance.aggregate_target_max", fg.aggregate_target_max)? {
        g.thresholds.target_max = n;
    }
    if let Some(n) = positive("governance.aggregate_overall_max", fg.aggregate_overall_max)? {
        g.thresholds.overall_max = n;
    }
    if let Some(n) = positive("governance.chain_max_blast", fg.chain_max_blast)? {
        g.thresholds.chain_max_blast = n;
    }
    if let Some(n) = positive("governance.chain_max_length", fg.chain_max_length)? {
        g.thresholds.chain_max_length = n;
    }
    if let Some(url) = fg.notify_url {
        warrant_core::governance::check_webhook_url(&url)
            .map_err(|e| invalid("governance.notify_url", e.to_string()))?;
        g.notify_url = Some(url);
    }
    if let Some(n) = fg.max_attempts {
        if !(1..=100).contains(&n) {
            return Err(invalid("governance.max_attempts", "must be 1 to 100"));
        }
        g.max_attempts = n;
    }
    if let Some(ms) = fg.retry_base_ms {
        if !(10..=3_600_000).contains(&ms) {
            return Err(invalid("governance.retry_base_ms", "must be 10 to 3600000"));
        }
        g.retry_base_ms = ms as i64;
    }
    for (name, c) in fg.connectors {
        if name == "warrant"
            || name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            return Err(invalid(
                "governance.connectors",
                format!("connector name `{name}` must be lowercase letters, digits, `-`, `_` (and not `warrant`)"),
            ));
        }
        warrant_core::governance::check_webhook_url(&c.url)
            .map_err(|e| invalid("governance.connectors", format!("{name}: {e}")))?;
        g.connectors.insert(
            name.clone(),
            crate::governance::Connector { name, url: c.url },
        );
    }
    Ok(g)
}

/// Overrides from environment and flags (already merged by the CLI, flags winning).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database: Option<String>,
    pub trust_domain: Option<String>,
    pub durability: Option<String>,
    pub checkpoint_interval_secs: Option<u64>,
    pub admin_token: Option<String>,
    pub issuer: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_client_ca: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file `{path}`: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid config file `{path}`: {message}")]
    Parse { path: String, message: String },
    #[error("invalid {field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

fn invalid(field: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        message: message.into(),
    }
}

pub fn parse_durability(s: &str) -> Result<Durability, ConfigError> {
    match s {
        "full" => Ok(Durability::Full),
        "normal" => Ok(Durability::Normal),
        other => Err(invalid(
            "durability",
            format!("`{other}` is not `full` or `normal`"),
        )),
    }
}

impl Config {
    pub fn load(file: Option<&Path>, o: Overrides) -> Result<Config, ConfigError> {
        let fc = match file {
            None => FileConfig {
                version: 1,
                ..Default::default()
            },
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                toml::from_str::<FileConfig>(&text).map_err(|e| ConfigError::Parse {
                    path: path.display().to_string(),
                    message: e.message().to_owned(),
                })?
            }
        };
        if fc.version != 1 {
            return Err(invalid(
                "version",
                format!(
                    "config version {} is not supported (expected 1)",
                    fc.version
                ),
            ));
        }
        let mut c = Config::default();
        if let Some(l) = o.listen.or(fc.listen) {
            c.listen = l.parse().map_err(|_| {
                invalid(
                    "listen",
                    format!("`{l}` is not an address like 127.0.0.1:7878"),
                )
            })?;
        }
        if let Some(d) = o.data_dir.or(fc.data_dir) {
            c.data_dir = d;
        }
        if let Some(url) = o.database.or(fc.database).filter(|u| !u.is_empty()) {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(invalid(
                    "database",
                    format!(
                        "`{}` is not a PostgreSQL URL (postgres://user:password@host:port/database); leave it unset for the embedded SQLite database in the data directory",
                        redact_url(&url)
                    ),
                ));
            }
            c.database = Some(url);
        }
        if let Some(ms) = fc.sync_interval_ms {
            if !(100..=10_000).contains(&ms) {
                return Err(invalid("sync_interval_ms", "must be between 100 and 10000"));
            }
            c.sync_interval = Duration::from_millis(ms);
        }
        if let Some(t) = o.trust_domain.or(fc.trust_domain) {
            warrant_core::identity::validate_trust_domain(&t)
                .map_err(|e| invalid("trust_domain", e.to_string()))?;
            c.trust_domain = t;
        }
        if let Some(d) = o.durability.or(fc.durability) {
            c.durability = parse_durability(&d)?;
        }
        if let Some(s) = o.checkpoint_interval_secs.or(fc.checkpoint_interval_secs) {
            if s == 0 {
                return Err(invalid("checkpoint_interval_secs", "must be at least 1"));
            }
            c.checkpoint_interval = Duration::from_secs(s);
        }
        if let Some(b) = fc.max_body_bytes {
            if !(1024..=64 * 1024 * 1024).contains(&b) {
                return Err(invalid(
                    "max_body_bytes",
                    "must be between 1 KiB and 64 MiB",
                ));
            }
            c.max_body_bytes = b;
        }
        let nonempty = |p: Option<PathBuf>| p.filter(|p| !p.as_os_str().is_empty());
        let cert = nonempty(o.tls_cert.or(fc.tls_cert));
        let key = nonempty(o.tls_key.or(fc.tls_key));
        let client_ca = nonempty(o.tls_client_ca.or(fc.tls_client_ca));
        c.tls = match (cert, key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert,
                key,
                client_ca,
            }),
            (Some(_), None) => {
                return Err(invalid(
                    "tls_key",
                    "`tls_cert` is set but `tls_key` is not: TLS needs both the certificate chain and its private key",
                ))
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "tls_cert",
                    "`tls_key` is set but `tls_cert` is not: TLS needs both the certificate chain and its private key",
                ))
            }
            (None, None) if client_ca.is_some() => {
                return Err(invalid(
                    "tls_client_ca",
                    "client certificates need the TLS listener: set `tls_cert` and `tls_key` too",
                ))
            }
            (None, None) => None,
        };
        match o.issuer.or(fc.issuer) {
            Some(iss) => {
                let iss = iss.trim_end_matches('/').to_owned();
                if !(iss.starts_with("https://") || iss.starts_with("http://"))
                    || iss.contains(|c: char| c.is_whitespace() || c == '?' || c == '#')
                {
                    return Err(invalid(
                        "issuer",
                        format!("`{iss}` is not an http(s) URL without query or fragment"),
                    ));
                }
                c.issuer = iss;
            }
            None => {
                let scheme = if c.tls.is_some() { "https" } else { "http" };
                c.issuer = format!("{scheme}://{}", c.listen);
            }
        }
        let lifetime = fc
            .token_lifetime_secs
            .unwrap_or(c.token_lifetimes.default_secs);
        let max = fc
            .token_max_lifetime_secs
            .unwrap_or(c.token_lifetimes.max_secs);
        c.token_lifetimes = warrant_core::credentials::Lifetimes::new(lifetime, max)
            .map_err(|e| invalid("token_lifetime_secs", e.to_string()))?;
        if let Some(fg) = fc.governance {
            if let Some(ms) = fg.tick_ms {
                if !(50..=60_000).contains(&ms) {
                    return Err(invalid("governance.tick_ms", "must be 50 to 60000"));
                }
                c.governance_tick = Duration::from_millis(ms);
            }
            c.governance = governance(fg)?;
        }
        if let Some(fs) = fc.sign_in {
            c.sign_in = sign_in(
                fs,
                &c.issuer,
                std::env::var("WARRANT_OIDC_CLIENT_SECRET").ok(),
            )?;
        }
        if let Some(d) = fc.max_delegation_depth {
            if !(1..=10).contains(&d) {
                return Err(invalid("max_delegation_depth", "must be between 1 and 10"));
            }
            c.max_delegation_depth = d;
        }
        if let Some(t) = o.admin_token {
            if t.len() < 32 || t.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
                return Err(invalid(
                    "WARRANT_ADMIN_TOKEN",
                    "must be at least 32 characters without spaces",
                ));
            }
            c.admin_token = Some(t);
        }
        Ok(c)
    }

    /// Where the state lives, safe to log: `sqlite:<path>` or the PostgreSQL URL without
    /// its password.
    pub fn store_description(&self) -> String {
        match &self.database {
            Some(url) => redact_url(url),
            None => format!("sqlite:{}", self.db_path().display()),
        }
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("warrant.db")
    }

    pub fn keys_dir(&self) -> PathBuf {
        self.data_dir.join("keys")
    }
}

/// A database URL with any password replaced by `***` (for logs and error messages).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    // userinfo ends at the last `@` before the first `/` (passwords may contain `@`).
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let (userinfo, host) = authority.split_at(at);
    let user = userinfo.split(':').next().unwrap_or_default();
    let masked = if userinfo.contains(':') {
        format!("{user}:***")
    } else {
        user.to_owned()
    };
    format!("{scheme}://{masked}{host}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://warrant:s3cr@t@db.example:5432/warrant?sslmode=require"),
            "postgres://warrant:***@db.example:5432/warrant?sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1:5432/postgres"),
            "postgres://postgres@127.0.0.1:5432/postgres"
        );
        assert_eq!(redact_url("postgres://host/db"), "postgres://host/db");
    }

    #[test]
    fn tls_needs_both_files_and_switches_the_default_issuer() {
        let with = |cert: Option<&str>, key: Option<&str>, ca: Option<&str>| {
            Config::load(
                None,
                Overrides {
                    tls_cert: cert.map(PathBuf::from),
                    tls_key: key.map(PathBuf::from),
                    tls_client_ca: ca.map(PathBuf::from),
                    ..Default::default()
                },
            )
        };
        let c = with(Some("c.pem"), Some("k.pem"), Some("ca.pem")).unwrap();
        assert_eq!(c.issuer, format!("https://{DEFAULT_LISTEN}"));
        assert!(c.tls.is_some_and(|t| t.client_ca.is_some()));
        let plain = with(None, None, None).unwrap();
        assert!(plain.tls.is_none());
        assert_eq!(plain.issuer, format!("http://{DEFAULT_LISTEN}"));
        for (cert, key, ca, field) in [
            (Some("c.pem"), None, None, "tls_key"),
            (None, Some("k.pem"), None, "tls_cert"),
            (None, None, Some("ca.pem"), "tls_client_ca"),
        ] {
            let err = with(cert, key, ca).err().map(|e| e.to_string());
            assert!(
                err.as_deref().is_some_and(|e| e.contains(field)),
                "{field}: {err:?}"
            );
        }
    }

    #[test]
    fn database_urls_are_checked() {
        let with = |db: &str| {
            Config::load(
                None,
                Overrides {
                    database: Some(db.into()),
                    ..Default::default()
                },
            )
        };
        assert_eq!(
            with("postgresql://u:p@h/d").unwrap().database.as_deref(),
            Some("postgresql://u:p@h/d")
        );
        let err = with("mysql://u:hunter2@h/d").unwrap_err().to_string();
        assert!(err.contains("not a PostgreSQL URL"), "{err}");
        assert!(!err.contains("hunter2"), "password leaked: {err}");
        assert!(with("").unwrap().database.is_none());
    }
}
