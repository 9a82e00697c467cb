use super::*;
use chrono::{DateTime, Utc};
use serde_json::json;

/// The header of the gateway's own export.
const HEADER: &str = "Date,Sender,Header_From,Header_Return-Path,Recipients,Sender_IP_Address,\
                      Message_ID,Subject,Message_Size\n";

fn now() -> Timestamp {
    "2024-06-01T12:00:00Z".parse().expect("a time")
}

fn time(text: &str) -> Timestamp {
    DateTime::parse_from_rfc3339(text)
        .expect("a time")
        .with_timezone(&Utc)
}

/// Reads a whole export handed over in the given chunks.
fn read_chunks<'a>(
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Vec<RowOutcome>, ExportError> {
    let mut reader = ExportReader::new(now());
    let mut out = Vec::new();
    for chunk in chunks {
        reader.feed(chunk, &mut out)?;
    }
    reader.finish(&mut out)?;
    Ok(out)
}

fn read(input: &str) -> Vec<RowOutcome> {
    read_chunks([input.as_bytes()]).expect("a readable header")
}

/// One line per outcome: `<line>: <Message-ID> -> <recipients>` for a good row, and the
/// reason for a bad one.
fn summary(outcomes: &[RowOutcome]) -> Vec<String> {
    outcomes
        .iter()
        .map(|outcome| match outcome {
            RowOutcome::Alerts { line, drafts } => {
                let recipients: Vec<&str> =
                    drafts.iter().map(|d| d.recipients[0].as_str()).collect();
                let id = drafts[0].message_id.as_ref().map(MessageId::as_str);
                format!("{line}: {} -> {}", id.unwrap_or("-"), recipients.join(" "))
            }
            RowOutcome::Bad(err) => err.reason.clone(),
        })
        .collect()
}

fn check(input: &str, expected: &[&str]) {
    assert_eq!(summary(&read(input)), expected, "{input:?}");
}

fn drafts(outcome: &RowOutcome) -> &[AlertDraft] {
    match outcome {
        RowOutcome::Alerts { drafts, .. } => drafts,
        RowOutcome::Bad(err) => panic!("a bad row: {}", err.reason),
    }
}

fn bad(outcome: &RowOutcome) -> &RowError {
    match outcome {
        RowOutcome::Bad(err) => err,
        RowOutcome::Alerts { line, .. } => panic!("line {line} was read"),
    }
}

#[test]
fn the_known_header_maps_every_column() {
    let input = format!(
        "{HEADER}2024-05-01 09:30:00,Bounce@Sender.zz,\"\"\"Jane Sender\"\" <jane@sender.zz>\",\
         bounce@sender.zz,\"Alice@Example.zz; bob@example.zz\",192.0.2.10,\
         <a1b2c3@mail.sender.zz>,Invoice overdue,48213\n"
    );
    let outcomes = read(&input);
    assert_eq!(
        summary(&outcomes),
        ["2: a1b2c3@mail.sender.zz -> alice@example.zz bob@example.zz"]
    );

    let drafts = drafts(&outcomes[0]);
    let alice = &drafts[0];
    assert_eq!(alice.kind, AlertKind::SearchExport);
    assert_eq!(
        alice.dedup_key,
        "export:a1b2c3@mail.sender.zz:alice@example.zz"
    );
    assert_eq!(
        drafts[1].dedup_key,
        "export:a1b2c3@mail.sender.zz:bob@example.zz"
    );
    assert_eq!(alice.time, time("2024-05-01T09:30:00Z"));
    assert_eq!(alice.message_id, MessageId::parse("a1b2c3@mail.sender.zz"));
    assert_eq!(alice.subject.as_deref(), Some("Invoice overdue"));
    assert_eq!(alice.sender.as_deref(), Some("bounce@sender.zz"));
    assert_eq!(alice.recipients, ["alice@example.zz"]);
    assert!(alice.threats.is_empty());
    assert!(alice.notes.is_empty(), "{:?}", alice.notes);
    assert_eq!(alice.link, None);
    assert_eq!(
        alice.raw,
        json!({
            "Date": "2024-05-01 09:30:00",
            "Sender": "Bounce@Sender.zz",
            "Header_From": "\"Jane Sender\" <jane@sender.zz>",
            "Header_Return-Path": "bounce@sender.zz",
            "Recipients": "Alice@Example.zz; bob@example.zz",
            "Sender_IP_Address": "192.0.2.10",
            "Message_ID": "<a1b2c3@mail.sender.zz>",
            "Subject": "Invoice overdue",
            "Message_Size": "48213",
        })
    );
    let keys: Vec<&String> = alice.raw.as_object().expect("an object").keys().collect();
    assert_eq!(keys[0], "Date", "the raw object keeps the header's order");
}

#[test]
fn columns_are_found_by_name_whatever_their_order_case_or_punctuation() {
    for message_id in [
        "Message_ID",
        "Message-ID",
        "Message ID",
        "MessageID",
        "message_id",
    ] {
        let input = format!(
            "spam score,RECIPIENTS,{message_id},subject\n\
             97,a@example.zz,<m1@x.zz>,Hello\n"
        );
        let outcomes = read(&input);
        assert_eq!(
            summary(&outcomes),
            ["2: m1@x.zz -> a@example.zz"],
            "{message_id}"
        );
        let draft = &drafts(&outcomes[0])[0];
        assert_eq!(draft.subject.as_deref(), Some("Hello"));
        assert_eq!(draft.sender, None);
        assert_eq!(draft.raw["spam score"], "97", "unknown columns are kept");
        assert_eq!(
            draft.raw[message_id], "<m1@x.zz>",
            "names are kept as given"
        );
        assert_eq!(draft.time, now(), "no Date column");
        assert_eq!(
            draft.notes,
            ["no Date in the row; the alert's time is when the export arrived"]
        );
    }
}

#[test]
fn a_byte_order_mark_and_crlf_line_ends_read_like_plain_lf() {
    let plain = "Recipients,Message_ID\na@x.zz,<m1@x.zz>\nb@x.zz,<m2@x.zz>\n";
    let windows = "\u{feff}Recipients,Message_ID\r\na@x.zz,<m1@x.zz>\r\nb@x.zz,<m2@x.zz>\r\n";
    assert_eq!(read(plain), read(windows));
    check(windows, &["2: m1@x.zz -> a@x.zz", "3: m2@x.zz -> b@x.zz"]);

    // Only the first mark is dropped, however the input is split; a second one, or the start
    // of one, is data. Header names ignore it, as they ignore all punctuation.
    let double = "\u{feff}\u{feff}Recipients,Message_ID\na@x.zz,<m1@x.zz>\n".as_bytes();
    let outcomes = read_chunks([double]).expect("a header");
    assert_eq!(summary(&outcomes), ["2: m1@x.zz -> a@x.zz"]);
    assert_eq!(read_chunks(double.chunks(1)).expect("a header"), outcomes);
    assert!(
        drafts(&outcomes[0])[0]
            .raw
            .get("\u{feff}Recipients")
            .is_some()
    );

    let partial = &b"\xEF\xBBRecipients,Message_ID\na@x.zz,<m1@x.zz>\n"[..];
    let outcomes = read_chunks([partial]).expect("a header");
    assert_eq!(summary(&outcomes), ["2: m1@x.zz -> a@x.zz"]);
    assert!(
        drafts(&outcomes[0])[0]
            .raw
            .get("\u{fffd}Recipients")
            .is_some()
    );
    assert_eq!(read_chunks(partial.chunks(1)).expect("a header"), outcomes);
}

#[test]
fn a_cr_alone_ends_a_line_as_it_ends_a_row() {
    let input = "Message_ID,Recipients\r<m1@x.zz>,a@x.zz\r\r<m2@x.zz>,\"b@x.zz,\rc@x.zz\"\r\n\
                 <m3@x.zz>,d@x.zz\r";
    let whole = read(input);
    assert_eq!(
        summary(&whole),
        [
            "2: m1@x.zz -> a@x.zz",
            "4: m2@x.zz -> b@x.zz c@x.zz",
            "6: m3@x.zz -> d@x.zz"
        ]
    );
    assert_eq!(
        read_chunks(input.as_bytes().chunks(1)).expect("a header"),
        whole
    );
}

#[test]
fn repeated_column_names_are_kept_apart_in_the_raw_row() {
    let outcomes = read("Message_ID,Note,Recipients,Note,,\n<m1@x.zz>,one,a@x.zz,two,x,y\n");
    let raw = &drafts(&outcomes[0])[0].raw;
    assert_eq!(
        raw,
        &json!({"Message_ID": "<m1@x.zz>", "Note": "one", "Recipients": "a@x.zz",
                "Note (2)": "two", "": "x", " (2)": "y"})
    );
}

#[test]
fn quoted_fields_keep_commas_quotes_and_line_breaks_and_lines_stay_counted() {
    let input = "Message_ID,Subject,Recipients\n\
                 <m1@x.zz>,\"Hello, world\",a@x.zz\n\
                 <m2@x.zz>,\"She said \"\"pay now\"\"\",b@x.zz\n\
                 <m3@x.zz>,\"three\nline\r\nsubject\",c@x.zz\n\
                 \n\
                 <m4@x.zz>,after,\"d@x.zz,\ne@x.zz\"\n\
                 <m5@x.zz>,last,f@x.zz";
    let outcomes = read(input);
    assert_eq!(
        summary(&outcomes),
        [
            "2: m1@x.zz -> a@x.zz",
            "3: m2@x.zz -> b@x.zz",
            "4: m3@x.zz -> c@x.zz",
            "8: m4@x.zz -> d@x.zz e@x.zz",
            "10: m5@x.zz -> f@x.zz",
        ]
    );
    let subjects: Vec<Option<&str>> = outcomes
        .iter()
        .map(|o| drafts(o)[0].subject.as_deref())
        .collect();
    assert_eq!(
        subjects,
        [
            Some("Hello, world"),
            Some("She said \"pay now\""),
            Some("three\nline\r\nsubject"),
            Some("after"),
            Some("last"),
        ]
    );
}

#[test]
fn chunks_may_split_anything() {
    let input = "\u{feff}Date,Message_ID,Subject,Recipients\r\n\
                 2024-05-01T09:30:00Z,<m1@x.zz>,\"Grüße, \"\"Jörg\"\"\",a@x.zz\r\n\
                 \r\n\
                 2024-05-01 10:00:00,<m2@x.zz>,\"two\r\nlines 🎣\",\"b@x.zz; c@x.zz\"\r\n\
                 2024-05-01 10:00:00,<m3@x.zz>,too,many,fields\r\n\
                 ,,,\r\n\
                 \"Wed, 01 May 2024 12:00:00 +0200\",<m4@x.zz>,no newline at the end,d@x.zz";
    let bytes = input.as_bytes();
    let whole = read_chunks([bytes]).expect("readable");
    assert_eq!(
        summary(&whole),
        [
            "2: m1@x.zz -> a@x.zz",
            "4: m2@x.zz -> b@x.zz c@x.zz",
            "line 6: the row has 5 fields, the header has 4",
            "8: m4@x.zz -> d@x.zz",
        ]
    );

    let one_byte_at_a_time = read_chunks(bytes.chunks(1)).expect("readable");
    assert_eq!(one_byte_at_a_time, whole);
    for size in [2, 3, 5, 7, 64] {
        assert_eq!(
            read_chunks(bytes.chunks(size)).expect("readable"),
            whole,
            "chunks of {size}"
        );
    }
    for split in 0..=bytes.len() {
        let (head, tail) = bytes.split_at(split);
        assert_eq!(
            read_chunks([head, tail]).expect("readable"),
            whole,
            "split at {split}"
        );
    }
    let with_empty_chunks = [&bytes[..1], &[][..], &bytes[1..40], &[][..], &bytes[40..]];
    assert_eq!(read_chunks(with_empty_chunks).expect("readable"), whole);
}

#[test]
fn a_missing_required_column_refuses_the_export_and_names_it() {
    let cases = [
        (
            "Date,Sender,Recipients,Subject\n2024-05-01,a@x.zz,b@x.zz,Hi\n",
            "the CSV has no Message_ID column (columns found: Date, Sender, Recipients, Subject)",
        ),
        (
            "Date,Message-ID\n",
            "the CSV has no Recipients column (columns found: Date, Message-ID)",
        ),
        (
            "Date,Sender\n",
            "the CSV has no Message_ID or Recipients column (columns found: Date, Sender)",
        ),
        (
            "Date;Recipients;Message_ID\n",
            "the CSV has no Message_ID or Recipients column (columns found: \
             Date;Recipients;Message_ID); its columns seem to be separated by ';' or tabs, but \
             an export must use commas",
        ),
        (
            "Message_ID,Recipients,message-id\n",
            "the columns \"Message_ID\" and \"message-id\" both name the Message_ID column; keep \
             one",
        ),
        ("", "the export is empty: it has no header row"),
        ("\r\n\n\r\n", "the export is empty: it has no header row"),
    ];
    for (input, expected) in cases {
        let err = read_chunks([input.as_bytes()]).expect_err(input);
        assert_eq!(err.to_string(), expected, "{input:?}");
    }
}

#[test]
fn a_refused_header_stays_refused() {
    let mut reader = ExportReader::new(now());
    let mut out = Vec::new();
    let err = reader
        .feed(b"Date,Sender\n", &mut out)
        .expect_err("no required columns");
    assert_eq!(reader.feed(b"a,b\n", &mut out), Err(err.clone()));
    assert_eq!(reader.finish(&mut out), Err(err));
    assert!(out.is_empty());
}

#[test]
fn a_header_alone_is_an_export_without_rows() {
    let mut reader = ExportReader::new(now());
    let mut out = Vec::new();
    reader.feed(HEADER.as_bytes(), &mut out).expect("a header");
    reader.finish(&mut out).expect("a header");
    assert!(out.is_empty());
    assert_eq!(reader.rows_read(), 0);
}

#[test]
fn bad_rows_are_reported_by_line_and_their_neighbours_kept() {
    let input = "Message_ID,Recipients,Subject,Note\n\
                 <m1@x.zz>,a@x.zz,ok,\n\
                 <m2@x.zz>,,no recipients,\n\
                 <m3@x.zz>,\" ; , \",only separators,\n\
                 <m4@x.zz>,\"a@x.zz, not-an-address\",bad entry,\n\
                 ,a@x.zz,no id,\n\
                 <>,a@x.zz,an empty id,\n\
                 <m7@x.zz>,a@x.zz,too few\n\
                 <m8@x.zz>,a@x.zz,too,many,fields\n\
                 ,,,\n\
                 \x20\n\
                 <m11@x.zz>,\"A@x.zz; a@x.zz,\"\"Bee\"\" <B@x.zz>\",duplicates,\n";
    let mut reader = ExportReader::new(now());
    let mut outcomes = Vec::new();
    reader
        .feed(input.as_bytes(), &mut outcomes)
        .expect("a header");
    reader.finish(&mut outcomes).expect("a header");
    assert_eq!(
        summary(&outcomes),
        [
            "2: m1@x.zz -> a@x.zz",
            "line 3: Recipients is empty",
            "line 4: Recipients is empty",
            "line 5: Recipients entry \"not-an-address\" is not an e-mail address",
            "line 6: Message_ID is empty",
            "line 7: Message_ID \"<>\" holds no id",
            "line 8: the row has 3 fields, the header has 4",
            "line 9: the row has 5 fields, the header has 4",
            "12: m11@x.zz -> a@x.zz b@x.zz",
        ]
    );
    assert_eq!(
        reader.rows_read(),
        9,
        "the all-empty and blank rows are not counted"
    );

    let err = bad(&outcomes[1]);
    assert_eq!(err.line, 3);
    assert_eq!(err.event.reason, err.reason);
    assert_eq!(
        err.event.raw,
        json!({"Message_ID": "<m2@x.zz>", "Recipients": "", "Subject": "no recipients", "Note": ""})
    );
    assert_eq!(err.event.key, content_key(&err.event.raw));
    assert!(err.event.key.starts_with("sha256:"));
    assert_eq!(
        bad(&outcomes[7]).event.raw,
        json!({"Message_ID": "<m8@x.zz>", "Recipients": "a@x.zz", "Subject": "too",
               "Note": "many", "(column 5)": "fields"})
    );
}

#[test]
fn bytes_that_are_not_utf8_are_replaced_except_in_message_id_and_recipients() {
    let mut input = b"Message_ID,Recipients,Subject\n".to_vec();
    input.extend_from_slice(b"<m1@x.zz>,a@x.zz,Gr\xFC\xDFe\n");
    input.extend_from_slice(b"<m2@x.zz>,b\xFC@x.zz,hello\n");
    input.extend_from_slice(b"<m3\xFC@x.zz>,c@x.zz,hello\n");
    let outcomes = read_chunks([&input[..]]).expect("a header");
    assert_eq!(
        summary(&outcomes),
        [
            "2: m1@x.zz -> a@x.zz",
            "line 3: Recipients is not valid UTF-8",
            "line 4: Message_ID is not valid UTF-8",
        ]
    );
    let draft = &drafts(&outcomes[0])[0];
    assert_eq!(draft.subject.as_deref(), Some("Gr\u{fffd}\u{fffd}e"));
    assert_eq!(
        draft.notes,
        [
            "Subject is not valid UTF-8; the bytes that are not were replaced with U+FFFD",
            "no Date in the row; the alert's time is when the export arrived",
        ]
    );
}

#[test]
fn dates_in_the_usual_spellings_are_read_and_others_noted() {
    let cases = [
        ("2024-05-01T09:30:00Z", Some("2024-05-01T09:30:00Z")),
        ("2024-05-01T11:30:00+02:00", Some("2024-05-01T09:30:00Z")),
        ("2024-05-01 09:30:00", Some("2024-05-01T09:30:00Z")),
        ("2024-05-01T09:30:00", Some("2024-05-01T09:30:00Z")),
        (
            "\"Wed, 01 May 2024 11:30:00 +0200\"",
            Some("2024-05-01T09:30:00Z"),
        ),
        ("05/01/2024 9:30 AM", None),
    ];
    for (date, expected) in cases {
        let input = format!("Date,Message_ID,Recipients\n{date},<m1@x.zz>,a@x.zz\n");
        let draft = drafts(&read(&input)[0])[0].clone();
        match expected {
            Some(expected) => {
                assert_eq!(draft.time, time(expected), "{date}");
                assert!(draft.notes.is_empty(), "{date}: {:?}", draft.notes);
            }
            None => {
                assert_eq!(draft.time, now(), "{date}");
                assert_eq!(
                    draft.notes,
                    [format!(
                        "Date \"{date}\" could not be read; the alert's time is when the export \
                         arrived"
                    )]
                );
            }
        }
    }
}

#[test]
fn the_sender_falls_back_to_the_header_from() {
    let cases: [(&str, &str, Option<&str>, &[&str]); 5] = [
        ("Env@X.zz", "hdr@x.zz", Some("env@x.zz"), &[]),
        ("", "\"Hdr\" <Hdr@X.zz>", Some("hdr@x.zz"), &[]),
        ("<>", "hdr@x.zz", Some("hdr@x.zz"), &[]),
        (
            "MAILER-DAEMON",
            "hdr@x.zz",
            Some("hdr@x.zz"),
            &["Sender \"MAILER-DAEMON\" is not an e-mail address"],
        ),
        ("<>", "", None, &[]),
    ];
    for (sender, header_from, expected, notes) in cases {
        let input = format!(
            "Date,Sender,Header_From,Message_ID,Recipients\n\
             2024-05-01 09:30:00,\"{sender}\",\"{}\",<m1@x.zz>,a@x.zz\n",
            header_from.replace('"', "\"\"")
        );
        let draft = drafts(&read(&input)[0])[0].clone();
        assert_eq!(
            draft.sender.as_deref(),
            expected,
            "{sender:?} {header_from:?}"
        );
        assert_eq!(draft.notes, notes, "{sender:?} {header_from:?}");
    }
}

#[test]
fn the_same_message_pushed_twice_gets_the_same_keys() {
    let first = format!(
        "{HEADER}2024-05-01 09:30:00,s@x.zz,,,\"a@x.zz,b@x.zz\",192.0.2.1,<m1@x.zz>,Hi,10\n"
    );
    let second = "Message ID,Recipients\nm1@x.zz ,B@X.zz\n";
    let keys = |input: &str| -> Vec<String> {
        read(input)
            .iter()
            .flat_map(|o| drafts(o).iter().map(|d| d.dedup_key.clone()))
            .collect()
    };
    assert_eq!(
        keys(&first),
        ["export:m1@x.zz:a@x.zz", "export:m1@x.zz:b@x.zz"]
    );
    assert_eq!(keys(second), ["export:m1@x.zz:b@x.zz"]);
}

#[test]
fn a_row_with_many_recipients_gives_each_draft_a_copy_listing_its_own() {
    let row = |count: usize| -> Vec<AlertDraft> {
        let recipients: Vec<String> = (0..count).map(|i| format!("user{i}@x.zz")).collect();
        let input = format!(
            "Date,Message_ID,Recipients\n2024-05-01 09:30:00,<m1@x.zz>,\"{}\"\n",
            recipients.join(", ")
        );
        drafts(&read(&input)[0]).to_vec()
    };

    let drafts = row(FULL_ROW_RECIPIENTS);
    assert_eq!(drafts.len(), FULL_ROW_RECIPIENTS);
    assert!(
        drafts
            .iter()
            .all(|d| d.raw == drafts[0].raw && d.notes.is_empty())
    );

    let drafts = row(FULL_ROW_RECIPIENTS + 50);
    assert_eq!(drafts.len(), FULL_ROW_RECIPIENTS + 50);
    for draft in &drafts {
        assert_eq!(draft.raw["Recipients"], draft.recipients[0].as_str());
        assert_eq!(draft.raw["Message_ID"], "<m1@x.zz>");
        assert_eq!(
            draft.notes,
            ["the row lists 150 recipients; this alert's copy of the row lists only its own"]
        );
    }
}

#[test]
fn a_row_over_1_mib_is_reported_and_skipped_without_being_held() {
    let long_subject = "x".repeat(MAX_ROW_BYTES + 500_000);
    let input = format!(
        "Message_ID,Recipients,Subject\n\
         <m1@x.zz>,a@x.zz,short\n\
         <m2@x.zz>,b@x.zz,\"{long_subject}\nstill the same field\"\n\
         <m3@x.zz>,c@x.zz,short\n"
    );
    let mut reader = ExportReader::new(now());
    let mut outcomes = Vec::new();
    for chunk in input.as_bytes().chunks(64 * 1024) {
        reader.feed(chunk, &mut outcomes).expect("a header");
        assert!(
            reader.buffered_bytes() <= MAX_ROW_BYTES + 64 * 1024,
            "{} bytes held",
            reader.buffered_bytes()
        );
    }
    reader.finish(&mut outcomes).expect("a header");
    let row_bytes =
        "<m2@x.zz>,b@x.zz,\"\"\n".len() + long_subject.len() + "\nstill the same field".len();
    assert_eq!(
        summary(&outcomes),
        [
            "2: m1@x.zz -> a@x.zz".to_owned(),
            format!(
                "line 3: the row is {row_bytes} bytes long, more than the limit of 1 MiB; it was \
                 skipped"
            ),
            "5: m3@x.zz -> c@x.zz".to_owned(),
        ]
    );
    let err = bad(&outcomes[1]);
    assert_eq!(err.event.raw["line"], 3);
    assert_eq!(err.event.raw["bytes"], row_bytes);
    let start = err.event.raw["start"].as_str().expect("a string");
    assert!(
        start.starts_with("<m2@x.zz>,b@x.zz,\"xxx") && start.len() == 256,
        "{start}"
    );
    assert!(
        reader.buffered_bytes() < 16 * 1024,
        "the buffer shrinks after a long row"
    );

    // Just under the limit is still read; what an alert keeps of it is bounded, with a note.
    let subject = "y".repeat(MAX_ROW_BYTES - 100);
    let input = format!("Message_ID,Recipients,Subject\n<m1@x.zz>,a@x.zz,{subject}\n");
    let outcomes = read(&input);
    let draft = &drafts(&outcomes[0])[0];
    assert_eq!(draft.subject.as_deref().map(str::len), Some(4096));
    assert!(draft.notes.iter().any(|n| n.contains("subject was cut")));
    assert_eq!(draft.raw["_cut"], true);
    assert!(draft.raw.to_string().len() < 50 * 1024);
}

#[test]
fn a_big_row_to_many_recipients_costs_each_alert_kilobytes() {
    let recipients: Vec<String> = (0..50).map(|i| format!("u{i}@x.zz")).collect();
    let note = "z".repeat(500_000);
    let input = format!(
        "Message_ID,Recipients,Subject,Note\n<m1@x.zz>,\"{}\",s,{note}\n",
        recipients.join(",")
    );
    let outcomes = read(&input);
    let drafts = drafts(&outcomes[0]);
    assert_eq!(drafts.len(), 50);
    for draft in drafts {
        let kept = draft.raw.to_string();
        assert!(kept.len() < 8 * 1024, "{} bytes kept", kept.len());
        assert_eq!(draft.raw["_cut"], true);
    }
}

#[test]
fn an_oversized_or_overwide_header_refuses_the_export() {
    let long_name = "n".repeat(MAX_ROW_BYTES + 1);
    let input = format!("Message_ID,Recipients,{long_name}\n");
    let err = read_chunks(input.as_bytes().chunks(64 * 1024)).expect_err("too long");
    assert_eq!(err, ExportError::HeaderTooLong);

    let columns = |count: usize| -> String {
        let mut names = vec!["Message_ID".to_owned(), "Recipients".to_owned()];
        names.extend((2..count).map(|i| format!("extra {i}")));
        names.join(",")
    };
    let widest = format!(
        "{}\n<m1@x.zz>,a@x.zz{}\n",
        columns(MAX_COLUMNS),
        ",".repeat(510)
    );
    assert_eq!(summary(&read(&widest)), ["2: m1@x.zz -> a@x.zz"]);
    for count in [MAX_COLUMNS + 1, MAX_COLUMNS + 2, 5000] {
        let err = read_chunks([format!("{}\n", columns(count)).as_bytes()]).expect_err("wide");
        assert_eq!(err, ExportError::TooManyColumns, "{count} columns");
    }
}

#[test]
fn a_row_with_more_fields_than_any_header_may_have_is_counted_not_held() {
    let input = format!(
        "Message_ID,Recipients\n<m1@x.zz>,a@x.zz{}\n<m2@x.zz>,b@x.zz\n",
        ",".repeat(1000)
    );
    let outcomes = read(&input);
    assert_eq!(
        summary(&outcomes),
        [
            "line 2: the row has 1002 fields, the header has 2",
            "3: m2@x.zz -> b@x.zz"
        ]
    );
    assert_eq!(
        bad(&outcomes[0]).event.raw["bytes"],
        1000 + "<m1@x.zz>,a@x.zz\n".len()
    );
}

#[test]
fn a_large_export_streams_in_bounded_memory() {
    const ROWS: u64 = 200_000;
    let mut input = Vec::with_capacity(40 * 1024 * 1024);
    input.extend_from_slice(HEADER.as_bytes());
    for i in 0..ROWS {
        let row = format!(
            "2024-05-01 09:{:02}:{:02},bounce{i}@sender.zz,\
             \"\"\"Sender {i}\"\" <s{i}@sender.zz>\",,user{}@example.zz,192.0.2.{},\
             <msg{i}@mail.sender.zz>,\"Invoice {i}, overdue\",{}\r\n",
            (i / 60) % 60,
            i % 60,
            i % 500,
            i % 250,
            1000 + i
        );
        input.extend_from_slice(row.as_bytes());
    }

    let mut reader = ExportReader::new(now());
    let mut out = Vec::new();
    let mut alerts = 0;
    let mut last_line = 0;
    for chunk in input.chunks(64 * 1024) {
        reader.feed(chunk, &mut out).expect("a header");
        assert!(
            reader.buffered_bytes() <= 16 * 1024,
            "{} bytes held",
            reader.buffered_bytes()
        );
        for outcome in out.drain(..) {
            let RowOutcome::Alerts { line, drafts } = outcome else {
                panic!("{outcome:?}");
            };
            assert_eq!(line, last_line.max(1) + 1);
            last_line = line;
            alerts += drafts.len();
        }
    }
    reader.finish(&mut out).expect("a header");
    assert!(out.is_empty());
    assert_eq!(alerts as u64, ROWS);
    assert_eq!(reader.rows_read(), ROWS);
    assert_eq!(last_line, ROWS + 1);
}

#[test]
fn json_pushes_come_as_an_array_or_under_rows_or_messages() {
    let row = json!({
        "date": "2024-05-01T09:30:00Z",
        "SENDER": "s@x.zz",
        "Message-ID": "<m1@x.zz>",
        "recipients": ["a@x.zz", "B@x.zz; c@x.zz"],
        "Message_Size": 1234,
        "Subject": "Hi",
    });
    let bodies = [
        json!([row.clone()]),
        json!({"rows": [row.clone()]}),
        json!({"Messages": [row.clone()], "search": "from:s@x.zz"}),
    ];
    for body in bodies {
        let outcomes = rows_from_json(&body, now()).expect("a known shape");
        assert_eq!(
            summary(&outcomes),
            ["0: m1@x.zz -> a@x.zz b@x.zz c@x.zz"],
            "{body}"
        );
        let draft = &drafts(&outcomes[0])[0];
        assert_eq!(draft.sender.as_deref(), Some("s@x.zz"));
        assert_eq!(draft.subject.as_deref(), Some("Hi"));
        assert_eq!(draft.time, time("2024-05-01T09:30:00Z"));
        assert_eq!(draft.raw, row, "the row as received");
    }
}

#[test]
fn json_and_csv_rows_map_alike() {
    let csv = format!(
        "{HEADER}2024-05-01 09:30:00,,Jane <Jane@x.zz>,,\"a@x.zz;b@x.zz\",192.0.2.1,<m1@x.zz>,\
         Hi,\n"
    );
    let body = json!([{
        "Date": "2024-05-01 09:30:00", "Header_From": "Jane <Jane@x.zz>",
        "Recipients": "a@x.zz;b@x.zz", "Message_ID": "<m1@x.zz>", "Subject": "Hi",
    }]);
    let without_raw = |outcomes: Vec<RowOutcome>| -> Vec<AlertDraft> {
        outcomes
            .iter()
            .flat_map(|o| drafts(o).to_vec())
            .map(|draft| AlertDraft {
                raw: Value::Null,
                ..draft
            })
            .collect()
    };
    let from_csv = without_raw(read(&csv));
    assert_eq!(from_csv.len(), 2);
    assert_eq!(
        from_csv,
        without_raw(rows_from_json(&body, now()).expect("an array"))
    );
}

#[test]
fn bad_json_rows_are_reported_by_index_and_their_neighbours_kept() {
    let body = json!({"rows": [
        {"Message_ID": "<m0@x.zz>", "Recipients": "a@x.zz"},
        "not a row",
        {"Recipients": "a@x.zz"},
        {"Message_ID": "<m3@x.zz>"},
        {"Message_ID": "<m4@x.zz>", "Recipients": ["a@x.zz", 7]},
        {"Message_ID": "<m5@x.zz>", "Recipients": {"to": "a@x.zz"}},
        {"Message_ID": "<m6@x.zz>", "Recipients": "a@x.zz", "subject": ["Hi"]},
        {"Message_ID": "<m7@x.zz>", "MessageID": "<m7@x.zz>", "Recipients": "a@x.zz"},
        {"Message_ID": "<m8@x.zz>", "Recipients": "a@x.zz", "Date": null, "Subject": null},
    ]});
    let outcomes = rows_from_json(&body, now()).expect("a known shape");
    assert_eq!(
        summary(&outcomes),
        [
            "0: m0@x.zz -> a@x.zz",
            "rows[1]: expected an object, found a string",
            "rows[2]: Message_ID is missing",
            "rows[3]: Recipients is missing",
            "rows[4]: Recipients[1]: expected a string, found a number",
            "rows[5]: Recipients: expected a string or an array of strings, found an object",
            "rows[6]: subject: expected a string, found an array",
            "rows[7]: the fields \"Message_ID\" and \"MessageID\" both name the Message_ID column",
            "8: m8@x.zz -> a@x.zz",
        ]
    );
    let err = bad(&outcomes[1]);
    assert_eq!(err.line, 1);
    assert_eq!(err.event.raw, json!("not a row"));
    assert_eq!(err.event.key, content_key(&json!("not a row")));
}

#[test]
fn json_bodies_of_another_shape_are_refused_saying_what_was_expected() {
    let cases = [
        (json!("rows"), "found a string"),
        (json!({}), "found an empty object"),
        (
            json!({"results": [], "count": 0}),
            "found an object with the fields results, count",
        ),
        (
            json!({"rows": {"Message_ID": "<m1@x.zz>"}}),
            "found `rows` holding an object",
        ),
        (json!({"messages": null}), "found `messages` holding null"),
    ];
    for (body, found) in cases {
        let err = rows_from_json(&body, now()).expect_err("another shape");
        assert_eq!(
            err.to_string(),
            format!(
                "expected a JSON array of row objects, or an object whose `rows` or `messages` \
                 field holds one; {found}"
            ),
            "{body}"
        );
    }
    assert_eq!(rows_from_json(&json!([]), now()), Ok(Vec::new()));
}
