//! The API's authentication, roles and error messages, against the real binary.

mod support;

use reqwest::Method;
use serde_json::json;
use std::net::SocketAddr;
use support::*;

async fn start() -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (config, listen) = write_config(dir.path(), None).await;
    (Server::start(&config, listen).await, dir)
}

/// A node with a Maildir backend and a TAP source, optionally serving TLS.
async fn write_config(
    dir: &std::path::Path,
    tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
) -> (std::path::PathBuf, SocketAddr) {
    let (_tap, tap_address) = start_tap().await;
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mailboxes = format!(
        "[[mailboxes]]\nname = \"local\"\ntype = \"maildir\"\nroot = {:?}\n",
        dir.join("mail").display().to_string()
    );
    let config = NodeConfig {
        dir,
        listen,
        tap: tap_address,
        mailboxes,
        worker_concurrency: 2,
        tls,
    }
    .write();
    (config, listen)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_but_health_needs_a_key_and_roles_limit_changes() {
    let (server, _dir) = start().await;
    let client = reqwest::Client::new();
    let live = client
        .get(format!("{}/health/live", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);

    for path in [
        "/metrics",
        "/api/incidents",
        "/api/v1/alerts",
        "/api/v1/status",
    ] {
        let anonymous = client
            .get(format!("{}{path}", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(anonymous.status(), 401, "{path} without a key");
        let (status, body) = server.api("wrong-key").get(path).await;
        assert_eq!(status, 401, "{path} with a wrong key: {body}");
    }

    let reader = server.api(READER_KEY);
    let analyst = server.api(ANALYST_KEY);
    let admin = server.api(ADMIN_KEY);
    assert_eq!(reader.get("/api/incidents").await.0, 200);
    let bearer = client
        .get(format!("{}/api/v1/status", server.base))
        .bearer_auth(READER_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 200, "a Bearer key is accepted too");
    let lower = client
        .get(format!("{}/api/v1/status", server.base))
        .header("Authorization", format!("bearer {READER_KEY}"))
        .send()
        .await
        .unwrap();
    assert_eq!(lower.status(), 200, "the scheme is case-insensitive");

    let condition = json!({ "name": "urls", "threat_types": ["url"], "responses": ["quarantine"] });
    let path = "/api/v1/match-conditions/urls";
    assert_eq!(
        reader.send(Method::PUT, path, condition.clone()).await.0,
        403
    );
    assert_eq!(
        analyst.send(Method::PUT, path, condition.clone()).await.0,
        403
    );
    assert_eq!(
        reader
            .send(Method::POST, "/api/v1/jobs/1/restore", json!({}))
            .await
            .0,
        403
    );
    let (status, body) = admin.send(Method::PUT, path, condition.clone()).await;
    assert_eq!(status, 200, "{body}");
    let (_, stored) = reader.get(path).await;
    assert_eq!(stored["threat_types"], json!(["url"]));

    let (status, body) = admin
        .send(Method::PUT, "/api/v1/match-conditions/other", condition)
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("path names \"other\""),
        "{body}"
    );
    let (status, body) = admin
        .send(Method::DELETE, "/api/v1/match-conditions/nope", json!({}))
        .await;
    assert_eq!(status, 409);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no match condition named"),
        "{body}"
    );
    let (status, _) = admin.send(Method::DELETE, path, json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(reader.get(path).await.0, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_queries_are_answered_with_what_was_wrong() {
    let (server, _dir) = start().await;
    let api = server.api(READER_KEY);
    let cases = [
        (
            "/api/incidents?state=pending",
            400,
            "state must be open or closed",
        ),
        (
            "/api/incidents?created_after=yesterday",
            400,
            "created_after must be an ISO 8601",
        ),
        ("/api/incidents/abc.json", 400, "is not an incident id"),
        ("/api/incidents/999.json", 404, "incident 999 not found"),
        (
            "/api/incidents/1.json?expand_events=maybe",
            400,
            "expand_events must be true or false",
        ),
        (
            "/api/v1/jobs?state=weird",
            400,
            "state must be all or queued",
        ),
        ("/api/v1/alerts/77", 404, "alert 77 not found"),
        (
            "/api/v1/search?hash=12zz",
            400,
            "hash: \"12zz\" has 4 characters",
        ),
        ("/api/v1/search?url=ht!tp://x.example", 400, "url: "),
        ("/api/v1/search?host=bad..example", 400, "host: "),
        (
            "/api/v1/search?after=tomorrow",
            400,
            "after: \"tomorrow\" is not a time",
        ),
        (
            "/api/v1/search?colour=red",
            400,
            "colour: not a search parameter",
        ),
        ("/api/v1/search?view=wide", 400, "view: "),
        ("/api/v1/search?limit=100000", 400, "limit: "),
        ("/api/v1/search?cursor=x1", 400, "cursor: "),
        ("/api/v1/incidents?state=pending", 400, "state: \"pending\""),
        ("/api/v1/stats?days=0", 400, "days: "),
    ];
    for (path, expected, message) in cases {
        let (status, body) = api.get(path).await;
        assert_eq!(status, expected, "{path}: {body}");
        assert!(
            body["error"].as_str().unwrap_or_default().contains(message),
            "{path}: {body}"
        );
    }
    let (status, body) = api
        .get("/api/incidents?state=open&created_after=2020-01-01")
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_show_raft_and_source_state() {
    let (server, _dir) = start().await;
    let api = server.api(READER_KEY);
    let ok = wait_for(std::time::Duration::from_secs(20), || async {
        let (_, body) = api.get("/metrics").await;
        body.as_str()
            .is_some_and(|t| t.contains("pullback_source_calls_total"))
    })
    .await;
    assert!(ok, "no source metrics:\n{}", server.log_text());
    let (_, body) = api.get("/metrics").await;
    let text = body.as_str().unwrap();
    assert!(
        text.contains("pullback_raft{field=\"is_leader\"} 1"),
        "{text}"
    );
    assert!(text.contains("pullback_raft_proposals_total"), "{text}");
    // The source's checkpoints went through the leader's grouping.
    let count = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert!(count("pullback_commit_seconds_count") > 0, "{text}");
    assert!(count("pullback_group_commands_count") > 0, "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_can_be_served_over_tls_only() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed_certificate(dir.path());
    let (config, listen) = write_config(dir.path(), Some((cert.clone(), key))).await;
    let root = reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(root)
        .build()
        .unwrap();
    let server = Server::start_with(&config, format!("https://{listen}"), client.clone()).await;

    let mut api = server.api(READER_KEY);
    api.client = client;
    let (status, body) = api.get("/api/v1/status").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "leader");
    // Plain HTTP on the same port gets no answer.
    let plain = reqwest::Client::new()
        .get(format!("http://{listen}/health/live"))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    // A client that does not trust the certificate is refused by its own TLS check.
    let untrusting = reqwest::Client::new()
        .get(format!("https://{listen}/health/live"))
        .send()
        .await;
    assert!(untrusting.is_err());
}

/// Signs in and returns the session cookie (`name=value`) and the CSRF token.
async fn sign_in(server: &Server, user: &str, password: &str) -> (u16, String, String) {
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/session", server.base))
        .json(&json!({ "username": user, "password": password }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let cookie = response
        .headers()
        .get("set-cookie")
        .map(|c| c.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let csrf = body["csrf_token"].as_str().unwrap_or_default().to_owned();
    (status, cookie, csrf)
}

/// A request as a browser with a session cookie sends it.
async fn as_browser(
    server: &Server,
    method: Method,
    path: &str,
    cookie: &str,
    csrf: Option<&str>,
) -> (u16, serde_json::Value) {
    let pair = cookie.split(';').next().unwrap_or_default().to_owned();
    let mut request = reqwest::Client::new()
        .request(method, format!("{}{path}", server.base))
        .header("Cookie", pair);
    if let Some(token) = csrf {
        request = request.header("X-CSRF-Token", token);
    }
    let response = request
        .json(&json!({ "text": "looked at it" }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn users_sign_in_to_sessions_that_need_the_csrf_token_and_keep_their_role() {
    let (server, _dir) = start().await;
    let admin = server.api(ADMIN_KEY);
    let password = "a long passphrase 42";
    let (status, body) = admin
        .send(
            Method::PUT,
            "/api/v1/users/ann",
            json!({ "role": "analyst", "password": "short" }),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().starts_with("password:"),
        "{body}"
    );
    for (name, role) in [("ann", "analyst"), ("rita", "read_only")] {
        let user = json!({ "role": role, "password": password });
        let (status, body) = admin
            .send(Method::PUT, &format!("/api/v1/users/{name}"), user)
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (_, users) = admin.get("/api/v1/users").await;
    assert_eq!(users.as_array().unwrap().len(), 2);
    assert!(
        !users.to_string().contains("argon2"),
        "hashes are never shown: {users}"
    );

    // A wrong password and an unknown user get the same answer.
    let (wrong, _, _) = sign_in(&server, "ann", "not the passphrase").await;
    let (unknown, _, _) = sign_in(&server, "nobody", password).await;
    assert_eq!((wrong, unknown), (401, 401));
    let (status, cookie, csrf) = sign_in(&server, "ann", password).await;
    assert_eq!(status, 200);
    for attribute in ["pullback_session=", "HttpOnly", "Secure", "SameSite=Strict"] {
        assert!(
            cookie.contains(attribute),
            "{attribute} missing from {cookie}"
        );
    }
    let (status, me) = as_browser(&server, Method::GET, "/api/v1/session", &cookie, None).await;
    assert_eq!(
        (status, me["user"].as_str(), me["role"].as_str()),
        (200, Some("ann"), Some("analyst"))
    );
    let (status, _) = as_browser(
        &server,
        Method::GET,
        "/api/v1/search?subject=hello",
        &cookie,
        None,
    )
    .await;
    assert_eq!(status, 200);

    // A change without the CSRF token is refused; with it, it reaches the handler.
    let comment = "/api/v1/incidents/1/comments";
    let (status, body) = as_browser(&server, Method::POST, comment, &cookie, None).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("X-CSRF-Token"),
        "{body}"
    );
    let (status, body) = as_browser(&server, Method::POST, comment, &cookie, Some("forged")).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = as_browser(&server, Method::POST, comment, &cookie, Some(&csrf)).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("no incident 1"),
        "{body}"
    );

    // A read-only user may look but not act.
    let (_, rita_cookie, rita_csrf) = sign_in(&server, "rita", password).await;
    let restore = "/api/v1/incidents/1/restore";
    let (status, body) = as_browser(
        &server,
        Method::POST,
        restore,
        &rita_cookie,
        Some(&rita_csrf),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("read_only"),
        "{body}"
    );
    let (status, _) = as_browser(&server, Method::GET, "/api/v1/users", &rita_cookie, None).await;
    assert_eq!(status, 403);

    // Every change is in the audit log, with who made it and how it ended.
    let (_, audit) = server.api(READER_KEY).get("/api/v1/audit").await;
    let entries: Vec<String> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} | {} | {} | {}",
                e["by"], e["action"], e["detail"], e["outcome"]
            )
            .replace('"', "")
        })
        .collect();
    let expected = [
        "user rita | sign_in | user rita | ok",
        "user ann | comment_incident | incident 1 | refused: no incident 1",
        "user ann | sign_in | user ann | ok",
        "key admin | put_user | user rita as read_only | ok",
        "key admin | put_user | user ann as analyst | ok",
    ];
    assert_eq!(entries, expected);

    // Disabling a user ends their sessions at once.
    let disable = json!({ "role": "read_only", "disabled": true });
    let (status, _) = admin.send(Method::PUT, "/api/v1/users/rita", disable).await;
    assert_eq!(status, 200);
    let (status, _) = as_browser(&server, Method::GET, "/api/v1/session", &rita_cookie, None).await;
    assert_eq!(status, 401);
    // Signing out needs the token too, and ends the session.
    let (status, _) = as_browser(
        &server,
        Method::DELETE,
        "/api/v1/session",
        &cookie,
        Some(&csrf),
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = as_browser(&server, Method::GET, "/api/v1/search", &cookie, None).await;
    assert_eq!(status, 401);

    // Repeated failures for one name are slowed down.
    for _ in 0..5 {
        assert_eq!(sign_in(&server, "ann", "guess").await.0, 401);
    }
    assert_eq!(sign_in(&server, "ann", password).await.0, 429);
    let log = server.log_text();
    assert!(!log.contains(password), "a password reached the log");
}

/// An appliance's node takes upgrade images from administrators and leaves them in its inbox
/// for root; nobody else may upload, one waits at a time, and root's outcome comes back.
#[tokio::test(flavor = "multi_thread")]
async fn administrators_upload_upgrade_images_for_root_to_apply() {
    use pullback_appliance::inbox::{Inbox, InboxResult, InboxState};
    let dir = tempfile::tempdir().unwrap();
    let (config, listen) = write_config(dir.path(), None).await;
    let path = "/api/v1/appliance/upgrade";
    {
        let server = Server::start(&config, listen).await;
        let (status, body) = server.api(ADMIN_KEY).get(path).await;
        assert_eq!(status, 404, "{body}");
        assert!(
            body["error"].as_str().unwrap().contains("not an appliance"),
            "{body}"
        );
    }

    let inbox_dir = dir.path().join("upgrade-inbox");
    std::fs::create_dir(&inbox_dir).unwrap();
    let text = std::fs::read_to_string(&config).unwrap().replacen(
        &format!("listen = \"{listen}\"\n"),
        &format!(
            "listen = \"{listen}\"\nupgrade_inbox = {:?}\n",
            inbox_dir.display().to_string()
        ),
        1,
    );
    std::fs::write(&config, text).unwrap();
    let server = Server::start(&config, listen).await;
    let inbox = Inbox::at(&inbox_dir);
    let upload = |key: &'static str, body: Vec<u8>| {
        let url = format!("{}{path}", server.base);
        async move {
            let response = reqwest::Client::new()
                .post(url)
                .header("Authorization", key)
                .header("Content-Type", "application/octet-stream")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap();
            (status, body)
        }
    };
    // Bigger than the 2 MiB every other route accepts.
    let image: Vec<u8> = (0..3 * 1024 * 1024).map(|i| (i % 251) as u8).collect();

    // A small body: a refused request is answered before a large one has been sent, and the
    // closed connection would fail the send instead.
    for key in [READER_KEY, ANALYST_KEY] {
        assert_eq!(upload(key, b"not yours".to_vec()).await.0, 403);
        assert_eq!(server.api(key).get(path).await.0, 403);
    }
    let (status, body) = upload(ADMIN_KEY, Vec::new()).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("body is empty"),
        "{body}"
    );
    assert!(!inbox.request().exists());

    let (status, body) = upload(ADMIN_KEY, image.clone()).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["state"], "queued");
    assert_eq!(body["uploaded_by"], "key admin");
    assert_eq!(
        std::fs::read(inbox.request()).unwrap(),
        image,
        "the bytes root will check"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&inbox_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let (status, body) = upload(ADMIN_KEY, b"a second image".to_vec()).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        std::fs::read(inbox.request()).unwrap(),
        image,
        "the first one still waits"
    );

    // Root takes it and refuses it, as `pullback upgrade inbox` does for a bad signature.
    let taken = dir.path().join("root-only/uploaded.img");
    assert!(inbox.take_request(&taken).unwrap().is_some());
    inbox
        .set_result(&InboxResult {
            state: InboxState::Refused,
            message: "signature check failed, nothing was written".into(),
            version: None,
            uploaded_by: Some("key admin".into()),
            at: 1,
        })
        .unwrap();
    let (status, body) = server.api(ADMIN_KEY).get(path).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["last"]["state"], "refused");
    assert!(
        body["last"]["message"]
            .as_str()
            .unwrap()
            .contains("signature check"),
        "{body}"
    );

    // Settled, so the next upload is taken.
    let (status, body) = upload(ADMIN_KEY, b"the fixed image".to_vec()).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(std::fs::read(inbox.request()).unwrap(), b"the fixed image");

    let (_, audit) = server.api(ADMIN_KEY).get("/api/v1/audit?limit=20").await;
    let uploads = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "upload_upgrade" && e["by"] == "key admin")
        .count();
    assert_eq!(uploads, 2, "{audit}");
}

/// A lone node reports its release like any member; finalizing an upgrade is for
/// administrators, and with nothing newer running it changes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_reports_its_release_and_only_administrators_finalize_upgrades() {
    let (server, _dir) = start().await;
    let (status, cluster) = server.api(READER_KEY).get("/api/v1/cluster").await;
    assert_eq!(status, 200, "{cluster}");
    assert_eq!(cluster["level"], 1);
    assert_eq!(cluster["members"][0]["release"]["level"], 1, "{cluster}");
    assert_eq!(
        cluster["members"][0]["release"]["version"],
        env!("CARGO_PKG_VERSION")
    );
    for key in [READER_KEY, ANALYST_KEY] {
        let (status, _) = server
            .api(key)
            .send(Method::POST, "/api/v1/cluster/finalize", json!({}))
            .await;
        assert_eq!(status, 403, "{key}");
    }
    let (status, body) = server
        .api(ADMIN_KEY)
        .send(Method::POST, "/api/v1/cluster/finalize", json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({ "level": 1, "raised": false }));
}
