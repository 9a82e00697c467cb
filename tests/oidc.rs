//! Sign-in with Azure AD end to end: headless Chromium, the `pullback` binary and the local
//! identity provider (HTTPS, trusted by the node through `ca_file` and by Chromium by its
//! key's hash). A user signs in with the "Sign in with Microsoft" button in the global cloud
//! and in the China cloud (the same provider at an explicit authority, with that cloud's
//! issuer), gets the role their group or app role grants, and is audited as
//! `user <name> (azure ad)`. Every spoiled ID token, a cancelled sign-in and a user without a
//! role end on the sign-in page with a message saying what was wrong, and with no session.
//!
//! With `PULLBACK_SCREENSHOTS=1` the test also saves pictures of the sign-in page in
//! `docs/screenshots`.

mod support;

use pullback_oidc::Cloud;
use pullback_oidc::testing::{App, LocalIdp, TENANT_ID, Tamper, User};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use support::webdriver::Browser;
use support::*;

const CLIENT_ID: &str = "4a1aa1d5-c567-49d0-ad0b-cd957a47f842";
const CLIENT_SECRET: &str = "Lz58Q~end.to.end-secret-value";
const ADMINS: &str = "b8b6d0a2-4c1f-4f0b-9a5e-0c9d1e2f3a4b";
const ANALYSTS: &str = "c2d7e9f1-5a6b-4c7d-8e9f-0a1b2c3d4e5f";
const ALICE: &str = "alice@contoso.test";
const BOB: &str = "bob@contoso.test";
const CAROL: &str = "carol@contoso.test";
const PASSWORD: &str = "correct horse battery";

fn user(name: &str, object_id: &str, groups: &[&str], roles: &[&str]) -> User {
    User {
        username: name.to_owned(),
        password: PASSWORD.to_owned(),
        object_id: object_id.to_owned(),
        name: name.split('@').next().unwrap_or(name).to_owned(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        app_roles: roles.iter().map(|r| r.to_string()).collect(),
    }
}

/// Saves a picture of the window as `docs/screenshots/<name>.png` when asked to.
async fn screenshot(browser: &Browser, name: &str) {
    if std::env::var("PULLBACK_SCREENSHOTS").as_deref() == Ok("1") {
        let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots");
        browser
            .screenshot(&folder.join(format!("{name}.png")))
            .await;
    }
}

fn callback(listen: SocketAddr) -> String {
    format!("http://{listen}/api/v1/oidc/callback")
}

/// A node alone, offering sign-in with Azure AD in `cloud` at the local provider.
async fn start_node(
    dir: &Path,
    idp: &LocalIdp,
    cloud: Cloud,
    listen: SocketAddr,
    tap: SocketAddr,
) -> Server {
    let ca_file = dir.join("idp-ca.pem");
    std::fs::write(&ca_file, idp.certificate_pem()).expect("write the provider's certificate");
    let secret_file = dir.join("client-secret");
    std::fs::write(&secret_file, CLIENT_SECRET).expect("write the secret");
    std::fs::set_permissions(
        &secret_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .expect("chmod 600");
    let oidc = format!(
        r#"[oidc]
cloud = "{cloud}"
authority_url = "{authority}"
tenant_id = "{TENANT_ID}"
client_id = "{CLIENT_ID}"
client_secret = {{ file = {secret:?} }}
redirect_url = "{redirect}"
ca_file = {ca:?}

[oidc.roles]
admin = {{ groups = ["{ADMINS}"] }}
analyst = {{ groups = ["{ANALYSTS}"] }}
read_only = {{ app_roles = ["Pullback.Reader"] }}
"#,
        authority = idp.authority(cloud),
        secret = secret_file.display().to_string(),
        redirect = callback(listen),
        ca = ca_file.display().to_string(),
    );
    let node = NodeConfig {
        dir,
        listen,
        tap,
        mailboxes: String::new(),
        worker_concurrency: 1,
        tls: None,
    };
    let config = dir.join("pullback.toml");
    std::fs::write(&config, node.text(1, &dir.join("node"), listen, &oidc)).expect("config");
    Server::start(&config, listen).await
}

/// Opens the UI at `route`, presses "Sign in with Microsoft" and signs in at the provider.
async fn sign_in_with_microsoft(browser: &Browser, base: &str, route: &str, username: &str) {
    browser.goto(&format!("{base}/ui#{route}")).await;
    let button = browser.wait_for_element("#signin-azure-ad").await;
    assert_eq!(browser.text(&button).await, "Sign in with Microsoft");
    browser.click(&button).await;
    let name = browser.wait_for_element("#idp-username").await;
    browser.send_keys(&name, username).await;
    let password = browser.wait_for_element("#idp-password").await;
    browser.send_keys(&password, PASSWORD).await;
    let submit = browser.wait_for_element("#idp-submit").await;
    browser.click(&submit).await;
}

/// Waits for the signed-in page of `user`; answers the role shown.
async fn signed_in_as(browser: &Browser, user: &str) -> String {
    browser
        .wait_until(&format!("{user} to be signed in"), async || {
            let shown = browser.find("#session-user").await?;
            (browser.text(&shown).await == user).then_some(())
        })
        .await;
    let role = browser.wait_for_element("#session-role").await;
    browser.text(&role).await
}

/// The message the sign-in page shows after a failed sign-in.
async fn sign_in_error(browser: &Browser) -> String {
    browser
        .wait_until("a message on the sign-in page", async || {
            let error = browser.find("#signin-error").await?;
            let text = browser.text(&error).await;
            (!text.is_empty()).then_some(text)
        })
        .await
}

/// The status of `GET path` from the page, with its cookies.
async fn fetch_status(browser: &Browser, path: &str) -> u64 {
    browser
        .execute(
            "return fetch(arguments[0], { credentials: 'same-origin' }).then(r => r.status)",
            vec![json!(path)],
        )
        .await
        .as_u64()
        .unwrap_or_default()
}

/// Signs out through the UI.
async fn sign_out(browser: &Browser) {
    let button = browser.wait_for_element("#signout").await;
    browser.click(&button).await;
    browser.wait_for_element("#signin-form").await;
}

/// The audit entries of sign-ins, newest first.
async fn sign_ins(admin: &Api) -> Vec<Value> {
    let (status, page) = admin.get("/api/v1/audit?limit=200").await;
    assert_eq!(status, 200, "{page}");
    let entries = page
        .get("items")
        .or(Some(&page))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    entries
        .into_iter()
        .filter(|e| e["action"] == "sign_in")
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn people_sign_in_with_azure_ad_in_the_global_and_china_clouds_and_spoiled_tokens_are_refused()
 {
    let global_listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let china_listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let app = App {
        client_id: CLIENT_ID.to_owned(),
        secrets: vec![CLIENT_SECRET.to_owned()],
        certificates: Vec::new(),
        redirect_uris: vec![callback(global_listen), callback(china_listen)],
        groups_claim: true,
    };
    let users = vec![
        user(
            ALICE,
            "0d2b1b8e-1111-4c5d-9e6f-000000000a11",
            &[ADMINS],
            &[],
        ),
        user(
            BOB,
            "0d2b1b8e-2222-4c5d-9e6f-000000000b0b",
            &[],
            &["Pullback.Reader"],
        ),
        user(
            CAROL,
            "0d2b1b8e-3333-4c5d-9e6f-000000000ca4",
            &["unrelated"],
            &[],
        ),
    ];
    let idp = LocalIdp::start(vec![app], users).await;
    let (_tap, tap) = start_tap().await;
    let dir = tempfile::tempdir().expect("a test folder");
    let global_dir = dir.path().join("global");
    std::fs::create_dir(&global_dir).unwrap();
    let server = start_node(&global_dir, &idp, Cloud::Global, global_listen, tap).await;
    let admin = server.api(ADMIN_KEY);
    let base = server.base.clone();

    // The sign-in page learns that Azure AD is offered.
    let (status, methods) = admin.get("/api/v1/session/methods").await;
    assert_eq!(status, 200);
    assert_eq!(methods["providers"][0]["id"], "azure_ad", "{methods}");
    assert_eq!(methods["providers"][0]["cloud"], "global", "{methods}");

    let browser = Browser::start_with_args(
        1280,
        900,
        &[format!(
            "--ignore-certificate-errors-spki-list={}",
            idp.spki_sha256()
        )],
    )
    .await;

    // alice, an administrator by group, comes back to the page she asked for.
    browser.goto(&format!("{base}/ui#/audit")).await;
    browser.wait_for_element("#signin-azure-ad").await;
    screenshot(&browser, "signin-azure-ad").await;
    sign_in_with_microsoft(&browser, &base, "/audit", ALICE).await;
    assert_eq!(signed_in_as(&browser, ALICE).await, "admin");
    assert!(
        browser.url().await.ends_with("/ui#/audit"),
        "{}",
        browser.url().await
    );
    let via = browser.wait_for_element("#session-provider").await;
    assert_eq!(browser.text(&via).await, "via Azure AD");
    assert!(
        browser.find("#password-link").await.is_none(),
        "no password to change here"
    );
    assert_eq!(
        fetch_status(&browser, "/api/v1/users").await,
        200,
        "an administrator's call"
    );
    let audited = sign_ins(&admin).await;
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert_eq!(audited[0]["by"], format!("user {ALICE} (azure ad)"));
    assert_eq!(audited[0]["detail"], format!("user {ALICE} (azure ad)"));
    assert_eq!(audited[0]["outcome"], "ok");
    // Changes need the session's CSRF token like any other session's.
    let status = browser
        .execute(
            "return fetch('/api/v1/session/password', { method: 'PUT', credentials: \
             'same-origin', headers: { 'Content-Type': 'application/json' }, body: '{}' }) \
             .then(r => r.status)",
            vec![],
        )
        .await;
    assert_eq!(status, 403, "a change without the CSRF token");
    sign_out(&browser).await;
    assert_eq!(fetch_status(&browser, "/api/v1/session").await, 401);

    // Every spoiled token, a cancelled sign-in and a user without a role: a message on the
    // sign-in page, no session, no sign-in in the audit log.
    let cases = [
        (
            Tamper::WrongIssuer,
            ALICE,
            "issued by \"https://login.microsoftonline.us/",
        ),
        (
            Tamper::WrongAudience,
            ALICE,
            "is meant for \"00000002-0000-0ff1-ce00-000000000000\"",
        ),
        (Tamper::WrongNonce, ALICE, "nonce does not match"),
        (
            Tamper::WrongTenant,
            ALICE,
            "is from tenant \"f8cdef31-a31e-4b4a-93e4-5f571e91255a\"",
        ),
        (Tamper::BadSignature, ALICE, "signature does not verify"),
        (Tamper::Expired, ALICE, "expired at"),
        (
            Tamper::UnknownKey,
            ALICE,
            "which the tenant does not publish",
        ),
        (Tamper::None, CAROL, "grants a Pullback role"),
    ];
    for (tamper, who, expected) in cases {
        idp.tamper(tamper);
        let issued = idp.hits().issued;
        sign_in_with_microsoft(&browser, &base, "/dashboard", who).await;
        let message = sign_in_error(&browser).await;
        assert!(
            message.contains(expected),
            "{tamper:?}: {expected:?} not in the message {message:?}"
        );
        assert!(
            message.starts_with("Sign-in with Microsoft failed: ") && message.ends_with('.'),
            "{message}"
        );
        if tamper == Tamper::WrongIssuer {
            screenshot(&browser, "signin-azure-ad-refused").await;
        }
        assert_eq!(
            idp.hits().issued,
            issued + 1,
            "{tamper:?}: the provider issued a token"
        );
        assert_eq!(
            fetch_status(&browser, "/api/v1/session").await,
            401,
            "{tamper:?}"
        );
        assert!(browser.find("#session-user").await.is_none(), "{tamper:?}");
        assert_eq!(
            sign_ins(&admin).await.len(),
            1,
            "{tamper:?}: no sign-in recorded"
        );
        // The message is shown once: the page loaded again shows the plain sign-in page.
        browser.goto("about:blank").await;
        browser.goto(&format!("{base}/ui#/dashboard")).await;
        browser.wait_for_element("#signin-azure-ad").await;
        let error = browser.wait_for_element("#signin-error").await;
        assert_eq!(
            browser.text(&error).await,
            "",
            "{tamper:?}: the message came back"
        );
    }
    idp.tamper(Tamper::None);

    // alice presses Cancel at the provider.
    browser.goto(&format!("{base}/ui#/dashboard")).await;
    let button = browser.wait_for_element("#signin-azure-ad").await;
    browser.click(&button).await;
    let cancel = browser.wait_for_element("#idp-cancel").await;
    browser.click(&cancel).await;
    let message = sign_in_error(&browser).await;
    assert!(
        message.contains("Azure AD refused the sign-in: access_denied: AADSTS65004"),
        "{message}"
    );
    assert_eq!(fetch_status(&browser, "/api/v1/session").await, 401);

    // A callback nobody started (a forged link): refused, nothing recorded.
    browser
        .goto(&format!(
            "{base}/api/v1/oidc/callback?code=forged&state=forged"
        ))
        .await;
    let message = sign_in_error(&browser).await;
    assert!(
        message.contains("not started from this appliance"),
        "{message}"
    );
    assert_eq!(sign_ins(&admin).await.len(), 1);
    assert!(
        !server.log_text().contains(CLIENT_SECRET),
        "the client secret is in the log"
    );
    drop(server);

    // The China cloud: the same provider at an explicit authority, whose tokens carry the
    // China cloud's issuer host. bob is a reader by app role.
    let china_dir = dir.path().join("china");
    std::fs::create_dir(&china_dir).unwrap();
    let server = start_node(&china_dir, &idp, Cloud::China, china_listen, tap).await;
    let admin = server.api(ADMIN_KEY);
    let base = server.base.clone();
    let (_, methods) = admin.get("/api/v1/session/methods").await;
    assert_eq!(methods["providers"][0]["cloud"], "china", "{methods}");
    sign_in_with_microsoft(&browser, &base, "/incidents", BOB).await;
    assert_eq!(signed_in_as(&browser, BOB).await, "read only");
    assert_eq!(fetch_status(&browser, "/api/v1/incidents").await, 200);
    assert_eq!(
        fetch_status(&browser, "/api/v1/users").await,
        403,
        "a reader is no admin"
    );
    let audited = sign_ins(&admin).await;
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert_eq!(audited[0]["by"], format!("user {BOB} (azure ad)"));
    sign_out(&browser).await;

    // A token of the global cloud is refused by a node set for China.
    idp.tamper(Tamper::WrongIssuer);
    sign_in_with_microsoft(&browser, &base, "/dashboard", ALICE).await;
    let message = sign_in_error(&browser).await;
    assert!(
        message.contains("issued by \"https://login.microsoftonline.com/")
            && message
                .contains("not by the tenant's issuer \"https://login.partner.microsoftonline.cn/"),
        "{message}"
    );
    assert_eq!(sign_ins(&admin).await.len(), 1);

    // The outcomes are counted by kind, for monitoring.
    let (_, metrics) = admin.get("/metrics").await;
    let metrics = metrics.as_str().unwrap_or_default().to_owned();
    for line in [
        "pullback_oidc_sign_ins_total{outcome=\"ok\"} 1",
        "pullback_oidc_sign_ins_total{outcome=\"id_token\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }

    let errors: Vec<String> = browser
        .console_errors()
        .await
        .into_iter()
        .filter(|e| !e.contains("401") && !e.contains("403"))
        .collect();
    assert!(errors.is_empty(), "the page logged errors: {errors:?}");
    browser.quit().await;
}
