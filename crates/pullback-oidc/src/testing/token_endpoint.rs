//! The token endpoint: redeems a code as Azure AD does, refusing what it refuses, with its
//! error bodies. Client authentication by secret (in the form or HTTP Basic) or by a client
//! assertion signed with a registered certificate's key (PS256 with `x5t#S256`, or RS256
//! with `x5t`, the older documented form).

use super::{CODE_LIFETIME_SECS, Idp, cloud_of, error_body, now};
use crate::encoding::{b64url, from_b64url, random_token, sha256};
use crate::flow::pkce_challenge;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn refuse(status: StatusCode, error: &str, code: u32, text: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        Json(error_body(error, code, text)),
    )
        .into_response()
}

fn missing(parameter: &str) -> Response {
    refuse(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        900144,
        &format!("The request body must contain the following parameter: '{parameter}'."),
    )
}

/// Reads an `application/x-www-form-urlencoded` body.
fn form_of(body: &[u8]) -> HashMap<String, String> {
    let text = String::from_utf8_lossy(body);
    let Ok(url) = reqwest::Url::parse(&format!("http://form.invalid/?{text}")) else {
        return HashMap::new();
    };
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// `client_id:secret` from HTTP Basic, each part form-decoded as RFC 6749 asks.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let form = form_of(format!("id={id}&secret={secret}").as_bytes());
    Some((form.get("id")?.clone(), form.get("secret")?.clone()))
}

/// `POST /<cloud>/<tenant>/oauth2/v2.0/token`
pub(super) async fn token(
    State(idp): State<Arc<Idp>>,
    Path((cloud, tenant)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(cloud) = cloud_of(&cloud) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    idp.lock().hits.token += 1;
    if !Idp::is_tenant(&tenant) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            &format!("Tenant '{tenant}' not found."),
        );
    }
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form_type {
        // Azure AD reads only forms: anything else looks like an empty one.
        return missing("grant_type");
    }
    let form = form_of(&body);
    let get = |name: &str| form.get(name).map(String::as_str).filter(|v| !v.is_empty());
    match get("grant_type") {
        None => return missing("grant_type"),
        Some("authorization_code") => {}
        Some(other) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                70003,
                &format!("The app requested an unsupported grant type '{other}'."),
            );
        }
    }
    let basic = basic_credentials(&headers);
    let client_id = match (get("client_id"), &basic) {
        (Some(id), _) => id.to_owned(),
        (None, Some((id, _))) => id.clone(),
        (None, None) => return missing("client_id"),
    };
    let Some(app) = idp
        .lock()
        .apps
        .iter()
        .find(|a| a.client_id == client_id)
        .cloned()
    else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant}'."
            ),
        );
    };

    // The application proves itself one way, and only one.
    let posted_secret = get("client_secret");
    let assertion = get("client_assertion");
    let methods = [
        posted_secret.is_some(),
        basic.is_some(),
        assertion.is_some(),
    ]
    .iter()
    .filter(|m| **m)
    .count();
    if methods == 0 {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        );
    }
    if methods > 1 {
        return refuse(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            9002313,
            "Invalid request. The client is authenticated more than one way.",
        );
    }
    if let Some(secret) = posted_secret.or(basic.as_ref().map(|(_, s)| s.as_str())) {
        if !app.secrets.iter().any(|s| s == secret) {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000215,
                &format!(
                    "Invalid client secret provided. Ensure the secret being sent in the request \
                     is the client secret value, not the client secret ID, for a secret added to \
                     app '{client_id}'."
                ),
            );
        }
    } else if let Some(assertion) = assertion {
        if get("client_assertion_type") != Some(JWT_BEARER) {
            return refuse(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                50027,
                "Invalid client_assertion_type; it must be the JWT bearer type.",
            );
        }
        let audience = format!("{}/{tenant}/oauth2/v2.0/token", idp.authority(cloud));
        let seen = {
            let directory = idp.lock();
            directory.assertion_ids.clone()
        };
        match check_assertion(assertion, &client_id, &app.certificates, &audience, &seen) {
            Ok(jti) => {
                idp.lock().assertion_ids.insert(jti);
            }
            Err((code, text)) => {
                return refuse(StatusCode::UNAUTHORIZED, "invalid_client", code, &text);
            }
        }
    }

    let Some(code) = get("code") else {
        return missing("code");
    };
    let mut directory = idp.lock();
    let Some(issued) = directory.codes.get(code).cloned() else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            70000,
            "The provided value for the 'code' parameter is not valid.",
        );
    };
    if issued.redeemed {
        return refuse(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            54005,
            "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.",
        );
    }
    if issued.request.client_id != client_id || issued.request.cloud != cloud {
        return refuse(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            70000,
            "The provided value for the 'code' parameter is not valid. The code was issued to another application.",
        );
    }
    if now() - issued.issued_at > CODE_LIFETIME_SECS {
        return refuse(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            70008,
            "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.",
        );
    }
    let redirect_uri = get("redirect_uri").unwrap_or_default();
    if redirect_uri != issued.request.redirect_uri {
        return refuse(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            500112,
            &format!(
                "The reply address '{redirect_uri}' does not match the reply address '{}' provided when requesting Authorization code.",
                issued.request.redirect_uri
            ),
        );
    }
    let verified = get("code_verifier")
        .is_some_and(|verifier| pkce_challenge(verifier) == issued.request.challenge);
    if !verified {
        return refuse(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            501481,
            "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
        );
    }
    if let Some(entry) = directory.codes.get_mut(code) {
        entry.redeemed = true;
    }
    let id_token = idp.id_token(&issued, &directory);
    directory.hits.issued += 1;
    let answer = json!({
        "token_type": "Bearer",
        "scope": issued.request.scope,
        "expires_in": 3599,
        "ext_expires_in": 3599,
        "access_token": random_token().unwrap_or_default(),
        "id_token": id_token,
    });
    (
        StatusCode::OK,
        [(header::CACHE_CONTROL, "no-store")],
        Json(answer),
    )
        .into_response()
}

/// Checks a client assertion; answers its `jti`, or an AADSTS code and text.
fn check_assertion(
    assertion: &str,
    client_id: &str,
    certificates: &[Vec<u8>],
    audience: &str,
    seen: &std::collections::HashSet<String>,
) -> Result<String, (u32, String)> {
    let invalid = |text: &str| (50027, format!("JWT token is invalid or malformed: {text}"));
    let parts: Vec<&str> = assertion.split('.').collect();
    let [header_b64, claims_b64, signature_b64] = parts[..] else {
        return Err(invalid("not three parts"));
    };
    let json_of =
        |part: &str| -> Option<Value> { serde_json::from_slice(&from_b64url(part)?).ok() };
    let (Some(header), Some(claims), Some(signature)) = (
        json_of(header_b64),
        json_of(claims_b64),
        from_b64url(signature_b64),
    ) else {
        return Err(invalid("a part does not decode"));
    };
    let (algorithm, thumbprint): (&'static dyn ring::signature::VerificationAlgorithm, _) =
        match header["alg"].as_str() {
            Some("PS256") => (
                &ring::signature::RSA_PSS_2048_8192_SHA256,
                header["x5t#S256"].as_str().map(|t| (t.to_owned(), true)),
            ),
            Some("RS256") => (
                &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                header["x5t"].as_str().map(|t| (t.to_owned(), false)),
            ),
            other => return Err(invalid(&format!("the algorithm {other:?} is not allowed"))),
        };
    let Some((thumbprint, sha256_print)) = thumbprint else {
        return Err(invalid("the header names no certificate thumbprint"));
    };
    let certificate = certificates.iter().find(|der| {
        let print = if sha256_print {
            b64url(sha256(der))
        } else {
            b64url(ring::digest::digest(
                &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
                der,
            ))
        };
        print == thumbprint
    });
    let Some(certificate) = certificate else {
        return Err((
            700027,
            format!(
                "Client assertion failed signature validation. [Reason - The key was not found., \
                 Thumbprint of key used by client: '{thumbprint}']"
            ),
        ));
    };
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate)
        .map_err(|_| invalid("the registered certificate does not parse"))?;
    let public_key = &parsed.tbs_certificate.subject_pki.subject_public_key.data;
    let signed = format!("{header_b64}.{claims_b64}");
    ring::signature::UnparsedPublicKey::new(algorithm, public_key.as_ref())
        .verify(signed.as_bytes(), &signature)
        .map_err(|_| {
            (
                700027,
                "Client assertion contains an invalid signature.".to_owned(),
            )
        })?;
    if claims["aud"].as_str() != Some(audience) {
        return Err((
            700027,
            format!(
                "Client assertion audience claim does not match the token endpoint '{audience}'."
            ),
        ));
    }
    if claims["iss"].as_str() != Some(client_id) || claims["sub"].as_str() != Some(client_id) {
        return Err((
            700021,
            "Client assertion application identifier doesn't match 'client_id' parameter."
                .to_owned(),
        ));
    }
    let now = now();
    let exp = claims["exp"].as_i64().unwrap_or(0);
    let nbf = claims["nbf"].as_i64().unwrap_or(0);
    if exp <= now || nbf > now + 300 {
        return Err((
            700024,
            "Client assertion is not within its valid time range.".to_owned(),
        ));
    }
    let Some(jti) = claims["jti"].as_str().filter(|j| !j.is_empty()) else {
        return Err(invalid("the jti claim is missing"));
    };
    if seen.contains(jti) {
        return Err((
            700027,
            "Client assertion has already been used (jti replayed).".to_owned(),
        ));
    }
    Ok(jti.to_owned())
}
