//! The local token endpoint (`/{tenant}/oauth2/v2.0/token`, client-credentials grant) and
//! the bearer check of the local Graph.
//!
//! It refuses as Azure AD does: an unknown tenant or application, a scope that is not one
//! resource's `/.default`, a resource this cloud does not have, a wrong secret, an assertion
//! signed by an unregistered certificate, with a bad signature, addressed elsewhere or out of
//! its time range. Graph refuses a missing, unknown or expired token, one issued for another
//! cloud's Graph, and an application without the `Mail.ReadWrite` role.

use super::LocalGraphState;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::time::Instant;

/// How far an assertion's times may be off.
const CLOCK_SKEW_SECS: i64 = 300;

/// A tenant and the names it is known by.
#[derive(Clone, Debug)]
pub struct Tenant {
    pub id: String,
    pub domains: Vec<String>,
}

/// An application registered in a tenant.
#[derive(Clone, Debug)]
pub struct App {
    pub tenant: String,
    pub client_id: String,
    pub secret: Option<String>,
    /// DER certificates whose keys may sign assertions.
    pub certificates: Vec<Vec<u8>>,
    /// Application permissions granted (with admin consent), such as `Mail.ReadWrite`.
    pub roles: Vec<String>,
}

/// What a token stands for.
#[derive(Clone, Debug)]
pub struct Issued {
    pub client_id: String,
    pub audience: String,
    pub roles: Vec<String>,
    pub expires: Instant,
}

/// An OAuth error answer: status and body.
pub type Refusal = (u16, Value);

fn oauth_error(status: u16, error: &str, code: u32, description: &str) -> Refusal {
    let description = format!("AADSTS{code}: {description}");
    (
        status,
        json!({
            "error": error,
            "error_description": format!("{description}\r\nTrace ID: 00000000-0000-0000-0000-000000000000\r\nTimestamp: {}", chrono::Utc::now().format("%Y-%m-%d %H:%M:%SZ")),
            "error_codes": [code],
            "timestamp": chrono::Utc::now().to_rfc3339(),
        }),
    )
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn missing(name: &str) -> Refusal {
    oauth_error(
        400,
        "invalid_request",
        900144,
        &format!("The request body must contain the following parameter: '{name}'."),
    )
}

impl LocalGraphState {
    /// Answers a token request for the tenant named in the path.
    pub(super) fn token_request(
        &self,
        tenant_in_path: &str,
        content_type: Option<&str>,
        form: &[(String, String)],
    ) -> Result<Value, Refusal> {
        let form_type =
            content_type.is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
        if !form_type {
            return Err(oauth_error(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'grant_type'.",
            ));
        }
        let (tenants, apps, known, lifetime) = {
            let inner = self.inner();
            let known = inner.known_resources.clone();
            (
                inner.tenants.clone(),
                inner.apps.clone(),
                known,
                inner.token_lifetime,
            )
        };
        let Some(tenant) = tenants.iter().find(|t| {
            t.id.eq_ignore_ascii_case(tenant_in_path)
                || t.domains
                    .iter()
                    .any(|d| d.eq_ignore_ascii_case(tenant_in_path))
        }) else {
            return Err(oauth_error(
                400,
                "invalid_request",
                90002,
                &format!("Tenant '{tenant_in_path}' not found."),
            ));
        };
        match field(form, "grant_type") {
            Some("client_credentials") => {}
            Some(other) => {
                return Err(oauth_error(
                    400,
                    "unsupported_grant_type",
                    70003,
                    &format!("The app requested an unsupported grant type '{other}'."),
                ));
            }
            None => return Err(missing("grant_type")),
        }
        let client_id = field(form, "client_id").ok_or_else(|| missing("client_id"))?;
        let Some(app) = apps
            .iter()
            .find(|a| a.tenant == tenant.id && a.client_id == client_id)
        else {
            return Err(oauth_error(
                400,
                "unauthorized_client",
                700016,
                &format!(
                    "Application with identifier '{client_id}' was not found in the directory \
                     '{tenant_in_path}'."
                ),
            ));
        };
        let scope = field(form, "scope").ok_or_else(|| missing("scope"))?;
        let audience = check_scope(&known, scope, tenant_in_path)?;
        let token_url = format!("{}/{tenant_in_path}/oauth2/v2.0/token", self.base_url());
        let tenant_url = format!("{}/{}/oauth2/v2.0/token", self.base_url(), tenant.id);
        authenticate(app, form, &[token_url, tenant_url])?;

        let token = random_token();
        let issued = Issued {
            client_id: app.client_id.clone(),
            audience,
            roles: app.roles.clone(),
            expires: Instant::now() + lifetime,
        };
        let mut inner = self.inner();
        inner.tokens.insert(token.clone(), issued);
        inner.tokens_issued += 1;
        Ok(json!({
            "token_type": "Bearer",
            "expires_in": lifetime.as_secs(),
            "ext_expires_in": lifetime.as_secs(),
            "access_token": token,
        }))
    }
}

/// The resource of a client-credentials scope, which must be one `<resource>/.default` this
/// cloud knows.
fn check_scope(known: &[String], scope: &str, tenant: &str) -> Result<String, Refusal> {
    let scope = scope.trim();
    let Some(resource) = scope.strip_suffix("/.default") else {
        return Err(oauth_error(
            400,
            "invalid_scope",
            1002012,
            &format!(
                "The provided value for scope {scope} is not valid. Client credential flows \
                     must have a scope value with /.default suffixed to the resource identifier \
                     (application ID URI)."
            ),
        ));
    };
    if resource.contains(' ') || resource.is_empty() {
        return Err(oauth_error(
            400,
            "invalid_scope",
            70011,
            &format!("The provided value for the input parameter 'scope' is not valid: {scope}."),
        ));
    }
    if !known.iter().any(|r| r.eq_ignore_ascii_case(resource)) {
        return Err(oauth_error(
            400,
            "invalid_resource",
            500011,
            &format!(
                "The resource principal named {resource} was not found in the tenant named \
                     {tenant}."
            ),
        ));
    }
    Ok(resource.to_owned())
}

impl LocalGraphState {
    /// Checks `Authorization: Bearer ...` for Graph; the caller's application on success,
    /// Graph's 401 or 403 otherwise.
    pub(super) fn bearer(&self, authorization: Option<&str>) -> Result<Issued, (u16, Value)> {
        let unauthorized = |message: &str| {
            (
                401,
                json!({ "error": { "code": "InvalidAuthenticationToken", "message": message } }),
            )
        };
        let token = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| unauthorized("Access token is empty."))?;
        let inner = self.inner();
        let issued = inner
            .tokens
            .get(token)
            .cloned()
            .ok_or_else(|| unauthorized("IDX14100: JWT is not well formed."))?;
        if Instant::now() >= issued.expires {
            return Err(unauthorized(
                "Lifetime validation failed, the token is expired.",
            ));
        }
        if !issued.audience.eq_ignore_ascii_case(&inner.resource) {
            return Err(unauthorized(
                "Access token validation failure. Invalid audience.",
            ));
        }
        if !issued.roles.iter().any(|r| r == "Mail.ReadWrite") {
            return Err((
                403,
                json!({ "error": { "code": "ErrorAccessDenied", "message": "Access is denied. Check credentials and try again." } }),
            ));
        }
        Ok(issued)
    }
}

/// Checks the secret or the assertion of a token request.
fn authenticate(app: &App, form: &[(String, String)], audiences: &[String]) -> Result<(), Refusal> {
    let invalid =
        |code: u32, description: &str| oauth_error(401, "invalid_client", code, description);
    if let Some(secret) = field(form, "client_secret") {
        if app.secret.as_deref() == Some(secret) {
            return Ok(());
        }
        return Err(invalid(
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the \
             client secret value, not the client secret ID.",
        ));
    }
    let Some(assertion) = field(form, "client_assertion") else {
        return Err(oauth_error(
            400,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or \
             'client_secret'.",
        ));
    };
    if field(form, "client_assertion_type") != Some(crate::credentials::ASSERTION_TYPE) {
        return Err(oauth_error(
            400,
            "invalid_request",
            700015,
            "The client_assertion_type is not urn:ietf:params:oauth:client-assertion-type:jwt-bearer.",
        ));
    }
    verify_assertion(app, assertion, audiences).map_err(|(code, why)| invalid(code, &why))
}

/// Verifies a client assertion: registered certificate, signature, audience, subject, times.
fn verify_assertion(app: &App, assertion: &str, audiences: &[String]) -> Result<(), (u32, String)> {
    let parts: Vec<&str> = assertion.split('.').collect();
    let [header, claims, signature] = parts.as_slice() else {
        return Err((
            50027,
            "Invalid JWT token. The token is not in a valid format.".into(),
        ));
    };
    let decode = |part: &str| -> Result<Value, (u32, String)> {
        let bytes = URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| (50027, "Invalid JWT token. Not base64url.".to_owned()))?;
        serde_json::from_slice(&bytes)
            .map_err(|_| (50027, "Invalid JWT token. Not JSON.".to_owned()))
    };
    let (header, claims) = (decode(header)?, decode(claims)?);
    let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| {
        (
            50027,
            "Invalid JWT token. The signature is not base64url.".to_owned(),
        )
    })?;

    let (algorithm, thumbprint, digest): (
        &'static dyn ring::signature::VerificationAlgorithm,
        _,
        _,
    ) = match header["alg"].as_str() {
        Some("PS256") => (
            &ring::signature::RSA_PSS_2048_8192_SHA256,
            header["x5t#S256"].as_str(),
            &ring::digest::SHA256,
        ),
        Some("RS256") => (
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            header["x5t"].as_str(),
            &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        ),
        other => {
            return Err((
                5002738,
                format!("The JWT algorithm {other:?} is not supported."),
            ));
        }
    };
    let thumbprint = thumbprint
        .and_then(|t| URL_SAFE_NO_PAD.decode(t).ok())
        .ok_or((
            700027,
            "Client assertion contains no certificate thumbprint.".to_owned(),
        ))?;
    let certificate = app
        .certificates
        .iter()
        .find(|der| ring::digest::digest(digest, der).as_ref() == thumbprint.as_slice())
        .ok_or((
            700027,
            "The certificate with identifier used to sign the client assertion is not registered \
             on application."
                .to_owned(),
        ))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate).map_err(|_| {
        (
            700027,
            "The registered certificate cannot be read.".to_owned(),
        )
    })?;
    let key = ring::signature::UnparsedPublicKey::new(
        algorithm,
        parsed.public_key().subject_public_key.data.to_vec(),
    );
    let signing_input = assertion
        .rsplit_once('.')
        .map(|(s, _)| s)
        .unwrap_or_default();
    key.verify(signing_input.as_bytes(), &signature)
        .map_err(|_| {
            (
                700027,
                "Client assertion failed signature validation.".to_owned(),
            )
        })?;

    let audience = claims["aud"].as_str().unwrap_or_default();
    if !audiences.iter().any(|a| a == audience) {
        return Err((
            700212,
            format!(
                "The audience claim of the client assertion ('{audience}') is not the token endpoint."
            ),
        ));
    }
    if claims["iss"].as_str() != Some(&app.client_id)
        || claims["sub"].as_str() != Some(&app.client_id)
    {
        return Err((
            700021,
            "Client assertion application identifier doesn't match 'client_id' parameter.".into(),
        ));
    }
    let now = chrono::Utc::now().timestamp();
    let (nbf, exp) = (claims["nbf"].as_i64(), claims["exp"].as_i64());
    let in_range = matches!((nbf, exp), (Some(nbf), Some(exp))
        if nbf <= now + CLOCK_SKEW_SECS && exp > now - CLOCK_SKEW_SECS && exp > nbf);
    if !in_range || claims["jti"].as_str().is_none_or(str::is_empty) {
        return Err((
            700024,
            "Client assertion is not within its valid time range.".into(),
        ));
    }
    Ok(())
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("randomness for tokens");
    format!("eyJ0eXAiOiJKV1Qi.{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// The default lifetime of a token, as Azure AD gives.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(3599);
