//! Console pages. Each reads and acts through the API's own handlers, with the signed-in
//! human as the principal, so authorization is the API's, not a copy of it.

use super::{api_error, check_csrf, layout, page, signed_in, urlencode, Ui};
use crate::api::{audit, governance, identities, killswitch, proposals};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::AppState;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};
use serde::Deserialize;
use warrant_core::governance::Proposal;

macro_rules! ui_or_return {
    ($state:expr, $headers:expr, $here:expr) => {
        match signed_in(&$state, &$headers, $here) {
            Ok(ui) => ui,
            Err(r) => return *r,
        }
    };
}

fn left(ms: i64) -> String {
    let s = ms / 1000;
    let (d, h, m) = (s / 86_400, (s % 86_400) / 3600, (s % 3600) / 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {}s", s % 60)
    } else {
        format!("{s}s")
    }
}

/// An identity's name (what humans recognize), or the id when it is unknown.
fn name_of(state: &AppState, id: &str) -> String {
    state
        .snapshot
        .load()
        .principals
        .get(id)
        .map(|e| e.identity.name.clone())
        .unwrap_or_else(|| id.to_owned())
}

fn identity_link(state: &AppState, id: &str) -> Markup {
    html! { a href=(format!("/ui/identities/{id}")) title=(id) { (name_of(state, id)) } }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn or_none(v: &[String]) -> String {
    if v.is_empty() {
        "none".to_owned()
    } else {
        v.join(", ")
    }
}

fn change_summary(state: &AppState, p: &Proposal) -> String {
    let v = serde_json::to_value(&p.change).unwrap_or_default();
    let mut parts = vec![p.kind().as_str().replace('_', " ")];
    if let Some(o) = v.as_object() {
        for (k, val) in o {
            if k == "kind" {
                continue;
            }
            let shown = match val {
                serde_json::Value::String(s) if k == "identity" => name_of(state, s),
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            parts.push(format!("{k}: {shown}"));
        }
    }
    parts.join(" · ")
}

fn tier_badge(t: u8) -> Markup {
    html! { span class=(format!("tier tier{t}")) { "Tier " (t) } }
}

fn state_badge(s: &str) -> Markup {
    html! { span class=(format!("state s-{s}")) { (s.replace('_', " ")) } }
}

async fn list_proposals(
    state: &AppState,
    ui: &Ui,
    st: &str,
) -> Result<Vec<proposals::ProposalView>, crate::error::ApiError> {
    let q = proposals::ListQuery {
        state: Some(st.to_owned()),
        capability: None,
        cursor: None,
        limit: Some(200),
    };
    Ok(
        proposals::list(State(state.clone()), ui.acting(), ApiQuery(q))
            .await?
            .0
            .items,
    )
}

/// Approval inbox: pending Tier 3 requests and Tier 4 recommendations.
pub async fn inbox(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let ui = ui_or_return!(state, headers, "/ui/");
    if ui.authed.principal.roles.is_empty() {
        let body = html! {
            h1 { "Welcome, " (ui.display_name) }
            p.alert role="status" { "You are signed in as " strong { (ui.name()) } ", but you hold no control-plane role yet, so there is nothing here you may see or do." }
            p { "An admin can request a role for you (admin, approver, auditor or owner); a second admin approves it, and it takes effect on your next page." }
        };
        return page(StatusCode::OK, layout("Welcome", Some(&ui), "", body));
    }
    let pending = match list_proposals(&state, &ui, "pending_approval").await {
        Ok(p) => p,
        Err(e) => return api_error(e, &ui),
    };
    let recommended = list_proposals(&state, &ui, "recommended")
        .await
        .unwrap_or_default();
    let body = html! {
        h1 { "Approval inbox" }
        p.lede { "Tier 3 requests wait for a named approver with a justification and a change ticket; nothing has changed yet." }
        (proposal_table(&state, "pending", "Pending approval", &pending))
        @if !recommended.is_empty() {
            (proposal_table(&state, "recommended", "Tier 4 recommendations (a human performs them)", &recommended))
        }
    };
    page(
        StatusCode::OK,
        layout("Approval inbox", Some(&ui), "inbox", body),
    )
}

fn proposal_table(
    state: &AppState,
    id: &str,
    caption: &str,
    items: &[proposals::ProposalView],
) -> Markup {
    html! {
        section aria-labelledby=(format!("{id}-h")) {
            h2 #(format!("{id}-h")) { (caption) " " span.count { "(" (items.len()) ")" } }
            @if items.is_empty() {
                p.empty { "Nothing waiting." }
            } @else {
                table.list data-list {
                    thead { tr {
                        th scope="col" { "Change" } th scope="col" { "Capability · owner" }
                        th scope="col" { "Tier" } th scope="col" { "Blast radius" }
                        th scope="col" { "Confidence" } th scope="col" { "Time left" }
                    } }
                    tbody {
                        @for v in items {
                            tr {
                                td { a href=(format!("/ui/proposals/{}", v.proposal.id)) { (change_summary(state, &v.proposal)) } }
                                td { (v.proposal.capability) " · " (v.owner.clone().unwrap_or_default()) }
                                td { (tier_badge(v.proposal.tier.tier)) }
                                td { (plural(v.proposal.assessment.identities_count, "identity", "identities"))
                                     @if v.proposal.assessment.privileged { " " span.flag { "privileged" } } }
                                td { (v.proposal.confidence_pct) "%" }
                                td { (v.time_left_ms.map(left).unwrap_or_default()) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// One proposal with everything needed to decide.
pub async fn proposal(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let here = format!("/ui/proposals/{}", urlencode(&id));
    let ui = ui_or_return!(state, headers, &here);
    let v = match proposals::show(State(state.clone()), ui.acting(), ApiPath(id.clone())).await {
        Ok(v) => v.0,
        Err(e) => return api_error(e, &ui),
    };
    let chain = proposals::chain(State(state.clone()), ui.acting(), ApiPath(id.clone()))
        .await
        .ok()
        .map(|c| c.0);
    let p = &v.proposal;
    let a = &p.assessment;
    let st = p.state.as_str();
    use warrant_core::access::{check, Perm};
    let may_decide = check(&ui.authed.principal, Perm::Decide).is_ok();
    let may_review = check(&ui.authed.principal, Perm::Review).is_ok();
    let min_len = state.gov.rules.min_justification;
    let body = html! {
        p.crumbs { a href="/ui/" { "Approvals" } " / " (p.id) }
        h1 { (change_summary(&state, p)) }
        p.meta { (tier_badge(p.tier.tier)) " " (state_badge(st))
            @if let Some(t) = v.time_left_ms { " " span.timer data-deadline-ms=(t) { (left(t)) } " left" } }
        div.grid {
            section.card aria-labelledby="who-h" {
                h2 #who-h { "Who proposes" }
                dl {
                    dt { "AI capability" } dd { (p.capability) }
                    dt { "Accountable owner" } dd { (v.owner.clone().unwrap_or_else(|| "—".into())) }
                    dt { @if p.capability.starts_with("certification:") { "Revoked by (owner)" } @else { "Proposing identity" } }
                    dd { @if p.capability.starts_with("certification:") { (p.proposer) } @else { (identity_link(&state, &p.proposer)) } }
                    dt { "Model confidence" } dd { (p.confidence_pct) "%" }
                    dt { "Executes in" } dd { (p.system) }
                    dt { "Submitted" } dd { (v.submitted_at) }
                }
                h3 { "Rationale" }
                p.rationale { (p.rationale) }
            }
            section.card aria-labelledby="risk-h" {
                h2 #risk-h { "Risk, as warrant assessed it" }
                dl {
                    dt { "Blast radius" } dd { (plural(a.identities_count, "identity", "identities")) ", " (plural(a.resources_count, "resource", "resources")) }
                    dt { "Privileged" } dd { @if a.privileged { "yes — " (a.privileged_because.join("; ")) } @else { "no" } }
                    dt { "Reversible" } dd { @if a.reversible { "yes" } @else { "no" } }
                    dt { "Data classification" } dd { (a.classification.as_str()) }
                    dt { "Environments" } dd { (or_none(&a.environments)) }
                    dt { "Beneficiaries (may not approve)" } dd { (or_none(&a.beneficiaries)) }
                }
                h3 { "Affected identities" }
                ul.ids { @for i in &a.identities { li { (identity_link(&state, i)) } } }
                @if !a.resources.is_empty() {
                    h3 { "Resources" }
                    ul.ids { @for r in &a.resources { li { code { (r) } } } }
                }
            }
            section.card aria-labelledby="tier-h" {
                h2 #tier-h { "Why Tier " (p.tier.tier) }
                ul {
                    @for m in &p.tier.policies { li { "policy " code { (m.policy) } " → Tier " (m.tier) @if let Some(r) = &m.reason { ": " (r) } } }
                    @if p.tier.defaulted { li { "no tier policy matched: default Tier 3" } }
                    @for f in &p.tier.floor { li { "floor: " (f) } }
                    @for e in &p.tier.escalations { li { "escalated: " (e) } }
                }
                p { "Approvals: " (p.approvals.len()) " of " (p.approvals_required) }
                @for ap in &p.approvals { p.approval { "Approved by " strong { (ap.by) } " — " (ap.justification) " (" code { (ap.ticket) } ")" } }
            }
            @if let Some(c) = &chain {
                section.card aria-labelledby="chain-h" {
                    h2 #chain-h { "Chain " code { (c.correlation) } }
                    p { (c.steps.len()) " steps, " (c.total_blast_identities) " identities in all" }
                    ol.chain {
                        @for s in &c.steps {
                            li aria-current=[(s.id == p.id).then_some("step")] {
                                a href=(format!("/ui/proposals/{}", s.id)) { (s.kind.replace('_', " ")) } " "
                                (tier_badge(s.tier)) " " (state_badge(&s.state))
                                @if !s.decided_by.is_empty() { " by " (s.decided_by.join(", ")) }
                            }
                        }
                    }
                }
            }
        }
        details.evidence {
            summary { "Evidence submitted by the AI (unverified)" }
            pre { (serde_json::to_string_pretty(&p.evidence).unwrap_or_default()) }
        }
        @if (st == "pending_approval" || st == "recommended") && !may_decide {
            p.note role="note" { "Approving, rejecting or performing needs the approver role; you can read this request." }
        }
        @if (st == "pending_approval" || st == "recommended") && may_decide {
            section.decide aria-labelledby="decide-h" {
                h2 #decide-h { @if st == "recommended" { "Perform or reject" } @else { "Decide" } }
                form.stack method="post" action=(format!("/ui/proposals/{}/{}", p.id, if st == "recommended" { "perform" } else { "approve" })) {
                    input type="hidden" name="_csrf" value=(ui.session.csrf);
                    label for="justification" { "Business justification" }
                    textarea #justification name="justification" required minlength=(min_len) rows="3" {}
                    label for="ticket" { "Change ticket" }
                    input #ticket name="ticket" required placeholder="CHG-1234" title=(format!("a ticket reference matching {}", state.gov.ticket_pattern.as_str()));
                    button.primary type="submit" { @if st == "recommended" { "Perform" } @else { "Approve" } }
                }
                form.stack method="post" action=(format!("/ui/proposals/{}/reject", p.id)) {
                    input type="hidden" name="_csrf" value=(ui.session.csrf);
                    label for="reject-justification" { "Reason to reject" }
                    textarea #reject-justification name="justification" required minlength=(min_len) rows="2" {}
                    button.danger type="submit" { "Reject" }
                }
            }
        }
        @if st == "in_review" && may_review {
            (review_forms(&ui, p, v.time_left_ms, min_len))
        }
    };
    page(
        StatusCode::OK,
        layout(&format!("Proposal {}", p.id), Some(&ui), "inbox", body),
    )
}

fn review_forms(ui: &Ui, p: &Proposal, time_left: Option<i64>, min_len: usize) -> Markup {
    html! {
        section.decide aria-labelledby=(format!("review-{}", p.id)) {
            h2 #(format!("review-{}", p.id)) { "Review" @if let Some(t) = time_left { " — " span.timer data-deadline-ms=(t) { (left(t)) } " left to override" } }
            form.stack method="post" action=(format!("/ui/proposals/{}/override", p.id)) {
                input type="hidden" name="_csrf" value=(ui.session.csrf);
                label for=(format!("ovr-{}", p.id)) { "Why override (undo) this change" }
                textarea id=(format!("ovr-{}", p.id)) name="justification" required minlength=(min_len) rows="2" {}
                button.danger type="submit" { "Override" }
            }
            form.stack method="post" action=(format!("/ui/proposals/{}/ratify", p.id)) {
                input type="hidden" name="_csrf" value=(ui.session.csrf);
                label for=(format!("rat-{}", p.id)) { "Note (ratify now)" }
                input id=(format!("rat-{}", p.id)) name="justification" required minlength=(min_len);
                button type="submit" { "Ratify" }
            }
        }
    }
}

#[derive(Deserialize)]
pub struct DecideForm {
    #[serde(rename = "_csrf")]
    csrf: String,
    justification: String,
    ticket: Option<String>,
}

/// Approve / reject / perform / override / ratify from the console.
pub async fn decide(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    Form(f): Form<DecideForm>,
) -> Response {
    let here = format!("/ui/proposals/{}", urlencode(&id));
    let ui = ui_or_return!(state, headers, &here);
    if let Err(r) = check_csrf(&ui, &headers, &f.csrf) {
        return *r;
    }
    let s = State(state.clone());
    let path = ApiPath(id.clone());
    let acting = ui.acting();
    let decide = proposals::DecideRequest {
        justification: f.justification.clone(),
        ticket: f.ticket.unwrap_or_default(),
    };
    let justify = ApiJson(proposals::JustifyRequest {
        justification: f.justification,
    });
    let r = match action.as_str() {
        "approve" => proposals::approve(s, acting, path, ApiJson(decide)).await,
        "perform" => proposals::perform(s, acting, path, ApiJson(decide)).await,
        "reject" => proposals::reject(s, acting, path, justify).await,
        "override" => proposals::override_change(s, acting, path, justify).await,
        "ratify" => proposals::ratify(s, acting, path, justify).await,
        _ => {
            return super::error_page(
                StatusCode::NOT_FOUND,
                "Not found",
                "no such action",
                Some(&ui),
            )
        }
    };
    match r {
        Ok(_) => Redirect::to(&here).into_response(),
        Err(e) => api_error(e, &ui),
    }
}

/// Tier 2 changes inside their override window.
pub async fn reviews(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let ui = ui_or_return!(state, headers, "/ui/reviews");
    let items = match list_proposals(&state, &ui, "in_review").await {
        Ok(p) => p,
        Err(e) => return api_error(e, &ui),
    };
    let may_review =
        warrant_core::access::check(&ui.authed.principal, warrant_core::access::Perm::Review)
            .is_ok();
    let body = html! {
        h1 { "Tier 2 reviews" }
        p.lede { "These changes were applied at once; the named reviewer may override (undo) them until the window ends, after which they are ratified." }
        @if items.is_empty() { p.empty { "No change is in its override window." } }
        @for v in &items {
            article.card.review {
                h2 { a href=(format!("/ui/proposals/{}", v.proposal.id)) { (change_summary(&state, &v.proposal)) } }
                p.meta { (tier_badge(2)) " " (v.proposal.capability) " · owner " (v.owner.clone().unwrap_or_default())
                    " · reviewer " (v.proposal.notified.join(", ")) " · " (plural(v.proposal.assessment.identities_count, "identity", "identities")) }
                @if may_review { (review_forms(&ui, &v.proposal, v.time_left_ms, state.gov.rules.min_justification)) }
            }
        }
    };
    page(
        StatusCode::OK,
        layout("Tier 2 reviews", Some(&ui), "reviews", body),
    )
}

#[derive(Deserialize)]
pub struct IdentityQuery {
    state: Option<String>,
    q: Option<String>,
    cursor: Option<String>,
}

pub async fn identities(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<IdentityQuery>,
) -> Response {
    let ui = ui_or_return!(state, headers, "/ui/identities");
    let lq = identities::ListQuery {
        kind: None,
        environment: None,
        state: q.state.clone().filter(|s| !s.is_empty()),
        owner: None,
        limit: Some(500),
        cursor: q.cursor.clone().filter(|c| !c.is_empty()),
    };
    let page_ = match identities::list(State(state.clone()), ui.acting(), ApiQuery(lq)).await {
        Ok(p) => p.0,
        Err(e) => return api_error(e, &ui),
    };
    let needle = q.q.clone().unwrap_or_default().to_lowercase();
    let body = html! {
        h1 { "Identities" }
        form.filters role="search" method="get" action="/ui/identities" {
            label { "Search" input #q name="q" type="search" value=(q.q.clone().unwrap_or_default()) data-search; }
            label { "State"
                select #state name="state" {
                    @for s in ["", "active", "suspended", "retired"] {
                        option value=(s) selected[q.state.as_deref() == Some(s)] { @if s.is_empty() { "any" } @else { (s) } }
                    }
                }
            }
            button type="submit" { "Filter" }
        }
        table.list data-list {
            thead { tr { th scope="col" { "Name" } th scope="col" { "Kind" } th scope="col" { "Env" }
                         th scope="col" { "Owner" } th scope="col" { "State" } th scope="col" { "Effective entitlements" } } }
            tbody {
                @for i in page_.items.iter().filter(|i| needle.is_empty() || i.name.to_lowercase().contains(&needle) || i.owner.to_lowercase().contains(&needle) || i.id.contains(&needle)) {
                    tr {
                        td { a href=(format!("/ui/identities/{}", i.id)) { (i.name) } }
                        td { (i.kind) } td { (i.environment) } td { (i.owner) }
                        td { (state_badge(&i.state)) }
                        td { (i.effective_entitlements.len()) }
                    }
                }
            }
        }
        @if !needle.is_empty() { p.note { "Search applies to this page of up to 500 identities." } }
        @if let Some(c) = &page_.next_cursor {
            p { a href=(format!("/ui/identities?state={}&q={}&cursor={}", urlencode(&q.state.clone().unwrap_or_default()), urlencode(&q.q.clone().unwrap_or_default()), urlencode(c))) { "Next 500 →" } }
        }
    };
    page(
        StatusCode::OK,
        layout("Identities", Some(&ui), "identities", body),
    )
}

pub async fn identity(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let here = format!("/ui/identities/{}", urlencode(&id));
    let ui = ui_or_return!(state, headers, &here);
    let i = match identities::show(State(state.clone()), ui.acting(), ApiPath(id.clone())).await {
        Ok(i) => i.0,
        Err(e) => return api_error(e, &ui),
    };
    let killed = {
        let snap = state.snapshot.load();
        match snap.principals.get(&i.id) {
            Some(e) => snap
                .kill_switches
                .iter()
                .filter(|k| k.released_ms.is_none() && k.target.covers(&e.identity))
                .map(|k| k.reason.clone())
                .collect::<Vec<_>>(),
            None => vec![],
        }
    };
    let body = html! {
        p.crumbs { a href="/ui/identities" { "Identities" } " / " (i.name) }
        h1 { (i.name) " " (state_badge(&i.state)) @if !killed.is_empty() { " " span.state.s-killed { "kill switch engaged" } } }
        @if !killed.is_empty() { p.alert role="status" { "Kill switch engaged: " (killed.join("; ")) } }
        div.grid {
            section.card aria-labelledby="id-h" {
                h2 #id-h { "Identity" }
                dl {
                    dt { "Id" } dd { code { (i.id) } }
                    dt { "SPIFFE ID" } dd { code { (i.spiffe_id) } }
                    dt { "Kind" } dd { (i.kind) }
                    dt { "Environment" } dd { (i.environment) }
                    dt { "Owner" } dd { (i.owner) }
                    dt { "Authentication" } dd { (i.auth_requirement) }
                    dt { "Last used" } dd { (i.last_used_at.clone().unwrap_or_else(|| "never".into())) }
                }
            }
            section.card aria-labelledby="ent-h" {
                h2 #ent-h { "Entitlements" }
                p { "Roles: " (or_none(&i.roles)) }
                ul.ids { @for e in &i.effective_entitlements { li { code { (e) } @if i.entitlements.contains(e) { " (direct)" } } } }
            }
        }
        @if killed.is_empty() && i.state != "retired" { section.danger-zone aria-labelledby="kill-h" {
            h2 #kill-h { "Kill switch" }
            p { "Denies every decision and token for this identity from the next request on, until an admin releases it." }
            form.stack method="post" action=(format!("/ui/identities/{}/kill", i.id)) {
                input type="hidden" name="_csrf" value=(ui.session.csrf);
                label for="kill-reason" { "Reason" }
                input #kill-reason name="reason" required;
                button.danger type="submit" { "Engage kill switch" }
            }
        } }
    };
    page(
        StatusCode::OK,
        layout(&i.name, Some(&ui), "identities", body),
    )
}

#[derive(Deserialize)]
pub struct KillForm {
    #[serde(rename = "_csrf")]
    csrf: String,
    reason: String,
}

pub async fn kill(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<KillForm>,
) -> Response {
    let here = format!("/ui/identities/{}", urlencode(&id));
    let ui = ui_or_return!(state, headers, &here);
    if let Err(r) = check_csrf(&ui, &headers, &f.csrf) {
        return *r;
    }
    let body: killswitch::EngageRequest = match serde_json::from_value(serde_json::json!({
        "target": { "kind": "identity", "value": id },
        "reason": f.reason,
    })) {
        Ok(b) => b,
        Err(e) => {
            return super::error_page(
                StatusCode::BAD_REQUEST,
                "Check the form",
                &e.to_string(),
                Some(&ui),
            )
        }
    };
    match killswitch::engage(State(state.clone()), ui.acting(), ApiJson(body)).await {
        Ok(_) => Redirect::to(&here).into_response(),
        Err(e) => api_error(e, &ui),
    }
}

pub async fn capabilities(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let ui = ui_or_return!(state, headers, "/ui/capabilities");
    let list = match governance::list_capabilities(State(state.clone()), ui.acting()).await {
        Ok(l) => l.0,
        Err(e) => return api_error(e, &ui),
    };
    let body = html! {
        h1 { "AI capability inventory" }
        table.list data-list {
            thead { tr { th scope="col" { "Capability" } th scope="col" { "Identity" } th scope="col" { "Owner" }
                         th scope="col" { "Accepted" } th scope="col" { "Review due" } th scope="col" { "Autonomy" }
                         th scope="col" { "Change kinds" } } }
            tbody {
                @for c in &list.items {
                    tr {
                        td { (c.capability.id) }
                        td { a href=(format!("/ui/identities/{}", c.capability.identity)) { (c.capability.identity) } }
                        td { (c.capability.owner) }
                        td { @match &c.capability.accepted { Some(a) => { "by " (a.by) }, None => { span.flag { "not accepted" } } } }
                        td { (c.next_review_due.clone().unwrap_or_else(|| "—".into())) }
                        td { (c.autonomy.replace('_', " ")) }
                        td { (c.capability.kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")) }
                    }
                }
            }
        }
    };
    page(
        StatusCode::OK,
        layout("Capabilities", Some(&ui), "capabilities", body),
    )
}

#[derive(Deserialize, Default)]
pub struct AuditForm {
    kind: Option<String>,
    actor: Option<String>,
    subject: Option<String>,
    from: Option<String>,
    to: Option<String>,
    cursor: Option<u64>,
}

fn nonempty(s: &Option<String>) -> Option<String> {
    s.as_ref()
        .map(|x| x.trim().to_owned())
        .filter(|x| !x.is_empty())
}

/// `2026-01-31T12:00` (datetime-local) or RFC 3339 → RFC 3339.
fn rfc3339(s: Option<String>) -> Option<String> {
    s.map(|x| if x.len() == 16 { format!("{x}:00Z") } else { x })
}

/// Audit explorer: filters, newest first, each record's verification status.
pub async fn audit(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(f): Query<AuditForm>,
) -> Response {
    let ui = ui_or_return!(state, headers, "/ui/audit");
    let authed = ui.authed.clone();
    if let Err(e) = authed
        .require(
            &state,
            warrant_core::access::Perm::ReadAudit,
            "GET",
            "/ui/audit",
        )
        .await
    {
        return api_error(e, &ui);
    }
    let q = audit::AuditQuery {
        kind: nonempty(&f.kind),
        actor: nonempty(&f.actor),
        subject: nonempty(&f.subject),
        from: rfc3339(nonempty(&f.from)),
        to: rfc3339(nonempty(&f.to)),
        cursor: f.cursor,
        order: Some("desc".into()),
        limit: Some(100),
    };
    let records = match audit::list(
        State(state.clone()),
        crate::auth::AuditReader(authed),
        ApiQuery(q),
    )
    .await
    {
        Ok(r) => r.0,
        Err(e) => return api_error(e, &ui),
    };
    let verification = audit::verify_page(&state, &records.items).await;
    let kinds = warrant_core::audit::RecordKind::ALL;
    let body = html! {
        h1 { "Audit explorer" }
        p.lede { (verification.summary) }
        form.filters role="search" method="get" action="/ui/audit" {
            label { "Kind"
                select #kind name="kind" {
                    option value="" { "any" }
                    @for k in kinds { option value=(k.as_str()) selected[f.kind.as_deref() == Some(k.as_str())] { (k.as_str()) } }
                }
            }
            label { "Actor" input #actor name="actor" value=(f.actor.clone().unwrap_or_default()) placeholder="human:alice"; }
            label { "Subject" input #subject name="subject" value=(f.subject.clone().unwrap_or_default()) placeholder="identity:idn_…" data-search; }
            label { "From (UTC)" input #from name="from" type="datetime-local" value=(f.from.clone().unwrap_or_default()); }
            label { "To (UTC)" input #to name="to" type="datetime-local" value=(f.to.clone().unwrap_or_default()); }
            button type="submit" { "Filter" }
        }
        div.scroll { table.list.audit data-list {
            thead { tr { th scope="col" { "#" } th scope="col" { "Time (UTC)" } th scope="col" { "Kind" }
                         th scope="col" { "Actor" } th scope="col" { "Subject" } th scope="col" { "Verification" } th scope="col" { "Payload" } } }
            tbody {
                @for (r, status) in records.items.iter().zip(verification.statuses.iter()) {
                    tr {
                        td { (r.seq) } td { (r.time) } td { code { (r.kind) } }
                        td { (r.actor) } td { (r.subject) }
                        td { span class=(format!("verify v-{}", status.0)) { (status.1) } }
                        td { details { summary { "show" } pre { (serde_json::to_string_pretty(&r.payload).unwrap_or_default()) } } }
                    }
                }
            }
        } }
        @if let Some(c) = records.next_cursor {
            p { a href=(format!("/ui/audit?kind={}&actor={}&subject={}&cursor={}", urlencode(&f.kind.clone().unwrap_or_default()), urlencode(&f.actor.clone().unwrap_or_default()), urlencode(&f.subject.clone().unwrap_or_default()), c)) { "Older records →" } }
        }
    };
    page(
        StatusCode::OK,
        layout("Audit explorer", Some(&ui), "audit", body),
    )
}

/// Access certification: campaigns, and for owners their items to confirm or revoke.
pub async fn certifications(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let ui = ui_or_return!(state, headers, "/ui/certifications");
    let list = match crate::api::certifications::list(State(state.clone()), ui.acting()).await {
        Ok(l) => l.0,
        Err(e) => return api_error(e, &ui),
    };
    let me = ui.name().to_owned();
    let body = html! {
        h1 { "Access certification" }
        p.lede { "Owners confirm or revoke each entitlement of their identities by the deadline. A revocation runs through the tiered workflow; what nobody answers is escalated or suspended, as the campaign says." }
        @if list.items.is_empty() { p.empty { "No campaign." } }
        @for c in &list.items {
            section.card aria-labelledby=(format!("c-{}", c.id)) {
                h2 #(format!("c-{}", c.id)) { (c.name) " " (state_badge(&c.state)) }
                p.meta { "Deadline " (c.deadline) " · unanswered items: " strong { (c.unanswered) } " · " (c.pending_items) " of " (c.total_items) " unanswered" }
                table.list data-list {
                    thead { tr { th scope="col" { "Identity" } th scope="col" { "Owner" } th scope="col" { "Entitlement" } th scope="col" { "Answer" } } }
                    tbody {
                        @for it in &c.items {
                            tr {
                                td { a href=(format!("/ui/identities/{}", it.identity)) { (it.identity_name) } " (" (it.environment) ")" }
                                td { (it.owner) }
                                td { code { (it.entitlement) } }
                                td {
                                    @if let Some(a) = &it.answer {
                                        (a.decision.as_str()) " by " (a.by)
                                        @if let Some(p) = &a.proposal { " · " a href=(format!("/ui/proposals/{p}")) { "proposal" } }
                                    } @else if let Some(o) = &it.outcome {
                                        span.flag { (o) }
                                    } @else if c.state == "open" && it.owner.eq_ignore_ascii_case(&me) {
                                        form.inline method="post" action=(format!("/ui/certifications/{}/items/{}", c.id, it.id)) {
                                            input type="hidden" name="_csrf" value=(ui.session.csrf);
                                            label for=(format!("n-{}-{}", c.id, it.id)) { "Note" }
                                            input id=(format!("n-{}-{}", c.id, it.id)) name="note";
                                            button type="submit" name="decision" value="confirm" { "Confirm" }
                                            button.danger type="submit" name="decision" value="revoke" { "Revoke" }
                                        }
                                    } @else { "pending" }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    page(
        StatusCode::OK,
        layout("Access certification", Some(&ui), "certifications", body),
    )
}

#[derive(Deserialize)]
pub struct CertifyForm {
    #[serde(rename = "_csrf")]
    csrf: String,
    decision: String,
    #[serde(default)]
    note: String,
}

pub async fn certify(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, item)): Path<(String, u32)>,
    Form(f): Form<CertifyForm>,
) -> Response {
    let ui = ui_or_return!(state, headers, "/ui/certifications");
    if let Err(r) = check_csrf(&ui, &headers, &f.csrf) {
        return *r;
    }
    let body = crate::api::certifications::AnswerRequest {
        decision: f.decision,
        note: f.note,
    };
    match crate::api::certifications::answer(
        State(state.clone()),
        ui.acting(),
        ApiPath((id, item)),
        ApiJson(body),
    )
    .await
    {
        Ok(_) => Redirect::to("/ui/certifications").into_response(),
        Err(e) => api_error(e, &ui),
    }
}

/// The signed-in human's own API tokens for the CLI (single sign-on users have no password
/// to exchange): issue one for a role they hold; the secret is shown once.
pub async fn tokens(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let ui = ui_or_return!(state, headers, "/ui/tokens");
    page(
        StatusCode::OK,
        layout("API tokens", Some(&ui), "", tokens_markup(&ui, None)),
    )
}

fn tokens_markup(ui: &Ui, created: Option<&crate::api::governance::ApiTokenCreated>) -> Markup {
    html! {
        h1 { "Your API tokens" }
        p.lede { "A token acts as you, with one of your roles, only while you hold it. It is shown once; warrant keeps only its hash." }
        @if let Some(t) = created {
            section.card role="status" aria-labelledby="tok-h" {
                h2 #tok-h { "Token " code { (t.id) } " (" (t.role) ")" }
                p { "Copy it now; it is not shown again:" }
                pre.secret { (t.token) }
            }
        }
        @if ui.authed.principal.roles.is_empty() {
            p.note role="note" { "You hold no role, so there is no token to issue." }
        } @else {
            form.stack method="post" action="/ui/tokens" {
                input type="hidden" name="_csrf" value=(ui.session.csrf);
                label for="tok-name" { "Label" }
                input #tok-name name="name" required maxlength="200" placeholder="laptop CLI";
                label for="tok-role" { "Role" }
                select #tok-role name="role" {
                    @for r in &ui.authed.principal.roles { option value=(r.as_str()) { (r.as_str()) } }
                }
                button.primary type="submit" { "Issue token" }
            }
        }
    }
}

#[derive(Deserialize)]
pub struct TokenForm {
    #[serde(rename = "_csrf")]
    csrf: String,
    name: String,
    role: String,
}

pub async fn issue_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<TokenForm>,
) -> Response {
    let ui = ui_or_return!(state, headers, "/ui/tokens");
    if let Err(r) = check_csrf(&ui, &headers, &f.csrf) {
        return *r;
    }
    let body = crate::api::governance::ApiTokenRequest {
        name: f.name,
        human: ui.name().to_owned(),
        role: f.role,
    };
    match governance::create_token(State(state.clone()), ui.acting(), ApiJson(body)).await {
        Ok((_, created)) => page(
            StatusCode::CREATED,
            layout(
                "API tokens",
                Some(&ui),
                "",
                tokens_markup(&ui, Some(&created.0)),
            ),
        ),
        Err(e) => api_error(e, &ui),
    }
}
