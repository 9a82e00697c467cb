//! Intelligence lists: known-bad URLs, domains and file hashes that the analysis of reported
//! messages treats as evidence.
//!
//! - `GET /api/v1/intel?kind=url|domain|sha256&offset=&limit=` (read_only)
//! - `POST /api/v1/intel?list=NAME[&kind=KIND]` (admin): JSON `{"entries": [{"kind", "value",
//!   "note"}]}`, a plain list (`text/plain`, one value a line, `#` comments; `kind` required),
//!   or CSV (`text/csv`, with a `url`, `domain` or `sha256` column, and optionally `note`).
//! - `DELETE /api/v1/intel/{kind}/{value}` (admin)

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::native::{Page, commit, page};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::routing::{delete, get};
use axum::{Extension, Json, Router};
use pullback_domain::{Command, CommandResponse, IntelEntry, IntelKind};
use pullback_node::Role;
use serde::{Deserialize, Serialize};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/intel", get(list).post(import))
        .route("/api/v1/intel/{kind}/{*value}", delete(remove))
}

/// The largest import body.
const MAX_IMPORT: usize = 16 << 20;
/// Entries committed per log entry.
const PER_COMMIT: usize = 1_000;

#[derive(Deserialize)]
struct ListQuery {
    kind: Option<IntelKind>,
    #[serde(default)]
    offset: usize,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    100
}

async fn list(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Page<IntelEntry>>> {
    let reader = state.node.reader();
    let kinds = match query.kind {
        Some(kind) => vec![kind],
        None => vec![IntelKind::Url, IntelKind::Domain, IntelKind::Sha256],
    };
    let mut all = Vec::new();
    for kind in kinds {
        all.extend(reader.intel_entries(kind)?);
    }
    Ok(Json(page(all, query.offset, query.limit)))
}

#[derive(Deserialize)]
struct ImportQuery {
    list: Option<String>,
    kind: Option<IntelKind>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonImport {
    entries: Vec<JsonEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonEntry {
    kind: IntelKind,
    value: String,
    #[serde(default)]
    note: Option<String>,
}

#[derive(Default, Serialize)]
struct ImportAnswer {
    added: usize,
    /// Values that are not what their kind needs, each with where it was.
    errors: Vec<String>,
}

async fn import(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<ImportQuery>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> ApiResult<Json<ImportAnswer>> {
    caller.require(Role::Admin)?;
    let list = query.list.unwrap_or_else(|| "manual".into());
    if !pullback_domain::valid_source_name(&list) {
        return Err(ApiError::bad_request(
            "list must be 1 to 64 letters, digits, '.', '_' or '-'",
        ));
    }
    let bytes = axum::body::to_bytes(body, MAX_IMPORT).await.map_err(|_| {
        ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            format!("an import may be at most {MAX_IMPORT} bytes; split it"),
        )
    })?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("text/plain")
        .to_ascii_lowercase();
    let text = String::from_utf8_lossy(&bytes);
    let mut answer = ImportAnswer::default();
    let mut entries = Vec::new();
    let mut take =
        |kind: IntelKind, raw: &str, note: Option<String>, at: String| match kind.normalise(raw) {
            Some(value) => entries.push(IntelEntry {
                kind,
                value,
                list: list.clone(),
                note,
            }),
            None if answer.errors.len() < 100 => answer
                .errors
                .push(format!("{at}: {raw:?} is not a valid {}", kind.as_str())),
            None => {}
        };
    if content_type.starts_with("application/json") {
        let import: JsonImport = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::bad_request(format!("not an import: {e}")))?;
        for (index, entry) in import.entries.into_iter().enumerate() {
            take(
                entry.kind,
                &entry.value,
                entry.note,
                format!("entries[{index}]"),
            );
        }
    } else if content_type.starts_with("text/csv") {
        let mut lines = text.lines();
        let header_line = lines
            .next()
            .unwrap_or_default()
            .trim_start_matches('\u{feff}');
        let columns: Vec<String> = header_line
            .split(',')
            .map(|c| c.trim().trim_matches('"').to_ascii_lowercase())
            .collect();
        let find = |name: &str| columns.iter().position(|c| c == name);
        let (kind, column) = [IntelKind::Url, IntelKind::Domain, IntelKind::Sha256]
            .into_iter()
            .find_map(|k| find(k.as_str()).map(|c| (k, c)))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "the CSV has no url, domain or sha256 column (columns found: {header_line})"
                ))
            })?;
        let note = find("note");
        for (number, line) in lines.enumerate() {
            // FIXME: simple comma split; a quoted field holding a comma is cut there.
            let fields: Vec<&str> = line
                .split(',')
                .map(|f| f.trim().trim_matches('"'))
                .collect();
            let Some(raw) = fields.get(column).filter(|v| !v.is_empty()) else {
                continue;
            };
            let note = note.and_then(|n| fields.get(n)).map(|n| n.to_string());
            take(kind, raw, note, format!("line {}", number + 2));
        }
    } else {
        let kind = query.kind.ok_or_else(|| {
            ApiError::bad_request("a plain list needs ?kind=url, domain or sha256")
        })?;
        for (number, line) in text.lines().enumerate() {
            let value = line.split('#').next().unwrap_or_default().trim();
            if !value.is_empty() {
                take(kind, value, None, format!("line {}", number + 1));
            }
        }
    }
    answer.added = entries.len();
    for chunk in entries.chunks(PER_COMMIT) {
        let command = Command::PutIntel {
            entries: chunk.to_vec(),
        };
        commit(&state, &caller, command).await?;
    }
    Ok(Json(answer))
}

async fn remove(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((kind, value)): Path<(IntelKind, String)>,
) -> ApiResult<Json<CommandResponse>> {
    caller.require(Role::Admin)?;
    let value = kind.normalise(&value).ok_or_else(|| {
        ApiError::bad_request(format!("{value:?} is not a valid {}", kind.as_str()))
    })?;
    if state.node.reader().intel(kind, &value)?.is_none() {
        return Err(ApiError::not_found(format!("{} {value:?}", kind.as_str())));
    }
    commit(&state, &caller, Command::DeleteIntel { kind, value })
        .await
        .map(Json)
}
