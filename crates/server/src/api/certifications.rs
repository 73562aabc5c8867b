//! `/v1/certifications`: access certification campaigns. An admin opens one (every
//! direct entitlement of every identity not retired, optionally one owner's or one
//! environment's) with a deadline and a rule for unanswered items (`escalate` or
//! `suspend`); each owner confirms or revokes their items; a revocation runs through the
//! tiered workflow as a proposal. Owners see their own items only.

use crate::api::governance::{gov_mutate, reader};
use crate::api::{fmt_ms, parse_time};
use crate::auth::{Acting, Caller};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::governance::certify::CertOp;
use crate::governance::ops::GovOp;
use crate::governance::state::{self, kind};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};
use warrant_core::access::Perm;
use warrant_core::governance::certification::{self, Campaign, CertDecision, CertItem, Unanswered};
use warrant_store::ObjectFilter;

#[derive(OpenApi)]
#[openapi(
    paths(create, list, show, answer),
    components(schemas(NewCampaign, CampaignView, CampaignList, AnswerRequest)),
    tags((name = "certification", description = "Access certification campaigns"))
)]
pub struct Doc;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/certifications", post(create).get(list))
        .route("/v1/certifications/{id}", get(show))
        .route("/v1/certifications/{id}/items/{item}", post(answer))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCampaign {
    pub name: String,
    /// RFC 3339; answers are accepted until then.
    pub deadline: String,
    /// `escalate` (alert the admins) or `suspend` (suspend the identity) for items nobody
    /// answered by the deadline.
    pub unanswered: String,
    /// Only this owner's identities.
    pub owner: Option<String>,
    /// Only identities in this environment.
    pub environment: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CampaignView {
    pub id: String,
    pub name: String,
    pub created_by: String,
    pub created_at: String,
    pub deadline: String,
    pub unanswered: String,
    /// `open` or `closed`.
    pub state: String,
    pub closed_at: Option<String>,
    /// Items shown (an owner sees their own only).
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<CertItem>,
    pub total_items: usize,
    pub pending_items: usize,
}

impl CampaignView {
    fn new(c: &Campaign, owner: Option<&str>) -> Self {
        CampaignView {
            id: c.id.clone(),
            name: c.name.clone(),
            created_by: c.created_by.clone(),
            created_at: fmt_ms(c.created_ms),
            deadline: fmt_ms(c.deadline_ms),
            unanswered: c.unanswered.as_str().to_owned(),
            state: if c.open() { "open" } else { "closed" }.to_owned(),
            closed_at: c.closed_ms.map(fmt_ms),
            items: c
                .items
                .iter()
                .filter(|i| owner.is_none_or(|o| i.owner.eq_ignore_ascii_case(o)))
                .cloned()
                .collect(),
            total_items: c.items.len(),
            pending_items: c.pending().count(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CampaignList {
    pub items: Vec<CampaignView>,
}

/// Open a certification campaign.
#[utoipa::path(post, operation_id = "create_certification", path = "/v1/certifications", tag = "certification", request_body = NewCampaign,
    security(("bearer" = [])),
    responses((status = 201, body = CampaignView), (status = 400, body = crate::error::ErrorBody),
              (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewCampaign>,
) -> Result<(StatusCode, Json<CampaignView>), ApiError> {
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "`name` must be 1 to 200 printable characters",
        ));
    }
    let now = state.clock.now_ms();
    let deadline = parse_time("deadline", &body.deadline)?;
    if deadline <= now {
        return Err(ApiError::bad_request("`deadline` must be in the future"));
    }
    let unanswered =
        Unanswered::parse(&body.unanswered).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let items = {
        let snap = state.snapshot.load();
        certification::items_for(
            snap.principals.values().map(|e| &e.identity),
            body.owner.as_deref(),
            body.environment.as_deref(),
        )
    };
    if items.is_empty() {
        return Err(ApiError::bad_request(
            "no entitlement to certify: no identity (of that owner / environment) holds a direct entitlement",
        ));
    }
    let campaign = Campaign {
        id: format!("cmp_{}", uuid::Uuid::now_v7().simple()),
        name: name.to_owned(),
        created_by: caller.actor(),
        created_ms: now,
        deadline_ms: deadline,
        unanswered,
        closed_ms: None,
        items,
    };
    let view = CampaignView::new(&campaign, None);
    let actor = caller.actor();
    gov_mutate(
        &state,
        &actor,
        "/v1/certifications",
        GovOp::Cert(Box::new(CertOp::Create {
            actor: actor.clone(),
            campaign: Box::new(campaign),
        })),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

async fn load(state: &AppState, id: &str) -> Result<Campaign, ApiError> {
    let row = state
        .store
        .get_object(kind::CAMPAIGN, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("campaign `{id}` not found")))?;
    state::body(&row).ok_or_else(|| ApiError::internal("stored campaign does not decode"))
}

#[utoipa::path(get, operation_id = "list_certifications", path = "/v1/certifications", tag = "certification", security(("bearer" = [])),
    responses((status = 200, body = CampaignList), (status = 401, body = crate::error::ErrorBody),
              (status = 403, body = crate::error::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    acting: Acting,
) -> Result<Json<CampaignList>, ApiError> {
    let owner = reader(&state, &acting, "/v1/certifications", true).await?;
    let rows = state
        .store
        .list_objects(&ObjectFilter {
            kind: kind::CAMPAIGN.into(),
            state: None,
            after_id: None,
            limit: 0,
        })
        .await?;
    let mut items: Vec<CampaignView> = rows
        .iter()
        .filter_map(state::body::<Campaign>)
        .map(|c| CampaignView::new(&c, owner.as_deref()))
        .filter(|v| owner.is_none() || !v.items.is_empty())
        .collect();
    items.reverse();
    Ok(Json(CampaignList { items }))
}

#[utoipa::path(get, operation_id = "get_certification", path = "/v1/certifications/{id}", tag = "certification", params(("id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = CampaignView), (status = 401, body = crate::error::ErrorBody),
              (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    acting: Acting,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<CampaignView>, ApiError> {
    let owner = reader(&state, &acting, &format!("/v1/certifications/{id}"), true).await?;
    let c = load(&state, &id).await?;
    let v = CampaignView::new(&c, owner.as_deref());
    if owner.is_some() && v.items.is_empty() {
        return Err(ApiError::not_found(format!("campaign `{id}` not found")));
    }
    Ok(Json(v))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerRequest {
    /// `confirm` or `revoke`.
    pub decision: String,
    /// Why (required to revoke).
    #[serde(default)]
    pub note: String,
}

/// The item's owner confirms or revokes the entitlement. A revocation becomes a proposal
/// tiered and run by the workflow (usually Tier 1: applied at once).
#[utoipa::path(post, operation_id = "answer_certification_item", path = "/v1/certifications/{id}/items/{item}", tag = "certification",
    params(("id" = String, Path), ("item" = u32, Path)), request_body = AnswerRequest,
    security(("bearer" = [])),
    responses((status = 200, body = CampaignView), (status = 400, body = crate::error::ErrorBody),
              (status = 401, body = crate::error::ErrorBody),
              (status = 403, description = "not the item's owner, or no owner role", body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody),
              (status = 409, description = "answered already, or the campaign is closed", body = crate::error::ErrorBody)))]
pub async fn answer(
    State(state): State<AppState>,
    acting: Acting,
    ApiPath((id, item)): ApiPath<(String, u32)>,
    ApiJson(body): ApiJson<AnswerRequest>,
) -> Result<Json<CampaignView>, ApiError> {
    let path = format!("/v1/certifications/{id}/items/{item}");
    acting
        .authed
        .require(&state, Perm::OwnerAct, "POST", &path)
        .await?;
    let decision =
        CertDecision::parse(&body.decision).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let who = acting.authed.actor();
    gov_mutate(
        &state,
        &who,
        &path,
        GovOp::Cert(Box::new(CertOp::Answer {
            actor: acting.actor.clone(),
            campaign: id.clone(),
            item,
            decision,
            note: body.note,
        })),
    )
    .await?;
    let c = load(&state, &id).await?;
    Ok(Json(CampaignView::new(
        &c,
        acting
            .principal()
            .human()
            .filter(|_| acting.principal().owner_only(Perm::Read)),
    )))
}
