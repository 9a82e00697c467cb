//! Pullback's HTTP surface, served by axum: health, metrics, the native API under `/api/v1`,
//! and the Threat-Response-compatible endpoints under `/api/incidents`.
//!
//! Only this crate knows HTTP. Every route but the two health probes needs an API key; what
//! a key may do depends on its role.

mod auth;
mod error;
mod native;
mod threat_response;
pub mod tls;

pub use auth::{ApiKey, hash_key};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use pullback_node::Node;
use std::sync::Arc;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub node: Arc<Node>,
    pub keys: Arc<Vec<ApiKey>>,
}

/// The whole router.
pub fn router(state: AppState) -> Router {
    let protected = Router::new()
        .route("/metrics", get(metrics))
        .merge(native::routes())
        .merge(threat_response::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ));
    Router::new()
        .route("/health/live", get(|| async { "ok" }))
        .route("/health/ready", get(ready))
        .merge(protected)
        .with_state(state)
}

async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    if state.node.is_ready() {
        (StatusCode::OK, "ready")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "no leader: the node cannot commit changes",
        )
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    state.node.refresh_gauges();
    let body = state.node.metrics().render();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        body,
    )
}
