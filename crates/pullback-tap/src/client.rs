//! The HTTP client of the TAP SIEM API: one window, one call, one envelope.

use crate::event::{Envelope, EnvelopeError, parse_envelope};
use crate::window::Window;
use reqwest::StatusCode;
use std::fmt;
use std::time::Duration;

/// The path every poll asks: all four kinds of event in one answer.
pub const ALL_PATH: &str = "/v2/siem/all";

/// How much of a refusal's body an error keeps.
const BODY_EXCERPT: usize = 512;

/// Where the API is and how to authenticate to it.
#[derive(Clone)]
pub struct TapClientConfig {
    /// The API's root, such as `https://tap-api-v2.proofpoint.com`, without a path.
    pub base_url: String,
    /// The service principal, sent as the Basic auth user name.
    pub principal: String,
    /// The service secret, sent as the Basic auth password; never logged.
    pub secret: String,
    /// The limit on one whole call, connection to last byte.
    pub timeout: Duration,
}

impl fmt::Debug for TapClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TapClientConfig")
            .field("base_url", &self.base_url)
            .field("principal", &self.principal)
            .field("secret", &"<redacted>")
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Why a window could not be fetched. Messages name the path and the window, never the secret.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("GET {path} for {window}: quota exceeded (429)")]
    RateLimited { path: String, window: Window },
    #[error("GET {path} for {window}: refused with {status}: {body}")]
    BadRequest {
        path: String,
        window: Window,
        status: u16,
        body: String,
    },
    #[error("GET {path} for {window}: the principal and secret were not accepted ({status})")]
    Unauthorized {
        path: String,
        window: Window,
        status: u16,
    },
    #[error("GET {path} for {window}: server error {status}")]
    Server {
        path: String,
        window: Window,
        status: u16,
    },
    #[error("GET {path} for {window}: {detail}")]
    Transport {
        path: String,
        window: Window,
        /// The error and its causes, for logs and the checkpoint.
        detail: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("GET {path} for {window}: {source}")]
    Envelope {
        path: String,
        window: Window,
        #[source]
        source: EnvelopeError,
    },
}

/// The client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the TAP HTTP client: {0}")]
pub struct ClientBuildError(#[source] reqwest::Error);

/// A client of one TAP SIEM API credential.
#[derive(Clone, Debug)]
pub struct TapClient {
    http: reqwest::Client,
    config: TapClientConfig,
}

impl TapClient {
    /// Builds a client whose every call is limited to `config.timeout`.
    pub fn new(config: TapClientConfig) -> Result<Self, ClientBuildError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .user_agent(concat!("pullback/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ClientBuildError)?;
        Ok(TapClient { http, config })
    }

    /// The configuration, secret included; its `Debug` form hides the secret.
    pub fn config(&self) -> &TapClientConfig {
        &self.config
    }

    /// Fetches all events filed within `window`.
    pub async fn fetch(&self, window: Window) -> Result<Envelope, FetchError> {
        let path = ALL_PATH.to_owned();
        let url = format!("{}{ALL_PATH}", self.config.base_url.trim_end_matches('/'));
        let response = self
            .http
            .get(url)
            .basic_auth(&self.config.principal, Some(&self.config.secret))
            .query(&[
                ("format", "json"),
                ("interval", window.to_string().as_str()),
            ])
            .send()
            .await
            .map_err(|e| transport(&path, window, e))?;

        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(self.refusal(path, window, status, &body));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| transport(&path, window, e))?;
        parse_envelope(&body).map_err(|source| FetchError::Envelope {
            path,
            window,
            source,
        })
    }

    fn refusal(&self, path: String, window: Window, status: StatusCode, body: &str) -> FetchError {
        let code = status.as_u16();
        match status {
            StatusCode::TOO_MANY_REQUESTS => FetchError::RateLimited { path, window },
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => FetchError::Unauthorized {
                path,
                window,
                status: code,
            },
            s if s.is_client_error() => FetchError::BadRequest {
                path,
                window,
                status: code,
                body: self.excerpt(body),
            },
            _ => FetchError::Server {
                path,
                window,
                status: code,
            },
        }
    }

    /// The start of a refusal's body, with the secret blanked should a server echo it.
    fn excerpt(&self, body: &str) -> String {
        let mut end = body.len().min(BODY_EXCERPT);
        while !body.is_char_boundary(end) {
            end -= 1;
        }
        let excerpt = body[..end].trim();
        if self.config.secret.is_empty() {
            excerpt.to_owned()
        } else {
            excerpt.replace(&self.config.secret, "<redacted>")
        }
    }
}

/// A transport error with its chain of causes spelled out and the URL left out: the path and
/// window already say which call failed.
fn transport(path: &str, window: Window, err: reqwest::Error) -> FetchError {
    let source = err.without_url();
    let mut detail = source.to_string();
    let mut cause = std::error::Error::source(&source);
    while let Some(err) = cause {
        detail.push_str(": ");
        detail.push_str(&err.to_string());
        cause = err.source();
    }
    FetchError::Transport {
        path: path.to_owned(),
        window,
        detail,
        source,
    }
}
