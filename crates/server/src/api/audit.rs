//! `/v1/audit`: reading the tamper-evident log, inclusion proofs and signed checkpoints.

use super::{fmt_ms, parse_time};
use crate::auth::{AuditReader, Caller};
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};
use crate::AppState;
use axum::extract::State;
use axum::Json;
use base64::Engine;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use warrant_core::audit::{AuditRecord, RecordKind};
use warrant_core::checkpoint::Checkpoint;
use warrant_store::AuditFilter;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RecordView {
    pub seq: u64,
    pub time: String,
    /// e.g. `decision`, `identity.created`, `policy.updated`, `ai.recommendation`, `human.decision`, `execution`.
    pub kind: String,
    pub actor: String,
    pub subject: String,
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// Hex RFC 6962 leaf hash.
    pub leaf_hash: String,
    /// Hex tree head over records 0..=seq.
    pub root: String,
}

impl From<&AuditRecord> for RecordView {
    fn from(r: &AuditRecord) -> Self {
        RecordView {
            seq: r.seq,
            time: fmt_ms(r.ts_ms),
            kind: r.kind.clone(),
            actor: r.actor.clone(),
            subject: r.subject.clone(),
            payload: serde_json::from_str(&r.payload)
                .unwrap_or(serde_json::Value::String(r.payload.clone())),
            leaf_hash: hex::encode(r.leaf_hash),
            root: hex::encode(r.root),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CheckpointView {
    pub origin: String,
    pub size: u64,
    /// Hex tree head.
    pub root: String,
    pub time: String,
    pub key_id: String,
    /// Base64 Ed25519 signature over `signed_message`.
    pub signature: String,
    pub signed_message: String,
}

impl From<&Checkpoint> for CheckpointView {
    fn from(c: &Checkpoint) -> Self {
        CheckpointView {
            origin: c.origin.clone(),
            size: c.size,
            root: hex::encode(c.root),
            time: fmt_ms(c.ts_ms),
            key_id: c.key_id.clone(),
            signature: base64::engine::general_purpose::STANDARD.encode(c.signature),
            signed_message: c.message(),
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    pub kind: Option<String>,
    pub actor: Option<String>,
    pub subject: Option<String>,
    /// RFC 3339; records at or after this time.
    pub from: Option<String>,
    /// RFC 3339; records before this time.
    pub to: Option<String>,
    /// Start at this sequence number (inclusive).
    pub cursor: Option<u64>,
    /// `asc` (default) or `desc`.
    pub order: Option<String>,
    /// 1..=1000, default 100.
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RecordPage {
    pub items: Vec<RecordView>,
    pub next_cursor: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProofView {
    pub record: RecordView,
    pub checkpoint: CheckpointView,
    /// Hex hashes of the RFC 6962 audit path, leaf to root.
    pub proof: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PublicKeyView {
    pub key_id: String,
    pub algorithm: String,
    pub public_key_pem: String,
    pub public_key_hex: String,
}

/// List audit records.
#[utoipa::path(get, operation_id = "list_audit_records", path = "/v1/audit", tag = "audit", params(AuditQuery), security(("bearer" = [])),
    responses((status = 403, description = "refused for this caller (audited)", body = crate::error::ErrorBody), (status = 401, description = "missing or invalid token", body = crate::error::ErrorBody), (status = 200, body = RecordPage), (status = 400, body = crate::error::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    _caller: AuditReader,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<RecordPage>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("`limit` must be between 1 and 1000"));
    }
    if let Some(k) = &q.kind {
        if RecordKind::parse(k).is_none() {
            let kinds: Vec<&str> = RecordKind::ALL.iter().map(|k| k.as_str()).collect();
            return Err(ApiError::bad_request(format!(
                "unknown `kind` `{k}`; one of {}",
                kinds.join(", ")
            )));
        }
    }
    let descending = match q.order.as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(o) => {
            return Err(ApiError::bad_request(format!(
                "`order` must be `asc` or `desc`, got `{o}`"
            )))
        }
    };
    let filter = AuditFilter {
        kind: q.kind,
        actor: q.actor,
        subject: q.subject,
        from_ms: q
            .from
            .as_deref()
            .map(|s| parse_time("from", s))
            .transpose()?,
        to_ms: q.to.as_deref().map(|s| parse_time("to", s)).transpose()?,
        from_seq: q.cursor,
        descending,
        limit: limit + 1,
    };
    let mut records = state.store.audit_records(&filter).await?;
    let next_cursor = if records.len() > limit as usize {
        records.pop().map(|r| r.seq)
    } else {
        None
    };
    Ok(Json(RecordPage {
        items: records.iter().map(RecordView::from).collect(),
        next_cursor,
    }))
}

/// One audit record.
#[utoipa::path(get, operation_id = "get_audit_record", path = "/v1/audit/records/{seq}", tag = "audit",
    params(("seq" = u64, Path, description = "sequence number")), security(("bearer" = [])),
    responses((status = 403, description = "refused for this caller (audited)", body = crate::error::ErrorBody), (status = 401, description = "missing or invalid token", body = crate::error::ErrorBody), (status = 200, body = RecordView), (status = 404, body = crate::error::ErrorBody)))]
pub async fn record(
    State(state): State<AppState>,
    _caller: AuditReader,
    ApiPath(seq): ApiPath<u64>,
) -> Result<Json<RecordView>, ApiError> {
    let r = state
        .store
        .audit_record(seq)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no audit record {seq}")))?;
    Ok(Json(RecordView::from(&r)))
}

/// Inclusion proof of a record against the latest signed checkpoint.
#[utoipa::path(get, operation_id = "get_inclusion_proof", path = "/v1/audit/proof/{seq}", tag = "audit",
    params(("seq" = u64, Path, description = "sequence number")), security(("bearer" = [])),
    responses((status = 403, description = "refused for this caller (audited)", body = crate::error::ErrorBody), (status = 401, description = "missing or invalid token", body = crate::error::ErrorBody), (status = 200, body = ProofView), (status = 404, body = crate::error::ErrorBody),
              (status = 409, description = "not yet covered by a checkpoint", body = crate::error::ErrorBody)))]
pub async fn proof(
    State(state): State<AppState>,
    _caller: AuditReader,
    ApiPath(seq): ApiPath<u64>,
) -> Result<Json<ProofView>, ApiError> {
    let record = state
        .store
        .audit_record(seq)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no audit record {seq}")))?;
    let cp = state.store.latest_checkpoint().await?;
    let cp = match cp {
        Some(cp) if cp.size > seq => cp,
        _ => {
            return Err(ApiError::new(
                axum::http::StatusCode::CONFLICT,
                "not_checkpointed",
                format!("record {seq} is not yet covered by a signed checkpoint; create one with POST /v1/audit/checkpoints"),
            ))
        }
    };
    let leaves = state.store.audit_leaf_hashes(cp.size).await?;
    let index = usize::try_from(seq).map_err(|_| ApiError::bad_request("`seq` out of range"))?;
    let path = warrant_core::merkle::inclusion_proof(&leaves, index)
        .ok_or_else(|| ApiError::internal("record outside the checkpointed tree"))?;
    if warrant_core::merkle::root_of(&leaves) != cp.root {
        return Err(ApiError::internal(
            "stored records do not match the signed checkpoint; run `warrant audit verify`",
        ));
    }
    Ok(Json(ProofView {
        record: RecordView::from(&record),
        checkpoint: CheckpointView::from(&cp),
        proof: path.iter().map(hex::encode).collect(),
    }))
}

/// Signed checkpoints, oldest first.
#[utoipa::path(get, operation_id = "list_checkpoints", path = "/v1/audit/checkpoints", tag = "audit", security(("bearer" = [])),
    responses((status = 403, description = "refused for this caller (audited)", body = crate::error::ErrorBody), (status = 401, description = "missing or invalid token", body = crate::error::ErrorBody), (status = 200, body = Vec<CheckpointView>)))]
pub async fn checkpoints(
    State(state): State<AppState>,
    _caller: AuditReader,
) -> Result<Json<Vec<CheckpointView>>, ApiError> {
    let cps = state.store.checkpoints().await?;
    Ok(Json(cps.iter().map(CheckpointView::from).collect()))
}

/// Make a signed checkpoint of the log now (no-op if the latest one is current).
#[utoipa::path(post, operation_id = "create_checkpoint", path = "/v1/audit/checkpoints", tag = "audit", security(("bearer" = [])),
    responses((status = 403, description = "refused for this caller (audited)", body = crate::error::ErrorBody), (status = 401, description = "missing or invalid token", body = crate::error::ErrorBody), (status = 200, body = CheckpointView), (status = 503, body = crate::error::ErrorBody)))]
pub async fn create_checkpoint(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<Json<CheckpointView>, ApiError> {
    crate::checkpoint_if_needed(&state).await?;
    let cp = state
        .store
        .latest_checkpoint()
        .await?
        .ok_or_else(|| ApiError::internal("no checkpoint after creating one"))?;
    Ok(Json(CheckpointView::from(&cp)))
}

/// The public key that signs checkpoints (pin it outside warrant).
#[utoipa::path(get, operation_id = "get_audit_public_key", path = "/v1/audit/public-key", tag = "audit",
    responses((status = 200, body = PublicKeyView)))]
pub async fn public_key(State(state): State<AppState>) -> Result<Json<PublicKeyView>, ApiError> {
    Ok(Json(PublicKeyView {
        key_id: warrant_core::checkpoint::key_id(&state.public_key),
        algorithm: "Ed25519".into(),
        public_key_pem: crate::keys::public_pem(&state.public_key).map_err(ApiError::internal)?,
        public_key_hex: hex::encode(state.public_key.as_bytes()),
    }))
}

/// Verification of a page of records against the latest signed checkpoint, for the
/// console: each record's leaf hash is recomputed from its content and compared with the
/// checkpointed tree, whose root and signature are checked once.
pub struct PageVerification {
    pub summary: String,
    /// Per record: (`ok` | `pending` | `bad`, text).
    pub statuses: Vec<(&'static str, String)>,
}

pub async fn verify_page(state: &AppState, items: &[RecordView]) -> PageVerification {
    let all = |k: &'static str, t: &str| vec![(k, t.to_owned()); items.len()];
    let cp = match state.store.latest_checkpoint().await {
        Ok(Some(cp)) => cp,
        Ok(None) => {
            return PageVerification {
                summary: "No signed checkpoint yet: records cannot be verified.".into(),
                statuses: all("pending", "no checkpoint yet"),
            }
        }
        Err(e) => {
            return PageVerification {
                summary: format!("Cannot read checkpoints: {e}"),
                statuses: all("bad", "unverified"),
            }
        }
    };
    if !cp.verify(&state.public_key) {
        return PageVerification {
            summary: format!(
                "The latest checkpoint (size {}) does not verify with this server's key.",
                cp.size
            ),
            statuses: all("bad", "checkpoint signature invalid"),
        };
    }
    let leaves = match state.store.audit_leaf_hashes(cp.size).await {
        Ok(l) => l,
        Err(e) => {
            return PageVerification {
                summary: format!("Cannot read the log: {e}"),
                statuses: all("bad", "unverified"),
            }
        }
    };
    if warrant_core::merkle::root_of(&leaves) != cp.root {
        return PageVerification {
            summary: format!(
                "TAMPERED: the stored log does not match the signed checkpoint of {} records.",
                cp.size
            ),
            statuses: all("bad", "log does not match checkpoint"),
        };
    }
    let mut statuses = Vec::with_capacity(items.len());
    for r in items {
        if r.seq >= cp.size {
            statuses.push(("pending", "after the latest checkpoint".to_owned()));
            continue;
        }
        let stored = state.store.audit_record(r.seq).await.ok().flatten();
        let ok = stored.is_some_and(|rec| {
            usize::try_from(r.seq)
                .ok()
                .and_then(|i| leaves.get(i))
                .is_some_and(|l| *l == rec.computed_leaf_hash())
        });
        statuses.push(if ok {
            ("ok", format!("verified (checkpoint {})", cp.size))
        } else {
            (
                "bad",
                "TAMPERED: content does not match the checkpointed leaf".to_owned(),
            )
        });
    }
    PageVerification {
        summary: format!(
            "Latest signed checkpoint: {} records at {}, signature valid, log consistent.",
            cp.size,
            fmt_ms(cp.ts_ms)
        ),
        statuses,
    }
}
