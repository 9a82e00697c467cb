//! Backups, purges and recommendations over HTTP.

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::native::commit;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use pullback_domain::{BackupRecord, Command, PurgeRun, PurgeSchedule, Role};
use pullback_node::maintenance::{MaintenanceError, PurgePlan, Recommendation, TargetView};
use serde::{Deserialize, Serialize};

/// The recommendations there are.
const KINDS: [&str; 4] = ["backup-age", "store-size", "growth", "purge-schedule"];

fn known(id: &str) -> ApiResult<()> {
    if KINDS.contains(&id) {
        Ok(())
    } else {
        Err(ApiError::not_found(format!("recommendation {id:?}")))
    }
}

/// How long a dismissed recommendation stays away.
const DISMISS_DAYS: i64 = 7;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/backup-targets", get(targets))
        .route("/api/v1/backups", get(backups).post(start_backup))
        .route("/api/v1/backups/{id}", get(backup))
        .route("/api/v1/purge-schedules", get(schedules))
        .route(
            "/api/v1/purge-schedules/{name}",
            axum::routing::put(put_schedule).delete(delete_schedule),
        )
        .route("/api/v1/purges", get(purges).post(start_purge))
        .route("/api/v1/recommendations", get(recommendations))
        .route(
            "/api/v1/recommendations/{id}/acknowledge",
            post(acknowledge),
        )
        .route("/api/v1/recommendations/{id}/dismiss", post(dismiss))
}

impl From<MaintenanceError> for ApiError {
    fn from(e: MaintenanceError) -> ApiError {
        match e {
            MaintenanceError::NoTarget(_) => ApiError::bad_request(format!("target: {e}")),
            MaintenanceError::Propose(e) => e.into(),
        }
    }
}

async fn targets(State(state): State<AppState>) -> Json<Vec<TargetView>> {
    Json(state.node.maintenance.targets())
}

#[derive(Serialize)]
struct BackupView {
    #[serde(flatten)]
    record: BackupRecord,
    /// 0 to 100.
    progress: u8,
}

impl From<BackupRecord> for BackupView {
    fn from(record: BackupRecord) -> BackupView {
        BackupView {
            progress: record.percent(),
            record,
        }
    }
}

async fn backups(State(state): State<AppState>) -> ApiResult<Json<Vec<BackupView>>> {
    let mut all = state.node.reader().backups()?;
    all.reverse();
    Ok(Json(all.into_iter().map(BackupView::from).collect()))
}

async fn backup(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<BackupView>> {
    let record = state
        .node
        .reader()
        .backup(&id)?
        .ok_or_else(|| ApiError::not_found(format!("backup {id:?}")))?;
    Ok(Json(record.into()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewBackup {
    target: String,
}

#[derive(Serialize)]
struct Started {
    id: String,
}

/// Starts a backup on this node; `GET /api/v1/backups/<id>` follows it.
async fn start_backup(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<NewBackup>,
) -> ApiResult<(StatusCode, Json<Started>)> {
    caller.require(Role::Admin)?;
    let id = state
        .node
        .start_backup(&body.target, &caller.audit_name())
        .await?;
    let note = Command::Note {
        action: "start_backup".into(),
        detail: format!("backup {id} to {}", body.target),
    };
    commit(&state, &caller, note).await?;
    Ok((StatusCode::ACCEPTED, Json(Started { id })))
}

async fn schedules(State(state): State<AppState>) -> ApiResult<Json<Vec<PurgeSchedule>>> {
    Ok(Json(state.node.reader().purge_schedules()?))
}

async fn put_schedule(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Json(schedule): Json<PurgeSchedule>,
) -> ApiResult<Json<PurgeSchedule>> {
    caller.require(Role::Admin)?;
    if schedule.name != name {
        return Err(ApiError::bad_request(format!(
            "name: the body names {:?}, the path {name:?}",
            schedule.name
        )));
    }
    schedule.validate().map_err(ApiError::bad_request)?;
    if let Some(target) = &schedule.target
        && state.node.maintenance.target(target).is_none()
    {
        return Err(ApiError::bad_request(format!(
            "target: no backup target {target:?} is configured"
        )));
    }
    let command = Command::PutPurgeSchedule {
        schedule: schedule.clone(),
    };
    commit(&state, &caller, command).await?;
    Ok(Json(schedule))
}

async fn delete_schedule(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Role::Admin)?;
    commit(&state, &caller, Command::DeletePurgeSchedule { name }).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn purges(State(state): State<AppState>) -> ApiResult<Json<Vec<PurgeRun>>> {
    let mut runs = state.node.reader().purge_runs()?;
    runs.reverse();
    Ok(Json(runs))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPurge {
    closed_days: u32,
    alert_days: u32,
    #[serde(default = "yes")]
    backup_first: bool,
    #[serde(default)]
    target: Option<String>,
}

fn yes() -> bool {
    true
}

/// Starts a purge now; `GET /api/v1/purges` follows it.
async fn start_purge(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<NewPurge>,
) -> ApiResult<(StatusCode, Json<Started>)> {
    caller.require(Role::Admin)?;
    if body.backup_first {
        let target = body.target.as_deref().ok_or_else(|| {
            ApiError::bad_request("target: a purge that backs up first needs a backup target")
        })?;
        if state.node.maintenance.target(target).is_none() {
            return Err(ApiError::bad_request(format!(
                "target: no backup target {target:?} is configured on this node"
            )));
        }
    }
    let id = format!("manual-{}", chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"));
    let plan = PurgePlan {
        id: id.clone(),
        schedule: None,
        by: caller.audit_name(),
        closed_days: body.closed_days,
        alert_days: body.alert_days,
        backup_first: body.backup_first,
        target: body.target,
    };
    let note = Command::Note {
        action: "start_purge".into(),
        detail: format!(
            "purge {id}: closed over {} days, alerts over {} days, backup first: {}",
            plan.closed_days, plan.alert_days, plan.backup_first
        ),
    };
    let id = state.node.start_purge(plan).await?;
    commit(&state, &caller, note).await?;
    Ok((StatusCode::ACCEPTED, Json(Started { id })))
}

async fn recommendations(State(state): State<AppState>) -> ApiResult<Json<Vec<Recommendation>>> {
    Ok(Json(state.node.recommendations(chrono::Utc::now())?))
}

/// Any signed-in user or key may say they saw a recommendation; administrators see who did.
async fn acknowledge(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    known(&id)?;
    let command = Command::MarkRecommendation {
        id,
        by: caller.name.clone(),
        at: chrono::Utc::now(),
        acknowledge: true,
        dismiss_until: None,
    };
    commit(&state, &caller, command).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Hides a recommendation for seven days; it comes back after if it still holds.
async fn dismiss(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    known(&id)?;
    let now = chrono::Utc::now();
    let command = Command::MarkRecommendation {
        id,
        by: caller.name.clone(),
        at: now,
        acknowledge: false,
        dismiss_until: Some(now + chrono::TimeDelta::days(DISMISS_DAYS)),
    };
    commit(&state, &caller, command).await?;
    Ok(StatusCode::NO_CONTENT)
}
