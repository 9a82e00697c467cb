//! A local Microsoft Graph and Azure AD token endpoint on loopback HTTPS, for tests and the
//! benchmark.
//!
//! It follows Microsoft's public documentation where Pullback depends on it: the
//! client-credentials token endpoint and its errors, users' messages with `$filter`,
//! `$select`, `$expand` and `$top` (ten per page unless asked), mail folders (hidden ones,
//! child folders, well-known names), `move` (which gives the message a new id),
//! `permanentDelete`, `$batch` (at most 20 requests, `dependsOn`, 424 for dependents of a
//! failure, four requests run at a time) and Outlook's throttling per application and
//! mailbox: a fifth concurrent request or one past the request budget is answered 429 with
//! `Retry-After`. Faults can be injected: storms of 429 or 503, slow answers, malformed
//! bodies, errors.
//!
//! It is deliberately strict, so that a test fails when the client sends what Graph would
//! refuse: no or an expired token, a token for another cloud's Graph, an unquoted filter
//! value, an unknown property, a batch of 21.

mod auth;
mod graph;
pub mod odata;
pub mod store;
mod tls;

pub use auth::{App, Tenant};
pub use store::NewMessage;

use crate::client::GraphConfig;
use crate::cloud::{Endpoints, NationalCloud};
use crate::credentials::Credential;
use crate::throttle::Limits;
use auth::Issued;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;
use store::{Ids, Mailbox};
use tokio::time::Instant;

/// The tenant every test uses unless it adds others.
pub const TENANT_ID: &str = "8f3c6a2e-1b4d-4e5f-9a7b-0c1d2e3f4a5b";
/// That tenant's domain.
pub const TENANT_DOMAIN: &str = "contoso.onmicrosoft.com";
/// The application registered in it, with the secret below and `Mail.ReadWrite`.
pub const CLIENT_ID: &str = "2a7f9c1e-3d5b-4f60-8e2a-6b4c8d0e1f23";
/// That application's secret (test only).
pub const CLIENT_SECRET: &str = "local-graph-test-secret~0123456789";

/// How the local Graph behaves.
#[derive(Clone, Debug)]
pub struct LocalGraphConfig {
    /// Which cloud this Graph plays: the audience it accepts and the resource its token
    /// endpoint issues tokens for.
    pub cloud: NationalCloud,
    /// Resources the token endpoint knows besides its own cloud's Graph (to hand out tokens a
    /// Graph of another cloud must refuse).
    pub extra_resources: Vec<String>,
    pub token_lifetime: Duration,
    /// Outlook's limits per application and mailbox.
    pub limits: Limits,
    /// How long each request takes to answer (requests of a batch: each group of four).
    pub latency: Duration,
}

impl Default for LocalGraphConfig {
    fn default() -> LocalGraphConfig {
        LocalGraphConfig {
            cloud: NationalCloud::Global,
            extra_resources: Vec::new(),
            token_lifetime: auth::TOKEN_LIFETIME,
            limits: Limits::default(),
            latency: Duration::ZERO,
        }
    }
}

/// A fault the local Graph answers with instead of doing its work.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Throttling: `status` (429 or 503) with `Retry-After` when given.
    Throttle {
        status: u16,
        retry_after_secs: Option<f64>,
    },
    /// The answer comes this much later (while the request holds its concurrency slot).
    Slow(Duration),
    /// The answer's body is cut off in the middle of its JSON.
    Malformed,
    /// An error answer.
    Error {
        status: u16,
        code: String,
        message: String,
    },
}

/// A fault for the next `times` requests (inside batches too) about `mailbox`, or about any
/// mailbox when `None`.
#[derive(Clone, Debug)]
pub struct FaultRule {
    pub mailbox: Option<String>,
    pub fault: Fault,
    pub times: usize,
}

/// What the local Graph saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Graph requests handled, those inside batches counted one by one.
    pub requests: u64,
    /// HTTP requests to `/v1.0`, a batch counted once.
    pub http_requests: u64,
    /// Answers 429 or 503 (injected ones too).
    pub throttled: u64,
    /// Answers 429 because a fifth request came while four were running.
    pub over_concurrency: u64,
    /// Answers 429 because the request budget was spent.
    pub over_budget: u64,
    /// The most requests one application had in flight on one mailbox at once.
    pub max_in_flight: u32,
    pub tokens_issued: u64,
}

/// Requests one application has in flight on one mailbox, and when it sent its recent ones.
#[derive(Debug, Default)]
struct Usage {
    in_flight: u32,
    recent: VecDeque<Instant>,
}

/// The local Graph's mutable state.
pub(crate) struct Inner {
    tenants: Vec<Tenant>,
    apps: Vec<App>,
    tokens: HashMap<String, Issued>,
    tokens_issued: u64,
    /// The audience this Graph accepts.
    resource: String,
    known_resources: Vec<String>,
    token_lifetime: Duration,
    limits: Limits,
    latency: Duration,
    mailboxes: BTreeMap<String, Mailbox>,
    ids: Ids,
    usage: HashMap<(String, String), Usage>,
    faults: Vec<FaultRule>,
    stats: ServerStats,
    log: Vec<String>,
}

/// State shared by the handlers and the test's handle.
pub struct LocalGraphState {
    inner: Mutex<Inner>,
    base_url: OnceLock<String>,
}

impl LocalGraphState {
    pub(crate) fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn base_url(&self) -> &str {
        self.base_url.get().map(String::as_str).unwrap_or_default()
    }
}

/// A running local Graph. Dropping it stops the server.
pub struct LocalGraph {
    state: Arc<LocalGraphState>,
    base_url: String,
    ca_pem: String,
    cloud: NationalCloud,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for LocalGraph {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl LocalGraph {
    /// Starts a local Graph on a free loopback port with the test tenant and application.
    pub async fn start(config: LocalGraphConfig) -> LocalGraph {
        let resource = config
            .cloud
            .graph()
            .unwrap_or("https://graph.local.test")
            .to_owned();
        let mut known_resources = vec![resource.clone()];
        known_resources.extend(config.extra_resources.iter().cloned());
        let inner = Inner {
            tenants: vec![Tenant {
                id: TENANT_ID.to_owned(),
                domains: vec![TENANT_DOMAIN.to_owned()],
            }],
            apps: vec![App {
                tenant: TENANT_ID.to_owned(),
                client_id: CLIENT_ID.to_owned(),
                secret: Some(CLIENT_SECRET.to_owned()),
                certificates: Vec::new(),
                roles: vec!["Mail.ReadWrite".to_owned()],
            }],
            tokens: HashMap::new(),
            tokens_issued: 0,
            resource,
            known_resources,
            token_lifetime: config.token_lifetime,
            limits: config.limits,
            latency: config.latency,
            mailboxes: BTreeMap::new(),
            ids: Ids::default(),
            usage: HashMap::new(),
            faults: Vec::new(),
            stats: ServerStats::default(),
            log: Vec::new(),
        };
        let state = Arc::new(LocalGraphState {
            inner: Mutex::new(inner),
            base_url: OnceLock::new(),
        });

        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port for the local Graph");
        let address = tcp.local_addr().expect("a bound address");
        let base_url = format!("https://127.0.0.1:{}", address.port());
        state.base_url.set(base_url.clone()).expect("set once");
        let (ca_pem, tls) = tls::server_identity();
        let listener = tls::TlsListener::new(tcp, tls).expect("a TLS listener");
        let app = router(state.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        LocalGraph {
            state,
            base_url,
            ca_pem,
            cloud: config.cloud,
            server,
        }
    }

    /// `https://127.0.0.1:<port>`: both the authority and Graph.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The CA that signed the server's certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A client configuration for the test application with `credential`, the cloud this
    /// Graph plays and its addresses, short timeouts and these limits.
    pub fn client_config(&self, credential: Credential) -> GraphConfig {
        let endpoints = self.endpoints(self.cloud);
        let mut config = GraphConfig::new(endpoints, TENANT_ID, CLIENT_ID, credential);
        config.ca_pem = Some(self.ca_pem.as_bytes().to_vec());
        config.timeout = Duration::from_secs(5);
        config.limits = self.state.inner().limits;
        config
    }

    /// The endpoints of `cloud` with both addresses pointing here.
    pub fn endpoints(&self, cloud: NationalCloud) -> Endpoints {
        let url = Some(self.base_url.as_str());
        match cloud {
            NationalCloud::Custom => {
                let mut endpoints =
                    Endpoints::resolve(NationalCloud::Custom, url, url).expect("local URLs");
                endpoints.resource = "https://graph.local.test".into();
                endpoints
            }
            named => Endpoints::resolve(named, url, url).expect("local URLs"),
        }
    }

    /// The client configuration with the test application's secret.
    pub fn secret_config(&self) -> GraphConfig {
        self.client_config(Credential::Secret(CLIENT_SECRET.to_owned()))
    }

    /// Registers a certificate (PEM) for the test application.
    pub fn add_certificate(&self, cert_pem: &str) {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).expect("a PEM certificate");
        let mut inner = self.state.inner();
        inner.apps[0].certificates.push(der.as_ref().to_vec());
    }

    /// Sets the test application's roles (application permissions).
    pub fn set_roles(&self, roles: &[&str]) {
        self.state.inner().apps[0].roles = roles.iter().map(|r| (*r).to_owned()).collect();
    }

    /// Creates a mailbox for `upn`.
    pub fn add_mailbox(&self, upn: &str) {
        let mut inner = self.state.inner();
        let inner = &mut *inner;
        let mailbox = Mailbox::new(upn, &mut inner.ids);
        inner.mailboxes.insert(upn.to_ascii_lowercase(), mailbox);
    }

    /// Makes `upn` answer like a user without an Exchange Online mailbox.
    pub fn disable_mailbox(&self, upn: &str) {
        self.with_mailbox(upn, |m, _| m.enabled = false);
    }

    /// Creates a folder at the top of `upn`'s tree.
    pub fn create_folder(&self, upn: &str, name: &str) {
        self.with_mailbox(upn, |m, ids| {
            m.create_folder(ids, None, name, false)
                .expect("a new folder");
        });
    }

    /// Renames the top folder `old` of `upn` to `new`.
    pub fn rename_folder(&self, upn: &str, old: &str, new: &str) {
        self.with_mailbox(upn, |m, _| {
            let id = m
                .folder_named(None, old)
                .expect("the folder to rename")
                .id
                .clone();
            m.folders.get_mut(&id).expect("the folder").display_name = new.to_owned();
        });
    }

    /// Deletes the top folder `name` of `upn` and what is in it.
    pub fn delete_folder(&self, upn: &str, name: &str) {
        self.with_mailbox(upn, |m, _| {
            let id = m
                .folder_named(None, name)
                .expect("the folder to delete")
                .id
                .clone();
            m.folders.remove(&id);
            m.messages.retain(|_, message| message.folder != id);
        });
    }

    /// Delivers a message into `folder` (a well-known name such as `inbox`, or a top
    /// folder's display name) of `upn`; returns its id.
    pub fn deliver(&self, upn: &str, folder: &str, message: &NewMessage) -> String {
        self.with_mailbox(upn, |m, ids| {
            let folder = match m.folder(folder) {
                Some(f) => f.id.clone(),
                None => m
                    .folder_named(None, folder)
                    .expect("a folder to deliver to")
                    .id
                    .clone(),
            };
            m.deliver(ids, &folder, message)
        })
    }

    /// Where the copies of a Message-ID are in `upn`'s mailbox: the display names of their
    /// folders, sorted (Recoverable Items' folders are `Deletions` and `Purges`).
    pub fn folders_of(&self, upn: &str, internet_message_id: &str) -> Vec<String> {
        self.with_mailbox(upn, |m, _| {
            let mut names: Vec<String> = m
                .messages
                .values()
                .filter(|message| message.internet_message_id == internet_message_id)
                .map(|message| m.folders[&message.folder].display_name.clone())
                .collect();
            names.sort();
            names
        })
    }

    /// Whether the top folder `name` of `upn` is hidden from the user's folder list.
    pub fn is_hidden(&self, upn: &str, name: &str) -> Option<bool> {
        self.with_mailbox(upn, |m, _| m.folder_named(None, name).map(|f| f.hidden))
    }

    /// Adds a fault rule; rules are consumed in the order they were added.
    pub fn inject(&self, rule: FaultRule) {
        self.state.inner().faults.push(rule);
    }

    /// Makes every token issued so far expired.
    pub fn expire_tokens(&self) {
        let past = Instant::now();
        for issued in self.state.inner().tokens.values_mut() {
            issued.expires = past;
        }
    }

    pub fn set_limits(&self, limits: Limits) {
        self.state.inner().limits = limits;
    }

    pub fn set_latency(&self, latency: Duration) {
        self.state.inner().latency = latency;
    }

    /// Lets the token endpoint issue tokens for another resource too (another cloud's Graph).
    pub fn add_known_resource(&self, resource: &str) {
        self.state.inner().known_resources.push(resource.to_owned());
    }

    pub fn stats(&self) -> ServerStats {
        let inner = self.state.inner();
        ServerStats {
            tokens_issued: inner.tokens_issued,
            ..inner.stats.clone()
        }
    }

    /// `METHOD path?query` of every Graph request handled, batches' requests included.
    pub fn request_log(&self) -> Vec<String> {
        self.state.inner().log.clone()
    }

    fn with_mailbox<T>(&self, upn: &str, f: impl FnOnce(&mut Mailbox, &mut Ids) -> T) -> T {
        let mut inner = self.state.inner();
        let inner = &mut *inner;
        let mailbox = inner
            .mailboxes
            .get_mut(&upn.to_ascii_lowercase())
            .unwrap_or_else(|| panic!("no mailbox {upn} in the local Graph"));
        f(mailbox, &mut inner.ids)
    }
}

fn router(state: Arc<LocalGraphState>) -> Router {
    Router::new()
        .route(
            "/{tenant}/oauth2/v2.0/token",
            axum::routing::post(token_endpoint),
        )
        .fallback(graph_endpoint)
        .with_state(state)
}

async fn token_endpoint(
    State(state): State<Arc<LocalGraphState>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok());
    let form = odata::parse_query(&String::from_utf8_lossy(&body));
    match state.token_request(&tenant, content_type, &form) {
        Ok(token) => (StatusCode::OK, axum::Json(token)).into_response(),
        Err((status, body)) => json_response(status, &body, &[]),
    }
}

/// An answer: status, body, extra headers.
pub(crate) struct Answer {
    pub status: u16,
    pub body: Value,
    pub headers: Vec<(String, String)>,
    /// The body must be sent cut off (an injected fault).
    pub malformed: bool,
}

impl Answer {
    pub(crate) fn new(status: u16, body: Value) -> Answer {
        Answer {
            status,
            body,
            headers: Vec::new(),
            malformed: false,
        }
    }

    pub(crate) fn error(status: u16, code: &str, message: &str) -> Answer {
        Answer::new(status, graph_error(code, message))
    }
}

pub(crate) fn graph_error(code: &str, message: &str) -> Value {
    json!({ "error": { "code": code, "message": message, "innerError": {
        "date": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "request-id": "00000000-0000-0000-0000-000000000000",
    } } })
}

fn json_response(status: u16, body: &Value, headers: &[(String, String)]) -> Response {
    json_bytes(status, body.to_string().into_bytes(), headers)
}

fn json_bytes(status: u16, body: Vec<u8>, headers: &[(String, String)]) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = if status == StatusCode::NO_CONTENT {
        status.into_response()
    } else {
        (status, body).into_response()
    };
    if status != StatusCode::NO_CONTENT {
        response
            .headers_mut()
            .insert("content-type", HeaderValue::from_static("application/json"));
    }
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

async fn graph_endpoint(
    State(state): State<Arc<LocalGraphState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(path) = uri.path().strip_prefix("/v1.0") else {
        return json_response(404, &graph_error("NotFound", "No such endpoint."), &[]);
    };
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok());
    let issued = match state.bearer(authorization) {
        Ok(issued) => issued,
        Err((status, body)) => return json_response(status, &body, &[]),
    };
    state.inner().stats.http_requests += 1;
    let query = uri.query().unwrap_or_default().to_owned();
    let answer = if path == "/$batch" && method == Method::POST {
        graph::batch(&state, &issued, &headers, &body).await
    } else {
        let content_type = headers.get("content-type").and_then(|v| v.to_str().ok());
        let body = match parse_body(&method, content_type, &body) {
            Ok(body) => body,
            Err(answer) => return json_response(answer.status, &answer.body, &[]),
        };
        graph::one(&state, &issued, method.as_str(), path, &query, body).await
    };
    if answer.malformed {
        let mut text = answer.body.to_string().into_bytes();
        text.truncate(text.len() / 2);
        return json_bytes(answer.status, text, &answer.headers);
    }
    json_response(answer.status, &answer.body, &answer.headers)
}

/// The JSON body of a write, which Graph wants declared as JSON.
fn parse_body(
    method: &Method,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Option<Value>, Answer> {
    if body.is_empty() {
        return Ok(None);
    }
    if matches!(*method, Method::GET) {
        return Ok(None);
    }
    if !content_type.is_some_and(|t| t.starts_with("application/json")) {
        return Err(Answer::error(
            415,
            "UnsupportedMediaType",
            "A supported MIME type could not be found that matches the content type of the response.",
        ));
    }
    serde_json::from_slice(body).map(Some).map_err(|e| {
        Answer::error(
            400,
            "BadRequest",
            &format!("Unable to read JSON request payload: {e}"),
        )
    })
}

/// Takes `mailbox`'s next fault, if any is waiting for it.
fn take_fault(inner: &mut Inner, mailbox: &str) -> Option<Fault> {
    let position = inner.faults.iter().position(|rule| {
        rule.times > 0
            && rule
                .mailbox
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(mailbox))
    })?;
    let rule = &mut inner.faults[position];
    rule.times -= 1;
    let fault = rule.fault.clone();
    if rule.times == 0 {
        inner.faults.remove(position);
    }
    Some(fault)
}

/// A request's slot among the four one application may have on one mailbox.
pub(crate) struct Slot {
    state: Arc<LocalGraphState>,
    key: (String, String),
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(usage) = self.state.inner().usage.get_mut(&self.key) {
            usage.in_flight = usage.in_flight.saturating_sub(1);
        }
    }
}

/// Admits one request of `client` about `mailbox` under Outlook's limits, or answers 429.
pub(crate) fn admit(
    state: &Arc<LocalGraphState>,
    client: &str,
    mailbox: &str,
) -> Result<Slot, Answer> {
    let mut inner = state.inner();
    let limits = inner.limits;
    let key = (client.to_owned(), mailbox.to_ascii_lowercase());
    let now = Instant::now();
    let usage = inner.usage.entry(key.clone()).or_default();
    while usage
        .recent
        .front()
        .is_some_and(|t| now.duration_since(*t) >= limits.window)
    {
        usage.recent.pop_front();
    }
    // Every request counts against the budget, refused ones too, as Microsoft says.
    usage.recent.push_back(now);
    if usage.recent.len() > limits.requests as usize {
        let oldest = usage.recent[usage.recent.len() - 1 - limits.requests as usize];
        let wait = (oldest + limits.window).saturating_duration_since(now);
        inner.stats.throttled += 1;
        inner.stats.over_budget += 1;
        return Err(throttled(
            429,
            Some(wait.as_secs_f64().ceil().max(1.0)),
            "RequestsPerMailbox",
        ));
    }
    if usage.in_flight >= limits.concurrent {
        inner.stats.throttled += 1;
        inner.stats.over_concurrency += 1;
        return Err(throttled(429, Some(1.0), "MailboxConcurrency"));
    }
    usage.in_flight += 1;
    let in_flight = usage.in_flight;
    inner.stats.max_in_flight = inner.stats.max_in_flight.max(in_flight);
    Ok(Slot {
        state: state.clone(),
        key,
    })
}

pub(crate) fn throttled(status: u16, retry_after_secs: Option<f64>, limit: &str) -> Answer {
    let message = format!("Application is over its {limit} limit.");
    let code = if status == 429 {
        "ApplicationThrottled"
    } else {
        "ServiceUnavailable"
    };
    let mut answer = Answer::error(status, code, &message);
    if let Some(secs) = retry_after_secs {
        let value = if secs.fract() == 0.0 {
            format!("{}", secs as u64)
        } else {
            format!("{secs}")
        };
        answer.headers.push(("Retry-After".to_owned(), value));
    }
    answer
}

/// A fresh self-signed RSA certificate for an application credential: `(certificate PEM,
/// PKCS#8 key PEM, PKCS#1 key PEM)`, made with the `openssl` command.
///
/// # Panics
/// When `openssl` is missing or fails, saying so.
pub fn rsa_certificate() -> (String, String, String) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let (cert, key, pkcs1) = (
        dir.path().join("cert.pem"),
        dir.path().join("key.pem"),
        dir.path().join("key-pkcs1.pem"),
    );
    let run = |args: &[&str]| {
        let output = std::process::Command::new("openssl")
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("the openssl command is needed for test certificates: {e}"));
        assert!(
            output.status.success(),
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let path = |p: &std::path::Path| p.to_str().expect("a UTF-8 path").to_owned();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=pullback-graph-test",
        "-keyout",
        &path(&key),
        "-out",
        &path(&cert),
    ]);
    run(&[
        "rsa",
        "-in",
        &path(&key),
        "-traditional",
        "-out",
        &path(&pkcs1),
    ]);
    let read = |p: &std::path::Path| std::fs::read_to_string(p).expect("a PEM file");
    (read(&cert), read(&key), read(&pkcs1))
}
