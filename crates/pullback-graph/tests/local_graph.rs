//! The local Graph refuses what the real one refuses, so that a client sending it fails here
//! too. These tests talk raw HTTP to it.

mod support;

use pullback_graph::testing::{CLIENT_ID, CLIENT_SECRET, LocalGraph, TENANT_ID};
use serde_json::{Value, json};
use support::*;

struct Raw {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Raw {
    async fn new(graph: &LocalGraph) -> Raw {
        let ca = reqwest::Certificate::from_pem(graph.ca_pem().as_bytes()).expect("the CA");
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .build()
            .expect("a client");
        let base = graph.base_url().to_owned();
        let (status, body) = token(
            &http,
            &base,
            &[("scope", "https://graph.microsoft.com/.default")],
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let token = body["access_token"].as_str().expect("a token").to_owned();
        Raw { http, base, token }
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let url = format!("{}/v1.0{path}", self.base);
        let response = self
            .http
            .get(url)
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("an answer");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn batch(&self, body: &Value) -> (u16, Value) {
        let url = format!("{}/v1.0/$batch", self.base);
        let response = self
            .http
            .post(url)
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .expect("an answer");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

/// A client-credentials request with the test application's secret and `extra` fields.
async fn token(http: &reqwest::Client, base: &str, extra: &[(&str, &str)]) -> (u16, Value) {
    let mut form = vec![
        ("grant_type", "client_credentials"),
        ("client_id", CLIENT_ID),
        ("client_secret", CLIENT_SECRET),
    ];
    form.extend_from_slice(extra);
    let url = format!("{base}/{TENANT_ID}/oauth2/v2.0/token");
    let response = http.post(url).form(&form).send().await.expect("an answer");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn code(body: &Value) -> &str {
    body["error"]["code"]
        .as_str()
        .or(body["error"].as_str())
        .unwrap_or_default()
}

#[tokio::test]
async fn the_token_endpoint_refuses_bad_scopes_and_unknown_parties() {
    let graph = graph().await;
    let raw = Raw::new(&graph).await;
    for (extra, status, error) in [
        (
            vec![("scope", "https://graph.microsoft.com/Mail.ReadWrite")],
            400,
            "invalid_scope",
        ),
        (
            vec![("scope", "https://graph.microsoft.us/.default")],
            400,
            "invalid_resource",
        ),
        (vec![], 400, "invalid_request"),
    ] {
        let (got, body) = token(&raw.http, &raw.base, &extra).await;
        assert_eq!(
            (got, body["error"].as_str().unwrap_or_default()),
            (status, error),
            "{body}"
        );
        assert!(
            body["error_description"]
                .as_str()
                .unwrap_or_default()
                .starts_with("AADSTS"),
            "{body}"
        );
    }
    let url = format!("{}/not-a-tenant/oauth2/v2.0/token", raw.base);
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", CLIENT_ID),
    ];
    let body: Value = raw
        .http
        .post(url)
        .form(&form)
        .send()
        .await
        .expect("an answer")
        .json()
        .await
        .expect("JSON");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap_or_default()
            .contains("AADSTS90002"),
        "{body}"
    );
}

#[tokio::test]
async fn graph_refuses_missing_and_unknown_tokens() {
    let graph = graph().await;
    let raw = Raw::new(&graph).await;
    let url = format!("{}/v1.0/users/{ALICE}/messages", raw.base);
    let response = raw.http.get(&url).send().await.expect("an answer");
    assert_eq!(response.status().as_u16(), 401);
    let response = raw
        .http
        .get(&url)
        .bearer_auth("forged")
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status().as_u16(), 401);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(code(&body), "InvalidAuthenticationToken");
}

#[tokio::test]
async fn filters_must_be_quoted_and_properties_known() {
    let graph = graph().await;
    graph.deliver(ALICE, "inbox", &phish("<q@evil.example>"));
    let raw = Raw::new(&graph).await;
    let base = format!("/users/{ALICE}/messages");
    for (query, status) in [
        (
            "$filter=internetMessageId%20eq%20%27%3Cq%40evil.example%3E%27",
            200,
        ),
        (
            "$filter=internetMessageId%20eq%20%3Cq%40evil.example%3E",
            400,
        ),
        (
            "$filter=internetMessageId%20eq%20%22%3Cq%40evil.example%3E%22",
            400,
        ),
        ("$select=id,colour", 400),
        ("$top=5000", 400),
        ("$orderby=subject", 400),
    ] {
        let (got, body) = raw.get(&format!("{base}?{query}")).await;
        assert_eq!(got, status, "{query}: {body}");
    }
    let (_, body) = raw
        .get(&format!(
            "{base}?$filter=internetMessageId%20eq%20%27q%40evil.example%27"
        ))
        .await;
    assert_eq!(
        body["value"].as_array().map(Vec::len),
        Some(0),
        "without brackets it is another id"
    );
}

#[tokio::test]
async fn lists_come_in_pages_of_ten_unless_asked() {
    let graph = graph().await;
    for _ in 0..12 {
        graph.deliver(ALICE, "inbox", &phish("<paged@evil.example>"));
    }
    let raw = Raw::new(&graph).await;
    let (status, body) = raw.get(&format!("/users/{ALICE}/messages")).await;
    assert_eq!(status, 200);
    assert_eq!(body["value"].as_array().map(Vec::len), Some(10));
    let next = body["@odata.nextLink"].as_str().expect("a next page");
    let path = next
        .strip_prefix(&format!("{}/v1.0", raw.base))
        .expect("on this Graph");
    let (_, body) = raw.get(path).await;
    assert_eq!(body["value"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn batches_are_limited_to_twenty_and_need_content_types() {
    let graph = graph().await;
    let raw = Raw::new(&graph).await;
    let get = |id: usize| json!({ "id": id.to_string(), "method": "GET", "url": format!("/users/{ALICE}/mailFolders/inbox") });
    let (status, body) = raw
        .batch(&json!({ "requests": (0..21).map(get).collect::<Vec<_>>() }))
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = raw
        .batch(&json!({ "requests": (0..20).map(get).collect::<Vec<_>>() }))
        .await;
    assert_eq!(status, 200);

    let no_type = json!({ "requests": [{ "id": "1", "method": "POST", "url": format!("/users/{ALICE}/mailFolders"), "body": { "displayName": "X" } }] });
    let (status, body) = raw.batch(&no_type).await;
    assert_eq!(status, 400, "{body}");
    let absolute = json!({ "requests": [{ "id": "1", "method": "GET", "url": format!("/v1.0/users/{ALICE}/messages") }] });
    assert_eq!(raw.batch(&absolute).await.0, 400);
}

#[tokio::test]
async fn a_failed_request_fails_what_depends_on_it_with_424() {
    let graph = graph().await;
    let raw = Raw::new(&graph).await;
    let batch = json!({ "requests": [
        { "id": "1", "method": "GET", "url": format!("/users/{ALICE}/mailFolders/no-such-folder") },
        { "id": "2", "method": "GET", "url": format!("/users/{ALICE}/mailFolders/inbox"), "dependsOn": ["1"] },
        { "id": "3", "method": "GET", "url": format!("/users/{ALICE}/mailFolders/inbox") },
    ]});
    let (status, body) = raw.batch(&batch).await;
    assert_eq!(status, 200);
    let statuses: Vec<(String, u64)> = body["responses"]
        .as_array()
        .expect("responses")
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap_or_default().to_owned(),
                r["status"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [("1".into(), 404), ("2".into(), 424), ("3".into(), 200)]
    );
}

#[tokio::test]
async fn a_fifth_concurrent_request_on_one_mailbox_is_throttled() {
    let graph = graph_with(pullback_graph::testing::LocalGraphConfig {
        latency: std::time::Duration::from_millis(200),
        ..Default::default()
    })
    .await;
    let raw = std::sync::Arc::new(Raw::new(&graph).await);
    let mut calls = Vec::new();
    for _ in 0..5 {
        let raw = raw.clone();
        calls.push(tokio::spawn(async move {
            raw.get(&format!("/users/{ALICE}/mailFolders/inbox")).await
        }));
    }
    let mut statuses = Vec::new();
    for call in calls {
        statuses.push(call.await.expect("a call").0);
    }
    statuses.sort();
    assert_eq!(statuses, [200, 200, 200, 200, 429]);
    // Another mailbox is not affected.
    assert_eq!(
        raw.get(&format!("/users/{BOB}/mailFolders/inbox")).await.0,
        200
    );
}

#[tokio::test]
async fn moves_give_messages_new_ids() {
    let graph = graph().await;
    let id = graph.deliver(ALICE, "inbox", &phish("<moved@evil.example>"));
    let raw = Raw::new(&graph).await;
    let batch = json!({ "requests": [{
        "id": "1", "method": "POST", "url": format!("/users/{ALICE}/messages/{id}/move"),
        "body": { "destinationId": "archive" }, "headers": { "Content-Type": "application/json" },
    }]});
    let (_, body) = raw.batch(&batch).await;
    let moved = &body["responses"][0];
    assert_eq!(moved["status"], 201, "{body}");
    assert_ne!(moved["body"]["id"].as_str(), Some(id.as_str()));
    assert_eq!(
        raw.get(&format!("/users/{ALICE}/messages/{id}")).await.0,
        404
    );
}
