//! The directory end to end: a node imports people and groups from a real OpenLDAP, enriches
//! alerts with them, matches on a group and on a custom attribute, and pulls a message sent
//! to a distribution list out of each member's mailbox in a real Dovecot.

mod support;

use pullback_directory::testing::{DL_ADDRESS, Slapd, SlapdOptions};
use pullback_mailbox::testing::Dovecot;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;
use support::*;

const PEOPLE: usize = 20;

#[derive(serde::Serialize)]
struct Section {
    directory: pullback_node::directory::DirectorySection,
}

#[tokio::test(flavor = "multi_thread")]
async fn a_phish_to_a_list_reaches_each_member_and_conditions_see_the_directory() {
    let slapd = Slapd::start_with(&SlapdOptions {
        people: PEOPLE,
        ..SlapdOptions::default()
    });
    let population = slapd.population();
    // Every address a person may be known by gets a mailbox.
    let mut users: Vec<String> = (0..PEOPLE)
        .flat_map(|i| [population.address(i), population.proxy_primary(i)])
        .flatten()
        .collect();
    users.sort();
    users.dedup();
    let user_refs: Vec<&str> = users.iter().map(String::as_str).collect();
    let dovecot = Dovecot::start(&user_refs);

    let directory = toml::to_string(&Section {
        directory: pullback_node::directory::DirectorySection {
            interval_minutes: 60,
            full_every_hours: 24,
            ldap: slapd.config(),
        },
    })
    .unwrap();
    let extra = format!(
        r#"
[[match_conditions]]
name = "pushed-phish"
classifications = ["phish"]
responses = ["quarantine"]

[[match_conditions]]
name = "sales-targeted"
recipient_groups = ["dept-sales"]
responses = ["incident"]

[[match_conditions]]
name = "vip-targeted"
recipient_attributes = [{{ name = "pullbackVip", equals = "TRUE" }}]
responses = ["incident"]

{directory}"#
    );
    let node = SoloNode::start(&dovecot, 4, |_| extra).await;
    let admin = node.server.api(ADMIN_KEY);

    // The leader imports at once; an administrator can ask again.
    let imported = wait_for(Duration::from_secs(60), || async {
        let (_, runs) = admin.get("/api/v1/directory/imports").await;
        runs[0]["state"] == "done"
    })
    .await;
    assert!(imported, "no import:\n{}", node.server.log_text());
    let (status, run) = admin
        .send(Method::POST, "/api/v1/directory/imports", json!({}))
        .await;
    assert_eq!(
        (status, run["state"].as_str()),
        (200, Some("done")),
        "{run}"
    );
    assert!(
        run["problems"].to_string().contains("loop"),
        "the group loop is reported: {run}"
    );

    let (status, list) = admin
        .get(&format!("/api/v1/directory/lookup/{DL_ADDRESS}"))
        .await;
    assert_eq!(status, 200, "{list}");
    let members: Vec<String> = list["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_owned())
        .collect();
    assert!(members.len() >= 3, "{list}");
    let person = population.address(5).unwrap();
    let (_, record) = admin
        .get(&format!("/api/v1/directory/lookup/{person}"))
        .await;
    assert_eq!(record["department"], population.department(5), "{record}");
    assert!(
        record["groups"].to_string().contains("dept-sales"),
        "{record}"
    );

    // A phish delivered to every member of the list, reported as sent to the list.
    let message = b"From: Payroll <payroll@evil.test>\r\nTo: Sales <sales-team@example.test>\r\nSubject: Your bonus\r\nMessage-ID: <dl-phish@evil.test>\r\nDate: Sat, 05 Dec 2026 01:00:00 +0000\r\n\r\nClick here.\r\n";
    for member in &members {
        dovecot.deliver(member, "INBOX", message);
    }
    let alert = json!({
        "id": "dl-1",
        "message_id": "<dl-phish@evil.test>",
        "recipients": [DL_ADDRESS],
        "sender": "payroll@evil.test",
        "subject": "Your bonus",
        "classification": "phish",
        "threats": [{ "value": "https://bonus.evil.test/", "type": "url" }]
    });
    let body = json!({ "source": "pushed", "alerts": [alert] });
    let (status, answer) = admin.send(Method::POST, "/api/v1/alerts", body).await;
    assert_eq!(status, 200, "{answer}");
    let pulled = wait_for(Duration::from_secs(60), || async {
        members
            .iter()
            .all(|m| dovecot.messages(m, "Quarantine").len() == 1)
    })
    .await;
    assert!(
        pulled,
        "not every member's copy was pulled:\n{}",
        node.server.log_text()
    );
    let alert_id = answer["alerts"][0].as_u64().unwrap();
    let (_, alert) = admin.get(&format!("/api/v1/alerts/{alert_id}")).await;
    assert_eq!(alert["directory"][DL_ADDRESS]["kind"], "group", "{alert}");

    // Conditions on a group and on a custom attribute.
    let vip = (0..PEOPLE)
        .find(|i| population.vip(*i) && population.address(*i).is_some())
        .expect("a VIP among the people");
    let to = |i: usize, id: &str| {
        json!({ "source": "pushed", "alerts": [{
            "id": id, "recipients": [population.address(i).unwrap()], "classification": "spam"
        }]})
    };
    let matched = |answer: Value| {
        let admin = admin.clone();
        async move {
            let id = answer["alerts"][0].as_u64().unwrap();
            let (_, alert) = admin.get(&format!("/api/v1/alerts/{id}")).await;
            alert["matched"].clone()
        }
    };
    let (_, answer) = admin
        .send(Method::POST, "/api/v1/alerts", to(5, "to-sales"))
        .await;
    assert!(matched(answer).await.to_string().contains("sales-targeted"));
    let (_, answer) = admin
        .send(Method::POST, "/api/v1/alerts", to(vip, "to-vip"))
        .await;
    let found: Value = matched(answer).await;
    assert!(found.to_string().contains("vip-targeted"), "{found}");
    let other = (0..PEOPLE)
        .find(|i| {
            !population.vip(*i)
                && population.department(*i) != "Sales"
                && population.address(*i).is_some()
        })
        .unwrap();
    let (_, answer) = admin
        .send(Method::POST, "/api/v1/alerts", to(other, "to-other"))
        .await;
    assert_eq!(matched(answer).await, json!([]));
}

/// The values of one attribute of one entry, read straight from the server.
fn ldap_values(slapd: &Slapd, dn: &str, attribute: &str) -> Vec<String> {
    slapd
        .search(dn, "(objectClass=*)", &[attribute])
        .into_iter()
        .flat_map(|e| e.attributes.get(attribute).cloned().unwrap_or_default())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn conditions_change_the_directory_for_the_people_they_match_and_an_undo_reverts_it() {
    let slapd = Slapd::start_with(&SlapdOptions {
        people: PEOPLE,
        ..SlapdOptions::default()
    });
    let population = slapd.population();
    let dovecot = Dovecot::start(&["nobody@example.test"]);
    let directory = toml::to_string(&Section {
        directory: pullback_node::directory::DirectorySection {
            interval_minutes: 60,
            full_every_hours: 24,
            ldap: slapd.config(),
        },
    })
    .unwrap();
    // Sales people who get a phish are enrolled in training (here the Legal group stands in
    // for it) and marked as high risk; nobody else is touched.
    let extra = format!(
        r#"
[[match_conditions]]
name = "sales-phished"
classifications = ["phish"]
recipient_groups = ["dept-sales"]
responses = ["incident"]
directory_actions = [
    {{ type = "add_to_group", group = "dept-legal" }},
    {{ type = "set_attribute", attribute = "pullbackRiskTier", values = ["phished"] }},
]

{directory}"#
    );
    let node = SoloNode::start(&dovecot, 4, |_| extra).await;
    let admin = node.server.api(ADMIN_KEY);
    let imported = wait_for(Duration::from_secs(60), || async {
        let (_, runs) = admin.get("/api/v1/directory/imports").await;
        runs[0]["state"] == "done"
    })
    .await;
    assert!(imported, "no import:\n{}", node.server.log_text());

    let sales = (0..PEOPLE)
        .find(|i| population.department(*i) == "Sales" && population.address(*i).is_some())
        .unwrap();
    let clerk = (0..PEOPLE)
        .find(|i| {
            !["Sales", "Legal"].contains(&population.department(*i))
                && population.address(*i).is_some()
        })
        .unwrap();
    let (sales_dn, clerk_dn) = (population.person_dn(sales), population.person_dn(clerk));
    let legal = population.department_group("Legal");
    let tier_before = ldap_values(&slapd, &sales_dn, "pullbackRiskTier");
    assert_ne!(tier_before, ["phished"]);

    let push = |id: &str| {
        json!({ "source": "pushed", "alerts": [{
            "id": id,
            "recipients": [population.address(sales).unwrap(), population.address(clerk).unwrap()],
            "classification": "phish",
        }]})
    };
    let (status, answer) = admin
        .send(Method::POST, "/api/v1/alerts", push("first"))
        .await;
    assert_eq!(status, 200, "{answer}");
    let alert_id = answer["alerts"][0].as_u64().unwrap();
    let (_, alert) = admin.get(&format!("/api/v1/alerts/{alert_id}")).await;
    let incident = alert["incident_id"].as_u64().unwrap();
    let jobs = |incident: u64| {
        let admin = admin.clone();
        async move {
            let (_, view) = admin.get(&format!("/api/v1/incidents/{incident}")).await;
            view["jobs"].as_array().cloned().unwrap_or_default()
        }
    };
    let done = wait_for(Duration::from_secs(30), || async {
        let jobs = jobs(incident).await;
        jobs.len() == 2
            && jobs.iter().all(|j| {
                j["results"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|r| r["status"] != "pending" && r["status"] != "in_progress")
            })
    })
    .await;
    assert!(
        done,
        "{:?}\n{}",
        jobs(incident).await,
        node.server.log_text()
    );
    let jobs_now = jobs(incident).await;
    for job in &jobs_now {
        let results = job["results"].as_array().unwrap();
        assert_eq!(results.len(), 1, "only the Sales person is acted on: {job}");
        assert_eq!(results[0]["recipient"], population.address(sales).unwrap());
        assert_eq!(results[0]["status"], "applied", "{job}");
    }
    assert!(ldap_values(&slapd, &legal, "member").contains(&sales_dn));
    assert!(!ldap_values(&slapd, &legal, "member").contains(&clerk_dn));
    assert_eq!(
        ldap_values(&slapd, &sales_dn, "pullbackRiskTier"),
        ["phished"]
    );

    // The same again changes nothing and says so. (With no threat to group by, the second
    // alert opens an incident of its own.)
    let (_, answer) = admin
        .send(Method::POST, "/api/v1/alerts", push("second"))
        .await;
    let second = answer["alerts"][0].as_u64().unwrap();
    let (_, alert) = admin.get(&format!("/api/v1/alerts/{second}")).await;
    let second_incident = alert["incident_id"].as_u64().unwrap();
    let settled = wait_for(Duration::from_secs(30), || async {
        let jobs = jobs(second_incident).await;
        jobs.len() == 2
            && jobs
                .iter()
                .all(|j| j["results"][0]["status"] == "already_in_destination")
    })
    .await;
    assert!(settled, "{:?}", jobs(second_incident).await);

    // An analyst undoes the first alert's changes: the member goes, the old tier returns.
    let analyst = node.server.api(ANALYST_KEY);
    for job in &jobs_now {
        let id = job["id"].as_u64().unwrap();
        let (status, answer) = analyst
            .send(
                Method::POST,
                &format!("/api/v1/jobs/{id}/restore"),
                json!({}),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
    }
    let reverted = wait_for(Duration::from_secs(30), || async {
        !ldap_values(&slapd, &legal, "member").contains(&sales_dn)
            && ldap_values(&slapd, &sales_dn, "pullbackRiskTier") == tier_before
    })
    .await;
    assert!(
        reverted,
        "{:?}\n{}",
        jobs(incident).await,
        node.server.log_text()
    );
    let undone = wait_for(Duration::from_secs(30), || async {
        let jobs = jobs(incident).await;
        jobs.len() == 4
            && jobs[2..]
                .iter()
                .all(|j| j["results"][0]["status"] == "reverted")
    })
    .await;
    assert!(undone, "{:?}", jobs(incident).await);
    // A change already undone is not undone twice.
    let id = jobs_now[0]["id"].as_u64().unwrap();
    let (status, answer) = analyst
        .send(
            Method::POST,
            &format!("/api/v1/jobs/{id}/restore"),
            json!({}),
        )
        .await;
    assert_eq!(status, 409, "{answer}");

    // Every change is in the audit log under the condition or the analyst.
    let (_, audit) = admin.get("/api/v1/audit?limit=200").await;
    let text = audit.to_string();
    assert!(text.contains("condition sales-phished"), "{text}");
    assert!(text.contains("directory_change"), "{text}");
    let address = population.address(sales).unwrap();
    assert!(text.contains(&format!("{address} applied")), "{text}");
    assert!(text.contains(&format!("{address} reverted")), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn later_imports_read_only_changes_and_write_only_what_changed() {
    let slapd = Slapd::start_with(&SlapdOptions {
        people: PEOPLE,
        ..SlapdOptions::default()
    });
    let population = slapd.population();
    let dovecot = Dovecot::start(&["nobody@example.test"]);
    let directory = toml::to_string(&Section {
        directory: pullback_node::directory::DirectorySection {
            interval_minutes: 60,
            full_every_hours: 24,
            ldap: slapd.config(),
        },
    })
    .unwrap();
    let node = SoloNode::start(&dovecot, 4, |_| directory.clone()).await;
    let admin = node.server.api(ADMIN_KEY);
    let imported = wait_for(Duration::from_secs(60), || async {
        let (_, runs) = admin.get("/api/v1/directory/imports").await;
        runs[0]["state"] == "done"
    })
    .await;
    assert!(imported, "no import:\n{}", node.server.log_text());
    let (_, runs) = admin.get("/api/v1/directory/imports").await;
    assert_eq!(runs[0]["incremental"], false, "{runs}");

    // One title changes, one person leaves.
    let (changed, gone) = (3, 7);
    slapd.modify(&format!(
        "dn: {}\nchangetype: modify\nreplace: title\ntitle: Chief Risk Officer\n",
        population.person_dn(changed)
    ));
    slapd.delete(&population.person_dn(gone));
    let (status, run) = admin
        .send(Method::POST, "/api/v1/directory/imports", json!({}))
        .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["state"], "done", "{run}");
    assert_eq!(run["incremental"], true, "{run}");
    // The changed person, and the groups whose member lists lost the person who left.
    assert!(
        run["changed"].as_u64().unwrap() < 5,
        "only what changed is written: {run}"
    );
    assert!(run["removed"].as_u64().unwrap() >= 1, "{run}");
    let address = population.address(changed).unwrap();
    let (_, record) = admin
        .get(&format!("/api/v1/directory/lookup/{address}"))
        .await;
    assert_eq!(record["title"], "Chief Risk Officer", "{record}");
    let departed = population.address(gone).unwrap();
    let (status, _) = admin
        .get(&format!("/api/v1/directory/lookup/{departed}"))
        .await;
    assert_eq!(status, 404);
    // Everyone else is still there, with their groups.
    let other = population.address(5).unwrap();
    let (status, record) = admin
        .get(&format!("/api/v1/directory/lookup/{other}"))
        .await;
    assert_eq!(status, 200);
    assert!(record["groups"].to_string().contains("dept-"), "{record}");
}
