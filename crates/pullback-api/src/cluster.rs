//! Cluster administration over the API: status, join tokens, removing members, and the two
//! calls a joining node makes before it holds a certificate (fetch the CA, present a token).

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use pullback_domain::Command;
use pullback_node::{Admission, ClusterStatus, JoinRequest, Role};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The longest a join token may live.
const MAX_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

/// Routes that need an API key.
pub(crate) fn routes() -> Router<AppState> {
    let router = Router::new()
        .route("/api/v1/cluster", get(status))
        .route("/api/v1/cluster/join-tokens", post(create_token))
        .route("/api/v1/cluster/members/{id}", delete(remove))
        .route("/api/v1/cluster/finalize", post(finalize));
    #[cfg(feature = "rehearse-next-level")]
    let router = router.route("/api/v1/cluster/rehearsal", post(rehearse));
    router
}

/// Routes a joining node calls without an API key: the CA certificate is public, and the
/// join call carries its own one-time secret.
pub(crate) fn public_routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/cluster/ca", get(ca))
        .route("/api/v1/cluster/join", post(join))
}

async fn status(State(state): State<AppState>) -> Json<ClusterStatus> {
    Json(state.node.cluster_status().await)
}

#[derive(Deserialize)]
struct TokenRequest {
    /// Minutes the token stays valid; one hour when not given.
    #[serde(default)]
    ttl_minutes: Option<u64>,
}

#[derive(Serialize)]
struct TokenAnswer {
    token: String,
    expires_in_minutes: u64,
}

async fn create_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(request): Json<TokenRequest>,
) -> ApiResult<Json<TokenAnswer>> {
    caller.require(Role::Admin)?;
    let minutes = request.ttl_minutes.unwrap_or(60);
    let ttl = Duration::from_secs(minutes.saturating_mul(60));
    if ttl.is_zero() || ttl > MAX_TOKEN_TTL {
        return Err(ApiError::bad_request(
            "ttl_minutes must be between 1 and 1440",
        ));
    }
    let token = state.node.create_join_token(&caller.name, ttl).await?;
    // The token is a secret: it is returned once and never logged.
    tracing::info!(caller = %caller.name, minutes, "join token created");
    let note = Command::Note {
        action: "create_join_token".into(),
        detail: format!("join token valid {minutes} minutes"),
    };
    crate::native::commit(&state, &caller, note).await?;
    Ok(Json(TokenAnswer {
        token: token.to_string(),
        expires_in_minutes: minutes,
    }))
}

async fn remove(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<u64>,
) -> ApiResult<StatusCode> {
    caller.require(Role::Admin)?;
    state.node.remove_member(id).await?;
    tracing::info!(caller = %caller.name, member = id, "member removed");
    let note = Command::Note {
        action: "remove_member".into(),
        detail: format!("node {id}"),
    };
    crate::native::commit(&state, &caller, note).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize)]
struct FinalizeAnswer {
    /// The cluster's command level after the call.
    level: u32,
    /// Whether this call raised it.
    raised: bool,
}

/// Ends an upgrade of every node: raises the cluster's command level to what all members'
/// releases apply, so the commands the new release added may be used. Until then a roll can
/// still go back to the previous release; afterwards that release no longer starts.
async fn finalize(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<FinalizeAnswer>> {
    caller.require(Role::Admin)?;
    state.node.read_barrier().await?;
    let status = state.node.cluster_status().await;
    let target = status
        .common_level()
        .map_err(|why| ApiError::new(StatusCode::CONFLICT, why))?;
    if target <= status.level {
        return Ok(Json(FinalizeAnswer {
            level: status.level,
            raised: false,
        }));
    }
    crate::native::commit(&state, &caller, Command::SetClusterLevel { level: target }).await?;
    tracing::info!(caller = %caller.name, level = target, "command level raised");
    Ok(Json(FinalizeAnswer {
        level: target,
        raised: true,
    }))
}

#[cfg(feature = "rehearse-next-level")]
#[derive(Deserialize)]
struct RehearsalRequest {
    text: String,
}

/// Proposes the command only a build one level ahead knows (see `rehearse-next-level`).
#[cfg(feature = "rehearse-next-level")]
async fn rehearse(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(request): Json<RehearsalRequest>,
) -> ApiResult<StatusCode> {
    caller.require(Role::Admin)?;
    let command = Command::Rehearsal { text: request.text };
    crate::native::commit(&state, &caller, command).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn ca(State(state): State<AppState>) -> ApiResult<String> {
    state.node.read_barrier().await?;
    match state.node.reader().cluster_ca()? {
        Some(ca) => Ok(ca.cert_pem),
        None => Err(ApiError::not_found("a cluster CA")),
    }
}

async fn join(
    State(state): State<AppState>,
    Json(request): Json<JoinRequest>,
) -> ApiResult<Json<Admission>> {
    let node_id = request.node_id;
    match state.node.admit(&request).await {
        Ok(admission) => Ok(Json(admission)),
        Err(pullback_node::ProposeError::Refused(reason)) => {
            tracing::warn!(node_id, %reason, "join refused");
            Err(ApiError::new(StatusCode::FORBIDDEN, reason))
        }
        Err(e) => Err(e.into()),
    }
}
