//! `/v1/authorize`: runtime decisions. This is the hot path.
//!
//! INVARIANT: a decision reads one immutable snapshot (an `ArcSwap` load: no lock, no
//! database), evaluates Cedar against the principal's pre-built entities, and the only
//! I/O is the group-committed audit append. An answer is sent only once its record is
//! durable; when it cannot be written the caller gets 503, never an allow.
//! Unknown, suspended and retired principals are denied before any policy is consulted.
//!
//! A request may carry the agent's access token (`token`, with the `audience` it must be
//! for) as the principal's proof. The token is checked against the same snapshot — the
//! published keys, the revocations, the standing of its subject and of every actor of its
//! delegation chain, the kill switches — so the path stays free of locks and I/O. The
//! principal is then the token's subject, its environment must be the token's, and the
//! action must be within the token's scope (`App:read` for `App::Action::"read"`). Any
//! problem with the token is a deny with its reason (audited like every decision, with
//! the token's `jti` when it verified, never the token itself).

use crate::auth::Enforcer;
use crate::credentials::jwt::{self, AccessClaims, TokenError};
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::snapshot::Snapshot;
use crate::AppState;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::time::Instant;
use utoipa::ToSchema;
use warrant_core::audit::{RecordDraft, RecordKind};
use warrant_core::credentials::Scope;
use warrant_policy::{Decision, DecisionInput};

/// One decision request without an access token (the input of [`decide`], for the
/// benchmarks and in-process callers). The wire form is [`AuthorizeBody`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizeRequest {
    /// Identity id (`idn_…`) or SPIFFE ID of the acting identity.
    pub principal: String,
    /// Cedar action uid, e.g. `App::Action::"read"`.
    pub action: String,
    /// Cedar resource uid, e.g. `App::Document::"q3-report"`.
    pub resource: String,
    /// Request context (JSON object), checked against the action's context type.
    pub context: Option<serde_json::Value>,
    /// Optional Cedar JSON entities describing the resource side.
    pub entities: Option<serde_json::Value>,
}

/// A decision request as it arrives over HTTP.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(as = AuthorizeRequest)]
#[serde(deny_unknown_fields)]
pub struct AuthorizeBody {
    /// Identity id (`idn_…`) or SPIFFE ID of the acting identity. Required unless `token`
    /// is given; with a token it may be omitted (the principal is the token's subject)
    /// and, when given, must be the token's subject or its SPIFFE ID.
    #[serde(default)]
    pub principal: Option<String>,
    /// Cedar action uid, e.g. `App::Action::"read"`.
    pub action: String,
    /// Cedar resource uid, e.g. `App::Document::"q3-report"`.
    pub resource: String,
    /// Request context (JSON object), checked against the action's context type.
    #[schema(value_type = Option<Object>)]
    pub context: Option<serde_json::Value>,
    /// Optional Cedar JSON entities describing the resource side.
    #[schema(value_type = Option<Vec<Object>>)]
    pub entities: Option<serde_json::Value>,
    /// The agent's access token (a JWT from `/oauth2/token`) as the principal's proof.
    /// It must verify, be for `audience`, be unrevoked and unexpired, its subject (and
    /// every actor of its delegation chain) active and not stopped by a kill switch, its
    /// `environment` the principal's, and its scope must carry the action (`App:read` for
    /// `App::Action::"read"`); otherwise the answer is a deny saying why.
    #[serde(default)]
    pub token: Option<String>,
    /// The audience (resource service) the token must be for. Required with `token`.
    #[serde(default)]
    pub audience: Option<String>,
}

impl From<AuthorizeRequest> for AuthorizeBody {
    fn from(r: AuthorizeRequest) -> Self {
        AuthorizeBody {
            principal: Some(r.principal),
            action: r.action,
            resource: r.resource,
            context: r.context,
            entities: r.entities,
            token: None,
            audience: None,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeterminingPolicyView {
    pub id: String,
    /// `permit` or `forbid`.
    pub effect: String,
    /// All annotations of the policy, e.g. `reason`.
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EvaluationErrorView {
    pub policy_id: String,
    pub message: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PrincipalView {
    pub id: String,
    pub spiffe_id: String,
    pub environment: String,
    pub owner: String,
    pub state: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuthorizeResponse {
    /// `allow` or `deny`.
    pub decision: String,
    /// One line explaining the decision.
    pub reason: String,
    pub determining_policies: Vec<DeterminingPolicyView>,
    pub errors: Vec<EvaluationErrorView>,
    /// The identity the principal resolved to (absent when unknown).
    pub principal: Option<PrincipalView>,
    pub policy_version: u64,
    /// Sequence number of this decision's audit record.
    pub audit_seq: u64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// 1 to 100 requests, decided independently.
    pub requests: Vec<AuthorizeBody>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchItem {
    /// The decision, or absent when this request was malformed.
    pub result: Option<AuthorizeResponse>,
    /// Why this request could not be decided (its answer is deny).
    pub error: Option<crate::error::ErrorBodyOwned>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchResponse {
    pub results: Vec<BatchItem>,
}

/// The audit payload of a decision, serialized straight from borrowed data (no
/// intermediate JSON tree on the hot path).
#[derive(Serialize)]
struct DecisionPayload<'a> {
    principal: &'a str,
    principal_id: Option<&'a str>,
    action: &'a str,
    resource: &'a str,
    decision: &'static str,
    reason: &'a str,
    policies: Vec<&'a str>,
    errors: usize,
    policy_version: u64,
    context: ContextInAudit<'a>,
    /// The `jti` of the access token presented (when it verified); never the token.
    #[serde(skip_serializing_if = "Option::is_none")]
    token_jti: Option<&'a str>,
    /// The audience the presented token had to be for.
    #[serde(skip_serializing_if = "Option::is_none")]
    audience: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum ContextInAudit<'a> {
    None,
    Value(&'a serde_json::Value),
}

pub const MAX_BATCH: usize = 100;
/// The longest principal reference accepted (the SPIFFE limit for an ID).
pub const MAX_PRINCIPAL_BYTES: usize = 2048;
const MAX_CONTEXT_IN_AUDIT: usize = 4096;

fn deny(reason: String) -> (Decision, String) {
    (Decision::deny(), reason)
}

/// Decides one request against the current snapshot; no I/O (the caller appends the
/// returned audit draft). `Err` is malformed input. Public for the benchmarks.
pub fn decide(
    state: &AppState,
    caller: &Enforcer,
    req: &AuthorizeRequest,
) -> Result<(AuthorizeResponse, RecordDraft), ApiError> {
    decide_one(
        state,
        caller,
        Ask {
            principal: Some(&req.principal),
            action: &req.action,
            resource: &req.resource,
            context: req.context.as_ref(),
            entities: req.entities.as_ref(),
            proof: None,
        },
    )
}

/// Decides one request as it came over HTTP (with or without an access token).
pub fn decide_body(
    state: &AppState,
    caller: &Enforcer,
    body: &AuthorizeBody,
) -> Result<(AuthorizeResponse, RecordDraft), ApiError> {
    let proof =
        match (&body.token, &body.audience) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err(ApiError::bad_request(
                    "`audience` is only read with a `token`",
                ))
            }
            (Some(_), None) => return Err(ApiError::bad_request(
                "`audience` is required with `token`: the resource service the token must be for",
            )),
            (Some(token), Some(audience)) => {
                if audience.is_empty() || audience.len() > MAX_AUDIENCE_BYTES {
                    return Err(ApiError::bad_request(format!(
                        "`audience` must be 1 to {MAX_AUDIENCE_BYTES} bytes"
                    )));
                }
                Some(Proof { token, audience })
            }
        };
    if proof.is_none() && body.principal.is_none() {
        return Err(ApiError::bad_request(
            "`principal` is required (an identity id or SPIFFE ID), unless a `token` proves it",
        ));
    }
    decide_one(
        state,
        caller,
        Ask {
            principal: body.principal.as_deref(),
            action: &body.action,
            resource: &body.resource,
            context: body.context.as_ref(),
            entities: body.entities.as_ref(),
            proof,
        },
    )
}

/// The longest `audience` accepted.
pub const MAX_AUDIENCE_BYTES: usize = 2048;
/// The longest access token looked at (anything longer is refused unread).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

struct Proof<'a> {
    token: &'a str,
    audience: &'a str,
}

struct Ask<'a> {
    principal: Option<&'a str>,
    action: &'a str,
    resource: &'a str,
    context: Option<&'a serde_json::Value>,
    entities: Option<&'a serde_json::Value>,
    proof: Option<Proof<'a>>,
}

/// Why a token is refused, in a few words.
pub fn token_refusal(e: &TokenError) -> String {
    match e {
        TokenError::Expired => "token expired".to_owned(),
        TokenError::Revoked => "token revoked".to_owned(),
        TokenError::NotYetValid => "token not valid yet".to_owned(),
        TokenError::WrongAudience => "token is for another audience".to_owned(),
        TokenError::Inactive(why) => format!("token refused: {why}"),
        other => format!("token invalid: {other}"),
    }
}

/// The scope token that names a Cedar action uid: `App:read` for `App::Action::"read"`
/// (`A::B:read` for `A::B::Action::"read"`). `None` when the action has no namespace or
/// its id needs escaping (no scope token can name it).
pub fn scope_token_for(action: &str) -> Option<String> {
    let (ns, rest) = action.trim().split_once("::Action::\"")?;
    let id = rest.strip_suffix('"')?;
    if ns.is_empty() || id.is_empty() || id.contains(['"', '\\']) {
        return None;
    }
    Some(format!("{ns}:{id}"))
}

/// What a verified, honoured token says about the request.
struct Proven {
    claims: AccessClaims,
    /// Why the request is denied before any policy is consulted.
    refusal: Option<String>,
}

/// Checks `proof` against the snapshot; `Err` is a mismatch with the request's
/// `principal` (400), `Ok(Err(reason))` a token that does not verify.
fn check_token(
    state: &AppState,
    snap: &Snapshot,
    proof: &Proof<'_>,
    principal: Option<&str>,
    action: &str,
) -> Result<Result<Proven, String>, ApiError> {
    if proof.token.len() > MAX_TOKEN_BYTES {
        return Ok(Err(format!(
            "token invalid: longer than {MAX_TOKEN_BYTES} bytes"
        )));
    }
    let claims = match jwt::verify(
        &snap.signing,
        proof.token,
        state.clock.now_ms(),
        &state.issuer,
        Some(proof.audience),
    ) {
        Ok(c) => c,
        Err(e) => return Ok(Err(token_refusal(&e))),
    };
    if let Some(p) = principal {
        if p != claims.sub && p != claims.spiffe_id {
            return Err(ApiError::bad_request(format!(
                "`principal` `{p}` is not the subject of the token (`{}`); omit `principal` or name the token's subject",
                claims.sub
            )));
        }
    }
    let refusal = match jwt::standing(snap, &claims) {
        Err(e) => Some(token_refusal(&e)),
        Ok(()) => match snap.principals.get(&claims.sub) {
            None => Some(format!(
                "token refused: identity `{}` is not registered",
                claims.sub
            )),
            Some(e) if e.identity.environment != claims.environment => Some(format!(
                "token refused: it was issued for environment `{}`, but the principal is in `{}`",
                claims.environment, e.identity.environment
            )),
            Some(_) => {
                let scope = Scope::parse(&claims.scope).unwrap_or_default();
                match scope_token_for(action) {
                    None => Some(format!(
                        "token scope cannot cover action `{action}` (no scope token names it)"
                    )),
                    Some(t) if !scope.contains(&t) => Some(format!(
                        "token scope does not include `{t}` (needed for {action}); it carries `{scope}`"
                    )),
                    Some(_) => None,
                }
            }
        },
    };
    Ok(Ok(Proven { claims, refusal }))
}

fn decide_one(
    state: &AppState,
    caller: &Enforcer,
    ask: Ask<'_>,
) -> Result<(AuthorizeResponse, RecordDraft), ApiError> {
    if let Some(p) = ask.principal {
        if p.len() > MAX_PRINCIPAL_BYTES {
            // No identity id or SPIFFE ID is longer (SPIFFE caps IDs at 2048 bytes); the
            // reference goes into the audit record's indexed subject, so it stays bounded.
            return Err(ApiError::bad_request(format!(
                "`principal` is {} bytes; an identity id or SPIFFE ID is at most {MAX_PRINCIPAL_BYTES}",
                p.len()
            )));
        }
    }
    let started = Instant::now();
    let snap = state.snapshot.load();
    // With a token: the principal is its subject, or the request is denied for the token.
    let (principal, token_jti, refusal) = match &ask.proof {
        None => (ask.principal.unwrap_or_default().to_owned(), None, None),
        Some(proof) => match check_token(state, &snap, proof, ask.principal, ask.action)? {
            Ok(p) => (p.claims.sub, Some(p.claims.jti), p.refusal),
            Err(why) => (
                ask.principal.unwrap_or("(unverified token)").to_owned(),
                None,
                Some(why),
            ),
        },
    };
    let entry = match (&ask.proof, &token_jti) {
        // A token that does not verify names nobody.
        (Some(_), None) => ask.principal.and_then(|p| snap.principal(p)),
        _ => snap.principal(&principal),
    };
    let stopped = entry.and_then(|e| snap.kill_switch_for(&e.identity));
    let (decision, reason) = match (refusal, entry) {
        (Some(why), _) => deny(why),
        (None, None) => deny(format!("unknown principal `{principal}`")),
        (None, Some(_)) if stopped.is_some() => {
            deny(stopped.map_or_else(String::new, kill_switch_reason))
        }
        (None, Some(e)) => match (e.identity.may_act(), &e.entities) {
            (Err(why), _) => deny(why.to_owned()),
            (Ok(()), None) => deny("principal entities unavailable (fail closed)".to_owned()),
            (Ok(()), Some(entities)) => {
                let input = DecisionInput {
                    action: ask.action,
                    resource: ask.resource,
                    context: ask.context,
                    entities: ask.entities,
                };
                let d = warrant_policy::decide(&snap.policy, entities, &input)
                    .map_err(|e| ApiError::bad_request(format!("cannot decide: {e}")))?;
                let summary = d.summary();
                (d, summary)
            }
        },
    };
    let took = started.elapsed();
    state.metrics.observe_decision(decision.allowed, took);

    let verdict = if decision.allowed { "allow" } else { "deny" };
    let digest;
    let context = match ask.context {
        None => ContextInAudit::None,
        Some(c) => {
            let text = c.to_string();
            if text.len() <= MAX_CONTEXT_IN_AUDIT {
                ContextInAudit::Value(c)
            } else {
                digest = json!({ "sha256": hex::encode(Sha256::digest(text.as_bytes())), "bytes": text.len() });
                ContextInAudit::Value(&digest)
            }
        }
    };
    let payload = DecisionPayload {
        principal: &principal,
        principal_id: entry.map(|e| e.identity.id.as_str()),
        action: ask.action,
        resource: ask.resource,
        decision: verdict,
        reason: &reason,
        policies: decision.determining.iter().map(|p| p.id.as_str()).collect(),
        errors: decision.errors.len(),
        policy_version: snap.policy_version,
        context,
        token_jti: token_jti.as_deref(),
        audience: ask.proof.as_ref().map(|p| p.audience),
    };
    let draft = RecordDraft {
        kind: RecordKind::Decision,
        actor: caller.actor(),
        subject: match entry {
            Some(e) => format!("identity:{}", e.identity.id),
            None => format!("principal:{principal}"),
        },
        payload: serde_json::to_string(&payload).map_err(ApiError::internal)?,
    };
    let response = AuthorizeResponse {
        decision: verdict.to_owned(),
        reason,
        determining_policies: decision
            .determining
            .into_iter()
            .map(|p| DeterminingPolicyView {
                id: p.id,
                effect: match p.effect {
                    warrant_policy::Effect::Permit => "permit".into(),
                    warrant_policy::Effect::Forbid => "forbid".into(),
                },
                annotations: p.annotations,
            })
            .collect(),
        errors: decision
            .errors
            .into_iter()
            .map(|e| EvaluationErrorView {
                policy_id: e.policy_id,
                message: e.message,
            })
            .collect(),
        principal: entry.map(|e| PrincipalView {
            id: e.identity.id.clone(),
            spiffe_id: e.identity.spiffe_id.clone(),
            environment: e.identity.environment.clone(),
            owner: e.identity.owner.clone(),
            state: e.identity.state.as_str().to_owned(),
        }),
        policy_version: snap.policy_version,
        audit_seq: 0,
    };
    Ok((response, draft))
}

/// Why a kill switch denies: which switch, what it covers, and the reason given.
pub fn kill_switch_reason(ks: &warrant_core::credentials::KillSwitch) -> String {
    let what = match ks.target.value() {
        Some(v) => format!("{} `{v}`", ks.target.kind()),
        None => "all AI automation".to_owned(),
    };
    format!("stopped by kill switch `{}` ({what}): {}", ks.id, ks.reason)
}

/// The principal an allow was given to (for the writer's staleness check).
fn allowed_principal(response: &AuthorizeResponse) -> Option<String> {
    (response.decision == "allow")
        .then(|| response.principal.as_ref().map(|p| p.id.clone()))
        .flatten()
}

/// Records that the principal was used, once its decision is durably logged (a refused
/// decision is no use).
fn mark_used(state: &AppState, response: &AuthorizeResponse) {
    if let Some(p) = &response.principal {
        if let Some(e) = state.snapshot.load().principals.get(&p.id) {
            e.touch(state.clock.now_ms());
        }
    }
}

/// Decide one request. Every decision is audit-logged before the answer is sent.
#[utoipa::path(post, operation_id = "authorize", path = "/v1/authorize", tag = "decisions", request_body = AuthorizeBody,
    security(("bearer" = [])),
    responses((status = 403, description = "refused for this caller (audited)", body = crate::error::ErrorBody), (status = 200, body = AuthorizeResponse),
              (status = 400, description = "malformed request (never an allow)", body = crate::error::ErrorBody),
              (status = 401, body = crate::error::ErrorBody),
              (status = 503, description = "the audit record could not be written, or (an allow) another replica changed the principal or the policies before it could be logged: refused, ask again", body = crate::error::ErrorBody)))]
pub async fn authorize(
    State(state): State<AppState>,
    caller: Enforcer,
    ApiJson(req): ApiJson<AuthorizeBody>,
) -> Result<Json<AuthorizeResponse>, ApiError> {
    let (mut response, draft) = decide_body(&state, &caller, &req)?;
    let allowed = allowed_principal(&response).into_iter().collect();
    let seqs = state.writer.append_decisions(vec![draft], allowed).await?;
    mark_used(&state, &response);
    response.audit_seq = seqs
        .first()
        .copied()
        .ok_or_else(|| ApiError::internal("audit append returned no sequence number"))?;
    Ok(Json(response))
}

/// Decide up to 100 requests; all their audit records are written in one group commit.
#[utoipa::path(post, operation_id = "authorize_batch", path = "/v1/authorize/batch", tag = "decisions", request_body = BatchRequest,
    security(("bearer" = [])),
    responses((status = 403, description = "refused for this caller (audited)", body = crate::error::ErrorBody), (status = 401, description = "missing or invalid token", body = crate::error::ErrorBody), (status = 200, body = BatchResponse), (status = 400, body = crate::error::ErrorBody),
              (status = 503, body = crate::error::ErrorBody)))]
pub async fn batch(
    State(state): State<AppState>,
    caller: Enforcer,
    ApiJson(body): ApiJson<BatchRequest>,
) -> Result<Json<BatchResponse>, ApiError> {
    if body.requests.is_empty() || body.requests.len() > MAX_BATCH {
        return Err(ApiError::bad_request(format!(
            "`requests` must hold 1 to {MAX_BATCH} requests, got {}",
            body.requests.len()
        )));
    }
    let mut items = Vec::with_capacity(body.requests.len());
    let mut drafts = Vec::with_capacity(body.requests.len());
    for req in &body.requests {
        match decide_body(&state, &caller, req) {
            Ok((resp, draft)) => {
                items.push(BatchItem {
                    result: Some(resp),
                    error: None,
                });
                drafts.push(draft);
            }
            Err(e) => items.push(BatchItem {
                result: None,
                error: Some(crate::error::ErrorBodyOwned {
                    error: e.code.to_owned(),
                    message: e.message,
                }),
            }),
        }
    }
    let seqs = if drafts.is_empty() {
        vec![]
    } else {
        let allowed = items
            .iter()
            .filter_map(|i| i.result.as_ref().and_then(allowed_principal))
            .collect();
        state.writer.append_decisions(drafts, allowed).await?
    };
    let mut seqs = seqs.into_iter();
    for item in items.iter_mut() {
        if let Some(r) = item.result.as_mut() {
            mark_used(&state, r);
            r.audit_seq = seqs.next().ok_or_else(|| {
                ApiError::internal("audit append returned too few sequence numbers")
            })?;
        }
    }
    Ok(Json(BatchResponse { results: items }))
}
