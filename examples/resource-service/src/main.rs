//! `resource-service`: the example resource service (see the crate docs and README.md).

use anyhow::Context;
use clap::Parser;
use std::net::SocketAddr;
use std::time::Duration;
use warrant_example_resource_service::{router, AppState, Config};

/// An example service that accepts warrant access tokens for `GET /documents/{id}`.
#[derive(Debug, Parser)]
#[command(name = "resource-service", version)]
struct Args {
    /// Base URL of warrant.
    #[arg(long, env = "WARRANT_URL", default_value = "http://127.0.0.1:7878")]
    warrant_url: String,
    /// This service's audience: tokens must carry it as `aud` (agents ask for it).
    #[arg(long, env = "SERVICE_AUDIENCE")]
    audience: String,
    /// The warrant API token this service calls `/v1/authorize` with.
    #[arg(long, env = "WARRANT_TOKEN", hide_env_values = true)]
    warrant_token: String,
    /// Address to listen on.
    #[arg(long, env = "SERVICE_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The issuer warrant must announce in its metadata (default: whatever it announces).
    #[arg(long, env = "WARRANT_ISSUER")]
    issuer: Option<String>,
    /// Shortest time between two fetches of warrant's key set, in seconds.
    #[arg(long, env = "JWKS_MIN_REFETCH_SECS", default_value_t = 10)]
    jwks_min_refetch_secs: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut config = Config::new(&args.warrant_url, &args.audience, &args.warrant_token);
    config.expected_issuer = args.issuer;
    config.jwks_min_refetch = Duration::from_secs(args.jwks_min_refetch_secs);
    let state = AppState::new(config)?;
    // Warm the key cache; not fatal: it is fetched again on the first request.
    match state.verifier().issuer().await {
        Ok(iss) => tracing::info!(issuer = %iss, "warrant's keys fetched"),
        Err(e) => tracing::warn!(error = ?e, "warrant is not reachable yet"),
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(listen = %args.listen, audience = %args.audience, "resource service up");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
