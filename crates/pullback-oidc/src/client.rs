//! [`OidcClient`]: starts a sign-in (the URL to send the browser to, and the sealed cookie
//! that remembers it) and finishes one (checks the answer, exchanges the code, verifies the
//! ID token, maps the role). The tenant's OpenID configuration and keys are fetched on first
//! use and cached; every request has a timeout and goes over https only.

use crate::discovery::{self, ProviderMetadata, Tenant};
use crate::error::SignInError;
use crate::flow::{FlowState, Sealer};
use crate::jwks::{KeyCache, Lookup, RsaPublicKey, parse_key_set};
use crate::jwt::{self, Expectations};
use crate::roles::Memberships;
use crate::settings::{OidcSettings, SettingsError};
use crate::token::{self, SCOPES, TokenResponse, cut};
use pullback_domain::Role;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The OpenID configuration is fetched again after this long.
const CONFIGURATION_AGE: Duration = Duration::from_secs(24 * 3600);
/// The largest answer read from Azure AD.
const MAX_ANSWER: usize = 1 << 20;
/// Seal purposes: a flow cookie and a message for the sign-in page.
const FLOW: &str = "flow";
const NOTICE: &str = "notice";

/// Where to send the browser, and the cookie to set before.
pub struct SignInStart {
    /// The authorization request.
    pub authorize_url: String,
    /// The sealed flow, for an `HttpOnly` cookie that the callback reads.
    pub flow_cookie: String,
}

/// The parameters Azure AD returns to the callback.
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct Callback {
    /// The authorization code.
    #[serde(default)]
    pub code: Option<String>,
    /// The state sent.
    #[serde(default)]
    pub state: Option<String>,
    /// The OAuth error, instead of a code.
    #[serde(default)]
    pub error: Option<String>,
    /// `AADSTS…` text with the error.
    #[serde(default)]
    pub error_description: Option<String>,
}

/// Someone Azure AD vouched for, with the role their groups or app roles grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedIn {
    /// The sign-in name (`preferred_username`, else `upn`, `email` or the object id).
    pub user: String,
    /// The display name, when the token has one.
    pub display_name: Option<String>,
    /// The user's object id in the tenant.
    pub object_id: String,
    /// The tenant id.
    pub tenant_id: String,
    /// The Pullback role granted.
    pub role: Role,
    /// The UI route to go to.
    pub return_to: String,
}

/// Sign-in with Azure AD for one configuration.
pub struct OidcClient {
    settings: OidcSettings,
    http: reqwest::Client,
    sealer: Sealer,
    provider: tokio::sync::Mutex<Option<(ProviderMetadata, Tenant, Instant)>>,
    keys: tokio::sync::Mutex<KeyCache>,
}

impl std::fmt::Debug for OidcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcClient")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The time now in Unix seconds.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl OidcClient {
    /// Checks the settings and builds the HTTP client.
    pub fn new(settings: OidcSettings) -> Result<OidcClient, SettingsError> {
        settings.check()?;
        let fail = |problem: String| SettingsError {
            problems: vec![problem],
        };
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .https_only(true)
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("pullback/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &settings.ca_pem {
            let roots = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| fail(format!("ca_file: not PEM certificates ({e})")))?;
            if roots.is_empty() {
                return Err(fail("ca_file: no certificate in the file".to_owned()));
            }
            for root in roots {
                builder = builder.add_root_certificate(root);
            }
        }
        let http = builder
            .build()
            .map_err(|e| fail(format!("cannot build the HTTP client: {e}")))?;
        let sealer = Sealer::new(
            settings.credential.secret_material(),
            settings.client_id.trim(),
        );
        let keys = KeyCache::new(settings.key_refresh_interval);
        Ok(OidcClient {
            settings,
            http,
            sealer,
            provider: tokio::sync::Mutex::new(None),
            keys: tokio::sync::Mutex::new(keys),
        })
    }

    /// The settings in force.
    pub fn settings(&self) -> &OidcSettings {
        &self.settings
    }

    /// Starts a sign-in that returns to the UI route `return_to`.
    pub async fn begin(&self, return_to: &str) -> Result<SignInStart, SignInError> {
        let (metadata, _) = self.provider().await?;
        let flow = FlowState::new(return_to, unix_now())
            .map_err(|_| SignInError::Local("no random numbers".into()))?;
        let mut url = reqwest::Url::parse(&metadata.authorization_endpoint).map_err(|e| {
            SignInError::BadAnswer {
                url: metadata.authorization_endpoint.clone(),
                reason: e.to_string(),
            }
        })?;
        url.query_pairs_mut()
            .append_pair("client_id", self.settings.client_id.trim())
            .append_pair("response_type", "code")
            .append_pair("redirect_uri", &self.settings.redirect_url)
            .append_pair("response_mode", "query")
            .append_pair("scope", SCOPES)
            .append_pair("state", &flow.state)
            .append_pair("nonce", &flow.nonce)
            .append_pair("code_challenge", &flow.challenge())
            .append_pair("code_challenge_method", "S256");
        let json = serde_json::to_vec(&flow).map_err(|e| SignInError::Local(e.to_string()))?;
        let flow_cookie = self
            .sealer
            .seal(FLOW, &json)
            .map_err(|_| SignInError::Local("cannot seal the sign-in cookie".into()))?;
        Ok(SignInStart {
            authorize_url: url.into(),
            flow_cookie,
        })
    }

    /// Finishes a sign-in from the callback's parameters and the flow cookie.
    pub async fn finish(
        &self,
        callback: &Callback,
        flow_cookie: Option<&str>,
    ) -> Result<SignedIn, SignInError> {
        let flow: FlowState = flow_cookie
            .and_then(|sealed| self.sealer.open(FLOW, sealed))
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or(SignInError::NoFlow)?;
        let now = unix_now();
        if flow.expired(now) {
            return Err(SignInError::FlowExpired);
        }
        let state_matches = callback
            .state
            .as_deref()
            .is_some_and(|s| s.as_bytes() == flow.state.as_bytes());
        if !state_matches {
            return Err(SignInError::State);
        }
        if let Some(error) = &callback.error {
            let answer = token::ErrorAnswer {
                error: error.clone(),
                error_description: callback.error_description.clone(),
                error_codes: Vec::new(),
            };
            return Err(SignInError::Refused(answer.summary()));
        }
        let code = callback
            .code
            .as_deref()
            .filter(|c| !c.is_empty())
            .ok_or(SignInError::NoCode)?;
        let (metadata, tenant) = self.provider().await?;
        let id_token = self.redeem(&metadata, code, &flow.verifier, now).await?;

        let parsed = jwt::parse(&id_token)?;
        let kid = parsed.key_id()?.to_owned();
        let key = self.key(&kid, &metadata.jwks_uri).await?;
        parsed.verify_signature(&key)?;
        let claims = parsed.check_claims(&Expectations {
            issuer: &tenant.issuer,
            client_id: self.settings.client_id.trim(),
            tenant_id: &tenant.id,
            nonce: &flow.nonce,
            now: unix_now(),
        })?;
        let object_id = claims.oid.clone().unwrap_or_default();
        let user = [&claims.preferred_username, &claims.upn, &claims.email]
            .into_iter()
            .flatten()
            .map(|name| cut(name.trim(), 256))
            .find(|name| !name.is_empty())
            .unwrap_or_else(|| object_id.clone());
        let role = self.settings.roles.role_of(&Memberships {
            user: &user,
            groups: &claims.groups,
            app_roles: &claims.roles,
            groups_left_out: claims.groups_left_out(),
        })?;
        Ok(SignedIn {
            user,
            display_name: claims.name.as_deref().map(|n| cut(n, 256)),
            object_id,
            tenant_id: tenant.id,
            role,
            return_to: flow.return_to,
        })
    }

    /// Seals a message for the sign-in page (shown once, after a failed callback).
    pub fn seal_notice(&self, message: &str) -> Option<String> {
        let message = cut(message, 600);
        self.sealer.seal(NOTICE, message.as_bytes()).ok()
    }

    /// Opens a message sealed by [`seal_notice`](Self::seal_notice).
    pub fn open_notice(&self, sealed: &str) -> Option<String> {
        let bytes = self.sealer.open(NOTICE, sealed)?;
        String::from_utf8(bytes).ok()
    }

    /// The tenant's configuration, fetched on first use and after a day; a failed fetch
    /// keeps an older configuration in use.
    async fn provider(&self) -> Result<(ProviderMetadata, Tenant), SignInError> {
        let mut cached = self.provider.lock().await;
        if let Some((metadata, tenant, at)) = cached.as_ref()
            && at.elapsed() < CONFIGURATION_AGE
        {
            return Ok((metadata.clone(), tenant.clone()));
        }
        let url = self
            .settings
            .discovery_url()
            .ok_or_else(|| SignInError::Local("no authority configured".into()))?;
        let fetched = self.get_json(&url).await.and_then(|body| {
            discovery::read(&body, &self.settings).map_err(|reason| SignInError::BadAnswer {
                url: url.clone(),
                reason,
            })
        });
        match (fetched, cached.as_ref()) {
            (Ok((metadata, tenant)), _) => {
                tracing::debug!(%url, issuer = %tenant.issuer, "OpenID configuration fetched");
                *cached = Some((metadata.clone(), tenant.clone(), Instant::now()));
                Ok((metadata, tenant))
            }
            (Err(e), Some((metadata, tenant, _))) => {
                tracing::warn!(%url, error = %e, "OpenID configuration not refreshed; the older one stays");
                Ok((metadata.clone(), tenant.clone()))
            }
            (Err(e), None) => Err(e),
        }
    }

    /// The key of `kid`, fetching the key set when the cache says so.
    async fn key(&self, kid: &str, jwks_uri: &str) -> Result<RsaPublicKey, SignInError> {
        let mut cache = self.keys.lock().await;
        match cache.lookup(kid, Instant::now()) {
            Lookup::Found(key) => return Ok(key),
            Lookup::Unknown => {
                return Err(jwt::TokenError::UnknownKey {
                    kid: kid.to_owned(),
                }
                .into());
            }
            Lookup::Fetch => {}
        }
        let fetched = self.get_json(jwks_uri).await.and_then(|body| {
            parse_key_set(&body).map_err(|reason| SignInError::BadAnswer {
                url: jwks_uri.to_owned(),
                reason,
            })
        });
        match fetched {
            Ok(keys) => {
                tracing::debug!(url = %jwks_uri, keys = keys.len(), "signing keys fetched");
                cache.store(keys, Instant::now());
            }
            Err(e) => {
                // An older set that has the key still verifies; otherwise the sign-in fails.
                tracing::warn!(url = %jwks_uri, error = %e, "signing keys not fetched");
                if cache.get(kid).is_none() {
                    return Err(e);
                }
            }
        }
        cache.get(kid).ok_or_else(|| {
            jwt::TokenError::UnknownKey {
                kid: kid.to_owned(),
            }
            .into()
        })
    }

    /// Exchanges the code; answers the ID token.
    async fn redeem(
        &self,
        metadata: &ProviderMetadata,
        code: &str,
        verifier: &str,
        now: i64,
    ) -> Result<String, SignInError> {
        let url = &metadata.token_endpoint;
        let form = token::request_form(
            self.settings.client_id.trim(),
            code,
            &self.settings.redirect_url,
            verifier,
            &self.settings.credential,
            url,
            now,
        )
        .map_err(SignInError::Local)?;
        let response = self
            .http
            .post(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| SignInError::Unreachable {
                url: url.clone(),
                reason: reqwest_reason(&e),
            })?;
        let status = response.status();
        let body = read_limited(response, url).await?;
        if !status.is_success() {
            return Err(SignInError::TokenRefused(token::describe_error(
                status.as_u16(),
                &body,
            )));
        }
        let answer: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| SignInError::BadAnswer {
                url: url.clone(),
                reason: format!("the token answer is not JSON: {e}"),
            })?;
        answer.id_token.ok_or_else(|| SignInError::BadAnswer {
            url: url.clone(),
            reason: "the token answer has no id_token (was the openid scope granted?)".into(),
        })
    }

    async fn get_json(&self, url: &str) -> Result<Vec<u8>, SignInError> {
        let response = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| SignInError::Unreachable {
                url: url.to_owned(),
                reason: reqwest_reason(&e),
            })?;
        let status = response.status();
        let body = read_limited(response, url).await?;
        if !status.is_success() {
            return Err(SignInError::BadAnswer {
                url: url.to_owned(),
                reason: format!(
                    "HTTP {status}: {}",
                    token::describe_error(status.as_u16(), &body)
                ),
            });
        }
        Ok(body)
    }
}

/// Reads a body of at most [`MAX_ANSWER`] bytes.
async fn read_limited(mut response: reqwest::Response, url: &str) -> Result<Vec<u8>, SignInError> {
    let mut body = Vec::new();
    loop {
        let chunk = response
            .chunk()
            .await
            .map_err(|e| SignInError::Unreachable {
                url: url.to_owned(),
                reason: reqwest_reason(&e),
            })?;
        let Some(chunk) = chunk else {
            return Ok(body);
        };
        if body.len() + chunk.len() > MAX_ANSWER {
            return Err(SignInError::BadAnswer {
                url: url.to_owned(),
                reason: format!("the answer is larger than {MAX_ANSWER} bytes"),
            });
        }
        body.extend_from_slice(&chunk);
    }
}

/// The error and its causes in one line: reqwest's own message alone hides why.
fn reqwest_reason(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "timed out".to_owned()
    } else {
        error.to_string()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    // reqwest names the URL, which the caller already does; keep it short either way.
    cut(&text, 300)
}
