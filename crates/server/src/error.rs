//! The one place where errors become HTTP responses.
//!
//! Every error leaves the server as `{ "error": <code>, "message": <text> }` (plus
//! `details` where there is more to say, such as Cedar diagnostics). Internal errors are
//! logged in full and answered with a generic message.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

/// The error body of every failed request.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Machine-readable error code, e.g. `invalid_request`, `not_found`, `conflict`.
    pub error: String,
    /// Human-readable explanation.
    pub message: String,
    /// Structured details (e.g. Cedar diagnostics with line and column).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Option<serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: None,
        }
    }
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }
    /// The action was refused because warrant could not record or store it (fail closed).
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }
    /// Logs the cause server-side; the client gets a generic message.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (
            self.status,
            Json(ErrorBody {
                error: self.code.to_owned(),
                message: self.message,
                details: self.details,
            }),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"warrant\""),
            );
        }
        res
    }
}

impl From<crate::writer::WriteError> for ApiError {
    fn from(e: crate::writer::WriteError) -> Self {
        use crate::writer::WriteError;
        match e {
            WriteError::Invalid(m) => ApiError::bad_request(m),
            WriteError::NotFound(m) => ApiError::not_found(m),
            WriteError::Conflict(m) => ApiError::conflict(m),
            WriteError::Forbidden(m) => ApiError::forbidden(m),
            // Nothing was logged or decided: asking again gets an answer on the new state.
            WriteError::Stale(m) => ApiError::unavailable(m),
            WriteError::Unavailable(m) => {
                tracing::error!(error = %m, "audit/storage write failed; action refused");
                ApiError::unavailable(
                    "the audit log could not be written; the action was refused and not applied",
                )
            }
        }
    }
}

impl From<warrant_store::StoreError> for ApiError {
    fn from(e: warrant_store::StoreError) -> Self {
        match e {
            warrant_store::StoreError::Unavailable(m) => {
                tracing::error!(error = %m, "storage unavailable");
                ApiError::unavailable("storage is unavailable")
            }
            other => ApiError::internal(other),
        }
    }
}

/// An error inside a successful response (e.g. one item of a batch).
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorBodyOwned {
    pub error: String,
    pub message: String,
}
