//! The command line: `validate` names every problem, and `demo --once` runs the whole job on
//! the built-in samples.

use std::process::Command;

fn pullback(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_pullback"))
        .args(args)
        .env("PULLBACK_LOG", "warn")
        .output()
        .expect("run pullback");
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    (
        output.status.success(),
        text(output.stdout),
        text(output.stderr),
    )
}

#[test]
fn validate_names_every_problem_and_accepts_a_good_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        r#"
[node]
data_dir = "/tmp/x"
listen = "127.0.0.1:0"

[[api_keys]]
name = "k"
role = "admin"
sha256 = "not-hex"

[[match_conditions]]
name = "q"
sources = ["missing"]
responses = ["quarantine"]
"#,
    )
    .unwrap();
    let (ok, _, stderr) = pullback(&["validate", "--config", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(stderr.contains("sha256 must be 64 hex digits"), "{stderr}");
    assert!(stderr.contains("names source \"missing\""), "{stderr}");

    let unknown = dir.path().join("unknown.toml");
    std::fs::write(
        &unknown,
        "[node]\ndata_dir = \"/x\"\nlisten = \"127.0.0.1:0\"\ncolour = 1\n",
    )
    .unwrap();
    let (ok, _, stderr) = pullback(&["validate", "--config", unknown.to_str().unwrap()]);
    assert!(!ok);
    assert!(stderr.contains("unknown field `colour`"), "{stderr}");

    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[node]\ndata_dir = \"/tmp/x\"\nlisten = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let (ok, stdout, stderr) = pullback(&["validate", "--config", good.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("configuration OK"), "{stdout}");
}

#[test]
fn demo_once_runs_the_whole_job_on_the_built_in_samples() {
    let (ok, stdout, stderr) = pullback(&["demo", "--once", "--listen", "127.0.0.1:0"]);
    assert!(ok, "{stderr}");
    // Three reported messages reach four mailboxes; the click and the blocked message add
    // alerts but no pulls; the message that shares its Message-ID with a legitimate one is
    // pulled alone.
    assert_eq!(
        stdout.trim(),
        "demo: 5 alerts, 3 incidents, 4 quarantined, 0 failed",
        "{stderr}"
    );
}

/// Every message of the shared corpus, the parser-breaking fixtures included, gets a verdict
/// from `pullback clear analyze` (or a reason why none was possible), with no failure.
#[test]
fn clear_analyze_reads_the_whole_mail_corpus() {
    let mail = pullback_mailbox::testing::shared_data_dir().join("mail");
    let mail = mail.to_str().unwrap();
    let (ok, stdout, stderr) = pullback(&["clear", "analyze", "--json", mail]);
    assert!(ok, "{stderr}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let files = walk(std::path::Path::new(mail));
    assert_eq!(lines.len(), files, "one verdict per file");
    for line in &lines {
        let disposition = line["verdict"]["disposition"].as_str().unwrap_or_default();
        assert!(
            ["malicious", "suspicious", "bulk", "clean"].contains(&disposition),
            "{line}"
        );
    }
    // The phishing folder is mostly judged malicious or suspicious.
    let phish_flagged = lines
        .iter()
        .filter(|l| l["file"].as_str().unwrap_or_default().contains("/phish/"))
        .filter(|l| {
            matches!(
                l["verdict"]["disposition"].as_str(),
                Some("malicious" | "suspicious")
            )
        })
        .count();
    assert!(
        phish_flagged >= 30,
        "{phish_flagged} phishing messages flagged"
    );

    // A report analysed as a report: the phish inside it, not the reporter's note.
    let (ok, stdout, stderr) = pullback(&["clear", "analyze", "--report", mail]);
    assert!(!ok, "plain messages are not reports: {stdout}");
    assert!(stderr.contains("no reported message found"), "{stderr}");
}

fn walk(dir: &std::path::Path) -> usize {
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let hidden = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            count += walk(&path);
        } else {
            count += 1;
        }
    }
    count
}
