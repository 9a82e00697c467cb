//! Search, the incident list, the dashboard's counts and the audit log: the reads the web UI
//! is built on. Every list pages by a cursor (the last id shown), newest first, so a page
//! costs the same whether the store holds a thousand alerts or ten million.

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::native::commit;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use pullback_domain::{
    Alert, Command, CommandResponse, Incident, IncidentState, QuarantineJob, RecipientStatus, Role,
    Timestamp, hostname_of,
};
use pullback_store::search;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Alerts a search looks at per page before it answers with what it has.
const SEARCH_BUDGET: usize = 20_000;
/// Incidents the list looks at per page when filters reject most of them.
const LIST_BUDGET: usize = 5_000;
const MAX_PAGE: usize = 500;
/// Rows a CSV export holds at most.
const MAX_EXPORT: usize = 100_000;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/search", get(search_alerts))
        .route("/api/v1/incidents", get(list_incidents))
        .route("/api/v1/incidents/{id}/close", post(close))
        .route("/api/v1/incidents/{id}/comments", post(comment))
        .route("/api/v1/stats", get(stats))
        .route("/api/v1/audit", get(audit))
}

fn cursor(raw: Option<&str>) -> ApiResult<Option<u64>> {
    raw.filter(|c| !c.is_empty())
        .map(|c| {
            c.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!("cursor: {c:?} is not one this server gave"))
            })
        })
        .transpose()
}

fn page_size(raw: Option<&str>, default: usize) -> ApiResult<usize> {
    match raw.filter(|l| !l.is_empty()) {
        None => Ok(default),
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_request(format!(
                "limit: {text:?} is not a number from 1 to {MAX_PAGE}"
            ))),
        },
    }
}

/// One search result. The basic view has the columns an analyst scans; the detailed view
/// adds what identifies the message and what the quarantine did.
#[derive(Serialize)]
struct Row {
    alert_id: u64,
    time: Timestamp,
    received_at: Timestamp,
    source: String,
    kind: &'static str,
    classification: String,
    threat: String,
    /// The host of the URL threat: subdomain and domain.
    threat_hostname: String,
    /// The alert's targets.
    email_recipient: String,
    sender: String,
    subject: String,
    incident_id: Option<u64>,
    incident_state: Option<IncidentState>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    detail: Option<Detail>,
}

#[derive(Serialize)]
struct Detail {
    message_id: String,
    threat_url: String,
    hashes: Vec<String>,
    campaign_id: String,
    matched: Vec<String>,
    quarantine: Vec<RecipientState>,
}

#[derive(Serialize)]
struct RecipientState {
    recipient: String,
    status: &'static str,
    restored: bool,
}

#[derive(Serialize)]
struct IncidentRow {
    id: u64,
    title: String,
    state: IncidentState,
    created_at: Timestamp,
    alert_count: usize,
}

#[derive(Serialize)]
struct SearchAnswer {
    alerts: Vec<Row>,
    incidents: Vec<IncidentRow>,
    next_cursor: Option<String>,
    /// The search looked at as many alerts as one page may and stopped; `next_cursor` goes on.
    partial: bool,
}

/// Incidents and jobs read while building one answer.
#[derive(Default)]
struct Related {
    incidents: HashMap<u64, Option<Incident>>,
    jobs: HashMap<u64, Option<QuarantineJob>>,
}

impl Related {
    fn incident(
        &mut self,
        reader: &pullback_store::Reader,
        id: u64,
    ) -> ApiResult<Option<&Incident>> {
        if let std::collections::hash_map::Entry::Vacant(slot) = self.incidents.entry(id) {
            slot.insert(reader.incident(id)?);
        }
        Ok(self.incidents.get(&id).and_then(Option::as_ref))
    }

    fn job(
        &mut self,
        reader: &pullback_store::Reader,
        id: u64,
    ) -> ApiResult<Option<&QuarantineJob>> {
        if let std::collections::hash_map::Entry::Vacant(slot) = self.jobs.entry(id) {
            slot.insert(reader.job(id)?);
        }
        Ok(self.jobs.get(&id).and_then(Option::as_ref))
    }
}

fn threat_hostname(alert: &Alert) -> String {
    let mut hosts: Vec<String> = Vec::new();
    for threat in &alert.body.threats {
        let host = threat.hostname.clone().or_else(|| {
            let value = threat.value.as_deref()?;
            let is_url =
                threat.kind == Some(pullback_domain::ThreatKind::Url) || value.contains("://");
            is_url.then(|| hostname_of(value)).flatten()
        });
        if let Some(host) = host
            && !hosts.contains(&host)
        {
            hosts.push(host);
        }
    }
    hosts.join(", ")
}

/// The threat a row shows: the first one the query's threat criteria match, else the first
/// URL threat, else the first.
fn shown_threat<'a>(
    alert: &'a Alert,
    query: &search::Query,
) -> Option<&'a pullback_domain::Threat> {
    let threats = &alert.body.threats;
    threats
        .iter()
        .find(|t| {
            let terms = search::threat_terms(t);
            query.terms.iter().any(|term| terms.contains(term))
        })
        .or_else(|| {
            threats
                .iter()
                .find(|t| t.kind == Some(pullback_domain::ThreatKind::Url))
        })
        .or_else(|| threats.first())
}

fn row(
    reader: &pullback_store::Reader,
    related: &mut Related,
    alert: Alert,
    query: &search::Query,
    detailed: bool,
) -> ApiResult<Row> {
    let first = shown_threat(&alert, query);
    let incident_state = match alert.incident_id {
        Some(id) => related.incident(reader, id)?.map(|i| i.state),
        None => None,
    };
    let detail = if detailed {
        let mut quarantine = Vec::new();
        let job_ids = match alert.incident_id {
            Some(id) => related
                .incident(reader, id)?
                .map(|i| i.job_ids.clone())
                .unwrap_or_default(),
            None => Vec::new(),
        };
        for job_id in job_ids {
            let Some(job) = related.job(reader, job_id)? else {
                continue;
            };
            let same_message = alert.body.message_id == job.message_id;
            if job.action != pullback_domain::JobAction::Quarantine || !same_message {
                continue;
            }
            for result in &job.results {
                if alert.body.recipients.contains(&result.recipient) {
                    quarantine.push(RecipientState {
                        recipient: result.recipient.clone(),
                        status: result.status.as_str(),
                        restored: result.was_undone,
                    });
                }
            }
        }
        let mut hashes: Vec<String> = alert
            .body
            .threats
            .iter()
            .filter_map(|t| t.sha256.clone())
            .collect();
        hashes.dedup();
        Some(Detail {
            message_id: alert
                .body
                .message_id
                .as_ref()
                .map(|m| m.as_str().to_owned())
                .unwrap_or_default(),
            threat_url: first
                .and_then(|t| t.dashboard_url.clone())
                .unwrap_or_default(),
            hashes,
            campaign_id: first
                .and_then(|t| t.campaign_id.clone())
                .unwrap_or_default(),
            matched: alert.matched.clone(),
            quarantine,
        })
    } else {
        None
    };
    Ok(Row {
        alert_id: alert.id,
        time: alert.body.time,
        received_at: alert.received_at,
        kind: alert.body.kind.as_str(),
        classification: alert.body.classifications().join(", "),
        threat: first.and_then(|t| t.value.clone()).unwrap_or_default(),
        threat_hostname: threat_hostname(&alert),
        email_recipient: alert.body.recipients.join(", "),
        sender: alert.body.sender.clone().unwrap_or_default(),
        subject: alert.body.subject.clone().unwrap_or_default(),
        incident_id: alert.incident_id,
        incident_state,
        source: alert.source,
        detail,
    })
}

/// The search parameters besides the criteria.
const CONTROLS: [&str; 4] = ["view", "limit", "cursor", "format"];
const CRITERIA: [&str; 13] = [
    "threat_url",
    "url",
    "host",
    "recipient",
    "sender",
    "subject",
    "message_id",
    "hash",
    "classification",
    "source",
    "state",
    "after",
    "before",
];

async fn search_alerts(
    State(state): State<AppState>,
    Query(params): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    let get = |name: &str| {
        params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    if let Some((unknown, _)) = params
        .iter()
        .find(|(n, _)| !CONTROLS.contains(&n.as_str()) && !CRITERIA.contains(&n.as_str()))
    {
        return Err(ApiError::bad_request(format!(
            "{unknown}: not a search parameter; use {}",
            CRITERIA.join(", ")
        )));
    }
    let query = search::Query::parse(params.iter().map(|(n, v)| (n.as_str(), v.as_str())))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let detailed = match get("view").unwrap_or("basic") {
        "basic" | "" => false,
        "detailed" => true,
        other => {
            return Err(ApiError::bad_request(format!(
                "view: {other:?} is not a view; use basic or detailed"
            )));
        }
    };
    let before = cursor(get("cursor"))?;
    let reader = state.node.reader();
    match get("format").unwrap_or("json") {
        "json" | "" => {}
        "csv" => return export(reader, &query, before, detailed),
        other => {
            return Err(ApiError::bad_request(format!(
                "format: {other:?} is not a format; use json or csv"
            )));
        }
    }
    let limit = page_size(get("limit"), 50)?;
    let hits = reader.search(&query, before, limit, SEARCH_BUDGET)?;
    let mut related = Related::default();
    let mut rows = Vec::with_capacity(hits.alerts.len());
    let mut incidents: Vec<IncidentRow> = Vec::new();
    for alert in hits.alerts {
        if let Some(id) = alert.incident_id
            && !incidents.iter().any(|i| i.id == id)
            && let Some(incident) = related.incident(reader, id)?
        {
            incidents.push(IncidentRow {
                id,
                title: incident.title.clone(),
                state: incident.state,
                created_at: incident.created_at,
                alert_count: incident.alert_ids.len(),
            });
        }
        rows.push(row(reader, &mut related, alert, &query, detailed)?);
    }
    Ok(Json(SearchAnswer {
        alerts: rows,
        incidents,
        next_cursor: hits.next.map(|n| n.to_string()),
        partial: hits.partial,
    })
    .into_response())
}

/// The whole result (up to [`MAX_EXPORT`] rows) as CSV.
fn export(
    reader: &pullback_store::Reader,
    query: &search::Query,
    mut before: Option<u64>,
    detailed: bool,
) -> ApiResult<Response> {
    let mut out = String::new();
    let mut header = vec![
        "Alert ID",
        "Time",
        "Received",
        "Source",
        "Kind",
        "Classification",
        "Threat",
        "Threat Hostname",
        "Email Recipient",
        "Sender",
        "Subject",
        "Incident",
        "Incident State",
    ];
    if detailed {
        header.extend([
            "Message-ID",
            "Threat URL",
            "Hashes",
            "Campaign",
            "Matched",
            "Quarantine",
        ]);
    }
    csv_line(&mut out, header.iter().map(|h| h.to_string()));
    let mut related = Related::default();
    let mut rows = 0;
    loop {
        let hits = reader.search(query, before, MAX_PAGE, SEARCH_BUDGET)?;
        for alert in hits.alerts {
            let row = row(reader, &mut related, alert, query, detailed)?;
            let mut cells = vec![
                row.alert_id.to_string(),
                row.time.to_rfc3339(),
                row.received_at.to_rfc3339(),
                row.source,
                row.kind.to_owned(),
                row.classification,
                row.threat,
                row.threat_hostname,
                row.email_recipient,
                row.sender,
                row.subject,
                row.incident_id.map(|i| i.to_string()).unwrap_or_default(),
                match row.incident_state {
                    Some(IncidentState::Open) => "open".into(),
                    Some(IncidentState::Closed) => "closed".into(),
                    None => String::new(),
                },
            ];
            if let Some(detail) = row.detail {
                cells.extend([
                    detail.message_id,
                    detail.threat_url,
                    detail.hashes.join(" "),
                    detail.campaign_id,
                    detail.matched.join(" "),
                    detail
                        .quarantine
                        .iter()
                        .map(|q| format!("{}={}", q.recipient, q.status))
                        .collect::<Vec<_>>()
                        .join(" "),
                ]);
            }
            csv_line(&mut out, cells.into_iter());
            rows += 1;
        }
        // Related records are only reused within a page or two; keep memory flat.
        if related.incidents.len() > 10_000 {
            related = Related::default();
        }
        match hits.next {
            Some(next) if rows < MAX_EXPORT => before = Some(next),
            _ => break,
        }
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"pullback-search.csv\"",
            ),
        ],
        out,
    )
        .into_response())
}

/// One CSV line (RFC 4180). A cell that a spreadsheet would run as a formula gets a leading
/// apostrophe: the data comes from attackers.
fn csv_line(out: &mut String, cells: impl Iterator<Item = String>) {
    let mut first = true;
    for cell in cells {
        if !first {
            out.push(',');
        }
        first = false;
        let cell = if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            format!("'{cell}")
        } else {
            cell
        };
        if cell.contains([',', '"', '\n', '\r']) {
            out.push('"');
            out.push_str(&cell.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(&cell);
        }
    }
    out.push_str("\r\n");
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IncidentQuery {
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    classification: Option<String>,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    limit: Option<String>,
}

#[derive(Serialize, Default)]
struct QuarantineCounts {
    quarantined: usize,
    restored: usize,
    failed: usize,
    pending: usize,
}

#[derive(Serialize)]
struct IncidentSummary {
    id: u64,
    title: String,
    state: IncidentState,
    created_at: Timestamp,
    updated_at: Timestamp,
    alert_count: usize,
    sources: Vec<String>,
    classifications: Vec<String>,
    quarantine: QuarantineCounts,
}

#[derive(Serialize)]
struct IncidentList {
    items: Vec<IncidentSummary>,
    next_cursor: Option<String>,
}

async fn list_incidents(
    State(state): State<AppState>,
    Query(query): Query<IncidentQuery>,
) -> ApiResult<Json<IncidentList>> {
    let wanted_state = match query.state.as_deref().unwrap_or_default() {
        "" | "all" => None,
        "open" => Some(IncidentState::Open),
        "closed" => Some(IncidentState::Closed),
        other => {
            return Err(ApiError::bad_request(format!(
                "state: {other:?} is not a state; use open, closed or all"
            )));
        }
    };
    let source = query.source.filter(|s| !s.is_empty());
    let class = query
        .classification
        .filter(|c| !c.is_empty())
        .map(|c| c.to_lowercase());
    let before = cursor(query.cursor.as_deref())?;
    let limit = page_size(query.limit.as_deref(), 50)?;
    let reader = state.node.reader();
    let (incidents, next) =
        reader.incident_page(wanted_state, before, limit, LIST_BUDGET, |i| {
            source.as_ref().is_none_or(|s| i.sources.contains(s))
                && class
                    .as_ref()
                    .is_none_or(|c| i.classifications.iter().any(|k| k.to_lowercase() == *c))
        })?;
    let mut items = Vec::with_capacity(incidents.len());
    for incident in incidents {
        let mut quarantine = QuarantineCounts::default();
        for job_id in &incident.job_ids {
            let Some(job) = reader.job(*job_id)? else {
                continue;
            };
            if job.action != pullback_domain::JobAction::Quarantine {
                continue;
            }
            for result in &job.results {
                match result.status {
                    _ if result.was_undone => quarantine.restored += 1,
                    RecipientStatus::Quarantined | RecipientStatus::AlreadyInDestination => {
                        quarantine.quarantined += 1
                    }
                    RecipientStatus::Failed => quarantine.failed += 1,
                    RecipientStatus::Pending | RecipientStatus::InProgress => {
                        quarantine.pending += 1
                    }
                    _ => {}
                }
            }
        }
        items.push(IncidentSummary {
            id: incident.id,
            alert_count: incident.alert_ids.len(),
            title: incident.title,
            state: incident.state,
            created_at: incident.created_at,
            updated_at: incident.updated_at,
            sources: incident.sources,
            classifications: incident.classifications,
            quarantine,
        });
    }
    Ok(Json(IncidentList {
        items,
        next_cursor: next.map(|n| n.to_string()),
    }))
}

async fn close(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<u64>,
) -> ApiResult<Json<CommandResponse>> {
    caller.require(Role::Analyst)?;
    let command = Command::CloseIncident {
        incident_id: id,
        by: caller.name.clone(),
        at: chrono::Utc::now(),
    };
    commit(&state, &caller, command).await.map(Json)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewComment {
    text: String,
}

async fn comment(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<u64>,
    Json(body): Json<NewComment>,
) -> ApiResult<Json<CommandResponse>> {
    caller.require(Role::Analyst)?;
    let text = body.text.trim();
    if text.is_empty() || text.len() > 10_000 {
        return Err(ApiError::bad_request("text: write 1 to 10,000 bytes"));
    }
    let command = Command::CommentIncident {
        incident_id: id,
        by: caller.name.clone(),
        text: text.to_owned(),
        at: chrono::Utc::now(),
    };
    commit(&state, &caller, command).await.map(Json)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatsQuery {
    #[serde(default)]
    days: Option<String>,
}

#[derive(Serialize)]
struct Day {
    day: String,
    alerts: u64,
    quarantined: u64,
    restored: u64,
    failed: u64,
}

#[derive(Serialize)]
struct Stats {
    days: Vec<Day>,
}

/// Alerts and quarantine outcomes per day, for the dashboard's charts.
async fn stats(
    State(state): State<AppState>,
    Query(query): Query<StatsQuery>,
) -> ApiResult<Json<Stats>> {
    let days = match query.days.as_deref().filter(|d| !d.is_empty()) {
        None => 30,
        Some(text) => match text.parse::<i64>() {
            Ok(n) if (1..=366).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "days: {text:?} is not a number from 1 to 366"
                )));
            }
        },
    };
    let last = chrono::Utc::now().date_naive();
    let first = last - chrono::Duration::days(days - 1);
    let counts = state.node.reader().days(first, last)?;
    Ok(Json(Stats {
        days: counts
            .into_iter()
            .map(|(day, c)| Day {
                day: day.format("%Y-%m-%d").to_string(),
                alerts: c.alerts,
                quarantined: c.quarantined,
                restored: c.restored,
                failed: c.failed,
            })
            .collect(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    limit: Option<String>,
}

#[derive(Serialize)]
struct AuditPage {
    items: Vec<pullback_domain::AuditEntry>,
    next_cursor: Option<String>,
}

async fn audit(
    State(state): State<AppState>,
    Query(query): Query<AuditQuery>,
) -> ApiResult<Json<AuditPage>> {
    let before = cursor(query.cursor.as_deref())?;
    let limit = page_size(query.limit.as_deref(), 100)?;
    let items = state.node.reader().audit_page(before, limit)?;
    let next_cursor = (items.len() == limit)
        .then(|| items.last().map(|e| e.id.to_string()))
        .flatten();
    Ok(Json(AuditPage { items, next_cursor }))
}

/// The threat description of an incident: what the analyses of its reported messages found.
pub(crate) fn description(alerts: &[Alert]) -> String {
    let found: Vec<&str> = alerts
        .iter()
        .filter_map(|a| a.body.analysis.as_ref()?.get("summary")?.as_str())
        .collect();
    found.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_quoted_and_formulas_defused() {
        let mut out = String::new();
        csv_line(
            &mut out,
            ["plain", "a,b", "say \"hi\"", "=HYPERLINK(\"x\")", "-1"]
                .into_iter()
                .map(String::from),
        );
        assert_eq!(
            out,
            "plain,\"a,b\",\"say \"\"hi\"\"\",\"'=HYPERLINK(\"\"x\"\")\",'-1\r\n"
        );
    }
}
