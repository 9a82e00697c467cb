use super::*;
use crate::facts::RiskyKind;

/// A message with one attachment whose headers are given as written.
fn with_attachment(part_headers: &str, body: &str) -> Vec<u8> {
    format!(
        "From: a@example.com\r\nSubject: files\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n\
         --b1\r\n{part_headers}\r\n\r\n{body}\r\n--b1--\r\n"
    )
    .into_bytes()
}

pub(crate) fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Reads a message whose single attachment is `data`, named `name`, declared `declared`.
fn only_attachment(name: &str, declared: &str, data: &[u8]) -> AttachmentFacts {
    let headers = format!(
        "Content-Type: {declared}\r\nContent-Disposition: attachment; filename=\"{name}\"\r\n\
         Content-Transfer-Encoding: base64"
    );
    let facts = read(&with_attachment(&headers, &base64(data)));
    assert_eq!(
        facts.attachments.len(),
        1,
        "{name}: {:?}",
        facts.attachments
    );
    facts.attachments.into_iter().next().unwrap()
}

use crate::facts::AttachmentFacts;

#[test]
fn headers_are_decoded_and_normalised() {
    let raw = "From: =?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <Juergen@Example.COM>\r\n\
        To: \"Ann\" <ANN@example.org>, bob@example.org\r\n\
        Cc: undisclosed-recipients:;\r\n\
        Reply-To: <Reply@Elsewhere.example>\r\n\
        Return-Path: <Bounce@Example.com>\r\n\
        Subject: =?ISO-8859-1?B?SGVsbG8g5A==?=\r\n\
        Message-ID: <abc.123@example.com>\r\n\
        Date: Tue, 1 Oct 2024 10:00:00 +0000\r\n\
        Received: from a by b; Tue, 1 Oct 2024 10:00:00 +0000\r\n\
        Received: from c\r\n by d; Tue, 1 Oct 2024 10:00:00 +0000\r\n\
        Authentication-Results: mx.example;\r\n spf=pass smtp.mailfrom=example.com\r\n\
        Authentication-Results: other.example; dkim=fail\r\n\
        Received-SPF: pass (domain of example.com)\r\n\
        List-Id: News <news.example.com>\r\n\
        List-Unsubscribe: <mailto:unsub@example.com>\r\n\
        Precedence: bulk\r\n\r\nbody\r\n";
    let facts = read(raw.as_bytes());
    let h = &facts.headers;

    let from = h.from.as_ref().unwrap();
    assert_eq!(from.name.as_deref(), Some("Jürgen Müller"));
    assert_eq!(from.address.as_deref(), Some("juergen@example.com"));
    assert_eq!(from.domain(), Some("example.com"));
    let to: Vec<_> = h.to.iter().map(|m| m.address.as_deref().unwrap()).collect();
    assert_eq!(to, ["ann@example.org", "bob@example.org"]);
    assert_eq!(
        h.reply_to[0].address.as_deref(),
        Some("reply@elsewhere.example")
    );
    assert_eq!(h.return_path.as_deref(), Some("bounce@example.com"));
    assert_eq!(h.subject.as_deref(), Some("Hello ä"));
    assert_eq!(h.message_id.as_deref(), Some("abc.123@example.com"));
    assert_eq!(h.date.as_deref(), Some("Tue, 1 Oct 2024 10:00:00 +0000"));
    assert_eq!(h.received_count, 2);
    assert_eq!(
        h.authentication_results,
        [
            "mx.example; spf=pass smtp.mailfrom=example.com",
            "other.example; dkim=fail"
        ]
    );
    assert_eq!(h.received_spf, ["pass (domain of example.com)"]);
    assert_eq!(h.list_id.as_deref(), Some("News <news.example.com>"));
    assert_eq!(
        h.list_unsubscribe.as_deref(),
        Some("<mailto:unsub@example.com>")
    );
    assert_eq!(h.precedence.as_deref(), Some("bulk"));
    assert_eq!(h.all.len(), 16);
    assert_eq!(
        h.all[9],
        (
            "Received".into(),
            "from c by d; Tue, 1 Oct 2024 10:00:00 +0000".into()
        )
    );
    assert_eq!(facts.text_bodies, ["body\r\n"]);
    assert!(facts.problems.is_empty(), "{:?}", facts.problems);
}

#[test]
fn mbox_from_line_is_skipped() {
    let raw = b"From someone@example.com Mon Jan  1 00:00:00 2024\nFrom: x@example.com\nSubject: hi\n\nbody\n";
    let facts = read(raw);
    assert_eq!(facts.headers.subject.as_deref(), Some("hi"));
    assert_eq!(
        facts.headers.from.unwrap().address.as_deref(),
        Some("x@example.com")
    );
}

#[test]
fn input_without_headers_is_one_text_body_with_a_problem() {
    let facts = read(b"just some words, no headers at all\n");
    assert_eq!(facts.text_bodies, ["just some words, no headers at all\n"]);
    assert!(
        facts.problems[0].contains("no headers"),
        "{:?}",
        facts.problems
    );
}

#[test]
fn rfc2231_names_are_decoded() {
    let headers = "Content-Type: application/octet-stream\r\n\
        Content-Disposition: attachment;\r\n filename*0*=UTF-8''%E2%82%AC%20inv;\r\n filename*1*=oice.html\r\n\
        Content-Transfer-Encoding: base64";
    let facts = read(&with_attachment(
        headers,
        &base64(b"<html><form></form></html>"),
    ));
    let file = &facts.attachments[0];
    assert_eq!(file.name.as_deref(), Some("€ invoice.html"));
    assert_eq!(file.extension.as_deref(), Some("html"));
    assert_eq!(file.risky, Some(RiskyKind::Html));
}

#[test]
fn rfc2047_names_are_decoded() {
    let headers = "Content-Type: application/pdf; name=\"=?UTF-8?B?UmVjaG51bmcgw4RuZGVydW5nLnBkZg==?=\"\r\n\
        Content-Transfer-Encoding: base64";
    let facts = read(&with_attachment(headers, &base64(b"%PDF-1.7\n%...\n")));
    let file = &facts.attachments[0];
    assert_eq!(file.name.as_deref(), Some("Rechnung Änderung.pdf"));
    assert_eq!(file.declared_type, "application/pdf");
    assert_eq!(file.sniffed_type.as_deref(), Some("application/pdf"));
    assert_eq!((file.risky, file.mismatch.as_deref()), (None, None));
    assert_eq!(file.size, 14);
    assert_eq!(
        file.sha256,
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"%PDF-1.7\n%...\n"))
    );
}

#[test]
fn a_pdf_that_is_an_executable_is_a_mismatch() {
    let file = only_attachment(
        "invoice.pdf",
        "application/pdf",
        b"MZ\x90\x00\x03\x00\x00\x00PE",
    );
    assert_eq!(
        file.sniffed_type.as_deref(),
        Some("application/x-msdownload")
    );
    assert_eq!(file.risky, Some(RiskyKind::Executable));
    assert_eq!(
        file.mismatch.as_deref(),
        Some("named .pdf but its content is application/x-msdownload")
    );
}

#[test]
fn a_pdf_that_is_html_is_a_mismatch() {
    let file = only_attachment(
        "scan.pdf",
        "application/pdf",
        b"\r\n <!DOCTYPE html><script>x</script>",
    );
    assert_eq!(file.sniffed_type.as_deref(), Some("text/html"));
    assert_eq!(file.risky, Some(RiskyKind::Html));
    assert!(file.mismatch.as_deref().unwrap().contains("named .pdf"));
}

#[test]
fn declared_type_and_name_disagreeing_is_a_mismatch() {
    let file = only_attachment("photo.pdf", "image/jpeg", b"not recognisable");
    assert_eq!(
        file.mismatch.as_deref(),
        Some("declared image/jpeg but named .pdf")
    );
    let consistent = only_attachment(
        "report.docx",
        "application/octet-stream",
        &ooxml_zip("word/"),
    );
    assert_eq!(consistent.mismatch, None);
}

/// A ZIP holding one stored entry per name, with the given general-purpose flags.
fn zip_with(names: &[&str], flags: u16) -> Vec<u8> {
    let mut zip = Vec::new();
    for name in names {
        zip.extend_from_slice(b"PK\x03\x04\x14\x00");
        zip.extend_from_slice(&flags.to_le_bytes());
        zip.extend_from_slice(&[0; 10]);
        zip.extend_from_slice(&2u32.to_le_bytes());
        zip.extend_from_slice(&2u32.to_le_bytes());
        zip.extend_from_slice(&(name.len() as u16).to_le_bytes());
        zip.extend_from_slice(&0u16.to_le_bytes());
        zip.extend_from_slice(name.as_bytes());
        zip.extend_from_slice(b"hi");
    }
    zip
}

fn ooxml_zip(folder: &str) -> Vec<u8> {
    zip_with(
        &["[Content_Types].xml", &format!("{folder}document.xml")],
        0,
    )
}

/// An OLE compound file with the given storages and streams.
fn ole_with(storages: &[&str], streams: &[&str]) -> Vec<u8> {
    let mut file = cfb::CompoundFile::create(std::io::Cursor::new(Vec::new())).unwrap();
    for storage in storages {
        file.create_storage(storage).unwrap();
    }
    for stream in streams {
        std::io::Write::write_all(&mut file.create_stream(stream).unwrap(), b"data").unwrap();
    }
    file.into_inner().into_inner()
}

fn iso_image() -> Vec<u8> {
    let mut iso = vec![0u8; 0x8010];
    iso[0x8001..0x8006].copy_from_slice(b"CD001");
    iso
}

/// Describes `data` named `name` and checks its risky kind and, when given, its sniffed type.
fn check_kind(name: &str, data: &[u8], risky: Option<RiskyKind>, sniffed: Option<&str>) {
    let file = attachment::describe(Some(name.into()), "application/octet-stream", data);
    assert_eq!(file.risky, risky, "{name}");
    if sniffed.is_some() {
        assert_eq!(file.sniffed_type.as_deref(), sniffed, "{name}");
    }
}

#[test]
fn risky_kinds() {
    use RiskyKind::*;
    let plist = b"<?xml version=\"1.0\"?>\n<!DOCTYPE plist><plist><key>PayloadType</key></plist>";
    let lnk = b"\x4C\x00\x00\x00\x01\x14\x02\x00\x00\x00\x00\x00\xC0\x00";
    let svg = b"<svg xmlns='http://www.w3.org/2000/svg'/>";
    let macro_docx = zip_with(&["[Content_Types].xml", "word/vbaProject.bin"], 0);
    let encrypted_pdf = b"%PDF-1.4\n1 0 obj\ntrailer << /Encrypt 5 0 R >>";
    let encrypted_ooxml = ole_with(&[], &["/EncryptionInfo", "/EncryptedPackage"]);

    check_kind("page.htm", b"hello", Some(Html), None);
    check_kind("logo.svg", svg, Some(Html), Some("image/svg+xml"));
    check_kind(
        "quote.iso",
        &iso_image(),
        Some(DiskImage),
        Some("application/x-iso9660-image"),
    );
    check_kind(
        "disk.vhdx",
        b"vhdxfile....",
        Some(DiskImage),
        Some("application/x-vhdx"),
    );
    check_kind(
        "doc.lnk",
        lnk,
        Some(Shortcut),
        Some("application/x-ms-shortcut"),
    );
    check_kind(
        "site.url",
        b"[InternetShortcut]\r\nURL=http://x",
        Some(Shortcut),
        None,
    );
    check_kind("run.js", b"WScript.Echo(1)", Some(Script), None);
    let jar = zip_with(&["META-INF/MANIFEST.MF"], 0);
    check_kind(
        "tool.jar",
        &jar,
        Some(Script),
        Some("application/java-archive"),
    );
    check_kind(
        "setup.scr",
        b"MZ..",
        Some(Executable),
        Some("application/x-msdownload"),
    );
    check_kind("budget.xlsm", &ooxml_zip("xl/"), Some(MacroDocument), None);
    check_kind("letter.docx", &macro_docx, Some(MacroDocument), None);
    let macro_doc = ole_with(&["/Macros"], &["/WordDocument"]);
    check_kind(
        "old.doc",
        &macro_doc,
        Some(MacroDocument),
        Some("application/msword"),
    );
    let profile = Some("application/x-apple-aspen-config");
    check_kind(
        "wifi.mobileconfig",
        plist,
        Some(ConfigurationProfile),
        profile,
    );
    let zip = Some("application/zip");
    check_kind(
        "secret.zip",
        &zip_with(&["invoice.pdf"], 1),
        Some(EncryptedContainer),
        zip,
    );
    check_kind("locked.pdf", encrypted_pdf, Some(EncryptedContainer), None);
    check_kind(
        "locked.docx",
        &encrypted_ooxml,
        Some(EncryptedContainer),
        None,
    );
    check_kind("files.zip", &zip_with(&["a.txt"], 0), Some(Archive), zip);
    check_kind(
        "files.rar",
        b"Rar!\x1A\x07\x01\x00",
        Some(Archive),
        Some("application/vnd.rar"),
    );
    check_kind(
        "files.7z",
        b"7z\xBC\xAF\x27\x1C\x00\x04",
        Some(Archive),
        None,
    );
    check_kind(
        "log.gz",
        b"\x1F\x8B\x08\x00",
        Some(Archive),
        Some("application/gzip"),
    );
    check_kind("report.pdf", b"%PDF-1.7\n", None, Some("application/pdf"));
    check_kind(
        "photo.png",
        b"\x89PNG\r\n\x1A\n....",
        None,
        Some("image/png"),
    );
    check_kind("notes.txt", b"plain words", None, None);
}

#[test]
fn extensions_ignore_trailing_dots_and_spaces() {
    assert_eq!(
        attachment::extension_of("invoice.pdf.exe. "),
        Some("exe".into())
    );
    assert_eq!(attachment::extension_of(".bashrc"), None);
    assert_eq!(
        attachment::extension_of("C:\\temp\\Report.HTML"),
        Some("html".into())
    );
}

/// One TNEF attribute: level, tag, length, data and the checksum of the data.
fn tnef_attribute(level: u8, tag: u32, data: &[u8]) -> Vec<u8> {
    let mut out = vec![level];
    out.extend_from_slice(&tag.to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
    let sum = data.iter().fold(0u16, |s, &b| s.wrapping_add(u16::from(b)));
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

/// A MAPI property list with one Unicode string property.
fn mapi_unicode(id: u16, text: &str) -> Vec<u8> {
    let mut value: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
    value.extend_from_slice(&[0, 0]);
    let mut out = 1u32.to_le_bytes().to_vec();
    out.extend_from_slice(&0x001Fu16.to_le_bytes());
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(&value);
    out.resize(out.len().div_ceil(4) * 4, 0);
    out
}

/// A TNEF stream with one attachment: an 8.3 title, data, and a long name in MAPI.
pub(crate) fn tnef_with_file(title: &str, long_name: &str, data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x9F, 0x3E, 0x22, 0x01, 0x00];
    out.extend(tnef_attribute(
        1,
        0x0001_8004,
        b"Subject of the rich message\0",
    ));
    out.extend(tnef_attribute(2, 0x0006_9002, &[0; 14]));
    out.extend(tnef_attribute(
        2,
        0x0001_8010,
        format!("{title}\0").as_bytes(),
    ));
    out.extend(tnef_attribute(2, 0x0006_800F, data));
    out.extend(tnef_attribute(
        2,
        0x0006_9005,
        &mapi_unicode(0x3707, long_name),
    ));
    out
}

#[test]
fn tnef_attachments_are_listed_with_their_long_names() {
    let stream = tnef_with_file("INVOIC~1.JS", "invoice.pdf.js", b"WScript.Shell");
    let headers = "Content-Type: application/ms-tnef; name=\"winmail.dat\"\r\nContent-Transfer-Encoding: base64";
    let facts = read(&with_attachment(headers, &base64(&stream)));

    let names: Vec<_> = facts
        .attachments
        .iter()
        .map(|a| a.name.as_deref().unwrap())
        .collect();
    assert_eq!(names, ["winmail.dat", "invoice.pdf.js"]);
    let inner = &facts.attachments[1];
    assert_eq!(inner.risky, Some(RiskyKind::Script));
    assert_eq!(inner.size, 13);
    assert!(facts.problems.is_empty(), "{:?}", facts.problems);
}

#[test]
fn a_cut_tnef_stream_keeps_what_was_read_and_says_where_it_stopped() {
    let mut stream = tnef_with_file("A.TXT", "a.txt", b"first");
    stream.extend(tnef_attribute(2, 0x0006_9002, &[0; 14]));
    stream.extend_from_slice(&[2, 0x10, 0x80, 0x01, 0x00, 0xFF, 0xFF]);
    let headers = "Content-Type: application/ms-tnef\r\nContent-Transfer-Encoding: base64";
    let facts = read(&with_attachment(headers, &base64(&stream)));
    assert!(
        facts
            .attachments
            .iter()
            .any(|a| a.name.as_deref() == Some("a.txt"))
    );
    assert!(
        facts
            .problems
            .iter()
            .any(|p| p.contains("TNEF: stream cut")),
        "{:?}",
        facts.problems
    );
}

#[test]
fn uuencoded_files_in_text_are_attachments() {
    // "hello.js" holding "alert(1)\n", uuencoded.
    let body = "see below\r\n\r\nbegin 644 hello.js\r\n)86QE<G0H,2D*\r\n`\r\nend\r\n";
    let raw = format!("From: a@example.com\r\nSubject: uu\r\n\r\n{body}");
    let facts = read(raw.as_bytes());
    let file = &facts.attachments[0];
    assert_eq!(file.name.as_deref(), Some("hello.js"));
    assert_eq!(file.size, 9);
    assert_eq!(
        file.sha256,
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"alert(1)\n"))
    );
    assert_eq!(file.risky, Some(RiskyKind::Script));
}

#[test]
fn unknown_charset_falls_back_to_windows_1252_with_a_problem() {
    let raw = b"From: a@example.com\r\nContent-Type: text/plain; charset=x-martian\r\n\
        Content-Transfer-Encoding: 8bit\r\n\r\ncaf\xE9 cr\xE8me\r\n";
    let facts = read(raw);
    assert_eq!(facts.text_bodies, ["caf\u{e9} cr\u{e8}me\r\n"]);
    assert_eq!(
        facts.problems,
        ["part 0: unknown charset x-martian, read as Windows-1252"]
    );
}

#[test]
fn a_known_charset_is_used_without_a_problem() {
    let raw = b"From: a@example.com\r\nContent-Type: text/plain; charset=koi8-r\r\n\r\n\xF0\xD2\xC9\xD7\xC5\xD4\r\n";
    let facts = read(raw);
    assert_eq!(facts.text_bodies, ["Привет\r\n"]);
    assert!(facts.problems.is_empty(), "{:?}", facts.problems);
}

#[test]
fn unknown_transfer_encoding_is_read_as_is_with_a_problem() {
    let raw = b"From: a@example.com\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: x-rot13\r\n\r\n<a href=x>y</a>\r\n";
    let facts = read(raw);
    assert_eq!(facts.html_bodies, ["<a href=x>y</a>\r\n"]);
    assert_eq!(
        facts.problems,
        ["part 0: unknown transfer encoding x-rot13, read as is"]
    );
}

#[test]
fn a_truncated_mime_tree_keeps_its_parts_and_says_it_is_cut() {
    let raw = "From: a@example.com\r\nContent-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n\
        --outer\r\nContent-Type: text/plain\r\n\r\nhello\r\n\
        --outer\r\nContent-Type: application/pdf; name=\"a.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjc";
    let facts = read(raw.as_bytes());
    assert_eq!(facts.text_bodies.len(), 1);
    assert!(facts.text_bodies[0].starts_with("hello"));
    assert_eq!(facts.attachments[0].name.as_deref(), Some("a.pdf"));
    let cut = "multipart boundary \"outer\" is never closed: the message may be truncated";
    assert!(
        facts.problems.iter().any(|p| p == cut),
        "{:?}",
        facts.problems
    );
}

#[test]
fn attached_messages_are_read_one_level_deep() {
    let innermost = "From: deep@example.com\r\nSubject: deepest\r\n\r\nthird\r\n";
    let inner = format!(
        "From: Inner@Example.com\r\nSubject: inner\r\nContent-Type: multipart/mixed; boundary=\"i\"\r\n\r\n\
         --i\r\nContent-Type: text/plain\r\n\r\nsecond\r\n\
         --i\r\nContent-Type: message/rfc822\r\n\r\n{innermost}\r\n--i--\r\n"
    );
    let outer = format!(
        "From: outer@example.com\r\nSubject: outer\r\nContent-Type: multipart/mixed; boundary=\"o\"\r\n\r\n\
         --o\r\nContent-Type: text/plain\r\n\r\nfirst\r\n\
         --o\r\nContent-Type: message/rfc822\r\n\r\n{inner}\r\n--o--\r\n"
    );
    let facts = read(outer.as_bytes());
    assert_eq!(facts.attached_messages.len(), 1);
    let attached = &facts.attached_messages[0];
    assert_eq!(attached.headers.subject.as_deref(), Some("inner"));
    assert_eq!(
        attached.headers.from.as_ref().unwrap().address.as_deref(),
        Some("inner@example.com")
    );
    assert!(attached.text_bodies[0].starts_with("second"));
    assert!(attached.attached_messages.is_empty());
    assert_eq!(attached.attachments.len(), 1);
    assert_eq!(attached.attachments[0].declared_type, "message/rfc822");
    assert!(attached.attachments[0].size >= innermost.len());
}

#[test]
fn parts_beyond_the_limit_are_skipped_with_a_problem() {
    let mut raw = String::from(
        "From: a@example.com\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n",
    );
    for i in 0..MAX_PARTS + 50 {
        raw.push_str(&format!(
            "--b\r\nContent-Type: application/octet-stream; name=\"f{i}.bin\"\r\n\r\nx\r\n"
        ));
    }
    raw.push_str("--b--\r\n");
    let facts = read(raw.as_bytes());
    assert_eq!(facts.attachments.len(), MAX_PARTS);
    assert!(
        facts
            .problems
            .iter()
            .any(|p| p.contains("more than 200 parts")),
        "{:?}",
        facts.problems
    );
}

#[test]
fn long_bodies_and_oversized_input_are_cut_with_problems() {
    let mut raw = b"From: a@example.com\r\nSubject: big\r\n\r\n".to_vec();
    raw.resize(MAX_TEXT_BYTES + 1000, b'a');
    let facts = read(&raw);
    assert_eq!(facts.text_bodies[0].len(), MAX_TEXT_BYTES);
    assert!(
        facts.problems.iter().any(|p| p.contains("only the first")),
        "{:?}",
        facts.problems
    );

    raw.resize(MAX_MESSAGE_BYTES + 10, b'a');
    let facts = read(&raw);
    assert!(
        facts.problems[0].starts_with(&format!("the input is {} bytes", MAX_MESSAGE_BYTES + 10))
    );
}

#[test]
fn a_bare_tnef_stream_is_read_as_a_message() {
    let facts = read(&tnef_with_file("A.HTM", "a.htm", b"<html>"));
    assert_eq!(
        facts.headers.subject.as_deref(),
        Some("Subject of the rich message")
    );
    assert_eq!(facts.attachments[0].risky, Some(RiskyKind::Html));
}

/// A TNEF stream with one attachment holding an embedded message, itself a TNEF stream whose
/// MAPI properties give a subject.
pub(crate) fn tnef_with_embedded_message(subject: &str) -> Vec<u8> {
    let mut inner = vec![0x78, 0x9F, 0x3E, 0x22, 0x02, 0x00];
    inner.extend(tnef_attribute(
        1,
        0x0006_9003,
        &mapi_unicode(0x0037, subject),
    ));

    let iid_imessage = [7, 3, 2, 0, 0, 0, 0, 0, 0xC0, 0, 0, 0, 0, 0, 0, 0x46];
    let mut object = iid_imessage.to_vec();
    object.extend_from_slice(&inner);
    let mut props = 1u32.to_le_bytes().to_vec();
    props.extend_from_slice(&0x000Du16.to_le_bytes());
    props.extend_from_slice(&0x3701u16.to_le_bytes());
    props.extend_from_slice(&1u32.to_le_bytes());
    props.extend_from_slice(&(object.len() as u32).to_le_bytes());
    props.extend_from_slice(&object);
    props.resize(props.len().div_ceil(4) * 4, 0);

    let mut out = vec![0x78, 0x9F, 0x3E, 0x22, 0x01, 0x00];
    out.extend(tnef_attribute(2, 0x0006_9002, &[0; 14]));
    out.extend(tnef_attribute(2, 0x0006_9005, &props));
    out
}

#[test]
fn a_message_embedded_in_tnef_is_an_attached_message() {
    let headers = "Content-Type: application/ms-tnef\r\nContent-Transfer-Encoding: base64";
    let stream = tnef_with_embedded_message("inner subject");
    let facts = read(&with_attachment(headers, &base64(&stream)));
    assert_eq!(facts.attached_messages.len(), 1);
    assert_eq!(
        facts.attached_messages[0].headers.subject.as_deref(),
        Some("inner subject")
    );
}
