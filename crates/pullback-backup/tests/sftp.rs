//! The SFTP target against a real OpenSSH server started for each test: the whole cycle, and
//! the refusals (a wrong host key before any credential is sent, wrong credentials, a port
//! where nothing listens).

mod common;

use common::{FILES, Reports, age, assert_same_files, flip_byte, make_source, manifest, truncate};
use pullback_backup::testing::Sshd;
use pullback_backup::{
    BackupError, MANIFEST_FILE, NO_PROGRESS, Secret, Stage, Target, TargetConfig,
};
use std::fs;
use std::net::TcpListener;
use std::time::{Duration, Instant};
use tempfile::TempDir;

fn expect_error<T: std::fmt::Debug>(result: Result<T, BackupError>, needles: &[&str]) -> String {
    let error = result.expect_err("the operation should fail").to_string();
    for needle in needles {
        assert!(
            error.contains(needle),
            "{error:?} should contain {needle:?}"
        );
    }
    error
}

/// The server's target configuration with some fields changed.
fn config_with(sshd: &Sshd, change: impl FnOnce(&mut TargetConfig)) -> TargetConfig {
    let mut config = sshd.target_config();
    change(&mut config);
    config
}

fn sftp_fields(
    config: &mut TargetConfig,
) -> (
    &mut u16,
    &mut Option<Secret>,
    &mut Option<Secret>,
    &mut String,
    &mut String,
) {
    match config {
        TargetConfig::Sftp {
            port,
            password,
            private_key,
            host_key_sha256,
            path,
            ..
        } => (port, password, private_key, host_key_sha256, path),
        TargetConfig::Local { .. } => unreachable!("the harness makes SFTP targets"),
    }
}

/// Waits until sshd has logged a line holding every one of `needles`, so that its log covers
/// the attempt.
fn wait_for_log(sshd: &Sshd, needles: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = sshd.log();
        let found = log
            .lines()
            .any(|line| needles.iter().all(|n| line.contains(n)));
        if found || Instant::now() > deadline {
            return log;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn writes_verifies_fetches_and_prunes_over_sftp() {
    let sshd = Sshd::start();
    let target = Target::new(&sshd.target_config()).unwrap();
    let source = TempDir::new().unwrap();
    make_source(source.path());

    let reports = Reports::default();
    let written = target
        .write(source.path(), manifest(1), &reports.record())
        .await
        .unwrap();
    let total: u64 = FILES.iter().map(|(_, size)| *size as u64).sum();
    assert_eq!(written.total_bytes(), total);
    assert_eq!(reports.last().done_bytes, total);
    assert_eq!(reports.last().stage, Stage::Writing);
    let remote = sshd.backup_dir().join(&written.id);
    assert!(remote.join(MANIFEST_FILE).is_file());
    assert_same_files_except_manifest(&remote);

    target
        .write(source.path(), manifest(3), NO_PROGRESS)
        .await
        .unwrap();
    target
        .write(source.path(), manifest(2), NO_PROGRESS)
        .await
        .unwrap();
    fs::create_dir(
        sshd.backup_dir()
            .join(format!("{}.partial", manifest(4).id)),
    )
    .unwrap();
    let listed: Vec<String> = target
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(listed, [manifest(1).id, manifest(2).id, manifest(3).id]);

    assert_eq!(
        target.verify(&written.id, NO_PROGRESS).await.unwrap(),
        written
    );
    let into = TempDir::new().unwrap();
    let reports = Reports::default();
    let fetched = target
        .fetch(&written.id, into.path(), &reports.record())
        .await
        .unwrap();
    assert_eq!(fetched, written);
    assert_same_files(into.path());
    assert_eq!(reports.last().stage, Stage::Fetching);

    let pruned = target.prune(2).await.unwrap();
    assert_eq!(pruned, [manifest(1).id]);
    age(&sshd
        .backup_dir()
        .join(format!("{}.partial", manifest(4).id)));
    let pruned = target.prune(1).await.unwrap();
    assert_eq!(
        pruned,
        [manifest(2).id, format!("{}.partial", manifest(4).id)]
    );
    let left: Vec<String> = fs::read_dir(sshd.backup_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left, [manifest(3).id]);
}

fn assert_same_files_except_manifest(remote: &std::path::Path) {
    let copy = TempDir::new().unwrap();
    for (name, _) in FILES {
        let to = copy.path().join(name);
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(remote.join(name), to).unwrap();
    }
    assert_same_files(copy.path());
}

#[tokio::test]
async fn verify_over_sftp_names_damaged_files() {
    let sshd = Sshd::start();
    let target = Target::new(&sshd.target_config()).unwrap();
    let source = TempDir::new().unwrap();
    make_source(source.path());
    let id = target
        .write(source.path(), manifest(1), NO_PROGRESS)
        .await
        .unwrap()
        .id;
    let folder = sshd.backup_dir().join(&id);

    flip_byte(&folder.join("000012.sst"), 4 * 1024 * 1024 + 1);
    expect_error(
        target.verify(&id, NO_PROGRESS).await,
        &["000012.sst", "corrupted"],
    );
    let into = TempDir::new().unwrap();
    expect_error(
        target.fetch(&id, into.path(), NO_PROGRESS).await,
        &["000012.sst", "corrupted"],
    );
    assert_eq!(fs::read_dir(into.path()).unwrap().count(), 0);

    truncate(&folder.join("MANIFEST-000005"), 10);
    expect_error(
        target.verify(&id, NO_PROGRESS).await,
        &["MANIFEST-000005", "truncated: 10 bytes"],
    );
}

#[tokio::test]
async fn a_wrong_host_key_is_refused_before_logging_in() {
    let sshd = Sshd::start();
    // The fingerprint of another key: the client's own.
    let other = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU";
    let config = config_with(&sshd, |c| *sftp_fields(c).3 = other.to_owned());
    let target = Target::new(&config).unwrap();
    let error = expect_error(
        target.list().await,
        &[
            "offered host key",
            sshd.host_key_sha256(),
            other,
            "refusing to log in",
        ],
    );
    assert!(!error.contains("BEGIN OPENSSH"), "{error}");
    // The end of the SSH connection, not of the harness's probe that it listens.
    let log = wait_for_log(&sshd, &["Connection closed by", "[preauth]"]);
    assert!(
        !log.contains("userauth-request"),
        "no login may be attempted after a host key mismatch:\n{log}"
    );

    // The same server with its right fingerprint accepts the same key, and its log shows
    // the login that the mismatch never reached.
    let target = Target::new(&sshd.target_config()).unwrap();
    assert!(target.list().await.unwrap().is_empty());
    let log = wait_for_log(&sshd, &["userauth-request"]);
    assert!(log.contains("userauth-request"), "{log}");
}

#[tokio::test]
async fn wrong_credentials_are_refused_clearly() {
    let sshd = Sshd::start();
    let other_key = sshd.unauthorised_key();
    let config = config_with(&sshd, |c| *sftp_fields(c).2 = Some(Secret(other_key)));
    let target = Target::new(&config).unwrap();
    let error = expect_error(
        target.list().await,
        &[
            "refused to log in user",
            sshd.user(),
            "private key",
            "127.0.0.1",
        ],
    );
    assert!(!error.contains("BEGIN OPENSSH"), "{error}");

    let config = config_with(&sshd, |c| {
        let (_, password, private_key, _, _) = sftp_fields(c);
        *private_key = None;
        *password = Some(Secret("not-the-password".to_owned()));
    });
    let target = Target::new(&config).unwrap();
    let error = expect_error(target.list().await, &["refused to log in user", "password"]);
    assert!(!error.contains("not-the-password"), "{error}");
}

#[tokio::test]
async fn a_closed_port_fails_quickly() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let config = TargetConfig::Sftp {
        host: "127.0.0.1".to_owned(),
        port,
        user: "pullback".to_owned(),
        path: "/backups".to_owned(),
        password: Some(Secret("pw".to_owned())),
        private_key: None,
        host_key_sha256: "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU".to_owned(),
    };
    let target = Target::new(&config).unwrap();
    let started = Instant::now();
    expect_error(
        target.list().await,
        &[
            &format!("cannot reach SFTP server 127.0.0.1:{port}"),
            "refused",
        ],
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn a_missing_remote_folder_is_named() {
    let sshd = Sshd::start();
    let missing = sshd.backup_dir().join("not-there").display().to_string();
    let config = config_with(&sshd, |c| *sftp_fields(c).4 = missing.clone());
    let target = Target::new(&config).unwrap();
    let source = TempDir::new().unwrap();
    make_source(source.path());
    expect_error(
        target.write(source.path(), manifest(1), NO_PROGRESS).await,
        &["opening the target folder", &missing, "127.0.0.1"],
    );
    expect_error(target.list().await, &["listing", &missing]);
    expect_error(
        target.verify("some-id", NO_PROGRESS).await,
        &["no backup some-id"],
    );
}

#[tokio::test]
async fn a_refused_write_is_named_and_leaves_no_backup() {
    let sshd = Sshd::start_denying(&["write"]);
    let target = Target::new(&sshd.target_config()).unwrap();
    let source = TempDir::new().unwrap();
    make_source(source.path());
    let id = manifest(1).id;
    expect_error(
        target.write(source.path(), manifest(1), NO_PROGRESS).await,
        &[
            "SFTP server 127.0.0.1",
            "writing",
            &format!("{id}.partial/"),
        ],
    );
    // The unfinished folder was removed, and nothing looks like a backup.
    assert_eq!(fs::read_dir(sshd.backup_dir()).unwrap().count(), 0);
    assert!(target.list().await.unwrap().is_empty());
}
