//! The HTTP side of Graph: every request goes through the mailbox's gate, carries the cached
//! token, and is retried as Graph asks.
//!
//! - 429 and 503 are throttling: the mailbox waits `Retry-After` (or a growing back-off when
//!   the header is missing) and the request goes again, for as long as
//!   [`GraphConfig::max_throttled`] allows in all. A throttled operation is slow, not failed.
//! - 504, timeouts and connection errors are retried with exponential back-off, up to
//!   [`GraphConfig::attempts`] times; a request that may have done its work before the
//!   answer was lost is safe to repeat because the backend looks again before acting.
//! - 401 fetches a new token once (a token can be revoked or expire early).
//! - Anything else is the caller's to read.
//!
//! `$batch` requests are split into batches of at most 20, keeping a request with the one it
//! depends on; requests throttled inside a batch go again, with those that failed only
//! because of them (424), while the rest of the batch stands.

use crate::cloud::Endpoints;
use crate::credentials::Credential;
use crate::throttle::{Gates, Limits};
use crate::token::{AccessToken, TokenConfig, TokenError, TokenSource, error_chain};
use crate::wire::{BatchItem, BatchReply, BatchRequest, BatchResponse, ErrorBody, Page};
use reqwest::Method;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Graph's limit on the requests of one `$batch`.
pub const MAX_BATCH: usize = 20;

/// How many pages of a collection are followed at most.
const MAX_PAGES: usize = 50;

/// The longest back-off between retries when Graph says nothing about how long to wait.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Everything a client needs to reach one tenant's Graph.
#[derive(Clone)]
pub struct GraphConfig {
    pub endpoints: Endpoints,
    /// The tenant's id (a GUID) or one of its domains.
    pub tenant: String,
    /// The application (client) id of the app registration.
    pub client_id: String,
    pub credential: Credential,
    /// PEM certificates to trust instead of the public roots (a TLS-inspecting proxy, or the
    /// local Graph of the tests).
    pub ca_pem: Option<Vec<u8>>,
    /// The longest wait for one answer.
    pub timeout: Duration,
    pub limits: Limits,
    /// How long one request may wait in all on throttling before it fails.
    pub max_throttled: Duration,
    /// How often a request that timed out or lost its connection is tried.
    pub attempts: u32,
}

impl fmt::Debug for GraphConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphConfig")
            .field("endpoints", &self.endpoints)
            .field("tenant", &self.tenant)
            .field("client_id", &self.client_id)
            .field("credential", &self.credential)
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "<given>"))
            .field("timeout", &self.timeout)
            .field("limits", &self.limits)
            .field("max_throttled", &self.max_throttled)
            .field("attempts", &self.attempts)
            .finish()
    }
}

impl GraphConfig {
    /// A configuration with Microsoft's limits, a 30 s timeout, five attempts and up to an
    /// hour of throttling per request.
    pub fn new(
        endpoints: Endpoints,
        tenant: &str,
        client_id: &str,
        credential: Credential,
    ) -> GraphConfig {
        GraphConfig {
            endpoints,
            tenant: tenant.to_owned(),
            client_id: client_id.to_owned(),
            credential,
            ca_pem: None,
            timeout: Duration::from_secs(30),
            limits: Limits::default(),
            max_throttled: Duration::from_secs(3600),
            attempts: 5,
        }
    }
}

/// Why a request got no usable answer. Every message names the request; none carries a
/// token or a secret.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error("the client could not be built: {0}")]
    Build(String),
    #[error("no access token: {0}")]
    Token(#[from] TokenError),
    #[error("{what}: no answer within {timeout:?}, {attempts} times")]
    Timeout {
        what: String,
        timeout: Duration,
        attempts: u32,
    },
    #[error("{what}: {detail} ({attempts} attempts)")]
    Transport {
        what: String,
        detail: String,
        attempts: u32,
    },
    #[error("{what}: Graph answered {status} with a body that is not the JSON expected: {detail}")]
    Malformed {
        what: String,
        status: u16,
        detail: String,
    },
    #[error(
        "{what}: still throttled after waiting {waited_secs} s in all (Graph asked for {asked_secs} s more)"
    )]
    Throttled {
        what: String,
        waited_secs: u64,
        asked_secs: u64,
    },
    #[error("{what}: Graph answered {status} {code}: {message}")]
    Refused {
        what: String,
        status: u16,
        code: String,
        message: String,
    },
}

/// An answer Graph gave.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    /// The body could not be read as JSON (empty bodies read as `null`).
    pub unreadable: Option<String>,
}

impl Reply {
    fn from_bytes(status: u16, bytes: &[u8]) -> Reply {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Reply {
                status,
                body: Value::Null,
                unreadable: None,
            };
        }
        match serde_json::from_slice(bytes) {
            Ok(body) => Reply {
                status,
                body,
                unreadable: None,
            },
            Err(e) => Reply {
                status,
                body: Value::Null,
                unreadable: Some(e.to_string()),
            },
        }
    }

    fn from_batch(reply: BatchReply) -> Reply {
        Reply {
            status: reply.status,
            body: reply.body.unwrap_or(Value::Null),
            unreadable: None,
        }
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as `T`, or why not.
    pub fn json<T: DeserializeOwned>(&self, what: &str) -> Result<T, GraphError> {
        let malformed = |detail: String| GraphError::Malformed {
            what: what.to_owned(),
            status: self.status,
            detail,
        };
        if let Some(detail) = &self.unreadable {
            return Err(malformed(detail.clone()));
        }
        serde_json::from_value(self.body.clone()).map_err(|e| malformed(e.to_string()))
    }

    /// Graph's error code and message, as far as the body says.
    pub fn error(&self) -> (String, String) {
        let body: ErrorBody = serde_json::from_value(self.body.clone()).unwrap_or_default();
        let code = if body.error.code.is_empty() {
            "(no error code)".to_owned()
        } else {
            body.error.code
        };
        (code, body.error.message)
    }

    /// This answer as the error of `what`.
    pub fn refused(&self, what: &str) -> GraphError {
        if let Some(detail) = &self.unreadable {
            return GraphError::Malformed {
                what: what.to_owned(),
                status: self.status,
                detail: detail.clone(),
            };
        }
        let (code, message) = self.error();
        GraphError::Refused {
            what: what.to_owned(),
            status: self.status,
            code,
            message,
        }
    }
}

/// Counters of what the client did, for tests and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// HTTP requests sent, `$batch` counted once.
    pub http_requests: u64,
    /// Graph requests made, each request inside a `$batch` counted.
    pub graph_requests: u64,
    /// Answers (inside batches too) that asked to slow down: 429 or 503.
    pub throttled: u64,
    /// Requests sent again after a timeout, a lost connection or a 504.
    pub retried: u64,
}

#[derive(Default)]
struct Counters {
    http_requests: AtomicU64,
    graph_requests: AtomicU64,
    throttled: AtomicU64,
    retried: AtomicU64,
}

/// A Graph client for one application in one tenant.
pub struct GraphClient {
    http: reqwest::Client,
    tokens: TokenSource,
    gates: Gates,
    api_root: String,
    config: GraphConfig,
    counters: Counters,
}

impl fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphClient")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// How a request is sent: its method, URL and body.
struct Outgoing<'a> {
    method: Method,
    url: String,
    body: Option<&'a Value>,
}

impl GraphClient {
    pub fn new(config: GraphConfig) -> Result<GraphClient, GraphError> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .https_only(true)
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("pullback/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &config.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| GraphError::Build(format!("the CA bundle: {e}")))?;
            if certs.is_empty() {
                return Err(GraphError::Build(
                    "the CA bundle holds no certificate".into(),
                ));
            }
            builder = builder.tls_built_in_root_certs(false);
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| GraphError::Build(error_chain(&e)))?;
        let tokens = TokenSource::new(
            http.clone(),
            TokenConfig {
                token_url: config.endpoints.token_url(&config.tenant),
                client_id: config.client_id.clone(),
                scope: config.endpoints.scope(),
                credential: config.credential.clone(),
            },
        );
        Ok(GraphClient {
            http,
            tokens,
            gates: Gates::new(config.limits),
            api_root: config.endpoints.api_root(),
            config,
            counters: Counters::default(),
        })
    }

    pub fn config(&self) -> &GraphConfig {
        &self.config
    }

    pub fn limits(&self) -> Limits {
        self.gates.limits()
    }

    pub fn stats(&self) -> Stats {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            http_requests: load(&self.counters.http_requests),
            graph_requests: load(&self.counters.graph_requests),
            throttled: load(&self.counters.throttled),
            retried: load(&self.counters.retried),
        }
    }

    /// Fetches a token now, to check the credentials.
    pub async fn check_token(&self) -> Result<(), GraphError> {
        self.tokens.token().await?;
        Ok(())
    }

    /// One request about `mailbox` to `path` (relative to `/v1.0`).
    pub async fn send(
        &self,
        mailbox: &str,
        what: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply, GraphError> {
        let outgoing = Outgoing {
            method,
            url: format!("{}{path}", self.api_root),
            body,
        };
        self.exchange(mailbox, what, &outgoing, 1, 1).await
    }

    /// Every item of a collection, following `@odata.nextLink` (only ever to this Graph).
    pub async fn get_all<T: DeserializeOwned>(
        &self,
        mailbox: &str,
        what: &str,
        first: Page<T>,
    ) -> Result<Vec<T>, GraphError> {
        let mut items = first.value;
        let mut next = first.next_link;
        let mut pages = 1;
        while let Some(url) = next.take() {
            if !url.starts_with(&format!("{}/", self.api_root)) || pages >= MAX_PAGES {
                return Err(GraphError::Malformed {
                    what: what.to_owned(),
                    status: 200,
                    detail: format!(
                        "a next page outside {} or past {MAX_PAGES} pages",
                        self.api_root
                    ),
                });
            }
            let outgoing = Outgoing {
                method: Method::GET,
                url,
                body: None,
            };
            let reply = self.exchange(mailbox, what, &outgoing, 1, 1).await?;
            if !reply.is_success() {
                return Err(reply.refused(what));
            }
            let page: Page<T> = reply.json(what)?;
            items.extend(page.value);
            next = page.next_link;
            pages += 1;
        }
        Ok(items)
    }

    /// Sends `items` as `$batch` requests about `mailbox` and returns every answer by id.
    /// Requests throttled inside a batch are sent again until they get another answer.
    pub async fn batch(
        &self,
        mailbox: &str,
        what: &str,
        items: Vec<BatchItem>,
    ) -> Result<BTreeMap<String, Reply>, GraphError> {
        let mut answers = BTreeMap::new();
        for chunk in chunks(items) {
            self.batch_chunk(mailbox, what, chunk, &mut answers).await?;
        }
        Ok(answers)
    }

    async fn batch_chunk(
        &self,
        mailbox: &str,
        what: &str,
        mut pending: Vec<BatchItem>,
        answers: &mut BTreeMap<String, Reply>,
    ) -> Result<(), GraphError> {
        let started = Instant::now();
        let mut throttles = 0;
        while !pending.is_empty() {
            let body = serde_json::to_value(BatchRequest {
                requests: pending.clone(),
            })
            .expect("a batch serialises");
            let heads = pending.iter().filter(|i| i.depends_on.is_none()).count();
            let outgoing = Outgoing {
                method: Method::POST,
                url: format!("{}/$batch", self.api_root),
                body: Some(&body),
            };
            let size = pending.len() as u32;
            let reply = self
                .exchange(mailbox, what, &outgoing, size, heads as u32)
                .await?;
            if !reply.is_success() {
                return Err(reply.refused(what));
            }
            let response: BatchResponse = reply.json(what)?;

            let mut retry_after: Option<Duration> = None;
            let mut again = BTreeSet::new();
            for inner in &response.responses {
                if matches!(inner.status, 429 | 503) {
                    self.counters.throttled.fetch_add(1, Ordering::Relaxed);
                    let asked = inner_retry_after(&inner.headers);
                    retry_after = Some(
                        retry_after
                            .unwrap_or_default()
                            .max(asked.unwrap_or_default()),
                    );
                    again.insert(inner.id.clone());
                }
            }
            // A request that failed only because what it depended on was throttled goes again.
            for item in &pending {
                let blocked = item.depends_on.iter().flatten().any(|d| again.contains(d));
                if blocked {
                    again.insert(item.id.clone());
                }
            }
            for inner in response.responses {
                if !again.contains(&inner.id) {
                    answers.insert(inner.id.clone(), Reply::from_batch(inner));
                }
            }
            let missing: Vec<&str> = pending
                .iter()
                .filter(|i| !again.contains(&i.id) && !answers.contains_key(&i.id))
                .map(|i| i.id.as_str())
                .collect();
            if !missing.is_empty() {
                return Err(GraphError::Malformed {
                    what: what.to_owned(),
                    status: 200,
                    detail: format!(
                        "the batch response has no answer for {}",
                        missing.join(", ")
                    ),
                });
            }
            pending.retain(|i| again.contains(&i.id));
            for item in &mut pending {
                // What it depended on succeeded in an earlier round and is not sent again.
                if let Some(deps) = &mut item.depends_on {
                    deps.retain(|d| again.contains(d));
                    if deps.is_empty() {
                        item.depends_on = None;
                    }
                }
            }
            if !pending.is_empty() {
                throttles += 1;
                let wait = retry_after
                    .filter(|w| !w.is_zero())
                    .unwrap_or_else(|| backoff(throttles));
                self.wait_throttled(mailbox, what, started, wait)?;
            }
        }
        Ok(())
    }

    /// Sends one HTTP request through the mailbox's gate, retrying as the module says.
    async fn exchange(
        &self,
        mailbox: &str,
        what: &str,
        outgoing: &Outgoing<'_>,
        requests: u32,
        parallel: u32,
    ) -> Result<Reply, GraphError> {
        let gate = self.gates.gate(mailbox);
        let started = Instant::now();
        let (mut failures, mut throttles, mut renewed) = (0u32, 0u32, false);
        loop {
            let pass = gate.enter(requests, parallel).await;
            let token = match self.tokens.token().await {
                Ok(token) => token,
                Err(e) if e.is_transient() && failures + 1 < self.config.attempts => {
                    drop(pass);
                    failures += 1;
                    tokio::time::sleep(backoff(failures)).await;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            self.counters.http_requests.fetch_add(1, Ordering::Relaxed);
            self.counters
                .graph_requests
                .fetch_add(u64::from(requests), Ordering::Relaxed);
            let result = self.attempt(outgoing, &token).await;
            drop(pass);

            let (status, headers, bytes) = match result {
                Ok(answer) => answer,
                Err(e) => {
                    failures += 1;
                    if failures >= self.config.attempts.max(1) {
                        return Err(self.gave_up(what, &e, failures));
                    }
                    self.counters.retried.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(backoff(failures)).await;
                    continue;
                }
            };
            match status {
                429 | 503 => {
                    self.counters.throttled.fetch_add(1, Ordering::Relaxed);
                    throttles += 1;
                    let wait = retry_after(&headers).unwrap_or_else(|| backoff(throttles));
                    self.wait_throttled(mailbox, what, started, wait)?;
                }
                504 => {
                    failures += 1;
                    if failures >= self.config.attempts.max(1) {
                        let reply = Reply::from_bytes(status, &bytes);
                        return Err(reply.refused(what));
                    }
                    self.counters.retried.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(backoff(failures)).await;
                }
                401 if !renewed => {
                    renewed = true;
                    self.tokens.forget(&token).await;
                }
                _ => return Ok(Reply::from_bytes(status, &bytes)),
            }
        }
    }

    async fn attempt(
        &self,
        outgoing: &Outgoing<'_>,
        token: &AccessToken,
    ) -> Result<(u16, HeaderMap, Vec<u8>), reqwest::Error> {
        let mut request = self
            .http
            .request(outgoing.method.clone(), &outgoing.url)
            .bearer_auth(token.secret());
        if let Some(body) = outgoing.body {
            request = request.json(body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await?.to_vec();
        Ok((status, headers, bytes))
    }

    fn gave_up(&self, what: &str, error: &reqwest::Error, attempts: u32) -> GraphError {
        if error.is_timeout() {
            return GraphError::Timeout {
                what: what.to_owned(),
                timeout: self.config.timeout,
                attempts,
            };
        }
        GraphError::Transport {
            what: what.to_owned(),
            detail: error_chain(error),
            attempts,
        }
    }

    /// Holds the mailbox for `wait`, unless that would take the request past its limit.
    fn wait_throttled(
        &self,
        mailbox: &str,
        what: &str,
        started: Instant,
        wait: Duration,
    ) -> Result<(), GraphError> {
        let waited = started.elapsed();
        if waited + wait > self.config.max_throttled {
            return Err(GraphError::Throttled {
                what: what.to_owned(),
                waited_secs: waited.as_secs(),
                asked_secs: wait.as_secs(),
            });
        }
        tracing::debug!(
            mailbox,
            wait_ms = wait.as_millis() as u64,
            "Graph throttled a request"
        );
        self.gates.gate(mailbox).back_off(wait);
        Ok(())
    }
}

/// Splits batch items into batches of at most [`MAX_BATCH`], keeping each item with what it
/// depends on (a group larger than a batch is not split, and Graph refuses it with a reason).
fn chunks(items: Vec<BatchItem>) -> Vec<Vec<BatchItem>> {
    let mut groups: Vec<Vec<BatchItem>> = Vec::new();
    for item in items {
        let home = item.depends_on.as_ref().and_then(|deps| {
            groups
                .iter()
                .position(|g| g.iter().any(|i| deps.contains(&i.id)))
        });
        match home {
            Some(at) => groups[at].push(item),
            None => groups.push(vec![item]),
        }
    }
    let mut out: Vec<Vec<BatchItem>> = Vec::new();
    for group in groups {
        match out.last_mut() {
            Some(last) if last.len() + group.len() <= MAX_BATCH => last.extend(group),
            _ => out.push(group),
        }
    }
    out
}

/// 1 s, 2 s, 4 s... up to a minute.
fn backoff(round: u32) -> Duration {
    let secs = 1u64 << round.saturating_sub(1).min(6);
    Duration::from_secs(secs).min(MAX_BACKOFF)
}

/// `Retry-After` in seconds (Graph does not send dates).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    parse_seconds(value)
}

fn inner_retry_after(headers: &BTreeMap<String, String>) -> Option<Duration> {
    headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("retry-after"))
        .and_then(|(_, value)| parse_seconds(value))
}

fn parse_seconds(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    value
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, after: Option<&str>) -> BatchItem {
        let item = BatchItem::get(id, "/users/a@x/messages");
        match after {
            Some(dep) => item.after(dep),
            None => item,
        }
    }

    #[test]
    fn batches_keep_dependent_requests_together() {
        let mut items = Vec::new();
        for i in 0..15 {
            items.push(item(&format!("p{i}"), None));
            items.push(item(&format!("m{i}"), Some(&format!("p{i}"))));
        }
        let chunks = chunks(items);
        assert_eq!(chunks.iter().map(Vec::len).collect::<Vec<_>>(), [20, 10]);
        for chunk in &chunks {
            for i in chunk {
                for dep in i.depends_on.iter().flatten() {
                    assert!(chunk.iter().any(|j| &j.id == dep), "{dep} left behind");
                }
            }
        }
    }

    #[test]
    fn reads_retry_after_and_backs_off() {
        assert_eq!(parse_seconds("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_seconds("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_seconds("soon"), None);
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(4));
        assert_eq!(backoff(30), MAX_BACKOFF);
    }

    #[test]
    fn an_unreadable_body_is_named() {
        let reply = Reply::from_bytes(200, b"{\"value\": [");
        let err = reply
            .json::<Page<Value>>("GET messages of a@x")
            .expect_err("truncated");
        assert!(err.to_string().contains("not the JSON expected"), "{err}");
        assert_eq!(Reply::from_bytes(204, b"").body, Value::Null);
    }
}
