//! HTTP routes. Handlers are thin: parse, call the domain / writer, map the result.

pub mod audit;
pub mod authorize;
pub mod certifications;
pub mod governance;
pub mod humans;
pub mod identities;
pub mod keys;
pub mod killswitch;
pub mod oauth;
pub mod oauth_more;
pub mod policies;
pub mod proposals;
pub mod system;

use crate::error::ApiError;
use crate::AppState;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use warrant_core::Millis;

/// RFC 3339 UTC with milliseconds.
pub fn fmt_ms(ms: Millis) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

pub fn parse_time(field: &str, s: &str) -> Result<Millis, ApiError> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|_| {
            ApiError::bad_request(format!(
                "`{field}` must be an RFC 3339 time such as 2026-01-31T12:00:00Z, got `{s}`"
            ))
        })?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| ApiError::bad_request(format!("`{field}` is out of range")))
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some("API token (`wrt_…`)"))
                        .build(),
                ),
            );
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "warrant",
        description = "Control plane for AI agents and other non-human identities: registry, Cedar decisions, tamper-evident audit.",
        license(name = "Apache-2.0")
    ),
    paths(
        identities::create, identities::list, identities::show, identities::update,
        identities::suspend, identities::resume, identities::retire,
        policies::current, policies::put, policies::validate, policies::history, policies::version,
        authorize::authorize, authorize::batch,
        audit::list, audit::record, audit::proof, audit::checkpoints, audit::create_checkpoint,
        audit::public_key,
        system::healthz, system::readyz, system::metrics,
    ),
    components(schemas(crate::error::ErrorBody)),
    modifiers(&BearerAuth),
    tags(
        (name = "identities", description = "Registry of non-human identities"),
        (name = "policies", description = "Cedar schema and policies"),
        (name = "decisions", description = "Runtime authorization decisions"),
        (name = "audit", description = "Tamper-evident audit log"),
        (name = "system", description = "Health and metrics"),
    )
)]
pub struct ApiDoc;

pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(keys::Doc::openapi());
    doc.merge(killswitch::Doc::openapi());
    doc.merge(oauth::Doc::openapi());
    doc.merge(oauth_more::Doc::openapi());
    doc.merge(governance::Doc::openapi());
    doc.merge(proposals::Doc::openapi());
    doc.merge(humans::Doc::openapi());
    doc.merge(certifications::Doc::openapi());
    doc
}

async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(openapi())
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint; see /openapi.json")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed for this endpoint; see /openapi.json",
    )
}

/// An error answer to a request that carried a body may leave part of that body unread;
/// say `Connection: close` so keep-alive clients do not reuse a connection the server
/// will drop.
async fn close_after_early_error(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let has_body = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v != "0")
        || req
            .headers()
            .contains_key(axum::http::header::TRANSFER_ENCODING);
    let mut res = next.run(req).await;
    if has_body && (res.status().is_client_error() || res.status().is_server_error()) {
        res.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    res
}

pub fn router(state: AppState) -> Router {
    let limit = state.max_body_bytes;
    Router::new()
        .route(
            "/v1/identities",
            post(identities::create).get(identities::list),
        )
        .route(
            "/v1/identities/{id}",
            get(identities::show).patch(identities::update),
        )
        .route("/v1/identities/{id}/suspend", post(identities::suspend))
        .route("/v1/identities/{id}/resume", post(identities::resume))
        .route("/v1/identities/{id}/retire", post(identities::retire))
        .route("/v1/policies", get(policies::current).put(policies::put))
        .route("/v1/policies/validate", post(policies::validate))
        .route("/v1/policies/versions", get(policies::history))
        .route("/v1/policies/versions/{version}", get(policies::version))
        .route("/v1/authorize", post(authorize::authorize))
        .route("/v1/authorize/batch", post(authorize::batch))
        .route("/v1/audit", get(audit::list))
        .route("/v1/audit/records/{seq}", get(audit::record))
        .route("/v1/audit/proof/{seq}", get(audit::proof))
        .route(
            "/v1/audit/checkpoints",
            get(audit::checkpoints).post(audit::create_checkpoint),
        )
        .route("/v1/audit/public-key", get(audit::public_key))
        .route("/healthz", get(system::healthz))
        .route("/readyz", get(system::readyz))
        .route("/metrics", get(system::metrics))
        .route("/openapi.json", get(openapi_json))
        .merge(keys::routes())
        .merge(killswitch::routes())
        .merge(oauth::routes())
        .merge(oauth_more::routes())
        .merge(governance::routes())
        .merge(proposals::routes())
        .merge(humans::routes())
        .merge(certifications::routes())
        .merge(crate::ui::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(close_after_early_error))
        .with_state(state)
}
