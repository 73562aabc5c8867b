//! OpenID Connect single sign-on: authorization code flow with PKCE (S256), for any
//! standard provider (`openidconnect` crate: discovery, JWKS, ID-token validation).
//!
//! - `start` makes `state`, `nonce` and the PKCE verifier, seals them (AES-256-GCM under
//!   the server's wrapping key, so any replica can finish the flow) into a short-lived
//!   `warrant_oidc` cookie bound to this browser, and redirects to the provider.
//! - `finish` (the redirect back) refuses unless: the cookie opens and is fresh; `state`
//!   matches it; the RFC 9207 `iss` parameter, when sent, is the configured issuer; the
//!   code exchanges (with the verifier) at the provider's token endpoint; the ID token's
//!   signature verifies against the provider's JWKS, its `iss` is the configured issuer
//!   (discovery refuses a provider whose metadata names another), `aud` holds our client
//!   id, it is unexpired, and its `nonce` is ours.
//! - The human is the one linked to (`iss`, `sub`); else the one named by the verified
//!   e-mail (linked now); else, with `auto_provision`, a new account with no roles.

use crate::AppState;
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthenticationFlow, CoreClaimName, CoreClaimType, CoreClient,
    CoreClientAuthMethod, CoreGrantType, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm, CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::{
    AdditionalProviderMetadata, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl,
    Nonce, PkceCodeChallenge, PkceCodeVerifier, ProviderMetadata, RedirectUrl, Scope,
    TokenResponse,
};

/// Discovery fields beyond OpenID Connect Discovery that warrant uses.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ExtraMetadata {
    /// RFC 9207: the provider sends `iss` in authorization responses (then it is required).
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
}

impl AdditionalProviderMetadata for ExtraMetadata {}

type CoreProviderMetadata = ProviderMetadata<
    ExtraMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;
use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;
use warrant_core::Millis;

pub const LOGIN_COOKIE: &str = "warrant_oidc";
const SEAL_CONTEXT: &str = "warrant/oidc-login/v1";
/// How long a started sign-in may take at the provider.
pub const LOGIN_TTL_MS: Millis = 10 * 60 * 1000;
/// How long discovered provider metadata (and its JWKS) is reused.
const METADATA_TTL_MS: Millis = 5 * 60 * 1000;

#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// The provider's issuer URL, exactly as its ID tokens name it.
    pub issuer: String,
    pub client_id: String,
    /// From the environment (`WARRANT_OIDC_CLIENT_SECRET`) or the config file; never logged.
    pub client_secret: String,
    /// Where the provider sends the browser back: `<issuer of warrant>/ui/auth/oidc/callback`.
    pub redirect_uri: String,
    /// Extra scopes besides `openid` (default `profile email`).
    pub scopes: Vec<String>,
    /// A button label (`Sign in with Okta`).
    pub label: String,
    /// Create an account (with no roles) on a first sign-in nobody is linked to.
    pub auto_provision: bool,
}

/// Discovery cache.
#[derive(Default)]
pub struct Provider {
    cached: RwLock<Option<(Millis, CoreProviderMetadata)>>,
}

/// What the sealed cookie carries between `start` and `finish`.
#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    state: String,
    nonce: String,
    verifier: String,
    exp_ms: Millis,
    next: String,
}

/// Who signed in, as the provider asserted it (validated).
#[derive(Debug, Clone)]
pub struct Asserted {
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    pub preferred_username: Option<String>,
}

fn http() -> Result<reqwest::Client, String> {
    reqwest::ClientBuilder::new()
        // Following redirects opens the client to SSRF.
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

async fn metadata(state: &AppState, cfg: &OidcConfig) -> Result<CoreProviderMetadata, String> {
    let now = state.clock.now_ms();
    if let Some((at, m)) = state.oidc.cached.read().await.as_ref() {
        if now - at < METADATA_TTL_MS {
            return Ok(m.clone());
        }
    }
    let issuer = IssuerUrl::new(cfg.issuer.clone()).map_err(|e| format!("issuer URL: {e}"))?;
    let m = CoreProviderMetadata::discover_async(issuer, &http()?)
        .await
        .map_err(|e| {
            format!(
                "the identity provider at `{}` could not be used: {}",
                cfg.issuer,
                error_chain(&e)
            )
        })?;
    *state.oidc.cached.write().await = Some((now, m.clone()));
    Ok(m)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}

fn client(
    m: CoreProviderMetadata,
    cfg: &OidcConfig,
) -> Result<
    CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    >,
    String,
> {
    Ok(CoreClient::from_provider_metadata(
        m,
        ClientId::new(cfg.client_id.clone()),
        Some(ClientSecret::new(cfg.client_secret.clone())),
    )
    .set_redirect_uri(
        RedirectUrl::new(cfg.redirect_uri.clone()).map_err(|e| format!("redirect URI: {e}"))?,
    ))
}

/// Starts a sign-in: the provider URL to redirect to, and the sealed cookie value.
pub async fn start(state: &AppState, next: &str) -> Result<(String, String), String> {
    let cfg = state
        .sign_in
        .oidc
        .as_ref()
        .ok_or("single sign-on is not configured")?;
    let client = client(metadata(state, cfg).await?, cfg)?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut req = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .set_pkce_challenge(challenge);
    for s in &cfg.scopes {
        req = req.add_scope(Scope::new(s.clone()));
    }
    let (url, csrf, nonce) = req.url();
    let pending = Pending {
        state: csrf.secret().clone(),
        nonce: nonce.secret().clone(),
        verifier: verifier.secret().clone(),
        exp_ms: state.clock.now_ms() + LOGIN_TTL_MS,
        next: next.to_owned(),
    };
    let json = serde_json::to_vec(&pending).map_err(|e| e.to_string())?;
    let sealed = state
        .key_wrap
        .wrap(SEAL_CONTEXT, &json)
        .map_err(|e| e.to_string())?;
    use base64::Engine;
    Ok((
        url.to_string(),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sealed),
    ))
}

/// The query of the provider's redirect back.
#[derive(Debug, Deserialize)]
pub struct Callback {
    pub code: Option<String>,
    pub state: Option<String>,
    pub iss: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// Finishes a sign-in; `Err` says why it is refused (shown and audited, never secrets).
pub async fn finish(
    state: &AppState,
    cookie: Option<&str>,
    cb: Callback,
) -> Result<(Asserted, String), String> {
    let cfg = state
        .sign_in
        .oidc
        .as_ref()
        .ok_or("single sign-on is not configured")?;
    let sealed = cookie.ok_or(
        "no sign-in in progress in this browser (the sign-in cookie is missing or expired); start again",
    )?;
    use base64::Engine;
    let sealed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(sealed)
        .map_err(|_| "the sign-in cookie is malformed; start again")?;
    let pending: Pending = state
        .key_wrap
        .unwrap(SEAL_CONTEXT, &sealed)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("the sign-in cookie does not open (tampered, or from another installation); start again")?;
    if state.clock.now_ms() > pending.exp_ms {
        return Err("the sign-in took too long; start again".into());
    }
    if let Some(e) = cb.error {
        return Err(format!(
            "the identity provider refused the sign-in: {e}{}",
            cb.error_description
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        ));
    }
    let given_state = cb.state.ok_or("the provider's answer carries no `state`")?;
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        given_state.as_bytes(),
        pending.state.as_bytes(),
    )) {
        return Err(
            "`state` does not match the sign-in started in this browser (possible login CSRF); refused"
                .into(),
        );
    }
    // RFC 9207: an authorization response from another issuer (mix-up attack) is refused,
    // and so is one without `iss` from a provider that says it sends it. The issuer is
    // compared as a simple string.
    let meta = metadata(state, cfg).await?;
    match &cb.iss {
        Some(iss) if iss != meta.issuer().as_str() => {
            return Err(format!(
                "the authorization response comes from issuer `{iss}`, not the configured `{}`; refused",
                cfg.issuer
            ));
        }
        None if meta
            .additional_metadata()
            .authorization_response_iss_parameter_supported =>
        {
            return Err(
                "the authorization response carries no `iss` although the provider sends it (RFC 9207); refused"
                    .into(),
            );
        }
        _ => {}
    }
    let code = cb.code.ok_or("the provider's answer carries no `code`")?;
    let client = client(meta, cfg)?;
    let token = client
        .exchange_code(AuthorizationCode::new(code))
        .map_err(|e| format!("the provider has no token endpoint: {e}"))?
        .set_pkce_verifier(PkceCodeVerifier::new(pending.verifier))
        .request_async(&http()?)
        .await
        .map_err(|e| format!("the code exchange failed: {}", error_chain(&e)))?;
    let id_token = token
        .id_token()
        .ok_or("the provider returned no ID token")?;
    let verifier = client.id_token_verifier();
    let claims = id_token
        .claims(&verifier, &Nonce::new(pending.nonce))
        .map_err(|e| format!("the ID token is not valid: {}", error_chain(&e)))?;
    Ok((
        Asserted {
            issuer: claims.issuer().to_string(),
            subject: claims.subject().to_string(),
            email: claims.email().map(|e| e.to_string()),
            email_verified: claims.email_verified().unwrap_or(false),
            name: claims
                .name()
                .and_then(|n| n.get(None))
                .map(|n| n.to_string()),
            preferred_username: claims.preferred_username().map(|u| u.to_string()),
        },
        pending.next,
    ))
}
