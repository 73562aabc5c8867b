//! `/v1/identities`: the registry of non-human identities.

use super::fmt_ms;
use crate::api::governance::reader;
use crate::auth::{Acting, Caller};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery, OptionalJson};
use crate::ops::{Op, Outcome};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use warrant_core::identity::{
    Identity, IdentityKind, IdentityPatch, IdentityState, NewIdentity, Transition,
};
use warrant_store::IdentityFilter;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct IdentityView {
    pub id: String,
    pub name: String,
    /// `agent`, `ai_tool`, `service_account` or `workload`.
    pub kind: String,
    pub environment: String,
    pub spiffe_id: String,
    /// The accountable human owner.
    pub owner: String,
    pub description: String,
    /// `active`, `suspended` or `retired`.
    pub state: String,
    pub roles: Vec<String>,
    /// Entitlements held directly.
    pub entitlements: Vec<String>,
    /// Everything the identity holds: its own entitlements and those of its roles (what
    /// decisions see).
    pub effective_entitlements: Vec<String>,
    /// How it must authenticate for tokens: `any`, `mtls` or `private_key_jwt`.
    pub auth_requirement: String,
    /// Parties it trusts (federated issuers, SPIFFE IDs), as governed by `modify_trust`.
    pub trust: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
    pub last_used_at: Option<String>,
}

impl IdentityView {
    pub fn new(i: &Identity, last_used_ms: Option<i64>, snap: &crate::snapshot::Snapshot) -> Self {
        use warrant_core::governance::assess::{effective_entitlements, Graph};
        IdentityView {
            effective_entitlements: effective_entitlements(snap, i).into_iter().collect(),
            auth_requirement: snap.auth_requirement(&i.id).as_str().into(),
            trust: snap.trust(&i.id),
            id: i.id.clone(),
            name: i.name.clone(),
            kind: i.kind.as_str().into(),
            environment: i.environment.clone(),
            spiffe_id: i.spiffe_id.clone(),
            owner: i.owner.clone(),
            description: i.description.clone(),
            state: i.state.as_str().into(),
            roles: i.roles.clone(),
            entitlements: i.entitlements.clone(),
            created_at: fmt_ms(i.created_ms),
            updated_at: fmt_ms(i.updated_ms),
            last_used_at: last_used_ms.or(i.last_used_ms).map(fmt_ms),
        }
    }
}

fn view(state: &AppState, i: &Identity) -> IdentityView {
    let snap = state.snapshot.load();
    let live = snap.principals.get(&i.id).and_then(|e| e.last_used_ms());
    IdentityView::new(i, live.max(i.last_used_ms), &snap)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateIdentity {
    /// Lowercase letters, digits, `.`, `-`, `_`; unique per environment.
    pub name: String,
    /// `agent`, `ai_tool`, `service_account` or `workload`.
    pub kind: String,
    /// e.g. `dev`, `staging`, `prod`.
    pub environment: String,
    /// The named human owner (required).
    pub owner: String,
    pub description: Option<String>,
    /// Explicit SPIFFE ID; default `spiffe://<trust-domain>/<environment>/<name>`.
    pub spiffe_id: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub entitlements: Vec<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateIdentity {
    pub owner: Option<String>,
    pub description: Option<String>,
    /// Replaces the roles.
    pub roles: Option<Vec<String>>,
    /// Replaces the direct entitlements.
    pub entitlements: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LifecycleRequest {
    /// Why (recorded in the audit log).
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub kind: Option<String>,
    pub environment: Option<String>,
    pub state: Option<String>,
    pub owner: Option<String>,
    /// 1..=500, default 50.
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct IdentityPage {
    pub items: Vec<IdentityView>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

fn new_id() -> String {
    format!("idn_{}", uuid::Uuid::now_v7().simple())
}

fn identity_outcome(o: Outcome) -> Result<Identity, ApiError> {
    match o {
        Outcome::Identity(i) => Ok(*i),
        _ => Err(ApiError::internal("writer returned no identity")),
    }
}

/// Register a non-human identity.
#[utoipa::path(post, operation_id = "create_identity", path = "/v1/identities", tag = "identities", request_body = CreateIdentity,
    security(("bearer" = [])),
    responses((status = 403, description = "refused for this caller (audited)", body = crate::error::ErrorBody), (status = 201, body = IdentityView), (status = 400, body = crate::error::ErrorBody),
              (status = 401, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody),
              (status = 503, body = crate::error::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateIdentity>,
) -> Result<(StatusCode, Json<IdentityView>), ApiError> {
    let committed = state
        .writer
        .mutate(Op::CreateIdentity {
            actor: caller.actor(),
            id: new_id(),
            new: NewIdentity {
                name: body.name,
                kind: body.kind,
                environment: body.environment,
                owner: body.owner,
                description: body.description,
                spiffe_id: body.spiffe_id,
                roles: body.roles,
                entitlements: body.entitlements,
            },
        })
        .await?;
    let identity = identity_outcome(committed.outcome)?;
    state
        .metrics
        .identities
        .set(state.snapshot.load().principals.len() as i64);
    Ok((
        StatusCode::CREATED,
        Json(IdentityView::new(&identity, None, &state.snapshot.load())),
    ))
}

/// List identities (filtered, keyset-paginated, in creation order).
#[utoipa::path(get, operation_id = "list_identities", path = "/v1/identities", tag = "identities", params(ListQuery),
    security(("bearer" = [])),
    responses((status = 403, description = "refused for this caller (audited)", body = crate::error::ErrorBody), (status = 401, description = "missing or invalid token", body = crate::error::ErrorBody), (status = 200, body = IdentityPage), (status = 400, body = crate::error::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    acting: Acting,
    ApiQuery(mut q): ApiQuery<ListQuery>,
) -> Result<Json<IdentityPage>, ApiError> {
    // An owner sees the identities they own only.
    if let Some(owner) = reader(&state, &acting, "/v1/identities", true).await? {
        if q.owner
            .as_ref()
            .is_some_and(|o| !o.eq_ignore_ascii_case(&owner))
        {
            return Ok(Json(IdentityPage {
                items: vec![],
                next_cursor: None,
            }));
        }
        q.owner = Some(owner);
    }
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_request("`limit` must be between 1 and 500"));
    }
    if let Some(k) = &q.kind {
        IdentityKind::parse(k).ok_or_else(|| {
            ApiError::bad_request(format!(
                "`kind` must be one of agent, ai_tool, service_account, workload; got `{k}`"
            ))
        })?;
    }
    if let Some(s) = &q.state {
        IdentityState::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!(
                "`state` must be one of active, suspended, retired; got `{s}`"
            ))
        })?;
    }
    let items = state
        .store
        .list_identities(&IdentityFilter {
            kind: q.kind,
            environment: q.environment,
            state: q.state,
            owner: q.owner,
            after: q.cursor,
            limit: limit + 1,
        })
        .await?;
    let more = items.len() > limit as usize;
    let items: Vec<IdentityView> = items
        .iter()
        .take(limit as usize)
        .map(|i| view(&state, i))
        .collect();
    let next_cursor = if more {
        items.last().map(|i| i.id.clone())
    } else {
        None
    };
    Ok(Json(IdentityPage { items, next_cursor }))
}

async fn load(state: &AppState, id: &str) -> Result<Identity, ApiError> {
    state
        .store
        .get_identity(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no identity `{id}`")))
}

/// Show one identity.
#[utoipa::path(get, operation_id = "get_identity", path = "/v1/identities/{id}", tag = "identities",
    params(("id" = String, Path, description = "identity id")),
    security(("bearer" = [])),
    responses((status = 403, description = "refused for this caller (audited)", body = crate::error::ErrorBody), (status = 401, description = "missing or invalid token", body = crate::error::ErrorBody), (status = 200, body = IdentityView), (status = 404, body = crate::error::ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    acting: Acting,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<IdentityView>, ApiError> {
    let owner = reader(&state, &acting, &format!("/v1/identities/{id}"), true).await?;
    let i = load(&state, &id).await?;
    if owner.is_some_and(|o| !o.eq_ignore_ascii_case(&i.owner)) {
        return Err(ApiError::not_found(format!("no identity `{id}`")));
    }
    Ok(Json(view(&state, &i)))
}

/// Change owner, description, roles or entitlements. Name, kind and environment never change.
#[utoipa::path(patch, operation_id = "update_identity", path = "/v1/identities/{id}", tag = "identities", request_body = UpdateIdentity,
    params(("id" = String, Path, description = "identity id")),
    security(("bearer" = [])),
    responses((status = 403, description = "refused for this caller (audited)", body = crate::error::ErrorBody), (status = 401, description = "missing or invalid token", body = crate::error::ErrorBody), (status = 200, body = IdentityView), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<UpdateIdentity>,
) -> Result<Json<IdentityView>, ApiError> {
    let patch = IdentityPatch {
        owner: body.owner,
        description: body.description,
        roles: body.roles,
        entitlements: body.entitlements,
    };
    if patch.is_empty() {
        return Err(ApiError::bad_request(
            "nothing to update: give at least one of owner, description, roles, entitlements",
        ));
    }
    let committed = state
        .writer
        .mutate(Op::UpdateIdentity {
            actor: caller.actor(),
            id,
            patch,
        })
        .await?;
    let i = identity_outcome(committed.outcome)?;
    Ok(Json(view(&state, &i)))
}

async fn transition(
    state: AppState,
    caller: Caller,
    id: String,
    transition: Transition,
    body: LifecycleRequest,
) -> Result<Json<IdentityView>, ApiError> {
    if body
        .reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > 2000)
    {
        return Err(ApiError::bad_request(
            "`reason` must be at most 2000 characters",
        ));
    }
    let committed = state
        .writer
        .mutate(Op::Transition {
            actor: caller.actor(),
            id,
            transition,
            reason: body.reason,
        })
        .await?;
    let i = identity_outcome(committed.outcome)?;
    Ok(Json(view(&state, &i)))
}

/// Suspend an active identity: every decision for it is denied from the next request on.
#[utoipa::path(post, operation_id = "suspend_identity", path = "/v1/identities/{id}/suspend", tag = "identities", request_body(content = Option<LifecycleRequest>, description = "optional; an empty body is allowed"),
    params(("id" = String, Path, description = "identity id")),
    security(("bearer" = [])),
    responses((status = 403, description = "refused for this caller (audited)", body = crate::error::ErrorBody), (status = 401, description = "missing or invalid token", body = crate::error::ErrorBody), (status = 200, body = IdentityView), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub async fn suspend(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    OptionalJson(body): OptionalJson<LifecycleRequest>,
) -> Result<Json<IdentityView>, ApiError> {
    transition(state, caller, id, Transition::Suspend, body).await
}

/// Resume a suspended identity.
#[utoipa::path(post, operation_id = "resume_identity", path = "/v1/identities/{id}/resume", tag = "identities", request_body(content = Option<LifecycleRequest>, description = "optional; an empty body is allowed"),
    params(("id" = String, Path, description = "identity id")),
    security(("bearer" = [])),
    responses((status = 403, description = "refused for this caller (audited)", body = crate::error::ErrorBody), (status = 401, description = "missing or invalid token", body = crate::error::ErrorBody), (status = 200, body = IdentityView), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    OptionalJson(body): OptionalJson<LifecycleRequest>,
) -> Result<Json<IdentityView>, ApiError> {
    transition(state, caller, id, Transition::Resume, body).await
}

/// Retire an identity for good; its id, URI and name are never reused.
#[utoipa::path(post, operation_id = "retire_identity", path = "/v1/identities/{id}/retire", tag = "identities", request_body(content = Option<LifecycleRequest>, description = "optional; an empty body is allowed"),
    params(("id" = String, Path, description = "identity id")),
    security(("bearer" = [])),
    responses((status = 403, description = "refused for this caller (audited)", body = crate::error::ErrorBody), (status = 401, description = "missing or invalid token", body = crate::error::ErrorBody), (status = 200, body = IdentityView), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub async fn retire(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    OptionalJson(body): OptionalJson<LifecycleRequest>,
) -> Result<Json<IdentityView>, ApiError> {
    transition(state, caller, id, Transition::Retire, body).await
}
