//! Who is calling. Programs present an API key in `Authorization`, bare (as Threat Response
//! clients send it) or after `Bearer`; browsers present the session cookie they got at
//! sign-in (see [`crate::users`]), and repeat their session's CSRF token in
//! `X-CSRF-Token` on every request that changes something. Keys and cookies are known only
//! by their SHA-256.

use crate::AppState;
use crate::error::ApiError;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use pullback_node::Role;
use sha2::{Digest, Sha256};

#[derive(Clone, Debug)]
pub struct ApiKey {
    pub name: String,
    pub role: Role,
    pub sha256: [u8; 32],
}

/// Who is calling, once authenticated.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The user's or the key's name.
    pub name: String,
    pub role: Role,
    /// True for a signed-in user, false for an API key.
    pub is_user: bool,
    /// The identity provider that vouched for a signed-in user (`azure ad`); `None` for a
    /// local account or an API key.
    pub provider: Option<String>,
}

impl Caller {
    /// How the audit log names the caller: `user alice`, `user ann@contoso.com (azure ad)`
    /// or `key ci-pipeline`.
    pub fn audit_name(&self) -> String {
        let kind = if self.is_user { "user" } else { "key" };
        match &self.provider {
            Some(provider) => format!("{kind} {} ({provider})", self.name),
            None => format!("{kind} {}", self.name),
        }
    }

    /// Refuses the call unless the caller's role is at least `needed`.
    pub fn require(&self, needed: Role) -> Result<(), ApiError> {
        if self.role >= needed {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "{} {:?} has the role {}; this needs {}",
                    if self.is_user { "user" } else { "key" },
                    self.name,
                    self.role.as_str(),
                    needed.as_str()
                ),
            ))
        }
    }
}

/// The key in `Authorization`: bare, as Threat Response clients send it, or after `Bearer`
/// (the scheme is case-insensitive, RFC 9110). Empty when there is none.
pub(crate) fn presented_key(headers: &axum::http::HeaderMap) -> &str {
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    match header.split_once(' ') {
        Some((scheme, key)) if scheme.eq_ignore_ascii_case("bearer") => key,
        _ => header,
    }
    .trim()
}

/// Compares two hashes in time that does not depend on where they differ.
pub(crate) fn same_hash(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.trim().as_bytes()).into()
}

pub(crate) async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let key = presented_key(request.headers());
    let caller = if !key.is_empty() {
        let hash = hash_key(key);
        let Some(known) = state.keys.iter().find(|k| same_hash(&k.sha256, &hash)) else {
            tracing::warn!(path = %request.uri().path(), "request with an unknown API key");
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "unknown API key"));
        };
        Caller {
            name: known.name.clone(),
            role: known.role,
            is_user: false,
            provider: None,
        }
    } else if let Some(token) = crate::users::session_cookie(request.headers()) {
        let changes = !matches!(
            *request.method(),
            axum::http::Method::GET | axum::http::Method::HEAD
        );
        crate::users::session_caller(&state, &token, request.headers(), changes).await?
    } else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "sign in, or present an API key",
        ));
    };
    request.extensions_mut().insert(caller);
    Ok(next.run(request).await)
}
