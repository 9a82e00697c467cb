//! The web UI in a real browser: headless Chromium driven over WebDriver against the
//! `pullback` binary, a real Dovecot and the TAP-compatible server. An analyst signs in,
//! restores one recipient's message from the incident page and sees its state change, and
//! searches by a threat URL; a read-only user is offered no restore and the API refuses one,
//! sees the recommendation that there is no backup yet and acknowledges it, but is offered no
//! backup or purge; an administrator opens the recommended purge schedule from it, dismisses
//! it, and takes a backup that the page follows until it is verified.
//!
//! With `PULLBACK_SCREENSHOTS=1` the test also saves the pictures in `docs/screenshots`.

mod support;

use pullback_domain::AlertKind;
use pullback_mailbox::testing::Dovecot;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use support::webdriver::Browser;
use support::*;

const ALICE: &str = "alice@corp.test";
const BOB: &str = "bob@corp.test";
const CAROL: &str = "carol@corp.test";
const ANALYST: &str = "ana";
const ANALYST_PASSWORD: &str = "analyst-password-4821";
const READER: &str = "rita";
const READER_PASSWORD: &str = "reader-password-9377";
const ADMIN: &str = "ada";
const ADMIN_PASSWORD: &str = "admin-password-5150";
/// The name of the backup target in the node's configuration.
const TARGET: &str = "local";
/// How long a backup, which runs in the background, may take in a debug build.
const BACKUP_WAIT: Duration = Duration::from_secs(120);
/// The dashboard link TAP gives the URL threat of the message to alice and bob.
const THREAT_URL: &str =
    "https://threatinsight.proofpoint.com/#/73aa0499-dfc8/threat/u/ui-test-love-letter";
const THREAT_HOST: &str = "login.love-letter.zz";

/// The folder the screenshots go to, when they are wanted.
fn screenshots() -> Option<PathBuf> {
    (std::env::var("PULLBACK_SCREENSHOTS").as_deref() == Ok("1"))
        .then(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots"))
}

async fn screenshot(browser: &Browser, name: &str) {
    if let Some(folder) = screenshots() {
        browser
            .screenshot(&folder.join(format!("{name}.png")))
            .await;
    }
}

/// The delivered-message event for `message`, whose URL threat points at [`THREAT_HOST`]
/// and has its own dashboard link, so a search by that link finds this message alone.
fn love_letter_event(message: &[u8]) -> Value {
    let mut event = delivered_event("ev-ui-love", message, &[ALICE, BOB], "active");
    let threats = event["threatsInfoMap"].as_array_mut().expect("threats");
    let url = threats
        .iter_mut()
        .find(|t| t["threatType"] == "URL")
        .expect("the sample has a URL threat");
    url["threat"] = json!(format!("https://{THREAT_HOST}/verify?id=2291"));
    url["threatUrl"] = json!(THREAT_URL);
    url["classification"] = json!("PHISH");
    event
}

/// Signs in through the sign-in form and waits for the signed-in page.
async fn sign_in(browser: &Browser, base: &str, user: &str, password: &str) {
    browser.goto(&format!("{base}/ui#/dashboard")).await;
    let name = browser.wait_for_element("#signin-username").await;
    browser.send_keys(&name, user).await;
    let field = browser.wait_for_element("#signin-password").await;
    browser.send_keys(&field, password).await;
    let submit = browser.wait_for_element("#signin-submit").await;
    browser.click(&submit).await;
    browser
        .wait_until(&format!("{user} to be signed in"), async || {
            let shown = browser.find("#session-user").await?;
            (browser.text(&shown).await == user).then_some(())
        })
        .await;
}

/// The state a quarantine result of `recipient` shows on the incident page.
async fn quarantine_state(browser: &Browser, recipient: &str) -> Option<String> {
    let css = format!(
        "[data-test=quarantine-row][data-action=quarantine][data-recipient=\"{recipient}\"]"
    );
    let row = browser.find(&css).await?;
    browser.attribute(&row, "data-state").await
}

/// The texts of the search result table's column headers.
async fn result_headers(browser: &Browser) -> Vec<String> {
    let mut headers = Vec::new();
    for th in browser.find_all("#search-results thead th").await {
        headers.push(browser.text(&th).await);
    }
    headers
}

/// The texts of the search results' cells marked `test`.
async fn result_cells(browser: &Browser, test: &str) -> Vec<String> {
    let mut cells = Vec::new();
    for td in browser
        .find_all(&format!("#search-results td[data-test={test}]"))
        .await
    {
        cells.push(browser.text(&td).await);
    }
    cells
}

#[tokio::test(flavor = "multi_thread")]
async fn analysts_restore_and_search_admins_back_up_and_readers_change_nothing() {
    // Mail in the inboxes, and TAP's reports of it.
    let dovecot = Dovecot::start(&[ALICE, BOB, CAROL]);
    let love = shared_mail("phish/sample-3690.eml");
    let diplomat = shared_mail("phish/sample-1006.eml");
    dovecot.deliver(ALICE, "INBOX", &love);
    dovecot.deliver(BOB, "INBOX", &love);
    dovecot.deliver(CAROL, "INBOX", &diplomat);
    let (tap, tap_address) = start_tap().await;
    serve_event(&tap, AlertKind::MessageDelivered, love_letter_event(&love));
    serve_event(
        &tap,
        AlertKind::MessageDelivered,
        delivered_event("ev-ui-diplomat", &diplomat, &[CAROL], "active"),
    );

    let dir = tempfile::tempdir().expect("a test folder");
    let backups = dir.path().join("backups");
    std::fs::create_dir(&backups).expect("a folder for backups");
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let imap: SocketAddr = format!("127.0.0.1:{}", dovecot.port()).parse().unwrap();
    let config = NodeConfig {
        dir: dir.path(),
        listen,
        tap: tap_address,
        // The node's other tables go with its mailboxes: one backup target.
        mailboxes: format!(
            "{}\n{}",
            imap_mailbox(&dovecot, imap),
            local_target(TARGET, &backups)
        ),
        worker_concurrency: 2,
        tls: None,
    }
    .write();
    // An appliance node: it takes upgrade images into this inbox.
    let inbox = dir.path().join("upgrade-inbox");
    std::fs::create_dir(&inbox).expect("an upgrade inbox");
    let text = std::fs::read_to_string(&config)
        .expect("the config")
        .replacen(
            &format!("listen = \"{listen}\"\n"),
            &format!(
                "listen = \"{listen}\"\nupgrade_inbox = {:?}\n",
                inbox.display().to_string()
            ),
            1,
        );
    std::fs::write(&config, text).expect("the config");
    let started = chrono::Utc::now();
    let server = Server::start(&config, listen).await;
    let admin = server.api(ADMIN_KEY);
    assert!(
        admin.wait_until_idle(started).await,
        "the quarantine did not finish:\n{}",
        server.log_text()
    );
    assert_eq!(dovecot.messages(ALICE, "Quarantine").len(), 1);

    // The incident of the love letter, and its quarantine job.
    let love_id = pullback_mailbox::headers::MessageHeaders::parse(&love)
        .message_id
        .expect("a Message-ID")
        .bracketed();
    let (status, alerts) = admin
        .get(&format!(
            "/api/v1/alerts?message_id={}",
            urlencode(&love_id)
        ))
        .await;
    assert_eq!(status, 200, "{alerts}");
    let incident = alerts["items"][0]["incident_id"]
        .as_u64()
        .unwrap_or_else(|| panic!("the love letter has no incident: {alerts}"));
    let (_, view) = admin.get(&format!("/api/v1/incidents/{incident}")).await;
    let job = view["jobs"][0]["id"].as_u64().expect("a quarantine job");

    // Three people, through the API with the administrator's key.
    for (name, role, password) in [
        (ANALYST, "analyst", ANALYST_PASSWORD),
        (READER, "read_only", READER_PASSWORD),
        (ADMIN, "admin", ADMIN_PASSWORD),
    ] {
        let (status, answer) = admin
            .send(
                reqwest::Method::PUT,
                &format!("/api/v1/users/{name}"),
                json!({ "role": role, "password": password }),
            )
            .await;
        assert_eq!(status, 200, "creating {name}: {answer}");
    }

    // The page and its files are public, and sent with headers that keep data inert.
    let page = reqwest::get(format!("{}/ui", server.base))
        .await
        .expect("GET /ui");
    assert_eq!(page.status(), 200);
    let header = |name: &str| {
        page.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert!(header("content-type").starts_with("text/html"));
    assert!(header("content-security-policy").contains("script-src 'self';"));
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert_eq!(header("x-frame-options"), "DENY");

    let browser = Browser::start(1440, 1000).await;
    let base = server.base.clone();

    // The analyst: the dashboard, then the incident list.
    sign_in(&browser, &base, ANALYST, ANALYST_PASSWORD).await;
    browser.wait_for_element("#chart-alerts svg").await;
    // Everyone is told that there is no backup yet.
    browser
        .wait_for_element("[data-test=recommendation][data-id=backup-age]")
        .await;
    screenshot(&browser, "dashboard").await;
    let nav = browser.wait_for_element("[data-test=nav-incidents]").await;
    browser.click(&nav).await;
    let row = format!("[data-test=incident-row][data-id=\"{incident}\"]");
    browser.wait_for_element(&row).await;
    screenshot(&browser, "incident-list").await;
    let open = browser
        .wait_for_element(&format!("{row} [data-test=incident-link]"))
        .await;
    browser.click(&open).await;

    // The incident: both copies quarantined; restore alice's.
    browser.wait_for_element("#quarantine-table").await;
    for recipient in [ALICE, BOB] {
        browser
            .wait_until(
                &format!("{recipient}'s copy shown quarantined"),
                async || {
                    let state = quarantine_state(&browser, recipient).await?;
                    (state == "quarantined").then_some(())
                },
            )
            .await;
    }
    let restore = browser
        .wait_for_element(&format!(
            "[data-test=restore-recipient][data-recipient=\"{ALICE}\"]"
        ))
        .await;
    browser.click(&restore).await;
    let confirm = browser.wait_for_element("[data-test=confirm-yes]").await;
    browser.click(&confirm).await;
    browser
        .wait_until("alice's copy shown restored", async || {
            let state = quarantine_state(&browser, ALICE).await?;
            (state == "restored").then_some(())
        })
        .await;
    assert_eq!(
        quarantine_state(&browser, BOB).await.as_deref(),
        Some("quarantined"),
        "bob's copy must stay in quarantine"
    );
    let back = wait_for(Duration::from_secs(10), || async {
        dovecot.messages(ALICE, "INBOX").len() == 1
    })
    .await;
    assert!(back, "alice's message is not back in her inbox");
    assert_eq!(dovecot.messages(BOB, "Quarantine").len(), 1);
    screenshot(&browser, "incident-overview").await;

    // Search by the threat's dashboard link: the two columns that matter, in both views.
    browser.goto(&format!("{base}/ui#/search")).await;
    let field = browser.wait_for_element("#search-threat_url").await;
    browser.send_keys(&field, THREAT_URL).await;
    let submit = browser.wait_for_element("#search-submit").await;
    browser.click(&submit).await;
    browser
        .wait_for_element("#search-results[data-view=basic] tbody tr")
        .await;
    let headers = result_headers(&browser).await;
    for wanted in ["Threat Hostname", "Email Recipient"] {
        assert!(
            headers.iter().any(|h| h == wanted),
            "no {wanted} column in {headers:?}"
        );
    }
    let hosts = result_cells(&browser, "threat-hostname").await;
    assert!(
        !hosts.is_empty() && hosts.iter().all(|h| h.contains(THREAT_HOST)),
        "a search by the threat URL of the message to alice and bob must show only its host \
         {THREAT_HOST}; the Threat Hostname column shows {hosts:?}"
    );
    let recipients = result_cells(&browser, "email-recipient").await.join(" ");
    assert!(
        recipients.contains(ALICE) && recipients.contains(BOB) && !recipients.contains(CAROL),
        "a search by the threat URL of the message to alice and bob must show them and not \
         carol; the Email Recipient column shows {recipients}"
    );
    let detailed = browser.wait_for_element("#view-detailed").await;
    browser.click(&detailed).await;
    browser
        .wait_for_element("#search-results[data-view=detailed] tbody tr")
        .await;
    let headers = result_headers(&browser).await;
    for wanted in [
        "Threat Hostname",
        "Email Recipient",
        "Message-ID",
        "Threat URL",
    ] {
        assert!(
            headers.iter().any(|h| h == wanted),
            "no {wanted} column in {headers:?}"
        );
    }
    let links = result_cells(&browser, "threat-url").await;
    assert!(
        !links.is_empty() && links.iter().all(|l| l.starts_with("https://")),
        "threat URLs: {links:?}"
    );
    let csv = browser.wait_for_element("#search-csv").await;
    let href = browser.attribute(&csv, "href").await.unwrap_or_default();
    assert!(
        href.contains("format=csv") && href.contains("threat_url="),
        "{href}"
    );
    screenshot(&browser, "search-detailed").await;

    // A parameter the server refuses is named next to the form.
    browser
        .goto(&format!("{base}/ui#/search?after=yesterday-ish"))
        .await;
    let error = browser
        .wait_until("the search error", async || {
            let error = browser.find("#search-error").await?;
            let text = browser.text(&error).await;
            (!text.is_empty()).then_some(text)
        })
        .await;
    assert!(
        error.contains("after"),
        "the error does not name the parameter: {error}"
    );

    // The read-only user sees the incident but is offered nothing to change it.
    let sign_out = browser.wait_for_element("#signout").await;
    browser.click(&sign_out).await;
    browser.wait_for_element("#signin-form").await;
    sign_in(&browser, &base, READER, READER_PASSWORD).await;
    browser
        .goto(&format!("{base}/ui#/incidents/{incident}"))
        .await;
    browser.wait_for_element("#quarantine-table").await;
    browser
        .wait_until("bob's copy shown quarantined to the reader", async || {
            let state = quarantine_state(&browser, BOB).await?;
            (state == "quarantined").then_some(())
        })
        .await;
    for offered in [
        "[data-test=restore-recipient]",
        "#incident-restore",
        "#incident-close",
        "#comment-text",
    ] {
        assert!(
            browser.find(offered).await.is_none(),
            "a read-only user is offered {offered}:\n{}",
            browser.page_text().await
        );
    }
    assert!(browser.find("[data-test=nav-users]").await.is_none());

    // And the API refuses the restore the page did not offer, CSRF token and all.
    let status = browser
        .execute(
            "const [job, recipient] = arguments;
             return (async () => {
                 const session = await (await fetch('/api/v1/session')).json();
                 const answer = await fetch(`/api/v1/jobs/${job}/restore`, {
                     method: 'POST',
                     headers: {'Content-Type': 'application/json', 'X-CSRF-Token': session.csrf_token},
                     body: JSON.stringify({recipients: [recipient]}),
                 });
                 return answer.status;
             })();",
            vec![json!(job), json!(BOB)],
        )
        .await;
    assert_eq!(
        status,
        json!(403),
        "a read-only user's restore was not refused"
    );
    assert_eq!(dovecot.messages(BOB, "Quarantine").len(), 1);

    // A fresh node has no verified backup: everyone is told, and the reader acknowledges it,
    // but is offered nothing that backs up, schedules or purges.
    browser.goto(&format!("{base}/ui#/dashboard")).await;
    let backup_age = "[data-test=recommendation][data-id=backup-age]";
    browser.wait_for_element(backup_age).await;
    assert!(
        browser
            .find("[data-test=recommendation-action]")
            .await
            .is_none(),
        "a read-only user is offered a recommendation's scheduling action"
    );
    for page in ["backups", "purges", "purges?schedule=schedule_backup"] {
        browser.goto(&format!("{base}/ui#/{page}")).await;
        browser
            .wait_for_element(if page == "backups" {
                "#backup-targets"
            } else {
                "#schedule-table"
            })
            .await;
        for offered in [
            "#backup-start",
            "#backup-form",
            "#schedule-new",
            "#schedule-form",
            "[data-test=schedule-edit]",
            "#purge-form",
            "#purge-start",
        ] {
            assert!(
                browser.find(offered).await.is_none(),
                "a read-only user is offered {offered} on #/{page}:\n{}",
                browser.page_text().await
            );
        }
    }
    let acknowledge = browser
        .wait_for_element(&format!(
            "{backup_age} [data-test=recommendation-acknowledge]"
        ))
        .await;
    browser.click(&acknowledge).await;
    let seen = format!("{backup_age} [data-test=recommendation-acknowledged]");
    browser
        .wait_until("the reader's acknowledgement shown", async || {
            let shown = browser.find(&seen).await?;
            browser.text(&shown).await.contains(READER).then_some(())
        })
        .await;

    // The administrator sees who acknowledged it, and opens the recommended schedule.
    let sign_out = browser.wait_for_element("#signout").await;
    browser.click(&sign_out).await;
    browser.wait_for_element("#signin-form").await;
    sign_in(&browser, &base, ADMIN, ADMIN_PASSWORD).await;
    let shown = browser.wait_for_element(&seen).await;
    assert!(
        browser.text(&shown).await.contains(READER),
        "the administrator is not shown who acknowledged the recommendation"
    );
    let action = browser
        .wait_for_element(&format!("{backup_age} [data-test=recommendation-action]"))
        .await;
    browser.click(&action).await;
    browser.wait_for_element("#schedule-form").await;
    let values = form_values(
        &browser,
        &[
            "schedule-cron",
            "schedule-closed-days",
            "schedule-alert-days",
            "schedule-backup-first",
            "schedule-target",
        ],
    )
    .await;
    assert_eq!(
        values,
        json!({
            "schedule-cron": "30 2 * * *",
            "schedule-closed-days": "90",
            "schedule-alert-days": "30",
            "schedule-backup-first": true,
            "schedule-target": TARGET,
        }),
        "the recommended schedule is not prefilled as it should be"
    );
    screenshot(&browser, "purge-schedule").await;

    // A cron the server cannot read is named and marked; a good one is saved, then deleted.
    let cron = browser.wait_for_element("#schedule-cron").await;
    browser.clear(&cron).await;
    browser.send_keys(&cron, "61 2 * * *").await;
    let save = browser.wait_for_element("#schedule-save").await;
    browser.click(&save).await;
    let error = browser
        .wait_until("the schedule's error", async || {
            let status = browser.find("#schedule-status").await?;
            let text = browser.text(&status).await;
            (!text.is_empty()).then_some(text)
        })
        .await;
    assert!(
        error.contains("cron"),
        "the error does not name cron: {error}"
    );
    browser.wait_for_element("#schedule-cron.invalid").await;
    browser.clear(&cron).await;
    browser.send_keys(&cron, "30 2 * * *").await;
    browser.click(&save).await;
    let row = "[data-test=schedule-row][data-name=nightly]";
    browser.wait_for_element(row).await;
    let (_, schedules) = admin.get("/api/v1/purge-schedules").await;
    assert_eq!(schedules[0]["cron"], "30 2 * * *", "{schedules}");
    assert_eq!(schedules[0]["backup_first"], true, "{schedules}");
    let edit = browser
        .wait_for_element(&format!("{row} [data-test=schedule-edit]"))
        .await;
    browser.click(&edit).await;
    let delete = browser.wait_for_element("#schedule-delete").await;
    browser.click(&delete).await;
    let confirm = browser
        .wait_for_element("#schedule-form [data-test=confirm-yes]")
        .await;
    browser.click(&confirm).await;
    browser
        .wait_until("the schedule gone from the page", async || {
            browser.find("#schedule-table").await?;
            browser.find(row).await.is_none().then_some(())
        })
        .await;
    assert!(browser.find("#purge-form").await.is_some());

    // Dismissed, the recommendation goes, for everyone.
    let dismiss = browser
        .wait_for_element(&format!("{backup_age} [data-test=recommendation-dismiss]"))
        .await;
    browser.click(&dismiss).await;
    browser
        .wait_until("the dismissed recommendation gone", async || {
            browser.find(backup_age).await.is_none().then_some(())
        })
        .await;
    let (status, advice) = admin.get("/api/v1/recommendations").await;
    assert_eq!(status, 200, "{advice}");
    assert!(
        advice
            .as_array()
            .is_some_and(|all| all.iter().all(|r| r["id"] != "backup-age")),
        "a dismissed recommendation is still given: {advice}"
    );

    // The administrator backs up from the Backups page and watches it until it is verified.
    let nav = browser.wait_for_element("[data-test=nav-backups]").await;
    browser.click(&nav).await;
    browser
        .wait_for_element(&format!(
            "#backup-targets [data-test=target-row][data-name={TARGET}]"
        ))
        .await;
    let start = browser.wait_for_element("#backup-start").await;
    browser.click(&start).await;
    let progress = browser.wait_for_element("#backup-progress").await;
    let id = browser
        .attribute(&progress, "data-id")
        .await
        .expect("the backup's id on its progress");
    let state = wait_long(&browser, "the backup to end", BACKUP_WAIT, async || {
        let progress = browser.find("#backup-progress").await?;
        let state = browser.attribute(&progress, "data-state").await?;
        (state != "running").then_some(state)
    })
    .await;
    assert_eq!(
        state,
        "verified",
        "the backup did not verify:\n{}\n{}",
        browser.page_text().await,
        server.log_text()
    );
    let bar = form_values(&browser, &["backup-progress-bar"]).await;
    assert_eq!(bar["backup-progress-bar"], json!(100), "{bar}");
    let percent = browser
        .wait_for_element("#backup-progress [data-test=progress-percent]")
        .await;
    assert_eq!(browser.text(&percent).await, "100%");
    let listed = format!("[data-test=backup-row][data-id=\"{id}\"][data-state=verified]");
    browser.wait_for_element(&listed).await;
    let size = browser
        .wait_for_element(&format!("{listed} [data-test=backup-size]"))
        .await;
    let size = browser.text(&size).await;
    assert!(
        !size.is_empty() && size != "0 B",
        "the verified backup shows no size: {size:?}"
    );
    let (_, record) = admin.get(&format!("/api/v1/backups/{id}")).await;
    assert_eq!(record["state"], "verified", "{record}");
    assert_eq!(record["requested_by"], format!("user {ADMIN}"), "{record}");
    assert!(
        std::fs::read_dir(&backups)
            .expect("the backup folder")
            .count()
            > 0,
        "nothing was written to the backup target"
    );
    screenshot(&browser, "backups").await;

    // A purge by hand asks once more, then backs up first and shows how it ended.
    let nav = browser.wait_for_element("[data-test=nav-purges]").await;
    browser.click(&nav).await;
    let purge = browser.wait_for_element("#purge-start").await;
    browser.click(&purge).await;
    let confirm = browser
        .wait_for_element("#purge-form [data-test=confirm-yes]")
        .await;
    browser.click(&confirm).await;
    let started = browser.wait_for_element("#purge-started").await;
    let run = browser
        .attribute(&started, "data-id")
        .await
        .expect("the purge's id");
    let state = wait_long(&browser, "the purge to end", BACKUP_WAIT, async || {
        let row = browser
            .find(&format!("[data-test=purge-row][data-id=\"{run}\"]"))
            .await?;
        let state = browser.attribute(&row, "data-state").await?;
        (state != "running").then_some(state)
    })
    .await;
    assert_eq!(
        state,
        "done",
        "the purge did not finish:\n{}",
        browser.page_text().await
    );

    // The administrator uploads an upgrade image on the Cluster page; it waits in the inbox
    // for root, and the page says so.
    let image = dir.path().join("pullback-next.img");
    std::fs::write(&image, b"an image root will check").expect("an image");
    let nav = browser.wait_for_element("[data-test=nav-cluster]").await;
    browser.click(&nav).await;
    let file = browser.wait_for_element("#upgrade-file").await;
    browser
        .send_keys(&file, image.to_str().expect("a UTF-8 path"))
        .await;
    let upload = browser.wait_for_element("#upgrade-upload").await;
    browser.click(&upload).await;
    browser
        .wait_until("the upload to be queued", async || {
            let state = browser.find("[data-test=upgrade-state]").await?;
            (browser.text(&state).await == "queued").then_some(())
        })
        .await;
    assert_eq!(
        std::fs::read(inbox.join("request.img")).expect("the queued image"),
        b"an image root will check"
    );
    screenshot(&browser, "upgrade").await;

    // Nothing the pages did ran into the content security policy or threw.
    let broken: Vec<String> = browser
        .console_errors()
        .await
        .into_iter()
        .filter(|m| m.contains("Content Security Policy") || m.contains("Uncaught"))
        .collect();
    assert!(broken.is_empty(), "the page logged: {broken:#?}");

    browser.quit().await;
}

/// The `[[backup_targets]]` entry of a target in the folder `path`.
fn local_target(name: &str, path: &std::path::Path) -> String {
    format!(
        "[[backup_targets]]\nname = {name:?}\nkeep = 3\ntarget = {{ type = \"local\", path = {:?} }}\n",
        path.display().to_string()
    )
}

/// The values of the inputs with these ids (a checkbox's is whether it is checked, a
/// progress bar's its number), as `{id: value}`.
async fn form_values(browser: &Browser, ids: &[&str]) -> Value {
    let ids: Vec<Value> = ids.iter().map(|id| json!(id)).collect();
    browser
        .execute(
            "const out = {};
             for (const id of arguments[0]) {
                 const el = document.getElementById(id);
                 out[id] = !el ? null : el.type === 'checkbox' ? el.checked : el.value;
             }
             return out;",
            vec![Value::Array(ids)],
        )
        .await
}

/// Like [`Browser::wait_until`], for things that take longer than it waits.
async fn wait_long<T>(
    browser: &Browser,
    what: &str,
    limit: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "waited {}s for {what}; the page shows:\n{}",
            limit.as_secs(),
            browser.page_text().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Percent-encodes a query value.
fn urlencode(value: &str) -> String {
    let mut out = String::new();
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}
