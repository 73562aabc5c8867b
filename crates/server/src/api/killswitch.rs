//! `/v1/killswitches`: stop agents at once — one identity, every identity of an owner, one
//! environment, or all AI automation — and release them again.
//!
//! Engaging and releasing are writer ops: each commits with its audit record and is in the
//! decision snapshot before the caller is answered, so the first decision asked after the
//! answer is already denied (or decided normally again after a release).

use super::fmt_ms;
use crate::auth::{Acting, Caller, ReaderAll};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::ops::{Op, Outcome};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};
use warrant_core::access::Perm;
use warrant_core::credentials::{validate_reason, CredentialError, KillSwitch, KillTarget};

#[derive(OpenApi)]
#[openapi(
    paths(engage, list, show, release),
    components(schemas(
        KillSwitchView,
        TargetView,
        EngageRequest,
        TargetSpec,
        ReleaseRequest,
        KillSwitchList
    )),
    tags((name = "killswitch", description = "Stop agents at once, and release them"))
)]
pub struct Doc;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/killswitches", post(engage).get(list))
        .route("/v1/killswitches/{id}", get(show))
        .route("/v1/killswitches/{id}/release", post(release))
}

/// What a switch covers.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TargetView {
    /// `identity`, `owner`, `environment` or `all_ai`.
    pub kind: String,
    /// The identity id, owner or environment; absent for `all_ai`.
    pub value: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KillSwitchView {
    /// `ks_<hex>`.
    pub id: String,
    pub target: TargetView,
    /// `engaged` or `released`.
    pub state: String,
    /// Why it was engaged.
    pub reason: String,
    pub engaged_at: String,
    /// The audit actor who engaged it.
    pub engaged_by: String,
    pub released_at: Option<String>,
    pub released_by: Option<String>,
    pub release_reason: Option<String>,
}

impl KillSwitchView {
    pub fn new(k: &KillSwitch) -> Self {
        KillSwitchView {
            id: k.id.clone(),
            target: TargetView {
                kind: k.target.kind().to_owned(),
                value: k.target.value().map(str::to_owned),
            },
            state: if k.engaged() { "engaged" } else { "released" }.to_owned(),
            reason: k.reason.clone(),
            engaged_at: fmt_ms(k.engaged_ms),
            engaged_by: k.engaged_by.clone(),
            released_at: k.released_ms.map(fmt_ms),
            released_by: k.released_by.clone(),
            release_reason: k.release_reason.clone(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KillSwitchList {
    /// Most recently engaged first.
    pub items: Vec<KillSwitchView>,
}

/// What to stop.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    /// `identity`, `owner`, `environment` or `all_ai` (AI kinds: `agent`, `ai_tool`).
    pub kind: String,
    /// The identity id (which must exist), the owner, or the environment; none for
    /// `all_ai`.
    pub value: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EngageRequest {
    pub target: TargetSpec,
    /// Why (required; recorded in the audit log and given in every denial).
    pub reason: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    /// Why (required; recorded in the audit log).
    pub reason: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Include released switches (default: engaged ones only).
    pub all: Option<bool>,
}

fn new_id() -> String {
    let mut bytes = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("ks_{}", hex::encode(bytes))
}

/// The rule broken, without the error's generic prefix.
fn message(e: CredentialError) -> String {
    match e {
        CredentialError::KillSwitch(m) => m,
        other => other.to_string(),
    }
}

fn reason_of(reason: &str) -> Result<String, ApiError> {
    validate_reason(reason).map_err(|e| ApiError::bad_request(format!("`reason`: {}", message(e))))
}

fn switch_outcome(o: Outcome) -> Result<KillSwitch, ApiError> {
    match o {
        Outcome::KillSwitch(k) => Ok(*k),
        _ => Err(ApiError::internal("writer returned no kill switch")),
    }
}

/// Engage a kill switch: every decision for a covered identity is denied from the next
/// request on, until it is released.
#[utoipa::path(post, operation_id = "engage_kill_switch", path = "/v1/killswitches", tag = "killswitch", request_body = EngageRequest,
    security(("bearer" = [])),
    responses((status = 403, description = "refused for this caller (audited)", body = crate::error::ErrorBody), (status = 201, body = KillSwitchView), (status = 400, body = crate::error::ErrorBody),
              (status = 401, description = "missing or invalid token", body = crate::error::ErrorBody),
              (status = 404, description = "the target identity does not exist", body = crate::error::ErrorBody),
              (status = 409, body = crate::error::ErrorBody),
              (status = 503, body = crate::error::ErrorBody)))]
pub async fn engage(
    State(state): State<AppState>,
    acting: Acting,
    ApiJson(body): ApiJson<EngageRequest>,
) -> Result<(StatusCode, Json<KillSwitchView>), ApiError> {
    let authed = &acting.authed;
    authed
        .require(&state, Perm::KillSwitch, "POST", "/v1/killswitches")
        .await?;
    let target = KillTarget::parse(&body.target.kind, body.target.value.as_deref())
        .map_err(|e| ApiError::bad_request(format!("`target`: {}", message(e))))?;
    let reason = reason_of(&body.reason)?;
    let owner_only = authed.principal.owner_only(Perm::KillSwitch);
    if let KillTarget::Identity(id) = &target {
        let Some(i) = state.store.get_identity(id).await? else {
            return Err(ApiError::not_found(format!("no identity `{id}`")));
        };
        if owner_only && !authed.principal.owns(&i.owner) {
            return Err(authed
                .refuse(&state, "POST", "/v1/killswitches", &format!("an owner engages the kill switch of their own identities only; `{id}` is owned by `{}`", i.owner))
                .await);
        }
    } else if owner_only {
        return Err(authed
            .refuse(&state, "POST", "/v1/killswitches", "an owner engages the kill switch of one of their own identities only (target kind `identity`)")
            .await);
    }
    let actor = authed.actor();
    let switch = KillSwitch {
        id: new_id(),
        target,
        engaged_ms: state.clock.now_ms(),
        engaged_by: actor.clone(),
        reason,
        released_ms: None,
        released_by: None,
        release_reason: None,
    };
    let committed = state
        .writer
        .mutate(Op::EngageKillSwitch { actor, switch })
        .await?;
    let k = switch_outcome(committed.outcome)?;
    Ok((StatusCode::CREATED, Json(KillSwitchView::new(&k))))
}

/// List kill switches: engaged ones by default, every one with `all=true`.
#[utoipa::path(get, operation_id = "list_kill_switches", path = "/v1/killswitches", tag = "killswitch", params(ListQuery),
    security(("bearer" = [])),
    responses((status = 403, description = "refused for this caller (audited)", body = crate::error::ErrorBody), (status = 200, body = KillSwitchList), (status = 400, body = crate::error::ErrorBody),
              (status = 401, description = "missing or invalid token", body = crate::error::ErrorBody),
              (status = 503, body = crate::error::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    _caller: ReaderAll,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<KillSwitchList>, ApiError> {
    let switches = state.store.kill_switches(q.all.unwrap_or(false)).await?;
    Ok(Json(KillSwitchList {
        items: switches.iter().map(KillSwitchView::new).collect(),
    }))
}

/// Show one kill switch (engaged or released).
#[utoipa::path(get, operation_id = "get_kill_switch", path = "/v1/killswitches/{id}", tag = "killswitch",
    params(("id" = String, Path, description = "kill switch id")),
    security(("bearer" = [])),
    responses((status = 403, description = "refused for this caller (audited)", body = crate::error::ErrorBody), (status = 200, body = KillSwitchView),
              (status = 401, description = "missing or invalid token", body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody),
              (status = 503, body = crate::error::ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    _caller: ReaderAll,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<KillSwitchView>, ApiError> {
    let switches = state.store.kill_switches(true).await?;
    let k = switches
        .iter()
        .find(|k| k.id == id)
        .ok_or_else(|| ApiError::not_found(format!("no kill switch `{id}`")))?;
    Ok(Json(KillSwitchView::new(k)))
}

/// Release an engaged kill switch: decisions for the identities it covered are made by
/// the policies again (unless another engaged switch covers them).
#[utoipa::path(post, operation_id = "release_kill_switch", path = "/v1/killswitches/{id}/release", tag = "killswitch", request_body = ReleaseRequest,
    params(("id" = String, Path, description = "kill switch id")),
    security(("bearer" = [])),
    responses((status = 403, description = "refused for this caller (audited)", body = crate::error::ErrorBody), (status = 200, body = KillSwitchView), (status = 400, body = crate::error::ErrorBody),
              (status = 401, description = "missing or invalid token", body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody),
              (status = 409, description = "released already", body = crate::error::ErrorBody),
              (status = 503, body = crate::error::ErrorBody)))]
pub async fn release(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ReleaseRequest>,
) -> Result<Json<KillSwitchView>, ApiError> {
    let reason = reason_of(&body.reason)?;
    let committed = state
        .writer
        .mutate(Op::ReleaseKillSwitch {
            actor: caller.actor(),
            id,
            reason,
        })
        .await?;
    let k = switch_outcome(committed.outcome)?;
    Ok(Json(KillSwitchView::new(&k)))
}
