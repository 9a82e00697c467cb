//! Alert sources over HTTP: listing and defining them, and the endpoints others push to.
//!
//! - `GET /api/v1/sources`, `GET|PUT|DELETE /api/v1/sources/{name}`,
//!   `POST /api/v1/sources/{name}/credential` (admin: a new push credential, shown once),
//!   `GET /api/v1/sources/{name}/rejected`.
//! - `POST /api/v1/sources/{name}/upload` (analyst): a search export uploaded by hand.
//! - `POST /api/v1/sources/{name}/push` and `POST /threat/json_event/events/{name}`: pushes,
//!   authenticated by the source's own credential rather than an API key.

use crate::AppState;
use crate::auth::{Caller, hash_key};
use crate::error::{ApiError, ApiResult};
use crate::native::{Page, commit, page};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use pullback_domain::{
    AlertDraft, Checkpoint, Command, CommandResponse, RejectedEvent, SecretDelivery,
    SourceDefinition, SourceKind,
};
use pullback_node::Role;
use pullback_push::export::{ExportReader, RowOutcome};
use serde::{Deserialize, Serialize};

/// Routes that need an API key.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/sources", get(list))
        .route("/api/v1/sources/{name}", get(show).put(put).delete(delete))
        .route("/api/v1/sources/{name}/credential", post(new_credential))
        .route("/api/v1/sources/{name}/rejected", get(rejected_events))
        .route("/api/v1/sources/{name}/upload", post(upload))
}

/// Routes that authenticate with a source's credential.
pub(crate) fn push_routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/sources/{name}/push", post(push_export))
        .route("/threat/json_event/events/{name}", post(push_json_event))
}

/// A source as an operator sees it: its definition without secrets, and its health.
#[derive(Serialize)]
struct SourceView {
    name: String,
    /// `tap`, `search_export`, `json_event`, `script`, or `pushed` for a name that only
    /// `POST /api/v1/alerts` used.
    #[serde(rename = "type")]
    kind: &'static str,
    enabled: bool,
    /// Where the definition lives: `file` (TAP), `state` (configuration file or API).
    defined_in: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    has_credential: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    push_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    script: Option<ScriptView>,
    #[serde(flatten)]
    checkpoint: Checkpoint,
    calls_last_24h: usize,
}

#[derive(Serialize)]
struct ScriptView {
    command: String,
    args: Vec<String>,
    interval_secs: u64,
    timeout_secs: u64,
    memory_mb: u64,
    max_lines_per_sec: u32,
    /// Names and delivery only; values are never shown.
    secrets: Vec<SecretView>,
}

#[derive(Serialize)]
struct SecretView {
    name: String,
    delivery: SecretDelivery,
}

fn view(definition: Option<&SourceDefinition>, name: &str, checkpoint: Checkpoint) -> SourceView {
    let mut checkpoint = checkpoint;
    let calls_last_24h = checkpoint.calls.len();
    // The call ledger is bookkeeping, not something an operator reads.
    checkpoint.calls.clear();
    let Some(definition) = definition else {
        return SourceView {
            name: name.to_owned(),
            kind: "pushed",
            enabled: true,
            defined_in: "none",
            has_credential: None,
            push_path: None,
            script: None,
            checkpoint,
            calls_last_24h,
        };
    };
    let push_path = match definition.kind {
        SourceKind::SearchExport => Some(format!("/api/v1/sources/{name}/push")),
        SourceKind::JsonEvent => Some(format!("/threat/json_event/events/{name}")),
        SourceKind::Script(_) | SourceKind::AbuseMailbox(_) => None,
    };
    let script = match &definition.kind {
        SourceKind::Script(spec) => Some(ScriptView {
            command: spec.command.clone(),
            args: spec.args.clone(),
            interval_secs: spec.interval_secs,
            timeout_secs: spec.timeout_secs,
            memory_mb: spec.memory_mb,
            max_lines_per_sec: spec.max_lines_per_sec,
            secrets: spec
                .secrets
                .iter()
                .map(|s| SecretView {
                    name: s.name.clone(),
                    delivery: s.delivery,
                })
                .collect(),
        }),
        _ => None,
    };
    SourceView {
        name: name.to_owned(),
        kind: definition.kind.as_str(),
        enabled: definition.enabled,
        defined_in: "state",
        has_credential: definition
            .kind
            .is_pushed()
            .then_some(definition.credential_sha256.is_some()),
        push_path,
        script,
        checkpoint,
        calls_last_24h,
    }
}

async fn list(State(state): State<AppState>) -> ApiResult<Json<Vec<SourceView>>> {
    let reader = state.node.reader();
    let definitions = reader.sources()?;
    let mut checkpoints = reader.checkpoints()?;
    let mut take = |name: &str| {
        checkpoints
            .iter()
            .position(|(n, _)| n == name)
            .map(|i| checkpoints.swap_remove(i).1)
            .unwrap_or_default()
    };
    let mut views = Vec::new();
    for name in state.node.tap_sources() {
        let mut tap = view(None, name, take(name));
        tap.kind = "tap";
        tap.defined_in = "file";
        views.push(tap);
    }
    for definition in &definitions {
        views.push(view(
            Some(definition),
            &definition.name,
            take(&definition.name),
        ));
    }
    for (name, checkpoint) in checkpoints {
        views.push(view(None, &name, checkpoint));
    }
    views.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(views))
}

async fn show(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<SourceView>> {
    let Json(all) = list(State(state)).await?;
    let found = all.into_iter().find(|v| v.name == name);
    Ok(Json(found.ok_or_else(|| {
        ApiError::not_found(format!("source {name:?}"))
    })?))
}

async fn put(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<CommandResponse>> {
    caller.require(Role::Admin)?;
    let mut value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
    // The name is the path's; a body may repeat it but not contradict it.
    if let Some(object) = value.as_object_mut() {
        match object.get("name") {
            Some(given) if given != name.as_str() => {
                return Err(ApiError::bad_request(format!(
                    "the body names {given} but the path names {name:?}"
                )));
            }
            _ => {
                object.insert("name".into(), name.clone().into());
            }
        }
    }
    let mut definition: SourceDefinition = serde_json::from_value(value)
        .map_err(|e| ApiError::bad_request(format!("not a source definition: {e}")))?;
    if state.node.tap_sources().contains(&name) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("{name:?} is a TAP source of the configuration file"),
        ));
    }
    let stored = state.node.reader().source(&name)?;
    // Secrets are never shown, so an edit may leave a secret's value out to keep it, but
    // only for the same program: a stored secret is never handed to another one.
    if let (SourceKind::Script(spec), Some(SourceKind::Script(old))) =
        (&mut definition.kind, stored.as_ref().map(|s| &s.kind))
        && spec.command == old.command
    {
        for secret in &mut spec.secrets {
            if secret.value.0.is_empty()
                && let Some(kept) = old.secrets.iter().find(|s| s.name == secret.name)
            {
                secret.value = kept.value.clone();
            }
        }
    }
    // Nor is the credential: keep it unless the body sets another or the type changes.
    if definition.credential_sha256.is_none() && definition.kind.is_pushed() {
        definition.credential_sha256 = stored
            .filter(|s| s.kind == definition.kind)
            .and_then(|s| s.credential_sha256);
    }
    if let Some(hash) = &mut definition.credential_sha256 {
        *hash = hash.to_ascii_lowercase();
    }
    definition.validate().map_err(ApiError::bad_request)?;
    commit(&state, &caller, Command::PutSource { source: definition })
        .await
        .map(Json)
}

async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<Json<CommandResponse>> {
    caller.require(Role::Admin)?;
    if state.node.reader().source(&name)?.is_none() {
        return Err(ApiError::not_found(format!("source {name:?}")));
    }
    commit(&state, &caller, Command::DeleteSource { name })
        .await
        .map(Json)
}

#[derive(Serialize)]
struct NewCredential {
    source: String,
    /// Shown this once; only its SHA-256 is kept.
    credential: String,
}

async fn new_credential(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<Json<NewCredential>> {
    caller.require(Role::Admin)?;
    let mut definition = state
        .node
        .reader()
        .source(&name)?
        .ok_or_else(|| ApiError::not_found(format!("source {name:?}")))?;
    if !definition.kind.is_pushed() {
        return Err(ApiError::bad_request(format!(
            "source {name:?} is a {}; only pushed sources take a credential",
            definition.kind.as_str()
        )));
    }
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let credential = format!("pbs1.{}", hex::encode(secret));
    definition.credential_sha256 = Some(hex::encode(hash_key(&credential)));
    commit(&state, &caller, Command::PutSource { source: definition }).await?;
    Ok(Json(NewCredential {
        source: name,
        credential,
    }))
}

#[derive(Deserialize)]
struct PageQuery {
    #[serde(default)]
    offset: usize,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    100
}

async fn rejected_events(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<PageQuery>,
) -> ApiResult<Json<Page<RejectedEvent>>> {
    let events = state.node.reader().rejected_events(&name)?;
    Ok(Json(page(events, query.offset, query.limit)))
}

/// Checks a push's credential against the source it names. Every refusal is the same 401, so
/// that a caller without the credential learns nothing, and leaves only a log line.
fn authorise_push(
    state: &AppState,
    headers: &HeaderMap,
    name: &str,
    kind: &'static str,
) -> ApiResult<SourceDefinition> {
    let refuse = |why: &str| {
        tracing::warn!(source = %name, kind, why, "push refused");
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this source's credential is required",
        )
    };
    let presented = crate::auth::presented_key(headers);
    if presented.is_empty() {
        return Err(refuse("no credential"));
    }
    let Some(definition) = state.node.reader().source(name)? else {
        return Err(refuse("no such source"));
    };
    if definition.kind.as_str() != kind {
        return Err(refuse("the source is of another type"));
    }
    let Some(expected) = &definition.credential_sha256 else {
        return Err(refuse("the source has no credential set"));
    };
    let presented = hash_key(presented);
    let mut expected_bytes = [0u8; 32];
    if hex::decode_to_slice(expected, &mut expected_bytes).is_err()
        || !crate::auth::same_hash(&presented, &expected_bytes)
    {
        return Err(refuse("wrong credential"));
    }
    if !definition.enabled {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("source {name:?} is disabled"),
        ));
    }
    Ok(definition)
}

/// What a search-export push or upload did.
#[derive(Default, Serialize)]
pub(crate) struct ExportAnswer {
    /// Data rows read (the header not counted).
    rows: u64,
    alerts: u64,
    duplicates: u64,
    incidents: Vec<u64>,
    jobs: u64,
    bad_rows: u64,
    /// The first [`MAX_REPORTED`] bad rows, each with its line and what was wrong.
    errors: Vec<String>,
}

/// Bad rows listed in an answer; all of them are kept as rejected events up to the store's
/// own limit per push.
const MAX_REPORTED: usize = 100;
/// Alerts (or bad rows) committed per log entry while an export streams in.
const ALERTS_PER_COMMIT: usize = 1_000;
/// Bytes of raw rows committed per log entry at most (besides [`ALERTS_PER_COMMIT`]).
const BYTES_PER_COMMIT: usize = 4 << 20;
/// How long a push may send nothing before it is cut off.
const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// The largest JSON export body; CSV is streamed and has no limit.
const MAX_JSON_EXPORT: usize = 32 << 20;

async fn push_export(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<ExportAnswer>> {
    authorise_push(&state, &headers, &name, "search_export")?;
    read_export(&state, &name, &headers, body).await.map(Json)
}

async fn upload(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<ExportAnswer>> {
    caller.require(Role::Analyst)?;
    let definition = state
        .node
        .reader()
        .source(&name)?
        .ok_or_else(|| ApiError::not_found(format!("source {name:?}")))?;
    if definition.kind != SourceKind::SearchExport {
        return Err(ApiError::bad_request(format!(
            "source {name:?} is a {}; uploads go to a search_export source",
            definition.kind.as_str()
        )));
    }
    if !definition.enabled {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("source {name:?} is disabled"),
        ));
    }
    let answer = read_export(&state, &name, &headers, body).await?;
    tracing::info!(caller = %caller.name, source = %name, rows = answer.rows, alerts = answer.alerts, "export uploaded");
    let note = Command::Note {
        action: "upload_export".into(),
        detail: format!(
            "source {name}: {} rows, {} alerts",
            answer.rows, answer.alerts
        ),
    };
    commit(&state, &caller, note).await?;
    Ok(Json(answer))
}

/// Reads an export body (CSV streamed, or JSON), committing alerts as they come.
async fn read_export(
    state: &AppState,
    name: &str,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult<ExportAnswer> {
    let now = chrono::Utc::now();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("text/csv")
        .to_ascii_lowercase();
    let mut batch = Pending::default();
    let mut answer = ExportAnswer::default();
    if content_type.starts_with("application/json") {
        let bytes = axum::body::to_bytes(body, MAX_JSON_EXPORT).await.map_err(|e| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("a JSON export is read whole and may be at most {MAX_JSON_EXPORT} bytes; send CSV to stream a larger one ({e})"),
            )
        })?;
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
        let rows = pullback_push::export::rows_from_json(&value, now)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        for row in rows {
            batch.add(row, &mut answer);
            batch.commit_full(state, name, &mut answer).await?;
        }
        batch.commit(state, name, &mut answer).await?;
        return Ok(answer);
    }
    if !(content_type.starts_with("text/csv")
        || content_type.starts_with("application/csv")
        || content_type.starts_with("text/plain")
        || content_type.starts_with("application/octet-stream"))
    {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("send text/csv or application/json, not {content_type}"),
        ));
    }
    let mut reader = ExportReader::new(now);
    let mut stream = body.into_data_stream();
    let mut rows = Vec::new();
    loop {
        use futures::StreamExt;
        let next = tokio::time::timeout(IDLE_TIMEOUT, stream.next()).await;
        let next = match next {
            Ok(next) => next,
            Err(_) => {
                batch.commit(state, name, &mut answer).await?;
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "the body stalled for {}s after {} rows, which were kept",
                        IDLE_TIMEOUT.as_secs(),
                        answer.rows
                    ),
                ));
            }
        };
        let chunk = match next {
            Some(Ok(chunk)) => chunk,
            Some(Err(e)) => {
                // What came before is committed; say where it stopped.
                batch.commit(state, name, &mut answer).await?;
                return Err(ApiError::bad_request(format!(
                    "the body broke off after {} rows, which were kept: {e}",
                    answer.rows
                )));
            }
            None => break,
        };
        reader
            .feed(&chunk, &mut rows)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        for row in rows.drain(..) {
            batch.add(row, &mut answer);
            batch.commit_full(state, name, &mut answer).await?;
        }
    }
    reader
        .finish(&mut rows)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    for row in rows.drain(..) {
        batch.add(row, &mut answer);
        batch.commit_full(state, name, &mut answer).await?;
    }
    batch.commit(state, name, &mut answer).await?;
    Ok(answer)
}

/// Alerts and bad rows read but not yet committed.
#[derive(Default)]
struct Pending {
    drafts: Vec<AlertDraft>,
    rejected: Vec<RejectedEvent>,
    /// An estimate of their size in the log.
    bytes: usize,
}

impl Pending {
    fn add(&mut self, row: RowOutcome, answer: &mut ExportAnswer) {
        answer.rows += 1;
        match row {
            RowOutcome::Alerts { drafts, .. } => {
                self.bytes += drafts.iter().map(raw_size).sum::<usize>();
                self.drafts.extend(drafts);
            }
            RowOutcome::Bad(error) => {
                answer.bad_rows += 1;
                if answer.errors.len() < MAX_REPORTED {
                    answer.errors.push(error.reason.clone());
                }
                self.bytes += error.event.raw.to_string().len();
                self.rejected.push(error.event);
            }
        }
    }

    /// Commits entries of at most [`ALERTS_PER_COMMIT`] alerts while what waits is over
    /// a limit, so that a row with thousands of recipients, or a run of bad rows, never
    /// makes one huge entry.
    async fn commit_full(
        &mut self,
        state: &AppState,
        name: &str,
        answer: &mut ExportAnswer,
    ) -> ApiResult<()> {
        while self.drafts.len() >= ALERTS_PER_COMMIT
            || self.rejected.len() >= ALERTS_PER_COMMIT
            || self.bytes >= BYTES_PER_COMMIT
        {
            let mut rest = Pending::default();
            if self.drafts.len() > ALERTS_PER_COMMIT {
                rest.drafts = self.drafts.split_off(ALERTS_PER_COMMIT);
            }
            if self.rejected.len() > ALERTS_PER_COMMIT {
                rest.rejected = self.rejected.split_off(ALERTS_PER_COMMIT);
            }
            rest.bytes = rest.drafts.iter().map(raw_size).sum::<usize>()
                + rest
                    .rejected
                    .iter()
                    .map(|r| r.raw.to_string().len())
                    .sum::<usize>();
            self.commit(state, name, answer).await?;
            *self = rest;
        }
        Ok(())
    }

    async fn commit(
        &mut self,
        state: &AppState,
        name: &str,
        answer: &mut ExportAnswer,
    ) -> ApiResult<()> {
        if self.drafts.is_empty() && self.rejected.is_empty() {
            return Ok(());
        }
        self.bytes = 0;
        let drafts = std::mem::take(&mut self.drafts);
        let rejected = std::mem::take(&mut self.rejected);
        let response = state.node.ingest_pushed(name, drafts, rejected).await?;
        if let Some(reason) = response.refused {
            return Err(ApiError::new(StatusCode::CONFLICT, reason));
        }
        answer.alerts += response.alerts.len() as u64;
        answer.duplicates += response.duplicates;
        answer.jobs += response.jobs.len() as u64;
        let room = 1_000usize.saturating_sub(answer.incidents.len());
        answer
            .incidents
            .extend(response.incidents.into_iter().take(room));
        Ok(())
    }
}

/// About how many bytes a draft takes in the log.
fn raw_size(draft: &AlertDraft) -> usize {
    draft.raw.to_string().len() + draft.subject.as_ref().map_or(0, String::len) + 256
}

/// The JSON alert source's answer.
#[derive(Serialize)]
struct EventAnswer {
    /// The alert created, absent when the same event was pushed before.
    #[serde(skip_serializing_if = "Option::is_none")]
    alert_id: Option<u64>,
    duplicate: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    incident_id: Option<u64>,
    jobs: Vec<u64>,
}

/// The largest JSON event accepted.
const MAX_JSON_EVENT: usize = 4 << 20;

async fn push_json_event(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<impl IntoResponse> {
    authorise_push(&state, &headers, &name, "json_event")?;
    let bytes = axum::body::to_bytes(body, MAX_JSON_EVENT)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("an event may be at most {MAX_JSON_EVENT} bytes"),
            )
        })?;
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
    let draft = pullback_push::json_event::parse(&value, chrono::Utc::now())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let response = state
        .node
        .ingest_pushed(&name, vec![draft], Vec::new())
        .await?;
    if let Some(reason) = response.refused {
        return Err(ApiError::new(StatusCode::CONFLICT, reason));
    }
    let alert_id = response.alerts.first().copied();
    let incident_id = match alert_id {
        Some(id) => state.node.reader().alert(id)?.and_then(|a| a.incident_id),
        None => None,
    };
    let status = if alert_id.is_some() {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let answer = EventAnswer {
        alert_id,
        duplicate: alert_id.is_none(),
        incident_id,
        jobs: response.jobs,
    };
    Ok((status, Json(answer)))
}
