//! The control-plane role matrix: every route the server documents in `/openapi.json`,
//! called as a named admin, approver, auditor and owner (on their own objects, and on
//! another owner's), as an AI identity with an access token for warrant, with the
//! bootstrap token and with no credential. [`MATRIX`] is the hand-written table of who
//! may; a documented route missing from it fails the test, so a new route cannot slip
//! through without someone deciding who may call it.
//!
//! A call the table allows must pass authorization: it may still fail on its sample body
//! (400, 404, 409), never with 401 or 403. A call it refuses is answered 401 (no
//! credential) or 403 — 404 only where an owner or an AI identity asks for someone else's
//! object, which is hidden — and every 403 left a `request.refused` audit record naming
//! the caller. One server (SQLite), one pass: refusals first (they change nothing), then
//! the allowed calls, least privileged callers first.

use super::harness::*;
use base64::Engine as _;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};

const ADMIN: u8 = 1;
const APPROVER: u8 = 2;
const AUDITOR: u8 = 4;
const OWNER: u8 = 8;
const AI: u8 = 16;
const BOOT: u8 = 32;
/// Everyone authenticated.
const ANYONE: u8 = ADMIN | APPROVER | AUDITOR | OWNER | AI | BOOT;
/// Configuration changes and policy enforcement: named admins and the bootstrap token.
const CONFIG: u8 = ADMIN | BOOT;
/// Readers of the whole configuration (owners see their own objects only).
const READERS: u8 = ADMIN | APPROVER | AUDITOR | BOOT;
/// Readers of the audit log.
const AUDIT: u8 = ADMIN | AUDITOR | BOOT;
/// No credential needed.
const PUBLIC: u8 = 128;

/// Object-level scope of a route (besides the roles allowed).
const NONE: u8 = 0;
/// An owner may call it on their own objects only: it is also called on another owner's
/// (and must be refused: 403, or 404 hiding the object).
const OWN: u8 = 1;
/// An AI identity may call it on its own proposals only: also called on another AI's.
const AI_OWN: u8 = 2;

/// (method, path template, who may, object-level scope). Every documented route, exactly.
const MATRIX: &[(&str, &str, u8, u8)] = &[
    // The registry of identities.
    ("POST", "/v1/identities", CONFIG, NONE),
    ("GET", "/v1/identities", READERS | OWNER, NONE),
    ("GET", "/v1/identities/{id}", READERS | OWNER, OWN),
    ("PATCH", "/v1/identities/{id}", CONFIG, NONE),
    ("POST", "/v1/identities/{id}/suspend", CONFIG, NONE),
    ("POST", "/v1/identities/{id}/resume", CONFIG, NONE),
    ("POST", "/v1/identities/{id}/retire", CONFIG, NONE),
    ("POST", "/v1/identities/{id}/keys", CONFIG, NONE),
    ("GET", "/v1/identities/{id}/keys", READERS, NONE),
    ("DELETE", "/v1/identities/{id}/keys/{kid}", CONFIG, NONE),
    // Cedar policies.
    ("GET", "/v1/policies", READERS, NONE),
    ("PUT", "/v1/policies", CONFIG, NONE),
    ("POST", "/v1/policies/validate", READERS, NONE),
    ("GET", "/v1/policies/versions", READERS, NONE),
    ("GET", "/v1/policies/versions/{version}", READERS, NONE),
    // Decisions (policy enforcement points).
    ("POST", "/v1/authorize", CONFIG, NONE),
    ("POST", "/v1/authorize/batch", CONFIG, NONE),
    // The audit log.
    ("GET", "/v1/audit", AUDIT, NONE),
    ("GET", "/v1/audit/records/{seq}", AUDIT, NONE),
    ("GET", "/v1/audit/proof/{seq}", AUDIT, NONE),
    ("GET", "/v1/audit/checkpoints", AUDIT, NONE),
    ("POST", "/v1/audit/checkpoints", CONFIG, NONE),
    ("GET", "/v1/audit/public-key", PUBLIC, NONE),
    // Kill switches: owners engage them on their own identities.
    ("POST", "/v1/killswitches", CONFIG | OWNER, OWN),
    ("GET", "/v1/killswitches", READERS, NONE),
    ("GET", "/v1/killswitches/{id}", READERS, NONE),
    ("POST", "/v1/killswitches/{id}/release", CONFIG, NONE),
    // Signing keys and OAuth.
    ("GET", "/v1/keys", READERS, NONE),
    ("POST", "/v1/keys/rotate", CONFIG, NONE),
    ("POST", "/oauth2/token", PUBLIC, NONE),
    ("POST", "/oauth2/introspect", CONFIG, NONE),
    ("POST", "/oauth2/revoke", CONFIG, NONE),
    (
        "GET",
        "/.well-known/oauth-authorization-server",
        PUBLIC,
        NONE,
    ),
    ("GET", "/.well-known/jwks.json", PUBLIC, NONE),
    // Capabilities: declared by admins, accepted and reviewed by their owner.
    ("GET", "/v1/capabilities", READERS | OWNER, NONE),
    ("PUT", "/v1/capabilities/{id}", CONFIG, NONE),
    ("GET", "/v1/capabilities/{id}", READERS | OWNER, OWN),
    ("POST", "/v1/capabilities/{id}/accept", OWNER, OWN),
    ("POST", "/v1/capabilities/{id}/review", OWNER, OWN),
    // The entitlement model and the tier policies.
    ("GET", "/v1/roles", READERS, NONE),
    ("PUT", "/v1/roles/{name}", CONFIG, NONE),
    ("GET", "/v1/roles/{name}", READERS, NONE),
    ("GET", "/v1/resources", READERS, NONE),
    ("PUT", "/v1/resources/{id}", CONFIG, NONE),
    ("GET", "/v1/tier-policies", READERS, NONE),
    ("PUT", "/v1/tier-policies", CONFIG, NONE),
    // API tokens: a human issues them to themselves only (with the role of the credential
    // used), never the bootstrap token; admins list and revoke them.
    (
        "POST",
        "/v1/tokens",
        ADMIN | APPROVER | AUDITOR | OWNER,
        OWN,
    ),
    ("GET", "/v1/tokens", CONFIG, NONE),
    ("POST", "/v1/tokens/{id}/revoke", CONFIG, NONE),
    // Proposals: AI identities submit and read their own; approvers decide; Tier 2
    // reviews by the capability's reviewer (an approver here) or owner.
    ("POST", "/v1/proposals", AI, NONE),
    ("GET", "/v1/proposals", READERS | OWNER | AI, NONE),
    (
        "GET",
        "/v1/proposals/{id}",
        READERS | OWNER | AI,
        OWN | AI_OWN,
    ),
    (
        "GET",
        "/v1/proposals/{id}/chain",
        READERS | OWNER | AI,
        OWN | AI_OWN,
    ),
    (
        "GET",
        "/v1/proposals/{id}/deliveries",
        READERS | OWNER | AI,
        OWN | AI_OWN,
    ),
    ("POST", "/v1/proposals/{id}/approve", APPROVER, NONE),
    ("POST", "/v1/proposals/{id}/reject", APPROVER, NONE),
    ("POST", "/v1/proposals/{id}/perform", APPROVER, NONE),
    ("POST", "/v1/proposals/{id}/override", APPROVER | OWNER, OWN),
    ("POST", "/v1/proposals/{id}/ratify", APPROVER | OWNER, OWN),
    // Humans and their roles: a human reads and edits their own account; role grants are
    // decided by a second named admin (never the bootstrap token).
    ("POST", "/v1/humans", CONFIG, NONE),
    ("GET", "/v1/humans", READERS, NONE),
    ("GET", "/v1/humans/{name}", READERS | OWNER, OWN),
    ("PATCH", "/v1/humans/{name}", CONFIG | OWNER, OWN),
    (
        "POST",
        "/v1/humans/{name}/roles/{role}/revoke",
        CONFIG,
        NONE,
    ),
    ("POST", "/v1/role-grants", CONFIG, NONE),
    ("GET", "/v1/role-grants", READERS, NONE),
    ("POST", "/v1/role-grants/{id}/approve", ADMIN, NONE),
    ("POST", "/v1/role-grants/{id}/reject", ADMIN, NONE),
    ("GET", "/v1/me", ANYONE, NONE),
    // A human's password is the credential here.
    ("POST", "/v1/auth/token", PUBLIC, NONE),
    ("POST", "/v1/auth/password", PUBLIC, NONE),
    // Access certification: admins open campaigns, owners answer their own items.
    ("POST", "/v1/certifications", CONFIG, NONE),
    ("GET", "/v1/certifications", READERS | OWNER, NONE),
    ("GET", "/v1/certifications/{id}", READERS | OWNER, OWN),
    ("POST", "/v1/certifications/{id}/items/{item}", OWNER, OWN),
    // Probes and metrics.
    ("GET", "/healthz", PUBLIC, NONE),
    ("GET", "/readyz", PUBLIC, NONE),
    ("GET", "/metrics", PUBLIC, NONE),
];

/// Who calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Admin,
    Approver,
    Auditor,
    Owner,
    Ai,
    Bootstrap,
    Anonymous,
}

impl Who {
    fn bit(self) -> u8 {
        match self {
            Who::Admin => ADMIN,
            Who::Approver => APPROVER,
            Who::Auditor => AUDITOR,
            Who::Owner => OWNER,
            Who::Ai => AI,
            Who::Bootstrap => BOOT,
            Who::Anonymous => 0,
        }
    }
}

const HUMAN_ADMIN: &str = "adam@example.com";
const HUMAN_APPROVER: &str = "april@example.com";
const HUMAN_AUDITOR: &str = "audrey@example.com";
/// The owner whose objects the calls name.
const HUMAN_OWNER: &str = "olive@example.com";
/// Another owner: their objects are hidden from, or refused to, [`HUMAN_OWNER`].
const OTHER_OWNER: &str = "oscar@example.com";
/// Holds `auditor`, to have it revoked.
const VICTOR: &str = "victor@example.com";
/// Has no role; role grants are asked for them.
const WALT: &str = "walt@example.com";
const PROPOSE: &str = "warrant:propose";

/// What the calls act on.
struct World {
    url: String,
    admin: String,
    approver: String,
    auditor: String,
    owner: String,
    ai: String,
    /// `identity:<id>` of the AI identity ([`World::ai`]'s).
    ai_id: String,
    /// The bootstrap token's id (its audit actor is `admin:<id>`).
    bootstrap_id: String,
    /// Identities of the owner and of the other owner.
    own_identity: String,
    other_identity: String,
    /// A key of `own_identity`, to be deleted.
    kid: String,
    kill_switch: String,
    token_to_revoke: String,
    tier_policies: String,
    /// Proposals of the owner's capability, each in the state its operation needs, and a
    /// Tier 2 proposal of the other owner's capability.
    to_approve: String,
    to_reject: String,
    to_perform: String,
    to_override: String,
    to_ratify: String,
    others: String,
    grant_to_approve: String,
    grant_to_reject: String,
    /// Certification campaigns over the owner's identities and over the other owner's.
    own_campaign: String,
    other_campaign: String,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn fresh() -> u64 {
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn jwk(seed: &[u8; 32]) -> Value {
    let sk = ed25519_dalek::SigningKey::from_bytes(seed);
    json!({ "kty": "OKP", "crv": "Ed25519", "x": b64(sk.verifying_key().as_bytes()) })
}

/// Registers an AI tool owned by `owner` with an Ed25519 key and gets it an access token
/// for warrant itself (`private_key_jwt`, scope `warrant:propose`, audience the issuer):
/// (id, access token).
async fn ai_identity(url: &str, issuer: &str, name: &str, owner: &str) -> (String, String) {
    let id = identity(url, name, "ai_tool", owner).await;
    let token = propose_token(url, &id, issuer).await;
    (id, token)
}

async fn identity(url: &str, name: &str, kind: &str, owner: &str) -> String {
    let b = api_ok(
        url,
        ADMIN_TOKEN,
        "POST",
        "/v1/identities",
        Some(
            &json!({ "name": name, "kind": kind, "environment": "dev", "owner": owner,
                      "entitlements": ["docs:write", "s3:logs:read"] }),
        ),
    )
    .await;
    b["id"].as_str().unwrap().to_owned()
}

fn capability(identity: &str, owner: &str) -> Value {
    json!({
        "identity": identity, "owner": owner, "reviewer": HUMAN_APPROVER,
        "kinds": ["revoke_entitlement", "modify_trust", "retire_identity"],
        "max_blast_radius": 5,
        // Tier 2 needs a channel to notify the reviewer (nobody answers here).
        "notify": "http://127.0.0.1:9/unwatched",
    })
}

fn proposal(capability: &str, change: Value, confidence: f64) -> Value {
    json!({
        "capability": capability, "change": change, "evidence": { "unused_days": 60 },
        "rationale": "not used in 60 days", "confidence": confidence,
    })
}

/// Submits a proposal that must get `state`; returns its id.
async fn submit(url: &str, token: &str, body: Value, state: &str) -> String {
    let b = api_ok(url, token, "POST", "/v1/proposals", Some(&body)).await;
    assert_eq!(b["proposal"]["state"], state, "{b}");
    b["proposal"]["id"].as_str().unwrap().to_owned()
}

async fn pending_grant(url: &str, role: &str) -> String {
    let g = api_ok(
        url,
        ADMIN_TOKEN,
        "POST",
        "/v1/role-grants",
        Some(&json!({ "human": WALT, "role": role, "justification": GRANT_WHY })),
    )
    .await;
    assert_eq!(g["state"], "pending", "{g}");
    g["id"].as_str().unwrap().to_owned()
}

async fn world(server: &Server) -> World {
    let url = server.url.clone();
    let meta = api_ok(
        &url,
        ADMIN_TOKEN,
        "GET",
        "/.well-known/oauth-authorization-server",
        None,
    )
    .await;
    let issuer = meta["issuer"].as_str().unwrap().to_owned();
    let policies = format!(
        "{POLICIES}\n@id(\"ai-tools-propose\")\npermit (principal, action == Warrant::Action::\"request_scope\", resource == Warrant::Scope::\"{PROPOSE}\")\nwhen {{ principal.kind == \"ai_tool\" && context.audience == \"{issuer}\" }};\n"
    );
    api_ok(
        &url,
        ADMIN_TOKEN,
        "PUT",
        "/v1/policies",
        Some(&json!({ "schema": SCHEMA, "policies": policies })),
    )
    .await;

    let (_, admin) = human_token(&url, HUMAN_ADMIN, "admin").await;
    let (_, approver) = human_token(&url, HUMAN_APPROVER, "approver").await;
    let (_, auditor) = human_token(&url, HUMAN_AUDITOR, "auditor").await;
    let (_, owner) = human_token(&url, HUMAN_OWNER, "owner").await;
    let (_, other_owner) = human_token(&url, OTHER_OWNER, "owner").await;
    let (token_to_revoke, _) = human_token(&url, VICTOR, "auditor").await;
    ensure_human(&url, WALT).await;
    let grant_to_approve = pending_grant(&url, "approver").await;
    let grant_to_reject = pending_grant(&url, "auditor").await;
    let bootstrap_id = api_ok(&url, ADMIN_TOKEN, "GET", "/v1/me", None).await["name"]
        .as_str()
        .unwrap()
        .to_owned();

    let (ai_id, ai) = ai_identity(&url, &issuer, "olive-bot", HUMAN_OWNER).await;
    let (other_ai_id, other_ai) = ai_identity(&url, &issuer, "oscar-bot", OTHER_OWNER).await;
    let own_identity = identity(&url, "olive-svc", "service_account", HUMAN_OWNER).await;
    let other_identity = identity(&url, "oscar-svc", "service_account", OTHER_OWNER).await;
    let retiree = identity(&url, "olive-old", "service_account", HUMAN_OWNER).await;
    let kid = api_ok(
        &url,
        ADMIN_TOKEN,
        "POST",
        &format!("/v1/identities/{own_identity}/keys"),
        Some(&json!({ "jwk": jwk(&[3; 32]) })),
    )
    .await["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    for (cap, ai_id, owner_token) in [
        ("olive-cap", &ai_id, &owner),
        ("oscar-cap", &other_ai_id, &other_owner),
    ] {
        let owner_name = if cap == "olive-cap" {
            HUMAN_OWNER
        } else {
            OTHER_OWNER
        };
        api_ok(
            &url,
            ADMIN_TOKEN,
            "PUT",
            &format!("/v1/capabilities/{cap}"),
            Some(&capability(ai_id, owner_name)),
        )
        .await;
        api_ok(
            &url,
            owner_token,
            "POST",
            &format!("/v1/capabilities/{cap}/accept"),
            Some(&json!({})),
        )
        .await;
    }
    let revoke = |identity: &str, ent: &str| json!({ "kind": "revoke_entitlement", "identity": identity, "entitlement": ent });
    let trust = |identity: &str| json!({ "kind": "modify_trust", "identity": identity, "add": ["spiffe://example.org/ci"] });
    // Tier 2 (a small reversible revocation below 90%), Tier 3 (trust: the hard floor),
    // Tier 4 (retiring an identity).
    let to_override = submit(
        &url,
        &ai,
        proposal("olive-cap", revoke(&own_identity, "docs:write"), 0.85),
        "in_review",
    )
    .await;
    let to_ratify = submit(
        &url,
        &ai,
        proposal("olive-cap", revoke(&own_identity, "s3:logs:read"), 0.85),
        "in_review",
    )
    .await;
    let to_approve = submit(
        &url,
        &ai,
        proposal("olive-cap", trust(&own_identity), 0.9),
        "pending_approval",
    )
    .await;
    let to_reject = submit(
        &url,
        &ai,
        proposal("olive-cap", trust(&retiree), 0.9),
        "pending_approval",
    )
    .await;
    let to_perform = submit(
        &url,
        &ai,
        proposal(
            "olive-cap",
            json!({ "kind": "retire_identity", "identity": retiree }),
            0.9,
        ),
        "recommended",
    )
    .await;
    let others = submit(
        &url,
        &other_ai,
        proposal("oscar-cap", revoke(&other_identity, "docs:write"), 0.85),
        "in_review",
    )
    .await;

    let kill_switch = api_ok(
        &url,
        ADMIN_TOKEN,
        "POST",
        "/v1/killswitches",
        Some(&json!({ "target": { "kind": "owner", "value": "nobody@example.com" }, "reason": "matrix" })),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    api_ok(
        &url,
        ADMIN_TOKEN,
        "PUT",
        "/v1/roles/documented",
        Some(&json!({ "entitlements": ["docs:read"] })),
    )
    .await;
    let tier_policies = api_ok(&url, ADMIN_TOKEN, "GET", "/v1/tier-policies", None).await
        ["policies"]
        .as_str()
        .unwrap()
        .to_owned();
    api_ok(&url, ADMIN_TOKEN, "POST", "/v1/audit/checkpoints", None).await;
    let mut campaigns = vec![];
    for owner in [HUMAN_OWNER, OTHER_OWNER] {
        let body = json!({ "name": format!("{owner}'s"), "deadline": in_a_week(),
                           "unanswered": "escalate", "owner": owner });
        let c = api_ok(&url, ADMIN_TOKEN, "POST", "/v1/certifications", Some(&body)).await;
        campaigns.push(c["id"].as_str().unwrap().to_owned());
    }
    let [own_campaign, other_campaign] = <[String; 2]>::try_from(campaigns).unwrap();
    World {
        url,
        admin,
        approver,
        auditor,
        owner,
        ai,
        ai_id,
        bootstrap_id,
        own_identity,
        other_identity,
        kid,
        kill_switch,
        token_to_revoke,
        tier_policies,
        to_approve,
        to_reject,
        to_perform,
        to_override,
        to_ratify,
        others,
        grant_to_approve,
        grant_to_reject,
        own_campaign,
        other_campaign,
    }
}

/// RFC 3339, a week from now.
fn in_a_week() -> String {
    (time::OffsetDateTime::now_utc() + time::Duration::days(7))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

impl World {
    fn token(&self, who: Who) -> Option<&str> {
        match who {
            Who::Admin => Some(&self.admin),
            Who::Approver => Some(&self.approver),
            Who::Auditor => Some(&self.auditor),
            Who::Owner => Some(&self.owner),
            Who::Ai => Some(&self.ai),
            Who::Bootstrap => Some(ADMIN_TOKEN),
            Who::Anonymous => None,
        }
    }

    /// The audit actor of a caller.
    fn actor(&self, who: Who) -> String {
        match who {
            Who::Admin => format!("human:{HUMAN_ADMIN}"),
            Who::Approver => format!("human:{HUMAN_APPROVER}"),
            Who::Auditor => format!("human:{HUMAN_AUDITOR}"),
            Who::Owner => format!("human:{HUMAN_OWNER}"),
            Who::Ai => format!("identity:{}", self.ai_id),
            Who::Bootstrap => format!("admin:{}", self.bootstrap_id),
            Who::Anonymous => "-".to_owned(),
        }
    }

    /// The concrete path of `method template`; `other`: naming another owner's (or
    /// another AI identity's) object.
    fn path(&self, method: &str, template: &str, other: bool) -> String {
        let mut out = String::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            let close = rest[open..].find('}').unwrap() + open;
            out.push_str(&rest[..open]);
            let name = &rest[open + 1..close];
            let value = match name {
                "id" if template.starts_with("/v1/identities/") => {
                    if other {
                        self.other_identity.clone()
                    } else {
                        self.own_identity.clone()
                    }
                }
                // Declared (again) by admins: a capability of its own.
                "id" if method == "PUT" && template == "/v1/capabilities/{id}" => {
                    "matrix-cap".to_owned()
                }
                "id" if template.starts_with("/v1/capabilities/") => {
                    if other { "oscar-cap" } else { "olive-cap" }.to_owned()
                }
                "id" if template.starts_with("/v1/proposals/") => {
                    if other {
                        self.others.clone()
                    } else if template.ends_with("/approve") {
                        self.to_approve.clone()
                    } else if template.ends_with("/reject") {
                        self.to_reject.clone()
                    } else if template.ends_with("/perform") {
                        self.to_perform.clone()
                    } else if template.ends_with("/override") {
                        self.to_override.clone()
                    } else if template.ends_with("/ratify") {
                        self.to_ratify.clone()
                    } else {
                        self.to_approve.clone()
                    }
                }
                "id" if template.starts_with("/v1/killswitches/") => self.kill_switch.clone(),
                "id" if template.starts_with("/v1/resources/") => "archive".to_owned(),
                "id" if template.starts_with("/v1/tokens/") => self.token_to_revoke.clone(),
                "id" if template.ends_with("/reject") => self.grant_to_reject.clone(),
                "id" if template.starts_with("/v1/role-grants/") => self.grant_to_approve.clone(),
                "id" if template.starts_with("/v1/certifications/") => {
                    if other {
                        self.other_campaign.clone()
                    } else {
                        self.own_campaign.clone()
                    }
                }
                "item" => "0".to_owned(),
                "kid" => self.kid.clone(),
                "version" => "1".to_owned(),
                "seq" => "0".to_owned(),
                "name" if template.starts_with("/v1/roles/") => "documented".to_owned(),
                "name" if template.ends_with("/revoke") => VICTOR.to_owned(),
                "name" => if other { OTHER_OWNER } else { HUMAN_OWNER }.to_owned(),
                "role" => "auditor".to_owned(),
                other => panic!("no value for path parameter `{other}` of {template}"),
            };
            out.push_str(&value);
            rest = &rest[close + 1..];
        }
        out.push_str(rest);
        out
    }

    /// A well-formed request body (so that authorization, not parsing, answers), for
    /// `who`; `other`: naming another owner's object.
    fn body(&self, method: &str, template: &str, who: Who, other: bool) -> Value {
        let n = fresh();
        match (method, template) {
            ("POST", "/v1/identities") => json!({
                "name": format!("matrix-{n}"), "kind": "workload", "environment": "dev",
                "owner": HUMAN_OWNER,
            }),
            ("PATCH", "/v1/identities/{id}") => json!({ "description": "matrix" }),
            ("POST", "/v1/identities/{id}/suspend")
            | ("POST", "/v1/identities/{id}/resume")
            | ("POST", "/v1/identities/{id}/retire")
            | ("POST", "/v1/killswitches/{id}/release") => json!({ "reason": "matrix" }),
            ("POST", "/v1/identities/{id}/keys") => {
                let seed = [u8::try_from(n % 200).unwrap() + 20; 32];
                json!({ "jwk": jwk(&seed) })
            }
            ("PUT", "/v1/policies") => json!({ "schema": SCHEMA, "policies": POLICIES }),
            ("POST", "/v1/policies/validate") => json!({ "policies": POLICIES }),
            ("POST", "/v1/authorize") => read_req(&self.own_identity, 1),
            ("POST", "/v1/authorize/batch") => {
                json!({ "requests": [read_req(&self.own_identity, 1)] })
            }
            ("POST", "/v1/killswitches") => json!({
                "target": { "kind": "identity", "value": if other { &self.other_identity } else { &self.own_identity } },
                "reason": "matrix",
            }),
            ("POST", "/oauth2/token") => json!({ "grant_type": "client_credentials" }),
            ("POST", "/oauth2/introspect") | ("POST", "/oauth2/revoke") => {
                json!({ "token": "not-a-token" })
            }
            ("PUT", "/v1/capabilities/{id}") => capability(&self.ai_id, HUMAN_OWNER),
            ("POST", "/v1/capabilities/{id}/accept") => {
                json!({ "statement": "I answer for what this capability proposes." })
            }
            ("POST", "/v1/capabilities/{id}/review") => json!({ "note": "reviewed" }),
            ("PUT", "/v1/roles/{name}") => json!({ "entitlements": ["docs:read"] }),
            ("PUT", "/v1/resources/{id}") => json!({ "classification": "internal" }),
            ("PUT", "/v1/tier-policies") => json!({ "policies": self.tier_policies }),
            ("POST", "/v1/tokens") => {
                let (human, role) = match who {
                    Who::Approver => (HUMAN_APPROVER, "approver"),
                    Who::Auditor => (HUMAN_AUDITOR, "auditor"),
                    Who::Owner | Who::Ai if other => (OTHER_OWNER, "owner"),
                    Who::Owner | Who::Ai => (HUMAN_OWNER, "owner"),
                    _ => (HUMAN_ADMIN, "admin"),
                };
                json!({ "name": format!("matrix {n}"), "human": human, "role": role })
            }
            ("POST", "/v1/proposals") => proposal(
                "olive-cap",
                json!({ "kind": "revoke_entitlement", "identity": self.own_identity,
                        "entitlement": format!("matrix:{n}") }),
                0.99,
            ),
            ("POST", "/v1/proposals/{id}/approve") | ("POST", "/v1/proposals/{id}/perform") => {
                json!({ "justification": "reviewed the evidence and the change", "ticket": "CHG-1" })
            }
            ("POST", "/v1/proposals/{id}/reject")
            | ("POST", "/v1/proposals/{id}/override")
            | ("POST", "/v1/proposals/{id}/ratify") => {
                json!({ "justification": "checked with the team that owns it" })
            }
            ("POST", "/v1/humans") => json!({ "name": format!("matrix-{n}@example.com") }),
            ("PATCH", "/v1/humans/{name}") => json!({ "display_name": "Matrix" }),
            ("POST", "/v1/humans/{name}/roles/{role}/revoke") => {
                json!({ "justification": "left the audit team" })
            }
            ("POST", "/v1/role-grants") => {
                json!({ "human": WALT, "role": "owner", "justification": GRANT_WHY })
            }
            ("POST", "/v1/role-grants/{id}/approve") | ("POST", "/v1/role-grants/{id}/reject") => {
                json!({ "note": "matrix" })
            }
            ("POST", "/v1/auth/token") => json!({
                "username": HUMAN_OWNER, "password": password_of(HUMAN_OWNER), "role": "owner",
                "name": format!("matrix {n}"),
            }),
            // A wrong password (the route is public; the password is its credential).
            ("POST", "/v1/auth/password") => json!({
                "username": "nobody@example.com", "current_password": "not a password",
                "new_password": "a new passphrase",
            }),
            ("POST", "/v1/certifications") => json!({
                "name": format!("matrix {n}"), "deadline": in_a_week(), "unanswered": "escalate",
            }),
            ("POST", "/v1/certifications/{id}/items/{item}") => json!({ "decision": "confirm" }),
            _ => panic!("{method} {template} takes a body but the matrix has no sample for it"),
        }
    }
}

/// One call made, and what it was answered.
struct Call {
    method: String,
    template: String,
    path: String,
    who: Who,
    other: bool,
    status: u16,
    body: String,
}

impl std::fmt::Display for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?}{} {} {} ({}): {} {}",
            self.who,
            if self.other {
                " on another's object"
            } else {
                ""
            },
            self.method,
            self.path,
            self.template,
            self.status,
            self.body.chars().take(300).collect::<String>()
        )
    }
}

/// The documented operations: (upper-case method, template, whether it takes a body,
/// whether as a form).
fn operations(doc: &Value) -> Vec<(String, String, bool, bool)> {
    let mut ops = vec![];
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if !["get", "put", "post", "delete", "patch"].contains(&method.as_str()) {
                continue;
            }
            let content = &op["requestBody"]["content"];
            let form = content.get("application/json").is_none()
                && content.get("application/x-www-form-urlencoded").is_some();
            ops.push((
                method.to_uppercase(),
                path.clone(),
                op.get("requestBody").is_some(),
                form,
            ));
        }
    }
    ops
}

async fn send(
    w: &World,
    http: &reqwest::Client,
    op: &(String, String, bool, bool),
    who: Who,
    other: bool,
) -> Call {
    let (method, template, has_body, form) = op;
    let path = w.path(method, template, other);
    let mut req = http.request(
        reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
        format!("{}{path}", w.url),
    );
    if let Some(t) = w.token(who) {
        req = req.bearer_auth(t);
    }
    if *has_body {
        let body = w.body(method, template, who, other);
        req = if *form {
            let pairs: Vec<(String, String)> = body
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect();
            req.form(&pairs)
        } else {
            req.json(&body)
        };
    }
    let res = req.send().await.unwrap();
    Call {
        method: method.clone(),
        template: template.clone(),
        path,
        who,
        other,
        status: res.status().as_u16(),
        body: res.text().await.unwrap(),
    }
}

/// Public routes whose credential is in the request body (a client assertion, a password):
/// the samples carry none that is valid, so they are refused 400/401 — never 403.
const CREDENTIAL_IN_BODY: &[&str] = &["/oauth2/token", "/v1/auth/password"];

/// How a public route must answer any caller, whatever bearer token it sends (ignored).
fn public_ok(c: &Call) -> bool {
    if CREDENTIAL_IN_BODY.contains(&c.template.as_str()) {
        c.status != 403 && c.status < 500
    } else {
        (200..300).contains(&c.status)
    }
}

/// Every `request.refused` record: (actor, method, path).
async fn refusals(w: &World) -> Vec<(String, String, String)> {
    let mut out = vec![];
    let mut cursor: Option<u64> = None;
    loop {
        let mut path = "/v1/audit?kind=request.refused&limit=1000".to_owned();
        if let Some(c) = cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = api_ok(&w.url, ADMIN_TOKEN, "GET", &path, None).await;
        for r in page["items"].as_array().unwrap() {
            out.push((
                r["actor"].as_str().unwrap_or_default().to_owned(),
                r["payload"]["method"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                r["payload"]["path"].as_str().unwrap_or_default().to_owned(),
            ));
        }
        match page["next_cursor"].as_u64() {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_admits_exactly_the_roles_it_should() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let w = world(&server).await;
    let http = reqwest::Client::new();
    let doc = api_ok(&w.url, ADMIN_TOKEN, "GET", "/openapi.json", None).await;
    let ops = operations(&doc);

    // The table and the served document list the same routes.
    let mut failures: Vec<String> = vec![];
    for (method, template, _, _) in &ops {
        if !MATRIX
            .iter()
            .any(|(m, t, _, _)| m == method && t == template)
        {
            failures.push(format!(
                "{method} {template} is served but the role matrix does not say who may call it; add it to MATRIX"
            ));
        }
    }
    for (m, t, _, _) in MATRIX {
        if !ops
            .iter()
            .any(|(method, template, _, _)| m == method && t == template)
        {
            failures.push(format!("{m} {t} is in MATRIX but not documented"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let rule = |method: &str, template: &str| {
        MATRIX
            .iter()
            .find(|(m, t, _, _)| *m == method && *t == template)
            .map(|(_, _, allowed, scope)| (*allowed, *scope))
            .unwrap()
    };

    let callers = [
        Who::Ai,
        Who::Owner,
        Who::Auditor,
        Who::Approver,
        Who::Bootstrap,
        Who::Admin,
    ];
    let mut calls: Vec<Call> = vec![];
    // 1. Refusals (they change nothing): no credential, every caller the table refuses,
    //    and owners and AI identities on others' objects.
    for op in &ops {
        let (allowed, scope) = rule(&op.0, &op.1);
        if allowed == PUBLIC {
            continue;
        }
        let c = send(&w, &http, op, Who::Anonymous, false).await;
        if c.status != 401 {
            failures.push(format!("without a credential, expected 401: {c}"));
        }
        calls.push(c);
        for who in callers {
            if allowed & who.bit() == 0 {
                let c = send(&w, &http, op, who, false).await;
                if c.status != 403 {
                    failures.push(format!("expected 403: {c}"));
                }
                calls.push(c);
            }
        }
        for (who, flag) in [(Who::Owner, OWN), (Who::Ai, AI_OWN)] {
            if scope & flag != 0 && allowed & who.bit() != 0 {
                let c = send(&w, &http, op, who, true).await;
                if c.status != 403 && c.status != 404 {
                    failures.push(format!("another's object: expected 403 or 404: {c}"));
                }
                calls.push(c);
            }
        }
    }
    // 2. The allowed calls, least privileged callers first (so that what an admin
    //    changes — a rotated key, a retired identity — cannot be what refuses another).
    for who in callers {
        for op in &ops {
            let (allowed, _) = rule(&op.0, &op.1);
            if allowed == PUBLIC || allowed & who.bit() != 0 {
                let c = send(&w, &http, op, who, false).await;
                let ok = if allowed == PUBLIC {
                    public_ok(&c)
                } else {
                    c.status != 401 && c.status != 403 && c.status < 500
                };
                if !ok {
                    failures.push(format!("expected to pass authorization: {c}"));
                }
                calls.push(c);
            }
        }
    }
    // Public routes answer without a credential too.
    for op in &ops {
        if rule(&op.0, &op.1).0 == PUBLIC {
            let c = send(&w, &http, op, Who::Anonymous, false).await;
            if !public_ok(&c) {
                failures.push(format!("public route: {c}"));
            }
            calls.push(c);
        }
    }

    // Every 403 left a `request.refused` record naming the caller.
    let refused = refusals(&w).await;
    for c in calls.iter().filter(|c| c.status == 403) {
        let actor = w.actor(c.who);
        if !refused
            .iter()
            .any(|(a, m, p)| *a == actor && *m == c.method && *p == c.path)
        {
            failures.push(format!("no request.refused record of {actor}: {c}"));
        }
    }
    // An owner's and an AI identity's lists hold their own objects only.
    let own = |path: &str, token: &str| {
        let (url, token, path) = (w.url.clone(), token.to_owned(), path.to_owned());
        async move { api_ok(&url, &token, "GET", &path, None).await }
    };
    let ids = own("/v1/identities", &w.owner).await;
    for i in ids["items"].as_array().unwrap() {
        if i["owner"] != HUMAN_OWNER {
            failures.push(format!("the owner lists another's identity: {i}"));
        }
    }
    let caps = own("/v1/capabilities", &w.owner).await;
    for c in caps["items"].as_array().unwrap() {
        if c["capability"]["owner"] != HUMAN_OWNER {
            failures.push(format!("the owner lists another's capability: {c}"));
        }
    }
    for token in [&w.owner, &w.ai] {
        let list = own("/v1/proposals", token).await;
        let items = list["items"].as_array().unwrap();
        if items.is_empty() || items.iter().any(|p| p["id"] == w.others.as_str()) {
            failures.push(format!("proposals listed: {list}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} calls went wrong:\n{}",
        failures.len(),
        calls.len(),
        failures.join("\n")
    );

    // Every status answered is documented for its operation.
    let mut undocumented = std::collections::BTreeSet::new();
    for c in &calls {
        let responses = &doc["paths"][&c.template][c.method.to_lowercase()]["responses"];
        if responses.get(c.status.to_string()).is_none() && responses.get("default").is_none() {
            undocumented.insert(format!("{} {}: {}", c.method, c.template, c.status));
        }
    }
    assert!(
        undocumented.is_empty(),
        "statuses answered but not documented:\n{}",
        undocumented.into_iter().collect::<Vec<_>>().join("\n")
    );
}
