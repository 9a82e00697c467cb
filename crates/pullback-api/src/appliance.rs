//! Upgrading the appliance through the API: an administrator uploads a signed IMG, which
//! this node leaves in its upgrade inbox; root checks and applies it (see
//! `pullback_appliance::inbox`) and reports each step back through the same folder.
//!
//! The node never writes a slot itself and trusts nothing in the image: the checks, and the
//! decision to reboot, are root's, with the same code as `pullback upgrade apply`.

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Extension, Json, Router};
use futures::StreamExt;
use pullback_appliance::inbox::{Inbox, InboxResult, InboxState};
use pullback_appliance::{Layout, Release};
use pullback_domain::{Command, Role};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::AsyncWriteExt;

/// The largest image accepted: a root slot holds 1.5 GiB, plus kernel and initramfs.
const MAX_IMAGE: usize = 2 << 30;

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route(
        "/api/v1/appliance/upgrade",
        get(upgrade_status)
            .post(upload)
            .layer(DefaultBodyLimit::max(MAX_IMAGE)),
    )
}

/// `GET /api/v1/appliance/upgrade`.
#[derive(Serialize)]
struct UpgradeStatus {
    /// The release this node runs, when it runs on the appliance.
    running: Option<Release>,
    /// The last uploaded image and how far it got.
    last: Option<InboxResult>,
}

fn inbox(state: &AppState) -> ApiResult<Inbox> {
    match &state.upgrade_inbox {
        Some(dir) => Ok(Inbox::at(dir.as_path())),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "this node is not an appliance: upgrades are installed by its package manager",
        )),
    }
}

fn last_result(inbox: &Inbox) -> ApiResult<Option<InboxResult>> {
    inbox.result().map_err(|e| {
        tracing::error!(error = %e, dir = %inbox.dir().display(), "cannot read the upgrade inbox");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the upgrade inbox's result cannot be read",
        )
    })
}

async fn upgrade_status(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<UpgradeStatus>> {
    caller.require(Role::Admin)?;
    let inbox = inbox(&state)?;
    Ok(Json(UpgradeStatus {
        running: Release::read(&Layout::system().release_file()).ok(),
        last: last_result(&inbox)?,
    }))
}

/// `POST /api/v1/appliance/upgrade` with the IMG as the body.
async fn upload(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Body,
) -> ApiResult<(StatusCode, Json<InboxResult>)> {
    caller.require(Role::Admin)?;
    let inbox = inbox(&state)?;
    if inbox.request().exists() || last_result(&inbox)?.is_some_and(|r| r.state.busy()) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "an uploaded upgrade is already being applied; wait for its result",
        ));
    }
    let partial = partial_name(inbox.dir());
    let received = match receive(body, &partial).await {
        Ok(received) => received,
        Err(e) => {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(e);
        }
    };
    let queued = InboxResult {
        state: InboxState::Queued,
        message: format!("{received} bytes received; waiting for the appliance to check them"),
        version: None,
        uploaded_by: Some(caller.audit_name()),
        at: pullback_appliance::slots::now(),
    };
    // The result first: root reads the uploader from it when it takes the request.
    let submitted = inbox
        .set_result(&queued)
        .and_then(|()| inbox.submit(&partial));
    if let Err(e) = submitted {
        let _ = std::fs::remove_file(&partial);
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "another upgrade was uploaded meanwhile; wait for its result",
            ));
        }
        tracing::error!(error = %e, "cannot queue the uploaded upgrade");
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the upload could not be queued: {e}"),
        ));
    }
    tracing::info!(caller = %caller.name, bytes = received, "upgrade image uploaded");
    // The audit trail; the upgrade goes on without it when the cluster has no majority,
    // which is a time an administrator may need to upgrade.
    let note = Command::Note {
        action: "upload_upgrade".into(),
        detail: format!("{received} bytes queued on node {}", state.node.id),
    };
    if let Err(e) = crate::native::commit(&state, &caller, note).await {
        tracing::warn!(error = %e.message, "the upgrade upload is not in the audit log");
    }
    Ok((StatusCode::ACCEPTED, Json(queued)))
}

fn partial_name(dir: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    dir.join(format!(
        "upload-{}-{}.partial",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Streams the body into a new file, synced; returns its size.
async fn receive(body: Body, path: &Path) -> ApiResult<u64> {
    let failed = |e: std::io::Error| {
        let status = if e.raw_os_error() == Some(28) {
            StatusCode::INSUFFICIENT_STORAGE
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        tracing::error!(error = %e, path = %path.display(), "cannot store the uploaded upgrade");
        ApiError::new(status, format!("the upload could not be stored: {e}"))
    };
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .await
        .map_err(failed)?;
    let mut stream = body.into_data_stream();
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            // axum's body limit says so in its error's text only.
            if e.to_string().contains("length limit") {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("an upgrade image is at most {MAX_IMAGE} bytes"),
                )
            } else {
                ApiError::bad_request(format!("the upload was cut off: {e}"))
            }
        })?;
        size += chunk.len() as u64;
        file.write_all(&chunk).await.map_err(failed)?;
    }
    if size == 0 {
        return Err(ApiError::bad_request(
            "the body is empty: send the IMG file as the request body",
        ));
    }
    file.sync_all().await.map_err(failed)?;
    Ok(size)
}
