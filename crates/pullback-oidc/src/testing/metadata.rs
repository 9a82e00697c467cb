//! The OpenID configuration and the key set, per cloud, in the shape Azure AD publishes them.

use super::{Idp, TENANT_ID, cloud_of, error_body};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::Arc;

/// Azure AD answers an unknown tenant with 400 and AADSTS90002.
fn unknown_tenant(tenant: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(error_body(
            "invalid_tenant",
            90002,
            &format!("Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."),
        )),
    )
        .into_response()
}

/// `GET /<cloud>/<tenant>/v2.0/.well-known/openid-configuration`
pub(super) async fn configuration(
    State(idp): State<Arc<Idp>>,
    Path((cloud, tenant)): Path<(String, String)>,
) -> Response {
    let Some(cloud) = cloud_of(&cloud) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if !Idp::is_tenant(&tenant) {
        return unknown_tenant(&tenant);
    }
    idp.lock().hits.discovery += 1;
    let authority = idp.authority(cloud);
    // Endpoints name the tenant as it was asked; the issuer always has its id.
    let base = format!("{authority}/{tenant}");
    let issuer = idp.issuer(cloud, TENANT_ID);
    let instance = issuer
        .trim_start_matches("https://")
        .split('/')
        .next()
        .unwrap_or_default()
        .trim_start_matches("login.")
        .to_owned();
    Json(json!({
        "token_endpoint": format!("{base}/oauth2/v2.0/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": format!("{base}/discovery/v2.0/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": issuer,
        "request_uri_parameter_supported": false,
        "authorization_endpoint": format!("{base}/oauth2/v2.0/authorize"),
        "end_session_endpoint": format!("{base}/oauth2/v2.0/logout"),
        "frontchannel_logout_supported": true,
        "http_logout_supported": true,
        "claims_supported": [
            "sub", "iss", "cloud_instance_name", "cloud_instance_host_name", "cloud_graph_host_name",
            "msgraph_host", "aud", "exp", "iat", "auth_time", "acr", "nonce",
            "preferred_username", "name", "tid", "ver", "at_hash", "c_hash", "email"
        ],
        "kerberos_endpoint": format!("{base}/kerberos"),
        "tenant_region_scope": "NA",
        "cloud_instance_name": instance,
    }))
    .into_response()
}

/// `GET /<cloud>/<tenant>/discovery/v2.0/keys`
pub(super) async fn keys(
    State(idp): State<Arc<Idp>>,
    Path((cloud, tenant)): Path<(String, String)>,
) -> Response {
    let Some(cloud) = cloud_of(&cloud) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if !Idp::is_tenant(&tenant) {
        return unknown_tenant(&tenant);
    }
    let issuer = idp.issuer(cloud, TENANT_ID);
    let mut directory = idp.lock();
    directory.hits.keys += 1;
    let keys: Vec<_> = directory.keys[&cloud]
        .published
        .iter()
        .map(|key| {
            let mut jwk = key.jwk();
            jwk["issuer"] = json!(issuer);
            jwk
        })
        .collect();
    Json(json!({ "keys": keys })).into_response()
}
