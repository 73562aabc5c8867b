//! `/v1/proposals`: AI tools propose IAM changes; warrant assesses and tiers them; named
//! humans approve, reject, override or perform them.
//!
//! Submitting needs an access token from warrant's token endpoint (audience: warrant's
//! issuer URL, scope `warrant:propose`) of the identity that acts for the capability.
//! Deciding needs an API token bound to a named human; the workflow rules (never an AI
//! identity, never the requester, never a beneficiary; justification and ticket) are the
//! domain's, and every refusal is audited.

use super::fmt_ms;
use super::governance::gov_mutate;
use crate::auth::{audit_refusal, Acting, PROPOSE_SCOPE};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::governance::delivery::Delivery;
use crate::governance::ops::{GovOp, Submission};
use crate::governance::state::{self, kind, ChainRow};
use crate::ops::Outcome;
use crate::writer::Committed;
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};
use warrant_core::access::Perm;
use warrant_core::governance::workflow::Actor;
use warrant_core::governance::{Change, Proposal, ProposalState};
use warrant_store::ObjectFilter;

#[derive(OpenApi)]
#[openapi(
    paths(submit, list, show, chain, approve, reject, override_change, ratify, perform, deliveries),
    components(schemas(SubmitRequest, ProposalView, ProposalList, ChainView, ChainStep,
                       DecideRequest, JustifyRequest, DeliveryView, DeliveryList)),
    tags((name = "proposals", description = "AI change proposals and their tiered workflow"))
)]
pub struct Doc;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/proposals", post(submit).get(list))
        .route("/v1/proposals/{id}", get(show))
        .route("/v1/proposals/{id}/chain", get(chain))
        .route("/v1/proposals/{id}/approve", post(approve))
        .route("/v1/proposals/{id}/reject", post(reject))
        .route("/v1/proposals/{id}/override", post(override_change))
        .route("/v1/proposals/{id}/ratify", post(ratify))
        .route("/v1/proposals/{id}/perform", post(perform))
        .route("/v1/proposals/{id}/deliveries", get(deliveries))
}

/// Largest evidence document (JSON text) a proposal may carry.
pub const MAX_EVIDENCE: usize = 64 * 1024;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// The capability the proposal is made under (its identity must be the caller).
    pub capability: String,
    /// The change: `{"kind": "revoke_entitlement", "identity": "idn_…", "entitlement": "s3:logs:read"}`,
    /// `{"kind": "modify_role", "role": "…", "add": […], "remove": […]}`, …
    #[schema(value_type = Object)]
    pub change: serde_json::Value,
    /// Where to execute: `warrant` (default: warrant's own entitlement store) or a
    /// configured connector.
    pub system: Option<String>,
    /// What the tool saw (a JSON object, ≤ 64 KiB).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub evidence: serde_json::Value,
    pub rationale: String,
    /// The model's confidence, 0.0 to 1.0.
    pub confidence: f64,
    /// The proposal this one follows from (joins its chain).
    pub parent: Option<String>,
    /// A correlation id linking related proposals into one chain.
    pub correlation: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProposalView {
    #[schema(value_type = Object)]
    pub proposal: Proposal,
    /// The capability's accountable owner.
    pub owner: Option<String>,
    pub submitted_at: String,
    /// End of the override window (Tier 2) or expiry (Tier 3/4).
    pub deadline: Option<String>,
    /// Milliseconds until the deadline (open proposals only).
    pub time_left_ms: Option<i64>,
}

impl ProposalView {
    fn new(p: Proposal, state: &AppState) -> Self {
        let now = state.clock.now_ms();
        let owner = state
            .snapshot
            .load()
            .gov
            .capabilities
            .get(&p.capability)
            .map(|c| c.owner.clone());
        ProposalView {
            owner,
            submitted_at: fmt_ms(p.submitted_ms),
            deadline: p.deadline_ms.map(fmt_ms),
            time_left_ms: p
                .deadline_ms
                .filter(|_| p.state.is_open())
                .map(|d| (d - now).max(0)),
            proposal: p,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProposalList {
    pub items: Vec<ProposalView>,
    /// Pass as `cursor` for the next page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// `pending_approval`, `recommended`, `executing`, `in_review`, `executed`,
    /// `ratified`, `overridden`, `rejected`, `expired`, `failed`.
    pub state: Option<String>,
    pub capability: Option<String>,
    pub cursor: Option<String>,
    /// 1..=500 (100).
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChainStep {
    pub id: String,
    pub kind: String,
    pub capability: String,
    pub tier: u8,
    pub state: String,
    pub blast_identities: u64,
    pub submitted_at: String,
    /// Why it got its tier (policies, floor, escalations).
    pub because: Vec<String>,
    /// Who decided, if a human did.
    pub decided_by: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChainView {
    pub correlation: String,
    pub steps: Vec<ChainStep>,
    /// Sum of the blast radius of the steps that were applied or are under way.
    pub total_blast_identities: u64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecideRequest {
    /// The business justification (at least the configured minimum length).
    pub justification: String,
    /// The change-ticket reference (must match the configured pattern).
    pub ticket: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JustifyRequest {
    pub justification: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeliveryView {
    pub id: String,
    /// `notify`, `apply` or `revert`.
    pub purpose: String,
    pub connector: Option<String>,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub created_at: String,
    pub done_at: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeliveryList {
    pub items: Vec<DeliveryView>,
}

fn proposal_outcome(c: Committed, state: &AppState) -> Result<ProposalView, ApiError> {
    match c.outcome {
        Outcome::Proposal(p) => Ok(ProposalView::new(*p, state)),
        _ => Err(ApiError::internal("writer returned no proposal")),
    }
}

async fn load(state: &AppState, id: &str) -> Result<Proposal, ApiError> {
    let row = state
        .store
        .get_object(kind::PROPOSAL, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("proposal `{id}` not found")))?;
    state::body(&row).ok_or_else(|| ApiError::internal("stored proposal does not decode"))
}

/// An identity's access token sees its own proposals only; an owner those of the
/// capabilities they own or that target identities they own; other readers all.
fn may_read(
    state: &AppState,
    acting: &Acting,
    owner: Option<&str>,
    p: &Proposal,
) -> Result<(), ApiError> {
    let hidden = || ApiError::not_found(format!("proposal `{}` not found", p.id));
    match &acting.actor {
        Actor::Identity { id, .. } if *id != p.proposer => Err(hidden()),
        _ => match owner {
            None => Ok(()),
            Some(o) => {
                let snap = state.snapshot.load();
                let owns_cap = snap
                    .gov
                    .capabilities
                    .get(&p.capability)
                    .is_some_and(|c| c.owner.eq_ignore_ascii_case(o));
                let owns_target = p.targets().iter().any(|t| {
                    snap.principals
                        .get(t)
                        .is_some_and(|e| e.identity.owner.eq_ignore_ascii_case(o))
                });
                if owns_cap || owns_target {
                    Ok(())
                } else {
                    Err(hidden())
                }
            }
        },
    }
}

/// Who may read proposals: the proposing identity (its own), and humans with the `read`
/// permission (owners narrowed to theirs). Returns the owner to narrow to.
async fn proposal_reader(
    state: &AppState,
    acting: &Acting,
    path: &str,
) -> Result<Option<String>, ApiError> {
    if acting.is_identity() {
        return Ok(None);
    }
    crate::api::governance::reader(state, acting, path, true).await
}

/// Submit a proposal. warrant assesses it (blast radius from its entitlement graph,
/// privilege, reversibility, data classification, aggregates), assigns the tier by
/// policy and floor, and runs the tier's workflow: Tier 1/2 are applied at once, Tier 3
/// waits for approval, Tier 4 is a recommendation.
#[utoipa::path(post, path = "/v1/proposals", tag = "proposals", request_body = SubmitRequest,
    security(("bearer" = [])),
    responses((status = 201, body = ProposalView), (status = 400, body = crate::error::ErrorBody),
              (status = 401, body = crate::error::ErrorBody),
              (status = 403, description = "not the capability's identity, capability not accepted, outside its kinds or blast radius", body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody),
              (status = 503, body = crate::error::ErrorBody)))]
pub async fn submit(
    State(state): State<AppState>,
    acting: Acting,
    ApiJson(body): ApiJson<SubmitRequest>,
) -> Result<(StatusCode, Json<ProposalView>), ApiError> {
    let who = acting.actor.audit();
    let Actor::Identity { id: proposer, .. } = &acting.actor else {
        let reason = "proposals are submitted by AI identities with an access token (scope `warrant:propose`); humans change the entitlement model directly or perform recommendations";
        audit_refusal(&state, &who, "/v1/proposals", "POST", reason).await;
        return Err(ApiError::forbidden(reason));
    };
    if acting.delegated {
        let reason = "a delegated access token (with an `act` chain) cannot submit proposals: the capability's own identity submits them";
        audit_refusal(&state, &who, "/v1/proposals", "POST", reason).await;
        return Err(ApiError::forbidden(reason));
    }
    if !acting.scope.iter().any(|s| s == PROPOSE_SCOPE) {
        let reason = format!("the access token lacks the `{PROPOSE_SCOPE}` scope");
        audit_refusal(&state, &who, "/v1/proposals", "POST", &reason).await;
        return Err(ApiError::forbidden(reason));
    }
    let change: Change = serde_json::from_value(body.change)
        .map_err(|e| ApiError::bad_request(format!("`change`: {e}")))?;
    let change = change
        .validated()
        .map_err(|e| ApiError::bad_request(format!("`change`: {e}")))?;
    if !(0.0..=1.0).contains(&body.confidence) || body.confidence.is_nan() {
        return Err(ApiError::bad_request(
            "`confidence` must be between 0.0 and 1.0",
        ));
    }
    let rationale = body.rationale.trim();
    if rationale.is_empty() {
        return Err(ApiError::bad_request("`rationale` is required"));
    }
    warrant_core::governance::check_text(
        "rationale",
        rationale,
        warrant_core::governance::MAX_TEXT,
    )
    .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let evidence = match body.evidence {
        serde_json::Value::Null => serde_json::json!({}),
        v @ serde_json::Value::Object(_) => v,
        _ => return Err(ApiError::bad_request("`evidence` must be a JSON object")),
    };
    if evidence.to_string().len() > MAX_EVIDENCE {
        return Err(ApiError::bad_request(format!(
            "`evidence` must be at most {MAX_EVIDENCE} bytes of JSON"
        )));
    }
    for (field, v) in [("parent", &body.parent), ("correlation", &body.correlation)] {
        if let Some(v) = v {
            warrant_core::governance::check_token(field, v)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
        }
    }
    let system = body.system.unwrap_or_else(|| "warrant".into());
    let submission = Submission {
        id: format!("prp_{}", uuid::Uuid::now_v7().simple()),
        capability: body.capability,
        proposer: proposer.clone(),
        change,
        system,
        evidence,
        rationale: rationale.to_owned(),
        confidence_pct: (body.confidence * 100.0).round() as u8,
        parent: body.parent,
        correlation: body.correlation,
        certification: None,
    };
    let c = gov_mutate(
        &state,
        &who,
        "/v1/proposals",
        GovOp::Submit(Box::new(submission)),
    )
    .await?;
    let view = proposal_outcome(c, &state)?;
    state
        .metrics
        .proposals
        .get_or_create(&crate::metrics::TierLabels {
            tier: view.proposal.tier.tier,
        })
        .inc();
    Ok((StatusCode::CREATED, Json(view)))
}

/// List proposals, oldest first, filtered by state and capability.
#[utoipa::path(get, path = "/v1/proposals", tag = "proposals", params(ListQuery),
    security(("bearer" = [])),
    responses((status = 401, description = "missing or invalid token", body = crate::error::ErrorBody),
              (status = 403, description = "refused for this caller (audited)", body = crate::error::ErrorBody),
              (status = 200, body = ProposalList), (status = 400, body = crate::error::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    acting: Acting,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<ProposalList>, ApiError> {
    if let Some(s) = &q.state {
        if ProposalState::parse(s).is_none() {
            return Err(ApiError::bad_request(format!("unknown state `{s}`")));
        }
    }
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_request("`limit` must be 1 to 500"));
    }
    let owner = proposal_reader(&state, &acting, "/v1/proposals").await?;
    let mut items = Vec::new();
    let mut cursor = q.cursor.clone();
    let mut next_cursor = None;
    // Filters other than state apply after the read: page until the page is full.
    'pages: loop {
        let rows = state
            .store
            .list_objects(&ObjectFilter {
                kind: kind::PROPOSAL.into(),
                state: q.state.clone(),
                after_id: cursor.clone(),
                limit: limit + 1,
            })
            .await?;
        let more = rows.len() > limit as usize;
        for row in rows.into_iter().take(limit as usize) {
            cursor = Some(row.id.clone());
            let Some(p) = state::body::<Proposal>(&row) else {
                continue;
            };
            if q.capability.as_ref().is_some_and(|c| *c != p.capability)
                || may_read(&state, &acting, owner.as_deref(), &p).is_err()
            {
                continue;
            }
            items.push(ProposalView::new(p, &state));
            if items.len() == limit as usize {
                next_cursor = cursor.clone();
                break 'pages;
            }
        }
        if !more {
            break;
        }
    }
    Ok(Json(ProposalList { items, next_cursor }))
}

/// One proposal with its assessment, tier decision, approvals and executions.
#[utoipa::path(get, path = "/v1/proposals/{id}", tag = "proposals", params(("id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 401, description = "missing or invalid token", body = crate::error::ErrorBody),
              (status = 403, description = "refused for this caller (audited)", body = crate::error::ErrorBody),
              (status = 200, body = ProposalView), (status = 404, body = crate::error::ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    acting: Acting,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ProposalView>, ApiError> {
    let owner = proposal_reader(&state, &acting, &format!("/v1/proposals/{id}")).await?;
    let p = load(&state, &id).await?;
    may_read(&state, &acting, owner.as_deref(), &p)?;
    Ok(Json(ProposalView::new(p, &state)))
}

/// The whole correlation chain the proposal belongs to, with each step's tier and outcome.
#[utoipa::path(get, path = "/v1/proposals/{id}/chain", tag = "proposals", params(("id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 401, description = "missing or invalid token", body = crate::error::ErrorBody),
              (status = 403, description = "refused for this caller (audited)", body = crate::error::ErrorBody),
              (status = 200, body = ChainView), (status = 404, body = crate::error::ErrorBody)))]
pub async fn chain(
    State(state): State<AppState>,
    acting: Acting,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ChainView>, ApiError> {
    let owner = proposal_reader(&state, &acting, &format!("/v1/proposals/{id}/chain")).await?;
    let p = load(&state, &id).await?;
    may_read(&state, &acting, owner.as_deref(), &p)?;
    let chain: ChainRow = match state.store.get_object(kind::CHAIN, &p.correlation).await? {
        Some(r) => state::body(&r).unwrap_or_default(),
        None => ChainRow::default(),
    };
    let mut steps = Vec::new();
    let mut total = 0;
    for pid in chain.proposals.iter() {
        let step = if *pid == p.id {
            p.clone()
        } else {
            load(&state, pid).await?
        };
        // An identity's token sees only its own steps of a chain.
        if may_read(&state, &acting, owner.as_deref(), &step).is_err() {
            continue;
        }
        if step.state.counts() {
            total += step.assessment.identities_count;
        }
        let mut because: Vec<String> = step
            .tier
            .policies
            .iter()
            .map(|m| format!("policy {} → tier {}", m.policy, m.tier))
            .collect();
        if step.tier.defaulted {
            because.push("no tier policy matched: default tier 3".into());
        }
        because.extend(step.tier.floor.iter().cloned());
        because.extend(step.tier.escalations.iter().cloned());
        let mut decided_by: Vec<String> = step.approvals.iter().map(|a| a.by.clone()).collect();
        decided_by.extend(step.decision.as_ref().map(|d| d.by.clone()));
        steps.push(ChainStep {
            id: step.id.clone(),
            kind: step.kind().as_str().to_owned(),
            capability: step.capability.clone(),
            tier: step.tier.tier,
            state: step.state.as_str().to_owned(),
            blast_identities: step.assessment.identities_count,
            submitted_at: fmt_ms(step.submitted_ms),
            because,
            decided_by,
        });
    }
    Ok(Json(ChainView {
        correlation: p.correlation,
        steps,
        total_blast_identities: total,
    }))
}

async fn decide(
    state: &AppState,
    acting: Acting,
    id: &str,
    action: &str,
    op: GovOp,
) -> Result<Json<ProposalView>, ApiError> {
    let who = acting.actor.audit();
    // Control-plane roles: approvers decide; Tier 2 reviews also by owners (the workflow
    // then requires the capability's reviewer or owner, a named human, never the
    // requester or a beneficiary). Auditors and admins do not decide.
    let perm = match action {
        "override" | "ratify" => Perm::Review,
        _ => Perm::Decide,
    };
    if !acting.is_identity() {
        acting
            .authed
            .require(state, perm, "POST", &format!("/v1/proposals/{id}/{action}"))
            .await?;
    }
    let c = gov_mutate(state, &who, &format!("/v1/proposals/{id}/{action}"), op).await?;
    Ok(Json(proposal_outcome(c, state)?))
}

/// Approve a Tier 3 proposal (a named human, never the requester or a beneficiary, with a
/// justification and a change ticket). With enough approvals it is executed at once.
#[utoipa::path(post, path = "/v1/proposals/{id}/approve", tag = "proposals", request_body = DecideRequest,
    params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 401, description = "missing or invalid token", body = crate::error::ErrorBody),
              (status = 200, body = ProposalView), (status = 400, description = "justification or ticket missing or invalid", body = crate::error::ErrorBody),
              (status = 403, description = "AI identity, unnamed token, requester or beneficiary", body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody), (status = 409, description = "not pending, or expired", body = crate::error::ErrorBody)))]
pub async fn approve(
    State(state): State<AppState>,
    acting: Acting,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<DecideRequest>,
) -> Result<Json<ProposalView>, ApiError> {
    let op = GovOp::Approve {
        actor: acting.actor.clone(),
        id: id.clone(),
        justification: body.justification,
        ticket: body.ticket,
    };
    decide(&state, acting, &id, "approve", op).await
}

/// Reject a Tier 3 request or a Tier 4 recommendation.
#[utoipa::path(post, path = "/v1/proposals/{id}/reject", tag = "proposals", request_body = JustifyRequest,
    params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 401, description = "missing or invalid token", body = crate::error::ErrorBody),
              (status = 200, body = ProposalView), (status = 400, body = crate::error::ErrorBody),
              (status = 403, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub async fn reject(
    State(state): State<AppState>,
    acting: Acting,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<JustifyRequest>,
) -> Result<Json<ProposalView>, ApiError> {
    let op = GovOp::Reject {
        actor: acting.actor.clone(),
        id: id.clone(),
        justification: body.justification,
    };
    decide(&state, acting, &id, "reject", op).await
}

/// Override a Tier 2 change within its window: its inverse is applied at once.
#[utoipa::path(post, path = "/v1/proposals/{id}/override", tag = "proposals", request_body = JustifyRequest,
    params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 401, description = "missing or invalid token", body = crate::error::ErrorBody),
              (status = 200, body = ProposalView), (status = 400, body = crate::error::ErrorBody),
              (status = 403, description = "not the reviewer or owner, or not a named human", body = crate::error::ErrorBody),
              (status = 409, description = "not in review, or the window has ended", body = crate::error::ErrorBody)))]
pub async fn override_change(
    State(state): State<AppState>,
    acting: Acting,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<JustifyRequest>,
) -> Result<Json<ProposalView>, ApiError> {
    let op = GovOp::Override {
        actor: acting.actor.clone(),
        id: id.clone(),
        justification: body.justification,
    };
    decide(&state, acting, &id, "override", op).await
}

/// The reviewer (or the capability owner) ratifies a Tier 2 change before its window ends:
/// it stands, and the ratification record says the reviewer acted.
#[utoipa::path(post, path = "/v1/proposals/{id}/ratify", tag = "proposals", request_body = JustifyRequest,
    params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = ProposalView), (status = 400, body = crate::error::ErrorBody),
              (status = 401, description = "missing or invalid token", body = crate::error::ErrorBody),
              (status = 403, description = "not the reviewer or owner, or not a named human", body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody),
              (status = 409, description = "not in review, or the window has ended", body = crate::error::ErrorBody)))]
pub async fn ratify(
    State(state): State<AppState>,
    acting: Acting,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<JustifyRequest>,
) -> Result<Json<ProposalView>, ApiError> {
    let op = GovOp::Ratify {
        actor: acting.actor.clone(),
        id: id.clone(),
        justification: body.justification,
    };
    decide(&state, acting, &id, "ratify", op).await
}

/// A human performs a Tier 4 recommendation (and owns the change record).
#[utoipa::path(post, path = "/v1/proposals/{id}/perform", tag = "proposals", request_body = DecideRequest,
    params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 401, description = "missing or invalid token", body = crate::error::ErrorBody),
              (status = 200, body = ProposalView), (status = 400, body = crate::error::ErrorBody),
              (status = 403, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub async fn perform(
    State(state): State<AppState>,
    acting: Acting,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<DecideRequest>,
) -> Result<Json<ProposalView>, ApiError> {
    let op = GovOp::Perform {
        actor: acting.actor.clone(),
        id: id.clone(),
        justification: body.justification,
        ticket: body.ticket,
    };
    decide(&state, acting, &id, "perform", op).await
}

/// Delivery status of the proposal's notifications and connector calls.
#[utoipa::path(get, path = "/v1/proposals/{id}/deliveries", tag = "proposals", params(("id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 401, description = "missing or invalid token", body = crate::error::ErrorBody),
              (status = 403, description = "refused for this caller (audited)", body = crate::error::ErrorBody),
              (status = 200, body = DeliveryList), (status = 404, body = crate::error::ErrorBody)))]
pub async fn deliveries(
    State(state): State<AppState>,
    acting: Acting,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<DeliveryList>, ApiError> {
    let owner = proposal_reader(&state, &acting, &format!("/v1/proposals/{id}/deliveries")).await?;
    let p = load(&state, &id).await?;
    may_read(&state, &acting, owner.as_deref(), &p)?;
    let mut items = Vec::new();
    for did in &p.deliveries {
        if let Some(row) = state.store.get_object(kind::DELIVERY, did).await? {
            if let Some(d) = state::body::<Delivery>(&row) {
                items.push(DeliveryView {
                    id: d.id,
                    purpose: d.purpose.as_str().to_owned(),
                    connector: d.connector,
                    status: d.status,
                    attempts: d.attempts,
                    last_error: d.last_error,
                    created_at: fmt_ms(d.created_ms),
                    done_at: d.done_ms.map(fmt_ms),
                });
            }
        }
    }
    Ok(Json(DeliveryList { items }))
}
