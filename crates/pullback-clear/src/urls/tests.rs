use std::path::PathBuf;

use super::*;

fn text(body: &str) -> MessageFacts {
    MessageFacts {
        text_bodies: vec![body.to_owned()],
        ..Default::default()
    }
}

fn html(body: &str) -> MessageFacts {
    MessageFacts {
        html_bodies: vec![body.to_owned()],
        ..Default::default()
    }
}

fn urls_of(facts: &MessageFacts) -> Vec<String> {
    extract(facts).into_iter().map(|u| u.url).collect()
}

/// The traits of the first URL in an HTML body.
fn traits_of(body: &str) -> Vec<UrlTrait> {
    let found = extract(&html(body));
    assert!(!found.is_empty(), "no URL in {body}");
    traits(&found[0])
}

#[test]
fn plain_text_urls_lose_the_sentence_around_them() {
    let facts = text("See https://a.example/x?y=1. Or (http://b.example/p), or www.c.example/q!");
    assert_eq!(
        urls_of(&facts),
        [
            "https://a.example/x?y=1",
            "http://b.example/p",
            "http://www.c.example/q"
        ]
    );
}

#[test]
fn non_web_schemes_and_fragments_are_not_links() {
    let facts =
        html(r##"<a href="mailto:a@b.example">m</a><a href="#top">t</a><img src="cid:x1">"##);
    assert!(urls_of(&facts).is_empty());
}

#[test]
fn html_attributes_that_hold_urls_are_read() {
    let body = r#"<html><head><meta http-equiv="Refresh" content="0; URL='https://refresh.example/'"></head>
        <body background="https://bg.example/i.png"><form action="https://form.example/post">
        <button formaction="https://alt.example/post">go</button></form>
        <div data-href="https://data.example/x" data-id="12"></div>
        <img src="https://img.example/a.png"></body></html>"#;
    let found = extract(&html(body));
    let by_attr: Vec<(String, String)> = found
        .iter()
        .map(|u| match &u.found_in {
            UrlSource::HtmlAttribute(a) => (a.clone(), u.host.clone().unwrap()),
            other => panic!("{other:?}"),
        })
        .collect();
    for (attr, host) in [
        ("content", "refresh.example"),
        ("background", "bg.example"),
        ("action", "form.example"),
        ("formaction", "alt.example"),
        ("data-href", "data.example"),
        ("src", "img.example"),
    ] {
        assert!(
            by_attr.contains(&(attr.to_owned(), host.to_owned())),
            "{attr}: {by_attr:?}"
        );
    }
}

#[test]
fn entities_are_decoded_exactly_once() {
    let facts = html(r#"<a href="https://a.example/?x=1&amp;y=2&amp;amp;z=3">go</a>"#);
    let found = extract(&facts);
    assert_eq!(found[0].original, "https://a.example/?x=1&y=2&amp;z=3");
}

#[test]
fn relative_links_resolve_against_base_href() {
    let body =
        r#"<base href="https://site.example/dir/"><a href="login.php">a</a><a href="/root">b</a>"#;
    assert_eq!(
        urls_of(&html(body)),
        [
            "https://site.example/dir/login.php",
            "https://site.example/root"
        ]
    );
}

#[test]
fn relative_links_without_base_are_dropped() {
    assert!(urls_of(&html(r#"<a href="page.html">a</a>"#)).is_empty());
}

#[test]
fn duplicates_collapse_and_keep_the_anchor_text() {
    let body = r#"<a href="https://a.example/">Visit   our
        site</a> https://a.example/ <a href="HTTPS://A.EXAMPLE:443/">again</a>"#;
    let found = extract(&html(body));
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].anchor_text.as_deref(), Some("Visit our site"));
}

#[test]
fn safe_links_are_unwrapped_in_place() {
    let body = r#"<a href="https://eur01.safelinks.protection.outlook.com/?url=http%3A%2F%2F203.0.113.9%2Fpay&amp;data=x&amp;reserved=0">Pay</a>"#;
    let found = extract(&html(body));
    assert_eq!(found[0].url, "http://203.0.113.9/pay");
    assert_eq!(found[0].wrapped_by, Some(Wrapper::SafeLinks));
    assert!(found[0].original.contains("safelinks"));
    assert!(traits(&found[0]).contains(&UrlTrait::IpHost));
}

#[test]
fn url_defense_v2_is_unwrapped() {
    let facts = text(
        "https://urldefense.proofpoint.com/v2/url?u=https-3A__evil.example_a-3Fb-3D1&d=DwMF&c=x&e=",
    );
    let found = extract(&facts);
    assert_eq!(found[0].url, "https://evil.example/a?b=1");
    assert_eq!(found[0].wrapped_by, Some(Wrapper::UrlDefenseV2));
}

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

/// Every answer of the URL Defense decoding service in the shared data: what it decoded, we
/// decode to the same URL; what it refused, we leave alone.
#[test]
fn url_defense_decoding_matches_the_service() {
    let dir = shared_data().join("tap-siem/rapid7_insightconnect-plugins");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("the TAP sample folder") {
        let path = entry.expect("a directory entry").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.starts_with("decode_") && name.ends_with(".json.resp")) {
            continue;
        }
        let answer: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        for case in answer["urls"].as_array().expect("a urls array") {
            let encoded = case["encodedUrl"].as_str().unwrap();
            let decoded = unwrap(encoded).map(|(_, url)| url);
            if case["success"].as_bool() == Some(true) {
                assert_eq!(
                    decoded.as_deref(),
                    case["decodedUrl"].as_str(),
                    "{name}: {encoded}"
                );
            } else {
                assert_eq!(decoded, None, "{name}: {encoded}");
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 3,
        "only {checked} cases found in {}",
        dir.display()
    );
}

#[test]
fn url_count_is_bounded() {
    let body: String = (0..MAX_URLS + 50)
        .map(|i| format!("http://h{i}.example/ "))
        .collect();
    let (found, left_out) = extract_counting(&text(&body));
    assert_eq!(found.len(), MAX_URLS);
    assert_eq!(left_out, 50);
}

#[test]
fn a_huge_single_line_is_read_in_linear_time() {
    // 2 MB on one line: "://" everywhere without a scheme, half-open tags, stray ampersands.
    let line = "x:// <a href=&amp; www.".repeat(90_000) + " https://end.example/";
    let started = std::time::Instant::now();
    let found = extract(&MessageFacts {
        html_bodies: vec![line.clone()],
        text_bodies: vec![line],
        ..Default::default()
    });
    assert!(found.iter().any(|u| u.url == "https://end.example/"));
    assert!(
        started.elapsed().as_secs() < 5,
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn ip_literal_hosts() {
    assert!(traits_of(r#"<a href="http://192.0.2.7/login">x</a>"#).contains(&UrlTrait::IpHost));
    assert!(traits_of(r#"<a href="http://[2001:db8::1]/">x</a>"#).contains(&UrlTrait::IpHost));
}

#[test]
fn confusable_punycode_hosts() {
    // "аpple.com" with a Cyrillic "а".
    let found = traits_of("<a href=\"https://\u{430}pple.com/\">x</a>");
    assert!(found.contains(&UrlTrait::Punycode), "{found:?}");
    assert!(found.contains(&UrlTrait::ConfusableHost), "{found:?}");
    // A genuine internationalised name is punycode but not confusable.
    let found = traits_of("<a href=\"https://m\u{fc}nchen.example/\">x</a>");
    assert_eq!(found, [UrlTrait::Punycode]);
}

#[test]
fn lookalike_hosts() {
    let found = traits_of(r#"<a href="https://paypa1.com/">x</a>"#);
    assert!(
        found.contains(&UrlTrait::LookalikeHost { brand: "paypal" }),
        "{found:?}"
    );
    let found = traits_of(r#"<a href="https://paypal.com.secure-check.example/">x</a>"#);
    assert!(
        found.contains(&UrlTrait::LookalikeHost { brand: "paypal" }),
        "{found:?}"
    );
    assert!(traits_of(r#"<a href="https://www.paypal.com/">x</a>"#).is_empty());
}

#[test]
fn anchor_text_showing_another_domain() {
    let found =
        traits_of(r#"<a href="https://collect.example/p">https://www.mybank.example/login</a>"#);
    assert!(found.contains(&UrlTrait::DisplayMismatch {
        shown: "www.mybank.example".into()
    }));
    // The same site, or a tracked redirect naming the shown site, is no mismatch.
    assert!(
        traits_of(r#"<a href="https://news.mybank.example/">www.mybank.example</a>"#).is_empty()
    );
    let tracked = r#"<a href="https://click.mailer.example/r?dest=https%3A%2F%2Fshop.example.com">shop.example.com</a>"#;
    assert!(traits_of(tracked).is_empty());
    // Ordinary words are not a domain.
    assert!(traits_of(r#"<a href="https://a.example/">Read more</a>"#).is_empty());
}

#[test]
fn shorteners_data_and_script_urls() {
    assert_eq!(
        traits_of(r#"<a href="https://bit.ly/3abc">x</a>"#),
        [UrlTrait::Shortener]
    );
    assert_eq!(
        traits_of(r#"<a href="data:text/html;base64,PGgxPg==">x</a>"#),
        [UrlTrait::DataUrl]
    );
    assert_eq!(
        traits_of(r#"<a href="javascript:fetch('//x.example')">x</a>"#),
        [UrlTrait::JavascriptUrl]
    );
    assert!(traits_of(r#"<a href="javascript:void(0)">x</a>"#).is_empty());
    // Inline images are not links.
    assert!(extract(&html(r#"<img src="data:image/png;base64,iVBORw0KGgo=">"#)).is_empty());
}

#[test]
fn credential_paths_free_hosting_and_downloads() {
    assert_eq!(
        traits_of(r#"<a href="https://a.example/account/signin?next=1">x</a>"#),
        [UrlTrait::CredentialPath]
    );
    assert_eq!(
        traits_of(r#"<a href="https://evil.web.app/">x</a>"#),
        [UrlTrait::FreeHosting]
    );
    assert_eq!(
        traits_of(r#"<a href="https://gw.example/ipfs/bafy123">x</a>"#),
        [UrlTrait::FreeHosting]
    );
    assert_eq!(
        traits_of(r#"<a href="https://a.example/files/Invoice.iso">x</a>"#),
        [UrlTrait::RiskyDownload {
            extension: "iso".into()
        }]
    );
    // An image on free hosting sends no one anywhere.
    assert!(traits_of(r#"<img src="https://evil.web.app/logo.png">"#).is_empty());
}

#[test]
fn bare_hosts_on_free_hosting_are_found_in_text() {
    let facts = text("contact me >> my-page.netlify.app or bit.ly/xyz, not example.com");
    assert_eq!(
        urls_of(&facts),
        ["http://my-page.netlify.app/", "http://bit.ly/xyz"]
    );
}

#[test]
fn hidden_characters_in_a_link_are_obfuscation() {
    let found = traits_of("<a href=\"http://ev&#159;il.example/x\">x</a>");
    assert!(found.contains(&UrlTrait::Obfuscated), "{found:?}");
    let found = extract(&html("<a href=\"http://ev&#159;il.example/x\">x</a>"));
    assert_eq!(found[0].host.as_deref(), Some("evil.example"));
}
