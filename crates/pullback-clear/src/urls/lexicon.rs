//! What the analysis knows about the world, in one place: short, general lists (brands that
//! are imitated, shorteners, free hosting, free mail), the registrable part of a domain, and
//! the scripts and look-alike characters that disguise text.

/// Brands that phishing imitates most, as (name as a reader sees it, the registrable domains
/// that are really theirs). The first domain's first label is what a look-alike imitates.
pub const BRANDS: &[(&str, &[&str])] = &[
    (
        "microsoft",
        &[
            "microsoft.com",
            "office.com",
            "office365.com",
            "live.com",
            "outlook.com",
            "sharepoint.com",
            "microsoftonline.com",
        ],
    ),
    (
        "office 365",
        &["office365.com", "microsoft.com", "office.com"],
    ),
    ("outlook", &["outlook.com", "microsoft.com", "live.com"]),
    ("apple", &["apple.com", "icloud.com"]),
    ("icloud", &["icloud.com", "apple.com"]),
    ("google", &["google.com", "gmail.com", "youtube.com"]),
    (
        "amazon",
        &[
            "amazon.com",
            "amazon.co.uk",
            "amazon.de",
            "amazon.fr",
            "amazon.es",
            "amazon.it",
            "amazon.com.br",
            "amazonaws.com",
        ],
    ),
    ("paypal", &["paypal.com", "paypal.me"]),
    ("netflix", &["netflix.com"]),
    (
        "facebook",
        &["facebook.com", "facebookmail.com", "meta.com"],
    ),
    ("instagram", &["instagram.com"]),
    ("whatsapp", &["whatsapp.com"]),
    ("linkedin", &["linkedin.com"]),
    ("docusign", &["docusign.com", "docusign.net"]),
    ("dropbox", &["dropbox.com", "dropboxmail.com"]),
    ("adobe", &["adobe.com"]),
    ("dhl", &["dhl.com", "dhl.de"]),
    ("fedex", &["fedex.com"]),
    ("usps", &["usps.com"]),
    ("coinbase", &["coinbase.com"]),
    ("binance", &["binance.com"]),
    ("metamask", &["metamask.io"]),
    ("norton", &["norton.com", "nortonlifelock.com"]),
    ("mcafee", &["mcafee.com"]),
    ("wells fargo", &["wellsfargo.com"]),
    ("bank of america", &["bankofamerica.com"]),
];

/// URL shorteners: the destination is hidden until clicked.
pub const SHORTENERS: &[&str] = &[
    "bit.ly",
    "tinyurl.com",
    "t.co",
    "goo.gl",
    "ow.ly",
    "is.gd",
    "buff.ly",
    "rebrand.ly",
    "cutt.ly",
    "shorturl.at",
    "rb.gy",
    "t.ly",
    "s.id",
    "tiny.cc",
    "bl.ink",
    "qrco.de",
    "v.gd",
];

/// Where anyone can publish a page or a form for free, and IPFS gateways. Each also counts as
/// a public suffix: `a.web.app` and `b.web.app` belong to different people.
pub const FREE_HOSTING: &[&str] = &[
    "000webhostapp.com",
    "weebly.com",
    "wixsite.com",
    "firebaseapp.com",
    "web.app",
    "appspot.com",
    "glitch.me",
    "netlify.app",
    "vercel.app",
    "pages.dev",
    "workers.dev",
    "github.io",
    "blogspot.com",
    "herokuapp.com",
    "azurewebsites.net",
    "web.core.windows.net",
    "blob.core.windows.net",
    "r2.dev",
    "ngrok.io",
    "ngrok-free.app",
    "trycloudflare.com",
    "ipfs.io",
    "dweb.link",
    "cloudflare-ipfs.com",
    "forms.gle",
    "jotform.com",
    "typeform.com",
    "ddns.net",
    "duckdns.org",
    "onmicrosoft.com",
    "storage.googleapis.com",
    "firebasestorage.googleapis.com",
    "s3.amazonaws.com",
    "digitaloceanspaces.com",
];

/// Free mail providers: anyone can have an address there.
pub const FREEMAIL: &[&str] = &[
    "gmail.com",
    "googlemail.com",
    "yahoo.com",
    "ymail.com",
    "hotmail.com",
    "outlook.com",
    "live.com",
    "msn.com",
    "aol.com",
    "icloud.com",
    "me.com",
    "mail.ru",
    "yandex.com",
    "yandex.ru",
    "gmx.com",
    "gmx.net",
    "gmx.de",
    "web.de",
    "proton.me",
    "protonmail.com",
    "zoho.com",
    "qq.com",
    "163.com",
    "mail.com",
];

/// Words in a URL's path or query that ask for credentials.
pub const CREDENTIAL_PATH_WORDS: &[&str] = &[
    "login",
    "log-in",
    "signin",
    "sign-in",
    "logon",
    "verify",
    "verification",
    "password",
    "passwd",
    "webscr",
    "credential",
    "unlock",
    "validate",
    "wp-admin",
    "recover",
];

/// File extensions that run or carry code when a link downloads them.
pub const RISKY_DOWNLOAD_EXTENSIONS: &[&str] = &[
    "exe",
    "scr",
    "msi",
    "bat",
    "cmd",
    "js",
    "jse",
    "vbs",
    "vbe",
    "hta",
    "ps1",
    "wsf",
    "jar",
    "iso",
    "img",
    "vhd",
    "vhdx",
    "lnk",
    "apk",
    "dmg",
    "pkg",
    "mobileconfig",
    "xll",
    "appx",
];

/// Second-level labels under which country domains register names (`example.co.uk`).
const COUNTRY_SECOND_LEVELS: &[&str] = &[
    "co", "com", "net", "org", "gov", "edu", "ac", "or", "ne", "go", "gob", "mil", "nom", "ltd",
    "plc", "sch", "nic", "ind", "eng", "adv", "art", "biz", "info", "gen", "firm", "web",
];

/// Top-level domains common enough that `word.tld` in a display name is a domain.
const COMMON_TLDS: &[&str] = &[
    "com", "net", "org", "info", "biz", "io", "co", "us", "uk", "de", "fr", "es", "it", "nl", "br",
    "ru", "cn", "in", "jp", "au", "ca", "ch", "pl", "gov", "edu", "me", "app", "online",
];

/// Whether `host` is one of `list` or a subdomain of one.
pub fn in_list(host: &str, list: &[&str]) -> bool {
    list.iter().any(|d| {
        host == *d || (host.ends_with(d) && host.as_bytes()[host.len() - d.len() - 1] == b'.')
    })
}

/// The part of a host that its owner registered: `a.b.example.co.uk` → `example.co.uk`. An
/// approximation of the public suffix list: country second levels and free hosting count as
/// suffixes.
pub fn registrable(host: &str) -> &str {
    let host = host.trim_end_matches('.');
    let mut labels = 2;
    if let Some(suffix) = FREE_HOSTING
        .iter()
        .find(|d| host.len() > d.len() && in_list(host, &[d]))
    {
        labels = suffix.split('.').count() + 1;
    } else {
        let mut parts = host.rsplit('.');
        let tld = parts.next().unwrap_or("");
        let second = parts.next().unwrap_or("");
        if tld.len() == 2 && COUNTRY_SECOND_LEVELS.contains(&second) {
            labels = 3;
        }
    }
    match host.rmatch_indices('.').nth(labels - 1) {
        Some((at, _)) => &host[at + 1..],
        None => host,
    }
}

/// The registrable domain's name without its suffix: `paypal` for `www.paypal.co.uk`.
pub fn registrable_name(host: &str) -> &str {
    registrable(host).split('.').next().unwrap_or("")
}

/// Whether a token reads as a domain name: labels of letters, digits and hyphens, and a
/// common top-level domain.
pub fn looks_like_domain(token: &str) -> bool {
    let Some((head, tld)) = token.rsplit_once('.') else {
        return false;
    };
    let labels_ok = head
        .split('.')
        .all(|l| !l.is_empty() && l.chars().all(|c| c.is_alphanumeric() || c == '-'));
    labels_ok && (COMMON_TLDS.contains(&tld) || (token.starts_with("www.") && tld.len() >= 2))
}

/// The brand whose domain `host` imitates, when it does: a look-alike spelling of the brand's
/// name as the registrable name, or the brand's own domain used inside another.
pub fn imitated_brand(host: &str) -> Option<&'static str> {
    let own = registrable(host);
    let name = registrable_name(host);
    let name_skeleton = skeleton(name);
    let subdomains = host.strip_suffix(own).unwrap_or("");
    for brand in brand_names() {
        if brand.domains.contains(&own) {
            return None;
        }
        let lookalike = name != brand.real
            && !name.is_empty()
            && (name_skeleton == brand.skeleton || is_typo(name, brand.real));
        if lookalike || brand.domains.iter().any(|d| has_label_run(subdomains, d)) {
            return Some(brand.name);
        }
    }
    None
}

/// A brand with the registrable name its look-alikes imitate, folded once.
struct BrandName {
    name: &'static str,
    domains: &'static [&'static str],
    real: &'static str,
    skeleton: String,
}

fn brand_names() -> &'static [BrandName] {
    static NAMES: std::sync::OnceLock<Vec<BrandName>> = std::sync::OnceLock::new();
    NAMES.get_or_init(|| {
        BRANDS
            .iter()
            .map(|(name, domains)| {
                let real = registrable_name(domains[0]);
                BrandName {
                    name,
                    domains,
                    real,
                    skeleton: skeleton(real),
                }
            })
            .collect()
    })
}

/// Whether `run` (`paypal.com`) appears in `subdomains` (`www.paypal.com.`) as whole labels.
fn has_label_run(subdomains: &str, run: &str) -> bool {
    subdomains.match_indices(run).any(|(at, _)| {
        let starts = at == 0 || subdomains.as_bytes()[at - 1] == b'.';
        starts && subdomains.as_bytes().get(at + run.len()) == Some(&b'.')
    })
}

/// Whether `name` imitates `real` without being it: the same skeleton once look-alike
/// characters are folded (`paypa1`, `rnicrosoft`, Cyrillic letters), or, for names of six
/// letters or more, one letter changed, added or dropped (`amazom`).
pub fn is_lookalike_name(name: &str, real: &str) -> bool {
    if name == real || name.is_empty() {
        return false;
    }
    skeleton(name) == skeleton(real) || is_typo(name, real)
}

/// One letter changed, added or dropped in a name of six letters or more.
fn is_typo(name: &str, real: &str) -> bool {
    real.len() >= 6
        && name.is_ascii()
        && one_edit_apart(name, real)
        && !differs_in_digits_only(name, real)
}

fn differs_in_digits_only(a: &str, b: &str) -> bool {
    let strip = |s: &str| {
        s.chars()
            .filter(|c| !c.is_ascii_digit())
            .collect::<String>()
    };
    strip(a) == strip(b)
}

/// A word of `text` that spells a one-word brand's name with look-alike characters
/// (`PayPaI`, `Amаzon`, `Micr0soft`), and the brand.
pub fn misspelt_brand(text: &str) -> Option<(String, &'static str)> {
    let words =
        text.split(|c: char| c.is_whitespace() || (c.is_ascii_punctuation() && !"@$|".contains(c)));
    for word in words.filter(|w| w.chars().count() >= 4) {
        let folded = skeleton(word);
        let lower = word.to_lowercase();
        for (brand, _) in BRANDS.iter().filter(|(b, _)| !b.contains(' ')) {
            if lower != *brand && folded == skeleton(brand) {
                return Some((word.to_owned(), brand));
            }
        }
    }
    None
}

/// Whether one substitution, insertion or deletion turns `a` into `b`.
pub fn one_edit_apart(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if long.len() - short.len() > 1 {
        return false;
    }
    let prefix = short.iter().zip(long).take_while(|(x, y)| x == y).count();
    if short.len() == long.len() {
        short[prefix + 1..] == long[prefix + 1..]
    } else {
        short[prefix..] == long[prefix + 1..]
    }
}

/// The writing system a letter belongs to, for the few that share look-alike letters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Script {
    Latin,
    Greek,
    Cyrillic,
    Armenian,
    Cherokee,
    /// Letters of other scripts: many, but rarely mixed with the above inside one word.
    Other,
    /// Digits, punctuation, marks, symbols: belong to every script.
    Common,
}

pub fn script(c: char) -> Script {
    match c as u32 {
        0x41..=0x5A | 0x61..=0x7A | 0xC0..=0x24F | 0x1E00..=0x1EFF => {
            if c == '×' || c == '÷' {
                Script::Common
            } else {
                Script::Latin
            }
        }
        0x370..=0x3FF | 0x1F00..=0x1FFF => Script::Greek,
        0x400..=0x52F | 0x1C80..=0x1C8F | 0x2DE0..=0x2DFF | 0xA640..=0xA69F => Script::Cyrillic,
        0x530..=0x58F => Script::Armenian,
        0x13A0..=0x13FF | 0xAB70..=0xABBF => Script::Cherokee,
        _ if c.is_alphabetic() && !is_math_letter(c) => Script::Other,
        _ => Script::Common,
    }
}

/// Mathematical alphanumeric symbols (𝗔, 𝒂...): bold and script letters that filters do not
/// read as letters.
pub fn is_math_letter(c: char) -> bool {
    matches!(c as u32, 0x1D400..=0x1D7FF)
}

/// Characters that take no room: zero-width spaces and joiners, soft hyphens, the grapheme
/// joiner, variation selectors and tags.
pub fn is_invisible(c: char) -> bool {
    matches!(c as u32,
        0xAD | 0x34F | 0x180E | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0xFEFF
        | 0xFE00..=0xFE0F | 0xE0000..=0xE007F | 0xE0100..=0xE01EF)
}

/// Combining marks drawn through or over a letter (a̷), used to break up words.
pub fn is_overlay_mark(c: char) -> bool {
    matches!(c as u32, 0x334..=0x338 | 0x20D2..=0x20D3 | 0x20E5..=0x20E6)
}

/// Whether a word's letters come from more than one of the scripts that share look-alikes.
pub fn is_mixed_script(word: &str) -> bool {
    let mut seen: Option<Script> = None;
    for c in word.chars() {
        let s = script(c);
        if matches!(s, Script::Common | Script::Other) {
            continue;
        }
        match seen {
            None => seen = Some(s),
            Some(first) if first != s => return true,
            _ => {}
        }
    }
    false
}

/// Whether a domain label (in Unicode) mixes scripts, or is written wholly in non-Latin
/// letters that all look like Latin ones (`аррӏе`).
pub fn is_confusable_label(label: &str) -> bool {
    if label.is_ascii() {
        return false;
    }
    if is_mixed_script(label) {
        return true;
    }
    let folded = skeleton(label);
    folded.is_ascii() && folded.chars().any(|c| c.is_ascii_alphabetic())
}

/// `text` lower-cased with look-alike characters folded onto the Latin letters they imitate,
/// and digits onto the letters they stand for: `PаyPa1` → `paypal`. Only for comparing two
/// skeletons: `i` and `l` fold together, so `paypal` becomes `paypal` and `microsoft`
/// `mlcrosoft`.
pub fn skeleton(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut previous = '\0';
    for c in text.chars() {
        let folded = match fold(c) {
            // Letters and digits that read alike in most fonts.
            'i' | '1' | '|' => 'l',
            '0' => 'o',
            '3' => 'e',
            '4' | '@' => 'a',
            '5' | '$' => 's',
            '7' => 't',
            other => other,
        };
        // "rn" reads as "m", "vv" as "w".
        if (previous, folded) == ('r', 'n') {
            out.pop();
            out.push('m');
        } else if (previous, folded) == ('v', 'v') {
            out.pop();
            out.push('w');
        } else if !is_invisible(c) && !is_overlay_mark(c) {
            out.push(folded);
        }
        previous = folded;
    }
    out
}

/// The Latin letter that `c` imitates, or `c` lower-cased.
pub fn fold(c: char) -> char {
    if is_math_letter(c) {
        return math_to_ascii(c).unwrap_or(c);
    }
    match c {
        'ӏ' | 'Ӏ' | 'ǀ' => 'l',
        'І' | 'і' | 'ı' | 'ι' | 'Ι' => 'i',
        'о' | 'О' | 'ο' | 'Ο' | 'օ' => 'o',
        'а' | 'А' | 'α' | 'Α' => 'a',
        'е' | 'Е' | 'ε' | 'Ε' | 'ё' => 'e',
        'р' | 'Р' | 'ρ' | 'Ρ' => 'p',
        'с' | 'С' | 'ϲ' => 'c',
        'у' | 'У' | 'γ' | 'Υ' | 'υ' => 'y',
        'х' | 'Х' | 'χ' | 'Χ' => 'x',
        'ј' | 'Ј' => 'j',
        'ѕ' | 'Ѕ' => 's',
        'ԁ' => 'd',
        'ɡ' => 'g',
        'һ' | 'Н' | 'Η' => 'h',
        'к' | 'К' | 'κ' | 'Κ' => 'k',
        'м' | 'М' | 'Μ' => 'm',
        'т' | 'Т' | 'τ' | 'Τ' => 't',
        'в' | 'В' | 'Β' | 'β' => 'b',
        'ν' | 'ѵ' => 'v',
        'ω' | 'ѡ' | 'ԝ' => 'w',
        'Ζ' => 'z',
        'Ν' | 'η' | 'п' => 'n',
        'Ꭺ' => 'a',
        'Ꮯ' => 'c',
        'Ꭼ' => 'e',
        'Ꮃ' => 'w',
        _ => c.to_lowercase().next().unwrap_or(c),
    }
}

/// The ASCII letter or digit that a mathematical alphanumeric symbol draws.
fn math_to_ascii(c: char) -> Option<char> {
    let code = c as u32;
    if (0x1D7CE..=0x1D7FF).contains(&code) {
        return char::from_digit((code - 0x1D7CE) % 10, 10);
    }
    if !(0x1D400..=0x1D6A3).contains(&code) {
        return None;
    }
    // 13 alphabets of 52 letters (A-Z, a-z) from U+1D400; the gaps are holes in Unicode.
    let offset = (code - 0x1D400) % 52;
    let letter = if offset < 26 {
        b'a' + offset as u8
    } else {
        b'a' + (offset - 26) as u8
    };
    Some(letter as char)
}

/// Ways a text disguises its words from filters and readers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Disguise {
    /// Invisible characters placed between two letters.
    pub invisible_in_words: usize,
    /// Words mixing look-alike scripts (`Amаzon` with a Cyrillic `а`).
    pub mixed_script_words: usize,
    pub math_letters: usize,
    pub overlay_marks: usize,
}

impl Disguise {
    /// Whether there is enough of any one kind to be deliberate.
    pub fn is_deliberate(&self) -> bool {
        self.invisible_in_words >= 3
            || self.mixed_script_words >= 1
            || self.math_letters >= 3
            || self.overlay_marks >= 2
    }

    /// One phrase for the analyst naming what was found.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.mixed_script_words > 0 {
            parts.push(format!(
                "{} word(s) mixing look-alike alphabets",
                self.mixed_script_words
            ));
        }
        if self.invisible_in_words > 0 {
            parts.push(format!(
                "{} invisible character(s) inside words",
                self.invisible_in_words
            ));
        }
        if self.math_letters > 0 {
            parts.push(format!(
                "{} mathematical letter(s) standing for plain ones",
                self.math_letters
            ));
        }
        if self.overlay_marks > 0 {
            parts.push(format!(
                "{} strike-through mark(s) on letters",
                self.overlay_marks
            ));
        }
        parts.join(", ")
    }
}

/// Counts the disguises in `text`, in one pass.
pub fn disguise(text: &str) -> Disguise {
    let mut found = Disguise::default();
    let mut word_start: Option<usize> = None;
    let mut previous_letter = false;
    let mut pending_invisible = 0;
    let check_word = |found: &mut Disguise, word: &str| {
        if is_mixed_script(word) {
            found.mixed_script_words += 1;
        }
    };
    for (i, c) in text.char_indices() {
        if is_math_letter(c) {
            found.math_letters += 1;
        }
        if is_overlay_mark(c) {
            found.overlay_marks += 1;
        }
        if is_invisible(c) {
            if previous_letter {
                pending_invisible += 1;
            }
            continue;
        }
        let letter = c.is_alphanumeric() || is_overlay_mark(c);
        if letter {
            found.invisible_in_words += pending_invisible;
            word_start.get_or_insert(i);
        } else if let Some(start) = word_start.take() {
            check_word(&mut found, &text[start..i]);
        }
        pending_invisible = 0;
        previous_letter = letter;
    }
    if let Some(start) = word_start {
        check_word(&mut found, &text[start..]);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrable_domains() {
        assert_eq!(registrable("a.b.example.com"), "example.com");
        assert_eq!(registrable("mail.example.co.uk"), "example.co.uk");
        assert_eq!(registrable("x.nossoteto.ind.br"), "nossoteto.ind.br");
        assert_eq!(registrable("evil.web.app"), "evil.web.app");
        assert_eq!(registrable("example.com"), "example.com");
        assert_eq!(registrable("localhost"), "localhost");
    }

    #[test]
    fn lookalike_names() {
        assert!(is_lookalike_name("paypa1", "paypal"));
        assert!(is_lookalike_name("rnicrosoft", "microsoft"));
        assert!(is_lookalike_name("micros0ft", "microsoft"));
        assert!(is_lookalike_name("amazom", "amazon"));
        assert!(is_lookalike_name("раураl", "paypal"));
        assert!(!is_lookalike_name("paypal", "paypal"));
        assert!(!is_lookalike_name("host75", "host76"));
        assert!(!is_lookalike_name("apples", "adobe"));
    }

    #[test]
    fn imitated_brands_in_hosts() {
        assert_eq!(imitated_brand("www.paypa1.com"), Some("paypal"));
        assert_eq!(
            imitated_brand("paypal.com.account-check.example"),
            Some("paypal")
        );
        assert_eq!(imitated_brand("www.paypal.com"), None);
        assert_eq!(imitated_brand("news.example.org"), None);
        assert_eq!(
            misspelt_brand("Your PayPaI account"),
            Some(("PayPaI".to_owned(), "paypal"))
        );
        assert_eq!(misspelt_brand("Your PayPal or AMAZON account"), None);
    }

    #[test]
    fn disguised_text_is_counted() {
        let d = disguise("Your Am\u{430}zon acc\u{43E}unt");
        assert_eq!(d.mixed_script_words, 2);
        let d = disguise("H\u{200C}e\u{200C}l\u{200C}lo \u{200C} there");
        assert_eq!(d.invisible_in_words, 3);
        assert!(d.is_deliberate());
        assert_eq!(disguise("Привет, мир! Hello, world").mixed_script_words, 0);
        assert_eq!(skeleton("𝗠𝗮𝗸𝗶𝘁𝗮"), skeleton("makita"));
        assert_eq!(skeleton("PayPaI"), skeleton("paypal"));
    }
}
