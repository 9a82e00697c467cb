//! The imported directory over HTTP: imports, and lookups by address.

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::native::commit;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Extension, Json, Router};
use pullback_domain::{Command, DirectoryRecord, DirectoryRun, Role};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/directory/imports", get(imports).post(import_now))
        .route("/api/v1/directory/lookup/{address}", get(lookup))
}

/// Imports, newest first.
async fn imports(State(state): State<AppState>) -> ApiResult<Json<Vec<DirectoryRun>>> {
    let mut runs = state.node.reader().directory_runs()?;
    runs.reverse();
    Ok(Json(runs))
}

/// Imports the directory now, on this node, and answers with the run when it ends.
async fn import_now(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<DirectoryRun>> {
    caller.require(Role::Admin)?;
    let run = state.node.import_directory().await?;
    let note = Command::Note {
        action: "import_directory".into(),
        detail: format!("import {}: {}", run.id, run.state),
    };
    commit(&state, &caller, note).await?;
    Ok(Json(run))
}

async fn lookup(
    State(state): State<AppState>,
    Path(address): Path<String>,
) -> ApiResult<Json<DirectoryRecord>> {
    let record = state.node.reader().directory_lookup(&address)?;
    Ok(Json(record.ok_or_else(|| {
        ApiError::not_found(format!("{address:?} in the directory"))
    })?))
}
