//! `/v1/policies`: the Cedar schema and policies, versioned. A change is validated against
//! the schema first; an invalid one is refused with Cedar's diagnostics (with line and
//! column) and the version in force stays in force.

use super::fmt_ms;
use crate::auth::{Caller, ReaderAll};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::ops::{Op, Outcome};
use crate::AppState;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};
use warrant_policy::{PolicyBundle, PolicyErrors};
use warrant_store::PolicyVersion;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PolicyView {
    /// 0 when no policy was ever put (everything is denied).
    pub version: u64,
    /// The user schema (Cedar schema syntax); the built-in `Warrant` namespace is added to it.
    pub schema: String,
    pub policies: String,
    pub policy_ids: Vec<String>,
    pub created_at: Option<String>,
    pub actor: Option<String>,
    pub comment: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutPolicy {
    /// Cedar schema (Cedar syntax or JSON). Omit to keep the schema in force.
    pub schema: Option<String>,
    /// Cedar policies; `@id("…")` names a policy, `@reason("…")` explains it.
    pub policies: String,
    /// Why this change (recorded in the audit log).
    pub comment: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ValidationView {
    pub valid: bool,
    pub policy_ids: Vec<String>,
    /// Cedar diagnostics: source (`schema`/`policies`), message, line, column, policy id.
    pub diagnostics: Vec<serde_json::Value>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// 1..=200, default 20.
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PolicyVersionSummary {
    pub version: u64,
    pub created_at: String,
    pub actor: String,
    pub comment: String,
}

fn view(v: &PolicyVersion, ids: Vec<String>) -> PolicyView {
    PolicyView {
        version: v.version,
        schema: v.schema_text.clone(),
        policies: v.policies_text.clone(),
        policy_ids: ids,
        created_at: Some(fmt_ms(v.created_ms)),
        actor: Some(v.actor.clone()),
        comment: Some(v.comment.clone()),
    }
}

fn diagnostics(e: &PolicyErrors) -> Vec<serde_json::Value> {
    e.diagnostics
        .iter()
        .map(|d| serde_json::to_value(d).unwrap_or_default())
        .collect()
}

fn invalid_policy(e: PolicyErrors) -> ApiError {
    let details = serde_json::Value::Array(diagnostics(&e));
    ApiError::new(
        axum::http::StatusCode::BAD_REQUEST,
        "invalid_policy",
        format!("policy refused; the version in force is unchanged: {e}"),
    )
    .with_details(details)
}

const MAX_COMMENT: usize = 2000;

/// The schema in force when the request does not give one.
fn schema_or_current(state: &AppState, schema: Option<String>) -> String {
    schema.unwrap_or_else(|| state.snapshot.load().policy.schema_text().to_owned())
}

/// The policies in force.
#[utoipa::path(get, operation_id = "get_policy", path = "/v1/policies", tag = "policies", security(("bearer" = [])),
    responses((status = 403, description = "refused for this caller (audited)", body = crate::error::ErrorBody), (status = 401, description = "missing or invalid token", body = crate::error::ErrorBody), (status = 200, body = PolicyView)))]
pub async fn current(
    State(state): State<AppState>,
    _caller: ReaderAll,
) -> Result<Json<PolicyView>, ApiError> {
    let snap = state.snapshot.load();
    match state.store.policy_version(snap.policy_version).await? {
        Some(v) => Ok(Json(view(&v, snap.policy.policy_ids()))),
        None => Ok(Json(PolicyView {
            version: 0,
            schema: String::new(),
            policies: String::new(),
            policy_ids: vec![],
            created_at: None,
            actor: None,
            comment: None,
        })),
    }
}

/// Put a new version of the schema and policies (validated first; refused when invalid).
#[utoipa::path(put, operation_id = "put_policy", path = "/v1/policies", tag = "policies", request_body = PutPolicy, security(("bearer" = [])),
    responses((status = 403, description = "refused for this caller (audited)", body = crate::error::ErrorBody), (status = 401, description = "missing or invalid token", body = crate::error::ErrorBody), (status = 200, body = PolicyView),
              (status = 400, description = "invalid Cedar; `details` lists diagnostics", body = crate::error::ErrorBody),
              (status = 503, body = crate::error::ErrorBody)))]
pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<PutPolicy>,
) -> Result<Json<PolicyView>, ApiError> {
    let comment = body.comment.unwrap_or_default();
    if comment.chars().count() > MAX_COMMENT {
        return Err(ApiError::bad_request(
            "`comment` must be at most 2000 characters",
        ));
    }
    let schema = schema_or_current(&state, body.schema);
    let bundle = PolicyBundle::compile(&schema, &body.policies).map_err(invalid_policy)?;
    let ids = bundle.policy_ids();
    let committed = state
        .writer
        .mutate(Op::PutPolicy {
            actor: caller.actor(),
            bundle: Arc::new(bundle),
            comment: comment.clone(),
        })
        .await?;
    let version = match committed.outcome {
        Outcome::PolicyVersion(v) => v,
        _ => return Err(ApiError::internal("writer returned no policy version")),
    };
    Ok(Json(PolicyView {
        version,
        schema,
        policies: body.policies,
        policy_ids: ids,
        created_at: Some(fmt_ms(state.clock.now_ms())),
        actor: Some(caller.actor()),
        comment: Some(comment),
    }))
}

/// Validate a schema and policies without putting them.
#[utoipa::path(post, operation_id = "validate_policy", path = "/v1/policies/validate", tag = "policies", request_body = PutPolicy, security(("bearer" = [])),
    responses((status = 403, description = "refused for this caller (audited)", body = crate::error::ErrorBody), (status = 401, description = "missing or invalid token", body = crate::error::ErrorBody), (status = 200, body = ValidationView), (status = 400, body = crate::error::ErrorBody)))]
pub async fn validate(
    State(state): State<AppState>,
    _caller: ReaderAll,
    ApiJson(body): ApiJson<PutPolicy>,
) -> Result<Json<ValidationView>, ApiError> {
    let schema = schema_or_current(&state, body.schema);
    Ok(Json(match PolicyBundle::compile(&schema, &body.policies) {
        Ok(b) => ValidationView {
            valid: true,
            policy_ids: b.policy_ids(),
            diagnostics: vec![],
        },
        Err(e) => ValidationView {
            valid: false,
            policy_ids: vec![],
            diagnostics: diagnostics(&e),
        },
    }))
}

/// Policy versions, newest first.
#[utoipa::path(get, operation_id = "list_policy_versions", path = "/v1/policies/versions", tag = "policies", params(HistoryQuery), security(("bearer" = [])),
    responses((status = 403, description = "refused for this caller (audited)", body = crate::error::ErrorBody), (status = 401, description = "missing or invalid token", body = crate::error::ErrorBody), (status = 200, body = Vec<PolicyVersionSummary>), (status = 400, body = crate::error::ErrorBody)))]
pub async fn history(
    State(state): State<AppState>,
    _caller: ReaderAll,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> Result<Json<Vec<PolicyVersionSummary>>, ApiError> {
    let limit = q.limit.unwrap_or(20);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::bad_request("`limit` must be between 1 and 200"));
    }
    let versions = state.store.policy_history(limit).await?;
    Ok(Json(
        versions
            .into_iter()
            .map(|v| PolicyVersionSummary {
                version: v.version,
                created_at: fmt_ms(v.created_ms),
                actor: v.actor,
                comment: v.comment,
            })
            .collect(),
    ))
}

/// One policy version.
#[utoipa::path(get, operation_id = "get_policy_version", path = "/v1/policies/versions/{version}", tag = "policies",
    params(("version" = u64, Path, description = "version number")), security(("bearer" = [])),
    responses((status = 403, description = "refused for this caller (audited)", body = crate::error::ErrorBody), (status = 401, description = "missing or invalid token", body = crate::error::ErrorBody), (status = 200, body = PolicyView), (status = 404, body = crate::error::ErrorBody)))]
pub async fn version(
    State(state): State<AppState>,
    _caller: ReaderAll,
    ApiPath(version): ApiPath<u64>,
) -> Result<Json<PolicyView>, ApiError> {
    let v = state
        .store
        .policy_version(version)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no policy version {version}")))?;
    let ids = warrant_policy::check_syntax(&v.policies_text).unwrap_or_default();
    Ok(Json(view(&v, ids)))
}
