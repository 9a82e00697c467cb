//! Local accounts and browser sessions.
//!
//! Passwords are hashed with argon2id (memory-hard) and only the hash is replicated. Signing
//! in creates a session in the replicated state, known by the SHA-256 of a random cookie, so
//! a browser can use any node. The cookie is `HttpOnly`, `Secure` and `SameSite=Strict`; on
//! top of that, every changing request must repeat the session's CSRF token in a header,
//! which a page of another site cannot read. Repeated failed sign-ins for one name are
//! slowed down on each node.

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::native::commit;
use crate::{AppState, auth};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Extension, Json, Router};
use pullback_domain::{Command, ExternalSignIn, Role, Secret, Session, User, valid_user_name};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub(crate) const COOKIE: &str = "pullback_session";
const CSRF_HEADER: &str = "x-csrf-token";
const SESSION_HOURS: i64 = 8;
const MIN_PASSWORD: usize = 12;
const MAX_PASSWORD: usize = 1024;
/// Failed sign-ins for one name within [`FAILURE_WINDOW`] before the next are refused.
const MAX_FAILURES: u32 = 5;
const FAILURE_WINDOW: Duration = Duration::from_secs(300);

/// Routes that need a signed-in caller.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/users", get(list))
        .route("/api/v1/users/{name}", put(put_user).delete(delete_user))
        .route("/api/v1/session/password", put(change_own_password))
}

/// Sign-in, the current session and sign-out: reachable without credentials.
pub(crate) fn public_routes() -> Router<AppState> {
    Router::new().route(
        "/api/v1/session",
        get(current).post(sign_in).delete(sign_out),
    )
}

/// Hashes a password with argon2id and a random salt, in PHC form.
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| e.to_string())?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| e.to_string())
}

fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|hash| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    })
}

/// Failed sign-ins by user name, on this node.
#[derive(Default)]
pub struct SignInThrottle {
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl SignInThrottle {
    /// How long `name` must wait before trying again, if it must.
    fn wait(&self, name: &str) -> Option<Duration> {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let (count, since) = failures.get(name)?;
        let left = FAILURE_WINDOW.checked_sub(since.elapsed())?;
        (*count >= MAX_FAILURES).then_some(left)
    }

    fn failed(&self, name: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        // Forget old entries so the map stays small whatever names are tried.
        failures.retain(|_, (_, since)| since.elapsed() < FAILURE_WINDOW);
        if failures.len() > 10_000 {
            failures.clear();
        }
        let entry = failures
            .entry(name.to_owned())
            .or_insert((0, Instant::now()));
        entry.0 += 1;
    }

    fn succeeded(&self, name: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.remove(name);
    }
}

/// The session cookie's value, when the request has one.
pub(crate) fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}

fn token_hash(token: &str) -> String {
    hex::encode(auth::hash_key(token))
}

/// The session and its role, if the session is current and its user may still sign in: a
/// local account that still exists and is not disabled, or someone an identity provider
/// vouched for, with the role granted at sign-in.
async fn live_session(state: &AppState, token: &str) -> ApiResult<Option<(Session, Role)>> {
    let key = token_hash(token);
    let reader = state.node.reader();
    let mut session = reader.session(&key)?;
    if session.is_none() {
        // Signed in through another node a moment ago: wait until this one has caught up.
        state.node.read_barrier().await?;
        session = reader.session(&key)?;
    }
    let Some(session) = session else {
        return Ok(None);
    };
    if session.expires_at <= chrono::Utc::now() {
        return Ok(None);
    }
    if let Some(external) = &session.external {
        let role = external.role;
        return Ok(Some((session, role)));
    }
    match reader.user(&session.user)? {
        Some(user) if !user.disabled => Ok(Some((session, user.role))),
        _ => Ok(None),
    }
}

/// The caller a session cookie stands for. A changing request must carry the session's
/// CSRF token.
pub(crate) async fn session_caller(
    state: &AppState,
    token: &str,
    headers: &HeaderMap,
    changes: bool,
) -> ApiResult<Caller> {
    let Some((session, role)) = live_session(state, token).await? else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "the session has ended; sign in again",
        ));
    };
    if changes {
        let presented = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !auth::same_hash(
            &auth::hash_key(presented),
            &auth::hash_key(&session.csrf_token.0),
        ) || presented.is_empty()
        {
            tracing::warn!(user = %session.user, "changing request without the session's CSRF token");
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "the X-CSRF-Token header is missing or wrong",
            ));
        }
    }
    Ok(Caller {
        provider: session.external.map(|e| e.provider),
        name: session.user,
        role,
        is_user: true,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    username: String,
    password: String,
}

/// What the browser learns about its session.
#[derive(Serialize)]
struct SessionView {
    user: String,
    role: Role,
    csrf_token: String,
    expires_at: pullback_domain::Timestamp,
    /// The identity provider that vouched for the user (`azure ad`), absent for a local
    /// account.
    #[serde(skip_serializing_if = "Option::is_none")]
    provider: Option<String>,
}

impl SessionView {
    fn of(session: Session, role: Role) -> SessionView {
        SessionView {
            user: session.user,
            role,
            csrf_token: session.csrf_token.0,
            expires_at: session.expires_at,
            provider: session.external.map(|e| e.provider),
        }
    }
}

pub(crate) fn random_token() -> ApiResult<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(hex::encode(bytes))
}

pub(crate) fn cookie(value: &str, max_age: i64) -> HeaderValue {
    let text =
        format!("{COOKIE}={value}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={max_age}");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A hash to check against when the user does not exist, so that an unknown name takes as
/// long to refuse as a wrong password.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password("not a password anyone has").unwrap_or_default())
}

async fn sign_in(State(state): State<AppState>, Json(body): Json<SignIn>) -> ApiResult<Response> {
    let name = body.username.trim().to_owned();
    if !valid_user_name(&name) || body.password.len() > MAX_PASSWORD {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "wrong user name or password",
        ));
    }
    if let Some(wait) = state.sign_ins.wait(&name) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many failed sign-ins for {name:?}; try again in {} s",
                wait.as_secs() + 1
            ),
        ));
    }
    state.node.read_barrier().await?;
    let user = state.node.reader().user(&name)?;
    let stored = user
        .as_ref()
        .filter(|u| !u.disabled)
        .map(|u| u.password_hash.0.clone())
        .unwrap_or_else(|| decoy_hash().to_owned());
    let password = body.password;
    let good = tokio::task::spawn_blocking(move || verify_password(&password, &stored))
        .await
        .unwrap_or(false);
    let Some(user) = user.filter(|u| good && !u.disabled) else {
        state.sign_ins.failed(&name);
        tracing::warn!(user = %name, "failed sign-in");
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "wrong user name or password",
        ));
    };
    state.sign_ins.succeeded(&name);
    let caller = Caller {
        name: user.name.clone(),
        role: user.role,
        is_user: true,
        provider: None,
    };
    let (token, session) = open_session(&state, &caller, None).await?;
    let mut response = Json(SessionView::of(session, user.role)).into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session_cookie_for(&token));
    Ok(response)
}

/// Starts a session for `caller` through the replicated, audited commit path; answers the
/// cookie's value and the session. `external` is set when an identity provider vouched for
/// the caller instead of a local password.
pub(crate) async fn open_session(
    state: &AppState,
    caller: &Caller,
    external: Option<ExternalSignIn>,
) -> ApiResult<(String, Session)> {
    let token = random_token()?;
    let now = chrono::Utc::now();
    let session = Session {
        user: caller.name.clone(),
        created_at: now,
        expires_at: now + chrono::Duration::hours(SESSION_HOURS),
        csrf_token: Secret(random_token()?),
        external,
    };
    let command = Command::StartSession {
        token_sha256: token_hash(&token),
        session: session.clone(),
    };
    commit(state, caller, command).await?;
    Ok((token, session))
}

/// The `Set-Cookie` value of a new session.
pub(crate) fn session_cookie_for(token: &str) -> HeaderValue {
    cookie(token, SESSION_HOURS * 3600)
}

async fn current(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Json<SessionView>> {
    let signed_out = || ApiError::new(StatusCode::UNAUTHORIZED, "not signed in");
    let token = session_cookie(&headers).ok_or_else(signed_out)?;
    let (session, role) = live_session(&state, &token).await?.ok_or_else(signed_out)?;
    Ok(Json(SessionView::of(session, role)))
}

async fn sign_out(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, cookie("", 0));
    let Some(token) = session_cookie(&headers) else {
        return Ok(response);
    };
    // Signing out changes state, so it needs the CSRF token like any other change: a page
    // of another site must not be able to sign the user out.
    let caller = match session_caller(&state, &token, &headers, true).await {
        Ok(caller) => caller,
        Err(e) if e.status == StatusCode::UNAUTHORIZED => return Ok(response),
        Err(e) => return Err(e),
    };
    let command = Command::EndSession {
        token_sha256: token_hash(&token),
    };
    commit(&state, &caller, command).await?;
    Ok(response)
}

/// A user as the API shows it: never the password hash.
#[derive(Serialize)]
struct UserView {
    name: String,
    role: Role,
    disabled: bool,
    created_at: pullback_domain::Timestamp,
    updated_at: pullback_domain::Timestamp,
}

impl From<User> for UserView {
    fn from(user: User) -> UserView {
        UserView {
            name: user.name,
            role: user.role,
            disabled: user.disabled,
            created_at: user.created_at,
            updated_at: user.updated_at,
        }
    }
}

async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<Vec<UserView>>> {
    caller.require(Role::Admin)?;
    let users = state.node.reader().users()?;
    Ok(Json(users.into_iter().map(UserView::from).collect()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserChange {
    role: Role,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    disabled: bool,
}

fn check_password(password: &str) -> ApiResult<()> {
    let length = password.chars().count();
    if length < MIN_PASSWORD || password.len() > MAX_PASSWORD {
        return Err(ApiError::bad_request(format!(
            "password: use {MIN_PASSWORD} to {MAX_PASSWORD} characters (this one has {length})"
        )));
    }
    Ok(())
}

async fn hashed(password: String) -> ApiResult<Secret> {
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map(Secret)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e))
}

/// Creates or changes an account. A new account needs a password; a change without one
/// keeps the old.
async fn put_user(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Json(change): Json<UserChange>,
) -> ApiResult<Json<UserView>> {
    caller.require(Role::Admin)?;
    if !valid_user_name(&name) {
        return Err(ApiError::bad_request(format!(
            "{name:?} is not a valid user name: use 1 to 64 letters, digits, '.', '_', '-' or '@'"
        )));
    }
    let existing = state.node.reader().user(&name)?;
    let now = chrono::Utc::now();
    let password_hash = match (change.password, &existing) {
        (Some(password), _) => {
            check_password(&password)?;
            hashed(password).await?
        }
        (None, Some(user)) => user.password_hash.clone(),
        (None, None) => {
            return Err(ApiError::bad_request(format!(
                "password: a new user ({name:?}) needs one"
            )));
        }
    };
    let user = User {
        name: name.clone(),
        role: change.role,
        password_hash,
        disabled: change.disabled,
        created_at: existing.as_ref().map_or(now, |u| u.created_at),
        updated_at: now,
    };
    commit(&state, &caller, Command::PutUser { user: user.clone() }).await?;
    Ok(Json(user.into()))
}

async fn delete_user(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Role::Admin)?;
    commit(&state, &caller, Command::DeleteUser { name }).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordChange {
    current: String,
    new: String,
}

/// A signed-in user changes their own password; their other sessions end.
async fn change_own_password(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(change): Json<PasswordChange>,
) -> ApiResult<StatusCode> {
    if !caller.is_user {
        return Err(ApiError::bad_request(
            "an API key has no password; an administrator sets users' passwords",
        ));
    }
    if let Some(provider) = &caller.provider {
        return Err(ApiError::bad_request(format!(
            "{} signed in with {provider}, which keeps their password; change it there",
            caller.name
        )));
    }
    let user = state
        .node
        .reader()
        .user(&caller.name)?
        .ok_or_else(|| ApiError::not_found(format!("user {:?}", caller.name)))?;
    let stored = user.password_hash.0.clone();
    let current = change.current;
    let good = tokio::task::spawn_blocking(move || verify_password(&current, &stored))
        .await
        .unwrap_or(false);
    if !good {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "current: the password is wrong",
        ));
    }
    check_password(&change.new)?;
    let user = User {
        password_hash: hashed(change.new).await?,
        updated_at: chrono::Utc::now(),
        ..user
    };
    commit(&state, &caller, Command::PutUser { user }).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_against_their_own_hash() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("correct horse batterY", &hash));
        assert!(!verify_password("correct horse battery", "not a hash"));
        // Two hashes of one password differ by their salt.
        assert_ne!(hash, hash_password("correct horse battery").unwrap());
    }

    #[test]
    fn the_throttle_refuses_after_repeated_failures_and_forgives_a_success() {
        let throttle = SignInThrottle::default();
        for _ in 0..MAX_FAILURES {
            assert!(throttle.wait("mallory").is_none());
            throttle.failed("mallory");
        }
        assert!(throttle.wait("mallory").is_some());
        assert!(throttle.wait("alice").is_none());
        throttle.succeeded("mallory");
        assert!(throttle.wait("mallory").is_none());
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("theme=dark; pullback_session=abc123 ; x=y"),
        );
        assert_eq!(session_cookie(&headers).as_deref(), Some("abc123"));
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("pullback_session="),
        );
        assert_eq!(session_cookie(&headers), None);
    }
}
