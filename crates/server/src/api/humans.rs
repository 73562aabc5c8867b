//! The humans who operate warrant: accounts, control-plane roles and their two-person
//! grants, and `GET /v1/me`.
//!
//! Accounts and role requests are an admin's (or the bootstrap token's) to make; a role
//! grant takes effect only when a *second* named admin, who is not the grantee, approves
//! it (the first admin excepted, see `warrant_core::access`). Revoking a role needs one
//! admin. Everything is audited (`human.changed`, `role_grant`).

use crate::api::fmt_ms;
use crate::api::governance::gov_mutate;
use crate::auth::{Acting, Caller, ReaderAll};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::governance::humans::HumanOp;
use crate::governance::ops::GovOp;
use crate::governance::state::{self, kind};
use crate::humans::password;
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};
use warrant_core::access::{CpRole, GrantState, Human, Perm, RoleGrant, Who};
use warrant_store::ObjectFilter;

#[derive(OpenApi)]
#[openapi(
    paths(create_human, list_humans, show_human, update_human, revoke_role, request_grant,
          list_grants, approve_grant, reject_grant, me, password_token, change_password),
    components(schemas(NewHuman, HumanView, HumanList, UpdateHuman, RevokeRoleRequest,
                        GrantRequest, GrantView, GrantList, DecideGrantRequest, MeView,
                        PasswordTokenRequest, ChangePasswordRequest)),
    tags((name = "humans", description = "Human operators, control-plane roles, two-person role grants"))
)]
pub struct Doc;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/humans", post(create_human).get(list_humans))
        .route("/v1/humans/{name}", get(show_human).patch(update_human))
        .route("/v1/humans/{name}/roles/{role}/revoke", post(revoke_role))
        .route("/v1/role-grants", post(request_grant).get(list_grants))
        .route("/v1/role-grants/{id}/approve", post(approve_grant))
        .route("/v1/role-grants/{id}/reject", post(reject_grant))
        .route("/v1/me", get(me))
        .route("/v1/auth/token", post(password_token))
        .route("/v1/auth/password", post(change_password))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewHuman {
    /// Unique name (user name or e-mail), compared without case.
    pub name: String,
    pub display_name: Option<String>,
    /// A one-time local password (≥ 12 characters), stored as an argon2id hash: the human
    /// must replace it at first sign-in (`POST /v1/auth/password` or the console). Omit
    /// for humans who sign in with single sign-on only.
    pub password: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HumanView {
    pub name: String,
    pub display_name: String,
    pub roles: Vec<String>,
    pub local_password: bool,
    /// `issuer subject` of the linked single sign-on account.
    pub oidc: Option<String>,
    pub disabled: bool,
    pub created_at: String,
    pub updated_at: String,
}

impl HumanView {
    pub fn new(h: &Human) -> Self {
        HumanView {
            name: h.name.clone(),
            display_name: h.display_name.clone(),
            roles: h.roles.iter().map(|r| r.as_str().to_owned()).collect(),
            local_password: h.password_hash.is_some(),
            oidc: h
                .oidc
                .as_ref()
                .map(|l| format!("{} {}", l.issuer, l.subject)),
            disabled: h.disabled,
            created_at: fmt_ms(h.created_ms),
            updated_at: fmt_ms(h.updated_ms),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HumanList {
    pub items: Vec<HumanView>,
}

fn check_display(d: &str) -> Result<String, ApiError> {
    let d = d.trim();
    if d.is_empty() || d.chars().count() > 200 || d.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "`display_name` must be 1 to 200 printable characters",
        ));
    }
    Ok(d.to_owned())
}

async fn password_hash(p: Option<String>) -> Result<Option<String>, ApiError> {
    match p {
        None => Ok(None),
        Some(p) => {
            password::acceptable(&p)
                .map_err(|e| ApiError::bad_request(format!("`password`: {e}")))?;
            password::hash(p)
                .await
                .map(Some)
                .map_err(ApiError::internal)
        }
    }
}

fn human_view(state: &AppState, name: &str) -> Result<HumanView, ApiError> {
    state
        .snapshot
        .load()
        .gov
        .humans
        .get(&Human::key(name))
        .map(|h| HumanView::new(h))
        .ok_or_else(|| ApiError::not_found(format!("human `{name}` not found")))
}

/// Create a human account (no roles: grant them with `POST /v1/role-grants`).
#[utoipa::path(post, path = "/v1/humans", tag = "humans", request_body = NewHuman,
    security(("bearer" = [])),
    responses((status = 201, body = HumanView), (status = 400, body = crate::error::ErrorBody),
              (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody),
              (status = 409, description = "exists, or names an identity", body = crate::error::ErrorBody)))]
pub async fn create_human(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewHuman>,
) -> Result<(StatusCode, Json<HumanView>), ApiError> {
    let name = warrant_core::access::validate_name(&body.name)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let display_name = match body.display_name {
        Some(d) => check_display(&d)?,
        None => name.clone(),
    };
    let password_hash = password_hash(body.password).await?;
    let human = Human {
        name: name.clone(),
        display_name,
        roles: Default::default(),
        password_must_change: password_hash.is_some(),
        password_set_by: password_hash.as_ref().map(|_| caller.actor()),
        password_hash,
        oidc: None,
        disabled: false,
        created_ms: 0,
        updated_ms: 0,
    };
    let actor = caller.actor();
    gov_mutate(
        &state,
        &actor,
        "/v1/humans",
        GovOp::Human(Box::new(HumanOp::Create {
            actor: actor.clone(),
            human,
        })),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(human_view(&state, &name)?)))
}

#[utoipa::path(get, path = "/v1/humans", tag = "humans", security(("bearer" = [])),
    responses((status = 200, body = HumanList), (status = 401, body = crate::error::ErrorBody),
              (status = 403, body = crate::error::ErrorBody)))]
pub async fn list_humans(
    State(state): State<AppState>,
    _reader: ReaderAll,
) -> Result<Json<HumanList>, ApiError> {
    let snap = state.snapshot.load();
    let mut items: Vec<HumanView> = snap
        .gov
        .humans
        .values()
        .map(|h| HumanView::new(h))
        .collect();
    items.sort_by_key(|a| a.name.to_lowercase());
    Ok(Json(HumanList { items }))
}

/// Whether the caller is the human named (self-service).
fn is_self(acting: &Acting, name: &str) -> bool {
    matches!(&acting.principal().who, Who::Human(h) if h.eq_ignore_ascii_case(name))
}

#[utoipa::path(get, path = "/v1/humans/{name}", tag = "humans", params(("name" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = HumanView), (status = 401, body = crate::error::ErrorBody),
              (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn show_human(
    State(state): State<AppState>,
    acting: Acting,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<HumanView>, ApiError> {
    let path = format!("/v1/humans/{name}");
    if !is_self(&acting, &name) {
        acting
            .authed
            .require(&state, Perm::Read, "GET", &path)
            .await?;
        if acting.principal().owner_only(Perm::Read) {
            return Err(acting
                .authed
                .refuse(
                    &state,
                    "GET",
                    &path,
                    "an owner reads their own account only",
                )
                .await);
        }
    }
    Ok(Json(human_view(&state, &name)?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateHuman {
    pub display_name: Option<String>,
    /// Admins only. `""` removes local sign-in (single sign-on only); a new one-time
    /// password may be set only on an account that holds no role (the human replaces it at
    /// first sign-in). Humans change their own with `POST /v1/auth/password`.
    pub password: Option<String>,
    /// Disable (ends every session at once) or enable the account. Admins only.
    pub disabled: Option<bool>,
}

/// Change a human's display name, password or disabled flag (admins; a human may change
/// their own display name).
#[utoipa::path(patch, path = "/v1/humans/{name}", tag = "humans", params(("name" = String, Path)),
    request_body = UpdateHuman, security(("bearer" = [])),
    responses((status = 200, body = HumanView), (status = 400, body = crate::error::ErrorBody),
              (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)))]
pub async fn update_human(
    State(state): State<AppState>,
    acting: Acting,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<UpdateHuman>,
) -> Result<Json<HumanView>, ApiError> {
    let path = format!("/v1/humans/{name}");
    let own = is_self(&acting, &name);
    if !(own && body.disabled.is_none() && body.password.is_none()) {
        acting
            .authed
            .require(&state, Perm::Configure, "PATCH", &path)
            .await?;
    }
    if own && body.password.is_some() {
        return Err(ApiError::bad_request(
            "change your own password with POST /v1/auth/password (it needs the current one)",
        ));
    }
    let target = human_view(&state, &name)?;
    let display_name = body
        .display_name
        .as_deref()
        .map(check_display)
        .transpose()?;
    let password_hash = match body.password {
        None => None,
        Some(p) if p.is_empty() => Some(None),
        Some(_) if !target.roles.is_empty() => {
            return Err(acting
                .authed
                .refuse(
                    &state,
                    "PATCH",
                    &path,
                    &format!(
                        "`{}` holds control-plane roles: an admin may remove their local password, not set one (they set their own, or sign in with single sign-on)",
                        target.name
                    ),
                )
                .await);
        }
        Some(p) => Some(password_hash(Some(p)).await?),
    };
    let actor = acting.authed.actor();
    gov_mutate(
        &state,
        &actor,
        &path,
        GovOp::Human(Box::new(HumanOp::Update {
            actor: actor.clone(),
            name: name.clone(),
            display_name,
            password_hash,
            password_must_change: true,
            disabled: body.disabled,
        })),
    )
    .await?;
    Ok(Json(human_view(&state, &name)?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeRoleRequest {
    pub justification: String,
}

/// Take a control-plane role away (one admin suffices: it only reduces access).
#[utoipa::path(post, path = "/v1/humans/{name}/roles/{role}/revoke", tag = "humans",
    params(("name" = String, Path), ("role" = String, Path)), request_body = RevokeRoleRequest,
    security(("bearer" = [])),
    responses((status = 200, body = HumanView), (status = 400, body = crate::error::ErrorBody),
              (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub async fn revoke_role(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((name, role)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<RevokeRoleRequest>,
) -> Result<Json<HumanView>, ApiError> {
    let role = CpRole::parse(&role).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let actor = caller.actor();
    gov_mutate(
        &state,
        &actor,
        &format!("/v1/humans/{name}/roles/{}/revoke", role.as_str()),
        GovOp::Human(Box::new(HumanOp::RevokeRole {
            actor: actor.clone(),
            human: name.clone(),
            role,
            justification: body.justification,
        })),
    )
    .await?;
    Ok(Json(human_view(&state, &name)?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantRequest {
    pub human: String,
    /// `admin`, `approver`, `auditor` or `owner`.
    pub role: String,
    /// Why (10 to 2000 characters).
    pub justification: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GrantView {
    pub id: String,
    pub human: String,
    pub role: String,
    pub state: String,
    pub requested_by: String,
    pub justification: String,
    pub requested_at: String,
    pub expires_at: String,
    pub decided_by: Option<String>,
    pub decided_at: Option<String>,
    pub note: Option<String>,
    /// The first admin, granted with the bootstrap token.
    pub bootstrap: bool,
}

impl GrantView {
    pub fn new(g: &RoleGrant, now: i64) -> Self {
        let state = if g.state == GrantState::Pending && now >= g.expires_ms {
            GrantState::Expired
        } else {
            g.state
        };
        GrantView {
            id: g.id.clone(),
            human: g.human.clone(),
            role: g.role.as_str().to_owned(),
            state: state.as_str().to_owned(),
            requested_by: g.requested_by.clone(),
            justification: g.justification.clone(),
            requested_at: fmt_ms(g.requested_ms),
            expires_at: fmt_ms(g.expires_ms),
            decided_by: g.decided_by.clone(),
            decided_at: g.decided_ms.map(fmt_ms),
            note: g.note.clone(),
            bootstrap: g.bootstrap,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GrantList {
    pub items: Vec<GrantView>,
}

async fn load_grant(state: &AppState, id: &str) -> Result<RoleGrant, ApiError> {
    let row = state
        .store
        .get_object(kind::ROLE_GRANT, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("role grant `{id}` not found")))?;
    state::body(&row).ok_or_else(|| ApiError::internal("stored role grant does not decode"))
}

/// Ask for a human to be given a control-plane role. It takes effect when a second named
/// admin approves (`POST /v1/role-grants/{id}/approve`); the very first admin, asked for
/// with the bootstrap token while no named human holds `admin`, is granted at once.
#[utoipa::path(post, path = "/v1/role-grants", tag = "humans", request_body = GrantRequest,
    security(("bearer" = [])),
    responses((status = 201, body = GrantView), (status = 400, body = crate::error::ErrorBody),
              (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub async fn request_grant(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<GrantRequest>,
) -> Result<(StatusCode, Json<GrantView>), ApiError> {
    let role = CpRole::parse(&body.role).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let id = format!("grt_{}", uuid::Uuid::now_v7().simple());
    let actor = caller.actor();
    let requester = caller.principal().human().map(str::to_owned);
    gov_mutate(
        &state,
        &actor,
        "/v1/role-grants",
        GovOp::Human(Box::new(HumanOp::RequestGrant {
            actor: actor.clone(),
            requester,
            id: id.clone(),
            human: body.human,
            role,
            justification: body.justification,
        })),
    )
    .await?;
    let g = load_grant(&state, &id).await?;
    Ok((
        StatusCode::CREATED,
        Json(GrantView::new(&g, state.clock.now_ms())),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct GrantQuery {
    /// `pending`, `approved`, `rejected`.
    pub state: Option<String>,
}

#[utoipa::path(get, path = "/v1/role-grants", tag = "humans", params(GrantQuery), security(("bearer" = [])),
    responses((status = 200, body = GrantList), (status = 400, body = crate::error::ErrorBody),
              (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody)))]
pub async fn list_grants(
    State(state): State<AppState>,
    _reader: ReaderAll,
    ApiQuery(q): ApiQuery<GrantQuery>,
) -> Result<Json<GrantList>, ApiError> {
    if let Some(s) = &q.state {
        if !["pending", "approved", "rejected"].contains(&s.as_str()) {
            return Err(ApiError::bad_request(
                "`state` must be pending, approved or rejected",
            ));
        }
    }
    Ok(Json(GrantList {
        items: grants(&state, q.state.as_deref()).await?,
    }))
}

/// Role grants, newest first.
pub async fn grants(state: &AppState, st: Option<&str>) -> Result<Vec<GrantView>, ApiError> {
    let now = state.clock.now_ms();
    let rows = state
        .store
        .list_objects(&ObjectFilter {
            kind: kind::ROLE_GRANT.into(),
            state: st.map(str::to_owned),
            after_id: None,
            limit: 0,
        })
        .await?;
    let mut items: Vec<GrantView> = rows
        .iter()
        .filter_map(state::body::<RoleGrant>)
        .map(|g| GrantView::new(&g, now))
        .collect();
    items.reverse();
    Ok(items)
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecideGrantRequest {
    #[serde(default)]
    pub note: String,
}

/// Decide a role grant as a named admin who neither asked for it nor receives it.
pub async fn decide_grant(
    state: &AppState,
    acting: &Acting,
    id: &str,
    approve: bool,
    note: String,
) -> Result<GrantView, ApiError> {
    let path = format!(
        "/v1/role-grants/{id}/{}",
        if approve { "approve" } else { "reject" }
    );
    acting
        .authed
        .require(state, Perm::DecideGrant, "POST", &path)
        .await?;
    let approver = acting.principal().human().unwrap_or_default().to_owned();
    let actor = acting.authed.actor();
    gov_mutate(
        state,
        &actor,
        &path,
        GovOp::Human(Box::new(HumanOp::DecideGrant {
            actor: actor.clone(),
            approver,
            id: id.to_owned(),
            approve,
            note,
        })),
    )
    .await?;
    let g = load_grant(state, id).await?;
    Ok(GrantView::new(&g, state.clock.now_ms()))
}

#[utoipa::path(post, path = "/v1/role-grants/{id}/approve", tag = "humans", params(("id" = String, Path)),
    request_body = DecideGrantRequest, security(("bearer" = [])),
    responses((status = 200, body = GrantView), (status = 401, body = crate::error::ErrorBody),
              (status = 403, description = "not a named admin, or the requester or grantee", body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub async fn approve_grant(
    State(state): State<AppState>,
    acting: Acting,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<DecideGrantRequest>,
) -> Result<Json<GrantView>, ApiError> {
    Ok(Json(
        decide_grant(&state, &acting, &id, true, body.note).await?,
    ))
}

#[utoipa::path(post, path = "/v1/role-grants/{id}/reject", tag = "humans", params(("id" = String, Path)),
    request_body = DecideGrantRequest, security(("bearer" = [])),
    responses((status = 200, body = GrantView), (status = 401, body = crate::error::ErrorBody),
              (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
              (status = 409, body = crate::error::ErrorBody)))]
pub async fn reject_grant(
    State(state): State<AppState>,
    acting: Acting,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<DecideGrantRequest>,
) -> Result<Json<GrantView>, ApiError> {
    Ok(Json(
        decide_grant(&state, &acting, &id, false, body.note).await?,
    ))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MeView {
    /// `human`, `bootstrap` or `identity`.
    pub kind: String,
    pub name: String,
    /// The roles in effect for this credential.
    pub roles: Vec<String>,
}

/// Who the credential belongs to and the roles in effect.
#[utoipa::path(get, path = "/v1/me", tag = "humans", security(("bearer" = [])),
    responses((status = 403, description = "refused for this caller (audited)", body = crate::error::ErrorBody), (status = 200, body = MeView), (status = 401, body = crate::error::ErrorBody)))]
pub async fn me(acting: Acting) -> Json<MeView> {
    let p = acting.principal();
    let (kind, name) = match &p.who {
        Who::Bootstrap => ("bootstrap", acting.authed.via.clone()),
        Who::Human(h) => ("human", h.clone()),
        Who::Identity { id, .. } => ("identity", id.clone()),
    };
    Json(MeView {
        kind: kind.into(),
        name,
        roles: p.roles.iter().map(|r| r.as_str().to_owned()).collect(),
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordTokenRequest {
    pub username: String,
    pub password: String,
    /// The one role the token acts with (one the human holds).
    pub role: String,
    /// A label (`alice laptop CLI`).
    pub name: String,
}

/// A human exchanges their own local password for an API token of their own (for the
/// CLI: `warrant login`). Throttled per user name; refusals audited. Single sign-on users
/// create tokens in the console instead.
#[utoipa::path(post, path = "/v1/auth/token", tag = "humans", request_body = PasswordTokenRequest,
    responses((status = 201, body = crate::api::governance::ApiTokenCreated),
              (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
              (status = 409, description = "the role is not held, or the one-time password must be replaced first", body = crate::error::ErrorBody),
              (status = 429, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)))]
pub async fn password_token(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<PasswordTokenRequest>,
) -> Result<(StatusCode, Json<crate::api::governance::ApiTokenCreated>), ApiError> {
    let role = CpRole::parse(&body.role).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let h = crate::humans::check_password(&state, "/v1/auth/token", &body.username, body.password)
        .await
        .map_err(crate::humans::PasswordRefusal::into_api)?;
    if h.password_must_change {
        return Err(ApiError::conflict(
            "this one-time password was set by an admin: replace it first (POST /v1/auth/password)",
        ));
    }
    crate::api::governance::issue_token(&state, &format!("human:{}", h.name), &h, role, &body.name)
        .await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    pub username: String,
    pub current_password: String,
    /// At least 12 characters.
    pub new_password: String,
}

/// A human replaces their own local password (the current one proves who they are; a
/// one-time password set by an admin must be replaced this way before use). Ends the
/// human's sessions.
#[utoipa::path(post, path = "/v1/auth/password", tag = "humans", request_body = ChangePasswordRequest,
    responses((status = 204, description = "changed"), (status = 400, body = crate::error::ErrorBody),
              (status = 401, body = crate::error::ErrorBody), (status = 429, body = crate::error::ErrorBody),
              (status = 503, body = crate::error::ErrorBody)))]
pub async fn change_password(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ChangePasswordRequest>,
) -> Result<StatusCode, ApiError> {
    crate::humans::change_own_password(
        &state,
        "/v1/auth/password",
        &body.username,
        body.current_password,
        body.new_password,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
