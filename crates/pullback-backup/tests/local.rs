//! The local target on real folders: writing, listing, verifying, fetching and pruning, and
//! the damage and mistakes it must catch.

mod common;

use common::{FILES, Reports, age, assert_same_files, flip_byte, make_source, manifest, truncate};
use pullback_backup::{BackupError, MANIFEST_FILE, NO_PROGRESS, Stage, Target, TargetConfig};
use std::fs;
use std::path::Path;
use tempfile::TempDir;

fn target(root: &Path) -> Target {
    Target::new(&TargetConfig::Local {
        path: root.to_owned(),
    })
    .unwrap()
}

/// A target folder and a source folder with the test files.
fn setup() -> (TempDir, TempDir, Target) {
    let root = TempDir::new().unwrap();
    let source = TempDir::new().unwrap();
    make_source(source.path());
    let target = target(root.path());
    (root, source, target)
}

fn expect_error<T: std::fmt::Debug>(result: Result<T, BackupError>, needles: &[&str]) -> String {
    let error = result.expect_err("the operation should fail").to_string();
    for needle in needles {
        let found = error.to_lowercase().contains(&needle.to_lowercase());
        assert!(found, "{error:?} should contain {needle:?}");
    }
    error
}

#[tokio::test]
async fn writes_lists_verifies_fetches_and_prunes() {
    let (root, source, target) = setup();
    let reports = Reports::default();
    let written = target
        .write(source.path(), manifest(1), &reports.record())
        .await
        .unwrap();
    assert_eq!(written.files.len(), FILES.len());
    let paths: Vec<&str> = written.files.iter().map(|f| f.path.as_str()).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted, "files are listed in path order");
    let total: u64 = FILES.iter().map(|(_, size)| *size as u64).sum();
    assert_eq!(written.total_bytes(), total);
    let last = reports.last();
    assert_eq!(
        (last.done_bytes, last.total_bytes, last.stage),
        (total, total, Stage::Writing)
    );
    assert!(root.path().join(&written.id).join(MANIFEST_FILE).is_file());
    assert!(!root.path().join(format!("{}.partial", written.id)).exists());

    // Written out of order, listed oldest first.
    target
        .write(source.path(), manifest(3), NO_PROGRESS)
        .await
        .unwrap();
    target
        .write(source.path(), manifest(2), NO_PROGRESS)
        .await
        .unwrap();
    let listed: Vec<String> = target
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(listed, [manifest(1).id, manifest(2).id, manifest(3).id]);

    let reports = Reports::default();
    let verified = target.verify(&written.id, &reports.record()).await.unwrap();
    assert_eq!(verified, written);
    assert_eq!(reports.last().stage, Stage::Verifying);
    assert_eq!(reports.last().done_bytes, total);

    let into = TempDir::new().unwrap();
    let fetched = target
        .fetch(&written.id, into.path(), NO_PROGRESS)
        .await
        .unwrap();
    assert_eq!(fetched, written);
    assert_same_files(into.path());

    let pruned = target.prune(2).await.unwrap();
    assert_eq!(pruned, [manifest(1).id]);
    let listed: Vec<String> = target
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(listed, [manifest(2).id, manifest(3).id]);
    assert!(!root.path().join(manifest(1).id).exists());
    assert_eq!(target.prune(2).await.unwrap(), Vec::<String>::new());
}

#[tokio::test]
async fn verify_names_a_truncated_file() {
    let (root, source, target) = setup();
    let id = target
        .write(source.path(), manifest(1), NO_PROGRESS)
        .await
        .unwrap()
        .id;
    truncate(&root.path().join(&id).join("000012.sst"), 1000);
    let error = target.verify(&id, NO_PROGRESS).await.unwrap_err();
    assert!(error.is_damaged_backup(), "{error}");
    let text = error.to_string();
    assert!(
        text.contains("000012.sst") && text.contains("truncated"),
        "{text}"
    );
    assert!(text.contains("1000 bytes"), "{text}");
}

#[tokio::test]
async fn verify_names_a_flipped_byte() {
    let (root, source, target) = setup();
    let id = target
        .write(source.path(), manifest(1), NO_PROGRESS)
        .await
        .unwrap()
        .id;
    // One byte deep inside the large file, then one in a small file.
    flip_byte(
        &root.path().join(&id).join("000013.sst"),
        3 * 1024 * 1024 + 5,
    );
    expect_error(
        target.verify(&id, NO_PROGRESS).await,
        &["000013.sst", "corrupted"],
    );
    flip_byte(
        &root.path().join(&id).join("000013.sst"),
        3 * 1024 * 1024 + 5,
    );
    target.verify(&id, NO_PROGRESS).await.unwrap();
    flip_byte(&root.path().join(&id).join("sub/deeper/OPTIONS-000007"), 0);
    expect_error(
        target.verify(&id, NO_PROGRESS).await,
        &["sub/deeper/OPTIONS-000007", "corrupted"],
    );

    // A fetch refuses the same damage and leaves nothing behind.
    let into = TempDir::new().unwrap();
    expect_error(
        target.fetch(&id, into.path(), NO_PROGRESS).await,
        &["OPTIONS-000007", "corrupted"],
    );
    assert_eq!(fs::read_dir(into.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn verify_names_a_missing_file_and_a_bad_manifest() {
    let (root, source, target) = setup();
    let id = target
        .write(source.path(), manifest(1), NO_PROGRESS)
        .await
        .unwrap()
        .id;
    let folder = root.path().join(&id);
    fs::remove_file(folder.join("CURRENT")).unwrap();
    expect_error(
        target.verify(&id, NO_PROGRESS).await,
        &["CURRENT", "missing"],
    );

    let manifest_path = folder.join(MANIFEST_FILE);
    let text = fs::read_to_string(&manifest_path).unwrap();
    fs::write(
        &manifest_path,
        text.replace("\"manifest_format\": 1", "\"manifest_format\": 9"),
    )
    .unwrap();
    expect_error(
        target.verify(&id, NO_PROGRESS).await,
        &["manifest format 9"],
    );
    fs::write(&manifest_path, "{ not json").unwrap();
    expect_error(
        target.verify(&id, NO_PROGRESS).await,
        &[MANIFEST_FILE, "not JSON"],
    );
    // A folder whose manifest cannot be read is not a backup to list.
    assert!(target.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn unfinished_folders_are_not_backups() {
    let (root, source, target) = setup();
    let id = target
        .write(source.path(), manifest(1), NO_PROGRESS)
        .await
        .unwrap()
        .id;
    // A copy of a complete backup, but still named partial; and stray entries.
    let partial = root.path().join(format!("{}.partial", manifest(2).id));
    fs::create_dir(&partial).unwrap();
    fs::copy(
        root.path().join(&id).join(MANIFEST_FILE),
        partial.join(MANIFEST_FILE),
    )
    .unwrap();
    fs::create_dir(root.path().join("lost+found")).unwrap();
    fs::write(root.path().join("notes.txt"), "not a backup").unwrap();
    let listed: Vec<String> = target
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(listed, [id.as_str()]);

    // A fresh unfinished folder may belong to a write under way: prune leaves it.
    assert!(target.prune(5).await.unwrap().is_empty());
    assert!(partial.exists());
    age(&partial);
    let name = format!("{}.partial", manifest(2).id);
    assert_eq!(target.prune(5).await.unwrap(), [name]);
    assert!(!partial.exists());
    assert!(root.path().join("lost+found").exists());

    // A write replaces a stale partial folder of its own id.
    let stale = root.path().join(format!("{}.partial", manifest(3).id));
    fs::create_dir(&stale).unwrap();
    fs::write(stale.join("junk"), "left by a crash").unwrap();
    let written = target
        .write(source.path(), manifest(3), NO_PROGRESS)
        .await
        .unwrap();
    assert!(!stale.exists());
    target.verify(&written.id, NO_PROGRESS).await.unwrap();
    assert!(!root.path().join(&written.id).join("junk").exists());
}

#[tokio::test]
async fn unusable_target_folders_are_named() {
    let source = TempDir::new().unwrap();
    make_source(source.path());
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("a-file");
    fs::write(&file, "x").unwrap();

    let under_a_file = target(&file.join("backups"));
    expect_error(
        under_a_file
            .write(source.path(), manifest(1), NO_PROGRESS)
            .await,
        &["target folder", "a-file/backups", "Not a directory"],
    );
    expect_error(
        target(&file)
            .write(source.path(), manifest(1), NO_PROGRESS)
            .await,
        &["target folder", "a-file", "Not a directory"],
    );
    let missing = dir.path().join("not-mounted");
    expect_error(
        target(&missing)
            .write(source.path(), manifest(1), NO_PROGRESS)
            .await,
        &["target folder", "not-mounted", "No such file"],
    );
    assert!(!missing.exists(), "a missing target folder is not created");
    expect_error(target(&missing).list().await, &["listing", "not-mounted"]);
}

#[tokio::test]
async fn refuses_what_cannot_be_a_backup() {
    let (root, source, target) = setup();
    let id = target
        .write(source.path(), manifest(1), NO_PROGRESS)
        .await
        .unwrap()
        .id;
    expect_error(
        target.write(source.path(), manifest(1), NO_PROGRESS).await,
        &["already exists", &id],
    );
    let mut bad = manifest(2);
    bad.id = "../escape".to_owned();
    expect_error(
        target.write(source.path(), bad, NO_PROGRESS).await,
        &["invalid backup id"],
    );
    expect_error(
        target.verify("../etc", NO_PROGRESS).await,
        &["invalid backup id"],
    );
    expect_error(
        target.verify("nothing-here", NO_PROGRESS).await,
        &["no backup nothing-here"],
    );
    expect_error(
        target.delete("nothing-here").await,
        &["no backup nothing-here"],
    );

    fs::write(source.path().join(MANIFEST_FILE), "{}").unwrap();
    expect_error(
        target.write(source.path(), manifest(2), NO_PROGRESS).await,
        &["source folder", "would clash"],
    );
    let missing = source.path().join("missing");
    expect_error(
        target.write(&missing, manifest(2), NO_PROGRESS).await,
        &["source folder", "missing"],
    );
    assert!(
        !root
            .path()
            .join(format!("{}.partial", manifest(2).id))
            .exists()
    );

    let into = TempDir::new().unwrap();
    fs::write(into.path().join("already-here"), "x").unwrap();
    expect_error(
        target.fetch(&id, into.path(), NO_PROGRESS).await,
        &["not empty"],
    );
}

#[tokio::test]
async fn deletes_one_backup() {
    let (root, source, target) = setup();
    let first = target
        .write(source.path(), manifest(1), NO_PROGRESS)
        .await
        .unwrap()
        .id;
    let second = target
        .write(source.path(), manifest(2), NO_PROGRESS)
        .await
        .unwrap()
        .id;
    target.delete(&first).await.unwrap();
    let listed: Vec<String> = target
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(listed, [second]);
    assert_eq!(fs::read_dir(root.path()).unwrap().count(), 1);
}

#[tokio::test]
async fn fetch_makes_the_destination_folder() {
    let (_root, source, target) = setup();
    let id = target
        .write(source.path(), manifest(1), NO_PROGRESS)
        .await
        .unwrap()
        .id;
    let dir = TempDir::new().unwrap();
    let into = dir.path().join("restore/checkpoint");
    let reports = Reports::default();
    target.fetch(&id, &into, &reports.record()).await.unwrap();
    assert_same_files(&into);
    assert_eq!(reports.last().stage, Stage::Fetching);
}

#[tokio::test]
async fn a_manifest_worked_out_alongside_the_copy_completes_it_or_abandons_it() {
    let (root, source, target) = setup();
    let described = manifest(3);
    let id = described.id.clone();
    let written = target
        .write_described(source.path(), &id, async { Ok(described) }, NO_PROGRESS)
        .await
        .unwrap();
    assert_eq!(written.files.len(), FILES.len());
    target.verify(&id, NO_PROGRESS).await.unwrap();

    // A description that fails (a store value that cannot be read, say) leaves nothing.
    let failed = manifest(4);
    let failed_id = failed.id.clone();
    let error = target
        .write_described(
            source.path(),
            &failed_id,
            async {
                Err(BackupError::Describe {
                    reason: "a value cannot be read".into(),
                })
            },
            NO_PROGRESS,
        )
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("a value cannot be read"),
        "{error}"
    );
    let left: Vec<String> = fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        left,
        std::slice::from_ref(&id),
        "no partial folder or backup is left"
    );

    // A description of another backup is refused.
    let error = target
        .write_described(
            source.path(),
            &failed_id,
            async { Ok(manifest(5)) },
            NO_PROGRESS,
        )
        .await
        .unwrap_err();
    assert!(error.to_string().contains("not"), "{error}");
    assert_eq!(target.list().await.unwrap().len(), 1);
}
