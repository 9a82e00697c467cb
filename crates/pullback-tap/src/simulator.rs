//! A TAP-compatible SIEM API server for tests and the demo.
//!
//! It enforces the real API's rules (Basic auth, one time selector, windows of 30 s to 1 h,
//! seven days of data, a rolling daily quota answered with 429 and no Retry-After) and models
//! late indexing: an event is filed at one time and becomes visible only once indexed.

use crate::event::{ARRAYS, field, format_time, parse_time_str};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{TimeDelta, Utc};
use pullback_domain::{AlertKind, Timestamp};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::net::TcpListener;

/// The paths the simulator answers, with the event kinds each returns.
const ENDPOINTS: [(&str, &[AlertKind]); 6] = [
    (
        "/v2/siem/all",
        &[
            AlertKind::MessageDelivered,
            AlertKind::MessageBlocked,
            AlertKind::ClickPermitted,
            AlertKind::ClickBlocked,
        ],
    ),
    (
        "/v2/siem/issues",
        &[AlertKind::MessageDelivered, AlertKind::ClickPermitted],
    ),
    (
        "/v2/siem/messages/delivered",
        &[AlertKind::MessageDelivered],
    ),
    ("/v2/siem/messages/blocked", &[AlertKind::MessageBlocked]),
    ("/v2/siem/clicks/permitted", &[AlertKind::ClickPermitted]),
    ("/v2/siem/clicks/blocked", &[AlertKind::ClickBlocked]),
];

const THREAT_TYPES: [&str; 3] = ["url", "attachment", "messagetext"];
const THREAT_STATUSES: [&str; 3] = ["active", "cleared", "falsepositive"];

/// The credential the simulator accepts and the quota it grants it.
#[derive(Clone)]
pub struct SimulatorConfig {
    pub principal: String,
    pub secret: String,
    /// Calls allowed per credential in any rolling 24 hours.
    pub quota_per_day: u32,
}

/// A simulated TAP SIEM API. Share it as `Arc<TapSimulator>` between the server and the test.
pub struct TapSimulator {
    config: SimulatorConfig,
    state: Mutex<SimState>,
}

/// Everything the simulator remembers, behind one lock.
#[derive(Default)]
struct SimState {
    /// The simulated time; `None` follows the real clock.
    clock: Option<Timestamp>,
    events: Vec<SimEvent>,
    /// Times of the calls that counted against each principal's quota.
    ledger: HashMap<String, Vec<Timestamp>>,
    calls: usize,
    answered: HashMap<u16, usize>,
    fail_next: Option<StatusCode>,
}

struct SimEvent {
    kind: AlertKind,
    raw: Value,
    filed_at: Timestamp,
    indexed_at: Timestamp,
}

/// A request the simulator answers with an error, and the text of that answer.
struct Refusal {
    status: StatusCode,
    message: String,
}

impl Refusal {
    fn bad_request(message: impl Into<String>) -> Self {
        Refusal {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
}

impl TapSimulator {
    /// A simulator with no events that follows the real clock.
    pub fn new(config: SimulatorConfig) -> Self {
        TapSimulator {
            config,
            state: Mutex::new(SimState::default()),
        }
    }

    /// Stops the clock at `now`.
    pub fn set_now(&self, now: Timestamp) {
        self.state().clock = Some(now);
    }

    /// Moves the clock forward, stopping it if it followed the real one.
    pub fn advance(&self, by: Duration) {
        let mut state = self.state();
        let now = state.clock.unwrap_or_else(Utc::now);
        state.clock = Some(now + TimeDelta::from_std(by).unwrap_or(TimeDelta::MAX));
    }

    /// The simulator's current time.
    pub fn now(&self) -> Timestamp {
        self.state().clock.unwrap_or_else(Utc::now)
    }

    /// Files an event at `filed_at`, visible to queries from `indexed_at` on.
    pub fn add_event(
        &self,
        kind: AlertKind,
        raw: Value,
        filed_at: Timestamp,
        indexed_at: Timestamp,
    ) {
        self.state().events.push(SimEvent {
            kind,
            raw,
            filed_at,
            indexed_at,
        });
    }

    /// Requests received so far, whatever their answer.
    pub fn calls(&self) -> usize {
        self.state().calls
    }

    /// Requests answered with `status` so far.
    pub fn answered(&self, status: u16) -> usize {
        self.state().answered.get(&status).copied().unwrap_or(0)
    }

    /// Answers the next request with `status` and nothing else, whatever it asks.
    pub fn fail_next(&self, status: u16) {
        self.state().fail_next = StatusCode::from_u16(status).ok();
    }

    /// The HTTP routes of the simulated API.
    pub fn router(self: Arc<Self>) -> Router {
        let mut router = Router::new();
        for (path, _) in ENDPOINTS {
            router = router.route(path, get(answer));
        }
        router.with_state(self)
    }

    fn state(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Decides the answer to one request. Runs under the lock, so calls are counted in order.
    fn respond(
        &self,
        path: &str,
        authorization: Option<&str>,
        query: &[(String, String)],
    ) -> Result<Value, Refusal> {
        let mut state = self.state();
        state.calls += 1;
        if let Some(status) = state.fail_next.take() {
            return Err(Refusal {
                status,
                message: "injected failure".to_owned(),
            });
        }
        let principal = self.authenticate(authorization)?;
        let now = state.clock.unwrap_or_else(Utc::now);
        self.spend_quota(&mut state, &principal, now)?;

        let kinds = ENDPOINTS
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, kinds)| *kinds)
            .ok_or_else(|| Refusal {
                status: StatusCode::NOT_FOUND,
                message: path.to_owned(),
            })?;
        match single(query, "format") {
            Some("json") => {}
            _ => {
                return Err(Refusal::bad_request(
                    "the simulator answers only format=json",
                ));
            }
        }
        let (start, end) = time_selector(query, now)?;
        let filter = Filter::from_query(query)?;

        let mut arrays: Vec<(&str, AlertKind, Vec<Value>)> = ARRAYS
            .iter()
            .map(|&(name, kind)| (name, kind, Vec::new()))
            .collect();
        let visible = state.events.iter().filter(|e| {
            e.indexed_at <= now
                && start <= e.filed_at
                && e.filed_at < end
                && kinds.contains(&e.kind)
                && filter.admits(e)
        });
        for event in visible {
            if let Some((_, _, list)) = arrays.iter_mut().find(|(_, kind, _)| *kind == event.kind) {
                list.push(event.raw.clone());
            }
        }

        let mut body = Map::new();
        body.insert("queryEndTime".to_owned(), Value::from(format_time(end)));
        for (name, _, list) in arrays {
            body.insert(name.to_owned(), Value::Array(list));
        }
        Ok(Value::Object(body))
    }

    /// Checks Basic auth and returns the principal.
    fn authenticate(&self, authorization: Option<&str>) -> Result<String, Refusal> {
        let unauthorized = || Refusal {
            status: StatusCode::UNAUTHORIZED,
            message: "missing or wrong credentials".to_owned(),
        };
        let encoded = authorization
            .and_then(|h| h.strip_prefix("Basic "))
            .ok_or_else(unauthorized)?;
        let decoded = BASE64.decode(encoded.trim()).map_err(|_| unauthorized())?;
        let decoded = String::from_utf8(decoded).map_err(|_| unauthorized())?;
        match decoded.split_once(':') {
            Some((principal, secret))
                if principal == self.config.principal && secret == self.config.secret =>
            {
                Ok(principal.to_owned())
            }
            _ => Err(unauthorized()),
        }
    }

    /// Counts a call against the principal's rolling quota, or refuses it with 429.
    // FIXME: the real API gives clicks/permitted a quota pool of its own; here every path
    // shares one, so a test of that separate pool cannot use the simulator.
    fn spend_quota(
        &self,
        state: &mut SimState,
        principal: &str,
        now: Timestamp,
    ) -> Result<(), Refusal> {
        let since = now - TimeDelta::hours(24);
        let calls = state.ledger.entry(principal.to_owned()).or_default();
        calls.retain(|&t| t > since);
        if calls.len() >= self.config.quota_per_day as usize {
            return Err(Refusal {
                status: StatusCode::TOO_MANY_REQUESTS,
                message: "quota exceeded".to_owned(),
            });
        }
        calls.push(now);
        Ok(())
    }
}

/// Reads exactly one of `interval`, `sinceTime` and `sinceSeconds` into a window.
fn time_selector(
    query: &[(String, String)],
    now: Timestamp,
) -> Result<(Timestamp, Timestamp), Refusal> {
    let selectors: Vec<&(String, String)> = query
        .iter()
        .filter(|(k, _)| matches!(k.as_str(), "interval" | "sinceTime" | "sinceSeconds"))
        .collect();
    let [(key, value)] = selectors.as_slice() else {
        return Err(Refusal::bad_request(
            "exactly one of interval, sinceTime and sinceSeconds is required",
        ));
    };
    let unreadable = || Refusal::bad_request(format!("{key}={value} cannot be read"));

    let (start, end) = match key.as_str() {
        "interval" => {
            let (start, end) = value.split_once('/').ok_or_else(unreadable)?;
            let start = parse_time_str(start).ok_or_else(unreadable)?;
            (start, parse_time_str(end).ok_or_else(unreadable)?)
        }
        "sinceTime" => (parse_time_str(value).ok_or_else(unreadable)?, now),
        _ => {
            let seconds: i64 = value.trim().parse().map_err(|_| unreadable())?;
            if seconds > 3600 {
                return Err(Refusal::bad_request("sinceSeconds may not exceed 3600"));
            }
            (now - TimeDelta::seconds(seconds), now)
        }
    };

    if end - start < TimeDelta::seconds(30) {
        return Err(Refusal::bad_request(
            "the window is shorter than 30 seconds",
        ));
    }
    if end - start > TimeDelta::hours(1) {
        return Err(Refusal::bad_request("the window is longer than one hour"));
    }
    if start < now - TimeDelta::days(7) {
        return Err(Refusal::bad_request(
            "the window starts more than seven days ago",
        ));
    }
    Ok((start, end))
}

/// The optional `threatType` and `threatStatus` filters, lower case.
struct Filter {
    types: Vec<String>,
    statuses: Vec<String>,
}

impl Filter {
    fn from_query(query: &[(String, String)]) -> Result<Self, Refusal> {
        let read = |key: &str, allowed: &[&str]| -> Result<Vec<String>, Refusal> {
            let mut values = Vec::new();
            for (_, value) in query.iter().filter(|(k, _)| k == key) {
                let value = value.trim().to_ascii_lowercase();
                if !allowed.contains(&value.as_str()) {
                    return Err(Refusal::bad_request(format!("{key}={value} is not known")));
                }
                values.push(value);
            }
            Ok(values)
        };
        Ok(Filter {
            types: read("threatType", &THREAT_TYPES)?,
            statuses: read("threatStatus", &THREAT_STATUSES)?,
        })
    }

    /// Whether one of the event's threats has a wanted type and a wanted status.
    fn admits(&self, event: &SimEvent) -> bool {
        if self.types.is_empty() && self.statuses.is_empty() {
            return true;
        }
        let wanted = |list: &[String], value: Option<String>| {
            list.is_empty() || value.is_some_and(|v| list.contains(&v))
        };
        threats_of(event)
            .into_iter()
            .any(|(kind, status)| wanted(&self.types, kind) && wanted(&self.statuses, status))
    }
}

/// The (type, status) of each threat of an event, lower case; a click's threat is a URL.
fn threats_of(event: &SimEvent) -> Vec<(Option<String>, Option<String>)> {
    let lower = |map: &Map<String, Value>, name: &str| {
        field(map, &[name])
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
    };
    let Value::Object(raw) = &event.raw else {
        return Vec::new();
    };
    match event.kind {
        AlertKind::ClickPermitted | AlertKind::ClickBlocked => {
            vec![(Some("url".to_owned()), lower(raw, "threatStatus"))]
        }
        _ => match field(raw, &["threatsInfoMap"]) {
            Some(Value::Array(entries)) => entries
                .iter()
                .filter_map(Value::as_object)
                .map(|info| (lower(info, "threatType"), lower(info, "threatStatus")))
                .collect(),
            _ => Vec::new(),
        },
    }
}

/// The value of a parameter given exactly once.
fn single<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    let mut values = query.iter().filter(|(k, _)| k == key);
    match (values.next(), values.next()) {
        (Some((_, value)), None) => Some(value.as_str()),
        _ => None,
    }
}

/// Splits and percent-decodes a query string.
fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match (hex_value(bytes[i + 1]), hex_value(bytes[i + 2])) {
                    (Some(high), Some(low)) => {
                        out.push(high << 4 | low);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

async fn answer(State(sim): State<Arc<TapSimulator>>, uri: Uri, headers: HeaderMap) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok());
    let query = parse_query(uri.query().unwrap_or(""));
    let result = sim.respond(uri.path(), authorization, &query);

    let status = match &result {
        Ok(_) => StatusCode::OK,
        Err(refusal) => refusal.status,
    };
    *sim.state().answered.entry(status.as_u16()).or_default() += 1;
    match result {
        Ok(body) => (StatusCode::OK, axum::Json(body)).into_response(),
        Err(refusal) if refusal.status == StatusCode::UNAUTHORIZED => (
            refusal.status,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"tap\"")],
            refusal.message,
        )
            .into_response(),
        Err(refusal) => (refusal.status, refusal.message).into_response(),
    }
}

/// Serves the simulator on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, sim: Arc<TapSimulator>) -> std::io::Result<()> {
    axum::serve(listener, sim.router()).await
}
