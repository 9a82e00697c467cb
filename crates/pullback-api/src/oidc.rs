//! Sign-in with Azure AD (see `pullback_oidc`): which sign-in methods exist, the redirect to
//! Azure AD, and the callback that turns a verified ID token into the same kind of session as
//! a local sign-in, committed through the audited path as `user <name> (azure ad)`.
//!
//! Between the redirect and the callback the sign-in lives in a sealed `HttpOnly` cookie
//! scoped to the callback (`SameSite=Lax`, since the callback is a navigation coming back
//! from Azure AD). A failed callback leaves its message in another sealed cookie that only
//! `GET /api/v1/session/methods` reads, once: the sign-in page shows it, and no one can make
//! that page show a text of their choosing by crafting a link.

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::users::{open_session, session_cookie_for};
use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use pullback_domain::ExternalSignIn;
use pullback_oidc::client::Callback;
use pullback_oidc::settings::CALLBACK_PATH;
use serde::{Deserialize, Serialize};

/// How audit entries and sessions name the provider.
pub(crate) const PROVIDER: &str = "azure ad";
const FLOW_COOKIE: &str = "pullback_oidc_flow";
const NOTICE_COOKIE: &str = "pullback_signin_notice";
const LOGIN_PATH: &str = "/api/v1/oidc/login";
const METHODS_PATH: &str = "/api/v1/session/methods";

/// Reachable without credentials: they are how one gets them.
pub(crate) fn public_routes() -> Router<AppState> {
    Router::new()
        .route(METHODS_PATH, get(methods))
        .route(LOGIN_PATH, get(login))
        .route(CALLBACK_PATH, get(callback))
}

/// The value of the cookie `name`, when the request has one.
fn cookie_named(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(found, _)| *found == name)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}

/// A `Set-Cookie` value; `max_age` 0 removes the cookie.
fn set_cookie(name: &str, value: &str, path: &str, same_site: &str, max_age: i64) -> HeaderValue {
    let text = format!(
        "{name}={value}; Path={path}; HttpOnly; Secure; SameSite={same_site}; Max-Age={max_age}"
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A `303 See Other` to `location` that no cache keeps, with cookies.
fn see_other(location: &str, cookies: Vec<HeaderValue>) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(location) {
        headers.insert(header::LOCATION, location);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    for cookie in cookies {
        headers.append(header::SET_COOKIE, cookie);
    }
    response
}

/// The provider offered on the sign-in page.
#[derive(Serialize)]
struct ProviderView {
    /// `azure_ad`.
    id: &'static str,
    /// The button's text.
    label: &'static str,
    /// Where the button goes.
    login_url: &'static str,
    /// The configured cloud, for the curious.
    cloud: &'static str,
}

/// What the sign-in page offers, and the message of a sign-in that just failed.
#[derive(Serialize)]
struct MethodsView {
    password: bool,
    providers: Vec<ProviderView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    notice: Option<String>,
}

/// `GET /api/v1/session/methods`
async fn methods(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let mut providers = Vec::new();
    let mut notice = None;
    if let Some(client) = &state.oidc {
        providers.push(ProviderView {
            id: "azure_ad",
            label: "Sign in with Microsoft",
            login_url: LOGIN_PATH,
            cloud: client.settings().cloud.as_str(),
        });
        notice =
            cookie_named(&headers, NOTICE_COOKIE).and_then(|sealed| client.open_notice(&sealed));
    }
    let mut response = Json(MethodsView {
        password: true,
        providers,
        notice,
    })
    .into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Shown once.
    headers.insert(
        header::SET_COOKIE,
        set_cookie(NOTICE_COOKIE, "", METHODS_PATH, "Strict", 0),
    );
    response
}

#[derive(Deserialize)]
struct LoginQuery {
    #[serde(default)]
    return_to: Option<String>,
}

/// The sign-in page after a failure: the message waits in a sealed cookie.
fn back_to_sign_in(state: &AppState, message: &str) -> Response {
    let mut cookies = vec![set_cookie(FLOW_COOKIE, "", CALLBACK_PATH, "Lax", 0)];
    let stop = if message.ends_with('.') { "" } else { "." };
    let message = format!("Sign-in with Microsoft failed: {message}{stop}");
    if let Some(sealed) = state.oidc.as_ref().and_then(|c| c.seal_notice(&message)) {
        cookies.push(set_cookie(
            NOTICE_COOKIE,
            &sealed,
            METHODS_PATH,
            "Strict",
            300,
        ));
    }
    see_other("/ui#/signin", cookies)
}

/// `GET /api/v1/oidc/login`: to Azure AD, with the sign-in sealed in a cookie.
async fn login(State(state): State<AppState>, Query(query): Query<LoginQuery>) -> Response {
    let Some(client) = &state.oidc else {
        return (
            StatusCode::NOT_FOUND,
            "sign-in with Azure AD is not configured ([oidc] in the configuration file)",
        )
            .into_response();
    };
    let return_to = query.return_to.unwrap_or_default();
    match client.begin(&return_to).await {
        Ok(start) => see_other(
            &start.authorize_url,
            vec![set_cookie(
                FLOW_COOKIE,
                &start.flow_cookie,
                CALLBACK_PATH,
                "Lax",
                pullback_oidc::flow::FLOW_LIFETIME_SECS,
            )],
        ),
        Err(e) => {
            tracing::warn!(error = %e, kind = e.kind(), "sign-in with Azure AD could not start");
            back_to_sign_in(&state, &e.to_string())
        }
    }
}

/// `GET /api/v1/oidc/callback`: Azure AD sends the browser back here.
async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(answer): Query<Callback>,
) -> Response {
    let Some(client) = &state.oidc else {
        return (
            StatusCode::NOT_FOUND,
            "sign-in with Azure AD is not configured",
        )
            .into_response();
    };
    let flow = cookie_named(&headers, FLOW_COOKIE);
    let signed_in = match client.finish(&answer, flow.as_deref()).await {
        Ok(signed_in) => signed_in,
        Err(e) => {
            tracing::warn!(error = %e, kind = e.kind(), "sign-in with Azure AD refused");
            count(&state, e.kind());
            return back_to_sign_in(&state, &e.to_string());
        }
    };
    match start_session(&state, &signed_in).await {
        Ok(token) => {
            count(&state, "ok");
            tracing::info!(
                user = %signed_in.user,
                role = signed_in.role.as_str(),
                "signed in with Azure AD"
            );
            see_other(
                &format!("/ui#{}", signed_in.return_to),
                vec![
                    set_cookie(FLOW_COOKIE, "", CALLBACK_PATH, "Lax", 0),
                    session_cookie_for(&token),
                ],
            )
        }
        Err(e) => {
            count(&state, "not_recorded");
            tracing::warn!(user = %signed_in.user, error = %e.message, "Azure AD sign-in not recorded");
            back_to_sign_in(
                &state,
                &format!(
                    "{} signed in with Azure AD, but the session could not be recorded: {}",
                    signed_in.user, e.message
                ),
            )
        }
    }
}

/// Counts a callback's outcome (`ok` or a bounded failure kind).
fn count(state: &AppState, outcome: &str) {
    state
        .node
        .metrics()
        .oidc_sign_ins
        .with_label_values(&[outcome])
        .inc();
}

/// Commits the session; answers the cookie's value.
// FIXME: the role is the one granted at sign-in and lasts as long as the session (8 hours):
// someone removed from a group in Azure AD keeps their role until they sign in again.
async fn start_session(state: &AppState, signed_in: &pullback_oidc::SignedIn) -> ApiResult<String> {
    let caller = Caller {
        name: signed_in.user.clone(),
        role: signed_in.role,
        is_user: true,
        provider: Some(PROVIDER.to_owned()),
    };
    let external = ExternalSignIn {
        provider: PROVIDER.to_owned(),
        role: signed_in.role,
        subject: signed_in.object_id.clone(),
        tenant: signed_in.tenant_id.clone(),
    };
    let (token, _) = open_session(state, &caller, Some(external)).await?;
    Ok(token)
}
