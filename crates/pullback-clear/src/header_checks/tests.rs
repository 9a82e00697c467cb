use super::*;

fn mailbox(name: Option<&str>, address: &str) -> Mailbox {
    Mailbox {
        name: name.map(str::to_owned),
        address: Some(address.to_owned()),
    }
}

/// Headers of an ordinary message from `name <address>`, with the required headers present.
fn from(name: Option<&str>, address: &str) -> HeaderFacts {
    HeaderFacts {
        from: Some(mailbox(name, address)),
        to: vec![mailbox(None, "someone@corp.example")],
        subject: Some("Hello".to_owned()),
        all: vec![
            ("From".into(), address.into()),
            ("Date".into(), "Mon, 1 Jan 2024 00:00:00 +0000".into()),
        ],
        ..Default::default()
    }
}

fn kinds(headers: &HeaderFacts) -> Vec<FindingKind> {
    check(headers).into_iter().map(|f| f.kind).collect()
}

#[test]
fn an_ordinary_message_has_no_findings() {
    let mut headers = from(Some("Ann Lee"), "ann@corp.example");
    headers.authentication_results = vec!["mx.corp.example; spf=pass smtp.mailfrom=corp.example; dkim=pass header.d=corp.example; dmarc=pass header.from=corp.example".into()];
    headers.return_path = Some("<bounce@mail.corp.example>".into());
    assert_eq!(check(&headers), []);
}

#[test]
fn authentication_failures_are_read_from_the_results() {
    let mut headers = from(None, "a@b.example");
    headers.authentication_results = vec![
        "spf=fail (sender IP is 192.0.2.1) smtp.mailfrom=b.example; dkim=none (message not signed) header.d=none;dmarc=fail action=none header.from=b.example;compauth=fail reason=001".into(),
    ];
    let found = check(&headers);
    let kinds: Vec<_> = found.iter().map(|f| f.kind).collect();
    assert_eq!(
        kinds,
        [
            FindingKind::SpfFail,
            FindingKind::DmarcFail,
            FindingKind::CompositeAuthFail
        ]
    );
    assert_eq!(found[0].header, "Authentication-Results");
    assert!(found[0].value.starts_with("spf=fail"), "{}", found[0].value);
}

#[test]
fn the_topmost_result_counts_and_a_passing_signature_wins() {
    let mut headers = from(None, "a@b.example");
    headers.authentication_results = vec![
        "mx.example; spf=softfail smtp.mailfrom=b.example; dkim=fail header.d=x.example; dkim=pass header.d=b.example; dmarc=none".into(),
        "older.example; spf=pass; dmarc=fail".into(),
    ];
    assert_eq!(
        kinds(&headers),
        [FindingKind::SpfSoftfail, FindingKind::DmarcNone]
    );
}

#[test]
fn received_spf_stands_in_for_missing_results() {
    let mut headers = from(None, "a@b.example");
    headers.received_spf = vec![
        "Fail (protection.outlook.com: domain of b.example does not designate 192.0.2.1)".into(),
    ];
    let found = check(&headers);
    assert_eq!(found[0].kind, FindingKind::SpfFail);
    assert_eq!(found[0].header, "Received-SPF");
}

#[test]
fn display_names_with_another_address_or_domain() {
    let headers = from(Some("support@mybank.example"), "x@mailer.example");
    assert_eq!(kinds(&headers), [FindingKind::DisplayNameAddress]);
    let headers = from(Some("mybank.com Security"), "x@mailer.example");
    assert_eq!(kinds(&headers), [FindingKind::DisplayNameDomain]);
    // A name that repeats the sender's own address or domain is fine; so are initials.
    assert_eq!(
        kinds(&from(Some("x@mailer.example"), "x@mailer.example")),
        []
    );
    assert_eq!(
        kinds(&from(Some("Mr.Wood J. Smith"), "x@mailer.example")),
        []
    );
}

#[test]
fn display_names_naming_a_brand_from_elsewhere() {
    let found = check(&from(
        Some("Microsoft Account Team"),
        "noreply@random-host.example",
    ));
    assert_eq!(found[0].kind, FindingKind::DisplayNameBrand);
    assert_eq!(found[0].header, "From");
    assert!(found[0].value.contains("noreply@random-host.example"));
    assert_eq!(
        kinds(&from(
            Some("Microsoft Account Team"),
            "account@microsoft.com"
        )),
        []
    );
    assert_eq!(
        kinds(&from(Some("PepeBinance"), "a@x.example")),
        [FindingKind::DisplayNameBrand]
    );
}

#[test]
fn disguised_display_names() {
    let found = kinds(&from(Some("Pay\u{200B}Pal Service"), "a@x.example"));
    assert!(
        found.contains(&FindingKind::DisguisedDisplayName),
        "{found:?}"
    );
    let found = kinds(&from(Some("Amаzon Support"), "a@x.example"));
    assert!(
        found.contains(&FindingKind::DisguisedDisplayName),
        "{found:?}"
    );
    let found = kinds(&from(Some("PayPaI"), "a@x.example"));
    assert!(
        found.contains(&FindingKind::DisguisedDisplayName),
        "{found:?}"
    );
}

#[test]
fn lookalike_sender_domains() {
    assert_eq!(
        kinds(&from(None, "service@paypa1.com")),
        [FindingKind::LookalikeDomain]
    );
    assert_eq!(
        kinds(&from(None, "it@c0rp.example")),
        [FindingKind::LookalikeDomain]
    );
    // "раураl.com" in Cyrillic, as the mail arrives: in punycode.
    let found = check(&from(None, "a@xn--l-7sba6dbr.com"));
    assert_eq!(found[0].kind, FindingKind::LookalikeDomain, "{found:?}");
    assert_eq!(
        kinds(&from(None, "a@xn--mnchen-3ya.example")),
        [FindingKind::PunycodeDomain]
    );
    // Numbered hosts of the same family are not look-alikes.
    let mut headers = from(None, "a@host75.example");
    headers.to = vec![mailbox(None, "b@host76.example")];
    assert_eq!(kinds(&headers), []);
}

#[test]
fn replies_that_go_elsewhere() {
    let mut headers = from(None, "ceo@corp-mail.example");
    headers.reply_to = vec![mailbox(None, "ceo.private@gmail.com")];
    let found = check(&headers);
    assert_eq!(found[0].kind, FindingKind::ReplyToFreemail);
    assert_eq!(
        (found[0].header, found[0].value.as_str()),
        ("Reply-To", "ceo.private@gmail.com")
    );

    headers.reply_to = vec![mailbox(None, "billing@other.example")];
    assert_eq!(kinds(&headers), [FindingKind::ReplyToDiffers]);
    headers.reply_to = vec![mailbox(None, "help@support.corp-mail.example")];
    assert_eq!(kinds(&headers), []);
    // Lists set Reply-To to themselves.
    headers.reply_to = vec![mailbox(None, "list@lists.example")];
    headers.list_id = Some("<list.lists.example>".into());
    assert_eq!(kinds(&headers), []);
}

#[test]
fn bounces_that_go_elsewhere() {
    let mut headers = from(None, "a@corp.example");
    headers.return_path = Some("<bounce-123@esp.example>".into());
    let found = check(&headers);
    assert_eq!(found[0].kind, FindingKind::ReturnPathDiffers);
    assert_eq!(found[0].value, "bounce-123@esp.example");
    headers.return_path = Some("<>".into());
    assert_eq!(kinds(&headers), []);
}

#[test]
fn replies_without_an_earlier_message() {
    let mut headers = from(None, "a@corp.example");
    headers.subject = Some("RE: your invoice".into());
    assert_eq!(kinds(&headers), [FindingKind::FakeReply]);
    headers
        .all
        .push(("In-Reply-To".into(), "<1@corp.example>".into()));
    assert_eq!(kinds(&headers), []);
}

#[test]
fn required_headers_missing() {
    let headers = HeaderFacts {
        all: vec![("Content-Type".into(), "text/plain".into())],
        ..Default::default()
    };
    assert_eq!(
        kinds(&headers),
        [FindingKind::MissingFrom, FindingKind::MissingDate]
    );
}
