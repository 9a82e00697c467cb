//! Application tokens from the client-credentials grant, cached until shortly before they
//! expire.
//!
//! One token serves every mailbox. When it is about to expire (five minutes before, or a
//! quarter of its lifetime for short-lived ones), the next caller fetches a new one while
//! the others wait for it, so the token endpoint sees one request per renewal.

use crate::credentials::{ASSERTION_TYPE, Credential, CredentialError};
use serde::Deserialize;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// How long before expiry a token is renewed, at most.
const RENEW_BEFORE: Duration = Duration::from_secs(300);

/// An access token; its `Debug` and `Display` never show it.
#[derive(Clone)]
pub struct AccessToken(Arc<str>);

impl AccessToken {
    /// The token, for the `Authorization` header only.
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(<redacted>)")
    }
}

/// Why no token could be had. Messages carry the endpoint's error code and description
/// (which Azure AD writes for people, with its `AADSTS` number), never the credential.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token endpoint {url} refused the request ({status} {error}): {description}")]
    Refused {
        url: String,
        status: u16,
        error: String,
        description: String,
    },
    #[error("the token endpoint {url} could not be reached: {detail}")]
    Transport { url: String, detail: String },
    #[error("the token endpoint {url} answered {status} with a body that is not a token: {detail}")]
    Malformed {
        url: String,
        status: u16,
        detail: String,
    },
    #[error("cannot sign the client assertion: {0}")]
    Assertion(#[from] CredentialError),
}

impl TokenError {
    /// True when asking again later may work (the endpoint was unreachable or overloaded);
    /// false when the configuration is wrong.
    pub fn is_transient(&self) -> bool {
        match self {
            TokenError::Transport { .. } => true,
            TokenError::Refused { status, .. } | TokenError::Malformed { status, .. } => {
                *status == 429 || *status >= 500
            }
            TokenError::Assertion(_) => false,
        }
    }
}

/// Where and how to ask for tokens.
#[derive(Clone, Debug)]
pub struct TokenConfig {
    /// The tenant's v2.0 token endpoint.
    pub token_url: String,
    pub client_id: String,
    /// `https://<graph resource>/.default`.
    pub scope: String,
    pub credential: Credential,
}

/// Fetches and caches the application's token.
pub struct TokenSource {
    http: reqwest::Client,
    config: TokenConfig,
    cached: Mutex<Option<Cached>>,
}

struct Cached {
    token: AccessToken,
    renew_at: Instant,
}

#[derive(Deserialize)]
struct TokenReply {
    access_token: String,
    #[serde(default)]
    token_type: String,
    expires_in: u64,
}

#[derive(Deserialize)]
struct ErrorReply {
    error: String,
    #[serde(default)]
    error_description: String,
}

impl TokenSource {
    pub fn new(http: reqwest::Client, config: TokenConfig) -> TokenSource {
        TokenSource {
            http,
            config,
            cached: Mutex::new(None),
        }
    }

    /// A token valid for a while yet: the cached one, or a new one.
    pub async fn token(&self) -> Result<AccessToken, TokenError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref()
            && Instant::now() < c.renew_at
        {
            return Ok(c.token.clone());
        }
        let fresh = self.fetch().await?;
        let token = fresh.token.clone();
        *cached = Some(fresh);
        Ok(token)
    }

    /// Forgets `stale` after Graph refused it, so the next call fetches a new token; a token
    /// that another caller already replaced is left alone.
    pub async fn forget(&self, stale: &AccessToken) {
        let mut cached = self.cached.lock().await;
        if cached
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(&c.token.0, &stale.0))
        {
            *cached = None;
        }
    }

    async fn fetch(&self) -> Result<Cached, TokenError> {
        let url = &self.config.token_url;
        let mut form = vec![
            ("grant_type", "client_credentials".to_owned()),
            ("client_id", self.config.client_id.clone()),
            ("scope", self.config.scope.clone()),
        ];
        match &self.config.credential {
            Credential::Secret(secret) => form.push(("client_secret", secret.clone())),
            Credential::Certificate(cert) => {
                let now = chrono::Utc::now().timestamp();
                let assertion = cert.assertion(&self.config.client_id, url, now)?;
                form.push(("client_assertion_type", ASSERTION_TYPE.to_owned()));
                form.push(("client_assertion", assertion));
            }
        }
        let asked = Instant::now();
        let transport = |e: reqwest::Error| TokenError::Transport {
            url: url.clone(),
            detail: error_chain(&e),
        };
        let response = self
            .http
            .post(url)
            .form(&form)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(transport)?;
        if status != 200 {
            return Err(refusal(url, status, &body));
        }
        let reply: TokenReply =
            serde_json::from_slice(&body).map_err(|e| TokenError::Malformed {
                url: url.clone(),
                status,
                detail: e.to_string(),
            })?;
        if !reply.token_type.eq_ignore_ascii_case("bearer") || reply.access_token.is_empty() {
            return Err(TokenError::Malformed {
                url: url.clone(),
                status,
                detail: format!("token_type {:?} is not Bearer", reply.token_type),
            });
        }
        let lifetime = Duration::from_secs(reply.expires_in);
        let margin = RENEW_BEFORE.min(lifetime / 4);
        tracing::debug!(lifetime_secs = reply.expires_in, "new Graph access token");
        Ok(Cached {
            token: AccessToken(reply.access_token.into()),
            renew_at: asked + lifetime - margin,
        })
    }
}

fn refusal(url: &str, status: u16, body: &[u8]) -> TokenError {
    match serde_json::from_slice::<ErrorReply>(body) {
        Ok(reply) => TokenError::Refused {
            url: url.to_owned(),
            status,
            error: reply.error,
            description: first_line(&reply.error_description),
        },
        Err(_) => TokenError::Malformed {
            url: url.to_owned(),
            status,
            detail: "no OAuth error in the body".into(),
        },
    }
}

/// Azure AD descriptions end with trace and correlation ids on further lines.
fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().trim().to_owned()
}

/// An error with its causes, which reqwest keeps apart ("error sending request: connection
/// refused").
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
