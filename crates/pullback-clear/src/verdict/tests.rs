use std::path::PathBuf;

use super::*;
use crate::facts::{AttachmentFacts, HeaderFacts, Mailbox, MessageFacts, RiskyKind};

/// The shared data folder: `PULLBACK_SHARED_DATA`, or `../shared/data` from the workspace.
fn shared_data() -> PathBuf {
    let dir = std::env::var_os("PULLBACK_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    assert!(
        dir.is_dir(),
        "shared data not found at {}: set PULLBACK_SHARED_DATA",
        dir.display()
    );
    dir
}

fn corpus(kind: &str) -> Vec<(String, Vec<u8>)> {
    let dir = shared_data().join("mail").join(kind);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

/// Analysis alone (reading aside) keeps up with a busy abuse mailbox. The bound is loose for
/// unoptimised test builds; an optimised build does the corpus in a few milliseconds.
#[test]
fn analysis_is_fast() {
    let facts: Vec<MessageFacts> = ["phish", "ham"]
        .into_iter()
        .flat_map(corpus)
        .map(|(_, bytes)| crate::message::read(&bytes))
        .collect();
    let started = std::time::Instant::now();
    for f in &facts {
        analyse(f, &NoIntelligence);
    }
    let per_message = started.elapsed() / facts.len() as u32;
    println!("analysis: {per_message:?} per message");
    assert!(
        per_message < std::time::Duration::from_millis(20),
        "{per_message:?} per message"
    );
}

#[test]
fn corpus_meets_the_quality_bar() {
    let mut results = Vec::new();
    let started = std::time::Instant::now();
    for kind in ["phish", "ham"] {
        for (name, bytes) in corpus(kind) {
            let verdict = analyse(&crate::message::read(&bytes), &NoIntelligence);
            // The one legitimate list post among the phishing captures.
            let malicious = kind == "phish" && name != "sample-5478.eml";
            println!(
                "{kind}/{name}: {:?} {} | {}",
                verdict.disposition, verdict.score, verdict.summary
            );
            for r in &verdict.reasons {
                println!(
                    "    {} {} {} | {}",
                    r.code,
                    r.weight,
                    r.item.chars().take(90).collect::<String>(),
                    r.text.chars().take(120).collect::<String>()
                );
            }
            results.push((malicious, verdict.disposition));
        }
    }
    let c = confusion(&results);
    println!(
        "{c:?}; {} messages read and analysed in {:?}",
        results.len(),
        started.elapsed()
    );
    assert!(c.recall >= 0.95, "{c:?}");
    assert!(c.false_positive_rate <= 0.05, "{c:?}");
}

/// An ordinary message from a colleague, to build cases on.
fn message(body: &str) -> MessageFacts {
    MessageFacts {
        headers: HeaderFacts {
            from: Some(Mailbox {
                name: Some("Ann Lee".into()),
                address: Some("ann@corp.example".into()),
            }),
            to: vec![Mailbox {
                name: None,
                address: Some("bob@corp.example".into()),
            }],
            subject: Some("Notes from Tuesday".into()),
            all: vec![
                ("From".into(), "ann@corp.example".into()),
                ("Date".into(), "Tue, 2 Jan 2024 10:00:00 +0000".into()),
            ],
            ..Default::default()
        },
        text_bodies: vec![body.to_owned()],
        ..Default::default()
    }
}

fn attachment(name: &str, risky: Option<RiskyKind>) -> AttachmentFacts {
    AttachmentFacts {
        name: Some(name.into()),
        declared_type: "application/octet-stream".into(),
        sniffed_type: None,
        extension: name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()),
        size: 1000,
        sha256: "ab".repeat(32),
        risky,
        mismatch: None,
    }
}

fn codes(verdict: &Verdict) -> Vec<&'static str> {
    verdict.reasons.iter().map(|r| r.code).collect()
}

/// Threat intelligence that knows one URL, one domain and one hash.
struct Known;

impl Intelligence for Known {
    fn url_is_bad(&self, url: &str) -> Option<String> {
        (url == "https://drop.example/a").then(|| "TAP".to_owned())
    }
    fn domain_is_bad(&self, domain: &str) -> Option<String> {
        (domain == "phish-kit.example").then(|| "list phish-feeds".to_owned())
    }
    fn hash_is_bad(&self, sha256: &str) -> Option<String> {
        (sha256 == "cd".repeat(32)).then(|| "TAP".to_owned())
    }
}

#[test]
fn an_ordinary_message_is_clean() {
    let verdict = analyse(
        &message("Hi Bob, the notes are on https://wiki.corp.example/notes. Ann"),
        &NoIntelligence,
    );
    assert_eq!(verdict.disposition, Disposition::Clean, "{verdict:?}");
    assert_eq!(verdict.summary, "clean: no evidence of a threat was found");
}

#[test]
fn list_mail_without_threats_is_bulk_even_when_the_list_breaks_signatures() {
    let mut facts = message("Weekly digest: https://lists.example/archive");
    facts.headers.list_id = Some("<dev.lists.example>".into());
    facts.headers.authentication_results = vec!["mx; spf=pass; dkim=fail; dmarc=fail".into()];
    let verdict = analyse(&facts, &NoIntelligence);
    assert_eq!(verdict.disposition, Disposition::Bulk, "{verdict:?}");
    assert!(verdict.summary.starts_with("bulk: "), "{}", verdict.summary);
}

#[test]
fn intelligence_is_decisive_and_named() {
    let verdict = analyse(&message("see https://drop.example/a"), &Known);
    assert_eq!(verdict.disposition, Disposition::Malicious);
    assert_eq!(verdict.reasons[0].item, "https://drop.example/a");
    assert!(
        verdict.summary.starts_with("malicious: ") && verdict.summary.contains("(TAP)"),
        "{}",
        verdict.summary
    );

    let verdict = analyse(&message("see https://login.phish-kit.example/x"), &Known);
    assert_eq!(codes(&verdict)[0], "url.domain_known_bad");

    let mut facts = message("attached");
    facts.attachments = vec![AttachmentFacts {
        sha256: "cd".repeat(32),
        ..attachment("report.pdf", None)
    }];
    let verdict = analyse(&facts, &Known);
    assert_eq!(verdict.disposition, Disposition::Malicious);
    assert_eq!(
        (verdict.reasons[0].code, verdict.reasons[0].item.as_str()),
        ("attachment.known_bad", "report.pdf")
    );
}

#[test]
fn dangerous_attachments_are_malicious_and_named() {
    for (name, kind) in [
        ("quotation.iso", RiskyKind::DiskImage),
        ("setup.exe", RiskyKind::Executable),
        ("profile.mobileconfig", RiskyKind::ConfigurationProfile),
    ] {
        let mut facts = message("Please see attached.");
        facts.attachments = vec![attachment(name, Some(kind))];
        let verdict = analyse(&facts, &NoIntelligence);
        assert_eq!(
            verdict.disposition,
            Disposition::Malicious,
            "{name}: {verdict:?}"
        );
        assert_eq!(verdict.reasons[0].item, name);
        assert!(verdict.summary.contains(name), "{}", verdict.summary);
    }
}

#[test]
fn disguised_attachment_names() {
    let mut facts = message("Invoice attached.");
    facts.attachments = vec![
        attachment("Invoice.pdf.htm", Some(RiskyKind::Html)),
        attachment("scan\u{202E}fdp.exe", None),
    ];
    let verdict = analyse(&facts, &NoIntelligence);
    let found = codes(&verdict);
    for code in [
        "attachment.html",
        "attachment.double_extension",
        "attachment.disguised_name",
    ] {
        assert!(found.contains(&code), "{code}: {found:?}");
    }
    assert_eq!(verdict.disposition, Disposition::Malicious);
}

#[test]
fn credential_phishing_with_a_lookalike_link() {
    let mut facts = message("");
    facts.html_bodies = vec![
        r#"<p>Unusual sign-in activity. Verify your account within 24 hours or it will be
        suspended.</p><a href="https://paypa1.com/signin">https://www.paypal.com/signin</a>"#
            .into(),
    ];
    let verdict = analyse(&facts, &NoIntelligence);
    assert_eq!(verdict.disposition, Disposition::Malicious, "{verdict:?}");
    let found = codes(&verdict);
    for code in [
        "url.lookalike_host",
        "url.display_mismatch",
        "content.credential_lure",
        "content.urgency",
    ] {
        assert!(found.contains(&code), "{code}: {found:?}");
    }
    let lookalike = verdict
        .reasons
        .iter()
        .find(|r| r.code == "url.lookalike_host")
        .unwrap();
    assert_eq!(lookalike.item, "https://paypa1.com/signin");
}

#[test]
fn forms_asking_for_passwords() {
    let mut facts = message("");
    facts.html_bodies = vec![r#"<form action="https://collect.example/p"><input name=u><input type="PASSWORD" name=p></form>"#.into()];
    let verdict = analyse(&facts, &NoIntelligence);
    assert!(
        codes(&verdict).contains(&"content.password_form"),
        "{verdict:?}"
    );
    assert!(verdict.disposition.is_positive());
}

#[test]
fn each_kind_of_evidence_counts_once() {
    let one = analyse(&message("http://192.0.2.1/a"), &NoIntelligence);
    let many: String = (0..300)
        .map(|i| format!("http://192.0.2.{}/a ", i % 250))
        .collect();
    let many = analyse(&message(&many), &NoIntelligence);
    assert_eq!(one.score, many.score);
    assert!(many.reasons.len() <= MAX_REASONS);
}

#[test]
fn advance_fee_fraud_with_a_free_mail_reply_to() {
    let mut facts = message(
        "I am a barrister. My late client left the sum of $10.5 million dollars with no next of kin. \
         I need your assistance to transfer it.",
    );
    facts.headers.reply_to = vec![Mailbox {
        name: None,
        address: Some("barrister.j@gmail.com".into()),
    }];
    let verdict = analyse(&facts, &NoIntelligence);
    assert!(verdict.disposition.is_positive(), "{verdict:?}");
    assert_eq!(
        codes(&verdict),
        ["content.fortune_lure", "header.reply_to_freemail"]
    );
}

#[test]
fn callback_scams_name_a_brand_and_a_phone_number() {
    let mut facts = message(
        "Your McAfee subscription has been renewed. Invoice total $399.99. \
         To cancel, call +1 (808) 555-0142 today.",
    );
    facts.headers.from = Some(Mailbox {
        name: Some("Billing".into()),
        address: Some("billing@shop.example".into()),
    });
    let verdict = analyse(&facts, &NoIntelligence);
    let callback = verdict
        .reasons
        .iter()
        .find(|r| r.code == "content.callback_lure")
        .expect("a callback lure");
    assert!(
        callback.text.contains("+1 (808) 555-0142"),
        "{}",
        callback.text
    );
    assert!(verdict.disposition.is_positive());
}

#[test]
fn hidden_text_and_disguised_words() {
    let mut facts = message("");
    let filler = "lorem ipsum dolor sit amet ".repeat(20);
    facts.html_bodies = vec![format!(
        "<style>q {{ display: none }}</style><p>Hello</p><q>{filler}</q>"
    )];
    assert!(codes(&analyse(&facts, &NoIntelligence)).contains(&"content.hidden_text"));

    let facts = message("Your Аррle ID is locked. Confirm your Аррle account.");
    assert!(codes(&analyse(&facts, &NoIntelligence)).contains(&"content.disguised_text"));

    let mut facts = message("hello");
    facts.headers.subject = Some("Your PayPaI account is limited".into());
    assert!(codes(&analyse(&facts, &NoIntelligence)).contains(&"subject.misspelt_brand"));
}

#[test]
fn attached_messages_are_examined_too() {
    let mut facts = message("Forwarding this, it looks odd.");
    let mut original = message("Open https://evil.web.app/ now");
    original.attachments = vec![attachment("invoice.iso", Some(RiskyKind::DiskImage))];
    original.problems = vec!["part 2: unknown charset".into()];
    facts.attached_messages = vec![original];
    let verdict = analyse(&facts, &NoIntelligence);
    assert_eq!(verdict.disposition, Disposition::Malicious);
    assert!(codes(&verdict).contains(&"url.free_hosting"));
    assert_eq!(
        verdict.problems,
        ["attached message: part 2: unknown charset"]
    );
}

#[test]
fn a_verdict_serialises_for_the_alert() {
    let verdict = analyse(&message("see https://drop.example/a"), &Known);
    let json = serde_json::to_value(&verdict).unwrap();
    assert_eq!(json["disposition"], "malicious");
    assert_eq!(json["reasons"][0]["code"], "url.known_bad");
    assert_eq!(json["reasons"][0]["item"], "https://drop.example/a");
}

#[test]
fn confusion_counts_suspicious_as_positive() {
    use Disposition::*;
    let c = confusion(&[
        (true, Malicious),
        (true, Suspicious),
        (true, Clean),
        (false, Bulk),
        (false, Suspicious),
        (false, Clean),
    ]);
    assert_eq!((c.tp, c.fp, c.tn, c.fn_), (2, 1, 2, 1));
    assert!((c.precision - 2.0 / 3.0).abs() < 1e-9);
    assert!((c.recall - 2.0 / 3.0).abs() < 1e-9);
    assert!((c.f1 - 2.0 / 3.0).abs() < 1e-9);
    assert!((c.false_positive_rate - 1.0 / 3.0).abs() < 1e-9);
    assert_eq!(confusion(&[]).f1, 0.0);
}

#[test]
fn raw_messages_go_through_the_reader() {
    let phish = b"From: \"Microsoft 365\" <alerts@m365-notice.example>\r\n\
        To: bob@corp.example\r\nSubject: Action required: mailbox is full\r\n\
        Date: Tue, 2 Jan 2024 10:00:00 +0000\r\nMIME-Version: 1.0\r\n\
        Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/html\r\n\r\n\
        <p>Your mailbox is full. Sign in within 24 hours to keep your account.</p>\r\n\
        <a href=\"http://203.0.113.5/owa/login\">https://outlook.office.com/</a>\r\n--b\r\n\
        Content-Type: text/html; name=\"Voicemail.htm\"\r\nContent-Disposition: attachment; filename=\"Voicemail.htm\"\r\n\r\n\
        <html><script>location.href='x'</script></html>\r\n--b--\r\n";
    let verdict = analyse(&crate::message::read(phish), &NoIntelligence);
    assert_eq!(verdict.disposition, Disposition::Malicious, "{verdict:?}");
    assert!(
        verdict
            .reasons
            .iter()
            .any(|r| r.item == "http://203.0.113.5/owa/login")
    );

    let list = b"From: Ann <ann@corp.example>\r\nTo: dev@lists.example\r\nSubject: [dev] release notes\r\n\
        Date: Tue, 2 Jan 2024 10:00:00 +0000\r\nList-Id: <dev.lists.example>\r\nPrecedence: list\r\n\r\n\
        The notes are at https://docs.example/release. Thanks!\r\n";
    let verdict = analyse(&crate::message::read(list), &NoIntelligence);
    assert_eq!(verdict.disposition, Disposition::Bulk, "{verdict:?}");
}
