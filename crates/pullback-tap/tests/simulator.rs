//! The simulator enforces the TAP SIEM API's rules, checked over real HTTP on the loopback.

use chrono::{TimeDelta, TimeZone, Utc};
use pullback_domain::{AlertKind, Timestamp};
use pullback_tap::simulator::serve;
use pullback_tap::{SimulatorConfig, TapSimulator};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

const PRINCIPAL: &str = "sim-principal";
const SECRET: &str = "sim-secret";

fn t0() -> Timestamp {
    Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0)
        .single()
        .expect("a valid time")
}

fn at(minutes_from_t0: i64) -> Timestamp {
    t0() + TimeDelta::minutes(minutes_from_t0)
}

fn iso(time: Timestamp) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn interval(from_minutes: i64, to_minutes: i64) -> String {
    format!(
        "format=json&interval={}/{}",
        iso(at(from_minutes)),
        iso(at(to_minutes))
    )
}

/// A simulator stopped at `t0` and serving on a loopback port.
struct Harness {
    sim: Arc<TapSimulator>,
    base: String,
    http: reqwest::Client,
}

impl Harness {
    async fn start(quota_per_day: u32) -> Harness {
        let config = SimulatorConfig {
            principal: PRINCIPAL.to_owned(),
            secret: SECRET.to_owned(),
            quota_per_day,
        };
        let sim = Arc::new(TapSimulator::new(config));
        sim.set_now(t0());
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let addr = listener.local_addr().expect("the bound address");
        tokio::spawn(serve(listener, Arc::clone(&sim)));
        Harness {
            sim,
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
        }
    }

    /// Asks `path?query` with the right credential; the status, headers and body.
    async fn get(&self, path: &str, query: &str) -> (u16, reqwest::header::HeaderMap, String) {
        self.send(path, query, Some(SECRET)).await
    }

    async fn send(
        &self,
        path: &str,
        query: &str,
        secret: Option<&str>,
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let mut request = self.http.get(format!("{}{path}?{query}", self.base));
        if let Some(secret) = secret {
            request = request.basic_auth(PRINCIPAL, Some(secret));
        }
        let response = request.send().await.expect("the simulator answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        (status, headers, response.text().await.expect("a body"))
    }

    async fn status(&self, query: &str) -> u16 {
        self.get("/v2/siem/all", query).await.0
    }

    async fn json(&self, path: &str, query: &str) -> Value {
        let (status, _, body) = self.get(path, query).await;
        assert_eq!(status, 200, "{path}?{query}: {body}");
        serde_json::from_str(&body).expect("a JSON body")
    }
}

fn ids(body: &Value, array: &str) -> Vec<String> {
    body[array]
        .as_array()
        .unwrap_or_else(|| panic!("{array} missing from {body}"))
        .iter()
        .map(|e| e["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn message(id: &str, threat_type: &str, status: &str) -> Value {
    json!({"id": id, "messageTime": iso(at(-10)), "threatsInfoMap": [
        {"threatID": "t", "threatType": threat_type, "threatStatus": status}
    ]})
}

#[tokio::test]
async fn basic_auth_is_required() {
    let h = Harness::start(100).await;
    let query = interval(-30, 0);
    let (status, headers, _) = h.send("/v2/siem/all", &query, None).await;
    assert_eq!(status, 401);
    assert!(headers.contains_key("www-authenticate"));
    assert_eq!(h.send("/v2/siem/all", &query, Some("wrong")).await.0, 401);
    assert_eq!(h.send("/v2/siem/all", &query, Some(SECRET)).await.0, 200);
}

#[tokio::test]
async fn exactly_one_time_selector_is_accepted() {
    let h = Harness::start(100).await;
    let cases = [
        ("format=json", 400),
        (
            "format=json&sinceSeconds=600&sinceTime=2024-05-01T11:50:00Z",
            400,
        ),
        (&format!("{}&sinceSeconds=600", interval(-30, 0)), 400),
        ("format=json&sinceSeconds=600", 200),
        ("format=json&sinceTime=2024-05-01T11:50:00Z", 200),
        ("format=json&interval=yesterday/today", 400),
    ];
    for (query, expected) in cases {
        assert_eq!(h.status(query).await, expected, "{query}");
    }
}

#[tokio::test]
async fn windows_must_be_from_thirty_seconds_to_an_hour_and_within_seven_days() {
    let h = Harness::start(100).await;
    let start = at(-60);
    let window = |secs: i64| {
        format!(
            "format=json&interval={}/{}",
            iso(start),
            iso(start + TimeDelta::seconds(secs))
        )
    };
    let week = 7 * 24 * 60;
    let cases = [
        (window(29), 400),
        (window(30), 200),
        (window(3600), 200),
        (window(3601), 400),
        (interval(0, -30), 400),
        ("format=json&sinceSeconds=3600".to_owned(), 200),
        ("format=json&sinceSeconds=3601".to_owned(), 400),
        ("format=json&sinceSeconds=10".to_owned(), 400),
        (interval(-week - 1, -week + 30), 400),
        (interval(-week + 1, -week + 30), 200),
    ];
    for (query, expected) in cases {
        assert_eq!(h.status(&query).await, expected, "{query}");
    }
}

#[tokio::test]
async fn only_json_is_served() {
    let h = Harness::start(100).await;
    let query = interval(-30, 0);
    assert_eq!(
        h.status(&query.replace("format=json", "format=syslog"))
            .await,
        400
    );
    assert_eq!(h.status(&query.replace("format=json&", "")).await, 400);
}

#[tokio::test]
async fn the_quota_is_a_rolling_day_answered_with_429_and_no_retry_after() {
    let h = Harness::start(3).await;
    let query = interval(-30, 0);
    for _ in 0..3 {
        assert_eq!(h.status(&query).await, 200);
    }
    let (status, headers, _) = h.get("/v2/siem/all", &query).await;
    assert_eq!(status, 429);
    assert!(!headers.contains_key("retry-after"));

    h.sim.advance(Duration::from_secs(24 * 60 * 60));
    assert_eq!(h.status(&interval(24 * 60 - 30, 24 * 60)).await, 200);
    assert_eq!(h.sim.calls(), 5);
    assert_eq!((h.sim.answered(200), h.sim.answered(429)), (4, 1));
}

#[tokio::test]
async fn an_event_is_served_once_indexed_and_by_the_time_it_was_filed() {
    let h = Harness::start(100).await;
    h.sim.add_event(
        AlertKind::ClickBlocked,
        json!({"id": "late"}),
        at(-5),
        at(10),
    );
    h.sim.add_event(
        AlertKind::ClickBlocked,
        json!({"id": "edge"}),
        at(-30),
        at(-30),
    );

    let body = h.json("/v2/siem/all", &interval(-30, 0)).await;
    assert_eq!(ids(&body, "clicksBlocked"), ["edge"]);
    assert_eq!(body["queryEndTime"], json!(iso(t0())));
    // A window's end is excluded, its start included.
    let before = h.json("/v2/siem/all", &interval(-60, -30)).await;
    assert!(ids(&before, "clicksBlocked").is_empty());

    h.sim.set_now(at(10));
    let after = h.json("/v2/siem/all", &interval(-30, 0)).await;
    assert_eq!(ids(&after, "clicksBlocked"), ["late", "edge"]);
}

#[tokio::test]
async fn each_path_serves_its_kinds_and_every_array_is_present() {
    let h = Harness::start(100).await;
    let kinds = [
        (AlertKind::MessageDelivered, "md"),
        (AlertKind::MessageBlocked, "mb"),
        (AlertKind::ClickPermitted, "cp"),
        (AlertKind::ClickBlocked, "cb"),
    ];
    for (kind, id) in kinds {
        h.sim.add_event(kind, json!({"id": id}), at(-10), at(-10));
    }
    let arrays = [
        "messagesDelivered",
        "messagesBlocked",
        "clicksPermitted",
        "clicksBlocked",
    ];
    let cases: [(&str, [&[&str]; 4]); 6] = [
        ("/v2/siem/all", [&["md"], &["mb"], &["cp"], &["cb"]]),
        ("/v2/siem/issues", [&["md"], &[], &["cp"], &[]]),
        ("/v2/siem/messages/delivered", [&["md"], &[], &[], &[]]),
        ("/v2/siem/messages/blocked", [&[], &["mb"], &[], &[]]),
        ("/v2/siem/clicks/permitted", [&[], &[], &["cp"], &[]]),
        ("/v2/siem/clicks/blocked", [&[], &[], &[], &["cb"]]),
    ];
    for (path, expected) in cases {
        let body = h.json(path, &interval(-30, 0)).await;
        for (array, ids_expected) in arrays.iter().zip(expected) {
            assert_eq!(ids(&body, array), ids_expected, "{path} {array}");
        }
    }
}

#[tokio::test]
async fn threat_type_and_status_filters_apply() {
    let h = Harness::start(100).await;
    h.sim.add_event(
        AlertKind::MessageDelivered,
        message("url", "url", "active"),
        at(-10),
        at(-10),
    );
    h.sim.add_event(
        AlertKind::MessageDelivered,
        message("att", "ATTACHMENT", "cleared"),
        at(-10),
        at(-10),
    );
    h.sim.add_event(
        AlertKind::MessageDelivered,
        message("fp", "url", "falsePositive"),
        at(-10),
        at(-10),
    );
    h.sim.add_event(
        AlertKind::ClickBlocked,
        json!({"id": "click", "threatStatus": "active"}),
        at(-10),
        at(-10),
    );

    let base = interval(-30, 0);
    let cases: [(&str, &[&str], &[&str]); 4] = [
        ("&threatType=url", &["url", "fp"], &["click"]),
        (
            "&threatType=attachment&threatType=messageText",
            &["att"],
            &[],
        ),
        ("&threatStatus=falsePositive", &["fp"], &[]),
        ("&threatType=url&threatStatus=active", &["url"], &["click"]),
    ];
    for (filter, messages, clicks) in cases {
        let body = h.json("/v2/siem/all", &format!("{base}{filter}")).await;
        assert_eq!(ids(&body, "messagesDelivered"), messages, "{filter}");
        assert_eq!(ids(&body, "clicksBlocked"), clicks, "{filter}");
    }
    assert_eq!(h.status(&format!("{base}&threatType=virus")).await, 400);
}

#[tokio::test]
async fn an_injected_failure_answers_one_request() {
    let h = Harness::start(100).await;
    h.sim.fail_next(503);
    let query = interval(-30, 0);
    assert_eq!(h.status(&query).await, 503);
    assert_eq!(h.status(&query).await, 200);
    assert_eq!(h.sim.calls(), 2);
    assert_eq!(h.sim.answered(503), 1);
}
