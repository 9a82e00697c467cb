//! The Graph operations of the local service: one request, or a `$batch` of them.

use super::auth::Issued;
use super::odata::{self, Clause, Kind, Literal};
use super::store::{Folder, Mailbox, StoredMessage};
use super::{Answer, Fault, LocalGraphState, Slot, admit, take_fault, throttled};
use axum::http::HeaderMap;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Graph's limit on the requests of one batch.
const MAX_BATCH: usize = 20;
/// How many requests of a batch Graph runs at once for Outlook resources.
const BATCH_PARALLEL: usize = 4;
/// Messages per page when `$top` is not given.
const DEFAULT_PAGE: usize = 10;
const MAX_TOP: usize = 1000;

const MESSAGE_FIELDS: [&str; 10] = [
    "id",
    "parentFolderId",
    "internetMessageId",
    "subject",
    "from",
    "sender",
    "isRead",
    "sentDateTime",
    "receivedDateTime",
    "singleValueExtendedProperties",
];
const FOLDER_FIELDS: [&str; 7] = [
    "id",
    "displayName",
    "parentFolderId",
    "childFolderCount",
    "unreadItemCount",
    "totalItemCount",
    "isHidden",
];
const MESSAGE_FILTERS: [(&str, Kind); 8] = [
    ("id", Kind::Str),
    ("internetMessageId", Kind::Str),
    ("subject", Kind::Str),
    ("from/emailAddress/address", Kind::Str),
    ("sender/emailAddress/address", Kind::Str),
    ("sentDateTime", Kind::DateTime),
    ("receivedDateTime", Kind::DateTime),
    ("isRead", Kind::Bool),
];
const FOLDER_FILTERS: [(&str, Kind); 2] = [("id", Kind::Str), ("displayName", Kind::Str)];

/// The mailbox a request is about: the `/users/{id}` segment, decoded.
fn mailbox_of(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/users/")?;
    let user = rest.split('/').next()?;
    Some(odata::decode(user)).filter(|u| !u.is_empty())
}

/// One Graph request outside a batch: admitted, faulted, delayed, done.
pub(super) async fn one(
    state: &Arc<LocalGraphState>,
    issued: &Issued,
    method: &str,
    path: &str,
    query: &str,
    body: Option<Value>,
) -> Answer {
    let Some(mailbox) = mailbox_of(path) else {
        return Answer::error(
            400,
            "BadRequest",
            &format!("Resource not found for the segment '{path}'."),
        );
    };
    let slot = match gate(state, issued, &mailbox) {
        Ok(slot) => slot,
        Err(answer) => return answer,
    };
    let (fault, latency) = {
        let mut inner = state.inner();
        inner.stats.requests += 1;
        inner.log.push(format!("{method} {path}?{query}"));
        (take_fault(&mut inner, &mailbox), inner.latency)
    };
    let answer = faulted(fault.as_ref(), latency).await;
    let answer = match answer {
        Some(answer) => answer,
        None => execute(state, method, path, query, body),
    };
    drop(slot);
    answer
}

/// Admission under the limits, and throttling faults (which answer without a slot).
fn gate(state: &Arc<LocalGraphState>, issued: &Issued, mailbox: &str) -> Result<Slot, Answer> {
    {
        let mut inner = state.inner();
        let next = inner.faults.iter().find(|rule| {
            rule.times > 0
                && rule
                    .mailbox
                    .as_deref()
                    .is_none_or(|m| m.eq_ignore_ascii_case(mailbox))
        });
        if let Some(super::FaultRule {
            fault:
                Fault::Throttle {
                    status,
                    retry_after_secs,
                },
            ..
        }) = next
        {
            let (status, retry) = (*status, *retry_after_secs);
            take_fault(&mut inner, mailbox);
            inner.stats.throttled += 1;
            inner.stats.requests += 1;
            return Err(throttled(status, retry, "injected"));
        }
    }
    admit(state, &issued.client_id, mailbox)
}

/// Applies a non-throttling fault: waits, or answers in place of the work.
async fn faulted(fault: Option<&Fault>, latency: std::time::Duration) -> Option<Answer> {
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match fault? {
        Fault::Slow(delay) => {
            tokio::time::sleep(*delay).await;
            None
        }
        Fault::Malformed => {
            let mut answer = Answer::new(200, json!({ "value": [ { "id": "cut" } ] }));
            answer.malformed = true;
            Some(answer)
        }
        Fault::Error {
            status,
            code,
            message,
        } => Some(Answer::error(*status, code, message)),
        Fault::Throttle { .. } => None,
    }
}

/// A `$batch`: checked as Graph checks it, then run four at a time in dependency order.
pub(super) async fn batch(
    state: &Arc<LocalGraphState>,
    issued: &Issued,
    headers: &HeaderMap,
    body: &[u8],
) -> Answer {
    let json_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    if !json_type {
        return Answer::error(
            415,
            "UnsupportedMediaType",
            "The batch must be sent as application/json.",
        );
    }
    let requests = match parse_batch(body) {
        Ok(requests) => requests,
        Err(message) => return Answer::error(400, "BadRequest", &message),
    };

    let mut answers: BTreeMap<String, Answer> = BTreeMap::new();
    let mut malformed = false;
    while answers.len() < requests.len() {
        let ready: Vec<&Request> = requests
            .iter()
            .filter(|r| !answers.contains_key(&r.id))
            .filter(|r| r.depends_on.iter().all(|d| answers.contains_key(d)))
            .collect();
        let mut runnable = Vec::new();
        for request in ready {
            let failed_dependency = request
                .depends_on
                .iter()
                .any(|d| !(200..300).contains(&answers[d].status));
            if failed_dependency {
                let message = "A request this one depends on failed.";
                answers.insert(
                    request.id.clone(),
                    Answer::error(424, "FailedDependency", message),
                );
            } else {
                runnable.push(request);
            }
        }
        for group in runnable.chunks(BATCH_PARALLEL) {
            let done = run_group(state, issued, group).await;
            for (id, answer) in done {
                malformed |= answer.malformed;
                answers.insert(id, answer);
            }
        }
    }

    let responses: Vec<Value> = requests
        .iter()
        .map(|r| {
            let answer = &answers[&r.id];
            let mut headers: BTreeMap<String, String> = answer.headers.iter().cloned().collect();
            headers.insert("Content-Type".into(), "application/json".into());
            let mut reply = json!({ "id": r.id, "status": answer.status, "headers": headers });
            if answer.status != 204 {
                reply["body"] = answer.body.clone();
            }
            reply
        })
        .collect();
    let mut answer = Answer::new(200, json!({ "responses": responses }));
    answer.malformed = malformed;
    answer
}

/// Runs up to four requests at once: each takes its slot (or is throttled), they wait the
/// latency together, then each is done.
async fn run_group(
    state: &Arc<LocalGraphState>,
    issued: &Issued,
    group: &[&Request],
) -> Vec<(String, Answer)> {
    let mut done = Vec::new();
    let mut admitted = Vec::new();
    for request in group {
        let Some(mailbox) = mailbox_of(&request.path) else {
            let message = format!("Resource not found for the segment '{}'.", request.path);
            done.push((
                request.id.clone(),
                Answer::error(400, "BadRequest", &message),
            ));
            continue;
        };
        match gate(state, issued, &mailbox) {
            Ok(slot) => {
                let mut inner = state.inner();
                inner.stats.requests += 1;
                inner.log.push(format!(
                    "{} {}?{}",
                    request.method, request.path, request.query
                ));
                let fault = take_fault(&mut inner, &mailbox);
                admitted.push((request, slot, fault));
            }
            Err(answer) => done.push((request.id.clone(), answer)),
        }
    }
    let latency = state.inner().latency;
    if !latency.is_zero() && !admitted.is_empty() {
        tokio::time::sleep(latency).await;
    }
    for (request, slot, fault) in admitted {
        let answer = match faulted(fault.as_ref(), std::time::Duration::ZERO).await {
            Some(answer) => answer,
            None => execute(
                state,
                &request.method,
                &request.path,
                &request.query,
                request.body.clone(),
            ),
        };
        drop(slot);
        done.push((request.id.clone(), answer));
    }
    done
}

/// One request of a batch.
struct Request {
    id: String,
    method: String,
    path: String,
    query: String,
    body: Option<Value>,
    depends_on: Vec<String>,
}

/// Reads a batch body, refusing what Graph refuses.
fn parse_batch(body: &[u8]) -> Result<Vec<Request>, String> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| format!("Unable to read JSON request payload: {e}"))?;
    let items = value["requests"]
        .as_array()
        .ok_or("Invalid batch payload format: no 'requests' array.")?;
    if items.is_empty() {
        return Err("Invalid batch payload format: the batch has no requests.".into());
    }
    if items.len() > MAX_BATCH {
        return Err(format!(
            "The number of requests in the batch ({}) exceeds the maximum of {MAX_BATCH}.",
            items.len()
        ));
    }
    let mut requests = Vec::new();
    let mut ids = BTreeSet::new();
    for item in items {
        let id = item["id"]
            .as_str()
            .ok_or("Invalid batch payload format: a request has no id.")?;
        if !ids.insert(id.to_owned()) {
            return Err(format!(
                "Invalid batch payload format: duplicate request id '{id}'."
            ));
        }
        let method = item["method"]
            .as_str()
            .ok_or(format!(
                "Invalid batch payload format: request '{id}' has no method."
            ))?
            .to_ascii_uppercase();
        let url = item["url"].as_str().ok_or(format!(
            "Invalid batch payload format: request '{id}' has no url."
        ))?;
        if url.starts_with("http") || url.starts_with("/v1.0") || url.starts_with("/beta") {
            return Err(format!(
                "Invalid request url '{url}' for request '{id}': it must be relative to the version."
            ));
        }
        let body = item.get("body").filter(|b| !b.is_null()).cloned();
        let content_type = item["headers"]
            .as_object()
            .and_then(|h| {
                h.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            })
            .and_then(|(_, v)| v.as_str());
        if body.is_some() && !content_type.is_some_and(|t| t.starts_with("application/json")) {
            return Err(format!(
                "Write request id : {id} does not contain Content-Type header or body."
            ));
        }
        let depends_on: Vec<String> = match &item["dependsOn"] {
            Value::Null => Vec::new(),
            Value::Array(list) => list
                .iter()
                .filter_map(|d| d.as_str().map(str::to_owned))
                .collect(),
            _ => return Err(format!("Invalid dependsOn in request '{id}'.")),
        };
        let url = if url.starts_with('/') {
            url.to_owned()
        } else {
            format!("/{url}")
        };
        let (path, query) = url.split_once('?').unwrap_or((&url, ""));
        requests.push(Request {
            id: id.to_owned(),
            method,
            path: path.to_owned(),
            query: query.to_owned(),
            body,
            depends_on,
        });
    }
    for request in &requests {
        for dep in &request.depends_on {
            if !ids.contains(dep) || dep == &request.id {
                return Err(format!(
                    "Request '{}' depends on '{dep}', which is not in the batch.",
                    request.id
                ));
            }
        }
    }
    Ok(requests)
}

/// Does the work of one request on the store.
fn execute(
    state: &Arc<LocalGraphState>,
    method: &str,
    path: &str,
    query: &str,
    body: Option<Value>,
) -> Answer {
    let base = format!("{}/v1.0", state.base_url());
    let mut inner = state.inner();
    let inner = &mut *inner;
    let rest = path.strip_prefix("/users/").unwrap_or_default();
    let segments: Vec<String> = rest.split('/').map(odata::decode).collect();
    let user = &segments[0];
    let Some(mailbox) = inner.mailboxes.get_mut(&user.to_ascii_lowercase()) else {
        return Answer::error(
            404,
            "ErrorInvalidUser",
            &format!("The requested user '{user}' is invalid."),
        );
    };
    if !mailbox.enabled {
        return Answer::error(
            404,
            "MailboxNotEnabledForRESTAPI",
            "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
        );
    }
    let query = odata::parse_query(query);
    let segments: Vec<&str> = segments[1..].iter().map(String::as_str).collect();
    let ids = &mut inner.ids;
    let page_url = format!("{base}{path}");
    match (method, segments.as_slice()) {
        ("GET", ["messages"]) => list_messages(mailbox, None, &query, &page_url),
        ("GET", ["mailFolders", folder, "messages"]) => match mailbox.folder_id(folder) {
            Some(id) => list_messages(mailbox, Some(&id), &query, &page_url),
            None => not_found(),
        },
        ("GET", ["messages", id]) => match mailbox.messages.get(*id) {
            Some(message) => Answer::new(
                200,
                message_json(message, &query).unwrap_or_else(|a| a.body),
            ),
            None => not_found(),
        },
        ("PATCH", ["messages", id]) => patch_message(mailbox, id, body),
        ("DELETE", ["messages", id]) => match mailbox.folder_id("deleteditems") {
            Some(to) if mailbox.move_message(ids, id, &to).is_some() => {
                Answer::new(204, Value::Null)
            }
            _ => not_found(),
        },
        ("POST", ["messages", id, "move"]) => move_message(mailbox, ids, id, body),
        ("POST", ["messages", id, "permanentDelete"]) => {
            match mailbox.folder_id("recoverableitemspurges") {
                Some(to) if mailbox.move_message(ids, id, &to).is_some() => {
                    Answer::new(204, Value::Null)
                }
                _ => not_found(),
            }
        }
        ("GET", ["mailFolders"]) => list_folders(mailbox, None, &query, &page_url),
        ("GET", ["mailFolders", folder, "childFolders"]) => match mailbox.folder_id(folder) {
            Some(id) => list_folders(mailbox, Some(&id), &query, &page_url),
            None => not_found(),
        },
        ("POST", ["mailFolders"]) => create_folder(mailbox, ids, None, body),
        ("POST", ["mailFolders", folder, "childFolders"]) => match mailbox.folder_id(folder) {
            Some(id) => create_folder(mailbox, ids, Some(&id), body),
            None => not_found(),
        },
        ("GET", ["mailFolders", folder]) => match mailbox.folder(folder) {
            Some(folder) => match select(&mailbox.folder_json(folder), &query, &FOLDER_FIELDS) {
                Ok(json) => Answer::new(200, json),
                Err(answer) => answer,
            },
            None => not_found(),
        },
        ("PATCH", ["mailFolders", folder]) => rename_folder(mailbox, folder, body),
        ("DELETE", ["mailFolders", folder]) => match mailbox.folder_id(folder) {
            Some(id) => {
                mailbox.folders.remove(&id);
                mailbox.messages.retain(|_, m| m.folder != id);
                Answer::new(204, Value::Null)
            }
            None => not_found(),
        },
        _ => Answer::error(
            400,
            "BadRequest",
            &format!(
                "Resource not found for the segment '{}' ({method}).",
                segments.join("/")
            ),
        ),
    }
}

fn not_found() -> Answer {
    Answer::error(
        404,
        "ErrorItemNotFound",
        "The specified object was not found in the store.",
    )
}

fn bad_request(message: &str) -> Answer {
    Answer::error(400, "BadRequest", message)
}

/// The query options a list accepts; anything else starting with `$` is refused.
fn check_options(query: &[(String, String)], extra: &[&str]) -> Result<(), Answer> {
    for (name, _) in query {
        let known = ["$filter", "$select", "$expand", "$top", "$skip"].contains(&name.as_str())
            || extra.contains(&name.as_str());
        if name.starts_with('$') && !known {
            return Err(bad_request(&format!(
                "Query option '{name}' is not allowed."
            )));
        }
    }
    Ok(())
}

fn option<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// `$top` and `$skip`, checked.
fn paging(query: &[(String, String)]) -> Result<(usize, usize), Answer> {
    let top = match option(query, "$top") {
        None => DEFAULT_PAGE,
        Some(top) => match top.parse::<usize>() {
            Ok(top) if (1..=MAX_TOP).contains(&top) => top,
            _ => {
                return Err(bad_request(&format!(
                    "Invalid value '{top}' for $top; it must be 1 to {MAX_TOP}."
                )));
            }
        },
    };
    let skip = match option(query, "$skip") {
        None => 0,
        Some(skip) => skip
            .parse()
            .map_err(|_| bad_request(&format!("Invalid value '{skip}' for $skip.")))?,
    };
    Ok((top, skip))
}

/// Keeps the fields `$select` names, refusing unknown ones.
fn select(value: &Value, query: &[(String, String)], allowed: &[&str]) -> Result<Value, Answer> {
    let Some(list) = option(query, "$select") else {
        return Ok(value.clone());
    };
    let mut out = serde_json::Map::new();
    for field in list.split(',').map(str::trim) {
        if !allowed.contains(&field) {
            return Err(bad_request(&format!(
                "Could not find a property named '{field}' on type 'microsoft.graph'."
            )));
        }
        if let Some(v) = value.get(field) {
            out.insert(field.to_owned(), v.clone());
        }
    }
    out.insert("id".into(), value["id"].clone());
    if let Some(extended) = value.get("singleValueExtendedProperties") {
        out.insert("singleValueExtendedProperties".into(), extended.clone());
    }
    Ok(Value::Object(out))
}

/// The extended properties `$expand=singleValueExtendedProperties($filter=id eq '...')` asks
/// for; `None` without `$expand`.
fn expanded_ids(query: &[(String, String)]) -> Result<Option<Vec<Clause>>, Answer> {
    let Some(expand) = option(query, "$expand") else {
        return Ok(None);
    };
    let inner = expand
        .strip_prefix("singleValueExtendedProperties($filter=")
        .and_then(|rest| rest.strip_suffix(')'))
        .ok_or_else(|| {
            bad_request(&format!(
                "Parsing OData Select and Expand failed: could not expand '{expand}'."
            ))
        })?;
    let clauses = odata::parse_filter(inner, &[("id", Kind::Str)]).map_err(|m| bad_request(&m))?;
    Ok(Some(clauses))
}

fn message_json(message: &StoredMessage, query: &[(String, String)]) -> Result<Value, Answer> {
    let expanded = expanded_ids(query)?.map(|clauses| {
        message
            .extended
            .values()
            .filter(|(id, _)| {
                clauses
                    .iter()
                    .all(|c| odata::passes(c, &Literal::Str(id.clone())))
            })
            .cloned()
            .collect::<Vec<_>>()
    });
    select(&message.json(expanded.as_deref()), query, &MESSAGE_FIELDS)
}

fn message_field(message: &StoredMessage, field: &str) -> Literal {
    match field {
        "id" => Literal::Str(message.id.clone()),
        "internetMessageId" => Literal::Str(message.internet_message_id.clone()),
        "subject" => Literal::Str(message.subject.clone()),
        "from/emailAddress/address" => Literal::Str(message.from.clone()),
        "sender/emailAddress/address" => Literal::Str(message.sender.clone()),
        "sentDateTime" => Literal::DateTime(message.sent),
        "receivedDateTime" => Literal::DateTime(message.received),
        _ => Literal::Bool(message.is_read),
    }
}

fn list_messages(
    mailbox: &Mailbox,
    folder: Option<&str>,
    query: &[(String, String)],
    url: &str,
) -> Answer {
    if let Err(answer) = check_options(query, &[]) {
        return answer;
    }
    let clauses = match option(query, "$filter") {
        Some(filter) => match odata::parse_filter(filter, &MESSAGE_FILTERS) {
            Ok(clauses) => clauses,
            Err(message) => return bad_request(&message),
        },
        None => Vec::new(),
    };
    let (top, skip) = match paging(query) {
        Ok(paging) => paging,
        Err(answer) => return answer,
    };
    let in_scope = |m: &&StoredMessage| match folder {
        Some(folder) => m.folder == folder,
        None => mailbox.folders.get(&m.folder).is_some_and(|f| f.in_tree),
    };
    let matching: Vec<&StoredMessage> = mailbox
        .messages
        .values()
        .filter(in_scope)
        .filter(|m| {
            clauses.iter().all(|c| {
                let field = MESSAGE_FILTERS
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(&c.field))
                    .map(|(n, _)| *n)
                    .unwrap_or_default();
                odata::passes(c, &message_field(m, field))
            })
        })
        .collect();
    let mut value = Vec::new();
    for message in matching.iter().skip(skip).take(top) {
        match message_json(message, query) {
            Ok(json) => value.push(json),
            Err(answer) => return answer,
        }
    }
    page(value, matching.len() > skip + top, query, url, skip + top)
}

fn page(
    value: Vec<Value>,
    more: bool,
    query: &[(String, String)],
    url: &str,
    next_skip: usize,
) -> Answer {
    let mut body = json!({ "value": value });
    if more {
        let mut pairs: Vec<String> = query
            .iter()
            .filter(|(n, _)| n != "$skip")
            .map(|(n, v)| format!("{n}={}", crate::wire::encode(v)))
            .collect();
        pairs.push(format!("$skip={next_skip}"));
        body["@odata.nextLink"] = Value::String(format!("{url}?{}", pairs.join("&")));
    }
    Answer::new(200, body)
}

fn list_folders(
    mailbox: &Mailbox,
    parent: Option<&str>,
    query: &[(String, String)],
    url: &str,
) -> Answer {
    if let Err(answer) = check_options(query, &["includeHiddenFolders"]) {
        return answer;
    }
    let hidden_too =
        option(query, "includeHiddenFolders").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let clauses = match option(query, "$filter") {
        Some(filter) => match odata::parse_filter(filter, &FOLDER_FILTERS) {
            Ok(clauses) => clauses,
            Err(message) => return bad_request(&message),
        },
        None => Vec::new(),
    };
    let (top, skip) = match paging(query) {
        Ok(paging) => paging,
        Err(answer) => return answer,
    };
    let matching: Vec<&Folder> = mailbox
        .folders
        .values()
        .filter(|f| f.in_tree && f.parent.as_deref() == parent && (hidden_too || !f.hidden))
        .filter(|f| {
            clauses.iter().all(|c| {
                let value = if c.field.eq_ignore_ascii_case("id") {
                    &f.id
                } else {
                    &f.display_name
                };
                odata::passes(c, &Literal::Str(value.clone()))
            })
        })
        .collect();
    let mut value = Vec::new();
    for folder in matching.iter().skip(skip).take(top) {
        match select(&mailbox.folder_json(folder), query, &FOLDER_FIELDS) {
            Ok(json) => value.push(json),
            Err(answer) => return answer,
        }
    }
    page(value, matching.len() > skip + top, query, url, skip + top)
}

fn create_folder(
    mailbox: &mut Mailbox,
    ids: &mut super::store::Ids,
    parent: Option<&str>,
    body: Option<Value>,
) -> Answer {
    let body = body.unwrap_or_default();
    let Some(name) = body["displayName"]
        .as_str()
        .filter(|n| !n.trim().is_empty())
    else {
        return Answer::error(
            400,
            "ErrorInvalidParameter",
            "The value of the parameter 'DisplayName' is empty.",
        );
    };
    let hidden = body["isHidden"].as_bool().unwrap_or(false);
    match mailbox.create_folder(ids, parent, name, hidden) {
        Ok(folder) => Answer::new(201, mailbox.folder_json(&folder)),
        Err(_) => Answer::error(
            409,
            "ErrorFolderExists",
            "A folder with the specified name already exists.",
        ),
    }
}

fn rename_folder(mailbox: &mut Mailbox, folder: &str, body: Option<Value>) -> Answer {
    let Some(id) = mailbox.folder_id(folder) else {
        return not_found();
    };
    if let Some(name) = body.as_ref().and_then(|b| b["displayName"].as_str()) {
        mailbox
            .folders
            .get_mut(&id)
            .expect("the folder")
            .display_name = name.to_owned();
    }
    Answer::new(200, mailbox.folder_json(&mailbox.folders[&id]))
}

fn patch_message(mailbox: &mut Mailbox, id: &str, body: Option<Value>) -> Answer {
    let Some(body) = body.as_ref().and_then(Value::as_object) else {
        return bad_request("Empty Payload. JSON content expected.");
    };
    if !mailbox.messages.contains_key(id) {
        return not_found();
    }
    for (name, value) in body {
        match name.as_str() {
            "isRead" => {}
            "singleValueExtendedProperties" => {
                for property in value.as_array().into_iter().flatten() {
                    let (Some(pid), Some(_)) =
                        (property["id"].as_str(), property["value"].as_str())
                    else {
                        return Answer::error(
                            400,
                            "ErrorInvalidProperty",
                            "An extended property needs an id and a value.",
                        );
                    };
                    if !valid_property_id(pid) {
                        return Answer::error(
                            400,
                            "ErrorInvalidProperty",
                            &format!("The extended property id '{pid}' is not valid."),
                        );
                    }
                }
            }
            other => {
                return bad_request(&format!(
                    "Invalid property '{other}' for an update of a received message."
                ));
            }
        }
    }
    let message = mailbox.messages.get_mut(id).expect("checked above");
    if let Some(read) = body.get("isRead").and_then(Value::as_bool) {
        message.is_read = read;
    }
    for property in body
        .get("singleValueExtendedProperties")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let pid = property["id"].as_str().unwrap_or_default();
        let value = property["value"].as_str().unwrap_or_default();
        message
            .extended
            .insert(pid.to_ascii_lowercase(), (pid.to_owned(), value.to_owned()));
    }
    Answer::new(200, message.json(None))
}

/// `String {guid} Name X` or `String 0xHHHH`, as Graph writes MAPI property ids.
fn valid_property_id(id: &str) -> bool {
    let Some(rest) = id.strip_prefix("String ") else {
        return false;
    };
    if let Some(tag) = rest.strip_prefix("0x") {
        return !tag.is_empty() && tag.chars().all(|c| c.is_ascii_hexdigit());
    }
    let Some((guid, name)) = rest.split_once("} Name ") else {
        return false;
    };
    let guid = guid.strip_prefix('{').unwrap_or("");
    guid.len() == 36
        && guid.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
        && !name.trim().is_empty()
}

fn move_message(
    mailbox: &mut Mailbox,
    ids: &mut super::store::Ids,
    id: &str,
    body: Option<Value>,
) -> Answer {
    let Some(destination) = body.as_ref().and_then(|b| b["destinationId"].as_str()) else {
        return Answer::error(
            400,
            "ErrorInvalidParameter",
            "The parameter 'DestinationId' is missing.",
        );
    };
    let Some(to) = mailbox.folder_id(destination) else {
        return not_found();
    };
    match mailbox.move_message(ids, id, &to) {
        Some(moved) => Answer::new(201, moved.json(None)),
        None => not_found(),
    }
}
