//! The incident endpoints in the shape of the Threat Response API, so that SOAR and SIEM
//! integrations written for the modelled appliance work unchanged.
//!
//! The wire types here are this API's own; they are built from the domain explicitly.

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::native::commit;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use pullback_domain::{
    Alert, Command, Incident, IncidentState, JobAction, QuarantineJob, RecipientStatus, Timestamp,
};
use pullback_node::Role;
use pullback_store::{IncidentFilter, Reader};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/incidents", get(list))
        .route("/api/incidents/{file}", get(show))
        .route("/api/incidents/{id}/comments.json", post(comment))
        .route("/api/incidents/{id}/close.json", post(close))
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    created_after: Option<String>,
    #[serde(default)]
    created_before: Option<String>,
    #[serde(default)]
    expand_events: Option<String>,
}

fn parse_time(name: &str, raw: Option<&str>) -> ApiResult<Option<Timestamp>> {
    let Some(raw) = raw.filter(|r| !r.is_empty()) else {
        return Ok(None);
    };
    let parsed = chrono::DateTime::parse_from_rfc3339(raw)
        .map(|t| t.to_utc())
        .or_else(|_| {
            chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d")
                .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc())
        })
        .map_err(|_| {
            ApiError::bad_request(format!(
                "{name} must be an ISO 8601 time or date, not {raw:?}"
            ))
        })?;
    Ok(Some(parsed))
}

fn parse_bool(name: &str, raw: Option<&str>, default: bool) -> ApiResult<bool> {
    match raw {
        None => Ok(default),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => Err(ApiError::bad_request(format!(
            "{name} must be true or false, not {other:?}"
        ))),
    }
}

async fn list(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Vec<TrIncident>>> {
    let state_filter = match query.state.as_deref() {
        None | Some("") => None,
        Some("open") => Some(IncidentState::Open),
        Some("closed") => Some(IncidentState::Closed),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "state must be open or closed, not {other:?}"
            )));
        }
    };
    let filter = IncidentFilter {
        state: state_filter,
        created_after: parse_time("created_after", query.created_after.as_deref())?,
        created_before: parse_time("created_before", query.created_before.as_deref())?,
    };
    let expand = parse_bool("expand_events", query.expand_events.as_deref(), true)?;
    let reader = state.node.reader();
    let incidents = reader.incidents(&filter)?;
    let out = incidents.into_iter().map(|i| to_wire(reader, i, expand));
    Ok(Json(out.collect::<Result<_, _>>()?))
}

#[derive(Deserialize)]
struct ShowQuery {
    #[serde(default)]
    expand_events: Option<String>,
}

async fn show(
    State(state): State<AppState>,
    Path(file): Path<String>,
    Query(query): Query<ShowQuery>,
) -> ApiResult<Json<TrIncident>> {
    let id = incident_id(&file)?;
    let expand = parse_bool("expand_events", query.expand_events.as_deref(), true)?;
    let reader = state.node.reader();
    let incident = reader
        .incident(id)?
        .ok_or_else(|| ApiError::not_found(format!("incident {id}")))?;
    Ok(Json(to_wire(reader, incident, expand)?))
}

fn incident_id(file: &str) -> ApiResult<u64> {
    let raw = file.strip_suffix(".json").unwrap_or(file);
    raw.parse()
        .map_err(|_| ApiError::bad_request(format!("{raw:?} is not an incident id")))
}

/// The body of comment and close calls.
#[derive(Deserialize)]
struct CommentBody {
    #[serde(default)]
    summary: String,
    #[serde(default)]
    detail: String,
}

impl CommentBody {
    /// The comment's text: the summary and the detail, whichever are given.
    fn text(&self) -> Option<String> {
        let parts: Vec<&str> = [self.summary.trim(), self.detail.trim()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect();
        (!parts.is_empty()).then(|| parts.join(": "))
    }
}

async fn comment(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Json(body): Json<CommentBody>,
) -> ApiResult<Json<serde_json::Value>> {
    caller.require(Role::Analyst)?;
    let id = incident_id(&id)?;
    let text = body
        .text()
        .ok_or_else(|| ApiError::bad_request("a comment needs a summary or a detail"))?;
    let at = chrono::Utc::now();
    let command = Command::CommentIncident {
        incident_id: id,
        by: caller.name.clone(),
        text,
        at,
    };
    commit(&state, &caller, command).await?;
    Ok(Json(serde_json::json!({ "id": id, "status": "ok" })))
}

/// Closes an incident; a summary or detail in the body is kept as a comment.
async fn close(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Option<Json<CommentBody>>,
) -> ApiResult<Json<serde_json::Value>> {
    caller.require(Role::Analyst)?;
    let id = incident_id(&id)?;
    let at = chrono::Utc::now();
    if let Some(text) = body.and_then(|Json(body)| body.text()) {
        let command = Command::CommentIncident {
            incident_id: id,
            by: caller.name.clone(),
            text,
            at,
        };
        commit(&state, &caller, command).await?;
    }
    let command = Command::CloseIncident {
        incident_id: id,
        by: caller.name.clone(),
        at,
    };
    commit(&state, &caller, command).await?;
    Ok(Json(serde_json::json!({ "id": id, "state": "Closed" })))
}

#[derive(Serialize)]
struct TrIncident {
    id: u64,
    summary: String,
    description: String,
    score: u32,
    state: &'static str,
    created_at: Timestamp,
    updated_at: Timestamp,
    event_count: usize,
    event_sources: Vec<String>,
    users: Vec<String>,
    assignee: &'static str,
    team: &'static str,
    hosts: BTreeMap<&'static str, Vec<String>>,
    incident_field_values: Vec<FieldValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    events: Option<Vec<TrEvent>>,
    quarantine_results: Vec<TrQuarantineResult>,
    successful_quarantines: usize,
    failed_quarantines: usize,
    pending_quarantines: usize,
    comments: Vec<TrComment>,
}

#[derive(Serialize)]
struct FieldValue {
    name: &'static str,
    value: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TrEvent {
    id: u64,
    category: String,
    severity: &'static str,
    source: String,
    threatname: String,
    state: &'static str,
    description: String,
    attack_direction: &'static str,
    received: Timestamp,
    emails: Vec<TrEmail>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TrEmail {
    sender: TrAddress,
    recipient: TrAddress,
    subject: Option<String>,
    message_id: Option<String>,
    message_delivery_time: Timestamp,
}

#[derive(Serialize)]
struct TrAddress {
    email: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TrQuarantineResult {
    alert_source: String,
    start_time: Option<Timestamp>,
    end_time: Option<Timestamp>,
    status: &'static str,
    recipient_type: &'static str,
    recipient: String,
    message_id: Option<String>,
    is_read: String,
    was_undone: String,
    details: String,
}

#[derive(Serialize)]
struct TrComment {
    created_at: Timestamp,
    author: String,
    summary: String,
}

fn to_wire(reader: &Reader, incident: Incident, expand: bool) -> ApiResult<TrIncident> {
    let mut alerts = Vec::new();
    for id in &incident.alert_ids {
        alerts.extend(reader.alert(*id)?);
    }
    let mut jobs = Vec::new();
    for id in &incident.job_ids {
        jobs.extend(reader.job(*id)?);
    }
    let quarantine_results = quarantine_results(&jobs, &alerts);
    let count = |status: &str| {
        quarantine_results
            .iter()
            .filter(|r| r.status == status)
            .count()
    };

    let mut hosts: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    let mut add_host = |kind: &'static str, value: &str| {
        let list = hosts.entry(kind).or_default();
        if !list.iter().any(|v| v == value) {
            list.push(value.to_owned());
        }
    };
    for alert in &alerts {
        if let Some(ip) = alert.body.raw.get("senderIP").and_then(|v| v.as_str()) {
            add_host("attacker", ip);
        }
        for threat in &alert.body.threats {
            if let Some(value) = threat
                .value
                .as_deref()
                .filter(|_| threat.hostname.is_some())
            {
                add_host("url", value);
            }
            if let Some(host) = threat.hostname.as_deref() {
                add_host("forensics", host);
            }
        }
    }
    let classification = incident
        .classifications
        .first()
        .cloned()
        .unwrap_or_default();
    Ok(TrIncident {
        id: incident.id,
        summary: incident.title.clone(),
        description: crate::search::description(&alerts),
        score: 0,
        state: match incident.state {
            IncidentState::Open => "Open",
            IncidentState::Closed => "Closed",
        },
        created_at: incident.created_at,
        updated_at: incident.updated_at,
        event_count: alerts.len(),
        event_sources: incident.sources.clone(),
        users: Vec::new(),
        assignee: "Unassigned",
        team: "Unassigned",
        hosts,
        incident_field_values: vec![
            FieldValue {
                name: "Attack Vector",
                value: "Email".into(),
            },
            FieldValue {
                name: "Classification",
                value: classification,
            },
        ],
        events: expand.then(|| alerts.iter().map(event).collect()),
        successful_quarantines: count("successful"),
        failed_quarantines: count("failed"),
        pending_quarantines: count("pending"),
        quarantine_results,
        comments: incident
            .comments
            .iter()
            .map(|c| TrComment {
                created_at: c.at,
                author: c.author.clone(),
                summary: c.text.clone(),
            })
            .collect(),
    })
}

fn event(alert: &Alert) -> TrEvent {
    let body = &alert.body;
    let threat = body.threats.first();
    let threatname = threat
        .and_then(|t| t.value.clone().or(t.id.clone()))
        .unwrap_or_else(|| body.kind.as_str().to_owned());
    TrEvent {
        id: alert.id,
        category: body
            .classifications()
            .first()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        severity: "Critical",
        source: alert.source.clone(),
        threatname: threatname.clone(),
        state: if alert.incident_id.is_some() {
            "Linked"
        } else {
            "Unlinked"
        },
        description: threatname,
        attack_direction: "inbound",
        received: alert.received_at,
        emails: body
            .recipients
            .iter()
            .map(|recipient| TrEmail {
                sender: TrAddress {
                    email: body.sender.clone().unwrap_or_default(),
                },
                recipient: TrAddress {
                    email: recipient.clone(),
                },
                subject: body.subject.clone(),
                message_id: body.message_id.as_ref().map(|m| m.bracketed()),
                message_delivery_time: body.time,
            })
            .collect(),
    }
}

fn quarantine_results(jobs: &[QuarantineJob], alerts: &[Alert]) -> Vec<TrQuarantineResult> {
    let mut out = Vec::new();
    for job in jobs.iter().filter(|j| j.action == JobAction::Quarantine) {
        let source = alerts
            .iter()
            .find(|a| a.id == job.alert_id)
            .map(|a| a.source.clone())
            .unwrap_or_else(|| "Not Available".into());
        for result in &job.results {
            let (status, details) = match result.status {
                RecipientStatus::Pending | RecipientStatus::InProgress => ("pending", "Pending"),
                RecipientStatus::Quarantined => ("successful", "Success"),
                RecipientStatus::AlreadyInDestination => ("successful", "Already in destination"),
                RecipientStatus::Restored => ("successful", "Restored"),
                RecipientStatus::WouldQuarantine => ("successful", "Dry run"),
                RecipientStatus::NotFound => ("failed", "Not found"),
                RecipientStatus::Failed => ("failed", "Failed"),
                // Directory changes are left out above; these never reach here.
                RecipientStatus::Applied | RecipientStatus::Reverted => ("successful", "Done"),
            };
            let details = if result.details.is_empty() {
                details.to_owned()
            } else {
                format!("{details}: {}", result.details)
            };
            out.push(TrQuarantineResult {
                alert_source: source.clone(),
                start_time: result.start_time,
                end_time: result.end_time,
                status,
                recipient_type: "Search",
                recipient: result.recipient.clone(),
                message_id: job.message_id.as_ref().map(|m| m.bracketed()),
                is_read: result.is_read.unwrap_or(false).to_string(),
                was_undone: result.was_undone.to_string(),
                details,
            });
        }
    }
    out
}
