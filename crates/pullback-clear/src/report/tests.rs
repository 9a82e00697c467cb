use super::*;
use crate::facts::RiskyKind;
use crate::message::tests::{base64, tnef_with_file};

const PHISH: &str = "From: \"IT Helpdesk\" <helpdesk@evil.example>\r\n\
    To: victim@corp.example\r\n\
    Subject: Password expires today\r\n\
    Message-ID: <phish-1@evil.example>\r\n\
    Date: Tue, 1 Oct 2024 10:00:00 +0000\r\n\
    Received: from evil.example by mx.corp.example\r\n\
    \r\n\
    Keep your password: http://evil.example/login\r\n";

/// A report from `reporter@corp.example` with a note and one more part, as written.
fn report_with_part(part: &str) -> Vec<u8> {
    format!(
        "From: Reporter <Reporter@Corp.example>\r\nTo: abuse@corp.example\r\nSubject: FW: suspicious\r\n\
         Message-ID: <report-7@corp.example>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"r\"\r\n\r\n\
         --r\r\nContent-Type: text/plain\r\n\r\nPlease check this one.\r\n\
         --r\r\n{part}\r\n--r--\r\n"
    )
    .into_bytes()
}

fn assert_phish_headers(original: &MessageFacts) {
    let from = original.headers.from.as_ref().expect("a sender");
    assert_eq!(from.address.as_deref(), Some("helpdesk@evil.example"));
    assert_eq!(
        original.headers.subject.as_deref(),
        Some("Password expires today")
    );
}

#[test]
fn an_attached_message_is_the_original() {
    let report = read_report(&report_with_part(&format!(
        "Content-Type: message/rfc822\r\n\r\n{PHISH}"
    )));
    assert_eq!(report.found_as, FoundAs::AttachedMessage);
    assert_eq!(
        report.reporter.as_ref().unwrap().address.as_deref(),
        Some("reporter@corp.example")
    );
    assert_eq!(report.report_subject.as_deref(), Some("FW: suspicious"));
    assert_eq!(
        report.report_message_id.as_deref(),
        Some("report-7@corp.example")
    );
    let original = report.original.as_ref().unwrap();
    assert_phish_headers(original);
    assert_eq!(
        original.headers.message_id.as_deref(),
        Some("phish-1@evil.example")
    );
    assert!(!original.headers_lost);

    let again = crate::message::read(report.original_bytes.as_deref().unwrap());
    assert_eq!(again.headers.subject, original.headers.subject);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[test]
fn a_base64_eml_file_is_the_original() {
    let part = format!(
        "Content-Type: application/octet-stream; name=\"Password expires.eml\"\r\n\
         Content-Disposition: attachment; filename=\"Password expires.eml\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}",
        base64(PHISH.as_bytes())
    );
    let report = read_report(&report_with_part(&part));
    assert_eq!(report.found_as, FoundAs::EmlFile);
    assert_phish_headers(report.original.as_ref().unwrap());
    assert_eq!(report.original_bytes.as_deref(), Some(PHISH.as_bytes()));
}

/// A `.msg` file: transport headers, a body, and one attachment.
fn outlook_msg() -> Vec<u8> {
    use std::io::Write;
    let utf16 =
        |text: &str| -> Vec<u8> { text.encode_utf16().flat_map(u16::to_le_bytes).collect() };
    let mut file = cfb::CompoundFile::create(std::io::Cursor::new(Vec::new())).unwrap();
    let headers = PHISH.split("\r\n\r\n").next().unwrap().to_string() + "\r\n";
    let streams: &[(&str, Vec<u8>)] = &[
        ("/__substg1.0_0037001F", utf16("Password expires today")),
        ("/__substg1.0_007D001F", utf16(&headers)),
        (
            "/__substg1.0_1000001F",
            utf16("Keep your password: http://evil.example/login"),
        ),
        ("/__properties_version1.0", vec![0; 32]),
    ];
    for (path, data) in streams {
        file.create_stream(path).unwrap().write_all(data).unwrap();
    }
    file.create_storage("/__attach_version1.0_#00000000")
        .unwrap();
    let attachment: &[(&str, Vec<u8>)] = &[
        (
            "/__attach_version1.0_#00000000/__substg1.0_3707001F",
            utf16("update.hta"),
        ),
        (
            "/__attach_version1.0_#00000000/__substg1.0_37010102",
            b"<script>x</script>".to_vec(),
        ),
        (
            "/__attach_version1.0_#00000000/__properties_version1.0",
            vec![0; 8],
        ),
    ];
    for (path, data) in attachment {
        file.create_stream(path).unwrap().write_all(data).unwrap();
    }
    file.into_inner().into_inner()
}

#[test]
fn an_outlook_msg_is_the_original_and_reads_again_from_its_bytes() {
    let msg = outlook_msg();
    let part = format!(
        "Content-Type: application/vnd.ms-outlook; name=\"Password expires today.msg\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}",
        base64(&msg)
    );
    let report = read_report(&report_with_part(&part));
    assert_eq!(
        report.found_as,
        FoundAs::OutlookMsg,
        "{:?}",
        report.problems
    );
    let original = report.original.as_ref().unwrap();
    assert_phish_headers(original);
    assert_eq!(original.headers.received_count, 1);
    assert_eq!(
        original.text_bodies,
        ["Keep your password: http://evil.example/login"]
    );
    assert_eq!(original.attachments[0].name.as_deref(), Some("update.hta"));
    assert_eq!(original.attachments[0].risky, Some(RiskyKind::Script));

    let again = read_report(report.original_bytes.as_deref().unwrap());
    assert_eq!(again.found_as, FoundAs::OutlookMsg);
    assert_eq!(
        again.original.unwrap().headers.subject,
        original.headers.subject
    );
}

#[test]
fn an_eml_inside_winmail_dat_is_the_original() {
    let stream = tnef_with_file("PHISH.EML", "phish.eml", PHISH.as_bytes());
    let part = format!(
        "Content-Type: application/ms-tnef; name=\"winmail.dat\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}",
        base64(&stream)
    );
    let report = read_report(&report_with_part(&part));
    assert_eq!(report.found_as, FoundAs::Tnef);
    assert_phish_headers(report.original.as_ref().unwrap());
}

#[test]
fn a_message_embedded_in_winmail_dat_is_the_original() {
    let stream = crate::message::tests::tnef_with_embedded_message("Password expires today");
    let part = format!(
        "Content-Type: application/ms-tnef; name=\"winmail.dat\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}",
        base64(&stream)
    );
    let report = read_report(&report_with_part(&part));
    assert_eq!(report.found_as, FoundAs::Tnef, "{:?}", report.problems);
    let original = report.original.unwrap();
    assert_eq!(
        original.headers.subject.as_deref(),
        Some("Password expires today")
    );
    assert_eq!(report.original_bytes, None);
}

fn inline_report(content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "From: reporter@corp.example\r\nSubject: FW: Password expires today\r\n\
         Content-Type: {content_type}\r\n\r\n{body}"
    )
    .into_bytes()
}

#[test]
fn an_outlook_inline_forward_recovers_the_forward_block() {
    let body = "Is this real?\r\n\r\n-----Original Message-----\r\n\
        From: IT Helpdesk [mailto:Helpdesk@Evil.example]\r\n\
        Sent: Tuesday, October 1, 2024 10:00 AM\r\n\
        To: Victim, Vera <victim@corp.example>; other@corp.example\r\n\
        Subject: Password expires today\r\n\r\n\
        Keep your password: http://evil.example/login\r\n";
    let report = read_report(&inline_report("text/plain", body));
    assert_eq!(report.found_as, FoundAs::InlineForward);
    let original = report.original.unwrap();
    assert!(original.headers_lost);
    let from = original.headers.from.unwrap();
    assert_eq!(from.name.as_deref(), Some("IT Helpdesk"));
    assert_eq!(from.address.as_deref(), Some("helpdesk@evil.example"));
    assert_eq!(
        original.headers.date.as_deref(),
        Some("Tuesday, October 1, 2024 10:00 AM")
    );
    let to: Vec<_> = original
        .headers
        .to
        .iter()
        .map(|m| m.address.clone().unwrap())
        .collect();
    assert_eq!(to, ["victim@corp.example", "other@corp.example"]);
    assert_eq!(
        original.headers.subject.as_deref(),
        Some("Password expires today")
    );
    assert_eq!(
        original.text_bodies,
        ["Keep your password: http://evil.example/login\r\n"]
    );
    assert!(original.problems[0].contains("original headers are lost"));
}

#[test]
fn a_gmail_html_forward_keeps_only_the_forwarded_html() {
    let html = "<div dir=\"ltr\">Reporter's note <a href=\"https://intranet.corp.example\">intranet</a>\
        <br><br><div class=\"gmail_quote\"><div dir=\"ltr\" class=\"gmail_attr\">---------- Forwarded message ---------<br>\
        From: <strong class=\"gmail_sendername\">IT Helpdesk</strong> <span>&lt;<a href=\"mailto:helpdesk@evil.example\">helpdesk@evil.example</a>&gt;</span><br>\
        Date: Tue, Oct 1, 2024 at 10:00 AM<br>Subject: Password expires today<br>\
        To: &lt;<a href=\"mailto:victim@corp.example\">victim@corp.example</a>&gt;<br></div><br><br>\
        <a href=\"http://evil.example/login\">Keep your password</a></div></div>";
    let report = read_report(&inline_report("text/html; charset=utf-8", html));
    assert_eq!(
        report.found_as,
        FoundAs::InlineForward,
        "{:?}",
        report.problems
    );
    let original = report.original.unwrap();
    assert_eq!(
        original.headers.from.unwrap().address.as_deref(),
        Some("helpdesk@evil.example")
    );
    assert_eq!(
        original.headers.subject.as_deref(),
        Some("Password expires today")
    );
    assert_eq!(
        original.headers.to[0].address.as_deref(),
        Some("victim@corp.example")
    );
    let forwarded_html = &original.html_bodies[0];
    assert!(forwarded_html.contains("http://evil.example/login"));
    assert!(
        !forwarded_html.contains("intranet.corp.example"),
        "{forwarded_html}"
    );
    assert!(original.text_bodies[0].contains("Keep your password"));
}

#[test]
fn a_gmail_plain_text_forward_is_found() {
    let body = "FYI\n\n---------- Forwarded message ---------\nFrom: IT Helpdesk <helpdesk@evil.example>\n\
        Date: Tue, Oct 1, 2024 at 10:00 AM\nSubject: Password expires today\nTo: <victim@corp.example>\n\n\
        Keep your password\n";
    let report = read_report(&inline_report("text/plain", body));
    let original = report.original.unwrap();
    assert_eq!(
        original.headers.from.unwrap().name.as_deref(),
        Some("IT Helpdesk")
    );
    assert_eq!(original.text_bodies, ["Keep your password\n"]);
}

#[test]
fn inline_forward_keeps_the_reports_attachments_as_the_originals() {
    let part = "Content-Type: text/html; name=\"invoice.html\"\r\n\
        Content-Disposition: attachment; filename=\"invoice.html\"\r\n\r\n<form action=http://evil.example>";
    let mut raw = report_with_part(part);
    let note = b"Please check this one.";
    let at = raw.windows(note.len()).position(|w| w == note).unwrap();
    let block =
        b"\r\n\r\nFrom: helpdesk@evil.example\r\nSent: today\r\nSubject: Invoice\r\n\r\nOpen it";
    raw.splice(at + note.len()..at + note.len(), block.iter().copied());
    let report = read_report(&raw);
    assert_eq!(report.found_as, FoundAs::InlineForward);
    let original = report.original.unwrap();
    assert_eq!(original.attachments[0].risky, Some(RiskyKind::Html));
}

#[test]
fn a_report_without_attachment_or_forward_is_not_found() {
    let report = read_report(
        b"From: reporter@corp.example\r\nSubject: help\r\n\r\nI clicked a link, sorry.\r\n",
    );
    assert_eq!(report.found_as, FoundAs::NotFound);
    assert!(report.original.is_none());
    assert!(report.problems[0].contains("no message attachment and no forwarded block"));
}

#[test]
fn an_attachment_that_is_not_a_message_is_not_found_and_named() {
    let part = "Content-Type: application/pdf; name=\"scan.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjc=";
    let report = read_report(&report_with_part(part));
    assert_eq!(report.found_as, FoundAs::NotFound);
    assert!(
        report.problems[0].contains("not messages (scan.pdf)"),
        "{:?}",
        report.problems
    );
}

#[test]
fn a_phish_received_directly_is_not_taken_for_the_original() {
    let report = read_report(PHISH.as_bytes());
    assert_eq!(report.found_as, FoundAs::NotFound);
    assert!(report.original.is_none());
    assert_eq!(
        report.reporter.unwrap().address.as_deref(),
        Some("helpdesk@evil.example")
    );
    assert!(
        report.problems[0].contains("message::read"),
        "{:?}",
        report.problems
    );
}

#[test]
fn the_first_of_several_forwarded_messages_is_read() {
    let second = PHISH.replace("Password expires today", "Second");
    let part = format!(
        "Content-Type: message/rfc822\r\n\r\n{PHISH}\r\n--r\r\nContent-Type: message/rfc822\r\n\r\n{second}"
    );
    let report = read_report(&report_with_part(&part));
    assert_phish_headers(report.original.as_ref().unwrap());
    assert_eq!(
        report.problems,
        ["the report carries 2 forwarded messages; only the first was read"]
    );
}

#[test]
fn a_delivery_status_part_is_not_an_original() {
    let part = "Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example\r\n\r\nFinal-Recipient: rfc822; a@b";
    let report = read_report(&report_with_part(part));
    assert_eq!(report.found_as, FoundAs::NotFound);
}

#[test]
fn a_report_without_headers_is_not_found() {
    let report = read_report(b"\x00\x01\x02 binary junk");
    assert_eq!(report.found_as, FoundAs::NotFound);
    assert!(
        report.problems[0].contains("no headers"),
        "{:?}",
        report.problems
    );
}

#[test]
fn mailboxes_of_forward_blocks() {
    let check = |value: &str, expected: &[(Option<&str>, Option<&str>)]| {
        let found = inline::mailboxes(value);
        let found: Vec<_> = found
            .iter()
            .map(|m| (m.name.as_deref(), m.address.as_deref()))
            .collect();
        assert_eq!(found, expected, "{value}");
    };
    check("IT <a@B.example>", &[(Some("IT"), Some("a@b.example"))]);
    check(
        "\"Doe, Jane\" <jane@x.example>, bob@x.example",
        &[
            (Some("Doe, Jane"), Some("jane@x.example")),
            (None, Some("bob@x.example")),
        ],
    );
    check("'a@x.example'", &[(None, Some("a@x.example"))]);
    check("Jane Doe", &[(Some("Jane Doe"), None)]);
    check(
        "Jane [mailto:jane@x.example]; Joe <mailto:joe@x.example>",
        &[
            (Some("Jane"), Some("jane@x.example")),
            (Some("Joe"), Some("joe@x.example")),
        ],
    );
}
