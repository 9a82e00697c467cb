//! Backups, restores and purges against the real binary: a backup taken while a three-node
//! cluster ingests, restored on a fresh node with nothing lost and nothing extra; a backup to
//! a real OpenSSH server; a purge whose backup fails does not run; one whose backup is
//! verified does.

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use support::cluster::{ClusterOptions, TestCluster};
use support::*;

fn local_target(name: &str, path: &Path) -> String {
    format!(
        "[[backup_targets]]\nname = {name:?}\nkeep = 3\ntarget = {{ type = \"local\", path = {:?} }}\n",
        path.display().to_string()
    )
}

/// Waits for a backup to end and returns its record.
async fn finished_backup(api: &Api, id: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (_, record) = api.get(&format!("/api/v1/backups/{id}")).await;
        if record["state"] != "running" && !record.is_null() {
            return record;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "backup {id} did not end: {record}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits for a purge to end and returns its record.
async fn finished_purge(api: &Api, id: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (_, runs) = api.get("/api/v1/purges").await;
        let run = runs
            .as_array()
            .and_then(|all| all.iter().find(|r| r["id"] == id).cloned())
            .unwrap_or_default();
        if !run.is_null() && run["state"] != "running" {
            return run;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "purge {id} did not end: {run}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every alert a node holds, by id, as pushed: the dedup key and recipients.
async fn alerts_of(api: &Api) -> BTreeMap<u64, Value> {
    let mut all = BTreeMap::new();
    let mut offset = 0;
    loop {
        let (status, page) = api
            .get(&format!("/api/v1/alerts?offset={offset}&limit=1000"))
            .await;
        assert_eq!(status, 200, "{page}");
        let items = page["items"].as_array().unwrap().clone();
        if items.is_empty() {
            return all;
        }
        offset += items.len();
        for alert in items {
            let id = alert["id"].as_u64().unwrap();
            all.insert(id, json!([alert["dedup_key"], alert["recipients"]]));
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_taken_while_a_cluster_ingests_restores_on_a_fresh_node_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let backups = dir.path().join("backups");
    std::fs::create_dir(&backups).unwrap();
    let (_tap, tap) = start_tap().await;
    let mut cluster = TestCluster::start(ClusterOptions {
        nodes: 3,
        base: NodeConfig {
            dir: dir.path(),
            listen: "127.0.0.1:0".parse().unwrap(),
            tap,
            mailboxes: local_target("local", &backups),
            worker_concurrency: 2,
            tls: None,
        },
        proxied: false,
        snapshot_logs: 20_000,
    })
    .await;
    let leader = cluster.wait_for_leader(None).await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();

    // Alerts keep arriving through the leader while a follower takes the backup.
    let stop = Arc::new(AtomicBool::new(false));
    let pushed = Arc::new(AtomicUsize::new(0));
    let pusher = {
        let (api, stop, pushed) = (cluster.api(leader), stop.clone(), pushed.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let alerts: Vec<Value> = (n..n + 20)
                    .map(|i| json!({ "id": format!("b-{i}"), "recipients": [format!("u{i}@corp.test")] }))
                    .collect();
                let body = json!({ "source": "script", "alerts": alerts });
                let (status, answer) = api.send(Method::POST, "/api/v1/alerts", body).await;
                assert_eq!(status, 200, "{answer}");
                n += 20;
                pushed.store(n, Ordering::Relaxed);
            }
        })
    };
    let started = wait_for(Duration::from_secs(30), || async {
        pushed.load(Ordering::Relaxed) >= 200
    })
    .await;
    assert!(started, "no alerts were pushed:\n{}", cluster.logs());
    let admin = cluster.api(follower);
    let (status, answer) = admin
        .send(
            Method::POST,
            "/api/v1/backups",
            json!({ "target": "local" }),
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["id"].as_str().unwrap().to_owned();
    let record = finished_backup(&admin, &id).await;
    assert_eq!(record["state"], "verified", "{record}\n{}", cluster.logs());
    assert_eq!(record["progress"], 100);
    stop.store(true, Ordering::Relaxed);
    pusher.await.unwrap();
    let in_backup = record["counts"]["alert"].as_u64().unwrap();
    assert!(in_backup >= 200, "{record}");
    let everything = alerts_of(&cluster.api(leader)).await;
    assert!(
        everything.len() as u64 > in_backup,
        "ingestion went on during the backup"
    );

    // Every node sees the record; a reader may look but not start one.
    let (_, seen) = cluster.api(leader).get("/api/v1/backups").await;
    assert_eq!(seen[0]["id"], id.as_str());
    let reader = Api {
        key: READER_KEY.into(),
        ..cluster.api(leader)
    };
    let (status, _) = reader
        .send(
            Method::POST,
            "/api/v1/backups",
            json!({ "target": "local" }),
        )
        .await;
    assert_eq!(status, 403);
    cluster.stop_all();

    // A fresh node restores it and holds exactly what the cluster held at that point.
    let fresh = tempfile::tempdir().unwrap();
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = NodeConfig {
        dir: fresh.path(),
        listen,
        tap,
        mailboxes: local_target("local", &backups),
        worker_concurrency: 2,
        tls: None,
    }
    .write();
    let (ok, said) = restore_cli(&config, &id);
    assert!(ok, "{said}");
    assert!(said.contains(&format!("restored backup {id}")), "{said}");
    let (ok, said) = restore_cli(&config, &id);
    assert!(!ok && said.contains("already holds a store"), "{said}");

    let server = Server::start(&config, listen).await;
    let restored = alerts_of(&server.api(ADMIN_KEY)).await;
    assert_eq!(restored.len() as u64, in_backup, "{}", server.log_text());
    let last = *restored.keys().last().unwrap();
    let expected: BTreeMap<u64, Value> = everything
        .into_iter()
        .filter(|(id, _)| *id <= last)
        .collect();
    assert_eq!(restored, expected, "nothing lost, nothing extra");
    // The restored node works: it takes new alerts.
    let body = json!({ "source": "script", "alerts": [{ "id": "after-restore", "recipients": ["x@corp.test"] }] });
    let (status, answer) = server
        .api(ADMIN_KEY)
        .send(Method::POST, "/api/v1/alerts", body)
        .await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_goes_to_a_real_sftp_server_and_is_verified_there() {
    let sshd = pullback_backup::testing::Sshd::start();
    std::fs::create_dir_all(sshd.backup_dir()).unwrap();
    let target = format!(
        "[[backup_targets]]\nname = \"offsite\"\ntarget = {{ type = \"sftp\", host = \"127.0.0.1\", port = {}, user = {:?}, path = {:?}, private_key = {:?}, host_key_sha256 = {:?} }}\n",
        sshd.port(),
        sshd.user(),
        sshd.backup_dir().display().to_string(),
        sshd.private_key(),
        sshd.host_key_sha256()
    );
    let dir = tempfile::tempdir().unwrap();
    let (_tap, tap) = start_tap().await;
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = NodeConfig {
        dir: dir.path(),
        listen,
        tap,
        mailboxes: target,
        worker_concurrency: 2,
        tls: None,
    }
    .write();
    let server = Server::start(&config, listen).await;
    let admin = server.api(ADMIN_KEY);
    let body =
        json!({ "source": "script", "alerts": [{ "id": "s1", "recipients": ["a@corp.test"] }] });
    assert_eq!(
        admin.send(Method::POST, "/api/v1/alerts", body).await.0,
        200
    );
    let (status, answer) = admin
        .send(
            Method::POST,
            "/api/v1/backups",
            json!({ "target": "offsite" }),
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["id"].as_str().unwrap();
    let record = finished_backup(&admin, id).await;
    assert_eq!(
        record["state"],
        "verified",
        "{record}\n{}",
        server.log_text()
    );
    assert!(sshd.backup_dir().join(id).join("manifest.json").exists());
    // The key never reaches the log.
    let key_line = sshd.private_key().lines().nth(1).unwrap();
    assert!(!server.log_text().contains(key_line));
    let (_, targets) = admin.get("/api/v1/backup-targets").await;
    assert!(!targets.to_string().contains(key_line), "{targets}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_purge_runs_only_after_its_backup_is_verified() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good");
    std::fs::create_dir(&good).unwrap();
    // A target under a regular file cannot be written.
    let blocker = dir.path().join("not-a-folder");
    std::fs::write(&blocker, "x").unwrap();
    let (_tap, tap) = start_tap().await;
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = NodeConfig {
        dir: dir.path(),
        listen,
        tap,
        mailboxes: local_target("good", &good) + &local_target("broken", &blocker.join("inside")),
        worker_concurrency: 2,
        tls: None,
    }
    .write();
    let server = Server::start(&config, listen).await;
    let admin = server.api(ADMIN_KEY);
    let alerts: Vec<Value> = (0..5)
        .map(|i| json!({ "id": format!("p{i}"), "recipients": ["a@corp.test"] }))
        .collect();
    let body = json!({ "source": "script", "alerts": alerts });
    assert_eq!(
        admin.send(Method::POST, "/api/v1/alerts", body).await.0,
        200
    );

    let run_purge = |target: &'static str| {
        let admin = &admin;
        async move {
            let body = json!({ "closed_days": 0, "alert_days": 0, "target": target });
            let (status, answer) = admin.send(Method::POST, "/api/v1/purges", body).await;
            assert_eq!(status, 202, "{answer}");
            finished_purge(admin, answer["id"].as_str().unwrap()).await
        }
    };
    let failed = run_purge("broken").await;
    assert_eq!(failed["state"], "failed", "{failed}");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("nothing was purged"),
        "{failed}"
    );
    assert_eq!(
        alerts_of(&admin).await.len(),
        5,
        "no alert may go after a failed backup"
    );

    let done = run_purge("good").await;
    assert_eq!(done["state"], "done", "{done}\n{}", server.log_text());
    assert_eq!(done["removed"]["alerts"], 5, "{done}");
    let backup = done["backup_id"].as_str().unwrap();
    let (_, record) = admin.get(&format!("/api/v1/backups/{backup}")).await;
    assert_eq!(record["state"], "verified");
    assert!(alerts_of(&admin).await.is_empty());
    // A bad schedule is refused with the field named; a good one is kept.
    let bad = json!({ "name": "nightly", "cron": "61 * * * *", "closed_days": 90, "alert_days": 30, "target": "good" });
    let (status, answer) = admin
        .send(Method::PUT, "/api/v1/purge-schedules/nightly", bad)
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .starts_with("cron: minute"),
        "{answer}"
    );
    let good = json!({ "name": "nightly", "cron": "30 2 * * *", "closed_days": 90, "alert_days": 30, "target": "good" });
    let (status, answer) = admin
        .send(Method::PUT, "/api/v1/purge-schedules/nightly", good)
        .await;
    assert_eq!(status, 200, "{answer}");
    // Recommendations: with a verified backup and a schedule, none about backups.
    let (status, advice) = admin.get("/api/v1/recommendations").await;
    assert_eq!(status, 200);
    assert!(!advice.to_string().contains("backup-age"), "{advice}");
}

/// Copies a folder's files (one level deep, as a backup is).
fn copy_folder(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn restore_cli(config: &Path, id: &str) -> (bool, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_pullback"))
        .args([
            "backup", "restore", "--target", "local", "--id", id, "--config",
        ])
        .arg(config)
        .env("PULLBACK_TEST_TAP_SECRET", TAP_SECRET)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), said)
}

/// `tests/data/backups` holds a backup written by an earlier build (data format 1, made
/// with `POST /api/v1/backups` on 2026-12-05): every later build must restore it.
#[tokio::test(flavor = "multi_thread")]
async fn a_backup_from_an_earlier_build_restores_and_a_newer_format_is_refused() {
    const ID: &str = "20261205T005732Z-n1";
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/backups");
    let dir = tempfile::tempdir().unwrap();
    let backups = dir.path().join("backups");
    copy_folder(&fixture.join(ID), &backups.join(ID));
    // The same backup, as a newer release would have written it.
    let newer_id = "20991231T000000Z-n1";
    copy_folder(&fixture.join(ID), &backups.join(newer_id));
    let manifest = backups.join(newer_id).join("manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let text = text
        .replace("\"data_format\": 1", "\"data_format\": 7")
        .replace(ID, newer_id);
    std::fs::write(&manifest, text).unwrap();

    let (_tap, tap) = start_tap().await;
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = NodeConfig {
        dir: dir.path(),
        listen,
        tap,
        mailboxes: local_target("local", &backups),
        worker_concurrency: 2,
        tls: None,
    }
    .write();
    let (ok, said) = restore_cli(&config, newer_id);
    assert!(!ok, "{said}");
    assert!(said.contains("data format 7"), "{said}");
    assert!(said.contains("reads formats up to 1"), "{said}");

    let (ok, said) = restore_cli(&config, ID);
    assert!(ok, "{said}");
    let server = Server::start(&config, listen).await;
    let admin = server.api(ADMIN_KEY);
    let alerts = alerts_of(&admin).await;
    let keys: Vec<&Value> = alerts.values().map(|a| &a[0]).collect();
    assert_eq!(keys, [&json!("id:f1"), &json!("id:f2")]);
    let (status, incident) = admin.get("/api/v1/incidents/1").await;
    assert_eq!(status, 200, "{incident}");
    assert_eq!(incident["jobs"][0]["dry_run"], true, "{incident}");
    let (_, found) = admin.get("/api/v1/search?host=evil.test").await;
    assert_eq!(found["alerts"][0]["alert_id"], 1, "{found}");
    // A damaged copy is refused before anything is restored.
    let damaged = dir.path().join("damaged");
    copy_folder(&fixture.join(ID), &damaged.join(ID));
    let sst = damaged.join(ID).join("000009.sst");
    let mut bytes = std::fs::read(&sst).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&sst, bytes).unwrap();
    let other = tempfile::tempdir().unwrap();
    let config = NodeConfig {
        dir: other.path(),
        listen,
        tap,
        mailboxes: local_target("local", &damaged),
        worker_concurrency: 2,
        tls: None,
    }
    .write();
    let (ok, said) = restore_cli(&config, ID);
    assert!(!ok, "{said}");
    assert!(said.contains("000009.sst"), "{said}");
    assert!(!other.path().join("node/db/CURRENT").exists());
}
