//! Health, readiness and metrics.

use crate::error::ApiError;
use crate::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};

/// Liveness: the process answers.
#[utoipa::path(get, operation_id = "healthz", path = "/healthz", tag = "system",
    responses((status = 200, description = "alive", body = Value)))]
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Readiness: the audit writer runs and the database answers.
#[utoipa::path(get, operation_id = "readyz", path = "/readyz", tag = "system",
    responses((status = 200, description = "ready", body = Value),
              (status = 503, description = "not ready", body = crate::error::ErrorBody)))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    if !state.writer.is_running() {
        return Err(ApiError::unavailable("audit writer is not running"));
    }
    // A health check must answer quickly: a database that takes longer than this to
    // answer `SELECT 1` counts as down (the pool's own wait is longer).
    match tokio::time::timeout(READY_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => return Err(ApiError::unavailable("database does not answer")),
        Err(_) => {
            return Err(ApiError::unavailable(format!(
                "database did not answer within {} s",
                READY_TIMEOUT.as_secs()
            )))
        }
    }
    Ok(Json(json!({
        "status": "ready",
        "policy_version": state.snapshot.load().policy_version,
    })))
}

/// Prometheus metrics (OpenMetrics text format).
#[utoipa::path(get, operation_id = "metrics", path = "/metrics", tag = "system",
    responses((status = 200, description = "metrics", content_type = "application/openmetrics-text", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let body = state.metrics.encode().map_err(ApiError::internal)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    ))
}
