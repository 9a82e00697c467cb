//! The native API under `/api/v1`: alerts, incidents, quarantine jobs and their results,
//! restore, match conditions, sources and node status.

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use pullback_domain::{
    Alert, Command, CommandResponse, Incident, MatchCondition, MessageId, QuarantineJob,
};
use pullback_node::Role;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/alerts", get(list_alerts).post(ingest_alerts))
        .route("/api/v1/alerts/{id}", get(get_alert))
        .route("/api/v1/alerts/{id}/verdict", post(override_verdict))
        .route("/api/v1/incidents/{id}", get(get_incident))
        .route("/api/v1/incidents/{id}/restore", post(restore_incident))
        .route("/api/v1/jobs", get(list_jobs))
        .route("/api/v1/jobs/{id}", get(get_job))
        .route("/api/v1/jobs/{id}/restore", post(restore))
        .route("/api/v1/match-conditions", get(list_conditions))
        .route(
            "/api/v1/match-conditions/{name}",
            get(get_condition)
                .put(put_condition)
                .delete(delete_condition),
        )
}

pub(crate) async fn status(State(state): State<AppState>) -> Json<pullback_node::NodeStatus> {
    Json(state.node.status())
}

#[derive(Deserialize)]
struct AlertQuery {
    #[serde(default)]
    message_id: Option<String>,
    #[serde(default)]
    offset: usize,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    100
}

#[derive(Serialize)]
pub(crate) struct Page<T> {
    total: usize,
    offset: usize,
    items: Vec<T>,
}

pub(crate) fn page<T>(all: Vec<T>, offset: usize, limit: usize) -> Page<T> {
    let total = all.len();
    let items = all.into_iter().skip(offset).take(limit.min(1000)).collect();
    Page {
        total,
        offset,
        items,
    }
}

async fn list_alerts(
    State(state): State<AppState>,
    Query(query): Query<AlertQuery>,
) -> ApiResult<Json<Page<Alert>>> {
    let reader = state.node.reader();
    let alerts = match query.message_id.as_deref() {
        Some(raw) => {
            let id = MessageId::parse(raw)
                .ok_or_else(|| ApiError::bad_request("message_id is empty"))?;
            reader.alerts_by_message_id(&id)?
        }
        None => reader.alerts()?,
    };
    Ok(Json(page(alerts, query.offset, query.limit)))
}

/// An alert with what the directory knows about its recipients.
#[derive(Serialize)]
struct AlertView {
    #[serde(flatten)]
    alert: Alert,
    /// Directory records by recipient address; recipients the directory does not know are
    /// left out.
    directory: BTreeMap<String, pullback_domain::DirectoryRecord>,
}

/// Looks up each address once in the directory.
pub(crate) fn directory_of<'a>(
    reader: &pullback_store::Reader,
    addresses: impl IntoIterator<Item = &'a String>,
) -> ApiResult<BTreeMap<String, pullback_domain::DirectoryRecord>> {
    let mut found = BTreeMap::new();
    for address in addresses {
        if found.contains_key(address) {
            continue;
        }
        if let Some(record) = reader.directory_lookup(address)? {
            found.insert(address.clone(), record);
        }
    }
    Ok(found)
}

async fn get_alert(
    State(state): State<AppState>,
    Path(id): Path<u64>,
) -> ApiResult<Json<AlertView>> {
    let reader = state.node.reader();
    let alert = reader
        .alert(id)?
        .ok_or_else(|| ApiError::not_found(format!("alert {id}")))?;
    let directory = directory_of(reader, &alert.body.recipients)?;
    Ok(Json(AlertView { alert, directory }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerdictOverride {
    disposition: String,
    reason: String,
}

/// An analyst's verdict on a reported message; the analysis stays, the override is recorded.
async fn override_verdict(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<u64>,
    Json(body): Json<VerdictOverride>,
) -> ApiResult<Json<CommandResponse>> {
    caller.require(Role::Analyst)?;
    if body.reason.trim().is_empty() {
        return Err(ApiError::bad_request(
            "reason: say why the verdict is overridden",
        ));
    }
    let command = Command::OverrideVerdict {
        alert_id: id,
        disposition: body.disposition.trim().to_ascii_lowercase(),
        reason: body.reason.trim().to_owned(),
        by: caller.name.clone(),
        at: chrono::Utc::now(),
    };
    commit(&state, &caller, command).await.map(Json)
}

#[derive(Serialize)]
struct IncidentView {
    #[serde(flatten)]
    incident: Incident,
    /// What the analyses of its reported messages found (CLEAR), one summary each.
    description: String,
    /// Directory records of the alerts' recipients and the jobs' recipients, by address.
    directory: BTreeMap<String, pullback_domain::DirectoryRecord>,
    alerts: Vec<Alert>,
    jobs: Vec<QuarantineJob>,
}

async fn get_incident(
    State(state): State<AppState>,
    Path(id): Path<u64>,
) -> ApiResult<Json<IncidentView>> {
    let reader = state.node.reader();
    let incident = reader
        .incident(id)?
        .ok_or_else(|| ApiError::not_found(format!("incident {id}")))?;
    let alerts = incident
        .alert_ids
        .iter()
        .filter_map(|a| reader.alert(*a).transpose());
    let alerts = alerts.collect::<Result<Vec<_>, _>>()?;
    let jobs = incident
        .job_ids
        .iter()
        .filter_map(|j| reader.job(*j).transpose());
    let jobs = jobs.collect::<Result<Vec<_>, _>>()?;
    let addresses = alerts.iter().flat_map(|a| a.body.recipients.iter()).chain(
        jobs.iter()
            .flat_map(|j| j.results.iter().map(|r| &r.recipient)),
    );
    let directory = directory_of(reader, addresses)?;
    Ok(Json(IncidentView {
        incident,
        directory,
        description: crate::search::description(&alerts),
        alerts,
        jobs,
    }))
}

#[derive(Deserialize)]
struct JobQuery {
    /// `queued` lists only jobs with recipients still to do.
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    offset: usize,
    #[serde(default = "default_limit")]
    limit: usize,
}

async fn list_jobs(
    State(state): State<AppState>,
    Query(query): Query<JobQuery>,
) -> ApiResult<Json<Page<QuarantineJob>>> {
    let reader = state.node.reader();
    let jobs = match query.state.as_deref() {
        None | Some("all") => reader.jobs()?,
        Some("queued") => reader.queued_jobs()?,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "state must be all or queued, not {other:?}"
            )));
        }
    };
    Ok(Json(page(jobs, query.offset, query.limit)))
}

async fn get_job(
    State(state): State<AppState>,
    Path(id): Path<u64>,
) -> ApiResult<Json<QuarantineJob>> {
    let job = state.node.reader().job(id)?;
    Ok(Json(
        job.ok_or_else(|| ApiError::not_found(format!("job {id}")))?,
    ))
}

#[derive(Default, Deserialize)]
struct RestoreRequest {
    /// Only these recipients; all quarantined ones when absent.
    #[serde(default)]
    recipients: Option<Vec<String>>,
}

async fn restore(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<u64>,
    body: Option<Json<RestoreRequest>>,
) -> ApiResult<Json<CommandResponse>> {
    caller.require(Role::Analyst)?;
    let request = body.map(|Json(b)| b).unwrap_or_default();
    let command = Command::RequestRestore {
        job_id: id,
        recipients: request.recipients,
        requested_by: caller.name.clone(),
        at: chrono::Utc::now(),
    };
    commit(&state, &caller, command).await.map(Json)
}

/// Restores every quarantine job of an incident that has something left to put back.
async fn restore_incident(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<u64>,
) -> ApiResult<Json<CommandResponse>> {
    caller.require(Role::Analyst)?;
    let reader = state.node.reader();
    let incident = reader
        .incident(id)?
        .ok_or_else(|| ApiError::not_found(format!("incident {id}")))?;
    let mut created = CommandResponse::default();
    for job_id in incident.job_ids {
        let Some(job) = reader.job(job_id)? else {
            continue;
        };
        // A hard delete cannot be undone; restoring "everything" leaves it out.
        let restorable = job.action == pullback_domain::JobAction::Quarantine
            && !job.dry_run
            && job.removal != pullback_domain::Removal::HardDelete
            && job.results.iter().any(|r| {
                !r.was_undone
                    && matches!(
                        r.status,
                        pullback_domain::RecipientStatus::Quarantined
                            | pullback_domain::RecipientStatus::AlreadyInDestination
                    )
            });
        if !restorable {
            continue;
        }
        let command = Command::RequestRestore {
            job_id,
            recipients: None,
            requested_by: caller.name.clone(),
            at: chrono::Utc::now(),
        };
        let response = commit(&state, &caller, command).await?;
        created.jobs.extend(response.jobs);
    }
    if created.jobs.is_empty() {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            format!("incident {id} has no quarantined message left to restore"),
        ));
    }
    Ok(Json(created))
}

/// Alerts pushed by a script or another system. Each alert is the object a scripted poller
/// prints (see `pullback_script::line`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PushedAlerts {
    /// Names the pusher; alerts with the same `id` from the same source are kept once.
    source: String,
    alerts: Vec<serde_json::Value>,
}

/// The most alerts one push may carry.
const MAX_PUSHED_ALERTS: usize = 1_000;

#[derive(Serialize)]
struct PushAnswer {
    alerts: Vec<u64>,
    incidents: Vec<u64>,
    jobs: Vec<u64>,
    duplicates: u64,
}

async fn ingest_alerts(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(pushed): Json<PushedAlerts>,
) -> ApiResult<Json<PushAnswer>> {
    caller.require(Role::Analyst)?;
    let source = pushed.source.trim();
    if !pullback_domain::valid_source_name(source) {
        return Err(ApiError::bad_request(
            "source must be 1 to 64 letters, digits, '.', '_' or '-'",
        ));
    }
    // A defined source takes alerts only its own way (its credential, its poller), so that
    // match conditions on it cannot be fed from here.
    let defined = state.node.reader().source(source)?.is_some()
        || state.node.tap_sources().iter().any(|t| t == source);
    if defined {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            format!("{source:?} is a defined source; push to it its own way, or use another name"),
        ));
    }
    if pushed.alerts.len() > MAX_PUSHED_ALERTS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_PUSHED_ALERTS} alerts per request; split the push"
        )));
    }
    let now = chrono::Utc::now();
    let mut drafts = Vec::with_capacity(pushed.alerts.len());
    for (index, alert) in pushed.alerts.into_iter().enumerate() {
        let at = |e: pullback_script::line::FieldError| match e.field.as_str() {
            "(line)" => ApiError::bad_request(format!("alerts[{index}]: {}", e.reason)),
            field => ApiError::bad_request(format!("alerts[{index}].{field}: {}", e.reason)),
        };
        match pullback_script::line::parse_value(alert, now).map_err(at)? {
            pullback_script::line::Parsed::Alert(draft) if draft.dedup_key.starts_with("id:") => {
                drafts.push(*draft);
            }
            pullback_script::line::Parsed::Alert(_) => {
                return Err(ApiError::bad_request(format!(
                    "alerts[{index}].id: is required"
                )));
            }
            pullback_script::line::Parsed::Checkpoint(_) => {
                return Err(ApiError::bad_request(format!(
                    "alerts[{index}]: a checkpoint is not an alert"
                )));
            }
        }
    }
    let command = Command::IngestAlerts {
        source: source.to_owned(),
        at: now,
        drafts,
        rejected: Vec::new(),
        checkpoint: None,
    };
    let response = commit(&state, &caller, command).await?;
    Ok(Json(PushAnswer {
        alerts: response.alerts,
        incidents: response.incidents,
        jobs: response.jobs,
        duplicates: response.duplicates,
    }))
}

/// Proposes a command and turns a refusal into a 409 that says why.
pub(crate) async fn commit(
    state: &AppState,
    caller: &Caller,
    command: Command,
) -> ApiResult<CommandResponse> {
    let name = command.name();
    let command = Command::Audited {
        by: caller.audit_name(),
        at: chrono::Utc::now(),
        command: Box::new(command),
    };
    let response = state.node.propose(command).await?;
    if let Some(reason) = &response.refused {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            reason.clone(),
        ));
    }
    // Pushed alerts are counted per source and kept with their source; a line per push would
    // drown the changes people make.
    if matches!(name, "ingest_alerts") {
        tracing::debug!(caller = %caller.name, command = name, "change committed");
    } else {
        tracing::info!(caller = %caller.name, command = name, "change committed");
    }
    Ok(response)
}

async fn list_conditions(State(state): State<AppState>) -> ApiResult<Json<Vec<MatchCondition>>> {
    Ok(Json(state.node.reader().match_conditions()?))
}

async fn get_condition(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<MatchCondition>> {
    let all = state.node.reader().match_conditions()?;
    let found = all.into_iter().find(|c| c.name == name);
    Ok(Json(found.ok_or_else(|| {
        ApiError::not_found(format!("match condition {name:?}"))
    })?))
}

async fn put_condition(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Json(condition): Json<MatchCondition>,
) -> ApiResult<Json<CommandResponse>> {
    caller.require(Role::Admin)?;
    if condition.name != name {
        return Err(ApiError::bad_request(format!(
            "the body names {:?} but the path names {name:?}",
            condition.name
        )));
    }
    condition.validate().map_err(ApiError::bad_request)?;
    commit(&state, &caller, Command::PutMatchCondition { condition })
        .await
        .map(Json)
}

async fn delete_condition(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<Json<CommandResponse>> {
    caller.require(Role::Admin)?;
    commit(&state, &caller, Command::DeleteMatchCondition { name })
        .await
        .map(Json)
}
