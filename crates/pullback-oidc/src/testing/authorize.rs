//! The authorization endpoint: checks the request as Azure AD does, shows a sign-in form,
//! and sends the browser back with a code, or with an error.
//!
//! As in Azure AD, a request whose application or redirect URI is wrong gets an error page
//! (sending the browser to an unregistered address would be an open redirect); every other
//! problem goes back to the redirect URI as `error`, `error_description` and `state`.

use super::{Idp, IssuedCode, PendingSignIn, cloud_of, now};
use crate::encoding::{from_b64url, random_token};
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use std::collections::HashMap;
use std::sync::Arc;

type Params = HashMap<String, String>;

/// An error page, as Azure AD shows when it cannot send the browser back.
fn error_page(code: u32, text: &str) -> Response {
    let body = page(
        "Sign in",
        &format!(
            "<h1>Sorry, but we're having trouble signing you in.</h1>\
             <p id=\"idp-error\">AADSTS{code}: {}</p>",
            escape(text)
        ),
    );
    (StatusCode::BAD_REQUEST, Html(body)).into_response()
}

/// Sends the browser back to `redirect_uri` with `pairs` in the query.
fn back_to(redirect_uri: &str, pairs: &[(&str, &str)]) -> Response {
    let Ok(mut url) = reqwest::Url::parse(redirect_uri) else {
        return error_page(50011, "The redirect URI is not a URL.");
    };
    {
        let mut query = url.query_pairs_mut();
        for (name, value) in pairs {
            query.append_pair(name, value);
        }
    }
    (StatusCode::FOUND, [(header::LOCATION, url.to_string())]).into_response()
}

/// Sends an OAuth error back.
fn error_back(
    redirect_uri: &str,
    state: Option<&str>,
    error: &str,
    code: u32,
    text: &str,
) -> Response {
    let description = format!("AADSTS{code}: {text}");
    let mut pairs = vec![
        ("error", error),
        ("error_description", description.as_str()),
    ];
    if let Some(state) = state {
        pairs.push(("state", state));
    }
    back_to(redirect_uri, &pairs)
}

/// `GET /<cloud>/<tenant>/oauth2/v2.0/authorize`
pub(super) async fn show(
    State(idp): State<Arc<Idp>>,
    Path((cloud, tenant)): Path<(String, String)>,
    Query(params): Query<Params>,
) -> Response {
    let Some(cloud) = cloud_of(&cloud) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    idp.lock().hits.authorize += 1;
    if !Idp::is_tenant(&tenant) {
        return error_page(90002, &format!("Tenant '{tenant}' not found."));
    }
    let get = |name: &str| {
        params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let Some(client_id) = get("client_id") else {
        return error_page(
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        );
    };
    let Some(app) = idp
        .lock()
        .apps
        .iter()
        .find(|a| a.client_id == client_id)
        .cloned()
    else {
        return error_page(
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory \
                 '{tenant}'. This can happen if the application has not been installed by the \
                 administrator of the tenant or consented to by any user in the tenant."
            ),
        );
    };
    let Some(redirect_uri) = get("redirect_uri") else {
        return error_page(900971, "No reply address provided.");
    };
    if !app.redirect_uris.iter().any(|r| r == redirect_uri) {
        return error_page(
            50011,
            &format!(
                "The redirect URI '{redirect_uri}' specified in the request does not match the \
                 redirect URIs configured for the application '{client_id}'."
            ),
        );
    }
    let state = get("state");
    let refuse =
        |error: &str, code: u32, text: &str| error_back(redirect_uri, state, error, code, text);
    match get("response_type") {
        None => {
            return refuse(
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'response_type'.",
            );
        }
        Some("code") => {}
        Some(other) => {
            return refuse(
                "unsupported_response_type",
                700054,
                &format!("response_type '{other}' is not enabled for the application."),
            );
        }
    }
    if let Some(mode) = get("response_mode")
        && mode != "query"
    {
        return refuse(
            "invalid_request",
            9002313,
            &format!(
                "Invalid request. The local identity provider answers with response_mode=query \
                 only, not '{mode}'."
            ),
        );
    }
    let Some(scope) = get("scope") else {
        return refuse(
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'scope'.",
        );
    };
    if !scope.split(' ').any(|s| s == "openid") {
        return refuse(
            "invalid_scope",
            70011,
            &format!(
                "The provided value for the input parameter 'scope' is not valid. The scope \
                 '{scope}' asks for no ID token (openid is missing)."
            ),
        );
    }
    let Some(challenge) = get("code_challenge") else {
        return refuse(
            "invalid_request",
            9002325,
            "Proof Key for Code Exchange is required for this application.",
        );
    };
    if get("code_challenge_method") != Some("S256") {
        return refuse(
            "invalid_request",
            5000811,
            &format!(
                "The code_challenge_method '{}' is not allowed; use S256.",
                get("code_challenge_method").unwrap_or("plain")
            ),
        );
    }
    if challenge.len() != 43 || from_b64url(challenge).is_none_or(|b| b.len() != 32) {
        return refuse(
            "invalid_request",
            501491,
            "The code_challenge is not a base64url SHA-256 value.",
        );
    }
    let pending = PendingSignIn {
        cloud,
        client_id: client_id.to_owned(),
        redirect_uri: redirect_uri.to_owned(),
        state: state.map(str::to_owned),
        nonce: get("nonce").map(str::to_owned),
        challenge: challenge.to_owned(),
        scope: scope.to_owned(),
    };
    let login = random_token().unwrap_or_default();
    idp.lock().pending.insert(login.clone(), pending);
    Html(sign_in_form(&login, None)).into_response()
}

/// The form's fields.
#[derive(serde::Deserialize)]
pub(super) struct SignInForm {
    login: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    action: String,
}

/// `POST /<cloud>/<tenant>/oauth2/v2.0/authorize`: the sign-in form's answer.
pub(super) async fn sign_in(State(idp): State<Arc<Idp>>, Form(form): Form<SignInForm>) -> Response {
    let mut directory = idp.lock();
    let Some(pending) = directory.pending.get(&form.login).cloned() else {
        return error_page(
            50058,
            "This sign-in request is not known or has already been used. Start the sign-in again.",
        );
    };
    if form.action == "cancel" {
        directory.pending.remove(&form.login);
        return error_back(
            &pending.redirect_uri,
            pending.state.as_deref(),
            "access_denied",
            65004,
            "User declined to consent to access the app.",
        );
    }
    let user = directory
        .users
        .iter()
        .find(|u| {
            u.username.eq_ignore_ascii_case(form.username.trim()) && u.password == form.password
        })
        .cloned();
    let Some(user) = user else {
        return Html(sign_in_form(
            &form.login,
            Some("AADSTS50126: Error validating credentials due to invalid username or password."),
        ))
        .into_response();
    };
    directory.pending.remove(&form.login);
    let code = format!(
        "1.{}{}",
        random_token().unwrap_or_default(),
        random_token().unwrap_or_default()
    );
    directory.codes.insert(
        code.clone(),
        IssuedCode {
            request: pending.clone(),
            user,
            issued_at: now(),
            redeemed: false,
        },
    );
    let session_state = random_token().unwrap_or_default();
    let mut pairs = vec![("code", code.as_str())];
    if let Some(state) = &pending.state {
        pairs.push(("state", state.as_str()));
    }
    pairs.push(("session_state", session_state.as_str()));
    back_to(&pending.redirect_uri, &pairs)
}

fn sign_in_form(login: &str, error: Option<&str>) -> String {
    let error = error
        .map(|e| format!("<p id=\"idp-error\">{}</p>", escape(e)))
        .unwrap_or_default();
    page(
        "Sign in to your account",
        &format!(
            "<h1>Sign in</h1>{error}\
             <form method=\"post\">\
             <input type=\"hidden\" name=\"login\" value=\"{}\">\
             <label>Email, phone, or Skype <input id=\"idp-username\" name=\"username\"></label>\
             <label>Password <input id=\"idp-password\" name=\"password\" type=\"password\"></label>\
             <button id=\"idp-submit\" name=\"action\" value=\"sign_in\" type=\"submit\">Sign in</button>\
             <button id=\"idp-cancel\" name=\"action\" value=\"cancel\" type=\"submit\">Cancel</button>\
             </form>",
            escape(login)
        ),
    )
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><link rel=\"icon\" href=\"data:,\"><title>{}</title></head>\
         <body>{body}</body></html>",
        escape(title)
    )
}

/// Escapes text for HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
