//! The governance configuration: AI capabilities (declared by admins, accepted and
//! reviewed by their owners), the entitlement model (roles, resources), the tier
//! policies, and API tokens for named humans.
//!
//! Declaring and changing things here needs the admin role; only an access token's AI
//! identity is refused outright (and audited). Accepting and reviewing a capability needs
//! the named human who owns it.

use super::fmt_ms;
use crate::auth::{audit_refusal, Acting, Caller};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::governance::ops::GovOp;
use crate::ops::{Op, Outcome};
use crate::writer::{Committed, WriteError};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};
use warrant_core::access::Perm;
use warrant_core::governance::assess::effective_entitlements;
use warrant_core::governance::{
    Capability, Classification, Conditions, NewCapability, Resource, Role,
};
use warrant_store::TokenRow;

#[derive(OpenApi)]
#[openapi(
    paths(put_capability, list_capabilities, show_capability, accept_capability, review_capability,
          put_role, list_roles, show_role, put_resource, list_resources,
          get_tier_policies, put_tier_policies, create_token, list_tokens, revoke_token),
    components(schemas(CapabilityRequest, CapabilityView, CapabilityList, AcceptRequest, ReviewRequest,
                       RoleRequest, RoleView, RoleList, ResourceRequest, ResourceView, ResourceList,
                       TierPoliciesView, TierPoliciesRequest, ApiTokenRequest, ApiTokenCreated, ApiTokenView, ApiTokenList)),
    tags((name = "governance", description = "AI capabilities, entitlement model, tier policies, human API tokens"))
)]
pub struct Doc;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/capabilities", get(list_capabilities))
        .route(
            "/v1/capabilities/{id}",
            put(put_capability).get(show_capability),
        )
        .route("/v1/capabilities/{id}/accept", post(accept_capability))
        .route("/v1/capabilities/{id}/review", post(review_capability))
        .route("/v1/roles", get(list_roles))
        .route("/v1/roles/{name}", put(put_role).get(show_role))
        .route("/v1/resources", get(list_resources))
        .route("/v1/resources/{id}", put(put_resource))
        .route(
            "/v1/tier-policies",
            get(get_tier_policies).put(put_tier_policies),
        )
        .route("/v1/tokens", post(create_token).get(list_tokens))
        .route("/v1/tokens/{id}/revoke", post(revoke_token))
}

/// Runs a governance op; every refusal by a governance rule (4xx) is audited.
pub async fn gov_mutate(
    state: &AppState,
    acting_actor: &str,
    what: &str,
    op: GovOp,
) -> Result<Committed, ApiError> {
    match state.writer.mutate(Op::Gov(Box::new(op))).await {
        // Every refusal by a governance rule is recorded: who tried what, and why.
        Err(
            e @ (WriteError::Forbidden(_)
            | WriteError::Invalid(_)
            | WriteError::Conflict(_)
            | WriteError::NotFound(_)),
        ) => {
            audit_refusal(state, acting_actor, what, "POST", &e.to_string()).await;
            Err(e.into())
        }
        r => Ok(r?),
    }
}

/// Accepting or reviewing a capability: by its owner, holding an owner, approver or admin
/// token (not an auditor's); refusals audited.
async fn owner_action(
    state: &AppState,
    acting: &Acting,
    id: &str,
    action: &str,
    op: GovOp,
) -> Result<Json<CapabilityView>, ApiError> {
    let path = format!("/v1/capabilities/{id}/{action}");
    let who = acting.actor.audit();
    acting
        .authed
        .require(state, Perm::OwnerAct, "POST", &path)
        .await?;
    let c = gov_mutate(state, &who, &path, op).await?;
    Ok(Json(capability_outcome(c, state.clock.now_ms())?))
}

/// Reading the governance configuration needs the `read` permission (admin, approver,
/// auditor; an owner only where `owned` says what the owner may see); identities read
/// none. Refusals are audited. Returns the owner to narrow to, if the caller is one.
pub async fn reader(
    state: &AppState,
    acting: &Acting,
    path: &str,
    owner_scoped: bool,
) -> Result<Option<String>, ApiError> {
    acting
        .authed
        .require(state, Perm::Read, "GET", path)
        .await?;
    let p = acting.principal();
    if p.owner_only(Perm::Read) {
        if !owner_scoped {
            return Err(acting
                .authed
                .refuse(
                    state,
                    "GET",
                    path,
                    "the `owner` role sees its own identities, capabilities and proposals only",
                )
                .await);
        }
        return Ok(p.human().map(str::to_owned));
    }
    Ok(None)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CapabilityRequest {
    #[serde(default)]
    pub description: String,
    /// The AI identity (agent or AI tool) that acts for the capability.
    pub identity: String,
    /// Change kinds it may propose (`grant_entitlement`, `revoke_entitlement`,
    /// `create_role`, `delete_role`, `modify_role`, `modify_trust`,
    /// `change_auth_requirement`, `suspend_identity`, `retire_identity`).
    pub kinds: Vec<String>,
    /// Environments it may target (default: its identity's), minimum confidence, notes.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub conditions: Option<Conditions>,
    /// Largest number of identities one proposal may affect.
    pub max_blast_radius: u32,
    /// Where its changes may execute: `warrant` (default) and/or configured connectors.
    #[serde(default)]
    pub systems: Vec<String>,
    /// Webhook (Slack-compatible) for its notifications.
    pub notify: Option<String>,
    /// Named human who reviews its Tier 2 changes (default: the owner).
    pub reviewer: Option<String>,
    /// The accountable human; must accept before the capability can propose.
    pub owner: String,
    /// Days between the owner's reviews of its decisions (90).
    pub review_every_days: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CapabilityView {
    #[schema(value_type = Object)]
    pub capability: Capability,
    /// `not_accepted`, `review_overdue` (everything goes to Tier 3) or `tiered`.
    pub autonomy: String,
    pub accepted_at: Option<String>,
    pub last_review_at: Option<String>,
    pub next_review_due: Option<String>,
}

impl CapabilityView {
    pub fn new(c: &Capability, now: i64) -> Self {
        CapabilityView {
            autonomy: c.autonomy(now).as_str().to_owned(),
            accepted_at: c.accepted.as_ref().map(|a| fmt_ms(a.at_ms)),
            last_review_at: c.last_review_ms.map(fmt_ms),
            next_review_due: c.next_review_due_ms().map(fmt_ms),
            // The webhook URL's path may be its secret: never shown.
            capability: c.redacted(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CapabilityList {
    pub items: Vec<CapabilityView>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptRequest {
    /// The owner's statement of accountability (a standard one naming the declared scope
    /// is recorded when empty).
    #[serde(default)]
    pub statement: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewRequest {
    /// What the owner reviewed and concluded.
    #[serde(default)]
    pub note: String,
}

fn capability_outcome(c: Committed, now: i64) -> Result<CapabilityView, ApiError> {
    match c.outcome {
        Outcome::Capability(cap) => Ok(CapabilityView::new(&cap, now)),
        _ => Err(ApiError::internal("writer returned no capability")),
    }
}

/// Declare or update an AI capability. A change of owner, identity or kinds, or a larger
/// blast radius, needs the owner's acceptance again.
#[utoipa::path(put, path = "/v1/capabilities/{id}", tag = "governance", request_body = CapabilityRequest,
    params(("id" = String, Path, description = "capability id (lowercase letters, digits, `-`, `_`)")),
    security(("bearer" = [])),
    responses((status = 200, body = CapabilityView), (status = 400, body = crate::error::ErrorBody),
              (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody),
              (status = 503, body = crate::error::ErrorBody)))]
pub async fn put_capability(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<CapabilityRequest>,
) -> Result<Json<CapabilityView>, ApiError> {
    let new = NewCapability {
        id,
        description: body.description,
        identity: body.identity,
        kinds: body.kinds,
        conditions: body.conditions.unwrap_or_default(),
        max_blast_radius: body.max_blast_radius,
        systems: body.systems,
        notify: body.notify,
        reviewer: body.reviewer,
        owner: body.owner,
        review_every_days: body.review_every_days.unwrap_or(90),
    };
    let actor = caller.actor();
    let c = gov_mutate(
        &state,
        &actor,
        "/v1/capabilities",
        GovOp::PutCapability {
            actor: actor.clone(),
            new,
        },
    )
    .await?;
    Ok(Json(capability_outcome(c, state.clock.now_ms())?))
}

/// List capabilities with owner, acceptance, last review, next due date and autonomy.
#[utoipa::path(get, path = "/v1/capabilities", tag = "governance", security(("bearer" = [])),
    responses((status = 200, body = CapabilityList), (status = 401, body = crate::error::ErrorBody),
              (status = 403, body = crate::error::ErrorBody)))]
pub async fn list_capabilities(
    State(state): State<AppState>,
    acting: Acting,
) -> Result<Json<CapabilityList>, ApiError> {
    let owner = reader(&state, &acting, "/v1/capabilities", true).await?;
    let now = state.clock.now_ms();
    let snap = state.snapshot.load();
    let mut items: Vec<CapabilityView> = snap
        .gov
        .capabilities
        .values()
        .filter(|c| {
            owner
                .as_ref()
                .is_none_or(|o| o.eq_ignore_ascii_case(&c.owner))
        })
        .map(|c| CapabilityView::new(c, now))
        .collect();
    items.sort_by(|a, b| a.capability.id.cmp(&b.capability.id));
    Ok(Json(CapabilityList { items }))
}

#[utoipa::path(get, path = "/v1/capabilities/{id}", tag = "governance", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 401, description = "missing or invalid token", body = crate::error::ErrorBody),
              (status = 403, description = "refused for this caller (audited)", body = crate::error::ErrorBody),
              (status = 200, body = CapabilityView), (status = 404, body = crate::error::ErrorBody)))]
pub async fn show_capability(
    State(state): State<AppState>,
    acting: Acting,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<CapabilityView>, ApiError> {
    let owner = reader(&state, &acting, &format!("/v1/capabilities/{id}"), true).await?;
    let snap = state.snapshot.load();
    let c = snap
        .gov
        .capabilities
        .get(&id)
        .filter(|c| {
            owner
                .as_ref()
                .is_none_or(|o| o.eq_ignore_ascii_case(&c.owner))
        })
        .ok_or_else(|| ApiError::not_found(format!("capability `{id}` is not declared")))?;
    Ok(Json(CapabilityView::new(c, state.clock.now_ms())))
}

/// The owner accepts accountability for the capability (an audit record of its own).
/// Until then the capability cannot propose.
#[utoipa::path(post, path = "/v1/capabilities/{id}/accept", tag = "governance", request_body = AcceptRequest,
    params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 401, description = "missing or invalid token", body = crate::error::ErrorBody),
              (status = 200, body = CapabilityView), (status = 403, description = "not the owner, or not a named human", body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)))]
pub async fn accept_capability(
    State(state): State<AppState>,
    acting: Acting,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<AcceptRequest>,
) -> Result<Json<CapabilityView>, ApiError> {
    let op = GovOp::AcceptCapability {
        actor: acting.actor.clone(),
        id: id.clone(),
        statement: body.statement,
    };
    owner_action(&state, &acting, &id, "accept", op).await
}

/// The owner records a review of the capability's decisions; an overdue review had
/// dropped its autonomy (everything to Tier 3), which this restores.
#[utoipa::path(post, path = "/v1/capabilities/{id}/review", tag = "governance", request_body = ReviewRequest,
    params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 401, description = "missing or invalid token", body = crate::error::ErrorBody),
              (status = 200, body = CapabilityView), (status = 403, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub async fn review_capability(
    State(state): State<AppState>,
    acting: Acting,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ReviewRequest>,
) -> Result<Json<CapabilityView>, ApiError> {
    let op = GovOp::ReviewCapability {
        actor: acting.actor.clone(),
        id: id.clone(),
        note: body.note,
    };
    owner_action(&state, &acting, &id, "review", op).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleRequest {
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub privileged: bool,
    #[serde(default)]
    pub entitlements: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RoleView {
    #[schema(value_type = Object)]
    pub role: Role,
    /// Identities holding the role.
    pub members: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RoleList {
    pub items: Vec<RoleView>,
}

/// Define or replace a role of the entitlement model directly (a human admin's change;
/// AI tools propose `create_role` / `modify_role` instead).
#[utoipa::path(put, path = "/v1/roles/{name}", tag = "governance", request_body = RoleRequest,
    params(("name" = String, Path)), security(("bearer" = [])),
    responses((status = 401, description = "missing or invalid token", body = crate::error::ErrorBody),
              (status = 200, body = RoleView), (status = 400, body = crate::error::ErrorBody),
              (status = 403, body = crate::error::ErrorBody)))]
pub async fn put_role(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<RoleRequest>,
) -> Result<Json<RoleView>, ApiError> {
    let role = Role {
        name: name.clone(),
        description: body.description,
        privileged: body.privileged,
        entitlements: body.entitlements,
    };
    let actor = caller.actor();
    gov_mutate(
        &state,
        &actor,
        "/v1/roles",
        GovOp::PutRole {
            actor: actor.clone(),
            role,
        },
    )
    .await?;
    role_view(&state, &name)
}

fn role_view(state: &AppState, name: &str) -> Result<Json<RoleView>, ApiError> {
    use warrant_core::governance::assess::Graph;
    let snap = state.snapshot.load();
    let role = snap
        .role(name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("role `{name}` not found")))?;
    Ok(Json(RoleView {
        members: snap.role_members(name),
        role,
    }))
}

#[utoipa::path(get, path = "/v1/roles", tag = "governance", security(("bearer" = [])),
    responses((status = 401, description = "missing or invalid token", body = crate::error::ErrorBody),
              (status = 403, description = "refused for this caller (audited)", body = crate::error::ErrorBody),
              (status = 200, body = RoleList)))]
pub async fn list_roles(
    State(state): State<AppState>,
    acting: Acting,
) -> Result<Json<RoleList>, ApiError> {
    use warrant_core::governance::assess::Graph;
    reader(&state, &acting, "/v1/roles", false).await?;
    let snap = state.snapshot.load();
    let mut items: Vec<RoleView> = snap
        .gov
        .roles
        .values()
        .map(|r| RoleView {
            role: (**r).clone(),
            members: snap.role_members(&r.name),
        })
        .collect();
    items.sort_by(|a, b| a.role.name.cmp(&b.role.name));
    Ok(Json(RoleList { items }))
}

#[utoipa::path(get, path = "/v1/roles/{name}", tag = "governance", security(("bearer" = [])),
    params(("name" = String, Path)),
    responses((status = 401, description = "missing or invalid token", body = crate::error::ErrorBody),
              (status = 403, description = "refused for this caller (audited)", body = crate::error::ErrorBody),
              (status = 200, body = RoleView), (status = 404, body = crate::error::ErrorBody)))]
pub async fn show_role(
    State(state): State<AppState>,
    acting: Acting,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<RoleView>, ApiError> {
    reader(&state, &acting, &format!("/v1/roles/{name}"), false).await?;
    role_view(&state, &name)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceRequest {
    /// `unclassified`, `public`, `internal`, `confidential` or `restricted`.
    #[serde(default)]
    #[schema(value_type = String)]
    pub classification: Classification,
    #[serde(default)]
    pub privileged: bool,
    #[serde(default)]
    pub description: String,
}

/// A resource of the entitlement model.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ResourceView {
    pub id: String,
    /// `unclassified`, `public`, `internal`, `confidential` or `restricted`.
    pub classification: String,
    pub privileged: bool,
    pub description: String,
}

impl ResourceView {
    fn new(r: &Resource) -> Self {
        ResourceView {
            id: r.id.clone(),
            classification: r.classification.as_str().to_owned(),
            privileged: r.privileged,
            description: r.description.clone(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ResourceList {
    pub items: Vec<ResourceView>,
}

/// Declare a resource's data classification and privilege (covers the resources below
/// it: `s3` covers `s3:bucket-logs`).
#[utoipa::path(put, path = "/v1/resources/{id}", tag = "governance", request_body = ResourceRequest,
    params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = ResourceView), (status = 400, body = crate::error::ErrorBody),
              (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody)))]
pub async fn put_resource(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ResourceRequest>,
) -> Result<Json<ResourceView>, ApiError> {
    let resource = Resource {
        id,
        classification: body.classification,
        privileged: body.privileged,
        description: body.description,
    };
    let actor = caller.actor();
    gov_mutate(
        &state,
        &actor,
        "/v1/resources",
        GovOp::PutResource {
            actor: actor.clone(),
            resource: resource.clone(),
        },
    )
    .await?;
    Ok(Json(ResourceView::new(&resource)))
}

#[utoipa::path(get, path = "/v1/resources", tag = "governance", security(("bearer" = [])),
    responses((status = 401, description = "missing or invalid token", body = crate::error::ErrorBody),
              (status = 403, description = "refused for this caller (audited)", body = crate::error::ErrorBody),
              (status = 200, body = ResourceList)))]
pub async fn list_resources(
    State(state): State<AppState>,
    acting: Acting,
) -> Result<Json<ResourceList>, ApiError> {
    reader(&state, &acting, "/v1/resources", false).await?;
    let snap = state.snapshot.load();
    let mut items: Vec<ResourceView> = snap
        .gov
        .resources
        .values()
        .map(|r| ResourceView::new(r))
        .collect();
    items.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(Json(ResourceList { items }))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TierPoliciesView {
    /// 0: the built-in defaults.
    pub version: u64,
    pub policies: String,
    pub policy_ids: Vec<String>,
    /// The fixed Cedar schema tier policies are validated against.
    pub schema: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TierPoliciesRequest {
    /// Cedar `permit` policies, each annotated `@tier("1".."4")` (optionally `@id`,
    /// `@reason`, `@approvals("2")` for the two-person rule).
    pub policies: String,
    #[serde(default)]
    pub comment: String,
}

fn tier_view(state: &AppState) -> TierPoliciesView {
    let snap = state.snapshot.load();
    TierPoliciesView {
        version: snap.gov.tier_version,
        policies: snap.gov.tier.text().to_owned(),
        policy_ids: snap.gov.tier.policy_ids(),
        schema: warrant_policy::TIER_SCHEMA.to_owned(),
    }
}

#[utoipa::path(get, path = "/v1/tier-policies", tag = "governance", security(("bearer" = [])),
    responses((status = 401, description = "missing or invalid token", body = crate::error::ErrorBody),
              (status = 403, description = "refused for this caller (audited)", body = crate::error::ErrorBody),
              (status = 200, body = TierPoliciesView)))]
pub async fn get_tier_policies(
    State(state): State<AppState>,
    acting: Acting,
) -> Result<Json<TierPoliciesView>, ApiError> {
    reader(&state, &acting, "/v1/tier-policies", false).await?;
    Ok(Json(tier_view(&state)))
}

/// Replace the tier policies (validated first; diagnostics with line and column on 400).
/// The hard floor still applies whatever they say.
#[utoipa::path(put, path = "/v1/tier-policies", tag = "governance", request_body = TierPoliciesRequest,
    security(("bearer" = [])),
    responses((status = 401, description = "missing or invalid token", body = crate::error::ErrorBody),
              (status = 200, body = TierPoliciesView), (status = 400, body = crate::error::ErrorBody),
              (status = 403, body = crate::error::ErrorBody)))]
pub async fn put_tier_policies(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<TierPoliciesRequest>,
) -> Result<Json<TierPoliciesView>, ApiError> {
    if let Err(e) = warrant_policy::TierPolicies::compile(&body.policies) {
        let details = serde_json::to_value(&e.diagnostics).unwrap_or_default();
        return Err(
            ApiError::bad_request(format!("tier policies do not validate: {e}"))
                .with_details(details),
        );
    }
    if body.comment.len() > 2000 {
        return Err(ApiError::bad_request(
            "`comment` must be at most 2000 bytes",
        ));
    }
    let actor = caller.actor();
    gov_mutate(
        &state,
        &actor,
        "/v1/tier-policies",
        GovOp::PutTierPolicy {
            actor: actor.clone(),
            text: body.policies,
            comment: body.comment,
        },
    )
    .await?;
    Ok(Json(tier_view(&state)))
}

/// Control-plane roles an API token may carry.
pub const TOKEN_ROLES: [&str; 4] = ["admin", "approver", "owner", "auditor"];

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiTokenRequest {
    /// A label (`alice laptop CLI`).
    pub name: String,
    /// The named human the token belongs to (user name or e-mail). Approvals, overrides
    /// and acceptances need one.
    pub human: String,
    /// `admin`, `approver`, `owner` or `auditor`.
    pub role: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ApiTokenCreated {
    pub id: String,
    /// The secret, shown once; only its SHA-256 is stored.
    pub token: String,
    pub human: String,
    pub role: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ApiTokenView {
    pub id: String,
    pub name: String,
    pub human: Option<String>,
    pub role: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ApiTokenList {
    pub items: Vec<ApiTokenView>,
}

/// Issue an API token to a named human.
#[utoipa::path(post, operation_id = "create_api_token", path = "/v1/tokens", tag = "governance", request_body = ApiTokenRequest,
    security(("bearer" = [])),
    responses((status = 401, description = "missing or invalid token", body = crate::error::ErrorBody),
              (status = 201, body = ApiTokenCreated), (status = 400, body = crate::error::ErrorBody),
              (status = 403, body = crate::error::ErrorBody)))]
pub async fn create_token(
    State(state): State<AppState>,
    acting: Acting,
    ApiJson(body): ApiJson<ApiTokenRequest>,
) -> Result<(StatusCode, Json<ApiTokenCreated>), ApiError> {
    // A human issues tokens to themselves only, for a role this credential holds: nobody
    // (no admin, not the bootstrap token) can mint a credential that acts as someone else,
    // and a one-role token cannot mint a token of another role.
    let p = acting.principal();
    let role = warrant_core::access::CpRole::parse(&body.role)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let me = match p.human() {
        None => Err("API tokens are issued by their human to themselves (signed in, with `warrant login`, or POST /v1/auth/token); the bootstrap token and identities issue none".to_owned()),
        Some(me) if !me.eq_ignore_ascii_case(body.human.trim()) => Err(format!(
            "`{me}` may issue tokens to themselves only, not to `{}`",
            body.human.trim()
        )),
        Some(_) if !p.holds(role) => Err(format!(
            "this credential does not act with the `{}` role, so it cannot issue a token that does",
            role.as_str()
        )),
        Some(me) => Ok(me),
    };
    let me = match me {
        Ok(me) => me,
        Err(reason) => {
            return Err(acting
                .authed
                .refuse(&state, "POST", "/v1/tokens", &reason)
                .await)
        }
    };
    let human = state
        .snapshot
        .load()
        .gov
        .humans
        .get(&warrant_core::access::Human::key(me))
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("human `{me}` not found")))?;
    issue_token(&state, &acting.authed.actor(), &human, role, &body.name).await
}

/// Issues an API token of `human` with `role` (which they must hold now).
pub async fn issue_token(
    state: &AppState,
    actor: &str,
    human: &warrant_core::access::Human,
    role: warrant_core::access::CpRole,
    name: &str,
) -> Result<(StatusCode, Json<ApiTokenCreated>), ApiError> {
    let name = name.trim();
    if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "`name` must be 1 to 200 printable characters",
        ));
    }
    if !human.holds(role) {
        return Err(ApiError::conflict(format!(
            "`{}` does not hold the `{}` role; a role is granted through POST /v1/role-grants and a second admin's approval",
            human.name,
            role.as_str()
        )));
    }
    let secret = crate::auth::generate_token();
    let id = format!("tok_{}", uuid::Uuid::now_v7().simple());
    state
        .writer
        .mutate(Op::PutToken {
            actor: actor.to_owned(),
            token: TokenRow {
                id: id.clone(),
                name: name.to_owned(),
                hash: crate::auth::hash_token(&secret),
                role: role.as_str().to_owned(),
                created_ms: state.clock.now_ms(),
                revoked_ms: None,
                human: Some(human.name.clone()),
            },
            note: "issued to a named human",
            unless_active: false,
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(ApiTokenCreated {
            id,
            token: secret,
            human: human.name.clone(),
            role: role.as_str().to_owned(),
        }),
    ))
}

#[utoipa::path(get, operation_id = "list_api_tokens", path = "/v1/tokens", tag = "governance", security(("bearer" = [])),
    responses((status = 401, description = "missing or invalid token", body = crate::error::ErrorBody),
              (status = 403, description = "refused for this caller (audited)", body = crate::error::ErrorBody),
              (status = 200, body = ApiTokenList)))]
pub async fn list_tokens(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<Json<ApiTokenList>, ApiError> {
    let items = state
        .store
        .tokens()
        .await?
        .into_iter()
        .map(|t| ApiTokenView {
            id: t.id,
            name: t.name,
            human: t.human,
            role: t.role,
            created_at: fmt_ms(t.created_ms),
            revoked_at: t.revoked_ms.map(fmt_ms),
        })
        .collect();
    Ok(Json(ApiTokenList { items }))
}

#[utoipa::path(post, operation_id = "revoke_api_token", path = "/v1/tokens/{id}/revoke", tag = "governance", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 401, description = "missing or invalid token", body = crate::error::ErrorBody),
              (status = 403, description = "refused for this caller (audited)", body = crate::error::ErrorBody),
              (status = 200, body = ApiTokenView), (status = 404, body = crate::error::ErrorBody),
              (status = 409, body = crate::error::ErrorBody)))]
pub async fn revoke_token(
    State(state): State<AppState>,
    acting: Acting,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ApiTokenView>, ApiError> {
    let path = format!("/v1/tokens/{id}/revoke");
    // Admins revoke any token; a human revokes their own (e.g. after a lost laptop).
    let admin = warrant_core::access::check(acting.principal(), Perm::Configure).is_ok();
    let found = state.store.tokens().await?.into_iter().find(|t| t.id == id);
    let own = |t: &TokenRow| {
        acting.principal().human().is_some_and(|h| {
            t.human
                .as_deref()
                .is_some_and(|o| o.eq_ignore_ascii_case(h))
        })
    };
    if !admin && !found.as_ref().is_some_and(own) {
        acting
            .authed
            .require(&state, Perm::Configure, "POST", &path)
            .await?;
    }
    let caller = &acting.authed;
    let mut t = found.ok_or_else(|| ApiError::not_found(format!("token `{id}` not found")))?;
    if t.revoked_ms.is_some() {
        return Err(ApiError::conflict(format!(
            "token `{id}` is revoked already"
        )));
    }
    if t.id == caller.via {
        return Err(ApiError::conflict("a token cannot revoke itself"));
    }
    t.revoked_ms = Some(state.clock.now_ms());
    state
        .writer
        .mutate(Op::PutToken {
            actor: caller.actor(),
            token: t.clone(),
            note: "revoked",
            unless_active: false,
        })
        .await?;
    Ok(Json(ApiTokenView {
        id: t.id,
        name: t.name,
        human: t.human,
        role: t.role,
        created_at: fmt_ms(t.created_ms),
        revoked_at: t.revoked_ms.map(fmt_ms),
    }))
}

/// Effective entitlements of an identity (own + through roles), for views.
pub fn effective(state: &AppState, identity: &str) -> Vec<String> {
    let snap = state.snapshot.load();
    snap.principals
        .get(identity)
        .map(|e| {
            effective_entitlements(&**snap, &e.identity)
                .into_iter()
                .collect()
        })
        .unwrap_or_default()
}
