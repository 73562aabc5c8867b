//! The `warrant` binary: `warrant serve` runs the server; every other subcommand is a
//! client of its HTTP API (`--server` / `WARRANT_SERVER`, `WARRANT_TOKEN`), except the
//! offline ones (`policy validate`, `audit verify`) which need no server.

// Indexing a `serde_json::Value` never panics (a missing key is `Null`).
#![allow(clippy::indexing_slicing)]

mod commands;
mod credentials;
mod evidence;
mod governance;
mod humans;
mod killswitch;
mod migrate;
mod offline;
mod output;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "warrant",
    version,
    about = "Control plane for AI agents and other non-human identities"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The whole command line: the core commands, the governance workflow's, evidence, and
/// the humans who operate warrant.
#[derive(Parser)]
#[command(
    name = "warrant",
    version,
    about = "Control plane for AI agents and other non-human identities"
)]
pub struct TopLevel {
    #[command(subcommand)]
    pub command: TopCommand,
}

#[derive(Subcommand)]
pub enum TopCommand {
    #[command(flatten)]
    Core(Command),
    #[command(flatten)]
    Governance(governance::Command),
    #[command(flatten)]
    Evidence(evidence::Command),
    #[command(flatten)]
    Humans(humans::Command),
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Args, Clone)]
pub struct ClientOpts {
    /// warrant server URL.
    #[arg(
        long,
        env = "WARRANT_SERVER",
        default_value = "http://127.0.0.1:7878",
        global = true
    )]
    pub server: String,
    /// API token (never pass it on a shared command line; prefer the environment).
    #[arg(long, env = "WARRANT_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "table", global = true)]
    pub output: Output,
}

impl ClientOpts {
    /// An HTTP client for the server and token these options name.
    pub fn client(&self) -> anyhow::Result<warrant_client::Client> {
        Ok(warrant_client::Client::new(
            &self.server,
            self.token.clone(),
        )?)
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the server (embedded SQLite in a local data directory by default).
    Serve(ServeArgs),
    /// Manage non-human identities (agents, AI tools, service accounts, workloads).
    #[command(alias = "identity")]
    Agent {
        #[command(flatten)]
        client: ClientOpts,
        #[command(subcommand)]
        cmd: AgentCmd,
    },
    /// Cedar schema and policies.
    Policy {
        #[command(flatten)]
        client: ClientOpts,
        #[command(subcommand)]
        cmd: PolicyCmd,
    },
    /// Ask for a decision. Exit status: 0 allow, 3 deny.
    Authorize {
        #[command(flatten)]
        client: ClientOpts,
        #[command(flatten)]
        args: AuthorizeArgs,
    },
    /// The tamper-evident audit log.
    Audit {
        #[command(flatten)]
        client: ClientOpts,
        #[command(subcommand)]
        cmd: AuditCmd,
    },
    /// Stop agents at once: one identity, an owner's identities, an environment, or all AI
    /// automation (and release).
    Killswitch {
        #[command(flatten)]
        client: ClientOpts,
        #[command(subcommand)]
        cmd: killswitch::Cmd,
    },
    /// Agent credentials: workload keys, access-token signing keys.
    Keys {
        #[command(flatten)]
        client: ClientOpts,
        #[command(subcommand)]
        cmd: credentials::Cmd,
    },
    /// Copy an embedded data directory (SQLite) into an empty PostgreSQL database, keeping
    /// the audit chain verifiable. Stop the server on the data directory first.
    MigrateStore {
        /// The data directory to copy (opened read-only).
        #[arg(long, value_name = "DIR")]
        from_data_dir: PathBuf,
        /// The empty PostgreSQL database to fill (postgres://user:password@host:port/db).
        /// Prefer the environment when the URL carries a password.
        #[arg(
            long,
            env = "WARRANT_DATABASE",
            hide_env_values = true,
            value_name = "URL"
        )]
        to: String,
    },
}

#[derive(Args)]
pub struct ServeArgs {
    /// Config file (TOML, `version = 1`).
    #[arg(long, env = "WARRANT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Listen address [default: 127.0.0.1:7878].
    #[arg(long, env = "WARRANT_LISTEN")]
    pub listen: Option<String>,
    /// Data directory [default: ./warrant-data].
    #[arg(long, env = "WARRANT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// OAuth issuer URL of access tokens (the public base URL of this service, e.g.
    /// https://warrant.example.com) [default: http://<listen>].
    #[arg(long, env = "WARRANT_ISSUER")]
    pub issuer: Option<String>,
    /// PostgreSQL URL shared by several replicas (postgres://user:password@host:port/db)
    /// [default: the embedded SQLite database in the data directory]. Prefer the
    /// environment or the config file when the URL carries a password.
    #[arg(long, env = "WARRANT_DATABASE", hide_env_values = true)]
    pub database: Option<String>,
    /// SPIFFE trust domain for derived identity URIs [default: warrant.local].
    #[arg(long, env = "WARRANT_TRUST_DOMAIN")]
    pub trust_domain: Option<String>,
    /// `full`: fsync every group commit (survives power loss). `normal`: survives a
    /// process crash, not a machine crash.
    #[arg(long, env = "WARRANT_DURABILITY")]
    pub durability: Option<String>,
    /// Seconds between periodic signed checkpoints [default: 60].
    #[arg(long, env = "WARRANT_CHECKPOINT_INTERVAL")]
    pub checkpoint_interval: Option<u64>,
    /// PEM file with the server certificate chain; with --tls-key, serve HTTPS
    /// [default: plain HTTP].
    #[arg(long, env = "WARRANT_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM file with the server certificate's private key.
    #[arg(long, env = "WARRANT_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// PEM file with the CA certificate(s) issuing workload client certificates: agents
    /// may then authenticate at the token endpoint with an mTLS client certificate whose
    /// URI SAN is their SPIFFE ID (needs --tls-cert and --tls-key).
    #[arg(long, env = "WARRANT_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum AgentCmd {
    /// Register an identity.
    Create {
        #[arg(long)]
        name: String,
        /// agent, ai_tool, service_account or workload.
        #[arg(long)]
        kind: String,
        #[arg(long = "env")]
        environment: String,
        /// The accountable human owner (required).
        #[arg(long)]
        owner: String,
        #[arg(long)]
        description: Option<String>,
        /// Explicit SPIFFE ID (default spiffe://<trust-domain>/<env>/<name>).
        #[arg(long)]
        spiffe_id: Option<String>,
        /// A role (repeatable).
        #[arg(long = "role")]
        roles: Vec<String>,
        /// A direct entitlement (repeatable).
        #[arg(long = "entitlement")]
        entitlements: Vec<String>,
    },
    /// List identities.
    List {
        #[arg(long)]
        kind: Option<String>,
        #[arg(long = "env")]
        environment: Option<String>,
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        owner: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        cursor: Option<String>,
        /// Follow cursors to list every match.
        #[arg(long)]
        all: bool,
    },
    /// Show one identity.
    Show { id: String },
    /// Change owner, description, roles or entitlements.
    Update {
        id: String,
        #[arg(long)]
        owner: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// Replace the roles (comma-separated; empty string clears).
        #[arg(long)]
        roles: Option<String>,
        /// Replace the entitlements (comma-separated; empty string clears).
        #[arg(long)]
        entitlements: Option<String>,
    },
    /// Suspend an identity (its decisions are denied from the next request on).
    Suspend {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Resume a suspended identity.
    Resume {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Retire an identity for good.
    Retire {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum PolicyCmd {
    /// Validate policies offline (with --schema: full schema validation).
    Validate {
        file: PathBuf,
        #[arg(long)]
        schema: Option<PathBuf>,
    },
    /// Put a new version of the policies (and schema) on the server.
    #[command(alias = "put")]
    Push {
        #[arg(long)]
        policies: PathBuf,
        #[arg(long)]
        schema: Option<PathBuf>,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Show the policies in force (or a given version).
    Show {
        #[arg(long)]
        version: Option<u64>,
    },
    /// List policy versions.
    History {
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

#[derive(Args)]
pub struct AuthorizeArgs {
    /// Identity id or SPIFFE ID.
    #[arg(long)]
    pub principal: String,
    /// e.g. App::Action::"read"
    #[arg(long)]
    pub action: String,
    /// e.g. App::Document::"q3"
    #[arg(long)]
    pub resource: String,
    /// Context as a JSON object.
    #[arg(long)]
    pub context: Option<String>,
    /// File with Cedar JSON entities for the resource side.
    #[arg(long)]
    pub entities: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum AuditCmd {
    /// Verify an audit log offline: recompute every hash, check every checkpoint. Reads a
    /// data directory (embedded SQLite) or, with --database, a PostgreSQL database.
    Verify {
        #[arg(long, env = "WARRANT_DATA_DIR", default_value = "warrant-data")]
        data_dir: PathBuf,
        /// Verify the log in this PostgreSQL database (postgres://user:password@host:port/db)
        /// instead of a data directory; requires --public-key. Prefer the environment when
        /// the URL carries a password.
        #[arg(
            long,
            env = "WARRANT_DATABASE",
            hide_env_values = true,
            value_name = "URL"
        )]
        database: Option<String>,
        /// Pinned checkpoint public key (PEM): a copy of `keys/audit-signing-key.pub.pem`
        /// kept apart from the log. Default: the one in the data directory (required with
        /// --database).
        #[arg(long)]
        public_key: Option<PathBuf>,
        /// Signed checkpoints kept outside the log (a file written by `warrant audit
        /// checkpoints --out` or `warrant audit checkpoint -o json`; repeatable): the log
        /// must still match every one of them.
        #[arg(long = "checkpoints", value_name = "FILE")]
        checkpoints: Vec<PathBuf>,
    },
    /// Show the newest records.
    Tail {
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: u32,
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        subject: Option<String>,
        /// Keep printing new records.
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Print an inclusion proof of a record against the latest signed checkpoint.
    Proof { seq: u64 },
    /// Make a signed checkpoint now.
    Checkpoint,
    /// Export every signed checkpoint (JSON), to keep outside the database: `audit verify
    /// --checkpoints FILE` then proves the log still matches them.
    Checkpoints {
        /// Write to this file (replaced atomically) instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let matches = TopLevel::command().get_matches();
    let top = match TopLevel::from_arg_matches(&matches) {
        Ok(top) => top,
        Err(e) => e.exit(),
    };
    match top.command {
        TopCommand::Governance(cmd) => block_on(governance::run(cmd)),
        TopCommand::Evidence(cmd) => block_on(evidence::run(cmd)),
        TopCommand::Humans(cmd) => block_on(humans::run(cmd)),
        TopCommand::Core(command) => {
            let mut cli = Cli { command };
            choose_verify_source(&matches, &mut cli);
            block_on(commands::run(cli))
        }
    }
}

fn block_on(run: impl std::future::Future<Output = anyhow::Result<ExitCode>>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `audit verify` reads a data directory or a database. A host running a replica may
/// export both `WARRANT_DATA_DIR` and `WARRANT_DATABASE`, so the environment alone never
/// makes the two conflict: what is on the command line wins; with neither there, a
/// database from the environment wins over a data directory.
fn choose_verify_source(matches: &clap::ArgMatches, cli: &mut Cli) {
    use clap::parser::ValueSource;
    let Some(verify) = matches
        .subcommand_matches("audit")
        .and_then(|m| m.subcommand_matches("verify"))
    else {
        return;
    };
    let given = |id: &str| verify.value_source(id) == Some(ValueSource::CommandLine);
    if given("data_dir") && given("database") {
        TopLevel::command()
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                "the argument '--database <URL>' cannot be used with '--data-dir <DATA_DIR>'",
            )
            .exit();
    }
    if let Command::Audit {
        cmd: AuditCmd::Verify { database, .. },
        ..
    } = &mut cli.command
    {
        if given("data_dir") {
            *database = None;
        }
    }
}
