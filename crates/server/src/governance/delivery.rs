//! Webhook deliveries: Slack-compatible notifications to reviewers and approvers, and
//! connector calls that execute (or revert) changes in external systems.
//!
//! A delivery is a stored object with a due time. The governance job (one replica at a
//! time, under the job lock) sends what is due, then records the attempt through the
//! writer: delivered, retried later with exponential backoff, or given up after the
//! configured number of attempts (then audited; a connector call that gave up marks its
//! proposal failed). So deliveries survive restarts and run once across replicas
//! (a crash between sending and recording sends again: receivers dedupe on the
//! `Idempotency-Key` header, which is the delivery id).
//!
//! Every request body is signed: `Warrant-Signature` carries a detached JWS (RFC 7515
//! Appendix F; EdDSA with the current access-token signing key, whose `kid` is in the
//! JWKS at `/.well-known/jwks.json`) over the exact body bytes.

use super::ops::{Attempt, GovOp};
use super::state::{self, kind};
use crate::credentials::keys::base64url;
use crate::credentials::SigningKeys;
use crate::ops::{store_err, Op};
use crate::writer::WriteError;
use crate::AppState;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Duration;
use warrant_core::governance::{Capability, Change, Proposal, ProposalState};
use warrant_core::Millis;
use warrant_store::{ObjectRow, WriteTx};

/// Why a delivery is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// Tell a reviewer or approver (Slack-compatible payload).
    Notify,
    /// Ask a connector to apply a change.
    Apply,
    /// Ask a connector to apply a change's inverse (a Tier 2 override).
    Revert,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Notify => "notify",
            Purpose::Apply => "apply",
            Purpose::Revert => "revert",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub at_ms: Millis,
    pub status: Option<u16>,
    pub error: Option<String>,
}

/// A delivery as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub id: String,
    pub purpose: Purpose,
    pub proposal: String,
    pub url: String,
    pub connector: Option<String>,
    pub payload: serde_json::Value,
    pub attempts: u32,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub last_error: Option<String>,
    pub history: Vec<AttemptRecord>,
    pub created_ms: Millis,
    pub done_ms: Option<Millis>,
}

pub fn new_id() -> String {
    format!("dlv_{}", uuid::Uuid::now_v7().simple())
}

/// Queues a delivery (due at once) in the writer's transaction.
pub async fn queue(
    tx: &mut dyn WriteTx,
    purpose: Purpose,
    proposal: &str,
    url: &str,
    connector: Option<&str>,
    payload: serde_json::Value,
    now: Millis,
) -> Result<String, WriteError> {
    let d = Delivery {
        id: new_id(),
        purpose,
        proposal: proposal.to_owned(),
        url: url.to_owned(),
        connector: connector.map(str::to_owned),
        payload,
        attempts: 0,
        status: "pending".into(),
        last_error: None,
        history: vec![],
        created_ms: now,
        done_ms: None,
    };
    let mut row = state::object_row(kind::DELIVERY, &d.id, "pending", &d, now);
    row.due_ms = Some(now);
    tx.insert_object(&row).await.map_err(store_err)?;
    Ok(d.id)
}

fn who(p: &Proposal) -> String {
    match p.change.target_identity() {
        Some(t) => format!("identity `{t}`"),
        None => p
            .change
            .target_role()
            .map(|r| format!("role `{r}`"))
            .unwrap_or_default(),
    }
}

/// Slack's escaping for text from elsewhere (the AI's rationale): `&`, `<`, `>` — so it
/// cannot carry links, mentions or `<!channel>`.
pub fn mrkdwn_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A Slack-compatible message (`text` + Block Kit `blocks`) about a proposal that needs a
/// human; the `warrant` member carries the machine-readable facts.
pub fn slack_payload(p: &Proposal, cap: &Capability) -> serde_json::Value {
    let (headline, ask) = match p.state {
        ProposalState::InReview => (
            format!("Tier 2 change applied: review within the override window ({})", p.kind().as_str()),
            "Override it with `warrant override` if it is wrong; otherwise it is ratified when the window ends.",
        ),
        ProposalState::PendingApproval => (
            format!("Tier 3 approval requested: {}", p.kind().as_str()),
            "Nothing changes until a named human approves with a justification and a change ticket (`warrant approve`).",
        ),
        _ => (
            format!("Tier 4 recommendation: {}", p.kind().as_str()),
            "The AI only recommends this; a human performs it (`warrant proposal perform`) or rejects it.",
        ),
    };
    let a = &p.assessment;
    let detail = format!(
        "*{headline}*\n{} on {} proposed by capability `{}` (owner {}), confidence {}%.\nBlast radius: {} identities, {} resources; privileged: {}; reversible: {}; data: {}.\nRationale: {}\n{ask}",
        p.kind().as_str(),
        who(p),
        cap.id,
        cap.owner,
        p.confidence_pct,
        a.identities_count,
        a.resources_count,
        a.privileged,
        a.reversible,
        a.classification.as_str(),
        mrkdwn_escape(&p.rationale.chars().take(500).collect::<String>()),
    );
    json!({
        "text": format!("warrant: {headline} — proposal {}", p.id),
        "blocks": [
            { "type": "section", "text": { "type": "mrkdwn", "text": detail } },
            { "type": "context", "elements": [
                { "type": "mrkdwn", "text": format!("proposal `{}` · tier {} · chain `{}` · notify {}", p.id, p.tier.tier, p.correlation, p.notified.join(", ")) }
            ] }
        ],
        "warrant": {
            "proposal": p.id,
            "tier": p.tier.tier,
            "state": p.state.as_str(),
            "capability": cap.id,
            "owner": cap.owner,
            "notified": p.notified,
            "deadline_ms": p.deadline_ms,
        }
    })
}

/// The body a connector receives.
pub fn connector_payload(p: &Proposal, purpose: Purpose, change: &Change) -> serde_json::Value {
    json!({
        "type": format!("warrant.change.{}", purpose.as_str()),
        "proposal": p.id,
        "system": p.system,
        "change": change,
        "tier": p.tier.tier,
        "approvals": p.approvals,
        "capability": p.capability,
        "correlation": p.correlation,
    })
}

/// A detached JWS (header..signature) over `body` with the current signing key.
pub fn sign_detached(keys: &SigningKeys, body: &[u8]) -> Option<String> {
    use ed25519_dalek::Signer as _;
    let key = keys.current.as_ref()?;
    let header = base64url(
        json!({ "alg": "EdDSA", "kid": key.kid, "typ": "warrant-webhook+jws" })
            .to_string()
            .as_bytes(),
    );
    let input = format!("{header}.{}", base64url(body));
    let sig = key.signer.sign(input.as_bytes());
    Some(format!("{header}..{}", base64url(&sig.to_bytes())))
}

const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Deliveries sent per tick.
const PER_TICK: u32 = 64;

/// Sends one delivery and reports the attempt.
async fn send(client: &reqwest::Client, keys: &SigningKeys, d: &Delivery) -> Attempt {
    let body = serde_json::to_vec(&d.payload).unwrap_or_default();
    let mut req = client
        .post(&d.url)
        .timeout(SEND_TIMEOUT)
        .header("content-type", "application/json")
        .header("idempotency-key", &d.id)
        .header("warrant-delivery-purpose", d.purpose.as_str())
        .header("warrant-proposal", &d.proposal);
    if let Some(sig) = sign_detached(keys, &body) {
        req = req.header("warrant-signature", sig);
    }
    match req.body(body).send().await {
        Ok(resp) if resp.status().is_success() => Attempt {
            ok: true,
            status: Some(resp.status().as_u16()),
            error: None,
        },
        Ok(resp) => Attempt {
            ok: false,
            status: Some(resp.status().as_u16()),
            error: Some(format!("HTTP {}", resp.status())),
        },
        Err(e) => Attempt {
            ok: false,
            status: None,
            // The URL may carry a token in its path (Slack webhooks do): never log it.
            error: Some(if e.is_timeout() {
                "timed out".to_owned()
            } else if e.is_connect() {
                "connection failed".to_owned()
            } else {
                "request failed".to_owned()
            }),
        },
    }
}

/// Fires due timers and sends due deliveries (the caller holds the job lock).
pub async fn tick(state: &AppState, client: &reqwest::Client) {
    let now = state.clock.now_ms();
    let due: Vec<ObjectRow> = match state.store.due_objects(now, PER_TICK).await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read due governance timers");
            return;
        }
    };
    let mut sends = Vec::new();
    for row in due {
        match row.kind.as_str() {
            kind::PROPOSAL => {
                if let Err(e) = state
                    .writer
                    .mutate(Op::Gov(Box::new(GovOp::Timer { id: row.id.clone() })))
                    .await
                {
                    tracing::warn!(proposal = %row.id, error = %e, "proposal timer failed; retrying next tick");
                }
            }
            kind::CAMPAIGN => {
                if let Err(e) = state
                    .writer
                    .mutate(Op::Gov(Box::new(GovOp::Cert(Box::new(
                        super::certify::CertOp::Deadline { id: row.id.clone() },
                    )))))
                    .await
                {
                    tracing::warn!(campaign = %row.id, error = %e, "certification deadline failed; retrying next tick");
                }
            }
            kind::SESSION => {
                if let Err(e) = crate::humans::end(state, "system", &row.id, "expired").await {
                    tracing::warn!(session = %row.id, error = %e.message, "session expiry failed; retrying next tick");
                }
            }
            kind::DELIVERY => match state::body::<Delivery>(&row) {
                Some(d) => sends.push(d),
                // Undecodable: the writer takes it out of the queue and raises an alert.
                None => {
                    let _ = state
                        .writer
                        .mutate(Op::Gov(Box::new(GovOp::DeliveryDone {
                            id: row.id.clone(),
                            attempt: Attempt {
                                ok: false,
                                status: None,
                                error: Some("undecodable".into()),
                            },
                        })))
                        .await;
                }
            },
            _ => {}
        }
    }
    let keys = state.snapshot.load().signing.clone();
    let mut set = tokio::task::JoinSet::new();
    for d in sends {
        let (client, keys) = (client.clone(), keys.clone());
        set.spawn(async move {
            let attempt = send(&client, &keys, &d).await;
            (d, attempt)
        });
    }
    while let Some(joined) = set.join_next().await {
        let Ok((d, attempt)) = joined else { continue };
        if !attempt.ok {
            tracing::info!(delivery = %d.id, purpose = d.purpose.as_str(), error = ?attempt.error, "delivery attempt failed");
        }
        state
            .metrics
            .deliveries
            .get_or_create(&crate::metrics::DeliveryLabels {
                purpose: d.purpose.as_str(),
                result: if attempt.ok { "delivered" } else { "failed" },
            })
            .inc();
        if let Err(e) = state
            .writer
            .mutate(Op::Gov(Box::new(GovOp::DeliveryDone {
                id: d.id.clone(),
                attempt,
            })))
            .await
        {
            tracing::warn!(delivery = %d.id, error = %e, "cannot record a delivery attempt");
        }
    }
}
