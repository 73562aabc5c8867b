//! The web console, served by `warrant serve` under `/ui/`: server-rendered HTML (maud,
//! escaped by construction), one stylesheet and one small script, no third-party assets.
//!
//! Every page and action goes through the *same* handlers and permission checks as the
//! API (the session becomes the same [`Authed`] principal a token does): the console can
//! show or do nothing the signed-in human could not do with the API. State-changing
//! forms carry the session's anti-CSRF token and must come from this origin; responses
//! carry a strict Content-Security-Policy, `frame-ancestors 'none'` and `no-store`.

mod pages;

use crate::auth::{Acting, Authed};
use crate::error::ApiError;
use crate::humans::{self, oidc, SESSION_COOKIE};
use crate::AppState;
use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup, DOCTYPE};
use serde::Deserialize;
use std::sync::Arc;
use warrant_core::access::{Human, Session, SignInMethod};

const STYLE: &str = include_str!("style.css");
const SCRIPT: &str = include_str!("app.js");

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(pages::inbox))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/password", post(change_password))
        .route("/ui/auth/oidc/start", get(oidc_start))
        .route("/ui/auth/oidc/callback", get(oidc_callback))
        .route("/ui/proposals/{id}", get(pages::proposal))
        .route("/ui/proposals/{id}/{action}", post(pages::decide))
        .route("/ui/reviews", get(pages::reviews))
        .route("/ui/identities", get(pages::identities))
        .route("/ui/identities/{id}", get(pages::identity))
        .route("/ui/identities/{id}/kill", post(pages::kill))
        .route("/ui/capabilities", get(pages::capabilities))
        .route("/ui/audit", get(pages::audit))
        .route("/ui/tokens", get(pages::tokens).post(pages::issue_token))
        .route("/ui/certifications", get(pages::certifications))
        .route("/ui/certifications/{id}/items/{item}", post(pages::certify))
        .route(
            "/ui/static/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route(
            "/ui/static/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .layer(axum::middleware::from_fn(security_headers))
}

fn asset(ct: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, ct),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

async fn security_headers(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

/// A signed-in human on a console page.
pub struct Ui {
    pub session: Arc<Session>,
    pub authed: Authed,
    pub display_name: String,
}

impl Ui {
    pub fn acting(&self) -> Acting {
        self.authed.clone().into()
    }

    pub fn name(&self) -> &str {
        &self.session.human
    }
}

/// The session of the request, or the redirect to sign in.
pub fn signed_in(state: &AppState, headers: &HeaderMap, here: &str) -> Result<Ui, Box<Response>> {
    match humans::current(state, headers) {
        Some((session, authed)) => {
            let display_name = state
                .snapshot
                .load()
                .gov
                .humans
                .get(&Human::key(&session.human))
                .map(|h| h.display_name.clone())
                .unwrap_or_else(|| session.human.clone());
            Ok(Ui {
                session,
                authed,
                display_name,
            })
        }
        None => Err(Box::new(
            Redirect::to(&format!("/ui/login?next={}", urlencode(here))).into_response(),
        )),
    }
}

pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Only paths inside the console are followed after sign-in (no open redirect).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with("/ui/")
                && !n.contains('\\')
                && n.len() <= 2000
                && n.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            n.to_owned()
        }
        _ => "/ui/".to_owned(),
    }
}

/// Checks a state-changing form: same origin, and the session's anti-CSRF token.
pub fn check_csrf(ui: &Ui, headers: &HeaderMap, token: &str) -> Result<(), Box<Response>> {
    if !same_origin(headers) {
        return Err(Box::new(error_page(
            StatusCode::FORBIDDEN,
            "Refused",
            "this form was not sent from this console (cross-origin request refused)",
            Some(ui),
        )));
    }
    let ok: bool =
        subtle::ConstantTimeEq::ct_eq(token.as_bytes(), ui.session.csrf.as_bytes()).into();
    if !ok {
        return Err(Box::new(error_page(
            StatusCode::FORBIDDEN,
            "Refused",
            "the form's anti-forgery token does not match your session; reload the page and try again",
            Some(ui),
        )));
    }
    Ok(())
}

/// The page frame: header, navigation, main content.
pub fn layout(title: &str, ui: Option<&Ui>, active: &str, body: Markup) -> Markup {
    let nav = [
        ("inbox", "/ui/", "Approvals", "g a"),
        ("reviews", "/ui/reviews", "Tier 2 reviews", "g r"),
        ("identities", "/ui/identities", "Identities", "g i"),
        ("capabilities", "/ui/capabilities", "Capabilities", "g c"),
        (
            "certifications",
            "/ui/certifications",
            "Certification",
            "g v",
        ),
        ("audit", "/ui/audit", "Audit", "g l"),
    ];
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · warrant" }
                link rel="stylesheet" href="/ui/static/style.css";
                script src="/ui/static/app.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/ui/" aria-label="warrant console home" { "warrant" }
                    @if let Some(ui) = ui {
                        nav aria-label="Main" {
                            ul {
                                @for (key, href, label, keys) in nav {
                                    li {
                                        a href=(href) aria-current=[(key == active).then_some("page")] data-keys=(keys) { (label) }
                                    }
                                }
                            }
                        }
                        div.who {
                            a.user href="/ui/tokens" title=(format!("{} — your API tokens", ui.name())) { (ui.display_name) }
                            span.roles aria-label="your roles" {
                                @for r in &ui.authed.principal.roles { span.badge { (r.as_str()) } }
                                @if ui.authed.principal.roles.is_empty() { span.badge.warn { "no role" } }
                            }
                            form method="post" action="/ui/logout" {
                                input type="hidden" name="_csrf" value=(ui.session.csrf);
                                button.link type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main #main tabindex="-1" {
                    (body)
                }
                @if ui.is_some() {
                    footer.keys { "Keyboard: " kbd { "g" } " then " kbd { "a" } "/" kbd { "r" } "/" kbd { "i" } "/" kbd { "c" } "/" kbd { "v" } "/" kbd { "l" } " to move between sections, " kbd { "/" } " to search, " kbd { "j" } "/" kbd { "k" } " to move in lists, " kbd { "Enter" } " to open." }
                }
            }
        }
    }
}

pub fn page(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

pub fn error_page(status: StatusCode, title: &str, message: &str, ui: Option<&Ui>) -> Response {
    page(
        status,
        layout(
            title,
            ui,
            "",
            html! {
                h1 { (title) }
                p.alert role="alert" { (with_code(message)) }
                p { a href="/ui/" { "Back to the console" } }
            },
        ),
    )
}

/// A message whose `backticked` parts are shown as code (escaped like everything else).
fn with_code(message: &str) -> Markup {
    html! {
        @for (i, part) in message.split('`').enumerate() {
            @if i % 2 == 1 { code { (part) } } @else { (part) }
        }
    }
}

/// An API refusal shown as a page with its status and message.
pub fn api_error(e: ApiError, ui: &Ui) -> Response {
    let title = match e.status.as_u16() {
        401 | 403 => "Not allowed",
        404 => "Not found",
        409 => "Conflict",
        400 | 422 => "Check the form",
        503 => "Unavailable",
        _ => "Error",
    };
    error_page(e.status, title, &e.message, Some(ui))
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
    error: Option<String>,
}

fn login_markup(state: &AppState, next: &str, error: Option<&str>, username: &str) -> Markup {
    layout(
        "Sign in",
        None,
        "",
        html! {
            section.signin aria-labelledby="signin-title" {
                h1 #signin-title { "Sign in to warrant" }
                @if let Some(e) = error { p.alert role="alert" { (e) } }
                form method="post" action="/ui/login" {
                    input type="hidden" name="next" value=(next);
                    label for="username" { "Username" }
                    input #username name="username" type="text" autocomplete="username" required autofocus value=(username);
                    label for="password" { "Password" }
                    input #password name="password" type="password" autocomplete="current-password" required;
                    button.primary type="submit" { "Sign in" }
                }
                @if let Some(o) = &state.sign_in.oidc {
                    p.or { "or" }
                    a.button href=(format!("/ui/auth/oidc/start?next={}", urlencode(next))) { (o.label) }
                }
            }
        },
    )
}

async fn login_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Response {
    let next = safe_next(q.next.as_deref());
    if humans::current(&state, &headers).is_some() {
        return Redirect::to(&next).into_response();
    }
    page(
        StatusCode::OK,
        login_markup(&state, &next, q.error.as_deref(), ""),
    )
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    next: Option<String>,
}

async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let next = safe_next(f.next.as_deref());
    // Login CSRF: the form must come from this origin.
    if !same_origin(&headers) {
        return error_page(
            StatusCode::FORBIDDEN,
            "Refused",
            "cross-origin sign-in refused",
            None,
        );
    }
    let username: String = f.username.trim().chars().take(254).collect();
    let h = match humans::check_password(&state, "/ui/login", &f.username, f.password).await {
        Ok(h) => h,
        Err(r) => {
            let (status, msg) = match r {
                humans::PasswordRefusal::Throttled(secs) => (
                    StatusCode::TOO_MANY_REQUESTS,
                    format!("Too many failed sign-ins for this user; try again in {secs} seconds."),
                ),
                humans::PasswordRefusal::Busy => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Too many sign-ins at once; try again in a moment.".to_owned(),
                ),
                _ => (
                    StatusCode::UNAUTHORIZED,
                    "Wrong username or password.".to_owned(),
                ),
            };
            return page(status, login_markup(&state, &next, Some(&msg), &username));
        }
    };
    if h.password_must_change {
        // A one-time password set by an admin: replace it before anything else.
        return page(StatusCode::OK, change_password_markup(&h.name, &next, None));
    }
    match humans::open(&state, &h.name, SignInMethod::Password, None, None).await {
        Ok((secret, s)) => signed_in_redirect(&state, &secret, &s, &next, false),
        Err(e) => error_page(e.status, "Cannot sign in", &e.message, None),
    }
}

fn change_password_markup(username: &str, next: &str, error: Option<&str>) -> Markup {
    layout(
        "Choose a new password",
        None,
        "",
        html! {
            section.signin aria-labelledby="pw-title" {
                h1 #pw-title { "Choose a new password" }
                p { "The password you signed in with was set by an admin and works once only. Choose your own (at least 12 characters)." }
                @if let Some(e) = error { p.alert role="alert" { (e) } }
                form method="post" action="/ui/password" {
                    input type="hidden" name="next" value=(next);
                    input type="hidden" name="username" value=(username) autocomplete="username";
                    label for="current" { "Current password" }
                    input #current name="current_password" type="password" autocomplete="current-password" required;
                    label for="new" { "New password" }
                    input #new name="new_password" type="password" autocomplete="new-password" required minlength="12";
                    button.primary type="submit" { "Change password and sign in" }
                }
            }
        },
    )
}

#[derive(Deserialize)]
pub struct PasswordForm {
    username: String,
    current_password: String,
    new_password: String,
    next: Option<String>,
}

/// Replaces the caller's own password (the current one proves who they are), then signs in.
async fn change_password(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<PasswordForm>,
) -> Response {
    let next = safe_next(f.next.as_deref());
    if !same_origin(&headers) {
        return error_page(
            StatusCode::FORBIDDEN,
            "Refused",
            "cross-origin request refused",
            None,
        );
    }
    match humans::change_own_password(
        &state,
        "/ui/password",
        &f.username,
        f.current_password,
        f.new_password,
    )
    .await
    {
        Ok(name) => match humans::open(&state, &name, SignInMethod::Password, None, None).await {
            Ok((secret, s)) => signed_in_redirect(&state, &secret, &s, &next, false),
            Err(e) => error_page(e.status, "Cannot sign in", &e.message, None),
        },
        Err(e) => page(
            e.status,
            change_password_markup(f.username.trim(), &next, Some(&e.message)),
        ),
    }
}

/// No `Origin`, or this server's own.
fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(origin) => origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .is_some_and(|o| o == host),
    }
}

fn signed_in_redirect(
    state: &AppState,
    secret: &str,
    s: &Session,
    next: &str,
    clear_oidc: bool,
) -> Response {
    let max_age = (s.expires_ms - s.created_ms) / 1000;
    let mut res = Redirect::to(next).into_response();
    res.headers_mut().append(
        header::SET_COOKIE,
        humans::cookie(state, SESSION_COOKIE, secret, max_age),
    );
    if clear_oidc {
        res.headers_mut().append(
            header::SET_COOKIE,
            humans::clear_cookie(state, oidc::LOGIN_COOKIE),
        );
    }
    res
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(rename = "_csrf")]
    csrf: String,
}

async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    let ui = match signed_in(&state, &headers, "/ui/") {
        Ok(ui) => ui,
        Err(r) => return *r,
    };
    if let Err(r) = check_csrf(&ui, &headers, &f.csrf) {
        return *r;
    }
    if let Err(e) = humans::end(&state, &ui.authed.actor(), &ui.session.id, "signed out").await {
        return api_error(e, &ui);
    }
    let mut res = Redirect::to("/ui/login").into_response();
    res.headers_mut().append(
        header::SET_COOKIE,
        humans::clear_cookie(&state, SESSION_COOKIE),
    );
    res
}

async fn oidc_start(State(state): State<AppState>, Query(q): Query<NextQuery>) -> Response {
    let next = safe_next(q.next.as_deref());
    match oidc::start(&state, &next).await {
        Ok((url, sealed)) => {
            let mut res = Redirect::to(&url).into_response();
            res.headers_mut().append(
                header::SET_COOKIE,
                humans::cookie(
                    &state,
                    oidc::LOGIN_COOKIE,
                    &sealed,
                    oidc::LOGIN_TTL_MS / 1000,
                ),
            );
            res
        }
        Err(e) => {
            tracing::warn!(error = %e, "single sign-on cannot start");
            error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Single sign-on unavailable",
                &e,
                None,
            )
        }
    }
}

async fn oidc_callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(cb): Query<oidc::Callback>,
) -> Response {
    let refuse = |state: AppState, reason: String| async move {
        crate::auth::audit_refusal(
            &state,
            "anonymous",
            "/ui/auth/oidc/callback",
            "GET",
            &reason,
        )
        .await;
        let mut res = error_page(StatusCode::BAD_REQUEST, "Sign-in refused", &reason, None);
        res.headers_mut().append(
            header::SET_COOKIE,
            humans::clear_cookie(&state, oidc::LOGIN_COOKIE),
        );
        res
    };
    let cookie = humans::cookie_value(&headers, oidc::LOGIN_COOKIE).map(str::to_owned);
    let (who, next) = match oidc::finish(&state, cookie.as_deref(), cb).await {
        Ok(x) => x,
        Err(reason) => return refuse(state, reason).await,
    };
    let Some(cfg) = state.sign_in.oidc.clone() else {
        return refuse(state, "single sign-on is not configured".into()).await;
    };
    let link = warrant_core::access::OidcLink {
        issuer: who.issuer.clone(),
        subject: who.subject.clone(),
    };
    // Who is it? The linked account; else the one the verified e-mail names; else new.
    let picked: Result<
        (
            String,
            Option<Human>,
            Option<warrant_core::access::OidcLink>,
        ),
        String,
    > = {
        let snap = state.snapshot.load();
        let linked = snap
            .gov
            .humans
            .values()
            .find(|h| h.oidc.as_ref() == Some(&link))
            .map(|h| h.name.clone());
        match (linked, who.email.clone().filter(|_| who.email_verified)) {
            (Some(n), _) => Ok((n, None, None)),
            (None, None) => Err("the identity provider asserted no verified e-mail address, and no account is linked to this sign-in".to_owned()),
            (None, Some(email)) => match snap.gov.humans.get(&Human::key(&email)) {
                Some(h) if h.oidc.is_some() => Err(format!(
                    "the account `{}` is linked to another single sign-on identity",
                    h.name
                )),
                // Linking by e-mail hands the account to whoever the provider says owns
                // that address: only for an account that holds no role yet (an admin
                // links others, or their human signs in with a local password first).
                Some(h) if !h.roles.is_empty() => Err(format!(
                    "the account `{}` holds control-plane roles and is not linked to single sign-on; it is not linked by e-mail automatically",
                    h.name
                )),
                Some(h) => Ok((h.name.clone(), None, Some(link.clone()))),
                None if cfg.auto_provision => {
                    let now = state.clock.now_ms();
                    Ok((
                        email.clone(),
                        Some(Human {
                            name: email.clone(),
                            display_name: who
                                .name
                                .clone()
                                .map(|n| n.chars().filter(|c| !c.is_control()).take(200).collect::<String>())
                                .filter(|n| !n.trim().is_empty())
                                .unwrap_or(email),
                            roles: Default::default(),
                            password_hash: None,
                            oidc: Some(link.clone()),
                            disabled: false,
                            password_must_change: false,
                            password_set_by: None,
                            created_ms: now,
                            updated_ms: now,
                        }),
                        None,
                    ))
                }
                None => Err(format!(
                    "no warrant account for `{email}`; ask an admin to create it"
                )),
            },
        }
    };
    let (name, provision, new_link) = match picked {
        Ok(x) => x,
        Err(reason) => return refuse(state, reason).await,
    };
    match humans::open(&state, &name, SignInMethod::Oidc, provision, new_link).await {
        Ok((secret, s)) => signed_in_redirect(&state, &secret, &s, &next, true),
        Err(e) => refuse(state, e.message).await,
    }
}

/// Path parameter + form helpers for pages.
pub type IdPath = Path<String>;
