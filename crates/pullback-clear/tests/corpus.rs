//! Reads every message of the shared mail corpus through [`message::read`] and
//! [`report::read_report`]: none may panic, and each must be read in bounded time.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pullback_clear::{message, report};

/// A generous bound for one message in a debug build; release builds are far faster.
const MAX_TIME_PER_MESSAGE: Duration = Duration::from_secs(2);

/// The shared mail corpus: `$PULLBACK_SHARED_DATA/mail`, or the checkout's `../shared/data/mail`.
fn corpus_dir() -> PathBuf {
    let data = match std::env::var_os("PULLBACK_SHARED_DATA") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"),
    };
    let mail = data.join("mail");
    assert!(
        mail.is_dir(),
        "the mail corpus is missing at {}: set PULLBACK_SHARED_DATA to the shared data folder",
        mail.display()
    );
    mail
}

fn files_under(dir: &Path, found: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("readable corpus folder")
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.path());
    for entry in entries {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, found);
        } else {
            found.push(path);
        }
    }
}

#[test]
fn every_corpus_file_is_read_without_panic_in_bounded_time() {
    let mut files = Vec::new();
    files_under(&corpus_dir(), &mut files);
    assert!(
        files.len() > 200,
        "expected the whole corpus, found {} files",
        files.len()
    );

    let mut slowest = (Duration::ZERO, PathBuf::new());
    for path in &files {
        let bytes = std::fs::read(path).expect("readable corpus file");
        let started = Instant::now();
        let facts = message::read(&bytes);
        let report = report::read_report(&bytes);
        let elapsed = started.elapsed();

        assert!(
            elapsed < MAX_TIME_PER_MESSAGE,
            "{} took {elapsed:?} to read",
            path.display()
        );
        if elapsed > slowest.0 {
            slowest = (elapsed, path.clone());
        }
        let has_content = !facts.headers.all.is_empty()
            || !facts.text_bodies.is_empty()
            || !facts.problems.is_empty()
            || bytes.iter().all(u8::is_ascii_whitespace);
        assert!(
            has_content,
            "{}: read to nothing, with no problem noted",
            path.display()
        );
        let explained = report.original.is_some() || !report.problems.is_empty();
        assert!(explained, "{}: no original and no reason", path.display());
        if std::env::var_os("CLEAR_CORPUS_VERBOSE").is_some() {
            println!(
                "{:>7?} {} parts: text {} html {} files {} msgs {} problems {:?} | report {:?} {:?}",
                elapsed,
                path.strip_prefix(corpus_dir()).unwrap_or(path).display(),
                facts.text_bodies.len(),
                facts.html_bodies.len(),
                facts.attachments.len(),
                facts.attached_messages.len(),
                facts.problems,
                report.found_as,
                report.problems,
            );
        }
    }
    println!("slowest: {:?} for {}", slowest.0, slowest.1.display());
}

fn corpus_file(path: &str) -> Vec<u8> {
    let path = corpus_dir().join(path);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_outlook_msg_sample_is_found_with_its_transport_headers() {
    let report = report::read_report(&corpus_file(
        "mime-edge/SpamScope_mail-parser/mail_outlook_1",
    ));
    assert_eq!(report.found_as, report::FoundAs::OutlookMsg);
    let original = report.original.expect("the .msg is the original");
    let subject = original.headers.subject.as_deref().unwrap_or_default();
    assert!(subject.starts_with("Newsletter"), "{subject}");
    assert!(original.headers.received_count > 0);
    assert!(!original.html_bodies.is_empty() || !original.text_bodies.is_empty());
    assert!(
        original
            .attachments
            .iter()
            .any(|a| a.sniffed_type.as_deref() == Some("image/png"))
    );
}

#[test]
fn a_real_winmail_dat_yields_its_files() {
    let stream = corpus_file("mime-edge/koodaamo_tnefparse/two-files.tnef");
    let mut raw = b"From: a@example.com\r\nSubject: tnef\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
        --b\r\nContent-Type: application/ms-tnef; name=winmail.dat\r\n\r\n"
        .to_vec();
    raw.extend_from_slice(&stream);
    raw.extend_from_slice(b"\r\n--b--\r\n");
    let facts = message::read(&raw);
    let names: Vec<_> = facts
        .attachments
        .iter()
        .filter_map(|a| a.name.as_deref())
        .collect();
    assert_eq!(names, ["winmail.dat", "AUTHORS", "README"]);
}

#[test]
fn the_single_line_body_and_the_many_links_message_are_read_whole() {
    let long_line = message::read(&corpus_file("phish/sample-6363.eml"));
    assert!(long_line.html_bodies.iter().any(|h| h.len() > 600_000));
    assert!(long_line.problems.is_empty(), "{:?}", long_line.problems);

    let many_links = message::read(&corpus_file("phish/sample-229.eml"));
    let bodies = many_links.text_bodies.iter().chain(&many_links.html_bodies);
    let links: usize = bodies
        .map(|b| b.matches("http://").count() + b.matches("https://").count())
        .sum();
    assert!(
        links >= 915,
        "{links} links: the decoded bodies hold at least the 915 the raw file shows"
    );
}
