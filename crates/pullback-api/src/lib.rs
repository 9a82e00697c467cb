//! Pullback's HTTP surface, served by axum: health, metrics, the native API under `/api/v1`,
//! and the Threat-Response-compatible endpoints under `/api/incidents`.
//!
//! Only this crate knows HTTP. Every data route needs an API key or a signed-in session;
//! what either may do depends on its role (read-only, analyst, administrator). The web UI's
//! files, sign-in and the health probes are public.

mod appliance;
mod auth;
mod cluster;
mod directory;
mod error;
mod intel;
mod maintenance;
mod native;
mod oidc;
mod search;
mod sources;
mod threat_response;
pub mod tls;
mod ui;
mod users;

pub use auth::{ApiKey, hash_key};
pub use users::{SignInThrottle, hash_password};

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
    pub sign_ins: Arc<SignInThrottle>,
    /// Sign-in with Azure AD, when `[oidc]` is configured.
    pub oidc: Option<Arc<pullback_oidc::OidcClient>>,
    /// On the appliance, where uploaded upgrade images go (`[node] upgrade_inbox`).
    pub upgrade_inbox: Option<Arc<std::path::PathBuf>>,
}

impl AppState {
    pub fn new(node: Arc<Node>, keys: Vec<ApiKey>) -> AppState {
        AppState {
            node,
            keys: Arc::new(keys),
            sign_ins: Arc::default(),
            oidc: None,
            upgrade_inbox: None,
        }
    }

    /// Accepts upgrade images through the API, left in `inbox` for root to apply.
    pub fn with_upgrade_inbox(mut self, inbox: std::path::PathBuf) -> AppState {
        self.upgrade_inbox = Some(Arc::new(inbox));
        self
    }

    /// Offers sign-in with Azure AD next to local accounts.
    pub fn with_oidc(mut self, client: pullback_oidc::OidcClient) -> AppState {
        self.oidc = Some(Arc::new(client));
        self
    }
}

/// The whole router.
pub fn router(state: AppState) -> Router {
    // Data reads and writes first confirm that this node's state is current; the node's own
    // view (status, metrics, cluster) answers even without a majority, to help diagnose it.
    let consistent = Router::new()
        .merge(native::routes())
        .merge(search::routes())
        .merge(maintenance::routes())
        .merge(directory::routes())
        .merge(users::routes())
        .merge(sources::routes())
        .merge(intel::routes())
        .merge(threat_response::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            consistent_reads,
        ));
    let protected = Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/status", get(native::status))
        .merge(cluster::routes())
        .merge(appliance::routes())
        .merge(consistent)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ));
    Router::new()
        .route("/health/live", get(|| async { "ok" }))
        .route("/health/ready", get(ready))
        .merge(cluster::public_routes())
        .merge(users::public_routes())
        .merge(oidc::public_routes())
        .merge(ui::routes())
        // Pushes carry their source's credential, not an API key.
        .merge(sources::push_routes())
        .merge(protected)
        .with_state(state)
}

/// Before a read, waits until this node has applied every write acknowledged before the
/// request arrived (the Raft read index), or answers 503 when no majority confirms it in time.
async fn consistent_reads(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Result<axum::response::Response, error::ApiError> {
    // A write needs no barrier: it is ordered by the log, and committing it already proves
    // a majority.
    let method = request.method();
    if method == axum::http::Method::GET || method == axum::http::Method::HEAD {
        state.node.read_barrier().await?;
    }
    Ok(next.run(request).await)
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
