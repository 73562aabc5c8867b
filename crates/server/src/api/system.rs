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

/// Readiness: the audit writer runs and the database answers.
#[utoipa::path(get, operation_id = "readyz", path = "/readyz", tag = "system",
    responses((status = 200, description = "ready", body = Value),
              (status = 503, description = "not ready", body = crate::error::ErrorBody)))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    if !state.writer.is_running() {
        return Err(ApiError::unavailable("audit writer is not running"));
    }
    state
        .store
        .ping()
        .await
        .map_err(|_| ApiError::unavailable("database does not answer"))?;
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
