//! The token request: the authorization code, the PKCE verifier, and the application's proof
//! of itself, either its client secret or a client assertion signed with its certificate's
//! key (RFC 7523, as Microsoft documents it: PS256 with the certificate's SHA-256 thumbprint
//! in `x5t#S256`). Azure AD's error answers are reduced to what a person can act on.

use crate::encoding::{b64url, random_bytes, sha256};
use crate::settings::ClientCredential;
use serde::Deserialize;
use serde_json::json;

/// The scopes a sign-in asks for: an ID token with the user's name and address.
pub const SCOPES: &str = "openid profile email";

/// How long a client assertion is valid, in seconds.
const ASSERTION_LIFETIME_SECS: i64 = 300;

/// The form of the token request. The secret, if any, is in it: never log it.
pub fn request_form(
    client_id: &str,
    code: &str,
    redirect_uri: &str,
    verifier: &str,
    credential: &ClientCredential,
    token_endpoint: &str,
    now: i64,
) -> Result<Vec<(&'static str, String)>, String> {
    let mut form = vec![
        ("client_id", client_id.to_owned()),
        ("grant_type", "authorization_code".to_owned()),
        ("scope", SCOPES.to_owned()),
        ("code", code.to_owned()),
        ("redirect_uri", redirect_uri.to_owned()),
        ("code_verifier", verifier.to_owned()),
    ];
    match credential {
        ClientCredential::Secret(secret) => form.push(("client_secret", secret.0.clone())),
        ClientCredential::Certificate { .. } => {
            form.push((
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_owned(),
            ));
            form.push((
                "client_assertion",
                client_assertion(credential, client_id, token_endpoint, now)?,
            ));
        }
    }
    Ok(form)
}

/// A client assertion for `audience` (the token endpoint), signed with the certificate's key.
pub fn client_assertion(
    credential: &ClientCredential,
    client_id: &str,
    audience: &str,
    now: i64,
) -> Result<String, String> {
    let ClientCredential::Certificate {
        certificate_der,
        key,
    } = credential
    else {
        return Err("a client assertion needs a certificate credential".to_owned());
    };
    let header = json!({
        "alg": "PS256",
        "typ": "JWT",
        "x5t#S256": b64url(sha256(certificate_der)),
    });
    let claims = json!({
        "aud": audience,
        "iss": client_id,
        "sub": client_id,
        "jti": random_guid().map_err(|_| "no random numbers for the assertion id")?,
        "nbf": now,
        "iat": now,
        "exp": now + ASSERTION_LIFETIME_SECS,
    });
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string()),
        b64url(claims.to_string())
    );
    let key_pair = key.key_pair()?;
    let mut signature = vec![0u8; key_pair.public().modulus_len()];
    key_pair
        .sign(
            &ring::signature::RSA_PSS_SHA256,
            &ring::rand::SystemRandom::new(),
            signing_input.as_bytes(),
            &mut signature,
        )
        .map_err(|_| "the certificate's key could not sign the assertion".to_owned())?;
    Ok(format!("{signing_input}.{}", b64url(signature)))
}

/// A random GUID (version 4) in its usual text form.
fn random_guid() -> Result<String, ring::error::Unspecified> {
    let mut b = random_bytes::<16>()?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    ))
}

/// The fields of a successful token answer that matter.
#[derive(Deserialize)]
pub struct TokenResponse {
    /// The ID token; absent if `openid` was not granted.
    #[serde(default)]
    pub id_token: Option<String>,
}

/// Azure AD's error answer (OAuth 2.0 plus its own fields).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct ErrorAnswer {
    /// The OAuth error code, such as `invalid_grant`.
    pub error: String,
    /// `AADSTS<code>: <text>`, followed by trace lines.
    #[serde(default)]
    pub error_description: Option<String>,
    /// The AADSTS numbers.
    #[serde(default)]
    pub error_codes: Vec<u64>,
}

impl ErrorAnswer {
    /// `error: AADSTS…: first line`, without the trace and correlation ids that follow,
    /// and cut to a length a page can show.
    pub fn summary(&self) -> String {
        let description = self
            .error_description
            .as_deref()
            .and_then(|d| d.lines().next())
            .map(str::trim)
            .filter(|d| !d.is_empty());
        let text = match description {
            Some(description) => format!("{}: {description}", self.error),
            None => self.error.clone(),
        };
        cut(&text, 400)
    }
}

/// Reads an error answer; for an answer that is not one, says what came.
pub fn describe_error(status: u16, body: &[u8]) -> String {
    match serde_json::from_slice::<ErrorAnswer>(body) {
        Ok(answer) => answer.summary(),
        Err(_) => format!(
            "HTTP {status} with a body that is not an OAuth error ({})",
            cut(&String::from_utf8_lossy(body), 120)
        ),
    }
}

/// At most `max` characters of `text`, control characters replaced.
pub(crate) fn cut(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::keys::fixture;
    use pullback_domain::Secret;

    #[test]
    fn a_secret_goes_in_the_form_and_a_certificate_signs_an_assertion() {
        let secret = ClientCredential::Secret(Secret("s3cret".into()));
        let form = request_form(
            "app",
            "code",
            "https://p/cb",
            "ver",
            &secret,
            "https://t",
            0,
        )
        .unwrap();
        assert!(form.contains(&("client_secret", "s3cret".into())));
        assert!(form.contains(&("code_verifier", "ver".into())));
        assert!(!form.iter().any(|(k, _)| *k == "client_assertion"));

        let client = fixture("client");
        let credential = client.certificate_credential("CN=pullback-test");
        let form = request_form(
            "app",
            "code",
            "https://p/cb",
            "ver",
            &credential,
            "https://idp.test/t/oauth2/v2.0/token",
            1_700_000_000,
        )
        .unwrap();
        assert!(!form.iter().any(|(k, _)| *k == "client_secret"));
        let assertion = &form
            .iter()
            .find(|(k, _)| *k == "client_assertion")
            .expect("an assertion")
            .1;
        let parts: Vec<&str> = assertion.split('.').collect();
        let header: serde_json::Value =
            serde_json::from_slice(&crate::encoding::from_b64url(parts[0]).unwrap()).unwrap();
        let claims: serde_json::Value =
            serde_json::from_slice(&crate::encoding::from_b64url(parts[1]).unwrap()).unwrap();
        assert_eq!(header["alg"], "PS256");
        let ClientCredential::Certificate {
            certificate_der, ..
        } = &credential
        else {
            unreachable!()
        };
        assert_eq!(header["x5t#S256"], b64url(sha256(certificate_der)));
        assert_eq!(claims["aud"], "https://idp.test/t/oauth2/v2.0/token");
        assert_eq!(claims["iss"], "app");
        assert_eq!(claims["sub"], "app");
        assert_eq!(claims["exp"], 1_700_000_000 + ASSERTION_LIFETIME_SECS);
        // The signature verifies with the certificate's public key (PSS).
        let public = client.public();
        let signature = crate::encoding::from_b64url(parts[2]).unwrap();
        ring::signature::RsaPublicKeyComponents {
            n: &public.n,
            e: &public.e,
        }
        .verify(
            &ring::signature::RSA_PSS_2048_8192_SHA256,
            format!("{}.{}", parts[0], parts[1]).as_bytes(),
            &signature,
        )
        .expect("the assertion verifies");
    }

    #[test]
    fn error_answers_keep_the_first_line_only() {
        let body = br#"{"error":"invalid_grant","error_description":"AADSTS70008: The provided authorization code or refresh token has expired due to inactivity.\r\nTrace ID: 0000aaaa\r\nCorrelation ID: bbbb\r\nTimestamp: 2024-01-09 02:02:12Z","error_codes":[70008]}"#;
        assert_eq!(
            describe_error(400, body),
            "invalid_grant: AADSTS70008: The provided authorization code or refresh token has \
             expired due to inactivity."
        );
        assert_eq!(
            describe_error(400, br#"{"error":"invalid_client"}"#),
            "invalid_client"
        );
        let html = describe_error(502, b"<html>Bad gateway</html>");
        assert!(
            html.starts_with("HTTP 502 with a body that is not"),
            "{html}"
        );
        let guid = random_guid().unwrap();
        assert!(crate::settings::is_guid(&guid), "{guid}");
    }
}
